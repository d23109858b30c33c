//! EC2 compute and storage: instances, volumes, snapshots, images, security groups. Each is
//! one `Describe*` call paged with `NextToken`; tags come in the same answer.

use aws_sdk_ec2::Client;
use aws_sdk_ec2::types::{Filter, Image, Instance, IpPermission, SecurityGroup, Snapshot, Volume};
use chrono::{DateTime, Utc};
use maestro_domain::inventory::crawl::ProviderError;
use maestro_domain::inventory::entity::{self as domain, Described, Details, Entity, RelationKind};

use crate::errors::provider_error;
use crate::{Ctx, Listed, by_ids, present, tags, time};

/// Every instance state but `terminated`: a terminated instance stays listed for about an
/// hour, and a crawl should find it gone rather than keep it as a live entity.
const LIVE_INSTANCE_STATES: [&str; 5] =
    ["pending", "running", "shutting-down", "stopping", "stopped"];

/// AWS gives snapshots made by CopySnapshot this volume id, which names no volume.
const NO_VOLUME: &str = "vol-ffffffff";

pub(crate) async fn instances(
    ctx: &Ctx<'_>,
    token: Option<String>,
) -> Result<Listed, ProviderError> {
    let out = Client::new(&ctx.config)
        .describe_instances()
        .filters(
            Filter::builder()
                .name("instance-state-name")
                .set_values(Some(LIVE_INSTANCE_STATES.map(String::from).to_vec()))
                .build(),
        )
        .max_results(ctx.page_size(5, 1000))
        .set_next_token(token)
        .send()
        .await
        .map_err(|e| provider_error("ec2:DescribeInstances", e))?;
    let entities = out
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .filter_map(|i| instance(ctx, i))
        .collect();
    Ok(Listed::new(entities, out.next_token()))
}

/// Terminated instances included: an event about one should record that it ended.
pub(crate) async fn describe_instances(
    ctx: &Ctx<'_>,
    ids: &[String],
) -> Result<Vec<Entity>, ProviderError> {
    let client = Client::new(&ctx.config);
    by_ids(
        ids,
        "ec2:DescribeInstances",
        |ids| {
            client
                .describe_instances()
                .set_instance_ids(Some(ids))
                .send()
        },
        |out| {
            out.reservations()
                .iter()
                .flat_map(|r| r.instances())
                .filter_map(|i| instance(ctx, i))
                .collect()
        },
    )
    .await
}

fn instance(ctx: &Ctx<'_>, instance: &Instance) -> Option<Entity> {
    let id = instance.instance_id()?;
    let state = instance
        .state()
        .and_then(|s| s.name())
        .map(|s| s.as_str().to_owned());
    let mut relations = Vec::new();
    for volume in instance
        .block_device_mappings()
        .iter()
        .filter_map(|m| m.ebs()?.volume_id())
    {
        relations.push(ctx.ec2_relation(RelationKind::AttachedVolume, "volume", volume));
    }
    for group in instance
        .security_groups()
        .iter()
        .filter_map(|g| g.group_id())
    {
        relations.push(ctx.ec2_relation(RelationKind::SecurityGroup, "security-group", group));
    }
    if let Some(subnet) = present(instance.subnet_id()) {
        relations.push(ctx.ec2_relation(RelationKind::Subnet, "subnet", &subnet));
    }
    if let Some(vpc) = present(instance.vpc_id()) {
        relations.push(ctx.ec2_relation(RelationKind::Vpc, "vpc", &vpc));
    }
    if let Some(image) = present(instance.image_id()) {
        relations.push(ctx.ec2_relation(RelationKind::Image, "image", &image));
    }
    Some(
        ctx.entity(Described {
            id: ctx.ec2_id("instance", id),
            provider_type: "AWS::EC2::Instance",
            zone: instance
                .placement()
                .and_then(|p| present(p.availability_zone())),
            tags: tags(instance.tags().iter().map(|t| (t.key(), t.value()))),
            active: state.as_deref() != Some("terminated"),
            status: state,
            created_at: time(instance.launch_time()),
            details: Details::Server(domain::Server {
                instance_id: id.to_owned(),
                instance_type: instance.instance_type().map(|t| t.as_str().to_owned()),
                image_id: present(instance.image_id()),
                vpc_id: present(instance.vpc_id()),
                subnet_id: present(instance.subnet_id()),
                private_ip: present(instance.private_ip_address()),
                public_ip: present(instance.public_ip_address()),
                key_name: present(instance.key_name()),
                platform: present(instance.platform_details())
                    .or_else(|| instance.platform().map(|p| p.as_str().to_owned())),
                architecture: instance.architecture().map(|a| a.as_str().to_owned()),
            }),
            relations,
        }),
    )
}

pub(crate) async fn volumes(ctx: &Ctx<'_>, token: Option<String>) -> Result<Listed, ProviderError> {
    let out = Client::new(&ctx.config)
        .describe_volumes()
        .max_results(ctx.page_size(5, 500))
        .set_next_token(token)
        .send()
        .await
        .map_err(|e| provider_error("ec2:DescribeVolumes", e))?;
    let entities = out
        .volumes()
        .iter()
        .filter_map(|v| volume(ctx, v))
        .collect();
    Ok(Listed::new(entities, out.next_token()))
}

pub(crate) async fn describe_volumes(
    ctx: &Ctx<'_>,
    ids: &[String],
) -> Result<Vec<Entity>, ProviderError> {
    let client = Client::new(&ctx.config);
    by_ids(
        ids,
        "ec2:DescribeVolumes",
        |ids| client.describe_volumes().set_volume_ids(Some(ids)).send(),
        |out| {
            out.volumes()
                .iter()
                .filter_map(|v| volume(ctx, v))
                .collect()
        },
    )
    .await
}

fn volume(ctx: &Ctx<'_>, volume: &Volume) -> Option<Entity> {
    let id = volume.volume_id()?;
    let state = volume.state().map(|s| s.as_str().to_owned());
    let attached_to: Vec<String> = volume
        .attachments()
        .iter()
        .filter_map(|a| present(a.instance_id()))
        .collect();
    let relations = attached_to
        .iter()
        .map(|i| ctx.ec2_relation(RelationKind::AttachedTo, "instance", i))
        .collect();
    Some(ctx.entity(Described {
        id: ctx.ec2_id("volume", id),
        provider_type: "AWS::EC2::Volume",
        zone: present(volume.availability_zone()),
        tags: tags(volume.tags().iter().map(|t| (t.key(), t.value()))),
        active: state.as_deref() != Some("deleted"),
        status: state,
        created_at: time(volume.create_time()),
        details: Details::Volume(domain::Volume {
            volume_id: id.to_owned(),
            size_gib: volume.size(),
            volume_type: volume.volume_type().map(|t| t.as_str().to_owned()),
            iops: volume.iops(),
            encrypted: volume.encrypted().unwrap_or(false),
            snapshot_id: present(volume.snapshot_id()),
            attached_to,
        }),
        relations,
    }))
}

pub(crate) async fn snapshots(
    ctx: &Ctx<'_>,
    token: Option<String>,
) -> Result<Listed, ProviderError> {
    let out = Client::new(&ctx.config)
        .describe_snapshots()
        .owner_ids("self")
        .max_results(ctx.page_size(5, 1000))
        .set_next_token(token)
        .send()
        .await
        .map_err(|e| provider_error("ec2:DescribeSnapshots", e))?;
    // OwnerIds already says so; the check keeps an emulator that ignores it (moto 5.2.5
    // lists its public AMIs' snapshots) from filling the inventory with other accounts'.
    let entities = out
        .snapshots()
        .iter()
        .filter(|s| s.owner_id().is_none_or(|owner| owner == ctx.account()))
        .filter_map(|s| snapshot(ctx, s))
        .collect();
    Ok(Listed::new(entities, out.next_token()))
}

pub(crate) async fn describe_snapshots(
    ctx: &Ctx<'_>,
    ids: &[String],
) -> Result<Vec<Entity>, ProviderError> {
    let client = Client::new(&ctx.config);
    by_ids(
        ids,
        "ec2:DescribeSnapshots",
        |ids| {
            client
                .describe_snapshots()
                .set_snapshot_ids(Some(ids))
                .send()
        },
        |out| {
            out.snapshots()
                .iter()
                .filter_map(|s| snapshot(ctx, s))
                .collect()
        },
    )
    .await
}

fn snapshot(ctx: &Ctx<'_>, snapshot: &Snapshot) -> Option<Entity> {
    let id = snapshot.snapshot_id()?;
    let volume_id = present(snapshot.volume_id());
    let relations = volume_id
        .iter()
        .filter(|v| v.as_str() != NO_VOLUME)
        .map(|v| ctx.ec2_relation(RelationKind::SnapshotOf, "volume", v))
        .collect();
    Some(ctx.entity(Described {
        id: ctx.ec2_id("snapshot", id),
        provider_type: "AWS::EC2::Snapshot",
        zone: None,
        tags: tags(snapshot.tags().iter().map(|t| (t.key(), t.value()))),
        status: snapshot.state().map(|s| s.as_str().to_owned()),
        active: true,
        created_at: time(snapshot.start_time()),
        details: Details::Snapshot(domain::Snapshot {
            snapshot_id: id.to_owned(),
            volume_id,
            size_gib: snapshot.volume_size(),
            encrypted: snapshot.encrypted().unwrap_or(false),
            description: present(snapshot.description()),
        }),
        relations,
    }))
}

pub(crate) async fn images(ctx: &Ctx<'_>, token: Option<String>) -> Result<Listed, ProviderError> {
    let out = Client::new(&ctx.config)
        .describe_images()
        .owners("self")
        // A disabled AMI still exists (and can be enabled again): without the flag EC2 leaves
        // it out, and the crawl would mark it gone.
        .include_disabled(true)
        .max_results(ctx.page_size(5, 1000))
        .set_next_token(token)
        .send()
        .await
        .map_err(|e| provider_error("ec2:DescribeImages", e))?;
    let entities = out.images().iter().filter_map(|i| image(ctx, i)).collect();
    Ok(Listed::new(entities, out.next_token()))
}

pub(crate) async fn describe_images(
    ctx: &Ctx<'_>,
    ids: &[String],
) -> Result<Vec<Entity>, ProviderError> {
    let client = Client::new(&ctx.config);
    by_ids(
        ids,
        "ec2:DescribeImages",
        |ids| {
            client
                .describe_images()
                .include_disabled(true)
                .set_image_ids(Some(ids))
                .send()
        },
        |out| out.images().iter().filter_map(|i| image(ctx, i)).collect(),
    )
    .await
}

fn image(ctx: &Ctx<'_>, image: &Image) -> Option<Entity> {
    let id = image.image_id()?;
    let state = image.state().map(|s| s.as_str().to_owned());
    Some(
        ctx.entity(Described {
            id: ctx.ec2_id("image", id),
            provider_type: "AWS::EC2::Image",
            zone: None,
            tags: tags(image.tags().iter().map(|t| (t.key(), t.value()))),
            active: state.as_deref() != Some("deregistered"),
            status: state,
            created_at: image.creation_date().and_then(iso_time),
            details: Details::Image(domain::Image {
                image_id: id.to_owned(),
                image_name: present(image.name()),
                architecture: image.architecture().map(|a| a.as_str().to_owned()),
                platform: present(image.platform_details())
                    .or_else(|| image.platform().map(|p| p.as_str().to_owned())),
                root_device_type: image.root_device_type().map(|t| t.as_str().to_owned()),
                public: image.public().unwrap_or(false),
            }),
            relations: Vec::new(),
        }),
    )
}

/// DescribeImages answers the creation date as an ISO 8601 string, not a timestamp.
fn iso_time(value: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(value)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

pub(crate) async fn security_groups(
    ctx: &Ctx<'_>,
    token: Option<String>,
) -> Result<Listed, ProviderError> {
    let out = Client::new(&ctx.config)
        .describe_security_groups()
        .max_results(ctx.page_size(5, 1000))
        .set_next_token(token)
        .send()
        .await
        .map_err(|e| provider_error("ec2:DescribeSecurityGroups", e))?;
    let entities = out
        .security_groups()
        .iter()
        .filter_map(|g| security_group(ctx, g))
        .collect();
    Ok(Listed::new(entities, out.next_token()))
}

pub(crate) async fn describe_security_groups(
    ctx: &Ctx<'_>,
    ids: &[String],
) -> Result<Vec<Entity>, ProviderError> {
    let client = Client::new(&ctx.config);
    by_ids(
        ids,
        "ec2:DescribeSecurityGroups",
        |ids| {
            client
                .describe_security_groups()
                .set_group_ids(Some(ids))
                .send()
        },
        |out| {
            out.security_groups()
                .iter()
                .filter_map(|g| security_group(ctx, g))
                .collect()
        },
    )
    .await
}

fn security_group(ctx: &Ctx<'_>, group: &SecurityGroup) -> Option<Entity> {
    let id = group.group_id()?;
    let relations = present(group.vpc_id())
        .map(|vpc| ctx.ec2_relation(RelationKind::Vpc, "vpc", &vpc))
        .into_iter()
        .collect();
    Some(ctx.entity(Described {
        id: ctx.ec2_id("security-group", id),
        provider_type: "AWS::EC2::SecurityGroup",
        zone: None,
        tags: tags(group.tags().iter().map(|t| (t.key(), t.value()))),
        status: None,
        active: true,
        created_at: None,
        details: Details::SecurityGroup(domain::SecurityGroup {
            group_id: id.to_owned(),
            group_name: present(group.group_name()),
            description: present(group.description()),
            vpc_id: present(group.vpc_id()),
            ingress: group.ip_permissions().iter().map(rule).collect(),
            egress: group.ip_permissions_egress().iter().map(rule).collect(),
        }),
        relations,
    }))
}

/// One permission as a rule; the protocol as AWS writes it (`-1` is every protocol).
fn rule(permission: &IpPermission) -> domain::Rule {
    let peers = permission
        .ip_ranges()
        .iter()
        .filter_map(|r| r.cidr_ip())
        .chain(
            permission
                .ipv6_ranges()
                .iter()
                .filter_map(|r| r.cidr_ipv6()),
        )
        .chain(
            permission
                .prefix_list_ids()
                .iter()
                .filter_map(|p| p.prefix_list_id()),
        )
        .chain(
            permission
                .user_id_group_pairs()
                .iter()
                .filter_map(|p| p.group_id()),
        )
        .map(str::to_owned)
        .collect();
    domain::Rule {
        protocol: permission.ip_protocol().unwrap_or("-1").to_owned(),
        from_port: permission.from_port(),
        to_port: permission.to_port(),
        peers,
    }
}
