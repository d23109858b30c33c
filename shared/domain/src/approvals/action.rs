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
                return Err(InvalidAction {
                    field,
                    problem: "must be 1 to 512 characters".into(),
                });
            }
            plain_text(field, value)
        };
        match self {
            Action::SsoApplyDeletes { run_id } => non_empty("parameters.runId", run_id),
            Action::SecretRotateNow { secret_id } => non_empty("parameters.secretId", secret_id),
            Action::ConnectionDelete { connection_id } => {
                non_empty("parameters.connectionId", connection_id)
            }
            Action::Webhook { url, body, .. } => {
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
                match body {
                    Some(body) => webhook_body(body),
                    None => Ok(()),
                }
            }
        }
    }
}

/// The largest webhook body, as JSON: the action's record, the execution's input and every
/// approval email carry it, and DynamoDB items and Step Functions inputs have size limits.
pub const WEBHOOK_BODY_MAX_BYTES: usize = 16 * 1024;

/// Refuses text that could make an email or a page say something its author did not show:
/// control characters (a newline starts a line of the author's choosing in the plain-text
/// email, such as a forged "Approve:" link) and the Unicode formatting characters that
/// reorder or hide text (bidirectional overrides and isolates, zero-width characters, line
/// and paragraph separators).
pub fn plain_text(field: &'static str, value: &str) -> Result<(), InvalidAction> {
    match value.chars().find(|c| is_deceptive(*c)) {
        None => Ok(()),
        Some(c) => Err(InvalidAction {
            field,
            problem: format!(
                "must be one line of plain text: U+{:04X} is a control or formatting character",
                u32::from(c)
            ),
        }),
    }
}

fn is_deceptive(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061C}'
                | '\u{200B}'..='\u{200F}'
                | '\u{2028}'..='\u{202E}'
                | '\u{2060}'..='\u{2069}'
                | '\u{FEFF}'
        )
}

fn webhook_body(body: &serde_json::Value) -> Result<(), InvalidAction> {
    let size = body.to_string().len();
    if size > WEBHOOK_BODY_MAX_BYTES {
        return Err(InvalidAction {
            field: "parameters.body",
            problem: format!("is {size} bytes as JSON; at most {WEBHOOK_BODY_MAX_BYTES}"),
        });
    }
    let mut pending = vec![body];
    while let Some(value) = pending.pop() {
        match value {
            serde_json::Value::String(text) => plain_text("parameters.body", text)?,
            serde_json::Value::Array(items) => pending.extend(items),
            serde_json::Value::Object(fields) => {
                for (key, value) in fields {
                    plain_text("parameters.body", key)?;
                    pending.push(value);
                }
            }
            serde_json::Value::Null | serde_json::Value::Bool(_) | serde_json::Value::Number(_) => {
            }
        }
    }
    Ok(())
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
    fn parameters_that_could_forge_lines_or_reorder_text_are_refused() {
        let forged = Action::SecretRotateNow {
            secret_id: "prod/db\nApprove: https://evil.example/approve".into(),
        };
        let refused = forged.validate().unwrap_err();
        assert_eq!(refused.field, "parameters.secretId");
        assert!(refused.problem.contains("U+000A"), "{refused}");
        let reordered = Action::ConnectionDelete {
            connection_id: "payments\u{202E}noitcudorp".into(),
        };
        assert_eq!(
            reordered.validate().unwrap_err().field,
            "parameters.connectionId"
        );
        let hidden_in_body = Action::Webhook {
            url: "https://ci.example.com/jobs".into(),
            method: WebhookMethod::Post,
            body: Some(serde_json::json!({"note": ["fine", "then\u{2067}hidden"]})),
        };
        assert_eq!(
            hidden_in_body.validate().unwrap_err().field,
            "parameters.body"
        );
    }

    #[test]
    fn a_webhook_body_has_a_size_limit() {
        let body = |bytes: usize| Action::Webhook {
            url: "https://ci.example.com/jobs".into(),
            method: WebhookMethod::Post,
            body: Some(serde_json::json!({ "x": "a".repeat(bytes) })),
        };
        assert!(body(WEBHOOK_BODY_MAX_BYTES - 100).validate().is_ok());
        let refused = body(WEBHOOK_BODY_MAX_BYTES).validate().unwrap_err();
        assert_eq!(refused.field, "parameters.body");
        assert!(refused.problem.contains("at most 16384"), "{refused}");
    }

    #[test]
    fn an_unknown_action_type_is_refused() {
        let unknown = serde_json::from_value::<Action>(serde_json::json!({
            "type": "DROP_DATABASE", "parameters": {}
        }));
        assert!(unknown.is_err());
    }
}
