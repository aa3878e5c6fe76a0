//! checkov's verdict on the committed templates must not depend on where the checkout is.
//!
//! checkov 3.3.30's CKV_AWS_45 ("no hard-coded secrets in a Lambda environment") also scans the
//! `__file__` entry its parser adds to every mapping, the template's path as given on the command
//! line. A run of 40 characters of `[A-Za-z0-9/+=]` matches its "AWS secret access key" pattern,
//! so CI, whose checkout was `/check/work/main`, failed on
//! `/check/work/main/templates/staging/stage.json` (exactly 40 before the `.`) while every other
//! checkout passed. This test puts the templates where an absolute path makes that run.

use std::path::{Path, PathBuf};

/// Writes the templates (as `cargo xtask synth` renders them, the committed ones) under a fresh
/// directory whose absolute path, followed by `/templates/staging/stage`, is a run of exactly 40
/// key characters.
fn checkout_with_a_key_shaped_path(scratch: &Path) -> (PathBuf, Vec<PathBuf>) {
    let base = scratch.to_str().expect("a UTF-8 temporary directory");
    // The run starts after the last character outside the key alphabet.
    let run_start = base.rfind(|c: char| !(c.is_ascii_alphanumeric() || "/+=".contains(c))).map_or(0, |i| i + 1);
    let tail = "/templates/staging/stage";
    let used = base.len() - run_start + tail.len() + 1; // + the padding directory's '/'
    assert!(used < 40, "the temporary directory's path is too long for this test: {base}");
    let root = scratch.join("p".repeat(40 - used));
    let key_run = format!("{}{tail}", &root.to_str().unwrap()[run_start..]);
    assert_eq!(key_run.len(), 40, "{key_run}");

    let mut files = Vec::new();
    for (file, text) in xtask::synth::render(&stack::Stage::ALL).expect("the templates render") {
        let target = root.join("templates").join(file);
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::write(&target, text).unwrap();
        files.push(target);
    }
    assert!(files.iter().any(|file| file.ends_with("staging/stage.json")), "no staging template in {files:?}");
    (root, files)
}

#[test]
fn checkov_passes_wherever_the_checkout_is() {
    let scratch = tempfile::tempdir().unwrap();
    let (root, files) = checkout_with_a_key_shaped_path(scratch.path());
    let venv = devenv::venv::ensure_lint().expect("the lint venv (checkov) could not be prepared");
    xtask::lint::checkov(&venv, &root, &files).expect("checkov failed on templates that pass elsewhere");
}
