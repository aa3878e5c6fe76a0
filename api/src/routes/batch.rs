//! `POST /batch/{table}`: 1 to 1000 rows as a JSON array of objects.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use hiring::load::LoadReport;
use serde::Serialize;
use serde_json::Value;

use crate::error::ApiError;
use crate::state::AppState;

/// The ingestion report plus the rejected rows.
#[derive(Debug, Serialize)]
pub struct BatchResponse {
    /// The counts.
    #[serde(flatten)]
    pub report: LoadReport,
    /// The rows not inserted, by index in the batch.
    pub rejects: Vec<BatchReject>,
}

/// One rejected row of a batch.
#[derive(Debug, Serialize)]
pub struct BatchReject {
    /// The row's 0-based index in the array.
    pub index: i64,
    /// The stable reason code.
    pub reason: &'static str,
    /// What is wrong.
    pub message: String,
}

/// Validates and loads a batch in one transaction.
pub async fn batch(
    State(state): State<AppState>,
    Path(table): Path<String>,
    body: Bytes,
) -> Result<Json<BatchResponse>, ApiError> {
    let table = super::table(&table)?;
    let rows: Vec<Value> = match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Array(rows)) => rows,
        Ok(_) => return Err(not_an_array()),
        Err(e) => return Err(ApiError::unprocessable("invalid_json", format!("the body is not valid JSON: {e}"))),
    };
    let pool = state.pool.clone();
    // Like uploads, a batch is finished even if the client hangs up.
    let loaded = tokio::spawn(async move { hiring::load::load_batch(&pool, table, "batch", &rows).await });
    let batch = loaded.await.map_err(|e| ApiError::Internal(e.into()))??;
    state.metrics_cache.invalidate();
    let rejects = batch
        .rejects
        .into_iter()
        .map(|r| BatchReject { index: r.position, reason: r.violation.reason.code(), message: r.violation.message })
        .collect();
    Ok(Json(BatchResponse { report: batch.report, rejects }))
}

fn not_an_array() -> ApiError {
    ApiError::unprocessable(
        "invalid_batch",
        "the body must be a JSON array of 1 to 1000 row objects, e.g. [{\"id\":1,\"department\":\"Sales\"}]",
    )
}
