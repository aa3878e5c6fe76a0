//! Storage zones: raw uploads, rejects, processed (Parquet) and backups (Avro).
//!
//! A zone is a URL: a local directory (a path or `file://` URL), or `s3://bucket/prefix`. S3
//! credentials and region come from the usual AWS environment (`AWS_ACCESS_KEY_ID`, …);
//! `AWS_ENDPOINT_URL_S3` or `AWS_ENDPOINT_URL` points it at an emulator (path-style requests,
//! plain HTTP allowed for `http://` endpoints).

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as Key;
use object_store::prefix::PrefixStore;
use object_store::{ObjectMeta, ObjectStore, PutPayload};

use crate::error::{Error, Result};

/// The four zones of the data flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZoneName {
    /// Files as uploaded.
    Raw,
    /// Rejected rows, one JSON-lines file per ingestion.
    Rejects,
    /// Accepted rows as Parquet.
    Processed,
    /// Avro backups of the tables.
    Backups,
}

impl ZoneName {
    /// Every zone.
    pub const ALL: [ZoneName; 4] = [ZoneName::Raw, ZoneName::Rejects, ZoneName::Processed, ZoneName::Backups];

    /// The zone's name, as in directory names and settings (`HIRING_<NAME>_URL`).
    pub fn name(self) -> &'static str {
        match self {
            ZoneName::Raw => "raw",
            ZoneName::Rejects => "rejects",
            ZoneName::Processed => "processed",
            ZoneName::Backups => "backups",
        }
    }
}

/// One zone: a store and where it points, for messages.
#[derive(Clone)]
pub struct Zone {
    store: Arc<dyn ObjectStore>,
    url: String,
}

impl std::fmt::Debug for Zone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Zone").field("url", &self.url).finish()
    }
}

impl Zone {
    /// Opens the zone at `url`: `s3://bucket[/prefix]`, `file:///dir`, or a directory path
    /// (created if missing).
    pub fn open(url: &str) -> Result<Zone> {
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(Error::Zone(format!("`{url}` names no bucket: use s3://bucket/prefix")));
            }
            let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
            let endpoint = std::env::var("AWS_ENDPOINT_URL_S3").or_else(|_| std::env::var("AWS_ENDPOINT_URL"));
            if let Ok(endpoint) = endpoint.as_deref()
                && !endpoint.is_empty()
            {
                builder = builder
                    .with_endpoint(endpoint)
                    .with_allow_http(endpoint.starts_with("http://"))
                    .with_virtual_hosted_style_request(false);
            }
            if std::env::var("AWS_DEFAULT_REGION").is_err() && std::env::var("AWS_REGION").is_err() {
                builder = builder.with_region("us-east-1");
            } else if let Ok(region) = std::env::var("AWS_REGION") {
                builder = builder.with_region(region);
            }
            let s3 = builder.build().map_err(|e| Error::Zone(format!("cannot open `{url}`: {e}")))?;
            let store: Arc<dyn ObjectStore> = match prefix.trim_matches('/') {
                "" => Arc::new(s3),
                prefix => Arc::new(PrefixStore::new(s3, prefix)),
            };
            return Ok(Zone { store, url: url.to_owned() });
        }
        let directory = url.strip_prefix("file://").unwrap_or(url);
        Zone::local(Path::new(directory))
    }

    /// A zone in a local directory, created if missing.
    pub fn local(directory: &Path) -> Result<Zone> {
        std::fs::create_dir_all(directory)?;
        let store = LocalFileSystem::new_with_prefix(directory)
            .map_err(|e| Error::Zone(format!("cannot open {}: {e}", directory.display())))?;
        Ok(Zone { store: Arc::new(store), url: directory.display().to_string() })
    }

    /// Where the zone is, for messages.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The underlying store, for streaming reads and writes.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// Writes an object whole.
    pub async fn put(&self, key: &str, bytes: impl Into<Bytes>) -> Result<()> {
        self.store.put(&Key::from(key), PutPayload::from(bytes.into())).await.map_err(|e| self.error(key, e))?;
        Ok(())
    }

    /// Reads an object whole.
    pub async fn get(&self, key: &str) -> Result<Bytes> {
        let object = self.store.get(&Key::from(key)).await.map_err(|e| self.error(key, e))?;
        object.bytes().await.map_err(|e| self.error(key, e))
    }

    /// An object's size, ETag and version, if it exists.
    pub async fn head(&self, key: &str) -> Result<Option<ObjectMeta>> {
        match self.store.head(&Key::from(key)).await {
            Ok(meta) => Ok(Some(meta)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.error(key, e)),
        }
    }

    /// The objects under `prefix`, by key.
    pub async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        let prefix = Key::from(prefix);
        let mut metas: Vec<ObjectMeta> =
            self.store.list(Some(&prefix)).try_collect().await.map_err(|e| self.error(prefix.as_ref(), e))?;
        metas.sort_by(|a, b| a.location.cmp(&b.location));
        Ok(metas)
    }

    fn error(&self, key: &str, error: object_store::Error) -> Error {
        match error {
            object_store::Error::NotFound { .. } => Error::ObjectNotFound(format!("{}/{key}", self.url)),
            other => Error::Zone(format!("{}/{key}: {other}", self.url)),
        }
    }
}

/// The four zones together.
#[derive(Debug, Clone)]
pub struct Zones {
    /// Files as uploaded.
    pub raw: Zone,
    /// Rejected rows.
    pub rejects: Zone,
    /// Accepted rows as Parquet.
    pub processed: Zone,
    /// Avro backups.
    pub backups: Zone,
}

impl Zones {
    /// Opens each zone at the URL `url_of` gives it.
    pub fn open(url_of: impl Fn(ZoneName) -> String) -> Result<Zones> {
        Ok(Zones {
            raw: Zone::open(&url_of(ZoneName::Raw))?,
            rejects: Zone::open(&url_of(ZoneName::Rejects))?,
            processed: Zone::open(&url_of(ZoneName::Processed))?,
            backups: Zone::open(&url_of(ZoneName::Backups))?,
        })
    }

    /// All four zones as subdirectories of one local directory.
    pub fn local(directory: &Path) -> Result<Zones> {
        Zones::open(|zone| directory.join(zone.name()).display().to_string())
    }
}
