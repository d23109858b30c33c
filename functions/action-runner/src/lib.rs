//! `ActionRunnerFunction`: runs an action once the approval workflow allows it (approved, or
//! no approval needed). Each action type has one runner here; its errors carry the kinds the
//! state machine retries (`Transient`) or ends on.

use std::time::Duration;

use lambda_runtime::{Diagnostic, LambdaEvent};
use maestro_aws::SdkConfig;
use maestro_aws::env::{EnvError, FunctionEnv};
use maestro_aws::inventory::DynamoInventory;
use maestro_aws::lambda::{ErrorKind, LambdaFunction};
use maestro_aws::secrets::SecretsManager;
use maestro_aws::sso::SsoServices;
use maestro_domain::approvals::action::{Action, WebhookMethod};
use maestro_domain::approvals::workflow::ActionRequest;
use maestro_domain::port::PortError;
use maestro_domain::sso::reconcile::{
    HeldDeletesError, Mode, Outcome, Run, Scope, Trigger, apply_held_deletes,
};
use serde::Deserialize;
use serde_json::{Value, json};

pub struct Deps {
    pub sso: SsoServices,
    pub secrets: SecretsManager,
    pub inventory: DynamoInventory,
    pub http: reqwest::Client,
}

#[derive(Debug, Deserialize)]
pub struct RunAction {
    pub request: ActionRequest,
}

#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct RunFailure {
    kind: ErrorKind,
    message: String,
}

impl RunFailure {
    fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        RunFailure {
            kind,
            message: message.into(),
        }
    }
}

impl From<PortError> for RunFailure {
    fn from(error: PortError) -> Self {
        RunFailure::new(ErrorKind::of_port_error(&error), error.to_string())
    }
}

impl From<RunFailure> for Diagnostic {
    fn from(failure: RunFailure) -> Diagnostic {
        failure.kind.diagnostic(&failure)
    }
}

pub async fn handle(deps: &Deps, event: LambdaEvent<RunAction>) -> Result<Value, RunFailure> {
    let request = event.payload.request;
    request
        .validate()
        .map_err(|e| RunFailure::new(ErrorKind::InvalidInput, e.to_string()))?;
    tracing::info!(action_id = %request.id, action = ?request.action.action_type(), "running action");
    match &request.action {
        Action::SsoApplyDeletes { run_id } => {
            let run = Run {
                run_id: event.context.request_id.clone(),
                trigger: Trigger::Approval {
                    approval_id: request.id.clone(),
                    held_run_id: run_id.clone(),
                },
                scope: Scope::Everything,
                mode: Mode::Apply,
                now: chrono::Utc::now(),
            };
            let record = apply_held_deletes(&deps.sso.model, &deps.sso.ports(), run_id, run)
                .await
                .map_err(|e| {
                    let kind = match &e {
                        HeldDeletesError::UnknownRun(_) => ErrorKind::NotFound,
                        other if other.is_retryable() => ErrorKind::Transient,
                        _ => ErrorKind::Rejected,
                    };
                    RunFailure::new(kind, e.to_string())
                })?;
            if let Outcome::Aborted { reasons } = &record.outcome {
                return Err(RunFailure::new(
                    ErrorKind::Transient,
                    format!("nothing was deleted: {}", reasons.join("; ")),
                ));
            }
            Ok(json!({ "runId": record.run_id, "outcome": record.outcome }))
        }
        Action::SecretRotateNow { secret_id } => {
            let version_id = deps.secrets.rotate_now(secret_id).await?;
            Ok(json!({ "secretId": secret_id, "versionId": version_id }))
        }
        Action::ConnectionDelete { connection_id } => {
            // Its entities and their history stay: what the account held is still true of
            // the past, and the crawls simply stop.
            let deleted = deps.inventory.delete_connection(connection_id).await?;
            Ok(json!({ "connectionId": connection_id, "deleted": deleted }))
        }
        Action::Webhook { url, method, body } => {
            call_webhook(deps, url, *method, body.as_ref()).await
        }
    }
}

async fn call_webhook(
    deps: &Deps,
    url: &str,
    method: WebhookMethod,
    body: Option<&Value>,
) -> Result<Value, RunFailure> {
    let method = match method {
        WebhookMethod::Post => reqwest::Method::POST,
        WebhookMethod::Put => reqwest::Method::PUT,
        WebhookMethod::Patch => reqwest::Method::PATCH,
        WebhookMethod::Delete => reqwest::Method::DELETE,
    };
    let mut call = deps.http.request(method, url);
    if let Some(body) = body {
        call = call.json(body);
    }
    let response = call.send().await.map_err(|e| {
        RunFailure::new(
            ErrorKind::Transient,
            format!("the webhook call failed: {e}"),
        )
    })?;
    let status = response.status();
    if status.is_success() {
        return Ok(json!({ "status": status.as_u16() }));
    }
    let kind = if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
        ErrorKind::Transient
    } else {
        ErrorKind::Rejected
    };
    Err(RunFailure::new(
        kind,
        format!("the webhook answered {status}"),
    ))
}

impl LambdaFunction for Deps {
    type Event = RunAction;
    type Response = Value;
    type Error = RunFailure;

    /// Reads the SSO sync's variables (see `SsoServices::from_parts`).
    fn from_parts(config: &SdkConfig, env: &FunctionEnv) -> Result<Self, EnvError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .redirect(reqwest::redirect::Policy::none())
            .https_only(true)
            .build()
            .map_err(|e| EnvError {
                problems: vec![format!("cannot build the webhook client: {e}")],
            })?;
        let mut vars = env.reader();
        let inventory_table = vars.required("INVENTORY_TABLE");
        vars.finish()?;
        Ok(Deps {
            sso: SsoServices::from_parts(config, env)?,
            secrets: SecretsManager::new(config),
            inventory: DynamoInventory::new(config, inventory_table),
            http,
        })
    }

    async fn handle(&self, event: LambdaEvent<RunAction>) -> Result<Value, RunFailure> {
        handle(self, event).await
    }
}
