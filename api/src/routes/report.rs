//! `GET /`: the visual report (server-rendered HTML and SVG; no JavaScript).

use askama::Template;
use axum::extract::{Query, State};
use axum::response::Html;
use serde::Deserialize;

use crate::error::ApiError;
use crate::report::{ReportData, ReportPage};
use crate::state::AppState;

/// The query of the report.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReportQuery {
    /// The UTC calendar year (default: 2021 when it has hires, else the latest year with hires).
    #[param(example = "2021")]
    pub year: Option<String>,
}

/// How many ingestions the data-quality panel lists.
const LATEST_INGESTIONS: i64 = 12;

/// The report for a year: hires by department stacked by quarter, the department × job table,
/// the departments above the mean with the mean drawn, and, to a reader with a read token, the
/// latest loads with their rejects (a public report shows aggregates only).
#[utoipa::path(
    get,
    path = "/",
    tag = "report",
    params(ReportQuery),
    responses(
        (status = 200, description = "The report, as HTML with SVG charts", content_type = "text/html"),
        (status = 400, description = "The year is not a year", body = crate::openapi::ErrorBody),
        (status = 503, description = "The database is unavailable", body = crate::openapi::ErrorBody),
    )
)]
pub async fn report(
    State(state): State<AppState>,
    Query(query): Query<ReportQuery>,
    headers: axum::http::HeaderMap,
) -> Result<Html<String>, ApiError> {
    let pool = &state.pool;
    let cache = &state.metrics_cache;
    // The aggregates come from the metrics cache, as the metric endpoints' do (keyed alike, so
    // one computation serves both); the latest loads only to a reader with a token.
    let years = cache.get_or_compute("years", 0, false, hiring::metrics::years(pool)).await?;
    let year = match query.year.as_deref() {
        Some(text) => super::metrics::parse_year(text)?,
        None if years.is_empty() || years.contains(&2021) => 2021,
        None => years[0],
    };
    let hires = cache.get_or_compute("hires", year, false, hiring::metrics::hires_by_quarter(pool, year)).await?;
    let above =
        cache.get_or_compute("departments", year, false, hiring::metrics::departments_above_mean(pool, year)).await?;
    let totals = *cache.get_or_compute("totals", year, false, hiring::metrics::year_totals(pool, year)).await?;
    let (ingestions, counts) = if crate::auth::presents_a_token(&state, &headers) {
        let ingestions = hiring::ingestions::latest(pool, LATEST_INGESTIONS).await?;
        let ids: Vec<i64> = ingestions.iter().map(|i| i.id).collect();
        let counts = hiring::ingestions::reject_counts(pool, &ids).await?;
        (Some(ingestions), counts)
    } else {
        (None, Vec::new())
    };
    let departments = totals.departments;
    let page = ReportPage::new(ReportData {
        year,
        years: years.as_ref().clone(),
        hires: hires.as_ref().clone(),
        above: above.as_ref().clone(),
        totals,
        ingestions,
        counts,
        departments,
    });
    Ok(Html(page.render().map_err(|e| ApiError::Internal(e.into()))?))
}
