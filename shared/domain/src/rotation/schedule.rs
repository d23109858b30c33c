//! When each secret is due: automatic rotation follows Secrets Manager's schedule; secrets
//! that only people can rotate carry their policy in tags, and are watched against it.
//!
//! | Tag | Meaning |
//! | --- | --- |
//! | `maestro:rotation` = `manual` | Rotated by hand; watched |
//! | `maestro:max-age-days` | Days a value may live (required for manual secrets) |
//! | `maestro:warn-days` | Days before the deadline the first alert goes (default 14) |

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

pub const ROTATION_TAG: &str = "maestro:rotation";
pub const MAX_AGE_TAG: &str = "maestro:max-age-days";
pub const WARN_TAG: &str = "maestro:warn-days";

/// A secret as `ListSecrets` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretInfo {
    pub name: String,
    pub arn: String,
    pub tags: BTreeMap<String, String>,
    pub rotation_enabled: bool,
    pub rotation_days: Option<u32>,
    pub created: Option<DateTime<Utc>>,
    pub last_changed: Option<DateTime<Utc>>,
    pub last_rotated: Option<DateTime<Utc>>,
    pub next_rotation: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Mode {
    Automatic,
    Manual,
    /// Neither rotated by Secrets Manager nor marked for watching.
    Unmanaged,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum State {
    Current,
    /// Within the warning period before the deadline.
    DueSoon,
    Overdue,
    /// Its tags do not say a usable policy.
    Misconfigured {
        problem: String,
    },
    Unwatched,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RotationStatus {
    pub name: String,
    pub arn: String,
    pub mode: Mode,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_rotated: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_due: Option<DateTime<Utc>>,
    #[serde(flatten)]
    pub state: State,
}

impl RotationStatus {
    /// Whether someone must be told (once a day).
    pub fn needs_alert(&self) -> bool {
        matches!(
            self.state,
            State::DueSoon | State::Overdue | State::Misconfigured { .. }
        )
    }

    /// The key that lets one alert a day through per secret and state.
    pub fn alert_key(&self, now: DateTime<Utc>) -> String {
        let state = match &self.state {
            State::Current => "CURRENT",
            State::DueSoon => "DUE_SOON",
            State::Overdue => "OVERDUE",
            State::Misconfigured { .. } => "MISCONFIGURED",
            State::Unwatched => "UNWATCHED",
        };
        format!(
            "ROTATION_ALERT#{}#{}#{state}",
            self.arn,
            now.format("%Y-%m-%d")
        )
    }
}

fn days_tag(tags: &BTreeMap<String, String>, key: &str) -> Result<Option<u32>, String> {
    match tags.get(key) {
        None => Ok(None),
        Some(text) => match text.trim().parse::<u32>() {
            Ok(days) if (1..=3650).contains(&days) => Ok(Some(days)),
            _ => Err(format!("{key} must be 1 to 3650 days, got {text:?}")),
        },
    }
}

/// Where `secret` stands at `now`.
pub fn status(secret: &SecretInfo, now: DateTime<Utc>) -> RotationStatus {
    let manual = secret
        .tags
        .get(ROTATION_TAG)
        .is_some_and(|v| v.eq_ignore_ascii_case("manual"));
    let mut status = RotationStatus {
        name: secret.name.clone(),
        arn: secret.arn.clone(),
        mode: Mode::Unmanaged,
        last_rotated: secret.last_rotated,
        next_due: None,
        state: State::Unwatched,
    };
    if secret.rotation_enabled {
        status.mode = Mode::Automatic;
        status.next_due = secret.next_rotation.or_else(|| {
            let last = secret.last_rotated.or(secret.created)?;
            Some(last + Duration::days(i64::from(secret.rotation_days?)))
        });
        // Secrets Manager rotates within its window; a day past it, rotation is failing.
        status.state = match status.next_due {
            Some(due) if now > due + Duration::days(1) => State::Overdue,
            _ => State::Current,
        };
        return status;
    }
    if !manual {
        return status;
    }
    status.mode = Mode::Manual;
    // Putting a new value by hand is the manual rotation.
    let last = secret
        .last_rotated
        .into_iter()
        .chain(secret.last_changed)
        .max()
        .or(secret.created);
    status.last_rotated = last;
    let policy = days_tag(&secret.tags, MAX_AGE_TAG).and_then(|max_age| {
        let max_age = max_age.ok_or_else(|| format!("{MAX_AGE_TAG} is missing"))?;
        let warn = days_tag(&secret.tags, WARN_TAG)?.unwrap_or(14);
        Ok((max_age, warn))
    });
    let (max_age, warn) = match policy {
        Ok(policy) => policy,
        Err(problem) => {
            status.state = State::Misconfigured { problem };
            return status;
        }
    };
    let Some(last) = last else {
        status.state = State::Misconfigured {
            problem: "Secrets Manager gives no creation or change date".into(),
        };
        return status;
    };
    let due = last + Duration::days(i64::from(max_age));
    status.next_due = Some(due);
    status.state = if now >= due {
        State::Overdue
    } else if now >= due - Duration::days(i64::from(warn)) {
        State::DueSoon
    } else {
        State::Current
    };
    status
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn day(d: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 9, 0, 0).unwrap() + Duration::days(i64::from(d))
    }

    fn manual(tags: &[(&str, &str)]) -> SecretInfo {
        SecretInfo {
            name: "prod/partner-api-key".into(),
            arn: "arn:aws:secretsmanager:us-east-1:1:secret:prod/partner-api-key-AbCdEf".into(),
            tags: tags
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .chain([(ROTATION_TAG.to_owned(), "manual".to_owned())])
                .collect(),
            rotation_enabled: false,
            rotation_days: None,
            created: Some(day(0)),
            last_changed: None,
            last_rotated: None,
            next_rotation: None,
        }
    }

    #[test]
    fn a_manual_secret_is_current_then_due_soon_then_overdue() {
        let secret = manual(&[(MAX_AGE_TAG, "90"), (WARN_TAG, "10")]);
        assert_eq!(status(&secret, day(79)).state, State::Current);
        assert_eq!(status(&secret, day(80)).state, State::DueSoon);
        assert_eq!(status(&secret, day(90)).state, State::Overdue);
        assert_eq!(status(&secret, day(90)).next_due, Some(day(90)));
    }

    #[test]
    fn a_new_value_put_by_hand_restarts_the_clock() {
        let mut secret = manual(&[(MAX_AGE_TAG, "90")]);
        secret.last_changed = Some(day(85));
        let now = status(&secret, day(100));
        assert_eq!(now.state, State::Current);
        assert_eq!(now.last_rotated, Some(day(85)));
    }

    #[test]
    fn bad_policies_are_reported_not_ignored() {
        let missing = status(&manual(&[]), day(1));
        assert!(matches!(missing.state, State::Misconfigured { .. }));
        let bad = status(&manual(&[(MAX_AGE_TAG, "ninety")]), day(1));
        assert!(bad.needs_alert());
        let State::Misconfigured { problem } = bad.state else {
            panic!("misconfigured")
        };
        assert!(problem.contains("ninety"));
    }

    #[test]
    fn automatic_rotation_is_overdue_only_when_its_schedule_slipped() {
        let mut secret = manual(&[]);
        secret.tags.clear();
        secret.rotation_enabled = true;
        secret.next_rotation = Some(day(30));
        assert_eq!(status(&secret, day(30)).state, State::Current);
        assert_eq!(status(&secret, day(32)).state, State::Overdue);
        let mut unmanaged = manual(&[]);
        unmanaged.tags.clear();
        assert_eq!(status(&unmanaged, day(500)).state, State::Unwatched);
    }

    #[test]
    fn one_alert_key_per_secret_state_and_day() {
        let secret = manual(&[(MAX_AGE_TAG, "90")]);
        let morning = status(&secret, day(95));
        let evening = status(&secret, day(95) + Duration::hours(8));
        assert_eq!(
            morning.alert_key(day(95)),
            evening.alert_key(day(95) + Duration::hours(8))
        );
        assert_ne!(morning.alert_key(day(95)), morning.alert_key(day(96)));
    }
}
