//! The AWS SDK configuration of the ops commands: the usual chain (environment, profile, SSO,
//! container or instance credentials; `AWS_REGION`/`AWS_PROFILE`), and `AWS_ENDPOINT_URL` for
//! an emulator. TLS is rustls with ring.
//!
//! Every command that acts on a stage calls [`connect`] first: it resolves the region and the
//! credentials and asks STS who they are (`GetCallerIdentity`, which needs no permission: "No
//! permissions are required to perform this operation", AWS STS API Reference), prints the
//! account, region and stage it will act on, and stops at once, in one line naming what to set,
//! when any of that is missing — before a venv is made or anything is built.

use std::error::Error as StdError;
use std::future::Future;

use anyhow::Context;
use aws_credential_types::provider::ProvideCredentials;
use aws_credential_types::provider::error::CredentialsError;
use stack::Stage;

/// The SDK configuration from the environment.
pub async fn config() -> aws_config::SdkConfig {
    use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
    let http = aws_smithy_http_client::Builder::new().tls_provider(Provider::Rustls(CryptoMode::Ring)).build_https();
    aws_config::defaults(aws_config::BehaviorVersion::latest()).http_client(http).load().await
}

/// Who a command acts as, and where.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The AWS account id.
    pub account: String,
    /// The caller's ARN (a user, or an assumed role's session).
    pub arn: String,
    /// The region the SDK calls.
    pub region: String,
}

/// The SDK configuration for acting on `stage`, once the region and credentials are known to
/// work; prints "acting on stage S: account A (ARN), region R" on stderr.
pub async fn connect(stage: Stage) -> anyhow::Result<aws_config::SdkConfig> {
    let sdk = config().await;
    let identity = identify(&sdk).await?;
    eprintln!("acting on stage {stage}: account {} ({}), region {}", identity.account, identity.arn, identity.region);
    Ok(sdk)
}

/// The identity `sdk` acts as, or one line saying what to set.
pub async fn identify(sdk: &aws_config::SdkConfig) -> anyhow::Result<Identity> {
    let region = sdk.region().map(ToString::to_string).context(
        "no AWS region: set AWS_REGION (or `region` in your AWS_PROFILE's section of ~/.aws/config) to the region of the stage",
    )?;
    let provider = sdk.credentials_provider().context("no AWS credentials provider is configured")?;
    if let Err(error) = provider.provide_credentials().await {
        anyhow::bail!("{}", credentials_problem(&error));
    }
    let identity = aws_sdk_sts::Client::new(sdk)
        .get_caller_identity()
        .send()
        .await
        .map_err(|error| crate::cfn::failed("STS GetCallerIdentity".to_owned(), &error))?;
    Ok(Identity {
        account: identity.account().unwrap_or_default().to_owned(),
        arn: identity.arn().unwrap_or_default().to_owned(),
        region,
    })
}

/// One line for credentials that could not be loaded.
fn credentials_problem(error: &CredentialsError) -> String {
    match error {
        CredentialsError::CredentialsNotLoaded(_) => "no AWS credentials: set AWS_PROFILE to a profile of ~/.aws/config \
             (run `aws sso login --profile P` first for SSO), or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, then run again"
            .to_owned(),
        CredentialsError::ProviderTimedOut(_) => {
            "loading the AWS credentials timed out: set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY".to_owned()
        }
        other => format!(
            "the AWS credentials could not be loaded: {}; check AWS_PROFILE and ~/.aws/config, then run again",
            causes(other)
        ),
    }
}

/// The error and its sources' messages, joined by ": ", each said once.
pub fn causes(error: &(dyn StdError + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(error);
    while let Some(error) = next {
        let text = error.to_string();
        if !text.is_empty() && !parts.iter().any(|part| part.contains(&text)) {
            parts.push(text);
        }
        next = error.source();
    }
    parts.join(": ")
}

/// Runs an ops command's async body on a small runtime.
pub fn block_on<T>(future: impl Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("could not start the async runtime")?
        .block_on(future)
}
