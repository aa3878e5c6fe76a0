//! podman, the container runtime the tests run the API's image with, as ECS runs it.
//!
//! Debian's `podman` with `runc`: crun (podman's other runtime) refuses this kind of host's
//! hybrid cgroup layout, and the sandbox forbids raising resource limits, which podman does for
//! every container unless told not to. So podman runs here with its own configuration, written
//! under `<target>/podman/` and passed through `CONTAINERS_CONF` and `CONTAINERS_STORAGE_CONF`
//! (nothing in `/etc` is touched): `default_ulimits = []` (the container inherits this
//! process's limits), runtime runc, cgroupfs, file events, and a private image store.
//!
//! [`ensure`] installs the two packages with apt-get when they are missing and this runs as
//! root (as `cargo xtask test` installs Chromium); elsewhere it fails saying what to install.
//! There is no silent skip: a test that needs a container fails with the reason.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anyhow::{Context, bail};

use crate::which;

/// A ready podman: the binary and its private configuration.
#[derive(Debug, Clone)]
pub struct Podman {
    dir: PathBuf,
}

/// podman, installed if needed, with the project's configuration under `<target>/podman/`.
pub fn ensure() -> anyhow::Result<Podman> {
    // runc is in /usr/sbin, which a non-root PATH may leave out.
    let runc = which("runc").is_some() || Path::new("/usr/sbin/runc").is_file();
    if which("podman").is_none() || !runc {
        if !(crate::is_root() && which("apt-get").is_some()) {
            bail!(
                "podman and runc are needed to run the API's image as ECS runs it, and are not installed: \
                 `apt-get install podman runc` (as root), then run this again"
            );
        }
        println!("podman: installing Debian's podman and runc (apt-get install podman runc)");
        if !crate::apt_install(&["podman", "runc"]) {
            bail!("`apt-get install podman runc` failed (above): install them, then run this again");
        }
    }
    let dir = crate::target_dir().join("podman");
    std::fs::create_dir_all(dir.join("tmp")).with_context(|| format!("failed to create {}", dir.display()))?;
    let containers = format!(
        "# Written by devenv::podman; see there.\n[containers]\ndefault_ulimits = []\n\n[engine]\nruntime = \"runc\"\n\
         cgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\ntmp_dir = \"{}\"\n",
        dir.join("tmp").display()
    );
    let storage = format!(
        "# Written by devenv::podman; see there.\n[storage]\ndriver = \"overlay\"\ngraphroot = \"{}\"\nrunroot = \"{}\"\n",
        dir.join("graph").display(),
        dir.join("run").display()
    );
    std::fs::write(dir.join("containers.conf"), containers)?;
    std::fs::write(dir.join("storage.conf"), storage)?;
    Ok(Podman { dir })
}

impl Podman {
    /// `podman ARGS…` with the project's configuration.
    pub fn command(&self) -> Command {
        let mut command = Command::new("podman");
        command
            .env("CONTAINERS_CONF", self.dir.join("containers.conf"))
            .env("CONTAINERS_STORAGE_CONF", self.dir.join("storage.conf"));
        command
    }

    /// Runs `podman ARGS…` and returns its standard output; fails with what podman said.
    pub fn run(&self, args: &[&str]) -> anyhow::Result<String> {
        let output = self.command().args(args).output().context("failed to run podman")?;
        checked(&output, args)
    }

    /// Loads the OCI image layout at `layout` into podman's store; returns the image's id.
    pub fn load(&self, layout: &Path) -> anyhow::Result<String> {
        let source = format!("oci:{}", layout.display());
        Ok(self.run(&["pull", "--quiet", &source])?.trim().to_owned())
    }
}

fn checked(output: &Output, args: &[&str]) -> anyhow::Result<String> {
    if !output.status.success() {
        bail!(
            "`podman {}` failed ({}): {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}
