//! `SsoApiFunction`: the SSO sync over HTTP, for Maestro's operators only (403 for anyone else).
//!
//! - `GET /sso/plan`: the latest run, with its plan.
//! - `GET /sso/runs/{runId}`: a run in a few numbers (its summary), to follow one begun here.
//! - `POST /sso/reconcile`: begin a full run (202 with the run, RUNNING; 409 naming the run
//!   under way); body `{"dryRun": false}` applies (a missing body or `dryRun` means a dry run,
//!   so that no change happens by accident). `GET /sso/plan` shows how it went.
//! - `GET /sso/explain?group=&account=&permissionSet=` (names or ids): why that assignment is
//!   or is not desired, from the snapshot the last full run read (and events patched).

use aws_lambda_events::event::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use lambda_runtime::LambdaEvent;
use maestro_aws::SdkConfig;
use maestro_aws::env::{EnvError, FunctionEnv};
use maestro_aws::http::{ApiFailure, Teams, answer, problem, route, to_json};
use maestro_aws::lambda::LambdaFunction;
use maestro_aws::sso::SsoServices;
use maestro_domain::sso::plan::{ExplainError, explain};
use maestro_domain::sso::reconcile::{Began, Mode, PlanStore, Run, Scope, Trigger, begin_full_run};
use maestro_domain::sso::snapshot::SnapshotStore;
use serde::Deserialize;

pub struct Deps {
    pub sso: SsoServices,
    pub teams: Teams,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReconcileBody {
    #[serde(default = "yes", rename = "dryRun")]
    dry_run: bool,
}

fn yes() -> bool {
    true
}

pub async fn handle(
    deps: &Deps,
    event: LambdaEvent<ApiGatewayV2httpRequest>,
) -> Result<ApiGatewayV2httpResponse, ApiFailure> {
    let request = event.payload;
    let (method, path) = route(&request);
    let caller = match deps.teams.caller(&request) {
        Ok(caller) => caller,
        Err(refused) => return Ok(*refused),
    };
    // The plan names every group, account and assignment of the organisation, and a run
    // changes access everywhere: the SSO sync is the operators' alone.
    if !caller.is_operator(&deps.teams.operators) {
        return Ok(problem(
            403,
            format!(
                "the SSO sync is for Maestro's operators ({}) only",
                deps.teams.operators
            ),
        ));
    }
    // Runs record who asked: the address when the token has one, else its subject.
    let caller = caller.email.unwrap_or(caller.subject);
    Ok(match (method.as_str(), path.as_str()) {
        ("GET", "/sso/plan") => match deps.sso.store.latest().await {
            Ok(Some(run)) => answer(200, to_json(&run)?),
            Ok(None) => problem(404, "no reconcile run yet"),
            Err(e) => problem(503, format!("cannot read the runs: {e}")),
        },
        ("GET", path) if path.starts_with("/sso/runs/") => {
            let run_id = path.trim_start_matches("/sso/runs/");
            if run_id.is_empty()
                || run_id.len() > 80
                || !run_id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Ok(problem(
                    400,
                    "runId: give a run's id (letters, digits, '-' and '_')",
                ));
            }
            match deps.sso.store.get(run_id).await {
                Ok(Some(run)) => answer(200, to_json(&run.summary())?),
                Ok(None) => problem(404, format!("no run {run_id}")),
                Err(e) => problem(503, format!("cannot read the runs: {e}")),
            }
        }
        ("POST", "/sso/reconcile") => {
            let body = request.body.as_deref().unwrap_or("").trim();
            let body: ReconcileBody = if body.is_empty() {
                ReconcileBody { dry_run: true }
            } else {
                match serde_json::from_str(body) {
                    Ok(body) => body,
                    Err(e) => {
                        return Ok(problem(
                            400,
                            format!("the body is not {{\"dryRun\": bool}}: {e}"),
                        ));
                    }
                }
            };
            let mode = if body.dry_run {
                Mode::DryRun
            } else {
                Mode::Apply
            };
            let run = Run {
                run_id: event.context.request_id,
                trigger: Trigger::Api {
                    requested_by: caller,
                },
                scope: Scope::Everything,
                mode,
                now: chrono::Utc::now(),
            };
            match begin_full_run(&deps.sso.ports(), run).await {
                Ok(Began::Started(record)) => answer(202, to_json(&record.summary())?),
                Ok(Began::AlreadyRunning { run_id }) => problem(
                    409,
                    format!("full run {run_id} is under way; GET /sso/plan shows how it goes"),
                ),
                Err(e) => problem(503, e.to_string()),
            }
        }
        ("GET", "/sso/explain") => {
            let query = &request.query_string_parameters;
            let (Some(group), Some(account), Some(set)) = (
                query.first("group"),
                query.first("account"),
                query.first("permissionSet"),
            ) else {
                return Ok(problem(
                    400,
                    "give group, account and permissionSet (names or ids) as query parameters",
                ));
            };
            if let Some((name, _)) = [
                ("group", group),
                ("account", account),
                ("permissionSet", set),
            ]
            .into_iter()
            .find(|(_, value)| value.trim().is_empty())
            {
                return Ok(problem(400, format!("{name}: give a name or an id")));
            }
            let snapshot = match deps.sso.snapshot.current().await {
                Ok(Some(current)) => deps.sso.snapshot.read(&current.generation).await,
                Ok(None) => {
                    return Ok(problem(
                        409,
                        "no snapshot yet: run a full reconcile (POST /sso/reconcile) first",
                    ));
                }
                Err(e) => Err(e),
            };
            match snapshot {
                Err(e) => problem(503, format!("cannot read the snapshot: {e}")),
                Ok(snapshot) => {
                    match explain(&deps.sso.model, &snapshot.inputs, group, account, set) {
                        Ok(explanation) => answer(200, to_json(&explanation)?),
                        Err(e @ ExplainError::NotFound { .. }) => problem(404, e.to_string()),
                        Err(e @ ExplainError::Aborted(_)) => problem(409, e.to_string()),
                    }
                }
            }
        }
        _ => problem(404, format!("no route {method} {path}")),
    })
}

impl LambdaFunction for Deps {
    type Event = ApiGatewayV2httpRequest;
    type Response = ApiGatewayV2httpResponse;
    type Error = ApiFailure;

    /// See `SsoServices::from_parts`; and `TEAMS_CLAIM` and `OPERATORS_TEAM`.
    fn from_parts(config: &SdkConfig, env: &FunctionEnv) -> Result<Self, EnvError> {
        let mut vars = env.reader();
        let teams = Teams::from_vars(&mut vars);
        vars.finish()?;
        Ok(Deps {
            sso: SsoServices::from_parts(config, env)?,
            teams,
        })
    }

    async fn handle(
        &self,
        event: LambdaEvent<ApiGatewayV2httpRequest>,
    ) -> Result<ApiGatewayV2httpResponse, ApiFailure> {
        handle(self, event).await
    }
}
