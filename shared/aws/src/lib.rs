//! The AWS side of Maestro: adapters that implement the domain's ports with the AWS SDK, the
//! SDK configuration, and the Lambda edge every function shares (environment, errors).

pub mod approvals;
pub mod discovery;
pub mod env;
pub mod http;
pub mod idempotency;
pub mod identity_center;
pub mod inventory;
pub mod lambda;
pub mod lease;
pub mod mail;
pub mod metrics;
pub mod notices;
pub mod organizations;
pub mod plan_store;
pub mod queues;
pub mod quota;
pub mod sdk_error;
pub mod secrets;
pub mod sign_in;
pub mod signing_keys;
pub mod snapshot;
pub mod sso;
pub mod sso_admin;
pub mod step_functions;
mod versioned;

pub use aws_config::SdkConfig;

/// The SDK configuration from the standard sources (`AWS_REGION`, `AWS_ENDPOINT_URL`, the
/// function's role). Load it once per cold start.
pub async fn load_sdk_config() -> SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await
}
