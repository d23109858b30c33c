use lambda_runtime::{Error, service_fn};
use maestro_aws::lambda::LambdaFunction;
use sso_assignment_monitor_starter::{Deps, handle};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let deps = Deps::from_env().await?;
    lambda_runtime::run(service_fn(|event| handle(&deps, event))).await
}
