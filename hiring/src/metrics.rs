//! The two metrics, read from the `hires_rollup` deltas that every load appends to in its own
//! transaction (see the migration), and the compaction that keeps those deltas few.
//!
//! Years are UTC calendar years and quarters UTC months, which is the same as filtering hires
//! on the half-open range `>= 'Y-01-01' AND < 'Y+1-01-01'` in UTC.

use serde::Serialize;
use sqlx::PgPool;

use crate::error::Result;

/// The channel every load notifies (`NOTIFY`, delivered at commit) when it changed data, so
/// readers holding derived results (caches) know to drop them.
pub const CHANGES_CHANNEL: &str = "hiring_data_changed";

/// Tells every API instance (on [`CHANGES_CHANNEL`]) that `table` changed, once and only if the
/// transaction `tx` commits; each then drops its cached metrics.
pub async fn announce_change(tx: &mut sqlx::PgConnection, table: crate::table::Table) -> Result<()> {
    sqlx::query("SELECT pg_notify($1, $2)").bind(CHANGES_CHANNEL).bind(table.name()).execute(tx).await?;
    Ok(())
}

/// Hires of one (department, job) pair in one year, by quarter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct QuarterlyHires {
    /// The department's id: rows are keyed by ids (two departments may share a name).
    pub department_id: i32,
    /// The department's name.
    pub department: String,
    /// The job's id.
    pub job_id: i32,
    /// The job's name.
    pub job: String,
    /// Hires in January to March.
    #[serde(rename = "Q1")]
    pub q1: i64,
    /// Hires in April to June.
    #[serde(rename = "Q2")]
    pub q2: i64,
    /// Hires in July to September.
    #[serde(rename = "Q3")]
    pub q3: i64,
    /// Hires in October to December.
    #[serde(rename = "Q4")]
    pub q4: i64,
}

/// A department that hired more than the mean in a year.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DepartmentHires {
    /// The department id.
    pub id: i32,
    /// The department's name.
    pub department: String,
    /// Its hires that year.
    pub hired: i64,
}

/// One row per (department, job) pair with at least one hire in `year`, ordered by department
/// then job in byte order.
///
/// The rows are sorted here, not by PostgreSQL: for the 2,400 pairs of the generated data, its
/// sort on two `COLLATE "C"` texts was 2 ms of the query's 4.5 ms (`EXPLAIN ANALYZE`, issue 17);
/// comparing the UTF-8 bytes is the same order (byte order is code point order) and takes
/// microseconds.
pub async fn hires_by_quarter(pool: &PgPool, year: i32) -> Result<Vec<QuarterlyHires>> {
    let mut rows: Vec<QuarterlyHires> = sqlx::query_as(
        r#"SELECT d.id AS department_id, j.id AS job_id, d.department, j.job, r.q1, r.q2, r.q3, r.q4
           FROM (
               SELECT department_id, job_id, sum(q1) AS q1, sum(q2) AS q2, sum(q3) AS q3, sum(q4) AS q4
               FROM hires_rollup WHERE year = $1
               GROUP BY department_id, job_id
           ) AS r
           JOIN departments d ON d.id = r.department_id
           JOIN jobs j ON j.id = r.job_id
           WHERE r.q1 + r.q2 + r.q3 + r.q4 > 0"#,
    )
    .bind(year)
    .fetch_all(pool)
    .await?;
    // Names in byte order, the ids breaking ties between equal names.
    rows.sort_unstable_by(|a, b| {
        (a.department.as_bytes(), a.job.as_bytes(), a.department_id, a.job_id).cmp(&(
            b.department.as_bytes(),
            b.job.as_bytes(),
            b.department_id,
            b.job_id,
        ))
    });
    Ok(rows)
}

/// The departments whose hires in `year` exceed the mean (the year's hires divided by the
/// number of departments in the table), by hires descending, then id.
pub async fn departments_above_mean(pool: &PgPool, year: i32) -> Result<Vec<DepartmentHires>> {
    // `hired * departments > total` is `hired > total / departments` without rounding.
    Ok(sqlx::query_as(
        "WITH per_department AS (
             SELECT department_id, sum(q1 + q2 + q3 + q4)::bigint AS hired
             FROM hires_rollup WHERE year = $1
             GROUP BY department_id
         ),
         totals AS (
             SELECT (SELECT coalesce(sum(hired), 0) FROM per_department) AS hires,
                    (SELECT count(*) FROM departments) AS departments
         )
         SELECT d.id, d.department, p.hired
         FROM per_department p
         JOIN departments d ON d.id = p.department_id
         CROSS JOIN totals t
         WHERE p.hired * t.departments > t.hires
         ORDER BY p.hired DESC, d.id",
    )
    .bind(year)
    .fetch_all(pool)
    .await?)
}

/// Folds the rollup's deltas into one row per key. Safe to run at any time, concurrently with
/// loads and reads; the API runs it periodically and after each file load.
pub async fn compact_rollup(pool: &PgPool) -> Result<()> {
    sqlx::query("SELECT hires_rollup_compact()").execute(pool).await?;
    Ok(())
}

/// A year's hires and the number of departments, whose ratio is the mean that
/// [`departments_above_mean`] compares with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::FromRow)]
pub struct YearTotals {
    /// Hires in the year.
    pub hires: i64,
    /// Departments in the table (hiring or not).
    pub departments: i64,
}

impl YearTotals {
    /// Hires per department (0 without departments).
    pub fn mean(&self) -> f64 {
        if self.departments == 0 { 0.0 } else { self.hires as f64 / self.departments as f64 }
    }
}

/// The totals of `year`.
pub async fn year_totals(pool: &PgPool, year: i32) -> Result<YearTotals> {
    Ok(sqlx::query_as(
        "SELECT (SELECT coalesce(sum(q1 + q2 + q3 + q4), 0)::bigint FROM hires_rollup WHERE year = $1) AS hires,
                (SELECT count(*) FROM departments) AS departments",
    )
    .bind(year)
    .fetch_one(pool)
    .await?)
}

/// The years with at least one hire, newest first.
pub async fn years(pool: &PgPool) -> Result<Vec<i32>> {
    Ok(sqlx::query_scalar(
        "SELECT year FROM hires_rollup GROUP BY year HAVING sum(q1 + q2 + q3 + q4) > 0 ORDER BY year DESC",
    )
    .fetch_all(pool)
    .await?)
}
