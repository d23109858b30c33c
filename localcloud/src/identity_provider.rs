//! The sign-in pages of the local cloud's user pools, as Cognito's managed login serves them
//! for a pool with a domain: OpenID Connect discovery, an authorize page where a person signs
//! in with their address and password, and a token endpoint that exchanges the code for the
//! pool's ID token, checking PKCE. The emulator has no such pages; the tokens still come from
//! it (`AdminInitiateAuth`), so they carry the pool's signature and claims.
//!
//! Every user of a local pool has the password [`LOCAL_PASSWORD`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::sign_in::UserPool;

/// The password of every user of the local cloud's user pools.
pub const LOCAL_PASSWORD: &str = "Maestro-local-1";

/// How long a code may wait for its exchange (Cognito: five minutes).
const CODE_LIFETIME: Duration = Duration::from_secs(300);

/// The pages' state: the emulator, and the codes issued and not yet exchanged.
#[derive(Clone)]
pub struct LocalSignIn {
    moto_endpoint: String,
    region: String,
    codes: Arc<Mutex<HashMap<String, Issued>>>,
}

struct Issued {
    pool: String,
    client_id: String,
    redirect_uri: String,
    challenge: String,
    id_token: String,
    at: Instant,
}

impl LocalSignIn {
    pub fn new(moto_endpoint: &str, region: &str) -> Self {
        LocalSignIn {
            moto_endpoint: moto_endpoint.to_owned(),
            region: region.to_owned(),
            codes: Arc::default(),
        }
    }

    /// Where a pool's discovery document is served, under `http_endpoint`.
    pub fn metadata_url(http_endpoint: &str, pool_id: &str) -> String {
        format!("{http_endpoint}/_oidc/{pool_id}/.well-known/openid-configuration")
    }
}

pub fn router(sign_in: LocalSignIn) -> Router {
    Router::new()
        .route(
            "/_oidc/{pool}/.well-known/openid-configuration",
            get(discovery),
        )
        .route(
            "/_oidc/{pool}/oauth2/authorize",
            get(authorize_page).post(authorize),
        )
        .route("/_oidc/{pool}/oauth2/token", axum::routing::post(token))
        .with_state(sign_in)
}

fn base(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1");
    format!("http://{host}")
}

async fn discovery(
    State(sign_in): State<LocalSignIn>,
    Path(pool): Path<String>,
    headers: HeaderMap,
) -> Response {
    let here = format!("{}/_oidc/{pool}", base(&headers));
    axum::Json(json!({
        "issuer": UserPool::issuer_of(&sign_in.region, &pool),
        "authorization_endpoint": format!("{here}/oauth2/authorize"),
        "token_endpoint": format!("{here}/oauth2/token"),
        "jwks_uri": format!("{}/{pool}/.well-known/jwks.json", sign_in.moto_endpoint),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "code_challenge_methods_supported": ["S256"],
        "scopes_supported": ["openid", "email"],
    }))
    .into_response()
}

/// What the authorize page carries from the client's request to the form's post.
#[derive(serde::Deserialize, Default)]
struct AuthorizeRequest {
    #[serde(default)]
    response_type: String,
    #[serde(default)]
    client_id: String,
    #[serde(default)]
    redirect_uri: String,
    #[serde(default)]
    state: String,
    #[serde(default)]
    code_challenge: String,
    #[serde(default)]
    code_challenge_method: String,
    #[serde(default)]
    login_hint: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
}

impl AuthorizeRequest {
    fn problem(&self) -> Option<&'static str> {
        if self.response_type != "code" {
            Some("response_type must be code")
        } else if self.client_id.is_empty() {
            Some("client_id is missing")
        } else if !self.redirect_uri.starts_with("http") {
            Some("redirect_uri is missing")
        } else if self.code_challenge_method != "S256" || self.code_challenge.len() < 43 {
            Some("a PKCE S256 code_challenge is required")
        } else {
            None
        }
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn sign_in_page(request: &AuthorizeRequest, failure: Option<&str>) -> Response {
    let hidden: String = [
        ("response_type", &request.response_type),
        ("client_id", &request.client_id),
        ("redirect_uri", &request.redirect_uri),
        ("state", &request.state),
        ("code_challenge", &request.code_challenge),
        ("code_challenge_method", &request.code_challenge_method),
    ]
    .iter()
    .map(|(name, value)| {
        format!(
            "<input type=\"hidden\" name=\"{name}\" value=\"{}\">",
            escape(value)
        )
    })
    .collect();
    let username = if request.username.is_empty() {
        &request.login_hint
    } else {
        &request.username
    };
    let failure = failure
        .map(|f| format!("<p id=\"failure\">{}</p>", escape(f)))
        .unwrap_or_default();
    let status = if failure.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNAUTHORIZED
    };
    let page = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Sign in</title></head><body>\
         <h1>Sign in</h1>{failure}<form method=\"post\">{hidden}\
         <label>Email <input id=\"username\" name=\"username\" value=\"{}\"></label>\
         <label>Password <input id=\"password\" name=\"password\" type=\"password\"></label>\
         <button id=\"sign-in\" type=\"submit\">Sign in</button></form></body></html>",
        escape(username)
    );
    (status, Html(page)).into_response()
}

async fn authorize_page(Query(request): Query<AuthorizeRequest>) -> Response {
    if let Some(problem) = request.problem() {
        return (StatusCode::BAD_REQUEST, problem).into_response();
    }
    sign_in_page(&request, None)
}

async fn authorize(
    State(sign_in): State<LocalSignIn>,
    Path(pool): Path<String>,
    Form(request): Form<AuthorizeRequest>,
) -> Response {
    if let Some(problem) = request.problem() {
        return (StatusCode::BAD_REQUEST, problem).into_response();
    }
    let user_pool = UserPool {
        id: pool.clone(),
        client_id: request.client_id.clone(),
        region: sign_in.region.clone(),
    };
    let id_token = match user_pool
        .password_sign_in(&sign_in.moto_endpoint, &request.username, &request.password)
        .await
    {
        Ok(token) => token,
        Err(_) => return sign_in_page(&request, Some("Incorrect username or password.")),
    };
    let code = uuid::Uuid::new_v4().to_string();
    {
        let mut codes = sign_in.codes.lock().unwrap_or_else(|e| e.into_inner());
        codes.retain(|_, issued| issued.at.elapsed() < CODE_LIFETIME);
        codes.insert(
            code.clone(),
            Issued {
                pool,
                client_id: request.client_id.clone(),
                redirect_uri: request.redirect_uri.clone(),
                challenge: request.code_challenge.clone(),
                id_token,
                at: Instant::now(),
            },
        );
    }
    let back = form_urlencoded::Serializer::new(String::new())
        .append_pair("code", &code)
        .append_pair("state", &request.state)
        .finish();
    let joiner = if request.redirect_uri.contains('?') {
        '&'
    } else {
        '?'
    };
    Redirect::to(&format!("{}{joiner}{back}", request.redirect_uri)).into_response()
}

#[derive(serde::Deserialize)]
struct TokenRequest {
    grant_type: String,
    code: String,
    client_id: String,
    redirect_uri: String,
    code_verifier: String,
}

async fn token(
    State(sign_in): State<LocalSignIn>,
    Path(pool): Path<String>,
    Form(request): Form<TokenRequest>,
) -> Response {
    let refuse = |error: &str| {
        (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({ "error": error })),
        )
            .into_response()
    };
    if request.grant_type != "authorization_code" {
        return refuse("unsupported_grant_type");
    }
    // A code is good once, whatever comes of the exchange.
    let Some(issued) = sign_in
        .codes
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&request.code)
    else {
        return refuse("invalid_grant");
    };
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(request.code_verifier.as_bytes()));
    if issued.pool != pool
        || issued.client_id != request.client_id
        || issued.redirect_uri != request.redirect_uri
        || issued.challenge != challenge
        || issued.at.elapsed() >= CODE_LIFETIME
    {
        return refuse("invalid_grant");
    }
    axum::Json(json!({
        "id_token": issued.id_token,
        "token_type": "Bearer",
        "expires_in": 3600,
    }))
    .into_response()
}
