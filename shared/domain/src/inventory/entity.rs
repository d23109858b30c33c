//! The normalised inventory entity: one per cloud resource, whatever its provider type.
//!
//! Common fields sit on [`Entity`]; what only one kind of resource has sits in its typed
//! [`Details`]. Relations name other entities by their ids, which the [`ids`] helpers build
//! the same way for the resource that points and the resource pointed at.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The families of Maestro Server's inventory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Family {
    Server,
    Volume,
    Snapshot,
    Image,
    Network,
    LoadBalancer,
    Database,
    ObjectStorage,
    Cdn,
    Serverless,
}

impl Family {
    pub const ALL: [Family; 10] = [
        Family::Server,
        Family::Volume,
        Family::Snapshot,
        Family::Image,
        Family::Network,
        Family::LoadBalancer,
        Family::Database,
        Family::ObjectStorage,
        Family::Cdn,
        Family::Serverless,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Family::Server => "server",
            Family::Volume => "volume",
            Family::Snapshot => "snapshot",
            Family::Image => "image",
            Family::Network => "network",
            Family::LoadBalancer => "load-balancer",
            Family::Database => "database",
            Family::ObjectStorage => "object-storage",
            Family::Cdn => "cdn",
            Family::Serverless => "serverless",
        }
    }

    pub fn parse(name: &str) -> Option<Family> {
        Family::ALL.into_iter().find(|f| f.as_str() == name)
    }
}

/// How one entity points at another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RelationKind {
    /// A server or volume to the volume attached to it, or the volume to its server.
    AttachedVolume,
    AttachedTo,
    SecurityGroup,
    Subnet,
    Vpc,
    /// A server to the image it was launched from.
    Image,
    /// A load balancer or target group to an instance it sends traffic to.
    Target,
    TargetGroup,
    /// A snapshot to the volume it was taken of.
    SnapshotOf,
    /// A peering connection or VPN gateway to a VPC it joins.
    Joins,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Relation {
    pub kind: RelationKind,
    pub target: String,
}

/// One resource as the inventory keeps it. Store metadata (first seen, last changed, content
/// hash) is not part of it: the content hash is computed from this value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Entity {
    pub id: String,
    pub family: Family,
    /// The CloudFormation type name, e.g. `AWS::EC2::Instance`.
    pub provider_type: String,
    pub account: String,
    pub region: String,
    pub zone: Option<String>,
    pub name: Option<String>,
    pub tags: BTreeMap<String, String>,
    pub environment: Option<String>,
    pub role: Option<String>,
    pub status: Option<String>,
    pub active: bool,
    pub created_at: Option<DateTime<Utc>>,
    pub details: Details,
    pub relations: Vec<Relation>,
    /// Why its tags could not be read this time (a bucket whose policy denies reading them):
    /// the tags, and what comes of them (name, environment, role), stand as last read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags_unreadable: Option<String>,
}

impl Entity {
    /// Its content hash: SHA-256 of its JSON as its type writes it. A crawl compares it with
    /// the stored hash before building the entity's JSON document, which only a change needs.
    pub fn content_hash(&self) -> String {
        super::changes::hash_of(self)
    }

    /// With the tags `stored` (the content last written) was read with, and what comes of them
    /// (name, environment, role): for an entity whose tags could not be read this time.
    pub fn with_tags_of(&self, stored: &serde_json::Value) -> Entity {
        let text = |field: &str| stored.get(field).and_then(|v| v.as_str()).map(String::from);
        let mut kept = self.clone();
        kept.tags = stored
            .get("tags")
            .and_then(|tags| serde_json::from_value(tags.clone()).ok())
            .unwrap_or_default();
        kept.name = text("name");
        kept.environment = text("environment");
        kept.role = text("role");
        kept
    }
}

/// Where an entity lives and how its labels are read, for the translators.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement<'a> {
    pub account: &'a str,
    pub region: &'a str,
    pub labels: &'a Labels,
}

/// The tag keys that carry the environment and the role; the first key present wins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Labels {
    pub environment_keys: Vec<String>,
    pub role_keys: Vec<String>,
}

impl Default for Labels {
    fn default() -> Self {
        Labels {
            environment_keys: ["Environment", "environment", "env", "maestro:environment"]
                .map(String::from)
                .to_vec(),
            role_keys: ["Role", "role"].map(String::from).to_vec(),
        }
    }
}

impl Labels {
    /// Reads comma-separated key lists; an empty list keeps the defaults.
    pub fn from_lists(environment: Option<&str>, role: Option<&str>) -> Labels {
        fn keys(list: Option<&str>, default: Vec<String>) -> Vec<String> {
            let parsed: Vec<String> = list
                .unwrap_or_default()
                .split(',')
                .map(str::trim)
                .filter(|k| !k.is_empty())
                .map(String::from)
                .collect();
            if parsed.is_empty() { default } else { parsed }
        }
        let defaults = Labels::default();
        Labels {
            environment_keys: keys(environment, defaults.environment_keys),
            role_keys: keys(role, defaults.role_keys),
        }
    }

    fn first(keys: &[String], tags: &BTreeMap<String, String>) -> Option<String> {
        keys.iter().find_map(|k| tags.get(k).cloned())
    }
}

/// The fields every translator sets; [`Entity::new`] derives the rest.
#[derive(Debug, Clone)]
pub struct Described {
    pub id: String,
    pub provider_type: &'static str,
    pub zone: Option<String>,
    pub tags: BTreeMap<String, String>,
    pub status: Option<String>,
    pub active: bool,
    pub created_at: Option<DateTime<Utc>>,
    pub details: Details,
    pub relations: Vec<Relation>,
}

impl Entity {
    /// An entity with its name from the `Name` tag and its environment and role from the
    /// configured tag keys; relations and every list of its details sorted (relations also
    /// deduplicated), so that their order never counts as a change.
    pub fn new(at: &Placement<'_>, described: Described) -> Entity {
        let mut relations = described.relations;
        relations.sort();
        relations.dedup();
        let mut details = described.details;
        details.sort_lists();
        Entity {
            family: details.family(),
            name: described.tags.get("Name").cloned(),
            environment: Labels::first(&at.labels.environment_keys, &described.tags),
            role: Labels::first(&at.labels.role_keys, &described.tags),
            id: described.id,
            provider_type: described.provider_type.to_owned(),
            account: at.account.to_owned(),
            region: at.region.to_owned(),
            zone: described.zone,
            tags: described.tags,
            status: described.status,
            active: described.active,
            created_at: described.created_at,
            details,
            relations,
            tags_unreadable: None,
        }
    }
}

/// What only one kind of resource has.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Details {
    Server(Server),
    Volume(Volume),
    Snapshot(Snapshot),
    Image(Image),
    SecurityGroup(SecurityGroup),
    Vpc(Vpc),
    Subnet(Subnet),
    RouteTable(RouteTable),
    NatGateway(NatGateway),
    NetworkAcl(NetworkAcl),
    VpcEndpoint(VpcEndpoint),
    PeeringConnection(PeeringConnection),
    VpnGateway(VpnGateway),
    LoadBalancer(LoadBalancer),
    TargetGroup(TargetGroup),
    Database(Database),
    Bucket(Bucket),
    Distribution(Distribution),
    Function(Function),
}

impl Details {
    /// Sorts every list: AWS answers security group rules, routes, subnets and the like in
    /// no promised order (EC2 says the order may vary between calls), and none of these lists
    /// means anything by its order.
    pub fn sort_lists(&mut self) {
        match self {
            Details::Server(_)
            | Details::Snapshot(_)
            | Details::Image(_)
            | Details::Vpc(_)
            | Details::Subnet(_)
            | Details::VpcEndpoint(_)
            | Details::PeeringConnection(_)
            | Details::Bucket(_) => {}
            Details::Volume(volume) => volume.attached_to.sort(),
            Details::SecurityGroup(group) => {
                for rule in group.ingress.iter_mut().chain(group.egress.iter_mut()) {
                    rule.peers.sort();
                }
                group.ingress.sort();
                group.egress.sort();
            }
            Details::RouteTable(table) => {
                table.subnet_ids.sort();
                table.routes.sort();
            }
            Details::NatGateway(gateway) => gateway.public_ips.sort(),
            Details::NetworkAcl(acl) => acl.subnet_ids.sort(),
            Details::VpnGateway(gateway) => gateway.vpc_ids.sort(),
            Details::LoadBalancer(balancer) => {
                balancer.subnet_ids.sort();
                balancer.security_group_ids.sort();
                balancer.target_instance_ids.sort();
            }
            Details::TargetGroup(group) => {
                group.load_balancer_arns.sort();
                // By target alone: its health is a status, not part of its identity.
                group
                    .targets
                    .sort_by(|a, b| (&a.id, a.port).cmp(&(&b.id, b.port)));
            }
            Details::Database(database) => {
                database.subnet_ids.sort();
                database.security_group_ids.sort();
            }
            Details::Distribution(distribution) => {
                distribution.aliases.sort();
                distribution.origins.sort();
            }
            Details::Function(function) => {
                function.architectures.sort();
                function.subnet_ids.sort();
                function.security_group_ids.sort();
            }
        }
    }

    pub fn family(&self) -> Family {
        match self {
            Details::Server(_) => Family::Server,
            Details::Volume(_) => Family::Volume,
            Details::Snapshot(_) => Family::Snapshot,
            Details::Image(_) => Family::Image,
            Details::SecurityGroup(_)
            | Details::Vpc(_)
            | Details::Subnet(_)
            | Details::RouteTable(_)
            | Details::NatGateway(_)
            | Details::NetworkAcl(_)
            | Details::VpcEndpoint(_)
            | Details::PeeringConnection(_)
            | Details::VpnGateway(_) => Family::Network,
            Details::LoadBalancer(_) | Details::TargetGroup(_) => Family::LoadBalancer,
            Details::Database(_) => Family::Database,
            Details::Bucket(_) => Family::ObjectStorage,
            Details::Distribution(_) => Family::Cdn,
            Details::Function(_) => Family::Serverless,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Server {
    pub instance_id: String,
    pub instance_type: Option<String>,
    pub image_id: Option<String>,
    pub vpc_id: Option<String>,
    pub subnet_id: Option<String>,
    pub private_ip: Option<String>,
    pub public_ip: Option<String>,
    pub key_name: Option<String>,
    pub platform: Option<String>,
    pub architecture: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Volume {
    pub volume_id: String,
    pub size_gib: Option<i32>,
    pub volume_type: Option<String>,
    pub iops: Option<i32>,
    pub encrypted: bool,
    pub snapshot_id: Option<String>,
    pub attached_to: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    pub snapshot_id: String,
    pub volume_id: Option<String>,
    pub size_gib: Option<i32>,
    pub encrypted: bool,
    pub description: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Image {
    pub image_id: String,
    pub image_name: Option<String>,
    pub architecture: Option<String>,
    pub platform: Option<String>,
    pub root_device_type: Option<String>,
    pub public: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    pub protocol: String,
    pub from_port: Option<i32>,
    pub to_port: Option<i32>,
    /// CIDR blocks, prefix lists and security group ids the rule admits.
    pub peers: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecurityGroup {
    pub group_id: String,
    pub group_name: Option<String>,
    pub description: Option<String>,
    pub vpc_id: Option<String>,
    pub ingress: Vec<Rule>,
    pub egress: Vec<Rule>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Vpc {
    pub vpc_id: String,
    pub cidr_block: Option<String>,
    pub is_default: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Subnet {
    pub subnet_id: String,
    pub vpc_id: Option<String>,
    pub cidr_block: Option<String>,
    pub available_ips: Option<i32>,
    pub default_for_zone: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Route {
    pub destination: String,
    pub target: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteTable {
    pub route_table_id: String,
    pub vpc_id: Option<String>,
    pub main: bool,
    pub subnet_ids: Vec<String>,
    pub routes: Vec<Route>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NatGateway {
    pub nat_gateway_id: String,
    pub vpc_id: Option<String>,
    pub subnet_id: Option<String>,
    pub connectivity: Option<String>,
    pub public_ips: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkAcl {
    pub network_acl_id: String,
    pub vpc_id: Option<String>,
    pub is_default: bool,
    pub subnet_ids: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VpcEndpoint {
    pub endpoint_id: String,
    pub vpc_id: Option<String>,
    pub service_name: Option<String>,
    pub endpoint_type: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PeeringConnection {
    pub peering_id: String,
    pub requester_vpc_id: Option<String>,
    pub requester_account: Option<String>,
    pub accepter_vpc_id: Option<String>,
    pub accepter_account: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VpnGateway {
    pub vpn_gateway_id: String,
    pub gateway_type: Option<String>,
    pub vpc_ids: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BalancerKind {
    Classic,
    Application,
    Network,
    Gateway,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LoadBalancer {
    pub name: String,
    pub balancer_type: BalancerKind,
    pub dns_name: Option<String>,
    pub scheme: Option<String>,
    pub vpc_id: Option<String>,
    pub subnet_ids: Vec<String>,
    pub security_group_ids: Vec<String>,
    /// Instances behind it, through its target groups for ELBv2.
    pub target_instance_ids: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Target {
    pub id: String,
    pub port: Option<i32>,
    pub health: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetGroup {
    pub name: String,
    pub protocol: Option<String>,
    pub port: Option<i32>,
    pub target_type: Option<String>,
    pub vpc_id: Option<String>,
    pub load_balancer_arns: Vec<String>,
    pub targets: Vec<Target>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Database {
    pub identifier: String,
    pub engine: Option<String>,
    pub engine_version: Option<String>,
    pub instance_class: Option<String>,
    pub storage_gib: Option<i32>,
    pub multi_az: bool,
    pub encrypted: bool,
    pub endpoint: Option<String>,
    pub vpc_id: Option<String>,
    pub subnet_ids: Vec<String>,
    pub security_group_ids: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Bucket {
    pub bucket_name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Distribution {
    pub distribution_id: String,
    pub domain_name: Option<String>,
    pub aliases: Vec<String>,
    pub origins: Vec<String>,
    pub enabled: bool,
    pub price_class: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Function {
    pub function_name: String,
    pub runtime: Option<String>,
    pub handler: Option<String>,
    pub memory_mb: Option<i32>,
    pub timeout_seconds: Option<i32>,
    pub code_size: i64,
    pub execution_role: Option<String>,
    pub architectures: Vec<String>,
    pub vpc_id: Option<String>,
    pub subnet_ids: Vec<String>,
    pub security_group_ids: Vec<String>,
}

/// Entity ids. EC2 resources get their ARN (as IAM writes it: images and snapshots carry no
/// account), so a relation to a resource of another scope names the same id its own crawl
/// gives it.
pub mod ids {
    pub fn ec2(region: &str, account: &str, kind: &str, id: &str) -> String {
        match kind {
            "image" | "snapshot" => format!("arn:aws:ec2:{region}::{kind}/{id}"),
            _ => format!("arn:aws:ec2:{region}:{account}:{kind}/{id}"),
        }
    }

    pub fn classic_load_balancer(region: &str, account: &str, name: &str) -> String {
        format!("arn:aws:elasticloadbalancing:{region}:{account}:loadbalancer/{name}")
    }

    pub fn bucket(name: &str) -> String {
        format!("arn:aws:s3:::{name}")
    }

    pub fn distribution(account: &str, id: &str) -> String {
        format!("arn:aws:cloudfront::{account}:distribution/{id}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn name_environment_and_role_come_from_tags_by_the_configured_keys() {
        let labels = Labels::from_lists(Some("Stage, Environment"), None);
        let at = Placement {
            account: "111111111111",
            region: "eu-west-1",
            labels: &labels,
        };
        let entity = Entity::new(
            &at,
            Described {
                id: ids::ec2("eu-west-1", "111111111111", "vpc", "vpc-1"),
                provider_type: "AWS::EC2::VPC",
                zone: None,
                tags: tags(&[
                    ("Name", "core"),
                    ("Environment", "prod"),
                    ("Stage", "dev"),
                    ("role", "network"),
                ]),
                status: Some("available".into()),
                active: true,
                created_at: None,
                details: Details::Vpc(Vpc {
                    vpc_id: "vpc-1".into(),
                    cidr_block: None,
                    is_default: false,
                }),
                relations: vec![],
            },
        );
        assert_eq!(entity.name.as_deref(), Some("core"));
        assert_eq!(entity.environment.as_deref(), Some("dev"));
        assert_eq!(entity.role.as_deref(), Some("network"));
        assert_eq!(entity.family, Family::Network);
        assert_eq!(entity.id, "arn:aws:ec2:eu-west-1:111111111111:vpc/vpc-1");
    }

    #[test]
    fn relations_are_kept_in_one_order() {
        let labels = Labels::default();
        let at = Placement {
            account: "1",
            region: "r",
            labels: &labels,
        };
        let sg = |id: &str| Relation {
            kind: RelationKind::SecurityGroup,
            target: id.into(),
        };
        let make = |relations| {
            Entity::new(
                &at,
                Described {
                    id: "x".into(),
                    provider_type: "AWS::S3::Bucket",
                    zone: None,
                    tags: BTreeMap::new(),
                    status: None,
                    active: true,
                    created_at: None,
                    details: Details::Bucket(Bucket {
                        bucket_name: "x".into(),
                    }),
                    relations,
                },
            )
        };
        assert_eq!(
            make(vec![sg("b"), sg("a"), sg("b")]),
            make(vec![sg("a"), sg("b")])
        );
    }

    #[test]
    fn lists_aws_answers_in_any_order_are_kept_in_one() {
        // Issue 15, finding 6: EC2 answers rules, routes and subnets in no promised order, and
        // each new order wrote a change.
        let labels = Labels::default();
        let at = Placement {
            account: "111111111111",
            region: "eu-west-1",
            labels: &labels,
        };
        let rule = |port: i32, peers: &[&str]| Rule {
            protocol: "tcp".into(),
            from_port: Some(port),
            to_port: Some(port),
            peers: peers.iter().map(|p| (*p).to_owned()).collect(),
        };
        let group = |ingress: Vec<Rule>| {
            Entity::new(
                &at,
                Described {
                    id: "sg".into(),
                    provider_type: "AWS::EC2::SecurityGroup",
                    zone: None,
                    tags: BTreeMap::new(),
                    status: None,
                    active: true,
                    created_at: None,
                    details: Details::SecurityGroup(SecurityGroup {
                        group_id: "sg-1".into(),
                        group_name: None,
                        description: None,
                        vpc_id: None,
                        ingress,
                        egress: vec![],
                    }),
                    relations: vec![],
                },
            )
        };
        assert_eq!(
            group(vec![
                rule(443, &["10.0.0.0/8", "sg-2"]),
                rule(22, &["10.1.0.0/16"])
            ]),
            group(vec![
                rule(22, &["10.1.0.0/16"]),
                rule(443, &["sg-2", "10.0.0.0/8"])
            ])
        );
        let table = |routes: Vec<Route>, subnet_ids: Vec<String>| {
            let mut details = Details::RouteTable(RouteTable {
                route_table_id: "rtb-1".into(),
                vpc_id: None,
                main: false,
                subnet_ids,
                routes,
            });
            details.sort_lists();
            details
        };
        let route = |destination: &str| Route {
            destination: destination.into(),
            target: Some("local".into()),
        };
        assert_eq!(
            table(
                vec![route("10.0.0.0/16"), route("0.0.0.0/0")],
                vec!["subnet-b".into(), "subnet-a".into()]
            ),
            table(
                vec![route("0.0.0.0/0"), route("10.0.0.0/16")],
                vec!["subnet-a".into(), "subnet-b".into()]
            )
        );
    }

    #[test]
    fn details_read_back_under_their_kind_tag() {
        // A field named like the tag would shadow it and the entity would not read back.
        let details = Details::LoadBalancer(LoadBalancer {
            name: "web".into(),
            balancer_type: BalancerKind::Application,
            dns_name: None,
            scheme: None,
            vpc_id: None,
            subnet_ids: vec![],
            security_group_ids: vec![],
            target_instance_ids: vec!["i-1".into()],
        });
        let json = serde_json::to_value(&details).expect("serialises");
        assert_eq!(json["kind"], "load-balancer");
        assert_eq!(serde_json::from_value::<Details>(json).ok(), Some(details));
    }

    #[test]
    fn family_names_read_back() {
        for family in Family::ALL {
            assert_eq!(Family::parse(family.as_str()), Some(family));
            assert_eq!(
                serde_json::to_value(family).ok(),
                Some(serde_json::Value::String(family.as_str().into()))
            );
        }
    }
}
