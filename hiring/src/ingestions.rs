//! Reading ingestions and their rejects, and closing ingestions abandoned by a crash.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;

use crate::error::{Error, Result};

/// A load, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Ingestion {
    /// The ingestion id.
    pub id: i64,
    /// The table loaded.
    #[sqlx(rename = "table_name")]
    #[serde(rename = "table")]
    pub table: String,
    /// `file` or `batch`.
    pub kind: String,
    /// Where the rows came from (an upload's file name and stored path, or the batch endpoint).
    pub source: String,
    /// Where it is: `queued`, `validating`, `validated`, `rejected` (validated, nothing to load),
    /// `running` (loading), `succeeded` or `failed`. Batches are `running` until they end.
    pub status: String,
    /// When the load started.
    pub started_at: DateTime<Utc>,
    /// When it ended, if it did.
    pub finished_at: Option<DateTime<Utc>>,
    /// Rows read.
    pub rows: i64,
    /// Rows inserted.
    pub inserted: i64,
    /// Rows that replaced a different row.
    pub updated: i64,
    /// Rows identical to the stored row.
    pub unchanged: i64,
    /// Rows rejected.
    pub rejected: i64,
    /// Why it failed, or why nothing was loaded.
    pub error: Option<String>,
    /// The object of the raw zone a file ingestion reads.
    pub object_key: Option<String>,
    /// That object's version (ETag).
    pub object_etag: Option<String>,
    /// The validation report, once validated (see `hiring::pipeline::ValidationReport`).
    pub validation: Option<serde_json::Value>,
    /// The JSON-lines rejects file in the rejects zone.
    pub rejects_key: Option<String>,
    /// The Parquet file of accepted rows in the processed zone.
    pub processed_key: Option<String>,
}

/// A stored reject.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct StoredReject {
    /// The 1-based line (files) or 0-based index (batches).
    pub position: i64,
    /// The stable reason code.
    pub reason: String,
    /// What is wrong.
    pub message: String,
    /// The row as received.
    pub raw: String,
}

/// One ingestion; abandoned running ones are reported failed.
pub async fn get(pool: &PgPool, id: i64) -> Result<Ingestion> {
    let ingestion = fetch(pool, id).await?;
    if matches!(ingestion.status.as_str(), "validating" | "running") && fail_if_abandoned(pool, id).await? {
        return fetch(pool, id).await;
    }
    Ok(ingestion)
}

async fn fetch(pool: &PgPool, id: i64) -> Result<Ingestion> {
    sqlx::query_as("SELECT * FROM ingestions WHERE id = $1")
        .bind(id)
        .fetch_optional(pool)
        .await?
        .ok_or(Error::IngestionNotFound(id))
}

/// The latest ingestions, newest first.
pub async fn latest(pool: &PgPool, limit: i64) -> Result<Vec<Ingestion>> {
    Ok(sqlx::query_as("SELECT * FROM ingestions ORDER BY id DESC LIMIT $1").bind(limit).fetch_all(pool).await?)
}

/// A page of an ingestion's rejects, in position order, after the position `after`.
pub async fn rejects(pool: &PgPool, id: i64, after: Option<i64>, limit: i64) -> Result<Vec<StoredReject>> {
    fetch(pool, id).await?;
    Ok(sqlx::query_as(
        "SELECT position, reason, message, raw FROM rejects
         WHERE ingestion_id = $1 AND position > $2 ORDER BY position LIMIT $3",
    )
    .bind(id)
    .bind(after.unwrap_or(i64::MIN))
    .bind(limit)
    .fetch_all(pool)
    .await?)
}

/// Marks failed every running ingestion whose load is gone (its process died): a live load
/// holds its ingestion's advisory lock from the moment the ingestion is recorded. Returns how many were marked.
pub async fn fail_abandoned(pool: &PgPool) -> Result<u64> {
    let running: Vec<i64> = sqlx::query_scalar(
        "SELECT id FROM ingestions WHERE status IN ('validating', 'running') AND started_at < now() - interval '5 seconds'",
    )
    .fetch_all(pool)
    .await?;
    let mut failed = 0;
    for id in running {
        failed += u64::from(fail_if_abandoned(pool, id).await?);
    }
    Ok(failed)
}

async fn fail_if_abandoned(pool: &PgPool, id: i64) -> Result<bool> {
    let mut tx = pool.begin().await?;
    let free: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)").bind(id).fetch_one(&mut *tx).await?;
    if !free {
        return Ok(false);
    }
    let marked = sqlx::query(
        "UPDATE ingestions SET status = 'failed', finished_at = clock_timestamp(),
             error = 'the step stopped before it finished (its process stopped or lost the database); nothing was kept: run the step again, or upload the file again'
         WHERE id = $1 AND status IN ('validating', 'running')",
    )
    .bind(id)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(marked.rows_affected() == 1)
}

/// How many rows of an ingestion were rejected for one reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct RejectCount {
    /// The ingestion.
    pub ingestion_id: i64,
    /// The stable reason code.
    pub reason: String,
    /// Rows rejected for it.
    pub count: i64,
}

/// The reject counts by reason of the ingestions `ids`, by ingestion then reason.
pub async fn reject_counts(pool: &PgPool, ids: &[i64]) -> Result<Vec<RejectCount>> {
    Ok(sqlx::query_as(
        "SELECT ingestion_id, reason, count(*) AS count FROM rejects
         WHERE ingestion_id = ANY($1) GROUP BY ingestion_id, reason ORDER BY ingestion_id, reason",
    )
    .bind(ids)
    .fetch_all(pool)
    .await?)
}
