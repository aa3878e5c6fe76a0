//! `cargo xtask upload` as a user runs it (the built `ops` binary) against a running
//! `hiring-api` (the workspace's build) on a local raw zone: the sample's three files through the
//! presigned flow, then through `POST /upload`, each time the printed reports.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const TOKEN: &str = "upload-command-token-0123456789";

struct Api(Child);

impl Drop for Api {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_api(pool: &sqlx::PgPool, data: &std::path::Path) -> (Api, String) {
    let options = pool.connect_options();
    let url = format!(
        "postgres://{}@{}:{}/{}",
        options.get_username(),
        options.get_host(),
        options.get_port(),
        options.get_database().expect("a test database")
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let binary = devenv::target_dir().join("debug").join("hiring-api");
    let child = Command::new(&binary)
        .env("DATABASE_URL", url)
        .env("HIRING_LISTEN", format!("127.0.0.1:{port}"))
        .env("HIRING_DATA_DIR", data)
        .env("HIRING_API_TOKEN", TOKEN)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{} starts (cargo xtask test builds it first): {e}", binary.display()));
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "hiring-api did not listen within 30 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    (Api(child), base)
}

fn upload(base: &str, extra: &[&str]) -> (bool, String) {
    let sample = devenv::project_root().join("data").join("sample");
    let files: Vec<String> = ["departments", "jobs", "hired_employees"]
        .iter()
        .map(|t| sample.join(format!("{t}.csv")).display().to_string())
        .collect();
    let output = Command::new(env!("CARGO_BIN_EXE_ops"))
        .args(["upload", "--url", base, "--token", TOKEN])
        .args(extra)
        .args(&files)
        .stdin(Stdio::null())
        .output()
        .expect("ops runs");
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

/// The report line of `table`: its cells.
fn report<'a>(text: &'a str, table: &str) -> Vec<&'a str> {
    text.lines()
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .find(|cells| cells.get(1) == Some(&table))
        .unwrap_or_else(|| panic!("no report of {table} in:\n{text}"))
}

#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn upload_puts_the_sample_through_either_flow_and_prints_the_reports(pool: sqlx::PgPool) {
    let data = tempfile::tempdir().unwrap();
    let (_api, base) = start_api(&pool, data.path());
    let (base_presigned, base_direct) = (base.clone(), base);

    let (ok, text) = tokio::task::spawn_blocking(move || upload(&base_presigned, &["--presigned"])).await.unwrap();
    assert!(ok, "{text}");
    // ingestion, table, status, rows, inserted, updated, unchanged, rejected
    assert_eq!(report(&text, "departments")[2..], ["succeeded", "12", "12", "0", "0", "0"], "{text}");
    assert_eq!(report(&text, "jobs")[2..], ["succeeded", "183", "183", "0", "0", "0"], "{text}");
    assert_eq!(report(&text, "hired_employees")[2..], ["succeeded", "1999", "1929", "0", "0", "70"], "{text}");

    // Small files go in one POST /upload by default; the same rows again are unchanged.
    let (ok, text) = tokio::task::spawn_blocking(move || upload(&base_direct, &[])).await.unwrap();
    assert!(ok, "{text}");
    assert_eq!(report(&text, "hired_employees")[2..], ["succeeded", "1999", "0", "0", "1929", "70"], "{text}");
    let hires: i64 = sqlx::query_scalar("SELECT count(*) FROM hired_employees").fetch_one(&pool).await.unwrap();
    assert_eq!(hires, 1929);
}
