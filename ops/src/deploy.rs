//! `cargo xtask deploy --stage S [--yes] [--parameters FILE]`: the stage stack through a
//! change set — synth, change set, diff, approval where the change broadens access or
//! replaces or removes data, execution with live events, outputs.
//!
//! The template's parameters (the functions' code keys, the image digest; on the emulator
//! stage, the secrets) are the file `publish` writes, `<target>/publish/<stage>.json`.
//!
//! Without `--parameters`, the deploy goes the whole way first: the templates are checked
//! (`lint`: synth --check, cfn-lint, cfn-guard), the stage's artifacts built (`build`) and
//! published (`publish`), whose parameters file it then uses. With `--parameters`, it deploys
//! what was published before, straight from the change set.
//!
//! `--pipeline` deploys the stage's pipeline stack `hiring-<stage>-pipeline` instead (dev,
//! staging, prod): `--repository owner/name` (needed the first time), `--branch` (default: the
//! stage's) and `--connection ARN` (an existing GitHub connection; without one the stack makes
//! a connection, which an administrator approves in the console once).

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;
use stack::Stage;

use devenv::target_dir;
use xtask::lint;

use crate::{artifacts, aws, cfn, publish};

#[derive(Args)]
pub struct Deploy {
    /// The stage to deploy: local, dev, staging, prod.
    #[arg(long)]
    stage: Stage,
    /// Deploy without asking, even when the change broadens access or replaces data.
    #[arg(long)]
    yes: bool,
    /// Deploy what was published: the template parameters, a JSON object such as
    /// <target>/publish/<stage>.json; skips lint, build and publish.
    #[arg(long, conflicts_with = "pipeline")]
    parameters: Option<PathBuf>,
    /// Mail the stage's alarms to this address (SNS asks it to confirm once); kept on later deploys.
    #[arg(long, conflicts_with = "pipeline")]
    alarm_email: Option<String>,
    /// Deploy the stage's pipeline stack (hiring-<stage>-pipeline) instead of the stage stack.
    #[arg(long)]
    pipeline: bool,
    /// With --pipeline: the GitHub repository the pipeline builds, owner/name (needed the first time).
    #[arg(long, requires = "pipeline")]
    repository: Option<String>,
    /// With --pipeline: the branch it deploys (default: the stage's, e.g. main for dev).
    #[arg(long, requires = "pipeline")]
    branch: Option<String>,
    /// With --pipeline: an existing CodeConnections connection's ARN; without it the stack makes one.
    #[arg(long, requires = "pipeline")]
    connection: Option<String>,
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
    let missing: Vec<&str> = template
        .parameters
        .iter()
        .filter(|(k, p)| p.default.is_none() && !parameters.contains_key(k.as_str()))
        .map(|(k, _)| k.as_str())
        .collect();
    if !missing.is_empty() {
        bail!("{} lacks the parameters {}: publish again, or add them", path.display(), missing.join(", "));
    }
    Ok(parameters)
}

impl Deploy {
    pub fn run(self) -> anyhow::Result<()> {
        if self.pipeline {
            return self.deploy_pipeline();
        }
        let cfg = self.stage.config();
        let stack_name = self.stage.stack_name();
        let template = stack::Topology::stage(&cfg).template;
        template.check_references().map_err(|e| anyhow::anyhow!("the synthesized template is broken: {e}"))?;
        let sdk = aws::block_on(aws::connect(self.stage))?;
        let parameters_path = match self.parameters.clone() {
            Some(path) => path,
            None => {
                // The whole way: the templates checked, the artifacts built and published.
                let venv = devenv::venv::ensure().context("failed to prepare the Python venv (cfn-lint)")?;
                lint::templates(&venv, &lint::cfn_guard()?)?;
                let artifacts = artifacts::build(self.stage)?;
                aws::block_on(publish::publish(&sdk, self.stage, &artifacts, self.yes))?.0
            }
        };
        let mut parameters = read_parameters(&parameters_path, &template)?;
        if let Some(email) = &self.alarm_email {
            parameters.insert("AlarmEmail".to_owned(), email.clone());
        }
        let body: serde_json::Value = serde_json::from_str(&template.to_json())?;
        aws::block_on(async {
            let client = aws_sdk_cloudformation::Client::new(&sdk);
            let store = cfn::TemplateStore::of(&sdk).await?;
            let Some(stack) =
                deploy_stack(&client, &stack_name, &body, &parameters, Some(&store), self.yes, cfg.deletion_protection)
                    .await?
            else {
                return Ok(());
            };
            println!("{stack_name}: {}", stack.stack_status().map(|s| s.as_str()).unwrap_or_default());
            for (key, value) in cfn::outputs(&stack) {
                println!("  {key:<22} {value}");
            }
            Ok(())
        })
    }
}

impl Deploy {
    /// `--pipeline`: the pipeline stack, with its repository, branch and connection.
    fn deploy_pipeline(&self) -> anyhow::Result<()> {
        let cfg = self.stage.config();
        let stack_name = self.stage.pipeline_stack_name();
        let Some(template) = stack::delivery::template(&cfg) else {
            bail!("the {} stage has no pipeline (it is the emulator's); use dev, staging or prod", self.stage);
        };
        template.check_references().map_err(|e| anyhow::anyhow!("the synthesized template is broken: {e}"))?;
        let mut parameters = BTreeMap::new();
        for (key, value) in
            [("RepositoryId", &self.repository), ("BranchName", &self.branch), ("ConnectionArn", &self.connection)]
        {
            if let Some(value) = value {
                parameters.insert(key.to_owned(), value.clone());
            }
        }
        let body: serde_json::Value = serde_json::from_str(&template.to_json())?;
        let sdk = aws::block_on(aws::connect(self.stage))?;
        aws::block_on(async {
            let client = aws_sdk_cloudformation::Client::new(&sdk);
            if !parameters.contains_key("RepositoryId") && cfn::describe(&client, &stack_name).await?.is_none() {
                bail!(
                    "{stack_name} does not exist yet: pass --repository owner/name (the GitHub repository it builds)"
                );
            }
            let Some(stack) = deploy_stack(&client, &stack_name, &body, &parameters, None, self.yes, false).await?
            else {
                return Ok(());
            };
            println!("{stack_name}: {}", stack.stack_status().map(|s| s.as_str()).unwrap_or_default());
            let outputs = cfn::outputs(&stack);
            for (key, value) in &outputs {
                println!("  {key:<22} {value}");
            }
            if self.connection.is_none() {
                println!(
                    "The pipeline's GitHub connection {} is PENDING until an administrator approves it once in the \
                     console (Developer Tools > Settings > Connections > Update pending connection); the pipeline's \
                     Source stage fails until then.",
                    outputs.get("SourceConnectionArn").map(String::as_str).unwrap_or("(see the stack's outputs)")
                );
            }
            Ok(())
        })
    }
}

/// Deploys `template` as `stack_name` through a change set: its diff is printed, approval is
/// asked where the change broadens access or replaces data (unless `yes`), and the execution's
/// events are streamed. Returns the settled stack, or `None` when nothing changed.
pub async fn deploy_stack(
    client: &aws_sdk_cloudformation::Client,
    stack_name: &str,
    template: &serde_json::Value,
    parameters: &BTreeMap<String, String>,
    store: Option<&cfn::TemplateStore>,
    yes: bool,
    protect: bool,
) -> anyhow::Result<Option<aws_sdk_cloudformation::types::Stack>> {
    println!("==> change set for {stack_name}");
    let Some(change_set) = cfn::create_change_set(client, stack_name, template, parameters, store).await? else {
        println!("no changes: {stack_name} is up to date");
        return Ok(None);
    };
    print!("{}", stack::diff::render(&change_set.changes));
    let risky: Vec<&str> = change_set.changes.iter().filter(|c| c.needs_approval()).map(|c| c.id.as_str()).collect();
    if !risky.is_empty() && !yes {
        let question = format!("{} broaden access or replace data ({}). Deploy? [y/N] ", risky.len(), risky.join(", "));
        let approved = if let Some(answer) = crate::ask(&question)? {
            matches!(answer.as_str(), "y" | "Y" | "yes")
        } else {
            cfn::discard(client, stack_name, &change_set).await;
            bail!(
                "the change needs approval ({}: access broadened or data replaced) and there is no terminal \
                 to ask: review the diff above and run again with --yes",
                risky.join(", ")
            );
        };
        if !approved {
            cfn::discard(client, stack_name, &change_set).await;
            bail!("not deployed: the change set was discarded");
        }
    }
    println!("==> deploying {stack_name}");
    let stack = cfn::execute(client, stack_name, &change_set).await?;
    if protect {
        client
            .update_termination_protection()
            .stack_name(stack_name)
            .enable_termination_protection(true)
            .send()
            .await
            .context("could not turn termination protection on")?;
    }
    Ok(Some(stack))
}
