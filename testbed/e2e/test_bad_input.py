"""End to end: bad input.  A real `onetouch serve` (see test_onetouch_ec2.Stack) is pointed at an
image, security group or KMS key EC2 does not accept.

What users care about: the host fails at once at the step that made the call, with the reason EC2
gave (or, where EC2 gives none, one that names the cause), without retrying a call that cannot
succeed, and nothing is left behind that no host owns.  The unknown subnet is in
test_onetouch_ec2.py.
"""
import pytest

from test_onetouch_ec2 import Stack, assert_exactly_one_each, base  # noqa: F401  (base is a fixture)


def reconcile_finds_nothing(stack):
    report = stack.api("GET", "/v1/admin/reconcile")
    return report["orphans"] == [] and report["vanished"] == []


@pytest.mark.parametrize(
    "setting, bad_id, code",
    [
        # moto validates images only with MOTO_ENABLE_AMI_VALIDATION=true (scripts/ec2-testbed sets it):
        # 400 InvalidAMIID.NotFound "The image id '[ami-0000000000000bad]' does not exist".
        ("AMI_ID", "ami-0000000000000bad", "InvalidAMIID.NotFound"),
        # 400 InvalidGroup.NotFound "The security group 'sg-0000000000000bad' does not exist".
        ("SECURITY_GROUP_ID", "sg-0000000000000bad", "InvalidGroup.NotFound"),
    ],
    ids=["unknown-ami", "unknown-security-group"],
)
def test_unknown_launch_setting_fails_at_provision_with_the_aws_reason_and_no_retry(base, setting, bad_id, code):
    stack = Stack(base)
    try:
        config = (base / "onetouch.yaml").read_text()
        assert config.count(stack.ec2[setting]) == 1
        (base / "onetouch.yaml").write_text(config.replace(stack.ec2[setting], bad_id))
        stack.start_serve()
        stack.create(["bad-01"])
        [host] = stack.wait_settled(timeout=60)
        assert host["state"] == "failed" and host["step"] == "provision", (host["state"], host.get("step"))
        assert code in host["reason"] and bad_id in host["reason"], host["reason"]
        assert "onetouch retry bad-01 --from provision" in host["reason"]
        stats = stack.front_stats()["byAction"]
        assert stats["RunInstances"] == {"forwarded": 1}, "zero retries"
        assert "CreateVolume" not in stats
        instances, volumes = stack.managed()
        assert not instances and not volumes, "nothing left behind"
        assert reconcile_finds_nothing(stack)
    finally:
        stack.stop()


# EC2 does not refuse a KMS key EBS cannot use (disabled, pending deletion, missing, or not granted to
# the caller) when CreateVolume is called: it answers 200 `creating`, then the volume vanishes
# (InvalidVolume.NotFound, absent from every listing); the same client token again gets
# IdempotentParameterMismatch.  EC2 gives no error code at all, so the orchestrator has to name the
# cause itself.  The front plays this with `refused_kms_keys` (sources in testbed/ec2/front.py).
def test_refused_kms_key_fails_at_attach_volume_naming_the_key_and_retrying_that_step_recovers(base):
    stack = Stack(base)
    try:
        key = stack.ec2["KMS_KEY_ARN"]
        stack.set_front(refused_kms_keys=[key])
        stack.start_serve()
        stack.create(["kms-01"])
        [host] = stack.wait_settled(timeout=90)
        assert host["state"] == "failed" and host["step"] == "attach-volume", (host["state"], host.get("step"))
        assert "KMS" in host["reason"] and key in host["reason"], host["reason"]
        # The instance is fine: once the key is usable again, only the volume has to be made.
        assert "onetouch retry kms-01 --from attach-volume" in host["reason"], host["reason"]
        assert stack.front_stats()["byAction"]["CreateVolume"] == {"kmsRefused": 1}, "zero retries"
        instances, volumes = stack.managed()
        assert not volumes, "no data volume left"
        assert list(instances) == [host["id"]] and len(instances[host["id"]]) == 1, "the failed host keeps its instance"
        assert reconcile_finds_nothing(stack), "the instance belongs to the failed host: no orphan"

        # The key is usable again.  The retry needs a new client token: EC2 answers the old one with
        # IdempotentParameterMismatch now that its volume is gone.
        stack.set_front(refused_kms_keys=[])
        stack.api("POST", "/v1/admin/hosts/kms-01/retry", {"from": "attach-volume"})
        [host] = stack.wait_settled(timeout=120)
        assert host["state"] == "ready", (host["state"], host.get("step"), host.get("reason"))
        assert_exactly_one_each(stack, [host])
    finally:
        stack.stop()
