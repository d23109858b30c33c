//! Events that say a crawled resource changed: which resources to describe again.
//!
//! Two kinds arrive: CloudTrail's record of a mutating API call (`AWS API Call via
//! CloudTrail`), read for the provider ids it names in its request or its response, and EC2's
//! own instance state changes, which also cover what no API call records (a Spot
//! interruption, a host retirement). The resource is then described afresh and written through
//! the same diff as a crawl. An event never makes anything gone: a resource not found on
//! describe waits for the crawls to conclude, as absence from one call proves little.
//!
//! [`REFRESH_EVENTS`] is the one list of what is forwarded: the template's rule, the CDK
//! app's and the member-account forwarder (`infra/member-events-forwarder.yaml`) name the
//! same events, which `tests/e2e/template_wiring.rs` checks.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::connection::ResourceType;
use super::crawl::{Actor, Named};

/// The `detail-type` of CloudTrail's records of API calls.
pub const API_CALL: &str = "AWS API Call via CloudTrail";

/// The `detail-type` of EC2's instance state changes.
pub const INSTANCE_STATE_CHANGE: &str = "EC2 Instance State-change Notification";

/// The instance states whose changes are forwarded: the settled ones. The passing states
/// (`pending`, `stopping`, `shutting-down`) are each followed by one of these.
pub const SETTLED_INSTANCE_STATES: &[&str] = &["running", "stopped", "terminated"];

/// Where in a CloudTrail record an event names what it changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Naming {
    /// EC2 ids of these types wherever they stand in the request or the response. CloudTrail
    /// nests them differently from call to call (`instancesSet.items`, `resourcesSet.items`,
    /// a `ModifyVolumeRequest` wrapper with PascalCase fields), so the record is searched
    /// rather than read at one path.
    Ec2Ids(&'static [ResourceType]),
    /// The values of these fields, anywhere in the request or the response; an ARN stands
    /// for itself where the describe call takes ARNs.
    Fields(ResourceType, &'static [&'static str]),
    /// A Lambda function, by name: `functionName`, or the function of a `resource` ARN.
    Function,
    /// A CloudFront distribution: the request's `id` or `resource` ARN, or the created
    /// distribution's id (its configuration has other `id` fields, origins' among them).
    Distribution,
}

/// One forwarded API call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefreshEvent {
    /// The call's name as CloudTrail's `eventName` gives it, without an API version suffix.
    pub name: &'static str,
    /// CloudTrail names the call with its API version appended (`CreateFunction20150331`,
    /// `UpdateFunctionConfiguration20150331v2`), which changes as the API does; the rule
    /// matches the name as a prefix.
    pub versioned: bool,
    pub naming: Naming,
}

/// The events a rule forwards: each is a CloudTrail source (`aws.<service>`) and its calls.
pub const REFRESH_EVENTS: &[(&str, &[RefreshEvent])] = &[
    ("aws.ec2", EC2_EVENTS),
    ("aws.s3", S3_EVENTS),
    ("aws.rds", RDS_EVENTS),
    ("aws.elasticloadbalancing", ELB_EVENTS),
    ("aws.lambda", LAMBDA_EVENTS),
    ("aws.cloudfront", CLOUDFRONT_EVENTS),
];

const fn call(name: &'static str, naming: Naming) -> RefreshEvent {
    RefreshEvent {
        name,
        versioned: false,
        naming,
    }
}

const fn versioned(name: &'static str, naming: Naming) -> RefreshEvent {
    RefreshEvent {
        name,
        versioned: true,
        naming,
    }
}

use ResourceType as T;

const INSTANCES: Naming = Naming::Ec2Ids(&[T::Instances]);
const VOLUMES: Naming = Naming::Ec2Ids(&[T::Volumes]);
const SNAPSHOTS: Naming = Naming::Ec2Ids(&[T::Snapshots]);
const IMAGES: Naming = Naming::Ec2Ids(&[T::Images]);
const SECURITY_GROUPS: Naming = Naming::Ec2Ids(&[T::SecurityGroups]);
const NETWORK: Naming = Naming::Ec2Ids(&[T::Network]);
const ANY_EC2: Naming = Naming::Ec2Ids(&[
    T::Instances,
    T::Volumes,
    T::Snapshots,
    T::Images,
    T::SecurityGroups,
    T::Network,
]);

const EC2_EVENTS: &[RefreshEvent] = &[
    call("CreateTags", ANY_EC2),
    call("DeleteTags", ANY_EC2),
    // Instances: every call that changes what a crawl records of one (state, type, image,
    // addresses, key, placement, volumes, groups). An attachment also changes the volume.
    call("RunInstances", INSTANCES),
    call("StartInstances", INSTANCES),
    call("StopInstances", INSTANCES),
    call("TerminateInstances", INSTANCES),
    call("ModifyInstanceAttribute", INSTANCES),
    call("ModifyInstancePlacement", INSTANCES),
    call("ModifyInstanceMetadataOptions", INSTANCES),
    call("AssociateAddress", INSTANCES),
    call("DisassociateAddress", INSTANCES),
    call("AssociateIamInstanceProfile", INSTANCES),
    call("AttachVolume", Naming::Ec2Ids(&[T::Volumes, T::Instances])),
    call("DetachVolume", Naming::Ec2Ids(&[T::Volumes, T::Instances])),
    call("CreateVolume", VOLUMES),
    call("DeleteVolume", VOLUMES),
    call("ModifyVolume", VOLUMES),
    call("CreateSnapshot", SNAPSHOTS),
    call("CreateSnapshots", SNAPSHOTS),
    call("CopySnapshot", SNAPSHOTS),
    call("DeleteSnapshot", SNAPSHOTS),
    call("ModifySnapshotAttribute", SNAPSHOTS),
    call("ModifySnapshotTier", SNAPSHOTS),
    call("CreateImage", IMAGES),
    call("RegisterImage", IMAGES),
    call("CopyImage", IMAGES),
    call("DeregisterImage", IMAGES),
    call("ModifyImageAttribute", IMAGES),
    call("EnableImage", IMAGES),
    call("DisableImage", IMAGES),
    call("EnableImageDeprecation", IMAGES),
    call("DisableImageDeprecation", IMAGES),
    call("CreateSecurityGroup", SECURITY_GROUPS),
    call("DeleteSecurityGroup", SECURITY_GROUPS),
    call("AuthorizeSecurityGroupIngress", SECURITY_GROUPS),
    call("AuthorizeSecurityGroupEgress", SECURITY_GROUPS),
    call("RevokeSecurityGroupIngress", SECURITY_GROUPS),
    call("RevokeSecurityGroupEgress", SECURITY_GROUPS),
    call("ModifySecurityGroupRules", SECURITY_GROUPS),
    call(
        "UpdateSecurityGroupRuleDescriptionsIngress",
        SECURITY_GROUPS,
    ),
    call("UpdateSecurityGroupRuleDescriptionsEgress", SECURITY_GROUPS),
    // The network: VPCs, subnets, route tables, NAT gateways, network ACLs, endpoints,
    // peerings and VPN gateways.
    call("CreateVpc", NETWORK),
    call("DeleteVpc", NETWORK),
    call("ModifyVpcAttribute", NETWORK),
    call("AssociateVpcCidrBlock", NETWORK),
    call("DisassociateVpcCidrBlock", NETWORK),
    call("CreateSubnet", NETWORK),
    call("DeleteSubnet", NETWORK),
    call("ModifySubnetAttribute", NETWORK),
    call("CreateRouteTable", NETWORK),
    call("DeleteRouteTable", NETWORK),
    call("CreateRoute", NETWORK),
    call("ReplaceRoute", NETWORK),
    call("DeleteRoute", NETWORK),
    call("AssociateRouteTable", NETWORK),
    call("DisassociateRouteTable", NETWORK),
    call("ReplaceRouteTableAssociation", NETWORK),
    call("CreateNatGateway", NETWORK),
    call("DeleteNatGateway", NETWORK),
    call("CreateNetworkAcl", NETWORK),
    call("DeleteNetworkAcl", NETWORK),
    call("CreateNetworkAclEntry", NETWORK),
    call("ReplaceNetworkAclEntry", NETWORK),
    call("DeleteNetworkAclEntry", NETWORK),
    call("ReplaceNetworkAclAssociation", NETWORK),
    call("CreateVpcEndpoint", NETWORK),
    call("ModifyVpcEndpoint", NETWORK),
    call("DeleteVpcEndpoints", NETWORK),
    call("CreateVpcPeeringConnection", NETWORK),
    call("AcceptVpcPeeringConnection", NETWORK),
    call("RejectVpcPeeringConnection", NETWORK),
    call("DeleteVpcPeeringConnection", NETWORK),
    call("CreateVpnGateway", NETWORK),
    call("AttachVpnGateway", NETWORK),
    call("DetachVpnGateway", NETWORK),
    call("DeleteVpnGateway", NETWORK),
];

const BUCKETS: Naming = Naming::Fields(T::Buckets, &["bucketName"]);

const S3_EVENTS: &[RefreshEvent] = &[
    call("CreateBucket", BUCKETS),
    call("DeleteBucket", BUCKETS),
    call("PutBucketTagging", BUCKETS),
    call("DeleteBucketTagging", BUCKETS),
];

/// An instance's identifier, or the ARN of a tagged one (`arn:aws:rds:…:db:<id>`).
const DATABASES: Naming = Naming::Fields(T::Databases, &["dBInstanceIdentifier", "resourceName"]);

const RDS_EVENTS: &[RefreshEvent] = &[
    call("CreateDBInstance", DATABASES),
    call("CreateDBInstanceReadReplica", DATABASES),
    call("RestoreDBInstanceFromDBSnapshot", DATABASES),
    call("RestoreDBInstanceToPointInTime", DATABASES),
    call("DeleteDBInstance", DATABASES),
    call("ModifyDBInstance", DATABASES),
    call("StartDBInstance", DATABASES),
    call("StopDBInstance", DATABASES),
    call("RebootDBInstance", DATABASES),
    call("PromoteReadReplica", DATABASES),
    call("AddTagsToResource", DATABASES),
    call("RemoveTagsFromResource", DATABASES),
];

/// Classic balancers by name; the others, and their target groups, by ARN.
const LOAD_BALANCERS: Naming = Naming::Fields(
    T::LoadBalancers,
    &[
        "loadBalancerName",
        "loadBalancerNames",
        "loadBalancerArn",
        "loadBalancerArns",
        "targetGroupArn",
        "resourceArns",
    ],
);

const ELB_EVENTS: &[RefreshEvent] = &[
    call("CreateLoadBalancer", LOAD_BALANCERS),
    call("DeleteLoadBalancer", LOAD_BALANCERS),
    call("ModifyLoadBalancerAttributes", LOAD_BALANCERS),
    call("SetSecurityGroups", LOAD_BALANCERS),
    call("SetSubnets", LOAD_BALANCERS),
    call("SetIpAddressType", LOAD_BALANCERS),
    call("ApplySecurityGroupsToLoadBalancer", LOAD_BALANCERS),
    call("AttachLoadBalancerToSubnets", LOAD_BALANCERS),
    call("DetachLoadBalancerFromSubnets", LOAD_BALANCERS),
    call("RegisterInstancesWithLoadBalancer", LOAD_BALANCERS),
    call("DeregisterInstancesFromLoadBalancer", LOAD_BALANCERS),
    call("RegisterTargets", LOAD_BALANCERS),
    call("DeregisterTargets", LOAD_BALANCERS),
    call("AddTags", LOAD_BALANCERS),
    call("RemoveTags", LOAD_BALANCERS),
];

const LAMBDA_EVENTS: &[RefreshEvent] = &[
    versioned("CreateFunction", Naming::Function),
    versioned("DeleteFunction", Naming::Function),
    versioned("UpdateFunctionCode", Naming::Function),
    versioned("UpdateFunctionConfiguration", Naming::Function),
    versioned("TagResource", Naming::Function),
    versioned("UntagResource", Naming::Function),
];

const CLOUDFRONT_EVENTS: &[RefreshEvent] = &[
    versioned("CreateDistribution", Naming::Distribution),
    versioned("CreateDistributionWithTags", Naming::Distribution),
    versioned("UpdateDistribution", Naming::Distribution),
    versioned("DeleteDistribution", Naming::Distribution),
    versioned("TagResource", Naming::Distribution),
    versioned("UntagResource", Naming::Distribution),
];

/// The forwarded call a record is of: its source and its `eventName` without a version
/// suffix. `None` for a call not forwarded.
pub fn refresh_event(source: &str, event_name: &str) -> Option<&'static RefreshEvent> {
    let (_, calls) = REFRESH_EVENTS.iter().find(|(s, _)| *s == source)?;
    calls.iter().find(|event| {
        if event.versioned {
            event_name
                .strip_prefix(event.name)
                .is_some_and(is_version_suffix)
        } else {
            event_name == event.name
        }
    })
}

/// `20150331`, `20150331v2`, `2020_05_31`, or nothing.
fn is_version_suffix(rest: &str) -> bool {
    rest.chars()
        .all(|c| c.is_ascii_digit() || c == '_' || c == 'v')
        && rest.chars().next().is_none_or(|c| c.is_ascii_digit())
}

/// The resource type an EC2 id belongs to, by its prefix.
pub fn ec2_type_of(id: &str) -> Option<ResourceType> {
    let prefix = id.split_once('-').map(|(p, _)| p)?;
    Some(match prefix {
        "i" => ResourceType::Instances,
        "vol" => ResourceType::Volumes,
        "snap" => ResourceType::Snapshots,
        "ami" => ResourceType::Images,
        "sg" => ResourceType::SecurityGroups,
        "vpc" | "subnet" | "rtb" | "nat" | "acl" | "vpce" | "pcx" | "vgw" => ResourceType::Network,
        _ => return None,
    })
}

/// An EC2 resource id: a known prefix, a dash, and 8 or 17 hex digits. A tag value such as
/// `vpc-main` is not one.
fn ec2_id(text: &str) -> Option<ResourceType> {
    let (_, hex) = text.split_once('-')?;
    let hex_digits = matches!(hex.len(), 8 | 17) && hex.bytes().all(|b| b.is_ascii_hexdigit());
    if hex_digits { ec2_type_of(text) } else { None }
}

/// Every string in a JSON value, depth first, but for those under a `source…` field: a copy
/// (`CopySnapshot`, `CopyImage`) names the snapshot or image it copied, which may be another
/// account's, shared or public, and is not the crawled account's to record.
fn strings<'a>(value: &'a Value, found: &mut Vec<&'a str>) {
    match value {
        Value::String(text) => found.push(text),
        Value::Array(items) => items.iter().for_each(|item| strings(item, found)),
        Value::Object(fields) => fields
            .iter()
            .filter(|(key, _)| !key.to_ascii_lowercase().starts_with("source"))
            .for_each(|(_, field)| strings(field, found)),
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// The strings under any of `keys`, anywhere in a JSON value.
fn strings_under<'a>(value: &'a Value, keys: &[&str], found: &mut Vec<&'a str>) {
    match value {
        Value::Array(items) => items
            .iter()
            .for_each(|item| strings_under(item, keys, found)),
        Value::Object(fields) => {
            for (key, field) in fields {
                if keys.contains(&key.as_str()) {
                    strings(field, found);
                } else {
                    strings_under(field, keys, found);
                }
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) => {}
    }
}

fn field(detail: &Value, path: &[&str]) -> Option<String> {
    let mut at = detail;
    for step in path {
        at = at.get(*step)?;
    }
    at.as_str().map(String::from)
}

/// Ids grouped by type, in the order they were first named, each once.
fn grouped(ids: impl IntoIterator<Item = (ResourceType, String)>) -> Vec<Named> {
    let mut named: Vec<Named> = Vec::new();
    for (resource_type, id) in ids {
        match named.iter_mut().find(|n| n.resource_type == resource_type) {
            Some(group) if group.ids.contains(&id) => {}
            Some(group) => group.ids.push(id),
            None => named.push(Named {
                resource_type,
                ids: vec![id],
            }),
        }
    }
    named
}

/// A Lambda function's name from a name or an ARN
/// (`arn:aws:lambda:<region>:<account>:function:<name>[:<qualifier>]`).
fn function_name(name_or_arn: &str) -> Option<String> {
    let parts: Vec<&str> = name_or_arn.split(':').collect();
    match parts.as_slice() {
        [name] => Some((*name).to_owned()),
        [_, _, "lambda", _, _, "function", name, ..] => Some((*name).to_owned()),
        _ => None,
    }
}

/// Whether a value found in a field names a resource of this type: an ARN of another kind
/// (a tagged snapshot, a listener) does not.
fn names_a(resource_type: ResourceType, value: &str) -> bool {
    if !value.starts_with("arn:") {
        return !value.is_empty();
    }
    match resource_type {
        ResourceType::Databases => value.contains(":db:"),
        ResourceType::LoadBalancers => {
            value.contains(":loadbalancer/") || value.contains(":targetgroup/")
        }
        _ => false,
    }
}

/// Who made the call a CloudTrail event's `detail` records; `None` without a `userIdentity`.
pub fn actor_of(detail: &Value) -> Option<Actor> {
    let identity = detail.get("userIdentity")?;
    let principal_type = identity.get("type")?.as_str()?.to_owned();
    let principal_arn = ["arn", "invokedBy"]
        .iter()
        .find_map(|key| identity.get(*key).and_then(Value::as_str))
        .map(str::to_owned);
    let event_time = detail
        .get("eventTime")
        .and_then(Value::as_str)
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc));
    Some(Actor {
        principal_type,
        principal_arn,
        event_time,
    })
}

/// What an event is called in a change's history: the call's `eventName`, or the kind of
/// notification and the state it reports.
pub fn event_name(detail_type: &str, detail: &Value) -> String {
    match detail_type {
        INSTANCE_STATE_CHANGE => {
            let state = detail
                .get("state")
                .and_then(Value::as_str)
                .unwrap_or("unknown");
            format!("{INSTANCE_STATE_CHANGE}: {state}")
        }
        _ => detail
            .get("eventName")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
    }
}

/// The resources an event names, grouped by type. Empty when it names none we crawl, is of a
/// call not forwarded, or records a call that failed (a refused call changed nothing).
pub fn named_resources(source: &str, detail_type: &str, detail: &Value) -> Vec<Named> {
    match detail_type {
        INSTANCE_STATE_CHANGE => grouped(
            field(detail, &["instance-id"])
                .filter(|id| ec2_id(id) == Some(ResourceType::Instances))
                .map(|id| (ResourceType::Instances, id)),
        ),
        API_CALL => named_by_call(source, detail),
        _ => Vec::new(),
    }
}

fn named_by_call(source: &str, detail: &Value) -> Vec<Named> {
    if detail.get("errorCode").is_some_and(|c| !c.is_null()) {
        return Vec::new();
    }
    let name = detail
        .get("eventName")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let Some(event) = refresh_event(source, name) else {
        return Vec::new();
    };
    let parts = ["requestParameters", "responseElements"].map(|part| detail.get(part));
    let mut found = Vec::new();
    match event.naming {
        Naming::Ec2Ids(types) => {
            parts
                .iter()
                .flatten()
                .for_each(|part| strings(part, &mut found));
            grouped(found.into_iter().filter_map(|text| {
                let resource_type = ec2_id(text)?;
                types
                    .contains(&resource_type)
                    .then(|| (resource_type, text.to_owned()))
            }))
        }
        Naming::Fields(resource_type, keys) => {
            parts
                .iter()
                .flatten()
                .for_each(|part| strings_under(part, keys, &mut found));
            grouped(
                found
                    .into_iter()
                    .filter(|value| names_a(resource_type, value))
                    .map(|value| (resource_type, value.to_owned())),
            )
        }
        Naming::Function => {
            parts
                .iter()
                .flatten()
                .for_each(|part| strings_under(part, &["functionName", "resource"], &mut found));
            grouped(
                found
                    .into_iter()
                    .filter_map(function_name)
                    .map(|name| (ResourceType::Functions, name)),
            )
        }
        Naming::Distribution => {
            let ids = [
                field(detail, &["requestParameters", "id"]),
                field(detail, &["requestParameters", "resource"])
                    .filter(|arn| arn.contains(":distribution/")),
                field(detail, &["responseElements", "distribution", "id"]),
            ];
            grouped(
                ids.into_iter()
                    .flatten()
                    .map(|id| (ResourceType::Distributions, id)),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn named(source: &str, detail: Value) -> Vec<Named> {
        named_resources(source, API_CALL, &detail)
    }

    fn of(resource_type: ResourceType, ids: &[&str]) -> Named {
        Named {
            resource_type,
            ids: ids.iter().map(|id| (*id).to_owned()).collect(),
        }
    }

    #[test]
    fn the_actor_is_whoever_cloudtrail_says_made_the_call() {
        // Issue 15, finding 7: event-driven history kept the event, not who made it.
        let assumed = json!({
            "eventTime": "2026-11-22T12:00:00Z",
            "userIdentity": {"type": "AssumedRole", "arn": "arn:aws:sts::222222222222:assumed-role/Deployer/ci"}
        });
        assert_eq!(
            actor_of(&assumed),
            Some(Actor {
                principal_type: "AssumedRole".into(),
                principal_arn: Some("arn:aws:sts::222222222222:assumed-role/Deployer/ci".into()),
                event_time: Some(
                    DateTime::parse_from_rfc3339("2026-11-22T12:00:00Z")
                        .unwrap()
                        .with_timezone(&Utc)
                ),
            })
        );
        let service = json!({"userIdentity": {"type": "AWSService", "invokedBy": "autoscaling.amazonaws.com"}});
        let actor = actor_of(&service).unwrap();
        assert_eq!(
            actor.principal_arn.as_deref(),
            Some("autoscaling.amazonaws.com")
        );
        assert_eq!(actor.event_time, None);
        assert_eq!(actor_of(&json!({"eventName": "RunInstances"})), None);
    }

    #[test]
    fn create_tags_names_each_resource_by_its_type_and_a_tag_value_names_nothing() {
        let detail = json!({
            "eventName": "CreateTags",
            "requestParameters": {
                "resourcesSet": {"items": [
                    {"resourceId": "i-0abc1234def567890"}, {"resourceId": "vol-0123abcd"},
                    {"resourceId": "i-0def1234abc567890"}, {"resourceId": "eipalloc-0123abcd"}
                ]},
                "tagSet": {"items": [{"key": "network", "value": "vpc-main"}]}
            }
        });
        assert_eq!(
            named("aws.ec2", detail),
            vec![
                of(
                    ResourceType::Instances,
                    &["i-0abc1234def567890", "i-0def1234abc567890"]
                ),
                of(ResourceType::Volumes, &["vol-0123abcd"]),
            ]
        );
    }

    #[test]
    fn run_instances_names_the_instances_it_started_not_their_image_or_subnet() {
        let detail = json!({
            "eventName": "RunInstances",
            "requestParameters": {"instancesSet": {"items": [{"imageId": "ami-0123456789abcdef0"}]},
                                  "subnetId": "subnet-0123abcd"},
            "responseElements": {"instancesSet": {"items": [{"instanceId": "i-0123456789abcdef0"}]}}
        });
        assert_eq!(
            named("aws.ec2", detail),
            [of(ResourceType::Instances, &["i-0123456789abcdef0"])]
        );
        let refused = json!({"eventName": "RunInstances", "errorCode": "UnauthorizedOperation",
            "requestParameters": {"instancesSet": {"items": [{"instanceId": "i-0123456789abcdef0"}]}}});
        assert!(named("aws.ec2", refused).is_empty());
    }

    #[test]
    fn a_call_recorded_inside_a_request_wrapper_is_read_all_the_same() {
        // CloudTrail records the newer EC2 calls under `<Call>Request`, in PascalCase.
        let detail = json!({
            "eventName": "ModifyVolume",
            "requestParameters": {"ModifyVolumeRequest": {"VolumeId": "vol-0abcdef1234567890", "Size": 200}},
            "responseElements": {"ModifyVolumeResponse": {"volumeModification": {"volumeId": "vol-0abcdef1234567890"}}}
        });
        assert_eq!(
            named("aws.ec2", detail),
            [of(ResourceType::Volumes, &["vol-0abcdef1234567890"])]
        );
    }

    #[test]
    fn a_copy_names_the_copy_not_the_image_it_was_copied_from() {
        // Review of finding 9: a public AMI copied into the account would have been recorded
        // as the account's own, then found gone by the sweeps.
        let detail = json!({
            "eventName": "CopyImage",
            "requestParameters": {"sourceImageId": "ami-0123456789abcdef0", "sourceRegion": "us-east-1"},
            "responseElements": {"imageId": "ami-0fedcba9876543210"}
        });
        assert_eq!(
            named("aws.ec2", detail),
            [of(ResourceType::Images, &["ami-0fedcba9876543210"])]
        );
        let detail = json!({
            "eventName": "CopySnapshot",
            "requestParameters": {"CopySnapshotRequest": {"SourceSnapshotId": "snap-0123456789abcdef0"}},
            "responseElements": {"CopySnapshotResponse": {"snapshotId": "snap-0fedcba9876543210"}}
        });
        assert_eq!(
            named("aws.ec2", detail),
            [of(ResourceType::Snapshots, &["snap-0fedcba9876543210"])]
        );
    }

    #[test]
    fn a_call_of_another_service_or_not_forwarded_names_nothing() {
        let detail =
            json!({"eventName": "CreateBucket", "requestParameters": {"bucketName": "logs"}});
        assert_eq!(
            named("aws.s3", detail.clone()),
            [of(ResourceType::Buckets, &["logs"])]
        );
        assert!(named("aws.ec2", detail).is_empty());
        let described = json!({"eventName": "DescribeInstances",
            "requestParameters": {"instancesSet": {"items": [{"instanceId": "i-0123456789abcdef0"}]}}});
        assert!(named("aws.ec2", described).is_empty());
    }

    #[test]
    fn versioned_calls_are_known_whatever_their_api_version() {
        for name in [
            "CreateFunction20150331",
            "UpdateFunctionConfiguration20150331v2",
            "TagResource20170331v2",
        ] {
            assert_eq!(
                refresh_event("aws.lambda", name).map(|e| e.naming),
                Some(Naming::Function),
                "{name}"
            );
        }
        for name in ["UpdateDistribution", "UpdateDistribution2020_05_31"] {
            assert!(refresh_event("aws.cloudfront", name).is_some(), "{name}");
        }
        // A longer name that begins with a forwarded one is another call.
        assert_eq!(
            refresh_event("aws.cloudfront", "UpdateDistributionWithStagingConfig"),
            None
        );
        assert_eq!(refresh_event("aws.ec2", "CreateTagsNow"), None);
    }

    #[test]
    fn functions_are_named_by_name_even_when_the_event_gives_an_arn() {
        let detail = json!({
            "eventName": "DeleteFunction20150331",
            "requestParameters": {"functionName": "arn:aws:lambda:eu-west-1:111111111111:function:api:live"}
        });
        assert_eq!(named("aws.lambda", detail)[0].ids, ["api"]);
        let tagged = json!({
            "eventName": "TagResource20170331v2",
            "requestParameters": {"resource": "arn:aws:lambda:eu-west-1:111111111111:function:worker",
                                  "tags": {"team": "payments"}}
        });
        assert_eq!(named("aws.lambda", tagged)[0].ids, ["worker"]);
    }

    #[test]
    fn tags_on_a_database_name_it_and_tags_on_its_snapshot_name_nothing() {
        let tagged = |arn: &str| json!({"eventName": "AddTagsToResource", "requestParameters": {"resourceName": arn}});
        assert_eq!(
            named(
                "aws.rds",
                tagged("arn:aws:rds:eu-west-1:111111111111:db:orders")
            ),
            [of(
                ResourceType::Databases,
                &["arn:aws:rds:eu-west-1:111111111111:db:orders"]
            )]
        );
        assert!(
            named(
                "aws.rds",
                tagged("arn:aws:rds:eu-west-1:111111111111:snapshot:orders-nightly")
            )
            .is_empty()
        );
    }

    #[test]
    fn balancer_tags_name_balancers_and_target_groups_not_listeners() {
        let balancer = "arn:aws:elasticloadbalancing:eu-west-1:111111111111:loadbalancer/app/web/50dc6c495c0c9188";
        let group =
            "arn:aws:elasticloadbalancing:eu-west-1:111111111111:targetgroup/web/73e2d6bc24d8a067";
        let listener = "arn:aws:elasticloadbalancing:eu-west-1:111111111111:listener/app/web/50dc6c495c0c9188/f2f7dc8efc522ab2";
        let detail = json!({"eventName": "AddTags",
            "requestParameters": {"resourceArns": [balancer, group, listener]}});
        assert_eq!(
            named("aws.elasticloadbalancing", detail),
            [of(ResourceType::LoadBalancers, &[balancer, group])]
        );
    }

    #[test]
    fn a_created_distribution_is_named_by_its_id_not_its_origins() {
        let detail = json!({"eventName": "CreateDistribution2020_05_31",
            "requestParameters": {"distributionConfig": {"origins": {"items": [{"id": "assets-origin"}]}}},
            "responseElements": {"distribution": {"id": "E2QWRUHAPOMQZL",
                "distributionConfig": {"origins": {"items": [{"id": "assets-origin"}]}}}}});
        assert_eq!(
            named("aws.cloudfront", detail),
            [of(ResourceType::Distributions, &["E2QWRUHAPOMQZL"])]
        );
    }

    #[test]
    fn an_instance_state_change_names_its_instance() {
        let detail = json!({"instance-id": "i-1234567890abcdef0", "state": "stopped"});
        assert_eq!(
            named_resources("aws.ec2", INSTANCE_STATE_CHANGE, &detail),
            [of(ResourceType::Instances, &["i-1234567890abcdef0"])]
        );
        assert_eq!(
            event_name(INSTANCE_STATE_CHANGE, &detail),
            "EC2 Instance State-change Notification: stopped"
        );
        assert!(named_resources("aws.ec2", "EBS Volume Notification", &detail).is_empty());
    }

    #[test]
    fn every_forwarded_call_is_named_once() {
        for (source, calls) in REFRESH_EVENTS {
            for (at, event) in calls.iter().enumerate() {
                assert!(
                    !calls[at + 1..].iter().any(|other| other.name == event.name),
                    "{source} {} is listed twice",
                    event.name
                );
                let recorded = if event.versioned {
                    format!("{}20150331", event.name)
                } else {
                    event.name.to_owned()
                };
                assert_eq!(refresh_event(source, &recorded), Some(event));
            }
        }
    }
}
