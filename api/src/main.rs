//! `hiring-api`: the HTTP API of the hiring data platform.
//!
//! Run it with `DATABASE_URL=postgres://… HIRING_API_TOKEN=… hiring-api` (or let
//! `cargo xtask dev` do it); `hiring-api --version` prints the version, and
//! `hiring-api --health` asks the running server's `GET /health` (exit 0 when it answers 200). The settings are in
//! `api/src/config.rs` and docs/api.md.

use anyhow::Context;
use api::config::Settings;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if std::env::args().any(|a| a == "--version" || a == "-V") {
        println!("hiring-api {}", env!("CARGO_PKG_VERSION"));
        return Ok(());
    }
    if std::env::args().any(|a| a == "--health") {
        // The container's health check (the image has no curl): GET /health on this task.
        return api::health_check(std::env::var("HIRING_LISTEN").ok().as_deref());
    }
    api::telemetry::init();
    let settings = Settings::from_env()?;
    api::telemetry::log_settings(&settings);
    let listener = tokio::net::TcpListener::bind(settings.listen).await.with_context(|| {
        format!("could not listen on {} (HIRING_LISTEN); is another server there?", settings.listen)
    })?;
    api::serve(settings, listener, api::shutdown_signal()).await
}
