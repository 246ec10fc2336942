#!/usr/bin/env python3
"""Create the fixed AWS resources a provisioning run needs, in moto, and print their ids.

Output is shell `KEY=value` lines (VPC_ID, SUBNET_ID, AVAILABILITY_ZONE, SECURITY_GROUP_ID,
INSTANCE_PROFILE, INSTANCE_PROFILE_ARN, KMS_KEY_ARN, KMS_KEY_ALIAS, AMI_ID).  Re-running against
the same moto reuses what is already there (found by name / tag), so it is safe to call twice.

Talk to moto directly, not through the front: seeding must not be throttled or faulted.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys

import boto3
from botocore.config import Config

NAME = "onetouch-testbed"


def clients(endpoint: str, region: str):
    kw = dict(
        endpoint_url=endpoint,
        region_name=region,
        aws_access_key_id="testing",  # moto accepts any credentials
        aws_secret_access_key="testing",
        config=Config(retries={"max_attempts": 5, "mode": "standard"}),
    )
    return boto3.client("ec2", **kw), boto3.client("iam", **kw), boto3.client("kms", **kw)


def name_tag(kind: str) -> list[dict]:
    return [{"ResourceType": kind, "Tags": [{"Key": "Name", "Value": NAME}]}]


def seed(endpoint: str, region: str) -> dict[str, str]:
    ec2, iam, kms = clients(endpoint, region)
    zone = f"{region}a"
    by_name = [{"Name": "tag:Name", "Values": [NAME]}]

    vpcs = ec2.describe_vpcs(Filters=by_name)["Vpcs"]
    vpc_id = vpcs[0]["VpcId"] if vpcs else ec2.create_vpc(
        CidrBlock="10.42.0.0/16", TagSpecifications=name_tag("vpc"))["Vpc"]["VpcId"]

    subnets = ec2.describe_subnets(Filters=by_name + [{"Name": "vpc-id", "Values": [vpc_id]}])["Subnets"]
    if subnets:
        subnet_id, zone = subnets[0]["SubnetId"], subnets[0]["AvailabilityZone"]
    else:
        subnet_id = ec2.create_subnet(
            VpcId=vpc_id, CidrBlock="10.42.1.0/24", AvailabilityZone=zone, TagSpecifications=name_tag("subnet")
        )["Subnet"]["SubnetId"]

    groups = ec2.describe_security_groups(
        Filters=[{"Name": "group-name", "Values": [NAME]}, {"Name": "vpc-id", "Values": [vpc_id]}]
    )["SecurityGroups"]
    sg_id = groups[0]["GroupId"] if groups else ec2.create_security_group(
        GroupName=NAME, Description="onetouch test bed hosts", VpcId=vpc_id)["GroupId"]

    # Instance profile with a role, as a real launch would use.
    try:
        profile = iam.get_instance_profile(InstanceProfileName=NAME)["InstanceProfile"]
    except iam.exceptions.NoSuchEntityException:
        trust = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}],
        }
        try:
            iam.create_role(RoleName=NAME, AssumeRolePolicyDocument=json.dumps(trust))
        except iam.exceptions.EntityAlreadyExistsException:
            pass
        profile = iam.create_instance_profile(InstanceProfileName=NAME)["InstanceProfile"]
        iam.add_role_to_instance_profile(InstanceProfileName=NAME, RoleName=NAME)

    # KMS key for EBS encryption, reachable through an alias too.
    alias = f"alias/{NAME}"
    aliases = {a["AliasName"]: a for a in kms.list_aliases()["Aliases"]}
    if alias in aliases and aliases[alias].get("TargetKeyId"):
        key_arn = kms.describe_key(KeyId=aliases[alias]["TargetKeyId"])["KeyMetadata"]["Arn"]
    else:
        key_arn = kms.create_key(Description="onetouch test bed EBS key")["KeyMetadata"]["Arn"]
        kms.create_alias(AliasName=alias, TargetKeyId=key_arn.rsplit("/", 1)[-1])

    # Our own AMI with the root device a Nitro Linux image has (moto's defaults use /dev/sda1).
    images = ec2.describe_images(Owners=["self"], Filters=[{"Name": "name", "Values": [NAME]}])["Images"]
    ami_id = images[0]["ImageId"] if images else ec2.register_image(
        Name=NAME,
        Description="onetouch test bed image (no real OS: the host agent plays the VM)",
        Architecture="x86_64",
        VirtualizationType="hvm",
        RootDeviceName="/dev/xvda",
        BlockDeviceMappings=[{"DeviceName": "/dev/xvda", "Ebs": {"VolumeSize": 8, "VolumeType": "gp3"}}],
    )["ImageId"]

    return {
        "VPC_ID": vpc_id,
        "SUBNET_ID": subnet_id,
        "AVAILABILITY_ZONE": zone,
        "SECURITY_GROUP_ID": sg_id,
        "INSTANCE_PROFILE": NAME,
        "INSTANCE_PROFILE_ARN": profile["Arn"],
        "KMS_KEY_ARN": key_arn,
        "KMS_KEY_ALIAS": alias,
        "AMI_ID": ami_id,
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Seed moto with the test bed's VPC, subnet, SG, profile, KMS key, AMI.")
    p.add_argument("--endpoint", required=True, help="moto URL, e.g. http://127.0.0.1:5055")
    p.add_argument("--region", default="us-east-1")
    args = p.parse_args(argv)
    for key, value in seed(args.endpoint, args.region).items():
        print(f"{key}={shlex.quote(value)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
