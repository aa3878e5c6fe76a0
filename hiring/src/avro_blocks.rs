//! The frames of an Avro object container file, read with bounds before the Avro reader sees
//! them.
//!
//! apache-avro allocates a block's buffer by the size the block declares and inflates a
//! deflated block whole, each up to 512 MiB by default: a 500-byte file declaring a 2^29-byte
//! block cost a restore 569 MB of memory, and 200 KB of deflate 451 MB. [`BoundedBlocks`] sits
//! between the object's bytes and the reader. It checks each block's declared size against the
//! bytes left in the file and against [`MAX_BLOCK_BYTES`], inflates deflated blocks itself into
//! at most [`MAX_BLOCK_BYTES`], and hands the reader the same file with the `null` codec, so the
//! reader allocates no more than one bounded block. The container format is Avro 1.11's
//! "Object Container Files": a header (`Obj\x01`, a metadata map, a 16-byte sync marker), then
//! blocks of (record count, byte size, data, sync marker).

use std::cell::RefCell;
use std::io::{ErrorKind, Read};
use std::rc::Rc;

/// The most bytes one block may hold, compressed or inflated. The backups' own blocks hold
/// about 256 KiB; other writers' defaults are smaller (Java's sync interval is 64 KiB).
pub const MAX_BLOCK_BYTES: usize = 8 * 1024 * 1024;

/// The most bytes the header's metadata (the schema, the codec, user metadata) may hold.
const MAX_HEADER_BYTES: usize = 1024 * 1024;

/// The most metadata entries a header may hold: writers put a handful (schema, codec, a few of
/// their own), and each entry costs a map entry in the reader whatever its size.
const MAX_METADATA_ENTRIES: usize = 256;

const MAGIC: &[u8; 4] = b"Obj\x01";

/// Why a file was refused; shared with the caller because the Avro reader reports a failed read
/// in its own words.
pub type Refusal = Rc<RefCell<Option<String>>>;

/// A reader of an Avro object container file of `size` bytes that passes it on, rewritten to the
/// `null` codec, only as far as its frames keep within the bounds.
pub struct BoundedBlocks<R> {
    input: R,
    /// Bytes of the input read so far.
    position: u64,
    size: u64,
    deflated: bool,
    marker: [u8; 16],
    /// The frames rewritten and not yet read, and how far they have been read.
    output: Vec<u8>,
    read: usize,
    blocks: u64,
    started: bool,
    ended: bool,
    refusal: Refusal,
}

impl<R: Read> BoundedBlocks<R> {
    /// Reads `input`, an object of `size` bytes; the reason of a refusal is left in `refusal`.
    pub fn new(input: R, size: u64, refusal: Refusal) -> BoundedBlocks<R> {
        BoundedBlocks {
            input,
            position: 0,
            size,
            deflated: false,
            marker: [0; 16],
            output: Vec::new(),
            read: 0,
            blocks: 0,
            started: false,
            ended: false,
            refusal,
        }
    }

    fn refuse(&self, reason: String) -> std::io::Error {
        *self.refusal.borrow_mut() = Some(reason.clone());
        std::io::Error::new(ErrorKind::InvalidData, reason)
    }

    fn exact(&mut self, buffer: &mut [u8]) -> std::io::Result<()> {
        self.input.read_exact(buffer)?;
        self.position += buffer.len() as u64;
        Ok(())
    }

    /// A zigzag varint long; `None` at a clean end of the input.
    fn long(&mut self) -> std::io::Result<Option<i64>> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let mut byte = [0u8];
            if self.input.read(&mut byte)? == 0 {
                if shift == 0 {
                    return Ok(None);
                }
                return Err(self.refuse("the file ends inside a number".into()));
            }
            self.position += 1;
            value |= u64::from(byte[0] & 0x7f) << shift;
            if byte[0] & 0x80 == 0 {
                return Ok(Some((value >> 1) as i64 ^ -((value & 1) as i64)));
            }
        }
        Err(self.refuse("a number in the file is longer than 64 bits".into()))
    }

    fn required_long(&mut self, what: &str) -> std::io::Result<i64> {
        self.long()?.ok_or_else(|| self.refuse(format!("the file ends before {what}")))
    }

    /// A length-prefixed byte string of at most `limit` bytes.
    fn bytes(&mut self, limit: usize, what: &str) -> std::io::Result<Vec<u8>> {
        let length = self.required_long(what)?;
        if length < 0 || length as u64 > limit as u64 || length as u64 > self.size.saturating_sub(self.position) {
            return Err(self.refuse(format!("the header's {what} declares {length} bytes, more than the file holds")));
        }
        let mut value = vec![0; length as usize];
        self.exact(&mut value)?;
        Ok(value)
    }

    /// Reads the header and writes it again with the `null` codec.
    fn header(&mut self) -> std::io::Result<()> {
        let mut magic = [0u8; 4];
        if self.input.read_exact(&mut magic).is_err() || &magic != MAGIC {
            return Err(self.refuse("the object is not an Avro object container file (no `Obj 1` magic)".into()));
        }
        self.position += 4;
        let mut entries = Vec::new();
        let mut held = 0usize;
        loop {
            let mut count = self.required_long("the end of the header's metadata")?;
            if count == 0 {
                break;
            }
            if count < 0 {
                count = count.checked_neg().ok_or_else(|| self.refuse("the header's metadata is malformed".into()))?;
                self.required_long("the size of the header's metadata")?;
            }
            if count as u64 > (MAX_METADATA_ENTRIES - entries.len()) as u64 {
                return Err(self.refuse(format!(
                    "the header declares more than the {MAX_METADATA_ENTRIES} metadata entries a backup may hold"
                )));
            }
            for _ in 0..count {
                let key = self.bytes(MAX_HEADER_BYTES, "metadata key")?;
                if key.is_empty() {
                    return Err(self.refuse("the header holds a metadata entry with an empty key".into()));
                }
                let value = self.bytes(MAX_HEADER_BYTES, "metadata value")?;
                held += key.len() + value.len();
                if held > MAX_HEADER_BYTES {
                    return Err(self.refuse(format!("the header's metadata is over {MAX_HEADER_BYTES} bytes")));
                }
                entries.push((key, value));
            }
        }
        let mut marker = [0u8; 16];
        self.exact(&mut marker)?;
        self.marker = marker;

        let mut metadata: Vec<(&[u8], &[u8])> = entries
            .iter()
            .filter(|(key, _)| !key.starts_with(b"avro.codec"))
            .map(|(key, value)| (key.as_slice(), value.as_slice()))
            .collect();
        metadata.push((b"avro.codec", b"null"));
        let mut output = Vec::new();
        write_header(&mut output, &metadata, &marker);
        let codec = entries.iter().find(|(key, _)| key == b"avro.codec").map(|(_, value)| value.as_slice());
        self.deflated = match codec {
            None | Some(b"null") => false,
            Some(b"deflate") => true,
            Some(other) => {
                return Err(self.refuse(format!(
                    "the file's codec `{}` is not supported: backups use deflate or null",
                    String::from_utf8_lossy(other)
                )));
            }
        };
        self.output = output;
        Ok(())
    }

    /// Reads the next block and writes it again, inflated; at the end of the input, nothing.
    fn block(&mut self) -> std::io::Result<()> {
        let Some(count) = self.long()? else {
            self.ended = true;
            return Ok(());
        };
        self.blocks += 1;
        let block = self.blocks;
        let declared = self.required_long("a block's size")?;
        let left = self.size.saturating_sub(self.position).saturating_sub(16);
        if count < 0 || declared < 0 {
            return Err(self.refuse(format!("block {block} declares a negative count or size")));
        }
        if declared as u64 > left {
            return Err(
                self.refuse(format!("block {block} declares {declared} bytes, but only {left} remain in the file"))
            );
        }
        if declared as u64 > MAX_BLOCK_BYTES as u64 {
            return Err(self.refuse(format!(
                "block {block} declares {declared} bytes, more than the {MAX_BLOCK_BYTES} a block may hold"
            )));
        }
        let mut data = vec![0; declared as usize];
        self.exact(&mut data)?;
        let mut marker = [0u8; 16];
        self.exact(&mut marker)?;
        if marker != self.marker {
            return Err(self.refuse(format!("block {block} does not end with the file's sync marker")));
        }
        if self.deflated {
            data = miniz_oxide::inflate::decompress_to_vec_with_limit(&data, MAX_BLOCK_BYTES).map_err(|e| {
                match e.status {
                    miniz_oxide::inflate::TINFLStatus::HasMoreOutput => {
                        self.refuse(format!("block {block} inflates past the {MAX_BLOCK_BYTES} bytes a block may hold"))
                    }
                    status => self.refuse(format!("block {block} is not valid deflate data ({status:?})")),
                }
            })?;
        }
        self.output.clear();
        self.read = 0;
        // An empty block is valid Avro, but the reader takes a block of no records for the end
        // of the file: it is not passed on, so the blocks after it are read.
        if count > 0 {
            write_block(&mut self.output, count, data.len() as i64, &data, &marker);
        }
        Ok(())
    }
}

impl<R: Read> Read for BoundedBlocks<R> {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        if self.read == self.output.len() {
            if self.ended {
                return Ok(0);
            }
            if self.started {
                self.block()?;
                while self.output.is_empty() && !self.ended {
                    self.block()?;
                }
            } else {
                self.started = true;
                self.header()?;
            }
            if self.read == self.output.len() {
                return Ok(0);
            }
        }
        let n = buffer.len().min(self.output.len() - self.read);
        buffer[..n].copy_from_slice(&self.output[self.read..self.read + n]);
        self.read += n;
        Ok(n)
    }
}

/// Writes a container file's header: the magic, the `metadata` map (`avro.schema`,
/// `avro.codec`, …) and the sync `marker`.
pub fn write_header(out: &mut Vec<u8>, metadata: &[(&[u8], &[u8])], marker: &[u8; 16]) {
    out.extend_from_slice(MAGIC);
    write_long(out, metadata.len() as i64);
    for (key, value) in metadata {
        write_bytes(out, key);
        write_bytes(out, value);
    }
    write_long(out, 0);
    out.extend_from_slice(marker);
}

/// Writes one block of `count` records whose `data` is `declared` bytes long (a file that lies
/// about it, to test a reader, says otherwise), then the sync `marker`.
pub fn write_block(out: &mut Vec<u8>, count: i64, declared: i64, data: &[u8], marker: &[u8; 16]) {
    write_long(out, count);
    write_long(out, declared);
    out.extend_from_slice(data);
    out.extend_from_slice(marker);
}

fn write_long(out: &mut Vec<u8>, n: i64) {
    let mut zigzag = ((n << 1) ^ (n >> 63)) as u64;
    while zigzag >= 0x80 {
        out.push((zigzag as u8 & 0x7f) | 0x80);
        zigzag >>= 7;
    }
    out.push(zigzag as u8);
}

fn write_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    write_long(out, bytes.len() as i64);
    out.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;
    use apache_avro::types::Value;
    use apache_avro::{Codec, DeflateSettings, Reader, Schema, Writer};

    fn rows(codec: Codec, count: i32) -> Vec<u8> {
        let schema =
            Schema::parse_str(r#"{"type":"record","name":"r","fields":[{"name":"id","type":"int"}]}"#).unwrap();
        let mut writer =
            Writer::builder().schema(&schema).writer(Vec::new()).codec(codec).block_size(64).build().unwrap();
        for id in 0..count {
            writer.append_value(Value::Record(vec![("id".into(), Value::Int(id))])).unwrap();
        }
        writer.into_inner().unwrap()
    }

    fn read_all(file: &[u8]) -> Result<Vec<Value>, String> {
        let refusal = Refusal::default();
        let reader = Reader::new(BoundedBlocks::new(file, file.len() as u64, refusal.clone()))
            .map_err(|e| refusal.borrow().clone().unwrap_or(e.to_string()))?;
        reader.collect::<Result<Vec<_>, _>>().map_err(|e| refusal.borrow().clone().unwrap_or(e.to_string()))
    }

    #[test]
    fn a_file_of_many_blocks_reads_the_same_through_the_bounds_with_either_codec() {
        for codec in [Codec::Null, Codec::Deflate(DeflateSettings::default())] {
            let file = rows(codec, 1000);
            let direct: Vec<Value> = Reader::new(file.as_slice()).unwrap().map(Result::unwrap).collect();
            assert_eq!(read_all(&file).unwrap(), direct);
            assert_eq!(direct.len(), 1000);
        }
    }

    #[test]
    fn a_file_cut_short_or_with_a_foreign_marker_is_refused_by_block() {
        let file = rows(Codec::Deflate(DeflateSettings::default()), 1000);
        let error = read_all(&file[..file.len() - 40]).unwrap_err();
        assert!(error.contains("remain in the file"), "{error}");
        let mut changed = file.clone();
        let last = changed.len() - 1;
        changed[last] ^= 1;
        let error = read_all(&changed).unwrap_err();
        assert!(error.contains("does not end with the file's sync marker"), "{error}");
        assert!(read_all(b"PAR1").unwrap_err().contains("not an Avro object container file"));
    }

    #[test]
    fn an_empty_block_between_two_others_ends_nothing() {
        let schema = r#"{"type":"record","name":"r","fields":[{"name":"id","type":"int"}]}"#;
        let marker = [9u8; 16];
        let mut file = Vec::new();
        write_header(&mut file, &[(b"avro.schema", schema.as_bytes()), (b"avro.codec", b"null")], &marker);
        // ids are zigzag varints: 1 → 2, 2 → 4, …
        write_block(&mut file, 2, 2, &[2, 4], &marker);
        write_block(&mut file, 0, 0, &[], &marker);
        write_block(&mut file, 2, 2, &[6, 8], &marker);
        let ids: Vec<Value> = read_all(&file).unwrap();
        assert_eq!(ids.len(), 4, "{ids:?}");
    }
}
