//! VPCs and what lives in them: eight EC2 calls, one after the other, as the cursor's steps.
//!
//! NAT gateways, endpoints, peering connections and VPN gateways stay listed for a while after
//! they end (deleted, rejected, expired); a crawl leaves those out so that they go as gone,
//! while an event's describe keeps them, inactive, to record how they ended.

use aws_sdk_ec2::Client;
use aws_sdk_ec2::types::{
    NatGateway, NetworkAcl, Route, RouteTable, Subnet, Vpc, VpcEndpoint, VpcPeeringConnection,
    VpcPeeringConnectionVpcInfo, VpnGateway,
};
use maestro_domain::inventory::connection::ResourceType;
use maestro_domain::inventory::crawl::ProviderError;
use maestro_domain::inventory::entity::{
    self as domain, Described, Details, Entity, Relation, RelationKind, ids,
};

use crate::errors::provider_error;
use crate::{Ctx, Listed, by_ids, present, tags, time, unknown_step};

pub(crate) const STEPS: u16 = 8;

pub(crate) async fn page(
    ctx: &Ctx<'_>,
    step: u16,
    token: Option<String>,
) -> Result<Listed, ProviderError> {
    let client = Client::new(&ctx.config);
    match step {
        0 => {
            let out = client
                .describe_vpcs()
                .max_results(ctx.page_size(5, 1000))
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| provider_error("ec2:DescribeVpcs", e))?;
            let entities = out.vpcs().iter().filter_map(|v| vpc(ctx, v)).collect();
            Ok(Listed::new(entities, out.next_token()))
        }
        1 => {
            let out = client
                .describe_subnets()
                .max_results(ctx.page_size(5, 1000))
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| provider_error("ec2:DescribeSubnets", e))?;
            let entities = out
                .subnets()
                .iter()
                .filter_map(|s| subnet(ctx, s))
                .collect();
            Ok(Listed::new(entities, out.next_token()))
        }
        2 => {
            let out = client
                .describe_route_tables()
                .max_results(ctx.page_size(5, 100))
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| provider_error("ec2:DescribeRouteTables", e))?;
            let entities = out
                .route_tables()
                .iter()
                .filter_map(|t| route_table(ctx, t))
                .collect();
            Ok(Listed::new(entities, out.next_token()))
        }
        3 => {
            let out = client
                .describe_nat_gateways()
                .max_results(ctx.page_size(5, 1000))
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| provider_error("ec2:DescribeNatGateways", e))?;
            let entities = live(
                out.nat_gateways()
                    .iter()
                    .filter_map(|g| nat_gateway(ctx, g)),
            );
            Ok(Listed::new(entities, out.next_token()))
        }
        4 => {
            let out = client
                .describe_network_acls()
                .max_results(ctx.page_size(5, 100))
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| provider_error("ec2:DescribeNetworkAcls", e))?;
            let entities = out
                .network_acls()
                .iter()
                .filter_map(|a| network_acl(ctx, a))
                .collect();
            Ok(Listed::new(entities, out.next_token()))
        }
        5 => {
            let out = client
                .describe_vpc_endpoints()
                .max_results(ctx.page_size(5, 1000))
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| provider_error("ec2:DescribeVpcEndpoints", e))?;
            let entities = live(
                out.vpc_endpoints()
                    .iter()
                    .filter_map(|e| vpc_endpoint(ctx, e)),
            );
            Ok(Listed::new(entities, out.next_token()))
        }
        6 => {
            let out = client
                .describe_vpc_peering_connections()
                .max_results(ctx.page_size(5, 1000))
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| provider_error("ec2:DescribeVpcPeeringConnections", e))?;
            let entities = live(
                out.vpc_peering_connections()
                    .iter()
                    .filter_map(|p| peering_connection(ctx, p)),
            );
            Ok(Listed::new(entities, out.next_token()))
        }
        // DescribeVpnGateways is not paginated: one page.
        7 => {
            let out = client
                .describe_vpn_gateways()
                .send()
                .await
                .map_err(|e| provider_error("ec2:DescribeVpnGateways", e))?;
            let entities = live(
                out.vpn_gateways()
                    .iter()
                    .filter_map(|g| vpn_gateway(ctx, g)),
            );
            Ok(Listed::new(entities, None))
        }
        _ => Err(unknown_step(ResourceType::Network, step)),
    }
}

fn live(entities: impl Iterator<Item = Entity>) -> Vec<Entity> {
    entities.filter(|e| e.active).collect()
}

/// Describes network resources by id, each kind by its id's prefix; an id of a kind not
/// crawled here names nothing.
pub(crate) async fn describe(ctx: &Ctx<'_>, ids: &[String]) -> Result<Vec<Entity>, ProviderError> {
    let client = Client::new(&ctx.config);
    let with = |prefix: &str| -> Vec<String> {
        ids.iter()
            .filter(|id| id.starts_with(prefix))
            .cloned()
            .collect()
    };
    let vpcs = by_ids(
        &with("vpc-"),
        "ec2:DescribeVpcs",
        |ids| client.describe_vpcs().set_vpc_ids(Some(ids)).send(),
        |out| out.vpcs().iter().filter_map(|v| vpc(ctx, v)).collect(),
    )
    .await?;
    let subnets = by_ids(
        &with("subnet-"),
        "ec2:DescribeSubnets",
        |ids| client.describe_subnets().set_subnet_ids(Some(ids)).send(),
        |out| {
            out.subnets()
                .iter()
                .filter_map(|s| subnet(ctx, s))
                .collect()
        },
    )
    .await?;
    let tables = by_ids(
        &with("rtb-"),
        "ec2:DescribeRouteTables",
        |ids| {
            client
                .describe_route_tables()
                .set_route_table_ids(Some(ids))
                .send()
        },
        |out| {
            out.route_tables()
                .iter()
                .filter_map(|t| route_table(ctx, t))
                .collect()
        },
    )
    .await?;
    let nats = by_ids(
        &with("nat-"),
        "ec2:DescribeNatGateways",
        |ids| {
            client
                .describe_nat_gateways()
                .set_nat_gateway_ids(Some(ids))
                .send()
        },
        |out| {
            out.nat_gateways()
                .iter()
                .filter_map(|g| nat_gateway(ctx, g))
                .collect()
        },
    )
    .await?;
    let acls = by_ids(
        &with("acl-"),
        "ec2:DescribeNetworkAcls",
        |ids| {
            client
                .describe_network_acls()
                .set_network_acl_ids(Some(ids))
                .send()
        },
        |out| {
            out.network_acls()
                .iter()
                .filter_map(|a| network_acl(ctx, a))
                .collect()
        },
    )
    .await?;
    let endpoints = by_ids(
        &with("vpce-"),
        "ec2:DescribeVpcEndpoints",
        |ids| {
            client
                .describe_vpc_endpoints()
                .set_vpc_endpoint_ids(Some(ids))
                .send()
        },
        |out| {
            out.vpc_endpoints()
                .iter()
                .filter_map(|e| vpc_endpoint(ctx, e))
                .collect()
        },
    )
    .await?;
    let peerings = by_ids(
        &with("pcx-"),
        "ec2:DescribeVpcPeeringConnections",
        |ids| {
            client
                .describe_vpc_peering_connections()
                .set_vpc_peering_connection_ids(Some(ids))
                .send()
        },
        |out| {
            out.vpc_peering_connections()
                .iter()
                .filter_map(|p| peering_connection(ctx, p))
                .collect()
        },
    )
    .await?;
    let gateways = by_ids(
        &with("vgw-"),
        "ec2:DescribeVpnGateways",
        |ids| {
            client
                .describe_vpn_gateways()
                .set_vpn_gateway_ids(Some(ids))
                .send()
        },
        |out| {
            out.vpn_gateways()
                .iter()
                .filter_map(|g| vpn_gateway(ctx, g))
                .collect()
        },
    )
    .await?;
    let kinds = [
        vpcs, subnets, tables, nats, acls, endpoints, peerings, gateways,
    ];
    Ok(kinds.into_iter().flatten().collect())
}

/// Whether the crawled account owns a network resource. A VPC shared through AWS RAM shows
/// itself, its subnets, route tables and network ACLs in every participant account, with the
/// owner's account as `OwnerId`: it is recorded once, in its owner's crawl, or each
/// participant would hold a copy that changes whenever the owner changes it.
fn owned(ctx: &Ctx<'_>, owner_id: Option<&str>) -> bool {
    owner_id.is_none_or(|owner| owner.is_empty() || owner == ctx.account())
}

fn vpc(ctx: &Ctx<'_>, vpc: &Vpc) -> Option<Entity> {
    let id = vpc.vpc_id()?;
    if !owned(ctx, vpc.owner_id()) {
        return None;
    }
    Some(ctx.entity(Described {
        id: ctx.ec2_id("vpc", id),
        provider_type: "AWS::EC2::VPC",
        zone: None,
        tags: tags(vpc.tags().iter().map(|t| (t.key(), t.value()))),
        status: vpc.state().map(|s| s.as_str().to_owned()),
        active: true,
        created_at: None,
        details: Details::Vpc(domain::Vpc {
            vpc_id: id.to_owned(),
            cidr_block: present(vpc.cidr_block()),
            is_default: vpc.is_default().unwrap_or(false),
        }),
        relations: Vec::new(),
    }))
}

fn subnet(ctx: &Ctx<'_>, subnet: &Subnet) -> Option<Entity> {
    let id = subnet.subnet_id()?;
    if !owned(ctx, subnet.owner_id()) {
        return None;
    }
    let relations = present(subnet.vpc_id())
        .map(|v| ctx.ec2_relation(RelationKind::Vpc, "vpc", &v))
        .into_iter()
        .collect();
    Some(ctx.entity(Described {
        id: ctx.ec2_id("subnet", id),
        provider_type: "AWS::EC2::Subnet",
        zone: present(subnet.availability_zone()),
        tags: tags(subnet.tags().iter().map(|t| (t.key(), t.value()))),
        status: subnet.state().map(|s| s.as_str().to_owned()),
        active: true,
        created_at: None,
        details: Details::Subnet(domain::Subnet {
            subnet_id: id.to_owned(),
            vpc_id: present(subnet.vpc_id()),
            cidr_block: present(subnet.cidr_block()),
            available_ips: subnet.available_ip_address_count(),
            default_for_zone: subnet.default_for_az().unwrap_or(false),
        }),
        relations,
    }))
}

fn route_table(ctx: &Ctx<'_>, table: &RouteTable) -> Option<Entity> {
    let id = table.route_table_id()?;
    if !owned(ctx, table.owner_id()) {
        return None;
    }
    let subnet_ids: Vec<String> = table
        .associations()
        .iter()
        .filter_map(|a| present(a.subnet_id()))
        .collect();
    let mut relations: Vec<Relation> = subnet_ids
        .iter()
        .map(|s| ctx.ec2_relation(RelationKind::Subnet, "subnet", s))
        .collect();
    relations
        .extend(present(table.vpc_id()).map(|v| ctx.ec2_relation(RelationKind::Vpc, "vpc", &v)));
    Some(
        ctx.entity(Described {
            id: ctx.ec2_id("route-table", id),
            provider_type: "AWS::EC2::RouteTable",
            zone: None,
            tags: tags(table.tags().iter().map(|t| (t.key(), t.value()))),
            status: None,
            active: true,
            created_at: None,
            details: Details::RouteTable(domain::RouteTable {
                route_table_id: id.to_owned(),
                vpc_id: present(table.vpc_id()),
                main: table
                    .associations()
                    .iter()
                    .any(|a| a.main().unwrap_or(false)),
                subnet_ids,
                routes: table.routes().iter().filter_map(route).collect(),
            }),
            relations,
        }),
    )
}

fn route(route: &Route) -> Option<domain::Route> {
    let destination = present(route.destination_cidr_block())
        .or_else(|| present(route.destination_ipv6_cidr_block()))
        .or_else(|| present(route.destination_prefix_list_id()))?;
    let target = [
        route.gateway_id(),
        route.nat_gateway_id(),
        route.instance_id(),
        route.network_interface_id(),
        route.transit_gateway_id(),
        route.vpc_peering_connection_id(),
        route.egress_only_internet_gateway_id(),
        route.local_gateway_id(),
        route.carrier_gateway_id(),
        route.core_network_arn(),
    ]
    .into_iter()
    .find_map(present);
    Some(domain::Route {
        destination,
        target,
    })
}

fn nat_gateway(ctx: &Ctx<'_>, gateway: &NatGateway) -> Option<Entity> {
    let id = gateway.nat_gateway_id()?;
    let state = gateway.state().map(|s| s.as_str().to_owned());
    let mut relations = Vec::new();
    relations
        .extend(present(gateway.vpc_id()).map(|v| ctx.ec2_relation(RelationKind::Vpc, "vpc", &v)));
    relations.extend(
        present(gateway.subnet_id()).map(|s| ctx.ec2_relation(RelationKind::Subnet, "subnet", &s)),
    );
    Some(
        ctx.entity(Described {
            id: ctx.ec2_id("natgateway", id),
            provider_type: "AWS::EC2::NatGateway",
            zone: None,
            tags: tags(gateway.tags().iter().map(|t| (t.key(), t.value()))),
            active: !matches!(state.as_deref(), Some("deleted")),
            status: state,
            created_at: time(gateway.create_time()),
            details: Details::NatGateway(domain::NatGateway {
                nat_gateway_id: id.to_owned(),
                vpc_id: present(gateway.vpc_id()),
                subnet_id: present(gateway.subnet_id()),
                connectivity: gateway.connectivity_type().map(|c| c.as_str().to_owned()),
                public_ips: gateway
                    .nat_gateway_addresses()
                    .iter()
                    .filter_map(|a| present(a.public_ip()))
                    .collect(),
            }),
            relations,
        }),
    )
}

fn network_acl(ctx: &Ctx<'_>, acl: &NetworkAcl) -> Option<Entity> {
    let id = acl.network_acl_id()?;
    if !owned(ctx, acl.owner_id()) {
        return None;
    }
    let subnet_ids: Vec<String> = acl
        .associations()
        .iter()
        .filter_map(|a| present(a.subnet_id()))
        .collect();
    let mut relations: Vec<Relation> = subnet_ids
        .iter()
        .map(|s| ctx.ec2_relation(RelationKind::Subnet, "subnet", s))
        .collect();
    relations.extend(present(acl.vpc_id()).map(|v| ctx.ec2_relation(RelationKind::Vpc, "vpc", &v)));
    Some(ctx.entity(Described {
        id: ctx.ec2_id("network-acl", id),
        provider_type: "AWS::EC2::NetworkAcl",
        zone: None,
        tags: tags(acl.tags().iter().map(|t| (t.key(), t.value()))),
        status: None,
        active: true,
        created_at: None,
        details: Details::NetworkAcl(domain::NetworkAcl {
            network_acl_id: id.to_owned(),
            vpc_id: present(acl.vpc_id()),
            is_default: acl.is_default().unwrap_or(false),
            subnet_ids,
        }),
        relations,
    }))
}

fn vpc_endpoint(ctx: &Ctx<'_>, endpoint: &VpcEndpoint) -> Option<Entity> {
    let id = endpoint.vpc_endpoint_id()?;
    if !owned(ctx, endpoint.owner_id()) {
        return None;
    }
    let state = endpoint.state().map(|s| s.as_str().to_owned());
    let relations = present(endpoint.vpc_id())
        .map(|v| ctx.ec2_relation(RelationKind::Vpc, "vpc", &v))
        .into_iter()
        .collect();
    Some(ctx.entity(Described {
        id: ctx.ec2_id("vpc-endpoint", id),
        provider_type: "AWS::EC2::VPCEndpoint",
        zone: None,
        tags: tags(endpoint.tags().iter().map(|t| (t.key(), t.value()))),
        active: !matches!(
            state.as_deref().map(str::to_ascii_lowercase).as_deref(),
            Some("deleted" | "rejected" | "expired" | "failed")
        ),
        status: state,
        created_at: time(endpoint.creation_timestamp()),
        details: Details::VpcEndpoint(domain::VpcEndpoint {
            endpoint_id: id.to_owned(),
            vpc_id: present(endpoint.vpc_id()),
            service_name: present(endpoint.service_name()),
            endpoint_type: endpoint.vpc_endpoint_type().map(|t| t.as_str().to_owned()),
        }),
        relations,
    }))
}

/// A peering between two accounts shows in both: it is recorded once, in the crawl of the
/// account that requested it.
fn peering_connection(ctx: &Ctx<'_>, peering: &VpcPeeringConnection) -> Option<Entity> {
    let id = peering.vpc_peering_connection_id()?;
    if !owned(ctx, peering.requester_vpc_info().and_then(|r| r.owner_id())) {
        return None;
    }
    let status = peering
        .status()
        .and_then(|s| s.code())
        .map(|c| c.as_str().to_owned());
    let requester = peering.requester_vpc_info();
    let accepter = peering.accepter_vpc_info();
    let relations = [requester, accepter]
        .into_iter()
        .flatten()
        .filter_map(|side| peer_vpc(ctx, side))
        .collect();
    let vpc_id =
        |side: Option<&VpcPeeringConnectionVpcInfo>| side.and_then(|s| present(s.vpc_id()));
    let owner =
        |side: Option<&VpcPeeringConnectionVpcInfo>| side.and_then(|s| present(s.owner_id()));
    Some(ctx.entity(Described {
        id: ctx.ec2_id("vpc-peering-connection", id),
        provider_type: "AWS::EC2::VPCPeeringConnection",
        zone: None,
        tags: tags(peering.tags().iter().map(|t| (t.key(), t.value()))),
        active: !matches!(
            status.as_deref(),
            Some("deleted" | "rejected" | "expired" | "failed")
        ),
        status,
        created_at: None,
        details: Details::PeeringConnection(domain::PeeringConnection {
            peering_id: id.to_owned(),
            requester_vpc_id: vpc_id(requester),
            requester_account: owner(requester),
            accepter_vpc_id: vpc_id(accepter),
            accepter_account: owner(accepter),
        }),
        relations,
    }))
}

/// The VPC on one side of a peering, in its own account and region, which may not be ours.
fn peer_vpc(ctx: &Ctx<'_>, side: &VpcPeeringConnectionVpcInfo) -> Option<Relation> {
    let vpc = present(side.vpc_id())?;
    let region = present(side.region()).unwrap_or_else(|| ctx.region().to_owned());
    let account = present(side.owner_id()).unwrap_or_else(|| ctx.account().to_owned());
    Some(Relation {
        kind: RelationKind::Joins,
        target: ids::ec2(&region, &account, "vpc", &vpc),
    })
}

fn vpn_gateway(ctx: &Ctx<'_>, gateway: &VpnGateway) -> Option<Entity> {
    let id = gateway.vpn_gateway_id()?;
    let state = gateway.state().map(|s| s.as_str().to_owned());
    let vpc_ids: Vec<String> = gateway
        .vpc_attachments()
        .iter()
        .filter(|a| !matches!(a.state().map(|s| s.as_str()), Some("detached")))
        .filter_map(|a| present(a.vpc_id()))
        .collect();
    let relations = vpc_ids
        .iter()
        .map(|v| ctx.ec2_relation(RelationKind::Joins, "vpc", v))
        .collect();
    Some(ctx.entity(Described {
        id: ctx.ec2_id("vpn-gateway", id),
        provider_type: "AWS::EC2::VPNGateway",
        zone: present(gateway.availability_zone()),
        tags: tags(gateway.tags().iter().map(|t| (t.key(), t.value()))),
        active: !matches!(state.as_deref(), Some("deleted")),
        status: state,
        created_at: None,
        details: Details::VpnGateway(domain::VpnGateway {
            vpn_gateway_id: id.to_owned(),
            gateway_type: gateway.r#type().map(|t| t.as_str().to_owned()),
            vpc_ids,
        }),
        relations,
    }))
}

#[cfg(test)]
mod tests {
    use aws_sdk_ec2::types::{VpcPeeringConnection, VpcPeeringConnectionVpcInfo};
    use maestro_aws::SdkConfig;
    use maestro_domain::inventory::crawl::Target;
    use maestro_domain::inventory::entity::Labels;

    use super::*;
    use crate::AwsProvider;

    const OWN: &str = "111111111111";
    const OWNER: &str = "222222222222";

    fn in_account(test: impl FnOnce(&Ctx<'_>)) {
        let config = SdkConfig::builder().build();
        let provider = AwsProvider::new(&config, Labels::default());
        let target = Target {
            account: OWN.into(),
            region: "eu-west-1".into(),
            role: None,
        };
        test(&Ctx {
            provider: &provider,
            target: &target,
            config,
            page_size: 100,
        });
    }

    #[test]
    fn a_shared_vpc_is_recorded_once_in_its_owners_crawl() {
        // Issue 15, finding 8: a VPC shared through RAM was recorded once per participant.
        in_account(|ctx| {
            let vpc_of = |owner: &str| {
                Vpc::builder()
                    .vpc_id("vpc-0a1b2c3d")
                    .owner_id(owner)
                    .build()
            };
            assert!(vpc(ctx, &vpc_of(OWNER)).is_none());
            assert!(vpc(ctx, &vpc_of(OWN)).is_some());
            let subnet_of = |owner: &str| {
                Subnet::builder()
                    .subnet_id("subnet-0a1b2c3d")
                    .vpc_id("vpc-0a1b2c3d")
                    .owner_id(owner)
                    .build()
            };
            assert!(subnet(ctx, &subnet_of(OWNER)).is_none());
            assert!(subnet(ctx, &subnet_of(OWN)).is_some());
            let table_of = |owner: &str| {
                RouteTable::builder()
                    .route_table_id("rtb-0a1b2c3d")
                    .owner_id(owner)
                    .build()
            };
            assert!(route_table(ctx, &table_of(OWNER)).is_none());
            assert!(route_table(ctx, &table_of(OWN)).is_some());
            let acl_of = |owner: &str| {
                NetworkAcl::builder()
                    .network_acl_id("acl-0a1b2c3d")
                    .owner_id(owner)
                    .build()
            };
            assert!(network_acl(ctx, &acl_of(OWNER)).is_none());
            assert!(network_acl(ctx, &acl_of(OWN)).is_some());
            // A resource that names no owner is the crawled account's.
            let unowned = Vpc::builder().vpc_id("vpc-0a1b2c3d").build();
            assert!(vpc(ctx, &unowned).is_some());
        });
    }

    #[test]
    fn a_peering_between_two_accounts_is_recorded_in_the_requesters_crawl() {
        in_account(|ctx| {
            let side = |owner: &str, vpc: &str| {
                VpcPeeringConnectionVpcInfo::builder()
                    .owner_id(owner)
                    .vpc_id(vpc)
                    .build()
            };
            let requested_by = |requester: &str, accepter: &str| {
                VpcPeeringConnection::builder()
                    .vpc_peering_connection_id("pcx-0a1b2c3d")
                    .requester_vpc_info(side(requester, "vpc-00000001"))
                    .accepter_vpc_info(side(accepter, "vpc-00000002"))
                    .build()
            };
            assert!(peering_connection(ctx, &requested_by(OWN, OWNER)).is_some());
            assert!(peering_connection(ctx, &requested_by(OWNER, OWN)).is_none());
        });
    }
}
