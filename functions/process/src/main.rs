//! The process Lambda function: see `hiring_functions::process`.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    hiring_functions::run(hiring_functions::process).await
}
