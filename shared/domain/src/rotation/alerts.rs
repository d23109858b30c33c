//! What the alerts topic hears when a rotation goes wrong: from the rotation function itself
//! (which knows the step and the reason), and from Secrets Manager's own `RotationFailed` and
//! `RotationAbandoned` events (which cover what the function never saw: it could not be
//! invoked, or it timed out).

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The `detail-type` of rotation alerts.
pub const ROTATION_ALERT: &str = "Secret Rotation Failed";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RotationProblem {
    /// A step of Maestro's rotation function failed.
    StepFailed,
    /// Secrets Manager reports the rotation failed.
    RotationFailed,
    /// Secrets Manager gave up on a rotation (it restarts from createSecret next time).
    RotationAbandoned,
    /// A secret rotated by hand nears its deadline.
    ManualRotationDueSoon,
    /// A secret rotated by hand is past its deadline, or automatic rotation slipped.
    RotationOverdue,
    /// A watched secret's tags do not say a usable policy.
    RotationPolicyInvalid,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RotationAlert {
    pub secret: String,
    pub problem: RotationProblem,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    pub reason: String,
}

/// The alert for a Secrets Manager `RotationFailed` or `RotationAbandoned` event's detail, or
/// `None` for any other event.
pub fn alert_of_event(detail: &Value) -> Option<RotationAlert> {
    let problem = match detail["eventName"].as_str()? {
        "RotationFailed" => RotationProblem::RotationFailed,
        "RotationAbandoned" => RotationProblem::RotationAbandoned,
        _ => return None,
    };
    let data = &detail["additionalEventData"];
    let secret = data["SecretId"]
        .as_str()
        .or_else(|| data["secretId"].as_str())
        .unwrap_or("an unnamed secret")
        .to_owned();
    let reason = detail["errorMessage"]
        .as_str()
        .or_else(|| detail["errorCode"].as_str())
        .map(str::to_owned)
        .unwrap_or_else(|| match problem {
            RotationProblem::RotationAbandoned => {
                "Secrets Manager abandoned the rotation; the next one starts over".to_owned()
            }
            _ => "Secrets Manager reports the rotation failed; see the rotation function's logs"
                .to_owned(),
        });
    Some(RotationAlert {
        secret,
        problem,
        step: None,
        reason,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn rotation_failed_and_abandoned_events_become_alerts_and_others_do_not() {
        let failed = alert_of_event(&json!({
            "eventName": "RotationFailed",
            "additionalEventData": {"SecretId": "arn:aws:secretsmanager:us-east-1:1:secret:db"},
            "errorMessage": "setSecret: cannot reach the target"
        }))
        .unwrap();
        assert_eq!(failed.problem, RotationProblem::RotationFailed);
        assert!(failed.secret.ends_with(":secret:db"));
        assert_eq!(failed.reason, "setSecret: cannot reach the target");
        let abandoned = alert_of_event(&json!({"eventName": "RotationAbandoned"})).unwrap();
        assert!(abandoned.reason.contains("starts over"));
        assert_eq!(
            alert_of_event(&json!({"eventName": "RotationSucceeded"})),
            None
        );
    }
}
