//! `cargo xtask upload [--stage S | --url URL] FILE…`: uploads CSV files to a running API the
//! way that fits their size, shows the progress, waits for the pipeline, and prints the
//! ingestion reports.
//!
//! Small files (together under [`DIRECT_MAX_BYTES`]) go in one `POST /upload`; larger ones
//! through the presigned flow: `POST /uploads` answers a URL per file, each file is `PUT` there
//! (straight to S3 in AWS, past API Gateway's 10 MB payload quota), in dependency order, each
//! after the previous file's ingestion finished, so hires meet their departments and jobs.
//!
//! With `--stage`, the API's URL is the stack's `ApiUrl` output and the write token is read from
//! the stack's token secret (`ApiTokenSecretArn`); with `--url`, the token is `--token` or
//! `HIRING_API_TOKEN`. A file's table is its name (`hired_employees.csv`), or `TABLE=FILE`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use clap::Args;
use serde_json::{Value, json};
use stack::Stage;

use crate::{aws, cfn};

/// Files together up to this size go through `POST /upload`; above, through presigned URLs.
/// Under the API's 9 MiB limit behind API Gateway (`stack::GATEWAY_UPLOAD_BYTES`), with room
/// for the multipart framing.
pub const DIRECT_MAX_BYTES: u64 = 8 * 1024 * 1024;

#[derive(Args)]
pub struct Upload {
    /// The stage whose API to upload to (its URL and token come from the stack).
    #[arg(long, conflicts_with = "url")]
    stage: Option<Stage>,
    /// The API's URL, e.g. http://127.0.0.1:8080 (`cargo xtask dev`).
    #[arg(long, required_unless_present = "stage")]
    url: Option<String>,
    /// A write token (default: HIRING_API_TOKEN; with --stage, the stack's).
    #[arg(long, env = "HIRING_API_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Always use presigned URLs, whatever the size.
    #[arg(long)]
    presigned: bool,
    /// How long to wait for each file's ingestion to finish.
    #[arg(long, default_value = "30m", value_parser = parse_duration)]
    wait: Duration,
    /// The files: `departments.csv`, `jobs.csv`, `hired_employees.csv`, or `TABLE=PATH`.
    #[arg(required = true)]
    files: Vec<String>,
}

pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len()));
    let number: u64 = number.parse().map_err(|_| format!("`{text}` is not a duration such as 90s, 30m or 2h"))?;
    match unit {
        "s" | "" => Ok(Duration::from_secs(number)),
        "m" => Ok(Duration::from_secs(number * 60)),
        "h" => Ok(Duration::from_secs(number * 3600)),
        "d" => Ok(Duration::from_secs(number * 86_400)),
        _ => Err(format!("`{text}` is not a duration such as 90s, 30m or 2h")),
    }
}

/// A file to upload and its table.
#[derive(Debug, Clone)]
pub struct File {
    /// `departments`, `jobs` or `hired_employees`.
    pub table: String,
    /// Where it is.
    pub path: PathBuf,
    /// Its size.
    pub bytes: u64,
}

const TABLES: [&str; 3] = ["departments", "jobs", "hired_employees"];

impl File {
    /// `TABLE=PATH`, or a path whose file name names the table.
    pub fn parse(argument: &str) -> anyhow::Result<File> {
        let (table, path) = match argument.split_once('=') {
            Some((table, path)) if TABLES.contains(&table) => (table.to_owned(), PathBuf::from(path)),
            _ => {
                let path = PathBuf::from(argument);
                let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
                let table = TABLES.iter().find(|t| stem == **t).with_context(|| {
                    format!("`{argument}` names no table: call the file departments.csv, jobs.csv or hired_employees.csv, or write TABLE=PATH")
                })?;
                ((*table).to_owned(), path)
            }
        };
        let bytes = std::fs::metadata(&path).with_context(|| format!("cannot read {}", path.display()))?.len();
        Ok(File { table, path, bytes })
    }
}

impl Upload {
    pub fn run(self) -> anyhow::Result<()> {
        let mut files = self.files.iter().map(|f| File::parse(f)).collect::<anyhow::Result<Vec<_>>>()?;
        files.sort_by_key(|f| TABLES.iter().position(|t| *t == f.table));
        aws::block_on(async {
            let (url, token) = match (&self.stage, &self.url) {
                (Some(stage), _) => stage_api(*stage, self.token.clone()).await?,
                (None, Some(url)) => {
                    let token = self
                        .token
                        .clone()
                        .context("no write token: give --token or set HIRING_API_TOKEN (cargo xtask dev prints one)")?;
                    (url.trim_end_matches('/').to_owned(), token)
                }
                (None, None) => bail!("give --stage S or --url URL"),
            };
            let client = Client { http: reqwest::Client::new(), url, token, progress: true, wait: self.wait };
            let reports = client.upload(&files, self.presigned).await?;
            print_reports(&reports);
            let failed = reports.iter().filter(|r| r["status"] == "failed").count();
            ensure!(failed == 0, "{failed} of {} files failed: see the errors above", reports.len());
            Ok(())
        })
    }
}

/// The stage's API URL (the `ApiUrl` output) and a write token (given, or the stack's secret).
async fn stage_api(stage: Stage, token: Option<String>) -> anyhow::Result<(String, String)> {
    let sdk = aws::connect(stage).await?;
    let cloudformation = aws_sdk_cloudformation::Client::new(&sdk);
    let stack = cfn::describe(&cloudformation, &stage.stack_name()).await?.with_context(|| {
        format!("the stack {} does not exist: deploy it with cargo xtask deploy --stage {stage}", stage.stack_name())
    })?;
    let outputs = cfn::outputs(&stack);
    let url =
        outputs.get("ApiUrl").context("the stack has no ApiUrl output: redeploy it")?.trim_end_matches('/').to_owned();
    if let Some(token) = token {
        return Ok((url, token));
    }
    let arn = outputs
        .get("ApiTokenSecretArn")
        .context("the stack has no ApiTokenSecretArn output: redeploy it, or give --token")?;
    let secret = aws_sdk_secretsmanager::Client::new(&sdk)
        .get_secret_value()
        .secret_id(arn)
        .send()
        .await
        .map_err(|e| cfn::failed(format!("GetSecretValue {arn}"), &e))?;
    Ok((url, write_token(secret.secret_string().unwrap_or_default())?))
}

/// The first write token of the tokens secret's JSON (`{"write": "…"}` or `{"write": ["…"]}`).
pub fn write_token(json: &str) -> anyhow::Result<String> {
    let value: Value = serde_json::from_str(json).context("the API's tokens secret is not JSON")?;
    let token = match &value["write"] {
        Value::String(token) => Some(token.clone()),
        Value::Array(tokens) => tokens.last().and_then(Value::as_str).map(str::to_owned),
        _ => None,
    };
    token.context("the API's tokens secret holds no write token")
}

/// A client of one API.
pub struct Client {
    pub http: reqwest::Client,
    pub url: String,
    pub token: String,
    /// Progress bars on the terminal.
    pub progress: bool,
    /// How long to wait for each ingestion.
    pub wait: Duration,
}

impl Client {
    /// Uploads `files` (in dependency order) through the flow their size calls for, and returns
    /// each one's final ingestion report.
    pub async fn upload(&self, files: &[File], presigned: bool) -> anyhow::Result<Vec<Value>> {
        let total: u64 = files.iter().map(|f| f.bytes).sum();
        if presigned || total > DIRECT_MAX_BYTES { self.presigned(files).await } else { self.direct(files).await }
    }

    /// `POST /upload` with every file; waits for queued ingestions (stepfunctions mode).
    pub async fn direct(&self, files: &[File]) -> anyhow::Result<Vec<Value>> {
        let mut form = reqwest::multipart::Form::new();
        for file in files {
            let bytes =
                tokio::fs::read(&file.path).await.with_context(|| format!("cannot read {}", file.path.display()))?;
            let name = file.path.file_name().and_then(|n| n.to_str()).unwrap_or("file.csv").to_owned();
            form = form.part(file.table.clone(), reqwest::multipart::Part::bytes(bytes).file_name(name));
        }
        let response =
            self.http.post(format!("{}/upload", self.url)).bearer_auth(&self.token).multipart(form).send().await?;
        let body = answer(response, "POST /upload").await?;
        let mut reports = Vec::new();
        for ingestion in body["ingestions"].as_array().context("POST /upload listed no ingestions")? {
            reports.push(self.wait_for(ingestion["id"].as_i64().context("an ingestion without an id")?).await?);
        }
        Ok(reports)
    }

    /// `POST /uploads`, then each file `PUT` to its URL and waited for, in order.
    pub async fn presigned(&self, files: &[File]) -> anyhow::Result<Vec<Value>> {
        let uploads = self.announce(files).await?;
        let mut reports = Vec::new();
        for upload in uploads {
            let file = files.iter().find(|f| upload["table"] == f.table.as_str()).context("an upload of no file")?;
            match upload["parts"].as_array() {
                Some(parts) => {
                    let put = self.put_parts(file, parts).await?;
                    self.complete(&upload, put).await?;
                }
                None => self.put(file, upload["url"].as_str().context("an upload without a URL")?).await?,
            }
            reports.push(self.wait_for(upload["ingestion"].as_i64().context("an upload without an ingestion")?).await?);
        }
        Ok(reports)
    }

    /// `POST /uploads` for `files`: per file, its ingestion, key and presigned URL, in
    /// dependency order.
    pub async fn announce(&self, files: &[File]) -> anyhow::Result<Vec<Value>> {
        let announced: Vec<Value> = files
            .iter()
            .map(|f| {
                let name = f.path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
                json!({ "table": f.table, "bytes": f.bytes, "name": name })
            })
            .collect();
        let response = self
            .http
            .post(format!("{}/uploads", self.url))
            .bearer_auth(&self.token)
            .json(&json!({ "files": announced }))
            .send()
            .await?;
        let body = answer(response, "POST /uploads").await?;
        Ok(body["uploads"].as_array().context("POST /uploads answered no uploads")?.clone())
    }

    /// Streams `file` to a presigned URL with its `Content-Length` (S3 takes no chunked body).
    pub async fn put(&self, file: &File, url: &str) -> anyhow::Result<()> {
        let bar = self.bar(file.bytes, &format!("{} ({})", file.table, file.path.display()));
        self.put_range(file, url, 0, file.bytes, &bar, &format!("PUT {}", file.path.display())).await?;
        bar.finish();
        Ok(())
    }

    /// Puts a multipart upload's parts, each its slice of the file, to its presigned URL;
    /// returns each part's number and the ETag S3 answered, for [`Client::complete`].
    pub async fn put_parts(&self, file: &File, parts: &[Value]) -> anyhow::Result<Vec<Value>> {
        let bar = self.bar(file.bytes, &format!("{} ({}, {} parts)", file.table, file.path.display(), parts.len()));
        let mut offset = 0u64;
        let mut put = Vec::with_capacity(parts.len());
        for part in parts {
            let (number, bytes) =
                (part["number"].as_u64().unwrap_or_default(), part["bytes"].as_u64().unwrap_or_default());
            let url = part["url"].as_str().context("a part without a URL")?;
            let what = format!("PUT of part {number} of {}", file.path.display());
            let response = self.put_range(file, url, offset, bytes, &bar, &what).await?;
            let etag = response.headers().get(reqwest::header::ETAG).and_then(|v| v.to_str().ok());
            let etag = etag.with_context(|| format!("S3 answered part {number} without an ETag"))?;
            put.push(json!({ "number": number, "etag": etag }));
            offset += bytes;
        }
        ensure!(offset == file.bytes, "the parts cover {offset} of the file's {} bytes", file.bytes);
        bar.finish();
        Ok(put)
    }

    /// Streams `bytes` of `file` from `offset` to `url` with their `Content-Length`, counting
    /// them on `bar`; fails with S3's answer unless it is a success.
    async fn put_range(
        &self,
        file: &File,
        url: &str,
        offset: u64,
        bytes: u64,
        bar: &indicatif::ProgressBar,
        what: &str,
    ) -> anyhow::Result<reqwest::Response> {
        use futures_util::TryStreamExt;
        use tokio::io::{AsyncReadExt, AsyncSeekExt};
        let mut source =
            tokio::fs::File::open(&file.path).await.with_context(|| format!("cannot read {}", file.path.display()))?;
        source.seek(std::io::SeekFrom::Start(offset)).await?;
        let counted = bar.clone();
        let stream = tokio_util::io::ReaderStream::with_capacity(source.take(bytes), 1 << 20)
            .inspect_ok(move |chunk| counted.inc(chunk.len() as u64));
        let response = self
            .http
            .put(url)
            .header(reqwest::header::CONTENT_LENGTH, bytes)
            .body(reqwest::Body::wrap_stream(stream))
            .send()
            .await
            .with_context(|| format!("{what} failed"))?;
        let status = response.status();
        if !status.is_success() {
            let text = response.text().await.unwrap_or_default();
            bail!("{what} answered {status}: {}", text.trim());
        }
        Ok(response)
    }

    /// Asks the API to assemble a multipart upload from its parts (`POST /uploads/{id}/complete`).
    pub async fn complete(&self, upload: &Value, parts: Vec<Value>) -> anyhow::Result<()> {
        let path = upload["complete"].as_str().context("a multipart upload without its complete path")?;
        let response = self
            .http
            .post(format!("{}{path}", self.url))
            .bearer_auth(&self.token)
            .json(&json!({ "parts": parts }))
            .send()
            .await?;
        answer(response, &format!("POST {path}")).await.map(drop)
    }

    /// Polls `GET /ingestions/{id}` until it is final (succeeded, rejected, failed).
    pub async fn wait_for(&self, id: i64) -> anyhow::Result<Value> {
        let spinner = self.spinner(&format!("ingestion {id}"));
        let deadline = Instant::now() + self.wait;
        loop {
            let response =
                self.http.get(format!("{}/ingestions/{id}", self.url)).bearer_auth(&self.token).send().await?;
            let report = answer(response, &format!("GET /ingestions/{id}")).await?;
            let status = report["status"].as_str().unwrap_or_default().to_owned();
            spinner.set_message(format!("ingestion {id}: {status}, {} rows", report["rows"]));
            if matches!(status.as_str(), "succeeded" | "rejected" | "failed") {
                spinner.finish_and_clear();
                return Ok(report);
            }
            ensure!(
                Instant::now() < deadline,
                "ingestion {id} is still {status} after {:?}: follow it with GET /ingestions/{id}",
                self.wait
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    fn bar(&self, bytes: u64, what: &str) -> indicatif::ProgressBar {
        if !self.progress {
            return indicatif::ProgressBar::hidden();
        }
        let bar = indicatif::ProgressBar::new(bytes);
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}, {eta} left",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(what.to_owned());
        bar
    }

    fn spinner(&self, what: &str) -> indicatif::ProgressBar {
        if !self.progress {
            return indicatif::ProgressBar::hidden();
        }
        let spinner = indicatif::ProgressBar::new_spinner();
        spinner.set_message(what.to_owned());
        spinner.enable_steady_tick(Duration::from_millis(200));
        spinner
    }
}

/// The JSON of a successful answer, or an error with the API's own message.
async fn answer(response: reqwest::Response, what: &str) -> anyhow::Result<Value> {
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        let message = body["error"]["message"].as_str().map_or_else(|| body.to_string(), str::to_owned);
        bail!("{what} answered {status}: {message}");
    }
    Ok(body)
}

/// The reports as a table.
pub fn print_reports(reports: &[Value]) {
    println!(
        "{:>10}  {:<16} {:<10} {:>10} {:>10} {:>9} {:>10} {:>9}",
        "ingestion", "table", "status", "rows", "inserted", "updated", "unchanged", "rejected"
    );
    // serde_json's numbers ignore widths: each cell is made text first.
    let cell = |value: &Value| value.as_str().map_or_else(|| value.to_string(), str::to_owned);
    for r in reports {
        println!(
            "{:>10}  {:<16} {:<10} {:>10} {:>10} {:>9} {:>10} {:>9}",
            cell(&r["id"]),
            cell(&r["table"]),
            cell(&r["status"]),
            cell(&r["rows"]),
            cell(&r["inserted"]),
            cell(&r["updated"]),
            cell(&r["unchanged"]),
            cell(&r["rejected"])
        );
        if let Some(error) = r["error"].as_str() {
            println!("{:>10}  {error}", "");
        }
    }
}
