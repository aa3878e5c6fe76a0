//! `cargo xtask`: the project's automation, written in Rust so it runs wherever cargo runs.
//!
//! This crate is light on purpose: the commands a developer runs every day (`dev`, `test`,
//! `gen-data`, `bench`, `synth`, `lint`, `venv`, `build-functions`, `build-image`) need no AWS
//! SDK, so a fresh clone's first `cargo xtask dev` compiles only them and the API. The
//! commands that call AWS (`build`, `publish`, `diff`, `deploy`, `status`, `destroy`,
//! `test-local`) live in the `ops` crate; `cargo xtask <command>` hands them to its binary.
//! `ops` uses this library for the artifacts ([`functions`], [`image`]) and the templates
//! ([`synth`], [`lint`]); the services both start come from `devenv`.
//!
//! Each subcommand lives in its own module with a `run(self)` entry point.

pub mod bench;
pub mod browser;
pub mod cli;
pub mod cost;
pub mod dev;
pub mod functions;
pub mod gen_data;
pub mod image;
pub mod lint;
pub mod pg_check;
pub mod rds_ca;
pub mod soak;
pub mod synth;
pub mod test;

/// Runs `cargo xtask <name> <args>` for a command of the `ops` crate: builds and runs its
/// binary (`cargo run -p ops`), so the AWS SDK is compiled only when such a command is asked
/// for; answers its exit code.
pub fn ops(name: &str, args: &[std::ffi::OsString]) -> anyhow::Result<std::process::ExitCode> {
    use anyhow::Context;
    let status = devenv::cargo()
        .args(["run", "--quiet", "--package", "ops", "--bin", "ops", "--", name])
        .args(args)
        .status()
        .context("failed to run cargo for the ops binary")?;
    Ok(match status.code() {
        Some(0) => std::process::ExitCode::SUCCESS,
        Some(code) => std::process::ExitCode::from(u8::try_from(code).unwrap_or(1)),
        None => std::process::ExitCode::FAILURE,
    })
}
