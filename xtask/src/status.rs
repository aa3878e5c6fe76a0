//! `cargo xtask status --stage S [--json]`: the stage stack's state, reason, last update and
//! outputs; exits 1 unless the stack exists and its last operation completed.
//!
//! It also reports the API's ECS service (running and desired tasks, the rollout of its
//! primary deployment; unhealthy when fewer run than wanted or the rollout failed) and the
//! pipeline's last five executions (unhealthy when the latest failed; a failed one's error
//! and cause are shown). Components are found through the stack's resources, not its
//! outputs.
//!
//! `--json` prints one object, a stable shape:
//! `{"stack", "exists", "status", "reason", "last_updated", "healthy", "outputs": {…},
//!   "service": {"running", "desired", "rollout"} | null,
//!   "executions": [{"name", "status", "started", "error", "cause"}]}`.
//!
//! Not yet here (issue 5): drift and the API's `/health`.

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
}

/// The states of a stack whose last operation succeeded.
const HEALTHY: [&str; 3] = ["CREATE_COMPLETE", "UPDATE_COMPLETE", "IMPORT_COMPLETE"];

impl Status {
    pub fn run(self) -> anyhow::Result<()> {
        let name = self.stage.stack_name();
        let healthy = aws::block_on(async {
            let sdk = aws::config().await;
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
            let service_ok = service
                .as_ref()
                .is_none_or(|s| s["running"].as_i64() >= s["desired"].as_i64() && s["rollout"] != "FAILED");
            let executions_ok = executions.first().is_none_or(|e| e["status"] != "FAILED");
            let healthy = healthy && service_ok && executions_ok;
            if self.json {
                let report = json!({
                    "stack": name, "exists": stack.is_some(), "status": status, "reason": reason,
                    "last_updated": last_updated, "healthy": healthy, "outputs": outputs,
                    "service": service, "executions": executions,
                });
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
                if executions.is_empty() {
                    println!("  pipeline: no executions yet");
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
        })?;
        if !healthy {
            std::process::exit(1);
        }
        Ok(())
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
