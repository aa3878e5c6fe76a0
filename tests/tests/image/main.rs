//! The API's container image (`cargo xtask build-image`, an OCI layout built without Docker) is
//! a real image: its layers, unpacked in order into an empty directory, are a root file system
//! in which `hiring-api` runs under chroot — `--version`, then the server itself as the
//! task definition runs it (user 65532, the image's environment) against PostgreSQL, answering
//! its own container health check (`hiring-api --health`) and a request from outside.
//!
//! `cargo xtask test` builds the image first and sets `HIRING_IMAGE_DIR`. chroot needs root;
//! elsewhere the test runs it in a user namespace (`unshare --map-root-user`).

use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use sqlx::PgPool;

fn image_dir() -> PathBuf {
    let dir = std::env::var_os("HIRING_IMAGE_DIR")
        .map(PathBuf::from)
        .expect("HIRING_IMAGE_DIR is not set: run `cargo xtask test`, or `cargo xtask build-image` and point it at target/image/x86_64");
    assert!(dir.join("index.json").is_file(), "{} holds no OCI layout; run `cargo xtask build-image`", dir.display());
    dir
}

fn blob(dir: &Path, digest: &str) -> Vec<u8> {
    let hex = digest.strip_prefix("sha256:").expect("a sha256 digest");
    let bytes = std::fs::read(dir.join("blobs/sha256").join(hex)).expect("the blob is in the layout");
    let actual = sha256_hex(&bytes);
    assert_eq!(actual, hex, "the blob's content matches its digest");
    bytes
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// The manifest and config of the layout's one image.
fn read_image(dir: &Path) -> (Value, Value) {
    let index: Value = serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    let manifests = index["manifests"].as_array().expect("an index lists manifests");
    assert_eq!(manifests.len(), 1);
    let manifest: Value = serde_json::from_slice(&blob(dir, manifests[0]["digest"].as_str().unwrap())).unwrap();
    assert_eq!(manifest["mediaType"], "application/vnd.oci.image.manifest.v1+json");
    let config: Value = serde_json::from_slice(&blob(dir, manifest["config"]["digest"].as_str().unwrap())).unwrap();
    (manifest, config)
}

/// Unpacks the layers in order, as a container runtime does; returns the root.
fn unpack(dir: &Path, manifest: &Value, config: &Value) -> tempfile::TempDir {
    let root = tempfile::Builder::new().prefix("hiring-image-").tempdir().unwrap();
    let layers = manifest["layers"].as_array().unwrap();
    let diff_ids = config["rootfs"]["diff_ids"].as_array().unwrap();
    assert_eq!(layers.len(), diff_ids.len(), "one diff id per layer");
    for (layer, diff_id) in layers.iter().zip(diff_ids) {
        assert_eq!(layer["mediaType"], "application/vnd.oci.image.layer.v1.tar+gzip");
        let compressed = blob(dir, layer["digest"].as_str().unwrap());
        let mut tar = Vec::new();
        flate2::read::GzDecoder::new(compressed.as_slice()).read_to_end(&mut tar).unwrap();
        assert_eq!(format!("sha256:{}", sha256_hex(&tar)), diff_id.as_str().unwrap(), "diff id of the layer");
        let mut archive = tar::Archive::new(tar.as_slice());
        archive.set_preserve_permissions(true);
        archive.set_unpack_xattrs(false);
        archive.unpack(root.path()).unwrap();
    }
    root
}

/// `chroot <root> <args>` as root, or in a user namespace otherwise.
fn chroot(root: &Path, user: Option<&str>, args: &[&str]) -> Command {
    let is_root = Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    // By absolute path: the environment given below (the image's PATH) does not find them.
    let program = |name: &str| {
        ["/usr/sbin", "/usr/bin", "/sbin", "/bin"]
            .iter()
            .map(|dir| Path::new(dir).join(name))
            .find(|path| path.is_file())
            .unwrap_or_else(|| panic!("{name} is not installed (Debian's coreutils and util-linux have it)"))
    };
    let mut command = if is_root {
        Command::new(program("chroot"))
    } else {
        let mut unshare = Command::new(program("unshare"));
        unshare.arg("--map-root-user").arg(program("chroot"));
        unshare
    };
    if let Some(user) = user {
        command.arg(format!("--userspec={user}"));
    }
    // A clean environment, as a container starts with.
    command.arg(root).args(args).env_clear();
    command
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn the_image_is_a_root_file_system_in_which_the_api_starts() {
    let dir = image_dir();
    let (manifest, config) = read_image(&dir);
    assert_eq!(config["os"], "linux");
    assert_eq!(config["architecture"], "amd64");
    assert_eq!(config["config"]["User"], "65532:65532");
    assert_eq!(config["config"]["Entrypoint"], serde_json::json!(["/usr/local/bin/hiring-api"]));
    let root = unpack(&dir, &manifest, &config);
    for file in
        ["usr/local/bin/hiring-api", "etc/ssl/certs/ca-certificates.crt", "etc/passwd", "lib64/ld-linux-x86-64.so.2"]
    {
        assert!(root.path().join(file).exists(), "the image has /{file}");
    }
    let bundle = std::fs::read_to_string(root.path().join("etc/ssl/certs/ca-certificates.crt")).unwrap();
    assert!(bundle.matches("BEGIN CERTIFICATE").count() > 100, "the CA bundle holds Mozilla's roots");
    assert!(!root.path().join("usr/share/doc").exists(), "documentation is left out");

    let output = chroot(root.path(), None, &["/usr/local/bin/hiring-api", "--version"]).output().expect("chroot runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "hiring-api --version in the image: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains(env!("CARGO_PKG_VERSION")), "{stdout}");
}

#[sqlx::test]
async fn the_api_serves_from_the_image_as_its_task_runs_it(pool: PgPool) {
    let dir = image_dir();
    let (manifest, config) = read_image(&dir);
    let root = unpack(&dir, &manifest, &config);
    let options = pool.connect_options();
    let url = format!(
        "postgres://{}@127.0.0.1:{}/{}?sslmode=prefer",
        options.get_username(),
        options.get_port(),
        options.get_database().expect("a database")
    );
    let listen = format!("127.0.0.1:{}", free_port());
    let image_env: Vec<(String, String)> = config["config"]["Env"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str()?.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
        .collect();
    let mut server = chroot(root.path(), Some("65532:65532"), &["/usr/local/bin/hiring-api"])
        .envs(image_env.iter().map(|(k, v)| (k, v)))
        .env("DATABASE_URL", &url)
        .env("HIRING_LISTEN", &listen)
        .env("HIRING_DATA_DIR", "/tmp/data")
        .env("HIRING_API_TOKENS", r#"{"read": "image-test-read-token"}"#)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the server starts");

    let deadline = Instant::now() + Duration::from_secs(60);
    let healthy = loop {
        let check = chroot(root.path(), Some("65532:65532"), &["/usr/local/bin/hiring-api", "--health"])
            .env("HIRING_LISTEN", &listen)
            .output()
            .expect("the health check runs");
        if check.status.success() {
            break true;
        }
        if Instant::now() > deadline || server.try_wait().unwrap().is_some() {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    if !healthy {
        let _ = server.kill();
        let output = server.wait_with_output().unwrap();
        panic!(
            "the API in the image never passed its health check:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let client = reqwest::Client::new();
    let url = format!("http://{listen}/metrics/departments?year=2021");
    assert_eq!(client.get(&url).send().await.unwrap().status(), 401, "the metrics need a token");
    let answer = client.get(&url).bearer_auth("image-test-read-token").send().await.unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.text().await.unwrap(), "[]");
    server.kill().unwrap();
    server.wait().unwrap();
}
