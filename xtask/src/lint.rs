//! `cargo xtask lint`: the committed templates checked offline, as `cargo xtask test` does —
//! they match the code (`synth --check`), cfn-lint finds nothing (registry schemas, property
//! types, best practices), and cfn-guard finds every rule of `stack/rules/` kept.
//!
//! cfn-lint comes from the project's venv (PyPI, pinned in `venv`); cfn-guard is installed
//! from crates.io with `cargo install --locked` into `<target>/tools` (see [`cfn_guard`]).

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, bail};
use clap::Args;

use devenv::{project_root, target_dir, venv};

use crate::synth;

/// The cfn-guard release the rules are written for.
pub const CFN_GUARD_VERSION: &str = "3.2.1";

#[derive(Args)]
pub struct Lint {}

impl Lint {
    pub fn run(self) -> anyhow::Result<()> {
        let venv = venv::ensure().context("failed to prepare the Python venv (cfn-lint)")?;
        let files = check_synth()?;
        cfn_lint(&venv, &files)?;
        guard(&cfn_guard()?, &files)?;
        println!("lint: the templates match the code, cfn-lint and cfn-guard pass");
        Ok(())
    }
}

/// Fails when the committed templates differ from the code (or a stray one is left);
/// returns their paths, for the linters.
pub fn check_synth() -> anyhow::Result<Vec<PathBuf>> {
    let rendered = synth::render(&stack::Stage::ALL)?;
    synth::check_committed(&rendered, true)?;
    println!("synth: {} templates match the code", rendered.len());
    Ok(rendered.into_iter().map(|(file, _)| synth::templates_dir().join(file)).collect())
}

/// cfn-lint on every template; warnings fail too.
pub fn cfn_lint(venv: &venv::Venv, files: &[PathBuf]) -> anyhow::Result<()> {
    let status = Command::new(venv.bin("cfn-lint"))
        .args(["--regions", "us-east-1", "eu-west-1", "--non-zero-exit-code", "warning", "--"])
        .args(files)
        .current_dir(project_root())
        .status()
        .context("could not run cfn-lint from the venv (`cargo xtask venv` installs it)")?;
    if !status.success() {
        bail!("cfn-lint found problems in templates/ (above): fix the topology in stack/, then `cargo xtask synth`");
    }
    println!("cfn-lint: no errors or warnings");
    Ok(())
}

/// The cfn-guard binary, installed on first use.
pub fn cfn_guard() -> anyhow::Result<PathBuf> {
    let root = target_dir().join("tools");
    let binary = root.join("bin").join("cfn-guard");
    let installed = Command::new(&binary)
        .arg("--version")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).contains(CFN_GUARD_VERSION));
    if !installed {
        println!("installing cfn-guard {CFN_GUARD_VERSION} into {} (once)", root.display());
        let status = devenv::cargo()
            // `--debug`: the dev profile builds in about half the time of release, and
            // checking a few templates takes a blink either way.
            .args(["install", "cfn-guard", "--version", CFN_GUARD_VERSION, "--locked", "--debug", "--root"])
            .arg(&root)
            .status()
            .context("could not run cargo install")?;
        if !status.success() {
            bail!(
                "`cargo install cfn-guard --version {CFN_GUARD_VERSION}` failed (above); crates.io must be reachable"
            );
        }
    }
    Ok(binary)
}

/// cfn-guard with the project's rules on every template.
pub fn guard(binary: &PathBuf, files: &[PathBuf]) -> anyhow::Result<()> {
    let mut command = Command::new(binary);
    command.args(["validate", "--rules"]).arg(project_root().join("stack/rules")).args(["--show-summary", "fail"]);
    for file in files {
        command.arg("--data").arg(file);
    }
    let status = command.status().context("could not run cfn-guard")?;
    if !status.success() {
        bail!(
            "cfn-guard: templates/ break rules of stack/rules/ (above): fix the topology in stack/, then `cargo xtask synth`"
        );
    }
    println!("cfn-guard: every rule of stack/rules/ holds on every template");
    Ok(())
}
