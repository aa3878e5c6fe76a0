//! The domain against a real PostgreSQL, without HTTP: each test gets its own database
//! (`#[sqlx::test]`, `DATABASE_URL` from `cargo xtask test`) and local storage zones in a
//! temporary directory. These are the fast level of the suite: `cargo xtask test -- -p hiring`
//! builds only this crate.

use hiring::error::Error;
use hiring::ingestions::{self, IngestionStatus};
use hiring::pipeline::{self, RawObject};
use hiring::table::Table;
use hiring::zones::Zones;
use serde_json::json;
use sqlx::PgPool;

const DEPARTMENTS: &str = "1,Sales\n2,\n3,Support\n";
const JOBS: &str = "1,Engineer\n2,Analyst\n";
const HIRES: &str = "1,Ana,2021-01-15T10:00:00Z,1,1\n\
                     2,Bo,2021-04-02T09:00:00Z,3,2\n\
                     3,Cy,2021-07-01T00:00:00Z,99,1\n\
                     4,,2021-07-01T00:00:00Z,1,1\n";

fn zones() -> (tempfile::TempDir, Zones) {
    let directory = tempfile::tempdir().expect("a temporary directory");
    let zones = Zones::local(directory.path()).expect("local zones");
    (directory, zones)
}

/// Puts `text` in the raw zone as `key`, validates and processes it, as the state machine does.
async fn ingest(pool: &PgPool, zones: &Zones, key: &str, text: &str) -> pipeline::ProcessReport {
    zones.raw.put(key, text.as_bytes().to_vec()).await.expect("put");
    let object = RawObject { key: key.to_owned(), etag: None };
    let validation = pipeline::validate(pool, zones, &object, "test").await.expect("validate");
    pipeline::process(pool, zones, &validation).await.expect("process")
}

async fn count(pool: &PgPool, table: &str) -> i64 {
    sqlx::query_scalar(&format!("SELECT count(*) FROM {table}")).fetch_one(pool).await.unwrap()
}

#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn a_file_loads_its_valid_rows_and_keeps_every_reject_with_its_reason(pool: PgPool) {
    let (_dir, zones) = zones();
    let report = ingest(&pool, &zones, "departments/1.csv", DEPARTMENTS).await;
    assert_eq!((report.load.rows, report.load.inserted, report.load.rejected), (3, 2, 1));
    assert_eq!(count(&pool, "departments").await, 2);
    let rejects = ingestions::rejects(&pool, report.load.id, None, 10).await.unwrap();
    assert_eq!(rejects.len(), 1);
    assert_eq!((rejects[0].position, rejects[0].reason.as_str(), rejects[0].raw.as_str()), (2, "missing_field", "2,"));
    let ingestion = ingestions::get(&pool, report.load.id).await.unwrap();
    assert_eq!(ingestion.status, IngestionStatus::Succeeded);
    assert!(report.processed_key.is_some(), "the accepted rows went to the processed zone");

    // The same rows again (another object): nothing changes, every row is reported unchanged.
    let again = ingest(&pool, &zones, "departments/2.csv", DEPARTMENTS).await;
    assert_eq!((again.load.inserted, again.load.unchanged, again.load.rejected), (0, 2, 1));
}

#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn hires_are_checked_against_the_departments_and_jobs_already_loaded(pool: PgPool) {
    let (_dir, zones) = zones();
    ingest(&pool, &zones, "departments/1.csv", DEPARTMENTS).await;
    ingest(&pool, &zones, "jobs/1.csv", JOBS).await;
    let hires = ingest(&pool, &zones, "hired_employees/1.csv", HIRES).await;
    assert_eq!((hires.load.inserted, hires.load.rejected), (2, 2), "{hires:?}");
    let reasons: Vec<String> = ingestions::rejects(&pool, hires.load.id, None, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|reject| reject.reason)
        .collect();
    assert_eq!(reasons, ["unknown_department", "missing_field"]);
}

#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn a_batch_is_all_or_nothing_for_its_valid_rows_and_bounded_in_size(pool: PgPool) {
    let rows = [json!({"id": 1, "department": "Sales"}), json!({"id": 2}), json!({"id": "x", "department": "Ops"})];
    let body = serde_json::to_vec(&rows).unwrap();
    let batch = hiring::load::load_batch(&pool, Table::Departments, "test", &body).await.unwrap();
    assert_eq!((batch.report.inserted, batch.report.rejected), (1, 2));
    assert_eq!(batch.rejects.iter().map(|r| r.position).collect::<Vec<_>>(), [1, 2], "positions are batch indexes");
    assert_eq!(ingestions::get(&pool, batch.report.id).await.unwrap().status, IngestionStatus::Succeeded);

    let empty = hiring::load::load_batch(&pool, Table::Departments, "test", b"[]").await.unwrap_err();
    assert!(matches!(empty, Error::BatchSize { got: 0 }), "{empty}");
    let many = vec![json!({"id": 1, "department": "Sales"}); 1001];
    let many = serde_json::to_vec(&many).unwrap();
    let too_many = hiring::load::load_batch(&pool, Table::Departments, "test", &many).await.unwrap_err();
    assert!(matches!(too_many, Error::BatchSize { got: 1001 }), "{too_many}");
    assert_eq!(count(&pool, "departments").await, 1, "a refused batch inserted nothing");
}

#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn a_backup_restores_the_table_it_was_taken_of(pool: PgPool) {
    let (_dir, zones) = zones();
    ingest(&pool, &zones, "departments/1.csv", DEPARTMENTS).await;
    let backup = hiring::backup::backup_table(&pool, &zones.backups, Table::Departments).await.unwrap();
    assert_eq!(backup.rows, 2);

    sqlx::query("UPDATE departments SET department = 'Renamed'").execute(&pool).await.unwrap();
    sqlx::query("INSERT INTO departments VALUES (7, 'Extra')").execute(&pool).await.unwrap();
    let restored = hiring::backup::restore_table(&pool, &zones.backups, Table::Departments, &backup.key).await.unwrap();
    assert_eq!(restored.rows, 2);
    let names: Vec<String> =
        sqlx::query_scalar("SELECT department FROM departments ORDER BY id").fetch_all(&pool).await.unwrap();
    assert_eq!(names, ["Sales", "Support"]);

    let missing = hiring::backup::restore_table(&pool, &zones.backups, Table::Departments, "departments/none.avro")
        .await
        .unwrap_err();
    assert!(matches!(missing, Error::ObjectNotFound(_)), "{missing}");
}

/// A pool whose connections act as the application role, as the API and the functions do.
async fn as_application_role(pool: &PgPool) -> PgPool {
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(4)
        .after_connect(|connection, _| {
            Box::pin(async move {
                sqlx::query("SET ROLE hiring_app").execute(connection).await?;
                Ok(())
            })
        })
        .connect_with(pool.connect_options().as_ref().clone())
        .await
        .expect("a pool acting as hiring_app")
}

/// A restore of hires truncates the table: the application role may, and the
/// restore's own backup still reads the rows it replaces.
#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn the_application_role_restores_hires_and_its_backup_keeps_the_replaced_rows(pool: PgPool) {
    let (_dir, zones) = zones();
    ingest(&pool, &zones, "departments/1.csv", DEPARTMENTS).await;
    ingest(&pool, &zones, "jobs/1.csv", JOBS).await;
    ingest(&pool, &zones, "hired_employees/1.csv", HIRES).await;
    let app = as_application_role(&pool).await;
    let backup = hiring::backup::backup_table(&app, &zones.backups, Table::HiredEmployees).await.unwrap();
    assert_eq!(backup.rows, 2);
    sqlx::query("INSERT INTO hired_employees VALUES (9, 'New', '2021-03-01T00:00:00Z', 1, 1)")
        .execute(&pool)
        .await
        .unwrap();
    let restored =
        hiring::backup::restore_table(&app, &zones.backups, Table::HiredEmployees, &backup.key).await.unwrap();
    assert_eq!(restored.rows, 2);
    assert_eq!(count(&pool, "hired_employees").await, 2);
    // The backup taken first holds the three rows the restore replaced.
    let undo =
        hiring::backup::restore_table(&app, &zones.backups, Table::HiredEmployees, &restored.previous).await.unwrap();
    assert_eq!(undo.rows, 3);
    let hires: i64 =
        sqlx::query_scalar("SELECT sum(q1 + q2 + q3 + q4)::bigint FROM hires_rollup").fetch_one(&pool).await.unwrap();
    assert_eq!(hires, 3, "the rollup counts the restored rows");
}

/// TRUNCATE is not MVCC-safe: a snapshot taken before it commits reads the table as empty. A
/// backup that starts while a restore of hires holds the table must wait and read the restored
/// rows, never an empty table.
#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn a_backup_during_a_truncating_restore_reads_the_restored_rows(pool: PgPool) {
    let (_dir, zones) = zones();
    ingest(&pool, &zones, "departments/1.csv", DEPARTMENTS).await;
    ingest(&pool, &zones, "jobs/1.csv", JOBS).await;
    ingest(&pool, &zones, "hired_employees/1.csv", HIRES).await;
    let mut restore = pool.begin().await.unwrap();
    sqlx::query("TRUNCATE hired_employees").execute(&mut *restore).await.unwrap();
    sqlx::query(
        "INSERT INTO hired_employees SELECT g, 'R', '2021-05-01T00:00:00Z', 1, 1 FROM generate_series(100, 104) g",
    )
    .execute(&mut *restore)
    .await
    .unwrap();
    let backup = tokio::spawn({
        let (pool, zones) = (pool.clone(), zones.clone());
        async move { hiring::backup::backup_table(&pool, &zones.backups, Table::HiredEmployees).await }
    });
    // The backup waits on the restore's lock...
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let waiting: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock')",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        if waiting {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the backup never waited for the restore's lock");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // ...and reads what the restore committed.
    restore.commit().await.unwrap();
    let report = backup.await.unwrap().unwrap();
    assert_eq!(report.rows, 5, "the backup read the restored rows, not an empty table");
}

#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn a_step_held_by_another_worker_is_busy_and_worth_retrying(pool: PgPool) {
    let (_dir, zones) = zones();
    zones.raw.put("jobs/1.csv", JOBS.as_bytes().to_vec()).await.unwrap();
    let id = pipeline::enqueue(&pool, &zones, "jobs/1.csv", "test").await.unwrap();

    // Another worker's claim: the session advisory lock on the ingestion's id.
    let mut other = pool.acquire().await.unwrap();
    let locked: bool =
        sqlx::query_scalar("SELECT pg_try_advisory_lock($1)").bind(id).fetch_one(&mut *other).await.unwrap();
    assert!(locked);
    let object = RawObject { key: "jobs/1.csv".to_owned(), etag: None };
    let busy = pipeline::validate(&pool, &zones, &object, "test").await.unwrap_err();
    assert!(matches!(busy, Error::Busy(busy_id) if busy_id == id), "{busy}");
    assert!(busy.is_retryable());
    assert_eq!(ingestions::get(&pool, id).await.unwrap().status, IngestionStatus::Queued, "nothing moved");

    // Released: the step runs, and running it again replays the stored report.
    sqlx::query("SELECT pg_advisory_unlock($1)").bind(id).execute(&mut *other).await.unwrap();
    let validation = pipeline::validate(&pool, &zones, &object, "test").await.unwrap();
    assert!(!validation.replayed);
    assert_eq!(ingestions::get(&pool, id).await.unwrap().status, IngestionStatus::Validated);
    assert!(pipeline::validate(&pool, &zones, &object, "test").await.unwrap().replayed);
}

#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn a_step_whose_worker_died_is_retried_and_can_run_again(pool: PgPool) {
    let (_dir, zones) = zones();
    zones.raw.put("jobs/1.csv", JOBS.as_bytes().to_vec()).await.unwrap();
    let object = RawObject { key: "jobs/1.csv".to_owned(), etag: None };
    let validation = pipeline::validate(&pool, &zones, &object, "test").await.unwrap();
    // A worker that moved it to running and died: the status says running, no lock is held.
    sqlx::query("UPDATE ingestions SET status = 'running', started_at = now() - interval '1 minute' WHERE id = $1")
        .bind(validation.ingestion)
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(hiring::lifecycle::Lifecycle::retry_abandoned(&pool).await.unwrap(), 1);
    let retrying = ingestions::get(&pool, validation.ingestion).await.unwrap();
    assert_eq!(retrying.status, IngestionStatus::Retrying);
    assert!(retrying.error.unwrap_or_default().contains("stopped before it finished"));

    let processed = pipeline::process(&pool, &zones, &validation).await.unwrap();
    assert_eq!(processed.load.inserted, 2);
    assert_eq!(ingestions::get(&pool, validation.ingestion).await.unwrap().status, IngestionStatus::Succeeded);
}

/// The three tables' rows, as text, in id order.
async fn contents(pool: &PgPool) -> [Vec<String>; 3] {
    let read = |statement: &'static str| async move {
        sqlx::query_scalar::<_, String>(statement).fetch_all(pool).await.unwrap()
    };
    [
        read("SELECT concat_ws(',', id, department) FROM departments ORDER BY id").await,
        read("SELECT concat_ws(',', id, job) FROM jobs ORDER BY id").await,
        read("SELECT concat_ws(',', id, name, datetime, department_id, job_id) FROM hired_employees ORDER BY id").await,
    ]
}

/// Waits until some session of this database waits for a lock.
async fn until_a_session_waits_for_a_lock(pool: &PgPool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let waiting: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock')",
        )
        .fetch_one(pool)
        .await
        .unwrap();
        if waiting {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "no session waited for a lock");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// A set is read in one snapshot: a department and a hire that references it, committed
/// together while the set is being taken, are in both of its backups or in neither.
#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn a_backup_set_reads_the_three_tables_in_one_snapshot(pool: PgPool) {
    let (_dir, zones) = zones();
    ingest(&pool, &zones, "departments/1.csv", DEPARTMENTS).await;
    ingest(&pool, &zones, "jobs/1.csv", JOBS).await;
    ingest(&pool, &zones, "hired_employees/1.csv", HIRES).await;
    // A writer holds hires while the set starts...
    let mut writer = pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE hired_employees IN ACCESS EXCLUSIVE MODE").execute(&mut *writer).await.unwrap();
    let set = tokio::spawn({
        let (pool, zones) = (pool.clone(), zones.clone());
        async move { hiring::backup::backup_set(&pool, &zones.backups).await }
    });
    until_a_session_waits_for_a_lock(&pool).await;
    // ...and adds a department with a hire in it.
    sqlx::query("INSERT INTO departments VALUES (50, 'Research')").execute(&mut *writer).await.unwrap();
    sqlx::query("INSERT INTO hired_employees VALUES (50, 'Di', '2021-02-01T00:00:00Z', 50, 1)")
        .execute(&mut *writer)
        .await
        .unwrap();
    writer.commit().await.unwrap();
    let set = set.await.unwrap().unwrap();
    let rows: Vec<(Table, i64)> = set.backups.iter().map(|backup| (backup.table, backup.rows)).collect();
    assert_eq!(
        rows,
        [(Table::Departments, 3), (Table::Jobs, 2), (Table::HiredEmployees, 3)],
        "the departments backup holds the department its hires backup references"
    );
}

/// A set restores as one unit: departments that later hires no longer reference would be a
/// conflict table by table, and the set's own `previous` undoes it.
#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn a_set_restores_the_three_tables_as_one_unit_and_its_previous_set_undoes_it(pool: PgPool) {
    let (_dir, zones) = zones();
    ingest(&pool, &zones, "departments/1.csv", DEPARTMENTS).await;
    ingest(&pool, &zones, "jobs/1.csv", JOBS).await;
    ingest(&pool, &zones, "hired_employees/1.csv", HIRES).await;
    let taken = contents(&pool).await;
    let set = hiring::backup::backup_set(&pool, &zones.backups).await.unwrap();
    // Later: a new department with a hire in it, and a job renamed.
    ingest(&pool, &zones, "departments/2.csv", "7,Legal\n").await;
    ingest(&pool, &zones, "jobs/2.csv", "2,Data Analyst\n").await;
    ingest(&pool, &zones, "hired_employees/2.csv", "9,Ed,2022-03-01T00:00:00Z,7,2\n").await;
    let later = contents(&pool).await;
    let later_metrics = hiring::metrics::hires_by_quarter(&pool, 2022).await.unwrap();

    let restored = hiring::backup::restore_set(&pool, &zones.backups, &set.key).await.unwrap();
    assert_eq!(contents(&pool).await, taken);
    let rows: Vec<(Table, i64)> = restored.tables.iter().map(|table| (table.table, table.rows)).collect();
    assert_eq!(rows, [(Table::Departments, 2), (Table::Jobs, 2), (Table::HiredEmployees, 2)]);
    assert!(hiring::metrics::hires_by_quarter(&pool, 2022).await.unwrap().is_empty(), "the rollup follows");

    hiring::backup::restore_set(&pool, &zones.backups, &restored.previous).await.unwrap();
    assert_eq!(contents(&pool).await, later);
    assert_eq!(hiring::metrics::hires_by_quarter(&pool, 2022).await.unwrap(), later_metrics);
}

/// One bad backup in a set, the last one restored: no table changes.
#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn a_set_with_one_bad_backup_changes_no_table(pool: PgPool) {
    let (_dir, zones) = zones();
    ingest(&pool, &zones, "departments/1.csv", DEPARTMENTS).await;
    ingest(&pool, &zones, "jobs/1.csv", JOBS).await;
    ingest(&pool, &zones, "hired_employees/1.csv", HIRES).await;
    let set = hiring::backup::backup_set(&pool, &zones.backups).await.unwrap();
    let hires = &set.backups[2];
    zones.backups.put(&hires.key, b"not avro".to_vec()).await.unwrap();
    ingest(&pool, &zones, "departments/2.csv", "1,Renamed\n").await;
    let before = contents(&pool).await;
    let error = hiring::backup::restore_set(&pool, &zones.backups, &set.key).await.unwrap_err();
    assert!(matches!(error, Error::InvalidBackup(_)), "{error}");
    assert_eq!(contents(&pool).await, before, "no table changed");
}
