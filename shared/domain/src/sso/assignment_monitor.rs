//! The assignment monitor (flow C): account assignment requests are asynchronous in IAM
//! Identity Center, so each one is polled until it is final and the outcome is reported.
//!
//! The wire shape of a request, as it travels on the monitor queue and through the state
//! machine, is [`AssignmentRequest`] in camelCase JSON:
//!
//! ```json
//! {"requestId": "2d6f0d7e-…", "operation": "CREATE",
//!  "instanceArn": "arn:aws:sso:::instance/ssoins-…", "accountId": "111122223333",
//!  "permissionSetArn": "arn:aws:sso:::permissionSet/ssoins-…/ps-…",
//!  "principalId": "9067…", "principalType": "GROUP"}
//! ```

use std::fmt;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::port::PortError;

/// One asynchronous create or delete of an account assignment, as IAM Identity Center
/// acknowledged it (its request id comes from the `AccountAssignmentCreationStatus` or
/// `AccountAssignmentDeletionStatus` that the create or delete call returned).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AssignmentRequest {
    pub request_id: RequestId,
    pub operation: AssignmentOperation,
    pub instance_arn: InstanceArn,
    pub account_id: AccountId,
    pub permission_set_arn: PermissionSetArn,
    pub principal_id: PrincipalId,
    pub principal_type: PrincipalType,
    /// The SSO sync's run that asked for it, when it did: the final status is recorded
    /// against that run's plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<RunId>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AssignmentOperation {
    Create,
    Delete,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PrincipalType {
    User,
    Group,
}

/// A field of a request that does not have the shape IAM Identity Center gives it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{field} {problem}, got {value:?}")]
pub struct InvalidField {
    pub field: &'static str,
    pub problem: &'static str,
    pub value: String,
}

impl InvalidField {
    fn new(field: &'static str, problem: &'static str, value: &str) -> Self {
        // Long garbage would flood logs and error pages; the start is enough to recognise it.
        let value = value.chars().take(80).collect();
        InvalidField {
            field,
            problem,
            value,
        }
    }
}

/// Declares a validated string newtype that (de)serialises as a plain string.
macro_rules! validated_string {
    ($(#[$doc:meta])* $name:ident, $field:literal, $check:expr, $problem:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = InvalidField;

            fn try_from(value: String) -> Result<Self, Self::Error> {
                let check: fn(&str) -> bool = $check;
                if check(&value) {
                    Ok($name(value))
                } else {
                    Err(InvalidField::new($field, $problem, &value))
                }
            }
        }

        impl TryFrom<&str> for $name {
            type Error = InvalidField;

            fn try_from(value: &str) -> Result<Self, Self::Error> {
                $name::try_from(value.to_owned())
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

validated_string!(
    /// The id IAM Identity Center gave an asynchronous assignment operation (a UUID).
    RequestId,
    "requestId",
    |s| (1..=64).contains(&s.len()) && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'),
    "must be 1 to 64 letters, digits or dashes"
);

validated_string!(
    /// The id of an SSO sync run (the id of the invocation that ran it).
    RunId,
    "runId",
    |s| (1..=64).contains(&s.len()) && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'),
    "must be 1 to 64 letters, digits or dashes"
);

validated_string!(
    /// A 12-digit AWS account id.
    AccountId,
    "accountId",
    |s| s.len() == 12 && s.chars().all(|c| c.is_ascii_digit()),
    "must be exactly 12 digits"
);

validated_string!(
    /// The ARN of an IAM Identity Center instance: `arn:<partition>:sso:::instance/ssoins-…`.
    InstanceArn,
    "instanceArn",
    |s| sso_arn_resource(s).is_some_and(|r| r.starts_with("instance/ssoins-")),
    "must be an IAM Identity Center instance ARN (arn:aws:sso:::instance/ssoins-…)"
);

validated_string!(
    /// The ARN of a permission set: `arn:<partition>:sso:::permissionSet/ssoins-…/ps-…`.
    PermissionSetArn,
    "permissionSetArn",
    |s| {
        sso_arn_resource(s).is_some_and(|r| {
            let mut parts = r.split('/');
            parts.next() == Some("permissionSet")
                && parts.next().is_some_and(|i| i.starts_with("ssoins-"))
                && parts.next().is_some_and(|p| p.starts_with("ps-"))
                && parts.next().is_none()
        })
    },
    "must be a permission set ARN (arn:aws:sso:::permissionSet/ssoins-…/ps-…)"
);

validated_string!(
    /// The identity-store id of a user or group.
    PrincipalId,
    "principalId",
    |s| (1..=47).contains(&s.len()) && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'),
    "must be 1 to 47 letters, digits or dashes"
);

/// The resource part of an `arn:<partition>:sso:::<resource>` ARN, if `arn` is one.
fn sso_arn_resource(arn: &str) -> Option<&str> {
    let mut parts = arn.splitn(6, ':');
    let (Some("arn"), Some(partition), Some("sso"), Some(""), Some(""), Some(resource)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return None;
    };
    (!partition.is_empty()).then_some(resource)
}

/// What IAM Identity Center says of a request right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProvisioningStatus {
    InProgress,
    Succeeded,
    Failed { reason: String },
}

/// How patiently the monitor polls one request: waits double from `first_wait_seconds` up to
/// `max_wait_seconds`, and after `max_polls` polls a request still in progress is reported as
/// timed out rather than polled forever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PollPolicy {
    first_wait_seconds: u32,
    max_wait_seconds: u32,
    max_polls: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum InvalidPollPolicy {
    #[error("the first wait must be at least 1 second")]
    ZeroFirstWait,
    #[error("the longest wait ({max}s) is shorter than the first ({first}s)")]
    MaxBelowFirst { first: u32, max: u32 },
    #[error("at least one poll is needed")]
    ZeroPolls,
}

impl PollPolicy {
    pub fn new(
        first_wait_seconds: u32,
        max_wait_seconds: u32,
        max_polls: u32,
    ) -> Result<Self, InvalidPollPolicy> {
        if first_wait_seconds == 0 {
            return Err(InvalidPollPolicy::ZeroFirstWait);
        }
        if max_wait_seconds < first_wait_seconds {
            return Err(InvalidPollPolicy::MaxBelowFirst {
                first: first_wait_seconds,
                max: max_wait_seconds,
            });
        }
        if max_polls == 0 {
            return Err(InvalidPollPolicy::ZeroPolls);
        }
        Ok(PollPolicy {
            first_wait_seconds,
            max_wait_seconds,
            max_polls,
        })
    }

    /// The wait after the `polls`-th poll (1-based) found the request still in progress.
    pub fn wait_after(&self, polls: u32) -> u32 {
        let doublings = polls.saturating_sub(1).min(31);
        self.first_wait_seconds
            .saturating_mul(1u32 << doublings)
            .min(self.max_wait_seconds)
    }
}

/// Where one request's monitoring stands between two polls; it is the state the workflow
/// carries from one status check to the next.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StatusCheck {
    pub request: AssignmentRequest,
    /// Polls already made for this request.
    #[serde(default)]
    pub polls: u32,
    #[serde(default)]
    pub step: CheckStep,
}

/// What the workflow asks of the status function.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CheckStep {
    /// Read the request's status.
    #[default]
    Poll,
    /// IAM Identity Center does not know the request (a MONITOR_ERROR report goes out): no
    /// operation runs for it, so free its slot now rather than when it expires, two hours
    /// later.
    GiveUp,
}

/// What the workflow does after a poll.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MonitorProgress {
    /// Wait `wait_seconds`, then poll again with the carried check.
    #[serde(rename_all = "camelCase")]
    InProgress {
        request: AssignmentRequest,
        polls: u32,
        wait_seconds: u32,
    },
    /// The request is final (or the monitor gave up): publish the report.
    #[serde(rename_all = "camelCase")]
    Finished { report: ProvisioningReport },
    /// The answer to [`CheckStep::GiveUp`]: the request's slot is free.
    SlotFreed,
}

/// The final word on one request, published to the audit topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProvisioningReport {
    pub request: AssignmentRequest,
    pub status: FinalStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    /// What kind of failure, for a FAILED request: what an operator does next depends on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_class: Option<FailureClass>,
    pub polls: u32,
    pub checked_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FinalStatus {
    Succeeded,
    Failed,
    /// Still in progress when the poll budget ran out: it may yet finish, so an operator
    /// must look; it is neither a success nor a failure.
    TimedOut,
    /// Set by the workflow, not by a poll: the status could not be read (the request is
    /// unknown, say), and the report says why instead of the request being lost.
    MonitorError,
}

impl FinalStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            FinalStatus::Succeeded => "SUCCEEDED",
            FinalStatus::Failed => "FAILED",
            FinalStatus::TimedOut => "TIMED_OUT",
            FinalStatus::MonitorError => "MONITOR_ERROR",
        }
    }
}

/// The kinds of FAILED request IAM Identity Center reports. None is retried by the monitor:
/// a FAILED request is final, and the next reconcile plans the assignment again if it is
/// still desired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FailureClass {
    /// The account is not (or no longer) an active member of the organisation.
    AccountNotAvailable,
    /// The permission set was deleted, or is not provisioned.
    MissingPermissionSet,
    /// The user or group no longer exists.
    MissingPrincipal,
    /// Another operation on the same account or permission set was in flight.
    Conflict,
    /// A quota of IAM Identity Center or IAM (roles, policies) was reached.
    QuotaExceeded,
    Other,
}

impl FailureClass {
    /// Classifies IAM Identity Center's failure reason by the phrases it uses.
    pub fn of_reason(reason: &str) -> FailureClass {
        let reason = reason.to_ascii_lowercase();
        let has = |words: &[&str]| words.iter().any(|w| reason.contains(w));
        if has(&[
            "not supported account",
            "suspended",
            "closed",
            "not a member",
            "account is not",
        ]) {
            FailureClass::AccountNotAvailable
        } else if has(&["permission set", "permissionset"])
            && has(&["not found", "does not exist", "deleted", "not provisioned"])
        {
            FailureClass::MissingPermissionSet
        } else if has(&["principal", "group", "user"])
            && has(&["not found", "does not exist", "deleted"])
        {
            FailureClass::MissingPrincipal
        } else if has(&["conflict", "in progress", "concurrent"]) {
            FailureClass::Conflict
        } else if has(&["quota", "limit exceeded", "limitexceeded", "too many"]) {
            FailureClass::QuotaExceeded
        } else {
            FailureClass::Other
        }
    }
}

/// Keeps the final reports of the requests a sync run asked for, with that run.
#[async_trait]
pub trait ReportLog: Send + Sync {
    async fn record(&self, report: &ProvisioningReport) -> Result<(), PortError>;
}

/// Decides what follows a poll that found `status` for `check`'s request.
pub fn after_poll(
    policy: &PollPolicy,
    check: StatusCheck,
    status: ProvisioningStatus,
    now: DateTime<Utc>,
) -> MonitorProgress {
    let polls = check.polls.saturating_add(1);
    let finished = |status, failure_reason: Option<String>| MonitorProgress::Finished {
        report: ProvisioningReport {
            request: check.request.clone(),
            status,
            failure_class: (status == FinalStatus::Failed)
                .then(|| FailureClass::of_reason(failure_reason.as_deref().unwrap_or_default())),
            failure_reason,
            polls,
            checked_at: now,
        },
    };
    match status {
        ProvisioningStatus::Succeeded => finished(FinalStatus::Succeeded, None),
        ProvisioningStatus::Failed { reason } => finished(FinalStatus::Failed, Some(reason)),
        ProvisioningStatus::InProgress if polls >= policy.max_polls => finished(
            FinalStatus::TimedOut,
            Some(format!("still in progress after {polls} polls")),
        ),
        ProvisioningStatus::InProgress => MonitorProgress::InProgress {
            wait_seconds: policy.wait_after(polls),
            request: check.request,
            polls,
        },
    }
}

/// The requests one monitor execution watches, named so that a redelivered batch does not
/// start a second execution.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MonitorBatch {
    #[serde(skip)]
    pub name: String,
    pub requests: Vec<AssignmentRequest>,
}

impl MonitorBatch {
    /// A batch of requests, named from the ids of the messages that carried them.
    pub fn new<'a>(
        message_ids: impl IntoIterator<Item = &'a str>,
        requests: Vec<AssignmentRequest>,
    ) -> Self {
        let mut ids: Vec<&str> = message_ids.into_iter().collect();
        ids.sort_unstable();
        MonitorBatch {
            name: format!("sso-monitor-{:016x}-{}", fnv1a(&ids), requests.len()),
            requests,
        }
    }
}

/// FNV-1a over the ids with a separator: stable across builds and platforms, unlike the
/// standard library's hasher, so names stay the same when the function is redeployed.
fn fnv1a(ids: &[&str]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    ids.iter()
        .flat_map(|id| id.bytes().chain(std::iter::once(0)))
        .fold(OFFSET, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(PRIME)
        })
}

/// How a monitor start went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MonitorStart {
    Started {
        execution_arn: String,
    },
    /// An execution with this batch's name exists: the batch was delivered before.
    AlreadyStarted,
}

/// Reads the provisioning status of one request (IAM Identity Center).
#[async_trait]
pub trait ProvisioningStatusReader: Send + Sync {
    async fn provisioning_status(
        &self,
        request: &AssignmentRequest,
    ) -> Result<ProvisioningStatus, PortError>;
}

/// Starts a monitor workflow for a batch of requests (Step Functions).
#[async_trait]
pub trait MonitorLauncher: Send + Sync {
    async fn start_monitor(&self, batch: &MonitorBatch) -> Result<MonitorStart, PortError>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn request() -> AssignmentRequest {
        serde_json::from_value(serde_json::json!({
            "requestId": "2d6f0d7e-4a4e-4a57-9a2b-3f0f6c1d2e3f",
            "operation": "CREATE",
            "instanceArn": "arn:aws:sso:::instance/ssoins-1234567890abcdef",
            "accountId": "111122223333",
            "permissionSetArn": "arn:aws:sso:::permissionSet/ssoins-1234567890abcdef/ps-0123456789abcdef",
            "principalId": "90676f4e-e0a1-70d2-3bc5-1a2b3c4d5e6f",
            "principalType": "GROUP"
        }))
        .expect("the fixture is a valid request")
    }

    fn policy() -> PollPolicy {
        PollPolicy::new(2, 10, 4).expect("valid policy")
    }

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 0).unwrap()
    }

    fn check(polls: u32) -> StatusCheck {
        StatusCheck {
            step: CheckStep::Poll,
            request: request(),
            polls,
        }
    }

    #[test]
    fn a_request_round_trips_through_its_wire_shape() {
        let json = serde_json::to_value(request()).unwrap();
        assert_eq!(json["operation"], "CREATE");
        assert_eq!(json["accountId"], "111122223333");
        let back: AssignmentRequest = serde_json::from_value(json).unwrap();
        assert_eq!(back, request());
    }

    #[test]
    fn a_malformed_field_is_named_in_the_error() {
        let mut json = serde_json::to_value(request()).unwrap();
        json["accountId"] = "12345".into();
        let error = serde_json::from_value::<AssignmentRequest>(json)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("accountId must be exactly 12 digits"),
            "{error}"
        );
    }

    #[test]
    fn a_missing_field_and_an_unknown_operation_are_rejected() {
        let mut json = serde_json::to_value(request()).unwrap();
        json.as_object_mut().unwrap().remove("principalId");
        let error = serde_json::from_value::<AssignmentRequest>(json).unwrap_err();
        assert!(error.to_string().contains("principalId"), "{error}");

        let mut json = serde_json::to_value(request()).unwrap();
        json["operation"] = "UPDATE".into();
        let error = serde_json::from_value::<AssignmentRequest>(json).unwrap_err();
        assert!(error.to_string().contains("UPDATE"), "{error}");
    }

    #[test]
    fn arns_of_the_wrong_kind_are_rejected() {
        assert!(InstanceArn::try_from("arn:aws:sso:::permissionSet/ssoins-1/ps-1").is_err());
        assert!(InstanceArn::try_from("arn:aws:iam:::instance/ssoins-1").is_err());
        assert!(InstanceArn::try_from("arn:aws-us-gov:sso:::instance/ssoins-1").is_ok());
        assert!(PermissionSetArn::try_from("arn:aws:sso:::permissionSet/ssoins-1").is_err());
        assert!(PermissionSetArn::try_from("arn:aws:sso:::permissionSet/ssoins-1/ps-2/x").is_err());
    }

    #[test]
    fn a_succeeded_request_finishes_with_its_poll_count() {
        let progress = after_poll(&policy(), check(1), ProvisioningStatus::Succeeded, now());
        let MonitorProgress::Finished { report } = progress else {
            panic!("expected a finished report, got {progress:?}");
        };
        assert_eq!(report.status, FinalStatus::Succeeded);
        assert_eq!(report.polls, 2);
        assert_eq!(report.failure_reason, None);
    }

    #[test]
    fn a_failed_request_is_final_at_once_and_keeps_the_reason() {
        let status = ProvisioningStatus::Failed {
            reason: "Received a 404 status error: Not supported account".into(),
        };
        let MonitorProgress::Finished { report } = after_poll(&policy(), check(0), status, now())
        else {
            panic!("a failure must not be polled again");
        };
        assert_eq!(report.status, FinalStatus::Failed);
        assert_eq!(
            report.failure_reason.as_deref(),
            Some("Received a 404 status error: Not supported account")
        );
        assert_eq!(
            report.failure_class,
            Some(FailureClass::AccountNotAvailable)
        );
    }

    #[test]
    fn failure_reasons_are_classified() {
        let cases = [
            (
                "Received a 404 status error: Not supported account",
                FailureClass::AccountNotAvailable,
            ),
            (
                "The account 111122223333 is suspended",
                FailureClass::AccountNotAvailable,
            ),
            (
                "PermissionSet ps-1 does not exist",
                FailureClass::MissingPermissionSet,
            ),
            ("The group was deleted", FailureClass::MissingPrincipal),
            (
                "ConflictException: another operation is in progress",
                FailureClass::Conflict,
            ),
            (
                "IAM role quota exceeded for the account",
                FailureClass::QuotaExceeded,
            ),
            ("Something unexpected", FailureClass::Other),
        ];
        for (reason, class) in cases {
            assert_eq!(FailureClass::of_reason(reason), class, "{reason}");
        }
    }

    #[test]
    fn waits_double_up_to_the_longest_wait() {
        let waits: Vec<u32> = (1..=5).map(|poll| policy().wait_after(poll)).collect();
        assert_eq!(waits, vec![2, 4, 8, 10, 10]);
    }

    #[test]
    fn a_request_in_progress_waits_then_times_out_after_the_last_poll() {
        let progress = after_poll(&policy(), check(0), ProvisioningStatus::InProgress, now());
        assert_eq!(
            progress,
            MonitorProgress::InProgress {
                request: request(),
                polls: 1,
                wait_seconds: 2
            }
        );
        let MonitorProgress::Finished { report } =
            after_poll(&policy(), check(3), ProvisioningStatus::InProgress, now())
        else {
            panic!("the fourth poll is the last");
        };
        assert_eq!(report.status, FinalStatus::TimedOut);
        assert_eq!(report.polls, 4);
    }

    #[test]
    fn progress_has_the_shape_the_state_machine_reads() {
        let waiting = after_poll(&policy(), check(0), ProvisioningStatus::InProgress, now());
        let json = serde_json::to_value(&waiting).unwrap();
        assert_eq!(json["state"], "IN_PROGRESS");
        assert_eq!(json["waitSeconds"], 2);
        assert_eq!(json["polls"], 1);

        let done = after_poll(&policy(), check(0), ProvisioningStatus::Succeeded, now());
        let json = serde_json::to_value(&done).unwrap();
        assert_eq!(json["state"], "FINISHED");
        assert_eq!(json["report"]["status"], "SUCCEEDED");
        assert_eq!(
            json["report"]["request"]["requestId"],
            request().request_id.as_str()
        );
    }

    #[test]
    fn invalid_poll_policies_are_refused() {
        assert_eq!(
            PollPolicy::new(0, 5, 3),
            Err(InvalidPollPolicy::ZeroFirstWait)
        );
        assert_eq!(
            PollPolicy::new(5, 2, 3),
            Err(InvalidPollPolicy::MaxBelowFirst { first: 5, max: 2 })
        );
        assert_eq!(PollPolicy::new(1, 5, 0), Err(InvalidPollPolicy::ZeroPolls));
    }

    #[test]
    fn a_batch_is_named_by_its_messages_in_any_order() {
        let a = MonitorBatch::new(["m-1", "m-2"], vec![request()]);
        let b = MonitorBatch::new(["m-2", "m-1"], vec![request()]);
        let c = MonitorBatch::new(["m-1", "m-3"], vec![request()]);
        assert_eq!(a.name, b.name);
        assert_ne!(a.name, c.name);
        assert!(
            a.name.len() <= 80,
            "Step Functions names are at most 80 characters"
        );
        assert!(
            a.name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-')
        );
    }
}
