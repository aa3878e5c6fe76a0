//! What every handler shares.

use std::sync::Arc;

use sqlx::PgPool;

use crate::cache::MetricsCache;
use crate::config::Settings;

/// The API's shared state: the pool and the settings.
#[derive(Clone)]
pub struct AppState {
    /// The PostgreSQL pool.
    pub pool: PgPool,
    /// The settings read at start.
    pub settings: Arc<Settings>,
    /// Metric results, served while no change was notified (see [`crate::cache`]).
    pub metrics_cache: Arc<MetricsCache>,
}

impl AppState {
    /// State over a pool and settings.
    pub fn new(pool: PgPool, settings: Settings) -> Self {
        AppState { pool, settings: Arc::new(settings), metrics_cache: Arc::default() }
    }
}
