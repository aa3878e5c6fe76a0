//! The `ops` command line (run as `cargo xtask <command>`).

use clap::{Parser, Subcommand};

use crate::{artifacts, deploy, destroy, diff, logs, publish, status, test_local, upload};

#[derive(Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask", about = "The hiring platform's AWS operations")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Build what a stage deploys: the Lambda zips and the API image, for its architecture.
    Build(artifacts::Build),
    /// Build the stage's artifacts and upload them (bootstrap stack, S3 zips, ECR image); writes the deploy parameters.
    Publish(publish::Publish),
    /// Deploy the stage stack through a change set (diff, approval, live events, outputs).
    Deploy(deploy::Deploy),
    /// What deploying would change (--offline: against the deployed template).
    Diff(diff::Diff),
    /// The stage stack's state and outputs; exits 1 unless it is healthy.
    Status(status::Status),
    /// The local stage end to end on an AWS emulator: build, publish, deploy, API, pipeline, checks, status.
    TestLocal(test_local::TestLocal),
    /// Delete the stage stack after listing what outlives it (prod needs --force-prod).
    Destroy(destroy::Destroy),
    /// Upload CSV files to a stage's API (or --url), presigned when large; waits and prints the reports.
    Upload(upload::Upload),
    /// The stage's logs from CloudWatch Logs, one readable line per event (--component, --since, --follow).
    Logs(logs::Logs),
}

/// Parses the command line and runs the command.
pub fn run() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Build(command) => command.run(),
        Command::Publish(command) => command.run(),
        Command::Deploy(command) => command.run(),
        Command::Diff(command) => command.run(),
        Command::Status(command) => command.run(),
        Command::TestLocal(command) => command.run(),
        Command::Destroy(command) => command.run(),
        Command::Upload(command) => command.run(),
        Command::Logs(command) => command.run(),
    }
}
