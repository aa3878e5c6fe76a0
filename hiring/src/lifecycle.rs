//! The life of an ingestion, owned by one type: [`Lifecycle`] is the only code that writes
//! `ingestions.status` (docs/architecture.md, "The ingestion lifecycle", has the diagram).
//!
//! Every move is one SQL statement guarded on the state(s) it may come from and, for a step's
//! own moves, on the step's attempt (`… WHERE status = $expected AND attempt = $n RETURNING …`):
//! zero rows back means someone else moved it first (a sweep, another worker, a newer attempt),
//! and the caller gets that as a value it must handle, never as a silent no-op.
//!
//! ```text
//! awaiting_upload ─arrive─▶ queued ─claim─▶ validating ─validated─▶ validated ─claim─▶ running ─loaded─▶ succeeded
//!        │                    │                 │  └─validated (nothing to load)─▶ rejected          │
//!        │                    │                 └─fail (retryable) / abandoned ─▶ retrying ◀─────────┘
//!        │                    │                                                     │ claim (the same step again)
//!        └──────── expire / abandon / give up / fail (final) ──────────────────────▶ failed
//! ```
//!
//! `succeeded`, `rejected` and `failed` are final: nothing moves an ingestion out of them, and
//! only they release a hires ingestion waiting for its upload's departments and jobs.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::pool::PoolConnection;
use sqlx::types::Json;
use sqlx::{PgConnection, PgPool, Postgres};

use crate::error::{Error, Result};
use crate::ingestions::IngestionStatus;
use crate::load::LoadReport;
use crate::pipeline::ValidationReport;
use crate::table::Table;

/// The deadlines of an ingestion's waiting states, all derived from one stage setting: how long
/// the workflow waits for the departments and jobs of a hires file's upload.
///
/// `workflow_wait < upload_expiry < sweep_after`: a hires file gives up waiting before the URLs
/// of its upload expire, and nothing is swept while a file may still arrive or a step may still
/// retry it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadlines {
    /// How long a hires file waits for the departments and jobs of its upload.
    pub workflow_wait: Duration,
}

impl Deadlines {
    /// The deadlines of a stage that sets none: a 30-minute wait, upload URLs valid for an hour,
    /// waiting ingestions closed two hours after their last move.
    pub const DEFAULT: Deadlines = Deadlines::new(Duration::from_secs(30 * 60));

    /// The deadlines for a workflow that waits `workflow_wait`.
    pub const fn new(workflow_wait: Duration) -> Deadlines {
        Deadlines { workflow_wait }
    }

    /// How long a presigned upload URL is valid: twice the wait.
    pub fn upload_expiry(&self) -> Duration {
        self.workflow_wait * 2
    }

    /// How long an ingestion may stay in a waiting state (`awaiting_upload`, `queued`,
    /// `validated`, `retrying`) after its last move before the sweep closes it as failed: four
    /// times the wait, so an upload begun just before its URL expired (S3 checks the signature
    /// when a PUT starts) still lands.
    pub fn sweep_after(&self) -> Duration {
        self.workflow_wait * 4
    }
}

/// A pipeline step, which claims an ingestion for its work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Validation: `queued` (or `retrying` before a validation was stored) → `validating`.
    Validate,
    /// Processing: `validated` (or `retrying` after a validation was stored) → `running`.
    Process,
}

impl Step {
    const fn working(self) -> IngestionStatus {
        match self {
            Step::Validate => IngestionStatus::Validating,
            Step::Process => IngestionStatus::Running,
        }
    }

    const fn waiting(self) -> IngestionStatus {
        match self {
            Step::Validate => IngestionStatus::Queued,
            Step::Process => IngestionStatus::Validated,
        }
    }
}

/// What a claim found.
#[must_use]
#[derive(Debug)]
pub enum Claimed {
    /// The step holds the ingestion; it must end with one of [`Claim`]'s moves.
    Claimed(Claim),
    /// The ingestion is not waiting for this step (another worker moved it on, or it is final).
    Moved(IngestionStatus),
}

/// The ingestion of an object version the pipeline met ([`Lifecycle::arrive`]).
#[derive(Debug, sqlx::FromRow)]
pub struct Arrived {
    /// Its id.
    pub id: i64,
    /// Its state now.
    pub status: IngestionStatus,
    /// The validation's report, once validated (a replayed step answers it again).
    pub validation: Option<Json<ValidationReport>>,
    /// Whether its upload is still storing its other files ([`Lifecycle::announce`]).
    pub held: bool,
}

/// What a guarded move found.
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Moved {
    /// The ingestion moved.
    Moved,
    /// It was not in a state (or attempt) this move starts from: someone else moved it first.
    Lost,
}

/// The one owner of `ingestions.status`.
#[derive(Debug)]
pub struct Lifecycle;

/// The non-final states that wait for something else (a file, a step, a retry): the sweep
/// closes them at their deadline.
const WAITING: [IngestionStatus; 4] =
    [IngestionStatus::AwaitingUpload, IngestionStatus::Queued, IngestionStatus::Validated, IngestionStatus::Retrying];

impl Lifecycle {
    /// Records a file about to be put into the raw zone at `key`: `awaiting_upload`. A file a
    /// client puts itself (a presigned upload) is free to load once it arrives; a file the API
    /// stores as one of several of an upload is `held`: no step claims it until
    /// [`Lifecycle::release`].
    pub async fn announce(
        pool: &PgPool,
        table: Table,
        key: &str,
        source: &str,
        expires_at: DateTime<Utc>,
        upload_id: Option<&str>,
        held: bool,
    ) -> Result<i64> {
        Ok(sqlx::query_scalar(
            "INSERT INTO ingestions (table_name, kind, source, status, object_key, upload_expires_at, upload_id, announced, held)
             VALUES ($1, 'file', $2, $3, $4, $5, $6, true, $7) RETURNING id",
        )
        .bind(table.name())
        .bind(source)
        .bind(IngestionStatus::AwaitingUpload)
        .bind(key)
        .bind(expires_at)
        .bind(upload_id)
        .bind(held)
        .fetch_one(pool)
        .await?)
    }

    /// Every file of a held upload is stored: its steps may claim the ingestions `ids` now, all
    /// of them or none. When one of them already failed (its workflow gave up waiting, or the
    /// sweep closed it), none is released: the others fail with a reason naming it, and its id
    /// is returned.
    pub async fn release(pool: &PgPool, ids: &[i64]) -> Result<Option<i64>> {
        let mut tx = pool.begin().await?;
        // The rows are locked first, so no step or sweep moves one between the check and the move.
        let failed: Option<i64> = sqlx::query_scalar(
            "SELECT id FROM (SELECT id, status FROM ingestions WHERE id = ANY($1) ORDER BY id FOR UPDATE) upload
             WHERE status = $2 ORDER BY id LIMIT 1",
        )
        .bind(ids)
        .bind(IngestionStatus::Failed)
        .fetch_optional(&mut *tx)
        .await?;
        match failed {
            None => {
                sqlx::query(
                    "UPDATE ingestions SET held = false, moved_at = clock_timestamp() WHERE id = ANY($1) AND held",
                )
                .bind(ids)
                .execute(&mut *tx)
                .await?;
            }
            Some(failed) => {
                sqlx::query(
                    "UPDATE ingestions SET status = $3, finished_at = clock_timestamp(), moved_at = clock_timestamp(), error = $2
                     WHERE id = ANY($1) AND held AND status IN ($4, $5)",
                )
                .bind(ids)
                .bind(format!(
                    "ingestion {failed} of the same upload failed before every file was stored, and an upload loads whole \
                     or not at all: send the files again, as a new upload"
                ))
                .bind(IngestionStatus::Failed)
                .bind(IngestionStatus::AwaitingUpload)
                .bind(IngestionStatus::Queued)
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        Ok(failed)
    }

    /// The first complete PUT of an announced file takes it: `awaiting_upload`, not yet
    /// received → received (still `awaiting_upload` until the pipeline meets the object).
    /// [`Moved::Lost`] for every later PUT, or when the ingestion is no longer awaiting.
    pub async fn receive(pool: &PgPool, id: i64) -> Result<Moved> {
        let moved: Option<i64> = sqlx::query_scalar(
            "UPDATE ingestions SET received_at = clock_timestamp(), moved_at = clock_timestamp()
             WHERE id = $1 AND status = $2 AND received_at IS NULL
             RETURNING id",
        )
        .bind(id)
        .bind(IngestionStatus::AwaitingUpload)
        .fetch_optional(pool)
        .await?;
        Ok(if moved.is_some() { Moved::Moved } else { Moved::Lost })
    }

    /// Undoes [`Lifecycle::receive`] when the received file could not be stored, so the client
    /// may put it again.
    pub async fn unreceive(pool: &PgPool, id: i64) -> Result<Moved> {
        let moved: Option<i64> = sqlx::query_scalar(
            "UPDATE ingestions SET received_at = NULL WHERE id = $1 AND status = $2 AND received_at IS NOT NULL
             RETURNING id",
        )
        .bind(id)
        .bind(IngestionStatus::AwaitingUpload)
        .fetch_optional(pool)
        .await?;
        Ok(if moved.is_some() { Moved::Moved } else { Moved::Lost })
    }

    /// `awaiting_upload` (or `queued` and still held: its file was stored, but not the
    /// others) → `failed`: the files of an upload could not be stored. Returns how many moved.
    pub async fn abandon_announced(pool: &PgPool, ids: &[i64], reason: &str) -> Result<u64> {
        Ok(sqlx::query(
            "UPDATE ingestions SET status = $3, finished_at = clock_timestamp(), moved_at = clock_timestamp(), error = $2
             WHERE id = ANY($1) AND (status = $4 OR (held AND status = $5))",
        )
        .bind(ids)
        .bind(reason)
        .bind(IngestionStatus::Failed)
        .bind(IngestionStatus::AwaitingUpload)
        .bind(IngestionStatus::Queued)
        .execute(pool)
        .await?
        .rows_affected())
    }

    /// An object version met by the pipeline: the announced ingestion of its key moves
    /// `awaiting_upload` → `queued`; else the ingestion of this version is found (whatever its
    /// state: a duplicate event of a failed one finds it failed), or recorded `queued`. Sending
    /// a file again after a final failure is a new upload, a new object, a new ingestion.
    pub async fn arrive(pool: &PgPool, table: Table, key: &str, etag: &str, source: &str) -> Result<Arrived> {
        let announced = sqlx::query_as(
            "UPDATE ingestions SET status = $3, object_etag = $2, upload_expires_at = NULL, moved_at = clock_timestamp()
             WHERE id = (SELECT id FROM ingestions WHERE object_key = $1 AND status = $4 ORDER BY id LIMIT 1)
               AND status = $4
             RETURNING id, status, validation, held",
        )
        .bind(key)
        .bind(etag)
        .bind(IngestionStatus::Queued)
        .bind(IngestionStatus::AwaitingUpload)
        .fetch_optional(pool)
        .await;
        match announced {
            Ok(Some(row)) => return Ok(row),
            Ok(None) => {}
            // A concurrent step recorded the same version first: the insert below finds its row.
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {}
            Err(e) => return Err(e.into()),
        }
        // Another version of an announced file (its URL put twice on S3): one announced file,
        // one ingestion.
        let announced: Option<i64> = sqlx::query_scalar(
            "SELECT id FROM ingestions WHERE object_key = $1 AND announced AND object_etag IS DISTINCT FROM $2
             ORDER BY id LIMIT 1",
        )
        .bind(key)
        .bind(etag)
        .fetch_optional(pool)
        .await?;
        if let Some(ingestion) = announced {
            return Err(Error::DuplicateUpload { key: key.to_owned(), ingestion });
        }
        Ok(sqlx::query_as(
            "INSERT INTO ingestions (table_name, kind, source, status, object_key, object_etag)
             VALUES ($1, 'file', $2, $5, $3, $4)
             ON CONFLICT (object_key, object_etag) DO UPDATE SET object_key = EXCLUDED.object_key
             RETURNING id, status, validation, held",
        )
        .bind(table.name())
        .bind(source)
        .bind(key)
        .bind(etag)
        .bind(IngestionStatus::Queued)
        .fetch_one(pool)
        .await?)
    }

    /// Claims ingestion `id` for `step`: locks it (a session advisory lock on a connection of
    /// the claim's own, which a crash frees) and moves it from the step's waiting state, its
    /// working state (a step whose worker died) or `retrying` (a retryable failure of the same
    /// step) to the working state, with a new attempt number. [`Error::Busy`] while another
    /// worker holds it.
    pub async fn claim(pool: &PgPool, id: i64, step: Step) -> Result<Claimed> {
        // In the claim from the start: if this future is dropped while it waits below, the
        // connection (which may hold the lock by then) is closed, never pooled (see Drop).
        let mut claim = Claim { id, step, attempt: 0, connection: Some(pool.acquire().await?) };
        let locked: bool =
            sqlx::query_scalar("SELECT pg_try_advisory_lock($1)").bind(id).fetch_one(&mut **claim.connection()).await?;
        if !locked {
            // Nothing to release: hand the connection back as it is.
            drop(claim.connection.take());
            return Err(Error::Busy(id));
        }
        let claimed: std::result::Result<Option<i32>, sqlx::Error> = sqlx::query_scalar(
            "UPDATE ingestions SET status = $2, attempt = attempt + 1, error = NULL, finished_at = NULL,
                 moved_at = clock_timestamp()
             WHERE id = $1 AND (status = ANY($3) OR (status = $4 AND (validation IS NULL) = $5)) AND NOT held
             RETURNING attempt",
        )
        .bind(id)
        .bind(step.working())
        .bind([step.waiting().as_str(), step.working().as_str()])
        .bind(IngestionStatus::Retrying)
        .bind(step == Step::Validate)
        .fetch_optional(&mut **claim.connection())
        .await;
        match claimed {
            Ok(Some(attempt)) => {
                claim.attempt = attempt;
                Ok(Claimed::Claimed(claim))
            }
            Ok(None) => {
                claim.release().await;
                let status = sqlx::query_scalar("SELECT status FROM ingestions WHERE id = $1")
                    .bind(id)
                    .fetch_optional(pool)
                    .await?
                    .ok_or(Error::IngestionNotFound(id))?;
                Ok(Claimed::Moved(status))
            }
            Err(error) => {
                claim.release().await;
                Err(error.into())
            }
        }
    }

    /// A batch, recorded `running` in the transaction `tx` that loads it (attempt 1).
    pub async fn start_batch(tx: &mut PgConnection, table: Table, source: &str) -> Result<i64> {
        Ok(sqlx::query_scalar(
            "INSERT INTO ingestions (table_name, kind, source, status, attempt) VALUES ($1, 'batch', $2, $3, 1) RETURNING id",
        )
        .bind(table.name())
        .bind(source)
        .bind(IngestionStatus::Running)
        .fetch_one(tx)
        .await?)
    }

    /// `running` → `succeeded` for attempt `attempt`, with the load's counts, in the load's
    /// transaction. [`Error::Interrupted`] when it is no longer that attempt's. The
    /// validation's rejects file stays named (`rejects_key`) only while the load rejected as
    /// many rows (the load's rejects replace the validation's, and only grow fewer as
    /// references arrive): otherwise the file is the validation's record, no longer the
    /// outcome, and the stored rejects are.
    pub(crate) async fn loaded(
        tx: &mut PgConnection,
        attempt: i32,
        report: &LoadReport,
        processed_key: Option<&str>,
    ) -> Result<()> {
        let moved: Option<i64> = sqlx::query_scalar(
            "UPDATE ingestions SET status = $8, finished_at = clock_timestamp(), moved_at = clock_timestamp(),
                 rows = $2, inserted = $3, updated = $4, unchanged = $5, rejected = $6, processed_key = $7,
                 rejects_key = CASE WHEN rejected = $6 THEN rejects_key END
             WHERE id = $1 AND status = $9 AND attempt = $10
             RETURNING id",
        )
        .bind(report.id)
        .bind(report.rows)
        .bind(report.inserted)
        .bind(report.updated)
        .bind(report.unchanged)
        .bind(report.rejected)
        .bind(processed_key)
        .bind(IngestionStatus::Succeeded)
        .bind(IngestionStatus::Running)
        .bind(attempt)
        .fetch_optional(&mut *tx)
        .await?;
        if moved.is_none() {
            return Err(Error::Interrupted(format!(
                "ingestion {} is no longer loaded by attempt {attempt} (it was found abandoned or failed)",
                report.id
            )));
        }
        Ok(())
    }

    /// `validating` → `validated` (some rows can be loaded) or `rejected` (none can: final), for
    /// attempt `attempt`, in the validation's transaction.
    pub(crate) async fn validated(tx: &mut PgConnection, attempt: i32, report: &ValidationReport) -> Result<()> {
        let error = match (report.loadable, report.rows) {
            (true, _) => None,
            (false, 0) => Some("the file holds no data rows: nothing to load".to_owned()),
            (false, rows) => Some(format!(
                "none of the {rows} rows can be loaded: each breaks a rule; see the rejects of ingestion {}",
                report.ingestion
            )),
        };
        let moved: Option<i64> = sqlx::query_scalar(
            "UPDATE ingestions SET validation = $2, rows = $3, rejected = $4, rejects_key = $5,
                 status = CASE WHEN $6 THEN $8 ELSE $9 END,
                 finished_at = CASE WHEN $6 THEN NULL ELSE clock_timestamp() END,
                 moved_at = clock_timestamp(), error = $7
             WHERE id = $1 AND status = $10 AND attempt = $11
             RETURNING id",
        )
        .bind(report.ingestion)
        .bind(Json(report))
        .bind(report.rows)
        .bind(report.rejected)
        .bind(&report.rejects_key)
        .bind(report.loadable)
        .bind(error)
        .bind(IngestionStatus::Validated)
        .bind(IngestionStatus::Rejected)
        .bind(IngestionStatus::Validating)
        .bind(attempt)
        .fetch_optional(&mut *tx)
        .await?;
        if moved.is_none() {
            return Err(Error::Interrupted(format!(
                "ingestion {} is no longer validated by attempt {attempt} (it was found abandoned or failed)",
                report.ingestion
            )));
        }
        Ok(())
    }

    /// `validating`/`running` → `retrying` when no step holds the ingestion any more (its
    /// worker died: the advisory lock a claim holds is free). Returns whether it moved.
    pub async fn abandoned(pool: &PgPool, id: i64) -> Result<Moved> {
        let mut tx = pool.begin().await?;
        let free: bool =
            sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)").bind(id).fetch_one(&mut *tx).await?;
        if !free {
            return Ok(Moved::Lost);
        }
        let moved: Option<i64> = sqlx::query_scalar(
            "UPDATE ingestions SET status = $2, moved_at = clock_timestamp(),
                 error = 'the step stopped before it finished (its process stopped or lost the database); nothing was kept: the workflow retries the step, or send the file again (the sweep ends it failed at its deadline)'
             WHERE id = $1 AND status = ANY($3)
             RETURNING id",
        )
        .bind(id)
        .bind(IngestionStatus::Retrying)
        .bind([IngestionStatus::Validating.as_str(), IngestionStatus::Running.as_str()])
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(if moved.is_some() { Moved::Moved } else { Moved::Lost })
    }

    /// Every step whose worker is gone (its advisory lock is free) → `retrying`. Returns how
    /// many moved.
    pub async fn retry_abandoned(pool: &PgPool) -> Result<u64> {
        let working: Vec<i64> = sqlx::query_scalar("SELECT id FROM ingestions WHERE status = ANY($1)")
            .bind([IngestionStatus::Validating.as_str(), IngestionStatus::Running.as_str()])
            .fetch_all(pool)
            .await?;
        let mut moved = 0;
        for id in working {
            moved += u64::from(Lifecycle::abandoned(pool, id).await? == Moved::Moved);
        }
        Ok(moved)
    }

    /// Any state but a final one → `failed`, for good, with `reason`: the workflow gave up on
    /// the ingestion (its retries ran out, or a step failed in a way no retry mends). A step
    /// still working on it is not interrupted: the move waits for none and is [`Moved::Lost`].
    pub async fn fail(pool: &PgPool, id: i64, reason: &str) -> Result<Moved> {
        let mut tx = pool.begin().await?;
        let free: bool =
            sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)").bind(id).fetch_one(&mut *tx).await?;
        if !free {
            return Ok(Moved::Lost);
        }
        let moved: Option<i64> = sqlx::query_scalar(
            "UPDATE ingestions SET status = $2, error = $3, finished_at = clock_timestamp(), moved_at = clock_timestamp()
             WHERE id = $1 AND NOT (status = ANY($4))
             RETURNING id",
        )
        .bind(id)
        .bind(IngestionStatus::Failed)
        .bind(reason)
        .bind(IngestionStatus::FINAL.map(IngestionStatus::as_str))
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(if moved.is_some() { Moved::Moved } else { Moved::Lost })
    }

    /// The sweep: every ingestion in a waiting state whose deadline passed by `now` (its last
    /// move plus [`Deadlines::sweep_after`]) → `failed`, with a reason naming the state and what
    /// to do. Steps abandoned by their worker are found first (→ `retrying`, whose deadline then
    /// runs). Returns the ids closed.
    pub async fn sweep(pool: &PgPool, now: DateTime<Utc>, deadlines: Deadlines) -> Result<Vec<i64>> {
        Lifecycle::retry_abandoned(pool).await?;
        let after = deadlines.sweep_after().as_secs_f64();
        // The expired ids first, through the waiting states' index; then each is closed on its
        // own, under its advisory lock, so the sweep never locks an ingestion it does not close
        // (a lock taken in the UPDATE's filter would be taken for every row the plan reads).
        let expired: Vec<i64> = sqlx::query_scalar(
            "SELECT id FROM ingestions WHERE status = ANY($1) AND moved_at + make_interval(secs => $2) < $3
             ORDER BY moved_at LIMIT 10000",
        )
        .bind(WAITING.map(IngestionStatus::as_str))
        .bind(after)
        .bind(now)
        .fetch_all(pool)
        .await?;
        let mut closed = Vec::with_capacity(expired.len());
        for id in expired {
            let mut tx = pool.begin().await?;
            let free: bool =
                sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)").bind(id).fetch_one(&mut *tx).await?;
            if !free {
                continue;
            }
            let moved: Option<i64> = sqlx::query_scalar(
                "UPDATE ingestions SET status = $2, finished_at = clock_timestamp(), moved_at = clock_timestamp(),
                     error = 'closed by the sweep: it stayed ' || status || ' past its deadline ('
                         || to_char((moved_at + make_interval(secs => $4)) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')
                         || CASE WHEN status = 'awaiting_upload' THEN '; its file never arrived' ELSE '' END
                         || '): send the file again, as a new upload'
                 WHERE id = $1 AND status = ANY($3) AND moved_at + make_interval(secs => $4) < $5
                 RETURNING id",
            )
            .bind(id)
            .bind(IngestionStatus::Failed)
            .bind(WAITING.map(IngestionStatus::as_str))
            .bind(after)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?;
            tx.commit().await?;
            closed.extend(moved);
        }
        Ok(closed)
    }
}

/// A step's hold on an ingestion (see [`Lifecycle::claim`]): its attempt, and the connection
/// holding the advisory lock, on which the step's transaction runs.
#[derive(Debug)]
pub struct Claim {
    /// The ingestion.
    pub id: i64,
    step: Step,
    /// The attempt this claim made: the step's own moves are guarded on it.
    pub attempt: i32,
    /// The connection holding the lock; taken when the claim ends.
    connection: Option<PoolConnection<Postgres>>,
}

impl Drop for Claim {
    /// A claim dropped before [`Claim::finish`] (its step's task cancelled): the connection that
    /// holds the session lock is closed, not returned to the pool, so the lock goes with it and
    /// the next claim finds the ingestion's worker dead (→ claimable again).
    fn drop(&mut self) {
        if let Some(mut connection) = self.connection.take() {
            tracing::warn!(ingestion = self.id, "a step ended without finishing its claim; its connection is closed");
            connection.close_on_drop();
        }
    }
}

impl Claim {
    /// The connection holding the claim's lock, for the step's own transaction.
    pub fn connection(&mut self) -> &mut PoolConnection<Postgres> {
        self.connection.as_mut().expect("a claim holds its connection until it ends")
    }

    /// Ends the step: on failure the ingestion moves `working` → `retrying` (a retryable error:
    /// the workflow runs the step again) or `failed` (final), guarded on this attempt; then the
    /// lock is released. An injected crash (`crate::faults`) ends the connection instead, as a
    /// dead process would, and moves nothing.
    pub async fn finish<T>(self, pool: &PgPool, result: Result<T>) -> Result<T> {
        match &result {
            Err(Error::Crashed) => {
                let mut claim = self;
                if let Some(connection) = claim.connection.take() {
                    crate::faults::crash(pool, connection).await;
                }
                return result;
            }
            Err(error) => {
                tracing::warn!(ingestion = self.id, %error, retryable = error.is_retryable(), "pipeline step failed");
                let to = if error.is_retryable() { IngestionStatus::Retrying } else { IngestionStatus::Failed };
                let moved = sqlx::query(
                    "UPDATE ingestions SET status = $3, error = $2, moved_at = clock_timestamp(),
                         finished_at = CASE WHEN $3 = 'failed' THEN clock_timestamp() END
                     WHERE id = $1 AND status = $4 AND attempt = $5",
                )
                .bind(self.id)
                .bind(error.to_string())
                .bind(to)
                .bind(self.step.working())
                .bind(self.attempt)
                .execute(pool)
                .await;
                if let Err(e) = moved {
                    // The database is likely gone; the sweep finds the step abandoned (→ retrying).
                    tracing::warn!(ingestion = self.id, error = %e, "could not record the step's failure");
                }
            }
            Ok(_) => {}
        }
        self.release().await;
        result
    }

    async fn release(mut self) {
        // The connection stays in the claim until the lock is released: dropped while it waits,
        // the claim closes it (see Drop).
        let Some(connection) = self.connection.as_mut() else { return };
        let unlocked = sqlx::query("SELECT pg_advisory_unlock($1)").bind(self.id).execute(&mut **connection).await;
        let Some(connection) = self.connection.take() else { return };
        if unlocked.is_err() {
            // Never return a connection that may still hold the lock to the pool.
            connection.detach();
        }
    }
}
