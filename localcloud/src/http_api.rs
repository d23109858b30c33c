//! The HTTP APIs of the stack: each request becomes an API Gateway v2 event (payload format
//! 2.0) for the function whose route matches, and the function's answer becomes the response.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Map, Value, json};

use crate::invoke::invoke;
use crate::stack::{ACCOUNT_ID, DeployedFunction, HttpRoute, JwtAuthorizer};

/// The routes of the current stack, with the functions they reach.
pub type RouteTable = Arc<RwLock<Vec<(HttpRoute, Arc<DeployedFunction>)>>>;

#[derive(Clone)]
struct Served {
    routes: RouteTable,
    keys: SigningKeys,
    /// The one API a host serves at its root, as API Gateway serves each API at its own
    /// domain; `None` for the host that serves every API below `/_api/<api id>`.
    api: Option<String>,
}

/// Every API: at the root, and each below `/_api/<api id>`.
pub fn router(routes: RouteTable) -> Router {
    Router::new().fallback(serve).with_state(Served {
        routes,
        keys: SigningKeys::default(),
        api: None,
    })
}

/// One API, at the root of its own host (its `ApiEndpoint`).
pub fn api_router(routes: RouteTable, api_id: &str) -> Router {
    Router::new().fallback(serve).with_state(Served {
        routes,
        keys: SigningKeys::default(),
        api: Some(api_id.to_owned()),
    })
}

async fn serve(State(Served { routes, keys, api }): State<Served>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = match axum::body::to_bytes(body, 10 * 1024 * 1024).await {
        Ok(body) => body,
        Err(_) => return message(StatusCode::PAYLOAD_TOO_LARGE, "Request Entity Too Large"),
    };
    let method = parts.method.as_str().to_owned();
    let (api_id, path) = match api {
        Some(api) => (Some(api), parts.uri.path().to_owned()),
        None => api_and_path(parts.uri.path()),
    };
    let matched = {
        let routes = routes
            .read()
            .expect("the route table lock is never poisoned");
        best_route(&routes, api_id.as_deref(), &method, &path)
    };
    let Some((route, function, path_parameters)) = matched else {
        return message(StatusCode::NOT_FOUND, "Not Found");
    };
    let claims = match &route.authorizer {
        None => None,
        Some(authorizer) => match keys.verify(authorizer, &parts.headers).await {
            Ok(claims) => Some(claims),
            Err(refusal) => {
                tracing::info!(route = %route.path, %refusal, "the JWT authorizer refused a request");
                let mut response = message(StatusCode::UNAUTHORIZED, "Unauthorized");
                response.headers_mut().insert(
                    "www-authenticate",
                    HeaderValue::from_static("Bearer error=\"invalid_token\""),
                );
                return response;
            }
        },
    };
    let mut event = request_event(
        &route,
        &method,
        &path,
        parts.uri.query().unwrap_or_default(),
        &parts.headers,
        path_parameters,
        &body,
    );
    if let Some(claims) = claims {
        event["requestContext"]["authorizer"] = json!({
            "jwt": { "claims": claims_as_strings(claims), "scopes": null }
        });
    }
    match invoke(&function, event).await {
        Ok(answer) => response(answer),
        Err(_) => message(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error"),
    }
}

/// Every API is served at `/_api/<api id>/…` (its `ApiEndpoint`); the root serves them all,
/// the first deployed winning a route two APIs share.
fn api_and_path(path: &str) -> (Option<String>, String) {
    match path.strip_prefix("/_api/") {
        Some(rest) => {
            let (api_id, rest) = rest.split_once('/').unwrap_or((rest, ""));
            (Some(api_id.to_owned()), format!("/{rest}"))
        }
        None => (None, path.to_owned()),
    }
}

/// The signing keys of the issuers the stack's JWT authorizers trust, fetched once per key
/// set (again when a token names a key not seen yet, as after a rotation).
#[derive(Clone, Default)]
struct SigningKeys(Arc<tokio::sync::Mutex<HashMap<String, jsonwebtoken::jwk::JwkSet>>>);

impl SigningKeys {
    /// The token's claims if API Gateway's JWT authorizer would let it through: an RS256
    /// signature by the issuer's key, `iss` the issuer, `aud` (or, for access tokens,
    /// `client_id`) one of the audiences, and not expired or not yet valid.
    async fn verify(
        &self,
        authorizer: &JwtAuthorizer,
        headers: &HeaderMap,
    ) -> Result<Map<String, Value>, String> {
        use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};

        let raw = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .ok_or("no Authorization header")?;
        let token = raw.strip_prefix("Bearer ").unwrap_or(raw).trim();
        let header = decode_header(token).map_err(|e| format!("not a JWT: {e}"))?;
        if header.alg != Algorithm::RS256 {
            return Err(format!("{:?} tokens are not accepted", header.alg));
        }
        let kid = header.kid.ok_or("the token names no key (kid)")?;
        let jwk = self.key(&authorizer.jwks_url, &kid).await?;
        let key = DecodingKey::from_jwk(&jwk).map_err(|e| format!("key {kid}: {e}"))?;
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_issuer(&[&authorizer.issuer]);
        validation.validate_aud = false;
        validation.set_required_spec_claims(&["exp", "iss"]);
        validation.validate_nbf = true;
        let claims = decode::<Map<String, Value>>(token, &key, &validation)
            .map_err(|e| format!("rejected: {e}"))?
            .claims;
        let audience = match (&claims.get("aud"), &claims.get("client_id")) {
            (Some(Value::String(aud)), _) => vec![aud.clone()],
            (Some(Value::Array(list)), _) => list
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
            (None, Some(Value::String(client))) => vec![client.clone()],
            _ => Vec::new(),
        };
        if !audience.iter().any(|a| authorizer.audience.contains(a)) {
            return Err(format!(
                "audience {audience:?} is not one the authorizer accepts"
            ));
        }
        Ok(claims)
    }

    async fn key(&self, jwks_url: &str, kid: &str) -> Result<jsonwebtoken::jwk::Jwk, String> {
        let mut sets = self.0.lock().await;
        if let Some(jwk) = sets.get(jwks_url).and_then(|set| set.find(kid)) {
            return Ok(jwk.clone());
        }
        let set: jsonwebtoken::jwk::JwkSet = reqwest::get(jwks_url)
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| format!("cannot fetch {jwks_url}: {e}"))?
            .json()
            .await
            .map_err(|e| format!("{jwks_url} is not a JWK set: {e}"))?;
        let jwk = set.find(kid).cloned();
        sets.insert(jwks_url.to_owned(), set);
        jwk.ok_or_else(|| format!("the issuer has no key {kid}"))
    }
}

/// Claims as API Gateway hands them to the function: every value a string, an array flattened
/// to `[a b c]`.
fn claims_as_strings(claims: Map<String, Value>) -> Map<String, Value> {
    claims
        .into_iter()
        .map(|(name, value)| {
            let text = match value {
                Value::String(text) => text,
                Value::Array(items) => {
                    let items: Vec<String> = items
                        .into_iter()
                        .map(|item| match item {
                            Value::String(text) => text,
                            other => other.to_string(),
                        })
                        .collect();
                    format!("[{}]", items.join(" "))
                }
                other => other.to_string(),
            };
            (name, Value::String(text))
        })
        .collect()
}

fn message(status: StatusCode, text: &str) -> Response {
    (status, axum::Json(json!({ "message": text }))).into_response()
}

type Matched = (HttpRoute, Arc<DeployedFunction>, BTreeMap<String, String>);

/// The route API Gateway would pick: the most specific path (literal segments before
/// parameters, a greedy `{name+}` last), an exact method before `ANY`, `$default` last of all.
fn best_route(
    routes: &[(HttpRoute, Arc<DeployedFunction>)],
    api_id: Option<&str>,
    method: &str,
    path: &str,
) -> Option<Matched> {
    routes
        .iter()
        .enumerate()
        .filter(|(_, (route, _))| api_id.is_none_or(|id| route.api_id == id))
        .filter(|(_, (route, _))| route.method == method || route.method == "ANY")
        .filter_map(|(index, (route, function))| {
            let parameters = match_path(&route.path, path)?;
            let literal_segments = route
                .path
                .split('/')
                .filter(|s| !s.starts_with('{') && !s.is_empty())
                .count();
            let greedy = route.path.contains("+}");
            let rank = (
                route.path != "$default",
                !greedy,
                literal_segments,
                route.method != "ANY",
                std::cmp::Reverse(index),
            );
            Some((rank, (route.clone(), Arc::clone(function), parameters)))
        })
        .max_by_key(|(rank, _)| *rank)
        .map(|(_, matched)| matched)
}

/// The path parameters if `path` fits `template` (`/things/{id}`, `/files/{proxy+}`).
fn match_path(template: &str, path: &str) -> Option<BTreeMap<String, String>> {
    if template == "$default" {
        return Some(BTreeMap::new());
    }
    let mut parameters = BTreeMap::new();
    let mut actual = path.trim_start_matches('/').split('/');
    let mut expected = template.trim_start_matches('/').split('/').peekable();
    while let Some(segment) = expected.next() {
        if let Some(name) = segment.strip_prefix('{').and_then(|s| s.strip_suffix("+}")) {
            let rest: Vec<&str> = actual.by_ref().collect();
            if rest.is_empty() || expected.peek().is_some() {
                return None;
            }
            parameters.insert(name.to_owned(), rest.join("/"));
            return Some(parameters);
        }
        let value = actual.next()?;
        match segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            Some(name) if !value.is_empty() => {
                parameters.insert(name.to_owned(), value.to_owned());
            }
            Some(_) => return None,
            None if segment == value => {}
            None => return None,
        }
    }
    actual.next().is_none().then_some(parameters)
}

fn request_event(
    route: &HttpRoute,
    method: &str,
    path: &str,
    query: &str,
    headers: &HeaderMap,
    path_parameters: BTreeMap<String, String>,
    body: &Bytes,
) -> Value {
    // As API Gateway tells the function: the domain the request came to, over which scheme.
    let domain = headers
        .get("host")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("localhost")
        .to_owned();
    let mut header_map = Map::from_iter([(
        "x-forwarded-proto".to_owned(),
        Value::String("http".to_owned()),
    )]);
    let mut cookies = Vec::new();
    for (name, value) in headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        if name == "cookie" {
            cookies.extend(value.split(';').map(|c| Value::String(c.trim().to_owned())));
            continue;
        }
        // API Gateway joins repeated headers with commas.
        match header_map.get_mut(name.as_str()) {
            Some(Value::String(existing)) => {
                existing.push(',');
                existing.push_str(&value);
            }
            _ => {
                header_map.insert(name.as_str().to_owned(), Value::String(value));
            }
        }
    }
    let mut query_parameters = Map::new();
    for (name, value) in query_pairs(query) {
        match query_parameters.get_mut(&name) {
            Some(Value::String(existing)) => {
                existing.push(',');
                existing.push_str(&value);
            }
            _ => {
                query_parameters.insert(name, Value::String(value));
            }
        }
    }
    let route_key = if route.path == "$default" {
        "$default".to_owned()
    } else {
        format!("{} {}", route.method, route.path)
    };
    let now = chrono::Utc::now();
    let (body, is_base64) = match std::str::from_utf8(body) {
        Ok(text) => (text.to_owned(), false),
        Err(_) => (BASE64.encode(body), true),
    };
    let mut event = json!({
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": path,
        "rawQueryString": query,
        "headers": header_map,
        "requestContext": {
            "accountId": ACCOUNT_ID,
            "apiId": route.api_id,
            "domainPrefix": domain.split('.').next().unwrap_or_default(),
            "domainName": domain,
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1",
                "userAgent": headers.get("user-agent").and_then(|v| v.to_str().ok()).unwrap_or_default(),
            },
            "requestId": uuid::Uuid::new_v4().to_string(),
            "routeKey": route_key,
            "stage": "$default",
            "time": now.format("%d/%b/%Y:%H:%M:%S %z").to_string(),
            "timeEpoch": now.timestamp_millis(),
        },
        "isBase64Encoded": is_base64,
    });
    if !cookies.is_empty() {
        event["cookies"] = Value::Array(cookies);
    }
    if !query_parameters.is_empty() {
        event["queryStringParameters"] = Value::Object(query_parameters);
    }
    if !path_parameters.is_empty() {
        event["pathParameters"] = json!(path_parameters);
    }
    if !body.is_empty() {
        event["body"] = Value::String(body);
    }
    event
}

fn query_pairs(query: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(query.as_bytes())
        .map(|(name, value)| (name.into_owned(), value.into_owned()))
        .collect()
}

/// The function's answer as an HTTP response, by payload format 2.0's rules: a structured
/// answer (`statusCode`, `headers`, `body`, …) is used as it is; anything else is a 200 with
/// the answer as JSON.
fn response(answer: Value) -> Response {
    let structured = answer.get("statusCode").is_some();
    if !structured {
        return (StatusCode::OK, axum::Json(answer)).into_response();
    }
    let status = answer["statusCode"]
        .as_u64()
        .and_then(|code| StatusCode::from_u16(u16::try_from(code).ok()?).ok())
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = match (&answer["body"], answer["isBase64Encoded"].as_bool()) {
        (Value::String(text), Some(true)) => BASE64.decode(text).unwrap_or_default(),
        (Value::String(text), _) => text.clone().into_bytes(),
        (Value::Null, _) => Vec::new(),
        (other, _) => other.to_string().into_bytes(),
    };
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    for (name, value) in answer["headers"].as_object().into_iter().flatten() {
        let value = match value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            headers.insert(name, value);
        }
    }
    for cookie in answer["cookies"].as_array().into_iter().flatten() {
        if let Some(Ok(value)) = cookie.as_str().map(HeaderValue::from_str) {
            headers.append("set-cookie", value);
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_templates_capture_parameters() {
        let params = match_path("/approvals/{id}", "/approvals/a-1").unwrap();
        assert_eq!(params["id"], "a-1");
        assert!(match_path("/approvals/{id}", "/approvals").is_none());
        assert!(match_path("/approvals/{id}", "/approvals/a/b").is_none());
        let params = match_path("/files/{proxy+}", "/files/a/b/c").unwrap();
        assert_eq!(params["proxy"], "a/b/c");
        assert!(match_path("/sso/plan", "/sso/plan").unwrap().is_empty());
        assert!(match_path("/sso/plan", "/sso/plans").is_none());
    }

    #[test]
    fn query_strings_are_decoded() {
        let pairs = query_pairs("group=dev%5Fteam&note=a+b&flag");
        assert_eq!(
            pairs,
            vec![
                ("group".to_owned(), "dev_team".to_owned()),
                ("note".to_owned(), "a b".to_owned()),
                ("flag".to_owned(), String::new()),
            ]
        );
    }
}
