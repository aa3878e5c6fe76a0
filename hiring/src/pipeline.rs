//! The pipeline's two steps over an object of the raw zone: [`validate`], then [`process`].
//!
//! The API (inline mode) and the Lambda functions (run by the Step Functions state machine)
//! call these same functions, so a file goes through the same code wherever it lands.
//!
//! - **validate** reads the object once, checks every row against the rules (and the stored
//!   departments and jobs), stores the rejects (in PostgreSQL and as one JSON-lines file per
//!   ingestion in the rejects zone, `<table>/<ingestion id>.jsonl`) and records a
//!   [`ValidationReport`]: rows, accepted, rejected, counts by reason, and the decision
//!   (`loadable`: at least one row can be loaded).
//! - **process** loads a validated object into PostgreSQL in one transaction (see
//!   [`crate::load`]) and writes its accepted rows to the processed zone as Parquet, at
//!   `<table>/ingest_date=YYYY-MM-DD/<ingestion id>.parquet`, before the commit.
//!
//! **Idempotent by object version.** An ingestion is keyed by the object's key and ETag. Running
//! a step again on the same version finds the ingestion and returns what it recorded
//! (`replayed: true`) without writing anything; a step interrupted half-way (its process died,
//! the database went away) left nothing behind and runs again. Two workers on the same object
//! take turns: the second gets [`Error::Busy`], which is retryable.
//!
//! **Versions.** The step reads exactly the version it was told about (an `If-Match` on the
//! ETag): an object replaced since the event is [`Error::Superseded`] — its new version has an
//! event of its own.

use std::collections::BTreeMap;
use std::io::Read;

use chrono::{DateTime, Utc};
use futures_util::TryStreamExt;
use object_store::{GetOptions, GetResultPayload, ObjectStore};
use serde::{Deserialize, Serialize};
use sqlx::types::Json;
use sqlx::{Acquire, PgPool};

use crate::decode::Decoder;
use crate::error::{Error, Result};
use crate::faults::{Fault, Point};
use crate::ingestions::IngestionStatus;
use crate::lifecycle::{Claim, Claimed, Lifecycle, Moved, Step};
use crate::load::Backend;
use crate::load::{self, LoadReport};
use crate::pump::{Chunks, Pump, RejectChunk, Staged};
use crate::reject::Reject;
use crate::table::Table;
use crate::validate::Context;
use crate::zones::{Zone, Zones};

/// An object of the raw zone, as an event names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RawObject {
    /// The key within the raw zone, e.g. `hired_employees/2021.csv`; its first segment (or the
    /// file name) names the table.
    pub key: String,
    /// The ETag the event saw; the object's current ETag when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
}

/// What validation found, and the decision the state machine branches on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidationReport {
    /// The ingestion id (see `GET /ingestions/{id}`).
    pub ingestion: i64,
    /// The table the rows belong to.
    pub table: Table,
    /// The object's key in the raw zone.
    pub key: String,
    /// The object version validated (ETag, without quotes).
    pub etag: String,
    /// Data rows read (a header row is not counted).
    pub rows: i64,
    /// Rows that pass every rule.
    pub accepted: i64,
    /// Rows that break one.
    pub rejected: i64,
    /// Rejected rows by reason code.
    pub reasons: BTreeMap<String, i64>,
    /// The rejects file in the rejects zone, when any row was rejected.
    pub rejects_key: Option<String>,
    /// True when at least one row can be loaded: the process step should run.
    pub loadable: bool,
    /// True when this object version had been validated before and nothing was written now.
    #[serde(default)]
    pub replayed: bool,
}

/// What processing did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessReport {
    /// The load's counts.
    #[serde(flatten)]
    pub load: LoadReport,
    /// The object's key in the raw zone.
    pub key: String,
    /// The Parquet file of the accepted rows in the processed zone, when any row was accepted.
    pub processed_key: Option<String>,
    /// True when this ingestion had been processed before and nothing was written now.
    #[serde(default)]
    pub replayed: bool,
}

/// The table an object's rows belong to: its key's first segment (`jobs/2021-01.csv`) or, for a
/// key without a folder, its file name (`jobs.csv`).
pub fn table_of_key(key: &str) -> Result<Table> {
    let (first, _) = key.split_once('/').unwrap_or((key, ""));
    let stem = key.rsplit('/').next().unwrap_or(key);
    let stem = stem.split_once('.').map_or(stem, |(stem, _)| stem);
    Table::from_name(first).or_else(|| Table::from_name(stem)).ok_or_else(|| Error::UnexpectedKey(key.to_owned()))
}

/// Records an object just written to the raw zone as queued for the pipeline, and returns its
/// ingestion id; the steps run later on the same object version find this ingestion. Recording
/// the same version twice returns the same id.
pub async fn enqueue(pool: &PgPool, zones: &Zones, key: &str, source: &str) -> Result<i64> {
    let table = table_of_key(key)?;
    let etag = current_etag(&zones.raw, key, None).await?;
    Ok(Lifecycle::arrive(pool, table, key, &etag, source).await?.id)
}

/// Records a file a client is about to put into the raw zone at `key` itself (a presigned
/// upload), and returns its ingestion id: `awaiting_upload` until the pipeline's first step
/// meets the object, which then continues this ingestion.
pub async fn expect(
    pool: &PgPool,
    key: &str,
    source: &str,
    expires_at: DateTime<Utc>,
    upload_id: Option<&str>,
) -> Result<i64> {
    Lifecycle::announce(pool, table_of_key(key)?, key, source, expires_at, upload_id, false).await
}

/// Records a file the API itself is about to store at `key` as part of one upload of several
/// (`POST /upload` with the state machine): like [`expect`], and held until [`release`].
pub async fn expect_held(pool: &PgPool, key: &str, source: &str, expires_at: DateTime<Utc>) -> Result<i64> {
    Lifecycle::announce(pool, table_of_key(key)?, key, source, expires_at, None, true).await
}

/// Releases the held ingestions `ids` once every file of their upload is stored: their steps
/// (waiting with [`Error::Held`]) go on at their next attempt. When one of them already failed,
/// none is released, the others fail too, and the failed one's stored failure is answered.
pub async fn release(pool: &PgPool, ids: &[i64]) -> Result<()> {
    match Lifecycle::release(pool, ids).await? {
        None => Ok(()),
        Some(failed) => Err(stored_failure(pool, failed).await?),
    }
}

/// The key and multipart upload id of an announced ingestion still awaiting its file; `None`
/// when it has no multipart upload or its file arrived.
pub async fn awaited_multipart(pool: &PgPool, id: i64) -> Result<Option<(String, String)>> {
    let row: Option<(Option<String>, Option<String>)> =
        sqlx::query_as("SELECT object_key, upload_id FROM ingestions WHERE id = $1 AND status = $2")
            .bind(id)
            .bind(IngestionStatus::AwaitingUpload)
            .fetch_optional(pool)
            .await?;
    Ok(row.and_then(|(key, upload)| key.zip(upload)))
}

/// Makes the ingestions of one upload a group (see [`validate`]): their first id names it. A
/// single file needs none.
pub async fn group(pool: &PgPool, ids: &[i64]) -> Result<()> {
    let Some(&first) = ids.iter().min() else { return Ok(()) };
    if ids.len() > 1 {
        sqlx::query("UPDATE ingestions SET upload_group = $1 WHERE id = ANY($2)")
            .bind(first)
            .bind(ids)
            .execute(pool)
            .await?;
    }
    Ok(())
}

/// Marks failed the announced ingestions of an upload whose files could not be stored.
pub async fn abandon(pool: &PgPool, ids: &[i64], reason: &str) -> Result<()> {
    Lifecycle::abandon_announced(pool, ids, reason).await?;
    Ok(())
}

/// Ends ingestion `id` as failed, for good, with `reason`: what the workflow's failure path
/// records when a step's retries ran out or it failed in a way no retry mends. An ingestion
/// already final, or held by a live step, is left as it is ([`Moved::Lost`]).
pub async fn fail(pool: &PgPool, id: i64, reason: &str) -> Result<Moved> {
    Lifecycle::fail(pool, id, reason).await
}

/// Ends the unfinished ingestion of an object version as failed, for good, with `reason` (the
/// workflow gave up on it); returns its id, or `None` when the version has none unfinished.
pub async fn fail_object(pool: &PgPool, zones: &Zones, object: &RawObject, reason: &str) -> Result<Option<i64>> {
    let etag = match &object.etag {
        Some(etag) => unquote(etag).to_owned(),
        None => match zones.raw.head(&object.key).await? {
            Some(meta) => meta.e_tag.as_deref().map(unquote).unwrap_or_default().to_owned(),
            None => String::new(),
        },
    };
    let id: Option<i64> = sqlx::query_scalar(
        "SELECT id FROM ingestions WHERE object_key = $1 AND (object_etag = $2 OR status = $3)
           AND NOT (status = ANY($4))
         ORDER BY id DESC LIMIT 1",
    )
    .bind(&object.key)
    .bind(&etag)
    .bind(IngestionStatus::AwaitingUpload)
    .bind(IngestionStatus::FINAL.map(IngestionStatus::as_str))
    .fetch_optional(pool)
    .await?;
    let Some(id) = id else { return Ok(None) };
    Ok(match Lifecycle::fail(pool, id, reason).await? {
        Moved::Moved => Some(id),
        Moved::Lost => None,
    })
}

/// The first departments or jobs ingestion of `id`'s upload group that has not succeeded: id,
/// table and status; one not final (its file not yet put, queued, between the steps, retrying)
/// keeps the hires waiting, and one that failed for good fails them.
async fn unfinished_dimension(pool: &PgPool, id: i64) -> Result<Option<(i64, String, IngestionStatus)>> {
    Ok(sqlx::query_as(
        "SELECT e.id, e.table_name, e.status FROM ingestions h
         JOIN ingestions e ON e.upload_group = h.upload_group AND e.id <> h.id
         WHERE h.id = $1 AND e.table_name IN ('departments', 'jobs') AND NOT (e.status = ANY($2))
         ORDER BY (e.status = 'failed') DESC, e.id LIMIT 1",
    )
    .bind(id)
    .bind([IngestionStatus::Succeeded, IngestionStatus::Rejected].map(IngestionStatus::as_str))
    .fetch_optional(pool)
    .await?)
}

/// Validates one object of the raw zone (see the module documentation). A hires file of an
/// upload whose departments or jobs file has not finished is not validated yet
/// ([`Error::Waiting`], retryable): its rows are checked against what those load, in the
/// order the API promises, whichever order the deployed executions run in.
#[tracing::instrument(skip(pool, zones, object, source), fields(key = %object.key))]
pub async fn validate(pool: &PgPool, zones: &Zones, object: &RawObject, source: &str) -> Result<ValidationReport> {
    let table = table_of_key(&object.key)?;
    let etag = current_etag(&zones.raw, &object.key, object.etag.as_deref()).await?;
    let arrived = Lifecycle::arrive(pool, table, &object.key, &etag, source).await?;
    let (id, status) = (arrived.id, arrived.status);
    if let Some(Json(report)) = arrived.validation {
        return Ok(ValidationReport { replayed: true, ..report });
    }
    if status == IngestionStatus::Failed {
        return Err(stored_failure(pool, id).await?);
    }
    if arrived.held {
        return Err(Error::Held(id));
    }
    if table == Table::HiredEmployees
        && let Some((earlier, table, status)) = unfinished_dimension(pool, id).await?
    {
        if status == IngestionStatus::Failed {
            let reason = format!(
                "ingestion {earlier} ({table}) of the same upload failed, and these hires are checked against what it \
                 would have loaded: send that file and this one again, as a new upload"
            );
            let _ = Lifecycle::fail(pool, id, &reason).await?;
            return Err(stored_failure(pool, id).await?);
        }
        return Err(Error::Waiting { id, earlier, table, status: status.to_string() });
    }
    let claim = match Lifecycle::claim(pool, id, Step::Validate).await? {
        Claimed::Claimed(claim) => claim,
        // Another worker validated it (or it failed) between the two statements.
        Claimed::Moved(IngestionStatus::Failed) => return Err(stored_failure(pool, id).await?),
        Claimed::Moved(_) => return stored_validation(pool, id).await,
    };
    let mut claim = claim;
    let result = validate_claimed(pool, zones, &mut claim, table, &object.key, &etag).await;
    claim.finish(pool, result).await
}

/// Loads a validated object into PostgreSQL and the processed zone (see the module
/// documentation). `validation` is the report [`validate`] returned.
#[tracing::instrument(skip(pool, zones, validation), fields(ingestion = validation.ingestion))]
pub async fn process(pool: &PgPool, zones: &Zones, validation: &ValidationReport) -> Result<ProcessReport> {
    let id = validation.ingestion;
    let stored = stored(pool, id).await?;
    if stored.object_key.as_deref() != Some(&validation.key) || stored.object_etag.as_deref() != Some(&validation.etag)
    {
        return Err(Error::InvalidStepInput(format!(
            "ingestion {id} is not of object {} (ETag {}): pass the validate step's output unchanged",
            validation.key, validation.etag
        )));
    }
    match stored.status {
        IngestionStatus::Succeeded => {
            if let Some(key) = &stored.processed_key {
                crate::processed::publish_staged(&zones.processed, key).await?;
            }
            return Ok(stored.process_report(validation.key.clone()));
        }
        IngestionStatus::Rejected => return Err(Error::NotLoadable(id)),
        IngestionStatus::Failed => return Err(stored_failure(pool, id).await?),
        _ if stored.validation.is_none() => return Err(Error::NotValidated(id)),
        _ => {}
    }
    let mut claim = match Lifecycle::claim(pool, id, Step::Process).await? {
        Claimed::Claimed(claim) => claim,
        Claimed::Moved(IngestionStatus::Succeeded) => {
            let stored = self::stored(pool, id).await?;
            if let Some(key) = &stored.processed_key {
                crate::processed::publish_staged(&zones.processed, key).await?;
            }
            return Ok(stored.process_report(validation.key.clone()));
        }
        Claimed::Moved(IngestionStatus::Failed) => return Err(stored_failure(pool, id).await?),
        Claimed::Moved(status) => {
            return Err(Error::InvalidStepInput(format!("ingestion {id} is {status}, not validated")));
        }
    };
    let key = format!("{}/ingest_date={}/{id}.parquet", validation.table, stored.started_at.format("%Y-%m-%d"));
    let result = process_claimed(pool, zones, &mut claim, validation, &key).await;
    let load = claim.finish(pool, result).await?;
    let processed_key = (load.inserted + load.updated + load.unchanged > 0).then_some(key);
    Ok(ProcessReport { load, key: validation.key.clone(), processed_key, replayed: false })
}

async fn process_claimed(
    pool: &PgPool,
    zones: &Zones,
    claim: &mut Claim,
    validation: &ValidationReport,
    key: &str,
) -> Result<LoadReport> {
    let input = open_object(&zones.raw, &validation.key, &validation.etag).await?;
    let (id, attempt) = (claim.id, claim.attempt);
    load::load_file_in_transaction(
        pool,
        claim.connection(),
        id,
        attempt,
        validation.table,
        input,
        Some((&zones.processed, key)),
    )
    .await
}

/// The object's ETag (without quotes), checked against the one the event saw.
async fn current_etag(zone: &Zone, key: &str, expected: Option<&str>) -> Result<String> {
    let meta = zone.head(key).await?.ok_or_else(|| Error::ObjectNotFound(format!("{}/{key}", zone.url())))?;
    let etag = meta.e_tag.as_deref().map(unquote).ok_or_else(|| {
        Error::Zone(format!("{}/{key} has no ETag, which the pipeline needs to ingest each version once", zone.url()))
    })?;
    match expected.map(unquote) {
        Some(expected) if expected != etag => Err(Error::Superseded { key: key.to_owned(), etag: expected.to_owned() }),
        _ => Ok(etag.to_owned()),
    }
}

fn unquote(etag: &str) -> &str {
    etag.trim_matches('"')
}

/// The final failure of ingestion `id`, as the error its step answers: nothing runs again on it.
async fn stored_failure(pool: &PgPool, id: i64) -> Result<Error> {
    let error: Option<String> =
        sqlx::query_scalar("SELECT error FROM ingestions WHERE id = $1").bind(id).fetch_one(pool).await?;
    Ok(Error::Failed { id, reason: error.unwrap_or_default() })
}

async fn stored_validation(pool: &PgPool, id: i64) -> Result<ValidationReport> {
    let stored = stored(pool, id).await?;
    match stored.validation {
        Some(Json(report)) => Ok(ValidationReport { replayed: true, ..report }),
        None => Err(Error::InvalidStepInput(format!("ingestion {id} is {} and has no validation", stored.status))),
    }
}

/// An ingestion's row, as the steps need it.
#[derive(sqlx::FromRow)]
struct Stored {
    id: i64,
    table_name: String,
    status: IngestionStatus,
    started_at: DateTime<Utc>,
    object_key: Option<String>,
    object_etag: Option<String>,
    validation: Option<Json<ValidationReport>>,
    processed_key: Option<String>,
    rows: i64,
    inserted: i64,
    updated: i64,
    unchanged: i64,
    rejected: i64,
}

impl Stored {
    fn process_report(self, key: String) -> ProcessReport {
        let table = Table::from_name(&self.table_name).expect("the schema allows only known tables");
        ProcessReport {
            load: LoadReport {
                id: self.id,
                table,
                rows: self.rows,
                inserted: self.inserted,
                updated: self.updated,
                unchanged: self.unchanged,
                rejected: self.rejected,
            },
            key,
            processed_key: self.processed_key,
            replayed: true,
        }
    }
}

async fn stored(pool: &PgPool, id: i64) -> Result<Stored> {
    sqlx::query_as(
        "SELECT id, table_name, status, started_at, object_key, object_etag, validation, processed_key,
                rows, inserted, updated, unchanged, rejected
         FROM ingestions WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(pool)
    .await?
    .ok_or(Error::IngestionNotFound(id))
}

/// A blocking reader of exactly the version `etag` of an object, streamed (memory stays flat
/// whatever its size). Use it off the async threads (in `spawn_blocking`).
async fn open_object(zone: &Zone, key: &str, etag: &str) -> Result<Box<dyn Read + Send>> {
    // S3 compares quoted entity tags; the local store its own bare ones.
    let tag = if zone.url().starts_with("s3://") { format!("\"{etag}\"") } else { etag.to_owned() };
    let options = GetOptions { if_match: Some(tag), ..GetOptions::default() };
    let location = object_store::path::Path::from(key);
    let object = match zone.store().get_opts(&location, options).await {
        Ok(object) => object,
        Err(object_store::Error::Precondition { .. }) => {
            return Err(Error::Superseded { key: key.to_owned(), etag: etag.to_owned() });
        }
        Err(error) => return Err(zone.error(key, error)),
    };
    // A local object is read from its file directly (the version check above was done on it);
    // a remote one is streamed from the store.
    let reader: Box<dyn Read + Send> = match object.payload {
        GetResultPayload::File(file, _) => Box::new(file),
        GetResultPayload::Stream(stream) => {
            let stream = stream.map_err(std::io::Error::other);
            Box::new(tokio_util::io::SyncIoBridge::new(tokio_util::io::StreamReader::new(stream)))
        }
    };
    Ok(reader)
}

async fn validate_claimed(
    pool: &PgPool,
    zones: &Zones,
    claim: &mut Claim,
    table: Table,
    key: &str,
    etag: &str,
) -> Result<ValidationReport> {
    let (id, attempt) = (claim.id, claim.attempt);
    // On the claim's own connection, which holds the ingestion's lock: if that connection dies,
    // so does this transaction, and a worker that takes the ingestion over never meets a live one.
    let mut tx = claim.connection().begin().await?;
    let backend = Backend::of(&mut tx).await?;
    let mut context =
        if table == Table::HiredEmployees { load::known_references(&mut tx, None).await? } else { Context::default() };
    let input = open_object(&zones.raw, key, etag).await?;
    let rejects_file = RejectsFile::create()?;

    let decode = move |chunks: Chunks<Vec<Reject>>| -> Result<(Counts, RejectsFile)> {
        let mut file = rejects_file;
        let mut decoder = Decoder::new(table, input);
        let mut counts = Counts::default();
        let mut chunk = RejectChunk::default();
        while let Some(decoded) = decoder.next_record()? {
            counts.rows += 1;
            match decoded.outcome.and_then(|row| context.accept(&row)) {
                Ok(()) => counts.accepted += 1,
                Err(violation) => {
                    *counts.reasons.entry(violation.reason.code().to_owned()).or_default() += 1;
                    chunk.push(Reject::new(decoded.line, violation, decoder.raw()));
                    if chunk.is_full(0) {
                        let full = chunk.take();
                        file.write(&full)?;
                        if !chunks.send(full) {
                            return Ok((counts, file));
                        }
                    }
                }
            }
        }
        let last = chunk.take();
        file.write(&last)?;
        chunks.send(last);
        Ok((counts, file))
    };
    let mut pump = Pump::start(decode);
    while let Some(chunk) = pump.next().await {
        if let Err(error) = load::insert_rejects(&mut tx, id, &chunk).await {
            return pump.fail(error).await;
        }
    }
    let (counts, file) = pump.finish().await?;
    let rejected = counts.rows - counts.accepted;
    let rejects_key = if rejected > 0 {
        let key = format!("{table}/{id}.jsonl");
        file.publish(&zones.rejects, &key).await?;
        Some(key)
    } else {
        None
    };
    let report = ValidationReport {
        ingestion: id,
        table,
        key: key.to_owned(),
        etag: etag.to_owned(),
        rows: counts.rows,
        accepted: counts.accepted,
        rejected,
        reasons: counts.reasons,
        rejects_key: rejects_key.clone(),
        loadable: counts.accepted > 0,
        replayed: false,
    };
    let fault = crate::faults::at(Point::ValidationBeforeCommit);
    match fault {
        Some(Fault::Crash) => return Err(Error::Crashed),
        Some(Fault::Retryable) => {
            drop(tx);
            if let Some(key) = &rejects_key {
                let _ = zones.rejects.delete(key).await;
            }
            return Err(crate::faults::transient_store_error());
        }
        Some(Fault::KilledConnection) | None => {}
    }
    let killed = fault == Some(Fault::KilledConnection);
    let finished = async {
        let connection = tx.acquire().await?;
        if killed {
            sqlx::query("SELECT pg_terminate_backend(pg_backend_pid())").execute(&mut *connection).await?;
        }
        Lifecycle::validated(connection, attempt, &report).await?;
        tx.commit().await.map_err(Error::from)
    };
    if let Err(error) = finished.await {
        // As for a load's Parquet file (load::Backend): the rejects file goes only with a
        // transaction known not to have committed.
        let validated = |status| matches!(status, IngestionStatus::Validated | IngestionStatus::Rejected);
        let output = rejects_key.as_deref().map(|key| (&zones.rejects, key));
        if backend.settle(pool, id, &error, validated, output).await {
            tracing::warn!(ingestion = id, %error, "the validation committed though its acknowledgement was lost");
            return Ok(report);
        }
        return Err(error);
    }
    tracing::info!(ingestion = id, %table, rows = report.rows, rejected, loadable = report.loadable, "object validated");
    Ok(report)
}

#[derive(Default)]
struct Counts {
    rows: i64,
    accepted: i64,
    reasons: BTreeMap<String, i64>,
}

/// The JSON-lines rejects file of a validation, written to a temporary file on the decoding
/// thread and uploaded before the commit.
struct RejectsFile {
    writer: std::io::BufWriter<std::fs::File>,
    staged: Staged,
}

impl RejectsFile {
    fn create() -> Result<RejectsFile> {
        let (file, staged) = Staged::create()?;
        Ok(RejectsFile { writer: std::io::BufWriter::new(file), staged })
    }

    fn write(&mut self, rejects: &[Reject]) -> Result<()> {
        use std::io::Write;
        for reject in rejects {
            let mut line = serde_json::json!({
                "line": reject.position,
                "reason": reject.violation.reason.code(),
                "message": reject.violation.message,
                "raw": reject.raw,
                "raw_bytes": reject.raw_bytes,
            });
            if let Some(sha256) = reject.sha256_hex() {
                line["raw_sha256"] = sha256.into();
            }
            serde_json::to_writer(&mut self.writer, &line).map_err(std::io::Error::from)?;
            self.writer.write_all(b"\n")?;
        }
        Ok(())
    }

    async fn publish(self, zone: &Zone, key: &str) -> Result<()> {
        use std::io::Write;
        let RejectsFile { mut writer, staged } = self;
        writer.flush()?;
        drop(writer);
        staged.upload(zone, key).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_comes_from_the_first_segment_or_the_file_name() {
        assert_eq!(table_of_key("jobs/2021/01.csv").unwrap(), Table::Jobs);
        assert_eq!(table_of_key("hired_employees.csv").unwrap(), Table::HiredEmployees);
        assert_eq!(table_of_key("incoming/departments.csv").unwrap(), Table::Departments);
        assert!(matches!(table_of_key("incoming/people.csv"), Err(Error::UnexpectedKey(_))));
    }
}
