//! The ops commands, run as an operator runs them (the built `xtask` binary), against the moto
//! server emulator: status of a missing stack, a deploy refused without approval when there is
//! no terminal, a deploy with `--yes`, a second deploy with no changes, status and the offline
//! diff of the deployed stack, and a deploy that fails with its root cause.

use std::collections::BTreeMap;
use std::process::{Command, Output, Stdio};

use devenv::moto::Moto;
use serde_json::Value;

fn ops(moto: &Moto, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ops"))
        .args(args)
        .envs(moto.aws_env())
        .env_remove("AWS_PROFILE")
        .stdin(Stdio::null())
        .output()
        .expect("xtask runs")
}

fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

/// What `publish` would leave for the local stage: the code objects (tiny stand-ins unless
/// `missing_code`) in the assets bucket, the emulator's two secrets, the image digest.
async fn parameters(moto: &Moto, dir: &std::path::Path, missing_code: bool) -> std::path::PathBuf {
    let sdk = moto.sdk_config().await;
    let s3 = aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(&sdk).force_path_style(true).build());
    let bucket = "hiring-assets-123456789012-us-east-1";
    moto.create_bucket(bucket).await.expect("the assets bucket");
    let mut parameters = BTreeMap::new();
    for (prefix, binary, _) in stack::topology::FUNCTIONS {
        let key = format!("functions/{binary}/{}.zip", "0".repeat(64));
        if !missing_code {
            s3.put_object()
                .bucket(bucket)
                .key(&key)
                .body(b"PK\x05\x06".to_vec().into())
                .send()
                .await
                .expect("PutObject");
        }
        parameters.insert(stack::topology::code_key_parameter(prefix), key);
    }
    parameters.insert(
        stack::topology::API_IMAGE_PARAMETER.to_owned(),
        format!("123456789012.dkr.ecr.us-east-1.amazonaws.com/hiring-api@sha256:{}", "ab".repeat(32)),
    );
    let secrets = aws_sdk_secretsmanager::Client::new(&sdk);
    for (key, name) in [
        ("DatabaseSecretArn", "local/db"),
        ("AppDatabaseSecretArn", "local/db-app"),
        ("ApiTokenSecretArn", "local/token"),
    ] {
        let created = secrets.create_secret().name(name).secret_string("{}").send().await.expect("CreateSecret");
        parameters.insert(key.to_owned(), created.arn().expect("an ARN").to_owned());
    }
    let path = dir.join("local.json");
    std::fs::write(&path, serde_json::to_vec(&parameters).unwrap()).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_status_and_diff_of_the_local_stage_on_the_emulator() {
    let moto = Moto::start().expect("moto starts");
    let dir = tempfile::tempdir().unwrap();

    let missing = ops(&moto, &["status", "--stage", "local"]);
    assert_eq!(missing.status.code(), Some(1), "{}", text(&missing));
    assert!(text(&missing).contains("hiring-local: no such stack"), "{}", text(&missing));
    let missing_json: Value =
        serde_json::from_slice(&ops(&moto, &["status", "--stage", "local", "--json"]).stdout).unwrap();
    assert_eq!((missing_json["exists"].as_bool(), missing_json["healthy"].as_bool()), (Some(false), Some(false)));

    let file = parameters(&moto, dir.path(), false).await;
    let file = file.to_str().unwrap();

    // Before the first deploy, the change-set diff shows everything to add, and --fail fails.
    let first = ops(&moto, &["diff", "--stage", "local", "--parameters", file, "--fail"]);
    assert_eq!(first.status.code(), Some(1), "{}", text(&first));
    assert!(text(&first).contains("+ RawBucket (AWS::S3::Bucket)"), "{}", text(&first));

    // A first deploy creates IAM roles: no terminal and no --yes, so it is refused.
    let refused = ops(&moto, &["deploy", "--stage", "local", "--parameters", file]);
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    assert!(text(&refused).contains("needs approval"), "{}", text(&refused));
    assert!(text(&refused).contains("+ ProcessRole (AWS::IAM::Role)  [broadens access]"), "{}", text(&refused));

    let deployed = ops(&moto, &["deploy", "--stage", "local", "--parameters", file, "--yes"]);
    assert!(deployed.status.success(), "{}", text(&deployed));
    let out = text(&deployed);
    assert!(out.contains("hiring-local: CREATE_COMPLETE"), "{out}");
    // moto computes no outputs for a stack made by a change set (it does for CreateStack), so
    // the outputs deploy prints cannot be checked here; the resources can.
    let cfn = aws_sdk_cloudformation::Client::new(&moto.sdk_config().await);
    let resources =
        cfn.describe_stack_resources().stack_name("hiring-local").send().await.expect("DescribeStackResources");
    let template = stack::Topology::stage(&stack::Stage::Local.config()).template;
    let created =
        resources.stack_resources().iter().filter(|r| r.physical_resource_id().is_some_and(|p| !p.is_empty())).count();
    // Types moto only pretends to create (see tests/tests/stack_emulator), and the DB subnet
    // group, which it creates without reporting a physical id; it has no Application Auto
    // Scaling behind CloudFormation.
    // moto accepts the queue's policy without applying it; a resource under a condition that
    // does not hold here (the alarm subscription: no --alarm-email) is not created at all.
    let not_reported = [
        "AWS::Logs::MetricFilter",
        "AWS::S3::BucketPolicy",
        "AWS::Scheduler::Schedule",
        "AWS::CloudWatch::Alarm",
        "AWS::RDS::DBSubnetGroup",
        "AWS::SQS::QueuePolicy",
        // moto's CloudFormation does not create Glue or Athena resources.
        "AWS::Glue::Database",
        "AWS::Glue::Table",
        "AWS::Athena::WorkGroup",
    ];
    let expected = template
        .resources
        .values()
        .filter(|r| {
            let kind = r.kind.as_str();
            !not_reported.contains(&kind)
                && !kind.starts_with("AWS::ApiGatewayV2::")
                && !kind.starts_with("AWS::ApplicationAutoScaling::")
        })
        .filter(|r| r.condition.is_none())
        .count();
    assert_eq!(created, expected, "{created} of {} resources created", template.resources.len());

    // The template went by URL, from the assets bucket (past the 51,200 bytes of a TemplateBody).
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&moto.sdk_config().await).force_path_style(true).build(),
    );
    let stored = s3
        .list_objects_v2()
        .bucket("hiring-assets-123456789012-us-east-1")
        .prefix("templates/hiring-local/")
        .send()
        .await
        .expect("ListObjectsV2");
    assert_eq!(stored.contents().len(), 1, "one template object: {stored:?}");

    let again = ops(&moto, &["deploy", "--stage", "local", "--parameters", file, "--yes"]);
    assert!(again.status.success(), "{}", text(&again));
    assert!(text(&again).contains("no changes: hiring-local is up to date"), "{}", text(&again));

    logs_of_the_deployed_stage(&moto, &resources).await;

    let status = ops(&moto, &["status", "--stage", "local", "--json"]);
    assert!(status.status.success(), "{}", text(&status));
    let report: Value = serde_json::from_slice(&status.stdout).expect("JSON");
    assert_eq!(report["status"], "CREATE_COMPLETE");
    assert_eq!(report["healthy"], true);
    assert!(report["outputs"].is_object());
    assert_eq!(report["service"]["desired"], 0, "the emulator stage runs no tasks: {report}");
    assert_eq!(report["service"]["running"], 0);
    assert_eq!(report["executions"], serde_json::json!([]));
    // moto has no drift detection: reported as unavailable, with the reason, not as unhealthy.
    let drift = ops(&moto, &["status", "--stage", "local", "--json", "--drift"]);
    assert!(drift.status.success(), "{}", text(&drift));
    let report: Value = serde_json::from_slice(&drift.stdout).expect("JSON");
    assert_eq!(report["drift"]["status"], "UNAVAILABLE", "{report}");
    assert!(report["drift"]["reason"].as_str().unwrap().contains("DetectStackDrift"), "{report}");
    assert_eq!(report["api"], Value::Null, "no ApiUrl output and no HIRING_API_URL: {report}");
    // The API's health is asked where HIRING_API_URL says; nothing answers there.
    let unreachable = Command::new(env!("CARGO_BIN_EXE_ops"))
        .args(["status", "--stage", "local", "--json"])
        .envs(moto.aws_env())
        .env("HIRING_API_URL", "http://127.0.0.1:9")
        .output()
        .unwrap();
    assert_eq!(unreachable.status.code(), Some(1), "{}", text(&unreachable));
    let report: Value = serde_json::from_slice(&unreachable.stdout).expect("JSON");
    assert_eq!(report["api"]["url"], "http://127.0.0.1:9/health", "{report}");
    assert_eq!((report["api"]["status"].clone(), report["healthy"].clone()), (Value::Null, Value::Bool(false)));
    let text_status = ops(&moto, &["status", "--stage", "local"]);
    assert!(text(&text_status).contains("API service: 0/0 tasks running"), "{}", text(&text_status));
    assert!(text(&text_status).contains("pipeline: no executions yet"), "{}", text(&text_status));

    let diff = ops(&moto, &["diff", "--stage", "local", "--offline", "--fail"]);
    assert!(diff.status.success(), "{}", text(&diff));
    assert!(text(&diff).contains("no changes"), "{}", text(&diff));
    let change_set_diff = ops(&moto, &["diff", "--stage", "local", "--parameters", file, "--fail"]);
    assert!(change_set_diff.status.success(), "{}", text(&change_set_diff));
    assert!(text(&change_set_diff).contains("no changes"), "{}", text(&change_set_diff));

    // destroy: refused without a terminal or --yes, then done; the local stage keeps nothing
    // but the database's final snapshot.
    let refused = ops(&moto, &["destroy", "--stage", "local"]);
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    assert!(
        text(&refused).contains("Database                 AWS::RDS::DBInstance         deleted after a final snapshot"),
        "{}",
        text(&refused)
    );
    assert!(text(&refused).contains("run again with --yes"), "{}", text(&refused));
    // moto deletes a stack's VPC before its subnets and refuses (DependencyViolation), where
    // CloudFormation orders deletions by dependency: destroy must say so in one line.
    let destroyed = ops(&moto, &["destroy", "--stage", "local", "--yes"]);
    assert_eq!(destroyed.status.code(), Some(1), "moto can delete the stage now: assert it is gone instead");
    let out = text(&destroyed);
    assert!(out.contains("error: DeleteStack hiring-local: DependencyViolation: The vpc vpc-"), "{out}");
    assert!(!out.contains("ServiceError"), "a short message, not the SDK's dump: {out}");
}

/// An operator with no AWS credentials: every AWS command stops at once, in
/// one line naming what to set, whatever RUST_BACKTRACE says, and `deploy` builds nothing first.
/// The credentials chain runs for real, down to the instance metadata service, which is pointed
/// at a closed port on this machine (tests talk only to 127.0.0.1).
#[test]
fn without_credentials_every_aws_command_stops_at_once_in_one_line() {
    let home = tempfile::tempdir().unwrap();
    let target = tempfile::tempdir().unwrap();
    let departments = home.path().join("departments.csv");
    std::fs::write(&departments, "1,Staff\n").unwrap();
    let departments = departments.to_str().unwrap();
    for args in [
        &["status", "--stage", "prod"][..],
        &["deploy", "--stage", "prod", "--yes"],
        &["publish", "--stage", "prod", "--yes"],
        &["diff", "--stage", "prod", "--offline"],
        &["destroy", "--stage", "dev", "--yes"],
        &["upload", "--stage", "prod", departments],
    ] {
        let mut command = Command::new(env!("CARGO_BIN_EXE_ops"));
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("AWS_") {
                command.env_remove(key);
            }
        }
        let output = command
            .args(args)
            .env("HOME", home.path())
            .env("AWS_REGION", "eu-west-1")
            .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://127.0.0.1:9")
            .env("AWS_CONFIG_FILE", home.path().join("config"))
            .env("AWS_SHARED_CREDENTIALS_FILE", home.path().join("credentials"))
            .env("CARGO_TARGET_DIR", target.path())
            .env("RUST_BACKTRACE", "1")
            .env("RUST_LIB_BACKTRACE", "1")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{args:?}: {}", text(&output));
        assert_eq!(stderr.lines().count(), 1, "{args:?}: one line: {stderr}");
        assert!(stderr.starts_with("error: no AWS credentials: set AWS_PROFILE"), "{args:?}: {stderr}");
        assert!(stderr.contains("AWS_ACCESS_KEY_ID"), "{args:?}: {stderr}");
        assert!(!stderr.contains("DispatchFailure") && !stderr.contains('{'), "no Debug dump: {stderr}");
        assert!(
            std::fs::read_dir(target.path()).unwrap().next().is_none(),
            "{args:?}: nothing was built or installed before asking AWS"
        );
    }
    // And without a region, that is the line.
    let output = Command::new(env!("CARGO_BIN_EXE_ops"))
        .args(["status", "--stage", "prod"])
        .env_remove("AWS_REGION")
        .env_remove("AWS_DEFAULT_REGION")
        .env_remove("AWS_PROFILE")
        .env("HOME", home.path())
        .env("AWS_CONFIG_FILE", home.path().join("config"))
        .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://127.0.0.1:9")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(stderr.starts_with("error: no AWS region: set AWS_REGION"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

/// With credentials, a command first says whom and where it acts for (STS GetCallerIdentity on
/// the emulator).
#[test]
fn a_command_names_the_account_region_and_stage_it_acts_on() {
    let moto = Moto::start().expect("moto");
    let output = ops(&moto, &["status", "--stage", "local"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr
            .lines()
            .next()
            .is_some_and(|line| line.starts_with("acting on stage local: account 123456789012 (arn:aws:")
                && line.ends_with("region us-east-1")),
        "{stderr}"
    );
}

/// Writes `lines` to a new stream of `group`, a second ago.
async fn put_logs(moto: &Moto, group: &str, stream: &str, lines: &[&str]) {
    moto.json(
        "logs",
        "Logs_20140328.CreateLogStream",
        serde_json::json!({"logGroupName": group, "logStreamName": stream}),
    )
    .await
    .expect("CreateLogStream");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let events: Vec<Value> = lines
        .iter()
        .enumerate()
        .map(|(index, line)| serde_json::json!({"timestamp": now - 1000 + index as i64, "message": line}))
        .collect();
    moto.json(
        "logs",
        "Logs_20140328.PutLogEvents",
        serde_json::json!({"logGroupName": group, "logStreamName": stream, "logEvents": events}),
    )
    .await
    .expect("PutLogEvents");
}

/// `cargo xtask logs` over the deployed stage's log groups (found through the stack), against
/// moto's CloudWatch Logs.
async fn logs_of_the_deployed_stage(
    moto: &Moto,
    resources: &aws_sdk_cloudformation::operation::describe_stack_resources::DescribeStackResourcesOutput,
) {
    let group = |id: &str| {
        resources
            .stack_resources()
            .iter()
            .find(|r| r.logical_resource_id() == Some(id))
            .and_then(|r| r.physical_resource_id())
            .unwrap_or_else(|| panic!("{id} in the stack"))
            .to_owned()
    };
    put_logs(
        moto,
        &group("ApiLogGroup"),
        "api/1",
        &[r#"{"timestamp":"2026-12-01T09:40:00.1Z","level":"INFO","message":"upload received","target":"api","span":{"request_id":"r-42","name":"request"},"bytes":120}"#],
    )
    .await;
    put_logs(
        moto,
        &group("ProcessLogGroup"),
        "2026/12/01/[$LATEST]abc",
        &[
            "START RequestId: 6f1c Version: $LATEST",
            r#"{"timestamp":"2026-12-01T09:40:01.2Z","level":"INFO","fields":{"message":"file loaded","ingestion":7,"rows":1000},"target":"hiring::load"}"#,
        ],
    )
    .await;

    let all = ops(moto, &["logs", "--stage", "local", "--since", "10m"]);
    assert!(all.status.success(), "{}", text(&all));
    let out = String::from_utf8_lossy(&all.stdout);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(lines[0].ends_with(" api      INFO  upload received request_id=r-42 bytes=120"), "{out}");
    assert!(lines[1].ends_with(" process  START RequestId: 6f1c Version: $LATEST"), "{out}");
    assert!(lines[2].ends_with(" process  INFO  file loaded ingestion=7 rows=1000"), "{out}");

    let process = ops(moto, &["logs", "--stage", "local", "--component", "process", "--since", "10m"]);
    let out = String::from_utf8_lossy(&process.stdout);
    assert_eq!(out.lines().count(), 2, "only the process function's: {out}");

    // --follow prints what arrives later, once.
    let mut follow = Command::new(env!("CARGO_BIN_EXE_ops"))
        .args(["logs", "--stage", "local", "--component", "api", "--since", "10m", "--follow"])
        .envs(moto.aws_env())
        .env_remove("AWS_PROFILE")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (sender, receiver) = std::sync::mpsc::channel();
    let stdout = follow.stdout.take().unwrap();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            if sender.send(line).is_err() {
                return;
            }
        }
    });
    let next = |what: &str| {
        receiver.recv_timeout(std::time::Duration::from_secs(20)).unwrap_or_else(|_| panic!("no {what} within 20 s"))
    };
    assert!(next("first line").ends_with("upload received request_id=r-42 bytes=120"));
    put_logs(moto, &group("ApiLogGroup"), "api/2", &[r#"{"level":"WARN","message":"slow client"}"#]).await;
    assert!(next("followed line").ends_with(" api      WARN  slow client"));
    assert!(receiver.recv_timeout(std::time::Duration::from_secs(5)).is_err(), "nothing printed twice while following");
    follow.kill().unwrap();
    let _ = follow.wait();
}

#[test]
fn destroying_prod_needs_force_prod() {
    let refused =
        Command::new(env!("CARGO_BIN_EXE_ops")).args(["destroy", "--stage", "prod", "--yes"]).output().unwrap();
    assert_eq!(refused.status.code(), Some(1));
    assert!(text(&refused).contains("refusing to destroy prod: pass --force-prod"), "{}", text(&refused));
}

/// A resource that cannot be created (its log group already exists) fails the deploy with the
/// reason. moto reports such a failure as ExecuteChangeSet's error, not as `CREATE_FAILED`
/// events (AWS's way, which `cfn::execute` turns into "root cause: …"), and leaves the stack
/// in progress: the test checks what both have in common, a non-zero exit naming the cause.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_that_fails_names_the_cause_and_exits_non_zero() {
    let moto = Moto::start().expect("moto starts");
    let dir = tempfile::tempdir().unwrap();
    let file = parameters(&moto, dir.path(), false).await;
    moto.json(
        "logs",
        "Logs_20140328.CreateLogGroup",
        serde_json::json!({"logGroupName": "/aws/lambda/hiring-local-validate"}),
    )
    .await
    .expect("CreateLogGroup");
    let failed = ops(&moto, &["deploy", "--stage", "local", "--parameters", file.to_str().unwrap(), "--yes"]);
    assert_eq!(failed.status.code(), Some(1), "{}", text(&failed));
    let out = text(&failed);
    assert!(out.contains("already exists"), "{out}");

    let status = ops(&moto, &["status", "--stage", "local"]);
    assert_eq!(status.status.code(), Some(1), "a failed stack is not healthy: {}", text(&status));
}

/// A deploy interrupted after its change set was made (the stack left REVIEW_IN_PROGRESS with
/// a change set nobody executes) does not block the next one: it deploys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_interrupted_before_execution_is_finished_by_the_next() {
    let moto = Moto::start().expect("moto starts");
    let dir = tempfile::tempdir().unwrap();
    let file = parameters(&moto, dir.path(), false).await;
    let parameters: BTreeMap<String, String> = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    let cfn = aws_sdk_cloudformation::Client::new(&moto.sdk_config().await);
    let template = stack::Topology::stage(&stack::Stage::Local.config()).template;
    cfn.create_change_set()
        .stack_name("hiring-local")
        .change_set_name("interrupted")
        .change_set_type(aws_sdk_cloudformation::types::ChangeSetType::Create)
        .template_body(template.to_json())
        .set_parameters(Some(
            parameters
                .iter()
                .map(|(k, v)| {
                    aws_sdk_cloudformation::types::Parameter::builder().parameter_key(k).parameter_value(v).build()
                })
                .collect(),
        ))
        .capabilities(aws_sdk_cloudformation::types::Capability::CapabilityNamedIam)
        .send()
        .await
        .expect("CreateChangeSet");
    let stack = cfn.describe_stacks().stack_name("hiring-local").send().await.unwrap();
    assert_eq!(stack.stacks()[0].stack_status().unwrap().as_str(), "REVIEW_IN_PROGRESS");

    let deployed = ops(&moto, &["deploy", "--stage", "local", "--parameters", file.to_str().unwrap(), "--yes"]);
    assert!(deployed.status.success(), "{}", text(&deployed));
    assert!(text(&deployed).contains("hiring-local: CREATE_COMPLETE"), "{}", text(&deployed));
}

/// Issue 14, defect 14: a failed pipeline execution is bad data, not a broken stage. `status`
/// reports it (`data_healthy: false`, the execution's failure) and still exits 0 when the
/// infrastructure is healthy, so the pipeline's Deploy stage (which runs `status`) is not
/// blocked by one bad CSV file. moto's `SF_EXECUTION_HISTORY_TYPE=FAILURE` makes every
/// execution fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_data_execution_is_reported_but_does_not_fail_status() {
    let moto = Moto::start_with(&[("SF_EXECUTION_HISTORY_TYPE", "FAILURE")]).expect("moto starts");
    let dir = tempfile::tempdir().unwrap();
    let file = parameters(&moto, dir.path(), false).await;
    let deployed = ops(&moto, &["deploy", "--stage", "local", "--parameters", file.to_str().unwrap(), "--yes"]);
    assert!(deployed.status.success(), "{}", text(&deployed));
    let cfn = aws_sdk_cloudformation::Client::new(&moto.sdk_config().await);
    // (moto answers a DescribeStackResource(s) that names the resource with a 500.)
    let listed =
        cfn.describe_stack_resources().stack_name("hiring-local").send().await.expect("DescribeStackResources");
    let machine = listed
        .stack_resources()
        .iter()
        .find(|r| r.logical_resource_id() == Some("StateMachine"))
        .and_then(|r| r.physical_resource_id())
        .expect("the state machine's ARN")
        .to_owned();
    moto.json(
        "states",
        "AWSStepFunctions.StartExecution",
        serde_json::json!({ "stateMachineArn": machine, "name": "bad-file", "input": "{}" }),
    )
    .await
    .expect("StartExecution");

    let status = ops(&moto, &["status", "--stage", "local", "--json"]);
    let report: Value = serde_json::from_slice(&status.stdout).expect("JSON");
    assert_eq!(report["executions"][0]["status"], "FAILED", "{report}");
    assert_eq!((report["healthy"].clone(), report["data_healthy"].clone()), (Value::Bool(true), Value::Bool(false)));
    assert!(status.status.success(), "a failed execution failed status: {}", text(&status));
    let text_status = text(&ops(&moto, &["status", "--stage", "local"]));
    assert!(text_status.contains("data: the latest pipeline execution failed"), "{text_status}");
}
