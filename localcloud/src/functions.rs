//! The functions the local host runs in-process, by the binary name the template builds.
//!
//! A new function crate is registered here once; the template then decides where it is wired.

use std::sync::Arc;

use async_trait::async_trait;
use lambda_runtime::{Context, Diagnostic, LambdaEvent};
use maestro_aws::SdkConfig;
use maestro_aws::env::{EnvError, FunctionEnv};
use maestro_aws::lambda::LambdaFunction;
use serde_json::Value;

/// A function ready to take invocations.
#[async_trait]
pub trait InProcessFunction: Send + Sync {
    async fn invoke(&self, payload: Value, context: Context) -> Result<Value, Diagnostic>;
}

/// Builds a function's dependencies once, as its cold start would.
pub type Builder = fn(&SdkConfig, &FunctionEnv) -> Result<Arc<dyn InProcessFunction>, EnvError>;

/// Checks that a sample event parses as the function's input type.
pub type SampleCheck = fn(&Value) -> Result<(), String>;

/// How the host builds one function crate, named by its binary.
#[derive(Clone, Copy)]
pub struct Registration {
    pub binary: &'static str,
    pub build: Builder,
    pub check_sample: SampleCheck,
}

impl Registration {
    pub const fn of<F: LambdaFunction>(binary: &'static str) -> Registration {
        Registration {
            binary,
            build: build::<F>,
            check_sample: check_sample::<F>,
        }
    }
}

/// Every Lambda of Maestro, by the `Binary` of its `BuildProperties` in the template.
pub const REGISTRY: &[Registration] = &[
    Registration::of::<sso_assignment_monitor_starter::Deps>("sso-assignment-monitor-starter"),
    Registration::of::<sso_assignment_monitor::Deps>("sso-assignment-monitor"),
    Registration::of::<sso_reconcile::Deps>("sso-reconcile"),
    Registration::of::<sso_api::Deps>("sso-api"),
    Registration::of::<sso_assignment_worker::Deps>("sso-assignment-worker"),
    Registration::of::<sso_event_handler::Deps>("sso-event-handler"),
    Registration::of::<approval_api::Deps>("approval-api"),
    Registration::of::<approval_workflow::Deps>("approval-workflow"),
    Registration::of::<approval_decision::Deps>("approval-decision"),
    Registration::of::<action_runner::Deps>("action-runner"),
    Registration::of::<secret_rotation::Deps>("secret-rotation"),
    Registration::of::<secret_rotation_alerts::Deps>("secret-rotation-alerts"),
    Registration::of::<secret_rotation_monitor::Deps>("secret-rotation-monitor"),
    Registration::of::<secrets_api::Deps>("secrets-api"),
    Registration::of::<discovery_scheduler::Deps>("discovery-scheduler"),
    Registration::of::<discovery_crawler::Deps>("discovery-crawler"),
    Registration::of::<discovery_summary::Deps>("discovery-summary"),
    Registration::of::<discovery_events::Deps>("discovery-events"),
    Registration::of::<connections_api::Deps>("connections-api"),
    Registration::of::<inventory_api::Deps>("inventory-api"),
];

pub fn registration_for(binary: &str) -> Option<&'static Registration> {
    REGISTRY.iter().find(|r| r.binary == binary)
}

fn build<F: LambdaFunction>(
    config: &SdkConfig,
    env: &FunctionEnv,
) -> Result<Arc<dyn InProcessFunction>, EnvError> {
    Ok(Arc::new(Loaded(F::from_parts(config, env)?)))
}

fn check_sample<F: LambdaFunction>(sample: &Value) -> Result<(), String> {
    serde_json::from_value::<F::Event>(sample.clone())
        .map(drop)
        .map_err(|e| e.to_string())
}

struct Loaded<F>(F);

#[async_trait]
impl<F: LambdaFunction> InProcessFunction for Loaded<F> {
    async fn invoke(&self, payload: Value, context: Context) -> Result<Value, Diagnostic> {
        // The same error type the Lambda runtime reports for an event it cannot deserialise.
        let event: F::Event = serde_json::from_value(payload).map_err(|e| Diagnostic {
            error_type: "Runtime.UnmarshalError".into(),
            error_message: e.to_string(),
        })?;
        let response = self
            .0
            .handle(LambdaEvent::new(event, context))
            .await
            .map_err(Into::into)?;
        serde_json::to_value(response).map_err(|e| Diagnostic {
            error_type: "Runtime.SerializationError".into(),
            error_message: e.to_string(),
        })
    }
}

/// A function whose cold start failed answers every invocation with the init error, as Lambda
/// does, so a wiring mistake shows where the function is used.
pub struct FailedInit(pub EnvError);

#[async_trait]
impl InProcessFunction for FailedInit {
    async fn invoke(&self, _: Value, _: Context) -> Result<Value, Diagnostic> {
        Err(Diagnostic {
            error_type: "Runtime.InitError".into(),
            error_message: self.0.to_string(),
        })
    }
}
