//! `GET /ingestions/{id}` and `GET /ingestions/{id}/rejects`.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use hiring::ingestions::Ingestion;
use serde::{Deserialize, Serialize};

use super::{ApiPath, ApiQuery};
use crate::error::ApiError;
use crate::state::AppState;

/// An ingestion's report: its status, counts, and where its files are.
#[utoipa::path(
    get,
    path = "/ingestions/{id}",
    tag = "ingest",
    params(("id" = i64, Path, description = "The ingestion id, as an upload or batch answered it")),
    responses(
        (status = 200, description = "The ingestion", body = hiring::ingestions::Ingestion),
        (status = 400, description = "The id is not a number", body = crate::openapi::ErrorBody),
        (status = 404, description = "No such ingestion", body = crate::openapi::ErrorBody),
        (status = 503, description = "The database is unavailable", body = crate::openapi::ErrorBody),
    )
)]
pub async fn ingestion(State(state): State<AppState>, ApiPath(id): ApiPath<i64>) -> Result<Json<Ingestion>, ApiError> {
    Ok(Json(hiring::ingestions::get(&state.pool, id).await?))
}

/// Paging of rejects: `limit` (1..=1000, default 100) rows after the position `after`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Page {
    /// How many rejects to return (1 to 1000, default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
    /// Return rejects after this line (files) or index (batches).
    pub after: Option<i64>,
}

/// One reject: `line` for files, `index` for batches.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RejectView {
    /// The 1-based line in the file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<i64>,
    /// The 0-based index in the batch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<i64>,
    /// The stable reason code.
    pub reason: String,
    /// What is wrong.
    pub message: String,
    /// The row as received: all of it, or its first 4 KiB when `raw_sha256` is set.
    pub raw: String,
    /// The row's length in bytes as received.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw_bytes: Option<i64>,
    /// The SHA-256 (hex) of the whole row, when `raw` holds only its first 4 KiB.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw_sha256: Option<String>,
}

/// The most bytes of rejects (raw texts and messages) in one page: a page of 1000 rejects of
/// 4 KiB rows stops here, and its `Link` points at the rest.
pub const MAX_PAGE_BYTES: usize = 1024 * 1024;

/// A page of rejects, in order, at most `limit` of them and about 1 MiB; a `Link: <…>;
/// rel="next"` header points at the next page.
#[utoipa::path(
    get,
    path = "/ingestions/{id}/rejects",
    tag = "ingest",
    params(("id" = i64, Path, description = "The ingestion id"), Page),
    responses(
        (status = 200, description = "A page of rejects; `Link` points at the next", body = Vec<RejectView>,
         headers(("link" = String, description = "The next page, when there may be one"))),
        (status = 400, description = "A bad id or limit", body = crate::openapi::ErrorBody),
        (status = 404, description = "No such ingestion", body = crate::openapi::ErrorBody),
        (status = 503, description = "The database is unavailable", body = crate::openapi::ErrorBody),
    )
)]
pub async fn rejects(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
    ApiQuery(page): ApiQuery<Page>,
) -> Result<(HeaderMap, Json<Vec<RejectView>>), ApiError> {
    let limit = page.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request("invalid_limit", "limit must be between 1 and 1000"));
    }
    let ingestion = hiring::ingestions::get(&state.pool, id).await?;
    let mut rows = hiring::ingestions::rejects(&state.pool, id, page.after, limit).await?;
    let fetched = rows.len();
    let mut bytes = 0;
    // At least one reject per page, so paging always moves on.
    let keep = rows
        .iter()
        .position(|r| {
            bytes += r.raw.len() + r.message.len();
            bytes > MAX_PAGE_BYTES
        })
        .map_or(fetched, |over| over.max(1));
    rows.truncate(keep);
    let mut headers = HeaderMap::new();
    if (fetched as i64 == limit || keep < fetched)
        && let Some(last) = rows.last()
        && let Ok(link) = HeaderValue::from_str(&format!(
            "</ingestions/{id}/rejects?limit={limit}&after={}>; rel=\"next\"",
            last.position
        ))
    {
        headers.insert(header::LINK, link);
    }
    let by_index = ingestion.kind == "batch";
    let views = rows
        .into_iter()
        .map(|r| RejectView {
            line: (!by_index).then_some(r.position),
            index: by_index.then_some(r.position),
            reason: r.reason,
            message: r.message,
            raw: r.raw,
            raw_bytes: r.raw_bytes,
            raw_sha256: r.raw_sha256,
        })
        .collect();
    Ok((headers, Json(views)))
}
