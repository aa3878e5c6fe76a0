//! `cargo xtask deploy --stage S [--yes] [--parameters FILE]`: the stage stack through a
//! change set — synth, change set, diff, approval where the change broadens access or
//! replaces or removes data, execution with live events, outputs.
//!
//! The template's parameters (the functions' code keys, the image digest; on the emulator
//! stage, the secrets) come from `--parameters`, by default `<target>/publish/<stage>.json`,
//! the file `cargo xtask publish` writes.
//!
//! Not yet here (issue 5): building and publishing the artifacts as part of the deploy.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;
use stack::Stage;

use crate::{aws, cfn, target_dir};

#[derive(Args)]
pub struct Deploy {
    /// The stage to deploy: local, dev, staging, prod.
    #[arg(long)]
    stage: Stage,
    /// Deploy without asking, even when the change broadens access or replaces data.
    #[arg(long)]
    yes: bool,
    /// The template parameters, a JSON object (default: <target>/publish/<stage>.json).
    #[arg(long)]
    parameters: Option<PathBuf>,
}

/// The parameters file `publish` writes for `stage`.
pub fn parameters_file(stage: Stage) -> PathBuf {
    target_dir().join("publish").join(format!("{stage}.json"))
}

/// The template's parameters read from `path`; every parameter of the template must be there.
pub fn read_parameters(path: &PathBuf, template: &stack::Template) -> anyhow::Result<BTreeMap<String, String>> {
    let text = std::fs::read_to_string(path).with_context(|| {
        format!(
            "no parameters at {}: run `cargo xtask publish` for this stage first, or pass --parameters",
            path.display()
        )
    })?;
    let parameters: BTreeMap<String, String> =
        serde_json::from_str(&text).with_context(|| format!("{} is not a JSON object of strings", path.display()))?;
    let missing: Vec<&str> =
        template.parameters.keys().map(|k| k.as_str()).filter(|k| !parameters.contains_key(*k)).collect();
    if !missing.is_empty() {
        bail!("{} lacks the parameters {}: publish again, or add them", path.display(), missing.join(", "));
    }
    Ok(parameters)
}

impl Deploy {
    pub fn run(self) -> anyhow::Result<()> {
        let cfg = self.stage.config();
        let stack_name = self.stage.stack_name();
        let template = stack::Topology::stage(&cfg).template;
        template.check_references().map_err(|e| anyhow::anyhow!("the synthesized template is broken: {e}"))?;
        let parameters =
            read_parameters(&self.parameters.clone().unwrap_or_else(|| parameters_file(self.stage)), &template)?;
        let body: serde_json::Value = serde_json::from_str(&template.to_json())?;
        aws::block_on(async {
            let client = aws_sdk_cloudformation::Client::new(&aws::config().await);
            println!("==> change set for {stack_name}");
            let Some(change_set) = cfn::create_change_set(&client, &stack_name, &body, &parameters).await? else {
                println!("no changes: {stack_name} is up to date");
                return Ok(());
            };
            print!("{}", stack::diff::render(&change_set.changes));
            let risky: Vec<&str> =
                change_set.changes.iter().filter(|c| c.needs_approval()).map(|c| c.id.as_str()).collect();
            if !risky.is_empty() && !self.yes {
                let question =
                    format!("{} broaden access or replace data ({}). Deploy? [y/N] ", risky.len(), risky.join(", "));
                let approved = if let Some(answer) = crate::ask(&question)? {
                    matches!(answer.as_str(), "y" | "Y" | "yes")
                } else {
                    cfn::discard(&client, &stack_name, &change_set).await;
                    bail!(
                        "the change needs approval ({}: access broadened or data replaced) and there is no terminal \
                         to ask: review the diff above and run again with --yes",
                        risky.join(", ")
                    );
                };
                if !approved {
                    cfn::discard(&client, &stack_name, &change_set).await;
                    bail!("not deployed: the change set was discarded");
                }
            }
            println!("==> deploying {stack_name}");
            let stack = cfn::execute(&client, &stack_name, &change_set).await?;
            if cfg.deletion_protection {
                client
                    .update_termination_protection()
                    .stack_name(&stack_name)
                    .enable_termination_protection(true)
                    .send()
                    .await
                    .context("could not turn termination protection on")?;
            }
            println!("{stack_name}: {}", stack.stack_status().map(|s| s.as_str()).unwrap_or_default());
            for (key, value) in cfn::outputs(&stack) {
                println!("  {key:<22} {value}");
            }
            Ok(())
        })
    }
}
