//! IAM Identity Center (SSO): the assignment model, plans and the assignment monitor.

pub mod apply;
pub mod assignment_monitor;
pub mod events;
pub mod model;
pub mod plan;
pub mod reconcile;
pub mod snapshot;
pub mod synthetic;
