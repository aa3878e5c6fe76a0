//! The hiring HTTP API: uploads of CSV files, JSON batches, ingestion reports and the two
//! metrics, over the `hiring` domain and PostgreSQL.
//!
//! [`app`] builds the router from a [`state::AppState`], so tests drive it without a socket;
//! `main.rs` only wires telemetry, settings and the pool, then serves it.

pub mod auth;
pub mod cache;
pub mod config;
pub mod error;
pub mod guard;
pub mod openapi;
pub mod report;
pub mod routes;
pub mod state;
pub mod telemetry;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use utoipa::OpenApi;
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;

use crate::state::AppState;

/// The largest JSON batch body accepted (1000 rows with generous text fields).
pub const MAX_BATCH_BODY_BYTES: usize = 16 * 1024 * 1024;
/// The largest body of `POST /restore/{table}` (a key).
pub const MAX_RESTORE_BODY_BYTES: usize = 4 * 1024;
/// The largest body of any other endpoint (none takes one).
pub const MAX_OTHER_BODY_BYTES: usize = 1024;

/// The routes with their OpenAPI operations: utoipa-axum adds each handler's path to both, so
/// every route served is in the document.
pub fn routes(state: &AppState) -> OpenApiRouter<AppState> {
    use axum::middleware::from_fn_with_state;
    let settings = &state.settings;
    let deadline = |limit| from_fn_with_state(limit, guard::deadline);
    let (request_timeout, upload_timeout) = (settings.request_timeout, settings.upload_timeout);
    let writes = OpenApiRouter::new()
        .routes(
            routes!(routes::upload::upload)
                .layer(DefaultBodyLimit::max(settings.max_upload_bytes))
                .layer(deadline(upload_timeout)),
        )
        .routes(
            routes!(routes::batch::batch)
                .layer(DefaultBodyLimit::max(MAX_BATCH_BODY_BYTES))
                .layer(deadline(request_timeout)),
        )
        .routes(
            routes!(routes::backups::backup)
                .layer(DefaultBodyLimit::max(MAX_OTHER_BODY_BYTES))
                .layer(deadline(request_timeout)),
        )
        .routes(
            routes!(routes::backups::restore)
                .layer(DefaultBodyLimit::max(MAX_RESTORE_BODY_BYTES))
                .layer(deadline(request_timeout)),
        )
        // The token is checked first, so callers without it never take a write permit.
        .route_layer(from_fn_with_state(state.clone(), guard::write_permit))
        .route_layer(from_fn_with_state(state.clone(), auth::require_token));
    let reads = OpenApiRouter::new()
        .routes(routes!(routes::report::report))
        .routes(routes!(routes::health::health))
        .routes(routes!(routes::prometheus::metrics))
        .routes(routes!(routes::backups::list))
        .routes(routes!(routes::ingestions::ingestion))
        .routes(routes!(routes::ingestions::rejects))
        .routes(routes!(routes::metrics::hires))
        .routes(routes!(routes::metrics::departments))
        .route_layer(DefaultBodyLimit::max(MAX_OTHER_BODY_BYTES))
        .route_layer(deadline(request_timeout));
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi()).merge(writes).merge(reads)
}

/// The API's router: the documented routes, `GET /openapi.json`, Swagger UI at `/docs`, and the
/// middleware every request goes through (request id, logs and metrics, security headers, CORS).
pub fn app(state: AppState) -> Router {
    let (router, spec) = routes(&state).split_for_parts();
    let docs = utoipa_swagger_ui::SwaggerUi::new("/docs").url("/openapi.json", spec);
    let mut router = router
        .merge(docs)
        .fallback(routes::not_found)
        .layer(axum::middleware::from_fn(guard::json_errors))
        .layer(axum::middleware::from_fn(guard::security_headers))
        .layer(axum::middleware::from_fn_with_state(state.clone(), telemetry::observe));
    if let Some(cors) = guard::cors(&state.settings.cors_origins) {
        router = router.layer(cors);
    }
    router.with_state(state)
}

/// Applies the migrations, waiting up to 30 s for the database to come up, then marks failed
/// the ingestions a previous crash left running.
pub async fn migrate(pool: &sqlx::PgPool) -> anyhow::Result<()> {
    use anyhow::Context;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        match hiring::MIGRATOR.run(pool).await {
            Ok(()) => break,
            Err(sqlx::migrate::MigrateError::Execute(e)) if tokio::time::Instant::now() < deadline => {
                tracing::warn!(error = %e, "database not ready; retrying");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
            Err(sqlx::migrate::MigrateError::VersionMismatch(version)) => anyhow::bail!(
                "migration {version} was changed after this database applied it, so the database was made by \
                 another (development) build: recreate it (`cargo xtask dev --fresh` does) or point DATABASE_URL \
                 at an empty database"
            ),
            Err(e) => {
                return Err(e).context("could not apply the migrations: is DATABASE_URL right and PostgreSQL running?");
            }
        }
    }
    let failed = hiring::ingestions::fail_abandoned(pool).await.context("could not check for abandoned ingestions")?;
    if failed > 0 {
        tracing::warn!(failed, "marked ingestions left running by a previous stop as failed");
    }
    Ok(())
}

/// Folds the metrics rollup's deltas every `period` (batches append some on every call), for as
/// long as the process runs.
pub fn spawn_rollup_compaction(pool: sqlx::PgPool, period: std::time::Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            if let Err(error) = hiring::metrics::compact_rollup(&pool).await {
                tracing::warn!(%error, "could not compact the metrics rollup; retrying later");
            }
        }
    })
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        if let Ok(mut signal) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            signal.recv().await;
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
}

/// `hiring-api --health`: asks `GET /health` of the server listening on `listen` (the
/// `HIRING_LISTEN` address; its port on 127.0.0.1 when it listens on every address) and fails
/// unless it answers 200 within 3 seconds.
pub fn health_check(listen: Option<&str>) -> anyhow::Result<()> {
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpStream};
    use std::time::Duration;

    let mut address: SocketAddr = listen
        .unwrap_or("127.0.0.1:8080")
        .parse()
        .map_err(|_| anyhow::anyhow!("HIRING_LISTEN is not an address such as 0.0.0.0:8080"))?;
    if address.ip().is_unspecified() {
        address.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let timeout = Duration::from_secs(3);
    let mut stream = TcpStream::connect_timeout(&address, timeout)
        .map_err(|e| anyhow::anyhow!("nothing answers on {address}: {e}"))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.write_all(b"GET /health HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head)?;
    if &head[9..12] == b"200" {
        Ok(())
    } else {
        anyhow::bail!("GET /health on {address} answered {}", String::from_utf8_lossy(&head[9..12]))
    }
}
