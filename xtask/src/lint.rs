//! `cargo xtask lint`: the committed templates checked offline, as `cargo xtask test` does —
//! they match the code (`synth --check`), cfn-lint finds nothing (registry schemas, property
//! types, best practices), cfn-guard finds every rule of `stack/rules/` kept, checkov fails no
//! check (each exception is in the resource's `Metadata` with its reason, written by the
//! generator from `stack::checks`), and parliament finds nothing in any IAM policy but the
//! findings `stack/rules/iam_lint.py` lists with their reasons.
//!
//! cfn-lint comes from the project's venv, checkov and parliament from the lint venv (PyPI,
//! pinned in `devenv::venv`); cfn-guard is installed from crates.io with `cargo install
//! --locked` into `<target>/tools` (see [`cfn_guard`]).

use std::path::{Path, PathBuf};
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
        templates(&venv, &cfn_guard()?)?;
        println!("lint: the templates match the code; cfn-lint, cfn-guard, checkov and parliament pass");
        Ok(())
    }
}

/// The committed templates checked: they match the code, then cfn-lint, cfn-guard, checkov and
/// parliament (from the lint venv, prepared here) find nothing.
pub fn templates(venv: &venv::Venv, cfn_guard: &Path) -> anyhow::Result<()> {
    let files = check_synth()?;
    cfn_lint(venv, &files)?;
    guard(cfn_guard, &files)?;
    let lint_venv = venv::ensure_lint().context("failed to prepare the lint venv (checkov, parliament)")?;
    checkov(&lint_venv, &project_root(), &files)?;
    parliament(&lint_venv, &files)
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
pub fn guard(binary: &Path, files: &[PathBuf]) -> anyhow::Result<()> {
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

/// checkov over every template: no failed check, no template it could not parse, and every
/// exception with a reason. (checkov exits 0 on a file it cannot parse, so its JSON report is
/// read rather than its exit code trusted.)
///
/// The templates are named relative to `root`, where checkov runs: CKV_AWS_45 (no secrets in a
/// Lambda environment) also scans the `__file__` its parser adds to each mapping, so an absolute
/// path with a 40-character run of `[A-Za-z0-9/+=]` reads as an AWS secret key
/// (`/check/work/main/templates/staging/stage` did, in CI). Relative, the verdict is the same
/// in every checkout; `xtask/tests/checkov.rs` keeps it so.
pub fn checkov(venv: &venv::Venv, root: &Path, files: &[PathBuf]) -> anyhow::Result<()> {
    let output = Command::new(venv.bin("checkov"))
        .args(["--framework", "cloudformation", "--skip-download", "--compact", "-o", "json"])
        .args(
            files
                .iter()
                .flat_map(|file| [std::ffi::OsStr::new("-f"), file.strip_prefix(root).unwrap_or(file).as_os_str()]),
        )
        .current_dir(root)
        .output()
        .context("could not run checkov from the lint venv (`cargo xtask lint` installs it)")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report: serde_json::Value = serde_json::from_str(&stdout).with_context(|| {
        format!(
            "checkov did not answer a JSON report ({}):\n{}{}",
            output.status,
            stdout,
            String::from_utf8_lossy(&output.stderr)
        )
    })?;
    let reports = match report {
        serde_json::Value::Array(reports) => reports,
        one => vec![one],
    };
    let mut problems = Vec::new();
    let (mut passed, mut skipped, mut resources) = (0, 0, 0);
    for report in &reports {
        let summary = &report["summary"];
        passed += summary["passed"].as_u64().unwrap_or_default();
        skipped += summary["skipped"].as_u64().unwrap_or_default();
        resources += summary["resource_count"].as_u64().unwrap_or_default();
        if summary["parsing_errors"].as_u64().unwrap_or_default() > 0 {
            problems.push(format!("checkov could not parse {}", summary["parsing_errors"]));
        }
        for failed in report["results"]["failed_checks"].as_array().into_iter().flatten() {
            problems.push(format!(
                "{} {} in {}: {} ({})",
                failed["check_id"].as_str().unwrap_or_default(),
                failed["resource"].as_str().unwrap_or_default(),
                failed["file_path"].as_str().unwrap_or_default(),
                failed["check_name"].as_str().unwrap_or_default(),
                failed["guideline"].as_str().unwrap_or_default(),
            ));
        }
        for skip in report["results"]["skipped_checks"].as_array().into_iter().flatten() {
            let reason = skip["check_result"]["suppress_comment"].as_str().unwrap_or_default();
            if reason.trim().is_empty() || reason == "No comment provided" {
                problems.push(format!(
                    "{} is skipped on {} without a reason",
                    skip["check_id"].as_str().unwrap_or_default(),
                    skip["resource"].as_str().unwrap_or_default()
                ));
            }
        }
    }
    if resources == 0 {
        problems.push("checkov checked no resource: it read none of the templates".to_owned());
    }
    if !problems.is_empty() {
        bail!(
            "checkov: {}\nfix the topology in stack/ (or keep an exception with its reason in stack/src/checks.rs), then `cargo xtask synth`",
            problems.join("\n  ")
        );
    }
    println!("checkov: {passed} checks passed on {resources} resources, {skipped} exceptions kept with their reasons");
    Ok(())
}

/// parliament over every IAM policy of the templates (`stack/rules/iam_lint.py`): no finding
/// but those the script lists with a reason.
pub fn parliament(venv: &venv::Venv, files: &[PathBuf]) -> anyhow::Result<()> {
    let output = Command::new(venv.python())
        .arg(project_root().join("stack/rules/iam_lint.py"))
        .args(files)
        .current_dir(project_root())
        .output()
        .context("could not run parliament from the lint venv (`cargo xtask lint` installs it)")?;
    if !output.status.success() {
        bail!(
            "parliament found problems in the IAM policies of templates/ ({}):\n{}{}fix the grants in stack/, \
             or list a false positive with its reason in stack/rules/iam_lint.py",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    println!("parliament: no findings in the IAM policies but the listed ones");
    Ok(())
}
