//! An approval request and its votes, and deciding one vote: the rules that make a decision
//! single-use and send exactly one answer to the waiting workflow.

use std::collections::BTreeMap;
use std::fmt;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::action::Action;
use super::link::{
    Decision, LinkClaims, LinkError, LinkKeys, LinkSecret, verify_form_token, verify_link,
};
use super::policy::{Approval, PolicyError};
use super::sign_in::{ApproverSession, SignInError};
use super::tally::{Tally, Vote, tally};
use crate::port::PortError;
use crate::sso::model::Environment;

/// The Step Functions task token of the waiting execution. It is stored server-side only and
/// never printed: its `Debug` hides it, and it has no `Display`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TaskToken(String);

impl TaskToken {
    pub fn new(token: String) -> Self {
        TaskToken(token)
    }

    /// The token itself, for the one call that needs it (`SendTaskSuccess`/`Failure`).
    pub fn reveal(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for TaskToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TaskToken(…)")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    Pending,
    Approved,
    Rejected,
    TimedOut,
}

/// One approver's vote, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VoteRecord {
    pub vote: Vote,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// The identity provider's subject for the approver who decided; none when they decided
    /// by link only ([`SignInMode::LinkOnly`](super::sign_in::SignInMode)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed_in_as: Option<String>,
}

impl VoteRecord {
    /// An approver's vote before they decide.
    pub fn pending() -> Self {
        VoteRecord {
            vote: Vote::Pending,
            decided_at: None,
            source_ip: None,
            user_agent: None,
            comment: None,
            signed_in_as: None,
        }
    }
}

/// An action waiting for approval (never holds the task token: the store keeps that apart).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalRequest {
    pub id: String,
    pub action: Action,
    pub environment: Environment,
    pub requester: String,
    pub reason: String,
    pub approval: Approval,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub status: Status,
    /// Every approver, with a pending vote until they decide.
    pub votes: BTreeMap<String, VoteRecord>,
}

impl ApprovalRequest {
    pub fn tally(&self) -> Tally {
        let votes: Vec<Vote> = self.votes.values().map(|v| v.vote).collect();
        tally(&votes, self.approval.quorum)
    }
}

/// Where approval requests, votes and task tokens live (DynamoDB).
#[async_trait]
pub trait ApprovalStore: Send + Sync {
    async fn get(&self, id: &str) -> Result<Option<ApprovalRequest>, PortError>;
    /// Stores a new request with every vote pending, with the waiting task's token and the
    /// request's own secret kept apart from it.
    async fn create(
        &self,
        request: &ApprovalRequest,
        task_token: &TaskToken,
        secret: &LinkSecret,
    ) -> Result<(), PortError>;
    /// Gives a pending request the token of a retried workflow step.
    async fn replace_token(&self, id: &str, task_token: &TaskToken) -> Result<(), PortError>;
    /// The approval's own secret, which its links' keys are derived from
    /// ([`LinkKeys::for_approval`]); `None` when there is no such approval.
    async fn link_secret(&self, id: &str) -> Result<Option<LinkSecret>, PortError>;
    /// Moves `approver`'s vote from pending to `record` if, and only if, it is still pending
    /// and the request is still pending; answers the request as it is after the write, or
    /// `None` when the condition failed (decided already).
    async fn cast(
        &self,
        id: &str,
        approver: &str,
        record: &VoteRecord,
    ) -> Result<Option<ApprovalRequest>, PortError>;
    /// Moves the request from pending to `status` if it is still pending; the one caller that
    /// succeeds gets the task token, to answer the workflow exactly once.
    async fn settle(&self, id: &str, status: Status) -> Result<Option<TaskToken>, PortError>;
    /// Moves a settled request from `from` to `to` if it is still `from`: back to pending when
    /// the workflow did not hear the settle, or to timed out when it had stopped waiting.
    async fn resettle(&self, id: &str, from: Status, to: Status) -> Result<(), PortError>;
}

/// Whether the workflow task waiting on an approval took its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    Delivered,
    /// The task no longer waits: it timed out, or the execution ended.
    TooLate,
}

/// The workflow task that waits on an approval's token (`.waitForTaskToken`).
#[async_trait]
pub trait WaitingTask: Send + Sync {
    async fn approved(&self, token: &TaskToken, approval_id: &str) -> Result<Delivery, PortError>;
    async fn rejected(
        &self,
        token: &TaskToken,
        approval_id: &str,
        rejected_by: &str,
        comment: Option<&str>,
    ) -> Result<Delivery, PortError>;
}

/// What a posted decision led to, once the workflow was told.
#[derive(Debug)]
pub enum Resumed {
    /// The vote counts; the request still waits for more approvals.
    Counted { approvals: usize, needed: usize },
    /// The request is settled and the workflow took it; `by` decided it (this press's
    /// approver, or another whose vote had decided it already).
    Settled { status: Status, by: DecidedBy },
    /// The task had stopped waiting before its expiry: an earlier press's answer reached it
    /// (Step Functions says `TaskTimedOut` for a task already answered).
    AnsweredBefore(Status),
    /// Another decision settled it in between.
    SettledElsewhere,
    /// The workflow had stopped waiting (its timeout): the request is marked timed out,
    /// unless that write failed too (`unrecorded`).
    Expired { unrecorded: Option<PortError> },
}

/// A decision as the confirm form posts it.
#[derive(Debug, Clone)]
pub struct Ballot {
    pub claims: LinkClaims,
    pub signature: String,
    pub form_token: String,
    pub comment: Option<String>,
    pub source_ip: Option<String>,
    pub user_agent: Option<String>,
    pub proof: Proof,
}

/// How a ballot's approver shows they are the one the link names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Proof {
    /// The session cookie of their sign-in for this approval, if the browser sent one.
    Session(Option<String>),
    /// The link alone ([`SignInMode::LinkOnly`](super::sign_in::SignInMode)).
    LinkOnly,
}

/// The approver whose vote decided a request, and what they said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecidedBy {
    pub approver: String,
    pub comment: Option<String>,
}

/// What a posted decision led to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decided {
    /// The vote counts; the request still waits for more approvals.
    Counted { approvals: usize, needed: usize },
    /// This vote settled the request: answer the workflow with this token, once.
    Settled {
        status: Status,
        task_token: TaskToken,
        by: DecidedBy,
    },
    /// The request was settled by someone else in between: nothing to send.
    SettledElsewhere,
}

#[derive(Debug, Error)]
pub enum DecideError {
    #[error(transparent)]
    Link(#[from] LinkError),
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error(transparent)]
    SignIn(#[from] SignInError),
    #[error("no approval {0}")]
    Unknown(String),
    #[error("{approver} is not an approver of this request")]
    NotAnApprover { approver: String },
    /// Decided, expired or timed out already: the page says so.
    #[error("this approval is no longer open ({0:?})")]
    NoLongerOpen(Status),
    #[error("this approver has decided already")]
    AlreadyVoted,
    #[error(transparent)]
    Store(#[from] PortError),
    /// The workflow did not hear the settle. The request is pending again (unless `unreopened`
    /// says why not), so the same link, pressed again, settles and resumes it.
    #[error("the workflow could not be told: {cause}")]
    NotPassedOn {
        cause: PortError,
        unreopened: Option<PortError>,
    },
}

/// Records one approver's decision from the confirm form: checks the link and the form
/// token, that the approver belongs to the request and is not its requester, casts the vote
/// once, and settles the request when the votes decide it.
pub async fn decide(
    store: &dyn ApprovalStore,
    keys: &LinkKeys,
    ballot: &Ballot,
    now: DateTime<Utc>,
) -> Result<Decided, DecideError> {
    let claims = &ballot.claims;
    let secret = store
        .link_secret(&claims.approval_id)
        .await?
        .ok_or_else(|| DecideError::Unknown(claims.approval_id.clone()))?;
    let keys = &keys.for_approval(&secret);
    verify_link(keys, claims, &ballot.signature, now)?;
    verify_form_token(
        keys,
        &claims.approval_id,
        &claims.approver,
        &ballot.form_token,
    )?;
    let signed_in_as = match &ballot.proof {
        Proof::Session(cookie) => {
            Some(ApproverSession::open(keys, cookie.as_deref(), claims, now)?.subject)
        }
        Proof::LinkOnly => None,
    };
    let request = store
        .get(&claims.approval_id)
        .await?
        .ok_or_else(|| DecideError::Unknown(claims.approval_id.clone()))?;
    if request.status != Status::Pending {
        return Err(DecideError::NoLongerOpen(request.status));
    }
    if now >= request.expires_at {
        return Err(DecideError::NoLongerOpen(Status::TimedOut));
    }
    let Some(current) = request.votes.get(&claims.approver) else {
        return Err(DecideError::NotAnApprover {
            approver: claims.approver.clone(),
        });
    };
    // The votes already decided it, but the settle after the deciding vote failed: any
    // approver's link (the deciding one, retried) finishes it as the votes decided, in the
    // name of who decided it, rather than leaving the workflow to wait for a quorum it has.
    let decided = match request.tally() {
        Tally::Approved => Some(Status::Approved),
        Tally::Rejected => Some(Status::Rejected),
        Tally::Pending { .. } => None,
    };
    if let Some(status) = decided {
        let by = decided_by(&request, status, &claims.approver);
        return settle(store, &claims.approval_id, status, by).await;
    }
    if current.vote != Vote::Pending {
        return Err(DecideError::AlreadyVoted);
    }
    request
        .approval
        .may_decide(&request.requester, &claims.approver)?;
    let record = VoteRecord {
        vote: match claims.decision {
            Decision::Approve => Vote::Approve,
            Decision::Reject => Vote::Reject,
        },
        decided_at: Some(now),
        source_ip: ballot.source_ip.clone(),
        user_agent: ballot.user_agent.clone(),
        comment: ballot.comment.clone(),
        signed_in_as,
    };
    let Some(after) = store
        .cast(&claims.approval_id, &claims.approver, &record)
        .await?
    else {
        return Err(DecideError::AlreadyVoted);
    };
    let status = match after.tally() {
        Tally::Pending { approvals, needed } => return Ok(Decided::Counted { approvals, needed }),
        Tally::Approved => Status::Approved,
        Tally::Rejected => Status::Rejected,
    };
    let by = DecidedBy {
        approver: claims.approver.clone(),
        comment: ballot.comment.clone(),
    };
    settle(store, &claims.approval_id, status, by).await
}

/// Whose vote decided `request` as `status`: `clicker`'s if theirs agrees, else the first
/// that does.
fn decided_by(request: &ApprovalRequest, status: Status, clicker: &str) -> DecidedBy {
    let wanted = match status {
        Status::Approved => Vote::Approve,
        _ => Vote::Reject,
    };
    let (approver, record) = request
        .votes
        .get_key_value(clicker)
        .filter(|(_, record)| record.vote == wanted)
        .or_else(|| {
            request
                .votes
                .iter()
                .find(|(_, record)| record.vote == wanted)
        })
        .map_or((clicker, None), |(approver, record)| {
            (approver.as_str(), Some(record))
        });
    DecidedBy {
        approver: approver.to_owned(),
        comment: record.and_then(|r| r.comment.clone()),
    }
}

/// [`decide`], then tells the waiting workflow when the decision settled the request. If
/// the workflow cannot be told, the settle is undone rather than leaving the execution to
/// wait for a decision that was made.
pub async fn decide_and_resume(
    store: &dyn ApprovalStore,
    task: &dyn WaitingTask,
    keys: &LinkKeys,
    ballot: &Ballot,
    now: DateTime<Utc>,
) -> Result<Resumed, DecideError> {
    let (status, token, by) = match decide(store, keys, ballot, now).await? {
        Decided::Counted { approvals, needed } => {
            return Ok(Resumed::Counted { approvals, needed });
        }
        Decided::SettledElsewhere => return Ok(Resumed::SettledElsewhere),
        Decided::Settled {
            status,
            task_token,
            by,
        } => (status, task_token, by),
    };
    let id = &ballot.claims.approval_id;
    let delivered = match status {
        Status::Approved => task.approved(&token, id).await,
        _ => {
            task.rejected(&token, id, &by.approver, by.comment.as_deref())
                .await
        }
    };
    match delivered {
        Ok(Delivery::Delivered) => Ok(Resumed::Settled { status, by }),
        // The task waits until the approval expires; closed before, it took an earlier
        // press's answer (one that timed out on our side after Step Functions accepted it).
        Ok(Delivery::TooLate) if now < ballot.claims.expires_at => {
            Ok(Resumed::AnsweredBefore(status))
        }
        Ok(Delivery::TooLate) => Ok(Resumed::Expired {
            unrecorded: store.resettle(id, status, Status::TimedOut).await.err(),
        }),
        Err(cause) => Err(DecideError::NotPassedOn {
            cause,
            unreopened: store.resettle(id, status, Status::Pending).await.err(),
        }),
    }
}

async fn settle(
    store: &dyn ApprovalStore,
    approval_id: &str,
    status: Status,
    by: DecidedBy,
) -> Result<Decided, DecideError> {
    Ok(match store.settle(approval_id, status).await? {
        Some(task_token) => Decided::Settled {
            status,
            task_token,
            by,
        },
        None => Decided::SettledElsewhere,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use chrono::{Duration, TimeZone};

    use super::*;
    use crate::approvals::link::{SigningKey, form_token, sign_link};

    /// The store in memory, with the same conditional semantics.
    struct MemoryStore {
        request: Mutex<ApprovalRequest>,
        secret: LinkSecret,
        token: TaskToken,
        /// Settles that fail (as DynamoDB may) before one succeeds.
        failing_settles: Mutex<usize>,
    }

    #[async_trait]
    impl ApprovalStore for MemoryStore {
        async fn get(&self, id: &str) -> Result<Option<ApprovalRequest>, PortError> {
            let request = self.request.lock().unwrap();
            Ok((request.id == id).then(|| request.clone()))
        }

        async fn link_secret(&self, id: &str) -> Result<Option<LinkSecret>, PortError> {
            let request = self.request.lock().unwrap();
            Ok((request.id == id).then(|| self.secret.clone()))
        }

        async fn create(
            &self,
            _: &ApprovalRequest,
            _: &TaskToken,
            _: &LinkSecret,
        ) -> Result<(), PortError> {
            unreachable!("decisions never create approvals")
        }

        async fn replace_token(&self, _: &str, _: &TaskToken) -> Result<(), PortError> {
            unreachable!("decisions never replace tokens")
        }

        async fn cast(
            &self,
            _: &str,
            approver: &str,
            record: &VoteRecord,
        ) -> Result<Option<ApprovalRequest>, PortError> {
            let mut request = self.request.lock().unwrap();
            let pending = request.status == Status::Pending
                && request
                    .votes
                    .get(approver)
                    .is_some_and(|v| v.vote == Vote::Pending);
            if !pending {
                return Ok(None);
            }
            request.votes.insert(approver.to_owned(), record.clone());
            Ok(Some(request.clone()))
        }

        async fn settle(&self, _: &str, status: Status) -> Result<Option<TaskToken>, PortError> {
            let mut failing = self.failing_settles.lock().unwrap();
            if *failing > 0 {
                *failing -= 1;
                return Err(PortError::Transient {
                    service: "dynamodb",
                    detail: "the settle timed out".into(),
                });
            }
            let mut request = self.request.lock().unwrap();
            if request.status != Status::Pending {
                return Ok(None);
            }
            request.status = status;
            Ok(Some(self.token.clone()))
        }

        async fn resettle(&self, _: &str, from: Status, to: Status) -> Result<(), PortError> {
            let mut request = self.request.lock().unwrap();
            if request.status == from {
                request.status = to;
            }
            Ok(())
        }
    }

    /// The waiting task: fails `failing` deliveries (Step Functions unreachable), then records
    /// each answer it takes.
    #[derive(Default)]
    struct Task {
        failing: Mutex<usize>,
        answers: Mutex<Vec<String>>,
    }

    impl Task {
        fn answer(&self, answer: String) -> Result<Delivery, PortError> {
            let mut failing = self.failing.lock().unwrap();
            if *failing > 0 {
                *failing -= 1;
                return Err(PortError::Transient {
                    service: "states",
                    detail: "SendTaskSuccess timed out".into(),
                });
            }
            self.answers.lock().unwrap().push(answer);
            Ok(Delivery::Delivered)
        }
    }

    #[async_trait]
    impl WaitingTask for Task {
        async fn approved(&self, token: &TaskToken, id: &str) -> Result<Delivery, PortError> {
            self.answer(format!("approved {id} {}", token.reveal()))
        }

        async fn rejected(
            &self,
            token: &TaskToken,
            id: &str,
            by: &str,
            _: Option<&str>,
        ) -> Result<Delivery, PortError> {
            self.answer(format!("rejected {id} by {by} {}", token.reveal()))
        }
    }

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 0).unwrap()
    }

    fn keys() -> LinkKeys {
        LinkKeys {
            current: SigningKey::new(vec![9; 32]).unwrap(),
            previous: None,
        }
    }

    fn secret() -> LinkSecret {
        LinkSecret::new(vec![4; 32]).unwrap()
    }

    /// The keys the store's approval's links are signed with.
    fn approval_keys() -> LinkKeys {
        keys().for_approval(&secret())
    }

    const APPROVERS: [&str; 3] = ["alice@example.com", "bob@example.com", "carol@example.com"];

    fn store(quorum: usize) -> MemoryStore {
        let pending = VoteRecord::pending();
        MemoryStore {
            request: Mutex::new(ApprovalRequest {
                id: "apr-1".into(),
                action: Action::SecretRotateNow {
                    secret_id: "prod/db".into(),
                },
                environment: Environment::Production,
                requester: "alice@example.com".into(),
                reason: "leaked in a ticket".into(),
                approval: Approval {
                    approvers: APPROVERS.iter().map(|a| (*a).to_owned()).collect(),
                    quorum,
                    timeout_minutes: 60,
                    requester_may_approve: false,
                },
                created_at: now(),
                expires_at: now() + Duration::hours(1),
                status: Status::Pending,
                votes: APPROVERS
                    .iter()
                    .map(|a| ((*a).to_owned(), pending.clone()))
                    .collect(),
            }),
            secret: secret(),
            token: TaskToken::new("AQCEAAAAKgAAAAMAAAAAAAAAAe…".into()),
            failing_settles: Mutex::new(0),
        }
    }

    /// `approver`'s session for apr-1, as their sign-in left it in their browser.
    fn session_of(approver: &str) -> String {
        ApproverSession {
            approval_id: "apr-1".into(),
            approver: approver.into(),
            subject: format!("sub-{approver}"),
            expires_at: now() + Duration::minutes(15),
        }
        .seal(&approval_keys())
    }

    /// `approver`'s ballot, posted from the browser they signed in with.
    fn ballot(approver: &str, decision: Decision) -> Ballot {
        let claims = LinkClaims {
            approval_id: "apr-1".into(),
            decision,
            approver: approver.into(),
            expires_at: now() + Duration::hours(1),
        };
        Ballot {
            proof: Proof::Session(Some(session_of(approver))),
            signature: sign_link(&approval_keys(), &claims),
            form_token: form_token(&approval_keys(), "apr-1", approver),
            claims,
            comment: Some("ok".into()),
            source_ip: Some("198.51.100.7".into()),
            user_agent: Some("Mozilla/5.0".into()),
        }
    }

    #[tokio::test]
    async fn two_of_three_settles_on_the_second_approval_with_the_token_once() {
        let store = store(2);
        let first = decide(
            &store,
            &keys(),
            &ballot("bob@example.com", Decision::Approve),
            now(),
        )
        .await;
        assert!(
            matches!(
                first,
                Ok(Decided::Counted {
                    approvals: 1,
                    needed: 2
                })
            ),
            "{first:?}"
        );
        let second = decide(
            &store,
            &keys(),
            &ballot("carol@example.com", Decision::Approve),
            now(),
        )
        .await;
        let Ok(Decided::Settled {
            status, task_token, ..
        }) = second
        else {
            panic!("the second approval settles it: {second:?}");
        };
        assert_eq!(status, Status::Approved);
        assert_eq!(task_token, store.token);
        let recorded = store.request.lock().unwrap().votes["carol@example.com"].clone();
        assert_eq!(recorded.source_ip.as_deref(), Some("198.51.100.7"));
        assert_eq!(recorded.comment.as_deref(), Some("ok"));
        assert_eq!(
            recorded.signed_in_as.as_deref(),
            Some("sub-carol@example.com"),
            "the vote records who signed in"
        );
    }

    #[tokio::test]
    async fn whoever_holds_a_link_cannot_decide_without_the_approvers_sign_in() {
        let store = store(1);
        let before = store.request.lock().unwrap().clone();
        let bob = ballot("bob@example.com", Decision::Approve);
        let refusals = [
            // A forwarded email, a shared mailbox, a scanner: the link, no sign-in.
            (Proof::Session(None), "not signed in"),
            // The requester, signed in as herself, with Bob's link and form.
            (
                Proof::Session(Some(session_of("alice@example.com"))),
                "another approver's session",
            ),
            (
                Proof::Session(Some(session_of("bob@example.com").replace('.', "x."))),
                "an altered session",
            ),
        ];
        for (proof, case) in refusals {
            let held = Ballot {
                proof,
                ..bob.clone()
            };
            let refused = decide(&store, &keys(), &held, now()).await;
            assert!(
                matches!(refused, Err(DecideError::SignIn(_))),
                "{case}: {refused:?}"
            );
        }
        assert_eq!(*store.request.lock().unwrap(), before, "nothing written");
        // The session of another approval, signed with that approval's keys, is no session here.
        let elsewhere = ApproverSession {
            approval_id: "apr-1".into(),
            approver: "bob@example.com".into(),
            subject: "sub-bob".into(),
            expires_at: now() + Duration::minutes(15),
        }
        .seal(&keys().for_approval(&LinkSecret::new(vec![5; 32]).unwrap()));
        let refused = decide(
            &store,
            &keys(),
            &Ballot {
                proof: Proof::Session(Some(elsewhere)),
                ..bob.clone()
            },
            now(),
        )
        .await;
        assert!(
            matches!(refused, Err(DecideError::SignIn(SignInError::Tampered))),
            "{refused:?}"
        );
        assert!(
            decide(&store, &keys(), &bob, now()).await.is_ok(),
            "Bob, signed in"
        );
    }

    #[tokio::test]
    async fn by_link_only_a_vote_records_no_sign_in() {
        let store = store(2);
        let held = Ballot {
            proof: Proof::LinkOnly,
            ..ballot("bob@example.com", Decision::Approve)
        };
        let counted = decide(&store, &keys(), &held, now()).await;
        assert!(
            matches!(counted, Ok(Decided::Counted { .. })),
            "{counted:?}"
        );
        let recorded = store.request.lock().unwrap().votes["bob@example.com"].clone();
        assert_eq!(recorded.vote, Vote::Approve);
        assert_eq!(recorded.signed_in_as, None);
    }

    #[tokio::test]
    async fn a_deciding_vote_whose_settle_failed_is_settled_when_the_link_is_used_again() {
        let store = store(1);
        *store.failing_settles.lock().unwrap() = 1;
        let bob = ballot("bob@example.com", Decision::Approve);
        let failed = decide(&store, &keys(), &bob, now()).await;
        assert!(matches!(failed, Err(DecideError::Store(_))), "{failed:?}");
        assert_eq!(store.request.lock().unwrap().status, Status::Pending);
        // Bob presses again: his vote is in, the quorum holds, the settle is finished.
        let again = decide(&store, &keys(), &bob, now()).await;
        let Ok(Decided::Settled {
            status, task_token, ..
        }) = again
        else {
            panic!("the retry settles it: {again:?}");
        };
        assert_eq!(status, Status::Approved);
        assert_eq!(task_token, store.token);
        // And only once.
        let late = decide(&store, &keys(), &bob, now()).await;
        assert!(
            matches!(late, Err(DecideError::NoLongerOpen(Status::Approved))),
            "{late:?}"
        );
    }

    #[tokio::test]
    async fn a_settle_the_workflow_did_not_hear_is_undone_and_the_same_link_resumes_it() {
        let store = store(1);
        let task = Task {
            failing: Mutex::new(1),
            ..Task::default()
        };
        let bob = ballot("bob@example.com", Decision::Approve);
        let failed = decide_and_resume(&store, &task, &keys(), &bob, now()).await;
        assert!(
            matches!(
                failed,
                Err(DecideError::NotPassedOn {
                    unreopened: None,
                    ..
                })
            ),
            "{failed:?}"
        );
        assert_eq!(store.request.lock().unwrap().status, Status::Pending);
        assert!(task.answers.lock().unwrap().is_empty());

        let again = decide_and_resume(&store, &task, &keys(), &bob, now()).await;
        assert!(
            matches!(
                again,
                Ok(Resumed::Settled {
                    status: Status::Approved,
                    ..
                })
            ),
            "{again:?}"
        );
        assert_eq!(store.request.lock().unwrap().status, Status::Approved);
        assert_eq!(
            *task.answers.lock().unwrap(),
            [format!("approved apr-1 {}", store.token.reveal())]
        );
    }

    #[tokio::test]
    async fn a_press_after_the_votes_decided_finishes_it_as_they_decided_in_the_deciders_name() {
        let store = store(1);
        *store.failing_settles.lock().unwrap() = 1;
        let bob = ballot("bob@example.com", Decision::Approve);
        assert!(decide(&store, &keys(), &bob, now()).await.is_err());
        // Carol presses Reject: Bob's approval had decided it; hers is not a vote any more.
        let task = Task::default();
        let carol = ballot("carol@example.com", Decision::Reject);
        let after = decide_and_resume(&store, &task, &keys(), &carol, now()).await;
        let Ok(Resumed::Settled { status, by }) = after else {
            panic!("the press finishes the settle: {after:?}");
        };
        assert_eq!(status, Status::Approved);
        assert_eq!(by.approver, "bob@example.com");
        assert_eq!(by.comment.as_deref(), Some("ok"));
        let request = store.request.lock().unwrap().clone();
        assert_eq!(request.votes["carol@example.com"].vote, Vote::Pending);
        assert_eq!(
            *task.answers.lock().unwrap(),
            [format!("approved apr-1 {}", store.token.reveal())]
        );
    }

    #[tokio::test]
    async fn a_task_closed_before_its_expiry_took_an_earlier_answer() {
        let store = store(1);
        struct Closed;
        #[async_trait]
        impl WaitingTask for Closed {
            async fn approved(&self, _: &TaskToken, _: &str) -> Result<Delivery, PortError> {
                Ok(Delivery::TooLate)
            }
            async fn rejected(
                &self,
                _: &TaskToken,
                _: &str,
                _: &str,
                _: Option<&str>,
            ) -> Result<Delivery, PortError> {
                Ok(Delivery::TooLate)
            }
        }
        let bob = ballot("bob@example.com", Decision::Approve);
        let answered = decide_and_resume(&store, &Closed, &keys(), &bob, now()).await;
        assert!(
            matches!(answered, Ok(Resumed::AnsweredBefore(Status::Approved))),
            "{answered:?}"
        );
        assert_eq!(store.request.lock().unwrap().status, Status::Approved);
    }

    #[tokio::test]
    async fn one_reject_settles_it_as_rejected() {
        let store = store(2);
        let rejected = decide(
            &store,
            &keys(),
            &ballot("bob@example.com", Decision::Reject),
            now(),
        )
        .await;
        assert!(matches!(
            rejected,
            Ok(Decided::Settled {
                status: Status::Rejected,
                ..
            })
        ));
        let late = decide(
            &store,
            &keys(),
            &ballot("carol@example.com", Decision::Approve),
            now(),
        )
        .await;
        assert!(matches!(
            late,
            Err(DecideError::NoLongerOpen(Status::Rejected))
        ));
    }

    #[tokio::test]
    async fn a_replayed_post_counts_once() {
        let store = store(2);
        let ballot = ballot("bob@example.com", Decision::Approve);
        decide(&store, &keys(), &ballot, now()).await.unwrap();
        let replay = decide(&store, &keys(), &ballot, now()).await;
        assert!(
            matches!(replay, Err(DecideError::AlreadyVoted)),
            "{replay:?}"
        );
    }

    #[tokio::test]
    async fn the_requester_cannot_approve_their_own_action() {
        let store = store(1);
        let own = decide(
            &store,
            &keys(),
            &ballot("alice@example.com", Decision::Approve),
            now(),
        )
        .await;
        assert!(matches!(
            own,
            Err(DecideError::Policy(
                PolicyError::RequesterMayNotApprove { .. }
            ))
        ));
    }

    #[tokio::test]
    async fn a_tampered_foreign_or_expired_ballot_is_refused() {
        let store = store(1);
        let mut tampered = ballot("bob@example.com", Decision::Approve);
        tampered.claims.decision = Decision::Reject;
        assert!(matches!(
            decide(&store, &keys(), &tampered, now()).await,
            Err(DecideError::Link(LinkError::Tampered))
        ));
        // Signed with the signing key alone, as someone who read it from Secrets Manager
        // would: the approval's secret is missing.
        let mut forged = ballot("bob@example.com", Decision::Approve);
        forged.signature = sign_link(&keys(), &forged.claims);
        forged.form_token = form_token(&keys(), "apr-1", "bob@example.com");
        assert!(matches!(
            decide(&store, &keys(), &forged, now()).await,
            Err(DecideError::Link(LinkError::Tampered))
        ));
        let mut other_form = ballot("bob@example.com", Decision::Approve);
        other_form.form_token = form_token(&approval_keys(), "apr-1", "carol@example.com");
        assert!(matches!(
            decide(&store, &keys(), &other_form, now()).await,
            Err(DecideError::Link(LinkError::BadFormToken))
        ));
        let stranger = ballot("mallory@example.com", Decision::Approve);
        assert!(matches!(
            decide(&store, &keys(), &stranger, now()).await,
            Err(DecideError::NotAnApprover { .. })
        ));
        let late = now() + Duration::hours(2);
        assert!(matches!(
            decide(
                &store,
                &keys(),
                &ballot("bob@example.com", Decision::Approve),
                late
            )
            .await,
            Err(DecideError::Link(LinkError::Expired(_)))
        ));
        assert_eq!(store.request.lock().unwrap().status, Status::Pending);
    }

    #[test]
    fn the_task_token_never_prints() {
        let token = TaskToken::new("secret-token".into());
        assert!(!format!("{token:?}").contains("secret"));
        let request = store(1).request.lock().unwrap().clone();
        assert!(!serde_json::to_string(&request).unwrap().contains("AQCE"));
    }
}
