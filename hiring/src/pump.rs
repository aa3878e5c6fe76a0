//! The shape every streamed load shares: a blocking thread decodes the input and sends chunks
//! of at most [`CHUNK_ROWS`] rows through a small bounded channel (so only a few chunks are in
//! memory whatever the file's size), while the async side writes each chunk to PostgreSQL. The
//! first failure on either side ends both; a failure of the writer is the one reported.
//!
//! Used by file loads ([`crate::load`]), validations ([`crate::pipeline`]) and restores
//! ([`crate::backup`]). Also here: [`Staged`], the temporary file such a decoder writes (Parquet,
//! rejects) and uploads to a zone once the input is read.

use std::path::Path;

use tokio::sync::mpsc;

use crate::error::{Error, Result};
use crate::zones::Zone;

/// Rows per chunk: per statement sent to PostgreSQL, and per message between the threads.
pub const CHUNK_ROWS: usize = 16 * 1024;

/// Bytes of rejects per chunk (raw text and messages): a chunk is sent once its rejects hold
/// this much, even before [`CHUNK_ROWS`] rows, so a file of long rejected rows holds a few
/// such chunks at a time, not 16k rows of up to 4 KiB each.
pub const CHUNK_REJECT_BYTES: usize = 2 * 1024 * 1024;

/// The rejects of one chunk and the memory they hold: full at [`CHUNK_ROWS`] rows (counting
/// `other_rows` of the chunk beside them) or at [`CHUNK_REJECT_BYTES`], whichever comes first.
#[derive(Debug, Default)]
pub(crate) struct RejectChunk {
    pub(crate) rejects: Vec<crate::reject::Reject>,
    bytes: usize,
}

impl RejectChunk {
    pub(crate) fn push(&mut self, reject: crate::reject::Reject) {
        self.bytes += reject.heap_bytes();
        self.rejects.push(reject);
    }

    pub(crate) fn is_full(&self, other_rows: usize) -> bool {
        other_rows + self.rejects.len() >= CHUNK_ROWS || self.bytes >= CHUNK_REJECT_BYTES
    }

    /// The rejects, leaving the chunk empty.
    pub(crate) fn take(&mut self) -> Vec<crate::reject::Reject> {
        self.bytes = 0;
        std::mem::take(&mut self.rejects)
    }
}

/// How many chunks may wait in the channel while the writer is busy.
const IN_FLIGHT: usize = 2;

/// The decoder's end of the channel.
pub(crate) struct Chunks<T>(pub(crate) mpsc::Sender<T>);

impl<T> Chunks<T> {
    /// Sends a chunk, waiting while the channel is full. False when the writer has stopped (it
    /// failed, and its error is the one reported): the decoder should return at once.
    pub(crate) fn send(&self, chunk: T) -> bool {
        self.0.blocking_send(chunk).is_ok()
    }
}

/// A decoder running on a blocking thread, and the receiving end of its chunks. The writer
/// takes them with [`Pump::next`] and ends with [`Pump::finish`] once they are all written, or
/// [`Pump::fail`] at its first error:
///
/// ```ignore
/// let mut pump = Pump::start(move |chunks| decode(input, chunks));
/// while let Some(chunk) = pump.next().await {
///     if let Err(error) = write(&mut tx, &chunk).await {
///         return pump.fail(error).await;
///     }
/// }
/// let decoded = pump.finish().await?;
/// ```
///
/// (A loop in the caller rather than a callback: an async closure that borrows the
/// transaction makes a future the compiler cannot prove `Send`.)
pub(crate) struct Pump<T, D> {
    receiver: mpsc::Receiver<T>,
    decoder: tokio::task::JoinHandle<Result<D>>,
}

impl<T: Send + 'static, D: Send + 'static> Pump<T, D> {
    /// Starts `decode` on a blocking thread.
    pub(crate) fn start(decode: impl FnOnce(Chunks<T>) -> Result<D> + Send + 'static) -> Self {
        let (sender, receiver) = mpsc::channel::<T>(IN_FLIGHT);
        let decoder = tokio::task::spawn_blocking(move || decode(Chunks(sender)));
        Pump { receiver, decoder }
    }

    /// The next chunk, or `None` when the decoder is done (or failed: [`Pump::finish`] says).
    pub(crate) async fn next(&mut self) -> Option<T> {
        self.receiver.recv().await
    }

    /// What the decoder returned, once every chunk was taken.
    pub(crate) async fn finish(self) -> Result<D> {
        drop(self.receiver);
        self.decoder.await.map_err(|e| Error::Interrupted(e.to_string()))?
    }

    /// Ends the pump after the writer's `error`, which is the one returned: the decoder's
    /// next send fails and it returns.
    pub(crate) async fn fail<R>(self, error: Error) -> Result<R> {
        drop(self.receiver);
        self.decoder.await.map_err(|e| Error::Interrupted(e.to_string()))??;
        Err(error)
    }
}

/// A temporary file that a decoder writes and that is uploaded to a zone when complete; it is
/// removed when dropped.
pub(crate) struct Staged {
    path: tempfile::TempPath,
}

impl Staged {
    /// A new empty temporary file, open for writing.
    pub(crate) fn create() -> Result<(std::fs::File, Staged)> {
        let (file, path) = tempfile::NamedTempFile::new()?.into_parts();
        Ok((file, Staged { path }))
    }

    /// Uploads the file as `key` of `zone` (its writer must be flushed and closed).
    pub(crate) async fn upload(self, zone: &Zone, key: &str) -> Result<()> {
        zone.put_file(key, Path::new(&*self.path)).await
    }
}
