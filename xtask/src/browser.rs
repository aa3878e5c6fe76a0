//! The browser the report's test drives: Debian's `chromium`, installed with apt-get when it
//! is missing and this process may (root, apt-get at hand). `HIRING_CHROMIUM` names another.

use std::path::PathBuf;
use std::process::{Command, Stdio};

/// Where Debian installs it.
const DEBIAN_CHROMIUM: &str = "/usr/bin/chromium";

/// The browser to use, or why there is none (the test is then skipped with that reason).
pub fn ensure() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("HIRING_CHROMIUM").filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(format!("HIRING_CHROMIUM={} is not a file", path.display()))
        };
    }
    let path = PathBuf::from(DEBIAN_CHROMIUM);
    if path.is_file() {
        return Ok(path);
    }
    let root = Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if !root {
        return Err("chromium is not installed and installing it needs root: `sudo apt-get install chromium`, \
                    or set HIRING_CHROMIUM to a Chromium or Chrome binary"
            .into());
    }
    println!("installing Debian's chromium for the report's browser test (apt-get install chromium)");
    // `apt-get update` only when the package lists do not know chromium yet.
    for attempt in 0..2 {
        if attempt == 1 {
            let _ = apt(&["update"]);
        }
        match apt(&["install", "-y", "--no-install-recommends", "chromium"]) {
            Ok(()) if path.is_file() => return Ok(path),
            Ok(()) => return Err(format!("apt-get installed chromium but there is no {DEBIAN_CHROMIUM}")),
            Err(error) if attempt == 1 => return Err(format!("apt-get could not install chromium: {error}")),
            Err(_) => {}
        }
    }
    unreachable!("the loop returns on its second attempt")
}

fn apt(args: &[&str]) -> Result<(), String> {
    let output = Command::new("apt-get")
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("could not run apt-get: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        let said = String::from_utf8_lossy(&output.stderr);
        Err(said.lines().rev().take(3).collect::<Vec<_>>().join(" / "))
    }
}
