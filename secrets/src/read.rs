//! Reading a Secrets Manager secret with the AWS SDK.
//!
//! The credentials, region and endpoint are the caller's settings
//! (`hiring::settings::AwsSettings`: in Lambda and ECS, their environment), else the SDK's
//! default chain (the task's or function's role). TLS is rustls with ring.

use aws_sdk_secretsmanager::error::DisplayErrorContext;
use hiring::settings::AwsSettings;

use crate::ReadError;

/// The secret's string value. A missing secret or a refused read is not worth retrying;
/// anything else (throttling, the network) is.
pub async fn read(arn: &str, aws: &AwsSettings) -> Result<String, ReadError> {
    use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
    let http = aws_smithy_http_client::Builder::new().tls_provider(Provider::Rustls(CryptoMode::Ring)).build_https();
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest()).http_client(http);
    if let Some(credentials) = &aws.credentials {
        loader = loader.credentials_provider(aws_credential_types::Credentials::new(
            &credentials.access_key_id,
            &credentials.secret_access_key,
            credentials.session_token.clone(),
            None,
            "settings",
        ));
    }
    if let Some(region) = &aws.region {
        loader = loader.region(aws_config::Region::new(region.clone()));
    }
    if let Some(endpoint) = aws.secrets_manager_endpoint() {
        loader = loader.endpoint_url(endpoint);
    }
    let config = loader.load().await;
    let client = aws_sdk_secretsmanager::Client::new(&config);
    match client.get_secret_value().secret_id(arn).send().await {
        Ok(value) => value
            .secret_string()
            .map(str::to_owned)
            .ok_or_else(|| ReadError::fatal(format!("the secret {arn} has no string value"))),
        Err(error) => {
            let message = format!("could not read the secret {arn}: {}", DisplayErrorContext(&error));
            let fatal = error.as_service_error().is_some_and(|e| {
                e.is_resource_not_found_exception() || e.is_invalid_parameter_exception() || e.is_decryption_failure()
            }) || error.raw_response().is_some_and(|r| matches!(r.status().as_u16(), 400 | 403));
            Err(ReadError { retryable: !fatal, message })
        }
    }
}
