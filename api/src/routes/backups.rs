//! `POST /backups/{table}`, `GET /backups` and `POST /restore/{table}`: Avro backups of the
//! tables in the backups zone, and restores from them.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use hiring::backup::{BackupInfo, BackupReport, RestoreReport};
use serde::Deserialize;

use crate::error::ApiError;
use crate::state::AppState;

/// The query of `GET /backups`.
#[derive(Debug, Deserialize)]
pub struct ListQuery {
    /// Only this table's backups (default: all tables).
    pub table: Option<String>,
}

/// The body of `POST /restore/{table}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestoreRequest {
    /// The backup's key, as `POST /backups/{table}` and `GET /backups` name it.
    pub key: String,
}

/// Writes a backup of one table to the backups zone.
pub async fn backup(State(state): State<AppState>, Path(table): Path<String>) -> Result<Json<BackupReport>, ApiError> {
    let table = super::table(&table)?;
    // Like loads, a backup is finished even if the client hangs up, so no half-written upload
    // is left to clean.
    let written =
        tokio::spawn(async move { hiring::backup::backup_table(&state.pool, &state.zones.backups, table).await });
    Ok(Json(written.await.map_err(|e| ApiError::Internal(e.into()))??))
}

/// Lists the backups, oldest first.
pub async fn list(
    State(state): State<AppState>,
    Query(query): Query<ListQuery>,
) -> Result<Json<Vec<BackupInfo>>, ApiError> {
    let table = query.table.as_deref().map(super::table).transpose()?;
    Ok(Json(hiring::backup::list_backups(&state.zones.backups, table).await?))
}

/// Replaces a table's content with a backup's rows, all or nothing.
pub async fn restore(
    State(state): State<AppState>,
    Path(table): Path<String>,
    body: Bytes,
) -> Result<Json<RestoreReport>, ApiError> {
    let table = super::table(&table)?;
    // Parsed here rather than by the `Json` extractor, so a bad body answers in the API's
    // error format.
    let request: RestoreRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError::unprocessable(
            "invalid_restore",
            format!("the body must be a JSON object such as {{\"key\":\"{table}/20261127T181500.123456Z.avro\"}}: {e}"),
        )
    })?;
    let cache = state.metrics_cache.clone();
    // Finished even if the client hangs up: the outcome (applied or not) does not depend on it.
    let restored = tokio::spawn(async move {
        hiring::backup::restore_table(&state.pool, &state.zones.backups, table, &request.key).await
    });
    let report = restored.await.map_err(|e| ApiError::Internal(e.into()))??;
    cache.invalidate();
    Ok(Json(report))
}
