//! The HTTP edge shared by the API functions: answers in API Gateway's payload format 2.0,
//! the caller's identity, and request bodies.

use aws_lambda_events::encodings::Body;
use aws_lambda_events::event::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use aws_lambda_events::http::{HeaderMap, HeaderValue};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use lambda_runtime::Diagnostic;
use maestro_domain::access::{Caller, teams_from_value};
use serde_json::{Value, json};

use crate::env::EnvReader;
use crate::lambda::ErrorKind;

/// Failures no HTTP answer can carry (the answer itself could not be made).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ApiFailure(pub String);

impl From<ApiFailure> for Diagnostic {
    fn from(failure: ApiFailure) -> Diagnostic {
        ErrorKind::Rejected.diagnostic(&failure)
    }
}

/// `value` as a JSON body.
pub fn to_json(value: &impl serde::Serialize) -> Result<Value, ApiFailure> {
    serde_json::to_value(value).map_err(|e| ApiFailure(e.to_string()))
}

fn response(status: i64, headers: HeaderMap, body: String) -> ApiGatewayV2httpResponse {
    let mut response = ApiGatewayV2httpResponse::default();
    response.status_code = status;
    response.headers = headers;
    response.body = Some(Body::Text(body));
    response
}

/// A JSON answer.
pub fn answer(status: i64, body: Value) -> ApiGatewayV2httpResponse {
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    response(status, headers, body.to_string())
}

/// A CSV document, with extra headers (a download's name, the next page's cursor).
pub fn csv(
    status: i64,
    body: String,
    extra: &[(&'static str, String)],
) -> ApiGatewayV2httpResponse {
    let mut headers = HeaderMap::new();
    headers.insert(
        "content-type",
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    for (name, value) in extra {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(*name, value);
        }
    }
    response(status, headers, body)
}

/// A JSON error answer: `{"message": …}`.
pub fn problem(status: i64, message: impl Into<String>) -> ApiGatewayV2httpResponse {
    answer(status, json!({ "message": message.into() }))
}

/// An HTML page for people. It may not be framed, cached, or run any script, and the
/// browser sends no referrer from it: the page's address carries a signed link.
pub fn html(status: i64, page: String) -> ApiGatewayV2httpResponse {
    let mut headers = HeaderMap::new();
    for (name, value) in [
        ("content-type", "text/html; charset=utf-8"),
        ("cache-control", "no-store"),
        ("referrer-policy", "no-referrer"),
        ("x-frame-options", "DENY"),
        ("x-content-type-options", "nosniff"),
        (
            "content-security-policy",
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response(status, headers, page)
}

/// Sends the browser to `location` (302 Found, or 303 See Other after a form or a sign-in),
/// setting `cookies` (`Set-Cookie` values). Never cached, and it passes no referrer on.
pub fn redirect(status: i64, location: &str, cookies: Vec<String>) -> ApiGatewayV2httpResponse {
    let mut headers = HeaderMap::new();
    headers.insert("cache-control", HeaderValue::from_static("no-store"));
    headers.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    if let Ok(location) = HeaderValue::from_str(location) {
        headers.insert("location", location);
    }
    let mut answer = response(status, headers, String::new());
    answer.cookies = cookies;
    answer
}

/// A `Set-Cookie` value for a cookie only the server reads, sent over HTTPS and on top-level
/// navigations from other sites (an identity provider sending the browser back) but not on
/// their sub-requests. `max_age` 0 deletes it.
pub fn server_cookie(name: &str, value: &str, max_age: i64) -> String {
    format!("{name}={value}; Path=/; Max-Age={max_age}; HttpOnly; Secure; SameSite=Lax")
}

/// A cookie's value, as the browser sent it.
pub fn cookie(request: &ApiGatewayV2httpRequest, name: &str) -> Option<String> {
    request
        .cookies
        .iter()
        .flatten()
        .find_map(|c| c.strip_prefix(name)?.strip_prefix('=').map(str::to_owned))
}

/// The request's method and path.
pub fn route(request: &ApiGatewayV2httpRequest) -> (String, String) {
    (
        request.request_context.http.method.as_str().to_owned(),
        request.raw_path.clone().unwrap_or_default(),
    )
}

/// The claims the API's JWT authorizer verified, as API Gateway hands them on (every value a
/// string), if the route has the authorizer.
fn claims(request: &ApiGatewayV2httpRequest) -> Option<&std::collections::HashMap<String, String>> {
    request
        .request_context
        .authorizer
        .as_ref()
        .and_then(|a| a.jwt.as_ref())
        .map(|jwt| &jwt.claims)
}

/// The team claim's name when `TEAMS_CLAIM` is not set: Cognito's groups.
pub const DEFAULT_TEAMS_CLAIM: &str = "cognito:groups";

/// Who is asking, from the verified token: its subject, its email address if the issuer
/// verified it (`email_verified`), and its teams, read from `teams_claim`.
///
/// API Gateway hands an array claim on flattened to `[a b]`, which cannot tell the groups
/// `x maestro-operators` and `x`, `maestro-operators` apart. So the teams are read from the
/// token itself, in the `Authorization` header the authorizer verified, once its subject and
/// expiry are shown to be the ones the authorizer vouched for; without that token only a
/// single, unflattened team is read.
pub fn caller(request: &ApiGatewayV2httpRequest, teams_claim: &str) -> Option<Caller> {
    let claims = claims(request)?;
    let subject = claims.get("sub").filter(|s| !s.is_empty())?.clone();
    let verified = claims.get("email_verified").map(String::as_str) == Some("true");
    let email = claims
        .get("email")
        .filter(|_| verified)
        .map(|e| e.trim().to_ascii_lowercase())
        .filter(|e| e.contains('@') && !e.contains(char::is_whitespace));
    let teams = match verified_token_claims(request, claims) {
        Some(token) => token
            .get(teams_claim)
            .map(teams_from_value)
            .unwrap_or_default(),
        None => claims
            .get(teams_claim)
            .filter(|raw| !raw.starts_with('['))
            .map(|raw| teams_from_value(&Value::String(raw.clone())))
            .unwrap_or_default(),
    };
    Some(Caller {
        subject,
        email,
        teams,
    })
}

/// The claims of the bearer token in the `Authorization` header, if they are the ones the
/// authorizer verified: the same subject and expiry.
fn verified_token_claims(
    request: &ApiGatewayV2httpRequest,
    verified: &std::collections::HashMap<String, String>,
) -> Option<serde_json::Map<String, Value>> {
    let token = header(request, "authorization")?;
    let token = token
        .strip_prefix("Bearer ")
        .or_else(|| token.strip_prefix("bearer "))?;
    // Exactly one compact JWT: two Authorization headers reach the function joined by a comma,
    // and only one of them is the token API Gateway verified.
    let parts: Vec<&str> = token.split('.').collect();
    if parts.len() != 3
        || !token
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '='))
    {
        return None;
    }
    let payload = parts[1];
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let Value::Object(claims) = serde_json::from_slice(&bytes).ok()? else {
        return None;
    };
    let same = |name: &str| {
        let token_value = match claims.get(name)? {
            Value::String(text) => text.clone(),
            Value::Number(number) => number.to_string(),
            _ => return None,
        };
        Some(verified.get(name)? == &token_value)
    };
    (same("sub")? && same("exp")?).then_some(claims)
}

/// How an API function tells who is asking and who runs Maestro: the token claim that lists
/// the caller's teams (`TEAMS_CLAIM`) and the operators' team (`OPERATORS_TEAM`).
#[derive(Debug, Clone)]
pub struct Teams {
    pub claim: String,
    pub operators: String,
}

impl Teams {
    pub fn from_vars(vars: &mut EnvReader<'_>) -> Teams {
        Teams {
            claim: vars.required("TEAMS_CLAIM"),
            operators: vars.required("OPERATORS_TEAM"),
        }
    }

    /// The caller, or the 401 to answer when the request carries no verified token (the
    /// authorizer lets none through; this holds if a route is ever wired without it).
    pub fn caller(
        &self,
        request: &ApiGatewayV2httpRequest,
    ) -> Result<Caller, Box<ApiGatewayV2httpResponse>> {
        caller(request, &self.claim).ok_or_else(|| {
            Box::new(problem(
                401,
                "sign in: the request carries no verified token",
            ))
        })
    }
}

/// The body as text, whether API Gateway passed it as text or base64.
pub fn body_text(request: &ApiGatewayV2httpRequest) -> Result<String, String> {
    let body = request.body.clone().unwrap_or_default();
    if !request.is_base64_encoded {
        return Ok(body);
    }
    let bytes = BASE64
        .decode(body.as_bytes())
        .map_err(|_| "the body is not valid base64".to_owned())?;
    String::from_utf8(bytes).map_err(|_| "the body is not UTF-8".to_owned())
}

/// A header's value, by its lowercase name.
pub fn header(request: &ApiGatewayV2httpRequest, name: &str) -> Option<String> {
    request
        .headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// A path parameter with its `%XX` escapes decoded (a secret name holds `/`, which a caller
/// sends as `%2F`); `None` when an escape is malformed or the result is not UTF-8.
pub fn path_parameter(request: &ApiGatewayV2httpRequest, name: &str) -> Option<String> {
    let raw = request.path_parameters.get(name)?;
    let mut bytes = Vec::with_capacity(raw.len());
    let mut rest = raw.as_bytes();
    while let Some((&first, tail)) = rest.split_first() {
        if first == b'%' {
            let hex = std::str::from_utf8(tail.get(..2)?).ok()?;
            bytes.push(u8::from_str_radix(hex, 16).ok()?);
            rest = &tail[2..];
        } else {
            bytes.push(first);
            rest = tail;
        }
    }
    String::from_utf8(bytes).ok().filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_caller_is_read_from_the_verified_claims_only() {
        let request: ApiGatewayV2httpRequest = serde_json::from_str(include_str!(
            "../../../events/connections-api/get-connections.json"
        ))
        .expect("the sample event parses");
        let alice = caller(&request, DEFAULT_TEAMS_CLAIM).expect("the sample has a caller");
        assert_eq!(alice.email.as_deref(), Some("alice@example.com"));
        assert_eq!(alice.subject, "8f0c2a64-3d1e-4b7a-9c55-0e1f2a3b4c5d");
        assert_eq!(
            alice.teams.iter().map(String::as_str).collect::<Vec<_>>(),
            ["maestro-operators", "payments"]
        );
        assert!(caller(&request, "groups").is_some_and(|c| c.teams.is_empty()));

        // Without claims the authorizer verified there is no caller, whatever else is sent.
        let mut unsigned = request.clone();
        unsigned.request_context.authorizer = None;
        assert!(caller(&unsigned, DEFAULT_TEAMS_CLAIM).is_none());
    }

    fn with_token(mut request: ApiGatewayV2httpRequest, payload: Value) -> ApiGatewayV2httpRequest {
        let part = |value: &Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value.to_string())
        };
        let token = format!("{}.{}.c2ln", part(&json!({"alg": "RS256"})), part(&payload));
        request.headers.insert(
            "authorization",
            HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
        );
        request
    }

    fn sample() -> ApiGatewayV2httpRequest {
        serde_json::from_str(include_str!(
            "../../../events/connections-api/get-connections.json"
        ))
        .expect("the sample event parses")
    }

    fn set_claim(request: &mut ApiGatewayV2httpRequest, name: &str, value: Option<&str>) {
        let claims = &mut request
            .request_context
            .authorizer
            .as_mut()
            .and_then(|a| a.jwt.as_mut())
            .expect("the sample has claims")
            .claims;
        match value {
            Some(value) => claims.insert(name.to_owned(), value.to_owned()),
            None => claims.remove(name),
        };
    }

    #[test]
    fn a_group_with_a_space_in_its_name_grants_nothing() {
        // The IdP group "x maestro-operators" reaches the function flattened as
        // "[x maestro-operators]", which reads like two groups.
        let mut request = sample();
        set_claim(
            &mut request,
            "cognito:groups",
            Some("[x maestro-operators]"),
        );
        let request = with_token(
            request,
            json!({"sub": "8f0c2a64-3d1e-4b7a-9c55-0e1f2a3b4c5d", "exp": 1795870800,
                   "cognito:groups": ["x maestro-operators"]}),
        );
        let caller = caller(&request, DEFAULT_TEAMS_CLAIM).expect("a caller");
        assert!(caller.teams.is_empty(), "{:?}", caller.teams);

        // Without the token, a flattened claim is not guessed at.
        let mut bare = request.clone();
        bare.headers.remove("authorization");
        assert!(
            caller_of(&bare).teams.is_empty(),
            "a flattened claim was split"
        );
    }

    fn caller_of(request: &ApiGatewayV2httpRequest) -> Caller {
        caller(request, DEFAULT_TEAMS_CLAIM).expect("a caller")
    }

    #[test]
    fn teams_come_only_from_the_token_the_authorizer_verified() {
        // Another token in the header (another subject) is not the one API Gateway verified.
        let forged = with_token(
            sample(),
            json!({"sub": "someone-else", "exp": 1795870800,
                   "cognito:groups": ["maestro-operators"]}),
        );
        assert!(caller_of(&forged).teams.is_empty());
        let stale = with_token(
            sample(),
            json!({"sub": "8f0c2a64-3d1e-4b7a-9c55-0e1f2a3b4c5d", "exp": 1,
                   "cognito:groups": ["maestro-operators"]}),
        );
        assert!(caller_of(&stale).teams.is_empty());
        // Two Authorization headers reach the function joined by a comma: neither is read.
        let mut doubled = with_token(
            sample(),
            json!({"sub": "8f0c2a64-3d1e-4b7a-9c55-0e1f2a3b4c5d", "exp": 1795870800,
                   "cognito:groups": ["maestro-operators"]}),
        );
        let joined = format!(
            "{}, Bearer a.b.c",
            doubled.headers["authorization"].to_str().unwrap()
        );
        doubled
            .headers
            .insert("authorization", joined.parse().unwrap());
        assert!(caller_of(&doubled).teams.is_empty());
    }

    #[test]
    fn an_email_the_issuer_did_not_verify_is_no_identity() {
        let mut unverified = sample();
        set_claim(&mut unverified, "email_verified", Some("false"));
        assert_eq!(caller_of(&unverified).email, None);
        let mut unsaid = sample();
        set_claim(&mut unsaid, "email_verified", None);
        assert_eq!(caller_of(&unsaid).email, None);
        assert_eq!(
            caller_of(&sample()).email.as_deref(),
            Some("alice@example.com")
        );
    }

    #[test]
    fn path_parameters_are_percent_decoded() {
        let mut request = ApiGatewayV2httpRequest::default();
        request
            .path_parameters
            .insert("id".into(), "prod%2Fpayments%2Fdb+x".into());
        assert_eq!(
            path_parameter(&request, "id").as_deref(),
            Some("prod/payments/db+x")
        );
        request.path_parameters.insert("id".into(), "bad%2".into());
        assert_eq!(path_parameter(&request, "id"), None);
    }
}
