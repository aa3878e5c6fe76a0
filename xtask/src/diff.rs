//! `cargo xtask diff --stage S --offline [--fail]`: what deploying the synthesized stage
//! template would change, against the deployed template (GetTemplate), with replacements from
//! the registry schemas' createOnlyProperties and broadened access flagged (see `stack::diff`).
//! `--fail` exits 1 when anything would change.
//!
//! Not yet here (issue 5): the change-set based diff (it needs the published parameters;
//! `cargo xtask deploy` shows it before asking).

use anyhow::bail;
use clap::Args;
use stack::Stage;

use crate::{aws, cfn};

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
}

impl Diff {
    pub fn run(self) -> anyhow::Result<()> {
        if !self.offline {
            bail!("the change-set diff needs published parameters and is not built yet: use --offline");
        }
        let name = self.stage.stack_name();
        let synthesized: serde_json::Value =
            serde_json::from_str(&stack::Topology::stage(&self.stage.config()).template.to_json())?;
        let changes = aws::block_on(async {
            let client = aws_sdk_cloudformation::Client::new(&aws::config().await);
            Ok(stack::diff::diff(&cfn::deployed_template(&client, &name).await?, &synthesized))
        })?;
        println!("{name}:");
        print!("{}", stack::diff::render(&changes));
        if self.fail && !changes.is_empty() {
            std::process::exit(1);
        }
        Ok(())
    }
}
