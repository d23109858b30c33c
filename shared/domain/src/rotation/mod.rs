//! Secret rotation (BRIEF §4): the four-step protocol Secrets Manager drives, the strategies
//! that change a credential at its target, and the rules for secrets rotated by hand.

pub mod alerts;
pub mod credentials;
pub mod protocol;
pub mod schedule;
