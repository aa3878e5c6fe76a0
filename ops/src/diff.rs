//! `cargo xtask diff --stage S [--offline] [--parameters FILE] [--fail]`: what deploying the
//! synthesized stage template would change.
//!
//! By default through a change set (created, described, deleted): CloudFormation's own view,
//! with the parameters `deploy` would use, plus what the templates say of replacement and
//! broadened access (see `stack::diff`). `--offline` compares the deployed template
//! (GetTemplate) with the synthesized one, marking replacements from the registry schemas'
//! createOnlyProperties, and needs no parameters. `--fail` exits 1 when anything would change.

use clap::Args;
use stack::Stage;

use crate::{aws, cfn, deploy};

#[derive(Args)]
pub struct Diff {
    /// The stage: local, dev, staging, prod.
    #[arg(long)]
    stage: Stage,
    /// Compare templates (GetTemplate) instead of creating a change set.
    #[arg(long)]
    offline: bool,
    /// Exit 1 when anything would change.
    #[arg(long)]
    fail: bool,
    /// The template parameters for the change set (default: <target>/publish/<stage>.json).
    #[arg(long)]
    parameters: Option<std::path::PathBuf>,
}

impl Diff {
    pub fn run(self) -> anyhow::Result<()> {
        let name = self.stage.stack_name();
        let template = stack::Topology::stage(&self.stage.config()).template;
        let synthesized: serde_json::Value = serde_json::from_str(&template.to_json())?;
        let parameters = if self.offline {
            None
        } else {
            let path = self.parameters.clone().unwrap_or_else(|| deploy::parameters_file(self.stage));
            Some(deploy::read_parameters(&path, &template)?)
        };
        let changes = aws::block_on(async {
            let sdk = aws::connect(self.stage).await?;
            let client = aws_sdk_cloudformation::Client::new(&sdk);
            match &parameters {
                None => Ok(stack::diff::diff(&cfn::deployed_template(&client, &name).await?, &synthesized)),
                Some(parameters) => match cfn::create_change_set(
                    &client,
                    &name,
                    &synthesized,
                    parameters,
                    Some(&cfn::TemplateStore::of(&sdk).await?),
                )
                .await?
                {
                    None => Ok(Vec::new()),
                    Some(change_set) => {
                        cfn::discard(&client, &name, &change_set).await;
                        Ok(change_set.changes)
                    }
                },
            }
        })?;
        println!("{name}:");
        print!("{}", stack::diff::render(&changes));
        if self.fail && !changes.is_empty() {
            std::process::exit(1);
        }
        Ok(())
    }
}
