//! IAM Identity Center (SSO): the assignment model, plans and the provisioning monitor.

pub mod apply;
pub mod events;
pub mod model;
pub mod plan;
pub mod provisioning;
pub mod reconcile;
pub mod snapshot;
pub mod synthetic;
