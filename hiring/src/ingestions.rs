//! Reading ingestions and their rejects, and closing ingestions abandoned by a crash.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;

use crate::error::{Error, Result};
use crate::lifecycle::{Lifecycle, Moved};

/// Where an ingestion is in its life (see [`crate::lifecycle`], the only code that moves it).
///
/// A file goes `awaiting_upload` (a presigned upload) → `queued` → `validating` → `validated`
/// → `running` → `succeeded`; a validation with nothing to load ends `rejected`. A step that
/// fails on a retryable error, or whose worker died, leaves it `retrying` until the same step
/// runs again; a final failure, or a deadline passed, ends it `failed`. A batch is recorded
/// `running` and ends `succeeded` in the same transaction. `succeeded`, `rejected` and `failed`
/// are final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, sqlx::Type)]
#[sqlx(type_name = "text", rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum IngestionStatus {
    /// Announced by a presigned upload (`POST /uploads`); its file is not in the raw zone yet.
    AwaitingUpload,
    /// Recorded, not yet validated.
    Queued,
    /// Being validated.
    Validating,
    /// Validated, with rows to load.
    Validated,
    /// Validated, with nothing to load (every row broke a rule, or there were none). Final.
    Rejected,
    /// Being loaded (a file's process step, or a batch).
    Running,
    /// A step failed on a retryable error or its worker died; nothing of that step was kept, and
    /// the same step runs again (the workflow's retry, or the sweep's deadline ends it failed).
    Retrying,
    /// Loaded. Final.
    Succeeded,
    /// Failed for good: a final error, the workflow gave up, or a deadline passed (`error`
    /// says which, and what to do). Final: sending the file again starts a new ingestion.
    Failed,
}

impl IngestionStatus {
    /// Every status, in the order of the life above.
    pub const ALL: [IngestionStatus; 9] = [
        IngestionStatus::AwaitingUpload,
        IngestionStatus::Queued,
        IngestionStatus::Validating,
        IngestionStatus::Validated,
        IngestionStatus::Rejected,
        IngestionStatus::Running,
        IngestionStatus::Retrying,
        IngestionStatus::Succeeded,
        IngestionStatus::Failed,
    ];

    /// The final statuses: nothing moves an ingestion out of them.
    pub const FINAL: [IngestionStatus; 3] =
        [IngestionStatus::Succeeded, IngestionStatus::Rejected, IngestionStatus::Failed];

    /// The name stored in `ingestions.status` and shown in reports.
    pub const fn as_str(self) -> &'static str {
        match self {
            IngestionStatus::AwaitingUpload => "awaiting_upload",
            IngestionStatus::Queued => "queued",
            IngestionStatus::Validating => "validating",
            IngestionStatus::Validated => "validated",
            IngestionStatus::Rejected => "rejected",
            IngestionStatus::Running => "running",
            IngestionStatus::Retrying => "retrying",
            IngestionStatus::Succeeded => "succeeded",
            IngestionStatus::Failed => "failed",
        }
    }

    /// A step is working on it, or was when its worker died.
    pub const fn in_progress(self) -> bool {
        matches!(self, IngestionStatus::Validating | IngestionStatus::Running)
    }

    /// Nothing moves it any more.
    pub const fn is_final(self) -> bool {
        matches!(self, IngestionStatus::Succeeded | IngestionStatus::Rejected | IngestionStatus::Failed)
    }
}

impl std::fmt::Display for IngestionStatus {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(self.as_str())
    }
}

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
    /// Where it is (see [`IngestionStatus`]).
    pub status: IngestionStatus,
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
    /// The row as received: all of it, or its first 4 KiB when `raw_sha256` is set.
    pub raw: String,
    /// The row's length in bytes (absent for rows rejected before it was recorded).
    pub raw_bytes: Option<i64>,
    /// The SHA-256 of the whole row, in hex, when `raw` holds only its beginning.
    pub raw_sha256: Option<String>,
}

/// One ingestion; abandoned running ones are reported failed.
pub async fn get(pool: &PgPool, id: i64) -> Result<Ingestion> {
    let ingestion = fetch(pool, id).await?;
    if ingestion.status.in_progress() && Lifecycle::abandoned(pool, id).await? == Moved::Moved {
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
        "SELECT position, reason, message, raw, raw_bytes, encode(raw_sha256, 'hex') AS raw_sha256 FROM rejects
         WHERE ingestion_id = $1 AND position > $2 ORDER BY position LIMIT $3",
    )
    .bind(id)
    .bind(after.unwrap_or(i64::MIN))
    .bind(limit)
    .fetch_all(pool)
    .await?)
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

#[cfg(test)]
mod tests {
    use super::IngestionStatus;

    #[test]
    fn the_names_are_the_serialized_ones() {
        for status in IngestionStatus::ALL {
            assert_eq!(serde_json::to_value(status).unwrap(), status.as_str());
            assert_eq!(status.is_final(), IngestionStatus::FINAL.contains(&status), "{status}");
        }
    }
}
