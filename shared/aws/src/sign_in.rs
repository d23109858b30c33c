//! The stack's identity provider, as approvers sign in to it: OpenID Connect discovery, the
//! authorization code flow with PKCE for a public client, and ID tokens checked against the
//! provider's published keys.

use std::sync::Mutex;

use async_trait::async_trait;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use maestro_domain::approvals::sign_in::{Identified, IdentifyError, IdentityProvider};
use maestro_domain::port::PortError;
use serde::Deserialize;
use serde_json::Value;

const SERVICE: &str = "the identity provider";

/// What the provider's discovery document says (OpenID Connect Discovery 1.0).
#[derive(Debug, Clone, Deserialize)]
struct Metadata {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    jwks_uri: String,
}

/// An OIDC provider and Maestro's client at it.
pub struct OidcProvider {
    metadata_url: String,
    /// The issuer the stack trusts (`AuthIssuer`): the discovery document must name it, so
    /// that a document served from elsewhere cannot bring its own issuer and keys.
    issuer: String,
    client_id: String,
    http: reqwest::Client,
    /// Read once per cold start.
    metadata: Mutex<Option<Metadata>>,
    /// Read again when a token names a key not seen yet (the provider rotated).
    keys: Mutex<Option<JwkSet>>,
}

impl OidcProvider {
    /// `metadata_url` is the discovery document (`{issuer}/.well-known/openid-configuration`
    /// for most providers).
    pub fn new(metadata_url: String, issuer: String, client_id: String) -> Self {
        OidcProvider {
            metadata_url,
            issuer: issuer.trim_end_matches('/').to_owned(),
            client_id,
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(5))
                .build()
                .unwrap_or_default(),
            metadata: Mutex::new(None),
            keys: Mutex::new(None),
        }
    }

    async fn metadata(&self) -> Result<Metadata, PortError> {
        if let Some(metadata) = cached(&self.metadata) {
            return Ok(metadata);
        }
        let metadata: Metadata = self.get_json(&self.metadata_url).await?;
        if metadata.issuer.trim_end_matches('/') != self.issuer {
            return Err(PortError::Rejected {
                service: SERVICE,
                detail: format!(
                    "{} names the issuer {}, not {} (AuthIssuer)",
                    self.metadata_url, metadata.issuer, self.issuer
                ),
            });
        }
        *self.metadata.lock().unwrap_or_else(|e| e.into_inner()) = Some(metadata.clone());
        Ok(metadata)
    }

    async fn get_json<T: for<'de> Deserialize<'de>>(&self, url: &str) -> Result<T, PortError> {
        let response = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| transient(format!("cannot reach {url}: {e}")))?;
        if !response.status().is_success() {
            return Err(transient(format!("{url} answered {}", response.status())));
        }
        response.json().await.map_err(|e| PortError::Rejected {
            service: SERVICE,
            detail: format!("{url} is not what OpenID Connect publishes there: {e}"),
        })
    }

    /// The key that signed a token, fetching the key set again for a key not seen yet.
    async fn key(&self, metadata: &Metadata, kid: &str) -> Result<DecodingKey, IdentifyError> {
        let known = cached(&self.keys).and_then(|set| set.find(kid).cloned());
        let jwk = match known {
            Some(jwk) => jwk,
            None => {
                let set: JwkSet = self.get_json(&metadata.jwks_uri).await?;
                let jwk = set.find(kid).cloned();
                *self.keys.lock().unwrap_or_else(|e| e.into_inner()) = Some(set);
                jwk.ok_or_else(|| {
                    IdentifyError::Refused(format!("no key {kid} in {}", metadata.jwks_uri))
                })?
            }
        };
        DecodingKey::from_jwk(&jwk)
            .map_err(|e| IdentifyError::Refused(format!("the provider's key {kid}: {e}")))
    }
}

fn cached<T: Clone>(slot: &Mutex<Option<T>>) -> Option<T> {
    slot.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

fn transient(detail: String) -> PortError {
    PortError::Transient {
        service: SERVICE,
        detail,
    }
}

/// The ID token's claims Maestro reads; the library checks `iss`, `aud` and `exp`.
#[derive(Deserialize)]
struct IdClaims {
    sub: String,
    /// One audience or several; with several, `azp` must be Maestro's client (OIDC Core
    /// 3.1.3.7).
    #[serde(default)]
    aud: Value,
    #[serde(default)]
    azp: Option<String>,
    #[serde(default)]
    email: Option<String>,
    /// A boolean, or the string "true" as some providers write it.
    #[serde(default)]
    email_verified: Option<Value>,
}

#[derive(Deserialize)]
struct TokenAnswer {
    id_token: String,
}

#[async_trait]
impl IdentityProvider for OidcProvider {
    async fn sign_in_url(
        &self,
        redirect_uri: &str,
        state: &str,
        code_challenge: &str,
        login_hint: &str,
    ) -> Result<String, PortError> {
        let endpoint = self.metadata().await?.authorization_endpoint;
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.client_id)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("scope", "openid email")
            .append_pair("state", state)
            .append_pair("code_challenge", code_challenge)
            .append_pair("code_challenge_method", "S256")
            .append_pair("login_hint", login_hint)
            .finish();
        let joiner = if endpoint.contains('?') { '&' } else { '?' };
        Ok(format!("{endpoint}{joiner}{query}"))
    }

    async fn identify(
        &self,
        redirect_uri: &str,
        code: &str,
        verifier: &str,
    ) -> Result<Identified, IdentifyError> {
        let metadata = self.metadata().await?;
        let response = self
            .http
            .post(&metadata.token_endpoint)
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", redirect_uri),
                ("client_id", &self.client_id),
                ("code_verifier", verifier),
            ])
            .send()
            .await
            .map_err(|e| transient(format!("cannot reach the token endpoint: {e}")))?;
        let status = response.status();
        if status.is_server_error() || status.as_u16() == 429 {
            return Err(transient(format!("the token endpoint answered {status}")).into());
        }
        if !status.is_success() {
            // OAuth's error codes only (invalid_grant, …): the body may echo the request.
            let error = response
                .json::<Value>()
                .await
                .ok()
                .and_then(|body| body["error"].as_str().map(str::to_owned))
                .unwrap_or_default();
            return Err(IdentifyError::Refused(format!(
                "the token endpoint answered {status} {error}"
            )));
        }
        let answer: TokenAnswer = response.json().await.map_err(|e| {
            IdentifyError::Refused(format!("the token answer has no id_token: {e}"))
        })?;
        let header = decode_header(&answer.id_token)
            .map_err(|e| IdentifyError::Refused(format!("the ID token is not a JWT: {e}")))?;
        if header.alg != Algorithm::RS256 {
            return Err(IdentifyError::Refused(format!(
                "the ID token is signed with {:?}, not RS256",
                header.alg
            )));
        }
        let kid = header
            .kid
            .ok_or_else(|| IdentifyError::Refused("the ID token names no key".into()))?;
        let key = self.key(&metadata, &kid).await?;
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_issuer(&[&metadata.issuer]);
        validation.set_audience(&[&self.client_id]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let claims = decode::<IdClaims>(&answer.id_token, &key, &validation)
            .map_err(|e| IdentifyError::Refused(format!("the ID token does not check out: {e}")))?
            .claims;
        let audiences = claims.aud.as_array().map_or(1, Vec::len);
        if audiences > 1 && claims.azp.as_deref() != Some(self.client_id.as_str()) {
            return Err(IdentifyError::Refused(format!(
                "the ID token has {audiences} audiences and was not issued to this client (azp)"
            )));
        }
        Ok(Identified {
            subject: claims.sub,
            email: claims.email,
            email_verified: matches!(claims.email_verified, Some(Value::Bool(true)))
                || matches!(
                    claims.email_verified.as_ref().and_then(Value::as_str),
                    Some("true")
                ),
        })
    }
}
