//! The actions an approval can wrap, each with typed parameters.

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// An action someone asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "type",
    content = "parameters",
    rename_all = "SCREAMING_SNAKE_CASE"
)]
pub enum Action {
    /// Apply the deletes an SSO sync run held.
    #[serde(rename_all = "camelCase")]
    SsoApplyDeletes { run_id: String },
    /// Rotate a secret now, outside its schedule.
    #[serde(rename_all = "camelCase")]
    SecretRotateNow { secret_id: String },
    /// Delete a discovery connection and stop crawling its account.
    #[serde(rename_all = "camelCase")]
    ConnectionDelete { connection_id: String },
    /// Call an external HTTPS endpoint: wraps any command another system exposes.
    #[serde(rename_all = "camelCase")]
    Webhook {
        url: String,
        method: WebhookMethod,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        body: Option<serde_json::Value>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ActionType {
    SsoApplyDeletes,
    SecretRotateNow,
    ConnectionDelete,
    Webhook,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum WebhookMethod {
    Post,
    Put,
    Patch,
    Delete,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{field}: {problem}")]
pub struct InvalidAction {
    pub field: &'static str,
    pub problem: String,
}

impl Action {
    pub fn action_type(&self) -> ActionType {
        match self {
            Action::SsoApplyDeletes { .. } => ActionType::SsoApplyDeletes,
            Action::SecretRotateNow { .. } => ActionType::SecretRotateNow,
            Action::ConnectionDelete { .. } => ActionType::ConnectionDelete,
            Action::Webhook { .. } => ActionType::Webhook,
        }
    }

    /// What the action does, in a few words for people.
    pub fn title(&self) -> &'static str {
        match self {
            Action::SsoApplyDeletes { .. } => "Apply the SSO assignment deletes a sync held",
            Action::SecretRotateNow { .. } => "Rotate a secret now",
            Action::ConnectionDelete { .. } => "Delete a discovery connection",
            Action::Webhook { .. } => "Call an external endpoint",
        }
    }

    /// The parameters as label and value, for emails and pages.
    pub fn parameters(&self) -> Vec<(&'static str, String)> {
        match self {
            Action::SsoApplyDeletes { run_id } => vec![("Held by run", run_id.clone())],
            Action::SecretRotateNow { secret_id } => vec![("Secret", secret_id.clone())],
            Action::ConnectionDelete { connection_id } => {
                vec![("Connection", connection_id.clone())]
            }
            Action::Webhook { url, method, body } => {
                let mut shown = vec![
                    ("Method", format!("{method:?}").to_uppercase()),
                    ("URL", url.clone()),
                ];
                if let Some(body) = body {
                    shown.push(("Body", body.to_string()));
                }
                shown
            }
        }
    }

    /// Checks the parameters beyond their types, naming the field at fault.
    pub fn validate(&self) -> Result<(), InvalidAction> {
        let non_empty = |field: &'static str, value: &str| {
            if value.trim().is_empty() || value.len() > 512 {
                Err(InvalidAction {
                    field,
                    problem: "must be 1 to 512 characters".into(),
                })
            } else {
                Ok(())
            }
        };
        match self {
            Action::SsoApplyDeletes { run_id } => non_empty("parameters.runId", run_id),
            Action::SecretRotateNow { secret_id } => non_empty("parameters.secretId", secret_id),
            Action::ConnectionDelete { connection_id } => {
                non_empty("parameters.connectionId", connection_id)
            }
            Action::Webhook { url, .. } => {
                non_empty("parameters.url", url)?;
                let host = url.strip_prefix("https://").ok_or_else(|| InvalidAction {
                    field: "parameters.url",
                    problem: "must be an https:// URL".into(),
                })?;
                if host.is_empty() || host.starts_with('/') || host.contains(char::is_whitespace) {
                    return Err(InvalidAction {
                        field: "parameters.url",
                        problem: "must name a host".into(),
                    });
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_read_from_their_wire_shape() {
        let action: Action = serde_json::from_value(serde_json::json!({
            "type": "SECRET_ROTATE_NOW",
            "parameters": {"secretId": "prod/payments/db"}
        }))
        .unwrap();
        assert_eq!(action.action_type(), ActionType::SecretRotateNow);
        assert!(action.validate().is_ok());
    }

    #[test]
    fn a_webhook_must_be_https_to_a_host() {
        let hook = |url: &str| Action::Webhook {
            url: url.into(),
            method: WebhookMethod::Post,
            body: None,
        };
        assert!(
            hook("https://ci.example.com/jobs/deploy")
                .validate()
                .is_ok()
        );
        assert_eq!(
            hook("http://ci.example.com").validate().unwrap_err().field,
            "parameters.url"
        );
        assert!(hook("https:///path").validate().is_err());
    }

    #[test]
    fn an_unknown_action_type_is_refused() {
        let unknown = serde_json::from_value::<Action>(serde_json::json!({
            "type": "DROP_DATABASE", "parameters": {}
        }));
        assert!(unknown.is_err());
    }
}
