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
pub mod serve;
pub mod state;
pub mod telemetry;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use utoipa::OpenApi;
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;

use crate::auth::Need;
use crate::state::AppState;

/// The largest JSON batch body accepted (1000 rows with generous text fields).
pub const MAX_BATCH_BODY_BYTES: usize = 16 * 1024 * 1024;
/// The largest body of `POST /uploads` (three files' names and sizes).
pub const MAX_UPLOADS_BODY_BYTES: usize = 16 * 1024;
/// The largest body of `POST /uploads/{id}/complete` (10,000 parts' numbers and ETags).
pub const MAX_COMPLETE_BODY_BYTES: usize = 1024 * 1024;
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
            routes!(routes::uploads::announce)
                .layer(DefaultBodyLimit::max(MAX_UPLOADS_BODY_BYTES))
                .layer(deadline(request_timeout)),
        )
        .routes(
            routes!(routes::uploads::complete)
                .layer(DefaultBodyLimit::max(MAX_COMPLETE_BODY_BYTES))
                .layer(deadline(request_timeout)),
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
        .routes(
            routes!(routes::backups::backup_set)
                .layer(DefaultBodyLimit::max(MAX_OTHER_BODY_BYTES))
                .layer(deadline(request_timeout)),
        )
        .routes(
            routes!(routes::backups::restore_set)
                .layer(DefaultBodyLimit::max(MAX_RESTORE_BODY_BYTES))
                .layer(deadline(request_timeout)),
        )
        // The token is checked first, so callers without it never take a write permit.
        .route_layer(from_fn_with_state(state.clone(), guard::write_permit))
        .route_layer(from_fn_with_state((state.clone(), Need::Write), auth::require));
    // Employee data and operations' figures: a read or write token.
    let reads = OpenApiRouter::new()
        .routes(routes!(routes::prometheus::metrics))
        .routes(routes!(routes::backups::list))
        .routes(routes!(routes::backups::list_sets))
        .routes(routes!(routes::ingestions::ingestion))
        .routes(routes!(routes::ingestions::rejects))
        .route_layer(from_fn_with_state((state.clone(), Need::Read), auth::require));
    // Aggregates: a token, unless the server opens them (HIRING_PUBLIC_METRICS).
    let metrics = OpenApiRouter::new()
        .routes(routes!(routes::report::report))
        .routes(routes!(routes::metrics::hires))
        .routes(routes!(routes::metrics::departments))
        .route_layer(from_fn_with_state((state.clone(), Need::Metrics), auth::require));
    let open = OpenApiRouter::new().routes(routes!(routes::health::health));
    // A local presigned upload's file: the URL's signature is its authorization, and the size
    // it announced its limit (checked while streaming).
    let signed = OpenApiRouter::new()
        .routes(routes!(routes::uploads::put).layer(DefaultBodyLimit::disable()).layer(deadline(upload_timeout)));
    let reads = reads
        .merge(metrics)
        .merge(open)
        .route_layer(DefaultBodyLimit::max(MAX_OTHER_BODY_BYTES))
        .route_layer(deadline(request_timeout));
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi()).merge(writes).merge(reads).merge(signed)
}

/// The API's router: the documented routes, `GET /openapi.json`, Swagger UI at `/docs`, and the
/// middleware every request goes through (request id, logs and metrics, security headers, CORS).
pub fn app(state: AppState) -> Router {
    let (router, mut spec) = routes(&state).split_for_parts();
    openapi::document_auth(&mut spec, state.settings.public_metrics);
    let docs = utoipa_swagger_ui::SwaggerUi::new("/docs").url("/openapi.json", spec);
    let mut router = router
        .merge(docs)
        .fallback(routes::not_found)
        .layer(axum::middleware::from_fn(guard::json_errors))
        .layer(axum::middleware::from_fn_with_state(state.clone(), guard::refresh_credentials))
        .layer(axum::middleware::from_fn(guard::security_headers))
        .layer(axum::middleware::from_fn_with_state(state.clone(), telemetry::observe));
    if let Some(cors) = guard::cors(&state.settings.cors_origins) {
        router = router.layer(cors);
    }
    router.with_state(state)
}

/// Serves the API on `listener` until `shutdown` resolves, as `hiring-api` runs it: reads the
/// database credentials (again whenever PostgreSQL refuses them), applies the migrations,
/// starts the rollup compaction and the metrics cache's listener.
pub async fn serve(
    settings: config::Settings,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    use anyhow::Context;
    let unreadable = |e: secrets::ReadError| anyhow::anyhow!("could not read the database's credentials: {e}");
    // With a master user (as deployed), the migrations and the application role's password
    // are applied as it, and the pool serves as the application role; else as the one user.
    let admin = settings.database.admin_pool().await.map_err(unreadable)?;
    if let Some(admin) = &admin {
        migrate(admin, None).await?;
        let login = settings.database.login().await.map_err(unreadable)?;
        settings.database.apply_role_password(&login).await.map_err(unreadable)?;
        admin.close().await;
    }
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(settings.db_max_connections)
        .acquire_timeout(std::time::Duration::from_secs(5));
    let credentials = secrets::Credentials::connect_lazy(settings.database.clone(), pool).await.map_err(unreadable)?;
    let credentials = std::sync::Arc::new(credentials);
    let pool = credentials.pool().clone();
    if admin.is_none() {
        migrate(&pool, Some(&credentials)).await?;
    } else {
        retry_abandoned(&pool).await?;
    }
    spawn_rollup_compaction(
        pool.clone(),
        std::time::Duration::from_secs(5),
        settings.deadlines,
        Some(credentials.clone()),
    );
    tracing::info!(address = %listener.local_addr()?, "hiring-api listening");
    let state = AppState::new(pool, settings)?.with_credentials(credentials);
    state.metrics_cache.clone().spawn_listener(state.pool.clone());
    let limits = state.settings.connection_limits;
    serve::serve(listener, app(state), limits, shutdown).await.context("the server stopped with an error")
}

/// Applies the migrations, waiting up to 30 s for the database to come up, then marks failed
/// the ingestions a previous crash left running.
pub async fn migrate(pool: &sqlx::PgPool, credentials: Option<&secrets::Credentials>) -> anyhow::Result<()> {
    use anyhow::Context;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        match hiring::MIGRATOR.run(pool).await {
            Ok(()) => break,
            Err(sqlx::migrate::MigrateError::Execute(e))
                if secrets::refused_credentials(&e)
                    && credentials.is_some()
                    && tokio::time::Instant::now() < deadline =>
            {
                tracing::warn!(error = %e, "PostgreSQL refused the credentials; reading them again");
                if let Some(credentials) = credentials {
                    credentials.refresh().await.map_err(|e| anyhow::anyhow!("{e}"))?;
                }
                tokio::time::sleep(secrets::REFRESH_INTERVAL).await;
            }
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
    retry_abandoned(pool).await
}

/// Moves the steps a previous crash left working to `retrying` (after the migrations, as
/// whichever user applied them).
async fn retry_abandoned(pool: &sqlx::PgPool) -> anyhow::Result<()> {
    use anyhow::Context;
    let moved = hiring::lifecycle::Lifecycle::retry_abandoned(pool)
        .await
        .context("could not check for abandoned ingestions")?;
    if moved > 0 {
        tracing::warn!(moved, "ingestions left working by a previous stop are retrying");
    }
    Ok(())
}

/// Closes the ingestions past their deadline (hiring::lifecycle::Lifecycle::sweep) and logs
/// how many, with their ids.
/// The stack's metric filter on the API's log group counts `swept` ([`SWEPT_FIELD`]) into a
/// metric with an alarm.
async fn sweep(pool: &sqlx::PgPool, deadlines: hiring::lifecycle::Deadlines) -> hiring::error::Result<()> {
    let closed = hiring::lifecycle::Lifecycle::sweep(pool, chrono::Utc::now(), deadlines).await?;
    if !closed.is_empty() {
        tracing::warn!(swept = closed.len(), ids = ?closed, "closed ingestions past their deadline as failed");
    }
    Ok(())
}

/// The field of the sweep's log line that holds how many ingestions it closed.
pub const SWEPT_FIELD: &str = "swept";

/// Folds the metrics rollup's deltas every `period` (batches append some on every call), and
/// sweeps the ingestions past their deadlines (`deadlines`), for as long as the process runs. When
/// PostgreSQL refuses the credentials, they are read again (`credentials`).
pub fn spawn_rollup_compaction(
    pool: sqlx::PgPool,
    period: std::time::Duration,
    deadlines: hiring::lifecycle::Deadlines,
    credentials: Option<std::sync::Arc<secrets::Credentials>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let done = match hiring::metrics::compact_rollup(&pool).await {
                Ok(_) => sweep(&pool, deadlines).await,
                Err(error) => Err(error),
            };
            if let Err(error) = done {
                tracing::warn!(%error, "could not compact the metrics rollup; retrying later");
                if error.is_auth_failure()
                    && let Some(credentials) = &credentials
                    && let Err(error) = credentials.refresh().await
                {
                    tracing::error!(%error, "could not read the database credentials again");
                }
            }
            // A new application password put in the secret is applied within the refresh
            // period (HIRING_DB_SECRET_REFRESH_SECS), refused or not.
            if let Some(credentials) = &credentials
                && let Err(error) = credentials.refresh_if_stale().await
            {
                tracing::warn!(%error, "could not read the database credentials again; retrying later");
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
