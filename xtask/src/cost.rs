//! `cargo xtask cost --stage S`: the stage's monthly cost, estimated from its synthesized
//! template and the committed price table (`stack::cost`); no AWS call.

use stack::Stage;

#[derive(clap::Args)]
pub struct Cost {
    /// The stage: local, dev, staging, prod.
    #[arg(long)]
    stage: Stage,
}

impl Cost {
    pub fn run(self) -> anyhow::Result<()> {
        let prices = stack::cost::Prices::committed();
        let template = stack::Topology::stage(&self.stage.config()).template;
        let (lines, total) = stack::cost::estimate(&template, &prices).map_err(anyhow::Error::msg)?;
        print!("{}", stack::cost::render(&self.stage.stack_name(), &lines, total, &prices));
        Ok(())
    }
}
