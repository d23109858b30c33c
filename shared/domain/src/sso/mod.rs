//! IAM Identity Center (SSO): the assignment model, plans and the provisioning monitor.

pub mod provisioning;
