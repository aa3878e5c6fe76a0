//! Times the pipeline's library path — `hiring::pipeline::validate` then `process` — on one
//! file of hires, with local zones; `cargo xtask bench` runs it and reports the medians.
//!
//! ```text
//! DATABASE_URL=postgres://… cargo run --release -p hiring --example pipeline_speed -- DATA_DIR [REPEAT]
//! ```
//!
//! `DATA_DIR` holds `departments.csv`, `jobs.csv` and `hired_employees.csv` (as written by
//! `cargo xtask gen-data`). The database's tables are emptied first. Each run puts the hires
//! under a new key (a new object, so a new ingestion), truncates the hires, and prints one JSON
//! line: `{"rows", "validate_seconds", "process_seconds", "peak_rss_mb"}`.

use std::path::PathBuf;
use std::time::Instant;

use hiring::pipeline::{self, RawObject};
use hiring::zones::Zones;

/// This process's peak resident memory so far (VmHWM), in MB.
fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0.0);
    kib * 1024.0 / 1e6
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let data = PathBuf::from(args.next().ok_or("usage: pipeline_speed DATA_DIR [REPEAT]")?);
    let repeat: usize = args.next().map_or(Ok(3), |n| n.parse())?;
    let url = std::env::var("DATABASE_URL").map_err(|_| "DATABASE_URL is not set")?;
    let pool = sqlx::postgres::PgPoolOptions::new().max_connections(4).connect(&url).await?;
    hiring::MIGRATOR.run(&pool).await?;
    sqlx::query("TRUNCATE departments, jobs, hired_employees, hires_rollup, ingestions CASCADE").execute(&pool).await?;
    let zones_dir = tempfile::tempdir()?;
    let zones = Zones::local(zones_dir.path())?;
    let raw = zones_dir.path().join("raw");

    let step = |table: &str, key: &str| -> std::io::Result<RawObject> {
        std::fs::create_dir_all(raw.join(table))?;
        std::fs::copy(data.join(format!("{table}.csv")), raw.join(key))?;
        Ok(RawObject { key: key.to_owned(), etag: None })
    };
    for table in ["departments", "jobs"] {
        let object = step(table, &format!("{table}/{table}.csv"))?;
        let validation = pipeline::validate(&pool, &zones, &object, "bench").await?;
        pipeline::process(&pool, &zones, &validation).await?;
    }
    for run in 0..repeat {
        sqlx::query("TRUNCATE hired_employees, hires_rollup").execute(&pool).await?;
        sqlx::query("CHECKPOINT").execute(&pool).await?;
        let object = step("hired_employees", &format!("hired_employees/run-{run}.csv"))?;
        let started = Instant::now();
        let validation = pipeline::validate(&pool, &zones, &object, "bench").await?;
        let validated = started.elapsed();
        let report = pipeline::process(&pool, &zones, &validation).await?;
        let processed = started.elapsed() - validated;
        let line = serde_json::json!({
            "rows": report.load.rows,
            "validate_seconds": validated.as_secs_f64(),
            "process_seconds": processed.as_secs_f64(),
            "peak_rss_mb": peak_rss_mb(),
        });
        println!("{line}");
    }
    Ok(())
}
