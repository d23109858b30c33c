//! IAM Identity Center's quotas, shared by every function that calls it: at most 20 sso-admin
//! calls a second for the whole region, and at most 15 asynchronous assignment operations
//! outstanding (neither can be raised). Each Lambda is one of many, so the governor lives in
//! a shared store (DynamoDB), not in memory.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::port::PortError;

pub const SSO_ADMIN_CALLS_PER_SECOND: u32 = 20;
/// The calls of each second that readers (reconcile runs, events, explain) may not take: the
/// worker's writes and the monitor's polls always find room, however much is being read.
pub const SSO_ADMIN_CALLS_KEPT_FOR_CHANGES: u32 = 5;
pub const SSO_ADMIN_OUTSTANDING_OPERATIONS: usize = 15;

/// A shared budget of calls per second.
#[async_trait]
pub trait CallRate: Send + Sync {
    /// Waits for a slot in the current or a later second; fails (Transient) when none comes
    /// soon, so the caller's retry takes over.
    async fn take(&self) -> Result<(), PortError>;
}

/// A shared count of operations in flight.
#[async_trait]
pub trait OutstandingOperations: Send + Sync {
    /// Reserves a slot for `key` on behalf of `holder` until `until` (a holder that dies
    /// frees it then); `false` when every slot is taken, or when another holder has `key`
    /// (two operations on one assignment would be two outstanding operations in one slot).
    /// The same holder reserving again (a redelivered change) succeeds.
    async fn reserve(
        &self,
        key: &str,
        holder: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool, PortError>;
    async fn release(&self, key: &str) -> Result<(), PortError>;
}

/// The key of an assignment's outstanding operation: the assignment itself, which both the
/// worker (before the request exists) and the monitor (after it ends) know.
pub fn operation_key(account_id: &str, permission_set_arn: &str, principal_id: &str) -> String {
    format!("{account_id}|{permission_set_arn}|{principal_id}")
}
