//! Analytics over the processed zone. The stage declares Glue tables over
//! the Parquet files the process step writes, for Athena. Athena does not run here, so an
//! independent reader does what it would: DuckDB (PyPI, pinned in the venv) reads the files
//! the API wrote, their schema must be the Glue tables' declared columns, and the two metrics,
//! computed by the SQL of docs/analytics.md over the files, must equal the API's answers: for
//! the sample, and for a generated file with replaced rows, broken rows and several ingestions.

use std::path::Path;

use serde_json::{Value, json};
use sqlx::PgPool;

use crate::helpers::TestApp;

/// The two SQL queries of docs/analytics.md (written for Athena), over every file load.
fn analytics_sql() -> (String, String) {
    let page = std::fs::read_to_string(devenv::project_root().join("docs/analytics.md")).expect("docs/analytics.md");
    let queries: Vec<String> = page
        .split("```sql\n")
        .skip(1)
        .map(|block| block.split("```").next().expect("a closed block").to_owned())
        .collect();
    assert_eq!(queries.len(), 2, "docs/analytics.md has the two metric queries");
    (queries[0].clone(), queries[1].clone())
}

/// Runs `script` with the venv's Python (DuckDB), `args` after it; returns its stdout as JSON.
fn python(script: &str, args: &[&str]) -> Value {
    let venv = devenv::venv::ensure().expect("the venv with duckdb");
    let output =
        std::process::Command::new(venv.python()).arg("-c").arg(script).args(args).output().expect("python runs");
    assert!(output.status.success(), "python failed: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("the script prints JSON")
}

/// The Parquet schema DuckDB reads from every file of `table` under `processed`, as Glue types.
const SCHEMA: &str = r#"
import duckdb, json, sys
root, table = sys.argv[1], sys.argv[2]
rows = duckdb.sql(f"""
    SELECT DISTINCT name, type, logical_type::VARCHAR, converted_type
    FROM parquet_schema('{root}/{table}/*/*.parquet') WHERE num_children IS NULL
""").fetchall()
def glue(physical, logical, converted):
    if physical == 'INT32' and logical is None and converted is None:
        return 'int'
    if physical == 'BYTE_ARRAY' and (converted == 'UTF8' or 'String' in str(logical)):
        return 'string'
    if physical == 'INT64' and 'Timestamp' in str(logical) and 'MICROS' in str(logical) and 'isAdjustedToUTC=1' in str(logical).replace(' ', ''):
        return 'timestamp'
    return f'unmapped {physical} {logical} {converted}'
print(json.dumps(sorted([name, glue(p, l, c)] for name, p, l, c in rows)))
"#;

/// The two metric queries over the files under `processed` for `year`, as DuckDB runs them.
const METRICS: &str = r#"
import duckdb, json, sys
root, year, hires_sql, departments_sql = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
con = duckdb.connect()
con.execute("SET TimeZone = 'UTC'")
for table in ['hired_employees', 'departments', 'jobs']:
    con.execute(f"""CREATE VIEW {table} AS SELECT * FROM read_parquet('{root}/{table}/*/*.parquet',
                    hive_partitioning = true, filename = true)""")
def run(sql):
    # Athena's file column is "$path", DuckDB's filename; the page's year is 2021.
    sql = sql.replace('"$path"', 'filename').replace('= 2021', f'= {year}')
    cursor = con.execute(sql)
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row)) for row in cursor.fetchall()]
print(json.dumps({'hires': run(hires_sql), 'departments': run(departments_sql)}, default=int))
"#;

async fn check_against_the_api(app: &TestApp, year: i32) {
    let processed = app.data_dir.path().join("processed");
    let root = processed.to_str().expect("a UTF-8 path");
    for (table, _, columns) in stack::topology::ANALYTICS_TABLES {
        let mut declared: Vec<[String; 2]> =
            columns.iter().map(|(name, kind)| [(*name).to_owned(), (*kind).to_owned()]).collect();
        declared.sort();
        let read: Vec<[String; 2]> = serde_json::from_value(python(SCHEMA, &[root, table])).unwrap();
        assert_eq!(read, declared, "{table}: the Parquet files' columns and the Glue table's");
    }
    let (hires_sql, departments_sql) = analytics_sql();
    let computed = python(METRICS, &[root, &year.to_string(), &hires_sql, &departments_sql]);
    let (_, hires) = app.get_json(&format!("/metrics/hires?year={year}")).await;
    let (_, departments) = app.get_json(&format!("/metrics/departments?year={year}")).await;
    let as_api = |rows: &Value| -> Vec<Value> {
        rows.as_array()
            .expect("rows")
            .iter()
            .map(|r| json!({"department_id": r["department_id"], "department": r["department"], "job_id": r["job_id"], "job": r["job"], "Q1": r["q1"], "Q2": r["q2"], "Q3": r["q3"], "Q4": r["q4"]}))
            .collect()
    };
    assert!(!hires.as_array().unwrap().is_empty(), "the API has hires in {year}");
    same_rows(&as_api(&computed["hires"]), hires.as_array().unwrap(), &format!("hires by quarter in {year}"));
    same_rows(
        computed["departments"].as_array().unwrap(),
        departments.as_array().unwrap(),
        &format!("departments above the mean in {year}"),
    );
}

/// The SQL's rows and the API's are the same, in the same order; else the first difference.
fn same_rows(sql: &[Value], api: &[Value], what: &str) {
    let first_difference = sql.iter().zip(api).position(|(a, b)| a != b);
    assert!(
        sql.len() == api.len() && first_difference.is_none(),
        "{what}: the SQL gave {} rows, the API {}; first difference at {first_difference:?}: {:?} against {:?}",
        sql.len(),
        api.len(),
        first_difference.map(|i| &sql[i]),
        first_difference.map(|i| &api[i]),
    );
}

fn count_files(dir: &Path) -> usize {
    walk(dir).iter().filter(|p| p.extension().is_some_and(|e| e == "parquet")).count()
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn the_processed_zone_answers_the_metrics_as_the_api_does_for_the_sample(pool: PgPool) {
    let app = TestApp::start(pool).await;
    app.load_sample().await;
    assert_eq!(count_files(&app.data_dir.path().join("processed")), 3);
    check_against_the_api(&app, 2021).await;
}

/// A generated file in two ingestions: the second replaces some hires (new department, job or
/// time), breaks others (rejected, so not in its Parquet file) and renames a department, so
/// the SQL must take each id's newest row.
#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn the_processed_zone_answers_the_metrics_as_the_api_does_for_a_generated_file(pool: PgPool) {
    let app = TestApp::start(pool).await;
    let departments: String = (1..=12).map(|id| format!("{id},Department {id:02}\n")).collect();
    let jobs: String = (1..=40).map(|id| format!("{id},Job {id:02}\n")).collect();
    app.upload_csv("departments", departments.as_str()).await;
    app.upload_csv("jobs", jobs.as_str()).await;
    // A fixed linear congruential sequence: the same file every run.
    let mut state: u64 = 42;
    let mut next = |modulo: u64| {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (state >> 33) % modulo
    };
    let mut first = String::new();
    for id in 1..=6000u64 {
        let day = next(3 * 365);
        let (department, job) = (1 + next(12) * next(12) / 12, 1 + next(40) * next(40) / 40);
        let date =
            sqlx::types::chrono::NaiveDate::from_yo_opt(2020 + (day / 365) as i32, (day % 365) as u32 + 1).unwrap();
        first.push_str(&format!("{id},Person {id},{date}T{:02}:{:02}:00Z,{department},{job}\n", next(24), next(60)));
    }
    app.upload_csv("hired_employees", first.as_str()).await;
    let mut second = String::new();
    for id in (1..=6000u64).step_by(7) {
        match id % 3 {
            0 => second.push_str(&format!(
                "{id},Moved {id},2021-0{}-15T12:00:00Z,{},{}\n",
                1 + id % 9,
                1 + id % 12,
                1 + id % 40
            )),
            1 => second.push_str(&format!("{id},Broken {id},not a date,1,1\n")),
            _ => second.push_str(&format!("{id},Unknown {id},2021-05-05T00:00:00Z,99,1\n")),
        }
    }
    app.upload_csv("hired_employees", second.as_str()).await;
    app.upload_csv("departments", "3,Department 03 renamed\n").await;
    assert_eq!(count_files(&app.data_dir.path().join("processed")), 5, "one Parquet file per load with accepted rows");
    check_against_the_api(&app, 2021).await;
    check_against_the_api(&app, 2020).await;
}
