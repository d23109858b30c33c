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
    /// Processed already, or being processed now: skip.
    Duplicate,
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
