//! Presigned S3 requests: SigV4 in the query string, with AWS's own signer (`aws-sigv4`), so a
//! client puts a file (or one part of a multipart upload) into a zone without credentials of
//! its own (https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-query-string-auth.html).
//!
//! Unlike object_store's `Signer`, which signs the host only, this signs `Content-Length` when it
//! is known, so S3 refuses a body of any other size, and takes the query a part upload needs
//! (`partNumber`, `uploadId`).

use std::time::{Duration, SystemTime};

use aws_sigv4::http_request::{
    PercentEncodingMode, SignableBody, SignableRequest, SignatureLocation, SigningSettings, UriPathNormalizationMode,
    sign,
};
use aws_sigv4::sign::v4;

use crate::error::{Error, Result};

/// What to sign.
pub(crate) struct Presign<'a> {
    /// The object's URL, without a query (as object_store addresses it: endpoint, path style).
    pub url: &'a str,
    /// The query the request needs, unencoded (a part upload's `partNumber` and `uploadId`).
    pub query: Vec<(&'a str, String)>,
    /// The body's exact size, signed when given.
    pub content_length: Option<u64>,
    pub region: &'a str,
    pub key_id: &'a str,
    pub secret_key: &'a str,
    pub token: Option<&'a str>,
    pub expires_in: Duration,
    pub time: SystemTime,
}

/// RFC 3986's unreserved characters stay; everything else is `%XX`, as SigV4 encodes a query.
pub(crate) fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// The presigned URL of a `PUT`.
pub(crate) fn put(request: &Presign<'_>) -> Result<String> {
    let host = request
        .url
        .split_once("://")
        .and_then(|(_, rest)| rest.split('/').next())
        .ok_or_else(|| Error::Zone(format!("`{}` is not an object URL", request.url)))?
        .to_owned();
    let mut url = request.url.to_owned();
    for (i, (name, value)) in request.query.iter().enumerate() {
        url.push(if i == 0 { '?' } else { '&' });
        url.push_str(&format!("{name}={}", encode(value)));
    }
    let identity = aws_credential_types::Credentials::new(
        request.key_id,
        request.secret_key,
        request.token.map(str::to_owned),
        None,
        "zone",
    )
    .into();
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(request.expires_in);
    // S3 takes the path as given, encoded once.
    settings.percent_encoding_mode = PercentEncodingMode::Single;
    settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(request.region)
        .name("s3")
        .time(request.time)
        .settings(settings)
        .build()
        .map_err(|e| Error::Zone(format!("cannot presign {url}: {e}")))?
        .into();
    let length = request.content_length.map(|n| n.to_string());
    let mut headers = vec![("host", host.as_str())];
    if let Some(length) = &length {
        headers.push(("content-length", length.as_str()));
    }
    let signable = SignableRequest::new("PUT", &url, headers.into_iter(), SignableBody::UnsignedPayload)
        .map_err(|e| Error::Zone(format!("cannot presign {url}: {e}")))?;
    let (instructions, _) =
        sign(signable, &params).map_err(|e| Error::Zone(format!("cannot presign {url}: {e}")))?.into_parts();
    for (name, value) in instructions.params() {
        url.push(if url.contains('?') { '&' } else { '?' });
        url.push_str(&format!("{name}={}", encode(value)));
    }
    Ok(url)
}
