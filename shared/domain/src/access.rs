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

/// The teams of a caller from the token's teams claim, as API Gateway hands it to the
/// function: an array claim arrives flattened to `[a b c]`; a JSON array or a single name
/// is read too, for authorizers that pass claims through unchanged.
pub fn teams_from_claim(raw: &str) -> BTreeSet<String> {
    let raw = raw.trim();
    if let Ok(list) = serde_json::from_str::<Vec<String>>(raw) {
        return list.into_iter().filter(|t| is_team_name(t)).collect();
    }
    match raw.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        Some(inner) => inner
            .split_whitespace()
            .filter(|t| is_team_name(t))
            .map(str::to_owned)
            .collect(),
        None if is_team_name(raw) => BTreeSet::from([raw.to_owned()]),
        None => BTreeSet::new(),
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
    fn team_claims_are_read_in_every_shape_api_gateway_gives() {
        let expected: BTreeSet<String> = ["payments".into(), "platform".into()].into();
        assert_eq!(teams_from_claim("[payments platform]"), expected);
        assert_eq!(teams_from_claim(r#"["payments","platform"]"#), expected);
        assert_eq!(
            teams_from_claim("payments"),
            BTreeSet::from(["payments".into()])
        );
        assert!(teams_from_claim("[]").is_empty());
        assert!(teams_from_claim("").is_empty());
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
