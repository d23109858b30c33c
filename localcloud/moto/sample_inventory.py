"""A sample estate for discovery on the local cloud, and what the emulator holds of it.

``seed`` creates, in each account and region given, one of every resource type discovery
crawls: a VPC with a subnet, route table, NAT gateway, endpoint, VPN gateway and a peering
connection; a security group; a tagged instance with its volume, a snapshot and an image of it;
a classic load balancer and an application load balancer whose target group holds the
instance, and an idle application load balancer with no listener or target group; an RDS instance in a subnet group; a Lambda function; and, once per account, an S3
bucket and a CloudFront distribution. It prints the ids it made as JSON.

``expected`` lists, with boto3 alone, every resource the emulator holds for an account in the
given regions and prints the entity ids discovery must find, by family. Tests compare the
inventory with this rather than with constants, so moto's own defaults (default VPCs, their
subnets and security groups) count as they would in a real account.

Other accounts are reached by assuming their administrator role (OrganizationAccountAccessRole).
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import zipfile
from typing import Any

import boto3

OWN_ACCOUNT = "123456789012"
LIVE_STATES = ["pending", "running", "shutting-down", "stopping", "stopped"]


def session(endpoint: str, account: str, role_name: str) -> boto3.Session:
    base = boto3.Session(aws_access_key_id="test", aws_secret_access_key="test", region_name="us-east-1")
    if account == OWN_ACCOUNT:
        return base
    credentials = base.client("sts", endpoint_url=endpoint).assume_role(
        RoleArn=f"arn:aws:iam::{account}:role/{role_name}",
        RoleSessionName="sample-inventory",
    )["Credentials"]
    return boto3.Session(
        aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials["SessionToken"],
        region_name="us-east-1",
    )


def client(s: boto3.Session, endpoint: str, service: str, region: str) -> Any:
    return s.client(service, endpoint_url=endpoint, region_name=region)


def function_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("bootstrap", "#!/bin/sh\necho sample\n")
    return buffer.getvalue()


def tags(name: str, environment: str) -> list[dict[str, str]]:
    return [{"Key": "Name", "Value": name}, {"Key": "Environment", "Value": environment}, {"Key": "Role", "Value": "web"}]


def seed_region(s: boto3.Session, endpoint: str, account: str, region: str, prefix: str) -> dict[str, Any]:
    ec2 = client(s, endpoint, "ec2", region)
    vpc = ec2.create_vpc(CidrBlock="10.20.0.0/16", TagSpecifications=[{"ResourceType": "vpc", "Tags": tags(f"{prefix}-vpc", "production")}])["Vpc"]["VpcId"]
    other_vpc = ec2.create_vpc(CidrBlock="10.30.0.0/16")["Vpc"]["VpcId"]
    zones = [z["ZoneName"] for z in ec2.describe_availability_zones()["AvailabilityZones"]][:2]
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.20.{i}.0/24", AvailabilityZone=zone)["Subnet"]["SubnetId"]
        for i, zone in enumerate(zones)
    ]
    route_table = ec2.create_route_table(VpcId=vpc)["RouteTable"]["RouteTableId"]
    ec2.associate_route_table(RouteTableId=route_table, SubnetId=subnets[0])
    allocation = ec2.allocate_address(Domain="vpc")["AllocationId"]
    nat = ec2.create_nat_gateway(SubnetId=subnets[0], AllocationId=allocation)["NatGateway"]["NatGatewayId"]
    endpoint_id = ec2.create_vpc_endpoint(VpcId=vpc, ServiceName=f"com.amazonaws.{region}.s3", RouteTableIds=[route_table])["VpcEndpoint"]["VpcEndpointId"]
    vpn = ec2.create_vpn_gateway(Type="ipsec.1")["VpnGateway"]["VpnGatewayId"]
    ec2.attach_vpn_gateway(VpcId=vpc, VpnGatewayId=vpn)
    peering = ec2.create_vpc_peering_connection(VpcId=vpc, PeerVpcId=other_vpc)["VpcPeeringConnection"]["VpcPeeringConnectionId"]
    group = ec2.create_security_group(GroupName=f"{prefix}-web", Description="web servers", VpcId=vpc)["GroupId"]
    ec2.authorize_security_group_ingress(GroupId=group, IpPermissions=[{"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
    image_seed = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    instance = ec2.run_instances(
        ImageId=image_seed,
        InstanceType="t3.micro",
        MinCount=1,
        MaxCount=1,
        SubnetId=subnets[0],
        SecurityGroupIds=[group],
        TagSpecifications=[{"ResourceType": "instance", "Tags": tags(f"{prefix}-web-1", "production")}],
    )["Instances"][0]["InstanceId"]
    volume = ec2.create_volume(AvailabilityZone=zones[0], Size=20, VolumeType="gp3", TagSpecifications=[{"ResourceType": "volume", "Tags": tags(f"{prefix}-data", "production")}])["VolumeId"]
    ec2.attach_volume(VolumeId=volume, InstanceId=instance, Device="/dev/sdf")
    snapshot = ec2.create_snapshot(VolumeId=volume, Description=f"{prefix} nightly")["SnapshotId"]
    image = ec2.create_image(InstanceId=instance, Name=f"{prefix}-golden")["ImageId"]

    elb = client(s, endpoint, "elb", region)
    classic = f"{prefix}-classic"
    elb.create_load_balancer(
        LoadBalancerName=classic,
        Listeners=[{"Protocol": "HTTP", "LoadBalancerPort": 80, "InstancePort": 8080}],
        Subnets=[subnets[0]],
        SecurityGroups=[group],
        Tags=[{"Key": "Environment", "Value": "production"}],
    )
    elb.register_instances_with_load_balancer(LoadBalancerName=classic, Instances=[{"InstanceId": instance}])

    elbv2 = client(s, endpoint, "elbv2", region)
    alb = elbv2.create_load_balancer(Name=f"{prefix}-alb", Subnets=subnets, SecurityGroups=[group], Tags=[{"Key": "Environment", "Value": "production"}])["LoadBalancers"][0]["LoadBalancerArn"]
    target_group = elbv2.create_target_group(Name=f"{prefix}-web", Protocol="HTTP", Port=8080, VpcId=vpc, TargetType="instance")["TargetGroups"][0]["TargetGroupArn"]
    elbv2.register_targets(TargetGroupArn=target_group, Targets=[{"Id": instance, "Port": 8080}])
    elbv2.create_listener(LoadBalancerArn=alb, Protocol="HTTP", Port=80, DefaultActions=[{"Type": "forward", "TargetGroupArn": target_group}])
    # One without a listener or target group yet, as estates have: asked for its target
    # groups, the emulator answers TargetGroupNotFound (issue 15, finding 11).
    elbv2.create_load_balancer(Name=f"{prefix}-idle", Subnets=subnets, SecurityGroups=[group])

    rds = client(s, endpoint, "rds", region)
    rds.create_db_subnet_group(DBSubnetGroupName=f"{prefix}-db", DBSubnetGroupDescription="databases", SubnetIds=subnets)
    database = rds.create_db_instance(
        DBInstanceIdentifier=f"{prefix}-db",
        DBInstanceClass="db.t4g.micro",
        Engine="postgres",
        AllocatedStorage=20,
        MasterUsername="maestro",
        MasterUserPassword="not-a-real-password-1",
        DBSubnetGroupName=f"{prefix}-db",
        VpcSecurityGroupIds=[group],
        Tags=tags(f"{prefix}-db", "production"),
    )["DBInstance"]["DBInstanceArn"]

    role = f"arn:aws:iam::{account}:role/{prefix}-function"
    iam = client(s, endpoint, "iam", region)
    try:
        iam.create_role(RoleName=f"{prefix}-function", AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []}))
    except iam.exceptions.EntityAlreadyExistsException:
        pass
    function = client(s, endpoint, "lambda", region).create_function(
        FunctionName=f"{prefix}-api",
        Runtime="provided.al2023",
        Role=role,
        Handler="bootstrap",
        Code={"ZipFile": function_zip()},
        Tags={"Environment": "production"},
    )["FunctionArn"]
    return {
        "vpc": vpc, "subnets": subnets, "routeTable": route_table, "natGateway": nat,
        "vpcEndpoint": endpoint_id, "vpnGateway": vpn, "peering": peering, "securityGroup": group,
        "instance": instance, "volume": volume, "snapshot": snapshot, "image": image,
        "classicLoadBalancer": classic, "loadBalancer": alb, "targetGroup": target_group,
        "database": database, "function": function,
    }


def seed_account(s: boto3.Session, endpoint: str, account: str, prefix: str) -> dict[str, Any]:
    bucket = f"{prefix}-reports-{account}"
    s3 = client(s, endpoint, "s3", "eu-west-1")
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": [{"Key": "Environment", "Value": "production"}]})
    distribution = client(s, endpoint, "cloudfront", "us-east-1").create_distribution(
        DistributionConfig={
            "CallerReference": f"{prefix}-{account}",
            "Comment": "reports",
            "Enabled": True,
            "Origins": {"Quantity": 1, "Items": [{"Id": "reports", "DomainName": f"{bucket}.s3.amazonaws.com", "S3OriginConfig": {"OriginAccessIdentity": ""}}]},
            "DefaultCacheBehavior": {"TargetOriginId": "reports", "ViewerProtocolPolicy": "redirect-to-https", "MinTTL": 0, "ForwardedValues": {"QueryString": False, "Cookies": {"Forward": "none"}}, "TrustedSigners": {"Enabled": False, "Quantity": 0}},
        }
    )["Distribution"]["Id"]
    return {"bucket": bucket, "distribution": distribution}


def arn(region: str, account: str, kind: str, resource: str) -> str:
    owner = "" if kind in ("image", "snapshot") else account
    return f"arn:aws:ec2:{region}:{owner}:{kind}/{resource}"


def expected(s: boto3.Session, endpoint: str, account: str, regions: list[str]) -> dict[str, list[str]]:
    """Entity ids by family, listed with boto3's paginators (every page)."""
    found: dict[str, set[str]] = {}

    def add(family: str, ids: Any) -> None:
        found.setdefault(family, set()).update(ids)

    def pages(c: Any, operation: str, key: str, **kwargs: Any) -> list[Any]:
        return [item for page in c.get_paginator(operation).paginate(**kwargs) for item in page.get(key, [])]

    for region in regions:
        ec2 = client(s, endpoint, "ec2", region)
        reservations = pages(ec2, "describe_instances", "Reservations", Filters=[{"Name": "instance-state-name", "Values": LIVE_STATES}])
        add("server", (arn(region, account, "instance", i["InstanceId"]) for r in reservations for i in r["Instances"]))
        add("volume", (arn(region, account, "volume", v["VolumeId"]) for v in pages(ec2, "describe_volumes", "Volumes")))
        # moto answers OwnerIds=self with its public AMIs' snapshots too: keep the account's own.
        snapshots = pages(ec2, "describe_snapshots", "Snapshots", OwnerIds=["self"])
        add("snapshot", (arn(region, account, "snapshot", v["SnapshotId"]) for v in snapshots if v.get("OwnerId") == account))
        add("image", (arn(region, account, "image", i["ImageId"]) for i in ec2.describe_images(Owners=["self"])["Images"]))
        add("network", (arn(region, account, "security-group", g["GroupId"]) for g in pages(ec2, "describe_security_groups", "SecurityGroups")))
        add("network", (arn(region, account, "vpc", v["VpcId"]) for v in pages(ec2, "describe_vpcs", "Vpcs")))
        add("network", (arn(region, account, "subnet", v["SubnetId"]) for v in pages(ec2, "describe_subnets", "Subnets")))
        add("network", (arn(region, account, "route-table", v["RouteTableId"]) for v in pages(ec2, "describe_route_tables", "RouteTables")))
        add("network", (arn(region, account, "natgateway", v["NatGatewayId"]) for v in pages(ec2, "describe_nat_gateways", "NatGateways")))
        add("network", (arn(region, account, "network-acl", v["NetworkAclId"]) for v in pages(ec2, "describe_network_acls", "NetworkAcls")))
        add("network", (arn(region, account, "vpc-endpoint", v["VpcEndpointId"]) for v in pages(ec2, "describe_vpc_endpoints", "VpcEndpoints")))
        add("network", (arn(region, account, "vpc-peering-connection", v["VpcPeeringConnectionId"]) for v in pages(ec2, "describe_vpc_peering_connections", "VpcPeeringConnections")))
        add("network", (arn(region, account, "vpn-gateway", v["VpnGatewayId"]) for v in ec2.describe_vpn_gateways()["VpnGateways"]))
        elb = client(s, endpoint, "elb", region)
        add("load-balancer", (f"arn:aws:elasticloadbalancing:{region}:{account}:loadbalancer/{lb['LoadBalancerName']}" for lb in pages(elb, "describe_load_balancers", "LoadBalancerDescriptions")))
        elbv2 = client(s, endpoint, "elbv2", region)
        add("load-balancer", (lb["LoadBalancerArn"] for lb in pages(elbv2, "describe_load_balancers", "LoadBalancers")))
        add("load-balancer", (tg["TargetGroupArn"] for tg in pages(elbv2, "describe_target_groups", "TargetGroups")))
        add("database", (db["DBInstanceArn"] for db in pages(client(s, endpoint, "rds", region), "describe_db_instances", "DBInstances")))
        add("serverless", (f["FunctionArn"] for f in pages(client(s, endpoint, "lambda", region), "list_functions", "Functions")))
    add("object-storage", (f"arn:aws:s3:::{b['Name']}" for b in client(s, endpoint, "s3", "us-east-1").list_buckets()["Buckets"]))
    distributions = client(s, endpoint, "cloudfront", "us-east-1").list_distributions()["DistributionList"].get("Items", [])
    add("cdn", (f"arn:aws:cloudfront::{account}:distribution/{d['Id']}" for d in distributions))
    return {family: sorted(ids) for family, ids in sorted(found.items())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["seed", "expected"])
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--account", action="append", required=True, help="repeat for several")
    parser.add_argument("--region", action="append", required=True, help="repeat for several")
    # An administrator's role, as Organizations creates in each member account: seeding and
    # listing as discovery's own read-only role would blur what that role is seen to call.
    parser.add_argument("--role-name", default="OrganizationAccountAccessRole")
    parser.add_argument("--prefix", default="sample")
    args = parser.parse_args()
    answer: dict[str, Any] = {}
    for account in args.account:
        s = session(args.endpoint, account, args.role_name)
        if args.command == "seed":
            answer[account] = {
                "regions": {region: seed_region(s, args.endpoint, account, region, args.prefix) for region in args.region},
                **seed_account(s, args.endpoint, account, args.prefix),
            }
        else:
            answer[account] = expected(s, args.endpoint, account, args.region)
    json.dump(answer, sys.stdout)


if __name__ == "__main__":
    main()
