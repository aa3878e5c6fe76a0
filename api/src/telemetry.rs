//! Logs: `tracing` only, JSON when stderr is not a terminal.

use std::io::IsTerminal;
use std::time::Instant;

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber; `RUST_LOG` filters (default `info`). Logs are JSON unless
/// stderr is a terminal; `HIRING_LOG_FORMAT=text` or `json` overrides that (`cargo xtask dev`
/// asks for text when it shows the logs on a terminal).
pub fn init() {
    // PostgreSQL's notices ("relation … already exists, skipping") are not worth an info line.
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx::postgres::notice=warn"));
    let terminal = std::io::stderr().is_terminal();
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(terminal);
    let text = match std::env::var("HIRING_LOG_FORMAT").as_deref() {
        Ok("text") => true,
        Ok("json") => false,
        _ => terminal,
    };
    if text {
        builder.init();
    } else {
        builder.json().flatten_event(true).with_current_span(false).init();
    }
}

/// Logs each request's method, path, status and duration. Headers (and so tokens) and query
/// strings are never logged.
pub async fn log_request(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    tracing::info!(
        %method,
        path,
        status = response.status().as_u16(),
        millis = started.elapsed().as_secs_f64() * 1e3,
        "request"
    );
    response
}
