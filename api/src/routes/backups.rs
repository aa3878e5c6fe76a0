//! `POST /backups/{table}`, `GET /backups` and `POST /restore/{table}`: Avro backups of the
//! tables in the backups zone, and restores from them; `POST /backups`, `GET /backups/sets` and
//! `POST /restore`: the same for the three tables as one set.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, State};
use hiring::backup::{BackupInfo, BackupReport, BackupSet, RestoreReport, SetInfo, SetRestoreReport};
use serde::Deserialize;

use super::{ApiPath, ApiQuery};
use crate::error::ApiError;
use crate::guard::WritePermit;
use crate::state::AppState;

/// The query of `GET /backups`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only this table's backups (default: all tables).
    #[param(value_type = Option<hiring::table::Table>)]
    pub table: Option<String>,
}

/// The body of `POST /restore/{table}`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RestoreRequest {
    /// The backup's key, as `POST /backups/{table}` and `GET /backups` name it.
    pub key: String,
}

/// Writes a backup of one table to the backups zone, as an AVRO object container file.
#[utoipa::path(
    post,
    path = "/backups/{table}",
    tag = "backups",
    security(("bearer" = [])),
    params(("table" = hiring::table::Table, Path, description = "The table to back up")),
    responses(
        (status = 200, description = "The backup written", body = hiring::backup::BackupReport),
        (status = 400, description = "Unknown table", body = crate::openapi::ErrorBody),
        (status = 401, description = "No bearer token, or a wrong one", body = crate::openapi::ErrorBody),
        (status = 403, description = "The server runs read-only (no HIRING_API_TOKEN)", body = crate::openapi::ErrorBody),
        (status = 503, description = "The database is unavailable, the server is busy with other writes, or the request timed out; see Retry-After", body = crate::openapi::ErrorBody),
    )
)]
pub async fn backup(
    State(state): State<AppState>,
    ApiPath(table): ApiPath<String>,
    Extension(permit): Extension<WritePermit>,
) -> Result<Json<BackupReport>, ApiError> {
    let table = super::table(&table)?;
    // Like loads, a backup is finished even if the client hangs up, so no half-written upload
    // is left to clean; its write permit lives as long.
    let written = tokio::spawn(async move {
        let _permit = permit;
        hiring::backup::backup_table(&state.pool, &state.zones.backups, table).await
    });
    Ok(Json(written.await.map_err(|e| ApiError::Internal(e.into()))??))
}

/// Lists the backups, oldest first.
#[utoipa::path(
    get,
    path = "/backups",
    tag = "backups",
    params(ListQuery),
    responses(
        (status = 200, description = "The backups, oldest first", body = Vec<hiring::backup::BackupInfo>),
        (status = 400, description = "Unknown table", body = crate::openapi::ErrorBody),
        (status = 503, description = "The backups zone is unavailable", body = crate::openapi::ErrorBody),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<Vec<BackupInfo>>, ApiError> {
    let table = query.table.as_deref().map(super::table).transpose()?;
    Ok(Json(hiring::backup::list_backups(&state.zones.backups, table).await?))
}

/// Replaces a table's content with a backup's rows, all or nothing, after backing the table up:
/// the answer's `previous` names that backup, whose restore undoes this one.
#[utoipa::path(
    post,
    path = "/restore/{table}",
    tag = "backups",
    security(("bearer" = [])),
    params(("table" = hiring::table::Table, Path, description = "The table to restore")),
    request_body(content = RestoreRequest, description = "The backup to restore, by key"),
    responses(
        (status = 200, description = "The table now holds the backup's rows", body = hiring::backup::RestoreReport),
        (status = 400, description = "Unknown table", body = crate::openapi::ErrorBody),
        (status = 404, description = "No such backup", body = crate::openapi::ErrorBody),
        (status = 409, description = "Other rows reference rows the backup lacks; nothing changed", body = crate::openapi::ErrorBody),
        (status = 413, description = "The body is over 4 KiB", body = crate::openapi::ErrorBody),
        (status = 422, description = "The body or the backup is not valid", body = crate::openapi::ErrorBody),
        (status = 401, description = "No bearer token, or a wrong one", body = crate::openapi::ErrorBody),
        (status = 403, description = "The server runs read-only (no HIRING_API_TOKEN)", body = crate::openapi::ErrorBody),
        (status = 503, description = "The database is unavailable, the server is busy with other writes, or the request timed out; see Retry-After", body = crate::openapi::ErrorBody),
    )
)]
pub async fn restore(
    State(state): State<AppState>,
    ApiPath(table): ApiPath<String>,
    Extension(permit): Extension<WritePermit>,
    body: Bytes,
) -> Result<Json<RestoreReport>, ApiError> {
    let table = super::table(&table)?;
    let request =
        restore_request(&body, &format!("{table}/20261127T181500.123456Z-0193a1b2-7c4d-7e8f-9a0b-1c2d3e4f5a6b.avro"))?;
    let cache = state.metrics_cache.clone();
    // Finished even if the client hangs up: the outcome (applied or not) does not depend on it.
    let restored = tokio::spawn(async move {
        let _permit = permit;
        hiring::backup::restore_table(&state.pool, &state.zones.backups, table, &request.key).await
    });
    let report = restored.await.map_err(|e| ApiError::Internal(e.into()))??;
    cache.invalidate();
    Ok(Json(report))
}

/// Backs up the three tables as one set, read in one snapshot: restoring the set with
/// `POST /restore` puts back the three tables exactly as they were together.
#[utoipa::path(
    post,
    path = "/backups",
    tag = "backups",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The set written: its manifest's key and the three backups", body = hiring::backup::BackupSet),
        (status = 401, description = "No bearer token, or a wrong one", body = crate::openapi::ErrorBody),
        (status = 403, description = "The server runs read-only (no HIRING_API_TOKEN)", body = crate::openapi::ErrorBody),
        (status = 503, description = "The database is unavailable, the server is busy with other writes, or the request timed out; see Retry-After", body = crate::openapi::ErrorBody),
    )
)]
pub async fn backup_set(
    State(state): State<AppState>,
    Extension(permit): Extension<WritePermit>,
) -> Result<Json<BackupSet>, ApiError> {
    let written = tokio::spawn(async move {
        let _permit = permit;
        hiring::backup::backup_set(&state.pool, &state.zones.backups).await
    });
    Ok(Json(written.await.map_err(|e| ApiError::Internal(e.into()))??))
}

/// Lists the backup sets, oldest first.
#[utoipa::path(
    get,
    path = "/backups/sets",
    tag = "backups",
    responses(
        (status = 200, description = "The sets, oldest first", body = Vec<hiring::backup::SetInfo>),
        (status = 503, description = "The backups zone is unavailable", body = crate::openapi::ErrorBody),
    )
)]
pub async fn list_sets(State(state): State<AppState>) -> Result<Json<Vec<SetInfo>>, ApiError> {
    Ok(Json(hiring::backup::list_sets(&state.zones.backups).await?))
}

/// Replaces the three tables' content with a set's rows as one unit, all or nothing, after
/// backing the three up as a set: the answer's `previous` names that set.
#[utoipa::path(
    post,
    path = "/restore",
    tag = "backups",
    security(("bearer" = [])),
    request_body(content = RestoreRequest, description = "The set to restore, by its manifest's key"),
    responses(
        (status = 200, description = "The three tables now hold the set's rows", body = hiring::backup::SetRestoreReport),
        (status = 404, description = "No such set, or a backup it names is gone", body = crate::openapi::ErrorBody),
        (status = 413, description = "The body is over 4 KiB", body = crate::openapi::ErrorBody),
        (status = 422, description = "The body, the manifest or a backup is not valid", body = crate::openapi::ErrorBody),
        (status = 401, description = "No bearer token, or a wrong one", body = crate::openapi::ErrorBody),
        (status = 403, description = "The server runs read-only (no HIRING_API_TOKEN)", body = crate::openapi::ErrorBody),
        (status = 503, description = "The database is unavailable, the server is busy with other writes, or the request timed out; see Retry-After", body = crate::openapi::ErrorBody),
    )
)]
pub async fn restore_set(
    State(state): State<AppState>,
    Extension(permit): Extension<WritePermit>,
    body: Bytes,
) -> Result<Json<SetRestoreReport>, ApiError> {
    let request = restore_request(&body, "sets/20261127T181500.123456Z-0193a1b2-7c4d-7e8f-9a0b-1c2d3e4f5a6b.json")?;
    let cache = state.metrics_cache.clone();
    let restored = tokio::spawn(async move {
        let _permit = permit;
        hiring::backup::restore_set(&state.pool, &state.zones.backups, &request.key).await
    });
    let report = restored.await.map_err(|e| ApiError::Internal(e.into()))??;
    cache.invalidate();
    Ok(Json(report))
}

/// The body of a restore, parsed here rather than by the `Json` extractor so that a bad body
/// answers in the API's error format, with an example naming `example_key`.
fn restore_request(body: &[u8], example_key: &str) -> Result<RestoreRequest, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::unprocessable(
            "invalid_restore",
            format!("the body must be a JSON object such as {{\"key\":\"{example_key}\"}}: {e}"),
        )
    })
}
