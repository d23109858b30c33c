//! `SsoEventHandlerFunction` (flow A): EventBridge delivers the CloudTrail events that change
//! what the SSO model reads; each is processed once (keyed on its id) by reading again only
//! what it touched into the snapshot, re-planning its scope and queueing those changes. An event that cannot be read, or a run that
//! cannot be recorded, fails the invocation: Lambda retries it, then sends it to the
//! function's DLQ.

use lambda_runtime::{Diagnostic, LambdaEvent};
use maestro_aws::SdkConfig;
use maestro_aws::env::{EnvError, FunctionEnv};
use maestro_aws::idempotency::DynamoIdempotency;
use maestro_aws::lambda::{ErrorKind, LambdaFunction};
use maestro_aws::sso::SsoServices;
use maestro_domain::idempotency::{Claim, IdempotencyStore, REMEMBERED, claim_until};
use maestro_domain::port::PortError;
use maestro_domain::sso::events::{ChangeEvent, Touch, UnreadableEvent, touched_by};
use maestro_domain::sso::reconcile::{Mode, ReconcileError, Run, Trigger, replan};
use serde::Serialize;

pub struct Deps {
    pub sso: SsoServices,
    pub idempotency: DynamoIdempotency,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "handled", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Handled {
    #[serde(rename_all = "camelCase")]
    Replanned {
        run_id: String,
    },
    #[serde(rename_all = "camelCase")]
    Ignored {
        why: String,
    },
    Duplicate,
}

#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    #[error(transparent)]
    Unreadable(#[from] UnreadableEvent),
    #[error(transparent)]
    Run(#[from] ReconcileError),
    #[error("cannot keep track of event {event_id}: {source}")]
    Idempotency { event_id: String, source: PortError },
    /// Another delivery of the event holds it: fail, so that Lambda retries this one and it
    /// ends in the DLQ if the other never finishes, rather than vanish as a duplicate.
    #[error("event {event_id} is being processed by another delivery")]
    InProgressElsewhere { event_id: String },
}

impl From<HandlerError> for Diagnostic {
    fn from(error: HandlerError) -> Diagnostic {
        let kind = match &error {
            HandlerError::Unreadable(_) => ErrorKind::InvalidInput,
            HandlerError::Run(e) if e.is_retryable() => ErrorKind::Transient,
            HandlerError::Run(_) => ErrorKind::Rejected,
            HandlerError::Idempotency { source, .. } => ErrorKind::of_port_error(source),
            HandlerError::InProgressElsewhere { .. } => ErrorKind::Transient,
        };
        kind.diagnostic(&error)
    }
}

pub async fn handle(deps: &Deps, event: LambdaEvent<ChangeEvent>) -> Result<Handled, HandlerError> {
    let change = event.payload;
    let (scope, refresh) = match touched_by(&change)? {
        Touch::Nothing(why) => {
            tracing::info!(event_id = %change.id, event_name = change.event_name(), why, "ignored");
            return Ok(Handled::Ignored { why: why.into() });
        }
        Touch::Replan { scope, refresh } => (scope, refresh),
    };
    let key = format!("sso-event#{}", change.id);
    let now = chrono::Utc::now();
    let tracked = |source| HandlerError::Idempotency {
        event_id: change.id.clone(),
        source,
    };
    let deadline = i64::try_from(event.context.deadline)
        .ok()
        .and_then(chrono::DateTime::from_timestamp_millis);
    match deps
        .idempotency
        .claim(&key, now, claim_until(now, deadline))
        .await
        .map_err(tracked)?
    {
        Claim::First => {}
        Claim::Completed => {
            tracing::info!(event_id = %change.id, "duplicate delivery; processed once already");
            return Ok(Handled::Duplicate);
        }
        Claim::InProgress => {
            return Err(HandlerError::InProgressElsewhere {
                event_id: change.id.clone(),
            });
        }
    }
    let run = Run {
        run_id: event.context.request_id,
        trigger: Trigger::Event {
            event_id: change.id.clone(),
            event_name: change.event_name().to_owned(),
        },
        scope,
        mode: Mode::Apply,
        now,
    };
    match replan(&deps.sso.model, &deps.sso.ports(), run, &refresh).await {
        Ok(record) => {
            deps.idempotency
                .complete(&key, now + REMEMBERED)
                .await
                .map_err(tracked)?;
            tracing::info!(event_id = %change.id, run_id = %record.run_id, outcome = ?record.outcome, "re-planned");
            Ok(Handled::Replanned {
                run_id: record.run_id,
            })
        }
        Err(error) => {
            // Let the retry process the event again.
            if let Err(release) = deps.idempotency.release(&key).await {
                tracing::error!(event_id = %change.id, %release, "cannot release the claim; the retry will skip this event until the claim expires");
            }
            Err(error.into())
        }
    }
}

impl LambdaFunction for Deps {
    type Event = ChangeEvent;
    type Response = Handled;
    type Error = HandlerError;

    fn from_parts(config: &SdkConfig, env: &FunctionEnv) -> Result<Self, EnvError> {
        let sso = SsoServices::from_parts(config, env)?;
        let mut vars = env.reader();
        let table = vars.required("IDEMPOTENCY_TABLE");
        vars.finish()?;
        Ok(Deps {
            sso,
            idempotency: DynamoIdempotency::new(config, table),
        })
    }

    async fn handle(&self, event: LambdaEvent<ChangeEvent>) -> Result<Handled, HandlerError> {
        handle(self, event).await
    }
}

#[cfg(test)]
mod tests {
    use maestro_domain::sso::reconcile::Scope;

    use super::*;

    /// Every sample in events/sso-event-handler, by file name.
    fn samples() -> Vec<(String, ChangeEvent)> {
        let dir = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../events/sso-event-handler"
        );
        let mut samples: Vec<(String, ChangeEvent)> = std::fs::read_dir(dir)
            .expect("the sample folder")
            .map(|entry| {
                let path = entry.expect("an entry").path();
                let text = std::fs::read_to_string(&path).expect("a sample");
                let event = serde_json::from_str(&text)
                    .unwrap_or_else(|e| panic!("{} is a change event: {e}", path.display()));
                (
                    path.file_name().unwrap().to_string_lossy().into_owned(),
                    event,
                )
            })
            .collect();
        samples.sort_by(|a, b| a.0.cmp(&b.0));
        samples
    }

    #[test]
    fn every_sample_event_is_handled_with_the_scope_it_touches() {
        let samples = samples();
        assert_eq!(
            samples.len(),
            14,
            "one sample per handled event type and source"
        );
        for (name, event) in samples {
            let touch = touched_by(&event).unwrap_or_else(|e| panic!("{name}: {e}"));
            let Touch::Replan { scope, .. } = touch else {
                panic!("{name} must be re-planned, got {touch:?}");
            };
            let expected = if name.starts_with("sso-directory")
                || name.starts_with("identitystore")
                || name.contains("update-ou")
            {
                "EVERYTHING"
            } else if name.starts_with("organizations") {
                "ACCOUNT"
            } else {
                "PERMISSION_SET"
            };
            let kind = match scope {
                Scope::Everything => "EVERYTHING",
                Scope::Account { .. } => "ACCOUNT",
                Scope::PermissionSet { .. } => "PERMISSION_SET",
            };
            assert_eq!(kind, expected, "{name}");
        }
    }
}
