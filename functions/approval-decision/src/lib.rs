//! `ApprovalDecisionFunction`: the approval links, on their own public API.
//!
//! - `GET` and `HEAD /approvals/{id}?decision=…&approver=…&exp=…&sig=…` check the link and
//!   render a confirm page. They never decide: mail scanners fetch every link, follow
//!   redirects and run scripts.
//! - `POST /approvals/{id}` (the confirm page's form, with its CSRF token) decides: the vote
//!   is cast by a conditional write, and the one decision that settles the approval resumes
//!   the waiting workflow, exactly once.

use std::collections::HashMap;

use aws_lambda_events::event::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use chrono::Utc;
use lambda_runtime::LambdaEvent;
use maestro_aws::SdkConfig;
use maestro_aws::approvals::DynamoApprovals;
use maestro_aws::env::{EnvError, FunctionEnv};
use maestro_aws::http::{ApiFailure, body_text, header, html, route};
use maestro_aws::lambda::LambdaFunction;
use maestro_aws::signing_keys::SecretLinkKeys;
use maestro_aws::step_functions::TaskCallbacks;
use maestro_domain::approvals::link::{LinkError, form_token, read_link, verify_link};
use maestro_domain::approvals::render::{ConfirmForm, confirm_page, message_page};
use maestro_domain::approvals::request::{
    ApprovalStore, Ballot, DecideError, Resumed, Status, decide_and_resume,
};
use maestro_domain::approvals::steps::SigningKeys;
use maestro_domain::approvals::tally::Vote;
use maestro_domain::port::PortError;

pub struct Deps {
    pub store: DynamoApprovals,
    pub keys: SecretLinkKeys,
    pub callbacks: TaskCallbacks,
}

fn refused(status: i64, title: &str, message: &str) -> ApiGatewayV2httpResponse {
    html(status, message_page(title, message))
}

fn link_refused(error: &LinkError) -> ApiGatewayV2httpResponse {
    match error {
        LinkError::Expired(_) => refused(
            410,
            "This link has expired",
            "The approval request expired; nothing was decided.",
        ),
        LinkError::Malformed(_) | LinkError::Tampered | LinkError::WeakKey(_) => refused(
            403,
            "This link is not valid",
            "Use the buttons of the approval email exactly as they came.",
        ),
        LinkError::BadFormToken => refused(
            403,
            "This form is not valid",
            "Open the link from your email again and confirm from that page.",
        ),
    }
}

/// An approval opened before approvals had their own secret: its links cannot be checked.
fn opened_before_secrets() -> ApiGatewayV2httpResponse {
    refused(
        410,
        "Ask for it again",
        "This request was opened before an upgrade of Maestro, and its links no longer work. Ask the requester to ask again; nothing was decided.",
    )
}

fn closed(status: Status) -> ApiGatewayV2httpResponse {
    let message = match status {
        Status::Pending => "This request is still open.",
        Status::Approved => "This request was already approved.",
        Status::Rejected => "This request was already rejected.",
        Status::TimedOut => "This request expired before it was decided.",
    };
    refused(409, "Already decided or expired", message)
}

pub async fn handle(
    deps: &Deps,
    event: LambdaEvent<ApiGatewayV2httpRequest>,
) -> Result<ApiGatewayV2httpResponse, ApiFailure> {
    let request = event.payload;
    let (method, _) = route(&request);
    let Some(approval_id) = request.path_parameters.get("id").cloned() else {
        return Ok(refused(404, "Not found", "There is no such approval."));
    };
    Ok(match method.as_str() {
        "GET" | "HEAD" => confirm(deps, &request, &approval_id).await,
        "POST" => post(deps, &request, &approval_id).await,
        _ => refused(405, "Not allowed", "Use the buttons of the approval email."),
    })
}

async fn confirm(
    deps: &Deps,
    request: &ApiGatewayV2httpRequest,
    approval_id: &str,
) -> ApiGatewayV2httpResponse {
    let query = &request.query_string_parameters;
    let (claims, signature) =
        match read_link(approval_id, |name| query.first(name).map(str::to_owned)) {
            Ok(read) => read,
            Err(e) => return link_refused(&e),
        };
    let secret = match deps.store.link_secret(approval_id).await {
        Ok(Some(secret)) => secret,
        Ok(None) => return refused(404, "Not found", "There is no such approval."),
        Err(PortError::NotFound { .. }) => return opened_before_secrets(),
        Err(e) => return unavailable(&e.to_string()),
    };
    let keys = match deps.keys.load().await {
        Ok(keys) => keys.for_approval(&secret),
        Err(e) => return unavailable(&e.to_string()),
    };
    if let Err(e) = verify_link(&keys, &claims, &signature, Utc::now()) {
        return link_refused(&e);
    }
    let approval = match deps.store.get(approval_id).await {
        Ok(Some(approval)) => approval,
        Ok(None) => return refused(404, "Not found", "There is no such approval."),
        Err(e) => return unavailable(&e.to_string()),
    };
    if approval.status != Status::Pending {
        return closed(approval.status);
    }
    match approval.votes.get(&claims.approver).map(|v| v.vote) {
        None => {
            return refused(
                403,
                "You cannot decide this request",
                "You are not one of its approvers.",
            );
        }
        Some(Vote::Pending) => {}
        Some(_) => {
            return refused(
                409,
                "Already decided",
                "You have already decided on this request.",
            );
        }
    }
    let form = ConfirmForm {
        decision: claims.decision,
        approver: claims.approver.clone(),
        expires: claims.expires_at.timestamp(),
        signature,
        form_token: form_token(&keys, approval_id, &claims.approver),
    };
    html(200, confirm_page(&approval, &form))
}

async fn post(
    deps: &Deps,
    request: &ApiGatewayV2httpRequest,
    approval_id: &str,
) -> ApiGatewayV2httpResponse {
    let body = match body_text(request) {
        Ok(body) => body,
        Err(e) => return refused(400, "Bad request", &e),
    };
    let fields: HashMap<String, String> = form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    let (claims, signature) = match read_link(approval_id, |name| fields.get(name).cloned()) {
        Ok(read) => read,
        Err(e) => return link_refused(&e),
    };
    let comment = fields
        .get("comment")
        .map(|c| c.trim().chars().take(1000).collect::<String>())
        .filter(|c| !c.is_empty());
    let keys = match deps.keys.load().await {
        Ok(keys) => keys,
        Err(e) => return unavailable(&e.to_string()),
    };
    let ballot = Ballot {
        claims,
        signature,
        form_token: fields.get("csrf").cloned().unwrap_or_default(),
        comment: comment.clone(),
        source_ip: Some(
            request
                .request_context
                .http
                .source_ip
                .clone()
                .unwrap_or_default(),
        )
        .filter(|ip| !ip.is_empty()),
        user_agent: header(request, "user-agent"),
    };
    let decided = decide_and_resume(&deps.store, &deps.callbacks, &keys, &ballot, Utc::now()).await;
    tracing::info!(
        approval_id,
        decision = ballot.claims.decision.as_str(),
        outcome = %outcome_label(&decided),
        "decision posted"
    );
    if matches!(
        decided,
        Ok(Resumed::Counted { .. } | Resumed::Settled { .. })
    ) {
        maestro_aws::metrics::count(
            &[("Decision", ballot.claims.decision.as_str())],
            &[("ApprovalsDecided", 1)],
        );
    }
    match decided {
        Ok(Resumed::Counted { approvals, needed }) => html(
            200,
            message_page(
                "Your approval is recorded",
                &format!("{approvals} of the {needed} approvals needed are in."),
            ),
        ),
        Ok(Resumed::SettledElsewhere) => refused(
            409,
            "Already decided",
            "Another decision settled this request first.",
        ),
        // The votes had decided it before this press: say so, not what this button said.
        Ok(Resumed::Settled { status, by }) if by.approver != ballot.claims.approver => {
            closed(status)
        }
        Ok(Resumed::AnsweredBefore(status)) => closed(status),
        Ok(Resumed::Settled {
            status: Status::Approved,
            ..
        }) => html(
            200,
            message_page(
                "Approved",
                "The request is approved; the action runs now. The requester will be told how it ends.",
            ),
        ),
        Ok(Resumed::Settled { .. }) => html(
            200,
            message_page(
                "Rejected",
                "The request is rejected; the action will not run.",
            ),
        ),
        Ok(Resumed::Expired { unrecorded }) => {
            // The workflow stopped waiting before the decision came.
            if let Some(e) = unrecorded {
                tracing::warn!(approval_id, error = %e, "cannot mark a late approval expired");
            }
            closed(Status::TimedOut)
        }
        Err(DecideError::NotPassedOn { cause, unreopened }) => {
            tracing::error!(approval_id, error = %cause, "the workflow did not hear a settle");
            match unreopened {
                None => refused(
                    503,
                    "Press the button again in a moment",
                    "Your vote is recorded, but the workflow could not be told; nothing has run. Pressing again tells it.",
                ),
                Some(e) => unavailable(&format!(
                    "the settle cannot be undone either ({e}); the approval waits for its timeout"
                )),
            }
        }
        Err(DecideError::Link(e)) => link_refused(&e),
        Err(DecideError::Policy(_)) => refused(
            403,
            "You cannot decide this request",
            "You asked for this action, and its policy does not let you approve it.",
        ),
        Err(DecideError::Unknown(_)) => refused(404, "Not found", "There is no such approval."),
        Err(DecideError::NotAnApprover { .. }) => refused(
            403,
            "You cannot decide this request",
            "You are not one of its approvers.",
        ),
        Err(DecideError::NoLongerOpen(status)) => closed(status),
        Err(DecideError::AlreadyVoted) => refused(
            409,
            "Already decided",
            "You have already decided on this request.",
        ),
        Err(DecideError::Store(PortError::NotFound { .. })) => opened_before_secrets(),
        Err(DecideError::Store(e)) => unavailable(&e.to_string()),
    }
}

/// What came of a decision, for the log: never the token that a settlement carries.
fn outcome_label(decided: &Result<Resumed, DecideError>) -> String {
    match decided {
        Ok(Resumed::Counted { approvals, needed }) => format!("counted {approvals}/{needed}"),
        Ok(Resumed::Settled { status, by }) => format!("settled {status:?} by {}", by.approver),
        Ok(Resumed::AnsweredBefore(status)) => format!("answered before as {status:?}"),
        Ok(Resumed::SettledElsewhere) => "settled elsewhere".to_owned(),
        Ok(Resumed::Expired { .. }) => "too late: the workflow stopped waiting".to_owned(),
        Err(e) => format!("refused: {e}"),
    }
}

fn unavailable(detail: &str) -> ApiGatewayV2httpResponse {
    tracing::error!(detail, "cannot answer an approval link");
    refused(
        503,
        "Try again in a moment",
        "Maestro cannot answer right now; nothing was decided.",
    )
}

impl LambdaFunction for Deps {
    type Event = ApiGatewayV2httpRequest;
    type Response = ApiGatewayV2httpResponse;
    type Error = ApiFailure;

    /// Reads `APPROVALS_TABLE` and `SIGNING_KEY_SECRET`.
    fn from_parts(config: &SdkConfig, env: &FunctionEnv) -> Result<Self, EnvError> {
        let mut vars = env.reader();
        let table = vars.required("APPROVALS_TABLE");
        let secret = vars.required("SIGNING_KEY_SECRET");
        vars.finish()?;
        Ok(Deps {
            store: DynamoApprovals::new(config, table),
            keys: SecretLinkKeys::new(config, secret),
            callbacks: TaskCallbacks::new(config),
        })
    }

    async fn handle(
        &self,
        event: LambdaEvent<ApiGatewayV2httpRequest>,
    ) -> Result<ApiGatewayV2httpResponse, ApiFailure> {
        handle(self, event).await
    }
}
