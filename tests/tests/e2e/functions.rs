//! The Lambda handlers (validate, process, backup) called with real EventBridge S3 events,
//! against moto's S3 and a real PostgreSQL: the round trip, duplicate deliveries, and the
//! events retrying cannot fix (wrong bucket, deleted or replaced object) apart from the ones it
//! can (the database away).
//!
//! The built binaries are run through a Lambda Runtime API emulator in `lambda_emulator.rs`.

use devenv::moto::Moto;
use hiring::zones::{Zone, ZoneName};
use hiring_functions::{FATAL, Function, ObjectCreated, RETRYABLE, StepError};
use lambda_runtime::Diagnostic;
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::RowAccessor;
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::helpers::{TestApp, sample};

const RAW_BUCKET: &str = "hiring-raw";
/// The raw zone's prefix in its bucket: events carry full keys, the pipeline zone keys.
const RAW_PREFIX: &str = "incoming";

/// moto with the four zones' buckets, and a function (as a Lambda container would hold it)
/// over them and the test's database.
struct Lake {
    moto: Moto,
    function: &'static Function,
}

impl Lake {
    async fn start(pool: PgPool) -> Lake {
        Self::start_with_database(Some(pool), "postgres://unused@127.0.0.1/unused").await
    }

    /// With `pool` None, the function connects to `database_url` itself.
    async fn start_with_database(pool: Option<PgPool>, database_url: &str) -> Lake {
        Self::start_with_env(pool, &[("DATABASE_URL", database_url)]).await
    }

    /// With the database settings `database` (variable, value).
    async fn start_with_env(pool: Option<PgPool>, database: &[(&str, &str)]) -> Lake {
        let moto = Moto::start().unwrap();
        for zone in ZoneName::ALL {
            moto.create_bucket(&bucket(zone)).await.unwrap();
        }
        let mut env = moto.aws_env();
        env.extend(database.iter().map(|(name, value)| (name.to_string(), value.to_string())));
        for zone in ZoneName::ALL {
            let url = match zone {
                ZoneName::Raw => format!("s3://{RAW_BUCKET}/{RAW_PREFIX}"),
                other => format!("s3://{}", bucket(other)),
            };
            env.push((format!("HIRING_{}_URL", zone.name().to_uppercase()), url));
        }
        let mut function = Function::from_lookup(|name| env.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone()))
            .expect("the function's settings are valid");
        if let Some(pool) = pool {
            function.use_pool(pool);
        }
        Lake { moto, function: Box::leak(Box::new(function)) }
    }

    fn zone(&self, zone: ZoneName) -> &Zone {
        let zones = &self.function.zones;
        match zone {
            ZoneName::Raw => &zones.raw,
            ZoneName::Rejects => &zones.rejects,
            ZoneName::Processed => &zones.processed,
            ZoneName::Backups => &zones.backups,
        }
    }

    /// Writes an object to the raw zone and returns the event S3 sends EventBridge for it.
    async fn put(&self, key: &str, bytes: impl Into<bytes::Bytes>) -> Value {
        let raw = &self.function.zones.raw;
        raw.put(key, bytes.into()).await.unwrap();
        let meta = raw.head(key).await.unwrap().expect("the object was just written");
        event(RAW_BUCKET, &format!("{RAW_PREFIX}/{key}"), meta.e_tag.as_deref().unwrap(), meta.size)
    }

    async fn validate(&self, event: &Value) -> Result<Value, Diagnostic> {
        let event: ObjectCreated = serde_json::from_value(event.clone()).expect("a valid EventBridge event");
        answer(hiring_functions::validate(self.function, event).await)
    }

    async fn process(&self, validation: &Value) -> Result<Value, Diagnostic> {
        let input = serde_json::from_value(validation.clone()).expect("the validate output");
        answer(hiring_functions::process(self.function, input).await)
    }

    async fn keys(&self, zone: ZoneName) -> Vec<(String, chrono::DateTime<chrono::Utc>)> {
        self.zone(zone).list("").await.unwrap().into_iter().map(|m| (m.location.to_string(), m.last_modified)).collect()
    }
}

fn bucket(zone: ZoneName) -> String {
    match zone {
        ZoneName::Raw => RAW_BUCKET.to_owned(),
        other => format!("hiring-{}", other.name()),
    }
}

/// A handler's result as the runtime would send it: the JSON output, or the error's type and
/// message.
fn answer<T: serde::Serialize>(result: Result<T, StepError>) -> Result<Value, Diagnostic> {
    result.map(|output| serde_json::to_value(output).unwrap()).map_err(Diagnostic::from)
}

/// An "Object Created" event, as S3 sends it to EventBridge and Step Functions passes it on
/// (<https://docs.aws.amazon.com/AmazonS3/latest/userguide/ev-events.html>).
fn event(bucket: &str, key: &str, etag: &str, size: u64) -> Value {
    json!({
        "version": "0",
        "id": "17793124-05d4-b198-2fde-7ededc63b103",
        "detail-type": "Object Created",
        "source": "aws.s3",
        "account": "123456789012",
        "time": "2026-11-27T00:00:00Z",
        "region": "us-east-1",
        "resources": [format!("arn:aws:s3:::{bucket}")],
        "detail": {
            "version": "0",
            "bucket": {"name": bucket},
            "object": {
                "key": key,
                "size": size,
                "etag": etag.trim_matches('"'),
                "version-id": "IYV3p45BT0ac8hjHg1houSdS1a.Mppzf",
                "sequencer": "00617F08299329D189"
            },
            "request-id": "N4N7GDK58NMKJ12R",
            "requester": "123456789012",
            "source-ip-address": "1.2.3.4",
            "reason": "PutObject"
        }
    })
}

fn sample_bytes(table: &str) -> Vec<u8> {
    std::fs::read(sample(&format!("{table}.csv"))).unwrap()
}

async fn ingestions(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM ingestions").fetch_one(pool).await.unwrap()
}

#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn the_sample_files_flow_through_validate_and_process_into_postgres_and_parquet(pool: PgPool) {
    let lake = Lake::start(pool.clone()).await;
    let mut processed = Vec::new();
    for (table, rows, rejected) in [("departments", 12, 0), ("jobs", 183, 0), ("hired_employees", 1999, 70)] {
        let event = lake.put(&format!("{table}/2026-11-27.csv"), sample_bytes(table)).await;
        let validation = lake.validate(&event).await.unwrap();
        assert_eq!(validation["table"], table);
        assert_eq!(validation["key"], format!("{table}/2026-11-27.csv"));
        assert_eq!(validation["rows"], rows, "{validation}");
        assert_eq!(validation["rejected"], rejected, "{validation}");
        assert_eq!(validation["accepted"], rows - rejected);
        assert_eq!(validation["loadable"], true);
        assert_eq!(validation["replayed"], false);

        let report = lake.process(&validation).await.unwrap();
        assert_eq!(report["id"], validation["ingestion"]);
        assert_eq!(report["inserted"], rows - rejected, "{report}");
        assert_eq!(report["rejected"], rejected);
        processed.push(report);
    }
    let hires = &processed[2];
    // The sample's 70 broken hires, by reason, as the state machine sees them.
    let again = lake.put("hired_employees/again.csv", sample_bytes("hired_employees")).await;
    let body = lake.validate(&again).await.unwrap();
    let reasons = body["reasons"].as_object().unwrap();
    assert_eq!(reasons.values().map(|n| n.as_i64().unwrap()).sum::<i64>(), 70, "{body}");
    assert!(reasons.contains_key("missing_field"), "{body}");

    // PostgreSQL has the accepted rows; the processed zone has them as Parquet, row for row.
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM hired_employees").fetch_one(&pool).await.unwrap();
    assert_eq!(count, 1929);
    let key = hires["processed_key"].as_str().unwrap();
    let date = chrono::Utc::now().format("%Y-%m-%d");
    assert_eq!(key, format!("hired_employees/ingest_date={date}/{}.parquet", hires["id"]));
    let parquet = lake.zone(ZoneName::Processed).get(key).await.unwrap();
    let reader = SerializedFileReader::new(parquet).unwrap();
    let mut ids: Vec<i32> = reader.get_row_iter(None).unwrap().map(|row| row.unwrap().get_int(0).unwrap()).collect();
    ids.sort();
    let stored: Vec<i32> =
        sqlx::query_scalar("SELECT id FROM hired_employees ORDER BY id").fetch_all(&pool).await.unwrap();
    assert_eq!(ids, stored);

    // The rejects zone has the 70 rejects as JSON lines, named by ingestion.
    let rejects = lake.zone(ZoneName::Rejects).get(&format!("hired_employees/{}.jsonl", hires["id"])).await.unwrap();
    let lines: Vec<Value> =
        std::str::from_utf8(&rejects).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 70);
    assert_eq!(lines[0]["line"], 2);
    assert_eq!(lines[0]["reason"], "missing_field");
}

#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn a_duplicate_delivery_changes_nothing_and_writes_nothing_twice(pool: PgPool) {
    let lake = Lake::start(pool.clone()).await;
    for table in ["departments", "jobs"] {
        let event = lake.put(&format!("{table}.csv"), sample_bytes(table)).await;
        let validation = lake.validate(&event).await.unwrap();
        lake.process(&validation).await.unwrap();
    }
    let event = lake.put("hired_employees/batch-1.csv", sample_bytes("hired_employees")).await;
    let first = lake.validate(&event).await.unwrap();
    let loaded = lake.process(&first).await.unwrap();
    let before = (ingestions(&pool).await, lake.keys(ZoneName::Rejects).await, lake.keys(ZoneName::Processed).await);

    // EventBridge delivers at least once: the same event again, both steps again.
    let second = lake.validate(&event).await.unwrap();
    assert_eq!(second["replayed"], true);
    assert_eq!(second["ingestion"], first["ingestion"]);
    assert_eq!(second["rejected"], first["rejected"]);
    let again = lake.process(&second).await.unwrap();
    assert_eq!(again["replayed"], true);
    assert_eq!(again["inserted"], loaded["inserted"]);
    assert_eq!(again["processed_key"], loaded["processed_key"]);
    // And the first validation's output handed to process once more (a Step Functions retry).
    assert_eq!(lake.process(&first).await.unwrap()["replayed"], true);

    let after = (ingestions(&pool).await, lake.keys(ZoneName::Rejects).await, lake.keys(ZoneName::Processed).await);
    assert_eq!(before, after, "a replay wrote nothing: no new ingestion, no object rewritten");
    let rejects: i64 = sqlx::query_scalar("SELECT count(*) FROM rejects").fetch_one(&pool).await.unwrap();
    assert_eq!(rejects, 70);
}

#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn events_for_another_bucket_or_outside_the_zone_are_fatal_and_record_nothing(pool: PgPool) {
    let lake = Lake::start(pool.clone()).await;
    let mut event = lake.put("departments.csv", sample_bytes("departments")).await;

    event["detail"]["bucket"]["name"] = json!("someone-elses-bucket");
    let error = lake.validate(&event).await.unwrap_err();
    assert_eq!(error.error_type, FATAL);
    assert!(error.error_message.contains("someone-elses-bucket"), "{}", error.error_message);

    event["detail"]["bucket"]["name"] = json!(RAW_BUCKET);
    event["detail"]["object"]["key"] = json!("elsewhere/departments.csv");
    let error = lake.validate(&event).await.unwrap_err();
    assert_eq!(error.error_type, FATAL);
    assert!(error.error_message.contains("outside the raw zone's prefix"), "{}", error.error_message);

    let unknown = lake.put("misc/people.csv", "1,Ann\n").await;
    let error = lake.validate(&unknown).await.unwrap_err();
    assert_eq!(error.error_type, FATAL);
    assert!(error.error_message.contains("names no table"), "{}", error.error_message);

    let mut other = unknown.clone();
    other["detail-type"] = json!("Object Deleted");
    assert_eq!(lake.validate(&other).await.unwrap_err().error_type, FATAL);
    assert_eq!(ingestions(&pool).await, 0);
}

#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn a_deleted_or_replaced_object_is_fatal_and_its_new_version_loads(pool: PgPool) {
    let lake = Lake::start(pool.clone()).await;
    let deleted = lake.put("departments/gone.csv", "1,Sales\n").await;
    lake.function.zones.raw.delete("departments/gone.csv").await.unwrap();
    let error = lake.validate(&deleted).await.unwrap_err();
    assert_eq!(error.error_type, FATAL);
    assert!(error.error_message.contains("no such object"), "{}", error.error_message);

    let first = lake.put("departments/d.csv", "1,Sales\n").await;
    let second = lake.put("departments/d.csv", "1,Sales\n2,Support\n").await;
    let error = lake.validate(&first).await.unwrap_err();
    assert_eq!(error.error_type, FATAL);
    assert!(error.error_message.contains("was replaced"), "{}", error.error_message);
    assert_eq!(ingestions(&pool).await, 0);

    let validation = lake.validate(&second).await.unwrap();
    assert_eq!(lake.process(&validation).await.unwrap()["inserted"], 2);
}

#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn an_object_that_is_not_csv_or_is_empty_is_validated_as_not_loadable(pool: PgPool) {
    let lake = Lake::start(pool.clone()).await;
    let binary: Vec<u8> = (0..4096u32).map(|i| (i.wrapping_mul(2654435761) >> 24) as u8).collect();
    let validation = lake.validate(&lake.put("jobs/photo.csv", binary).await).await.unwrap();
    assert_eq!(validation["loadable"], false, "{validation}");
    assert_eq!(validation["accepted"], 0);
    assert!(validation["rejected"].as_i64().unwrap() > 0);
    let error = lake.process(&validation).await.unwrap_err();
    assert_eq!(error.error_type, FATAL);
    assert!(error.error_message.contains("nothing to load"), "{}", error.error_message);

    let empty = lake.validate(&lake.put("jobs/empty.csv", "").await).await.unwrap();
    assert_eq!((empty["rows"].as_i64(), empty["loadable"].as_bool()), (Some(0), Some(false)));
    let status: Vec<String> =
        sqlx::query_scalar("SELECT status FROM ingestions ORDER BY id").fetch_all(&pool).await.unwrap();
    assert_eq!(status, ["rejected", "rejected"]);
    let jobs: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs").fetch_one(&pool).await.unwrap();
    assert_eq!(jobs, 0);
}

#[tokio::test]
async fn an_unreachable_database_is_a_retryable_error_and_writes_nothing() {
    // Port 1 on loopback: nothing listens, the connection is refused at once.
    let lake = Lake::start_with_database(None, "postgres://postgres@127.0.0.1:1/hiring").await;
    let event = lake.put("departments.csv", sample_bytes("departments")).await;
    let error = lake.validate(&event).await.unwrap_err();
    assert_eq!(error.error_type, RETRYABLE, "{}", error.error_message);
    assert!(lake.keys(ZoneName::Rejects).await.is_empty());
    assert!(lake.keys(ZoneName::Processed).await.is_empty());
    let report = json!({
        "ingestion": 1, "table": "departments", "key": "departments.csv", "etag": "x", "rows": 1,
        "accepted": 1, "rejected": 0, "reasons": {}, "rejects_key": null, "loadable": true
    });
    assert_eq!(lake.process(&report).await.unwrap_err().error_type, RETRYABLE);
}

/// As the stack deploys them: the host in the environment, the user in RDS's managed secret
/// (here moto's Secrets Manager), read on the first invocation; a missing secret is fatal and
/// names it, and the function works once the secret exists.
#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn the_function_reads_the_database_user_from_the_managed_secret(pool: PgPool) {
    let options = pool.connect_options();
    let (host, port) = (options.get_host().to_owned(), options.get_port().to_string());
    let database = options.get_database().expect("a test database").to_owned();
    let secret = json!({ "username": options.get_username(), "password": "unused-with-trust-auth" }).to_string();
    let lake = Lake::start_with_env(
        None,
        &[
            ("HIRING_DB_HOST", &host),
            ("HIRING_DB_PORT", &port),
            ("HIRING_DB_NAME", &database),
            ("HIRING_DB_SSLMODE", "disable"),
            ("HIRING_DB_SECRET_ARN", "hiring-test/db"),
        ],
    )
    .await;
    let event = lake.put("departments.csv", sample_bytes("departments")).await;
    let error = lake.validate(&event).await.unwrap_err();
    assert_eq!(error.error_type, FATAL, "{}", error.error_message);
    assert!(error.error_message.contains("hiring-test/db"), "{}", error.error_message);

    let secrets = aws_sdk_secretsmanager::Client::new(&lake.moto.sdk_config().await);
    secrets.create_secret().name("hiring-test/db").secret_string(secret).send().await.expect("CreateSecret");
    let report = lake.validate(&event).await.expect("validates once the secret exists");
    assert_eq!(report["accepted"], 12);
    let (validated,): (i64,) = sqlx::query_as("SELECT count(*) FROM ingestions").fetch_one(&pool).await.unwrap();
    assert_eq!(validated, 1, "the function wrote to the test's database");
}

#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn the_backup_function_backs_up_the_three_tables_as_one_set(pool: PgPool) {
    let lake = Lake::start(pool.clone()).await;
    for table in ["departments", "jobs", "hired_employees"] {
        let validation = lake.validate(&lake.put(&format!("{table}.csv"), sample_bytes(table)).await).await.unwrap();
        lake.process(&validation).await.unwrap();
    }
    let output = answer(hiring_functions::backup(lake.function, json!({"source": "aws.scheduler"})).await).unwrap();
    let backups = output["backups"].as_array().unwrap();
    let rows: Vec<(&str, i64)> =
        backups.iter().map(|b| (b["table"].as_str().unwrap(), b["rows"].as_i64().unwrap())).collect();
    assert_eq!(rows, [("departments", 12), ("jobs", 183), ("hired_employees", 1929)]);
    let keys: Vec<String> = lake.keys(ZoneName::Backups).await.into_iter().map(|(key, _)| key).collect();
    for backup in backups {
        assert!(keys.contains(&backup["key"].as_str().unwrap().to_owned()), "{keys:?}");
    }
    // One set, restorable as a unit: its manifest names the three backups.
    let set = output["key"].as_str().expect("the set's key");
    assert!(keys.contains(&set.to_owned()), "{keys:?}");
}

/// The API in `stepfunctions` mode on the lake's buckets: uploads are queued, and the test
/// runs the functions as the raw bucket's events would.
async fn stepfunctions_api(pool: &PgPool, lake: &Lake) -> TestApp {
    let env = lake.moto.aws_env();
    TestApp::start_with(pool.clone(), |settings| {
        settings.pipeline = api::config::Pipeline::StepFunctions;
        settings.zone_urls = ZoneName::ALL
            .into_iter()
            .map(|zone| match zone {
                ZoneName::Raw => (zone, format!("s3://{RAW_BUCKET}/{RAW_PREFIX}")),
                other => (zone, format!("s3://{}", bucket(other))),
            })
            .collect();
        settings.aws = env.iter().map(|(n, v)| (n.clone(), api::config::Secret::new(v.as_str()))).collect();
    })
    .await
}

/// The Object Created event of a queued ingestion's object.
async fn queued_event(lake: &Lake, ingestion: &Value) -> Value {
    let key = ingestion["key"].as_str().unwrap();
    let meta = lake.function.zones.raw.head(key).await.unwrap().unwrap();
    event(RAW_BUCKET, &format!("{RAW_PREFIX}/{key}"), meta.e_tag.as_deref().unwrap(), meta.size)
}

/// Issue 16, item 1: each file of an upload runs its own execution, in any order. Started in
/// the worst order, the hires file's validation waits (`hiring.Waiting`, retried by the state
/// machine) until the departments and jobs of its upload are loaded, instead of rejecting
/// every hire for referring to departments not loaded yet.
#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn in_stepfunctions_mode_a_hires_file_validated_first_waits_for_its_upload(pool: PgPool) {
    let lake = Lake::start(pool.clone()).await;
    let app = stepfunctions_api(&pool, &lake).await;
    let parts: Vec<(&str, &str, Vec<u8>)> = ["hired_employees", "jobs", "departments"]
        .into_iter()
        .map(|t| (t, if t == "jobs" { "jobs.csv" } else { "file.csv" }, sample_bytes(t)))
        .collect();
    let (status, body) = app.upload(&parts).await;
    assert_eq!(status, 202, "{body}");
    let queued = body["ingestions"].as_array().unwrap().clone();
    assert_eq!(queued[2]["table"], "hired_employees");

    let hires = queued_event(&lake, &queued[2]).await;
    let waiting = lake.validate(&hires).await.unwrap_err();
    assert_eq!(waiting.error_type, "hiring.Waiting", "{}", waiting.error_message);
    assert!(
        waiting.error_message.contains(&format!("waits for ingestion {}", queued[0]["id"])),
        "{}",
        waiting.error_message
    );
    let (_, progress) = app.get_json(&format!("/ingestions/{}", queued[2]["id"])).await;
    assert_eq!(progress["status"], "queued", "nothing of the hires was validated yet: {progress}");

    // Departments done, jobs not yet: still waiting.
    let departments = lake.validate(&queued_event(&lake, &queued[0]).await).await.unwrap();
    lake.process(&departments).await.unwrap();
    assert_eq!(lake.validate(&hires).await.unwrap_err().error_type, "hiring.Waiting");
    let jobs = lake.validate(&queued_event(&lake, &queued[1]).await).await.unwrap();
    lake.process(&jobs).await.unwrap();

    let validation = lake.validate(&hires).await.unwrap();
    assert_eq!(
        (validation["accepted"].as_i64(), validation["rejected"].as_i64()),
        (Some(1929), Some(70)),
        "{validation}"
    );
    lake.process(&validation).await.unwrap();
    assert_eq!(app.count("hired_employees").await, 1929);
}

#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn in_stepfunctions_mode_an_upload_is_queued_and_the_functions_finish_it(pool: PgPool) {
    let lake = Lake::start(pool.clone()).await;
    let app = stepfunctions_api(&pool, &lake).await;
    let parts: Vec<(&str, &str, Vec<u8>)> = vec![
        ("jobs", "jobs.csv", sample_bytes("jobs")),
        ("departments", "departments.csv", sample_bytes("departments")),
    ];
    let (status, body) = app.upload(&parts).await;
    assert_eq!(status, 202, "{body}");
    let queued = body["ingestions"].as_array().unwrap();
    assert_eq!(queued.iter().map(|q| q["table"].as_str().unwrap()).collect::<Vec<_>>(), ["departments", "jobs"]);
    for ingestion in queued {
        assert_eq!(ingestion["status"], "queued");
        let (_, progress) = app.get_json(&format!("/ingestions/{}", ingestion["id"])).await;
        assert_eq!(progress["status"], "queued");
    }
    assert_eq!(app.count("departments").await, 0, "nothing is loaded until the state machine runs");

    // What the raw bucket's events start: validate, then process, for each object.
    for ingestion in queued {
        let event = queued_event(&lake, ingestion).await;
        let validation = lake.validate(&event).await.unwrap();
        assert_eq!(validation["ingestion"], ingestion["id"], "the queued ingestion is the one validated");
        let (_, progress) = app.get_json(&format!("/ingestions/{}", ingestion["id"])).await;
        assert_eq!(progress["status"], "validated");
        assert_eq!(progress["validation"]["loadable"], true);
        lake.process(&validation).await.unwrap();
        let (_, done) = app.get_json(&format!("/ingestions/{}", ingestion["id"])).await;
        assert_eq!(done["status"], "succeeded", "{done}");
    }
    assert_eq!((app.count("departments").await, app.count("jobs").await), (12, 183));
}

#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn the_workflows_failure_path_records_the_failure_on_the_ingestion(pool: PgPool) {
    let lake = Lake::start(pool.clone()).await;
    let event = lake.put("jobs/1.csv", "1,Engineer\n").await;
    // The validation crashed: the ingestion is queued, and the workflow gives up on it.
    hiring::pipeline::enqueue(&pool, &lake.function.zones, "jobs/1.csv", "test").await.unwrap();
    let mut failed = event.clone();
    failed["error"] = json!({"Error": "Lambda.Unknown", "Cause": "the function timed out"});
    let answer =
        hiring_functions::validate_function(lake.function, serde_json::from_value(json!({"failed": failed})).unwrap())
            .await;
    assert!(answer.is_ok(), "recording a failure succeeds");
    let (status, error): (String, String) =
        sqlx::query_as("SELECT status, error FROM ingestions").fetch_one(&pool).await.unwrap();
    assert_eq!(status, "failed");
    assert!(error.contains("Lambda.Unknown") && error.contains("send the file again"), "{error}");

    // A duplicate delivery of its event changes nothing: the ingestion stays failed, and the
    // step says so for good; the file sent again (a new upload, a new object) loads.
    let again = lake.validate(&event).await.unwrap_err();
    assert_eq!(again.error_type, FATAL, "{}", again.error_message);
    assert_eq!(ingestions(&pool).await, 1);
    let resent = lake.put("jobs/2.csv", "1,Engineer\n").await;
    assert_eq!(lake.validate(&resent).await.unwrap()["loadable"], true);
}

#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn a_second_version_of_an_announced_upload_is_ignored_as_a_duplicate(pool: PgPool) {
    let lake = Lake::start(pool.clone()).await;
    let expires = chrono::Utc::now() + chrono::Duration::hours(1);
    let id = hiring::pipeline::expect(&pool, "jobs/announced.csv", "test", expires, None).await.unwrap();
    let first = lake.put("jobs/announced.csv", "1,Engineer\n").await;
    assert_eq!(lake.validate(&first).await.unwrap()["ingestion"], id);
    // The same presigned URL put again on S3: another version, another Object Created event.
    let second = lake.put("jobs/announced.csv", "2,Analyst\n").await;
    let input = serde_json::from_value(second).unwrap();
    let answer = answer(hiring_functions::validate_function(lake.function, input).await).unwrap();
    assert_eq!(answer, json!({"duplicate_of": id, "loadable": false}), "ignored, and the execution ends");
    assert_eq!(ingestions(&pool).await, 1, "one announced file, one ingestion");
}
