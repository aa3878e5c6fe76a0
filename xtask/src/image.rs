//! The API's container image, assembled without a Docker daemon: an OCI image layout under
//! `<target>/image/<arch>/` (`oci-layout`, `index.json`, `blobs/sha256/…`) that `publish`
//! pushes to ECR blob by blob, and that any OCI tool (skopeo, crane, podman) can read.
//!
//! Two layers, as distroless images are made:
//! 1. the runtime base: the files of Debian's `libc6` and `libgcc-s1` packages (documentation
//!    and locales left out), the CA bundle made from `ca-certificates` the way
//!    `update-ca-certificates` makes it, `/etc/passwd` and `/etc/group` with the `nonroot`
//!    user (65532) the task definition runs as, `/tmp`, and the API's data directory
//!    (`stack::API_DATA_DIR`, a `VOLUME` owned by that user);
//! 2. `/usr/local/bin/hiring-api`, built by cargo-lambda with Zig against glibc 2.34 (see
//!    `functions`), so it runs on the base's glibc (Debian 12: 2.36) whatever the build
//!    machine's glibc is; and `/usr/local/bin/hiring-process`, the process function's binary,
//!    which the stack's process task runs once per large file (`HIRING_STEP_INPUT`).
//!
//! The packages come from the machine's apt (`apt-get download`, no root needed; they are kept
//! under `<target>/image/debs/` and used from there when apt cannot reach its mirror). Every
//! tar entry has mtime 0, owner root (the home directory excepted) and a sorted place, and
//! gzip has a fixed header, so the same binary and packages give the same digests: a rebuild
//! that changed nothing publishes nothing.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail, ensure};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::functions::{self, Arch};

/// The Debian packages of the runtime base.
const PACKAGES: [&str; 3] = ["libc6", "libgcc-s1", "ca-certificates"];
/// Paths of the packages the image leaves out: documentation, manuals, translations.
const LEFT_OUT: [&str; 5] =
    ["usr/share/doc/", "usr/share/man/", "usr/share/locale/", "usr/share/lintian/", "usr/sbin/"];
/// Where the binary goes, which the task definition's health check names too.
pub const BINARY: &str = "usr/local/bin/hiring-api";
/// The CA bundle, where OpenSSL and rustls-native-certs look for it.
const CA_BUNDLE: &str = "etc/ssl/certs/ca-certificates.crt";
/// The unprivileged user of the task definition.
const NONROOT: u64 = 65532;

pub const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
const CONFIG_TYPE: &str = "application/vnd.oci.image.config.v1+json";
const LAYER_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// `cargo xtask build-image [--arch A]`.
#[derive(clap::Args)]
pub struct BuildImage {
    #[arg(long, value_enum, default_value_t = Arch::X86_64)]
    arch: Arch,
}

impl BuildImage {
    pub fn run(self) -> anyhow::Result<()> {
        build(self.arch)?;
        Ok(())
    }
}

/// A blob of the image: its digest (`sha256:<hex>`), size and file in the layout.
#[derive(Debug, Clone)]
pub struct Blob {
    pub digest: String,
    pub size: u64,
    pub media_type: &'static str,
    pub path: PathBuf,
}

/// A built image.
#[derive(Debug, Clone)]
pub struct Image {
    /// The OCI layout directory.
    pub dir: PathBuf,
    pub config: Blob,
    pub layers: Vec<Blob>,
    /// The manifest's bytes, as pushed, and their digest (the image's identity).
    pub manifest: Vec<u8>,
    pub digest: String,
}

/// The OCI layout directory of `arch`.
pub fn image_dir(arch: Arch) -> PathBuf {
    devenv::target_dir().join("image").join(arch.lambda_name())
}

/// Builds the API binary and the image for `arch`.
pub fn build(arch: Arch) -> anyhow::Result<Image> {
    let binary = functions::build_api(arch)?;
    // `build_api` builds the functions with the API (one cargo-lambda build): the process
    // function's binary is beside it.
    build_with(arch, &binary, &binary.with_file_name("process"), image_dir(arch))
}

/// The OCI layout directory of [`build_host`].
pub fn host_image_dir() -> PathBuf {
    devenv::target_dir().join("image").join("host")
}

/// The image of the API binary the dev profile built for this machine
/// ([`functions::build_host`]), in [`host_image_dir`]: what the tests and the emulator stage
/// run. The base layer is the same Debian packages as the release image's.
pub fn build_host() -> anyhow::Result<Image> {
    let binaries = functions::host_binaries();
    build_with(Arch::X86_64, &binaries.join("hiring-api"), &binaries.join("process"), host_image_dir())
}

/// The image of `binary` (the API) and `process` (the process function's binary, which the
/// stack's process task runs for large files) for `arch` in the OCI layout directory `dir`.
fn build_with(arch: Arch, binary: &Path, process: &Path, dir: PathBuf) -> anyhow::Result<Image> {
    let started = Instant::now();
    let debs = fetch_packages(arch)?;
    let blobs = dir.join("blobs").join("sha256");
    std::fs::create_dir_all(&blobs).with_context(|| format!("failed to create {}", blobs.display()))?;

    let mut base = Tree::default();
    for deb in &debs {
        base.add_deb(deb)?;
    }
    base.add_ca_bundle()?;
    base.add_users();
    let mut app = Tree::default();
    app.file(BINARY, 0o755, std::fs::read(binary).with_context(|| format!("failed to read {}", binary.display()))?);
    app.file(
        stack::topology::PROCESS_BINARY.trim_start_matches('/'),
        0o755,
        std::fs::read(process).with_context(|| format!("failed to read {}", process.display()))?,
    );

    let mut layers = Vec::new();
    let mut diff_ids = Vec::new();
    for tree in [&base, &app] {
        let tar = tree.tar()?;
        diff_ids.push(digest_of(&tar));
        layers.push(write_blob(&blobs, LAYER_TYPE, &gzip(&tar)?)?);
    }
    let versions: Vec<String> =
        debs.iter().map(|d| d.file_name().unwrap_or_default().to_string_lossy().into()).collect();
    let config = json!({
        "architecture": arch.oci_name(),
        "os": "linux",
        "config": {
            "User": format!("{NONROOT}:{NONROOT}"),
            "Entrypoint": [format!("/{BINARY}")],
            "Env": [
                "PATH=/usr/local/bin:/usr/bin:/bin",
                format!("SSL_CERT_FILE=/{CA_BUNDLE}"),
                "HIRING_LISTEN=0.0.0.0:8080",
                format!("HIRING_DATA_DIR={}", stack::API_DATA_DIR),
            ],
            "ExposedPorts": { "8080/tcp": {} },
            // Where uploads are staged, the one place the API writes (its root filesystem is
            // read-only in the task definition). The directory is the task user's in the image,
            // and a volume mounted there takes that ownership (Fargate bind mounts copy a
            // VOLUME's ownership: https://docs.aws.amazon.com/AmazonECS/latest/developerguide/bind-mounts.html).
            "Volumes": { stack::API_DATA_DIR: {} },
            "WorkingDir": "/tmp",
            "Labels": {
                "org.opencontainers.image.title": "hiring-api",
                "org.opencontainers.image.version": env!("CARGO_PKG_VERSION"),
                "org.opencontainers.image.base.name": versions.join(" "),
            },
        },
        "rootfs": { "type": "layers", "diff_ids": diff_ids },
        "history": [
            { "created_by": format!("xtask image: Debian {}", versions.join(", ")) },
            { "created_by": format!("xtask image: /{BINARY}") },
        ],
    });
    let config = write_blob(&blobs, CONFIG_TYPE, &serde_json::to_vec(&config)?)?;
    let descriptor = |blob: &Blob| json!({ "mediaType": blob.media_type, "digest": blob.digest, "size": blob.size });
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "config": descriptor(&config),
        "layers": layers.iter().map(descriptor).collect::<Vec<_>>(),
    }))?;
    let manifest_blob = write_blob(&blobs, MANIFEST_TYPE, &manifest)?;
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    let index = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": MANIFEST_TYPE, "digest": manifest_blob.digest, "size": manifest_blob.size,
            "platform": { "architecture": arch.oci_name(), "os": "linux" },
            "annotations": { "org.opencontainers.image.ref.name": "hiring-api" },
        }],
    });
    std::fs::write(dir.join("index.json"), serde_json::to_vec_pretty(&index)?)?;

    let image = Image { dir, config, layers, manifest, digest: manifest_blob.digest };
    for (name, layer) in ["base", "api"].iter().zip(&image.layers) {
        println!("  layer {name:<5} {}  {:>9}", layer.digest, mebibytes(layer.size));
    }
    println!(
        "==> build-image: hiring-api {} for {arch} in {:.1}s, {}",
        image.digest,
        started.elapsed().as_secs_f64(),
        image.dir.display()
    );
    Ok(image)
}

/// The `.deb` files of [`PACKAGES`] for `arch`, downloaded by apt into the cache directory.
fn fetch_packages(arch: Arch) -> anyhow::Result<Vec<PathBuf>> {
    let cache = devenv::target_dir().join("image").join("debs").join(arch.lambda_name());
    std::fs::create_dir_all(&cache)?;
    let wanted: Vec<String> = PACKAGES.iter().map(|p| format!("{p}:{}", arch.debian_name())).collect();
    let downloaded = Command::new("apt-get")
        .arg("download")
        .args(&wanted)
        .current_dir(&cache)
        .output()
        .map_err(|e| anyhow::anyhow!("{e}"))
        .and_then(|out| {
            if out.status.success() {
                Ok(())
            } else {
                Err(anyhow::anyhow!("{}", String::from_utf8_lossy(&out.stderr).trim()))
            }
        });
    let mut debs = Vec::new();
    for package in PACKAGES {
        // The newest cached file of the package (apt names them <name>_<version>_<arch>.deb).
        let mut files: Vec<PathBuf> = std::fs::read_dir(&cache)?
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                let name = p.file_name().unwrap_or_default().to_string_lossy();
                name.starts_with(&format!("{package}_")) && name.ends_with(".deb")
            })
            .collect();
        files.sort_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok());
        match (files.pop(), &downloaded) {
            (Some(file), Ok(())) => debs.push(file),
            (Some(file), Err(error)) => {
                println!("warning: apt-get download failed ({error}); using the cached {}", file.display());
                debs.push(file);
            }
            (None, Err(error)) => bail!(
                "could not download the Debian packages of the image's base ({}): {error}\n\
                 The image is built from Debian's libc6, libgcc-s1 and ca-certificates, fetched with apt: run \
                 `apt-get update` (as root) and try again; for arm64, `dpkg --add-architecture arm64` first",
                wanted.join(", ")
            ),
            (None, Ok(())) => {
                bail!("apt-get download reported success but left no {package} package in {}", cache.display())
            }
        }
    }
    Ok(debs)
}

/// A file system tree, by path without a leading `/`; directories end in `/`.
#[derive(Default)]
struct Tree {
    entries: BTreeMap<String, Node>,
}

enum Node {
    Dir { mode: u32, owner: u64 },
    File { mode: u32, data: Vec<u8> },
    Symlink(String),
}

impl Tree {
    fn dir(&mut self, path: &str, mode: u32, owner: u64) {
        let path = format!("{}/", path.trim_end_matches('/'));
        self.entries.insert(path, Node::Dir { mode, owner });
    }

    fn file(&mut self, path: &str, mode: u32, data: Vec<u8>) {
        self.parents(path);
        self.entries.insert(path.to_owned(), Node::File { mode, data });
    }

    /// Every missing parent directory of `path`, as 0755 root directories.
    fn parents(&mut self, path: &str) {
        let mut end = 0;
        while let Some(slash) = path[end..].find('/') {
            end += slash + 1;
            self.entries.entry(path[..end].to_owned()).or_insert(Node::Dir { mode: 0o755, owner: 0 });
        }
    }

    /// The files of a Debian package's data archive (`dpkg-deb --fsys-tarfile`), without
    /// [`LEFT_OUT`]; `ca-certificates` gives only the certificates, gathered by `add_ca_bundle`.
    fn add_deb(&mut self, deb: &Path) -> anyhow::Result<()> {
        let out = Command::new("dpkg-deb")
            .arg("--fsys-tarfile")
            .arg(deb)
            .output()
            .context("failed to run dpkg-deb (Debian's dpkg package), which unpacks the image's base packages")?;
        ensure!(
            out.status.success(),
            "dpkg-deb could not read {}: {}",
            deb.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let mut archive = tar::Archive::new(out.stdout.as_slice());
        let mut hard_links = Vec::new();
        for entry in archive.entries()? {
            let mut entry = entry?;
            let path = entry.path()?.to_string_lossy().trim_start_matches("./").to_owned();
            if path.is_empty() || LEFT_OUT.iter().any(|p| path.starts_with(p)) {
                continue;
            }
            let mode = entry.header().mode()? & 0o7777;
            match entry.header().entry_type() {
                tar::EntryType::Directory => self.dir(&path, mode, 0),
                tar::EntryType::Regular => {
                    let mut data = Vec::new();
                    entry.read_to_end(&mut data)?;
                    self.file(&path, mode, data);
                }
                tar::EntryType::Symlink => {
                    let target = entry.link_name()?.context("a symlink without a target")?;
                    self.parents(&path);
                    self.entries.insert(path, Node::Symlink(target.to_string_lossy().into()));
                }
                tar::EntryType::Link => {
                    let target = entry.link_name()?.context("a hard link without a target")?;
                    hard_links.push((path, target.to_string_lossy().trim_start_matches("./").to_owned()));
                }
                other => bail!("{} holds {path}, a {other:?}, which the image does not take", deb.display()),
            }
        }
        for (path, target) in hard_links {
            let Some(Node::File { mode, data }) = self.entries.get(&target) else {
                bail!("{}: the hard link {path} points to {target}, which is not a file", deb.display());
            };
            let (mode, data) = (*mode, data.clone());
            self.file(&path, mode, data);
        }
        Ok(())
    }

    /// `/etc/ssl/certs/ca-certificates.crt`: every certificate of `usr/share/ca-certificates/`,
    /// in path order, each ending in a newline, as `update-ca-certificates` writes it; the
    /// separate certificates are then left out.
    fn add_ca_bundle(&mut self) -> anyhow::Result<()> {
        let certificates: Vec<String> = self
            .entries
            .keys()
            .filter(|p| p.starts_with("usr/share/ca-certificates/") && p.ends_with(".crt"))
            .cloned()
            .collect();
        ensure!(!certificates.is_empty(), "the ca-certificates package held no certificates");
        let mut bundle = Vec::new();
        for path in &certificates {
            if let Some(Node::File { data, .. }) = self.entries.get(path) {
                bundle.extend_from_slice(data);
                if !bundle.ends_with(b"\n") {
                    bundle.push(b'\n');
                }
            }
        }
        self.entries
            .retain(|p, _| !p.starts_with("usr/share/ca-certificates/") && !p.starts_with("etc/ca-certificates"));
        self.file(CA_BUNDLE, 0o644, bundle);
        Ok(())
    }

    /// The users and writable directories a distroless base has.
    fn add_users(&mut self) {
        self.file(
            "etc/passwd",
            0o644,
            format!("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:{NONROOT}:{NONROOT}:nonroot:/home/nonroot:/sbin/nologin\n")
                .into_bytes(),
        );
        self.file("etc/group", 0o644, format!("root:x:0:\nnonroot:x:{NONROOT}:\n").into_bytes());
        self.dir("tmp", 0o1777, 0);
        self.dir("root", 0o700, 0);
        self.dir("home/nonroot", 0o700, NONROOT);
        self.parents("home/nonroot");
        let data_dir = stack::API_DATA_DIR.trim_start_matches('/');
        self.dir(data_dir, 0o700, NONROOT);
        self.parents(data_dir);
    }

    /// The tree as an uncompressed tar, entries in path order, every time the same bytes.
    fn tar(&self) -> anyhow::Result<Vec<u8>> {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, node) in &self.entries {
            let mut header = tar::Header::new_ustar();
            header.set_mtime(0);
            match node {
                Node::Dir { mode, owner } => {
                    header.set_entry_type(tar::EntryType::Directory);
                    header.set_mode(*mode);
                    header.set_uid(*owner);
                    header.set_gid(*owner);
                    header.set_size(0);
                    builder.append_data(&mut header, path, std::io::empty())?;
                }
                Node::File { mode, data } => {
                    header.set_entry_type(tar::EntryType::Regular);
                    header.set_mode(*mode);
                    header.set_size(data.len() as u64);
                    builder.append_data(&mut header, path, data.as_slice())?;
                }
                Node::Symlink(target) => {
                    header.set_entry_type(tar::EntryType::Symlink);
                    header.set_mode(0o777);
                    header.set_size(0);
                    builder.append_link(&mut header, path, target)?;
                }
            }
        }
        Ok(builder.into_inner()?)
    }
}

fn gzip(data: &[u8]) -> anyhow::Result<Vec<u8>> {
    // flate2's header has no name and mtime 0: the same input gives the same bytes.
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(data)?;
    Ok(encoder.finish()?)
}

fn digest_of(data: &[u8]) -> String {
    let hash = Sha256::digest(data);
    format!("sha256:{}", hash.iter().map(|b| format!("{b:02x}")).collect::<String>())
}

fn write_blob(dir: &Path, media_type: &'static str, data: &[u8]) -> anyhow::Result<Blob> {
    let digest = digest_of(data);
    let path = dir.join(digest.trim_start_matches("sha256:"));
    if !path.is_file() {
        std::fs::write(&path, data).with_context(|| format!("failed to write {}", path.display()))?;
    }
    Ok(Blob { digest, size: data.len() as u64, media_type, path })
}

fn mebibytes(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_tree_gives_the_same_layer() {
        let tree = || {
            let mut tree = Tree::default();
            tree.file("usr/local/bin/tool", 0o755, b"#!binary".to_vec());
            tree.add_users();
            tree
        };
        let (first, second) = (gzip(&tree().tar().unwrap()).unwrap(), gzip(&tree().tar().unwrap()).unwrap());
        assert_eq!(digest_of(&first), digest_of(&second));
        let tar = tree().tar().unwrap();
        let mut archive = tar::Archive::new(tar.as_slice());
        let paths: Vec<String> =
            archive.entries().unwrap().map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned()).collect();
        assert!(paths.contains(&"usr/local/bin/tool".to_owned()), "{paths:?}");
        assert!(
            paths.iter().position(|p| p == "usr/").unwrap() < paths.iter().position(|p| p == "usr/local/").unwrap()
        );
    }
}
