//! The links in an approval email and the token of the confirm form.
//!
//! A link carries an opaque approval id, the decision, the approver, an expiry and an HMAC of
//! all four: never the task token. The signing key lives in Secrets Manager and rotates; links
//! signed with the previous key stay valid until they expire. The confirm form's token is an
//! HMAC of the approval and approver under another label, so a form cannot be replayed for
//! another approval or another approver.
//!
//! Both are signed with keys derived from the signing key and the approval's own secret
//! ([`LinkSecret`]), which is kept with the approval in DynamoDB: whoever reads the signing
//! key alone still cannot make a link or a form that Maestro accepts.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use thiserror::Error;

type HmacSha256 = Hmac<Sha256>;

/// A signing key; its bytes never appear in `Debug` output.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningKey(Vec<u8>);

impl SigningKey {
    /// A key of at least 32 bytes.
    pub fn new(bytes: Vec<u8>) -> Result<Self, LinkError> {
        if bytes.len() < 32 {
            return Err(LinkError::WeakKey(bytes.len()));
        }
        Ok(SigningKey(bytes))
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningKey(…)")
    }
}

/// The current key, and the previous one while links it signed may still be followed.
#[derive(Debug, Clone)]
pub struct LinkKeys {
    pub current: SigningKey,
    pub previous: Option<SigningKey>,
}

impl LinkKeys {
    /// The keys that sign and check one approval's links and forms: each key combined with
    /// the approval's secret.
    pub fn for_approval(&self, secret: &LinkSecret) -> LinkKeys {
        let derive = |key: &SigningKey| {
            SigningKey(
                mac(key, "approval", &[&secret.to_text()])
                    .finalize()
                    .into_bytes()
                    .to_vec(),
            )
        };
        LinkKeys {
            current: derive(&self.current),
            previous: self.previous.as_ref().map(derive),
        }
    }
}

/// An approval's own random secret (32 bytes at least), stored with it and never sent
/// anywhere; its bytes never appear in `Debug` output.
#[derive(Clone, PartialEq, Eq)]
pub struct LinkSecret(Vec<u8>);

impl LinkSecret {
    /// A secret of 32 random bytes, which is always long enough.
    pub fn from_random(bytes: [u8; 32]) -> Self {
        LinkSecret(bytes.to_vec())
    }

    pub fn new(bytes: Vec<u8>) -> Result<Self, LinkError> {
        if bytes.len() < 32 {
            return Err(LinkError::WeakKey(bytes.len()));
        }
        Ok(LinkSecret(bytes))
    }

    /// As the store keeps it.
    pub fn to_text(&self) -> String {
        URL_SAFE_NO_PAD.encode(&self.0)
    }

    pub fn from_text(text: &str) -> Result<Self, LinkError> {
        let bytes = URL_SAFE_NO_PAD
            .decode(text)
            .map_err(|_| LinkError::Malformed("approval secret"))?;
        LinkSecret::new(bytes)
    }
}

impl fmt::Debug for LinkSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LinkSecret(…)")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    Approve,
    Reject,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Approve => "approve",
            Decision::Reject => "reject",
        }
    }
}

/// What a link says, signed or to be checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkClaims {
    pub approval_id: String,
    pub decision: Decision,
    pub approver: String,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LinkError {
    #[error("a signing key needs 32 bytes at least, got {0}")]
    WeakKey(usize),
    /// The signature does not match: the link was altered or made up.
    #[error("the link's signature does not match")]
    Tampered,
    #[error("the link expired at {0}")]
    Expired(DateTime<Utc>),
    #[error("the form's token does not belong to this approval and approver")]
    BadFormToken,
    #[error("the link has no valid {0}")]
    Malformed(&'static str),
}

/// The address of a decision link: `{base}/approvals/{id}?decision=…&approver=…&exp=…&sig=…`.
/// It carries the approval's opaque id, never the workflow's task token.
pub fn link_url(base: &str, keys: &LinkKeys, claims: &LinkClaims) -> String {
    link_address(base, claims, &sign_link(keys, claims))
}

/// The address of a link already signed (a sign-in returns the approver to it).
pub fn link_address(base: &str, claims: &LinkClaims, signature: &str) -> String {
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("decision", claims.decision.as_str())
        .append_pair("approver", &claims.approver)
        .append_pair("exp", &claims.expires_at.timestamp().to_string())
        .append_pair("sig", signature)
        .finish();
    let id: String = form_urlencoded::byte_serialize(claims.approval_id.as_bytes()).collect();
    format!("{}/approvals/{id}?{query}", base.trim_end_matches('/'))
}

/// A link's claims and signature, from the approval id in its path and its query (or the
/// confirm form's fields, which carry the same names). Nothing is trusted until
/// [`verify_link`] passes.
pub fn read_link(
    approval_id: &str,
    field: impl Fn(&str) -> Option<String>,
) -> Result<(LinkClaims, String), LinkError> {
    let decision = match field("decision").as_deref() {
        Some("approve") => Decision::Approve,
        Some("reject") => Decision::Reject,
        _ => return Err(LinkError::Malformed("decision")),
    };
    let approver = field("approver")
        .filter(|a| !a.is_empty() && a.len() <= 254)
        .ok_or(LinkError::Malformed("approver"))?;
    let expires_at = field("exp")
        .and_then(|e| e.parse::<i64>().ok())
        .and_then(|e| DateTime::from_timestamp(e, 0))
        .ok_or(LinkError::Malformed("exp"))?;
    // Only what could be an HMAC-SHA256 gets as far as loading the keys to check it.
    let signature = field("sig")
        .filter(|s| {
            URL_SAFE_NO_PAD
                .decode(s)
                .is_ok_and(|bytes| bytes.len() == 32)
        })
        .ok_or(LinkError::Malformed("sig"))?;
    if approval_id.is_empty() || approval_id.len() > 80 {
        return Err(LinkError::Malformed("approval id"));
    }
    Ok((
        LinkClaims {
            approval_id: approval_id.to_owned(),
            decision,
            approver,
            expires_at,
        },
        signature,
    ))
}

pub(crate) fn mac(key: &SigningKey, label: &str, parts: &[&str]) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(&key.0).expect("HMAC takes keys of any length");
    mac.update(label.as_bytes());
    for part in parts {
        // Length-prefixed, so that no two different claim lists sign the same bytes.
        mac.update(&(part.len() as u64).to_be_bytes());
        mac.update(part.as_bytes());
    }
    mac
}

fn link_parts(claims: &LinkClaims) -> [String; 4] {
    [
        claims.approval_id.clone(),
        claims.decision.as_str().to_owned(),
        claims.approver.clone(),
        claims.expires_at.timestamp().to_string(),
    ]
}

/// The `sig` of a link, with the current key.
pub fn sign_link(keys: &LinkKeys, claims: &LinkClaims) -> String {
    let parts = link_parts(claims);
    let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
    URL_SAFE_NO_PAD.encode(mac(&keys.current, "link", &parts).finalize().into_bytes())
}

/// Checks a followed link: signed by the current or the previous key, and not expired.
pub fn verify_link(
    keys: &LinkKeys,
    claims: &LinkClaims,
    signature: &str,
    now: DateTime<Utc>,
) -> Result<(), LinkError> {
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|_| LinkError::Tampered)?;
    let parts = link_parts(claims);
    let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
    let signed = std::iter::once(&keys.current)
        .chain(keys.previous.as_ref())
        .any(|key| mac(key, "link", &parts).verify_slice(&signature).is_ok());
    if !signed {
        return Err(LinkError::Tampered);
    }
    if now >= claims.expires_at {
        return Err(LinkError::Expired(claims.expires_at));
    }
    Ok(())
}

/// The confirm form's token for one approval and one approver.
pub fn form_token(keys: &LinkKeys, approval_id: &str, approver: &str) -> String {
    URL_SAFE_NO_PAD.encode(
        mac(&keys.current, "form", &[approval_id, approver])
            .finalize()
            .into_bytes(),
    )
}

pub fn verify_form_token(
    keys: &LinkKeys,
    approval_id: &str,
    approver: &str,
    token: &str,
) -> Result<(), LinkError> {
    let token = URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| LinkError::BadFormToken)?;
    let valid = std::iter::once(&keys.current)
        .chain(keys.previous.as_ref())
        .any(|key| {
            mac(key, "form", &[approval_id, approver])
                .verify_slice(&token)
                .is_ok()
        });
    valid.then_some(()).ok_or(LinkError::BadFormToken)
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, TimeZone};

    use super::*;

    fn key(byte: u8) -> SigningKey {
        SigningKey::new(vec![byte; 32]).unwrap()
    }

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 0).unwrap()
    }

    fn claims() -> LinkClaims {
        LinkClaims {
            approval_id: "apr-3f9c".into(),
            decision: Decision::Approve,
            approver: "alice@example.com".into(),
            expires_at: now() + Duration::hours(24),
        }
    }

    fn keys() -> LinkKeys {
        LinkKeys {
            current: key(1),
            previous: None,
        }
    }

    #[test]
    fn a_signed_link_verifies_until_it_expires() {
        let sig = sign_link(&keys(), &claims());
        assert_eq!(verify_link(&keys(), &claims(), &sig, now()), Ok(()));
        let later = now() + Duration::hours(25);
        assert!(matches!(
            verify_link(&keys(), &claims(), &sig, later),
            Err(LinkError::Expired(_))
        ));
    }

    #[test]
    fn any_altered_claim_is_refused() {
        let sig = sign_link(&keys(), &claims());
        let mut other_approver = claims();
        other_approver.approver = "mallory@example.com".into();
        let mut other_decision = claims();
        other_decision.decision = Decision::Reject;
        let mut longer = claims();
        longer.expires_at += Duration::days(30);
        for altered in [other_approver, other_decision, longer] {
            assert_eq!(
                verify_link(&keys(), &altered, &sig, now()),
                Err(LinkError::Tampered)
            );
        }
        assert_eq!(
            verify_link(&keys(), &claims(), "not-base64!", now()),
            Err(LinkError::Tampered)
        );
    }

    #[test]
    fn links_signed_before_a_rotation_still_work_and_older_ones_do_not() {
        let sig = sign_link(&keys(), &claims());
        let rotated = LinkKeys {
            current: key(2),
            previous: Some(key(1)),
        };
        assert_eq!(verify_link(&rotated, &claims(), &sig, now()), Ok(()));
        let twice = LinkKeys {
            current: key(3),
            previous: Some(key(2)),
        };
        assert_eq!(
            verify_link(&twice, &claims(), &sig, now()),
            Err(LinkError::Tampered)
        );
    }

    #[test]
    fn a_form_token_is_bound_to_its_approval_and_approver() {
        let token = form_token(&keys(), "apr-3f9c", "alice@example.com");
        assert_eq!(
            verify_form_token(&keys(), "apr-3f9c", "alice@example.com", &token),
            Ok(())
        );
        assert_eq!(
            verify_form_token(&keys(), "apr-3f9c", "bob@example.com", &token),
            Err(LinkError::BadFormToken)
        );
        assert_eq!(
            verify_form_token(&keys(), "apr-0000", "alice@example.com", &token),
            Err(LinkError::BadFormToken)
        );
        // A link's signature is not a form token, though both are HMACs of the same key.
        let sig = sign_link(&keys(), &claims());
        assert_eq!(
            verify_form_token(&keys(), "apr-3f9c", "alice@example.com", &sig),
            Err(LinkError::BadFormToken)
        );
    }

    #[test]
    fn a_link_reads_back_to_the_claims_it_was_made_from() {
        let url = link_url("https://links.example.com/", &keys(), &claims());
        let (path, query) = url.split_once('?').unwrap();
        assert_eq!(path, "https://links.example.com/approvals/apr-3f9c");
        let pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        let field = |name: &str| {
            pairs
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
        };
        let (read, signature) = read_link("apr-3f9c", field).unwrap();
        assert_eq!(read, claims());
        assert_eq!(verify_link(&keys(), &read, &signature, now()), Ok(()));
        assert_eq!(
            read_link("apr-3f9c", |name| (name != "exp")
                .then(|| field(name))
                .flatten()),
            Err(LinkError::Malformed("exp"))
        );
        for sig in ["", "not-a-signature", &"A".repeat(128)] {
            assert_eq!(
                read_link("apr-3f9c", |name| if name == "sig" {
                    Some(sig.to_owned())
                } else {
                    field(name)
                }),
                Err(LinkError::Malformed("sig")),
                "{sig}"
            );
        }
    }

    #[test]
    fn short_keys_and_key_bytes_in_logs_are_refused() {
        assert_eq!(SigningKey::new(vec![0; 16]), Err(LinkError::WeakKey(16)));
        assert_eq!(format!("{:?}", key(7)), "SigningKey(…)");
        assert_eq!(LinkSecret::new(vec![0; 31]), Err(LinkError::WeakKey(31)));
        let secret = LinkSecret::new(vec![5; 32]).unwrap();
        assert_eq!(format!("{secret:?}"), "LinkSecret(…)");
        assert_eq!(LinkSecret::from_text(&secret.to_text()), Ok(secret));
    }

    #[test]
    fn the_signing_key_alone_makes_no_link_or_form_an_approval_accepts() {
        let secret = LinkSecret::new(vec![5; 32]).unwrap();
        let approval = keys().for_approval(&secret);
        let sig = sign_link(&approval, &claims());
        assert_eq!(verify_link(&approval, &claims(), &sig, now()), Ok(()));
        // Whoever holds only the signing key signs with it, or with a secret of their own.
        let guessed = keys().for_approval(&LinkSecret::new(vec![6; 32]).unwrap());
        for forger in [keys(), guessed] {
            let forged = sign_link(&forger, &claims());
            assert_eq!(
                verify_link(&approval, &claims(), &forged, now()),
                Err(LinkError::Tampered)
            );
            let form = form_token(&forger, "apr-3f9c", "alice@example.com");
            assert_eq!(
                verify_form_token(&approval, "apr-3f9c", "alice@example.com", &form),
                Err(LinkError::BadFormToken)
            );
        }
        // A rotation keeps the approval's links working, as with the plain keys.
        let rotated = LinkKeys {
            current: key(2),
            previous: Some(key(1)),
        };
        assert_eq!(
            verify_link(&rotated.for_approval(&secret), &claims(), &sig, now()),
            Ok(())
        );
    }
}
