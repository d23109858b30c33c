//! Approvers sign in before they decide.
//!
//! A link names its approver, but whoever holds the email holds the link: a forwarded
//! message, a shared mailbox or a ticket import. So a link's confirm page first sends the
//! browser to the stack's identity provider (OIDC authorization code with PKCE), and only an
//! approver whose verified address is the one the link names may decide. What the browser
//! keeps in between is signed with the approval's own keys ([`LinkKeys::for_approval`]):
//!
//! - a [`PendingSignIn`] (the sign-in cookie) carries the link, the `state` the provider sends
//!   back and the PKCE verifier, for ten minutes;
//! - an [`ApproverSession`] (one cookie per approval) says who signed in for which approval
//!   and approver, for fifteen minutes: long enough to read the page and decide, too short to
//!   be worth stealing.
//!
//! [`SignInMode::LinkOnly`] keeps the old trust (the link alone) for organisations without an
//! identity provider; it is off by default (docs/approvals.md says what it costs).

use std::fmt;
use std::str::FromStr;

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Duration, Utc};
use hmac::Mac;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;

use super::link::{Decision, LinkClaims, LinkKeys, mac};
use crate::port::PortError;

/// How approvers prove who they are (the template's `ApproverSignIn`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignInMode {
    /// The link's approver must sign in with the stack's identity provider.
    IdentityProvider,
    /// Whoever holds the link decides as its approver.
    LinkOnly,
}

impl FromStr for SignInMode {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "IDENTITY_PROVIDER" => Ok(SignInMode::IdentityProvider),
            "LINK_ONLY" => Ok(SignInMode::LinkOnly),
            other => Err(format!(
                "{other:?} is no approver sign-in mode (IDENTITY_PROVIDER or LINK_ONLY)"
            )),
        }
    }
}

/// The cookie that holds a sign-in under way.
pub const SIGN_IN_COOKIE: &str = "maestro-sign-in";

/// The cookie that holds an approver's session for one approval.
pub fn session_cookie(approval_id: &str) -> String {
    format!("maestro-approver-{approval_id}")
}

/// How long a browser may take at the identity provider.
pub const SIGN_IN_LIFETIME: Duration = Duration::minutes(10);

/// How long a signed-in approver may take to decide.
pub const SESSION_LIFETIME: Duration = Duration::minutes(15);

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SignInError {
    #[error("the approver has not signed in")]
    NotSignedIn,
    #[error("the sign-in was altered or made up")]
    Tampered,
    #[error("the sign-in expired")]
    Expired,
    /// The provider sent back another browser's sign-in, or one this browser did not start.
    #[error("the sign-in's state does not match the browser's")]
    StateMismatch,
    #[error("the identity provider has not verified the address of {subject}")]
    EmailUnverified { subject: String },
    #[error("signed in as {signed_in}, but the link is {approver}'s")]
    NotTheApprover { signed_in: String, approver: String },
}

/// Who the identity provider says signed in: the adapter checked the ID token's signature,
/// issuer, audience and expiry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identified {
    /// The provider's stable subject (`sub`).
    pub subject: String,
    pub email: Option<String>,
    pub email_verified: bool,
}

/// Why the provider did not say who signed in.
#[derive(Debug, Error)]
pub enum IdentifyError {
    /// The provider refused the code or answered a token that does not check out.
    #[error("the identity provider's answer does not check out: {0}")]
    Refused(String),
    #[error(transparent)]
    Port(#[from] PortError),
}

/// The stack's identity provider (OIDC, authorization code with PKCE).
#[async_trait]
pub trait IdentityProvider: Send + Sync {
    /// Where to send a browser to sign in; the provider sends it back to `redirect_uri` with
    /// a code and `state`.
    async fn sign_in_url(
        &self,
        redirect_uri: &str,
        state: &str,
        code_challenge: &str,
        login_hint: &str,
    ) -> Result<String, PortError>;
    /// Exchanges the code the provider sent back, with the verifier of its challenge.
    async fn identify(
        &self,
        redirect_uri: &str,
        code: &str,
        verifier: &str,
    ) -> Result<Identified, IdentifyError>;
}

/// The PKCE `S256` challenge of a verifier (RFC 7636).
pub fn code_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// A sign-in under way: the link it started from, the `state` the provider must send back
/// and the PKCE verifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingSignIn {
    pub claims: LinkClaims,
    pub signature: String,
    pub state: String,
    pub verifier: String,
    pub expires_at: DateTime<Utc>,
}

#[derive(Serialize, Deserialize)]
struct PendingText {
    approval: String,
    decision: Decision,
    approver: String,
    exp: i64,
    sig: String,
    state: String,
    verifier: String,
    until: i64,
}

impl PendingSignIn {
    /// A sign-in for a checked link, from two sets of 32 random bytes.
    pub fn start(
        claims: LinkClaims,
        signature: String,
        state: [u8; 32],
        verifier: [u8; 32],
        now: DateTime<Utc>,
    ) -> Self {
        PendingSignIn {
            claims,
            signature,
            state: URL_SAFE_NO_PAD.encode(state),
            verifier: URL_SAFE_NO_PAD.encode(verifier),
            expires_at: now + SIGN_IN_LIFETIME,
        }
    }

    /// The cookie's value, signed with the approval's keys.
    pub fn seal(&self, keys: &LinkKeys) -> String {
        seal(
            keys,
            "sign-in",
            &PendingText {
                approval: self.claims.approval_id.clone(),
                decision: self.claims.decision,
                approver: self.claims.approver.clone(),
                exp: self.claims.expires_at.timestamp(),
                sig: self.signature.clone(),
                state: self.state.clone(),
                verifier: self.verifier.clone(),
                until: self.expires_at.timestamp(),
            },
        )
    }

    /// The approval a sign-in cookie names, unchecked: its keys check the rest.
    pub fn approval_of(cookie: &str) -> Result<String, SignInError> {
        Ok(unsealed::<PendingText>(cookie)?.0.approval)
    }

    /// The sign-in a cookie holds, if the approval's keys signed it, it has not expired and
    /// the provider sent back its `state`.
    pub fn open(
        keys: &LinkKeys,
        cookie: &str,
        returned_state: &str,
        now: DateTime<Utc>,
    ) -> Result<PendingSignIn, SignInError> {
        let text: PendingText = open(keys, "sign-in", cookie)?;
        let time = |t: i64| DateTime::from_timestamp(t, 0).ok_or(SignInError::Tampered);
        let pending = PendingSignIn {
            claims: LinkClaims {
                approval_id: text.approval,
                decision: text.decision,
                approver: text.approver,
                expires_at: time(text.exp)?,
            },
            signature: text.sig,
            state: text.state,
            verifier: text.verifier,
            expires_at: time(text.until)?,
        };
        if now >= pending.expires_at {
            return Err(SignInError::Expired);
        }
        if !same(pending.state.as_bytes(), returned_state.as_bytes()) {
            return Err(SignInError::StateMismatch);
        }
        Ok(pending)
    }
}

/// An approver signed in for one approval: whom the provider vouched for, as which approver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApproverSession {
    pub approval_id: String,
    pub approver: String,
    /// The identity provider's subject, which the vote records.
    pub subject: String,
    pub expires_at: DateTime<Utc>,
}

#[derive(Serialize, Deserialize)]
struct SessionText {
    approval: String,
    approver: String,
    sub: String,
    until: i64,
}

impl ApproverSession {
    /// The session a finished sign-in earns, if the provider verified the address the link
    /// names (addresses compare without regard to case, as mail systems treat them).
    pub fn for_sign_in(
        pending: &PendingSignIn,
        who: &Identified,
        now: DateTime<Utc>,
    ) -> Result<ApproverSession, SignInError> {
        let approver = &pending.claims.approver;
        let email = match (&who.email, who.email_verified) {
            (Some(email), true) => email,
            _ => {
                return Err(SignInError::EmailUnverified {
                    subject: who.subject.clone(),
                });
            }
        };
        if !email.eq_ignore_ascii_case(approver) {
            return Err(SignInError::NotTheApprover {
                signed_in: email.clone(),
                approver: approver.clone(),
            });
        }
        Ok(ApproverSession {
            approval_id: pending.claims.approval_id.clone(),
            approver: approver.clone(),
            subject: who.subject.clone(),
            expires_at: now + SESSION_LIFETIME,
        })
    }

    pub fn seal(&self, keys: &LinkKeys) -> String {
        seal(
            keys,
            "session",
            &SessionText {
                approval: self.approval_id.clone(),
                approver: self.approver.clone(),
                sub: self.subject.clone(),
                until: self.expires_at.timestamp(),
            },
        )
    }

    /// The session a cookie holds, if the approval's keys signed it for `claims`' approval
    /// and approver and it has not expired.
    pub fn open(
        keys: &LinkKeys,
        cookie: Option<&str>,
        claims: &LinkClaims,
        now: DateTime<Utc>,
    ) -> Result<ApproverSession, SignInError> {
        let cookie = cookie.ok_or(SignInError::NotSignedIn)?;
        let text: SessionText = open(keys, "session", cookie)?;
        if text.approval != claims.approval_id {
            return Err(SignInError::Tampered);
        }
        if text.approver != claims.approver {
            return Err(SignInError::NotTheApprover {
                signed_in: text.approver,
                approver: claims.approver.clone(),
            });
        }
        let expires_at = DateTime::from_timestamp(text.until, 0).ok_or(SignInError::Tampered)?;
        if now >= expires_at {
            return Err(SignInError::Expired);
        }
        Ok(ApproverSession {
            approval_id: text.approval,
            approver: text.approver,
            subject: text.sub,
            expires_at,
        })
    }
}

impl fmt::Display for ApproverSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.approver, self.subject)
    }
}

/// `payload.mac`, both base64url: the payload is JSON, the MAC covers it under `label`.
fn seal(keys: &LinkKeys, label: &str, payload: &impl Serialize) -> String {
    let payload = URL_SAFE_NO_PAD
        .encode(serde_json::to_vec(payload).expect("a cookie's fields are strings and numbers"));
    let tag = mac(&keys.current, label, &[&payload])
        .finalize()
        .into_bytes();
    format!("{payload}.{}", URL_SAFE_NO_PAD.encode(tag))
}

/// A sealed value's payload and MAC, unchecked.
fn unsealed<T: for<'de> Deserialize<'de>>(
    cookie: &str,
) -> Result<(T, String, Vec<u8>), SignInError> {
    let (payload, tag) = cookie.split_once('.').ok_or(SignInError::Tampered)?;
    let tag = URL_SAFE_NO_PAD
        .decode(tag)
        .map_err(|_| SignInError::Tampered)?;
    let text = URL_SAFE_NO_PAD
        .decode(payload)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or(SignInError::Tampered)?;
    Ok((text, payload.to_owned(), tag))
}

fn open<T: for<'de> Deserialize<'de>>(
    keys: &LinkKeys,
    label: &str,
    cookie: &str,
) -> Result<T, SignInError> {
    let (text, payload, tag) = unsealed(cookie)?;
    let signed = std::iter::once(&keys.current)
        .chain(keys.previous.as_ref())
        .any(|key| mac(key, label, &[&payload]).verify_slice(&tag).is_ok());
    signed.then_some(text).ok_or(SignInError::Tampered)
}

/// Compares in time that does not depend on where the two differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::approvals::link::{LinkSecret, SigningKey};

    fn keys(byte: u8) -> LinkKeys {
        LinkKeys {
            current: SigningKey::new(vec![7; 32]).unwrap(),
            previous: None,
        }
        .for_approval(&LinkSecret::new(vec![byte; 32]).unwrap())
    }

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 2, 12, 0, 0).unwrap()
    }

    fn claims() -> LinkClaims {
        LinkClaims {
            approval_id: "apr-1".into(),
            decision: Decision::Approve,
            approver: "bob@example.com".into(),
            expires_at: now() + Duration::hours(24),
        }
    }

    fn pending() -> PendingSignIn {
        PendingSignIn::start(claims(), "sig".into(), [1; 32], [2; 32], now())
    }

    fn bob() -> Identified {
        Identified {
            subject: "sub-bob".into(),
            email: Some("Bob@Example.com".into()),
            email_verified: true,
        }
    }

    #[test]
    fn the_challenge_is_rfc_7636s_s256() {
        // RFC 7636, appendix B.
        assert_eq!(
            code_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn a_sign_in_comes_back_only_to_the_browser_that_started_it() {
        let sealed = pending().seal(&keys(1));
        assert_eq!(PendingSignIn::approval_of(&sealed).unwrap(), "apr-1");
        let opened = PendingSignIn::open(&keys(1), &sealed, &pending().state, now()).unwrap();
        assert_eq!(opened, pending());
        assert_eq!(
            PendingSignIn::open(&keys(1), &sealed, "another-state", now()),
            Err(SignInError::StateMismatch)
        );
        assert_eq!(
            PendingSignIn::open(&keys(2), &sealed, &pending().state, now()),
            Err(SignInError::Tampered),
            "another approval's keys"
        );
        assert_eq!(
            PendingSignIn::open(
                &keys(1),
                &sealed,
                &pending().state,
                now() + SIGN_IN_LIFETIME
            ),
            Err(SignInError::Expired)
        );
        let (payload, tag) = sealed.split_once('.').unwrap();
        let mut text: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
        text["approver"] = "mallory@example.com".into();
        let altered = format!(
            "{}.{tag}",
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&text).unwrap())
        );
        assert_eq!(
            PendingSignIn::open(&keys(1), &altered, &pending().state, now()),
            Err(SignInError::Tampered)
        );
    }

    #[test]
    fn only_the_verified_address_the_link_names_earns_a_session() {
        let session = ApproverSession::for_sign_in(&pending(), &bob(), now()).unwrap();
        assert_eq!(session.approver, "bob@example.com");
        assert_eq!(session.subject, "sub-bob");
        let carol = Identified {
            subject: "sub-carol".into(),
            email: Some("carol@example.com".into()),
            email_verified: true,
        };
        assert_eq!(
            ApproverSession::for_sign_in(&pending(), &carol, now()),
            Err(SignInError::NotTheApprover {
                signed_in: "carol@example.com".into(),
                approver: "bob@example.com".into()
            })
        );
        let unverified = Identified {
            email_verified: false,
            ..bob()
        };
        assert!(matches!(
            ApproverSession::for_sign_in(&pending(), &unverified, now()),
            Err(SignInError::EmailUnverified { .. })
        ));
        let no_email = Identified {
            email: None,
            ..bob()
        };
        assert!(matches!(
            ApproverSession::for_sign_in(&pending(), &no_email, now()),
            Err(SignInError::EmailUnverified { .. })
        ));
    }

    #[test]
    fn a_session_holds_for_its_approval_and_approver_only() {
        let session = ApproverSession::for_sign_in(&pending(), &bob(), now()).unwrap();
        let sealed = session.seal(&keys(1));
        assert_eq!(
            ApproverSession::open(&keys(1), Some(&sealed), &claims(), now()),
            Ok(session.clone())
        );
        let reject = LinkClaims {
            decision: Decision::Reject,
            ..claims()
        };
        assert!(
            ApproverSession::open(&keys(1), Some(&sealed), &reject, now()).is_ok(),
            "either button of the same approver"
        );
        let carols = LinkClaims {
            approver: "carol@example.com".into(),
            ..claims()
        };
        assert!(matches!(
            ApproverSession::open(&keys(1), Some(&sealed), &carols, now()),
            Err(SignInError::NotTheApprover { .. })
        ));
        let other_approval = LinkClaims {
            approval_id: "apr-2".into(),
            ..claims()
        };
        assert_eq!(
            ApproverSession::open(&keys(1), Some(&sealed), &other_approval, now()),
            Err(SignInError::Tampered)
        );
        assert_eq!(
            ApproverSession::open(&keys(2), Some(&sealed), &claims(), now()),
            Err(SignInError::Tampered)
        );
        assert_eq!(
            ApproverSession::open(&keys(1), Some(&sealed), &claims(), now() + SESSION_LIFETIME),
            Err(SignInError::Expired)
        );
        assert_eq!(
            ApproverSession::open(&keys(1), None, &claims(), now()),
            Err(SignInError::NotSignedIn)
        );
        // A sign-in cookie is no session, though the same keys signed it.
        assert_eq!(
            ApproverSession::open(&keys(1), Some(&pending().seal(&keys(1))), &claims(), now()),
            Err(SignInError::Tampered)
        );
    }

    #[test]
    fn modes_are_read_by_name() {
        assert_eq!(
            "IDENTITY_PROVIDER".parse::<SignInMode>(),
            Ok(SignInMode::IdentityProvider)
        );
        assert_eq!("LINK_ONLY".parse::<SignInMode>(), Ok(SignInMode::LinkOnly));
        assert!(
            "link_only"
                .parse::<SignInMode>()
                .unwrap_err()
                .contains("LINK_ONLY")
        );
    }
}
