//! Maestro's domain: the rules of each capability as plain Rust.
//!
//! Nothing here knows about the AWS SDK, the network or the clock: adapters in `maestro-aws`
//! implement the ports (traits) declared here, and functions call the pure rules with typed
//! input they validated at the edge.

pub mod access;
pub mod approvals;
pub mod hex;
pub mod idempotency;
pub mod inventory;
pub mod port;
pub mod quota;
pub mod rotation;
pub mod sso;
