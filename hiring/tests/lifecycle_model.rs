//! The ingestion lifecycle as one model-based test: random sequences of batches, file uploads
//! (valid and dirty, resent, steps out of order, an upload of the three tables with its hires
//! file first), replacements of existing ids, backups and restores, rollup compactions, sweeps
//! with the clock jumped past every deadline, and injected faults (a crash between load and
//! commit, a killed connection, a retryable error) run against the real library and PostgreSQL
//! and against a plain in-memory model. After every step the two must agree on the three
//! tables, both metrics, every ingestion's state and counts, every reject list and the
//! processed zone's files (the lineage of loaded rows). Each case ends with a fault-free phase
//! in which every ingestion must reach a final state.
//!
//! `HIRING_MODEL_SEED` replays a run (its seed is printed first), `HIRING_MODEL_CASES` sets the
//! cases (64 by default; `cargo xtask soak` runs more). Failing cases are kept in
//! `hiring/proptest-regressions/lifecycle_model.txt` and run first next time.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex, OnceLock};

use hiring::faults::{Fault, Point};
use hiring::ingestions::IngestionStatus;
use hiring::lifecycle::{Deadlines, Lifecycle};
use hiring::pipeline::{self, RawObject, ValidationReport};
use hiring::table::Table;
use hiring::zones::Zones;
use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence, RngSeed, TestRunner};
use proptest_state_machine::{ReferenceStateMachine, StateMachineTest};
use sqlx::PgPool;

const DATETIMES: [&str; 7] = [
    "2021-01-15T10:00:00Z",
    "2021-05-01T00:00:00Z",
    "2021-08-31T23:59:59Z",
    "2021-12-31T23:59:59.999999Z",
    "2020-12-31T23:59:59Z",
    "2021-07-01T00:00:00+02:00",
    "1999-12-31T23:59:59.9999995Z",
];
/// Quarter of 2021 of each of [`DATETIMES`], or `None` outside 2021.
const QUARTERS_2021: [Option<usize>; 7] = [Some(0), Some(1), Some(2), Some(3), None, Some(1), None];

// ---------------------------------------------------------------------------------------------
// The operations.

/// One row of a file or a batch: a valid one, or one that breaks a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RowSpec {
    id: i32,
    name: u8,
    when: usize,
    department: i32,
    job: i32,
    shape: Shape,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Valid,
    MissingText,
    BadDatetime,
}

#[derive(Debug, Clone)]
enum Op {
    Batch { table: Table, rows: Vec<RowSpec> },
    Put { table: Table, rows: Vec<RowSpec> },
    PutUploadHiresFirst { departments: Vec<RowSpec>, jobs: Vec<RowSpec>, hires: Vec<RowSpec> },
    Validate { file: usize, fault: Option<Fault> },
    Process { file: usize, fault: Option<Fault> },
    Backup,
    Restore { backup: usize },
    Compact,
    Sweep { past_deadlines: bool },
}

impl Op {
    fn name(&self) -> String {
        let with = |fault: &Option<Fault>| fault.map_or(String::new(), |f| format!(" with {f:?}"));
        match self {
            Op::Batch { table, .. } => format!("batch of {table}"),
            Op::Put { table, .. } => format!("file of {table}"),
            Op::PutUploadHiresFirst { .. } => "upload of three files, hires first".to_owned(),
            Op::Validate { fault, .. } => format!("validate{}", with(fault)),
            Op::Process { fault, .. } => format!("process{}", with(fault)),
            Op::Backup => "backup of hires".to_owned(),
            Op::Restore { .. } => "restore of hires".to_owned(),
            Op::Compact => "rollup compaction".to_owned(),
            Op::Sweep { past_deadlines: false } => "sweep".to_owned(),
            Op::Sweep { past_deadlines: true } => "sweep with the clock past every deadline".to_owned(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The model.

#[derive(Debug, Clone, PartialEq, Eq)]
struct Hire {
    name: u8,
    when: usize,
    department: i32,
    job: i32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct ModelIngestion {
    status: IngestionStatus,
    /// Whether a validation is stored (a crash or a retry before it stores none).
    validated: bool,
    /// A step whose worker died holds it (`validating`/`running` with its lock free).
    abandoned: bool,
    rows: i64,
    counts: (i64, i64, i64),
    rejects: Vec<(i64, &'static str)>,
    parquet: bool,
}

impl ModelIngestion {
    fn new(status: IngestionStatus) -> Self {
        ModelIngestion {
            status,
            validated: false,
            abandoned: false,
            rows: 0,
            counts: (0, 0, 0),
            rejects: Vec::new(),
            parquet: false,
        }
    }
}

#[derive(Debug, Clone)]
struct ModelFile {
    table: Table,
    rows: Vec<RowSpec>,
    /// The files of its upload that are departments or jobs (a hires file waits for them).
    waits_for: Vec<usize>,
    /// Its ingestion (one per object version), in a list for the comparison's sake.
    ingestions: Vec<ModelIngestion>,
}

#[derive(Debug, Clone, Default)]
struct Model {
    departments: BTreeMap<i32, u8>,
    jobs: BTreeMap<i32, u8>,
    hires: BTreeMap<i32, Hire>,
    files: Vec<ModelFile>,
    batches: Vec<ModelIngestion>,
    backups: Vec<BTreeMap<i32, Hire>>,
}

fn text(table: Table, id: i32, name: u8) -> String {
    match table {
        Table::Departments => format!("Department {id}{}", ["", "a", "b"][name as usize]),
        Table::Jobs => format!("Job {id}{}", ["", "a", "b"][name as usize]),
        Table::HiredEmployees => format!("Person {id}{}", ["", "a", "b"][name as usize]),
    }
}

/// What a load or a validation makes of `rows`: the accepted rows (in order) and the rejects
/// (position, reason). `first` is the first row's position (1 for a file's lines, 0 for a
/// batch's indexes).
fn check(model: &Model, table: Table, rows: &[RowSpec], first: i64) -> (Vec<RowSpec>, Vec<(i64, &'static str)>) {
    let mut seen = BTreeSet::new();
    let (mut accepted, mut rejects) = (Vec::new(), Vec::new());
    for (index, row) in rows.iter().enumerate() {
        let position = first + index as i64;
        let reason = match row.shape {
            Shape::MissingText => Some("missing_field"),
            Shape::BadDatetime if table == Table::HiredEmployees => Some("invalid_datetime"),
            _ if table == Table::HiredEmployees && !model.departments.contains_key(&row.department) => {
                Some("unknown_department")
            }
            _ if table == Table::HiredEmployees && !model.jobs.contains_key(&row.job) => Some("unknown_job"),
            _ if !seen.insert(row.id) => Some("duplicate_id"),
            _ => None,
        };
        match reason {
            Some(reason) => rejects.push((position, reason)),
            None => accepted.push(*row),
        }
    }
    (accepted, rejects)
}

/// Upserts accepted rows into the model; returns (inserted, updated, unchanged).
fn upsert(model: &mut Model, table: Table, rows: &[RowSpec]) -> (i64, i64, i64) {
    let mut counts = (0, 0, 0);
    for row in rows {
        let changed = match table {
            Table::Departments => model.departments.insert(row.id, row.name).map(|old| old != row.name),
            Table::Jobs => model.jobs.insert(row.id, row.name).map(|old| old != row.name),
            Table::HiredEmployees => {
                let hire = Hire { name: row.name, when: row.when, department: row.department, job: row.job };
                model.hires.insert(row.id, hire.clone()).map(|old| old != hire)
            }
        };
        match changed {
            None => counts.0 += 1,
            Some(true) => counts.1 += 1,
            Some(false) => counts.2 += 1,
        }
    }
    counts
}

const WAITING: [IngestionStatus; 3] = [IngestionStatus::Queued, IngestionStatus::Validated, IngestionStatus::Retrying];

impl Model {
    fn current(&self, file: usize) -> &ModelIngestion {
        self.files[file].ingestions.last().expect("a file has an ingestion")
    }

    fn validate(&mut self, file: usize, fault: Option<Fault>) {
        // A failed ingestion stays failed: the step answers so, and sending the file again is
        // a new file.
        let current = self.current(file).clone();
        if current.validated || current.status == IngestionStatus::Failed {
            return;
        }
        let table = self.files[file].table;
        // A hires file of an upload waits for its departments and jobs files.
        if table == Table::HiredEmployees {
            let waits: Vec<IngestionStatus> =
                self.files[file].waits_for.iter().map(|&other| self.files[other].ingestions[0].status).collect();
            if waits.contains(&IngestionStatus::Failed) {
                self.set(file, |ingestion| ingestion.status = IngestionStatus::Failed);
                return;
            }
            if waits.iter().any(|status| !matches!(status, IngestionStatus::Succeeded | IngestionStatus::Rejected)) {
                return;
            }
        }
        let (accepted, rejects) = check(self, table, &self.files[file].rows, 1);
        let rows = self.files[file].rows.len() as i64;
        self.set(file, |ingestion| {
            ingestion.abandoned = false;
            match fault {
                Some(Fault::Crash) => {
                    ingestion.status = IngestionStatus::Validating;
                    ingestion.abandoned = true;
                }
                Some(Fault::Retryable | Fault::KilledConnection) => ingestion.status = IngestionStatus::Retrying,
                None => {
                    ingestion.validated = true;
                    ingestion.rows = rows;
                    ingestion.status =
                        if accepted.is_empty() { IngestionStatus::Rejected } else { IngestionStatus::Validated };
                    ingestion.rejects = rejects;
                }
            }
        });
    }

    fn process(&mut self, file: usize, fault: Option<Fault>) {
        let current = self.current(file).clone();
        if current.status.is_final() || !current.validated {
            return;
        }
        let table = self.files[file].table;
        let (accepted, rejects) = check(self, table, &self.files[file].rows, 1);
        match fault {
            Some(Fault::Crash) => self.set(file, |ingestion| {
                ingestion.status = IngestionStatus::Running;
                ingestion.abandoned = true;
            }),
            Some(Fault::Retryable | Fault::KilledConnection) => self.set(file, |ingestion| {
                ingestion.status = IngestionStatus::Retrying;
                ingestion.abandoned = false;
            }),
            None => {
                let counts = upsert(self, table, &accepted);
                self.set(file, |ingestion| {
                    ingestion.status = IngestionStatus::Succeeded;
                    ingestion.abandoned = false;
                    ingestion.counts = counts;
                    ingestion.rejects = rejects;
                    ingestion.parquet = !accepted.is_empty();
                });
            }
        }
    }

    fn set(&mut self, file: usize, change: impl FnOnce(&mut ModelIngestion)) {
        change(self.files[file].ingestions.last_mut().expect("a file has an ingestion"));
    }

    fn all_ingestions(&self) -> impl Iterator<Item = &ModelIngestion> {
        self.files.iter().flat_map(|file| file.ingestions.iter()).chain(self.batches.iter())
    }

    fn hires_by_quarter(&self) -> Vec<(String, String, [i64; 4])> {
        let mut pairs: BTreeMap<(i32, i32), [i64; 4]> = BTreeMap::new();
        for hire in self.hires.values() {
            if let Some(quarter) = QUARTERS_2021[hire.when] {
                pairs.entry((hire.department, hire.job)).or_default()[quarter] += 1;
            }
        }
        let mut rows: Vec<_> = pairs
            .into_iter()
            .map(|((department, job), quarters)| {
                (
                    text(Table::Departments, department, self.departments[&department]),
                    text(Table::Jobs, job, self.jobs[&job]),
                    quarters,
                )
            })
            .collect();
        rows.sort();
        rows
    }

    fn departments_above_mean(&self) -> Vec<(i32, String, i64)> {
        let mut per_department: BTreeMap<i32, i64> = BTreeMap::new();
        for hire in self.hires.values().filter(|hire| QUARTERS_2021[hire.when].is_some()) {
            *per_department.entry(hire.department).or_default() += 1;
        }
        let total: i64 = per_department.values().sum();
        let departments = self.departments.len() as i64;
        let mut above: Vec<_> = per_department
            .into_iter()
            .filter(|&(_, hired)| hired * departments > total)
            .map(|(id, hired)| (id, text(Table::Departments, id, self.departments[&id]), hired))
            .collect();
        above.sort_by(|a, b| b.2.cmp(&a.2).then(a.0.cmp(&b.0)));
        above
    }
}

fn rows(table: Table) -> impl Strategy<Value = Vec<RowSpec>> {
    let shape = if table == Table::HiredEmployees {
        prop_oneof![8 => Just(Shape::Valid), 1 => Just(Shape::MissingText), 1 => Just(Shape::BadDatetime)].boxed()
    } else {
        prop_oneof![9 => Just(Shape::Valid), 1 => Just(Shape::MissingText)].boxed()
    };
    let row = (1..=5i32, 0..3u8, 0..DATETIMES.len(), 1..=4i32, 1..=4i32, shape)
        .prop_map(|(id, name, when, department, job, shape)| RowSpec { id, name, when, department, job, shape });
    proptest::collection::vec(row, 1..=5)
}

fn table() -> impl Strategy<Value = Table> {
    prop_oneof![1 => Just(Table::Departments), 1 => Just(Table::Jobs), 2 => Just(Table::HiredEmployees)]
}

fn fault() -> impl Strategy<Value = Option<Fault>> {
    prop_oneof![
        6 => Just(None),
        1 => Just(Some(Fault::Crash)),
        1 => Just(Some(Fault::KilledConnection)),
        1 => Just(Some(Fault::Retryable)),
    ]
}

struct LifecycleModel;

impl ReferenceStateMachine for LifecycleModel {
    type State = Model;
    type Transition = Op;

    fn init_state() -> BoxedStrategy<Model> {
        Just(Model::default()).boxed()
    }

    fn transitions(state: &Model) -> BoxedStrategy<Op> {
        let files = state.files.len().max(1);
        let backups = state.backups.len().max(1);
        // Steps mostly on the newest files, so a file's steps interleave with what arrives
        // between them (a department loaded between a hires file's validation and its load).
        let file = || prop_oneof![2 => Just(files - 1), 1 => files.saturating_sub(3)..files, 1 => 0..files];
        prop_oneof![
            3 => (table(), table().prop_flat_map(rows)).prop_map(|(table, rows)| Op::Batch { table, rows }),
            2 => table().prop_flat_map(|table| rows(table).prop_map(move |rows| Op::Put { table, rows })),
            1 => (rows(Table::Departments), rows(Table::Jobs), rows(Table::HiredEmployees))
                .prop_map(|(departments, jobs, hires)| Op::PutUploadHiresFirst { departments, jobs, hires }),
            4 => (file(), fault()).prop_map(|(file, fault)| Op::Validate { file, fault }),
            4 => (file(), fault()).prop_map(|(file, fault)| Op::Process { file, fault }),
            1 => Just(Op::Backup),
            1 => (0..backups).prop_map(|backup| Op::Restore { backup }),
            1 => Just(Op::Compact),
            1 => any::<bool>().prop_map(|past_deadlines| Op::Sweep { past_deadlines }),
        ]
        .boxed()
    }

    fn preconditions(state: &Model, op: &Op) -> bool {
        match op {
            Op::Batch { table, rows } => {
                rows.iter().all(|row| row.shape != Shape::BadDatetime || *table == Table::HiredEmployees)
            }
            Op::Validate { file, .. } => *file < state.files.len(),
            // The process step is given the validation's report: only after a validation.
            Op::Process { file, .. } => *file < state.files.len() && state.current(*file).validated,
            Op::Restore { backup } => *backup < state.backups.len(),
            _ => true,
        }
    }

    fn apply(mut state: Model, op: &Op) -> Model {
        match op {
            Op::Batch { table, rows } => {
                let (accepted, rejects) = check(&state, *table, rows, 0);
                let counts = upsert(&mut state, *table, &accepted);
                state.batches.push(ModelIngestion {
                    status: IngestionStatus::Succeeded,
                    rows: rows.len() as i64,
                    counts,
                    rejects,
                    validated: true,
                    ..ModelIngestion::new(IngestionStatus::Succeeded)
                });
            }
            Op::Put { table, rows } => state.files.push(ModelFile {
                table: *table,
                rows: rows.clone(),
                waits_for: Vec::new(),
                ingestions: vec![ModelIngestion::new(IngestionStatus::Queued)],
            }),
            Op::PutUploadHiresFirst { departments, jobs, hires } => {
                let first = state.files.len();
                for (table, rows, waits_for) in [
                    (Table::HiredEmployees, hires, vec![first + 1, first + 2]),
                    (Table::Departments, departments, vec![]),
                    (Table::Jobs, jobs, vec![]),
                ] {
                    state.files.push(ModelFile {
                        table,
                        rows: rows.clone(),
                        waits_for,
                        ingestions: vec![ModelIngestion::new(IngestionStatus::Queued)],
                    });
                }
            }
            Op::Validate { file, fault } => state.validate(*file, *fault),
            Op::Process { file, fault } => state.process(*file, *fault),
            Op::Backup => state.backups.push(state.hires.clone()),
            Op::Restore { backup } => {
                // The restore takes a backup of what it replaces first.
                state.backups.push(state.hires.clone());
                state.hires = state.backups[*backup].clone();
            }
            Op::Compact => {}
            Op::Sweep { past_deadlines } => {
                for file in &mut state.files {
                    for ingestion in &mut file.ingestions {
                        if ingestion.abandoned {
                            ingestion.abandoned = false;
                            ingestion.status = IngestionStatus::Retrying;
                        }
                        if *past_deadlines && WAITING.contains(&ingestion.status) {
                            ingestion.status = IngestionStatus::Failed;
                        }
                    }
                }
            }
        }
        state
    }
}

// ---------------------------------------------------------------------------------------------
// The real system.

struct System {
    runtime: &'static tokio::runtime::Runtime,
    pool: PgPool,
    zones: Zones,
    _directory: tempfile::TempDir,
    /// Each model file's raw key, and its last validation report.
    files: Vec<(String, Option<ValidationReport>)>,
    batches: Vec<i64>,
    backups: Vec<String>,
}

static COUNTS: Mutex<BTreeMap<String, u64>> = Mutex::new(BTreeMap::new());
static SHARED: OnceLock<(tokio::runtime::Runtime, PgPool)> = OnceLock::new();

fn count(name: String) {
    *COUNTS.lock().unwrap().entry(name).or_default() += 1;
}

/// A database of this test's own, migrated once; each case empties it.
fn shared() -> &'static (tokio::runtime::Runtime, PgPool) {
    SHARED.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let url = std::env::var("DATABASE_URL")
            .expect("DATABASE_URL names a PostgreSQL server (cargo xtask test sets it): the model runs against it");
        let pool = runtime.block_on(async {
            let admin = PgPool::connect(&url).await.expect("connect to DATABASE_URL");
            let name = format!("hiring_lifecycle_model_{}", std::process::id());
            sqlx::query(&format!("DROP DATABASE IF EXISTS {name}")).execute(&admin).await.unwrap();
            sqlx::query(&format!("CREATE DATABASE {name}")).execute(&admin).await.unwrap();
            let options: sqlx::postgres::PgConnectOptions = url.parse().unwrap();
            let pool = sqlx::postgres::PgPoolOptions::new()
                .max_connections(8)
                .connect_with(options.database(&name))
                .await
                .unwrap();
            hiring::MIGRATOR.run(&pool).await.unwrap();
            pool
        });
        (runtime, pool)
    })
}

struct LifecycleTest;

impl System {
    fn block<T>(&self, future: impl std::future::Future<Output = T>) -> T {
        self.runtime.block_on(future)
    }

    async fn put(&mut self, table: Table, rows: &[RowSpec]) -> i64 {
        let key = format!("{table}/{}.csv", self.files.len());
        let mut csv = String::new();
        for row in rows {
            let text = if row.shape == Shape::MissingText { String::new() } else { text(table, row.id, row.name) };
            match table {
                Table::HiredEmployees => {
                    let when =
                        if row.shape == Shape::BadDatetime { "2021-13-01T00:00:00Z" } else { DATETIMES[row.when] };
                    csv.push_str(&format!("{},{text},{when},{},{}\n", row.id, row.department, row.job));
                }
                _ => csv.push_str(&format!("{},{text}\n", row.id)),
            }
        }
        self.zones.raw.put(&key, csv.into_bytes()).await.unwrap();
        let id = pipeline::enqueue(&self.pool, &self.zones, &key, "model").await.unwrap();
        self.files.push((key, None));
        id
    }

    async fn validate(&mut self, file: usize, fault: Option<Fault>) {
        let object = RawObject { key: self.files[file].0.clone(), etag: None };
        let plan = fault.map(|fault| vec![(Point::ValidationBeforeCommit, fault)]).unwrap_or_default();
        let result = hiring::faults::armed(plan, pipeline::validate(&self.pool, &self.zones, &object, "model")).await;
        if let Ok(report) = result {
            self.files[file].1 = Some(report);
        }
    }

    async fn process(&mut self, file: usize, fault: Option<Fault>) {
        let report = self.files[file].1.clone().expect("the precondition: validated");
        let plan = fault.map(|fault| vec![(Point::LoadBeforeCommit, fault)]).unwrap_or_default();
        let _ = hiring::faults::armed(plan, pipeline::process(&self.pool, &self.zones, &report)).await;
    }
}

impl StateMachineTest for LifecycleTest {
    type SystemUnderTest = System;
    type Reference = LifecycleModel;

    fn init_test(_: &Model) -> System {
        let (runtime, pool) = shared();
        runtime.block_on(async {
            sqlx::query("TRUNCATE departments, jobs, hired_employees, ingestions, rejects, hires_rollup RESTART IDENTITY CASCADE")
                .execute(pool)
                .await
                .unwrap();
        });
        let directory = tempfile::tempdir().unwrap();
        let zones = Zones::local(directory.path()).unwrap();
        System {
            runtime,
            pool: pool.clone(),
            zones,
            _directory: directory,
            files: Vec::new(),
            batches: Vec::new(),
            backups: Vec::new(),
        }
    }

    fn apply(mut system: System, _: &Model, op: Op) -> System {
        count(op.name());
        let runtime = system.runtime;
        runtime.block_on(async {
            match &op {
                Op::Batch { table, rows } => {
                    let body: Vec<serde_json::Value> = rows.iter().map(|row| batch_row(*table, row)).collect();
                    let body = serde_json::to_vec(&body).unwrap();
                    let report = hiring::load::load_batch(&system.pool, *table, "model", &body).await.unwrap();
                    system.batches.push(report.report.id);
                }
                Op::Put { table, rows } => {
                    system.put(*table, rows).await;
                }
                Op::PutUploadHiresFirst { departments, jobs, hires } => {
                    let mut ids = vec![system.put(Table::HiredEmployees, hires).await];
                    ids.push(system.put(Table::Departments, departments).await);
                    ids.push(system.put(Table::Jobs, jobs).await);
                    pipeline::group(&system.pool, &ids).await.unwrap();
                }
                Op::Validate { file, fault } => system.validate(*file, *fault).await,
                Op::Process { file, fault } => system.process(*file, *fault).await,
                Op::Backup => {
                    let report =
                        hiring::backup::backup_table(&system.pool, &system.zones.backups, Table::HiredEmployees)
                            .await
                            .unwrap();
                    system.backups.push(report.key);
                }
                Op::Restore { backup } => {
                    let key = system.backups[*backup].clone();
                    let report =
                        hiring::backup::restore_table(&system.pool, &system.zones.backups, Table::HiredEmployees, &key)
                            .await
                            .unwrap();
                    system.backups.push(report.previous);
                }
                Op::Compact => hiring::metrics::compact_rollup(&system.pool).await.unwrap(),
                Op::Sweep { past_deadlines } => {
                    let deadlines = Deadlines::DEFAULT;
                    let now = chrono::Utc::now()
                        + if *past_deadlines {
                            chrono::Duration::from_std(deadlines.sweep_after()).unwrap() + chrono::Duration::seconds(1)
                        } else {
                            chrono::Duration::zero()
                        };
                    Lifecycle::sweep(&system.pool, now, deadlines).await.unwrap();
                }
            }
        });
        system
    }

    fn check_invariants(system: &System, model: &Model) {
        system.block(compare(system, model));
    }

    fn teardown(mut system: System, mut model: Model) {
        // The fault-free phase: the workflow's retries, in upload order, until every
        // ingestion is final (a hires file waits for its upload's departments and jobs).
        for _ in 0..3 {
            let sweep = Op::Sweep { past_deadlines: false };
            model = LifecycleModel::apply(model, &sweep);
            system = LifecycleTest::apply(system, &model, sweep);
            for file in 0..model.files.len() {
                for op in [Op::Validate { file, fault: None }, Op::Process { file, fault: None }] {
                    if model.current(file).status.is_final() || !LifecycleModel::preconditions(&model, &op) {
                        continue;
                    }
                    model = LifecycleModel::apply(model, &op);
                    system = LifecycleTest::apply(system, &model, op);
                    LifecycleTest::check_invariants(&system, &model);
                }
            }
        }
        for (file, model_file) in model.files.iter().enumerate() {
            let status = model_file.ingestions.last().unwrap().status;
            assert!(status.is_final(), "after the fault-free phase, file {file} is still {status}");
        }
    }
}

fn batch_row(table: Table, row: &RowSpec) -> serde_json::Value {
    let text = if row.shape == Shape::MissingText { String::new() } else { text(table, row.id, row.name) };
    match table {
        Table::Departments => serde_json::json!({"id": row.id, "department": text}),
        Table::Jobs => serde_json::json!({"id": row.id, "job": text}),
        Table::HiredEmployees => {
            let when = if row.shape == Shape::BadDatetime { "2021-13-01T00:00:00Z" } else { DATETIMES[row.when] };
            serde_json::json!({"id": row.id, "name": text, "datetime": when, "department_id": row.department, "job_id": row.job})
        }
    }
}

#[derive(sqlx::FromRow, Debug)]
struct StoredIngestion {
    id: i64,
    status: IngestionStatus,
    rows: i64,
    inserted: i64,
    updated: i64,
    unchanged: i64,
    rejected: i64,
    processed_key: Option<String>,
}

async fn compare(system: &System, model: &Model) {
    let pool = &system.pool;
    let departments: Vec<(i32, String)> =
        sqlx::query_as("SELECT id, department FROM departments ORDER BY id").fetch_all(pool).await.unwrap();
    let expected: Vec<(i32, String)> =
        model.departments.iter().map(|(&id, &name)| (id, text(Table::Departments, id, name))).collect();
    assert_eq!(departments, expected, "departments");
    let jobs: Vec<(i32, String)> =
        sqlx::query_as("SELECT id, job FROM jobs ORDER BY id").fetch_all(pool).await.unwrap();
    let expected: Vec<(i32, String)> =
        model.jobs.iter().map(|(&id, &name)| (id, text(Table::Jobs, id, name))).collect();
    assert_eq!(jobs, expected, "jobs");
    let hires: Vec<(i32, String, chrono::DateTime<chrono::Utc>, i32, i32)> =
        sqlx::query_as("SELECT id, name, datetime, department_id, job_id FROM hired_employees ORDER BY id")
            .fetch_all(pool)
            .await
            .unwrap();
    let expected: Vec<_> = model
        .hires
        .iter()
        .map(|(&id, hire)| {
            // The contract keeps six fractional digits, dropping the rest.
            let when = chrono::DateTime::parse_from_rfc3339(DATETIMES[hire.when]).unwrap().to_utc();
            let when =
                chrono::Timelike::with_nanosecond(&when, chrono::Timelike::nanosecond(&when) / 1000 * 1000).unwrap();
            (id, text(Table::HiredEmployees, id, hire.name), when, hire.department, hire.job)
        })
        .collect();
    assert_eq!(hires, expected, "hired_employees");

    let mut quarterly: Vec<(String, String, [i64; 4])> = hiring::metrics::hires_by_quarter(pool, 2021)
        .await
        .unwrap()
        .into_iter()
        .map(|row| (row.department, row.job, [row.q1, row.q2, row.q3, row.q4]))
        .collect();
    quarterly.sort();
    assert_eq!(quarterly, model.hires_by_quarter(), "hires by quarter of 2021");
    let above: Vec<(i32, String, i64)> = hiring::metrics::departments_above_mean(pool, 2021)
        .await
        .unwrap()
        .into_iter()
        .map(|row| (row.id, row.department, row.hired))
        .collect();
    assert_eq!(above, model.departments_above_mean(), "departments above the mean of 2021");

    // Every ingestion: files by their key, in order, then the batches.
    let mut stored = Vec::new();
    for (key, _) in &system.files {
        let ingestions: Vec<StoredIngestion> = sqlx::query_as(
            "SELECT id, status, rows, inserted, updated, unchanged, rejected, processed_key FROM ingestions
             WHERE object_key = $1 ORDER BY id",
        )
        .bind(key)
        .fetch_all(pool)
        .await
        .unwrap();
        stored.extend(ingestions);
    }
    for &id in &system.batches {
        let ingestion: StoredIngestion = sqlx::query_as(
            "SELECT id, status, rows, inserted, updated, unchanged, rejected, processed_key FROM ingestions WHERE id = $1",
        )
        .bind(id)
        .fetch_one(pool)
        .await
        .unwrap();
        stored.push(ingestion);
    }
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM ingestions").fetch_one(pool).await.unwrap();
    assert_eq!(total as usize, stored.len(), "every ingestion belongs to a file or a batch");
    let expected: Vec<&ModelIngestion> = model.all_ingestions().collect();
    assert_eq!(stored.len(), expected.len(), "ingestions");
    let mut parquet_expected = BTreeSet::new();
    for (stored, expected) in stored.iter().zip(expected) {
        let id = stored.id;
        assert_eq!(stored.status, expected.status, "the state of ingestion {id}");
        let rejects: Vec<(i64, String)> =
            sqlx::query_as("SELECT position, reason FROM rejects WHERE ingestion_id = $1 ORDER BY position")
                .bind(id)
                .fetch_all(pool)
                .await
                .unwrap();
        let expected_rejects: Vec<(i64, String)> =
            expected.rejects.iter().map(|(position, reason)| (*position, (*reason).to_owned())).collect();
        assert_eq!(rejects, expected_rejects, "the rejects of ingestion {id} ({})", stored.status);
        if stored.status == IngestionStatus::Succeeded {
            assert_eq!(
                (stored.inserted, stored.updated, stored.unchanged),
                expected.counts,
                "the counts of ingestion {id}"
            );
            assert_eq!(stored.rejected, expected.rejects.len() as i64, "the rejected count of ingestion {id}");
            if expected.parquet {
                parquet_expected.insert(stored.processed_key.clone().expect("a loaded file has its Parquet file"));
            }
        }
        if matches!(stored.status, IngestionStatus::Validated | IngestionStatus::Rejected) {
            assert_eq!(stored.rows, expected.rows, "the rows of ingestion {id}");
        }
    }
    // Lineage: the processed zone holds exactly the Parquet files of committed loads.
    let parquet: BTreeSet<String> = system
        .zones
        .processed
        .list("")
        .await
        .unwrap()
        .into_iter()
        .map(|meta| meta.location.to_string())
        .filter(|key| key.ends_with(".parquet") && !key.starts_with(hiring::processed::STAGING_PREFIX))
        .collect();
    assert_eq!(parquet, parquet_expected, "the processed zone holds the files of committed loads only");
}

fn model_config() -> (Config, u64) {
    let seed = std::env::var("HIRING_MODEL_SEED")
        .ok()
        .map(|seed| seed.parse().expect("HIRING_MODEL_SEED is a number"))
        .unwrap_or_else(|| {
            let mut bytes = [0u8; 8];
            getrandom::fill(&mut bytes).unwrap();
            u64::from_le_bytes(bytes)
        });
    let cases = std::env::var("HIRING_MODEL_CASES").ok().map_or(64, |cases| cases.parse().expect("a number"));
    let config = Config {
        cases,
        rng_seed: RngSeed::Fixed(seed),
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct("proptest-regressions/lifecycle_model.txt"))),
        max_shrink_iters: 256,
        ..Config::default()
    };
    (config, seed)
}

#[test]
fn the_ingestion_lifecycle_matches_its_model() {
    let (config, seed) = model_config();
    eprintln!(
        "lifecycle model: seed {seed}, {} cases of 20 to 40 operations; replay with \
         HIRING_MODEL_SEED={seed} cargo xtask test -- the_ingestion_lifecycle_matches_its_model",
        config.cases
    );
    let mut runner = TestRunner::new(config.clone());
    let result = runner.run(
        &LifecycleModel::sequential_strategy(20..=40),
        |(initial, transitions, seen): (Model, Vec<Op>, Option<Arc<AtomicUsize>>)| {
            LifecycleTest::test_sequential(config.clone(), initial, transitions, seen);
            Ok(())
        },
    );
    let counts = COUNTS.lock().unwrap();
    let total: u64 = counts.values().sum();
    eprintln!("lifecycle model: {total} operations run (shrinking included):");
    for (name, count) in counts.iter() {
        eprintln!("  {count:>6}  {name}");
    }
    drop(counts);
    if let Err(failure) = result {
        panic!("{failure}\nreplay with HIRING_MODEL_SEED={seed}");
    }
}
