//! The datetime edges of the data contract (docs/api.md, "Data rules"): the accepted range, a
//! leap second and sub-microsecond digits, applied alike by both load paths (a file's binary
//! COPY, a batch's statement), the rollup and the backups. Real PostgreSQL (`#[sqlx::test]`).

use hiring::pipeline::{self, RawObject};
use hiring::table::Table;
use hiring::zones::Zones;
use sqlx::PgPool;

fn zones() -> (tempfile::TempDir, Zones) {
    let directory = tempfile::tempdir().expect("a temporary directory");
    let zones = Zones::local(directory.path()).expect("local zones");
    (directory, zones)
}

async fn references(pool: &PgPool) {
    let departments = serde_json::to_vec(&serde_json::json!([{"id": 1, "department": "Sales"}])).unwrap();
    hiring::load::load_batch(pool, Table::Departments, "test", &departments).await.unwrap();
    let jobs = serde_json::to_vec(&serde_json::json!([{"id": 1, "job": "Engineer"}])).unwrap();
    hiring::load::load_batch(pool, Table::Jobs, "test", &jobs).await.unwrap();
}

async fn load_file(pool: &PgPool, zones: &Zones, key: &str, text: &str) -> pipeline::ProcessReport {
    zones.raw.put(key, text.as_bytes().to_vec()).await.unwrap();
    let validation =
        pipeline::validate(pool, zones, &RawObject { key: key.to_owned(), etag: None }, "test").await.unwrap();
    pipeline::process(pool, zones, &validation).await.unwrap()
}

fn hire(id: i32, datetime: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!([
        {"id": id, "name": "Ana", "datetime": datetime, "department_id": 1, "job_id": 1}
    ]))
    .unwrap()
}

#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn a_leap_second_is_refused_with_its_reason_on_both_load_paths(pool: PgPool) {
    let (_dir, zones) = zones();
    references(&pool).await;
    let batch =
        hiring::load::load_batch(&pool, Table::HiredEmployees, "test", &hire(1, "2021-12-31T23:59:60Z")).await.unwrap();
    assert_eq!(batch.rejects.len(), 1, "a leap second is not a time PostgreSQL, Parquet or AVRO can hold");
    assert_eq!(batch.rejects[0].violation.reason.code(), "invalid_datetime");
    assert!(batch.rejects[0].violation.message.contains("leap second"), "{}", batch.rejects[0].violation.message);

    let file = load_file(
        &pool,
        &zones,
        "hired_employees/1.csv",
        "2,Bo,9999-12-31T23:59:60Z,1,1\n3,Cy,2021-01-01T00:00:00Z,1,1\n",
    )
    .await;
    assert_eq!((file.load.inserted, file.load.rejected), (1, 1));
    let rollup: i64 = sqlx::query_scalar("SELECT count(*) FROM hires_rollup WHERE q1 + q2 + q3 + q4 < 0")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(rollup, 0);

    // Every backup of hires stays restorable.
    let backup = hiring::backup::backup_table(&pool, &zones.backups, Table::HiredEmployees).await.unwrap();
    let restored =
        hiring::backup::restore_table(&pool, &zones.backups, Table::HiredEmployees, &backup.key).await.unwrap();
    assert_eq!(restored.rows, 1);
}

#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn a_time_past_year_9999_in_utc_is_refused(pool: PgPool) {
    references(&pool).await;
    let batch = hiring::load::load_batch(&pool, Table::HiredEmployees, "test", &hire(1, "9999-12-31T23:30:00-01:00"))
        .await
        .unwrap();
    assert_eq!(batch.rejects.len(), 1, "in UTC it is in the year 10000");
    assert_eq!(batch.rejects[0].violation.reason.code(), "invalid_datetime");
}

#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn sub_microsecond_digits_are_dropped_alike_by_both_load_paths(pool: PgPool) {
    let (_dir, zones) = zones();
    references(&pool).await;
    for (id, datetime, stored) in [
        (1, "1999-12-31T23:59:59.9999995Z", "1999-12-31 23:59:59.999999+00"),
        (2, "1969-12-31T23:59:59.0000001Z", "1969-12-31 23:59:59+00"),
        (3, "2021-12-31T23:59:59.9999999Z", "2021-12-31 23:59:59.999999+00"),
    ] {
        let file =
            load_file(&pool, &zones, &format!("hired_employees/{id}.csv"), &format!("{id},Ana,{datetime},1,1\n")).await;
        assert_eq!(file.load.inserted, 1);
        let text: String = sqlx::query_scalar("SELECT datetime::text FROM hired_employees WHERE id = $1")
            .bind(id)
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(text, stored, "{datetime} is stored with its first six digits");
        // The same row again, as a batch: the same value, so unchanged.
        let batch = hiring::load::load_batch(&pool, Table::HiredEmployees, "test", &hire(id, datetime)).await.unwrap();
        assert_eq!(
            (batch.report.updated, batch.report.unchanged),
            (0, 1),
            "{datetime}: the batch path stores what the file path stored"
        );
    }
    // The year the rollup counted is the stored value's.
    let late: i64 = sqlx::query_scalar("SELECT coalesce(sum(q4), 0) FROM hires_rollup WHERE year = 2021")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(late, 1);
}
