//! `ApprovalDecisionFunction`: the approval links, on their own public API.
//!
//! - `GET` and `HEAD /approvals/{id}?decision=…&approver=…&exp=…&sig=…` check the link and
//!   render a confirm page. They never decide: mail scanners fetch every link, follow
//!   redirects and run scripts.
//!   Unless the stack runs `ApproverSignIn=LINK_ONLY`, a browser without the approver's
//!   session for this approval is first sent to sign in with the stack's identity provider.
//! - `GET /signed-in` is where the provider sends the approver back: the code is exchanged,
//!   the ID token checked, and only the approver the link names gets a session (a cookie for
//!   this approval) and is sent back to the link.
//! - `POST /approvals/{id}` (the confirm page's form, with its CSRF token and the session)
//!   decides: the vote is cast by a conditional write, and the one decision that settles the
//!   approval resumes the waiting workflow, exactly once.

use std::collections::HashMap;

use aws_lambda_events::event::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use chrono::Utc;
use lambda_runtime::LambdaEvent;
use maestro_aws::SdkConfig;
use maestro_aws::approvals::DynamoApprovals;
use maestro_aws::approvals::random_bytes;
use maestro_aws::env::{EnvError, FunctionEnv};
use maestro_aws::http::{
    ApiFailure, body_text, cookie, header, html, redirect, route, server_cookie,
};
use maestro_aws::lambda::LambdaFunction;
use maestro_aws::sign_in::OidcProvider;
use maestro_aws::signing_keys::SecretLinkKeys;
use maestro_aws::step_functions::TaskCallbacks;
use maestro_domain::approvals::link::{
    LinkClaims, LinkError, LinkKeys, form_token, link_address, read_link, verify_link,
};
use maestro_domain::approvals::render::{ConfirmForm, confirm_page, message_page};
use maestro_domain::approvals::request::{
    ApprovalStore, Ballot, DecideError, Proof, Resumed, Status, decide_and_resume,
};
use maestro_domain::approvals::sign_in::{
    ApproverSession, IdentifyError, IdentityProvider, PendingSignIn, SESSION_LIFETIME,
    SIGN_IN_COOKIE, SIGN_IN_LIFETIME, SignInError, SignInMode, code_challenge, session_cookie,
};
use maestro_domain::approvals::steps::SigningKeys;
use maestro_domain::approvals::tally::Vote;
use maestro_domain::port::PortError;

pub struct Deps {
    pub store: DynamoApprovals,
    pub keys: SecretLinkKeys,
    pub callbacks: TaskCallbacks,
    pub sign_in: SignIn,
}

/// How approvers show they are the one a link names (`ApproverSignIn`).
pub enum SignIn {
    IdentityProvider(Box<dyn IdentityProvider>),
    LinkOnly,
}

/// Where the identity provider sends approvers back: the links API's `/signed-in`, wherever
/// the request came in.
fn redirect_uri(request: &ApiGatewayV2httpRequest) -> String {
    format!("{}/signed-in", links_url(request))
}

/// The links API's address as the browser reached it: its execute-api endpoint, or a custom
/// domain mapped at its root (API Gateway names the domain and the scheme).
fn links_url(request: &ApiGatewayV2httpRequest) -> String {
    let scheme = header(request, "x-forwarded-proto").unwrap_or_else(|| "https".to_owned());
    let domain = request
        .request_context
        .domain_name
        .clone()
        .unwrap_or_default();
    format!("{scheme}://{domain}")
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
    let (method, path) = route(&request);
    if method == "GET" && path.ends_with("/signed-in") {
        return Ok(signed_in(deps, &request).await);
    }
    let Some(approval_id) = request.path_parameters.get("id").cloned() else {
        return Ok(refused(404, "Not found", "There is no such approval."));
    };
    Ok(match method.as_str() {
        "GET" | "HEAD" => confirm(deps, &request, &approval_id).await,
        "POST" => post(deps, &request, &approval_id).await,
        _ => refused(405, "Not allowed", "Use the buttons of the approval email."),
    })
}

/// The keys of one approval's links and cookies, or the page that says why there are none.
async fn approval_keys(
    deps: &Deps,
    approval_id: &str,
) -> Result<LinkKeys, ApiGatewayV2httpResponse> {
    let secret = match deps.store.link_secret(approval_id).await {
        Ok(Some(secret)) => secret,
        Ok(None) => return Err(refused(404, "Not found", "There is no such approval.")),
        Err(PortError::NotFound { .. }) => return Err(opened_before_secrets()),
        Err(e) => return Err(unavailable(&e.to_string())),
    };
    match deps.keys.load().await {
        Ok(keys) => Ok(keys.for_approval(&secret)),
        Err(e) => Err(unavailable(&e.to_string())),
    }
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
    let keys = match approval_keys(deps, approval_id).await {
        Ok(keys) => keys,
        Err(page) => return page,
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
    if let SignIn::IdentityProvider(provider) = &deps.sign_in {
        let session = cookie(request, &session_cookie(approval_id));
        if ApproverSession::open(&keys, session.as_deref(), &claims, Utc::now()).is_err() {
            return start_sign_in(
                provider.as_ref(),
                &redirect_uri(request),
                &keys,
                claims,
                signature,
            )
            .await;
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
    // A browser says where a form came from (Fetch Metadata): only the links' own confirm
    // page may post. SameSite cookies alone would let a sibling subdomain of a custom domain
    // post; `Origin` would not do, since the page's no-referrer policy makes it `null`.
    if let Some(site) = header(request, "sec-fetch-site")
        && site != "same-origin"
    {
        tracing::warn!(approval_id, %site, "a decision posted from another site");
        return refused(
            403,
            "This form is not valid",
            "Open the link from your email again and confirm from that page.",
        );
    }
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
        proof: match deps.sign_in {
            SignIn::IdentityProvider(_) => {
                Proof::Session(cookie(request, &session_cookie(approval_id)))
            }
            SignIn::LinkOnly => Proof::LinkOnly,
        },
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
        Err(DecideError::SignIn(e)) => {
            tracing::info!(approval_id, refusal = %e, "a decision without the approver's sign-in");
            refused(
                401,
                "Sign in to decide",
                "Open the link from your email again and sign in as its approver; nothing was decided.",
            )
        }
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

/// Sends the browser to the identity provider, keeping the link, the state and the PKCE
/// verifier in a cookie signed with the approval's keys.
async fn start_sign_in(
    provider: &dyn IdentityProvider,
    redirect_uri: &str,
    keys: &LinkKeys,
    claims: LinkClaims,
    signature: String,
) -> ApiGatewayV2httpResponse {
    let approver = claims.approver.clone();
    let pending = PendingSignIn::start(
        claims,
        signature,
        random_bytes(),
        random_bytes(),
        Utc::now(),
    );
    match provider
        .sign_in_url(
            redirect_uri,
            &pending.state,
            &code_challenge(&pending.verifier),
            &approver,
        )
        .await
    {
        Ok(url) => redirect(
            302,
            &url,
            vec![server_cookie(
                SIGN_IN_COOKIE,
                &pending.seal(keys),
                SIGN_IN_LIFETIME.num_seconds(),
            )],
        ),
        Err(e) => unavailable(&e.to_string()),
    }
}

/// `GET /signed-in?code=…&state=…`: the provider sent the approver back.
async fn signed_in(deps: &Deps, request: &ApiGatewayV2httpRequest) -> ApiGatewayV2httpResponse {
    let SignIn::IdentityProvider(provider) = &deps.sign_in else {
        return refused(
            404,
            "Not found",
            "Approvers do not sign in to this Maestro.",
        );
    };
    let query = &request.query_string_parameters;
    let start_again = |title: &str| {
        refused(
            400,
            title,
            "Open the link from your email again, in this browser; nothing was decided.",
        )
    };
    if query.first("error").is_some() {
        return refused(
            401,
            "You did not sign in",
            "The identity provider did not sign you in; nothing was decided.",
        );
    }
    let (Some(code), Some(state), Some(pending)) = (
        query.first("code"),
        query.first("state"),
        cookie(request, SIGN_IN_COOKIE),
    ) else {
        return start_again("This sign-in is not complete");
    };
    let Ok(approval_id) = PendingSignIn::approval_of(&pending) else {
        return start_again("This sign-in is not valid");
    };
    let keys = match approval_keys(deps, &approval_id).await {
        Ok(keys) => keys,
        Err(page) => return page,
    };
    let now = Utc::now();
    let pending = match PendingSignIn::open(&keys, &pending, state, now) {
        Ok(pending) => pending,
        Err(SignInError::Expired) => return start_again("This sign-in took too long"),
        Err(_) => return start_again("This sign-in is not valid"),
    };
    if let Err(e) = verify_link(&keys, &pending.claims, &pending.signature, now) {
        return link_refused(&e);
    }
    let identified = match provider
        .identify(&redirect_uri(request), code, &pending.verifier)
        .await
    {
        Ok(identified) => identified,
        Err(IdentifyError::Refused(reason)) => {
            tracing::warn!(approval_id, %reason, "the identity provider's answer was refused");
            return start_again("The sign-in did not check out");
        }
        Err(IdentifyError::Port(e)) => return unavailable(&e.to_string()),
    };
    let session = match ApproverSession::for_sign_in(&pending, &identified, now) {
        Ok(session) => session,
        Err(e) => {
            tracing::warn!(approval_id, refusal = %e, "a sign-in that is not the link's approver");
            let message = match e {
                SignInError::NotTheApprover { signed_in, approver } => format!(
                    "You signed in as {signed_in}, but this link is for {approver}. Only they can decide with it; nothing was decided."
                ),
                _ => "Your identity provider has not verified your email address, so Maestro cannot tell that you are this link's approver; nothing was decided.".to_owned(),
            };
            return refused(403, "You cannot decide this request", &message);
        }
    };
    tracing::info!(approval_id, approver = %session, "an approver signed in");
    redirect(
        303,
        &link_address(&links_url(request), &pending.claims, &pending.signature),
        vec![
            server_cookie(
                &session_cookie(&approval_id),
                &session.seal(&keys),
                SESSION_LIFETIME.num_seconds(),
            ),
            server_cookie(SIGN_IN_COOKIE, "", 0),
        ],
    )
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

    /// Reads `APPROVALS_TABLE`, `SIGNING_KEY_SECRET` and `APPROVER_SIGN_IN`; with `IDENTITY_PROVIDER`, `APPROVER_SIGN_IN_CLIENT_ID`,
    /// `AUTH_ISSUER` and `AUTH_METADATA_URL` (empty: the issuer's discovery document).
    fn from_parts(config: &SdkConfig, env: &FunctionEnv) -> Result<Self, EnvError> {
        let mut vars = env.reader();
        let table = vars.required("APPROVALS_TABLE");
        let secret = vars.required("SIGNING_KEY_SECRET");
        let mode: Option<SignInMode> = vars.parsed("APPROVER_SIGN_IN");
        let sign_in = match mode {
            Some(SignInMode::IdentityProvider) => {
                let client_id = env
                    .get("APPROVER_SIGN_IN_CLIENT_ID")
                    .map(str::trim)
                    .unwrap_or_default()
                    .to_owned();
                if client_id.is_empty() {
                    vars.problem(
                        "APPROVER_SIGN_IN_CLIENT_ID is not set: with ApproverSignIn IDENTITY_PROVIDER, approvers sign in with the OIDC client ApproverSignInClientId names (or set ApproverSignIn to LINK_ONLY)".into(),
                    );
                }
                let issuer = vars.required("AUTH_ISSUER");
                let metadata_url = env
                    .get("AUTH_METADATA_URL")
                    .map(str::trim)
                    .filter(|url| !url.is_empty())
                    .map(str::to_owned)
                    .unwrap_or_else(|| format!("{issuer}/.well-known/openid-configuration"));
                SignIn::IdentityProvider(Box::new(OidcProvider::new(
                    metadata_url,
                    issuer,
                    client_id,
                )))
            }
            Some(SignInMode::LinkOnly) | None => SignIn::LinkOnly,
        };
        vars.finish()?;
        Ok(Deps {
            store: DynamoApprovals::new(config, table),
            keys: SecretLinkKeys::new(config, secret),
            callbacks: TaskCallbacks::new(config),
            sign_in,
        })
    }

    async fn handle(
        &self,
        event: LambdaEvent<ApiGatewayV2httpRequest>,
    ) -> Result<ApiGatewayV2httpResponse, ApiFailure> {
        handle(self, event).await
    }
}
