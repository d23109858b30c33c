//! CloudTrail events that name crawled resources: which resources to describe again.
//!
//! Each event is read for the provider ids it names (in its request or its response); the
//! resource is then described afresh and written through the same diff as a crawl. An event
//! never makes anything gone: a resource not found on describe waits for the crawls to
//! conclude, as absence from one call proves little.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::connection::ResourceType;
use super::crawl::{Actor, Named};

/// The events the EventBridge rule forwards, by the service that emits them.
pub const REFRESH_EVENTS: &[(&str, &[&str])] = &[
    (
        "ec2.amazonaws.com",
        &[
            "RunInstances",
            "TerminateInstances",
            "StartInstances",
            "StopInstances",
            "ModifyInstanceAttribute",
            "CreateTags",
            "DeleteTags",
            "CreateVolume",
            "DeleteVolume",
            "AttachVolume",
            "DetachVolume",
            "CreateSecurityGroup",
            "DeleteSecurityGroup",
            "AuthorizeSecurityGroupIngress",
            "RevokeSecurityGroupIngress",
        ],
    ),
    (
        "s3.amazonaws.com",
        &[
            "CreateBucket",
            "DeleteBucket",
            "PutBucketTagging",
            "DeleteBucketTagging",
        ],
    ),
    (
        "rds.amazonaws.com",
        &["CreateDBInstance", "DeleteDBInstance", "ModifyDBInstance"],
    ),
    (
        "elasticloadbalancing.amazonaws.com",
        &[
            "CreateLoadBalancer",
            "DeleteLoadBalancer",
            "RegisterTargets",
            "DeregisterTargets",
        ],
    ),
    (
        "lambda.amazonaws.com",
        &[
            "CreateFunction20150331",
            "DeleteFunction20150331",
            "UpdateFunctionConfiguration20150331v2",
        ],
    ),
];

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

fn items(set: Option<&Value>, field: &str) -> Vec<String> {
    set.and_then(|s| s.get("items"))
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(|i| i.get(field).and_then(Value::as_str).map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

fn field(detail: &Value, path: &[&str]) -> Option<String> {
    let mut at = detail;
    for step in path {
        at = at.get(*step)?;
    }
    at.as_str().map(String::from)
}

fn named(resource_type: ResourceType, ids: Vec<String>) -> Vec<Named> {
    if ids.is_empty() {
        Vec::new()
    } else {
        vec![Named { resource_type, ids }]
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

/// The resources a CloudTrail event's `detail` names, grouped by type. Empty when the event
/// names none we crawl (or failed: a refused call changed nothing).
pub fn named_resources(detail: &Value) -> Vec<Named> {
    if detail.get("errorCode").is_some_and(|c| !c.is_null()) {
        return Vec::new();
    }
    let name = detail
        .get("eventName")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let request = detail.get("requestParameters");
    let response = detail.get("responseElements");
    let at = |path: &[&str]| field(detail, path);
    match name {
        "RunInstances" => named(
            ResourceType::Instances,
            items(response.and_then(|r| r.get("instancesSet")), "instanceId"),
        ),
        "TerminateInstances" | "StartInstances" | "StopInstances" => named(
            ResourceType::Instances,
            items(request.and_then(|r| r.get("instancesSet")), "instanceId"),
        ),
        "ModifyInstanceAttribute" => named(
            ResourceType::Instances,
            at(&["requestParameters", "instanceId"])
                .into_iter()
                .collect(),
        ),
        "CreateTags" | "DeleteTags" => {
            let ids = items(request.and_then(|r| r.get("resourcesSet")), "resourceId");
            let mut grouped: Vec<Named> = Vec::new();
            for id in ids {
                let Some(resource_type) = ec2_type_of(&id) else {
                    continue;
                };
                match grouped
                    .iter_mut()
                    .find(|n| n.resource_type == resource_type)
                {
                    Some(group) => group.ids.push(id),
                    None => grouped.push(Named {
                        resource_type,
                        ids: vec![id],
                    }),
                }
            }
            grouped
        }
        "CreateVolume" => named(
            ResourceType::Volumes,
            at(&["responseElements", "volumeId"]).into_iter().collect(),
        ),
        "DeleteVolume" | "AttachVolume" | "DetachVolume" => named(
            ResourceType::Volumes,
            at(&["requestParameters", "volumeId"]).into_iter().collect(),
        ),
        "CreateSecurityGroup" => named(
            ResourceType::SecurityGroups,
            at(&["responseElements", "groupId"]).into_iter().collect(),
        ),
        "DeleteSecurityGroup" | "AuthorizeSecurityGroupIngress" | "RevokeSecurityGroupIngress" => {
            named(
                ResourceType::SecurityGroups,
                at(&["requestParameters", "groupId"]).into_iter().collect(),
            )
        }
        "CreateBucket" | "DeleteBucket" | "PutBucketTagging" | "DeleteBucketTagging" => named(
            ResourceType::Buckets,
            at(&["requestParameters", "bucketName"])
                .into_iter()
                .collect(),
        ),
        "CreateDBInstance" | "DeleteDBInstance" | "ModifyDBInstance" => named(
            ResourceType::Databases,
            at(&["requestParameters", "dBInstanceIdentifier"])
                .into_iter()
                .collect(),
        ),
        "CreateLoadBalancer" => {
            // Classic names the balancer in the request; ELBv2 answers its ARN.
            let mut ids: Vec<String> = response
                .and_then(|r| r.get("loadBalancers"))
                .and_then(Value::as_array)
                .map(|lbs| {
                    lbs.iter()
                        .filter_map(|lb| lb.get("loadBalancerArn").and_then(Value::as_str))
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default();
            if ids.is_empty() {
                ids.extend(at(&["requestParameters", "loadBalancerName"]));
            }
            named(ResourceType::LoadBalancers, ids)
        }
        "DeleteLoadBalancer" => named(
            ResourceType::LoadBalancers,
            at(&["requestParameters", "loadBalancerArn"])
                .or_else(|| at(&["requestParameters", "loadBalancerName"]))
                .into_iter()
                .collect(),
        ),
        "RegisterTargets" | "DeregisterTargets" => named(
            ResourceType::LoadBalancers,
            at(&["requestParameters", "targetGroupArn"])
                .into_iter()
                .collect(),
        ),
        "CreateFunction20150331"
        | "DeleteFunction20150331"
        | "UpdateFunctionConfiguration20150331v2" => named(
            ResourceType::Functions,
            at(&["requestParameters", "functionName"])
                .map(|f| match f.split(':').collect::<Vec<_>>().as_slice() {
                    // arn:aws:lambda:region:account:function:name[:qualifier]
                    [_, _, _, _, _, "function", name, ..] => (*name).to_owned(),
                    _ => f,
                })
                .into_iter()
                .collect(),
        ),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

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
    fn create_tags_names_each_resource_by_its_type() {
        let detail = json!({
            "eventName": "CreateTags",
            "requestParameters": {"resourcesSet": {"items": [
                {"resourceId": "i-0abc"}, {"resourceId": "vol-1"}, {"resourceId": "i-0def"},
                {"resourceId": "eipalloc-9"}
            ]}}
        });
        assert_eq!(
            named_resources(&detail),
            vec![
                Named {
                    resource_type: ResourceType::Instances,
                    ids: vec!["i-0abc".into(), "i-0def".into()]
                },
                Named {
                    resource_type: ResourceType::Volumes,
                    ids: vec!["vol-1".into()]
                },
            ]
        );
    }

    #[test]
    fn run_instances_reads_the_response_and_failed_calls_name_nothing() {
        let detail = json!({
            "eventName": "RunInstances",
            "responseElements": {"instancesSet": {"items": [{"instanceId": "i-1"}]}}
        });
        assert_eq!(named_resources(&detail)[0].ids, ["i-1"]);
        let refused = json!({"eventName": "RunInstances", "errorCode": "UnauthorizedOperation"});
        assert!(named_resources(&refused).is_empty());
    }

    #[test]
    fn functions_are_named_by_name_even_when_the_event_gives_an_arn() {
        let detail = json!({
            "eventName": "DeleteFunction20150331",
            "requestParameters": {"functionName": "arn:aws:lambda:eu-west-1:111111111111:function:api:live"}
        });
        assert_eq!(named_resources(&detail)[0].ids, ["api"]);
    }
}
