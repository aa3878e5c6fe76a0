//! `cargo xtask status --stage S [--json]`: the stage stack's state, reason, last update and
//! outputs; exits 1 unless the stack exists and its last operation completed.
//!
//! `--json` prints one object, a stable shape:
//! `{"stack", "exists", "status", "reason", "last_updated", "healthy", "outputs": {…}}`.
//!
//! Not yet here (issue 5): drift, the ECS service, the last executions, `/health`.

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
            let client = aws_sdk_cloudformation::Client::new(&aws::config().await);
            let stack = cfn::describe(&client, &name).await?;
            let status = stack.as_ref().and_then(|s| s.stack_status()).map(|s| s.as_str().to_owned());
            let healthy = status.as_deref().is_some_and(|s| HEALTHY.contains(&s));
            let last_updated = stack
                .as_ref()
                .and_then(|s| s.last_updated_time().or(s.creation_time()))
                .map(|t| t.fmt(aws_sdk_cloudformation::primitives::DateTimeFormat::DateTime).unwrap_or_default());
            let reason = stack.as_ref().and_then(|s| s.stack_status_reason()).map(str::to_owned);
            let outputs = stack.as_ref().map(cfn::outputs).unwrap_or_default();
            if self.json {
                let report = json!({
                    "stack": name, "exists": stack.is_some(), "status": status, "reason": reason,
                    "last_updated": last_updated, "healthy": healthy, "outputs": outputs,
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
