//! The validate Lambda function: see `hiring_functions::validate_function`.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    hiring_functions::run(hiring_functions::validate_function).await
}
