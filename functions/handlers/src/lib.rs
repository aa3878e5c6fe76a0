//! The pipeline's Lambda handlers — [`validate`], [`process`], [`backup`] — and what they share:
//! their settings, the PostgreSQL pool and storage zones (opened once per container), the S3
//! event they receive, and how their errors reach the state machine. Each function's binary
//! (`functions/<name>`) is one line: `hiring_functions::run(hiring_functions::<name>)`.
//!
//! The handlers are thin: each parses its input, calls `hiring`, and returns JSON the state
//! machine branches on. An error's type tells Step Functions whether to retry:
//! [`RETRYABLE`] (the database was unreachable, or another worker holds the object) or
//! [`FATAL`] (retrying cannot help: a bad event, a deleted or replaced object).
//!
//! Settings, from the function's environment:
//! - where PostgreSQL is (`hiring::settings`): `DATABASE_URL`, or (as the stack deploys the
//!   functions) `HIRING_DB_HOST`… with `HIRING_DB_SECRET_ARN`, the Secrets Manager secret RDS
//!   manages for the master user. The secret is read on the first invocation of a container,
//!   so a rotated password is picked up by new containers.
//! - `HIRING_RAW_URL`, `HIRING_REJECTS_URL`, `HIRING_PROCESSED_URL`, `HIRING_BACKUPS_URL`
//!   (required): the zones, `s3://bucket/prefix` in AWS.
//! - `HIRING_DB_MAX_CONNECTIONS` (default 2): one invocation at a time needs two (a step's
//!   lock and its transaction).
//! - the usual AWS variables (`AWS_REGION`, credentials, `AWS_ENDPOINT_URL` for an emulator).

use std::time::Duration;

use hiring::backup::BackupSet;
use hiring::pipeline::{self, ProcessReport, RawObject, ValidationReport};
use hiring::zones::{ZoneName, Zones};
use lambda_runtime::Diagnostic;
use secrets::{Credentials, DatabaseAccess};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use tokio::sync::OnceCell;

/// The error type of failures worth retrying (Step Functions `Retry` matches it).
pub const RETRYABLE: &str = "hiring.Retryable";
/// The error type of failures that retrying cannot fix.
pub const FATAL: &str = "hiring.Fatal";
/// The error type of a hires file that waits for the departments or jobs file of its upload
/// (`hiring::error::Error::Waiting`): retried longer than [`RETRYABLE`], since that file may
/// still be on its way (a presigned upload's URL lives an hour).
pub const WAITING: &str = "hiring.Waiting";

/// A function's failure, with whether a retry may succeed.
#[derive(Debug)]
pub struct StepError {
    /// True when the same invocation may succeed later.
    pub retryable: bool,
    /// True when PostgreSQL refused the credentials (they rotated): read them again, then retry.
    pub refused_credentials: bool,
    /// True when a hires file waits for another file of its upload ([`WAITING`]).
    pub waiting: bool,
    /// The announced ingestion when the object is another version of its file.
    pub duplicate_of: Option<i64>,
    /// What went wrong and what to do.
    pub message: String,
}

impl StepError {
    /// A failure retrying cannot fix.
    pub fn fatal(message: impl Into<String>) -> Self {
        StepError {
            retryable: false,
            refused_credentials: false,
            waiting: false,
            duplicate_of: None,
            message: message.into(),
        }
    }

    /// A failure a later attempt may not meet.
    pub fn retryable(message: impl Into<String>) -> Self {
        StepError {
            retryable: true,
            refused_credentials: false,
            waiting: false,
            duplicate_of: None,
            message: message.into(),
        }
    }
}

impl From<hiring::error::Error> for StepError {
    fn from(error: hiring::error::Error) -> Self {
        StepError {
            retryable: error.is_retryable(),
            refused_credentials: error.is_auth_failure(),
            waiting: matches!(error, hiring::error::Error::Waiting { .. } | hiring::error::Error::Held(_)),
            duplicate_of: match &error {
                hiring::error::Error::DuplicateUpload { ingestion, .. } => Some(*ingestion),
                _ => None,
            },
            message: error.to_string(),
        }
    }
}

impl From<secrets::ReadError> for StepError {
    fn from(error: secrets::ReadError) -> Self {
        StepError {
            retryable: error.retryable,
            refused_credentials: false,
            waiting: false,
            duplicate_of: None,
            message: error.message,
        }
    }
}

impl From<StepError> for Diagnostic {
    fn from(error: StepError) -> Diagnostic {
        Diagnostic {
            error_type: match (error.waiting, error.retryable) {
                (true, _) => WAITING,
                (false, true) => RETRYABLE,
                (false, false) => FATAL,
            }
            .to_owned(),
            error_message: error.message,
        }
    }
}

/// What a function keeps between invocations of one container.
#[derive(Debug)]
pub struct Function {
    database: DatabaseAccess,
    max_connections: u32,
    /// The pool and where its credentials come from, made on first use (connected lazily: a
    /// cold start never fails because the database is away).
    pool: OnceCell<Credentials>,
    /// The storage zones.
    pub zones: Zones,
    /// The raw zone's bucket and key prefix, when it is on S3.
    raw_bucket: Option<(String, String)>,
    migrated: OnceCell<()>,
}

impl Function {
    /// Reads the settings from the environment (see the crate documentation).
    pub fn from_env() -> Result<Self, StepError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the settings through `lookup`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, StepError> {
        let setting = |name: &str| lookup(name).filter(|value| !value.is_empty());
        let database = DatabaseAccess::from_lookup(setting).map_err(StepError::fatal)?;
        let max_connections = match setting("HIRING_DB_MAX_CONNECTIONS") {
            Some(value) => value.parse().map_err(|_| {
                StepError::fatal(format!("HIRING_DB_MAX_CONNECTIONS `{value}` is not a number of connections"))
            })?,
            None => 2,
        };
        let mut urls = Vec::new();
        for zone in ZoneName::ALL {
            let variable = format!("HIRING_{}_URL", zone.name().to_uppercase());
            let url = setting(&variable).ok_or_else(|| {
                StepError::fatal(format!("{variable} is not set: give the function its zone, e.g. s3://bucket/prefix"))
            })?;
            urls.push((zone, url));
        }
        let url_of = |zone| urls.iter().find(|(name, _)| *name == zone).map(|(_, url)| url.clone()).unwrap_or_default();
        let raw_bucket = url_of(ZoneName::Raw).strip_prefix("s3://").map(|rest| {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            (bucket.to_owned(), prefix.trim_matches('/').to_owned())
        });
        let zones = Zones::open(url_of, &lookup)?;
        Ok(Function { database, max_connections, pool: OnceCell::new(), zones, raw_bucket, migrated: OnceCell::new() })
    }

    /// Uses `pool` instead of making one from the settings (tests share theirs).
    pub fn use_pool(&mut self, pool: PgPool) {
        self.pool = OnceCell::new_with(Some(Credentials::new(self.database.clone(), pool)));
    }

    /// The pool, with the schema migrated (once per container; the database may have been
    /// created by the functions before the API ever ran).
    pub async fn database(&self) -> Result<&PgPool, StepError> {
        let credentials = self.pool.get_or_try_init(|| self.connect()).await?;
        let pool = credentials.pool();
        self.migrated
            .get_or_try_init(|| async {
                // With a master user (as deployed), the migrations and the application role's
                // password are applied as it; else as the one user.
                match Box::pin(self.database.admin_pool()).await? {
                    Some(admin) => {
                        let migrated = hiring::MIGRATOR.run(&admin).await.map_err(hiring::error::Error::from);
                        migrated.map_err(|error| StepError { retryable: true, ..StepError::from(error) })?;
                        let login = Box::pin(self.database.login()).await?;
                        Box::pin(self.database.apply_role_password(&login)).await?;
                        admin.close().await;
                    }
                    None => {
                        let migrated = hiring::MIGRATOR.run(pool).await.map_err(hiring::error::Error::from);
                        migrated.map_err(|error| StepError { retryable: true, ..StepError::from(error) })?;
                    }
                }
                Ok::<_, StepError>(())
            })
            .await?;
        Ok(pool)
    }

    /// Reads the database credentials again (after PostgreSQL refused them: they rotated).
    pub async fn refresh_credentials(&self) -> Result<(), StepError> {
        if let Some(credentials) = self.pool.get() {
            Box::pin(credentials.refresh()).await?;
        }
        Ok(())
    }

    /// A lazily connected pool, after reading the database secret when there is one.
    async fn connect(&self) -> Result<Credentials, StepError> {
        let pool = PgPoolOptions::new().max_connections(self.max_connections).acquire_timeout(Duration::from_secs(10));
        Ok(Box::pin(Credentials::connect_lazy(self.database.clone(), pool)).await?)
    }

    /// The raw zone's object an event names: the bucket must be the raw zone's, and the key
    /// under its prefix.
    pub fn raw_object(&self, event: &ObjectCreated) -> Result<RawObject, StepError> {
        if event.source != "aws.s3" || event.detail_type != "Object Created" {
            return Err(StepError::fatal(format!(
                "expected an S3 \"Object Created\" event from EventBridge, got \"{}\" from {}",
                event.detail_type, event.source
            )));
        }
        let object = &event.detail.object;
        let key = match &self.raw_bucket {
            Some((bucket, prefix)) => {
                if event.detail.bucket.name != *bucket {
                    return Err(StepError::fatal(format!(
                        "the event is for bucket {}, but this function's raw zone is in bucket {bucket}: \
                         check the EventBridge rule's bucket filter",
                        event.detail.bucket.name
                    )));
                }
                match prefix.as_str() {
                    "" => object.key.clone(),
                    prefix => object
                        .key
                        .strip_prefix(prefix)
                        .and_then(|rest| rest.strip_prefix('/'))
                        .ok_or_else(|| {
                            StepError::fatal(format!(
                                "key {} is outside the raw zone's prefix {prefix}/: check the rule's key filter",
                                object.key
                            ))
                        })?
                        .to_owned(),
                }
            }
            None => object.key.clone(),
        };
        Ok(RawObject { key, etag: object.etag.clone() })
    }
}

/// An EventBridge "Object Created" event of S3, as Step Functions passes it on (only the
/// fields the functions read; the rest are ignored).
#[derive(Debug, Clone, Deserialize)]
pub struct ObjectCreated {
    /// `aws.s3`.
    pub source: String,
    /// `Object Created`.
    #[serde(rename = "detail-type")]
    pub detail_type: String,
    /// The bucket and object.
    pub detail: ObjectCreatedDetail,
}

/// The `detail` of an [`ObjectCreated`] event.
#[derive(Debug, Clone, Deserialize)]
pub struct ObjectCreatedDetail {
    /// The bucket.
    pub bucket: BucketName,
    /// The object.
    pub object: ObjectDetail,
}

/// A bucket, by name.
#[derive(Debug, Clone, Deserialize)]
pub struct BucketName {
    /// The bucket's name.
    pub name: String,
}

/// The object an event is about.
#[derive(Debug, Clone, Deserialize)]
pub struct ObjectDetail {
    /// The object key (not URL-encoded in EventBridge events).
    pub key: String,
    /// Its ETag.
    #[serde(default)]
    pub etag: Option<String>,
    /// Its size in bytes.
    #[serde(default)]
    pub size: Option<u64>,
    /// Its version id, in a versioned bucket.
    #[serde(default, rename = "version-id")]
    pub version_id: Option<String>,
}

/// Starts JSON logs on stdout (which Lambda sends to CloudWatch), filtered by `RUST_LOG`
/// (default `info`).
pub fn init_logs() {
    lambda_runtime::tracing::init_default_subscriber();
}

/// The variable naming the CloudWatch namespace the functions publish their metrics to, as
/// embedded metric format lines on stdout (CloudWatch user guide, "Specification: Embedded
/// metric format"): Lambda's log pipeline extracts them, with no API call and no permission.
/// Unset (tests, `cargo xtask dev`): no metric lines.
pub const METRICS_NAMESPACE: &str = "HIRING_METRICS_NAMESPACE";
/// Rows a file load accepted, by table (the stage dashboard's ingest rate).
pub const ROWS_LOADED: &str = "RowsLoaded";
/// Rows a validation rejected, by table and reason (the stage dashboard's rejects).
pub const ROWS_REJECTED: &str = "RowsRejected";

/// Prints one embedded-metric-format line: `metric` = `value` (a count) with `dimensions`.
fn emit_metric(metric: &str, value: i64, dimensions: &[(&str, &str)]) {
    let Some(namespace) = std::env::var(METRICS_NAMESPACE).ok().filter(|n| !n.is_empty()) else { return };
    let names: Vec<&str> = dimensions.iter().map(|(name, _)| *name).collect();
    let mut line = serde_json::json!({
        "_aws": {
            "Timestamp": std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |elapsed| elapsed.as_millis() as u64),
            "CloudWatchMetrics": [{
                "Namespace": namespace,
                "Dimensions": [names],
                "Metrics": [{ "Name": metric, "Unit": "Count" }]
            }]
        },
        metric: value,
    });
    for (name, value) in dimensions {
        line[*name] = serde_json::Value::from(*value);
    }
    println!("{line}");
}

/// The variable that makes a function's binary run one step and exit instead of serving Lambda
/// invocations: the step's input as JSON. The state machine runs the process step this way as
/// an ECS task on Fargate for files too large for Lambda's time limit: the same
/// binary and handler, another launcher.
pub const STEP_INPUT: &str = "HIRING_STEP_INPUT";

/// Runs a function: reads the settings once, then serves invocations with `handler`; or, when
/// [`STEP_INPUT`] is set, runs `handler` once on it, prints its output as one JSON line on stdout
/// and returns, with an error (the process then exits non-zero, which fails the task and the
/// state) when the step failed: `{"errorType": …, "errorMessage": …}` is logged first.
pub async fn run<E, R, F, Fut>(handler: F) -> Result<(), lambda_runtime::Error>
where
    E: serde::de::DeserializeOwned + Clone + Send + 'static,
    R: serde::Serialize + Send + 'static,
    F: Fn(&'static Function, E) -> Fut + Copy + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<R, StepError>> + Send,
{
    init_logs();
    let function: &'static Function = Box::leak(Box::new(Function::from_env().map_err(|e| e.message)?));
    if let Ok(input) = std::env::var(STEP_INPUT) {
        let payload: E = serde_json::from_str(&input)
            .map_err(|e| format!("{STEP_INPUT} is not this step's input: {e}: pass the validate step's output"))?;
        return match invoke(function, handler, payload).await {
            Ok(output) => {
                println!("{}", serde_json::to_string(&output)?);
                Ok(())
            }
            Err(error) => {
                let diagnostic = Diagnostic::from(error);
                tracing::error!(error_type = %diagnostic.error_type, "{}", diagnostic.error_message);
                Err(format!("{}: {}", diagnostic.error_type, diagnostic.error_message).into())
            }
        };
    }
    lambda_runtime::run(lambda_runtime::service_fn(move |event: lambda_runtime::LambdaEvent<E>| async move {
        invoke(function, handler, event.payload).await.map_err(Diagnostic::from)
    }))
    .await
}

/// Runs `handler` on `payload`; when PostgreSQL refused the credentials (they rotated), reads
/// them again and runs it once more, so a rotation costs no failed invocation. The steps are
/// idempotent (a step run again on the same object finds its ingestion).
pub async fn invoke<E, R, F, Fut>(function: &'static Function, handler: F, payload: E) -> Result<R, StepError>
where
    E: Clone,
    F: Fn(&'static Function, E) -> Fut,
    Fut: std::future::Future<Output = Result<R, StepError>>,
{
    // A new application password put in the secret is applied within the refresh period.
    if let Some(credentials) = function.pool.get()
        && let Err(error) = Box::pin(credentials.refresh_if_stale()).await
    {
        tracing::warn!(error = %error.message, "could not read the database credentials again");
    }
    match handler(function, payload.clone()).await {
        Err(error) if error.refused_credentials => {
            tracing::warn!(error = %error.message, "PostgreSQL refused the credentials; reading them again");
            function.refresh_credentials().await?;
            handler(function, payload).await
        }
        done => done,
    }
}

/// The validate function's input: an S3 event to validate, or, from the state machine's
/// failure path (`RecordFailure`), the state of an execution that gave up, with its error.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum ValidateInput {
    /// `{"failed": <the execution's state, with "error": {"Error", "Cause"}>}`.
    Failed {
        /// The execution's state: its event and the error it failed with.
        failed: FailedExecution,
    },
    /// The raw bucket's "Object Created" event.
    Event(ObjectCreated),
}

/// The state of an execution whose step failed for good: its input event, and the error its
/// `Catch` put at `$.error`.
#[derive(Debug, Clone, Deserialize)]
pub struct FailedExecution {
    /// The execution's input event.
    #[serde(flatten)]
    pub event: ObjectCreated,
    /// The error the step failed with.
    pub error: StatesError,
}

/// An error as Step Functions hands it to a `Catch`.
#[derive(Debug, Clone, Deserialize)]
pub struct StatesError {
    /// The error's name, e.g. `hiring.Fatal` or `Lambda.Unknown`.
    #[serde(rename = "Error")]
    pub error: String,
    /// What it said.
    #[serde(rename = "Cause", default)]
    pub cause: String,
}

/// What the validate function answers: a validation report, or the failure it recorded.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum ValidateOutput {
    /// The validation report.
    Report(ValidationReport),
    /// Another version of an announced upload's object, ignored: `loadable` false sends the
    /// execution to its end without a load.
    Duplicate {
        /// The announced ingestion, which has its file.
        duplicate_of: i64,
        /// Always false.
        loadable: bool,
    },
    /// The failed execution's ingestion, now `failed` (`None`: none was unfinished).
    Recorded {
        /// The ingestion marked failed.
        failed: Option<i64>,
    },
}

/// The validate function's handler (its binary runs this): validates an S3 event's object
/// ([`validate`]), or records a failed execution on its ingestion ([`record_failure`]).
pub async fn validate_function(function: &'static Function, input: ValidateInput) -> Result<ValidateOutput, StepError> {
    match input {
        ValidateInput::Event(event) => match validate(function, event).await {
            Ok(report) => Ok(ValidateOutput::Report(report)),
            // A second Object Created event for an announced upload (its URL put twice): not
            // ingested; the execution ends without loading anything.
            Err(StepError { duplicate_of: Some(ingestion), message, .. }) => {
                tracing::warn!(ingestion, "{message}");
                Ok(ValidateOutput::Duplicate { duplicate_of: ingestion, loadable: false })
            }
            Err(error) => Err(error),
        },
        ValidateInput::Failed { failed } => record_failure(function, failed).await,
    }
}

/// The state machine's failure path: the execution gave up on its object (a final error, or
/// its retries ran out), so the object's unfinished ingestion ends `failed`, for good, with the
/// error and what to do; sending the file again starts a new ingestion.
pub async fn record_failure(function: &'static Function, failed: FailedExecution) -> Result<ValidateOutput, StepError> {
    let object = function.raw_object(&failed.event)?;
    let pool = function.database().await?;
    let cause: String = failed.error.cause.chars().take(2_000).collect();
    let reason = format!(
        "the workflow gave up on this file: {}: {cause}; send the file again once the cause is fixed",
        failed.error.error
    );
    let recorded = pipeline::fail_object(pool, &function.zones, &object, &reason).await?;
    tracing::warn!(key = %object.key, ingestion = ?recorded, error = %failed.error.error, "recorded the workflow's failure");
    Ok(ValidateOutput::Recorded { failed: recorded })
}

/// The validate function, the state machine's first step. Input: the EventBridge "Object
/// Created" event of the raw bucket. Output: the validation report, whose `loadable` the
/// state machine's Choice state branches on and which the process function takes as input.
pub async fn validate(function: &'static Function, event: ObjectCreated) -> Result<ValidationReport, StepError> {
    let object = function.raw_object(&event)?;
    let source = format!("s3://{}/{}", event.detail.bucket.name, event.detail.object.key);
    let pool = function.database().await?;
    let report = pipeline::validate(pool, &function.zones, &object, &source).await?;
    if !report.replayed {
        for (reason, count) in &report.reasons {
            emit_metric(ROWS_REJECTED, *count, &[("Table", report.table.name()), ("Reason", reason)]);
        }
    }
    Ok(report)
}

/// The process function, run after a loadable validation. Input: the validate function's
/// output. Output: the load report, with the Parquet file written to the processed zone.
pub async fn process(function: &'static Function, validation: ValidationReport) -> Result<ProcessReport, StepError> {
    let pool = function.database().await?;
    let report = pipeline::process(pool, &function.zones, &validation).await?;
    if !report.replayed {
        let load = &report.load;
        emit_metric(ROWS_LOADED, load.inserted + load.updated + load.unchanged, &[("Table", load.table.name())]);
        // Fold the load's rollup deltas so the metrics stay fast; failure loses nothing (the
        // API compacts too).
        if let Err(error) = hiring::metrics::compact_rollup(pool).await {
            tracing::warn!(%error, "could not compact the metrics rollup");
        }
    }
    Ok(report)
}

/// The backup function, run on a schedule (EventBridge Scheduler): backs up the three tables as
/// one set (`hiring::backup::backup_set`: read in one snapshot, a manifest at `sets/…json`
/// naming one Avro backup per table, restorable as a unit). Its input is ignored.
pub async fn backup(function: &'static Function, _event: serde_json::Value) -> Result<BackupSet, StepError> {
    let pool = function.database().await?;
    Ok(hiring::backup::backup_set(pool, &function.zones.backups).await?)
}
