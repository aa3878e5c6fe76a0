//! `cargo xtask test-local [--emulator moto|localstack]`: the whole platform, end to end, on
//! this machine, through the same code as a real deploy.
//!
//! | phase | what it does |
//! |---|---|
//! | emulator | moto server from the venv on a free port of 127.0.0.1 (or LocalStack, below); IAM enforced (`emulated_iam`): an operator allowed everything, the test keys refused |
//! | postgres | PostgreSQL found or started as `dev` does; database `hiring_local`, emptied |
//! | build | the Lambda zips and the API image for the `local` stage (`build`) |
//! | publish | zips and image (`publish`) as the pipeline's Publish role; the bootstrap stack and the secrets as the operator; then again: nothing new |
//! | deploy | `hiring-local` through a change set, as `deploy --yes` does it, as the pipeline's Deploy role; then again: no changes |
//! | resources | every resource of the template is in the stack; buckets, functions, state machine, image answer |
//! | api | the API's image in podman, run from the task definition read back from the emulator (user, read-only root, volumes, environment, secrets, health check), acting as `ApiTaskRole` |
//! | pipeline | the sample files uploaded through the API into the raw bucket; validate and process run as real binaries under a Lambda Runtime API emulator with the functions' deployed environment, each acting as its role; the hires file first (the worst order its execution may start in): it waits (`hiring.Waiting`) until the departments and jobs of its upload are loaded |
//! | state machine | the deployed definition executed by moto's Step Functions interpreter: both Choice paths |
//! | checks | the metrics, the 70 rejected hire rows, the Parquet files, a backup |
//! | status | `status --stage local` reports healthy |
//! | iam | enforcement is live: the test keys are refused, a role is denied what its grants leave out |
//!
//! What stands in for AWS, and why:
//! - IAM: the roles' grants are enforced by moto on twins of the roles (see `emulated_iam` for
//!   why twins, and what moto evaluates: actions everywhere, resources for S3 only).
//! - The database is the local PostgreSQL: moto's RDS makes an endpoint that nothing answers.
//!   The API and the functions get the RDS host replaced by it; everything else (buckets,
//!   the secret ARNs read with the SDK, the environment) is what the stack deployed.
//! - The API's container runs in podman, not on ECS: moto's ECS starts no containers (the
//!   stage wants no tasks). `status` asks its `/health` through `HIRING_API_URL`.
//! - moto's Lambda runs functions only in Docker, and there is none here: the functions run
//!   under cargo-lambda's Runtime API emulator, and moto's Step Functions interpreter is given
//!   their real answers (moto's "simple" Lambda replays queued results) to show which path
//!   the state machine takes.
//! - Nothing delivers S3's EventBridge events on moto: the Object Created event the rule
//!   would pass to the state machine is built from the object's metadata.
//!
//! `--emulator localstack` runs the same phases against LocalStack (`localstack/compose.yml`,
//! needs Docker and `LOCALSTACK_AUTH_TOKEN`); moto is the default because it is a pip install
//! that needs neither (see docs/operations.md).

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use aws_config::SdkConfig;
use devenv::lambda::{Invocation, LambdaEmulator, RunningFunction};
use devenv::moto::Moto;
use serde_json::{Value, json};
use stack::Stage;

use devenv::{pg, venv};

use crate::emulated_iam::{self, Iam};
use crate::{artifacts, cfn, deploy, publish};

const STAGE: Stage = Stage::Local;
const DATABASE: &str = "hiring_local";
/// The sample files, in the order their foreign keys need.
const SAMPLES: [&str; 3] = ["departments", "jobs", "hired_employees"];
/// The hire rows of the sample that break the data rules.
const SAMPLE_HIRE_REJECTS: i64 = 70;
/// The types moto's CloudFormation accepts but neither creates nor lists in a stack made by a
/// change set (`tests/tests/stack_emulator` keeps the same list, checked against moto).
const MOTO_UNLISTED: [&str; 10] = [
    "AWS::ApplicationAutoScaling::",
    // The sweep's metric filter: moto's CloudFormation has no model of it (stack/tests/workflow.rs
    // checks it on the template).
    "AWS::Logs::MetricFilter",
    "AWS::S3::BucketPolicy",
    "AWS::Scheduler::Schedule",
    "AWS::CloudWatch::Alarm",
    "AWS::ApiGatewayV2::",
    "AWS::SQS::QueuePolicy",
    "AWS::SNS::Subscription",
    // moto's CloudFormation has no model of Glue or Athena resources; the analytics tables are
    // checked against the Parquet files by tests/tests/e2e/analytics.rs instead.
    "AWS::Glue::",
    "AWS::Athena::",
];

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Emulator {
    Moto,
    Localstack,
}

#[derive(clap::Args)]
pub struct TestLocal {
    /// The AWS emulator: moto (default, from the venv) or LocalStack (Docker, LOCALSTACK_AUTH_TOKEN).
    #[arg(long, value_enum, default_value_t = Emulator::Moto)]
    emulator: Emulator,
}

impl TestLocal {
    pub fn run(self) -> anyhow::Result<()> {
        run(self.emulator)
    }
}

/// The phases and their times, printed as they finish and as a summary.
struct Phases {
    started: Instant,
    done: Vec<(&'static str, Duration, String)>,
}

impl Phases {
    fn run<T>(&mut self, name: &'static str, work: impl FnOnce() -> anyhow::Result<(T, String)>) -> anyhow::Result<T> {
        println!("\n==> test-local: {name}");
        let started = Instant::now();
        let (value, summary) = work().with_context(|| format!("test-local: the {name} phase failed"))?;
        let took = started.elapsed();
        println!("==> test-local: {name} ok in {:.1}s: {summary}", took.as_secs_f64());
        self.done.push((name, took, summary));
        Ok(value)
    }
}

/// The emulator and how to reach it.
struct Endpoint {
    url: String,
    _moto: Option<Moto>,
    _localstack: Option<LocalStack>,
}

pub fn run(emulator: Emulator) -> anyhow::Result<()> {
    let mut phases = Phases { started: Instant::now(), done: Vec::new() };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("could not start the async runtime")?;

    let venv = venv::ensure().context("failed to prepare the Python venv (moto, cargo-lambda)")?;
    let endpoint = phases.run("emulator", || {
        let endpoint = match emulator {
            Emulator::Moto => {
                // The fixture finds the venv's moto_server under the same target directory.
                let moto = Moto::start()?;
                Endpoint { url: moto.endpoint(), _moto: Some(moto), _localstack: None }
            }
            Emulator::Localstack => {
                let localstack = LocalStack::start()?;
                Endpoint { url: localstack.url.clone(), _moto: None, _localstack: Some(localstack) }
            }
        };
        let summary = format!("{} at {}", if emulator == Emulator::Moto { "moto" } else { "LocalStack" }, endpoint.url);
        Ok((endpoint, summary))
    })?;
    let iam = phases.run("iam on", || {
        let Some(moto) = &endpoint._moto else {
            println!("test-local: IAM is not enforced on LocalStack here (its enforcement is a paid feature)");
            return Ok((None, "not on LocalStack".to_owned()));
        };
        let iam = runtime.block_on(Iam::enable(moto))?;
        Ok((Some(iam), "an operator allowed everything; the emulator's test keys are refused from here".to_owned()))
    })?;
    let testing = aws_credential_types::Credentials::new("testing", "testing", None, None, "emulator");
    let operator = iam.as_ref().map_or(testing.clone(), Iam::operator);
    let aws_env = aws_env(&endpoint.url);
    let sdk = runtime.block_on(devenv::moto::sdk_config(&endpoint.url, operator.clone()));
    // The stack the pipeline's builds act in: their roles come from the dev pipeline template
    // (the local stage has no pipeline); their artifacts bucket is not deployed here.
    let pipeline = stack::delivery::template(&Stage::Dev.config()).context("the dev stage has a pipeline")?;
    let pipeline_buckets: BTreeMap<String, String> =
        [("ArtifactsBucket".to_owned(), "hiring-dev-pipeline-artifacts".to_owned())].into();
    let role_sdk = |role: &str| -> anyhow::Result<SdkConfig> {
        runtime.block_on(async {
            let credentials = match &iam {
                Some(iam) => iam.assume(&pipeline, role, &pipeline_buckets).await?,
                None => testing.clone(),
            };
            Ok(devenv::moto::sdk_config(&endpoint.url, credentials).await)
        })
    };

    let postgres = phases.run("postgres", || {
        let postgres = pg::find_or_start(DATABASE)?;
        runtime.block_on(empty_database(&postgres.url()))?;
        let summary = format!("{} ({}), emptied", postgres.display_url(), postgres.source());
        Ok((postgres, summary))
    })?;
    let database = reqwest::Url::parse(&postgres.url()).context("the PostgreSQL URL does not parse")?;

    let artifacts = phases.run("build", || {
        let built = artifacts::build(STAGE)?;
        let summary = format!("{} functions, image {}", built.functions.len(), built.image.digest);
        Ok((built, summary))
    })?;

    let parameters = phases.run("publish", || {
        runtime.block_on(async {
            // The database secret RDS would hold: here, the local PostgreSQL's user.
            let secret = json!({ "username": database.username(), "password": database.password().unwrap_or("") });
            put_secret(&sdk, &format!("hiring-{STAGE}/database"), &secret.to_string()).await?;
            Ok::<_, anyhow::Error>(())
        })?;
        let build = role_sdk("PublishBuildRole")?;
        runtime.block_on(async {
            let (path, first) = publish::publish_as(&build, &sdk, STAGE, &artifacts, true).await?;
            let (_, again) = publish::publish_as(&build, &sdk, STAGE, &artifacts, true).await?;
            ensure!(again.uploaded == 0, "publishing the same build again uploaded {} items", again.uploaded);
            Ok((
                path,
                format!(
                    "zips and image as PublishBuildRole: {} uploaded, then again: nothing new ({} present)",
                    first.uploaded, again.present
                ),
            ))
        })
    })?;

    let template = stack::Topology::stage(&STAGE.config()).template;
    let stack_name = STAGE.stack_name();
    let cfn_client = aws_sdk_cloudformation::Client::new(&sdk);
    phases.run("deploy", || {
        let deploy_role = role_sdk("DeployBuildRole")?;
        let deployer = aws_sdk_cloudformation::Client::new(&deploy_role);
        runtime.block_on(async {
            let parameters = deploy::read_parameters(&parameters, &template)?;
            let body: Value = serde_json::from_str(&template.to_json())?;
            // The template goes by URL from the assets bucket, as the deploy role, as in AWS.
            let store = cfn::TemplateStore::of(&deploy_role).await?;
            let deployed =
                deploy::deploy_stack(&deployer, &stack_name, &body, &parameters, Some(&store), true, false).await?;
            let again =
                deploy::deploy_stack(&deployer, &stack_name, &body, &parameters, Some(&store), true, false).await?;
            ensure!(again.is_none(), "deploying the same template again was not \"no changes\"");
            let status = match deployed {
                Some(stack) => stack.stack_status().map(|s| s.as_str().to_owned()).unwrap_or_default(),
                None => "already up to date".to_owned(),
            };
            Ok(((), format!("{stack_name} {status} as DeployBuildRole; a second deploy: no changes")))
        })
    })?;

    let resources = phases.run("resources", || {
        runtime.block_on(async {
            // Every resource of the template, listed by the stack as created. (moto gives the
            // types it only pretends to create, and the DB subnet group, no physical id.)
            let listed = cfn_client
                .describe_stack_resources()
                .stack_name(&stack_name)
                .send()
                .await
                .map_err(|e| cfn::failed(format!("DescribeStackResources {stack_name}"), &e))?;
            let created: BTreeMap<&str, &str> = listed
                .stack_resources()
                .iter()
                .filter_map(|r| Some((r.logical_resource_id()?, r.resource_status()?.as_str())))
                .collect();
            let unlisted = |kind: &str| emulator == Emulator::Moto && MOTO_UNLISTED.iter().any(|t| kind.starts_with(t));
            let missing: Vec<String> = template
                .resources
                .iter()
                .filter(|(id, resource)| {
                    created.get(id.as_str()) != Some(&"CREATE_COMPLETE") && !unlisted(resource.kind.as_str())
                })
                .map(|(id, _)| id)
                .map(|id| format!("{} ({})", id.as_str(), created.get(id.as_str()).unwrap_or(&"not listed")))
                .collect();
            ensure!(missing.is_empty(), "the stack lacks {}", missing.join(", "));
            let resources = cfn::physical_ids(&cfn_client, &stack_name).await?;
            match &iam {
                Some(iam) => iam.unchecked(check_services(&sdk, &resources, &artifacts.image.digest)).await?,
                None => check_services(&sdk, &resources, &artifacts.image.digest).await?,
            }
            let skipped = template.resources.values().filter(|r| unlisted(r.kind.as_str())).count();
            let summary = format!(
                "{} of {} resources created ({skipped} of types moto does not create); the buckets, functions, \
                 state machine and image answer",
                template.resources.len() - skipped,
                template.resources.len()
            );
            Ok((resources, summary))
        })
    })?;
    let resource = |id: &str| resources.get(id).cloned().with_context(|| format!("the stack has no {id}"));
    // Each component acts as its own role (the stage template's, resolved against the stack).
    let role_env = |role: &str| -> anyhow::Result<Vec<(String, String)>> {
        runtime.block_on(async {
            let credentials = match &iam {
                Some(iam) => iam.assume(&template, role, &resources).await?,
                None => testing.clone(),
            };
            Ok(emulated_iam::credentials_env(&credentials))
        })
    };

    let api = phases.run("api", || {
        let mut env = aws_env.clone();
        env.extend(role_env("ApiTaskRole")?);
        let api =
            runtime.block_on(start_api(&sdk, &resource("ApiTaskDefinition")?, &artifacts.image, &env, &database))?;
        let summary = format!(
            "the image in podman at {}, from the task definition (user, read-only root, volumes, environment, \
             secrets, health check), as ApiTaskRole",
            api.url
        );
        Ok((api, summary))
    })?;

    let lambda = LambdaEmulator::start(&venv.bin("cargo-lambda"))?;
    let functions = phases.run("pipeline", || {
        let mut roles = BTreeMap::new();
        for name in ["validate", "process", "backup"] {
            let mut env = aws_env.clone();
            env.extend(role_env(&format!("{}Role", capitalized(name)))?);
            roles.insert(name, env);
        }
        runtime.block_on(async {
            let mut functions = BTreeMap::new();
            for name in ["validate", "process", "backup"] {
                let function = resource(&format!("{}Function", capitalized(name)))?;
                let env = match &iam {
                    Some(iam) => iam.unchecked(function_env(&sdk, &function, &roles[name], &database)).await?,
                    None => function_env(&sdk, &function, &roles[name], &database).await?,
                };
                let bootstrap = artifacts
                    .functions
                    .iter()
                    .find(|a| a.function.name == name)
                    .map(|a| a.bootstrap.clone())
                    .context("no such function was built")?;
                functions.insert(name, lambda.run_function(name, &bootstrap, &env)?);
            }
            let reports = run_pipeline(&sdk, &api, &functions)
                .await
                .with_context(|| format!("the API's log ends:\n{}", api.log_tail()))?;
            let summary = reports
                .iter()
                .map(|r| format!("{} {}+{}", r["table"].as_str().unwrap_or("?"), r["accepted"], r["rejected"]))
                .collect::<Vec<_>>()
                .join(", ");
            Ok((
                (functions, reports),
                format!("the hires first: hiring.Waiting; then in order, accepted+rejected: {summary}"),
            ))
        })
    })?;
    let (functions, reports) = functions;

    let process_task_env = {
        let mut env = aws_env.clone();
        env.extend(role_env("ProcessTaskRole")?);
        env
    };
    let process_binary = artifacts
        .functions
        .iter()
        .find(|a| a.function.name == "process")
        .map(|a| a.bootstrap.clone())
        .context("the process function was not built")?;
    phases.run("state machine", || {
        runtime.block_on(async {
            let machine = resource("StateMachine")?;
            let paths = state_machine_paths(&sdk, &endpoint.url, &machine, &functions, &reports);
            // moto's interpreter calls its own Lambda with the emulator's test keys, which
            // enforcement refuses: the phase runs with auth off (moto evaluates no Step
            // Functions role anyway; the functions' own calls were made as their roles above).
            let paths = match &iam {
                Some(iam) => iam.unchecked(paths).await?,
                None => paths.await?,
            };
            // A large file: Engine? sends it to a Fargate task, which moto records but does not
            // run. The task's command runs here, as the task definition and the state machine's
            // overrides say, as ProcessTaskRole with IAM enforced.
            let (large, started) = {
                let large = large_file_path(&sdk, &endpoint.url, &machine, &functions, &reports, STAGE);
                match &iam {
                    Some(iam) => iam.unchecked(large).await?,
                    None => large.await?,
                }
            };
            let ran = run_process_task(&sdk, &started, &process_binary, &process_task_env, &database).await?;
            Ok(((), format!("{paths} | {large}; the task's command as ProcessTaskRole: {ran}")))
        })
    })?;

    phases.run("checks", || {
        runtime.block_on(async {
            let summary = check_results(&sdk, &api, &resources, &functions, &reports).await?;
            Ok(((), summary))
        })
    })?;

    phases.run("presigned", || {
        runtime
            .block_on(async {
                let flow = presigned_flow(&sdk, &api, &functions, iam.as_ref());
                flow.await.with_context(|| format!("the API's log ends:\n{}", api.log_tail()))
            })
            .map(|summary| ((), summary))
    })?;

    phases.run("status", || {
        // In this process, as `status --stage local` with HIRING_API_URL pointing at the API.
        let healthy = runtime.block_on(crate::status::Status::new(STAGE).report(&sdk, Some(api.url.clone())))?;
        ensure!(healthy, "`status --stage local` did not report healthy (above)");
        Ok(((), "healthy".to_owned()))
    })?;

    phases.run("iam", || {
        let Some(iam) = &iam else { return Ok(((), "not enforced on LocalStack".to_owned())) };
        runtime.block_on(check_enforcement(iam, &endpoint.url, &template, &resources)).map(|summary| ((), summary))
    })?;

    drop(functions);
    drop(api);
    println!();
    for (name, took, summary) in &phases.done {
        println!("  {name:<14} {:>6.1}s  {summary}", took.as_secs_f64());
    }
    println!("  {:<14} {:>6.1}s", "total", phases.started.elapsed().as_secs_f64());
    println!("test-local: the local stage works end to end");
    Ok(())
}

fn capitalized(name: &str) -> String {
    let mut chars = name.chars();
    chars.next().map(|c| c.to_ascii_uppercase().to_string() + chars.as_str()).unwrap_or_default()
}

/// The environment an AWS client needs for the emulator at `url`, but its credentials (each
/// component gets its role's).
fn aws_env(url: &str) -> Vec<(String, String)> {
    [
        ("AWS_REGION", "us-east-1"),
        ("AWS_DEFAULT_REGION", "us-east-1"),
        ("AWS_ENDPOINT_URL", url),
        ("AWS_ENDPOINT_URL_S3", url),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// The proof that IAM is enforced: the emulator's test keys are refused; the API's role is
/// denied what its grants leave out (the processed zone, writing rejects); the functions may
/// delete their own partial outputs and nothing else.
async fn check_enforcement(
    iam: &Iam<'_>,
    url: &str,
    template: &stack::Template,
    resources: &BTreeMap<String, String>,
) -> anyhow::Result<String> {
    let as_role = |role: &'static str| async move {
        let credentials = iam.assume(template, role, resources).await?;
        anyhow::Ok(crate::publish::s3_client(&devenv::moto::sdk_config(url, credentials).await))
    };
    let status = |error: Option<u16>| error.map_or("allowed".to_owned(), |code| format!("HTTP {code}"));
    let refused = |result: Result<(), Option<u16>>| result.err().flatten() == Some(403);
    let put = |s3: aws_sdk_s3::Client, bucket: String, key: &'static str| async move {
        s3.put_object()
            .bucket(bucket)
            .key(key)
            .body(b"probe".to_vec().into())
            .send()
            .await
            .map(|_| ())
            .map_err(|e| e.raw_response().map(|r| r.status().as_u16()))
    };
    let delete = |s3: aws_sdk_s3::Client, bucket: String, key: &'static str| async move {
        s3.delete_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| e.raw_response().map(|r| r.status().as_u16()))
    };
    let get = |s3: aws_sdk_s3::Client, bucket: String| async move {
        s3.list_objects_v2()
            .bucket(bucket)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| e.raw_response().map(|r| r.status().as_u16()))
    };
    let bucket = |id: &str| resources.get(id).cloned().with_context(|| format!("the stack has no {id}"));

    let testing = crate::publish::s3_client(
        &devenv::moto::sdk_config(url, aws_credential_types::Credentials::new("testing", "testing", None, None, "t"))
            .await,
    );
    let with_test_keys = get(testing, bucket("RawBucket")?).await;
    ensure!(
        refused(with_test_keys),
        "the emulator's test keys were not refused: {}",
        status(with_test_keys.err().flatten())
    );

    let api = as_role("ApiTaskRole").await?;
    let processed = get(api.clone(), bucket("ProcessedBucket")?).await;
    ensure!(
        refused(processed),
        "ApiTaskRole listed the processed zone, which it has no grant on: {}",
        status(processed.err().flatten())
    );
    let rejects = put(api.clone(), bucket("RejectsBucket")?, "iam-probe").await;
    ensure!(
        refused(rejects),
        "ApiTaskRole wrote the rejects zone, which it only reads: {}",
        status(rejects.err().flatten())
    );

    // Issue 14, defect 9: each function removes a partial output of its own zone.
    let operator = crate::publish::s3_client(&devenv::moto::sdk_config(url, iam.operator()).await);
    for (role, zone) in [("ValidateRole", "RejectsBucket"), ("ProcessRole", "ProcessedBucket")] {
        let name = bucket(zone)?;
        put(operator.clone(), name.clone(), "iam-probe").await.map_err(|e| anyhow::anyhow!("probe: {}", status(e)))?;
        let deleted = delete(as_role(role).await?, name, "iam-probe").await;
        ensure!(
            deleted.is_ok(),
            "{role} cannot delete a partial output in {zone}: {}",
            status(deleted.err().flatten())
        );
    }
    let raw = delete(as_role("ValidateRole").await?, bucket("RawBucket")?, "iam-probe").await;
    ensure!(refused(raw), "ValidateRole may delete raw objects: {}", status(raw.err().flatten()));
    Ok("test keys refused; ApiTaskRole denied the processed zone and writing rejects; validate and process delete \
        their partial outputs, and nothing in raw"
        .to_owned())
}

/// Drops and creates the tables' database, so every run starts from nothing.
async fn empty_database(url: &str) -> anyhow::Result<()> {
    let mut admin = reqwest::Url::parse(url)?;
    admin.set_path("/postgres");
    let pool = sqlx::PgPool::connect(admin.as_str()).await.context("could not connect to PostgreSQL")?;
    sqlx::query(&format!("DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")).execute(&pool).await?;
    sqlx::query(&format!("CREATE DATABASE {DATABASE}")).execute(&pool).await?;
    pool.close().await;
    Ok(())
}

/// Sets the secret `name` to `value`, creating it if needed.
async fn put_secret(sdk: &SdkConfig, name: &str, value: &str) -> anyhow::Result<()> {
    let client = aws_sdk_secretsmanager::Client::new(sdk);
    if client.describe_secret().secret_id(name).send().await.is_ok() {
        client
            .put_secret_value()
            .secret_id(name)
            .secret_string(value)
            .send()
            .await
            .map_err(|e| cfn::failed(format!("PutSecretValue {name}"), &e))?;
    } else {
        client
            .create_secret()
            .name(name)
            .secret_string(value)
            .send()
            .await
            .map_err(|e| cfn::failed(format!("CreateSecret {name}"), &e))?;
    }
    Ok(())
}

/// What should exist once the stack is up, asked of each service.
async fn check_services(sdk: &SdkConfig, resources: &BTreeMap<String, String>, image: &str) -> anyhow::Result<()> {
    let s3 = crate::publish::s3_client(sdk);
    for bucket in ["RawBucket", "RejectsBucket", "ProcessedBucket", "BackupsBucket"] {
        let name = &resources[bucket];
        s3.head_bucket().bucket(name).send().await.map_err(|e| cfn::failed(format!("HeadBucket {name}"), &e))?;
    }
    let lambda = aws_sdk_lambda::Client::new(sdk);
    for function in ["ValidateFunction", "ProcessFunction", "BackupFunction"] {
        let name = &resources[function];
        lambda
            .get_function()
            .function_name(name)
            .send()
            .await
            .map_err(|e| cfn::failed(format!("GetFunction {name}"), &e))?;
    }
    let sfn = aws_sdk_sfn::Client::new(sdk);
    let arn = &resources["StateMachine"];
    sfn.describe_state_machine()
        .state_machine_arn(arn)
        .send()
        .await
        .map_err(|e| cfn::failed(format!("DescribeStateMachine {arn}"), &e))?;
    let ecr = aws_sdk_ecr::Client::new(sdk);
    ecr.describe_images()
        .repository_name(stack::API_REPOSITORY)
        .image_ids(aws_sdk_ecr::types::ImageIdentifier::builder().image_digest(image).build())
        .send()
        .await
        .map_err(|e| cfn::failed(format!("DescribeImages {image}"), &e))?;
    Ok(())
}

/// The local PostgreSQL in place of the RDS endpoint the stack configured.
fn database_overrides(database: &reqwest::Url) -> Vec<(String, String)> {
    vec![
        ("HIRING_DB_HOST".into(), database.host_str().unwrap_or("127.0.0.1").to_owned()),
        ("HIRING_DB_PORT".into(), database.port().unwrap_or(5432).to_string()),
        ("HIRING_DB_NAME".into(), DATABASE.to_owned()),
        // RDS forces TLS; a local server may have none.
        ("HIRING_DB_SSLMODE".into(), "prefer".to_owned()),
    ]
}

/// The running API: its image in a podman container, run from the task definition.
struct Api {
    url: String,
    token: String,
    /// `HIRING_RAW_URL` of the task definition: where uploads go.
    raw_url: String,
    podman: devenv::podman::Podman,
    container: String,
    /// The image's id in podman's store.
    image: String,
}

impl Api {
    /// The container's last lines of output, for a failure's message.
    fn log_tail(&self) -> String {
        let lines = self.podman.run(&["logs", "--tail", "40", &self.container]).unwrap_or_default();
        let errors = self.podman.command().args(["logs", "--tail", "40", &self.container]).output();
        let errors = errors.map(|o| String::from_utf8_lossy(&o.stderr).into_owned()).unwrap_or_default();
        format!("{lines}{errors}")
    }
}

impl Drop for Api {
    fn drop(&mut self) {
        // The container with its volumes, and the image: the store under <target>/podman does
        // not grow with every build's digest.
        let _ = self.podman.run(&["rm", "--force", "--volumes", "--time", "0", &self.container]);
        let _ = self.podman.run(&["image", "rm", "--force", &self.image]);
    }
}

/// Starts the API's image as ECS would start the task definition read back from the
/// emulator: in podman, as the container's user, with its read-only root filesystem, its
/// volumes mounted where its mount points say, its environment and its secrets (resolved from
/// Secrets Manager, the execution role's job), checked healthy by its own health-check
/// command; then the local overrides (database, emulator, listen port, the task role's
/// credentials in `env`).
///
/// A task volume with no host path is Fargate task storage: root-owned 0755, unless the
/// image declares the path a `VOLUME`, whose content and ownership Fargate copies into it
/// (https://docs.aws.amazon.com/AmazonECS/latest/developerguide/bind-mounts.html). podman's
/// anonymous volume copies the image's directory the same way; a path the image does not
/// declare gets a root-owned tmpfs.
async fn start_api(
    sdk: &SdkConfig,
    task_definition: &str,
    image: &xtask::image::Image,
    env: &[(String, String)],
    database: &reqwest::Url,
) -> anyhow::Result<Api> {
    let ecs = aws_sdk_ecs::Client::new(sdk);
    let described = ecs
        .describe_task_definition()
        .task_definition(task_definition)
        .send()
        .await
        .map_err(|e| cfn::failed(format!("DescribeTaskDefinition {task_definition}"), &e))?;
    let task = described.task_definition().context("DescribeTaskDefinition returned no task definition")?;
    let container = task.container_definitions().first().context("the task definition has no container")?;
    let secrets = aws_sdk_secretsmanager::Client::new(sdk);
    let mut environment: Vec<(String, String)> = container
        .environment()
        .iter()
        .filter_map(|pair| Some((pair.name()?.to_owned(), pair.value()?.to_owned())))
        .collect();
    let mut token = String::new();
    for secret in container.secrets() {
        let value = secrets
            .get_secret_value()
            .secret_id(secret.value_from())
            .send()
            .await
            .map_err(|e| cfn::failed(format!("GetSecretValue {}", secret.value_from()), &e))?
            .secret_string()
            .unwrap_or_default()
            .to_owned();
        if secret.name() == "HIRING_API_TOKENS" {
            token = crate::upload::write_token(&value)?;
        }
        environment.push((secret.name().to_owned(), value));
    }
    ensure!(!token.is_empty(), "the task definition gives the API no HIRING_API_TOKENS secret");
    let raw_url = environment
        .iter()
        .find(|(k, _)| k == "HIRING_RAW_URL")
        .map(|(_, v)| v.clone())
        .context("the task definition gives the API no HIRING_RAW_URL")?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    environment.extend(database_overrides(database));
    environment.extend(env.iter().cloned());
    environment.push(("HIRING_LISTEN".to_owned(), format!("127.0.0.1:{port}")));
    // A multipart upload above 8 MiB, in 16 MiB parts (above 5 GiB, in 64 MiB parts, in AWS), so
    // the presigned phase's 46 MB hires file goes up in parts.
    environment.push(("HIRING_MULTIPART_ABOVE_BYTES".to_owned(), (8 << 20).to_string()));
    environment.push(("HIRING_MULTIPART_PART_BYTES".to_owned(), (16 << 20).to_string()));

    let podman = devenv::podman::ensure()?;
    let id = podman.load(&image.dir)?;
    let config: Value = serde_json::from_slice(&std::fs::read(&image.config.path)?)?;
    let declared = |path: &str| config["config"]["Volumes"].get(path).is_some();
    let name = format!("hiring-test-local-api-{}", std::process::id());
    let _ = podman.run(&["rm", "--force", "--volumes", "--time", "0", &name]);
    // `--image-volume ignore`: only the task definition's volumes exist, as on Fargate, where an
    // image's VOLUME gets storage only through a task volume mounted at its path.
    let mut args: Vec<String> =
        ["run", "--detach", "--pull=never", "--network", "host", "--image-volume", "ignore", "--name", &name]
            .into_iter()
            .map(str::to_owned)
            .collect();
    if let Some(user) = container.user() {
        args.extend(["--user".to_owned(), user.to_owned()]);
    }
    if container.readonly_root_filesystem() == Some(true) {
        // Fargate's read-only root has no writable /tmp or /run, which podman adds by default.
        args.extend(["--read-only".to_owned(), "--read-only-tmpfs=false".to_owned()]);
    }
    for mount in container.mount_points() {
        let (Some(volume), Some(path)) = (mount.source_volume(), mount.container_path()) else { continue };
        let defined = task.volumes().iter().find(|v| v.name() == Some(volume));
        ensure!(defined.is_some(), "the container mounts {volume}, which the task does not define");
        ensure!(
            defined.and_then(|v| v.host()).and_then(|h| h.source_path()).is_none(),
            "{volume} is a host path, which Fargate does not offer"
        );
        let read_only = if mount.read_only() == Some(true) { ":ro" } else { "" };
        if declared(path) {
            args.extend(["--volume".to_owned(), format!("{path}{read_only}")]);
        } else {
            args.extend(["--tmpfs".to_owned(), format!("{path}:mode=0755")]);
        }
    }
    for (key, value) in &environment {
        args.extend(["--env".to_owned(), format!("{key}={value}")]);
    }
    let health = container.health_check().map(|h| h.command().to_vec()).unwrap_or_default();
    ensure!(
        health.first().map(String::as_str) == Some("CMD") && health.len() > 1,
        "the task definition's health check is not an exec command: {health:?}"
    );
    // Run on demand below (podman runs no periodic checks without systemd).
    args.extend([
        "--health-cmd".to_owned(),
        serde_json::to_string(&health[1..])?,
        "--health-interval".to_owned(),
        "disable".to_owned(),
        id.clone(),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    podman.run(&args)?;
    let api = Api { url: format!("http://127.0.0.1:{port}"), token, raw_url, podman, container: name, image: id };

    // Healthy as ECS would judge it: the container's own health-check command succeeds.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let checked = api.podman.command().args(["healthcheck", "run", &api.container]).output()?;
        if checked.status.success() {
            break;
        }
        let state = api.podman.run(&["inspect", "--format", "{{.State.Status}}", &api.container]).unwrap_or_default();
        ensure!(state.trim() == "running", "the API's container stopped ({}):\n{}", state.trim(), api.log_tail());
        ensure!(
            Instant::now() < deadline,
            "the API's container is not healthy after 60 s ({}):\n{}",
            String::from_utf8_lossy(&checked.stdout).trim(),
            api.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(api)
}

/// A deployed function's environment, with the local overrides.
async fn function_env(
    sdk: &SdkConfig,
    function: &str,
    aws_env: &[(String, String)],
    database: &reqwest::Url,
) -> anyhow::Result<Vec<(String, String)>> {
    let lambda = aws_sdk_lambda::Client::new(sdk);
    let configuration = lambda
        .get_function_configuration()
        .function_name(function)
        .send()
        .await
        .map_err(|e| cfn::failed(format!("GetFunctionConfiguration {function}"), &e))?;
    let mut env: Vec<(String, String)> = configuration
        .environment()
        .and_then(|e| e.variables())
        .map(|vars| vars.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    env.extend(database_overrides(database));
    env.extend(aws_env.iter().cloned());
    Ok(env)
}

/// The raw zone's bucket and key prefix, from the API's `HIRING_RAW_URL` (`s3://bucket/prefix`).
fn raw_location(env_url: &str) -> anyhow::Result<(String, String)> {
    let rest = env_url.strip_prefix("s3://").with_context(|| format!("HIRING_RAW_URL `{env_url}` is not s3://"))?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    Ok((bucket.to_owned(), prefix.trim_end_matches('/').to_owned()))
}

/// The Object Created event S3 sends to EventBridge for `key`, read from the object itself.
async fn object_created(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> anyhow::Result<Value> {
    let head = s3
        .head_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map_err(|e| cfn::failed(format!("HeadObject {key}"), &e))?;
    Ok(json!({
        "version": "0",
        "id": format!("test-local-{key}"),
        "detail-type": "Object Created",
        "source": "aws.s3",
        "account": "123456789012",
        "time": "2026-01-01T00:00:00Z",
        "region": "us-east-1",
        "resources": [format!("arn:aws:s3:::{bucket}")],
        "detail": {
            "version": "0",
            "bucket": { "name": bucket },
            "object": {
                "key": key,
                "size": head.content_length().unwrap_or_default(),
                "etag": head.e_tag().unwrap_or_default().trim_matches('"'),
            },
            "reason": "PutObject"
        }
    }))
}

async fn invoke(function: &RunningFunction, event: &Value) -> anyhow::Result<Value> {
    match function.invoke(event).await? {
        Invocation::Response(value) => Ok(value),
        Invocation::Error(error) => {
            bail!("{} failed: {}: {}\n{}", function.name(), error.error_type, error.error_message, function.log())
        }
    }
}

/// Uploads the sample files through the API (which puts them in the raw bucket and queues
/// them), then runs validate and process on each as the state machine would. Returns the
/// validation reports, each with the event that started it (`event`) and the process report
/// (`process`).
async fn run_pipeline(
    sdk: &SdkConfig,
    api: &Api,
    functions: &BTreeMap<&str, RunningFunction>,
) -> anyhow::Result<Vec<Value>> {
    let client = reqwest::Client::new();
    let mut form = reqwest::multipart::Form::new();
    for table in SAMPLES {
        let path = devenv::project_root().join("data").join("sample").join(format!("{table}.csv"));
        let bytes = std::fs::read(&path).with_context(|| format!("failed to read {}", path.display()))?;
        form = form.part(table, reqwest::multipart::Part::bytes(bytes).file_name(format!("{table}.csv")));
    }
    let response = client.post(format!("{}/upload", api.url)).bearer_auth(&api.token).multipart(form).send().await?;
    let status = response.status();
    let body: Value = response.json().await.context("POST /upload did not answer JSON")?;
    ensure!(status == 202, "POST /upload answered {status}: {body}");

    let s3 = crate::publish::s3_client(sdk);
    let queued = body["ingestions"].as_array().context("POST /upload listed no ingestions")?;
    let mut events = Vec::new();
    for ingestion in queued {
        let key = ingestion["key"].as_str().context("a queued ingestion without a key")?;
        let (bucket, prefix) = raw_location(&api.raw_url)?;
        let object = if prefix.is_empty() { key.to_owned() } else { format!("{prefix}/{key}") };
        events.push(object_created(&s3, &bucket, &object).await?);
    }
    // The worst order first: each file runs its own execution, and the hires one may start
    // before the departments and jobs it refers to are loaded. Its validation must wait (a
    // `hiring.Waiting` error, which the state machine retries) rather than reject every hire.
    let hires = queued.iter().position(|i| i["table"] == "hired_employees").context("no hires file was queued")?;
    match functions["validate"].invoke(&events[hires]).await? {
        Invocation::Error(error) if error.error_type == "hiring.Waiting" => {}
        other => bail!("validating the hires before their departments and jobs answered {other:?}, not hiring.Waiting"),
    }
    let mut reports = Vec::new();
    for (queued, event) in queued.iter().zip(events) {
        let mut report = invoke(&functions["validate"], &event).await?;
        ensure!(
            report["ingestion"] == queued["id"],
            "validate reported ingestion {} for {}",
            report["ingestion"],
            queued["id"]
        );
        if report["loadable"] == true {
            let processed = invoke(&functions["process"], &report).await?;
            report["process"] = processed;
        }
        report["event"] = event;
        reports.push(report);
    }
    Ok(reports)
}

/// Runs the deployed state machine definition on moto's Step Functions interpreter, its
/// Lambda tasks answered with the functions' real answers: a loadable file goes Validate →
/// Loadable? → Process, a file with nothing loadable Validate → Loadable? → Rejected.
async fn state_machine_paths(
    sdk: &SdkConfig,
    endpoint: &str,
    state_machine: &str,
    functions: &BTreeMap<&str, RunningFunction>,
    reports: &[Value],
) -> anyhow::Result<String> {
    let interpreter = Interpreter::start(sdk, endpoint, state_machine, "hiring-local-paths", |_| Ok(())).await?;
    let result = async {
        // A loadable file: the hires, with the answers validate and process gave.
        let hires = reports
            .iter()
            .find(|r| r["table"] == "hired_employees")
            .context("no validation report of hired_employees")?;
        let mut validation = hires.clone();
        let event = validation.as_object_mut().and_then(|o| o.remove("event")).unwrap_or_default();
        let process = validation.as_object_mut().and_then(|o| o.remove("process")).unwrap_or_default();
        let (loadable, _) = interpreter.run("loadable", &event, &[&validation, &process]).await?;
        ensure!(
            loadable == ["Validate", "Loadable?", "Engine?", "Process"],
            "a loadable file took the path {loadable:?}"
        );

        // A file with nothing loadable: really validated, then replayed.
        let s3 = crate::publish::s3_client(sdk);
        let raw = event["detail"]["bucket"]["name"].as_str().context("an event without a bucket")?.to_owned();
        // The raw zone's keys are `[<prefix>/]<table>/<file>`: a jobs file beside the hires.
        let hires_key = event["detail"]["object"]["key"].as_str().unwrap_or_default();
        let key = match hires_key.rsplitn(3, '/').nth(2) {
            Some(prefix) => format!("{prefix}/jobs/test-local-unloadable.csv"),
            None => "jobs/test-local-unloadable.csv".to_owned(),
        };
        s3.put_object()
            .bucket(&raw)
            .key(&key)
            .body(b"\x00\xff\x00not a jobs file\xfe\n\x01\x02\x03\n".to_vec().into())
            .send()
            .await
            .map_err(|e| cfn::failed(format!("PutObject {key}"), &e))?;
        let unloadable_event = object_created(&s3, &raw, &key).await?;
        let rejected_report = invoke(&functions["validate"], &unloadable_event).await;
        let rejected = match rejected_report {
            Ok(report) => {
                ensure!(report["loadable"] == false, "an unloadable file was reported loadable: {report}");
                interpreter.run("rejected", &unloadable_event, &[&report]).await?.0
            }
            Err(error) => bail!("validate did not report the unloadable file: {error:#}"),
        };
        ensure!(rejected == ["Validate", "Loadable?", "Rejected"], "an unloadable file took the path {rejected:?}");
        Ok(format!("{} | {}", loadable.join(" → "), rejected.join(" → ")))
    }
    .await;
    interpreter.stop().await?;
    result
}

/// A copy of the deployed state machine on moto's Step Functions interpreter, which is switched
/// on while it lives ([`Interpreter::stop`] switches it off).
struct Interpreter {
    sfn: aws_sdk_sfn::Client,
    http: reqwest::Client,
    endpoint: String,
    /// The copy's ARN.
    copy: String,
}

impl Interpreter {
    /// Creates the copy `name` of `state_machine`, its definition passed through `edit`.
    async fn start(
        sdk: &SdkConfig,
        endpoint: &str,
        state_machine: &str,
        name: &str,
        edit: impl FnOnce(&mut Value) -> anyhow::Result<()>,
    ) -> anyhow::Result<Interpreter> {
        let sfn = aws_sdk_sfn::Client::new(sdk);
        let deployed = sfn
            .describe_state_machine()
            .state_machine_arn(state_machine)
            .send()
            .await
            .map_err(|e| cfn::failed("DescribeStateMachine".to_owned(), &e))?;
        let mut definition: Value =
            serde_json::from_str(deployed.definition()).context("the deployed definition is not JSON")?;
        edit(&mut definition)?;
        let interpreter =
            Interpreter { sfn, http: reqwest::Client::new(), endpoint: endpoint.to_owned(), copy: String::new() };
        interpreter.switch(true).await?;
        let copy = interpreter
            .sfn
            .create_state_machine()
            .name(name)
            .definition(definition.to_string())
            .role_arn(deployed.role_arn())
            .send()
            .await
            .map_err(|e| cfn::failed("CreateStateMachine".to_owned(), &e));
        match copy {
            Ok(copy) => Ok(Interpreter { copy: copy.state_machine_arn().to_owned(), ..interpreter }),
            Err(error) => {
                interpreter.switch(false).await?;
                Err(error)
            }
        }
    }

    /// Starts an execution of the copy whose Lambda tasks answer `answers` in order; returns the
    /// states it entered and its output, after checking it succeeded.
    async fn run(&self, name: &str, input: &Value, answers: &[&Value]) -> anyhow::Result<(Vec<String>, Value)> {
        let (sfn, endpoint) = (&self.sfn, &self.endpoint);
        let results: Vec<String> = answers.iter().map(|a| a.to_string()).collect();
        self.http
            .post(format!("{endpoint}/moto-api/static/lambda-simple/response"))
            .json(&json!({ "results": results, "region": "us-east-1" }))
            .send()
            .await?
            .error_for_status()?;
        let started = sfn
            .start_execution()
            .state_machine_arn(&self.copy)
            .name(name)
            .input(input.to_string())
            .send()
            .await
            .map_err(|e| cfn::failed("StartExecution".to_owned(), &e))?;
        let deadline = Instant::now() + Duration::from_secs(60);
        let described = loop {
            let described = sfn
                .describe_execution()
                .execution_arn(started.execution_arn())
                .send()
                .await
                .map_err(|e| cfn::failed("DescribeExecution".to_owned(), &e))?;
            if described.status().as_str() != "RUNNING" {
                break described;
            }
            ensure!(Instant::now() < deadline, "the execution {name} still runs after 60 s");
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        ensure!(
            described.status().as_str() == "SUCCEEDED",
            "the execution {name} ended {}: {} {}",
            described.status().as_str(),
            described.error().unwrap_or_default(),
            described.cause().unwrap_or_default()
        );
        let history = sfn
            .get_execution_history()
            .execution_arn(started.execution_arn())
            .send()
            .await
            .map_err(|e| cfn::failed("GetExecutionHistory".to_owned(), &e))?;
        let path = history
            .events()
            .iter()
            .filter_map(|e| e.state_entered_event_details().map(|d| d.name().to_owned()))
            .collect();
        let output = serde_json::from_str(described.output().unwrap_or("null")).context("the output is not JSON")?;
        Ok((path, output))
    }

    async fn switch(&self, on: bool) -> anyhow::Result<()> {
        let config = json!({ "stepfunctions": { "execute_state_machine": on }, "lambda": { "use_docker": !on } });
        self.http.post(format!("{}/moto-api/config", self.endpoint)).json(&config).send().await?.error_for_status()?;
        Ok(())
    }

    async fn stop(self) -> anyhow::Result<()> {
        self.switch(false).await
    }
}

/// A new hires file, really validated, whose report says more rows than the stage's Fargate
/// threshold: the deployed definition (on moto's interpreter) must take Validate → Loadable? →
/// Engine? → ProcessOnFargate → Processed? → Processed. Returns the path and the task moto
/// recorded (`DescribeTasks`' task: its overrides carry the step's input).
async fn large_file_path(
    sdk: &SdkConfig,
    endpoint: &str,
    state_machine: &str,
    functions: &BTreeMap<&str, RunningFunction>,
    reports: &[Value],
    stage: Stage,
) -> anyhow::Result<(String, aws_sdk_ecs::types::Task)> {
    // moto's interpreter cannot run an `ecs:runTask` state: its ECS integration hands the ASL's
    // parameter names (`Cluster`, …) to botocore unconverted, which fails (a KeyError), and reads
    // the answer under names it never converts either. The copy run here replaces that one Task
    // by a Pass state with the same Parameters, so the Choice, the JSONPath and the intrinsic
    // that build the task's input run on the interpreter; RunTask is then called with what the
    // Pass resolved, as Step Functions would call it.
    let pass_for_the_task = |definition: &mut Value| {
        let task_state = definition["States"]["ProcessOnFargate"].clone();
        ensure!(task_state["Resource"] == "arn:aws:states:::ecs:runTask.sync", "ProcessOnFargate is {task_state}");
        definition["States"]["ProcessOnFargate"] = json!({
            "Type": "Pass",
            "Parameters": { "run_task": task_state["Parameters"], "exit_code": 0 },
            "ResultPath": "$.process",
            "Next": task_state["Next"],
        });
        Ok(())
    };
    let interpreter = Interpreter::start(sdk, endpoint, state_machine, "hiring-local-large", pass_for_the_task).await?;
    let result = async {
        let hires = reports.iter().find(|r| r["table"] == "hired_employees").context("no hires report")?;
        let raw = hires["event"]["detail"]["bucket"]["name"].as_str().context("an event without a bucket")?.to_owned();
        let hires_key = hires["event"]["detail"]["object"]["key"].as_str().unwrap_or_default();
        let key = match hires_key.rsplitn(3, '/').nth(2) {
            Some(prefix) => format!("{prefix}/hired_employees/test-local-large.csv"),
            None => "hired_employees/test-local-large.csv".to_owned(),
        };
        let s3 = crate::publish::s3_client(sdk);
        s3.put_object()
            .bucket(&raw)
            .key(&key)
            .body(LARGE_FILE_STAND_IN.as_bytes().to_vec().into())
            .send()
            .await
            .map_err(|e| cfn::failed(format!("PutObject {key}"), &e))?;
        let event = object_created(&s3, &raw, &key).await?;
        let mut report = invoke(&functions["validate"], &event).await?;
        ensure!(
            report["loadable"] == true && report["accepted"] == 3,
            "the large file's stand-in validated as {report}"
        );
        // The three rows stand in for a file past the threshold: the Choice reads `rows`.
        report["rows"] = json!(stage.config().fargate_process_rows() + 1);
        let (path, output) = interpreter.run("large", &event, &[&report]).await?;
        let expected = ["Validate", "Loadable?", "Engine?", "ProcessOnFargate", "Processed?", "Processed"];
        ensure!(path == expected, "a large file took the path {path:?}");
        let task = run_task(sdk, &output["process"]["run_task"]).await?;
        Ok((path.join(" → "), task))
    }
    .await;
    interpreter.stop().await?;
    result
}

/// ECS RunTask with the parameters a `ecs:runTask` state resolved (its ASL names), as Step
/// Functions calls it (`StartedBy: AWS Step Functions`); returns the task moto recorded.
async fn run_task(sdk: &SdkConfig, parameters: &Value) -> anyhow::Result<aws_sdk_ecs::types::Task> {
    use aws_sdk_ecs::types::{
        AssignPublicIp, AwsVpcConfiguration, ContainerOverride, KeyValuePair, LaunchType, NetworkConfiguration,
        TaskOverride,
    };
    let strings = |value: &Value| -> Vec<String> {
        value.as_array().into_iter().flatten().filter_map(|v| v.as_str().map(str::to_owned)).collect()
    };
    let network = &parameters["NetworkConfiguration"]["AwsvpcConfiguration"];
    let awsvpc = AwsVpcConfiguration::builder()
        .set_subnets(Some(strings(&network["Subnets"])))
        .set_security_groups(Some(strings(&network["SecurityGroups"])))
        .assign_public_ip(AssignPublicIp::from(network["AssignPublicIp"].as_str().unwrap_or("DISABLED")))
        .build()?;
    let mut overrides = TaskOverride::builder();
    for container in parameters["Overrides"]["ContainerOverrides"].as_array().into_iter().flatten() {
        let mut built = ContainerOverride::builder().name(container["Name"].as_str().unwrap_or_default());
        for pair in container["Environment"].as_array().into_iter().flatten() {
            built = built.environment(
                KeyValuePair::builder()
                    .name(pair["Name"].as_str().unwrap_or_default())
                    .value(pair["Value"].as_str().context("an override without a resolved Value")?)
                    .build(),
            );
        }
        overrides = overrides.container_overrides(built.build());
    }
    let ecs = aws_sdk_ecs::Client::new(sdk);
    let cluster = parameters["Cluster"].as_str().context("no Cluster")?;
    let started = ecs
        .run_task()
        .cluster(cluster)
        .task_definition(parameters["TaskDefinition"].as_str().context("no TaskDefinition")?)
        .launch_type(LaunchType::from(parameters["LaunchType"].as_str().unwrap_or("FARGATE")))
        .network_configuration(NetworkConfiguration::builder().awsvpc_configuration(awsvpc).build())
        .overrides(overrides.build())
        .started_by("AWS Step Functions")
        .send()
        .await
        .map_err(|e| cfn::failed(format!("RunTask {cluster}"), &e))?;
    ensure!(started.failures().is_empty(), "RunTask failed: {:?}", started.failures());
    started.tasks().first().cloned().context("RunTask started no task")
}

/// Three valid hires that stand in for a large file (their report's `rows` is raised past the
/// threshold): departments and jobs of the sample.
const LARGE_FILE_STAND_IN: &str = "900001,Large One,2021-03-01T00:00:00Z,1,1\n\
                                   900002,Large Two,2021-06-01T00:00:00Z,2,2\n\
                                   900003,Large Three,2021-09-01T00:00:00Z,3,3\n";

/// Runs the process task's command here, as ECS would: the task definition's entry point (the
/// process function's binary), its environment with the local database, the state machine's
/// overrides (`HIRING_STEP_INPUT`), as the task role. Checks the load it reports.
async fn run_process_task(
    sdk: &SdkConfig,
    task: &aws_sdk_ecs::types::Task,
    binary: &std::path::Path,
    role_env: &[(String, String)],
    database: &reqwest::Url,
) -> anyhow::Result<String> {
    let ecs = aws_sdk_ecs::Client::new(sdk);
    let definition = ecs
        .describe_task_definition()
        .task_definition(task.task_definition_arn().unwrap_or_default())
        .send()
        .await
        .map_err(|e| cfn::failed("DescribeTaskDefinition".to_owned(), &e))?;
    let container = definition
        .task_definition()
        .and_then(|d| d.container_definitions().iter().find(|c| c.name() == Some(stack::topology::PROCESS_CONTAINER)))
        .context("the process task definition has no process container")?;
    ensure!(
        container.entry_point() == [stack::topology::PROCESS_BINARY],
        "the process container runs {:?}, not the process binary",
        container.entry_point()
    );
    let overrides = task
        .overrides()
        .and_then(|o| o.container_overrides().iter().find(|c| c.name() == Some(stack::topology::PROCESS_CONTAINER)))
        .context("the task has no overrides for the process container")?;
    let scratch = tempfile::tempdir()?;
    let mut env: Vec<(String, String)> = container
        .environment()
        .iter()
        .chain(overrides.environment())
        .filter_map(|pair| Some((pair.name()?.to_owned(), pair.value()?.to_owned())))
        .collect();
    env.extend(database_overrides(database));
    env.extend(role_env.iter().cloned());
    // The task's writable volume, here a temporary directory.
    env.push(("TMPDIR".into(), scratch.path().display().to_string()));
    ensure!(env.iter().any(|(k, _)| k == "HIRING_STEP_INPUT"), "the overrides carry no HIRING_STEP_INPUT");
    let output = tokio::process::Command::new(binary)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env)
        .output()
        .await
        .with_context(|| format!("failed to run {}", binary.display()))?;
    ensure!(
        output.status.success(),
        "the process task's command failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report: Value = stdout
        .lines()
        .rev()
        .find_map(|line| serde_json::from_str(line).ok().filter(|v: &Value| v.get("inserted").is_some()))
        .with_context(|| format!("the process task printed no report: {stdout}"))?;
    ensure!(report["inserted"] == 3 && report["processed_key"].is_string(), "the process task reported {report}");
    Ok(format!("3 rows inserted, {}", report["processed_key"].as_str().unwrap_or_default()))
}

/// What a user checks once the files went through: the metrics, the rejects, the Parquet
/// files, a backup.
async fn check_results(
    sdk: &SdkConfig,
    api: &Api,
    resources: &BTreeMap<String, String>,
    functions: &BTreeMap<&str, RunningFunction>,
    reports: &[Value],
) -> anyhow::Result<String> {
    let client = reqwest::Client::new();
    let get = |path: String| {
        let client = client.clone();
        let url = format!("{}{path}", api.url);
        let token = api.token.clone();
        async move {
            let response = client.get(&url).bearer_auth(&token).send().await.with_context(|| format!("GET {url}"))?;
            let status = response.status();
            let body: Value = response.json().await.with_context(|| format!("GET {url} did not answer JSON"))?;
            ensure!(status == 200, "GET {url} answered {status}: {body}");
            anyhow::Ok(body)
        }
    };
    let hires = reports.iter().find(|r| r["table"] == "hired_employees").context("no hires report")?;
    ensure!(
        hires["rejected"] == SAMPLE_HIRE_REJECTS,
        "the hires had {} rejects, not {SAMPLE_HIRE_REJECTS}",
        hires["rejected"]
    );
    let rejects = get(format!("/ingestions/{}/rejects?limit=1000", hires["ingestion"])).await?;
    let listed = rejects.as_array().map(Vec::len).unwrap_or_default();
    ensure!(listed as i64 == SAMPLE_HIRE_REJECTS, "GET /ingestions/…/rejects listed {listed} rejects");

    let departments = get("/metrics/departments?year=2021".to_owned()).await?;
    ensure!(
        departments.as_array().map(Vec::len) == Some(7)
            && departments[0] == json!({"id": 8, "department": "Support", "hired": 216}),
        "GET /metrics/departments?year=2021 answered {departments}"
    );
    let by_quarter = get("/metrics/hires?year=2021".to_owned()).await?;
    let rows = by_quarter.as_array().map(Vec::len).unwrap_or_default();
    ensure!(rows > 0, "GET /metrics/hires?year=2021 is empty");

    let s3 = crate::publish::s3_client(sdk);
    let keys = |bucket: String| {
        let s3 = s3.clone();
        async move {
            let listed = s3
                .list_objects_v2()
                .bucket(&bucket)
                .send()
                .await
                .map_err(|e| cfn::failed(format!("ListObjectsV2 {bucket}"), &e))?;
            anyhow::Ok(listed.contents().iter().filter_map(|o| o.key().map(str::to_owned)).collect::<Vec<_>>())
        }
    };
    let parquet: Vec<String> =
        keys(resources["ProcessedBucket"].clone()).await?.into_iter().filter(|k| k.ends_with(".parquet")).collect();
    ensure!(parquet.len() >= SAMPLES.len(), "the processed bucket holds {} Parquet files: {parquet:?}", parquet.len());

    let backup = invoke(&functions["backup"], &json!({ "source": "aws.scheduler" })).await?;
    let backups = keys(resources["BackupsBucket"].clone()).await?;
    let avro = backups.iter().filter(|k| k.ends_with(".avro")).count();
    ensure!(avro >= SAMPLES.len(), "the backups bucket holds {avro} AVRO files after a backup: {backups:?} ({backup})");
    let set = backup["key"].as_str().unwrap_or_default();
    ensure!(
        set.starts_with("sets/") && backups.iter().any(|k| k == set),
        "the backup's set manifest `{set}` is not in the backups bucket: {backups:?}"
    );
    Ok(format!(
        "{SAMPLE_HIRE_REJECTS} hire rejects listed, 7 departments above the mean in 2021 (Support 216), {rows} department×job rows, {} Parquet files, {avro} AVRO backups",
        parquet.len()
    ))
}

/// LocalStack, started with Docker compose from `localstack/compose.yml`.
struct LocalStack {
    url: String,
}

impl LocalStack {
    fn start() -> anyhow::Result<LocalStack> {
        if std::env::var("LOCALSTACK_AUTH_TOKEN").unwrap_or_default().is_empty() {
            bail!(
                "--emulator localstack needs LOCALSTACK_AUTH_TOKEN (a LocalStack account's token); without one, use the default, moto"
            );
        }
        let compose = devenv::project_root().join("localstack").join("compose.yml");
        let status = Command::new("docker")
            .args(["compose", "-f"])
            .arg(&compose)
            .args(["up", "--detach", "--wait"])
            .status()
            .context("--emulator localstack needs Docker (`docker compose`), which is not installed here; use the default, moto")?;
        ensure!(status.success(), "`docker compose up` for LocalStack failed ({status}); see its output above");
        Ok(LocalStack { url: "http://127.0.0.1:4566".to_owned() })
    }
}

impl Drop for LocalStack {
    fn drop(&mut self) {
        let compose = devenv::project_root().join("localstack").join("compose.yml");
        let _ = Command::new("docker").args(["compose", "-f"]).arg(&compose).args(["down"]).status();
    }
}

/// The hires of the presigned phase: about 48 MB, over API Gateway's 10 MB payload quota.
const PRESIGNED_ROWS: u64 = 1_000_000;

/// A large upload as a user makes it with `cargo xtask upload`: the generated files (1M hires)
/// are too large for `POST /upload` behind the gateway, which says so and names the presigned
/// flow; through `POST /uploads` each goes straight into the raw bucket, the pipeline loads
/// it (the Object Created event delivered to the functions, as EventBridge and the state
/// machine would), and the client's reports match the generator's manifest.
async fn presigned_flow(
    sdk: &SdkConfig,
    api: &Api,
    functions: &BTreeMap<&str, RunningFunction>,
    iam: Option<&Iam<'_>>,
) -> anyhow::Result<String> {
    use crate::upload::{Client, File};
    let dir = tempfile::tempdir()?;
    let manifest = xtask::gen_data::generate(&xtask::gen_data::Spec::new(PRESIGNED_ROWS, 0.001, 15)?, dir.path())?;
    let files: Vec<File> = ["departments", "jobs", "hired_employees"]
        .iter()
        .map(|table| File::parse(&dir.path().join(format!("{table}.csv")).display().to_string()))
        .collect::<anyhow::Result<_>>()?;
    let hires = &files[2];
    let client = Client {
        http: reqwest::Client::new(),
        url: api.url.clone(),
        token: api.token.clone(),
        progress: false,
        wait: Duration::from_secs(300),
    };

    // Straight to POST /upload: refused by the API's own limit, which names the other flow.
    let refused = client.direct(std::slice::from_ref(hires)).await.expect_err("a 48 MB POST /upload was taken");
    let refused = format!("{refused:#}");
    ensure!(
        refused.contains("413") && refused.contains("POST /uploads"),
        "a direct upload of {} bytes was not refused with the 413 naming the presigned flow: {refused}",
        hires.bytes
    );

    let uploads = client.announce(&files).await?;
    let (bucket, prefix) = raw_location(&api.raw_url)?;
    let s3 = crate::publish::s3_client(sdk);
    let mut reports = Vec::new();
    let mut multipart_parts = 0;
    for (upload, file) in uploads.iter().zip(&files) {
        ensure!(upload["table"] == file.table.as_str(), "the uploads are not in dependency order: {uploads:?}");
        let url = match upload["parts"].as_array() {
            Some(parts) => parts.first().and_then(|p| p["url"].as_str()).context("a multipart upload without parts")?,
            None => upload["url"].as_str().context("an upload without a URL")?,
        };
        let parsed = reqwest::Url::parse(url)?;
        let object = if prefix.is_empty() {
            upload["key"].as_str().unwrap_or_default().to_owned()
        } else {
            format!("{prefix}/{}", upload["key"].as_str().unwrap_or_default())
        };
        ensure!(
            parsed.path() == format!("/{bucket}/{object}")
                && parsed.query().is_some_and(|q| q.contains("X-Amz-Signature=")),
            "the upload URL is not a presigned PUT to the raw bucket's {object}: {url}"
        );
        // moto's IAM enforcement reads only the Authorization header, which a presigned request
        // has not: the PUT itself is made with enforcement off (the API's role may put there,
        // as POST /upload showed with enforcement on).
        match upload["parts"].as_array() {
            Some(parts) => {
                let put = match iam {
                    Some(iam) => iam.unchecked(client.put_parts(file, parts)).await?,
                    None => client.put_parts(file, parts).await?,
                };
                multipart_parts = parts.len();
                // The API assembles them as its role, with IAM enforced (s3:PutObject).
                client.complete(upload, put).await?;
            }
            None => match iam {
                Some(iam) => iam.unchecked(client.put(file, url)).await?,
                None => client.put(file, url).await?,
            },
        }
        let id = upload["ingestion"].as_i64().context("an upload without an ingestion")?;
        let (waiting, event) = tokio::join!(client.wait_for(id), async {
            let event = object_created(&s3, &bucket, &object).await?;
            let validation = invoke(&functions["validate"], &event).await?;
            ensure!(
                validation["ingestion"] == id,
                "validate continued ingestion {}, not {id}",
                validation["ingestion"]
            );
            if validation["loadable"] == true {
                invoke(&functions["process"], &validation).await?;
            }
            anyhow::Ok(())
        });
        event?;
        reports.push(waiting?);
    }
    crate::upload::print_reports(&reports);
    let report = &reports[2];
    ensure!(
        report["status"] == "succeeded"
            && report["rows"] == json!(manifest.rows)
            && report["rejected"] == json!(manifest.bad_rows)
            && report["inserted"].as_u64().unwrap_or_default()
                + report["updated"].as_u64().unwrap_or_default()
                + report["unchanged"].as_u64().unwrap_or_default()
                == manifest.valid_rows,
        "the hires' report does not match the generated file ({} rows, {} broken): {report}",
        manifest.rows,
        manifest.bad_rows
    );
    ensure!(multipart_parts > 1, "the hires were not a multipart upload ({multipart_parts} parts)");
    Ok(format!(
        "POST /upload of {} MB: 413 naming POST /uploads; presigned PUTs to S3 (the hires in {multipart_parts} \
         parts), then the pipeline: {} hires, {} rejected",
        hires.bytes / 1_000_000,
        manifest.rows,
        manifest.bad_rows
    ))
}
