//! `GET /metrics/hires` and `GET /metrics/departments`, as JSON or CSV.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::ApiQuery;
use crate::error::ApiError;
use crate::state::AppState;

/// The query of both metrics.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MetricQuery {
    /// The UTC calendar year, 1 to 9999 (default 2021).
    #[param(value_type = Option<i32>, minimum = 1, maximum = 9999, example = 2021)]
    pub year: Option<String>,
    /// `json` or `csv`; otherwise `Accept: text/csv` selects CSV.
    #[param(value_type = Option<Format>)]
    pub format: Option<String>,
}

/// The answer's format.
#[derive(Debug, utoipa::ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum Format {
    /// JSON (the default).
    Json,
    /// CSV with a header line.
    Csv,
}

/// Parses a `year` parameter: a UTC calendar year between 1 and 9999.
pub fn parse_year(text: &str) -> Result<i32, ApiError> {
    match text.parse::<i32>() {
        Ok(year) if (1..=9999).contains(&year) => Ok(year),
        _ => Err(ApiError::bad_request("invalid_year", format!("year `{text}` is not a year between 1 and 9999"))),
    }
}

impl MetricQuery {
    fn year(&self) -> Result<i32, ApiError> {
        self.year.as_deref().map_or(Ok(2021), parse_year)
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

/// Hires per department and job, by quarter, for a year: one row per (department, job) with
/// at least one hire, ordered by department then job.
#[utoipa::path(
    get,
    path = "/metrics/hires",
    tag = "metrics",
    params(MetricQuery),
    responses(
        (status = 200, description = "The rows", content(
            (Vec<hiring::metrics::QuarterlyHires> = "application/json"),
            (String = "text/csv", example = "department,job,Q1,Q2,Q3,Q4\nStaff,Recruiter,3,0,7,11\n"),
        )),
        (status = 400, description = "A bad year or format", body = crate::openapi::ErrorBody),
        (status = 503, description = "The database is unavailable", body = crate::openapi::ErrorBody),
    )
)]
pub async fn hires(
    state: State<AppState>,
    query: ApiQuery<MetricQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let columns = ["department", "job", "Q1", "Q2", "Q3", "Q4"];
    serve(state, query, headers, "hires", &columns, |pool, year| async move {
        hiring::metrics::hires_by_quarter(&pool, year).await
    })
    .await
}

/// Departments that hired more than the mean (the year's hires over the number of
/// departments) in a year, by hires descending.
#[utoipa::path(
    get,
    path = "/metrics/departments",
    tag = "metrics",
    params(MetricQuery),
    responses(
        (status = 200, description = "The departments", content(
            (Vec<hiring::metrics::DepartmentHires> = "application/json"),
            (String = "text/csv", example = "id,department,hired\n8,Support,221\n"),
        )),
        (status = 400, description = "A bad year or format", body = crate::openapi::ErrorBody),
        (status = 503, description = "The database is unavailable", body = crate::openapi::ErrorBody),
    )
)]
pub async fn departments(
    state: State<AppState>,
    query: ApiQuery<MetricQuery>,
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
    ApiQuery(query): ApiQuery<MetricQuery>,
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
    // The CSV has the contract's columns, taken from each row by name (the JSON also carries
    // the ids the rows are keyed by).
    let mut writer = csv::WriterBuilder::new().has_headers(false).from_writer(Vec::new());
    writer.write_record(columns).map_err(|e| ApiError::Internal(e.into()))?;
    for row in rows {
        let row = serde_json::to_value(row).map_err(|e| ApiError::Internal(e.into()))?;
        let cells = columns.iter().map(|column| match &row[*column] {
            serde_json::Value::String(text) => text.clone(),
            other => other.to_string(),
        });
        writer.write_record(cells).map_err(|e| ApiError::Internal(e.into()))?;
    }
    let serialized = writer.into_inner().map_err(|e| ApiError::Internal(anyhow::anyhow!("{e}")))?;
    let body = neutralized(&serialized).map_err(|e| ApiError::Internal(e.into()))?;
    Ok(([(header::CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8"))], body).into_response())
}

/// The CSV with every cell a spreadsheet would run as a formula made text: a cell beginning
/// with `=`, `+`, `-`, `@`, a tab or a carriage return gets a leading `'`, as OWASP recommends
/// (https://owasp.org/www-community/attacks/CSV_Injection). A department named
/// `=HYPERLINK(…)` is then shown, not followed. JSON answers stay verbatim.
fn neutralized(csv_text: &[u8]) -> csv::Result<Vec<u8>> {
    let mut reader = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(csv_text);
    let mut writer = csv::WriterBuilder::new().has_headers(false).from_writer(Vec::with_capacity(csv_text.len()));
    for record in reader.records() {
        let record = record?;
        let cells = record.iter().map(|cell| {
            if cell.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{cell}") } else { cell.to_owned() }
        });
        writer.write_record(cells)?;
    }
    writer.into_inner().map_err(|e| csv::Error::from(e.into_error()))
}
