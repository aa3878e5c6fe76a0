//! The stages as typed configuration: what differs between `local`, `dev`, `staging` and `prod`.

use std::fmt;
use std::str::FromStr;

/// A deployment stage. `local` is the emulator (moto) stage used by the tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Stage {
    Local,
    Dev,
    Staging,
    Prod,
}

impl Stage {
    pub const ALL: [Stage; 4] = [Stage::Local, Stage::Dev, Stage::Staging, Stage::Prod];

    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Local => "local",
            Stage::Dev => "dev",
            Stage::Staging => "staging",
            Stage::Prod => "prod",
        }
    }

    /// The stage stack's name, `hiring-<stage>`.
    pub fn stack_name(self) -> String {
        format!("hiring-{}", self.as_str())
    }

    /// The pipeline stack's name, `hiring-<stage>-pipeline`.
    pub fn pipeline_stack_name(self) -> String {
        format!("hiring-{}-pipeline", self.as_str())
    }

    pub fn config(self) -> StageConfig {
        StageConfig::of(self)
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Stage {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        Stage::ALL
            .into_iter()
            .find(|stage| stage.as_str() == text)
            .ok_or_else(|| format!("unknown stage `{text}`: use one of local, dev, staging, prod"))
    }
}

/// The CPU architecture of the Lambda functions and the API's tasks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Architecture {
    X86_64,
    Arm64,
}

impl Architecture {
    /// Lambda's spelling (`x86_64`, `arm64`).
    pub fn lambda(self) -> &'static str {
        match self {
            Architecture::X86_64 => "x86_64",
            Architecture::Arm64 => "arm64",
        }
    }

    /// ECS's spelling (`X86_64`, `ARM64`).
    pub fn ecs(self) -> &'static str {
        match self {
            Architecture::X86_64 => "X86_64",
            Architecture::Arm64 => "ARM64",
        }
    }
}

/// The PostgreSQL pool of one function instance (`HIRING_DB_MAX_CONNECTIONS`): a step holds
/// two connections, its object's lock and its transaction (`hiring::pipeline`).
pub const FUNCTION_DB_POOL: u32 = 2;

/// The process step's rows per second on Lambda, per GB of memory, assumed for the Fargate
/// threshold: a conservative eighth of what `cargo xtask bench` measures on a 2-core machine
/// with PostgreSQL beside it (about 0.8M rows/s for the library's process step; see
/// docs/capacity.md), since Lambda gives a function CPU in proportion to its memory (one vCPU at
/// 1,769 MB: AWS Lambda Developer Guide, "Configure Lambda function memory") and RDS is across
/// the network.
pub const PROCESS_ROWS_PER_SECOND_PER_GB: u64 = 100_000;

/// The process task's Fargate size: 1 vCPU, 2 GiB (the smallest memory Fargate pairs with 1
/// vCPU; the step's peak RSS is under 100 MB at 10M rows, docs/benchmarks.md).
pub const PROCESS_TASK_CPU: u32 = 1024;
pub const PROCESS_TASK_MEMORY_MB: u32 = 2048;

/// How long the state machine waits for a process task before stopping it: 12 hours, far past
/// any file the capacity model expects (docs/capacity.md).
pub const PROCESS_TASK_TIMEOUT_SECONDS: u32 = 12 * 3600;

/// The reserved concurrency of each function (`ReservedConcurrentExecutions`).
#[derive(Clone, Copy, Debug)]
pub struct FunctionConcurrency {
    pub validate: u32,
    pub process: u32,
    pub backup: u32,
}

impl FunctionConcurrency {
    /// The reserved concurrency of the function built from `binary`.
    pub fn of(&self, binary: &str) -> u32 {
        match binary {
            "validate" => self.validate,
            "process" => self.process,
            _ => self.backup,
        }
    }
}

/// Everything that differs between stages. Change a stage here, then run `cargo xtask synth`.
#[derive(Clone, Debug)]
pub struct StageConfig {
    pub stage: Stage,
    /// Lambda functions and API tasks (arm64/Graviton is about 20% cheaper for the same work).
    pub architecture: Architecture,
    /// The VPC's address range (a /16; the private subnets take two /20s of it).
    pub vpc_cidr: &'static str,
    pub lambda_memory_mb: u32,
    pub lambda_timeout_seconds: u32,
    pub db_instance_class: &'static str,
    pub db_storage_gb: u32,
    /// Storage autoscaling ceiling.
    pub db_max_storage_gb: u32,
    pub db_multi_az: bool,
    pub db_backup_retention_days: u32,
    /// RDS deletion protection and CloudFormation termination protection.
    pub deletion_protection: bool,
    pub log_retention_days: u32,
    /// The API's tasks: ECS target tracking keeps their average CPU near
    /// `api_cpu_target_percent`, between these counts (the service starts at the minimum).
    pub api_min_tasks: u32,
    pub api_max_tasks: u32,
    pub api_cpu_target_percent: u32,
    /// Each API task's PostgreSQL pool (`HIRING_DB_MAX_CONNECTIONS`).
    pub api_db_pool: u32,
    /// Each function's reserved concurrency: at most this many instances run at once, so the
    /// database sees at most this many times [`FUNCTION_DB_POOL`] connections from it.
    pub function_concurrency: FunctionConcurrency,
    /// Fargate task size (CPU units, MiB).
    pub api_cpu: u32,
    pub api_memory_mb: u32,
    /// Whether the aggregate metrics and the report answer without a token
    /// (`HIRING_PUBLIC_METRICS`); rejects, ingestions and backups never do.
    pub public_metrics: bool,
    /// API Gateway's steady-state and burst request limits.
    pub api_rate_limit: u32,
    pub api_burst_limit: u32,
    /// When the backup function runs (EventBridge Scheduler expression, UTC).
    pub backup_schedule: &'static str,
    /// How long a hires file's execution waits for the departments and jobs of its upload
    /// (the `hiring.Waiting` retrier). Every other deadline of an ingestion derives from it
    /// (`hiring::lifecycle::Deadlines`: upload URLs live twice as long, waiting ingestions are
    /// swept four times as long after their last move); the API reads it as
    /// `HIRING_WORKFLOW_WAIT_SECS`.
    pub workflow_wait_minutes: u32,
    /// The branch the stage's pipeline deploys; `None`: no pipeline (the emulator stage).
    pub pipeline_branch: Option<&'static str>,
    /// The emulator stage: the secrets RDS and the stack would make are parameters, the data
    /// is deleted with the stack, and the API's URL is the load balancer's (`topology`).
    pub emulator: bool,
    /// Tags on every resource that takes tags (cost allocation).
    pub tags: Vec<(&'static str, String)>,
}

impl StageConfig {
    pub fn of(stage: Stage) -> Self {
        let tags = vec![("project", "hiring".to_owned()), ("stage", stage.as_str().to_owned())];
        let base = StageConfig {
            stage,
            architecture: Architecture::X86_64,
            vpc_cidr: "10.40.0.0/16",
            lambda_memory_mb: 512,
            lambda_timeout_seconds: 300,
            db_instance_class: "db.t4g.micro",
            db_storage_gb: 20,
            db_max_storage_gb: 50,
            db_multi_az: false,
            db_backup_retention_days: 1,
            deletion_protection: false,
            log_retention_days: 7,
            api_min_tasks: 1,
            api_max_tasks: 2,
            api_cpu_target_percent: 60,
            api_db_pool: 8,
            function_concurrency: FunctionConcurrency { validate: 3, process: 3, backup: 1 },
            api_cpu: 256,
            api_memory_mb: 512,
            public_metrics: false,
            api_rate_limit: 50,
            api_burst_limit: 100,
            backup_schedule: "cron(0 3 * * ? *)",
            workflow_wait_minutes: 30,
            pipeline_branch: None,
            emulator: false,
            tags,
        };
        match stage {
            // On the emulator the API runs as a local process (test-local): moto runs no
            // tasks, so the service wants none and `status` can call it healthy.
            Stage::Local => {
                StageConfig { vpc_cidr: "10.10.0.0/16", api_min_tasks: 0, api_max_tasks: 1, emulator: true, ..base }
            }
            Stage::Dev => StageConfig { vpc_cidr: "10.20.0.0/16", pipeline_branch: Some("main"), ..base },
            Stage::Staging => StageConfig {
                architecture: Architecture::Arm64,
                vpc_cidr: "10.30.0.0/16",
                db_backup_retention_days: 7,
                log_retention_days: 30,
                api_min_tasks: 2,
                api_max_tasks: 3,
                api_db_pool: 6,
                pipeline_branch: Some("release"),
                ..base
            },
            Stage::Prod => StageConfig {
                architecture: Architecture::Arm64,
                vpc_cidr: "10.40.0.0/16",
                lambda_memory_mb: 1024,
                db_instance_class: "db.m7g.large",
                db_storage_gb: 100,
                db_max_storage_gb: 500,
                db_multi_az: true,
                db_backup_retention_days: 14,
                deletion_protection: true,
                log_retention_days: 90,
                api_min_tasks: 2,
                api_max_tasks: 8,
                api_db_pool: 16,
                function_concurrency: FunctionConcurrency { validate: 16, process: 16, backup: 1 },
                api_cpu: 512,
                api_memory_mb: 1024,
                api_rate_limit: 200,
                api_burst_limit: 400,
                pipeline_branch: Some("release"),
                ..base
            },
        }
    }

    /// The tags as CloudFormation's `[{"Key", "Value"}]` list.
    pub fn tag_list(&self) -> serde_json::Value {
        self.tags.iter().map(|(k, v)| serde_json::json!({ "Key": k, "Value": v })).collect()
    }

    /// Files with more rows than this are processed by a Fargate task, not the Lambda function:
    /// the rows the function processes in half its timeout at
    /// [`PROCESS_ROWS_PER_SECOND_PER_GB`] for its memory. (docs/capacity.md derives it.)
    pub fn fargate_process_rows(&self) -> u64 {
        let per_second = PROCESS_ROWS_PER_SECOND_PER_GB * u64::from(self.lambda_memory_mb) / 1024;
        per_second * u64::from(self.lambda_timeout_seconds) / 2
    }

    /// A resource name, `hiring-<stage>-<what>`.
    pub fn name(&self, what: &str) -> String {
        format!("hiring-{}-{what}", self.stage)
    }
}
