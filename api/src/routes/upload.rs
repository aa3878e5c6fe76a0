//! `POST /upload`: CSV files as multipart parts, streamed to the raw zone, then loaded.

use std::path::{Path, PathBuf};

use axum::Json;
use axum::extract::State;
use axum::extract::multipart::{Multipart, MultipartError};
use hiring::load::LoadReport;
use hiring::table::Table;
use serde::Serialize;
use tokio::io::AsyncWriteExt;

use crate::error::ApiError;
use crate::state::AppState;

/// The answer: one report per loaded part, in load order.
#[derive(Debug, Serialize)]
pub struct UploadResponse {
    /// The ingestions, in dependency order.
    pub ingestions: Vec<LoadReport>,
}

static UPLOADS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

struct Part {
    table: Table,
    file_name: String,
    path: PathBuf,
}

/// Stores every part in the raw zone (`<table>/<UTC time>-<pid>-<n>.csv`), then loads them in
/// dependency order (departments, jobs, hired_employees), each file in its own transaction.
pub async fn upload(State(state): State<AppState>, mut multipart: Multipart) -> Result<Json<UploadResponse>, ApiError> {
    let mut parts: Vec<Part> = Vec::new();
    let received = receive(&state.settings.data_dir, &mut multipart, &mut parts).await;
    if let Err(error) = received {
        for part in &parts {
            let _ = tokio::fs::remove_file(&part.path).await;
        }
        return Err(error);
    }
    if parts.is_empty() {
        return Err(ApiError::bad_request(
            "no_file",
            "the upload holds no file: send multipart/form-data parts named departments, jobs or hired_employees",
        ));
    }
    parts.sort_by_key(|part| part.table);

    // Parts are staged in `<data dir>/raw`, the raw zone's default place. When the raw zone is
    // elsewhere (S3), each part is copied there before it is loaded, and the staged copy goes.
    let staging = state.settings.data_dir.join("raw");
    let remote_raw = state.zones.raw.url() != staging.display().to_string();
    if remote_raw {
        for part in &parts {
            let key = part.path.strip_prefix(&staging).unwrap_or(&part.path).to_string_lossy().into_owned();
            if let Err(error) = state.zones.raw.put_file(&key, &part.path).await {
                for part in &parts {
                    let _ = tokio::fs::remove_file(&part.path).await;
                }
                return Err(error.into());
            }
        }
    }

    // The loads run in their own task so that a client hanging up does not cancel a load
    // half-way; each load is one transaction either way.
    let (pool, zones) = (state.pool.clone(), state.zones.clone());
    let loads = tokio::spawn(async move {
        let mut reports = Vec::with_capacity(parts.len());
        for part in parts {
            let stored = part.path.strip_prefix(&staging).unwrap_or(&part.path).display().to_string();
            let source = format!("upload:{} ({}/{stored})", part.file_name, zones.raw.url());
            let file = std::fs::File::open(&part.path)?;
            let started = hiring::load::start_ingestion(&pool, part.table, &source).await?;
            let loaded = hiring::load::load_file(&pool, started, part.table, file, Some(&zones)).await;
            if remote_raw {
                let _ = tokio::fs::remove_file(&part.path).await;
            }
            reports.push(loaded?);
        }
        // A file load appends up to one rollup delta per key; fold them now so the metrics
        // stay fast (failure here loses nothing: the deltas stay until the next compaction).
        if let Err(error) = hiring::metrics::compact_rollup(&pool).await {
            tracing::warn!(%error, "could not compact the metrics rollup");
        }
        Ok::<_, hiring::error::Error>(reports)
    });
    let reports = loads.await.map_err(|e| ApiError::Internal(e.into()));
    // Even a failed upload may have committed its first files.
    state.metrics_cache.invalidate();
    let reports = reports??;
    Ok(Json(UploadResponse { ingestions: reports }))
}

async fn receive(data_dir: &Path, multipart: &mut Multipart, parts: &mut Vec<Part>) -> Result<(), ApiError> {
    while let Some(mut field) = multipart.next_field().await.map_err(multipart_error)? {
        let field_name = field.name().unwrap_or_default().to_owned();
        let file_name = field.file_name().unwrap_or_default().to_owned();
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
        let directory = data_dir.join("raw").join(table.name());
        tokio::fs::create_dir_all(&directory).await.map_err(|e| internal(e, &directory))?;
        // Time, process and a per-process counter make the name unique without coordination.
        let path = directory.join(format!(
            "{}-{}-{}.csv",
            chrono::Utc::now().format("%Y%m%dT%H%M%S%.6fZ"),
            std::process::id(),
            UPLOADS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
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

fn internal(error: std::io::Error, path: &Path) -> ApiError {
    ApiError::Internal(anyhow::Error::new(error).context(format!("could not write {}", path.display())))
}

fn multipart_error(error: MultipartError) -> ApiError {
    if error.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::PayloadTooLarge(format!(
            "the upload is over the server's limit (HIRING_MAX_UPLOAD_BYTES): {}; split the file or raise the limit",
            error.body_text()
        ))
    } else {
        ApiError::bad_request(
            "invalid_multipart",
            format!("the body is not valid multipart/form-data: {}", error.body_text()),
        )
    }
}
