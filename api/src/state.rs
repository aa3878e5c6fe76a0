//! What every handler shares.

use std::sync::Arc;

use sqlx::PgPool;

use crate::cache::MetricsCache;
use crate::config::Settings;
use crate::guard::WritePermits;
use crate::telemetry::Instruments;

/// The API's shared state: the pool and the settings.
#[derive(Clone)]
pub struct AppState {
    /// The PostgreSQL pool.
    pub pool: PgPool,
    /// The settings read at start.
    pub settings: Arc<Settings>,
    /// Metric results, served while no change was notified (see [`crate::cache`]).
    pub metrics_cache: Arc<MetricsCache>,
    /// The storage zones: raw, rejects, processed, backups.
    pub zones: Arc<hiring::zones::Zones>,
    /// The instruments (counters, histograms) `GET /metrics` serves to Prometheus.
    pub telemetry: Arc<Instruments>,
    /// The bound on concurrent writes (`HIRING_MAX_CONCURRENT_WRITES`).
    pub write_permits: Arc<WritePermits>,
    /// Where the pool's credentials come from, to read them again when PostgreSQL refuses
    /// them; `None` when they cannot change (tests that share a pool).
    pub credentials: Option<Arc<secrets::Credentials>>,
    /// Signs the local presigned upload URLs (`POST /uploads` on a local raw zone).
    pub upload_signer: Arc<crate::routes::uploads::UploadSigner>,
}

impl AppState {
    /// State over a pool and settings; opens the zones the settings name.
    pub fn new(pool: PgPool, settings: Settings) -> anyhow::Result<Self> {
        let zones = Arc::new(settings.open_zones()?);
        // Permits follow the pool: each write holds one connection at a time (a step's claim
        // carries its transaction), and one connection stays for the reads.
        let usable = usize::try_from(settings.db_max_connections).unwrap_or(usize::MAX).saturating_sub(1).max(1);
        let write_permits = Arc::new(WritePermits::new(settings.max_concurrent_writes.min(usable)));
        Ok(AppState {
            pool,
            settings: Arc::new(settings),
            metrics_cache: Arc::default(),
            zones,
            telemetry: Arc::default(),
            write_permits,
            credentials: None,
            upload_signer: Arc::new(
                crate::routes::uploads::UploadSigner::new()
                    .map_err(|e| anyhow::anyhow!("could not get random bytes for the upload signing key: {e}"))?,
            ),
        })
    }
}

impl AppState {
    /// The same state, reading the pool's credentials again from `credentials` when PostgreSQL
    /// refuses them.
    pub fn with_credentials(mut self, credentials: Arc<secrets::Credentials>) -> Self {
        self.credentials = Some(credentials);
        self
    }
}
