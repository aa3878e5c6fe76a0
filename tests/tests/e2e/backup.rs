//! Avro backups (`POST /backups/{table}`, `GET /backups`) and restores (`POST /restore/{table}`):
//! a restore puts back exactly what was backed up, or changes nothing; the files are plain Avro
//! that another implementation (Python's fastavro) reads.

use std::path::PathBuf;

use serde_json::{Value, json};
use sqlx::PgPool;
use sqlx::types::chrono::{DateTime, Utc};

use crate::helpers::{TOKEN, TestApp};

const TABLES: [&str; 3] = ["departments", "jobs", "hired_employees"];

/// The pinned fastavro the test installs when `HIRING_PYTHON` is not set.
const FASTAVRO: &str = "fastavro==1.13.1";

impl TestApp {
    /// `POST /backups/{table}` with the token.
    async fn backup(&self, table: &str) -> (u16, Value) {
        let response =
            self.client.post(self.url(&format!("/backups/{table}"))).bearer_auth(TOKEN).send().await.expect("sent");
        (response.status().as_u16(), response.json().await.expect("JSON answer"))
    }

    /// `POST /backups/{table}`, which must succeed; returns the key.
    async fn backup_ok(&self, table: &str) -> String {
        let (status, body) = self.backup(table).await;
        assert_eq!(status, 200, "{body}");
        body["key"].as_str().expect("a key").to_owned()
    }

    /// `POST /restore/{table}` with the token and `{"key": key}`.
    async fn restore(&self, table: &str, key: &str) -> (u16, Value) {
        let response = self
            .client
            .post(self.url(&format!("/restore/{table}")))
            .bearer_auth(TOKEN)
            .json(&json!({"key": key}))
            .send()
            .await
            .expect("sent");
        (response.status().as_u16(), response.json().await.expect("JSON answer"))
    }

    /// Where the backups zone keeps `key`.
    fn backup_path(&self, key: &str) -> PathBuf {
        self.data_dir.path().join("backups").join(key)
    }

    /// Both metrics for 2021, as served.
    async fn metrics(&self) -> (Value, Value) {
        let (status, hires) = self.get_json("/metrics/hires?year=2021").await;
        assert_eq!(status, 200, "{hires}");
        let (status, departments) = self.get_json("/metrics/departments?year=2021").await;
        assert_eq!(status, 200, "{departments}");
        (hires, departments)
    }
}

/// Every row of `table` by id, as JSON objects named like the data dictionary; datetimes as
/// microseconds since the Unix epoch (UTC), as Avro's `timestamp-micros` holds them.
async fn rows(pool: &PgPool, table: &str) -> Vec<Value> {
    if table == "hired_employees" {
        let rows: Vec<(i32, String, DateTime<Utc>, i32, i32)> =
            sqlx::query_as("SELECT id, name, datetime, department_id, job_id FROM hired_employees ORDER BY id")
                .fetch_all(pool)
                .await
                .unwrap();
        return rows
            .into_iter()
            .map(|(id, name, datetime, department_id, job_id)| {
                json!({"id": id, "name": name, "datetime": datetime.timestamp_micros(),
                       "department_id": department_id, "job_id": job_id})
            })
            .collect();
    }
    let column = if table == "departments" { "department" } else { "job" };
    let rows: Vec<(i32, String)> =
        sqlx::query_as(&format!("SELECT id, {column} FROM {table} ORDER BY id")).fetch_all(pool).await.unwrap();
    rows.into_iter().map(|(id, text)| json!({"id": id, column: text})).collect()
}

async fn all_rows(pool: &PgPool) -> Vec<Vec<Value>> {
    let mut tables = Vec::new();
    for table in TABLES {
        tables.push(rows(pool, table).await);
    }
    tables
}

fn hire(id: i64, name: &str, datetime: &str, department_id: i64, job_id: i64) -> Value {
    json!({"id": id, "name": name, "datetime": datetime, "department_id": department_id, "job_id": job_id})
}

/// Rows whose values test the encoding's edges: non-ASCII and control characters, the longest
/// text allowed, the largest id, sub-second times, the first and last years.
async fn load_awkward_rows(app: &TestApp) {
    let long = "é".repeat(512);
    let (status, body) = app
        .batch(
            "departments",
            &json!([{"id": 2147483647, "department": "Ventas \"Ñandú\"\tback\\slash\nnew line ✓"},
                    {"id": 100, "department": long}]),
        )
        .await;
    assert_eq!((status, body["inserted"].as_i64()), (200, Some(2)), "{body}");
    let (status, body) = app
        .batch(
            "hired_employees",
            &json!([
                hire(9001, "Zoë 李", "2021-03-04T05:06:07.123456Z", 2147483647, 1),
                hire(9002, "First Year", "0001-01-01T00:00:00Z", 100, 1),
                hire(9003, "Last Moment", "9999-12-31T23:59:59.999999Z", 1, 2),
                hire(9004, "Offset", "2021-12-31T22:30:00-03:00", 1, 2)
            ]),
        )
        .await;
    assert_eq!((status, body["inserted"].as_i64()), (200, Some(4)), "{body}");
}

#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn a_restore_puts_back_every_row_and_the_metrics_of_backup_time(pool: PgPool) {
    let app = TestApp::start(pool).await;
    app.load_sample().await;
    let mut keys = Vec::new();
    for table in TABLES {
        keys.push(app.backup_ok(table).await);
    }
    let backed_up = all_rows(&app.pool).await;
    let metrics = app.metrics().await;

    // New departments and jobs, renamed ones, new hires, and hires moved to other departments
    // and quarters.
    app.upload_csv("departments", "1,Renamed Department\n50,New Department\n").await;
    app.batch("jobs", &json!([{"id": 2, "job": "Renamed Job"}, {"id": 500, "job": "New Job"}])).await;
    let new_hires: Vec<Value> =
        (5000..5100).map(|id| hire(id, &format!("New {id}"), "2021-02-01T10:00:00Z", 50, 500)).collect();
    let (status, body) = app.batch("hired_employees", &Value::Array(new_hires)).await;
    assert_eq!((status, body["inserted"].as_i64()), (200, Some(100)), "{body}");
    let first_hires = &backed_up[2][..10];
    let moved: Vec<Value> =
        first_hires.iter().map(|h| hire(h["id"].as_i64().unwrap(), "Moved", "2021-11-11T11:11:11Z", 50, 500)).collect();
    let (status, body) = app.batch("hired_employees", &Value::Array(moved)).await;
    assert_eq!((status, body["updated"].as_i64()), (200, Some(10)), "{body}");
    assert_ne!(all_rows(&app.pool).await, backed_up);
    assert_ne!(app.metrics().await, metrics, "the changes show in the metrics");

    // Hires first: the restored departments and jobs no longer have the ids the new hires use.
    for index in [2, 0, 1] {
        let (status, body) = app.restore(TABLES[index], &keys[index]).await;
        assert_eq!(status, 200, "{body}");
        let previous = body["previous"].as_str().expect("the backup taken first").to_owned();
        assert_eq!(
            body,
            json!({"table": TABLES[index], "key": keys[index], "rows": backed_up[index].len(), "previous": previous}),
            "{}",
            TABLES[index]
        );
    }
    assert_eq!(all_rows(&app.pool).await, backed_up);
    assert_eq!(app.metrics().await, metrics);
}

#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn each_table_round_trips_and_get_backups_lists_them(pool: PgPool) {
    let app = TestApp::start(pool).await;
    app.load_sample().await;
    load_awkward_rows(&app).await;
    let expected = all_rows(&app.pool).await;

    let mut reports = Vec::new();
    for (table, rows) in TABLES.into_iter().zip(&expected) {
        let (status, report) = app.backup(table).await;
        assert_eq!(status, 200, "{report}");
        let key = report["key"].as_str().unwrap();
        // <table>/YYYYMMDDTHHMMSS.ffffffZ-<UUIDv7>.avro: the time sorts them, the UUID keeps two
        // taken at once (by two tasks, every one PID 1) apart.
        let name = key.strip_prefix(&format!("{table}/")).and_then(|k| k.strip_suffix(".avro")).unwrap_or_default();
        let (stamp, id) = name.split_once("Z-").unwrap_or_default();
        let digits: String = stamp.chars().filter(char::is_ascii_digit).collect();
        assert!(stamp.len() == 22 && &stamp[8..9] == "T" && &stamp[15..16] == "." && digits.len() == 20, "{key}");
        let id: uuid::Uuid = id.parse().unwrap_or_else(|e| panic!("{key}: {e}"));
        assert_eq!(id.get_version_num(), 7, "{key}");
        assert_eq!(report["rows"].as_u64(), Some(rows.len() as u64), "{table}");
        let on_disk = std::fs::metadata(app.backup_path(key)).expect("the backup is in the zone").len();
        assert_eq!(report["bytes"].as_u64(), Some(on_disk));
        assert_eq!(&std::fs::read(app.backup_path(key)).unwrap()[..4], b"Obj\x01", "an Avro object container file");
        reports.push(report);
    }

    let (status, listed) = app.get_json("/backups").await;
    assert_eq!(status, 200, "{listed}");
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 3);
    for ((entry, report), table) in listed.iter().zip(&reports).zip(TABLES) {
        assert_eq!(
            (&entry["table"], &entry["key"], &entry["bytes"]),
            (&json!(table), &report["key"], &report["bytes"])
        );
        let modified = entry["last_modified"].as_str().unwrap();
        assert!(DateTime::parse_from_rfc3339(modified).is_ok(), "{modified}");
    }
    let (status, jobs) = app.get_json("/backups?table=jobs").await;
    assert_eq!((status, jobs.as_array().map(Vec::len)), (200, Some(1)));
    assert_eq!(jobs[0]["key"], reports[1]["key"]);
    let (status, body) = app.get_json("/backups?table=salaries").await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("unknown_table")));

    for (index, table) in TABLES.into_iter().enumerate().rev() {
        let (status, body) = app.restore(table, reports[index]["key"].as_str().unwrap()).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["rows"].as_u64(), Some(expected[index].len() as u64));
    }
    assert_eq!(all_rows(&app.pool).await, expected);
}

#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn restoring_departments_that_would_orphan_hires_is_a_409_naming_the_ids(pool: PgPool) {
    let app = TestApp::start(pool).await;
    app.load_dimensions().await;
    let key = app.backup_ok("departments").await;
    // 27 departments the backup does not have, each with a hire.
    let departments: Vec<Value> = (4..=30).map(|id| json!({"id": id, "department": format!("D{id}")})).collect();
    app.batch("departments", &Value::Array(departments)).await;
    let hires: Vec<Value> = (4..=30).map(|id| hire(id, "Orphan To Be", "2021-05-05T05:05:05Z", id, 1)).collect();
    let (status, body) = app.batch("hired_employees", &Value::Array(hires)).await;
    assert_eq!((status, body["inserted"].as_i64()), (200, Some(27)), "{body}");
    let before = all_rows(&app.pool).await;
    let metrics = app.metrics().await;

    let (status, body) = app.restore("departments", &key).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "restore_conflict");
    let message = body["error"]["message"].as_str().unwrap();
    let first_twenty = (4..=23).map(|id: i32| id.to_string()).collect::<Vec<_>>().join(", ");
    assert!(
        message.contains(&format!("27 referenced id(s) are not in the backup: {first_twenty} and 7 more")),
        "{message}"
    );
    assert_eq!(all_rows(&app.pool).await, before, "nothing changed");
    assert_eq!(app.metrics().await, metrics);
}

#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn a_file_that_is_not_avro_is_a_422_and_changes_nothing(pool: PgPool) {
    let app = TestApp::start(pool).await;
    app.load_sample().await;
    let before = all_rows(&app.pool).await;
    let path = app.backup_path("departments/garbage.avro");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, b"1,Sales\n2,Support\nnot avro at all").unwrap();
    let (status, body) = app.restore("departments", "departments/garbage.avro").await;
    assert_eq!((status, body["error"]["code"].as_str()), (422, Some("invalid_backup")), "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("not an Avro object container file"), "{body}");
    assert_eq!(all_rows(&app.pool).await, before);
}

#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn an_avro_file_of_another_tables_schema_is_a_422_and_changes_nothing(pool: PgPool) {
    let app = TestApp::start(pool).await;
    app.load_sample().await;
    let jobs = app.backup_ok("jobs").await;
    let hires = app.backup_ok("hired_employees").await;
    let before = all_rows(&app.pool).await;
    let (status, body) = app.restore("departments", &jobs).await;
    assert_eq!((status, body["error"]["code"].as_str()), (422, Some("invalid_backup")), "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("expected fields id int, department string, found id int, job string"), "{message}");
    let (status, body) = app.restore("jobs", &hires).await;
    assert_eq!((status, body["error"]["code"].as_str()), (422, Some("invalid_backup")), "{body}");
    assert_eq!(all_rows(&app.pool).await, before);
}

#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn a_backup_whose_hires_reference_missing_departments_is_a_422_naming_the_first(pool: PgPool) {
    let app = TestApp::start(pool).await;
    app.upload_csv("departments", "1,Sales\n2,Support\n").await;
    app.upload_csv("jobs", "1,Analyst\n").await;
    let no_hires = app.backup_ok("hired_employees").await;
    let two_departments = app.backup_ok("departments").await;
    app.batch("departments", &json!([{"id": 3, "department": "Engineering"}])).await;
    app.batch(
        "hired_employees",
        &json!([hire(1, "Ada", "2021-01-01T00:00:00Z", 1, 1), hire(2, "Bob", "2021-01-01T00:00:00Z", 3, 1)]),
    )
    .await;
    let hires_in_three = app.backup_ok("hired_employees").await;
    // Department 3 goes: first the hires that use it, then the department.
    assert_eq!(app.restore("hired_employees", &no_hires).await.0, 200);
    assert_eq!(app.restore("departments", &two_departments).await.0, 200);
    let before = all_rows(&app.pool).await;

    let (status, body) = app.restore("hired_employees", &hires_in_three).await;
    assert_eq!((status, body["error"]["code"].as_str()), (422, Some("invalid_backup")), "{body}");
    assert_eq!(
        body["error"]["message"],
        "invalid backup: record 2 (id 2): unknown_department: department_id 3 does not exist in departments"
    );
    assert_eq!(all_rows(&app.pool).await, before);
}

#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn an_unknown_key_is_a_404_and_an_unknown_table_a_400(pool: PgPool) {
    let app = TestApp::start(pool).await;
    app.load_dimensions().await;
    let (status, body) = app.restore("departments", "departments/20200101T000000.000000Z.avro").await;
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("not_found")), "{body}");
    let (status, body) = app.restore("salaries", "salaries/x.avro").await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("unknown_table")), "{body}");
    let (status, body) = app.backup("salaries").await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("unknown_table")), "{body}");
    let response = app
        .client
        .post(app.url("/restore/departments"))
        .bearer_auth(TOKEN)
        .body("departments/x.avro")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 422, "a body that is not {{\"key\": …}}");
    assert_eq!(app.count("departments").await, 3);
}

#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn backups_and_restores_without_the_token_are_a_401_but_the_list_is_public(pool: PgPool) {
    let app = TestApp::start(pool).await;
    app.load_dimensions().await;
    let key = app.backup_ok("departments").await;
    app.batch("departments", &json!([{"id": 9, "department": "Kept"}])).await;
    let response = app.client.post(app.url("/backups/departments")).send().await.unwrap();
    assert_eq!(response.status(), 401);
    let response = app.client.post(app.url("/restore/departments")).json(&json!({"key": key})).send().await.unwrap();
    assert_eq!(response.status(), 401);
    let (status, listed) = app.get_json("/backups").await;
    assert_eq!((status, listed.as_array().map(Vec::len)), (200, Some(1)), "only the authorised backup");
    assert_eq!(app.count("departments").await, 4, "the unauthorised restore changed nothing");
}

/// A Python with fastavro: `HIRING_PYTHON`, or `<target>/venv/bin/python`, created and given
/// fastavro on first use.
async fn python_with_fastavro() -> PathBuf {
    if let Some(python) = std::env::var_os("HIRING_PYTHON") {
        return python.into();
    }
    let workspace = devenv::project_root();
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| workspace.join("target"), |t| workspace.join(t));
    let venv = target.join("venv");
    let python = venv.join("bin/python");
    let has_fastavro = |python: PathBuf| async move {
        tokio::process::Command::new(python)
            .args(["-c", "import fastavro"])
            .output()
            .await
            .is_ok_and(|output| output.status.success())
    };
    if has_fastavro(python.clone()).await {
        return python;
    }
    let run = |program: PathBuf, args: Vec<String>| async move {
        let output = tokio::process::Command::new(&program).args(&args).output().await;
        let output = output.unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
        assert!(
            output.status.success(),
            "{} {args:?} failed: {}",
            program.display(),
            String::from_utf8_lossy(&output.stderr)
        );
    };
    run("python3".into(), vec!["-m".into(), "venv".into(), venv.display().to_string()]).await;
    run(venv.join("bin/pip"), vec!["install".into(), "--quiet".into(), FASTAVRO.into()]).await;
    assert!(has_fastavro(python.clone()).await, "fastavro is importable after installing it");
    python
}

/// Prints the file's codec and schema, then one JSON line per record, datetimes as
/// microseconds since the Unix epoch.
const DUMP_WITH_FASTAVRO: &str = r#"
import datetime, json, sys
import fastavro

EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
with open(sys.argv[1], "rb") as file:
    reader = fastavro.reader(file)
    print(json.dumps({"codec": reader.codec, "schema": reader.writer_schema}))
    for record in reader:
        for name, value in record.items():
            if isinstance(value, datetime.datetime):
                record[name] = (value - EPOCH) // datetime.timedelta(microseconds=1)
        print(json.dumps(record))
"#;

#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn fastavro_reads_every_row_and_value_of_each_backup(pool: PgPool) {
    let app = TestApp::start(pool).await;
    app.load_sample().await;
    load_awkward_rows(&app).await;
    let python = python_with_fastavro().await;
    for table in TABLES {
        let key = app.backup_ok(table).await;
        let output = tokio::process::Command::new(&python)
            .args(["-c", DUMP_WITH_FASTAVRO])
            .arg(app.backup_path(&key))
            .output()
            .await
            .expect("python runs");
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let mut lines = std::str::from_utf8(&output.stdout)
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str::<Value>(line).unwrap_or_else(|e| panic!("not JSON: {line}: {e}")));
        let header = lines.next().expect("the header line");
        assert_eq!(header["codec"], "deflate");
        let fields: Vec<(String, Value)> = header["schema"]["fields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| (f["name"].as_str().unwrap().to_owned(), f["type"].clone()))
            .collect();
        let expected_fields: Vec<(String, Value)> = match table {
            "hired_employees" => vec![
                ("id".into(), json!("int")),
                ("name".into(), json!("string")),
                ("datetime".into(), json!({"type": "long", "logicalType": "timestamp-micros"})),
                ("department_id".into(), json!("int")),
                ("job_id".into(), json!("int")),
            ],
            "departments" => vec![("id".into(), json!("int")), ("department".into(), json!("string"))],
            _ => vec![("id".into(), json!("int")), ("job".into(), json!("string"))],
        };
        assert_eq!(fields, expected_fields, "{table}");
        let records: Vec<Value> = lines.collect();
        assert_eq!(records, rows(&app.pool, table).await, "{table}");
    }
}

/// Issue 16 item 13: a restore replaces a whole table, so it first backs the table up and names
/// that backup in its answer: restoring it undoes the restore.
#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn a_restore_can_be_undone_with_the_backup_it_takes_first(pool: PgPool) {
    let app = TestApp::start(pool).await;
    app.upload_csv("jobs", "1,Analyst\n2,Manager\n").await;
    let key = app.backup_ok("jobs").await;
    app.upload_csv("jobs", "3,Engineer\n").await;
    let (status, body) = app.restore("jobs", &key).await;
    assert_eq!((status, body["rows"].as_i64()), (200, Some(2)), "{body}");
    let previous = body["previous"].as_str().expect("the restore names the backup it took first").to_owned();
    assert_ne!(previous, key);
    assert!(app.backup_path(&previous).is_file(), "the backup {previous} is in the zone");
    let (status, undone) = app.restore("jobs", &previous).await;
    assert_eq!((status, undone["rows"].as_i64()), (200, Some(3)), "{undone}");
    assert_eq!(app.count("jobs").await, 3, "the restore was undone");
}

/// `POST /backups` takes the three tables as one set, `GET /backups/sets` lists it, and
/// `POST /restore` puts the three back as one unit, with the metrics of that time; its
/// `previous` set undoes it.
#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn a_backup_set_restores_the_three_tables_and_their_metrics_as_one_unit(pool: PgPool) {
    let app = TestApp::start(pool).await;
    app.load_sample().await;
    let response = app.client.post(app.url("/backups")).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let set: Value = response.json().await.unwrap();
    let key = set["key"].as_str().expect("the set's key").to_owned();
    assert!(key.starts_with("sets/") && key.ends_with(".json"), "{key}");
    let backed_up = all_rows(&app.pool).await;
    let tables: Vec<(&str, usize)> = set["backups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|backup| (backup["table"].as_str().unwrap(), backup["rows"].as_u64().unwrap() as usize))
        .collect();
    assert_eq!(tables, TABLES.iter().copied().zip(backed_up.iter().map(Vec::len)).collect::<Vec<_>>());
    let metrics = app.metrics().await;
    let (status, sets) = app.get_json("/backups/sets").await;
    assert_eq!((status, sets[0]["key"].as_str()), (200, Some(key.as_str())), "{sets}");

    // A department that did not exist, with hires in it: restoring departments alone would be
    // a conflict.
    app.upload_csv("departments", "50,New Department\n").await;
    let (status, body) = app.batch("hired_employees", &json!([hire(5000, "New", "2021-02-01T10:00:00Z", 50, 1)])).await;
    assert_eq!((status, body["inserted"].as_i64()), (200, Some(1)), "{body}");
    let changed = all_rows(&app.pool).await;
    let changed_metrics = app.metrics().await;
    assert_ne!(changed_metrics, metrics);

    let restore = |key: String| {
        let app = &app;
        async move {
            let response = app
                .client
                .post(app.url("/restore"))
                .bearer_auth(TOKEN)
                .json(&json!({"key": key}))
                .send()
                .await
                .unwrap();
            (response.status().as_u16(), response.json::<Value>().await.unwrap())
        }
    };
    let (status, body) = restore(key.clone()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(all_rows(&app.pool).await, backed_up);
    assert_eq!(app.metrics().await, metrics, "the metrics of the set's time, not a cached answer");
    let (status, body) = restore(body["previous"].as_str().unwrap().to_owned()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(all_rows(&app.pool).await, changed);
    assert_eq!(app.metrics().await, changed_metrics);

    let (status, body) = restore("sets/none.json".into()).await;
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("not_found")), "{body}");
    let (status, body) = restore("departments/x.avro".into()).await;
    assert_eq!((status, body["error"]["code"].as_str()), (422, Some("invalid_backup")), "{body}");
}

/// A restore of the hires that overlaps a rollup compaction (held open here in a second
/// session, so the interleaving is certain) leaves the metrics equal to the hires, not doubled.
#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn a_restore_overlapping_a_compaction_keeps_the_rollup_exact(pool: PgPool) {
    let app = TestApp::start(pool.clone()).await;
    app.load_sample().await;
    let backup = app.client.post(app.url("/backups/hired_employees")).bearer_auth(crate::helpers::TOKEN).send();
    let key: serde_json::Value = backup.await.unwrap().json().await.unwrap();
    // New hires append deltas for a compaction to fold.
    let hires: Vec<_> = (900_001..=900_020)
        .map(|id| serde_json::json!({"id": id, "name": "New", "datetime": "2021-05-05T00:00:00Z", "department_id": 1, "job_id": 1}))
        .collect();
    assert_eq!(app.batch("hired_employees", &serde_json::json!(hires)).await.0, 200);

    let mut compaction = pool.begin().await.unwrap();
    sqlx::query("SELECT hires_rollup_compact()").execute(&mut *compaction).await.unwrap();
    let restore = app
        .client
        .post(app.url("/restore/hired_employees"))
        .bearer_auth(crate::helpers::TOKEN)
        .json(&serde_json::json!({ "key": key["key"] }))
        .send();
    let restore = tokio::spawn(restore);
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    compaction.commit().await.unwrap();
    let restored = restore.await.unwrap().unwrap();
    assert_eq!(restored.status(), 200, "{}", restored.text().await.unwrap());

    hiring::metrics::compact_rollup(&pool).await.unwrap();
    let counted: i64 = sqlx::query_scalar("SELECT coalesce(sum(q1 + q2 + q3 + q4), 0)::bigint FROM hires_rollup")
        .fetch_one(&pool)
        .await
        .unwrap();
    let hires: i64 = sqlx::query_scalar("SELECT count(*) FROM hired_employees").fetch_one(&pool).await.unwrap();
    assert_eq!(counted, hires, "the rollup counts {counted} hires for {hires} rows");
}
