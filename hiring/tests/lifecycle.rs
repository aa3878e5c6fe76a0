//! An ingestion's life across failures, waits and late references, step by step against a real
//! PostgreSQL (`#[sqlx::test]`). The model-based test (`tests/lifecycle_model.rs`) drives random
//! sequences of the same moves; these pin the individual rules by name.

use std::time::{Duration, Instant};

use hiring::error::Error;
use hiring::pipeline::{self, RawObject};
use hiring::zones::Zones;
use sqlx::PgPool;

fn zones() -> (tempfile::TempDir, Zones) {
    let directory = tempfile::tempdir().expect("a temporary directory");
    let zones = Zones::local(directory.path()).expect("local zones");
    (directory, zones)
}

async fn put(pool: &PgPool, zones: &Zones, key: &str, text: &str) -> i64 {
    zones.raw.put(key, text.as_bytes().to_vec()).await.expect("put");
    pipeline::enqueue(pool, zones, key, "test").await.expect("enqueue")
}

fn object(key: &str) -> RawObject {
    RawObject { key: key.to_owned(), etag: None }
}

async fn status(pool: &PgPool, id: i64) -> String {
    sqlx::query_scalar("SELECT status FROM ingestions WHERE id = $1").bind(id).fetch_one(pool).await.unwrap()
}

/// The backend of another session waiting for a lock, once one is (polled up to 30 s).
async fn backend_waiting_for_a_lock(pool: &PgPool) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let waiting: Option<i32> = sqlx::query_scalar(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' LIMIT 1",
        )
        .fetch_optional(pool)
        .await
        .unwrap();
        if let Some(pid) = waiting {
            return pid;
        }
        assert!(Instant::now() < deadline, "no step came to wait for the table lock within 30 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn hires_keep_waiting_while_their_departments_fail_on_a_retryable_error(pool: PgPool) {
    let (_dir, zones) = zones();
    let departments = put(&pool, &zones, "departments/1.csv", "1,Sales\n").await;
    let jobs = put(&pool, &zones, "jobs/1.csv", "1,Engineer\n").await;
    let hires = put(&pool, &zones, "hired_employees/1.csv", "1,Ana,2021-01-15T10:00:00Z,1,1\n").await;
    pipeline::group(&pool, &[departments, jobs, hires]).await.unwrap();

    let validation = pipeline::validate(&pool, &zones, &object("departments/1.csv"), "test").await.unwrap();
    // The departments' load loses its connection while it waits for the table: a retryable error.
    let mut locker = pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE departments IN ACCESS EXCLUSIVE MODE").execute(&mut *locker).await.unwrap();
    let step = tokio::spawn({
        let (pool, zones) = (pool.clone(), zones.clone());
        async move { pipeline::process(&pool, &zones, &validation).await }
    });
    let pid = backend_waiting_for_a_lock(&pool).await;
    sqlx::query("SELECT pg_terminate_backend($1)").bind(pid).execute(&pool).await.unwrap();
    let error = step.await.unwrap().unwrap_err();
    assert!(error.is_retryable(), "a killed connection is worth retrying: {error}");
    locker.rollback().await.unwrap();
    assert_eq!(status(&pool, departments).await, "retrying", "a retryable failure is not final");

    let jobs_validation = pipeline::validate(&pool, &zones, &object("jobs/1.csv"), "test").await.unwrap();
    pipeline::process(&pool, &zones, &jobs_validation).await.unwrap();
    let waiting = pipeline::validate(&pool, &zones, &object("hired_employees/1.csv"), "test").await.unwrap_err();
    assert!(
        matches!(waiting, Error::Waiting { earlier, .. } if earlier == departments),
        "the hires wait for their departments, retried later: {waiting}"
    );
    assert_eq!(status(&pool, hires).await, "queued");

    // The retry loads the departments; the hires then load with their reference.
    let validation = pipeline::validate(&pool, &zones, &object("departments/1.csv"), "test").await.unwrap();
    pipeline::process(&pool, &zones, &validation).await.unwrap();
    let validation = pipeline::validate(&pool, &zones, &object("hired_employees/1.csv"), "test").await.unwrap();
    let loaded = pipeline::process(&pool, &zones, &validation).await.unwrap();
    assert_eq!((loaded.load.inserted, loaded.load.rejected), (1, 0));
}

#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn a_final_failure_of_their_departments_fails_the_waiting_hires_and_names_it(pool: PgPool) {
    let (_dir, zones) = zones();
    let departments = put(&pool, &zones, "departments/1.csv", "1,Sales\n").await;
    let hires = put(&pool, &zones, "hired_employees/1.csv", "1,Ana,2021-01-15T10:00:00Z,1,1\n").await;
    pipeline::group(&pool, &[departments, hires]).await.unwrap();
    // The departments' object was replaced: its step fails for good (the new version is its own).
    zones.raw.put("departments/1.csv", b"1,Sales\n2,Ops\n".to_vec()).await.unwrap();
    let mut stale = object("departments/1.csv");
    stale.etag = sqlx::query_scalar("SELECT object_etag FROM ingestions WHERE id = $1")
        .bind(departments)
        .fetch_one(&pool)
        .await
        .unwrap();
    pipeline::validate(&pool, &zones, &stale, "test").await.unwrap_err();
    assert_eq!(
        pipeline::fail(&pool, departments, "the workflow gave up: its object was replaced").await.unwrap(),
        hiring::lifecycle::Moved::Moved
    );
    assert_eq!(status(&pool, departments).await, "failed");

    let error = pipeline::validate(&pool, &zones, &object("hired_employees/1.csv"), "test").await.unwrap_err();
    assert!(!error.is_retryable(), "{error}");
    assert_eq!(status(&pool, hires).await, "failed");
    let reason: String =
        sqlx::query_scalar("SELECT error FROM ingestions WHERE id = $1").bind(hires).fetch_one(&pool).await.unwrap();
    assert!(reason.contains(&format!("ingestion {departments}")), "{reason}");
    let rejects: i64 = sqlx::query_scalar("SELECT count(*) FROM rejects").fetch_one(&pool).await.unwrap();
    assert_eq!(rejects, 0, "no hire is rejected for good because of a failure it did not cause");
}

#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn rejects_describe_the_final_outcome_of_their_ingestion(pool: PgPool) {
    let (_dir, zones) = zones();
    put(&pool, &zones, "jobs/1.csv", "1,Engineer\n").await;
    let validation = pipeline::validate(&pool, &zones, &object("jobs/1.csv"), "test").await.unwrap();
    pipeline::process(&pool, &zones, &validation).await.unwrap();
    let sales = serde_json::to_vec(&serde_json::json!([{"id": 1, "department": "Sales"}])).unwrap();
    hiring::load::load_batch(&pool, hiring::table::Table::Departments, "test", &sales).await.unwrap();
    let hires = put(
        &pool,
        &zones,
        "hired_employees/1.csv",
        "1,Ana,2021-01-15T10:00:00Z,7,1\n2,,2021-01-15T10:00:00Z,7,1\n3,Cy,2021-02-01T00:00:00Z,1,1\n",
    )
    .await;
    let validation = pipeline::validate(&pool, &zones, &object("hired_employees/1.csv"), "test").await.unwrap();
    assert_eq!(validation.reasons.get("unknown_department"), Some(&1), "{validation:?}");

    // Department 7 arrives before the hires are processed: their row loads.
    let batch = serde_json::to_vec(&serde_json::json!([{"id": 7, "department": "Ops"}])).unwrap();
    hiring::load::load_batch(&pool, hiring::table::Table::Departments, "test", &batch).await.unwrap();
    let processed = pipeline::process(&pool, &zones, &validation).await.unwrap();
    assert_eq!((processed.load.inserted, processed.load.rejected), (2, 1));

    let rejects = hiring::ingestions::rejects(&pool, hires, None, 10).await.unwrap();
    let reasons: Vec<(i64, &str)> = rejects.iter().map(|r| (r.position, r.reason.as_str())).collect();
    assert_eq!(reasons, [(2, "missing_field")], "the loaded row is no longer listed as rejected");
    let ingestion = hiring::ingestions::get(&pool, hires).await.unwrap();
    assert_eq!(ingestion.rejected, 1);
    assert_eq!(ingestion.rejects_key, None, "the validation's rejects file no longer describes the outcome");
}

#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn a_stray_quote_fails_the_ingestion_with_its_line_instead_of_rejecting_the_rest_of_the_file(pool: PgPool) {
    let (_dir, zones) = zones();
    // Line 3 opens a quoted field that never closes: everything after it would be one field.
    let mut text = String::from("1,Sales\n2,Support\n3,\"Ops\n");
    for id in 4..5_000 {
        text.push_str(&format!("{id},Department number {id}\n"));
    }
    let id = put(&pool, &zones, "departments/1.csv", &text).await;
    let error = pipeline::validate(&pool, &zones, &object("departments/1.csv"), "test").await.unwrap_err();
    assert!(!error.is_retryable(), "the file is malformed; retrying cannot mend it: {error}");
    assert_eq!(status(&pool, id).await, "failed");
    let reason: String =
        sqlx::query_scalar("SELECT error FROM ingestions WHERE id = $1").bind(id).fetch_one(&pool).await.unwrap();
    assert!(reason.contains("line 3") && reason.contains("quote"), "{reason}");
    let rejects: i64 = sqlx::query_scalar("SELECT count(*) FROM rejects").fetch_one(&pool).await.unwrap();
    let departments: i64 = sqlx::query_scalar("SELECT count(*) FROM departments").fetch_one(&pool).await.unwrap();
    assert_eq!((rejects, departments), (0, 0), "nothing of a malformed file is kept");
}

#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn a_sweep_locks_only_the_ingestions_it_closes(pool: PgPool) {
    use hiring::lifecycle::{Claimed, Deadlines, Lifecycle, Step};
    let (_dir, zones) = zones();
    let expired = put(&pool, &zones, "jobs/1.csv", "1,Engineer\n").await;
    let fresh = put(&pool, &zones, "jobs/2.csv", "2,Analyst\n").await;
    let deadlines = Deadlines::DEFAULT;
    let long_ago = chrono::Utc::now() - chrono::Duration::from_std(deadlines.sweep_after() * 2).unwrap();
    sqlx::query("UPDATE ingestions SET moved_at = $2 WHERE id = $1")
        .bind(expired)
        .bind(long_ago)
        .execute(&pool)
        .await
        .unwrap();

    // Someone holds the expired row: the sweep waits for it, and meanwhile the fresh
    // ingestion's step claims it as usual.
    let mut holder = pool.begin().await.unwrap();
    sqlx::query("SELECT id FROM ingestions WHERE id = $1 FOR UPDATE")
        .bind(expired)
        .execute(&mut *holder)
        .await
        .unwrap();
    let sweep = tokio::spawn({
        let pool = pool.clone();
        async move { Lifecycle::sweep(&pool, chrono::Utc::now(), deadlines).await }
    });
    backend_waiting_for_a_lock(&pool).await;
    let claimed = Lifecycle::claim(&pool, fresh, Step::Validate).await.expect("the fresh ingestion is not locked");
    let Claimed::Claimed(claim) = claimed else { panic!("the fresh ingestion was claimable: {claimed:?}") };
    let _ = claim.finish(&pool, Ok::<_, Error>(())).await;
    holder.rollback().await.unwrap();
    assert_eq!(sweep.await.unwrap().unwrap(), [expired], "only the expired ingestion is closed");
    assert_eq!(status(&pool, expired).await, "failed");
    assert_eq!(status(&pool, fresh).await, "validating");
}

async fn rows(pool: &PgPool, table: &str) -> i64 {
    sqlx::query_scalar(&format!("SELECT count(*) FROM {table}")).fetch_one(pool).await.unwrap()
}

/// An upload of departments and jobs announced held, as `POST /upload` does with the state
/// machine, whose departments file is stored and jobs file not yet: (zones, departments, jobs).
async fn held_upload_with_its_departments_stored(pool: &PgPool) -> (tempfile::TempDir, Zones, i64, i64) {
    let (dir, zones) = zones();
    let expires = chrono::Utc::now() + chrono::Duration::hours(1);
    let departments = pipeline::expect_held(pool, "departments/1.csv", "test", expires).await.unwrap();
    let jobs = pipeline::expect_held(pool, "jobs/1.csv", "test", expires).await.unwrap();
    pipeline::group(pool, &[departments, jobs]).await.unwrap();
    zones.raw.put("departments/1.csv", b"1,Sales\n".to_vec()).await.unwrap();
    (dir, zones, departments, jobs)
}

/// The files of one `POST /upload` with the state machine are stored one by one, and each
/// stored file's event starts a step at once: until every file is stored, its step waits; when a
/// later file cannot be stored, the upload is abandoned and nothing of it is loaded.
#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn a_stored_file_of_an_upload_waits_for_the_rest_and_loads_nothing_once_the_upload_is_abandoned(pool: PgPool) {
    let (_dir, zones, departments, jobs) = held_upload_with_its_departments_stored(&pool).await;

    let early = pipeline::validate(&pool, &zones, &object("departments/1.csv"), "test").await;
    let early = early.expect_err("the first file's step runs before the second file is stored");
    assert!(early.is_retryable(), "{early}");
    assert!(early.to_string().contains("still being stored"), "{early}");

    // The jobs file cannot be stored: the API abandons the upload, then removes the first file.
    pipeline::abandon(&pool, &[departments, jobs], "the upload failed before its files were stored").await.unwrap();
    let late = pipeline::validate(&pool, &zones, &object("departments/1.csv"), "test").await.unwrap_err();
    assert!(!late.is_retryable(), "{late}");
    assert!(late.to_string().contains("the upload failed before its files were stored"), "{late}");
    assert_eq!((status(&pool, departments).await, status(&pool, jobs).await), ("failed".into(), "failed".into()));
    assert_eq!(rows(&pool, "departments").await, 0, "nothing of an abandoned upload is loaded");
}

#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn a_stored_file_of_an_upload_loads_once_every_file_is_stored(pool: PgPool) {
    let (_dir, zones, departments, jobs) = held_upload_with_its_departments_stored(&pool).await;
    assert!(pipeline::validate(&pool, &zones, &object("departments/1.csv"), "test").await.unwrap_err().is_retryable());
    zones.raw.put("jobs/1.csv", b"1,Engineer\n".to_vec()).await.unwrap();
    pipeline::release(&pool, &[departments, jobs]).await.unwrap();

    for key in ["departments/1.csv", "jobs/1.csv"] {
        let validation = pipeline::validate(&pool, &zones, &object(key), "test").await.unwrap();
        pipeline::process(&pool, &zones, &validation).await.unwrap();
    }
    assert_eq!((rows(&pool, "departments").await, rows(&pool, "jobs").await), (1, 1));
    assert_eq!((status(&pool, departments).await, status(&pool, jobs).await), ("succeeded".into(), "succeeded".into()));
}

/// A step whose task is cancelled (its future dropped mid-step) leaves its claim without
/// finishing it: the lock it held must not stay with a pooled connection, or every later claim
/// of the ingestion, from any worker, would find it busy for as long as that connection lives.
#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn a_claim_dropped_without_finishing_frees_its_ingestion_for_the_next_worker(pool: PgPool) {
    use hiring::lifecycle::{Claimed, Lifecycle, Step};
    let (_dir, zones) = zones();
    let id = put(&pool, &zones, "departments/1.csv", "1,Sales\n").await;
    // Each worker has a pool of its own, as another process would, with the default idle
    // timeout of the API's and the functions' pools (10 minutes).
    let worker = || async {
        sqlx::postgres::PgPoolOptions::new()
            .max_connections(2)
            .connect_with(pool.connect_options().as_ref().clone())
            .await
            .unwrap()
    };
    let (first, other) = (worker().await, worker().await);
    let Claimed::Claimed(claim) = Lifecycle::claim(&first, id, Step::Validate).await.unwrap() else {
        panic!("the first claim takes the ingestion")
    };
    drop(claim);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match Lifecycle::claim(&other, id, Step::Validate).await {
            Ok(Claimed::Claimed(_)) => break,
            Err(Error::Busy(_)) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(50)).await,
            other => panic!("the dropped claim still holds ingestion {id}: {other:?}"),
        }
    }
}

/// A held file whose workflow gave up waiting (its retrier ran out while the upload's other
/// files were still being stored) is failed: the upload then fails whole, and its other files
/// are not loaded.
#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn an_upload_whose_held_file_failed_is_not_released_in_part(pool: PgPool) {
    let (_dir, zones, departments, jobs) = held_upload_with_its_departments_stored(&pool).await;
    assert!(matches!(
        pipeline::validate(&pool, &zones, &object("departments/1.csv"), "test").await,
        Err(Error::Held(_))
    ));
    pipeline::fail_object(&pool, &zones, &object("departments/1.csv"), "the workflow gave up waiting").await.unwrap();
    zones.raw.put("jobs/1.csv", b"1,Engineer\n".to_vec()).await.unwrap();

    let refused = pipeline::release(&pool, &[departments, jobs]).await.unwrap_err();
    assert!(refused.to_string().contains(&format!("ingestion {departments}")), "{refused}");
    let late = pipeline::validate(&pool, &zones, &object("jobs/1.csv"), "test").await.unwrap_err();
    assert!(!late.is_retryable(), "{late}");
    assert_eq!((status(&pool, departments).await, status(&pool, jobs).await), ("failed".into(), "failed".into()));
    assert_eq!(rows(&pool, "jobs").await, 0, "no file of a failed upload is loaded");
}
