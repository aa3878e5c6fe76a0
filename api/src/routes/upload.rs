//! `POST /upload`: CSV files as multipart parts, streamed to the raw zone, then loaded.

use std::path::{Path, PathBuf};

use axum::Json;
use axum::extract::multipart::{Multipart, MultipartError};
use axum::extract::{Extension, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use hiring::ingestions::IngestionStatus;
use hiring::load::LoadReport;
use hiring::pipeline;
use hiring::table::Table;
use serde::Serialize;
use tokio::io::AsyncWriteExt;

use crate::config::Pipeline;
use crate::error::ApiError;
use crate::guard::{Started, WritePermit};
use crate::state::AppState;

/// The answer: one report per loaded part, in load order.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UploadResponse {
    /// The ingestions, in dependency order.
    pub ingestions: Vec<LoadReport>,
}

/// The answer in `stepfunctions` mode: the queued ingestions, to follow with
/// `GET /ingestions/{id}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct QueuedResponse {
    /// The ingestions, in dependency order.
    pub ingestions: Vec<Queued>,
}

/// A file written to the raw zone and waiting for the state machine.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Queued {
    /// The ingestion id.
    pub id: i64,
    /// The table.
    pub table: Table,
    /// Always `queued`.
    pub status: IngestionStatus,
    /// The object's key in the raw zone.
    pub key: String,
}

/// The parts of an upload: any of the three, each a CSV file.
#[derive(Debug, utoipa::ToSchema)]
#[allow(dead_code)]
pub struct UploadForm {
    /// `departments.csv`: id, department.
    #[schema(value_type = Option<String>, format = Binary, content_media_type = "text/csv")]
    departments: Option<Vec<u8>>,
    /// `jobs.csv`: id, job.
    #[schema(value_type = Option<String>, format = Binary, content_media_type = "text/csv")]
    jobs: Option<Vec<u8>>,
    /// `hired_employees.csv`: id, name, datetime, department_id, job_id.
    #[schema(value_type = Option<String>, format = Binary, content_media_type = "text/csv")]
    hired_employees: Option<Vec<u8>>,
}

/// A new file's name in the raw zone, unique without coordination (`hiring::zones::unique_name`).
pub(crate) fn new_file_name() -> String {
    format!("{}.csv", hiring::zones::unique_name())
}

struct Part {
    table: Table,
    file_name: String,
    path: PathBuf,
}

/// Stores every part in the raw zone (`<table>/<UTC time>-<UUIDv7>.csv`), then runs the
/// pipeline on each, in dependency order (departments, jobs, hired_employees): inline, the
/// validate and process steps run here, each file's load in its own transaction, and the answer
/// holds the reports; with `HIRING_PIPELINE=stepfunctions` the files are recorded as queued and
/// the answer is 202 with their ingestion ids, for the state machine to run.
#[utoipa::path(
    post,
    path = "/upload",
    tag = "ingest",
    security(("bearer" = [])),
    request_body(content = UploadForm, content_type = "multipart/form-data",
                 description = "One or more CSV files (no header line), each in a part named after its table"),
    responses(
        (status = 200, description = "Loaded (inline pipeline): one report per file", body = UploadResponse),
        (status = 202, description = "Queued for the state machine (HIRING_PIPELINE=stepfunctions)", body = QueuedResponse),
        (status = 400, description = "No file, a part naming no table, or a malformed body", body = crate::openapi::ErrorBody),
        (status = 401, description = "No bearer token, or a wrong one", body = crate::openapi::ErrorBody),
        (status = 403, description = "The server runs read-only (no HIRING_API_TOKEN)", body = crate::openapi::ErrorBody),
        (status = 413, description = "Over HIRING_MAX_UPLOAD_BYTES", body = crate::openapi::ErrorBody),
        (status = 503, description = "The database is unavailable, the server is busy with other writes, or the upload timed out; see Retry-After", body = crate::openapi::ErrorBody),
    )
)]
pub async fn upload(
    State(state): State<AppState>,
    Extension(permit): Extension<WritePermit>,
    started: Option<Extension<Started>>,
    mut multipart: Multipart,
) -> Result<Response, ApiError> {
    let mut parts: Vec<Part> = Vec::new();
    // Every staged file goes on every path (a refusal, a failure, the request dropped at its
    // deadline while it is received) unless it became the object of a recorded ingestion.
    let mut staged = StagedFiles::default();
    receive(&state.settings.data_dir, &mut multipart, &mut parts, &mut staged).await?;
    if parts.is_empty() {
        return Err(ApiError::bad_request(
            "no_file",
            "the upload holds no file: send multipart/form-data parts named departments, jobs or hired_employees",
        ));
    }
    parts.sort_by_key(|part| part.table);

    // Parts are staged in `<data dir>/raw`, the raw zone's default place. When the raw zone is
    // elsewhere (S3, or another directory), each part is copied there, and the staged copy
    // goes. The same directory spelled otherwise is the same place: decided on the canonical
    // paths, never on the spelling (which copied a file onto itself, then deleted it).
    let staging = state.settings.data_dir.join("raw");
    let remote_raw = !state.zones.raw.is_directory(&staging);
    let keys: Vec<String> = parts
        .iter()
        .map(|part| part.path.strip_prefix(&staging).unwrap_or(&part.path).to_string_lossy().into_owned())
        .collect();
    let sources: Vec<String> = parts
        .iter()
        .zip(&keys)
        .map(|(part, key)| format!("upload:{} ({}/{key})", part.file_name, state.zones.raw.url()))
        .collect();
    // With the state machine, each stored file's event starts an execution at once, and
    // nothing orders them: the files are announced first, as one group, so the hires file's
    // validation waits for the departments and jobs of the same upload
    // (hiring::pipeline::validate), and held, so no step loads a file of the upload until every
    // file of it is stored (released below) or the upload is abandoned.
    let stepfunctions = state.settings.pipeline == Pipeline::StepFunctions;
    let mut announced = Vec::new();
    if stepfunctions {
        let expires_at = chrono::Utc::now() + state.settings.deadlines.upload_expiry();
        for (key, source) in keys.iter().zip(&sources) {
            announced.push(pipeline::expect_held(&state.pool, key, source, expires_at).await?);
        }
        pipeline::group(&state.pool, &announced).await?;
    }
    // All parts or none: when a later part cannot be stored, the ones stored before it are
    // removed, so nothing of a failed upload is loaded (each stored object's event starts a load
    // in stepfunctions mode) or left behind.
    let mut copied: Vec<&str> = Vec::new();
    let stored = async {
        if remote_raw {
            for (part, key) in parts.iter().zip(&keys) {
                state.zones.raw.put_file(key, &part.path).await?;
                copied.push(key);
            }
        }
        Ok::<_, hiring::error::Error>(())
    };
    let stored = stored.await;
    if stored.is_err() {
        for key in copied {
            if let Err(error) = state.zones.raw.delete(key).await {
                tracing::warn!(%error, key, "could not remove a part of a failed upload from the raw zone");
            }
        }
        let reason = "the upload failed before its files were stored; nothing of it was kept: upload the files again";
        if let Err(error) = pipeline::abandon(&state.pool, &announced, reason).await {
            tracing::warn!(%error, "could not mark the ingestions of a failed upload failed");
        }
    }
    if remote_raw {
        for part in &parts {
            let _ = tokio::fs::remove_file(&part.path).await;
        }
    }
    stored?;
    pipeline::release(&state.pool, &announced).await?;

    // Recorded (queued) before any step runs, so a client whose request times out is told the
    // ingestions that go on; the validate step (here or the state machine's) continues each.
    let mut ids = Vec::with_capacity(keys.len());
    for (key, source) in keys.iter().zip(&sources) {
        ids.push(pipeline::enqueue(&state.pool, &state.zones, key, source).await?);
    }
    if !remote_raw {
        // The staged files are the local raw zone's objects of these ingestions.
        staged.keep();
    }
    if let Some(Extension(started)) = started {
        started.ingestions(ids.iter().copied());
    }
    if stepfunctions {
        let queued = parts
            .iter()
            .zip(keys)
            .zip(ids)
            .map(|((part, key), id)| Queued { id, table: part.table, status: IngestionStatus::Queued, key })
            .collect();
        return Ok((StatusCode::ACCEPTED, Json(QueuedResponse { ingestions: queued })).into_response());
    }

    // The steps run in their own task so that a client hanging up does not cancel a load
    // half-way; each load is one transaction either way.
    let files = keys.into_iter().zip(sources).collect();
    let steps = state.clone();
    let loads = tokio::spawn(async move {
        // The write permit lives as long as the loads, not just the request.
        let _permit = permit;
        run_steps(steps, files).await
    });
    let reports = loads.await.map_err(|e| ApiError::Internal(e.into()));
    let reports = reports??;
    Ok(Json(UploadResponse { ingestions: reports }).into_response())
}

/// Runs the pipeline's steps here, on each (raw key, source) in order, as the state machine
/// does in AWS: validate, then process when anything is loadable; then folds the metrics'
/// rollup and drops the cached metrics (even when a later file failed: the first ones may have
/// committed).
pub(crate) async fn run_steps(
    state: AppState,
    files: Vec<(String, String)>,
) -> Result<Vec<LoadReport>, hiring::error::Error> {
    let (pool, zones, telemetry) = (&state.pool, &state.zones, &state.telemetry);
    let reports = async {
        let mut reports = Vec::with_capacity(files.len());
        for (key, source) in files {
            let object = pipeline::RawObject { key, etag: None };
            let started = std::time::Instant::now();
            let validation = pipeline::validate(pool, zones, &object, &source).await?;
            telemetry.step("validate", started);
            // A step run again (a retry of these steps) replays what it recorded: its rows and
            // rejects were counted when they were first recorded.
            if !validation.replayed {
                for (reason, count) in &validation.reasons {
                    telemetry.rejected(validation.table, reason, count.unsigned_abs());
                }
            }
            let report = if validation.loadable {
                let started = std::time::Instant::now();
                let processed = pipeline::process(pool, zones, &validation).await?;
                telemetry.step("process", started);
                if !processed.replayed {
                    telemetry.loaded(&processed.load);
                }
                processed.load
            } else {
                LoadReport {
                    id: validation.ingestion,
                    table: validation.table,
                    rows: validation.rows,
                    inserted: 0,
                    updated: 0,
                    unchanged: 0,
                    rejected: validation.rejected,
                }
            };
            reports.push(report);
        }
        Ok::<_, hiring::error::Error>(reports)
    }
    .await;
    // A file load appends up to one rollup delta per key; fold them now so the metrics stay
    // fast (failure here loses nothing: the deltas stay until the next compaction).
    if let Err(error) = hiring::metrics::compact_rollup(pool).await {
        tracing::warn!(%error, "could not compact the metrics rollup");
    }
    state.metrics_cache.invalidate();
    reports
}

/// Files staged by an upload, removed when it is dropped unless kept.
#[derive(Default)]
struct StagedFiles {
    paths: Vec<PathBuf>,
}

impl StagedFiles {
    fn keep(&mut self) {
        self.paths.clear();
    }
}

impl Drop for StagedFiles {
    fn drop(&mut self) {
        for path in &self.paths {
            let _ = std::fs::remove_file(path);
        }
    }
}

async fn receive(
    data_dir: &Path,
    multipart: &mut Multipart,
    parts: &mut Vec<Part>,
    staged: &mut StagedFiles,
) -> Result<(), ApiError> {
    while let Some(mut field) = multipart.next_field().await.map_err(multipart_error)? {
        let field_name = field.name().unwrap_or_default().to_owned();
        let file_name = hiring::reject::storable(field.file_name().unwrap_or_default()).into_owned();
        let from_file = Path::new(&file_name).file_stem().and_then(|s| s.to_str()).unwrap_or_default();
        let Some(table) = Table::from_name(&field_name).or_else(|| Table::from_name(from_file)) else {
            return Err(ApiError::bad_request(
                "unknown_table",
                format!(
                    "part `{field_name}` (file `{file_name}`) names no table: name the part or its file \
                     departments, jobs or hired_employees"
                ),
            ));
        };
        // At most one part per table: each part is a file, an ingestion and (deployed) a state
        // machine execution, so a body of 20,000 parts would be 20,000 of each.
        if parts.iter().any(|part| part.table == table) {
            return Err(duplicate(table));
        }
        let directory = data_dir.join("raw").join(table.name());
        tokio::fs::create_dir_all(&directory).await.map_err(|e| internal(e, &directory))?;
        let path = directory.join(new_file_name());
        staged.paths.push(path.clone());
        let mut file = tokio::fs::File::create(&path).await.map_err(|e| internal(e, &path))?;
        parts.push(Part {
            table,
            file_name: if file_name.is_empty() { field_name } else { file_name },
            path: path.clone(),
        });
        while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
            file.write_all(&chunk).await.map_err(|e| internal(e, &path))?;
        }
        file.flush().await.map_err(|e| internal(e, &path))?;
    }
    Ok(())
}

fn duplicate(table: Table) -> ApiError {
    ApiError::bad_request(
        "duplicate_table",
        format!("the upload holds more than one part for {}: send each table's rows as one part", table.name()),
    )
}

fn internal(error: std::io::Error, path: &Path) -> ApiError {
    ApiError::Internal(anyhow::Error::new(error).context(format!("could not write {}", path.display())))
}

fn multipart_error(error: MultipartError) -> ApiError {
    if error.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::PayloadTooLarge(crate::guard::UPLOAD_TOO_LARGE.to_owned())
    } else {
        ApiError::bad_request(
            "invalid_multipart",
            format!("the body is not valid multipart/form-data: {}", error.body_text()),
        )
    }
}
