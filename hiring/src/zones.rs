//! Storage zones: raw uploads, rejects, processed (Parquet) and backups (Avro).
//!
//! A zone is a URL: a local directory (a path or `file://` URL), or `s3://bucket/prefix`. S3
//! credentials and region come from the usual AWS environment (`AWS_ACCESS_KEY_ID`, …);
//! `AWS_ENDPOINT_URL_S3` or `AWS_ENDPOINT_URL` points it at an emulator (path-style requests,
//! plain HTTP allowed for `http://` endpoints).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as Key;
use object_store::prefix::PrefixStore;
use object_store::{ObjectMeta, ObjectStore, PutPayload};

use crate::error::{Error, Result};
use crate::settings::AwsSettings;

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
    /// The bucket's store, the zone's key prefix and the region, when the zone is on S3 (for
    /// presigning and multipart uploads).
    s3: Option<S3Zone>,
    /// The directory, when the zone is local.
    directory: Option<std::path::PathBuf>,
}

#[derive(Clone)]
struct S3Zone {
    store: Arc<object_store::aws::AmazonS3>,
    prefix: String,
    region: String,
}

impl S3Zone {
    /// `key`'s path in the bucket.
    fn path(&self, key: &str) -> Key {
        if self.prefix.is_empty() { Key::from(key) } else { Key::from(format!("{}/{key}", self.prefix)) }
    }
}

/// One part of a multipart upload a client puts itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresignedPart {
    /// Its number, from 1.
    pub number: u32,
    /// Its exact size (all parts but the last are the same).
    pub bytes: u64,
    /// Where to `PUT` it.
    pub url: String,
}

impl std::fmt::Debug for Zone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Zone").field("url", &self.url).finish()
    }
}

impl Zone {
    /// Opens the zone at `url`: `s3://bucket[/prefix]`, `file:///dir`, or a directory path
    /// (created if missing). S3 settings come from the process environment.
    pub fn open(url: &str) -> Result<Zone> {
        Zone::open_with(url, |name| std::env::var(name).ok())
    }

    /// Like [`Zone::open`], with the AWS settings ([`AwsSettings`]) and
    /// `HIRING_STORE_MAX_RETRIES` taken from `lookup` over the environment's,
    /// so callers (and tests) can point zones at an emulator without touching the process
    /// environment. Everything else (container or web-identity credentials) still comes from
    /// the environment.
    pub fn open_with(url: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<Zone> {
        let Some(rest) = url.strip_prefix("s3://") else {
            let directory = url.strip_prefix("file://").unwrap_or(url);
            return Zone::local(Path::new(directory));
        };
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(Error::Zone(format!("`{url}` names no bucket: use s3://bucket/prefix")));
        }
        let setting = |name: &str| lookup(name).filter(|v| !v.is_empty());
        let mut aws = AwsSettings::from_lookup(setting);
        let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
        if let Some(credentials) = aws.credentials.take() {
            builder = builder
                .with_access_key_id(credentials.access_key_id)
                .with_secret_access_key(credentials.secret_access_key);
            if let Some(token) = credentials.session_token {
                builder = builder.with_token(token);
            }
        }
        let region = aws.region.clone().unwrap_or_else(|| "us-east-1".into());
        builder = builder.with_region(region.clone());
        if let Some(endpoint) = aws.s3_endpoint() {
            builder = builder
                .with_allow_http(endpoint.starts_with("http://"))
                .with_endpoint(endpoint)
                .with_virtual_hosted_style_request(false);
        }
        // object_store retries transient failures itself (10 times within 3 minutes by default);
        // `HIRING_STORE_MAX_RETRIES` bounds that (tests set 0 to see the first answer).
        if let Some(retries) = setting("HIRING_STORE_MAX_RETRIES") {
            let max_retries = retries
                .parse()
                .map_err(|_| Error::Zone(format!("HIRING_STORE_MAX_RETRIES `{retries}` is not a number")))?;
            builder = builder.with_retry(object_store::RetryConfig { max_retries, ..Default::default() });
        }
        let s3 = Arc::new(builder.build().map_err(|e| Error::Zone(format!("cannot open `{url}`: {e}")))?);
        let prefix = prefix.trim_matches('/').to_owned();
        let whole: Arc<dyn ObjectStore> = s3.clone();
        let store: Arc<dyn ObjectStore> = match prefix.as_str() {
            "" => whole,
            prefix => Arc::new(PrefixStore::new(whole, prefix)),
        };
        Ok(Zone { store, url: url.to_owned(), s3: Some(S3Zone { store: s3, prefix, region }), directory: None })
    }

    /// A zone in a local directory, created if missing.
    pub fn local(directory: &Path) -> Result<Zone> {
        std::fs::create_dir_all(directory)?;
        let store = LocalFileSystem::new_with_prefix(directory)
            .map_err(|e| Error::Zone(format!("cannot open {}: {e}", directory.display())))?;
        Ok(Zone {
            store: Arc::new(store),
            url: directory.display().to_string(),
            s3: None,
            directory: Some(directory.to_owned()),
        })
    }

    /// Where the zone is, for messages.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Whether the zone is the local directory `directory`, however either is spelled (`.`,
    /// `..`, symbolic links, a trailing slash): both resolved to their canonical paths.
    pub fn is_directory(&self, directory: &Path) -> bool {
        let Some(own) = &self.directory else { return false };
        match (std::fs::canonicalize(own), std::fs::canonicalize(directory)) {
            (Ok(own), Ok(other)) => own == other,
            _ => false,
        }
    }

    /// Whether the zone is on S3 (else it is a local directory).
    pub fn is_s3(&self) -> bool {
        self.s3.is_some()
    }

    /// A URL that lets whoever holds it `PUT` the object `key`, of exactly `bytes` bytes, for
    /// `expires_in`, signed with the zone's credentials (S3's query-string SigV4:
    /// https://docs.aws.amazon.com/AmazonS3/latest/userguide/PresignedUrlUploadObject.html);
    /// `None` for a local zone. A URL signed with temporary credentials (a task or function
    /// role) stops working when they expire, whichever comes first.
    pub async fn presigned_put(&self, key: &str, bytes: u64, expires_in: Duration) -> Result<Option<String>> {
        let Some(s3) = &self.s3 else { return Ok(None) };
        self.presign(s3, key, Vec::new(), bytes, expires_in).await.map(Some)
    }

    /// Starts a multipart upload of `key`, `bytes` long in parts of `part_bytes` (the last one
    /// shorter), and presigns each part's `PUT`; `None` for a local zone. The client puts the
    /// parts, then [`Zone::complete_multipart`] assembles them with their ETags
    /// (https://docs.aws.amazon.com/AmazonS3/latest/userguide/mpuoverview.html).
    pub async fn presigned_multipart(
        &self,
        key: &str,
        bytes: u64,
        part_bytes: u64,
        expires_in: Duration,
    ) -> Result<Option<(String, Vec<PresignedPart>)>> {
        use object_store::multipart::MultipartStore;
        let Some(s3) = &self.s3 else { return Ok(None) };
        let upload_id = s3.store.create_multipart(&s3.path(key)).await.map_err(|e| self.error(key, e))?;
        let count = bytes.div_ceil(part_bytes.max(1)).max(1);
        let mut parts = Vec::new();
        for index in 0..count {
            let number = u32::try_from(index + 1).map_err(|_| Error::Zone(format!("{count} parts are too many")))?;
            let size = part_bytes.min(bytes - index * part_bytes);
            let query = vec![("partNumber", number.to_string()), ("uploadId", upload_id.clone())];
            let url = self.presign(s3, key, query, size, expires_in).await?;
            parts.push(PresignedPart { number, bytes: size, url });
        }
        Ok(Some((upload_id, parts)))
    }

    /// Assembles the multipart upload `upload_id` of `key` from its parts' ETags, in part
    /// order; S3 then emits the object's Object Created event.
    pub async fn complete_multipart(&self, key: &str, upload_id: &str, etags: Vec<String>) -> Result<()> {
        use object_store::multipart::{MultipartStore, PartId};
        let Some(s3) = &self.s3 else {
            return Err(Error::Zone(format!("{} is not on S3: it takes no multipart upload", self.url)));
        };
        let parts = etags.into_iter().map(|content_id| PartId { content_id }).collect();
        s3.store
            .complete_multipart(&s3.path(key), &upload_id.to_owned(), parts)
            .await
            .map_err(|e| self.error(key, e))?;
        Ok(())
    }

    async fn presign(
        &self,
        s3: &S3Zone,
        key: &str,
        query: Vec<(&str, String)>,
        bytes: u64,
        expires_in: Duration,
    ) -> Result<String> {
        use object_store::signer::Signer;
        // The object's URL as the store addresses it (endpoint, path style), without its query.
        let addressed =
            s3.store.signed_url(http::Method::PUT, &s3.path(key), expires_in).await.map_err(|e| self.error(key, e))?;
        let url = addressed.as_str().split('?').next().unwrap_or_default();
        let credential = s3.store.credentials().get_credential().await.map_err(|e| self.error(key, e))?;
        crate::presign::put(&crate::presign::Presign {
            url,
            query,
            content_length: Some(bytes),
            region: &s3.region,
            key_id: &credential.key_id,
            secret_key: &credential.secret_key,
            token: credential.token.as_deref(),
            expires_in,
            time: std::time::SystemTime::now(),
        })
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

    /// Writes a local file as an object, streaming it in parts (multipart on S3), so memory
    /// stays bounded whatever the file's size.
    pub async fn put_file(&self, key: &str, file: &Path) -> Result<()> {
        use tokio::io::AsyncReadExt;
        let mut source = tokio::fs::File::open(file).await?;
        let upload = self.store.put_multipart(&Key::from(key)).await.map_err(|e| self.error(key, e))?;
        // S3's smallest part (5 MiB) and at most two parts in flight keep memory near 15 MiB.
        let mut writer = object_store::WriteMultipart::new_with_chunk_size(upload, 5 << 20);
        let mut buffer = vec![0u8; 1 << 20];
        loop {
            let read = source.read(&mut buffer).await?;
            if read == 0 {
                break;
            }
            writer.wait_for_capacity(2).await.map_err(|e| self.error(key, e))?;
            writer.write(&buffer[..read]);
        }
        writer.finish().await.map_err(|e| self.error(key, e))?;
        Ok(())
    }

    /// Deletes an object (missing is fine).
    pub async fn delete(&self, key: &str) -> Result<()> {
        match self.store.delete(&Key::from(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.error(key, e)),
        }
    }

    /// Moves the object `from` to `to` (a copy, then a delete: S3's CopyObject, which reads
    /// the source and writes the target).
    pub async fn promote(&self, from: &str, to: &str) -> Result<()> {
        self.store.copy(&Key::from(from), &Key::from(to)).await.map_err(|e| self.error(from, e))?;
        self.delete(from).await
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

    /// The domain's error for a failed call about `key`: a missing object, a missing bucket
    /// (S3's `NoSuchBucket`, which object_store reports as not found too), or the store's
    /// error with its location.
    pub(crate) fn error(&self, key: &str, error: object_store::Error) -> Error {
        let location = format!("{}/{key}", self.url);
        match error {
            object_store::Error::NotFound { source, .. } if mentions(source.as_ref(), "NoSuchBucket") => {
                Error::BucketNotFound { location }
            }
            object_store::Error::NotFound { .. } => Error::ObjectNotFound(location),
            source => Error::Store { location, source },
        }
    }

    /// The same for an I/O error of a writer over the store (`object_store::buffered`), which
    /// carries the store's error inside.
    pub(crate) fn io_error(&self, key: &str, error: std::io::Error) -> Error {
        match error.into_inner().map(|inner| inner.downcast::<object_store::Error>()) {
            Some(Ok(store)) => self.error(key, *store),
            Some(Err(other)) => self.error(key, object_store::Error::Generic { store: "zone", source: other }),
            None => Error::Store {
                location: format!("{}/{key}", self.url),
                source: object_store::Error::Generic {
                    store: "zone",
                    source: "the write failed without a cause".into(),
                },
            },
        }
    }
}

/// Whether `error` or one of its sources says `text`.
fn mentions(error: &(dyn std::error::Error + 'static), text: &str) -> bool {
    let mut next = Some(error);
    while let Some(error) = next {
        if error.to_string().contains(text) {
            return true;
        }
        next = error.source();
    }
    false
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
    /// Opens each zone at the URL `url_of` gives it, with AWS settings from `lookup` (see
    /// [`Zone::open_with`]).
    pub fn open(url_of: impl Fn(ZoneName) -> String, lookup: impl Fn(&str) -> Option<String>) -> Result<Zones> {
        let open = |zone| Zone::open_with(&url_of(zone), &lookup);
        Ok(Zones {
            raw: open(ZoneName::Raw)?,
            rejects: open(ZoneName::Rejects)?,
            processed: open(ZoneName::Processed)?,
            backups: open(ZoneName::Backups)?,
        })
    }

    /// All four zones as subdirectories of one local directory.
    pub fn local(directory: &Path) -> Result<Zones> {
        Zones::open(|zone| directory.join(zone.name()).display().to_string(), |_| None)
    }
}

/// A name for a new object, unique without coordination between processes and tasks: its UTC
/// time to the microsecond (so names sort by time as text), then a UUIDv7, e.g.
/// `20261204T180253.123456Z-0193a1b2-…`. Process ids and counters are not enough: every Fargate
/// task is PID 1.
pub fn unique_name() -> String {
    format!("{}-{}", chrono::Utc::now().format("%Y%m%dT%H%M%S%.6fZ"), uuid::Uuid::now_v7())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s3_zone() -> (Zone, S3Zone) {
        let vars = [
            ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
            ("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"),
            ("AWS_SESSION_TOKEN", "session/token+with=odd&chars"),
            ("AWS_REGION", "eu-west-1"),
            ("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9"),
        ];
        let zone = Zone::open_with("s3://raw-bucket/zone", |name| {
            vars.iter().find(|(n, _)| *n == name).map(|(_, v)| (*v).to_owned())
        })
        .expect("an S3 zone");
        let s3 = zone.s3.clone().expect("on S3");
        (zone, s3)
    }

    fn query(url: &str, name: &str) -> String {
        url.split(['?', '&']).find_map(|pair| pair.strip_prefix(&format!("{name}="))).unwrap_or_default().to_owned()
    }

    /// Two independent SigV4 implementations agree: the presigner (aws-sigv4) signs a plain
    /// `PUT` exactly as object_store's own signer does, at the same instant.
    #[tokio::test]
    async fn the_presigner_signs_as_object_store_does() {
        use object_store::signer::Signer;
        let (_zone, s3) = s3_zone();
        let theirs = s3
            .store
            .signed_url(http::Method::PUT, &s3.path("hired_employees/1.csv"), Duration::from_secs(3600))
            .await
            .unwrap()
            .to_string();
        let date = query(&theirs, "X-Amz-Date");
        let time = chrono::NaiveDateTime::parse_from_str(&date, "%Y%m%dT%H%M%SZ").unwrap().and_utc();
        let credential = s3.store.credentials().get_credential().await.unwrap();
        let ours = crate::presign::put(&crate::presign::Presign {
            url: theirs.split('?').next().unwrap(),
            query: Vec::new(),
            content_length: None,
            region: &s3.region,
            key_id: &credential.key_id,
            secret_key: &credential.secret_key,
            token: credential.token.as_deref(),
            expires_in: Duration::from_secs(3600),
            time: time.into(),
        })
        .unwrap();
        assert!(ours.starts_with("http://127.0.0.1:9/raw-bucket/zone/hired_employees/1.csv?"), "{ours}");
        assert_eq!(query(&ours, "X-Amz-Signature"), query(&theirs, "X-Amz-Signature"), "{ours}\n{theirs}");
    }

    #[tokio::test]
    async fn presigned_urls_sign_the_size_and_a_part_s_query() {
        let (zone, s3) = s3_zone();
        let put = zone.presigned_put("jobs/1.csv", 1234, Duration::from_secs(600)).await.unwrap().unwrap();
        assert_eq!(query(&put, "X-Amz-SignedHeaders"), "content-length%3Bhost", "{put}");
        assert_eq!(query(&put, "X-Amz-Expires"), "600");
        assert!(!query(&put, "X-Amz-Security-Token").is_empty(), "the session token travels with the URL");
        let part = zone
            .presign(
                &s3,
                "jobs/1.csv",
                vec![("partNumber", "2".into()), ("uploadId", "a/b+c=".into())],
                5,
                Duration::from_secs(60),
            )
            .await
            .unwrap();
        assert_eq!((query(&part, "partNumber"), query(&part, "uploadId")), ("2".to_owned(), "a%2Fb%2Bc%3D".to_owned()));
        assert!(zone.presigned_put("x", 1, Duration::from_secs(1)).await.unwrap().is_some());
        let local = Zone::local(&std::env::temp_dir().join("hiring-presign-test")).unwrap();
        assert!(local.presigned_put("x", 1, Duration::from_secs(1)).await.unwrap().is_none());
    }
}
