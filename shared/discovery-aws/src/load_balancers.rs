//! Load balancers, three calls in turn: classic ELBs (step 0), ELBv2 load balancers (step 1)
//! and ELBv2 target groups (step 2), each paged with `Marker`. Tags need their own
//! `DescribeTags`, at most 20 resources a call; what an ELBv2 load balancer sends traffic to
//! needs its target groups (one listing of the region's serves a page of balancers) and their
//! targets' health (one group a call, a few calls at once).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;

use aws_sdk_elasticloadbalancingv2::error::{ProvideErrorMetadata, SdkError};

use aws_sdk_elasticloadbalancing as elb;
use aws_sdk_elasticloadbalancingv2 as elbv2;
use elbv2::types::{LoadBalancerTypeEnum, TargetTypeEnum};
use maestro_domain::inventory::connection::ResourceType;
use maestro_domain::inventory::crawl::ProviderError;
use maestro_domain::inventory::entity::{
    self as domain, BalancerKind, Described, Details, Entity, Relation, RelationKind, ids,
};

use crate::errors::{code, is_absent, provider_error, unless_gone};
use crate::{Ctx, Listed, by_ids, present, tags, time, token, unknown_step};

pub(crate) const STEPS: u16 = 3;

/// DescribeTags takes at most this many names or ARNs.
const TAGS_PER_CALL: usize = 20;

type Tags = BTreeMap<String, String>;

pub(crate) async fn page(
    ctx: &Ctx<'_>,
    step: u16,
    marker: Option<String>,
) -> Result<Listed, ProviderError> {
    match step {
        0 => {
            let client = elb::Client::new(&ctx.config);
            let out = client
                .describe_load_balancers()
                .page_size(ctx.page_size(1, 400))
                .set_marker(marker)
                .send()
                .await
                .map_err(|e| provider_error("elasticloadbalancing:DescribeLoadBalancers", e))?;
            let entities =
                classic_balancers(ctx, &client, out.load_balancer_descriptions()).await?;
            Ok(Listed::new(entities, out.next_marker()))
        }
        1 => {
            let client = elbv2::Client::new(&ctx.config);
            let out = client
                .describe_load_balancers()
                .page_size(ctx.page_size(1, 400))
                .set_marker(marker)
                .send()
                .await
                .map_err(|e| {
                    provider_error("elasticloadbalancing:DescribeLoadBalancers (v2)", e)
                })?;
            let entities = balancers(ctx, &client, out.load_balancers()).await?;
            Ok(Listed::new(entities, out.next_marker()))
        }
        2 => {
            let client = elbv2::Client::new(&ctx.config);
            let out = client
                .describe_target_groups()
                .page_size(ctx.page_size(1, 400))
                .set_marker(marker)
                .send()
                .await
                .map_err(|e| provider_error("elasticloadbalancing:DescribeTargetGroups", e))?;
            let entities = target_groups(ctx, &client, out.target_groups()).await?;
            Ok(Listed::new(entities, out.next_marker()))
        }
        _ => Err(unknown_step(ResourceType::LoadBalancers, step)),
    }
}

/// What an event names: a load balancer's name (classic or v2, which an event about a name
/// alone cannot tell), a v2 load balancer's or target group's ARN, or a classic one's ARN as
/// [`ids::classic_load_balancer`] writes it.
enum Name<'a> {
    Either(&'a str),
    Classic(&'a str),
    BalancerArn(&'a str),
    TargetGroupArn(&'a str),
}

fn name(id: &str) -> Name<'_> {
    // arn:<partition>:elasticloadbalancing:<region>:<account>:<resource>
    let Some(resource) = id
        .strip_prefix("arn:")
        .and_then(|a| a.splitn(5, ':').nth(4))
    else {
        return Name::Either(id);
    };
    if resource.starts_with("targetgroup/") {
        Name::TargetGroupArn(id)
    } else if let Some(rest) = resource.strip_prefix("loadbalancer/") {
        if ["app/", "net/", "gwy/"].iter().any(|k| rest.starts_with(k)) {
            Name::BalancerArn(id)
        } else {
            Name::Classic(rest)
        }
    } else {
        Name::Either(id)
    }
}

pub(crate) async fn describe(ctx: &Ctx<'_>, ids: &[String]) -> Result<Vec<Entity>, ProviderError> {
    let (mut classic, mut v2_names, mut v2_arns, mut group_arns) = (vec![], vec![], vec![], vec![]);
    for id in ids {
        match name(id) {
            Name::Either(n) => {
                classic.push(n.to_owned());
                v2_names.push(n.to_owned());
            }
            Name::Classic(n) => classic.push(n.to_owned()),
            Name::BalancerArn(a) => v2_arns.push(a.to_owned()),
            Name::TargetGroupArn(a) => group_arns.push(a.to_owned()),
        }
    }
    let mut found = Vec::new();
    if !classic.is_empty() {
        let client = elb::Client::new(&ctx.config);
        let descriptions = by_ids(
            &classic,
            "elasticloadbalancing:DescribeLoadBalancers",
            |names| {
                client
                    .describe_load_balancers()
                    .set_load_balancer_names(Some(names))
                    .send()
            },
            |out| out.load_balancer_descriptions().to_vec(),
        )
        .await?;
        found.extend(classic_balancers(ctx, &client, &descriptions).await?);
    }
    let client = elbv2::Client::new(&ctx.config);
    let mut v2 = Vec::new();
    for names in v2_names.chunks(TAGS_PER_CALL) {
        v2.extend(
            by_ids(
                names,
                "elasticloadbalancing:DescribeLoadBalancers (v2)",
                |names| {
                    client
                        .describe_load_balancers()
                        .set_names(Some(names))
                        .send()
                },
                |out| out.load_balancers().to_vec(),
            )
            .await?,
        );
    }
    for arns in v2_arns.chunks(TAGS_PER_CALL) {
        v2.extend(
            by_ids(
                arns,
                "elasticloadbalancing:DescribeLoadBalancers (v2)",
                |arns| {
                    client
                        .describe_load_balancers()
                        .set_load_balancer_arns(Some(arns))
                        .send()
                },
                |out| out.load_balancers().to_vec(),
            )
            .await?,
        );
    }
    // A record may name one balancer twice, by its name and by its ARN (CreateLoadBalancer's
    // response has both): it is described once.
    let mut described = HashSet::new();
    v2.retain(|b| {
        b.load_balancer_arn()
            .is_none_or(|arn| described.insert(arn.to_owned()))
    });
    found.extend(balancers(ctx, &client, &v2).await?);
    let groups = by_ids(
        &group_arns,
        "elasticloadbalancing:DescribeTargetGroups",
        |arns| {
            client
                .describe_target_groups()
                .set_target_group_arns(Some(arns))
                .send()
        },
        |out| out.target_groups().to_vec(),
    )
    .await?;
    found.extend(target_groups(ctx, &client, &groups).await?);
    Ok(found)
}

async fn classic_balancers(
    ctx: &Ctx<'_>,
    client: &elb::Client,
    descriptions: &[elb::types::LoadBalancerDescription],
) -> Result<Vec<Entity>, ProviderError> {
    let names: Vec<String> = descriptions
        .iter()
        .filter_map(|d| present(d.load_balancer_name()))
        .collect();
    let (answers, gone) = in_batches("elasticloadbalancing:DescribeTags", names, |names| {
        client
            .describe_tags()
            .set_load_balancer_names(Some(names))
            .send()
    })
    .await?;
    let mut tagged: HashMap<String, Tags> = HashMap::new();
    for out in answers {
        for description in out.tag_descriptions() {
            if let Some(name) = description.load_balancer_name() {
                tagged.insert(
                    name.to_owned(),
                    tags(
                        description
                            .tags()
                            .iter()
                            .map(|t| (Some(t.key()), t.value())),
                    ),
                );
            }
        }
    }
    Ok(descriptions
        .iter()
        .filter(|d| {
            d.load_balancer_name()
                .is_none_or(|name| !gone.contains(name))
        })
        .filter_map(|d| classic_balancer(ctx, d, &mut tagged))
        .collect())
}

fn classic_balancer(
    ctx: &Ctx<'_>,
    description: &elb::types::LoadBalancerDescription,
    tagged: &mut HashMap<String, Tags>,
) -> Option<Entity> {
    let name = description.load_balancer_name()?;
    let instance_ids: Vec<String> = description
        .instances()
        .iter()
        .filter_map(|i| present(i.instance_id()))
        .collect();
    let subnet_ids = description.subnets().to_vec();
    let security_group_ids = description.security_groups().to_vec();
    let vpc_id = present(description.vpc_id());
    let relations = relations(
        ctx,
        &instance_ids,
        &subnet_ids,
        &security_group_ids,
        vpc_id.as_deref(),
    );
    Some(ctx.entity(Described {
        id: ids::classic_load_balancer(ctx.region(), ctx.account(), name),
        provider_type: "AWS::ElasticLoadBalancing::LoadBalancer",
        zone: None,
        tags: tagged.remove(name).unwrap_or_default(),
        status: None,
        active: true,
        created_at: time(description.created_time()),
        details: Details::LoadBalancer(domain::LoadBalancer {
            name: name.to_owned(),
            balancer_type: BalancerKind::Classic,
            dns_name: present(description.dns_name()),
            scheme: present(description.scheme()),
            vpc_id,
            subnet_ids,
            security_group_ids,
            target_instance_ids: instance_ids,
        }),
        relations,
    }))
}

fn relations(
    ctx: &Ctx<'_>,
    instances: &[String],
    subnets: &[String],
    security_groups: &[String],
    vpc: Option<&str>,
) -> Vec<Relation> {
    let mut relations: Vec<Relation> = instances
        .iter()
        .map(|i| ctx.ec2_relation(RelationKind::Target, "instance", i))
        .collect();
    relations.extend(ctx.vpc_relations(subnets, security_groups, vpc));
    relations
}

/// Asks `call` about each batch of at most [`TAGS_PER_CALL`] names or ARNs. A batch answered
/// NotFound (one of them was deleted since the listing) is asked again one by one, and those
/// still NotFound are answered as gone.
async fn in_batches<T, E, R, F, Fut>(
    call_name: &'static str,
    names: Vec<String>,
    call: F,
) -> Result<(Vec<T>, HashSet<String>), ProviderError>
where
    F: Fn(Vec<String>) -> Fut,
    Fut: Future<Output = Result<T, SdkError<E, R>>>,
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    let mut answers = Vec::new();
    let mut gone = HashSet::new();
    let mut batches: Vec<Vec<String>> = names.chunks(TAGS_PER_CALL).map(<[_]>::to_vec).collect();
    while let Some(batch) = batches.pop() {
        match call(batch.clone()).await {
            Ok(out) => answers.push(out),
            Err(error) if is_absent(&error) && batch.len() > 1 => {
                batches.extend(batch.into_iter().map(|name| vec![name]));
            }
            Err(error) if is_absent(&error) => gone.extend(batch),
            Err(error) => return Err(provider_error(call_name, error)),
        }
    }
    Ok((answers, gone))
}

/// The tags of ELBv2 resources, by ARN, and the resources deleted since they were listed.
struct V2Tags {
    tagged: HashMap<String, Tags>,
    gone: HashSet<String>,
}

/// The tags of each resource by ARN; `arns` as the list answered them, a missing one skipped.
async fn v2_tags<'a>(
    client: &elbv2::Client,
    arns: impl Iterator<Item = Option<&'a str>>,
) -> Result<V2Tags, ProviderError> {
    let arns: Vec<String> = arns.filter_map(present).collect();
    let (answers, gone) = in_batches("elasticloadbalancing:DescribeTags", arns, |arns| {
        client.describe_tags().set_resource_arns(Some(arns)).send()
    })
    .await?;
    let mut tagged = HashMap::new();
    for out in answers {
        for description in out.tag_descriptions() {
            if let Some(arn) = description.resource_arn() {
                tagged.insert(
                    arn.to_owned(),
                    tags(description.tags().iter().map(|t| (t.key(), t.value()))),
                );
            }
        }
    }
    Ok(V2Tags { tagged, gone })
}

/// The targets registered in a target group, whatever their health; none when the group was
/// deleted since it was listed.
async fn targets(
    client: &elbv2::Client,
    group_arn: &str,
) -> Result<Option<Vec<domain::Target>>, ProviderError> {
    let out = client
        .describe_target_health()
        .target_group_arn(group_arn)
        .send()
        .await;
    let Some(out) = unless_gone("elasticloadbalancing:DescribeTargetHealth", out)? else {
        return Ok(None);
    };
    Ok(Some(
        out.target_health_descriptions()
            .iter()
            .filter_map(|d| {
                let target = d.target()?;
                Some(domain::Target {
                    id: target.id()?.to_owned(),
                    port: target.port(),
                    health: d
                        .target_health()
                        .and_then(|h| h.state())
                        .map(|s| s.as_str().to_owned()),
                })
            })
            .collect(),
    ))
}

/// Every target group of one load balancer; rarely more than a page, but followed to the end.
/// None when the load balancer was deleted since it was listed.
async fn groups_of(
    client: &elbv2::Client,
    balancer_arn: &str,
) -> Result<Option<Vec<elbv2::types::TargetGroup>>, ProviderError> {
    let mut groups = Vec::new();
    let mut marker = None;
    loop {
        let out = client
            .describe_target_groups()
            .load_balancer_arn(balancer_arn)
            .set_marker(marker)
            .send()
            .await;
        let out = match out {
            Ok(out) => out,
            Err(error) if code(&error) == Some("LoadBalancerNotFound") => return Ok(None),
            // Its groups went between two pages, or it has none: some endpoints answer so
            // rather than with an empty list.
            Err(error) if code(&error) == Some("TargetGroupNotFound") => return Ok(Some(groups)),
            Err(error) => {
                return Err(provider_error(
                    "elasticloadbalancing:DescribeTargetGroups",
                    error,
                ));
            }
        };
        groups.extend(out.target_groups().iter().cloned());
        marker = token(out.next_marker());
        if marker.is_none() {
            return Ok(Some(groups));
        }
    }
}

/// The region's target groups by the load balancers each serves: one listing, a page of 400
/// groups a call, rather than a call per balancer.
async fn groups_by_balancer(
    client: &elbv2::Client,
) -> Result<HashMap<String, Vec<elbv2::types::TargetGroup>>, ProviderError> {
    let mut by_balancer: HashMap<String, Vec<elbv2::types::TargetGroup>> = HashMap::new();
    let mut marker = None;
    loop {
        let out = client
            .describe_target_groups()
            .page_size(400)
            .set_marker(marker)
            .send()
            .await
            .map_err(|e| provider_error("elasticloadbalancing:DescribeTargetGroups", e))?;
        for group in out.target_groups() {
            for balancer in group.load_balancer_arns() {
                by_balancer
                    .entry(balancer.clone())
                    .or_default()
                    .push(group.clone());
            }
        }
        marker = token(out.next_marker());
        if marker.is_none() {
            return Ok(by_balancer);
        }
    }
}

/// DescribeTargetHealth calls in flight at once: it takes one target group a call.
const HEALTH_CALLS_AT_ONCE: usize = 8;

/// The targets of each group, asked [`HEALTH_CALLS_AT_ONCE`] groups at a time; none for a group
/// deleted since it was listed.
async fn targets_of(
    client: &elbv2::Client,
    group_arns: Vec<String>,
) -> Result<HashMap<String, Option<Vec<domain::Target>>>, ProviderError> {
    let mut answered = HashMap::new();
    let mut asking = tokio::task::JoinSet::new();
    let mut waiting = group_arns.into_iter();
    loop {
        while asking.len() < HEALTH_CALLS_AT_ONCE {
            let Some(arn) = waiting.next() else { break };
            let client = client.clone();
            asking.spawn(async move {
                let found = targets(&client, &arn).await;
                (arn, found)
            });
        }
        let Some(done) = asking.join_next().await else {
            return Ok(answered);
        };
        let (arn, found) = done.map_err(|e| {
            ProviderError::Failed(format!("elasticloadbalancing:DescribeTargetHealth: {e}"))
        })?;
        answered.insert(arn, found?);
    }
}

async fn balancers(
    ctx: &Ctx<'_>,
    client: &elbv2::Client,
    balancers: &[elbv2::types::LoadBalancer],
) -> Result<Vec<Entity>, ProviderError> {
    let V2Tags { mut tagged, gone } =
        v2_tags(client, balancers.iter().map(|b| b.load_balancer_arn())).await?;
    // A page of balancers reads the region's target groups once; an event about one balancer
    // asks for that balancer's only.
    let mut listed = if balancers.len() > 1 {
        Some(groups_by_balancer(client).await?)
    } else {
        None
    };
    let mut groups_of_each = Vec::new();
    for balancer in balancers {
        let (Some(arn), Some(_)) = (balancer.load_balancer_arn(), balancer.load_balancer_name())
        else {
            continue;
        };
        if gone.contains(arn) {
            continue;
        }
        let groups = match &mut listed {
            Some(by_balancer) => by_balancer.remove(arn).unwrap_or_default(),
            None => match groups_of(client, arn).await? {
                Some(groups) => groups,
                None => continue,
            },
        };
        groups_of_each.push((balancer, groups));
    }
    let instance_groups: Vec<String> = groups_of_each
        .iter()
        .flat_map(|(_, groups)| groups)
        .filter(|g| g.target_type() == Some(&TargetTypeEnum::Instance))
        .filter_map(|g| present(g.target_group_arn()))
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let targets = targets_of(client, instance_groups).await?;
    let mut entities = Vec::new();
    for (balancer, groups) in groups_of_each {
        let (Some(arn), Some(name)) = (balancer.load_balancer_arn(), balancer.load_balancer_name())
        else {
            continue;
        };
        let mut group_arns = Vec::new();
        let mut instance_ids = Vec::new();
        for group in groups {
            let Some(group_arn) = group.target_group_arn() else {
                continue;
            };
            if group.target_type() == Some(&TargetTypeEnum::Instance) {
                // A group deleted since it was listed sends the balancer's traffic nowhere.
                let found = targets
                    .get(group_arn)
                    .cloned()
                    .flatten()
                    .unwrap_or_default();
                instance_ids.extend(found.into_iter().map(|t| t.id));
            }
            group_arns.push(group_arn.to_owned());
        }
        instance_ids.sort();
        instance_ids.dedup();
        let subnet_ids: Vec<String> = balancer
            .availability_zones()
            .iter()
            .filter_map(|z| present(z.subnet_id()))
            .collect();
        let security_group_ids = balancer.security_groups().to_vec();
        let vpc_id = present(balancer.vpc_id());
        let mut relations = relations(
            ctx,
            &instance_ids,
            &subnet_ids,
            &security_group_ids,
            vpc_id.as_deref(),
        );
        relations.extend(group_arns.into_iter().map(|g| Relation {
            kind: RelationKind::TargetGroup,
            target: g,
        }));
        entities.push(
            ctx.entity(Described {
                id: arn.to_owned(),
                provider_type: "AWS::ElasticLoadBalancingV2::LoadBalancer",
                zone: None,
                tags: tagged.remove(arn).unwrap_or_default(),
                status: balancer
                    .state()
                    .and_then(|s| s.code())
                    .map(|c| c.as_str().to_owned()),
                active: true,
                created_at: time(balancer.created_time()),
                details: Details::LoadBalancer(domain::LoadBalancer {
                    name: name.to_owned(),
                    balancer_type: kind(balancer.r#type()),
                    dns_name: present(balancer.dns_name()),
                    scheme: balancer.scheme().map(|s| s.as_str().to_owned()),
                    vpc_id,
                    subnet_ids,
                    security_group_ids,
                    target_instance_ids: instance_ids,
                }),
                relations,
            }),
        );
    }
    Ok(entities)
}

/// The domain has no kind for a type AWS adds later; such a balancer is kept as an
/// application one, and said so, rather than left out (which would make it gone).
fn kind(balancer_type: Option<&LoadBalancerTypeEnum>) -> BalancerKind {
    match balancer_type {
        Some(LoadBalancerTypeEnum::Application) => BalancerKind::Application,
        Some(LoadBalancerTypeEnum::Network) => BalancerKind::Network,
        Some(LoadBalancerTypeEnum::Gateway) => BalancerKind::Gateway,
        other => {
            tracing::warn!(balancer_type = ?other, "a load balancer type the inventory does not know");
            BalancerKind::Application
        }
    }
}

async fn target_groups(
    ctx: &Ctx<'_>,
    client: &elbv2::Client,
    groups: &[elbv2::types::TargetGroup],
) -> Result<Vec<Entity>, ProviderError> {
    let V2Tags { mut tagged, gone } =
        v2_tags(client, groups.iter().map(|g| g.target_group_arn())).await?;
    let asked: Vec<String> = groups
        .iter()
        .filter_map(|g| present(g.target_group_arn()))
        .filter(|arn| !gone.contains(arn))
        .collect();
    let mut found = targets_of(client, asked).await?;
    let mut entities = Vec::new();
    for group in groups {
        let (Some(arn), Some(name)) = (group.target_group_arn(), group.target_group_name()) else {
            continue;
        };
        if gone.contains(arn) {
            continue;
        }
        let Some(targets) = found.remove(arn).flatten() else {
            continue;
        };
        let target_type = group.target_type();
        let mut relations: Vec<Relation> = targets
            .iter()
            .filter_map(|t| match target_type {
                Some(TargetTypeEnum::Instance) => {
                    Some(ctx.ec2_relation(RelationKind::Target, "instance", &t.id))
                }
                // A Lambda function's or an application load balancer's ARN is its entity's id.
                Some(TargetTypeEnum::Lambda | TargetTypeEnum::Alb) => Some(Relation {
                    kind: RelationKind::Target,
                    target: t.id.clone(),
                }),
                // IP addresses are no entity.
                _ => None,
            })
            .collect();
        let vpc_id = present(group.vpc_id());
        relations.extend(
            vpc_id
                .as_deref()
                .map(|v| ctx.ec2_relation(RelationKind::Vpc, "vpc", v)),
        );
        entities.push(ctx.entity(Described {
            id: arn.to_owned(),
            provider_type: "AWS::ElasticLoadBalancingV2::TargetGroup",
            zone: None,
            tags: tagged.remove(arn).unwrap_or_default(),
            status: None,
            active: true,
            created_at: None,
            details: Details::TargetGroup(domain::TargetGroup {
                name: name.to_owned(),
                protocol: group.protocol().map(|p| p.as_str().to_owned()),
                port: group.port(),
                target_type: target_type.map(|t| t.as_str().to_owned()),
                vpc_id,
                load_balancer_arns: group.load_balancer_arns().to_vec(),
                targets,
            }),
            relations,
        }));
    }
    Ok(entities)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_names_a_balancer_by_name_or_arn() {
        let arn = |resource: &str| {
            format!("arn:aws:elasticloadbalancing:eu-west-1:111111111111:{resource}")
        };
        assert!(matches!(name("web"), Name::Either("web")));
        assert!(matches!(
            name(&arn("loadbalancer/web")),
            Name::Classic("web")
        ));
        assert!(matches!(
            name(&arn("loadbalancer/app/web/1a2b")),
            Name::BalancerArn(_)
        ));
        assert!(matches!(
            name(&arn("loadbalancer/net/web/1a2b")),
            Name::BalancerArn(_)
        ));
        assert!(matches!(
            name(&arn("targetgroup/web/1a2b")),
            Name::TargetGroupArn(_)
        ));
    }
}
