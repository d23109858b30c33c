//! Who may do what with connections and the inventory, as Maestro Server had it: every
//! connection names the teams that hold read, write or admin on it, and a team that may read a
//! connection may read the inventory of its account. Maestro's operators (one team, set at
//! deploy time) hold admin on everything, organisation connections included, and are the only
//! ones who create connections: a connection opens its account's inventory.
//!
//! - read: see the connection and its account's entities, history and counts;
//! - write: also change the connection's settings and start a sync;
//! - admin: also delete it and grant or revoke access.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::sso::model::Environment;

/// A level of access; each includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    Read,
    Write,
    Admin,
}

impl Access {
    pub fn as_str(self) -> &'static str {
        match self {
            Access::Read => "read",
            Access::Write => "write",
            Access::Admin => "admin",
        }
    }
}

/// Team name → its access to one connection.
pub type TeamAccess = BTreeMap<String, Access>;

/// The person behind a request, as the API's JWT authorizer vouched for them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The token's subject: stable, unlike an email address.
    pub subject: String,
    pub email: Option<String>,
    pub teams: BTreeSet<String>,
}

impl Caller {
    /// Whether the caller belongs to Maestro's operators.
    pub fn is_operator(&self, operators: &str) -> bool {
        self.teams.contains(operators)
    }

    /// The caller's access to a connection with these grants: the highest of their teams'.
    pub fn access_to(&self, grants: &TeamAccess, operators: &str) -> Option<Access> {
        if self.is_operator(operators) {
            return Some(Access::Admin);
        }
        self.teams
            .iter()
            .filter_map(|team| grants.get(team))
            .max()
            .copied()
    }

    /// Whether the caller holds at least `needed` on a connection with these grants.
    pub fn may(&self, needed: Access, grants: &TeamAccess, operators: &str) -> bool {
        self.access_to(grants, operators)
            .is_some_and(|held| held >= needed)
    }
}

/// What is wrong with the grants a caller sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidAccess {
    #[error(
        "access: {0:?} is not a team name (1 to 128 letters, digits and _.@+=,-; no spaces, which API Gateway uses to separate a claim's values)"
    )]
    TeamName(String),
    #[error("access: grant admin to a team of yours ({0}), or you would lock yourself out")]
    LocksOutCaller(String),
}

pub fn is_team_name(name: &str) -> bool {
    (1..=128).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.@+=,-".contains(c))
}

/// Grants a caller may set on a connection: valid team names, and unless the caller is an
/// operator, admin for a team of theirs, so a team admin cannot lock their team out. Operators
/// may leave a connection to themselves (no grants), as organisation connections are.
pub fn checked_grants(
    grants: TeamAccess,
    caller: &Caller,
    operators: &str,
) -> Result<TeamAccess, InvalidAccess> {
    if let Some(name) = grants.keys().find(|name| !is_team_name(name)) {
        return Err(InvalidAccess::TeamName(name.clone()));
    }
    if !caller.may(Access::Admin, &grants, operators) {
        let teams: Vec<&str> = caller.teams.iter().map(String::as_str).collect();
        let teams = if teams.is_empty() {
            "you belong to none".to_owned()
        } else {
            teams.join(", ")
        };
        return Err(InvalidAccess::LocksOutCaller(teams));
    }
    Ok(grants)
}

/// The teams of a caller from the token's teams claim as the token holds it: a list of
/// names, or one name. Nothing is split: a group named `x maestro-operators` is one group
/// (and no team, since team names have no spaces), never the operators.
pub fn teams_from_value(claim: &serde_json::Value) -> BTreeSet<String> {
    let names: Vec<&str> = match claim {
        serde_json::Value::Array(items) => items.iter().filter_map(|i| i.as_str()).collect(),
        serde_json::Value::String(name) => vec![name.as_str()],
        _ => Vec::new(),
    };
    names
        .into_iter()
        .filter(|name| is_team_name(name))
        .map(str::to_owned)
        .collect()
}

/// Who owns a secret and the environment it serves, as the deployment records them (the
/// `SecretOwners` parameter, a JSON list of `{"prefix", "team", "environment"}`). The rule
/// with the longest prefix of the secret's name decides; a secret no rule names belongs to
/// the operators alone and counts as production. The name decides because Secrets Manager
/// never renames a secret, whereas its tags are anyone's with `secretsmanager:TagResource`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SecretOwners {
    pub rules: Vec<SecretOwnerRule>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretOwnerRule {
    /// The start of the names of the secrets it covers (`prod/payments/`).
    pub prefix: String,
    #[serde(flatten)]
    pub owner: SecretOwner,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretOwner {
    /// The team that may see the secret and ask for its rotation, besides the operators.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
    pub environment: Environment,
}

impl SecretOwner {
    /// Whether `caller` may see the secret and ask for its rotation.
    pub fn may_act(&self, caller: &Caller, operators: &str) -> bool {
        caller.is_operator(operators)
            || self
                .team
                .as_ref()
                .is_some_and(|team| caller.teams.contains(team))
    }
}

impl SecretOwners {
    /// Reads and checks the parameter, naming the rule at fault.
    pub fn from_json(text: &str) -> Result<SecretOwners, String> {
        let owners: SecretOwners = serde_json::from_str(text)
            .map_err(|e| format!("not a list of {{\"prefix\", \"team\", \"environment\"}}: {e}"))?;
        for (index, rule) in owners.rules.iter().enumerate() {
            if rule.prefix.trim().is_empty() {
                return Err(format!("[{index}].prefix: must not be empty"));
            }
            if let Some(team) = rule.owner.team.as_deref().filter(|t| !is_team_name(t)) {
                return Err(format!("[{index}].team: {team:?} is not a team name"));
            }
        }
        Ok(owners)
    }

    /// The owner of the secret called `name`.
    pub fn owner_of(&self, name: &str) -> SecretOwner {
        self.rules
            .iter()
            .filter(|rule| name.starts_with(&rule.prefix))
            .max_by_key(|rule| rule.prefix.len())
            .map(|rule| rule.owner.clone())
            .unwrap_or(SecretOwner {
                team: None,
                environment: Environment::Production,
            })
    }
}

/// What a caller may read of the inventory: everything, or the accounts of the connections
/// they may read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readable {
    Everything,
    Accounts(BTreeSet<String>),
}

impl Readable {
    /// From every connection's account and grants.
    pub fn of<'a>(
        caller: &Caller,
        operators: &str,
        connections: impl IntoIterator<Item = (&'a str, &'a TeamAccess)>,
    ) -> Readable {
        if caller.is_operator(operators) {
            return Readable::Everything;
        }
        Readable::Accounts(
            connections
                .into_iter()
                .filter(|(_, grants)| caller.may(Access::Read, grants, operators))
                .map(|(account, _)| account.to_owned())
                .collect(),
        )
    }

    pub fn account(&self, account: &str) -> bool {
        match self {
            Readable::Everything => true,
            Readable::Accounts(accounts) => accounts.contains(account),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPERATORS: &str = "maestro-operators";

    fn caller(teams: &[&str]) -> Caller {
        Caller {
            subject: "s-1".into(),
            email: Some("alice@example.com".into()),
            teams: teams.iter().map(|t| (*t).to_owned()).collect(),
        }
    }

    fn grants(pairs: &[(&str, Access)]) -> TeamAccess {
        pairs.iter().map(|(t, a)| ((*t).to_owned(), *a)).collect()
    }

    #[test]
    fn the_highest_grant_of_the_callers_teams_counts() {
        let g = grants(&[("payments", Access::Read), ("platform", Access::Write)]);
        let both = caller(&["payments", "platform"]);
        assert_eq!(both.access_to(&g, OPERATORS), Some(Access::Write));
        assert!(both.may(Access::Read, &g, OPERATORS));
        assert!(!both.may(Access::Admin, &g, OPERATORS));
        assert_eq!(caller(&["search"]).access_to(&g, OPERATORS), None);
        assert_eq!(
            caller(&[OPERATORS]).access_to(&g, OPERATORS),
            Some(Access::Admin)
        );
        assert_eq!(
            caller(&[OPERATORS]).access_to(&TeamAccess::new(), OPERATORS),
            Some(Access::Admin)
        );
    }

    #[test]
    fn grants_need_an_admin_team_of_the_caller() {
        let payments = caller(&["payments"]);
        let ok = grants(&[("payments", Access::Admin), ("audit", Access::Read)]);
        assert_eq!(checked_grants(ok.clone(), &payments, OPERATORS), Ok(ok));
        assert!(matches!(
            checked_grants(grants(&[("payments", Access::Write)]), &payments, OPERATORS),
            Err(InvalidAccess::LocksOutCaller(_))
        ));
        assert!(matches!(
            checked_grants(TeamAccess::new(), &payments, OPERATORS),
            Err(InvalidAccess::LocksOutCaller(_))
        ));
        assert!(checked_grants(TeamAccess::new(), &caller(&[OPERATORS]), OPERATORS).is_ok());
        assert!(matches!(
            checked_grants(grants(&[("search", Access::Admin)]), &payments, OPERATORS),
            Err(InvalidAccess::LocksOutCaller(_))
        ));
        assert!(
            checked_grants(
                grants(&[("search", Access::Admin)]),
                &caller(&[OPERATORS]),
                OPERATORS
            )
            .is_ok()
        );
        assert_eq!(
            checked_grants(
                grants(&[("bad\nname", Access::Admin)]),
                &payments,
                OPERATORS
            ),
            Err(InvalidAccess::TeamName("bad\nname".into()))
        );
    }

    #[test]
    fn team_claims_are_read_as_the_token_holds_them_and_never_split() {
        let expected: BTreeSet<String> = ["payments".into(), "platform".into()].into();
        assert_eq!(
            teams_from_value(&serde_json::json!(["payments", "platform"])),
            expected
        );
        assert_eq!(
            teams_from_value(&serde_json::json!("payments")),
            BTreeSet::from(["payments".into()])
        );
        assert!(teams_from_value(&serde_json::json!(["x maestro-operators"])).is_empty());
        assert!(teams_from_value(&serde_json::json!("[payments maestro-operators]")).is_empty());
        assert!(teams_from_value(&serde_json::json!([])).is_empty());
        assert!(teams_from_value(&serde_json::json!(7)).is_empty());
    }

    #[test]
    fn the_longest_prefix_names_a_secrets_owner_and_unnamed_secrets_are_the_operators() {
        let owners = SecretOwners::from_json(
            r#"[{"prefix": "prod/", "environment": "PRODUCTION"},
                {"prefix": "prod/payments/", "team": "payments", "environment": "PRODUCTION"},
                {"prefix": "dev/", "team": "platform", "environment": "DEVELOPMENT"}]"#,
        )
        .unwrap();
        let payments = owners.owner_of("prod/payments/db");
        assert_eq!(payments.team.as_deref(), Some("payments"));
        assert!(payments.may_act(&caller(&["payments"]), OPERATORS));
        assert!(!payments.may_act(&caller(&["platform"]), OPERATORS));
        assert!(payments.may_act(&caller(&[OPERATORS]), OPERATORS));
        assert_eq!(
            owners.owner_of("dev/search").environment,
            Environment::Development
        );
        let unnamed = owners.owner_of("scratch");
        assert_eq!(unnamed.environment, Environment::Production);
        assert!(!unnamed.may_act(&caller(&["payments"]), OPERATORS));
        assert!(unnamed.may_act(&caller(&[OPERATORS]), OPERATORS));
        assert!(
            SecretOwners::from_json(r#"[{"prefix": "", "environment": "PRODUCTION"}]"#)
                .unwrap_err()
                .starts_with("[0].prefix")
        );
        assert!(
            SecretOwners::from_json(
                r#"[{"prefix": "a/", "team": "x y", "environment": "PRODUCTION"}]"#
            )
            .unwrap_err()
            .starts_with("[0].team")
        );
    }

    #[test]
    fn readers_see_the_accounts_of_their_connections_only() {
        let payments = grants(&[("payments", Access::Read)]);
        let search = grants(&[("search", Access::Admin)]);
        let connections = [("111111111111", &payments), ("222222222222", &search)];
        let readable = Readable::of(&caller(&["payments"]), OPERATORS, connections);
        assert!(readable.account("111111111111"));
        assert!(!readable.account("222222222222"));
        assert_eq!(
            Readable::of(&caller(&[OPERATORS]), OPERATORS, connections),
            Readable::Everything
        );
    }
}
