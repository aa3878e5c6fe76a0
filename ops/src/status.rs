//! `cargo xtask status --stage S [--json] [--drift]`: the stage stack's state, reason, last update and
//! outputs; exits 1 unless the stack exists and its last operation completed.
//!
//! It also reports the API's ECS service (running and desired tasks, the rollout of its
//! primary deployment; unhealthy when fewer run than wanted or the rollout failed) and the
//! pipeline's last five executions (a failed one's error and cause are shown). Components are
//! found through the stack's resources, not its outputs.
//!
//! Two healths are kept apart: the *infrastructure's* (the stack, the service, the API, drift),
//! which decides the exit code and so gates the pipeline's Deploy stage, and the *data's* (the
//! latest pipeline execution did not fail), which is reported but gates nothing: one bad CSV
//! file must not block every infrastructure deploy.
//!
//! `--json` prints one object, a stable shape:
//! `{"stack", "exists", "status", "reason", "last_updated", "healthy", "data_healthy", "outputs": {…},
//!   "service": {"running", "desired", "rollout"} | null,
//!   "executions": [{"name", "status", "started", "error", "cause"}]}`.
//!
//! The API's `GET /health` is asked through the `ApiUrl` output (or `HIRING_API_URL`, for the
//! emulator stage whose API runs on this machine, as `test-local` runs it); unhealthy unless
//! it answers 200 within 10 s.
//!
//! `--drift` runs CloudFormation's drift detection, waits for it (up to 10 minutes) and lists
//! the resources that were modified or deleted outside the stack; drifted is unhealthy. Where
//! the endpoint has no drift detection (moto), drift is reported as unavailable, with the
//! reason, and does not count against health.
//!
//! The JSON also has `"api": {"url", "status", "error"} | null` and, with `--drift`,
//! `"drift": {"status", "reason", "resources": [{"id", "type", "status"}]}`.

use anyhow::Context;
use clap::Args;
use serde_json::json;
use stack::Stage;

use crate::{aws, cfn};

#[derive(Args)]
pub struct Status {
    /// The stage: local, dev, staging, prod.
    #[arg(long)]
    stage: Stage,
    /// One JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// Also detect drift (resources changed outside CloudFormation); waits for the detection.
    #[arg(long)]
    drift: bool,
}

/// The states of a stack whose last operation succeeded.
const HEALTHY: [&str; 3] = ["CREATE_COMPLETE", "UPDATE_COMPLETE", "IMPORT_COMPLETE"];

impl Status {
    pub fn run(self) -> anyhow::Result<()> {
        let api_url = std::env::var("HIRING_API_URL").ok().filter(|url| !url.is_empty());
        let healthy = aws::block_on(async { self.report(&aws::connect(self.stage).await?, api_url).await })?;
        if !healthy {
            std::process::exit(1);
        }
        Ok(())
    }

    /// The text report of `stage`, without drift.
    pub fn new(stage: Stage) -> Status {
        Status { stage, json: false, drift: false }
    }

    /// Prints the report of the stage through `sdk` and returns whether everything is healthy;
    /// `api_url` overrides the `ApiUrl` output for the health check.
    pub async fn report(&self, sdk: &aws_config::SdkConfig, api_url: Option<String>) -> anyhow::Result<bool> {
        let name = self.stage.stack_name();
        {
            let sdk = sdk.clone();
            let client = aws_sdk_cloudformation::Client::new(&sdk);
            let stack = cfn::describe(&client, &name).await?;
            let status = stack.as_ref().and_then(|s| s.stack_status()).map(|s| s.as_str().to_owned());
            let healthy = status.as_deref().is_some_and(|s| HEALTHY.contains(&s));
            let last_updated = stack
                .as_ref()
                .and_then(|s| s.last_updated_time().or(s.creation_time()))
                .map(|t| t.fmt(aws_sdk_cloudformation::primitives::DateTimeFormat::DateTime).unwrap_or_default());
            let reason = stack.as_ref().and_then(|s| s.stack_status_reason()).map(str::to_owned);
            let outputs = stack.as_ref().map(cfn::outputs).unwrap_or_default();
            let physical = if stack.is_some() { cfn::physical_ids(&client, &name).await? } else { Default::default() };
            let service = match (physical.get("Cluster"), physical.get("ApiService")) {
                (Some(cluster), Some(service)) => service_state(&sdk, cluster, service).await?,
                _ => None,
            };
            let executions = match physical.get("StateMachine") {
                Some(arn) => executions(&sdk, arn).await?,
                None => Vec::new(),
            };
            let api_url = api_url.or_else(|| outputs.get("ApiUrl").cloned());
            let api = match &api_url {
                Some(url) if stack.is_some() => Some(api_health(url).await),
                _ => None,
            };
            let drift = if self.drift && stack.is_some() { Some(drift(&client, &name).await) } else { None };
            let api_ok = api.as_ref().is_none_or(|a| a["status"] == 200);
            let drift_ok = drift.as_ref().is_none_or(|d| d["status"] != "DRIFTED");
            let service_ok = service
                .as_ref()
                .is_none_or(|s| s["running"].as_i64() >= s["desired"].as_i64() && s["rollout"] != "FAILED");
            let data_healthy = executions.first().is_none_or(|e| e["status"] != "FAILED");
            let healthy = healthy && service_ok && api_ok && drift_ok;
            if self.json {
                let report = json!({
                    "stack": name, "exists": stack.is_some(), "status": status, "reason": reason,
                    "last_updated": last_updated, "healthy": healthy, "data_healthy": data_healthy, "outputs": outputs,
                    "service": service, "executions": executions, "api": api,
                });
                let mut report = report;
                if let Some(drift) = &drift {
                    report["drift"] = drift.clone();
                }
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else if let Some(status) = &status {
                println!("{name}: {status}{}", reason.map(|r| format!(" ({r})")).unwrap_or_default());
                if let Some(time) = last_updated {
                    println!("  last updated {time}");
                }
                for (key, value) in &outputs {
                    println!("  {key:<22} {value}");
                }
                if let Some(service) = &service {
                    println!(
                        "  API service: {}/{} tasks running, rollout {}{}",
                        service["running"],
                        service["desired"],
                        service["rollout"].as_str().unwrap_or("unknown"),
                        if service_ok { "" } else { "  [unhealthy]" }
                    );
                }
                if let Some(api) = &api {
                    match api["status"].as_u64() {
                        Some(200) => println!("  API: {} answers 200", api["url"].as_str().unwrap_or_default()),
                        _ => println!(
                            "  API: {} is not healthy: {}  [unhealthy]",
                            api["url"].as_str().unwrap_or_default(),
                            api["error"].as_str().unwrap_or("no answer")
                        ),
                    }
                }
                if let Some(drift) = &drift {
                    print!("  drift: {}", drift["status"].as_str().unwrap_or_default());
                    match drift["reason"].as_str() {
                        Some(reason) => println!(" ({reason})"),
                        None => println!(),
                    }
                    for resource in drift["resources"].as_array().into_iter().flatten() {
                        println!(
                            "    {} {} {}",
                            resource["status"].as_str().unwrap_or_default(),
                            resource["id"].as_str().unwrap_or_default(),
                            resource["type"].as_str().unwrap_or_default()
                        );
                    }
                }
                if executions.is_empty() {
                    println!("  pipeline: no executions yet");
                } else if !data_healthy {
                    println!(
                        "  data: the latest pipeline execution failed (below); the infrastructure is {}",
                        if healthy { "healthy" } else { "not healthy either" }
                    );
                }
                for execution in &executions {
                    println!(
                        "  pipeline: {} {} {}{}",
                        execution["started"].as_str().unwrap_or_default(),
                        execution["status"].as_str().unwrap_or_default(),
                        execution["name"].as_str().unwrap_or_default(),
                        match (execution["error"].as_str(), execution["cause"].as_str()) {
                            (Some(error), cause) => format!(": {error}: {}", cause.unwrap_or_default()),
                            _ => String::new(),
                        }
                    );
                }
            } else {
                println!("{name}: no such stack; deploy it with `cargo xtask deploy --stage {}`", self.stage);
            }
            Ok(healthy)
        }
    }
}

/// The API service's running and desired tasks and its primary deployment's rollout.
async fn service_state(
    sdk: &aws_config::SdkConfig,
    cluster: &str,
    service: &str,
) -> anyhow::Result<Option<serde_json::Value>> {
    let ecs = aws_sdk_ecs::Client::new(sdk);
    let out = ecs
        .describe_services()
        .cluster(cluster)
        .services(service)
        .send()
        .await
        .map_err(|e| cfn::failed(format!("DescribeServices {service}"), &e))?;
    Ok(out.services().first().map(|s| {
        let primary = s.deployments().iter().find(|d| d.status() == Some("PRIMARY"));
        json!({
            "running": s.running_count(),
            "desired": s.desired_count(),
            "rollout": primary.and_then(|d| d.rollout_state()).map(|r| r.as_str().to_owned()),
        })
    }))
}

/// The state machine's last five executions, newest first, with a failed one's error and cause.
async fn executions(sdk: &aws_config::SdkConfig, state_machine: &str) -> anyhow::Result<Vec<serde_json::Value>> {
    let sfn = aws_sdk_sfn::Client::new(sdk);
    let list = sfn
        .list_executions()
        .state_machine_arn(state_machine)
        .max_results(5)
        .send()
        .await
        .map_err(|e| cfn::failed(format!("ListExecutions {state_machine}"), &e))?;
    let mut out = Vec::new();
    for execution in list.executions() {
        let status = execution.status().as_str().to_owned();
        let (mut error, mut cause) = (None, None);
        if status == "FAILED" {
            let described = sfn
                .describe_execution()
                .execution_arn(execution.execution_arn())
                .send()
                .await
                .map_err(|e| cfn::failed("DescribeExecution".to_owned(), &e))?;
            error = described.error().map(str::to_owned);
            cause = described.cause().map(str::to_owned);
        }
        out.push(json!({
            "name": execution.name(),
            "status": status,
            "started": execution.start_date().fmt(aws_sdk_sfn::primitives::DateTimeFormat::DateTime).unwrap_or_default(),
            "error": error,
            "cause": cause,
        }));
    }
    Ok(out)
}

/// `GET <url>/health`: `{"url", "status", "error"}`.
async fn api_health(url: &str) -> serde_json::Value {
    let health = format!("{}/health", url.trim_end_matches('/'));
    let client = reqwest::Client::builder().timeout(std::time::Duration::from_secs(10)).build();
    let answer = match client {
        Ok(client) => client.get(&health).send().await,
        Err(error) => return json!({ "url": health, "status": null, "error": error.to_string() }),
    };
    match answer {
        Ok(response) => {
            let status = response.status().as_u16();
            let error = (status != 200).then(|| format!("answered {status}"));
            json!({ "url": health, "status": status, "error": error })
        }
        Err(error) => json!({ "url": health, "status": null, "error": format!("no answer: {error}") }),
    }
}

/// How long drift detection may take before status stops waiting.
const DRIFT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);

/// Drift detection of the stack: `{"status", "reason", "resources"}`; `status` is `IN_SYNC`,
/// `DRIFTED`, or `UNAVAILABLE` (with the reason) when it could not be run.
async fn drift(client: &aws_sdk_cloudformation::Client, name: &str) -> serde_json::Value {
    match detect_drift(client, name).await {
        Ok(value) => value,
        Err(error) => json!({ "status": "UNAVAILABLE", "reason": format!("{error:#}"), "resources": [] }),
    }
}

async fn detect_drift(client: &aws_sdk_cloudformation::Client, name: &str) -> anyhow::Result<serde_json::Value> {
    use aws_sdk_cloudformation::types::{StackDriftDetectionStatus, StackResourceDriftStatus};
    let id = client
        .detect_stack_drift()
        .stack_name(name)
        .send()
        .await
        .map_err(|e| cfn::failed(format!("DetectStackDrift {name}"), &e))?
        .stack_drift_detection_id()
        .context("DetectStackDrift returned no detection id")?
        .to_owned();
    let deadline = std::time::Instant::now() + DRIFT_TIMEOUT;
    let detection = loop {
        let out = client
            .describe_stack_drift_detection_status()
            .stack_drift_detection_id(&id)
            .send()
            .await
            .map_err(|e| cfn::failed("DescribeStackDriftDetectionStatus".to_owned(), &e))?;
        if out.detection_status() != Some(&StackDriftDetectionStatus::DetectionInProgress) {
            break out;
        }
        anyhow::ensure!(std::time::Instant::now() < deadline, "drift detection still running after {DRIFT_TIMEOUT:?}");
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    };
    let resources = client
        .describe_stack_resource_drifts()
        .stack_name(name)
        .stack_resource_drift_status_filters(StackResourceDriftStatus::Modified)
        .stack_resource_drift_status_filters(StackResourceDriftStatus::Deleted)
        .send()
        .await
        .map_err(|e| cfn::failed(format!("DescribeStackResourceDrifts {name}"), &e))?;
    let drifted: Vec<serde_json::Value> = resources
        .stack_resource_drifts()
        .iter()
        .map(|d| {
            json!({
                "id": d.logical_resource_id(),
                "type": d.resource_type(),
                "status": d.stack_resource_drift_status().map(|s| s.as_str()),
            })
        })
        .collect();
    Ok(json!({
        "status": detection.stack_drift_status().map(|s| s.as_str()).unwrap_or("UNKNOWN"),
        "reason": detection.detection_status_reason(),
        "resources": drifted,
    }))
}
