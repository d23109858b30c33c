//! Approvals (BRIEF §3): any action can be wrapped in an approval that a responsible person
//! gives from an email. This module holds the rules: which actions exist, which need an
//! approval by whom, how links and confirm forms are signed, and how votes add up.

pub mod action;
pub mod link;
pub mod policy;
pub mod render;
pub mod request;
pub mod sign_in;
pub mod steps;
pub mod submit;
pub mod tally;
pub mod view;
pub mod workflow;
