//! Connections: which accounts discovery crawls, how it reaches them, where and how often.
//!
//! A connection is one account, reached through a role it assumes (with an ExternalId) or,
//! for the account Maestro runs in, with Maestro's own role; the regions to crawl; and each
//! resource type with its own interval. A scope is one connection × region × resource type:
//! the unit a crawl completes or fails as a whole.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::access::TeamAccess;

/// What a crawl lists. Each type is crawled, completed and concluded on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ResourceType {
    Instances,
    Volumes,
    Snapshots,
    Images,
    SecurityGroups,
    Network,
    LoadBalancers,
    Databases,
    Buckets,
    Distributions,
    Functions,
}

/// The region name of scopes whose resources are listed once per account (S3 lists every
/// bucket from one endpoint; CloudFront is global).
pub const GLOBAL_REGION: &str = "global";

impl ResourceType {
    pub const ALL: [ResourceType; 11] = [
        ResourceType::Instances,
        ResourceType::Volumes,
        ResourceType::Snapshots,
        ResourceType::Images,
        ResourceType::SecurityGroups,
        ResourceType::Network,
        ResourceType::LoadBalancers,
        ResourceType::Databases,
        ResourceType::Buckets,
        ResourceType::Distributions,
        ResourceType::Functions,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ResourceType::Instances => "instances",
            ResourceType::Volumes => "volumes",
            ResourceType::Snapshots => "snapshots",
            ResourceType::Images => "images",
            ResourceType::SecurityGroups => "security-groups",
            ResourceType::Network => "network",
            ResourceType::LoadBalancers => "load-balancers",
            ResourceType::Databases => "databases",
            ResourceType::Buckets => "buckets",
            ResourceType::Distributions => "distributions",
            ResourceType::Functions => "functions",
        }
    }

    pub fn parse(name: &str) -> Option<ResourceType> {
        ResourceType::ALL.into_iter().find(|t| t.as_str() == name)
    }

    /// Every type is swept daily by default. Events keep each resource fresh as it changes
    /// (`maestro_domain::inventory::events`); the sweep finds what no event said, and concludes
    /// what went. A connection may crawl a type more often. docs/cost.md argues the choice:
    /// crawling instances every 15 minutes made half of all crawls and most of the bill.
    pub fn default_interval_minutes(self) -> u32 {
        match self {
            ResourceType::Instances
            | ResourceType::Volumes
            | ResourceType::Snapshots
            | ResourceType::Images
            | ResourceType::SecurityGroups
            | ResourceType::Network
            | ResourceType::LoadBalancers
            | ResourceType::Databases
            | ResourceType::Buckets
            | ResourceType::Distributions
            | ResourceType::Functions => DAILY_SWEEP_MINUTES,
        }
    }

    pub fn is_global(self) -> bool {
        matches!(self, ResourceType::Buckets | ResourceType::Distributions)
    }
}

/// How discovery reaches an account that is not its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AssumedRole {
    pub role_arn: String,
    pub external_id: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConnectionSource {
    /// Created through the API.
    Manual,
    /// Kept in step with the organisation's ACTIVE accounts.
    Organization,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Connection {
    pub id: String,
    pub name: String,
    pub account_id: String,
    /// None: the account Maestro runs in, reached with its own role.
    pub role: Option<AssumedRole>,
    pub regions: Vec<String>,
    /// Each resource type crawled, with its interval in minutes.
    pub resource_types: BTreeMap<ResourceType, u32>,
    pub enabled: bool,
    pub source: ConnectionSource,
    /// The teams that may read, change or administer it (`crate::access`); empty: Maestro's
    /// operators only, as for organisation connections.
    #[serde(default)]
    pub access: TeamAccess,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// What a caller sends to create or replace a connection. Unknown fields are refused so a
/// typo is an error rather than a silently ignored setting.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConnectionInput {
    pub name: String,
    pub account_id: String,
    pub role_arn: Option<String>,
    pub external_id: Option<String>,
    pub regions: Vec<String>,
    /// Resource type → interval in minutes; absent: every type at its default interval.
    pub resource_types: Option<BTreeMap<String, Option<u32>>>,
    pub enabled: Option<bool>,
    /// Team → read, write or admin; absent on a replace: the grants stay as they are.
    pub access: Option<TeamAccess>,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum InvalidConnection {
    #[error("{field}: {reason}")]
    Field { field: &'static str, reason: String },
}

fn invalid(field: &'static str, reason: impl Into<String>) -> InvalidConnection {
    InvalidConnection::Field {
        field,
        reason: reason.into(),
    }
}

/// Intervals below five minutes would crawl faster than a crawl finishes; above 30 days a
/// resource could be gone for a month unnoticed.
pub const INTERVAL_MINUTES: std::ops::RangeInclusive<u32> = 5..=30 * 24 * 60;

/// The default interval of every type's crawl: a daily sweep.
pub const DAILY_SWEEP_MINUTES: u32 = 24 * 60;

pub fn is_account_id(value: &str) -> bool {
    value.len() == 12 && value.bytes().all(|b| b.is_ascii_digit())
}

/// `eu-west-1`, `us-gov-west-1`, `ap-southeast-3`: letters, dashes, a final number.
pub fn is_region(value: &str) -> bool {
    let parts: Vec<&str> = value.split('-').collect();
    parts.len() >= 3
        && parts.len() <= 4
        && parts[..parts.len() - 1]
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()))
        && parts
            .last()
            .is_some_and(|n| !n.is_empty() && n.len() <= 2 && n.bytes().all(|b| b.is_ascii_digit()))
}

/// A connection id: lower-case letters, digits and dashes, as it appears in paths and keys.
pub fn is_connection_id(value: &str) -> bool {
    (1..=64).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

impl ConnectionInput {
    /// The connection this input describes, or the first thing wrong with it.
    pub fn validate(
        self,
        id: &str,
        source: ConnectionSource,
        created_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Connection, InvalidConnection> {
        if !is_connection_id(id) {
            return Err(invalid(
                "id",
                format!("{id:?} is not 1 to 64 lower-case letters, digits and dashes"),
            ));
        }
        let name = self.name.trim().to_owned();
        if name.is_empty() || name.len() > 128 {
            return Err(invalid("name", "give 1 to 128 characters"));
        }
        if !is_account_id(&self.account_id) {
            return Err(invalid(
                "accountId",
                format!("{:?} is not a 12-digit AWS account id", self.account_id),
            ));
        }
        let role = match (self.role_arn, self.external_id) {
            (None, None) => None,
            (Some(_), None) => {
                return Err(invalid(
                    "externalId",
                    "a role is assumed with an ExternalId; give the one its trust policy requires",
                ));
            }
            (None, Some(_)) => {
                return Err(invalid("roleArn", "an ExternalId needs the role it is for"));
            }
            (Some(role_arn), Some(external_id)) => {
                let expected = format!("arn:aws:iam::{}:role/", self.account_id);
                let role_name = role_arn.strip_prefix(&expected).unwrap_or_default();
                if role_name.is_empty() || role_name.len() > 512 {
                    return Err(invalid(
                        "roleArn",
                        format!("{role_arn:?} is not a role of account {}", self.account_id),
                    ));
                }
                let allowed = |c: char| c.is_ascii_alphanumeric() || "+=,.@:/-_".contains(c);
                if external_id.len() < 2
                    || external_id.len() > 1224
                    || !external_id.chars().all(allowed)
                {
                    return Err(invalid(
                        "externalId",
                        "2 to 1224 letters, digits and +=,.@:/-_ as STS accepts",
                    ));
                }
                Some(AssumedRole {
                    role_arn,
                    external_id,
                })
            }
        };
        if self.regions.is_empty() {
            return Err(invalid("regions", "name at least one region to crawl"));
        }
        let mut regions = self.regions;
        regions.sort();
        regions.dedup();
        if let Some(bad) = regions.iter().find(|r| !is_region(r)) {
            return Err(invalid("regions", format!("{bad:?} is not a region name")));
        }
        let resource_types = match self.resource_types {
            None => ResourceType::ALL
                .into_iter()
                .map(|t| (t, t.default_interval_minutes()))
                .collect(),
            Some(asked) if asked.is_empty() => {
                return Err(invalid("resourceTypes", "name at least one resource type"));
            }
            Some(asked) => {
                let mut types = BTreeMap::new();
                for (name, interval) in asked {
                    let Some(resource_type) = ResourceType::parse(&name) else {
                        let known: Vec<&str> =
                            ResourceType::ALL.iter().map(|t| t.as_str()).collect();
                        return Err(invalid(
                            "resourceTypes",
                            format!("{name:?} is not one of {}", known.join(", ")),
                        ));
                    };
                    let minutes = interval.unwrap_or(resource_type.default_interval_minutes());
                    if !INTERVAL_MINUTES.contains(&minutes) {
                        return Err(invalid(
                            "resourceTypes",
                            format!(
                                "{name}: {minutes} minutes is outside {} to {}",
                                INTERVAL_MINUTES.start(),
                                INTERVAL_MINUTES.end()
                            ),
                        ));
                    }
                    types.insert(resource_type, minutes);
                }
                types
            }
        };
        Ok(Connection {
            id: id.to_owned(),
            name,
            account_id: self.account_id,
            role,
            regions,
            resource_types,
            enabled: self.enabled.unwrap_or(true),
            source,
            access: self.access.unwrap_or_default(),
            created_at,
            updated_at: now,
        })
    }
}

/// One unit of crawling: completes or fails as a whole.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Scope {
    pub connection_id: String,
    pub account: String,
    pub region: String,
    pub resource_type: ResourceType,
}

impl Scope {
    /// The scope's key in the store and in the schedule's memory.
    pub fn key(&self) -> String {
        format!(
            "{}|{}|{}",
            self.connection_id,
            self.region,
            self.resource_type.as_str()
        )
    }
}

impl Connection {
    /// Whether the connection crawls the scope now: enabled, with the scope's region and type.
    /// A run started before it was disabled or changed leaves the other scopes alone, or it
    /// would bring back entities their retirement made inactive (`super::lifecycle`).
    pub fn crawls(&self, scope: &Scope) -> bool {
        self.enabled && self.scopes().iter().any(|own| own == scope)
    }

    /// Every scope of the connection, the global types once.
    pub fn scopes(&self) -> Vec<Scope> {
        let mut scopes = Vec::new();
        for resource_type in self.resource_types.keys().copied() {
            let regions: Vec<&str> = if resource_type.is_global() {
                vec![GLOBAL_REGION]
            } else {
                self.regions.iter().map(String::as_str).collect()
            };
            for region in regions {
                scopes.push(Scope {
                    connection_id: self.id.clone(),
                    account: self.account_id.clone(),
                    region: region.to_owned(),
                    resource_type,
                });
            }
        }
        scopes
    }

    /// The scopes whose interval has passed since they last started; `last_started` is keyed
    /// by [`Scope::key`]. `only` restricts a sync-now to some types.
    pub fn due_scopes(
        &self,
        last_started: &BTreeMap<String, DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Vec<Scope> {
        if !self.enabled {
            return Vec::new();
        }
        self.scopes()
            .into_iter()
            .filter(|scope| {
                let interval = self
                    .resource_types
                    .get(&scope.resource_type)
                    .copied()
                    .unwrap_or(scope.resource_type.default_interval_minutes());
                match last_started.get(&scope.key()) {
                    None => true,
                    Some(last) => now - *last >= Duration::minutes(i64::from(interval)),
                }
            })
            .collect()
    }
}

/// The connection organisation mode keeps for one ACTIVE member account.
pub fn organization_connection(
    account_id: &str,
    account_name: &str,
    template: &OrganizationTemplate,
    existing: Option<&Connection>,
    now: DateTime<Utc>,
) -> Connection {
    let role = (account_id != template.own_account).then(|| AssumedRole {
        role_arn: format!("arn:aws:iam::{account_id}:role/{}", template.role_name),
        external_id: template.external_id.clone(),
    });
    Connection {
        id: format!("org-{account_id}"),
        name: account_name.to_owned(),
        account_id: account_id.to_owned(),
        role,
        regions: template.regions.clone(),
        resource_types: existing
            .map(|c| c.resource_types.clone())
            .unwrap_or_else(|| {
                ResourceType::ALL
                    .into_iter()
                    .map(|t| (t, t.default_interval_minutes()))
                    .collect()
            }),
        enabled: existing.is_none_or(|c| c.enabled),
        source: ConnectionSource::Organization,
        // Operators may grant teams access to an account's connection; a tick keeps it.
        access: existing.map(|c| c.access.clone()).unwrap_or_default(),
        created_at: existing.map(|c| c.created_at).unwrap_or(now),
        updated_at: now,
    }
}

/// What organisation mode applies to every member account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrganizationTemplate {
    pub role_name: String,
    pub external_id: String,
    pub regions: Vec<String>,
    /// The account Maestro runs in, reached without a role.
    pub own_account: String,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn input(value: serde_json::Value) -> Result<Connection, InvalidConnection> {
        let parsed: ConnectionInput = serde_json::from_value(value).expect("parses");
        let now = Utc::now();
        parsed.validate("prod", ConnectionSource::Manual, now, now)
    }

    #[test]
    fn a_connection_with_a_role_and_two_regions() {
        let connection = input(json!({
            "name": "Production",
            "accountId": "111111111111",
            "roleArn": "arn:aws:iam::111111111111:role/maestro-discovery",
            "externalId": "maestro-7f3a",
            "regions": ["eu-west-1", "us-east-1", "eu-west-1"],
            "resourceTypes": {"instances": 5, "buckets": null}
        }))
        .expect("valid");
        assert_eq!(connection.regions, ["eu-west-1", "us-east-1"]);
        assert_eq!(connection.resource_types[&ResourceType::Instances], 5);
        assert_eq!(connection.resource_types[&ResourceType::Buckets], 24 * 60);
        let scopes = connection.scopes();
        assert_eq!(scopes.len(), 3, "instances in two regions, buckets once");
        assert!(
            scopes
                .iter()
                .any(|s| s.region == GLOBAL_REGION && s.resource_type == ResourceType::Buckets)
        );
    }

    #[test]
    fn each_mistake_is_named() {
        let base = json!({"name": "x", "accountId": "111111111111", "regions": ["eu-west-1"]});
        let with = |key: &str, value: serde_json::Value| {
            let mut v = base.clone();
            v[key] = value;
            input(v).expect_err("refused").to_string()
        };
        assert!(with("accountId", json!("1234")).starts_with("accountId"));
        assert!(with("regions", json!(["eu-west"])).starts_with("regions"));
        assert!(with("regions", json!([])).starts_with("regions"));
        assert!(
            with("roleArn", json!("arn:aws:iam::111111111111:role/r")).starts_with("externalId")
        );
        assert!(with("resourceTypes", json!({"servers": 5})).contains("not one of"));
        assert!(with("resourceTypes", json!({"instances": 1})).contains("outside"));
        let mut other_account = base.clone();
        other_account["roleArn"] = json!("arn:aws:iam::222222222222:role/r");
        other_account["externalId"] = json!("abc");
        assert!(
            input(other_account)
                .expect_err("refused")
                .to_string()
                .starts_with("roleArn")
        );
    }

    #[test]
    fn a_scope_is_due_when_its_interval_has_passed() {
        let connection = input(json!({
            "name": "x", "accountId": "111111111111", "regions": ["eu-west-1"],
            "resourceTypes": {"instances": 15, "network": 1440}
        }))
        .expect("valid");
        let now = Utc::now();
        let scopes = connection.scopes();
        let last: BTreeMap<String, DateTime<Utc>> = scopes
            .iter()
            .map(|s| (s.key(), now - Duration::minutes(20)))
            .collect();
        let due = connection.due_scopes(&last, now);
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].resource_type, ResourceType::Instances);
        assert_eq!(connection.due_scopes(&BTreeMap::new(), now).len(), 2);
    }

    #[test]
    fn a_connection_crawls_only_its_scopes_while_enabled() {
        let mut connection = input(json!({
            "name": "x", "accountId": "111111111111", "regions": ["eu-west-1"],
            "resourceTypes": {"instances": 15}
        }))
        .expect("valid");
        let own = connection.scopes().remove(0);
        assert!(connection.crawls(&own));
        let mut elsewhere = own.clone();
        elsewhere.region = "eu-central-1".into();
        assert!(!connection.crawls(&elsewhere));
        let mut other_type = own.clone();
        other_type.resource_type = ResourceType::Volumes;
        assert!(!connection.crawls(&other_type));
        connection.enabled = false;
        assert!(!connection.crawls(&own));
    }

    #[test]
    fn region_names() {
        for good in ["eu-west-1", "us-gov-west-1", "ap-southeast-3"] {
            assert!(is_region(good), "{good}");
        }
        for bad in ["eu-west", "EU-west-1", "global", "eu--1", "eu-west-123"] {
            assert!(!is_region(bad), "{bad}");
        }
    }
}
