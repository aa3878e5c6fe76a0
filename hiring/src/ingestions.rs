//! Reading ingestions and their rejects, and closing ingestions abandoned by a crash.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;

use crate::error::{Error, Result};

/// Where an ingestion is in its life.
///
/// A file goes `queued` → `validating` → `validated` (or `rejected`: nothing in it can be
/// loaded) → `running` → `succeeded`. A step that fails leaves it `failed`, from which the
/// same step may run again; a step whose worker died is found by its free advisory lock and
/// taken over (`validating` → `validating`, `running` → `running`) or marked `failed`. A batch
/// is recorded `running` and ends `succeeded` in the same transaction. [`Self::can_become`]
/// holds these moves; the steps claim an ingestion only along them.
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
    /// Validated, with nothing to load (every row broke a rule, or there were none).
    Rejected,
    /// Being loaded (a file's process step, or a batch).
    Running,
    /// Loaded.
    Succeeded,
    /// A step failed or its worker died; nothing of that step was kept.
    Failed,
}

impl IngestionStatus {
    /// Every status, in the order of the life above.
    pub const ALL: [IngestionStatus; 8] = [
        IngestionStatus::AwaitingUpload,
        IngestionStatus::Queued,
        IngestionStatus::Validating,
        IngestionStatus::Validated,
        IngestionStatus::Rejected,
        IngestionStatus::Running,
        IngestionStatus::Succeeded,
        IngestionStatus::Failed,
    ];

    /// The name stored in `ingestions.status` and shown in reports.
    pub const fn as_str(self) -> &'static str {
        match self {
            IngestionStatus::AwaitingUpload => "awaiting_upload",
            IngestionStatus::Queued => "queued",
            IngestionStatus::Validating => "validating",
            IngestionStatus::Validated => "validated",
            IngestionStatus::Rejected => "rejected",
            IngestionStatus::Running => "running",
            IngestionStatus::Succeeded => "succeeded",
            IngestionStatus::Failed => "failed",
        }
    }

    /// A step is working on it, or was when its worker died.
    pub const fn in_progress(self) -> bool {
        matches!(self, IngestionStatus::Validating | IngestionStatus::Running)
    }

    /// Whether an ingestion may move from this status to `next`.
    pub const fn can_become(self, next: IngestionStatus) -> bool {
        use IngestionStatus::*;
        matches!(
            (self, next),
            (Queued | Validating | Failed, Validating)
                | (Validating, Validated | Rejected | Failed)
                | (Validated | Running | Failed, Running)
                | (Running, Succeeded | Failed)
        )
    }

    /// The statuses an ingestion may be claimed from to move it to `to`, as stored.
    pub fn sources(to: IngestionStatus) -> Vec<&'static str> {
        IngestionStatus::ALL.into_iter().filter(|from| from.can_become(to)).map(IngestionStatus::as_str).collect()
    }

    /// The statuses of work in progress, as stored.
    pub fn in_progress_names() -> Vec<&'static str> {
        IngestionStatus::ALL.into_iter().filter(|status| status.in_progress()).map(IngestionStatus::as_str).collect()
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
    if ingestion.status.in_progress() && fail_if_abandoned(pool, id).await? {
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

/// Marks failed every running ingestion whose load is gone (its process died): a live load
/// holds its ingestion's advisory lock from the moment the ingestion is recorded. Returns how many were marked.
pub async fn fail_abandoned(pool: &PgPool) -> Result<u64> {
    fail_expired_uploads(pool).await?;
    let running: Vec<i64> = sqlx::query_scalar(
        "SELECT id FROM ingestions WHERE status = ANY($1) AND started_at < now() - interval '5 seconds'",
    )
    .bind(IngestionStatus::in_progress_names())
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
        "UPDATE ingestions SET status = $2, finished_at = clock_timestamp(),
             error = 'the step stopped before it finished (its process stopped or lost the database); nothing was kept: run the step again, or upload the file again'
         WHERE id = $1 AND status = ANY($3)",
    )
    .bind(id)
    .bind(IngestionStatus::Failed)
    .bind(IngestionStatus::in_progress_names())
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

/// How long after its URL expired a presigned upload may still arrive: S3 checks the signature
/// when a PUT starts, so a large file begun just before the expiry lands later.
pub const UPLOAD_GRACE: std::time::Duration = std::time::Duration::from_secs(3600);

/// Marks failed the presigned uploads whose file did not arrive within their URL's life and
/// [`UPLOAD_GRACE`]; returns how many.
pub async fn fail_expired_uploads(pool: &PgPool) -> Result<u64> {
    let failed = sqlx::query(
        "UPDATE ingestions SET status = $1, finished_at = clock_timestamp(),
             error = 'the file was not put before its upload URL expired: ask POST /uploads for a new one'
         WHERE status = $2 AND upload_expires_at < now() - make_interval(secs => $3)",
    )
    .bind(IngestionStatus::Failed)
    .bind(IngestionStatus::AwaitingUpload)
    .bind(UPLOAD_GRACE.as_secs_f64())
    .execute(pool)
    .await?;
    Ok(failed.rows_affected())
}

#[cfg(test)]
mod tests {
    use super::IngestionStatus::{self, *};

    #[test]
    fn the_life_of_a_file_is_a_chain_of_legal_moves() {
        for pair in [Queued, Validating, Validated, Running, Succeeded].windows(2) {
            assert!(pair[0].can_become(pair[1]), "{} → {}", pair[0], pair[1]);
        }
        assert!(Validating.can_become(Rejected));
        assert!(Running.can_become(Failed) && Failed.can_become(Running), "a failed load may run again");
    }

    #[test]
    fn finished_ingestions_stay_finished() {
        for status in IngestionStatus::ALL {
            assert!(!Succeeded.can_become(status), "succeeded → {status}");
            assert!(!Rejected.can_become(status), "rejected → {status}");
        }
        assert!(!Queued.can_become(Running), "nothing is loaded unvalidated");
        assert!(!Validating.can_become(Running));
    }

    #[test]
    fn steps_claim_from_their_predecessor_their_own_status_and_failed() {
        assert_eq!(IngestionStatus::sources(Validating), ["queued", "validating", "failed"]);
        assert_eq!(IngestionStatus::sources(Running), ["validated", "running", "failed"]);
        assert_eq!(IngestionStatus::in_progress_names(), ["validating", "running"]);
    }

    #[test]
    fn the_names_are_the_serialized_ones() {
        for status in IngestionStatus::ALL {
            assert_eq!(serde_json::to_value(status).unwrap(), status.as_str());
        }
    }
}
