//! `cargo xtask soak`: the lifecycle's model-based test (hiring/tests/lifecycle_model.rs) for as
//! long as its time limit allows, run after run, each with a new seed; it stops at the first
//! failing run, whose seed it printed first (replay it with `HIRING_MODEL_SEED`).

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context;

use devenv::pg;

#[derive(clap::Args)]
pub struct Soak {
    /// How long to run, in minutes; a run under way when time is up finishes.
    #[arg(long, default_value_t = 10)]
    minutes: u64,
    /// Cases per run (each of 20 to 40 operations).
    #[arg(long, default_value_t = 256)]
    cases: u32,
}

impl Soak {
    pub fn run(self) -> anyhow::Result<()> {
        let postgres = pg::find_or_start("hiring_soak").context("failed to find PostgreSQL")?;
        let deadline = Instant::now() + Duration::from_secs(self.minutes * 60);
        let mut runs = 0u32;
        while runs == 0 || Instant::now() < deadline {
            runs += 1;
            println!("--- soak run {runs}: {} cases", self.cases);
            let status = Command::new(env!("CARGO"))
                .args(["test", "-p", "hiring", "--test", "lifecycle_model", "--", "--nocapture"])
                .env("DATABASE_URL", postgres.url())
                .env("HIRING_MODEL_CASES", self.cases.to_string())
                .status()
                .context("could not run cargo test")?;
            anyhow::ensure!(
                status.success(),
                "soak run {runs} failed: replay it with the HIRING_MODEL_SEED it printed first"
            );
        }
        println!("soak: {runs} runs of {} cases passed in {} min", self.cases, self.minutes);
        Ok(())
    }
}
