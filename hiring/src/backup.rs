//! Avro backups of the tables, and restores from them.
//!
//! A backup is an Avro object container file (schema embedded, deflate codec) in the backups zone
//! at `<table>/<UTC time>-<UUIDv7>.avro`. It holds the whole table as one consistent snapshot, ordered by
//! id, with the data dictionary's field names: `id` int, `department` / `job` / `name` string,
//! `datetime` long (`timestamp-micros`), `department_id` int, `job_id` int.
//!
//! A restore replaces a table's content with a backup's rows in one transaction. Every row is
//! checked against the data contract's rules on the way in, and any problem (a file that is not
//! Avro, a schema of another table, a row that breaks a rule, hires a restore of departments or
//! jobs would orphan) rolls it back, so a restore either applies whole or changes nothing.
//!
//! Memory stays bounded on both paths: a backup streams rows from PostgreSQL into the Avro
//! writer and hands each finished block to the zone (a multipart upload past 10 MB), and a
//! restore streams the object through the Avro reader into chunks of [`CHUNK_ROWS`] rows, one
//! block of at most [`crate::avro_blocks::MAX_BLOCK_BYTES`] at a time, whatever the file claims.

use std::io::Read;

use apache_avro::schema::SchemaKind;
use apache_avro::types::Value;
use apache_avro::{Codec, DeflateSettings, Reader, Schema, Writer};
use bytes::{Buf, Bytes};
use chrono::{DateTime, Datelike, Utc};
use futures_util::{StreamExt, TryStreamExt};
use object_store::buffered::BufWriter;
use object_store::path::Path as Key;
use serde::Serialize;
use sqlx::{PgConnection, PgPool, Row as _};
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, oneshot};

use crate::avro_blocks::{BoundedBlocks, Refusal};
use crate::error::{Error, Result};
use crate::load::Rollup;
use crate::pump::{Chunks, Pump};
use crate::reject::{Reason, Violation};
use crate::table::Table;
use crate::validate::{Columns, Context, Hire, Row, parse_text};
use crate::zones::Zone;

pub use crate::pump::CHUNK_ROWS;

/// Uncompressed bytes per Avro block: large enough for deflate to find repeats across rows,
/// small enough to keep the writer's buffer and each reader allocation modest.
const BLOCK_BYTES: usize = 256 * 1024;

/// Encoded bytes gathered before they are handed to the zone's writer.
const PART_BYTES: usize = 1024 * 1024;

/// The most conflicting ids a [`Error::RestoreConflict`] lists.
pub const MAX_CONFLICT_IDS: usize = 20;

/// What a backup wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(serde::Deserialize)]
pub struct BackupReport {
    /// The table backed up.
    pub table: Table,
    /// The object's key in the backups zone, `<table>/<UTC time>-<UUIDv7>.avro`.
    pub key: String,
    /// The rows written.
    pub rows: i64,
    /// The object's size in bytes.
    pub bytes: u64,
}

/// One backup in the zone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BackupInfo {
    /// The table it holds.
    pub table: Table,
    /// Its key in the backups zone.
    pub key: String,
    /// Its size in bytes.
    pub bytes: u64,
    /// When it was written.
    pub last_modified: DateTime<Utc>,
}

/// What a restore did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RestoreReport {
    /// The table restored.
    pub table: Table,
    /// The backup it was restored from.
    pub key: String,
    /// The rows the table holds now.
    pub rows: i64,
    /// The backup of the table taken just before the restore: restoring it undoes this one.
    pub previous: String,
}

/// The Avro type of each column of the data dictionary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FieldType {
    Int,
    String,
    TimestampMicros,
}

impl FieldType {
    fn of(column: &str) -> FieldType {
        match column {
            "department" | "job" | "name" => FieldType::String,
            "datetime" => FieldType::TimestampMicros,
            _ => FieldType::Int,
        }
    }

    fn name(self) -> &'static str {
        match self {
            FieldType::Int => "int",
            FieldType::String => "string",
            FieldType::TimestampMicros => "timestamp-micros",
        }
    }

    fn schema(self) -> serde_json::Value {
        match self {
            FieldType::Int => "int".into(),
            FieldType::String => "string".into(),
            FieldType::TimestampMicros => serde_json::json!({"type": "long", "logicalType": "timestamp-micros"}),
        }
    }
}

/// The Avro schema of a table's backups, as JSON: a record named after the table (namespace
/// `hiring`) with one field per column, in the data dictionary's order.
pub fn schema_json(table: Table) -> String {
    let fields: Vec<_> = table
        .columns()
        .iter()
        .map(|column| serde_json::json!({"name": column, "type": FieldType::of(column).schema()}))
        .collect();
    serde_json::json!({
        "type": "record",
        "name": table.name(),
        "namespace": "hiring",
        "doc": format!("The rows of the {table} table, ordered by id"),
        "fields": fields,
    })
    .to_string()
}

fn schema(table: Table) -> Schema {
    Schema::parse_str(&schema_json(table)).expect("the backup schemas are valid Avro")
}

/// Writes the whole of `table` as of one snapshot to `zone` at `<table>/<UTC time>-<UUIDv7>.avro`.
#[tracing::instrument(skip(pool, zone))]
pub async fn backup_table(pool: &PgPool, zone: &Zone, table: Table) -> Result<BackupReport> {
    backup(pool, zone, table, None).await
}

/// [`backup_table`], reading the table as of `snapshot` when given: a snapshot another
/// transaction exported (`pg_export_snapshot()`), and a sender told once it is imported (the
/// exporting transaction may end from then on).
async fn backup(
    pool: &PgPool,
    zone: &Zone,
    table: Table,
    snapshot: Option<(String, oneshot::Sender<()>)>,
) -> Result<BackupReport> {
    let mut tx = reading(pool, &[table], snapshot).await?;
    let report = backup_in(&mut tx, zone, table).await?;
    tx.commit().await?;
    Ok(report)
}

/// A read-only transaction of one snapshot that holds `tables` (ACCESS SHARE), as of
/// `snapshot` when given (see [`backup`]).
async fn reading(
    pool: &PgPool,
    tables: &[Table],
    snapshot: Option<(String, oneshot::Sender<()>)>,
) -> Result<sqlx::Transaction<'static, sqlx::Postgres>> {
    let mut tx = pool.begin().await?;
    // One snapshot for every read, and no chance of writing anything by mistake.
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY").execute(&mut *tx).await?;
    if let Some((id, _)) = &snapshot {
        // Must come before the transaction's first query (PostgreSQL, SET TRANSACTION); the id
        // is PostgreSQL's own, quoted anyway.
        sqlx::query(&format!("SET TRANSACTION SNAPSHOT '{}'", id.replace('\'', "''"))).execute(&mut *tx).await?;
    }
    // The tables are locked before the first query takes the snapshot ("a REPEATABLE READ ...
    // transaction's view of data will be frozen when its first SELECT ... begins", PostgreSQL,
    // LOCK): a restore of hires empties the table with TRUNCATE, which is not MVCC-safe (a
    // snapshot taken before its commit would read the table as empty), and this lock waits for
    // such a restore to commit, so the snapshot comes after it. A restore's own backup takes the
    // lock before the restore truncates, and the restore waits for it. A set locks its three
    // tables at once, so a write to several of them is in all of its backups or in none.
    let names: Vec<&str> = tables.iter().map(|table| table.name()).collect();
    sqlx::query(&format!("LOCK TABLE {} IN ACCESS SHARE MODE", names.join(", "))).execute(&mut *tx).await?;
    if let Some((_, imported)) = snapshot {
        let _ = imported.send(());
    }
    Ok(tx)
}

/// Writes `table` as `tx` reads it to `zone` at `<table>/<UTC time>-<UUIDv7>.avro`.
async fn backup_in(tx: &mut PgConnection, zone: &Zone, table: Table) -> Result<BackupReport> {
    let schema = schema(table);
    // The time first sorts the keys by time as text; the UUIDv7 keeps two backups taken at
    // once (two tasks, a restore's own backup) apart.
    let key = format!("{table}/{}.avro", crate::zones::unique_name());
    // The object is written as it is encoded: BufWriter keeps up to 10 MB (a typical backup of
    // 1M hires is about that size) and switches to a multipart upload beyond, so memory does
    // not grow with the table. An aborted backup leaves no object behind.
    let mut upload = BufWriter::new(zone.store().clone(), Key::from(key.as_str()));
    let written = write_rows(tx, table, &schema, &mut upload, zone, &key).await;
    let (rows, bytes) = match written {
        Ok(counts) => counts,
        Err(error) => {
            if let Err(e) = upload.abort().await {
                tracing::warn!(%table, key, error = %e, "could not clean up an aborted backup upload");
            }
            return Err(error);
        }
    };
    upload.shutdown().await.map_err(|e| zone.io_error(&key, e))?;
    tracing::info!(%table, key, rows, bytes, "backup written");
    Ok(BackupReport { table, key, rows, bytes })
}

/// Streams the table's rows into an Avro writer and its output into `upload`; returns the rows
/// and bytes written.
async fn write_rows(
    tx: &mut PgConnection,
    table: Table,
    schema: &Schema,
    upload: &mut BufWriter,
    zone: &Zone,
    key: &str,
) -> Result<(i64, u64)> {
    let avro_error = |e: apache_avro::Error| Error::Zone(format!("could not encode the backup {key}: {e}"));
    let mut writer = Writer::builder()
        .schema(schema)
        .writer(Vec::with_capacity(PART_BYTES + BLOCK_BYTES))
        // The fastest deflate level: at the default (6) compressing was a third of the API's CPU
        // in a restore of 1M hires (`perf`, issue 17); level 1 compresses about 5x faster for
        // files about 30% larger, and any Avro reader reads them.
        .codec(Codec::Deflate(DeflateSettings::new(miniz_oxide::deflate::CompressionLevel::BestSpeed)))
        .block_size(BLOCK_BYTES)
        .build()
        .map_err(avro_error)?;
    // One record reused for every row: only the values change, the field names stay.
    let mut record =
        Value::Record(table.columns().iter().map(|column| ((*column).to_owned(), Value::Null)).collect::<Vec<_>>());
    let statement = format!("SELECT {} FROM {table} ORDER BY id", table.columns().join(", "));
    let mut stream = sqlx::query(&statement).fetch(&mut *tx);
    let (mut rows, mut bytes) = (0i64, 0u64);
    while let Some(row) = stream.try_next().await? {
        let Value::Record(fields) = &mut record else { unreachable!("the record is built above") };
        for (index, (column, value)) in fields.iter_mut().enumerate() {
            *value = match FieldType::of(column) {
                FieldType::Int => Value::Int(row.try_get(index)?),
                FieldType::String => Value::String(row.try_get(index)?),
                FieldType::TimestampMicros => {
                    Value::TimestampMicros(row.try_get::<DateTime<Utc>, _>(index)?.timestamp_micros())
                }
            };
        }
        writer.append_value_ref(&record).map_err(avro_error)?;
        rows += 1;
        if writer.get_ref().len() >= PART_BYTES {
            let part = std::mem::take(writer.get_mut());
            bytes += part.len() as u64;
            upload.put(Bytes::from(part)).await.map_err(|e| zone.error(key, e))?;
        }
    }
    let rest = writer.into_inner().map_err(avro_error)?;
    bytes += rest.len() as u64;
    upload.put(Bytes::from(rest)).await.map_err(|e| zone.error(key, e))?;
    Ok((rows, bytes))
}

/// The backups in `zone`, of one table or of all, oldest first (newest last).
pub async fn list_backups(zone: &Zone, table: Option<Table>) -> Result<Vec<BackupInfo>> {
    let tables = match table {
        Some(table) => vec![table],
        None => Table::LOAD_ORDER.to_vec(),
    };
    let mut backups = Vec::new();
    for table in tables {
        for meta in zone.list(table.name()).await? {
            let key = meta.location.to_string();
            if key.ends_with(".avro") {
                backups.push(BackupInfo { table, key, bytes: meta.size, last_modified: meta.last_modified });
            }
        }
    }
    // Keys hold the time too, but several tables are listed together and objects may have been
    // copied in by hand: the store's time decides, the key breaks ties.
    backups.sort_by(|a, b| (a.last_modified, &a.key).cmp(&(b.last_modified, &b.key)));
    Ok(backups)
}

/// A backup of the three tables, restorable as one unit: a manifest in the backups zone at
/// `sets/<UTC time>-<UUIDv7>.json` naming one backup per table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BackupSet {
    /// The manifest's key in the backups zone; `POST /restore` takes it.
    pub key: String,
    /// One backup per table, in load order (departments, jobs, hired_employees).
    pub backups: Vec<BackupReport>,
}

/// What a restore of a set did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SetRestoreReport {
    /// The set restored.
    pub key: String,
    /// The rows each table holds now, in load order.
    pub tables: Vec<RestoreReport>,
    /// The set taken of the three tables just before the restore: restoring it undoes this one.
    pub previous: String,
}

/// The folder of the sets' manifests in the backups zone.
const SETS: &str = "sets";

/// The most bytes a set's manifest may hold (one holds about 600).
const MAX_SET_BYTES: u64 = 64 * 1024;

/// The sets in `zone`, oldest first (newest last).
pub async fn list_sets(zone: &Zone) -> Result<Vec<SetInfo>> {
    let mut sets: Vec<SetInfo> = zone
        .list(SETS)
        .await?
        .into_iter()
        .map(|meta| SetInfo { key: meta.location.to_string(), last_modified: meta.last_modified })
        .filter(|set| set.key.ends_with(".json"))
        .collect();
    sets.sort_by(|a, b| (a.last_modified, &a.key).cmp(&(b.last_modified, &b.key)));
    Ok(sets)
}

/// One backup set in the zone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SetInfo {
    /// Its manifest's key; `POST /restore` takes it.
    pub key: String,
    /// When it was written.
    pub last_modified: DateTime<Utc>,
}

/// Backs up the three tables as a set: one transaction reads them in one snapshot, taken once it
/// holds all three (so a load that writes several tables is in every backup or in none), and
/// the manifest is written once the three backups are stored.
#[tracing::instrument(skip(pool, zone))]
pub async fn backup_set(pool: &PgPool, zone: &Zone) -> Result<BackupSet> {
    set(pool, zone, None).await
}

/// [`backup_set`], as of `snapshot` when given (see [`backup`]).
async fn set(pool: &PgPool, zone: &Zone, snapshot: Option<(String, oneshot::Sender<()>)>) -> Result<BackupSet> {
    let mut tx = reading(pool, &Table::LOAD_ORDER, snapshot).await?;
    let mut backups = Vec::new();
    for table in Table::LOAD_ORDER {
        backups.push(backup_in(&mut tx, zone, table).await?);
    }
    tx.commit().await?;
    let key = format!("{SETS}/{}.json", crate::zones::unique_name());
    let set = BackupSet { key: key.clone(), backups };
    zone.put(&key, serde_json::to_vec(&set).expect("a set serializes")).await?;
    tracing::info!(key, "backup set written");
    Ok(set)
}

/// Replaces the three tables' content with the set whose manifest is at `key`, in one
/// transaction: all of it or nothing. Like [`restore_table`], it first takes a set of the three
/// as the restore finds them (the answer's `previous`), and checks every row on the way in;
/// hires are checked against the departments and jobs of the set.
#[tracing::instrument(skip(pool, zone))]
pub async fn restore_set(pool: &PgPool, zone: &Zone, key: &str) -> Result<SetRestoreReport> {
    let manifest = read_set(zone, key).await?;
    // Every backup is found, and its size read, before any lock is taken.
    let mut sources = Vec::new();
    for backup in &manifest.backups {
        sources.push((backup.table, backup.key.clone(), backup.rows, locate(zone, backup.table, &backup.key).await?));
    }

    let mut tx = pool.begin().await?;
    // Every writer of the three tables waits: the tables' advisory locks, exclusively, in the
    // loads' order (dimensions first), so no load deadlocks with a restore.
    for table in Table::LOAD_ORDER {
        sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(table.lock_key()).execute(&mut *tx).await?;
    }
    let snapshot: String = sqlx::query_scalar("SELECT pg_export_snapshot()").fetch_one(&mut *tx).await?;
    let (imported, on_import) = oneshot::channel();
    let previous = tokio::spawn({
        let (pool, zone) = (pool.clone(), zone.clone());
        async move { set(&pool, &zone, Some((snapshot, imported))).await }
    });
    if on_import.await.is_err() {
        return Err(previous_set(previous).await.err().unwrap_or_else(|| {
            Error::Interrupted("the backup set taken before the restore ended without reading the tables".into())
        }));
    }
    // Hires first: they reference the others. (TRUNCATE waits for the set above to be read.)
    for table in [Table::HiredEmployees, Table::Jobs, Table::Departments] {
        empty(&mut tx, table).await?;
    }
    let mut tables = Vec::new();
    let mut rollup = Rollup::default();
    for (table, backup, expected, (location, size)) in sources {
        let context = match table {
            Table::HiredEmployees => crate::load::known_references(&mut tx, None).await?,
            Table::Departments | Table::Jobs => Context::default(),
        };
        let (rows, counts) = copy_backup(&mut tx, zone, table, &backup, location, size, context, false).await?;
        // A file cut at a block boundary still reads as Avro: the set's own count tells.
        if rows != expected {
            return Err(Error::InvalidBackup(format!(
                "the backup {backup} holds {rows} rows where its set recorded {expected}: the file is incomplete or was replaced"
            )));
        }
        if table == Table::HiredEmployees {
            rollup = counts;
        }
        tables.push(RestoreReport { table, key: backup, rows, previous: String::new() });
    }
    rollup.replace(&mut tx).await?;
    let previous = previous_set(previous).await?;
    for (report, before) in tables.iter_mut().zip(&previous.backups) {
        report.previous = before.key.clone();
    }
    for table in Table::LOAD_ORDER {
        crate::metrics::announce_change(&mut tx, table).await?;
    }
    tx.commit().await?;
    tracing::info!(key, previous = previous.key, "backup set restored");
    Ok(SetRestoreReport { key: key.to_owned(), tables, previous: previous.key })
}

/// The outcome of the set taken for a restore.
async fn previous_set(set: tokio::task::JoinHandle<Result<BackupSet>>) -> Result<BackupSet> {
    match set.await {
        Ok(set) => set,
        Err(error) => Err(Error::Interrupted(format!("the backup set taken before the restore failed: {error}"))),
    }
}

/// The manifest at `key`: one backup of each table, each under its table's folder.
async fn read_set(zone: &Zone, key: &str) -> Result<BackupSet> {
    let example = "sets/20261127T181500.123456Z-0193a1b2-7c4d-7e8f-9a0b-1c2d3e4f5a6b.json";
    let shaped = key.strip_prefix("sets/").is_some_and(|name| {
        name.ends_with(".json") && name.len() <= 200 && !name.contains('/') && !name.starts_with('.')
    });
    if !shaped {
        return Err(Error::InvalidBackup(format!(
            "`{key}` is not a backup set's key such as {example} (`POST /backups` answers it)"
        )));
    }
    let meta = zone.head(key).await?.ok_or_else(|| Error::ObjectNotFound(key.to_owned()))?;
    if meta.size > MAX_SET_BYTES {
        return Err(Error::InvalidBackup(format!("the set {key} is {} bytes, not a backup set's manifest", meta.size)));
    }
    let bytes = zone.get(key).await?;
    let set: BackupSet = serde_json::from_slice(&bytes)
        .map_err(|e| Error::InvalidBackup(format!("the set {key} is not a backup set's manifest: {e}")))?;
    let tables: Vec<Table> = set.backups.iter().map(|backup| backup.table).collect();
    if tables != Table::LOAD_ORDER {
        return Err(Error::InvalidBackup(format!(
            "the set {key} must name one backup of each table in load order, not {tables:?}"
        )));
    }
    Ok(set)
}

/// Replaces the content of `table` with the rows of the backup at `key` in `zone`, in one
/// transaction; on any error nothing is changed.
///
/// Errors: [`Error::ObjectNotFound`] (no such key), [`Error::InvalidBackup`] (not Avro, another
/// schema, or a row that breaks a rule: the first one is named), [`Error::RestoreConflict`]
/// (stored hires reference departments or jobs the backup does not have).
#[tracing::instrument(skip(pool, zone))]
pub async fn restore_table(pool: &PgPool, zone: &Zone, table: Table, key: &str) -> Result<RestoreReport> {
    // An unknown key is answered at once, without waiting for the locks.
    let (location, size) = locate(zone, table, key).await?;

    let mut tx = pool.begin().await?;
    // A restore replaces the whole table, so it locks like a file load: the table exclusively
    // (for departments and jobs, the lock hire loads hold shared while they check references),
    // and for hires the departments and jobs shared, in the loads' order.
    let context = crate::load::lock_and_read_references(&mut tx, table, crate::load::Scope::File).await?;
    // There is no way back from replacing a table but a backup of it: one is taken, and the
    // answer names it. It reads the table exactly as this transaction sees it once it holds the
    // locks (an exported snapshot, PostgreSQL "Snapshot Synchronization Functions"), so no write
    // can fall between the backup and the restore. Departments and jobs are emptied by DELETE,
    // which the backup's snapshot does not see, so it runs beside the restore; hires are
    // emptied by TRUNCATE, which waits for the backup's lock (see `empty`). The restore commits
    // only once the backup is stored.
    let snapshot: String = sqlx::query_scalar("SELECT pg_export_snapshot()").fetch_one(&mut *tx).await?;
    let (imported, on_import) = oneshot::channel();
    let previous = tokio::spawn({
        let (pool, zone) = (pool.clone(), zone.clone());
        async move { backup(&pool, &zone, table, Some((snapshot, imported))).await }
    });
    // The exported snapshot lives only as long as this transaction: wait until it is imported.
    // (If the restore fails later, the backup still completes, as it did when it came first.)
    if on_import.await.is_err() {
        return Err(previous_backup(previous).await.err().unwrap_or_else(|| {
            Error::Interrupted("the backup taken before the restore ended without reading the table".into())
        }));
    }
    let (rows, rollup) = copy_backup(&mut tx, zone, table, key, location, size, context, true).await?;
    match table {
        Table::Departments | Table::Jobs => refuse_orphans(&mut tx, table).await?,
        // The rollup's deltas describe the rows just deleted: it becomes the restored rows'
        // counts, summed while they were decoded (hires_rollup_refresh() reading the table
        // again took 2.3 s at 1M hires; issue 17).
        Table::HiredEmployees => rollup.replace(&mut tx).await?,
    }
    let previous = previous_backup(previous).await?;
    crate::metrics::announce_change(&mut tx, table).await?;
    tx.commit().await?;
    tracing::info!(%table, key, rows, "table restored");
    Ok(RestoreReport { table, key: key.to_owned(), rows, previous })
}

/// The location and size of the backup of `table` at `key`, which must be shaped as a backup's
/// key and exist.
async fn locate(zone: &Zone, table: Table, key: &str) -> Result<(Key, u64)> {
    // Backups are `<table>/<time>-<UUIDv7>.avro`; anything else (a folder, a name the file system
    // refuses) is not one, and is said so before the zone is asked.
    let shaped = key.split_once('/').is_some_and(|(folder, name)| {
        Table::from_name(folder).is_some()
            && name.ends_with(".avro")
            && name.len() <= 200
            && !name.contains('/')
            && !name.starts_with('.')
    });
    let location =
        Key::parse(key).ok().filter(|location| shaped && !location.as_ref().is_empty()).ok_or_else(|| {
            Error::InvalidBackup(format!(
                "`{key}` is not a backup key such as {table}/20261127T181500.123456Z-0193a1b2-7c4d-7e8f-9a0b-1c2d3e4f5a6b.avro (the list of backups names them)"
            ))
        })?;
    let size = zone.store().head(&location).await.map_err(|e| not_found(zone, key, e))?.size;
    Ok((location, size))
}

fn not_found(zone: &Zone, key: &str, error: object_store::Error) -> Error {
    match zone.error(key, error) {
        Error::ObjectNotFound(_) => Error::ObjectNotFound(key.to_owned()),
        other => other,
    }
}

/// Streams the backup at `location` (`size` bytes) through the checks into `table` by COPY;
/// returns the rows and, for hires, their rollup counts. With `empty_on_first_chunk`, the table
/// is emptied when the first valid chunk arrives (so a file that is not even Avro never costs a
/// DELETE, which would be rolled back anyway), or at the end; otherwise the caller emptied it.
#[allow(clippy::too_many_arguments)]
async fn copy_backup(
    tx: &mut PgConnection,
    zone: &Zone,
    table: Table,
    key: &str,
    location: Key,
    size: u64,
    context: Context,
    empty_on_first_chunk: bool,
) -> Result<(i64, Rollup)> {
    // Read only once the locks are held: a download left idle while a long load finishes could
    // time out.
    let object = zone.store().get(&location).await.map_err(|e| not_found(zone, key, e))?;
    // The object's bytes flow to the decoding thread through a small channel, so only a few
    // chunks of the file are in memory at once.
    let (bytes_sender, bytes_receiver) = mpsc::channel::<std::io::Result<Bytes>>(4);
    let mut object_stream = object.into_stream();
    let pump_bytes = tokio::spawn(async move {
        while let Some(chunk) = object_stream.next().await {
            match chunk {
                Ok(bytes) => {
                    if bytes_sender.send(Ok(bytes)).await.is_err() {
                        // The decoder stopped; its outcome is the one reported.
                        break;
                    }
                }
                Err(error) => {
                    let _ = bytes_sender.send(Err(std::io::Error::other(error.to_string()))).await;
                    return Err(error);
                }
            }
        }
        Ok(())
    });

    let decoding = move |chunks: Chunks<Vec<u8>>| {
        decode(table, ChannelReader { chunks: bytes_receiver, current: Bytes::new() }, size, context, chunks)
    };
    let mut emptied = !empty_on_first_chunk;
    let mut pump = Pump::start(decoding);
    let restored = async {
        while let Some(chunk) = pump.next().await {
            let written = async {
                if !emptied {
                    empty(&mut *tx, table).await?;
                    emptied = true;
                }
                // COPY into the emptied table: the loads' writer, as fast as PostgreSQL takes rows.
                crate::load::copy_in(&mut *tx, table, &chunk).await
            };
            if let Err(error) = written.await {
                return pump.fail(error).await;
            }
        }
        pump.finish().await
    };
    let decoded = match restored.await {
        Ok(decoded) => decoded,
        Err(error) => {
            // A read that failed in the store is not the file's fault: report that instead.
            if let Ok(Err(store)) = pump_bytes.await {
                return Err(zone.error(key, store));
            }
            return Err(error);
        }
    };
    if !emptied {
        empty(tx, table).await?;
    }
    Ok(decoded)
}

/// Empties `table` in the restore's transaction. Hires are truncated: copied into the table its
/// own transaction had emptied by DELETE, each row's unique check fetched the deleted row with the
/// same id (PostgreSQL's `table_index_fetch_tuple_check`, about a fifth of the restoring
/// backend's CPU in `perf`), and a restore of 1M hires over 1M took 2.65–3.14 s against 0.93 s
/// into an empty table. TRUNCATE is not MVCC-safe (PostgreSQL, TRUNCATE): every
/// other reader of hires either holds the table's advisory lock, which the restore holds
/// exclusively, or is a backup, which locks the table before it takes its snapshot. Departments
/// and jobs are small and are read by validations that hold no lock: they are deleted.
async fn empty(tx: &mut PgConnection, table: Table) -> Result<()> {
    let statement = match table {
        Table::HiredEmployees => format!("TRUNCATE {table}"),
        Table::Departments | Table::Jobs => format!("DELETE FROM {table}"),
    };
    sqlx::query(&statement).execute(&mut *tx).await?;
    Ok(())
}

/// The outcome of the backup taken for a restore.
async fn previous_backup(backup: tokio::task::JoinHandle<Result<BackupReport>>) -> Result<String> {
    match backup.await {
        Ok(report) => Ok(report?.key),
        Err(error) => Err(Error::Interrupted(format!("the backup taken before the restore failed: {error}"))),
    }
}

/// Fails with [`Error::RestoreConflict`] when stored hires reference a department (or job) id
/// the restored table no longer has.
async fn refuse_orphans(tx: &mut PgConnection, table: Table) -> Result<()> {
    let column = match table {
        Table::Departments => "department_id",
        Table::Jobs => "job_id",
        Table::HiredEmployees => return Ok(()),
    };
    let (count, ids): (i64, Option<Vec<i32>>) = sqlx::query_as(&format!(
        "WITH missing AS (
             SELECT DISTINCT h.{column} AS id FROM hired_employees h
             WHERE NOT EXISTS (SELECT 1 FROM {table} t WHERE t.id = h.{column})
         )
         SELECT count(*), (array_agg(id ORDER BY id))[1:$1] FROM missing"
    ))
    .bind(MAX_CONFLICT_IDS as i32)
    .fetch_one(&mut *tx)
    .await?;
    if count == 0 {
        return Ok(());
    }
    Err(Error::RestoreConflict { table, ids: ids.unwrap_or_default(), count })
}

/// Reads the backup (on a blocking thread), checks its schema and every row, and sends the
/// valid rows in chunks, already in COPY's binary format (encoded here, while PostgreSQL takes
/// the previous chunk); returns the number of rows and, for hires, their rollup counts. The
/// first problem ends it.
fn decode(
    table: Table,
    input: impl Read,
    size: u64,
    mut context: Context,
    chunks: Chunks<Vec<u8>>,
) -> Result<(i64, Rollup)> {
    // The reader sees the file through the bounds: no block past its file's size or the block
    // limit, deflate inflated here into at most that limit (see `avro_blocks`).
    let refusal = Refusal::default();
    let refused = |e: apache_avro::Error, context: String| {
        Error::InvalidBackup(refusal.borrow().clone().unwrap_or_else(|| format!("{context}: {e}")))
    };
    let reader = Reader::new(BoundedBlocks::new(input, size, refusal.clone()))
        .map_err(|e| refused(e, "the object is not an Avro object container file".into()))?;
    check_schema(table, reader.writer_schema())?;
    let mut chunk = Columns::with_capacity(CHUNK_ROWS);
    let mut rows = 0i64;
    let mut rollup = Rollup::default();
    for value in reader {
        rows += 1;
        let value = value.map_err(|e| refused(e, format!("record {rows} cannot be read")))?;
        let id = match &value {
            Value::Record(fields) => fields.first().and_then(|(_, id)| match id {
                Value::Int(id) => Some(*id),
                _ => None,
            }),
            _ => None,
        };
        let row = row_of(table, value).and_then(|row| context.accept(&row).map(|()| row)).map_err(|violation| {
            let id = id.map(|id| format!(" (id {id})")).unwrap_or_default();
            Error::InvalidBackup(format!("record {rows}{id}: {}: {}", violation.reason, violation.message))
        })?;
        chunk.push(row);
        if chunk.len() >= CHUNK_ROWS {
            let full = std::mem::replace(&mut chunk, Columns::with_capacity(CHUNK_ROWS));
            rollup.add(&full);
            if !chunks.send(crate::load::copy_binary(&full)) {
                return Ok((rows, rollup));
            }
        }
    }
    if !chunk.is_empty() {
        rollup.add(&chunk);
        chunks.send(crate::load::copy_binary(&chunk));
    }
    Ok((rows, rollup))
}

/// Accepts the writer schema of a backup of `table`: a record with exactly the table's fields,
/// in order, with their types. Names of the record itself do not matter.
fn check_schema(table: Table, schema: &Schema) -> Result<()> {
    let Schema::Record(record) = schema else {
        return Err(Error::InvalidBackup(format!(
            "the file holds {} values, not records of {table} ({})",
            type_name(schema),
            describe_expected(table)
        )));
    };
    let found: Vec<(&str, String)> = record.fields.iter().map(|f| (f.name.as_str(), type_name(&f.schema))).collect();
    let matches = found.len() == table.columns().len()
        && found
            .iter()
            .zip(table.columns())
            .all(|((name, kind), column)| name == column && kind == FieldType::of(column).name());
    if matches {
        return Ok(());
    }
    let found = found.iter().map(|(name, kind)| format!("{name} {kind}")).collect::<Vec<_>>().join(", ");
    Err(Error::InvalidBackup(format!(
        "the file's schema does not match {table}: expected fields {}, found {found}",
        describe_expected(table)
    )))
}

fn describe_expected(table: Table) -> String {
    table
        .columns()
        .iter()
        .map(|column| format!("{column} {}", FieldType::of(column).name()))
        .collect::<Vec<_>>()
        .join(", ")
}

fn type_name(schema: &Schema) -> String {
    match schema {
        Schema::Int => "int".into(),
        Schema::Long => "long".into(),
        Schema::String => "string".into(),
        Schema::TimestampMicros => "timestamp-micros".into(),
        Schema::TimestampMillis => "timestamp-millis".into(),
        other => format!("{:?}", SchemaKind::from(other)).to_lowercase(),
    }
}

/// The row a record of a checked schema holds, or the rule it breaks.
fn row_of(table: Table, value: Value) -> Result<Row, Violation> {
    let Value::Record(fields) = value else {
        return Err(Violation::new(Reason::WrongType, "the record is not a record"));
    };
    let mut values = fields.into_iter();
    let mut next = |column: &str| values.next().map(|(_, value)| value).ok_or_else(|| crate::validate::missing(column));
    Ok(match table {
        Table::Departments => {
            Row::Department { id: id("id", next("id")?)?, department: text("department", next("department")?)? }
        }
        Table::Jobs => Row::Job { id: id("id", next("id")?)?, job: text("job", next("job")?)? },
        Table::HiredEmployees => Row::Hire(Hire {
            id: id("id", next("id")?)?,
            name: text("name", next("name")?)?,
            datetime: datetime(next("datetime")?)?,
            department_id: id("department_id", next("department_id")?)?,
            job_id: id("job_id", next("job_id")?)?,
        }),
    })
}

/// An id: > 0 (an Avro int always fits PostgreSQL `integer`).
fn id(column: &str, value: Value) -> Result<i32, Violation> {
    match value {
        Value::Int(id) if id > 0 => Ok(id),
        Value::Int(id) => Err(Violation::new(Reason::InvalidId, format!("{column} {id} must be greater than 0"))),
        _ => Err(Violation::new(Reason::WrongType, format!("{column} is not an int"))),
    }
}

/// A text field, under the same rules as in files: trimmed, required, at most
/// [`crate::validate::MAX_TEXT_BYTES`], no NUL.
fn text(column: &str, value: Value) -> Result<String, Violation> {
    match value {
        Value::String(text) => parse_text(column, &text),
        _ => Err(Violation::new(Reason::WrongType, format!("{column} is not a string"))),
    }
}

/// The hire time: microseconds since the Unix epoch, within the years files may hold (1..=9999).
fn datetime(value: Value) -> Result<DateTime<Utc>, Violation> {
    let Value::TimestampMicros(micros) = value else {
        return Err(Violation::new(Reason::WrongType, "datetime is not a timestamp-micros"));
    };
    DateTime::from_timestamp_micros(micros).filter(|datetime| (1..=9999).contains(&datetime.year())).ok_or_else(|| {
        Violation::new(
            Reason::InvalidDatetime,
            format!("datetime {micros} µs since 1970 is outside the years 1 to 9999"),
        )
    })
}

/// A blocking reader over the chunks of an object, received from the task that downloads it.
struct ChannelReader {
    chunks: mpsc::Receiver<std::io::Result<Bytes>>,
    current: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.chunks.blocking_recv() {
                Some(chunk) => self.current = chunk?,
                None => return Ok(0),
            }
        }
        let n = buffer.len().min(self.current.len());
        buffer[..n].copy_from_slice(&self.current[..n]);
        self.current.advance(n);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schemas_name_the_data_dictionarys_fields_and_types() {
        assert_eq!(
            schema_json(Table::HiredEmployees),
            r#"{"doc":"The rows of the hired_employees table, ordered by id","fields":[{"name":"id","type":"int"},{"name":"name","type":"string"},{"name":"datetime","type":{"logicalType":"timestamp-micros","type":"long"}},{"name":"department_id","type":"int"},{"name":"job_id","type":"int"}],"name":"hired_employees","namespace":"hiring","type":"record"}"#
        );
        for table in Table::LOAD_ORDER {
            check_schema(table, &schema(table)).unwrap();
        }
    }

    #[test]
    fn another_tables_schema_is_refused_with_both_field_lists() {
        let error = check_schema(Table::Departments, &schema(Table::Jobs)).unwrap_err().to_string();
        assert!(error.contains("expected fields id int, department string, found id int, job string"), "{error}");
        let plain_long = Schema::parse_str(
            r#"{"type":"record","name":"h","fields":[{"name":"id","type":"int"},{"name":"name","type":"string"},
                {"name":"datetime","type":"long"},{"name":"department_id","type":"int"},{"name":"job_id","type":"int"}]}"#,
        )
        .unwrap();
        assert!(check_schema(Table::HiredEmployees, &plain_long).is_err(), "a long without its logical type");
    }

    #[test]
    fn a_record_breaking_a_rule_names_its_position_id_and_reason() {
        let schema = schema(Table::Departments);
        let mut writer = Writer::new(&schema, Vec::new()).unwrap();
        for (id, department) in [(1, "Sales"), (2, "  "), (3, "Support")] {
            let record = Value::Record(vec![("id".into(), Value::Int(id)), ("department".into(), department.into())]);
            writer.append_value(record).unwrap();
        }
        let bytes = writer.into_inner().unwrap();
        let (sender, mut receiver) = mpsc::channel(8);
        let error =
            decode(Table::Departments, bytes.as_slice(), bytes.len() as u64, Context::default(), Chunks(sender))
                .unwrap_err()
                .to_string();
        assert_eq!(error, "invalid backup: record 2 (id 2): missing_field: department is required but empty");
        assert!(receiver.try_recv().is_err(), "nothing is sent before the whole chunk is valid");
    }
}
