//! `cargo xtask destroy --stage S [--yes] [--force-prod]`: deletes the stage stack after
//! listing what outlives it (buckets and other resources with `DeletionPolicy: Retain`, the
//! database's final snapshot). prod is refused unless `--force-prod`; its termination
//! protection is turned off only then. With no terminal and no `--yes` it refuses.

use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use stack::Stage;
use stack::template::Keep;

use crate::{aws, cfn};

#[derive(Args)]
pub struct Destroy {
    /// The stage: local, dev, staging, prod.
    #[arg(long)]
    stage: Stage,
    /// Delete without asking.
    #[arg(long)]
    yes: bool,
    /// Allow destroying prod (its termination protection is turned off first).
    #[arg(long)]
    force_prod: bool,
}

impl Destroy {
    pub fn run(self) -> anyhow::Result<()> {
        if self.stage == Stage::Prod && !self.force_prod {
            bail!("refusing to destroy prod: pass --force-prod if you really mean it");
        }
        let name = self.stage.stack_name();
        let template = stack::Topology::stage(&self.stage.config()).template;
        aws::block_on(async {
            let client = aws_sdk_cloudformation::Client::new(&aws::connect(self.stage).await?);
            let Some(_) = cfn::describe(&client, &name).await? else {
                println!("{name}: no such stack, nothing to destroy");
                return Ok(());
            };
            let resources = client
                .describe_stack_resources()
                .stack_name(&name)
                .send()
                .await
                .map_err(|e| cfn::failed(format!("DescribeStackResources {name}"), &e))?;
            let physical = |id: &str| {
                resources
                    .stack_resources()
                    .iter()
                    .find(|r| r.logical_resource_id() == Some(id))
                    .and_then(|r| r.physical_resource_id())
                    .filter(|p| !p.is_empty())
                    .unwrap_or("(not created)")
                    .to_owned()
            };
            println!("destroying {name} deletes its resources; these stay:");
            let mut kept = 0;
            for (id, resource) in &template.resources {
                let what = match resource.keep {
                    Keep::Retain => "retained",
                    Keep::Snapshot => "deleted after a final snapshot",
                    Keep::Delete => continue,
                };
                kept += 1;
                println!("  {:<24} {:<28} {what}: {}", id.as_str(), resource.kind.as_str(), physical(id.as_str()));
            }
            if kept == 0 {
                println!("  nothing: every resource of this stage is deleted with it");
            }
            if !self.yes {
                let Some(answer) = crate::ask(&format!("Destroy {name}? Type the stack's name to confirm: "))? else {
                    bail!("destroying {name} needs confirmation and there is no terminal to ask: run again with --yes");
                };
                if answer != name {
                    bail!("not destroyed");
                }
            }
            if self.stage == Stage::Prod {
                client
                    .update_termination_protection()
                    .stack_name(&name)
                    .enable_termination_protection(false)
                    .send()
                    .await
                    .context("could not turn termination protection off")?;
            }
            client
                .delete_stack()
                .stack_name(&name)
                .send()
                .await
                .map_err(|e| cfn::failed(format!("DeleteStack {name}"), &e))?;
            loop {
                match cfn::describe(&client, &name).await? {
                    None => break,
                    Some(stack) => {
                        let status = stack.stack_status().map(|s| s.as_str().to_owned()).unwrap_or_default();
                        if status == "DELETE_COMPLETE" {
                            break;
                        }
                        if status == "DELETE_FAILED" {
                            bail!(
                                "deleting {name} failed: {}",
                                stack.stack_status_reason().unwrap_or("no reason given")
                            );
                        }
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
            println!("{name}: deleted");
            Ok(())
        })
    }
}
