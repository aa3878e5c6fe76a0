//! `cargo xtask bench [--rows N ...] [--clients 8] [--seconds 10] [--requests 200]`: one run,
//! one PostgreSQL, one release build of `hiring-api`; prints a table and writes
//! `<target>/bench/report.json`.
//!
//! Phases, for each `--rows` size (default 1,000,000 and 10,000,000):
//! 1. ingest: a valid synthetic `hired_employees.csv` through `POST /upload` (rows/s, the
//!    server's peak RSS), then the same file through `psql \copy` into an identical empty table
//!    (the physical limit), as a ratio; an Avro backup and restore of the hires; both metric
//!    endpoints, cached and computed afresh (p50/p99 over `--requests` sequential requests);
//!    the pipeline's library path (validate + process, its peak RSS);
//! 2. after the first size only: `POST /batch/hired_employees` with 1000-row batches,
//!    sequentially (p50/p99) and from `--clients` concurrent clients for `--seconds` (rows/s);
//! 3. worst inputs (also alone, with `--worst-only`): the inputs that cost a server the most
//!    memory per request (a batch body of numbers, a batch row holding a huge array, one
//!    huge CSV record, a file of long rejected rows), each sent to a new server, whose peak
//!    RSS is reported against the 150 MB goal.
//!
//! Every phase is bounded in count and time, and talks only to 127.0.0.1.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use serde::Serialize;
use serde_json::Value;
use sqlx::{Connection, PgConnection};
use tokio::process::{Child, Command};

use crate::gen_data::{self, Spec};
use devenv::pg;

const TOKEN: &str = "bench-token-0123456789";
const BATCH_ROWS: i64 = 1000;

#[derive(clap::Args, Debug, Clone, PartialEq, Eq)]
pub struct Bench {
    /// Rows of the ingested file; repeat to measure several sizes in one run
    /// (e.g. `--rows 1000000 --rows 10000000` shows how cost and memory grow).
    #[arg(long = "rows", default_values_t = [1_000_000u64, 10_000_000])]
    rows: Vec<u64>,
    /// Concurrent clients of the batch throughput phase.
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Duration of the batch throughput phase, in seconds.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Ingest runs per size (alternating upload and psql \copy); the medians are reported.
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// Sequential requests per latency phase (each metric, batches).
    #[arg(long, default_value_t = 200)]
    requests: usize,
    /// Run only the worst-inputs memory phase (no ingest, latency or pipeline phases).
    #[arg(long)]
    worst_only: bool,
}

#[derive(Debug, Serialize)]
struct Report {
    date: String,
    git_commit: String,
    machine: Machine,
    postgres: String,
    ingest: Vec<Ingest>,
    pipeline: Vec<PipelineRun>,
    metrics: Vec<Latency>,
    batch_sequential: Option<Latency>,
    batch_concurrent: Option<Throughput>,
    backup: Vec<BackupRestore>,
    worst_inputs: Vec<WorstInput>,
    targets: Vec<Target>,
}

/// One request built to cost the server as much memory as the API's limits allow.
#[derive(Debug, Serialize)]
struct WorstInput {
    name: &'static str,
    bytes: u64,
    status: u16,
    seconds: f64,
    /// The new server's peak RSS (VmHWM) after the request, idle start included.
    peak_rss_mb: f64,
}

#[derive(Debug, Serialize)]
struct BackupRestore {
    rows: u64,
    bytes: u64,
    backup_seconds: f64,
    backup_rows_per_s: f64,
    restore_seconds: f64,
    restore_rows_per_s: f64,
}

#[derive(Debug, Serialize)]
struct Machine {
    cpu: String,
    cores: usize,
    memory_gib: f64,
    kernel: String,
}

#[derive(Debug, Serialize)]
struct Ingest {
    rows: u64,
    file_bytes: u64,
    upload_seconds: f64,
    upload_rows_per_s: f64,
    copy_seconds: f64,
    copy_rows_per_s: f64,
    ratio_to_copy: f64,
    peak_rss_mb: f64,
    /// The upload's stages, means over the runs (from the API's `pipeline_step_duration_seconds`
    /// sums): the validation, the processing (the load), and the rest (receiving and storing
    /// the file, the rollup's compaction, HTTP).
    validate_seconds: f64,
    process_seconds: f64,
    other_seconds: f64,
}

/// The library path of the pipeline (`hiring::pipeline::validate` then `process`, local zones),
/// medians of the runs of `hiring/examples/pipeline_speed.rs`.
#[derive(Debug, Serialize)]
struct PipelineRun {
    rows: u64,
    validate_seconds: f64,
    process_seconds: f64,
    rows_per_s: f64,
    /// The example's own peak RSS (VmHWM) over its runs.
    peak_rss_mb: f64,
}

#[derive(Debug, Serialize)]
struct Latency {
    name: String,
    requests: usize,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

#[derive(Debug, Serialize)]
struct Throughput {
    clients: usize,
    seconds: f64,
    batches: u64,
    rows: u64,
    rows_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
}

#[derive(Debug, Serialize)]
struct Target {
    name: &'static str,
    target: String,
    measured: String,
    met: bool,
}

impl Bench {
    pub fn run(self) -> anyhow::Result<()> {
        ensure!(!self.rows.is_empty() && self.rows.iter().all(|&r| r > 0), "--rows must be positive");
        ensure!(
            self.clients > 0 && self.requests > 0 && self.seconds > 0,
            "--clients, --requests and --seconds must be positive"
        );
        let status = devenv::cargo()
            .args(["build", "--release", "--package", "api", "--bin", "hiring-api"])
            .status()
            .context("failed to run cargo build")?;
        ensure!(status.success(), "building hiring-api in release mode failed");
        let status = devenv::cargo()
            .args(["build", "--release", "--package", "hiring", "--example", "pipeline_speed"])
            .status()
            .context("failed to run cargo build")?;
        ensure!(status.success(), "building the pipeline_speed example in release mode failed");
        let postgres = pg::find_or_start("hiring_bench").context("failed to find PostgreSQL")?;
        if !matches!(postgres.source(), pg::Source::DatabaseUrl) {
            postgres.recreate().context("failed to recreate the bench database")?;
        }
        println!("PostgreSQL: {} ({})", postgres.display_url(), postgres.source());
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("failed to build the tokio runtime")?
            .block_on(self.measure(&postgres.url()))
    }

    async fn measure(self, database_url: &str) -> anyhow::Result<()> {
        let bench_dir = devenv::target_dir().join("bench");
        let binary = devenv::target_dir().join("release").join("hiring-api");
        let mut db = PgConnection::connect(database_url).await.context("failed to connect to the bench database")?;
        let postgres: String = sqlx::query_scalar("SELECT version()").fetch_one(&mut db).await?;
        let client = reqwest::Client::builder().pool_max_idle_per_host(64).build()?;

        let mut report = Report {
            date: chrono_free_now(),
            git_commit: git_commit(),
            machine: machine(),
            postgres,
            ingest: Vec::new(),
            pipeline: Vec::new(),
            metrics: Vec::new(),
            batch_sequential: None,
            batch_concurrent: None,
            backup: Vec::new(),
            worst_inputs: Vec::new(),
            targets: Vec::new(),
        };

        let sizes = if self.worst_only { &[][..] } else { &self.rows[..] };
        for (index, &rows) in sizes.iter().enumerate() {
            let data = bench_dir.join(format!("data-{rows}"));
            let spec = Spec::new(rows, 0.0, 42)?;
            if !data.join("manifest.json").exists() {
                println!("generating {rows} rows in {}", data.display());
                gen_data::generate(&spec, &data)?;
            }
            // A clean slate for every size, and a new server so its peak RSS is this size's.
            sqlx::query("DROP SCHEMA public CASCADE").execute(&mut db).await?;
            sqlx::query("CREATE SCHEMA public").execute(&mut db).await?;
            let server = Server::start(&binary, database_url, &bench_dir.join("server-data")).await?;
            let form = |table: &str| -> anyhow::Result<reqwest::multipart::Form> {
                let bytes = std::fs::read(data.join(format!("{table}.csv")))?;
                Ok(reqwest::multipart::Form::new()
                    .part(table.to_owned(), reqwest::multipart::Part::bytes(bytes).file_name(format!("{table}.csv"))))
            };
            for table in ["departments", "jobs"] {
                let response =
                    client.post(server.url("/upload")).bearer_auth(TOKEN).multipart(form(table)?).send().await?;
                ensure!(response.status() == 200, "loading {table} failed: {}", response.text().await?);
            }

            let file = data.join("hired_employees.csv");
            let file_bytes = std::fs::metadata(&file)?.len();
            // Alternate the two loads and keep the medians: this machine is noisy, and each
            // load starts from an empty table after a checkpoint.
            let (mut upload_runs, mut copy_runs) = (Vec::new(), Vec::new());
            let steps_before = step_seconds(&client, &server).await?;
            for run in 1..=self.repeat {
                sqlx::query("TRUNCATE hired_employees, hires_rollup").execute(&mut db).await?;
                sqlx::query("CHECKPOINT").execute(&mut db).await?;
                let seconds = upload_file(&client, &server, &file, file_bytes, rows).await?;
                println!("  run {run}: POST /upload {seconds:.2} s");
                upload_runs.push(seconds);

                sqlx::query("DROP TABLE IF EXISTS copy_baseline").execute(&mut db).await?;
                sqlx::query("CREATE TABLE copy_baseline (LIKE hired_employees INCLUDING ALL)").execute(&mut db).await?;
                sqlx::query("CHECKPOINT").execute(&mut db).await?;
                let seconds = psql_copy(database_url, &file).await?;
                let copied: i64 = sqlx::query_scalar("SELECT count(*) FROM copy_baseline").fetch_one(&mut db).await?;
                ensure!(copied as u64 == rows, "psql copied {copied} rows, not {rows}");
                println!("  run {run}: psql \\copy {seconds:.2} s");
                copy_runs.push(seconds);
            }
            sqlx::query("DROP TABLE copy_baseline").execute(&mut db).await?;
            let peak_rss_mb = server.peak_rss_mb()?;
            let steps_after = step_seconds(&client, &server).await?;
            let step_mean = |step: &str| {
                (steps_after.get(step).copied().unwrap_or(0.0) - steps_before.get(step).copied().unwrap_or(0.0))
                    / self.repeat as f64
            };
            let (validate_seconds, process_seconds) = (step_mean("validate"), step_mean("process"));
            let upload_mean = upload_runs.iter().sum::<f64>() / upload_runs.len() as f64;
            let (upload_seconds, copy_seconds) = (median(&mut upload_runs), median(&mut copy_runs));
            let ingest = Ingest {
                rows,
                file_bytes,
                upload_seconds,
                upload_rows_per_s: rows as f64 / upload_seconds,
                copy_seconds,
                copy_rows_per_s: rows as f64 / copy_seconds,
                ratio_to_copy: copy_seconds / upload_seconds,
                peak_rss_mb,
                validate_seconds,
                process_seconds,
                other_seconds: upload_mean - validate_seconds - process_seconds,
            };
            println!(
                "  upload {:.2} s ({:.0} rows/s), psql \\copy {:.2} s ({:.0} rows/s), ratio {:.2}, peak RSS {:.1} MB",
                ingest.upload_seconds,
                ingest.upload_rows_per_s,
                ingest.copy_seconds,
                ingest.copy_rows_per_s,
                ingest.ratio_to_copy,
                ingest.peak_rss_mb
            );
            println!(
                "  upload stages (means): validate {:.2} s, process {:.2} s, receive/store/compact {:.2} s",
                ingest.validate_seconds, ingest.process_seconds, ingest.other_seconds
            );
            report.ingest.push(ingest);

            // At every size: the backup/restore pair and both metrics.
            let backup = backup_and_restore(&client, &server, rows).await?;
            println!(
                "  backup {:.2} s ({:.0} rows/s, {} bytes), restore {:.2} s ({:.0} rows/s)",
                backup.backup_seconds,
                backup.backup_rows_per_s,
                backup.bytes,
                backup.restore_seconds,
                backup.restore_rows_per_s
            );
            report.backup.push(backup);
            // Served from the cache (what clients get between loads), and computed afresh
            // (`Cache-Control: no-cache`: the query over the rollup, each time).
            for (metric, path, fresh) in [
                ("GET /metrics/hires", "/metrics/hires?year=2021", false),
                ("GET /metrics/departments", "/metrics/departments?year=2021", false),
                ("GET /metrics/hires (no-cache)", "/metrics/hires?year=2021", true),
                ("GET /metrics/departments (no-cache)", "/metrics/departments?year=2021", true),
            ] {
                let name = format!("{metric} at {rows} rows");
                let name = name.as_str();
                {
                    let latency = latencies(name, self.requests, || {
                        let mut request = client.get(server.url(path)).bearer_auth(TOKEN);
                        if fresh {
                            request = request.header("cache-control", "no-cache");
                        }
                        async move {
                            let response = request.send().await?;
                            ensure!(response.status() == 200, "{name} answered {}", response.status());
                            response.bytes().await?;
                            Ok(())
                        }
                    })
                    .await?;
                    println!("  {name}: p50 {:.2} ms, p99 {:.2} ms", latency.p50_ms, latency.p99_ms);
                    report.metrics.push(latency);
                }
            }
            if index == 0 {
                let next_id = Arc::new(AtomicI64::new(rows as i64 + 1));
                let batch_url = server.url("/batch/hired_employees");
                let sequential =
                    latencies("POST /batch/hired_employees (1000 rows, sequential)", self.requests, || {
                        send_batch(&client, &batch_url, &next_id)
                    })
                    .await?;
                println!("  batches, sequential: p50 {:.2} ms, p99 {:.2} ms", sequential.p50_ms, sequential.p99_ms);
                report.batch_sequential = Some(sequential);
                let concurrent =
                    throughput(&client, &server, &next_id, self.clients, Duration::from_secs(self.seconds)).await?;
                println!(
                    "  batches, {} clients: {:.0} rows/s (p50 {:.2} ms, p99 {:.2} ms)",
                    concurrent.clients, concurrent.rows_per_s, concurrent.p50_ms, concurrent.p99_ms
                );
                let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM hired_employees").fetch_one(&mut db).await?;
                let sent = next_id.load(Ordering::Relaxed) - 1;
                ensure!(stored == sent, "the table holds {stored} rows; {sent} were sent and accepted");
                report.batch_concurrent = Some(concurrent);
            }
            server.stop().await;

            let run = pipeline_speed(database_url, &data, rows, self.repeat).await?;
            println!(
                "  pipeline (library): validate {:.2} s + process {:.2} s = {:.0} rows/s",
                run.validate_seconds, run.process_seconds, run.rows_per_s
            );
            report.pipeline.push(run);
        }

        report.worst_inputs = worst_inputs(&client, &mut db, database_url, &binary, &bench_dir).await?;

        report.targets = targets(&report);
        let tables = tables(&report);
        println!("{tables}");
        std::fs::create_dir_all(&bench_dir)?;
        let path = bench_dir.join("report.json");
        std::fs::write(&path, serde_json::to_vec_pretty(&report)?)?;
        println!("\nwrote {}", path.display());
        // The page is the run's own output: a full run (the defaults) replaces docs/benchmarks.md,
        // so the figures there are always those of the last full run; a partial run writes its
        // page beside its report only.
        let page = page(&report, &self, &tables);
        let full = self == Bench::default_run();
        let page_path =
            if full { devenv::project_root().join("docs").join("benchmarks.md") } else { bench_dir.join("report.md") };
        std::fs::write(&page_path, page)?;
        println!(
            "wrote {}{}",
            page_path.display(),
            if full { "" } else { " (a partial run: docs/benchmarks.md is left as it is)" }
        );
        Ok(())
    }
}

/// One `hiring-api` process of the benchmark.
struct Server {
    child: Child,
    base: String,
}

impl Server {
    async fn start(binary: &Path, database_url: &str, data_dir: &Path) -> anyhow::Result<Server> {
        let _ = std::fs::remove_dir_all(data_dir);
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let child = Command::new(binary)
            .env("DATABASE_URL", database_url)
            .env("HIRING_LISTEN", format!("127.0.0.1:{port}"))
            .env("HIRING_DATA_DIR", data_dir)
            .env("HIRING_API_TOKEN", TOKEN)
            // The bench measures the work, not the deadline: a backup or restore of 10M rows
            // takes longer than the default 30 s a request may (it would answer 503 and go on).
            .env("HIRING_REQUEST_TIMEOUT_SECS", "1800")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("failed to start {}", binary.display()))?;
        let server = Server { child, base: format!("http://127.0.0.1:{port}") };
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(response) = client.get(server.url("/health")).send().await
                && response.status() == 200
            {
                return Ok(server);
            }
            if Instant::now() > deadline {
                bail!("hiring-api did not answer GET /health within 60 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The process's peak resident memory so far (VmHWM), in MB.
    fn peak_rss_mb(&self) -> anyhow::Result<f64> {
        let pid = self.child.id().context("hiring-api has exited")?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let kib: f64 = status
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .context("no VmHWM in /proc/<pid>/status")?;
        Ok(kib * 1024.0 / 1e6)
    }

    async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// Backs up the hires through `POST /backups/hired_employees`, then restores that backup.
async fn backup_and_restore(client: &reqwest::Client, server: &Server, rows: u64) -> anyhow::Result<BackupRestore> {
    let started = Instant::now();
    let response = client.post(server.url("/backups/hired_employees")).bearer_auth(TOKEN).send().await?;
    ensure!(response.status() == 200, "the backup failed: {}", response.text().await?);
    let backup: Value = response.json().await?;
    let backup_seconds = started.elapsed().as_secs_f64();
    ensure!(backup["rows"].as_u64() == Some(rows), "the backup holds {} rows, not {rows}", backup["rows"]);
    let started = Instant::now();
    let response = client
        .post(server.url("/restore/hired_employees"))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({"key": backup["key"]}))
        .send()
        .await?;
    ensure!(response.status() == 200, "the restore failed: {}", response.text().await?);
    let restored: Value = response.json().await?;
    let restore_seconds = started.elapsed().as_secs_f64();
    ensure!(restored["rows"].as_u64() == Some(rows), "the restore put back {} rows, not {rows}", restored["rows"]);
    Ok(BackupRestore {
        rows,
        bytes: backup["bytes"].as_u64().unwrap_or_default(),
        backup_seconds,
        backup_rows_per_s: rows as f64 / backup_seconds,
        restore_seconds,
        restore_rows_per_s: rows as f64 / restore_seconds,
    })
}

/// Sends each worst input to a new server (so its peak RSS is that input's) and keeps the
/// answer's status, the time and the peak. The inputs are written to `bench_dir` once.
async fn worst_inputs(
    client: &reqwest::Client,
    db: &mut PgConnection,
    database_url: &str,
    binary: &Path,
    bench_dir: &Path,
) -> anyhow::Result<Vec<WorstInput>> {
    use std::io::Write;
    let dir = bench_dir.join("worst");
    std::fs::create_dir_all(&dir)?;
    let body_limit = 16 * 1024 * 1024 - 16;
    // `[1,1,1,…]`: 8M JSON numbers in one 16 MiB body, 8000 times the batch limit.
    let numbers = dir.join("batch-numbers.json");
    // `[{"id":[1,1,…]}]`: one row whose id is an array of 8M numbers.
    let nested = dir.join("batch-nested.json");
    // One departments record of 256 MiB (a quoted name), the whole file.
    let long_record = dir.join("long-record.csv");
    // 40,000 hires whose 8 KiB names break the 1 KiB rule: every row a reject with a long raw text.
    let long_rejects = dir.join("long-rejects.csv");
    let write = |path: &Path, fill: &dyn Fn(&mut dyn Write) -> std::io::Result<()>| -> anyhow::Result<()> {
        if !path.exists() {
            let partial = path.with_extension("partial");
            let mut out = std::io::BufWriter::new(std::fs::File::create(&partial)?);
            fill(&mut out)?;
            out.flush()?;
            drop(out);
            std::fs::rename(&partial, path)?;
        }
        Ok(())
    };
    write(&numbers, &|out| {
        out.write_all(b"[1")?;
        for _ in 0..(body_limit - 3) / 2 {
            out.write_all(b",1")?;
        }
        out.write_all(b"]")
    })?;
    write(&nested, &|out| {
        out.write_all(b"[{\"id\":[1")?;
        for _ in 0..(body_limit - 12) / 2 {
            out.write_all(b",1")?;
        }
        out.write_all(b"]}]")
    })?;
    write(&long_record, &|out| {
        out.write_all(b"1,\"")?;
        let block = vec![b'a'; 1 << 20];
        for _ in 0..256 {
            out.write_all(&block)?;
        }
        out.write_all(b"\"\n")
    })?;
    write(&long_rejects, &|out| {
        let name = "n".repeat(8 * 1024);
        for id in 1..=40_000 {
            writeln!(out, "{id},{name},2021-01-01T00:00:00Z,1,1")?;
        }
        Ok(())
    })?;

    // Backups that lie about their blocks, as the API's memory tests restore them.
    let avro = devenv::project_root().join("api/tests/fixtures/avro");
    let (claiming, bomb) = (avro.join("block-claims-512-mib.avro"), avro.join("deflate-bomb.avro"));
    let inputs: [(&'static str, &Path, &str); 6] = [
        ("POST /batch: 16 MiB array of numbers", &numbers, "batch"),
        ("POST /batch: one row with a 16 MiB array", &nested, "batch"),
        ("POST /upload: one 256 MiB CSV record", &long_record, "departments"),
        ("POST /upload: 40,000 rejects of 8 KiB", &long_rejects, "hired_employees"),
        ("POST /restore: a 282-byte backup whose block claims 512 MiB", &claiming, "restore"),
        ("POST /restore: a 200 KB deflate bomb (200 MiB inflated)", &bomb, "restore"),
    ];
    let mut measured = Vec::new();
    for (name, path, target) in inputs {
        sqlx::query("DROP SCHEMA public CASCADE").execute(&mut *db).await?;
        sqlx::query("CREATE SCHEMA public").execute(&mut *db).await?;
        let server = Server::start(binary, database_url, &bench_dir.join("server-data")).await?;
        let bytes = std::fs::metadata(path)?.len();
        let started = Instant::now();
        let request = if target == "restore" {
            let name = "20261205T000000.000000Z-0193a1b2-7c4d-7e8f-9a0b-1c2d3e4f5a6b.avro";
            let folder = bench_dir.join("server-data/backups/departments");
            std::fs::create_dir_all(&folder)?;
            std::fs::copy(path, folder.join(name))?;
            client
                .post(server.url("/restore/departments"))
                .json(&serde_json::json!({"key": format!("departments/{name}")}))
        } else if target == "batch" {
            client
                .post(server.url("/batch/hired_employees"))
                .header("content-type", "application/json")
                .body(tokio::fs::read(path).await?)
        } else {
            let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::with_capacity(
                tokio::fs::File::open(path).await?,
                1 << 16,
            ));
            let part = reqwest::multipart::Part::stream_with_length(body, bytes).file_name(format!("{target}.csv"));
            client.post(server.url("/upload")).multipart(reqwest::multipart::Form::new().part(target, part))
        };
        let response = request.bearer_auth(TOKEN).send().await?;
        let status = response.status().as_u16();
        let answer = response.bytes().await?;
        let seconds = started.elapsed().as_secs_f64();
        let peak_rss_mb = server.peak_rss_mb()?;
        server.stop().await;
        println!(
            "  {name}: {status} in {seconds:.2} s, peak RSS {peak_rss_mb:.1} MB ({})",
            String::from_utf8_lossy(&answer[..answer.len().min(160)])
        );
        measured.push(WorstInput { name, bytes, status, seconds, peak_rss_mb });
    }
    Ok(measured)
}

/// Streams the file to `POST /upload`; returns the seconds until the answer.
async fn upload_file(
    client: &reqwest::Client,
    server: &Server,
    file: &Path,
    bytes: u64,
    rows: u64,
) -> anyhow::Result<f64> {
    let started = Instant::now();
    let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::with_capacity(
        tokio::fs::File::open(file).await?,
        1 << 16,
    ));
    let part = reqwest::multipart::Part::stream_with_length(body, bytes).file_name("hired_employees.csv");
    let response = client
        .post(server.url("/upload"))
        .bearer_auth(TOKEN)
        .multipart(reqwest::multipart::Form::new().part("hired_employees", part))
        .send()
        .await?;
    let status = response.status();
    let answer: Value = response.json().await?;
    let seconds = started.elapsed().as_secs_f64();
    ensure!(status == 200, "the upload failed: {answer}");
    ensure!(
        answer["ingestions"][0]["inserted"].as_u64() == Some(rows),
        "the upload did not insert every row: {answer}"
    );
    Ok(seconds)
}

/// Runs `pipeline_speed` (built by `run`) on `data` and keeps the medians of its runs. It
/// empties the database's tables first.
async fn pipeline_speed(database_url: &str, data: &Path, rows: u64, repeat: usize) -> anyhow::Result<PipelineRun> {
    let program = devenv::target_dir().join("release/examples/pipeline_speed");
    let output = tokio::process::Command::new(&program)
        .arg(data)
        .arg(repeat.to_string())
        .env("DATABASE_URL", database_url)
        .output()
        .await
        .with_context(|| format!("failed to run {}", program.display()))?;
    ensure!(
        output.status.success(),
        "pipeline_speed failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let (mut validate, mut process, mut peak_rss_mb) = (Vec::new(), Vec::new(), 0.0f64);
    for line in String::from_utf8(output.stdout)?.lines() {
        let run: serde_json::Value =
            serde_json::from_str(line).with_context(|| format!("pipeline_speed printed {line}"))?;
        ensure!(run["rows"].as_u64() == Some(rows), "pipeline_speed loaded {} rows, not {rows}", run["rows"]);
        validate.push(run["validate_seconds"].as_f64().context("validate_seconds")?);
        peak_rss_mb = peak_rss_mb.max(run["peak_rss_mb"].as_f64().context("peak_rss_mb")?);
        process.push(run["process_seconds"].as_f64().context("process_seconds")?);
        println!(
            "  pipeline run: validate {:.2} s, process {:.2} s",
            validate.last().unwrap(),
            process.last().unwrap()
        );
    }
    let totals: Vec<f64> = validate.iter().zip(&process).map(|(v, p)| v + p).collect();
    let (validate_seconds, process_seconds) = (median(&mut validate), median(&mut process));
    Ok(PipelineRun {
        rows,
        validate_seconds,
        process_seconds,
        rows_per_s: rows as f64 / median(&mut totals.clone()),
        peak_rss_mb,
    })
}

/// The API's time in each pipeline step so far: the sums of `hiring_pipeline_step_duration_seconds`
/// on its `GET /metrics`, by step.
async fn step_seconds(client: &reqwest::Client, server: &Server) -> anyhow::Result<BTreeMap<String, f64>> {
    let text = client.get(server.url("/metrics")).bearer_auth(TOKEN).send().await?.text().await?;
    let mut sums = BTreeMap::new();
    for line in text.lines() {
        if let Some((step, value)) = line
            .strip_prefix("hiring_pipeline_step_duration_seconds_sum{step=\"")
            .and_then(|rest| rest.split_once("\"} "))
        {
            sums.insert(step.to_owned(), value.trim().parse::<f64>().with_context(|| format!("GET /metrics: {line}"))?);
        }
    }
    Ok(sums)
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

async fn psql_copy(database_url: &str, file: &Path) -> anyhow::Result<f64> {
    let started = Instant::now();
    let output = Command::new("psql")
        .arg(database_url)
        .args(["-v", "ON_ERROR_STOP=1", "-q", "-c"])
        .arg(format!("\\copy copy_baseline FROM '{}' WITH (FORMAT csv)", file.display()))
        .output()
        .await
        .context("failed to run psql (install the PostgreSQL client: apt-get install postgresql-client)")?;
    let seconds = started.elapsed().as_secs_f64();
    ensure!(output.status.success(), "psql \\copy failed: {}", String::from_utf8_lossy(&output.stderr));
    Ok(seconds)
}

/// A body of 1000 new, valid hires with consecutive ids.
fn batch_body(first_id: i64) -> String {
    let mut body = String::with_capacity(100 * BATCH_ROWS as usize);
    body.push('[');
    for id in first_id..first_id + BATCH_ROWS {
        if id > first_id {
            body.push(',');
        }
        body.push_str(&format!(
            r#"{{"id":{id},"name":"Batch Person {id}","datetime":"2021-{:02}-{:02}T10:00:00Z","department_id":{},"job_id":{}}}"#,
            id % 12 + 1,
            id % 28 + 1,
            id % 12 + 1,
            id % 150 + 1
        ));
    }
    body.push(']');
    body
}

/// Posts 1000 new hires and checks they were all inserted.
async fn send_batch(client: &reqwest::Client, url: &str, next_id: &AtomicI64) -> anyhow::Result<()> {
    let first = next_id.fetch_add(BATCH_ROWS, Ordering::Relaxed);
    let response = client
        .post(url)
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body(batch_body(first))
        .send()
        .await?;
    ensure!(response.status() == 200, "a batch answered {}", response.status());
    let answer: Value = response.json().await?;
    ensure!(answer["inserted"].as_i64() == Some(BATCH_ROWS), "a batch did not insert every row: {answer}");
    Ok(())
}

async fn latencies<F, Fut>(name: &str, requests: usize, mut request: F) -> anyhow::Result<Latency>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    for _ in 0..requests.min(20) {
        request().await?;
    }
    let mut samples = Vec::with_capacity(requests);
    for _ in 0..requests {
        let started = Instant::now();
        request().await?;
        samples.push(started.elapsed());
    }
    let (p50_ms, p99_ms, max_ms) = percentiles(&mut samples);
    Ok(Latency { name: name.to_owned(), requests, p50_ms, p99_ms, max_ms })
}

async fn throughput(
    client: &reqwest::Client,
    server: &Server,
    next_id: &Arc<AtomicI64>,
    clients: usize,
    duration: Duration,
) -> anyhow::Result<Throughput> {
    let stop = Arc::new(AtomicBool::new(false));
    let batches = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (client, url, next_id, stop, batches) =
            (client.clone(), server.url("/batch/hired_employees"), next_id.clone(), stop.clone(), batches.clone());
        tasks.push(tokio::spawn(async move {
            let mut samples = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let sent = Instant::now();
                send_batch(&client, &url, &next_id).await?;
                samples.push(sent.elapsed());
                batches.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<_, anyhow::Error>(samples)
        }));
    }
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    let mut samples = Vec::new();
    for task in tasks {
        samples.extend(task.await??);
    }
    let seconds = started.elapsed().as_secs_f64();
    let batches = batches.load(Ordering::Relaxed);
    let (p50_ms, p99_ms, _) = percentiles(&mut samples);
    Ok(Throughput {
        clients,
        seconds,
        batches,
        rows: batches * BATCH_ROWS as u64,
        rows_per_s: (batches * BATCH_ROWS as u64) as f64 / seconds,
        p50_ms,
        p99_ms,
    })
}

/// (p50, p99, max) in milliseconds, nearest-rank.
fn percentiles(samples: &mut [Duration]) -> (f64, f64, f64) {
    if samples.is_empty() {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    samples.sort_unstable();
    let rank =
        |p: f64| samples[((p * samples.len() as f64).ceil() as usize).clamp(1, samples.len()) - 1].as_secs_f64() * 1e3;
    (rank(0.50), rank(0.99), rank(1.0))
}

/// The targets of issue 17 (performance, second round), each met or missed.
fn targets(report: &Report) -> Vec<Target> {
    let mut targets = Vec::new();
    for ingest in &report.ingest {
        targets.push(Target {
            name: "ingest (POST /upload) vs psql \\copy",
            target: format!(">= 1.00x at {} rows", ingest.rows),
            measured: format!("{:.2}x", ingest.ratio_to_copy),
            met: ingest.ratio_to_copy >= 1.0,
        });
        if let Some(pipeline) = report.pipeline.iter().find(|p| p.rows == ingest.rows) {
            let ratio = pipeline.rows_per_s / ingest.copy_rows_per_s;
            targets.push(Target {
                name: "ingest (validate + process) vs psql \\copy",
                target: format!(">= 1.00x at {} rows", ingest.rows),
                measured: format!("{ratio:.2}x"),
                met: ratio >= 1.0,
            });
        }
        if let Some(backup) = report.backup.iter().find(|b| b.rows == ingest.rows) {
            let ratio = backup.restore_rows_per_s / ingest.upload_rows_per_s;
            targets.push(Target {
                name: "restore vs the load path",
                target: format!(">= 0.80x at {} rows", ingest.rows),
                measured: format!("{ratio:.2}x ({:.0} rows/s)", backup.restore_rows_per_s),
                met: ratio >= 0.8,
            });
        }
        let pipeline_rss = report.pipeline.iter().find(|p| p.rows == ingest.rows).map_or(0.0, |p| p.peak_rss_mb);
        let peak = ingest.peak_rss_mb.max(pipeline_rss);
        targets.push(Target {
            name: "peak RSS, every path",
            target: format!("<= 100 MB at {} rows", ingest.rows),
            measured: format!("{:.1} MB (API {:.1}, pipeline {:.1})", peak, ingest.peak_rss_mb, pipeline_rss),
            met: peak <= 100.0,
        });
    }
    if let Some(batch) = &report.batch_sequential {
        targets.push(Target {
            name: "batch p99 (sequential)",
            target: "<= 25 ms".into(),
            measured: format!("{:.1} ms", batch.p99_ms),
            met: batch.p99_ms <= 25.0,
        });
    }
    if let Some(batch) = &report.batch_concurrent {
        targets.push(Target {
            name: "batches, concurrent",
            target: format!(">= 150000 rows/s and p99 <= 100 ms at {} clients", batch.clients),
            measured: format!("{:.0} rows/s, p99 {:.1} ms", batch.rows_per_s, batch.p99_ms),
            met: batch.rows_per_s >= 150_000.0 && batch.p99_ms <= 100.0,
        });
    }
    for metric in report.metrics.iter().filter(|m| m.name.contains("no-cache")) {
        targets.push(Target {
            name: "metric p50, computed afresh",
            target: format!("<= 5 ms: {}", metric.name),
            measured: format!("{:.2} ms", metric.p50_ms),
            met: metric.p50_ms <= 5.0,
        });
    }
    for worst in &report.worst_inputs {
        targets.push(Target {
            name: "peak RSS, worst input",
            target: format!("<= 150 MB: {}", worst.name),
            measured: format!("{:.1} MB ({})", worst.peak_rss_mb, worst.status),
            met: worst.peak_rss_mb <= 150.0,
        });
    }
    targets
}

/// The run's figures as Markdown tables (printed, and the body of the benchmarks page).
fn tables(report: &Report) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(out, "| target | goal | measured | met |\n|---|---|---|---|");
    for t in &report.targets {
        let _ =
            writeln!(out, "| {} | {} | {} | {} |", t.name, t.target, t.measured, if t.met { "yes" } else { "**no**" });
    }
    let _ = writeln!(
        out,
        "\n| ingest rows | upload s | upload rows/s | psql \\copy s | copy rows/s | ratio | peak RSS MB | of which validate s | process s | receive, store, compact s |\n|---|---|---|---|---|---|---|---|---|---|"
    );
    for i in &report.ingest {
        let _ = writeln!(
            out,
            "| {} | {:.2} | {:.0} | {:.2} | {:.0} | {:.2} | {:.1} | {:.2} | {:.2} | {:.2} |",
            i.rows,
            i.upload_seconds,
            i.upload_rows_per_s,
            i.copy_seconds,
            i.copy_rows_per_s,
            i.ratio_to_copy,
            i.peak_rss_mb,
            i.validate_seconds,
            i.process_seconds,
            i.other_seconds
        );
    }
    let _ = writeln!(out, "\n| pipeline rows | validate s | process s | rows/s |\n|---|---|---|---|");
    for p in &report.pipeline {
        let _ = writeln!(
            out,
            "| {} | {:.2} | {:.2} | {:.0} |",
            p.rows, p.validate_seconds, p.process_seconds, p.rows_per_s
        );
    }
    let _ = writeln!(out, "\n| latency | requests | p50 ms | p99 ms | max ms |\n|---|---|---|---|---|");
    for l in report.metrics.iter().chain(&report.batch_sequential) {
        let _ = writeln!(out, "| {} | {} | {:.2} | {:.2} | {:.2} |", l.name, l.requests, l.p50_ms, l.p99_ms, l.max_ms);
    }
    if !report.worst_inputs.is_empty() {
        let _ = writeln!(out, "\n| worst input | bytes | status | s | peak RSS MB |\n|---|---|---|---|---|");
        for w in &report.worst_inputs {
            let _ =
                writeln!(out, "| {} | {} | {} | {:.2} | {:.1} |", w.name, w.bytes, w.status, w.seconds, w.peak_rss_mb);
        }
    }
    for b in &report.backup {
        let _ = writeln!(
            out,
            "\nAvro backup of {} hires: {:.2} s ({:.0} rows/s, {} bytes); restore: {:.2} s ({:.0} rows/s)",
            b.rows, b.backup_seconds, b.backup_rows_per_s, b.bytes, b.restore_seconds, b.restore_rows_per_s
        );
    }
    if let Some(t) = &report.batch_concurrent {
        let _ = writeln!(
            out,
            "\nBatches from {} clients for {:.1} s: {} rows, {:.0} rows/s, p50 {:.2} ms, p99 {:.2} ms",
            t.clients, t.seconds, t.rows, t.rows_per_s, t.p50_ms, t.p99_ms
        );
    }
    let _ = writeln!(
        out,
        "\nMachine: {} ({} cores, {:.0} GiB, Linux {}), {}",
        report.machine.cpu, report.machine.cores, report.machine.memory_gib, report.machine.kernel, report.postgres
    );
    out
}

/// The benchmarks page: what is measured and how, then the run's tables.
fn page(report: &Report, run: &Bench, tables: &str) -> String {
    format!(
        "# Benchmarks\n\n\
         <!-- Written by `cargo xtask bench` from target/bench/report.json; do not edit: run it again. -->\n\n\
         `cargo xtask bench` builds `hiring-api` in release mode and uses one PostgreSQL for the whole run. For each \
         `--rows` size it ingests the generated file through `POST /upload` and loads the same file with `psql \\copy` \
         into an identical empty table (the physical limit), alternating the two `--repeat` times from empty tables \
         after a `CHECKPOINT`, and reports the medians and the server's peak RSS (VmHWM). At each size it also \
         measures an AVRO backup and restore of the hires, both metric endpoints (cached, and with `Cache-Control: \
         no-cache`), and the pipeline's library path (validate, then process, on local zones, with its peak RSS). After \
         the first size it sends 1000-row batches one at a time and from `--clients` concurrent clients for \
         `--seconds`, and checks that every accepted batch row is in the table. Last, each worst input (the request that costs a server the most memory within the API's \
         limits) goes to a new server, whose peak RSS is reported. Compare figures within one run: the API, PostgreSQL and the load generator share the machine's \
         cores. Back to the [README](../README.md).\n\n\
         Latest run: {date}, commit `{commit}`, `--rows {rows} --repeat {repeat} --clients {clients} --seconds {seconds} \
         --requests {requests}`.\n\n{tables}",
        date = report.date,
        commit = report.git_commit,
        rows = run.rows.iter().map(ToString::to_string).collect::<Vec<_>>().join(" --rows "),
        repeat = run.repeat,
        clients = run.clients,
        seconds = run.seconds,
        requests = run.requests,
    )
}

impl Bench {
    /// The parameters of a full run, the defaults.
    fn default_run() -> Bench {
        use clap::Parser;
        #[derive(Parser)]
        struct Defaults {
            #[command(flatten)]
            bench: Bench,
        }
        Defaults::parse_from(["bench"]).bench
    }
}

fn machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_else(|| "unknown".into());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let kib: f64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0.0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_owned();
    Machine {
        cpu,
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        memory_gib: kib / 1024.0 / 1024.0,
        kernel,
    }
}

fn git_commit() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(devenv::project_root())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map_or_else(|| "unknown".into(), |o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
}

/// The current UTC time as RFC 3339, from `date` (xtask does not otherwise need a date library).
fn chrono_free_now() -> String {
    std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .map_or_else(|_| "unknown".into(), |o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
}
