"""Tests of the EC2 test bed: the fault-injecting front (front.py), the seeder and the host agent.

Run with `python3 -m pytest testbed/ec2 -q`.  They start a real moto_server, a real front and real
host agents as subprocesses on free 127.0.0.1 ports, and stop them by PID at the end.
"""

from __future__ import annotations

import email.utils
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

import front as front_module  # testbed/ec2 is on sys.path (pytest rootdir insertion)
import host_agent

HERE = Path(__file__).resolve().parent
PY = sys.executable
AMI = "ami-1e749f67"  # one of moto's default AMIs (AMI validation is off anyway)
TAG = "onetouch:host-id"

BASELINE = {
    "throttle": False,
    "error_rate": 0.0,
    "lose_rate": 0.0,
    "lose_mode": "close",
    "lag_seconds": 0.0,
    "fault_actions": None,
    "seed": 0,
    "refused_kms_keys": [],
    "expire_requests": False,
    "clock_skew_seconds": 0.0,
}


# ------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout=20.0, interval=0.1, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def http_json(method: str, url: str, doc=None) -> tuple[int, dict]:
    data = json.dumps(doc).encode() if doc is not None else (b"" if method == "POST" else None)
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


def stop_process(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def ec2_client(endpoint: str, region: str = "us-east-1", pool: int = 10):
    return boto3.client(
        "ec2",
        endpoint_url=endpoint,
        region_name=region,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        # One attempt: the tests want to see each fault, not botocore's retry of it.
        config=Config(retries={"total_max_attempts": 1}, read_timeout=30, max_pool_connections=pool),
    )


def error_code(exc: ClientError) -> tuple[str, int]:
    return exc.response["Error"]["Code"], exc.response["ResponseMetadata"]["HTTPStatusCode"]


def live_instances(moto_ec2) -> list[dict]:
    return [
        i
        for r in moto_ec2.describe_instances()["Reservations"]
        for i in r["Instances"]
        if i["State"]["Name"] != "terminated"
    ]


def run_kwargs(**extra) -> dict:
    return {"ImageId": AMI, "MinCount": 1, "MaxCount": 1, "InstanceType": "t3.micro", **extra}


# ------------------------------------------------------------------------------------------
# fixtures: moto, the front
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def moto(tmp_path_factory):
    port = free_port()
    log = open(tmp_path_factory.mktemp("moto") / "moto.log", "w")
    proc = subprocess.Popen([PY, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: http_ok(f"{url}/moto-api/"), timeout=60, what="moto_server")
        yield url
    finally:
        stop_process(proc)
        log.close()


@pytest.fixture(scope="module")
def front_url(moto, tmp_path_factory):
    d = tmp_path_factory.mktemp("front")
    port_file = d / "front.port"
    log = open(d / "front.log", "w")
    moto_port = moto.rsplit(":", 1)[1]
    proc = subprocess.Popen(
        [PY, str(HERE / "front.py"), "--port", "0", "--port-file", str(port_file), "--moto-port", moto_port],
        stdout=log,
        stderr=log,
    )
    try:
        wait_until(lambda: port_file.exists() and port_file.read_text().strip(), what="front port file")
        url = f"http://127.0.0.1:{port_file.read_text().strip()}"
        wait_until(lambda: http_ok(f"{url}/_front/health"), what="front health")
        yield url
    finally:
        stop_process(proc)
        log.close()


class FrontControl:
    def __init__(self, url: str, moto_url: str):
        self.url = url
        self.moto_url = moto_url
        self.ec2 = ec2_client(url, pool=50)  # through the front
        self.moto_ec2 = ec2_client(moto_url)  # straight to moto, to check side effects

    def config(self, **changes) -> dict:
        status, doc = http_json("POST", f"{self.url}/_front/config", changes)
        assert status == 200, doc
        return doc

    def stats(self) -> dict:
        status, doc = http_json("GET", f"{self.url}/_front/stats")
        assert status == 200
        return doc

    def outcome(self, action: str, outcome: str) -> int:
        return self.stats()["byAction"].get(action, {}).get(outcome, 0)


@pytest.fixture
def front(front_url, moto):
    """A front with clean counters, tokens and moto state, and no faults unless a test asks."""
    status, doc = http_json("POST", f"{front_url}/_front/reset")
    assert status == 200 and doc["motoReset"] is True
    control = FrontControl(front_url, moto)
    control.config(**BASELINE)
    return control


# ------------------------------------------------------------------------------------------
# front: idempotency
# ------------------------------------------------------------------------------------------


def test_run_instances_same_token_three_times_launches_one_instance(front):
    ids = [front.ec2.run_instances(**run_kwargs(ClientToken="req-1-1"))["Instances"][0]["InstanceId"] for _ in range(3)]

    assert len(set(ids)) == 1
    assert [i["InstanceId"] for i in live_instances(front.moto_ec2)] == ids[:1]
    assert front.outcome("RunInstances", "forwarded") == 1
    assert front.outcome("RunInstances", "replayed") == 2


def test_run_instances_same_token_other_params_is_parameter_mismatch(front):
    front.ec2.run_instances(**run_kwargs(ClientToken="req-2-1"))
    with pytest.raises(ClientError) as err:
        front.ec2.run_instances(**run_kwargs(ClientToken="req-2-1", InstanceType="t3.large"))

    assert error_code(err.value) == ("IdempotentParameterMismatch", 400)
    assert len(live_instances(front.moto_ec2)) == 1
    assert front.outcome("RunInstances", "idempotencyError") == 1


def test_run_instances_token_of_terminated_instance_is_rejected(front):
    iid = front.ec2.run_instances(**run_kwargs(ClientToken="req-3-1"))["Instances"][0]["InstanceId"]
    front.ec2.terminate_instances(InstanceIds=[iid])
    with pytest.raises(ClientError) as err:
        front.ec2.run_instances(**run_kwargs(ClientToken="req-3-1"))

    assert error_code(err.value) == ("IdempotentInstanceTerminated", 400)
    assert live_instances(front.moto_ec2) == []


def test_tokens_are_per_region(front):
    west = ec2_client(front.url, region="eu-west-1")
    a = front.ec2.run_instances(**run_kwargs(ClientToken="req-4-1"))["Instances"][0]["InstanceId"]
    b = west.run_instances(**run_kwargs(ClientToken="req-4-1"))["Instances"][0]["InstanceId"]
    assert a != b


def test_create_volume_same_token_replays(front):
    kw = {"AvailabilityZone": "us-east-1a", "Size": 10, "VolumeType": "gp3", "ClientToken": "vol-req-1"}
    first = front.ec2.create_volume(**kw)["VolumeId"]
    second = front.ec2.create_volume(**kw)["VolumeId"]
    with pytest.raises(ClientError) as err:
        front.ec2.create_volume(**{**kw, "Size": 20})

    assert first == second
    assert [v["VolumeId"] for v in front.moto_ec2.describe_volumes()["Volumes"]] == [first]
    assert error_code(err.value) == ("IdempotentParameterMismatch", 400)


def test_concurrent_retries_with_one_token_launch_once(front):
    with ThreadPoolExecutor(10) as pool:
        ids = list(
            pool.map(
                lambda _: front.ec2.run_instances(**run_kwargs(ClientToken="req-5-1"))["Instances"][0]["InstanceId"],
                range(10),
            )
        )
    assert len(set(ids)) == 1
    assert len(live_instances(front.moto_ec2)) == 1


# ------------------------------------------------------------------------------------------
# front: expired credentials and a skewed clock
# ------------------------------------------------------------------------------------------


def test_expired_requests_are_refused_until_switched_off_and_have_no_effect(front):
    front.config(expire_requests=True, throttle=True)
    for _ in range(8):  # more than RunInstances' bucket holds: nothing is counted against it
        with pytest.raises(ClientError) as err:
            front.ec2.run_instances(**run_kwargs())
        assert error_code(err.value) == ("RequestExpired", 400)
    assert live_instances(front.moto_ec2) == []
    assert front.outcome("RunInstances", "expired") == 8

    front.config(expire_requests=False)
    front.ec2.run_instances(**run_kwargs())
    assert len(live_instances(front.moto_ec2)) == 1


def test_a_skewed_clock_shows_in_the_date_header_and_refuses_requests_signed_far_off(front):
    front.config(clock_skew_seconds=1200)
    with pytest.raises(ClientError) as err:
        front.ec2.describe_instances()
    code = error_code(err.value)
    server = email.utils.parsedate_to_datetime(err.value.response["ResponseMetadata"]["HTTPHeaders"]["date"]).timestamp()

    assert code == ("AuthFailure", 401)
    assert abs(server - (time.time() + 1200)) < 5
    assert front.outcome("DescribeInstances", "skewRefused") == 1

    front.config(clock_skew_seconds=600)  # within SigV4's 15 minutes: accepted
    front.ec2.describe_instances()


def test_skew_and_expiry_settings_are_checked(front):
    for bad in ({"expire_requests": "yes"}, {"clock_skew_seconds": "20m"}, {"clock_skew_seconds": True}):
        status, doc = http_json("POST", f"{front.url}/_front/config", bad)
        assert status == 400, (bad, doc)


# ------------------------------------------------------------------------------------------
# front: throttling
# ------------------------------------------------------------------------------------------


def test_sixth_quick_run_instances_is_throttled(front):
    front.config(throttle=True)
    started = time.monotonic()
    results = []
    for n in range(12):
        try:
            front.ec2.run_instances(**run_kwargs(ClientToken=f"burst-{n}"))
            results.append("ok")
        except ClientError as exc:
            results.append(error_code(exc))
            break
    elapsed = time.monotonic() - started

    assert results[:5] == ["ok"] * 5  # the bucket starts full with 5 tokens
    assert results[-1] == ("RequestLimitExceeded", 503)
    # Refill is 2 tokens/s, so a slow machine may squeeze in a few more before the 503.
    assert results.count("ok") <= 5 + 2 * elapsed + 1
    assert front.outcome("RunInstances", "throttled") == 1
    assert len(live_instances(front.moto_ec2)) == results.count("ok")  # throttled calls have no effect


def test_throttle_off_lets_bursts_through(front):
    for n in range(8):
        front.ec2.run_instances(**run_kwargs(ClientToken=f"calm-{n}"))
    assert front.stats()["byOutcome"]["throttled"] == 0


def test_bucket_categories_follow_ec2():
    b = front_module.bucket_for
    assert b("RunInstances", {})[1:] == (5, 2)
    assert b("TerminateInstances", {})[1:] == (100, 5)
    assert b("CreateVolume", {})[1:] == (100, 5)
    assert b("DeleteVolume", {})[1:] == (100, 5)
    assert b("CreateTags", {})[1:] == (100, 10)
    assert b("AttachVolume", {})[1:] == (50, 5)
    assert b("DescribeInstances", {})[1:] == (50, 10)
    assert b("DescribeInstances", {"InstanceId.1": "i-1"})[1:] == (50, 10)
    assert b("DescribeVolumes", {})[1:] == (50, 10)
    assert b("DescribeInstances", {"Filter.1.Name": "tag-key"})[1:] == (100, 20)
    assert b("DescribeInstances", {"MaxResults": "100"})[1:] == (100, 20)
    assert b("DescribeImages", {})[1:] == (100, 20)


def test_token_bucket_refills():
    now = [0.0]
    buckets = front_module.TokenBuckets(clock=lambda: now[0])
    assert all(buckets.take("r", "RunInstances", {}) for _ in range(5))
    assert not buckets.take("r", "RunInstances", {})
    assert buckets.take("other-region", "RunInstances", {})
    now[0] = 0.5  # 2 tokens/s -> one token back
    assert buckets.take("r", "RunInstances", {})
    assert not buckets.take("r", "RunInstances", {})


# ------------------------------------------------------------------------------------------
# front: eventual consistency
# ------------------------------------------------------------------------------------------


def test_new_instance_is_invisible_for_the_lag_then_appears(front):
    front.config(lag_seconds=2.0)
    tags = [{"ResourceType": "instance", "Tags": [{"Key": "lagtest", "Value": "1"}]}]
    launched = time.monotonic()
    iid = front.ec2.run_instances(**run_kwargs(TagSpecifications=tags))["Instances"][0]["InstanceId"]

    with pytest.raises(ClientError) as err:
        front.ec2.describe_instances(InstanceIds=[iid])
    assert error_code(err.value) == ("InvalidInstanceID.NotFound", 400)
    assert iid in err.value.response["Error"]["Message"]
    filtered = front.ec2.describe_instances(Filters=[{"Name": "tag:lagtest", "Values": ["1"]}])
    assert filtered["Reservations"] == []
    with pytest.raises(ClientError) as err:
        front.ec2.create_tags(Resources=[iid], Tags=[{"Key": "a", "Value": "b"}])
    assert error_code(err.value) == ("InvalidInstanceID.NotFound", 400)
    with pytest.raises(ClientError) as err:
        front.ec2.terminate_instances(InstanceIds=[iid])
    assert error_code(err.value) == ("InvalidInstanceID.NotFound", 400)
    assert [i["InstanceId"] for i in live_instances(front.moto_ec2)] == [iid]  # it does exist

    def visible():
        try:
            return front.ec2.describe_instances(InstanceIds=[iid])["Reservations"]
        except ClientError:
            return None

    wait_until(visible, timeout=10, what="instance visible")
    assert time.monotonic() - launched >= 1.5
    filtered = front.ec2.describe_instances(Filters=[{"Name": "tag:lagtest", "Values": ["1"]}])
    assert [i["InstanceId"] for r in filtered["Reservations"] for i in r["Instances"]] == [iid]
    assert front.stats()["byOutcome"]["notVisible"] >= 3


def test_the_client_token_filter_finds_an_instance_by_its_launch_token_once_visible(front):
    # EC2 documents `client-token` as a DescribeInstances filter; moto has none, the front adds it.
    front.config(lag_seconds=2.0)
    iid = front.ec2.run_instances(**run_kwargs(ClientToken="find-me-1"))["Instances"][0]["InstanceId"]
    front.ec2.run_instances(**run_kwargs(ClientToken="someone-else"))

    def by_token(*tokens):
        found = front.ec2.describe_instances(Filters=[{"Name": "client-token", "Values": list(tokens)}])
        return [i["InstanceId"] for r in found["Reservations"] for i in r["Instances"]]

    assert by_token("find-me-1") == []  # hidden by the lag, like every other describe
    wait_until(lambda: by_token("find-me-1") == [iid], timeout=10, what="instance found by its client token")
    assert by_token("never-used") == []
    assert by_token("find-me-1", "never-used") == [iid]


def test_other_instances_stay_listed_while_a_new_one_is_hidden(front):
    old = front.ec2.run_instances(**run_kwargs())["Instances"][0]["InstanceId"]
    front.config(lag_seconds=30.0)
    new = front.ec2.run_instances(**run_kwargs())["Instances"][0]["InstanceId"]
    listed = [i["InstanceId"] for r in front.ec2.describe_instances()["Reservations"] for i in r["Instances"]]
    assert old in listed and new not in listed


def test_new_volume_is_invisible_for_the_lag(front):
    front.config(lag_seconds=30.0)
    iid = front.moto_ec2.run_instances(**run_kwargs())["Instances"][0]["InstanceId"]
    vid = front.ec2.create_volume(AvailabilityZone="us-east-1a", Size=10)["VolumeId"]

    with pytest.raises(ClientError) as err:
        front.ec2.describe_volumes(VolumeIds=[vid])
    assert error_code(err.value) == ("InvalidVolume.NotFound", 400)
    assert vid not in [v["VolumeId"] for v in front.ec2.describe_volumes()["Volumes"]]
    with pytest.raises(ClientError) as err:
        front.ec2.attach_volume(VolumeId=vid, InstanceId=iid, Device="/dev/sdf")
    assert error_code(err.value) == ("InvalidVolume.NotFound", 400)
    assert front.moto_ec2.describe_volumes(VolumeIds=[vid])["Volumes"][0]["State"] == "available"


# ------------------------------------------------------------------------------------------
# front: random faults
# ------------------------------------------------------------------------------------------


def test_lost_response_still_creates_the_instance_and_the_retry_replays_it(front):
    front.config(lose_rate=1.0, fault_actions=["RunInstances"])
    with pytest.raises(BotoCoreError):  # connection closed without a response
        front.ec2.run_instances(**run_kwargs(ClientToken="lost-1"))
    created = live_instances(front.moto_ec2)
    assert len(created) == 1

    front.config(lose_rate=0.0)
    retried = front.ec2.run_instances(**run_kwargs(ClientToken="lost-1"))["Instances"][0]["InstanceId"]

    assert retried == created[0]["InstanceId"]
    assert len(live_instances(front.moto_ec2)) == 1
    assert front.outcome("RunInstances", "lost") == 1
    assert front.outcome("RunInstances", "replayed") == 1


def test_lost_response_can_look_like_a_gateway_error(front):
    front.config(lose_rate=1.0, lose_mode="502", fault_actions=["CreateVolume"])
    with pytest.raises(ClientError) as err:
        front.ec2.create_volume(AvailabilityZone="us-east-1a", Size=1)
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 502
    assert len(front.moto_ec2.describe_volumes()["Volumes"]) == 1


def test_injected_5xx_has_no_side_effect(front):
    front.config(error_rate=1.0)
    with pytest.raises(ClientError) as err:
        front.ec2.run_instances(**run_kwargs(ClientToken="err-1"))

    assert error_code(err.value) == ("InternalError", 500)
    assert live_instances(front.moto_ec2) == []
    assert front.outcome("RunInstances", "injected5xx") == 1
    front.config(error_rate=0.0)  # the token was not consumed: the retry launches
    front.ec2.run_instances(**run_kwargs(ClientToken="err-1"))
    assert len(live_instances(front.moto_ec2)) == 1


def test_faults_are_reproducible_for_a_seed(front):
    def pattern():
        out = []
        for _ in range(16):
            try:
                front.ec2.describe_volumes()
                out.append("ok")
            except ClientError:
                out.append("500")
        return out

    front.config(seed=42, error_rate=0.5)
    first = pattern()
    front.config(seed=42)
    second = pattern()
    assert first == second
    assert "ok" in first and "500" in first


def test_fifty_concurrent_connections(front):
    with ThreadPoolExecutor(50) as pool:
        results = list(pool.map(lambda _: front.ec2.describe_instances()["ResponseMetadata"]["HTTPStatusCode"], range(150)))
    assert results == [200] * 150
    assert front.outcome("DescribeInstances", "forwarded") == 150


# ------------------------------------------------------------------------------------------
# front: KMS keys EBS cannot use
# ------------------------------------------------------------------------------------------

REFUSED_KEY = "arn:aws:kms:us-east-1:123456789012:key/0000dead-0000-4000-8000-00000000dead"


def test_volume_with_a_refused_kms_key_is_accepted_then_vanishes(front):
    front.config(refused_kms_keys=[REFUSED_KEY])
    kw = {"AvailabilityZone": "us-east-1a", "Size": 10, "Encrypted": True, "KmsKeyId": REFUSED_KEY}
    kw["ClientToken"] = "kms-1"
    created = front.ec2.create_volume(**kw)

    assert created["State"] == "creating"  # moto's own volumes are available at once
    assert created["Encrypted"] is True and created["KmsKeyId"] == REFUSED_KEY
    assert front.moto_ec2.describe_volumes()["Volumes"] == [], "EBS deleted it again"
    with pytest.raises(ClientError) as err:
        front.ec2.describe_volumes(VolumeIds=[created["VolumeId"]])
    assert error_code(err.value) == ("InvalidVolume.NotFound", 400)
    filtered = front.ec2.describe_volumes(Filters=[{"Name": "volume-id", "Values": [created["VolumeId"]]}])
    assert filtered["Volumes"] == []
    with pytest.raises(ClientError) as err:
        front.ec2.create_volume(**kw)  # the same token once more
    assert error_code(err.value) == ("IdempotentParameterMismatch", 400)
    assert front.moto_ec2.describe_volumes()["Volumes"] == []
    assert front.stats()["byAction"]["CreateVolume"] == {"kmsRefused": 1, "idempotencyError": 1}


def test_only_the_refused_key_is_refused_and_only_while_configured(front):
    front.config(refused_kms_keys=[REFUSED_KEY])
    other = REFUSED_KEY.replace("dead", "beef")
    kept = [
        front.ec2.create_volume(AvailabilityZone="us-east-1a", Size=1, Encrypted=True, KmsKeyId=other),
        front.ec2.create_volume(AvailabilityZone="us-east-1a", Size=1, Encrypted=True),
    ]
    refused = front.ec2.create_volume(AvailabilityZone="us-east-1a", Size=1, Encrypted=True, KmsKeyId=REFUSED_KEY)
    front.config(refused_kms_keys=[])
    kept.append(front.ec2.create_volume(AvailabilityZone="us-east-1a", Size=1, Encrypted=True, KmsKeyId=REFUSED_KEY))

    assert [v["State"] for v in kept] == ["available"] * 3 and refused["State"] == "creating"
    in_moto = {v["VolumeId"] for v in front.moto_ec2.describe_volumes()["Volumes"]}
    assert in_moto == {v["VolumeId"] for v in kept}
    assert front.stats()["byAction"]["CreateVolume"] == {"forwarded": 3, "kmsRefused": 1}


def test_refused_kms_keys_from_the_command_line_and_checked_on_update(moto, tmp_path):
    port_file = tmp_path / "front.port"
    log = open(tmp_path / "front.log", "w")
    args = ["--port", "0", "--port-file", str(port_file), "--moto-port", moto.rsplit(":", 1)[1], "--quiet"]
    args += ["--refuse-kms-key", REFUSED_KEY, "--refuse-kms-key", "alias/gone"]
    proc = subprocess.Popen([PY, str(HERE / "front.py"), *args], stdout=log, stderr=log)
    try:
        wait_until(lambda: port_file.exists() and port_file.read_text().strip(), what="front port file")
        url = f"http://127.0.0.1:{port_file.read_text().strip()}"
        status, doc = http_json("GET", f"{url}/_front/config")
        assert status == 200 and doc["refused_kms_keys"] == [REFUSED_KEY, "alias/gone"]
        for bad in ("alias/gone", [""], [1]):
            status, doc = http_json("POST", f"{url}/_front/config", {"refused_kms_keys": bad})
            assert status == 400 and "refused_kms_keys" in doc["error"]
        status, doc = http_json("POST", f"{url}/_front/config", {"refused_kms_keys": []})
        assert status == 200 and doc["refused_kms_keys"] == []
    finally:
        stop_process(proc)
        log.close()


# ------------------------------------------------------------------------------------------
# front: counters and control endpoints
# ------------------------------------------------------------------------------------------


def test_counters_by_action_and_outcome_and_reset(front):
    front.ec2.run_instances(**run_kwargs(ClientToken="c-1"))
    front.ec2.run_instances(**run_kwargs(ClientToken="c-1"))
    front.ec2.describe_instances()
    front.config(error_rate=1.0)
    with pytest.raises(ClientError):
        front.ec2.describe_volumes()

    stats = front.stats()
    assert stats["total"] == 4
    assert stats["byAction"]["RunInstances"] == {"forwarded": 1, "replayed": 1}
    assert stats["byAction"]["DescribeInstances"] == {"forwarded": 1}
    assert stats["byAction"]["DescribeVolumes"] == {"injected5xx": 1}
    assert sum(stats["byOutcome"].values()) == stats["total"]
    assert stats["idempotencyTokens"] == 1
    assert stats["config"]["error_rate"] == 1.0

    status, doc = http_json("POST", f"{front.url}/_front/reset")
    assert status == 200 and doc == {"status": "ok", "motoReset": True}
    stats = front.stats()
    assert stats["total"] == 0 and stats["idempotencyTokens"] == 0
    assert live_instances(front.moto_ec2) == []


def test_control_endpoints(front):
    status, doc = http_json("GET", f"{front.url}/_front/health")
    assert status == 200 and doc["status"] == "ok"
    status, doc = http_json("POST", f"{front.url}/_front/config", {"nonsense": 1})
    assert status == 400 and "nonsense" in doc["error"]
    status, doc = http_json("POST", f"{front.url}/_front/config", {"error_rate": 2})
    assert status == 400
    status, doc = http_json("GET", f"{front.url}/_front/config")
    assert status == 200 and doc == BASELINE
    status, _ = http_json("GET", f"{front.url}/_front/nothing")
    assert status == 404


def test_launch_feed_lists_what_moto_launched_from_the_nth_on_once_per_instance(front):
    first = front.ec2.run_instances(**run_kwargs(ClientToken="feed-1"))["Instances"][0]["InstanceId"]
    front.ec2.run_instances(**run_kwargs(ClientToken="feed-1"))  # a replay launches nothing
    second = front.ec2.run_instances(**run_kwargs())["Instances"][0]["InstanceId"]
    front.ec2.create_volume(AvailabilityZone="us-east-1a", Size=1)  # volumes are not launches
    status, doc = http_json("GET", f"{front.url}/_front/launched")
    assert status == 200 and doc == {"instances": [first, second], "next": 2, "terminated": [], "attachments": []}
    front.ec2.terminate_instances(InstanceIds=[first])
    status, doc = http_json("GET", f"{front.url}/_front/launched?after=1")
    assert doc == {"instances": [second], "next": 2, "terminated": [first], "attachments": []}
    status, doc = http_json("GET", f"{front.url}/_front/launched?after=x")
    assert status == 400
    http_json("POST", f"{front.url}/_front/reset")
    assert http_json("GET", f"{front.url}/_front/launched")[1] == {"instances": [], "next": 0, "terminated": [], "attachments": []}


def test_other_services_pass_through_untouched(front):
    front.config(error_rate=1.0)
    iam = boto3.client(
        "iam", endpoint_url=front.url, region_name="us-east-1", aws_access_key_id="t", aws_secret_access_key="t"
    )
    iam.list_roles()
    assert front.stats()["byOutcome"]["passthrough"] == 1


def test_strip_hidden_keeps_other_items():
    body = (
        b'<?xml version="1.0" encoding="UTF-8"?><DescribeVolumesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">'
        b"<requestId>r</requestId><volumeSet><item><volumeId>vol-1</volumeId></item>"
        b"<item><volumeId>vol-2</volumeId></item></volumeSet></DescribeVolumesResponse>"
    )
    out = front_module.strip_hidden("DescribeVolumes", body, {"vol-1"})
    assert b"vol-1" not in out and b"<volumeId>vol-2</volumeId>" in out
    assert b'xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"' in out
    assert front_module.strip_hidden("DescribeVolumes", body, {"vol-9"}) is body


# ------------------------------------------------------------------------------------------
# seed.py
# ------------------------------------------------------------------------------------------


def test_seed_writes_ids_and_is_rerunnable(moto):
    def run_seed():
        out = subprocess.run(
            [PY, str(HERE / "seed.py"), "--endpoint", moto, "--region", "ap-southeast-2"],
            check=True, capture_output=True, text=True, timeout=120,
        ).stdout
        return dict(line.split("=", 1) for line in out.splitlines())

    first = run_seed()
    assert set(first) >= {"SUBNET_ID", "SECURITY_GROUP_ID", "INSTANCE_PROFILE", "KMS_KEY_ARN", "AMI_ID"}
    assert first["SUBNET_ID"].startswith("subnet-") and first["AMI_ID"].startswith("ami-")
    assert first["KMS_KEY_ARN"].startswith("arn:aws:kms:ap-southeast-2:")
    assert run_seed() == first


# ------------------------------------------------------------------------------------------
# host agent: unit
# ------------------------------------------------------------------------------------------


def user_data(url: str, host_id: str, token: str) -> str:
    return (
        "#cloud-config\n"
        "write_files:\n"
        "  - path: /etc/onetouch/bootstrap.sh\n"
        "    permissions: '0700'\n"
        "    content: |\n"
        "      #!/bin/sh\n"
        "  - path: /etc/onetouch/host.env\n"
        "    permissions: '0600'\n"
        "    content: |\n"
        f"      ONETOUCH_URL='{url}'\n"
        f"      ONETOUCH_HOST_ID='{host_id}'\n"
        f"      ONETOUCH_TOKEN='{token}'\n"
        "runcmd:\n"
        "  - [/etc/onetouch/bootstrap.sh]\n"
    )


def test_host_env_is_read_from_cloud_config():
    raw = user_data("http://127.0.0.1:1", "web-01", "t'ok").replace("'t'ok'", "'t'\\''ok'").encode()
    env = host_agent.host_env_from_user_data(raw)
    assert env == {"ONETOUCH_URL": "http://127.0.0.1:1", "ONETOUCH_HOST_ID": "web-01", "ONETOUCH_TOKEN": "t'ok"}
    assert host_agent.host_env_from_user_data(b"#!/bin/sh\necho hi\n") is None
    assert host_agent.host_env_from_user_data(b"#cloud-config\nruncmd: [ls]\n") is None


def test_root_volume_falls_back_to_first_mapping():
    inst = {
        "RootDeviceName": "/dev/sda1",
        "BlockDeviceMappings": [
            {"DeviceName": "/dev/xvda", "Ebs": {"VolumeId": "vol-root"}},
            {"DeviceName": "/dev/sdf", "Ebs": {"VolumeId": "vol-data"}},
        ],
    }
    assert host_agent.root_volume_id(inst) == "vol-root"
    inst["RootDeviceName"] = "/dev/sdf"
    assert host_agent.root_volume_id(inst) == "vol-data"


# ------------------------------------------------------------------------------------------
# host agent: against moto and a stand-in orchestrator
# ------------------------------------------------------------------------------------------


class StandInOrchestrator:
    """The host API of `onetouch serve`, reduced to what the agent calls; records every call."""

    def __init__(self):
        self.lock = threading.Lock()
        self.calls: list[dict] = []
        self.enrollment: dict[str, list] = {}  # host -> [(status, doc), ...] served in order, then 410
        self.report_statuses: dict[str, list[int]] = {}  # host -> statuses for successive reports (then 200)
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def reply(self, status, doc):
                data = json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def handle_call(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                parts = self.path.strip("/").split("/")  # v1 hosts <id> reports|enrollment
                host, kind = parts[2], parts[3]
                with outer.lock:
                    outer.calls.append(
                        {"method": self.command, "host": host, "kind": kind, "body": body,
                         "auth": self.headers.get("Authorization"), "t": time.monotonic()}
                    )
                    if kind == "enrollment":
                        plan = outer.enrollment.setdefault(host, [])
                        status, doc = plan.pop(0) if plan else (410, {"error": "gone"})
                    else:
                        statuses = outer.report_statuses.get(host, [])
                        status, doc = (statuses.pop(0) if statuses else 200), {}
                self.reply(status, doc)

            do_GET = do_POST = handle_call

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def of(self, host: str) -> list[dict]:
        with self.lock:
            return [c for c in self.calls if c["host"] == host]

    def stages(self, host: str) -> list[str]:
        return [c["body"]["stage"] for c in self.of(host) if c["kind"] == "reports"]

    def report(self, host: str, stage: str) -> dict | None:
        found = [c["body"] for c in self.of(host) if c["kind"] == "reports" and c["body"]["stage"] == stage]
        return found[-1] if found else None

    def close(self):
        self.server.shutdown()
        self.server.server_close()


FAKE_KADMIN = """#!{python}
# Stand-in for MIT kadmin: records argv and the password read from stdin, accepts otp-good-*.
import json, os, sys
password = sys.stdin.readline().rstrip("\\n")
with open(os.environ["FAKE_KADMIN_RECORD"], "a") as f:
    f.write(json.dumps({{"argv": sys.argv[1:], "stdin": password}}) + "\\n")
if not password.startswith("otp-good"):
    print("kadmin: Incorrect password while initializing kadmin interface", file=sys.stderr)
    sys.exit(1)
with open(sys.argv[sys.argv.index("-k") + 1], "w") as f:
    f.write("fake keytab\\n")
"""


class AgentProcess:
    def __init__(self, moto_url: str, region: str, workdir: Path, extra=()):
        self.workdir = workdir
        self.state = workdir / "state.json"
        self.log = workdir / "agent.log"
        self.keytabs = workdir / "keytabs"
        self.keytabs.mkdir(exist_ok=True)
        self.kadmin_record = workdir / "kadmin.jsonl"
        kadmin = workdir / "kadmin"
        kadmin.write_text(FAKE_KADMIN.format(python=PY))
        kadmin.chmod(0o755)
        (workdir / "krb5.conf").write_text("[libdefaults]\n default_realm = PROV.TEST\n")
        self.env = {**os.environ, "KRB5_CONFIG": str(workdir / "krb5.conf"), "FAKE_KADMIN_RECORD": str(self.kadmin_record)}
        self.args = [
            PY, str(HERE / "host_agent.py"), "--moto", moto_url, "--region", region, "--state", str(self.state),
            "--kadmin", str(kadmin), "--keytab-dir", str(self.keytabs), "--deadline", "60", *extra,
        ]
        self.proc = None

    def start(self):
        self.stderr = open(self.log, "a")
        self.proc = subprocess.Popen(self.args, stdout=self.stderr, stderr=self.stderr, env=self.env)
        wait_until(lambda: "agent started" in self.log.read_text(), what="agent start")

    def stop(self):
        if self.proc:
            stop_process(self.proc)
            self.stderr.close()
            self.proc = None

    def kadmin_calls(self) -> list[dict]:
        if not self.kadmin_record.exists():
            return []
        return [json.loads(line) for line in self.kadmin_record.read_text().splitlines()]

    def state_of(self, iid: str) -> dict:
        return json.loads(self.state.read_text())["instances"].get(iid, {})


@pytest.fixture(scope="module")
def orchestrator():
    orch = StandInOrchestrator()
    yield orch
    orch.close()


@pytest.fixture(scope="module")
def agent(moto, tmp_path_factory):
    proc = AgentProcess(moto, "us-west-2", tmp_path_factory.mktemp("agent"), extra=("--fail-host", "h-fail"))
    proc.start()
    yield proc
    proc.stop()


def launch_host(moto_url: str, region: str, url: str, host_id: str, token: str) -> str:
    """RunInstances as the orchestrator would: tagged instance and (tagged) root volume."""
    ec2 = ec2_client(moto_url, region)
    tag = [{"Key": TAG, "Value": host_id}, {"Key": "Name", "Value": host_id}]
    return ec2.run_instances(
        **run_kwargs(
            UserData=user_data(url, host_id, token),
            BlockDeviceMappings=[{"DeviceName": "/dev/xvda", "Ebs": {"VolumeSize": 8}}],
            TagSpecifications=[
                {"ResourceType": "instance", "Tags": tag},
                {"ResourceType": "volume", "Tags": tag},
            ],
        )
    )["Instances"][0]["InstanceId"]


def attach_data_volume(moto_url: str, region: str, iid: str, host_id: str) -> str:
    ec2 = ec2_client(moto_url, region)
    zone = ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]["Placement"]["AvailabilityZone"]
    vid = ec2.create_volume(
        AvailabilityZone=zone, Size=10, Encrypted=True,
        TagSpecifications=[{"ResourceType": "volume", "Tags": [{"Key": TAG, "Value": host_id}]}],
    )["VolumeId"]
    ec2.attach_volume(VolumeId=vid, InstanceId=iid, Device="/dev/sdf")
    return vid


def mit_enrollment(host: str, otp: str) -> dict:
    return {"backend": "mit", "realm": "PROV.TEST", "server": "127.0.0.1:18888",
            "principal": f"host/{host}.prov.test", "oneTimePassword": otp}


def test_agent_runs_the_host_protocol(moto, orchestrator, agent):
    host, token, otp = "web-01", "tok-web-01-secret", "otp-good-7f3a9"
    orchestrator.enrollment[host] = [(425, {}), (425, {}), (200, mit_enrollment(host, otp))]
    orchestrator.report_statuses[host] = [503]  # the first "booted" report hits a hiccup
    iid = launch_host(moto, "us-west-2", orchestrator.url, host, token)

    wait_until(lambda: "booted" in orchestrator.stages(host), what="booted report")
    enrollment_gets = lambda: [c for c in orchestrator.of(host) if c["kind"] == "enrollment"]
    wait_until(lambda: len(enrollment_gets()) == 3, what="enrollment fetched")
    time.sleep(0.5)
    assert "volume-mounted" not in orchestrator.stages(host)  # the tagged root volume does not count
    vid = attach_data_volume(moto, "us-west-2", iid, host)
    wait_until(lambda: "configured" in orchestrator.stages(host), what="configured report")

    assert orchestrator.stages(host) == ["booted", "booted", "volume-mounted", "configured"]
    assert orchestrator.report(host, "volume-mounted") == {"stage": "volume-mounted", "volumeId": vid}
    assert orchestrator.report(host, "configured") == {"stage": "configured", "exitStatus": 0}
    calls = orchestrator.of(host)
    assert all(c["auth"] == f"Bearer {token}" for c in calls)
    kinds = [c["kind"] for c in calls]
    assert kinds.index("enrollment") > kinds.index("reports")  # booted first
    assert max(c["t"] for c in enrollment_gets()) < orchestrator.of(host)[-2]["t"]  # before volume-mounted

    principal = f"host/{host}.prov.test@PROV.TEST"
    keytab = str(agent.keytabs / f"{host}.keytab")
    [kadmin] = [k for k in agent.kadmin_calls() if principal in k["argv"]]
    assert kadmin == {"argv": ["-p", principal, "ktadd", "-k", keytab, principal], "stdin": otp}
    assert Path(keytab).exists()

    log = agent.log.read_text()
    assert token not in log and otp not in log
    assert agent.state_of(iid)["status"] == "configured"


def test_agent_reports_a_failing_config_pull(moto, orchestrator, agent):
    host = "h-fail"
    orchestrator.enrollment[host] = [(200, {"backend": "ipa", "oneTimePassword": "otp-ipa-1"})]
    iid = launch_host(moto, "us-west-2", orchestrator.url, host, "tok-h-fail")
    wait_until(lambda: "booted" in orchestrator.stages(host), what="booted report")
    attach_data_volume(moto, "us-west-2", iid, host)
    wait_until(lambda: "failed" in orchestrator.stages(host), what="failed report")

    assert orchestrator.stages(host) == ["booted", "volume-mounted", "failed"]
    failed = orchestrator.report(host, "failed")
    assert failed["exitStatus"] == 2 and "ansible-pull exited with status 2" in failed["logTail"]
    assert "otp-ipa-1" not in failed["logTail"]
    assert agent.state_of(iid)["status"] == "failed"


def test_agent_reports_a_kadmin_failure_with_its_stderr(moto, orchestrator, agent):
    host = "h-badotp"
    orchestrator.enrollment[host] = [(200, mit_enrollment(host, "otp-wrong-1"))]
    iid = launch_host(moto, "us-west-2", orchestrator.url, host, "tok-h-badotp")
    wait_until(lambda: "booted" in orchestrator.stages(host), what="booted report")
    attach_data_volume(moto, "us-west-2", iid, host)
    wait_until(lambda: "failed" in orchestrator.stages(host), what="failed report")

    failed = orchestrator.report(host, "failed")
    assert "Incorrect password" in failed["logTail"] and "otp-wrong-1" not in failed["logTail"]
    assert failed["exitStatus"] == 1


def test_agent_stops_a_host_whose_report_is_refused(moto, orchestrator, agent):
    host = "h-revoked"
    orchestrator.report_statuses[host] = [403]
    iid = launch_host(moto, "us-west-2", orchestrator.url, host, "tok-h-revoked")
    wait_until(lambda: agent.state_of(iid).get("status") == "refused", what="refused state")
    time.sleep(0.6)
    assert [c["kind"] for c in orchestrator.of(host)] == ["reports"]


def test_agent_ignores_instances_without_host_env(moto, agent):
    ec2 = ec2_client(moto, "us-west-2")
    iid = ec2.run_instances(
        **run_kwargs(
            UserData="#cloud-config\nruncmd: [ls]\n",
            TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": TAG, "Value": "h-plain"}]}],
        )
    )["Instances"][0]["InstanceId"]
    wait_until(lambda: agent.state_of(iid).get("status") == "ignored", what="ignored state")


def test_restarted_agent_resumes_without_repeating_itself(moto, orchestrator, tmp_path):
    # Its own region, so the module's agent does not see these instances.
    region = "eu-central-1"
    proc = AgentProcess(moto, region, tmp_path)
    done_host, mid_host = "h-done", "h-mid"
    orchestrator.enrollment[done_host] = [(200, mit_enrollment(done_host, "otp-good-done"))]
    orchestrator.enrollment[mid_host] = [(200, mit_enrollment(mid_host, "otp-good-mid"))]
    proc.start()
    try:
        done_iid = launch_host(moto, region, orchestrator.url, done_host, "tok-done")
        wait_until(lambda: orchestrator.stages(done_host) == ["booted"], what="booted")
        attach_data_volume(moto, region, done_iid, done_host)
        wait_until(lambda: "configured" in orchestrator.stages(done_host), what="configured")

        mid_iid = launch_host(moto, region, orchestrator.url, mid_host, "tok-mid")
        wait_until(lambda: any(c["kind"] == "enrollment" for c in orchestrator.of(mid_host)), what="mid enrollment")
        proc.stop()  # mid-way: booted reported, enrollment served, no volume yet
        assert proc.state_of(mid_iid)["stages"] == ["booted"]

        calls_before = len(orchestrator.of(done_host))
        proc.start()
        attach_data_volume(moto, region, mid_iid, mid_host)
        wait_until(lambda: "configured" in orchestrator.stages(mid_host), what="mid configured")
        time.sleep(0.5)

        assert len(orchestrator.of(done_host)) == calls_before  # nothing redone for a configured host
        assert orchestrator.stages(mid_host) == ["booted", "volume-mounted", "configured"]
        gets = [c for c in orchestrator.of(mid_host) if c["kind"] == "enrollment"]
        assert len(gets) == 2  # the second got 410 and the agent went on
        assert len([k for k in proc.kadmin_calls() if f"host/{mid_host}.prov.test@PROV.TEST" in k["argv"]]) == 0
    finally:
        proc.stop()


def test_agent_leaves_terminated_instances_alone(moto, orchestrator, agent):
    host = "h-gone"
    orchestrator.enrollment[host] = [(200, {"backend": "ipa", "oneTimePassword": "otp-gone"})]
    iid = launch_host(moto, "us-west-2", orchestrator.url, host, "tok-gone")
    wait_until(lambda: "booted" in orchestrator.stages(host), what="booted")
    ec2_client(moto, "us-west-2").terminate_instances(InstanceIds=[iid])
    wait_until(lambda: agent.state_of(iid).get("status") == "gone", what="gone state")
    assert orchestrator.stages(host) == ["booted"]
