//! The Lambda edge shared by every function: how a function is built once and handles events,
//! and how its errors reach the caller.

use std::fmt;
use std::future::Future;

use lambda_runtime::{Diagnostic, LambdaEvent};
use maestro_domain::inventory::crawl::{CrawlError, ProviderError};
use maestro_domain::port::PortError;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::SdkConfig;
use crate::env::{EnvError, FunctionEnv};

/// A Maestro Lambda function: its dependencies, built once per cold start, and its handler.
///
/// `main.rs` builds it from the process environment and hands it to `lambda_runtime::run`; the
/// local host builds it from the template's environment and calls it in-process.
pub trait LambdaFunction: Sized + Send + Sync + 'static {
    type Event: DeserializeOwned + Send;
    type Response: Serialize + Send;
    type Error: Into<Diagnostic> + fmt::Display + fmt::Debug + Send;

    fn from_parts(config: &SdkConfig, env: &FunctionEnv) -> Result<Self, EnvError>;

    fn handle(
        &self,
        event: LambdaEvent<Self::Event>,
    ) -> impl Future<Output = Result<Self::Response, Self::Error>> + Send;

    /// The dependencies for a real Lambda: the standard SDK configuration and the process
    /// environment.
    fn from_env() -> impl Future<Output = Result<Self, EnvError>> + Send {
        async {
            let config = crate::load_sdk_config().await;
            Self::from_parts(&config, &FunctionEnv::from_process())
        }
    }
}

/// The error types a function reports. Step Functions `Retry` and `Catch` match on these
/// names, so they are part of the contract with `statemachines/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Throttling or a passing outage: retrying the same input can succeed.
    Transient,
    /// The input is malformed: retrying the same input never helps.
    InvalidInput,
    /// What the input names does not exist.
    NotFound,
    /// A service refused the call for a reason retrying will not change.
    Rejected,
}

impl ErrorKind {
    pub fn error_type(self) -> &'static str {
        match self {
            ErrorKind::Transient => "Transient",
            ErrorKind::InvalidInput => "InvalidInput",
            ErrorKind::NotFound => "NotFound",
            ErrorKind::Rejected => "Rejected",
        }
    }

    pub fn of_port_error(error: &PortError) -> Self {
        match error {
            PortError::Transient { .. } => ErrorKind::Transient,
            PortError::NotFound { .. } => ErrorKind::NotFound,
            PortError::Rejected { .. } => ErrorKind::Rejected,
        }
    }

    /// Throttling that outlasted the SDK's retries is worth the state machine's Retry; a
    /// denied, failed or malformed listing is not.
    pub fn of_crawl_error(error: &CrawlError) -> Self {
        match error {
            CrawlError::Provider {
                error: ProviderError::Throttled(_),
                ..
            } => ErrorKind::Transient,
            CrawlError::Store { error, .. } => ErrorKind::of_port_error(error),
            CrawlError::Provider { .. } | CrawlError::Entity { .. } => ErrorKind::Rejected,
        }
    }

    pub fn diagnostic(self, error: &impl fmt::Display) -> Diagnostic {
        Diagnostic {
            error_type: self.error_type().to_owned(),
            error_message: error.to_string(),
        }
    }
}
