//! Presigned uploads: files of any size go straight to the raw zone, past API Gateway's 10 MB
//! payload quota and 30 s timeout.
//!
//! `POST /uploads` names the files (table and size) and answers, per file, the ingestion to
//! follow, its key in the raw zone and a URL to `PUT` the file to before `expires_at`. On S3 the
//! URL is S3's own presigned URL: the bucket's Object Created event starts the state machine,
//! whose first step continues the announced ingestion. On a local raw zone (`cargo xtask dev`)
//! the URL points at this API, `PUT /uploads/{id}?bytes&expires&signature`, signed with a key
//! the process makes at start; the API stores the file and runs the steps itself, as the state
//! machine would. Either way `GET /ingestions/{id}` shows the outcome.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use hiring::ingestions::IngestionStatus;
use hiring::table::Table;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;

use super::{ApiPath, ApiQuery};
use crate::error::ApiError;
use crate::state::AppState;

/// The largest object one S3 `PUT` takes (5 GiB,
/// https://docs.aws.amazon.com/AmazonS3/latest/userguide/upload-objects.html); larger files are
/// multipart uploads.
pub const MAX_SINGLE_PUT_BYTES: u64 = 5 * 1024 * 1024 * 1024;
/// The largest object S3 stores (5 TiB) and the most parts an upload has (10,000)
/// (https://docs.aws.amazon.com/AmazonS3/latest/userguide/qfacts.html).
pub const MAX_OBJECT_BYTES: u64 = 5 * 1024 * 1024 * 1024 * 1024;
const MAX_PARTS: u64 = 10_000;
/// S3's smallest part but the last (5 MiB).
pub const MIN_PART_BYTES: u64 = 5 * 1024 * 1024;

/// The files to upload.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct UploadsRequest {
    /// One to three files, at most one per table.
    pub files: Vec<FileToUpload>,
}

/// A file to upload.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct FileToUpload {
    /// Its table.
    pub table: Table,
    /// Its size in bytes.
    pub bytes: u64,
    /// Its name on the client, kept in the ingestion's source.
    #[serde(default)]
    pub name: Option<String>,
}

/// Where to put each file.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UploadsResponse {
    /// One per file, in dependency order (departments, jobs, hired_employees): put them in this
    /// order, each after the previous one's ingestion finished, so hires meet their departments
    /// and jobs.
    pub uploads: Vec<PresignedUpload>,
}

/// Where and how to put one file.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PresignedUpload {
    /// The ingestion to follow with `GET /ingestions/{id}`; `awaiting_upload` until the file
    /// arrives.
    pub ingestion: i64,
    /// The table.
    pub table: Table,
    /// The object's key in the raw zone.
    pub key: String,
    /// Always `PUT`.
    pub method: String,
    /// Where to send the file's bytes, as the whole body (exactly the size announced); absent
    /// for a multipart upload.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// A file over the single-`PUT` size: its parts, each `PUT` to its URL (exactly its bytes,
    /// in order of the file); keep each answer's `ETag` header for `complete`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parts: Option<Vec<UploadPart>>,
    /// With `parts`: where to `POST` the parts' ETags once every part is put.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub complete: Option<String>,
    /// When the URLs stop working.
    pub expires_at: DateTime<Utc>,
}

/// One part of a multipart upload.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UploadPart {
    /// Its number, from 1.
    pub number: u32,
    /// Its size: the file's bytes from `(number - 1) × ` the first part's size.
    pub bytes: u64,
    /// Where to `PUT` it.
    pub url: String,
}

/// Announces files and answers a presigned `PUT` URL for each.
#[utoipa::path(
    post,
    path = "/uploads",
    tag = "ingest",
    security(("bearer" = [])),
    request_body(content = UploadsRequest, description = "The files: table and size in bytes"),
    responses(
        (status = 201, description = "One URL per file, in dependency order", body = UploadsResponse),
        (status = 400, description = "No file, too many, a table twice, or a malformed body", body = crate::openapi::ErrorBody),
        (status = 401, description = "No bearer token, or a wrong one", body = crate::openapi::ErrorBody),
        (status = 403, description = "A read token, or the server runs read-only", body = crate::openapi::ErrorBody),
        (status = 413, description = "A file over S3's 5 TiB object size", body = crate::openapi::ErrorBody),
        (status = 503, description = "The database is unavailable", body = crate::openapi::ErrorBody),
    )
)]
pub async fn announce(
    State(state): State<AppState>,
    headers: HeaderMap,
    request: Result<Json<UploadsRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<UploadsResponse>), ApiError> {
    let Json(mut request) = request.map_err(|e| {
        ApiError::bad_request(
            "invalid_json",
            format!("the body is not {{\"files\": [{{\"table\", \"bytes\"}}]}}: {}", e.body_text()),
        )
    })?;
    if request.files.is_empty() || request.files.len() > Table::LOAD_ORDER.len() {
        return Err(ApiError::bad_request("files", "name one to three files, at most one per table"));
    }
    request.files.sort_by_key(|file| file.table);
    if request.files.windows(2).any(|pair| pair[0].table == pair[1].table) {
        return Err(ApiError::bad_request("files", "name each table once: upload a table's rows as one file"));
    }
    if let Some(file) = request.files.iter().find(|f| f.bytes > MAX_OBJECT_BYTES) {
        return Err(ApiError::PayloadTooLarge(format!(
            "the {} file is {} bytes, over the 5 TiB S3 stores as one object: split it into smaller files",
            file.table, file.bytes
        )));
    }
    let url_lifetime = state.settings.deadlines.upload_expiry();
    let expires_at = Utc::now() + url_lifetime;
    let mut uploads = Vec::with_capacity(request.files.len());
    for file in request.files {
        let key = format!("{}/{}", file.table.name(), super::upload::new_file_name());
        let name = hiring::reject::storable(file.name.as_deref().unwrap_or(file.table.name())).into_owned();
        let source = format!("presigned:{name} ({}/{key})", state.zones.raw.url());
        let settings = &state.settings;
        let multipart = state.zones.raw.is_s3() && file.bytes > settings.multipart_above_bytes;
        if multipart {
            // Parts of the configured size, larger when the file would need over 10,000, in MiB.
            let mib = 1024 * 1024;
            let part_bytes = settings.multipart_part_bytes.max(file.bytes.div_ceil(MAX_PARTS).div_ceil(mib) * mib);
            let (upload_id, parts) = state
                .zones
                .raw
                .presigned_multipart(&key, file.bytes, part_bytes, url_lifetime)
                .await?
                .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("the raw zone is not on S3")))?;
            let ingestion = hiring::pipeline::expect(&state.pool, &key, &source, expires_at, Some(&upload_id)).await?;
            let parts =
                parts.into_iter().map(|p| UploadPart { number: p.number, bytes: p.bytes, url: p.url }).collect();
            uploads.push(PresignedUpload {
                ingestion,
                table: file.table,
                key,
                method: "PUT".to_owned(),
                url: None,
                parts: Some(parts),
                complete: Some(format!("/uploads/{ingestion}/complete")),
                expires_at,
            });
            continue;
        }
        let ingestion = hiring::pipeline::expect(&state.pool, &key, &source, expires_at, None).await?;
        let url = match state.zones.raw.presigned_put(&key, file.bytes, url_lifetime).await? {
            Some(url) => url,
            None => {
                let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("127.0.0.1:8080");
                let expires = expires_at.timestamp();
                let signature = state.upload_signer.sign(ingestion, file.bytes, expires);
                format!(
                    "http://{host}/uploads/{ingestion}?bytes={}&expires={expires}&signature={signature}",
                    file.bytes
                )
            }
        };
        uploads.push(PresignedUpload {
            ingestion,
            table: file.table,
            key,
            method: "PUT".to_owned(),
            url: Some(url),
            parts: None,
            complete: None,
            expires_at,
        });
    }
    // One group: in the deployed pipeline the hires file waits for the departments and jobs
    // announced with it (hiring::pipeline::validate), whatever order the files arrive in.
    let ids: Vec<i64> = uploads.iter().map(|upload| upload.ingestion).collect();
    hiring::pipeline::group(&state.pool, &ids).await?;
    Ok((StatusCode::CREATED, Json(UploadsResponse { uploads })))
}

/// The parts of a multipart upload, as put.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct CompleteRequest {
    /// Every part, each with the `ETag` its `PUT` answered.
    pub parts: Vec<PutPart>,
}

/// A part as put.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct PutPart {
    /// Its number.
    pub number: u32,
    /// The `ETag` header S3 answered its `PUT` with.
    pub etag: String,
}

/// Assembles a multipart upload from its parts, once the client put every one; S3 then starts
/// the pipeline (the object's Object Created event).
#[utoipa::path(
    post,
    path = "/uploads/{id}/complete",
    tag = "ingest",
    security(("bearer" = [])),
    params(("id" = i64, Path, description = "The ingestion `POST /uploads` announced with parts")),
    request_body(content = CompleteRequest, description = "Every part's number and ETag"),
    responses(
        (status = 200, description = "Assembled; follow GET /ingestions/{id}", body = Stored),
        (status = 400, description = "A part missing, twice or out of range", body = crate::openapi::ErrorBody),
        (status = 404, description = "No multipart upload awaits its parts under this id", body = crate::openapi::ErrorBody),
        (status = 503, description = "The database or the store is unavailable", body = crate::openapi::ErrorBody),
    )
)]
pub async fn complete(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
    request: Result<Json<CompleteRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Stored>, ApiError> {
    let Json(mut request) = request.map_err(|e| {
        ApiError::bad_request(
            "invalid_json",
            format!("the body is not {{\"parts\": [{{\"number\", \"etag\"}}]}}: {}", e.body_text()),
        )
    })?;
    let Some((key, upload_id)) = hiring::pipeline::awaited_multipart(&state.pool, id).await? else {
        return Err(ApiError::NotFound(format!(
            "ingestion {id} awaits no multipart upload: it has none, or its file is already complete"
        )));
    };
    request.parts.sort_by_key(|part| part.number);
    if request.parts.is_empty() || request.parts.iter().enumerate().any(|(i, part)| part.number as usize != i + 1) {
        return Err(ApiError::bad_request("parts", "list every part once, numbered from 1 with none missing"));
    }
    let etags = request.parts.into_iter().map(|part| part.etag).collect();
    state.zones.raw.complete_multipart(&key, &upload_id, etags).await?;
    Ok(Json(Stored { ingestion: id, key }))
}

/// The signature of a local presigned URL.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct Signed {
    /// The most bytes the URL takes.
    bytes: u64,
    /// When it expires (Unix seconds).
    expires: i64,
    /// The API's signature of the ingestion, bytes and expiry.
    signature: String,
}

/// What a local presigned `PUT` answers.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Stored {
    /// The ingestion, to follow with `GET /ingestions/{id}`.
    pub ingestion: i64,
    /// Its key in the raw zone.
    pub key: String,
}

/// Takes the file of a presigned upload when the raw zone is local (the URL `POST /uploads`
/// answered), then runs the pipeline's steps on it in the background.
#[utoipa::path(
    put,
    path = "/uploads/{id}",
    tag = "ingest",
    params(("id" = i64, Path, description = "The ingestion `POST /uploads` announced"), Signed),
    request_body(content = String, content_type = "text/csv", description = "The file's bytes"),
    responses(
        (status = 200, description = "Stored; the steps run, follow GET /ingestions/{id}", body = Stored),
        (status = 403, description = "The signature is wrong or the URL expired", body = crate::openapi::ErrorBody),
        (status = 400, description = "The body is shorter than the size announced", body = crate::openapi::ErrorBody),
        (status = 409, description = "The file of this upload was already put", body = crate::openapi::ErrorBody),
        (status = 413, description = "More bytes than announced", body = crate::openapi::ErrorBody),
    )
)]
pub async fn put(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
    ApiQuery(signed): ApiQuery<Signed>,
    body: Body,
) -> Result<Json<Stored>, ApiError> {
    if !state.upload_signer.verify(id, signed.bytes, signed.expires, &signed.signature) {
        return Err(ApiError::Forbidden("the upload URL's signature is not valid: ask POST /uploads for a new URL"));
    }
    if signed.expires < Utc::now().timestamp() {
        return Err(ApiError::Forbidden("the upload URL expired: ask POST /uploads for a new one"));
    }
    let ingestion = hiring::ingestions::get(&state.pool, id).await?;
    if ingestion.status != IngestionStatus::AwaitingUpload {
        return Err(ApiError::Conflict {
            code: "already_uploaded",
            message: format!(
                "ingestion {id} is {}: its file was already put (follow GET /ingestions/{id}); to send a file again, \
                 announce a new upload with POST /uploads",
                ingestion.status
            ),
        });
    }
    let key = ingestion.object_key.clone().ok_or_else(|| ApiError::Internal(anyhow::anyhow!("no key on {id}")))?;
    let staging = state.settings.data_dir.join("staging");
    tokio::fs::create_dir_all(&staging).await.map_err(|e| ApiError::Internal(e.into()))?;
    // A file of this request's own, removed on every path: a failure, a refusal, or the request
    // dropped at its deadline (the temporary file goes with this future).
    let staged = tempfile::Builder::new()
        .prefix(&format!("{id}-"))
        .suffix(".csv")
        .tempfile_in(&staging)
        .map_err(|e| ApiError::Internal(e.into()))?;
    receive(body, staged.path(), signed.bytes).await?;
    // The first complete PUT takes the file; any other is refused.
    if hiring::lifecycle::Lifecycle::receive(&state.pool, id).await? == hiring::lifecycle::Moved::Lost {
        return Err(ApiError::Conflict {
            code: "already_uploaded",
            message: format!(
                "ingestion {id} already has its file (follow GET /ingestions/{id}); to send a file again, announce a \
                 new upload with POST /uploads"
            ),
        });
    }
    if let Err(error) = state.zones.raw.put_file(&key, staged.path()).await {
        let _ = hiring::lifecycle::Lifecycle::unreceive(&state.pool, id).await;
        return Err(error.into());
    }
    drop(staged);
    // No event follows a put into a local zone: the steps run here, holding a write permit
    // as long as they work.
    let steps = state.clone();
    let source = ingestion.source.clone();
    let file = key.clone();
    tokio::spawn(async move {
        let _permit = steps.write_permits.acquire().await;
        run_until_final(steps.clone(), id, file, source).await;
    });
    Ok(Json(Stored { ingestion: id, key }))
}

/// Runs the steps of a presigned upload's file as the state machine does on AWS: a hires file
/// waiting for the departments and jobs of its upload is retried for as long as the stage's
/// workflow wait; other retryable errors (a busy ingestion, an unreachable database) up to 5
/// times with growing delays. When the steps give up, the failure is recorded on the ingestion,
/// for good, as the workflow's failure path does.
async fn run_until_final(state: AppState, id: i64, file: String, source: String) {
    let wait = state.settings.deadlines.workflow_wait;
    let started = std::time::Instant::now();
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let error = match super::upload::run_steps(state.clone(), vec![(file.clone(), source.clone())]).await {
            Ok(_) => return,
            Err(error) => error,
        };
        let waiting = matches!(error, hiring::error::Error::Waiting { .. });
        let retry = if waiting { started.elapsed() < wait } else { error.is_retryable() && attempt < 5 };
        if retry {
            tracing::info!(%error, ingestion = id, attempt, "a step of a presigned upload is retried");
            let delay = std::time::Duration::from_millis(200 * 2u64.pow(attempt.min(4)));
            tokio::time::sleep(delay.min(std::time::Duration::from_secs(2))).await;
            continue;
        }
        tracing::warn!(%error, ingestion = id, "the steps of a presigned upload gave up");
        let reason = format!("the steps gave up on this file: {error}; send the file again, as a new upload");
        if let Err(error) = hiring::pipeline::fail(&state.pool, id, &reason).await {
            tracing::warn!(%error, ingestion = id, "could not record the failure; the sweep closes it at its deadline");
        }
        return;
    }
}

async fn receive(body: Body, path: &std::path::Path, limit: u64) -> Result<(), ApiError> {
    let mut file = tokio::fs::File::create(path).await.map_err(|e| ApiError::Internal(e.into()))?;
    let mut stream = body.into_data_stream();
    let mut written = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ApiError::bad_request("invalid_body", format!("the body ended early: {e}")))?;
        written += chunk.len() as u64;
        if written > limit {
            return Err(ApiError::PayloadTooLarge(format!(
                "the file is over the {limit} bytes announced to POST /uploads: announce its real size"
            )));
        }
        file.write_all(&chunk).await.map_err(|e| ApiError::Internal(e.into()))?;
    }
    if written < limit {
        return Err(ApiError::bad_request(
            "incomplete_body",
            format!(
                "the body holds {written} bytes but the upload announced {limit}: put the whole file (or announce its \
                 real size with POST /uploads)"
            ),
        ));
    }
    file.flush().await.map_err(|e| ApiError::Internal(e.into()))?;
    Ok(())
}

/// Signs and checks local presigned URLs with a key made at start (a restart voids them).
pub struct UploadSigner([u8; 32]);

impl UploadSigner {
    /// A signer with a fresh random key.
    pub fn new() -> Result<UploadSigner, getrandom::Error> {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key)?;
        Ok(UploadSigner(key))
    }

    fn mac(&self, id: i64, bytes: u64, expires: i64) -> [u8; 32] {
        use hmac::Mac;
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(format!("PUT /uploads/{id} {bytes} {expires}").as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// The signature of a URL for ingestion `id`, at most `bytes`, until `expires`.
    pub fn sign(&self, id: i64, bytes: u64, expires: i64) -> String {
        self.mac(id, bytes, expires).iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Whether `signature` is this signer's for the URL, compared in constant time.
    pub fn verify(&self, id: i64, bytes: u64, expires: i64, signature: &str) -> bool {
        use subtle::ConstantTimeEq;
        bool::from(self.sign(id, bytes, expires).as_bytes().ct_eq(signature.as_bytes()))
    }
}

impl std::fmt::Debug for UploadSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UploadSigner([redacted])")
    }
}
