//! A cache of metric results, kept correct by PostgreSQL notifications.
//!
//! Every load commits a `NOTIFY` on [`hiring::metrics::CHANGES_CHANNEL`]; PostgreSQL delivers it
//! only after the commit. A listener task bumps the cache's generation on each one, and entries
//! are served only for the generation they were computed in, so a result is never served after
//! a change this server has heard of. While the listener is not connected (at start, or after
//! losing the database) nothing is cached. Writes made by this server bump the generation
//! themselves, so its own clients read their writes at once; other servers' writes are seen as
//! soon as their notification arrives (milliseconds).

use std::any::Any;
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgListener;

/// A result and the generation it was computed in.
type Entry = (u64, Arc<dyn Any + Send + Sync>);

/// Cached metric results by (metric, year).
#[derive(Default)]
pub struct MetricsCache {
    generation: AtomicU64,
    listening: AtomicBool,
    entries: Mutex<HashMap<(&'static str, i32), Entry>>,
}

impl MetricsCache {
    /// Marks every entry stale.
    pub fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// The cached result of `metric` for `year`, or `compute`'s, cached when that is safe.
    /// `fresh` skips the cached entry (a request's `Cache-Control: no-cache`).
    pub async fn get_or_compute<T, F, E>(
        &self,
        metric: &'static str,
        year: i32,
        fresh: bool,
        compute: F,
    ) -> Result<Arc<T>, E>
    where
        T: Send + Sync + 'static,
        F: Future<Output = Result<T, E>>,
    {
        if !self.listening.load(Ordering::SeqCst) {
            return compute.await.map(Arc::new);
        }
        // Read the generation before computing: a change during the computation bumps it, and
        // the entry stored below is then never served.
        let generation = self.generation.load(Ordering::SeqCst);
        if !fresh
            && let Some((cached_generation, value)) = self.entries.lock().expect("cache lock").get(&(metric, year))
            && *cached_generation == generation
            && let Ok(value) = value.clone().downcast::<T>()
        {
            return Ok(value);
        }
        let value = Arc::new(compute.await?);
        if self.listening.load(Ordering::SeqCst) {
            self.entries.lock().expect("cache lock").insert((metric, year), (generation, value.clone()));
        }
        Ok(value)
    }

    /// Listens for change notifications for as long as the process runs, reconnecting after
    /// failures; caching is on only while listening.
    pub fn spawn_listener(self: Arc<Self>, pool: PgPool) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                if let Err(error) = self.listen(&pool).await {
                    tracing::warn!(%error, "metrics cache off: lost the change notifications; reconnecting");
                }
                self.listening.store(false, Ordering::SeqCst);
                self.invalidate();
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
    }

    async fn listen(&self, pool: &PgPool) -> Result<(), sqlx::Error> {
        let mut listener = PgListener::connect_with(pool).await?;
        // Without this, the listener would reconnect silently and notifications sent meanwhile
        // would be lost; a failure must switch caching off instead.
        listener.ignore_pool_close_event(false);
        listener.listen(hiring::metrics::CHANGES_CHANNEL).await?;
        // Anything may have changed while nobody listened.
        self.invalidate();
        self.listening.store(true, Ordering::SeqCst);
        loop {
            match listener.try_recv().await? {
                Some(_) => self.invalidate(),
                None => return Err(sqlx::Error::Protocol("the notification connection closed".into())),
            }
        }
    }
}
