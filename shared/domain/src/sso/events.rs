//! Flow A: which part of the model a CloudTrail event (delivered by EventBridge) touches.

use serde::Deserialize;
use serde_json::Value;

use super::assignment_monitor::{AccountId, PermissionSetArn};
use super::reconcile::Scope;
use super::snapshot::Refresh;

/// The parts of an EventBridge event that the SSO sync reads; `detail` is CloudTrail's record.
#[derive(Debug, Clone, Deserialize)]
pub struct ChangeEvent {
    pub id: String,
    pub source: String,
    #[serde(rename = "detail-type", default)]
    pub detail_type: String,
    #[serde(default)]
    pub detail: Value,
}

impl ChangeEvent {
    pub fn event_name(&self) -> &str {
        self.detail["eventName"].as_str().unwrap_or_default()
    }

    /// A failed call changed nothing.
    fn failed(&self) -> bool {
        self.detail
            .get("errorCode")
            .is_some_and(|code| !code.is_null())
    }
}

/// What an event means for the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Touch {
    /// Read `refresh` again into the snapshot, then re-plan `scope`.
    Replan { scope: Scope, refresh: Refresh },
    /// Nothing the model reads changed (a failed call, a tag on an OU we do not read…).
    Nothing(&'static str),
}

/// Why an event could not be read; the run stops and the event goes to the DLQ.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("event {event_id} ({event_source} {event_name}): {problem}")]
pub struct UnreadableEvent {
    pub event_id: String,
    pub event_source: String,
    pub event_name: String,
    pub problem: String,
}

/// Maps an event to the scope to re-plan.
///
/// - Organizations `MoveAccount`, `CloseAccount`, `CreateAccountResult`, and tag changes on an
///   account: that account. A tag change on an OU or the root, and `UpdateOrganizationalUnit`
///   (an OU renamed may change the environment of every account below it): everything, after
///   the organisation's tree is read again.
/// - IAM Identity Center `CreatePermissionSet`, `DeletePermissionSet`, and tag changes on a
///   permission set: that permission set.
/// - Identity store `CreateGroup`, `DeleteGroup` and `UpdateGroup` (sources
///   `aws.identitystore` and `aws.sso-directory`), and groups provisioned by SCIM
///   (`aws.identitystore-scim`, CloudTrail's `identitystore-scim.amazonaws.com`)
///   `CreateGroup` and `DeleteGroup`: everything, after the groups are read again, since a
///   group may match any account, and a renamed group parses differently. SCIM's `PatchGroup` hides its body (a rename and a
///   membership change look alike) and membership changes are frequent: the scheduled
///   reconcile picks a SCIM rename up.
pub fn touched_by(event: &ChangeEvent) -> Result<Touch, UnreadableEvent> {
    if event.failed() {
        return Ok(Touch::Nothing("the call failed, so nothing changed"));
    }
    let unreadable = |problem: &str| UnreadableEvent {
        event_id: event.id.clone(),
        event_source: event.source.clone(),
        event_name: event.event_name().to_owned(),
        problem: problem.to_owned(),
    };
    let account = |value: &Value| -> Result<Touch, UnreadableEvent> {
        let id = value
            .as_str()
            .ok_or_else(|| unreadable("no account id in the event"))?;
        AccountId::try_from(id)
            .map(|account_id| Touch::Replan {
                scope: Scope::Account {
                    account_id: account_id.clone(),
                },
                refresh: Refresh::Account { account_id },
            })
            .map_err(|e| unreadable(&e.to_string()))
    };
    let permission_set = |value: &Value| -> Result<Touch, UnreadableEvent> {
        let arn = value
            .as_str()
            .ok_or_else(|| unreadable("no permission set ARN in the event"))?;
        PermissionSetArn::try_from(arn)
            .map(|permission_set_arn| Touch::Replan {
                scope: Scope::PermissionSet {
                    permission_set_arn: permission_set_arn.clone(),
                },
                refresh: Refresh::PermissionSet { permission_set_arn },
            })
            .map_err(|e| unreadable(&e.to_string()))
    };
    let everything = |refresh| Touch::Replan {
        scope: Scope::Everything,
        refresh,
    };
    let request = &event.detail["requestParameters"];
    let response = &event.detail["responseElements"];
    let touch = match (event.source.as_str(), event.event_name()) {
        ("aws.organizations", "MoveAccount" | "CloseAccount") => account(&request["accountId"])?,
        ("aws.organizations", "CreateAccountResult") => {
            account(&event.detail["serviceEventDetails"]["createAccountStatus"]["accountId"])?
        }
        ("aws.organizations", "TagResource" | "UntagResource") => {
            match request["resourceId"].as_str() {
                Some(id) if id.len() == 12 && id.bytes().all(|b| b.is_ascii_digit()) => {
                    account(&request["resourceId"])?
                }
                Some(_) => everything(Refresh::OrganisationTree),
                None => return Err(unreadable("no resourceId in the event")),
            }
        }
        ("aws.organizations", "UpdateOrganizationalUnit") => everything(Refresh::OrganisationTree),
        ("aws.sso", "CreatePermissionSet") => {
            permission_set(&response["permissionSet"]["permissionSetArn"])?
        }
        ("aws.sso", "DeletePermissionSet") => permission_set(&request["permissionSetArn"])?,
        ("aws.sso", "TagResource" | "UntagResource") => match request["resourceArn"].as_str() {
            Some(arn) if arn.contains(":permissionSet/") => {
                permission_set(&request["resourceArn"])?
            }
            Some(_) => return Ok(Touch::Nothing("the tags of an instance are not read")),
            None => return Err(unreadable("no resourceArn in the event")),
        },
        (
            "aws.identitystore" | "aws.sso-directory",
            "CreateGroup" | "DeleteGroup" | "UpdateGroup",
        )
        | ("aws.identitystore-scim", "CreateGroup" | "DeleteGroup") => {
            everything(Refresh::Principals)
        }
        _ => {
            return Ok(Touch::Nothing(
                "the model does not read what this event changes",
            ));
        }
    };
    Ok(touch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(source: &str, name: &str, detail: Value) -> ChangeEvent {
        let mut detail = detail;
        detail["eventName"] = json!(name);
        ChangeEvent {
            id: "e-1".into(),
            source: source.into(),
            detail_type: "AWS API Call via CloudTrail".into(),
            detail,
        }
    }

    fn account_scope(id: &str) -> Touch {
        let account_id = AccountId::try_from(id).unwrap();
        Touch::Replan {
            scope: Scope::Account {
                account_id: account_id.clone(),
            },
            refresh: Refresh::Account { account_id },
        }
    }

    fn everything(refresh: Refresh) -> Touch {
        Touch::Replan {
            scope: Scope::Everything,
            refresh,
        }
    }

    #[test]
    fn account_events_touch_that_account() {
        let moved = event(
            "aws.organizations",
            "MoveAccount",
            json!({"requestParameters": {"accountId": "111122223333"}}),
        );
        assert_eq!(touched_by(&moved), Ok(account_scope("111122223333")));
        let created = event(
            "aws.organizations",
            "CreateAccountResult",
            json!({"serviceEventDetails": {"createAccountStatus": {"accountId": "444455556666"}}}),
        );
        assert_eq!(touched_by(&created), Ok(account_scope("444455556666")));
        let tagged = event(
            "aws.organizations",
            "TagResource",
            json!({"requestParameters": {"resourceId": "111122223333"}}),
        );
        assert_eq!(touched_by(&tagged), Ok(account_scope("111122223333")));
    }

    #[test]
    fn ou_events_touch_everything() {
        let tagged_ou = event(
            "aws.organizations",
            "TagResource",
            json!({"requestParameters": {"resourceId": "ou-ab12-cdef3456"}}),
        );
        assert_eq!(
            touched_by(&tagged_ou),
            Ok(everything(Refresh::OrganisationTree))
        );
        let renamed = event("aws.organizations", "UpdateOrganizationalUnit", json!({}));
        assert_eq!(
            touched_by(&renamed),
            Ok(everything(Refresh::OrganisationTree))
        );
    }

    #[test]
    fn group_events_touch_everything_whoever_provisions_the_group() {
        // Issue 14, finding 4: renames and SCIM-provisioned groups went unnoticed.
        for (source, name) in [
            ("aws.identitystore", "CreateGroup"),
            ("aws.identitystore", "UpdateGroup"),
            ("aws.sso-directory", "DeleteGroup"),
            ("aws.identitystore-scim", "CreateGroup"),
            ("aws.identitystore-scim", "DeleteGroup"),
        ] {
            assert_eq!(
                touched_by(&event(source, name, json!({}))),
                Ok(everything(Refresh::Principals)),
                "{source} {name}"
            );
        }
        let membership = event("aws.identitystore-scim", "PatchGroup", json!({}));
        assert!(matches!(touched_by(&membership), Ok(Touch::Nothing(_))));
    }

    #[test]
    fn permission_set_events_touch_that_set() {
        let arn = "arn:aws:sso:::permissionSet/ssoins-1234567890abcdef/ps-0123456789abcdef";
        let tagged = event(
            "aws.sso",
            "TagResource",
            json!({"requestParameters": {"resourceArn": arn}}),
        );
        let Ok(Touch::Replan {
            scope: Scope::PermissionSet { permission_set_arn },
            refresh: Refresh::PermissionSet { .. },
        }) = touched_by(&tagged)
        else {
            panic!("a permission set's tags touch that set");
        };
        assert_eq!(permission_set_arn.as_str(), arn);
    }

    #[test]
    fn failed_calls_and_unrelated_events_touch_nothing() {
        let mut failed = event(
            "aws.organizations",
            "MoveAccount",
            json!({"requestParameters": {"accountId": "111122223333"}}),
        );
        failed.detail["errorCode"] = json!("AccessDenied");
        assert!(matches!(touched_by(&failed), Ok(Touch::Nothing(_))));
        let other = event("aws.sso", "ListInstances", json!({}));
        assert!(matches!(touched_by(&other), Ok(Touch::Nothing(_))));
    }

    #[test]
    fn an_event_missing_what_it_names_is_unreadable() {
        let broken = event(
            "aws.organizations",
            "MoveAccount",
            json!({"requestParameters": {}}),
        );
        let error = touched_by(&broken).unwrap_err();
        assert!(error.to_string().contains("no account id"), "{error}");
    }
}
