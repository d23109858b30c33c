//! The HTTP edge shared by the API functions: answers in API Gateway's payload format 2.0,
//! the caller's identity, and request bodies.

use aws_lambda_events::encodings::Body;
use aws_lambda_events::event::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use aws_lambda_events::http::{HeaderMap, HeaderValue};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use lambda_runtime::Diagnostic;
use serde_json::{Value, json};

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

/// The request's method and path.
pub fn route(request: &ApiGatewayV2httpRequest) -> (String, String) {
    (
        request.request_context.http.method.as_str().to_owned(),
        request.raw_path.clone().unwrap_or_default(),
    )
}

/// The IAM principal that signed the request (the API uses IAM auth), if any.
pub fn caller_arn(request: &ApiGatewayV2httpRequest) -> Option<String> {
    request
        .request_context
        .authorizer
        .as_ref()
        .and_then(|a| a.iam.as_ref())
        .and_then(|iam| iam.user_arn.clone())
}

/// Who is asking, as an email address: the session name of an IAM Identity Center role
/// session (`…:assumed-role/AWSReservedSSO_…/alice@example.com`), which is the user's name.
pub fn caller_email(request: &ApiGatewayV2httpRequest) -> Option<String> {
    let arn = caller_arn(request)?;
    let session = arn.rsplit('/').next()?;
    (arn.contains(":assumed-role/") && session.contains('@') && !session.contains(' '))
        .then(|| session.to_ascii_lowercase())
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
