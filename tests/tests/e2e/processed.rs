//! Uploads leave their files in the zones: the raw file, the accepted rows as Parquet in the
//! processed zone, the rejects as JSON lines in the rejects zone.

use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::Field;
use serde_json::Value;
use sqlx::PgPool;

use crate::helpers::TestApp;

fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() { found.extend(files_under(&path)) } else { found.push(path) }
        }
    }
    found.sort();
    found
}

#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn an_upload_writes_its_accepted_rows_as_parquet_and_its_rejects_as_json_lines(pool: PgPool) {
    let app = TestApp::start(pool).await;
    let body = app.load_sample().await;
    let hires = &body["ingestions"][2];
    let id = hires["id"].as_i64().unwrap();

    let processed = files_under(&app.data_dir.path().join("processed/hired_employees"));
    assert_eq!(processed.len(), 1, "{processed:?}");
    let date = chrono::Utc::now().format("%Y-%m-%d");
    assert!(processed[0].ends_with(format!("ingest_date={date}/{id}.parquet")), "{:?}", processed[0]);

    // Every Parquet row equals the stored row, typed: int ids, string name, UTC micros.
    let reader = SerializedFileReader::new(std::fs::File::open(&processed[0]).unwrap()).unwrap();
    assert_eq!(reader.metadata().file_metadata().num_rows(), 1929);
    let mut from_parquet: Vec<(i32, String, i64, i32, i32)> = reader
        .get_row_iter(None)
        .unwrap()
        .map(|row| {
            let row = row.unwrap();
            let fields: Vec<&Field> = row.get_column_iter().map(|(_, field)| field).collect();
            match fields[..] {
                [
                    Field::Int(id),
                    Field::Str(name),
                    Field::TimestampMicros(at),
                    Field::Int(department),
                    Field::Int(job),
                ] => (*id, name.clone(), *at, *department, *job),
                _ => panic!("unexpected Parquet row {fields:?}"),
            }
        })
        .collect();
    from_parquet.sort();
    let stored: Vec<(i32, String, i64, i32, i32)> = sqlx::query_as(
        "SELECT id, name, (extract(epoch FROM datetime) * 1000000)::bigint, department_id, job_id FROM hired_employees ORDER BY id",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(from_parquet, stored);

    let rejects = files_under(&app.data_dir.path().join("rejects/hired_employees"));
    assert_eq!(rejects.len(), 1);
    assert!(rejects[0].ends_with(format!("{id}.jsonl")));
    let lines: Vec<Value> =
        std::fs::read_to_string(&rejects[0]).unwrap().lines().map(|line| serde_json::from_str(line).unwrap()).collect();
    assert_eq!(lines.len(), 70);
    assert_eq!(
        lines[0],
        serde_json::json!({"line": 2, "reason": "missing_field", "message": "job_id is required but empty", "raw": "2,Ty Hofer,2021-05-30T05:43:46Z,8,", "raw_bytes": 34})
    );
    // Departments had no rejects: no empty rejects file.
    assert!(files_under(&app.data_dir.path().join("rejects/departments")).is_empty());
    assert_eq!(files_under(&app.data_dir.path().join("raw/departments")).len(), 1);
}

#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn with_s3_zones_an_upload_leaves_its_files_in_the_bucket(pool: PgPool) {
    let moto = devenv::moto::Moto::start().unwrap();
    moto.create_bucket("lake").await.unwrap();
    let env = moto.aws_env();
    let app = TestApp::start_with(pool, |settings| {
        settings.zone_urls =
            hiring::zones::ZoneName::ALL.into_iter().map(|zone| (zone, format!("s3://lake/{}", zone.name()))).collect();
        settings.aws =
            env.iter().map(|(name, value)| (name.clone(), api::config::Secret::new(value.as_str()))).collect();
    })
    .await;
    let body = app.load_sample().await;
    let id = body["ingestions"][2]["id"].as_i64().unwrap();

    let lookup = |name: &str| env.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
    let bucket = hiring::zones::Zone::open_with("s3://lake", lookup).unwrap();
    let keys: Vec<String> = bucket.list("").await.unwrap().into_iter().map(|m| m.location.to_string()).collect();
    let date = chrono::Utc::now().format("%Y-%m-%d");
    assert!(keys.contains(&format!("processed/hired_employees/ingest_date={date}/{id}.parquet")), "{keys:?}");
    assert!(keys.contains(&format!("rejects/hired_employees/{id}.jsonl")), "{keys:?}");
    let raw: Vec<&String> = keys.iter().filter(|k| k.starts_with("raw/hired_employees/")).collect();
    assert_eq!(raw.len(), 1, "{keys:?}");
    assert_eq!(
        bucket.get(raw[0]).await.unwrap(),
        std::fs::read(crate::helpers::sample("hired_employees.csv")).unwrap()
    );
    let rejects = bucket.get(&format!("rejects/hired_employees/{id}.jsonl")).await.unwrap();
    assert_eq!(rejects.iter().filter(|&&b| b == b'\n').count(), 70);
    // The staged copies are gone once the zone holds the files.
    assert!(files_under(&app.data_dir.path().join("raw")).is_empty());
}
