//! The hiring platform's AWS topology as typed Rust, and its CloudFormation.
//!
//! Pure: no AWS calls, no I/O. [`synth`] gives every template of a stage; `cargo xtask synth`
//! writes them under `templates/`, `cargo xtask test` lints them (cfn-lint), checks them
//! against the project's rules (cfn-guard, `stack/rules/`) and creates the `local` stage on
//! the moto emulator.
//!
//! - [`template`]: logical ids, resource types, deterministic JSON;
//! - [`stage`]: the stages as typed configuration;
//! - [`iam`]: least-privilege policies derived from declared grants;
//! - [`topology`]: the stage stack; [`bootstrap`]: the once-per-account stack;
//!   [`delivery`]: the CodePipeline stack (the delivery of a change from a push to a stage);
//! - [`diagram`]: the Mermaid diagram of docs/architecture.md;
//! - [`budget`]: the database connections a stage may open, against its class's limit;
//! - [`checks`]: the exceptions to checkov's checks, with their reasons;
//! - [`diff`]: what deploying a template would change (replacements, broadened access).

pub mod bootstrap;
pub mod budget;
pub mod checks;
pub mod cost;
pub mod delivery;
pub mod diagram;
pub mod diff;
pub mod iam;
mod parts;
pub mod stage;
pub mod template;
pub mod topology;

use serde_json::Value;

pub use stage::{Architecture, Stage, StageConfig};
pub use template::Template;
pub use topology::Topology;

/// The port the API listens on in its container.
pub const API_PORT: u16 = 8080;
/// PostgreSQL's port, database and master user.
pub const DB_PORT: u16 = 5432;
pub const DB_NAME: &str = "hiring";
pub const DB_USER: &str = "hiring";
/// The largest `POST /upload` body behind API Gateway (`HIRING_MAX_UPLOAD_BYTES`): 9 MiB, under
/// the HTTP API's payload quota of 10 MB, which cannot be raised
/// (https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-quotas.html), so the
/// API's own 413, which names the presigned flow, answers first. Bodies over 10 MB never reach
/// the API: the gateway refuses them itself.
pub const GATEWAY_UPLOAD_BYTES: u64 = 9 * 1024 * 1024;
/// The API's deadlines behind API Gateway (`HIRING_REQUEST_TIMEOUT_SECS`,
/// `HIRING_UPLOAD_TIMEOUT_SECS`), under the integration's 29 s (the quota is 30 s, which cannot be
/// raised), so a slow request ends with the API's 503 and its reason, not the gateway's 504.
pub const GATEWAY_DEADLINE_SECS: u64 = 25;
/// The API image repository (bootstrap stack).
pub const API_REPOSITORY: &str = "hiring-api";
/// Where the API stages uploaded parts: a task volume in the task definition and a `VOLUME`
/// owned by the task's user in the image config (the root filesystem is read-only).
pub const API_DATA_DIR: &str = "/var/lib/hiring";

/// The tag prefix of the images published for `stage` (`<stage>-<digest>`): ECR's lifecycle
/// rules keep each stage's newest images by it (see `bootstrap`).
pub fn image_tag_prefix(stage: Stage) -> String {
    format!("{stage}-")
}
/// The assets bucket's name as `Fn::Sub` text: one per account and region, like CDK's.
pub const ASSETS_BUCKET_NAME: &str = "hiring-assets-${AWS::AccountId}-${AWS::Region}";

/// The API image repository's ARN as `Fn::Sub` text.
pub fn api_repository_arn() -> String {
    format!("arn:${{AWS::Partition}}:ecr:${{AWS::Region}}:${{AWS::AccountId}}:repository/{API_REPOSITORY}")
}

/// The assets bucket's name as a template value.
pub fn assets_bucket_name() -> Value {
    template::sub(ASSETS_BUCKET_NAME)
}

/// One synthesized template: the stack it deploys and its file under `templates/`.
#[derive(Clone, Debug)]
pub struct Synthesized {
    pub stack_name: String,
    /// Relative to `templates/`, e.g. `prod/stage.json`.
    pub file: String,
    pub template: Template,
}

/// Every template of `stage`: the bootstrap (shared, `bootstrap.json`), the stage stack and,
/// where the stage has one, its pipeline.
pub fn synth(stage: Stage) -> Vec<Synthesized> {
    let cfg = stage.config();
    let mut out = vec![
        Synthesized {
            stack_name: bootstrap::BOOTSTRAP_STACK.into(),
            file: "bootstrap.json".into(),
            template: bootstrap::template(),
        },
        Synthesized {
            stack_name: stage.stack_name(),
            file: format!("{stage}/stage.json"),
            template: Topology::stage(&cfg).template,
        },
    ];
    if let Some(template) = delivery::template(&cfg) {
        out.push(Synthesized {
            stack_name: stage.pipeline_stack_name(),
            file: format!("{stage}/pipeline.json"),
            template,
        });
    }
    out
}
