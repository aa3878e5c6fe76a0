//! The AWS SDK configuration of the ops commands: the usual chain (environment, profile, SSO,
//! container or instance credentials; `AWS_REGION`/`AWS_PROFILE`), and `AWS_ENDPOINT_URL` for
//! an emulator. TLS is rustls with ring.

use std::future::Future;

use anyhow::Context;

/// The SDK configuration from the environment.
pub async fn config() -> aws_config::SdkConfig {
    use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
    let http = aws_smithy_http_client::Builder::new().tls_provider(Provider::Rustls(CryptoMode::Ring)).build_https();
    aws_config::defaults(aws_config::BehaviorVersion::latest()).http_client(http).load().await
}

/// Runs an ops command's async body on a small runtime.
pub fn block_on<T>(future: impl Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("could not start the async runtime")?
        .block_on(future)
}
