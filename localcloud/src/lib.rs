//! The local cloud: Maestro on one machine, with no AWS account and no Docker.
//!
//! [`LocalCloud::start`] runs the emulator (moto, through `localcloud/moto/launcher.py`) and
//! the Lambda Invoke API; [`LocalCloud::deploy`] builds the stack that `infra/template.yaml`
//! describes and runs its functions in-process, fed by their event sources; [`LocalCloud::reset`]
//! empties everything so the next test starts clean.

pub mod error;
pub mod event_sources;
pub mod functions;
pub mod invoke;
pub mod moto;
pub mod seed;
pub mod stack;
pub mod template;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use aws_sdk_sqs::config::{Credentials, Region};
use maestro_aws::SdkConfig;
use serde_json::Value;

pub use error::LocalCloudError;
pub use stack::{Stack, StackSettings};
pub use template::Template;

use invoke::FunctionTable;
use moto::{Moto, MotoOptions};

/// How to start the local cloud.
#[derive(Debug, Clone)]
pub struct LocalCloudOptions {
    /// A Python with moto installed (see `make venv`).
    pub python: PathBuf,
    pub region: String,
    /// Port of the Lambda Invoke API; 0 picks a free one.
    pub lambda_port: u16,
    /// Status reads that answer IN_PROGRESS before an SSO assignment request settles.
    pub sso_polls_in_progress: u32,
}

impl Default for LocalCloudOptions {
    fn default() -> Self {
        LocalCloudOptions {
            python: moto::default_python(),
            region: "us-east-1".to_owned(),
            lambda_port: 0,
            sso_polls_in_progress: 1,
        }
    }
}

pub struct LocalCloud {
    moto: Moto,
    sdk_config: SdkConfig,
    region: String,
    lambda_endpoint: String,
    functions: FunctionTable,
    event_sources: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl LocalCloud {
    pub async fn start(options: LocalCloudOptions) -> Result<Self, LocalCloudError> {
        let functions = FunctionTable::default();
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", options.lambda_port)).await?;
        let lambda_endpoint = format!("http://{}", listener.local_addr()?);
        let router = invoke::router(functions.clone());
        tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, router).await {
                tracing::error!(%error, "the Lambda Invoke API stopped");
            }
        });
        let moto = Moto::start(&MotoOptions {
            python: options.python.clone(),
            launcher: moto::repository_root().join("localcloud/moto/launcher.py"),
            lambda_endpoint: lambda_endpoint.clone(),
            sso_polls_in_progress: options.sso_polls_in_progress,
        })
        .await?;
        let sdk_config = sdk_config_for(moto.endpoint(), &options.region).await;
        Ok(LocalCloud {
            moto,
            sdk_config,
            region: options.region,
            lambda_endpoint,
            functions,
            event_sources: Mutex::new(Vec::new()),
        })
    }

    /// SDK configuration that talks to the emulator, for tests, seeds and tools.
    pub fn sdk_config(&self) -> &SdkConfig {
        &self.sdk_config
    }

    pub fn moto_endpoint(&self) -> &str {
        self.moto.endpoint()
    }

    pub fn lambda_endpoint(&self) -> &str {
        &self.lambda_endpoint
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    /// Builds the template's stack and starts its functions' event sources.
    pub async fn deploy(
        &self,
        template: &Template,
        stack_name: &str,
        parameter_overrides: &BTreeMap<String, String>,
    ) -> Result<Stack, LocalCloudError> {
        let settings = StackSettings {
            stack_name: stack_name.to_owned(),
            region: self.region.clone(),
            moto_endpoint: self.moto.endpoint().to_owned(),
            parameters: template.parameters(parameter_overrides)?,
        };
        let stack = stack::deploy(template, settings, &self.sdk_config).await?;
        {
            let mut table = self
                .functions
                .write()
                .expect("the function table lock is never poisoned");
            table.extend(stack.functions.clone());
        }
        let sqs = aws_sdk_sqs::Client::new(&self.sdk_config);
        let mut sources = self
            .event_sources
            .lock()
            .expect("the event source list lock is never poisoned");
        for mapping in &stack.queue_mappings {
            let function = Arc::clone(&stack.functions[&mapping.function_name]);
            sources.push(event_sources::spawn_queue_mapping(
                sqs.clone(),
                mapping.clone(),
                function,
                self.region.clone(),
            ));
        }
        Ok(stack)
    }

    /// Stops every event source, forgets every function and empties the emulator.
    pub async fn reset(&self) -> Result<(), LocalCloudError> {
        for source in self
            .event_sources
            .lock()
            .expect("the event source list lock is never poisoned")
            .drain(..)
        {
            source.abort();
        }
        self.functions
            .write()
            .expect("the function table lock is never poisoned")
            .clear();
        self.moto.reset().await
    }

    /// Invokes a function of the stack by name or ARN, as the Invoke API would.
    pub async fn invoke(
        &self,
        function: &str,
        payload: Value,
    ) -> Result<Value, lambda_runtime::Diagnostic> {
        let deployed =
            invoke::find(&self.functions, function).ok_or_else(|| lambda_runtime::Diagnostic {
                error_type: "ResourceNotFoundException".into(),
                error_message: format!("Function not found: {function}"),
            })?;
        invoke::invoke(&deployed, payload).await
    }
}

/// The SDK configuration for the emulator: its endpoint, a region, and test credentials.
pub async fn sdk_config_for(endpoint: &str, region: &str) -> SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(Region::new(region.to_owned()))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new(
            "localcloud",
            "localcloud",
            None,
            None,
            "localcloud",
        ))
        .load()
        .await
}
