//! Processing each event once although it may be delivered more than once (EventBridge and
//! SQS deliver at least once). No library does this for Rust Lambdas; the pattern is a
//! conditional write keyed on the event id (BRIEF §5).

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};

use crate::port::PortError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// No one has processed this key: go ahead, then [`IdempotencyStore::complete`].
    First,
    /// Processed already: skip.
    Completed,
    /// Claimed by a run that may still be going. Not done: a delivery that finds it fails,
    /// so that it is retried (and ends in the DLQ rather than vanishing).
    InProgress,
}

/// Claims keys (DynamoDB, with a conditional put).
#[async_trait]
pub trait IdempotencyStore: Send + Sync {
    /// Claims `key` until `until`; a claim whose time ran out (its holder died) can be taken.
    async fn claim(
        &self,
        key: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Claim, PortError>;
    /// Marks `key` done; duplicates are recognised until `until`.
    async fn complete(&self, key: &str, until: DateTime<Utc>) -> Result<(), PortError>;
    /// Gives `key` up after a failure, so that a redelivery processes it again.
    async fn release(&self, key: &str) -> Result<(), PortError>;
}

/// How long a claim holds while processing (longer than any run), and how long a completed
/// key is remembered (longer than any redelivery).
pub const PROCESSING: Duration = Duration::minutes(15);
pub const REMEMBERED: Duration = Duration::days(7);

/// How long a claim outlives the invocation that took it.
const CLAIM_MARGIN: Duration = Duration::seconds(30);

/// Until when an invocation that must end by `deadline` holds its claim: just past its
/// deadline, so that Lambda's retry of a timed-out run (a minute later at the earliest) finds
/// the claim expired and takes it over. Never longer than [`PROCESSING`]; without a usable
/// deadline, [`PROCESSING`].
pub fn claim_until(now: DateTime<Utc>, deadline: Option<DateTime<Utc>>) -> DateTime<Utc> {
    deadline
        .filter(|deadline| *deadline > now)
        .map_or(now + PROCESSING, |deadline| deadline + CLAIM_MARGIN)
        .min(now + PROCESSING)
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn a_claim_ends_just_after_its_invocations_deadline() {
        let now = Utc.with_ymd_and_hms(2026, 12, 2, 12, 0, 0).unwrap();
        let deadline = now + Duration::minutes(5);
        assert_eq!(
            claim_until(now, Some(deadline)),
            deadline + Duration::seconds(30)
        );
        // Lambda retries a timed-out asynchronous invocation a minute later at the earliest.
        assert!(claim_until(now, Some(deadline)) < deadline + Duration::minutes(1));
        assert_eq!(claim_until(now, None), now + PROCESSING);
        assert_eq!(
            claim_until(now, Some(now)),
            now + PROCESSING,
            "no usable deadline"
        );
        assert_eq!(
            claim_until(now, Some(now + Duration::hours(1))),
            now + PROCESSING
        );
    }
}
