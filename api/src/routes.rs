//! One module per group of endpoints.

pub mod backups;
pub mod batch;
pub mod health;
pub mod ingestions;
pub mod metrics;
pub mod upload;

use crate::error::ApiError;

/// Unknown paths answer a JSON 404 like every other error.
pub async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::NotFound(format!(
        "no endpoint at {}; see the README for the API (GET /health, POST /upload, POST /batch/{{table}}, GET /metrics/…)",
        uri.path()
    ))
}

/// Parses a `{table}` path segment.
pub(crate) fn table(name: &str) -> Result<hiring::table::Table, ApiError> {
    hiring::table::Table::from_name(name).ok_or_else(|| {
        ApiError::bad_request(
            "unknown_table",
            format!("unknown table `{name}`: expected one of departments, jobs, hired_employees"),
        )
    })
}
