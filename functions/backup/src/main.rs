//! The backup Lambda function: see `hiring_functions::backup`.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    hiring_functions::run(hiring_functions::backup).await
}
