//! `GET /metrics`: the process's metrics in the Prometheus (OpenMetrics) text format.

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::IntoResponse;

use crate::state::AppState;

/// Requests and latency by route and status, rows ingested and rejected by table and reason,
/// and the pipeline steps' durations, for a Prometheus scraper.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses((status = 200, description = "The metrics", content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8", body = String,
               example = "# TYPE hiring_http_requests counter\nhiring_http_requests_total{route=\"/health\",method=\"GET\",status=\"200\"} 3\n# EOF\n"))
)]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
        )],
        state.telemetry.encode(),
    )
}
