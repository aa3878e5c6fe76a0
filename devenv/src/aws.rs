//! Plain AWS API calls to the emulator, signed with SigV4 like the SDK's: for the few
//! inspections the tests make of services whose SDK crates would cost minutes of compile time
//! each for one or two calls (EC2, RDS, ELB, IAM, SNS, EventBridge, CloudWatch Logs).
//!
//! Two wire protocols cover them: AWS's query protocol (a form `POST` with `Action` and
//! `Version`, an XML answer: EC2, RDS, ELB, IAM, SNS) and the JSON protocol (`X-Amz-Target`,
//! JSON both ways: EventBridge, CloudWatch Logs). The requests are what the SDKs send, so an
//! emulator that checks signatures or IAM sees a real caller.

use std::time::SystemTime;

use anyhow::{Context, bail};
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use serde_json::Value;

use crate::moto::{Moto, REGION};

impl Moto {
    /// A query-protocol call (`Action=<action>&Version=<version>&<params>`) to `service` (its
    /// signing name: `ec2`, `rds`, `elasticloadbalancing`, `iam`, `sns`); the XML answer.
    pub async fn query(
        &self,
        service: &str,
        version: &str,
        action: &str,
        params: &[(&str, &str)],
    ) -> anyhow::Result<Xml> {
        let mut form = form_urlencoded(&[("Action", action), ("Version", version)]);
        for (name, value) in params {
            form.push('&');
            form.push_str(&form_urlencoded(&[(name, value)]));
        }
        let text = self.send(service, "application/x-www-form-urlencoded; charset=utf-8", None, form).await?;
        Ok(Xml(text))
    }

    /// A JSON-protocol call (`X-Amz-Target: <target>`, e.g. `Logs_20140328.DescribeLogGroups`)
    /// to `service` (its signing name: `logs`, `events`); the JSON answer.
    pub async fn json(&self, service: &str, target: &str, body: Value) -> anyhow::Result<Value> {
        let text = self.send(service, "application/x-amz-json-1.1", Some(target), body.to_string()).await?;
        if text.trim().is_empty() {
            // An operation without output (CreateLogGroup) may answer an empty body.
            return Ok(Value::Object(Default::default()));
        }
        serde_json::from_str(&text).with_context(|| format!("{target} answered no JSON: {text}"))
    }

    async fn send(
        &self,
        service: &str,
        content_type: &str,
        target: Option<&str>,
        body: String,
    ) -> anyhow::Result<String> {
        let url = format!("{}/", self.endpoint());
        let host = url.trim_start_matches("http://").trim_end_matches('/').to_owned();
        let mut headers = vec![("content-type", content_type.to_owned()), ("host", host)];
        if let Some(target) = target {
            headers.push(("x-amz-target", target.to_owned()));
        }
        let identity = Credentials::new(ACCESS_KEY, SECRET_KEY, None, None, "moto").into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(REGION)
            .name(service)
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .context("SigV4 parameters")?
            .into();
        let signable = SignableRequest::new(
            "POST",
            url.as_str(),
            headers.iter().map(|(name, value)| (*name, value.as_str())),
            SignableBody::Bytes(body.as_bytes()),
        )
        .context("a signable request")?;
        let (instructions, _) = sign(signable, &params).context("SigV4 signing")?.into_parts();
        let mut request = reqwest::Client::new().post(&url).body(body.clone());
        for (name, value) in &headers {
            request = request.header(*name, value);
        }
        for (name, value) in instructions.headers() {
            request = request.header(name, value);
        }
        let what = target.unwrap_or(service);
        let response = request.send().await.with_context(|| format!("{what}: the emulator did not answer"))?;
        let status = response.status();
        let text = response.text().await.with_context(|| format!("{what}: the answer could not be read"))?;
        if !status.is_success() {
            bail!("{what} answered {status}: {text}");
        }
        Ok(text)
    }
}

/// The emulator's credentials (moto takes any; `aws_env` hands the same to the programs it
/// runs).
const ACCESS_KEY: &str = "testing";
const SECRET_KEY: &str = "testing";

fn form_urlencoded(pairs: &[(&str, &str)]) -> String {
    use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
    // RFC 3986 unreserved characters stay as they are, as SigV4 canonicalizes them.
    const SET: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');
    pairs
        .iter()
        .map(|(name, value)| format!("{}={}", utf8_percent_encode(name, SET), utf8_percent_encode(value, SET)))
        .collect::<Vec<_>>()
        .join("&")
}

/// A query-protocol answer.
#[derive(Debug)]
pub struct Xml(pub String);

impl Xml {
    /// The text of every element named `name`, in document order (e.g. `cidrBlock`).
    pub fn texts(&self, name: &str) -> anyhow::Result<Vec<String>> {
        let document = roxmltree::Document::parse(&self.0).context("the answer is not XML")?;
        Ok(document
            .descendants()
            .filter(|node| node.has_tag_name(name))
            .map(|node| node.text().unwrap_or_default().trim().to_owned())
            .collect())
    }

    /// The text of the first element named `name`; an error naming the answer when none is.
    pub fn text(&self, name: &str) -> anyhow::Result<String> {
        self.texts(name)?.into_iter().next().with_context(|| format!("no <{name}> in {}", self.0))
    }

    /// The texts of the `leaf` elements under the `section` child of each element named `item`
    /// that has a `key` child with text `value`: e.g. the source group ids (`groupId`) of the
    /// ingress rules (`ipPermissions`) of the security group (`item`) whose `groupId` is X.
    pub fn texts_within(
        &self,
        item: &str,
        key: &str,
        value: &str,
        section: &str,
        leaf: &str,
    ) -> anyhow::Result<Vec<String>> {
        let document = roxmltree::Document::parse(&self.0).context("the answer is not XML")?;
        let mut texts = Vec::new();
        let matching = document
            .descendants()
            .filter(|node| node.has_tag_name(item))
            .filter(|node| node.children().any(|child| child.has_tag_name(key) && child.text() == Some(value)));
        for node in matching {
            for part in node.children().filter(|child| child.has_tag_name(section)) {
                texts.extend(
                    part.descendants()
                        .filter(|child| child.has_tag_name(leaf))
                        .map(|child| child.text().unwrap_or_default().trim().to_owned()),
                );
            }
        }
        Ok(texts)
    }
}
