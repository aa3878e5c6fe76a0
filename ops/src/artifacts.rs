//! `cargo xtask build --stage S`: everything a stage deploys that is not a template — the
//! Lambda zips (see `functions`) and the API's container image (see `image`), both for the
//! stage's architecture. `publish` uploads them; `deploy` runs both.

use clap::Args;
use stack::Stage;

use xtask::functions::{self, Arch, Artifact};
use xtask::image::{self, Image};

#[derive(Args)]
pub struct Build {
    /// The stage whose architecture to build for: local, dev, staging, prod.
    #[arg(long)]
    stage: Stage,
}

impl Build {
    pub fn run(self) -> anyhow::Result<()> {
        build(self.stage)?;
        Ok(())
    }
}

/// What `build` produced.
pub struct Artifacts {
    pub functions: Vec<Artifact>,
    pub image: Image,
}

/// The architecture a stage runs on, as the builds name it.
pub fn arch(stage: Stage) -> Arch {
    match stage.config().architecture {
        stack::Architecture::Arm64 => Arch::Arm64,
        stack::Architecture::X86_64 => Arch::X86_64,
    }
}

/// Builds the functions and the image for `stage`. The emulator stage (`local`) runs them on
/// this machine, so it gets the dev profile's build for this machine, the one the tests share;
/// the AWS stages get the release cross-build for Lambda's and Fargate's glibc.
pub fn build(stage: Stage) -> anyhow::Result<Artifacts> {
    if stage == Stage::Local {
        functions::build_host()?;
        return Ok(Artifacts { functions: functions::package_host()?, image: image::build_host()? });
    }
    let arch = arch(stage);
    Ok(Artifacts { functions: functions::build(arch)?, image: image::build(arch)? })
}
