//! AWS's list prices in us-east-1, on demand, as AWS lists them (November 2026), in dollars:
//! the one price list of the cost example (`tests/examples/cost.rs`) and the organisation
//! simulation (`benches/discovery_scale.rs`).
#![allow(dead_code)]

pub const LAMBDA_REQUEST: f64 = 0.20 / 1e6;
pub const LAMBDA_GB_SECOND_ARM: f64 = 0.000_013_333_4;
pub const STATE_TRANSITION: f64 = 0.025 / 1e3;
pub const DYNAMODB_WRITE: f64 = 0.625 / 1e6;
pub const DYNAMODB_READ: f64 = 0.125 / 1e6;
pub const SQS_REQUEST: f64 = 0.40 / 1e6;
pub const SNS_PUBLISH: f64 = 0.50 / 1e6;
pub const EVENTBRIDGE_EVENT: f64 = 1.00 / 1e6;
pub const KMS_KEY_MONTH: f64 = 1.00;
pub const SECRET_MONTH: f64 = 0.40;
pub const ALARM_MONTH: f64 = 0.10;
pub const LOG_GB: f64 = 0.50;
