//! Which actions need an approval, by whom: one JSON document, checked at start.
//!
//! ```json
//! {"rules": [
//!   {"action": "SSO_APPLY_DELETES", "environments": ["PRODUCTION"],
//!    "approval": {"approvers": ["alice@example.com", "bob@example.com", "carol@example.com"],
//!                 "quorum": 2, "timeoutMinutes": 1440, "requesterMayApprove": false}},
//!   {"action": "CONNECTION_DELETE", "approval": null}
//! ]}
//! ```
//!
//! The first rule that matches the action type and environment decides (no `environments`
//! matches every environment). An action no rule covers is refused: a missing rule must not
//! let a dangerous action run unapproved.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::action::ActionType;
use crate::sso::model::Environment;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApprovalPolicy {
    pub rules: Vec<PolicyRule>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicyRule {
    pub action: ActionType,
    #[serde(default)]
    pub environments: Option<BTreeSet<Environment>>,
    /// `null`: the action runs at once (and is still recorded).
    pub approval: Option<Approval>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Approval {
    /// Email addresses of the people who may decide.
    pub approvers: Vec<String>,
    /// How many approvals it takes (any rejection ends it).
    #[serde(default = "one")]
    pub quorum: usize,
    #[serde(default = "a_day")]
    pub timeout_minutes: u32,
    #[serde(default)]
    pub requester_may_approve: bool,
}

fn one() -> usize {
    1
}

fn a_day() -> u32 {
    24 * 60
}

/// What the policy asks of one action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    RunAtOnce,
    Approval(Approval),
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PolicyError {
    #[error("approval policy: {key}: {problem}")]
    Invalid { key: String, problem: String },
    #[error("no rule of the approval policy covers {action:?} in {environment}")]
    NotCovered {
        action: ActionType,
        environment: Environment,
    },
    #[error("{requester} asked for the action and may not approve it")]
    RequesterMayNotApprove { requester: String },
}

impl ApprovalPolicy {
    pub fn from_json(text: &str) -> Result<Self, PolicyError> {
        let policy: ApprovalPolicy =
            serde_json::from_str(text).map_err(|e| PolicyError::Invalid {
                key: "(document)".into(),
                problem: e.to_string(),
            })?;
        for (i, rule) in policy.rules.iter().enumerate() {
            let Some(approval) = &rule.approval else {
                continue;
            };
            let key = |field: &str| format!("rules[{i}].approval.{field}");
            let invalid = |field: &str, problem: String| PolicyError::Invalid {
                key: key(field),
                problem,
            };
            if approval.approvers.is_empty() {
                return Err(invalid("approvers", "names no one".into()));
            }
            if let Some(bad) = approval.approvers.iter().find(|a| !looks_like_email(a)) {
                return Err(invalid(
                    "approvers",
                    format!("{bad:?} is not an email address"),
                ));
            }
            let distinct: BTreeSet<&String> = approval.approvers.iter().collect();
            if approval.quorum == 0 || approval.quorum > distinct.len() {
                return Err(invalid(
                    "quorum",
                    format!("must be between 1 and the {} approvers", distinct.len()),
                ));
            }
            if approval.timeout_minutes == 0 || approval.timeout_minutes > 30 * 24 * 60 {
                return Err(invalid(
                    "timeoutMinutes",
                    "must be 1 minute to 30 days".into(),
                ));
            }
        }
        Ok(policy)
    }

    /// What `action` in `environment` requires, by the first rule that covers it.
    pub fn requirement(
        &self,
        action: ActionType,
        environment: Environment,
    ) -> Result<Requirement, PolicyError> {
        let rule = self
            .rules
            .iter()
            .find(|rule| {
                rule.action == action
                    && rule
                        .environments
                        .as_ref()
                        .is_none_or(|envs| envs.contains(&environment))
            })
            .ok_or(PolicyError::NotCovered {
                action,
                environment,
            })?;
        Ok(match &rule.approval {
            None => Requirement::RunAtOnce,
            Some(approval) => Requirement::Approval(approval.clone()),
        })
    }
}

impl Approval {
    /// Checks that `approver` may decide on an action `requester` asked for.
    pub fn may_decide(&self, requester: &str, approver: &str) -> Result<(), PolicyError> {
        if !self.requester_may_approve && requester.eq_ignore_ascii_case(approver) {
            return Err(PolicyError::RequesterMayNotApprove {
                requester: requester.to_owned(),
            });
        }
        Ok(())
    }
}

fn looks_like_email(address: &str) -> bool {
    match address.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !address.contains(char::is_whitespace)
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = r#"{"rules": [
        {"action": "SSO_APPLY_DELETES", "environments": ["PRODUCTION"],
         "approval": {"approvers": ["alice@example.com", "bob@example.com", "carol@example.com"], "quorum": 2}},
        {"action": "SSO_APPLY_DELETES", "approval": {"approvers": ["alice@example.com"]}},
        {"action": "CONNECTION_DELETE", "approval": null}
    ]}"#;

    #[test]
    fn the_first_matching_rule_decides() {
        let policy = ApprovalPolicy::from_json(POLICY).unwrap();
        let Requirement::Approval(production) = policy
            .requirement(ActionType::SsoApplyDeletes, Environment::Production)
            .unwrap()
        else {
            panic!("production deletes need an approval");
        };
        assert_eq!(production.quorum, 2);
        assert_eq!(production.timeout_minutes, 24 * 60);
        let Requirement::Approval(staging) = policy
            .requirement(ActionType::SsoApplyDeletes, Environment::Staging)
            .unwrap()
        else {
            panic!("staging deletes need an approval too");
        };
        assert_eq!(staging.quorum, 1);
        assert_eq!(
            policy.requirement(ActionType::ConnectionDelete, Environment::Production),
            Ok(Requirement::RunAtOnce)
        );
    }

    #[test]
    fn an_action_no_rule_covers_is_refused() {
        let policy = ApprovalPolicy::from_json(POLICY).unwrap();
        assert!(matches!(
            policy.requirement(ActionType::Webhook, Environment::Development),
            Err(PolicyError::NotCovered { .. })
        ));
    }

    #[test]
    fn the_requester_may_not_approve_unless_the_rule_says_so() {
        let approval = Approval {
            approvers: vec!["alice@example.com".into(), "bob@example.com".into()],
            quorum: 1,
            timeout_minutes: 60,
            requester_may_approve: false,
        };
        assert!(
            approval
                .may_decide("alice@example.com", "Alice@Example.com")
                .is_err()
        );
        assert!(
            approval
                .may_decide("alice@example.com", "bob@example.com")
                .is_ok()
        );
        let lenient = Approval {
            requester_may_approve: true,
            ..approval
        };
        assert!(
            lenient
                .may_decide("alice@example.com", "alice@example.com")
                .is_ok()
        );
    }

    #[test]
    fn invalid_policies_name_the_offending_key() {
        let cases = [
            (
                r#"{"rules": [{"action": "WEBHOOK", "approval": {"approvers": []}}]}"#,
                "rules[0].approval.approvers",
            ),
            (
                r#"{"rules": [{"action": "WEBHOOK", "approval": {"approvers": ["not-an-address"]}}]}"#,
                "rules[0].approval.approvers",
            ),
            (
                r#"{"rules": [{"action": "WEBHOOK", "approval": {"approvers": ["a@example.com"], "quorum": 2}}]}"#,
                "rules[0].approval.quorum",
            ),
            (
                r#"{"rules": [{"action": "WEBHOOK", "approval": {"approvers": ["a@example.com"], "timeoutMinutes": 0}}]}"#,
                "rules[0].approval.timeoutMinutes",
            ),
        ];
        for (text, key) in cases {
            match ApprovalPolicy::from_json(text) {
                Err(PolicyError::Invalid { key: found, .. }) => assert_eq!(found, key, "{text}"),
                other => panic!("{text} must be refused, got {other:?}"),
            }
        }
        assert!(ApprovalPolicy::from_json(r#"{"rules": [{"action": "DROP"}]}"#).is_err());
    }
}
