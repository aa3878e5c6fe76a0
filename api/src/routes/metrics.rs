//! `GET /metrics/hires` and `GET /metrics/departments`, as JSON or CSV.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::state::AppState;

/// The query of both metrics.
#[derive(Debug, Deserialize)]
pub struct MetricQuery {
    /// The UTC calendar year (default 2021).
    pub year: Option<String>,
    /// `json` or `csv`; otherwise `Accept: text/csv` selects CSV.
    pub format: Option<String>,
}

impl MetricQuery {
    fn year(&self) -> Result<i32, ApiError> {
        let Some(text) = &self.year else { return Ok(2021) };
        match text.parse::<i32>() {
            Ok(year) if (1..=9999).contains(&year) => Ok(year),
            _ => Err(ApiError::bad_request("invalid_year", format!("year `{text}` is not a year between 1 and 9999"))),
        }
    }

    fn wants_csv(&self, headers: &HeaderMap) -> Result<bool, ApiError> {
        match self.format.as_deref() {
            Some("csv") => Ok(true),
            Some("json") => Ok(false),
            Some(other) => Err(ApiError::bad_request("invalid_format", format!("format `{other}` is not json or csv"))),
            None => Ok(headers
                .get(header::ACCEPT)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|accept| accept.contains("text/csv"))),
        }
    }
}

/// Hires per department and job, by quarter, for a year.
pub async fn hires(
    state: State<AppState>,
    query: Query<MetricQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let columns = ["department", "job", "Q1", "Q2", "Q3", "Q4"];
    serve(state, query, headers, "hires", &columns, |pool, year| async move {
        hiring::metrics::hires_by_quarter(&pool, year).await
    })
    .await
}

/// Departments that hired more than the mean in a year.
pub async fn departments(
    state: State<AppState>,
    query: Query<MetricQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    serve(state, query, headers, "departments", &["id", "department", "hired"], |pool, year| async move {
        hiring::metrics::departments_above_mean(&pool, year).await
    })
    .await
}

/// Answers a metric for the requested year, from the cache when it may, as JSON or CSV.
async fn serve<T, F, Fut>(
    State(state): State<AppState>,
    Query(query): Query<MetricQuery>,
    headers: HeaderMap,
    metric: &'static str,
    columns: &[&str],
    compute: F,
) -> Result<Response, ApiError>
where
    T: Serialize + Send + Sync + 'static,
    F: FnOnce(sqlx::PgPool, i32) -> Fut,
    Fut: Future<Output = hiring::error::Result<Vec<T>>>,
{
    let year = query.year()?;
    let csv = query.wants_csv(&headers)?;
    let rows = state
        .metrics_cache
        .get_or_compute(metric, year, wants_fresh(&headers), compute(state.pool.clone(), year))
        .await?;
    respond(&rows, columns, csv)
}

/// `Cache-Control: no-cache` asks for a result computed now rather than a cached one.
fn wants_fresh(headers: &HeaderMap) -> bool {
    headers.get_all(header::CACHE_CONTROL).iter().any(|v| v.to_str().is_ok_and(|v| v.contains("no-cache")))
}

fn respond<T: Serialize>(rows: &[T], columns: &[&str], csv: bool) -> Result<Response, ApiError> {
    if !csv {
        return Ok(Json(rows).into_response());
    }
    let mut writer = csv::WriterBuilder::new().has_headers(false).from_writer(Vec::new());
    writer
        .write_record(columns)
        .and_then(|()| rows.iter().try_for_each(|row| writer.serialize(row)))
        .map_err(|e| ApiError::Internal(e.into()))?;
    let body = writer.into_inner().map_err(|e| ApiError::Internal(anyhow::anyhow!("{e}")))?;
    Ok(([(header::CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8"))], body).into_response())
}
