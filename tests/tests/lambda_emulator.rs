//! The built Lambda binaries under a Lambda Runtime API emulator (`devenv::lambda`):
//! `cargo xtask build-functions` cross-builds them for Lambda (glibc 2.34), and here they run
//! as Lambda runs them, polling cargo-lambda's emulator, and answer invocations.
//!
//! These tests check the harness and the Runtime API round trip of the real binaries: that an
//! invocation comes back as JSON, and that a function error comes back with its errorType and
//! leaves the function serving. They assert on shape only; what the handlers compute is tested
//! in `tests/tests/e2e/functions.rs`.
//!
//! Run them with `cargo xtask test`, or after `cargo xtask build-functions` with
//! `DATABASE_URL=… HIRING_LAMBDA_DIR=<target>/lambda-host HIRING_CARGO_LAMBDA=<target>/venv/bin/cargo-lambda
//! cargo nextest run -p hiring-tests --test lambda_emulator`.

use std::path::Path;

use devenv::lambda::{self, Invocation, LambdaEmulator, RunningFunction};
use serde_json::json;
use sqlx::ConnectOptions;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

/// The storage zones' variables, each a directory under `root`.
fn local_zones(root: &Path) -> Vec<(String, String)> {
    ["RAW", "REJECTS", "PROCESSED", "BACKUPS"]
        .into_iter()
        .map(|zone| (format!("HIRING_{zone}_URL"), root.join(zone.to_lowercase()).display().to_string()))
        .collect()
}

/// Starts a private emulator and the built function `name` polling it, over local zones in
/// `zones` and the database at `database_url`. Keep both values alive for the whole test.
fn start(name: &str, database_url: &str, zones: &Path) -> anyhow::Result<(LambdaEmulator, RunningFunction)> {
    let emulator = LambdaEmulator::start(&lambda::cargo_lambda()?)?;
    let mut env = local_zones(zones);
    env.push(("DATABASE_URL".to_owned(), database_url.to_owned()));
    let function = emulator.run_function(name, &lambda::bootstrap(name)?, &env)?;
    Ok((emulator, function))
}

/// The backup function takes any event, so it answers with its JSON report given only a
/// database (this test's, which the function migrates itself) and a backups zone.
#[sqlx::test(migrations = false)]
async fn an_invocation_returns_the_functions_json(
    _pool: PgPoolOptions,
    database: PgConnectOptions,
) -> anyhow::Result<()> {
    let zones = tempfile::tempdir()?;
    let (_emulator, function) = start("backup", database.to_url_lossy().as_str(), zones.path())?;

    let response = function.invoke(&json!({ "source": "hiring.test" })).await?.into_response()?;
    assert!(response.is_object(), "expected a JSON object, got {response}");

    // The function keeps running and serves the next invocation too.
    let again = function.invoke(&json!({})).await?;
    assert!(matches!(again, Invocation::Response(_)), "expected a response, got {again:?}\n{}", function.log());
    Ok(())
}

/// Errors need no database: the validate function rejects an event that is not S3's before it
/// connects (the pool is lazy), and lambda_runtime rejects a payload that is not JSON before the
/// handler runs. Both reach the Runtime API's error endpoint.
#[tokio::test]
async fn a_function_error_is_reported_with_its_error_type() -> anyhow::Result<()> {
    let zones = tempfile::tempdir()?;
    let (_emulator, function) = start("validate", "postgres://unused@127.0.0.1:1/unused", zones.path())?;

    let not_s3 = json!({
        "source": "hiring.test",
        "detail-type": "Not an S3 event",
        "detail": { "bucket": { "name": "hiring-raw" }, "object": { "key": "jobs.csv" } }
    });
    let error = function.invoke(&not_s3).await?.into_error()?;
    assert_eq!(error.error_type, "hiring.Fatal", "{error:?}");
    assert!(!error.error_message.is_empty(), "empty errorMessage: {error:?}");

    let error = function.invoke_raw(&b"{ not json"[..]).await?.into_error()?;
    assert!(error.error_type.contains("DeserializeError"), "unexpected errorType: {error:?}");

    // An error does not stop the function: the next invocation is answered too.
    let again = function.invoke(&not_s3).await?;
    assert!(matches!(again, Invocation::Error(_)), "expected the same error, got {again:?}");
    Ok(())
}

/// A function that cannot start (here: no settings at all) exits instead of polling; the
/// invocation fails at once, quoting the function's output, instead of waiting for a timeout.
#[tokio::test]
async fn a_function_that_exits_is_reported_with_its_output() -> anyhow::Result<()> {
    let emulator = LambdaEmulator::start(&lambda::cargo_lambda()?)?;
    let function = emulator.run_function("validate", &lambda::bootstrap("validate")?, &[])?;

    let error = function.invoke(&json!({})).await.expect_err("a function without settings cannot answer");
    let message = format!("{error:#}");
    assert!(message.contains("exited"), "unexpected error: {message}");
    assert!(message.contains("DATABASE_URL"), "the function's own message is missing: {message}");
    Ok(())
}

/// The pipeline through the built binaries, as Step Functions drives it: the raw bucket's
/// "Object Created" event (the documented EventBridge shape) to `validate`, its output to
/// `process`, then the scheduled `backup`, against moto's S3 and this test's database.
#[sqlx::test(migrations = false)]
async fn the_built_functions_validate_process_and_back_up_a_real_s3_object(
    _pool: PgPoolOptions,
    database: PgConnectOptions,
) -> anyhow::Result<()> {
    let moto = devenv::moto::Moto::start()?;
    for bucket in ["hiring-raw", "hiring-rejects", "hiring-processed", "hiring-backups"] {
        moto.create_bucket(bucket).await?;
    }
    let mut env = moto.aws_env();
    env.push(("DATABASE_URL".to_owned(), database.to_url_lossy().to_string()));
    let namespace = stack::topology::metrics_namespace(&stack::Stage::Local.config());
    env.push(("HIRING_METRICS_NAMESPACE".to_owned(), namespace.clone()));
    for zone in ["raw", "rejects", "processed", "backups"] {
        env.push((format!("HIRING_{}_URL", zone.to_uppercase()), format!("s3://hiring-{zone}")));
    }
    let emulator = LambdaEmulator::start(&lambda::cargo_lambda()?)?;
    let run = |name: &str| emulator.run_function(name, &lambda::bootstrap(name)?, &env);
    let (validate, process, backup) = (run("validate")?, run("process")?, run("backup")?);

    // The object, written through the S3 API of the emulator, and its event.
    let lookup = |name: &str| env.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
    let raw = hiring::zones::Zone::open_with("s3://hiring-raw", lookup)?;
    let csv = "id,department\n1,Sales\n2,Support\n0,Nobody\n";
    raw.put("departments/2026-11-27.csv", csv.as_bytes().to_vec()).await?;
    let meta = raw.head("departments/2026-11-27.csv").await?.expect("written");
    let event = json!({
        "version": "0", "id": "17793124-05d4-b198-2fde-7ededc63b103", "detail-type": "Object Created",
        "source": "aws.s3", "account": "123456789012", "time": "2026-11-27T00:00:00Z", "region": "us-east-1",
        "resources": ["arn:aws:s3:::hiring-raw"],
        "detail": {
            "version": "0", "bucket": {"name": "hiring-raw"},
            "object": {"key": "departments/2026-11-27.csv", "size": meta.size, "etag": meta.e_tag.unwrap().trim_matches('"'), "sequencer": "00617F08299329D189"},
            "request-id": "N4N7GDK58NMKJ12R", "requester": "123456789012", "source-ip-address": "1.2.3.4", "reason": "PutObject"
        }
    });

    let validation = validate.invoke(&event).await?.into_response().map_err(|e| e.context(validate.log()))?;
    assert_eq!((validation["rows"].as_i64(), validation["rejected"].as_i64()), (Some(3), Some(1)), "{validation}");
    assert_eq!(validation["loadable"], true);
    assert_eq!(validation["reasons"], json!({"invalid_id": 1}));

    let loaded = process.invoke(&validation).await?.into_response().map_err(|e| e.context(process.log()))?;
    assert_eq!(loaded["inserted"], 2, "{loaded}");
    assert!(loaded["processed_key"].as_str().unwrap().starts_with("departments/ingest_date="), "{loaded}");
    // A duplicate delivery: the same event again is a replay.
    let again = validate.invoke(&event).await?.into_response()?;
    assert_eq!((again["replayed"].as_bool(), &again["ingestion"]), (Some(true), &validation["ingestion"]));

    let backups = backup.invoke(&json!({})).await?.into_response().map_err(|e| e.context(backup.log()))?;
    assert_eq!(backups["backups"][0]["table"], "departments");
    assert_eq!(backups["backups"][0]["rows"], 2, "{backups}");

    let pool = PgPoolOptions::new().connect_with(database).await?;
    let names: Vec<String> =
        sqlx::query_scalar("SELECT department FROM departments ORDER BY id").fetch_all(&pool).await?;
    assert_eq!(names, ["Sales", "Support"]);

    // The metrics the binaries printed (embedded metric format) are the ones the stage's
    // dashboard shows, in its namespace and with its dimensions.
    let emitted = |log: String| -> Vec<serde_json::Value> {
        log.lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line.trim()).ok())
            .filter(|v| v.get("_aws").is_some())
            .collect()
    };
    let rejected = emitted(validate.log());
    let loaded = emitted(process.log());
    assert_eq!(rejected.len(), 1, "one reason, one line: {}", validate.log());
    assert_eq!(loaded.len(), 1, "{}", process.log());
    let definition = |line: &serde_json::Value| line["_aws"]["CloudWatchMetrics"][0].clone();
    assert_eq!(definition(&rejected[0])["Namespace"], namespace.as_str());
    assert_eq!(definition(&rejected[0])["Metrics"][0]["Name"], stack::topology::DASHBOARD_ROWS_REJECTED);
    assert_eq!(definition(&rejected[0])["Dimensions"], json!([["Table", "Reason"]]));
    assert_eq!(
        (&rejected[0]["Table"], &rejected[0]["Reason"], &rejected[0]["RowsRejected"]),
        (&json!("departments"), &json!("invalid_id"), &json!(1))
    );
    assert_eq!(definition(&loaded[0])["Metrics"][0]["Name"], stack::topology::DASHBOARD_ROWS_LOADED);
    assert_eq!(definition(&loaded[0])["Dimensions"], json!([["Table"]]));
    assert_eq!((&loaded[0]["Table"], &loaded[0]["RowsLoaded"]), (&json!("departments"), &json!(2)));
    let template = stack::Topology::stage(&stack::Stage::Local.config()).template;
    let body = template.resource("Dashboard").expect("a dashboard").properties["DashboardBody"]["Fn::Sub"].to_string();
    for line in [&rejected[0], &loaded[0]] {
        let name = definition(line)["Metrics"][0]["Name"].as_str().unwrap().to_owned();
        assert!(body.contains(&name) && body.contains(&namespace), "the dashboard shows {namespace}/{name}: {body}");
    }
    // A replay publishes nothing again (the duplicate delivery above was a replay).
    assert_eq!(emitted(validate.log()).len(), 1);
    Ok(())
}
