//! `POST /batch/{table}`: 1 to 1000 rows as a JSON array of objects.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, State};
use hiring::load::LoadReport;
use serde::Serialize;

use super::ApiPath;
use crate::error::ApiError;
use crate::guard::WritePermit;
use crate::state::AppState;

/// The ingestion report plus the rejected rows.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BatchResponse {
    /// The counts.
    #[serde(flatten)]
    pub report: LoadReport,
    /// The rows not inserted, by index in the batch.
    pub rejects: Vec<BatchReject>,
}

/// One rejected row of a batch.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BatchReject {
    /// The row's 0-based index in the array.
    pub index: i64,
    /// The stable reason code.
    pub reason: &'static str,
    /// What is wrong.
    pub message: String,
}

/// One row of a batch: the columns of its table (departments: id, department; jobs: id, job;
/// hired_employees: id, name, datetime, department_id, job_id). Rows breaking a rule are
/// rejected and listed, the others loaded.
#[derive(Debug, utoipa::ToSchema)]
#[allow(dead_code)]
pub struct BatchRow {
    /// The row's id (every table).
    #[schema(example = 4535)]
    id: Option<i64>,
    /// A department's name (departments).
    department: Option<String>,
    /// A job's name (jobs).
    job: Option<String>,
    /// The employee's name (hired_employees).
    name: Option<String>,
    /// When they were hired, ISO 8601 with a time zone (hired_employees).
    #[schema(example = "2021-07-27T16:02:08Z")]
    datetime: Option<String>,
    /// Their department's id (hired_employees).
    department_id: Option<i64>,
    /// Their job's id (hired_employees).
    job_id: Option<i64>,
}

/// Validates and loads a batch of 1 to 1000 rows in one transaction; re-sending rows already
/// stored changes nothing (they count as unchanged).
#[utoipa::path(
    post,
    path = "/batch/{table}",
    tag = "ingest",
    security(("bearer" = [])),
    params(("table" = hiring::table::Table, Path, description = "The table the rows go to")),
    request_body(content = Vec<BatchRow>, description = "1 to 1000 rows"),
    responses(
        (status = 200, description = "The rows were validated; the valid ones are stored", body = BatchResponse),
        (status = 400, description = "Unknown table", body = crate::openapi::ErrorBody),
        (status = 413, description = "The body is over 16 MiB", body = crate::openapi::ErrorBody),
        (status = 422, description = "Not a JSON array of 1 to 1000 objects", body = crate::openapi::ErrorBody),
        (status = 401, description = "No bearer token, or a wrong one", body = crate::openapi::ErrorBody),
        (status = 403, description = "The server runs read-only (no HIRING_API_TOKEN)", body = crate::openapi::ErrorBody),
        (status = 503, description = "The database is unavailable, the server is busy with other writes, or the request timed out; see Retry-After", body = crate::openapi::ErrorBody),
    )
)]
pub async fn batch(
    State(state): State<AppState>,
    ApiPath(table): ApiPath<String>,
    Extension(permit): Extension<WritePermit>,
    body: Bytes,
) -> Result<Json<BatchResponse>, ApiError> {
    let table = super::table(&table)?;
    let pool = state.pool.clone();
    let started = std::time::Instant::now();
    // Like uploads, a batch is finished even if the client hangs up.
    let loaded = tokio::spawn(async move {
        // The write permit lives as long as the load, not just the request.
        let _permit = permit;
        // Read in one pass, stopping past row 1000 (hiring::batch::parse): the body's bytes are
        // the most this costs.
        hiring::load::load_batch(&pool, table, "batch", &body).await
    });
    let batch = loaded.await.map_err(|e| ApiError::Internal(e.into()))??;
    state.metrics_cache.invalidate();
    state.telemetry.step("batch", started);
    state.telemetry.loaded(&batch.report);
    for reject in &batch.rejects {
        state.telemetry.rejected(table, reject.violation.reason.code(), 1);
    }
    let rejects = batch
        .rejects
        .into_iter()
        .map(|r| BatchReject { index: r.position, reason: r.violation.reason.code(), message: r.violation.message })
        .collect();
    Ok(Json(BatchResponse { report: batch.report, rejects }))
}
