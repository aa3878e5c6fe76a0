//! placeholder
#[derive(clap::Args)]
pub struct Dev {}
impl Dev {
    pub fn run(self) -> anyhow::Result<()> {
        Ok(())
    }
}
