"""End to end: a real `onetouch serve` process against moto + the fault-injecting front + the
simulated host agent + a throwaway MIT realm.

Asserts what users care about: every host reaches `ready`; exactly one instance and one encrypted
data volume per host, however the orchestrator is interrupted (SIGKILL at random moments) and
however EC2 misbehaves (5xx, lost responses, visibility lag, throttling); nothing left behind.
"""
import json
import os
import random
import signal
import socket
import sqlite3
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import boto3
import pytest

ROOT = Path(__file__).resolve().parents[2]
HOSTS = 20


def _bin(name="onetouch"):
    """The built `onetouch`, or `onetouch-crashtest` (the same program plus the ONETOUCH_TEST_KILL_AT
    kill switch, which the shipped `onetouch` does not have), from ONETOUCH_BIN's folder if it is set."""
    path = os.environ.get("ONETOUCH_BIN")
    if path:
        return str(Path(path).parent / name)
    out = subprocess.run(["swift", "build", "--show-bin-path"], cwd=ROOT, capture_output=True, text=True, check=True)
    return str(Path(out.stdout.strip()) / name)


def _free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _env_file(path):
    env = {}
    for line in Path(path).read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            k, v = line.split("=", 1)
            env[k] = v.strip().strip("'\"")
    return env


def wait_for_healthz(proc, url, log, timeout=30):
    """Until `onetouch serve` (proc) answers /healthz at url; its log's tail if it exits first."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url + "/healthz", timeout=1)
            return
        except Exception:
            if proc.poll() is not None:
                raise RuntimeError("onetouch serve exited: " + Path(log).read_text()[-2000:])
            time.sleep(0.1)
    raise RuntimeError("onetouch serve did not answer /healthz")


class Stack:
    """The test beds plus one `onetouch serve` process that can be killed and restarted."""

    def __init__(self, base: Path, front_args: str = "", retry=("100ms", "2s", 40, "5m"), directory="mit", agent=True,
                 agent_args=""):
        """`directory`: "mit" (a throwaway MIT realm) or "freeipa" (the FreeIPA test server);
        `agent`: whether the simulated host agent plays the hosts (False: the test plays them)."""
        self.base = base
        self.bin = _bin()
        self.crashtest_bin = _bin("onetouch-crashtest")
        self.directory = directory
        if directory == "mit":
            subprocess.run([ROOT / "scripts/krb5-testbed", "start", base / "krb5"], check=True, capture_output=True)
            self.krb = _env_file(base / "krb5/env")
            env = dict(os.environ, AGENT_ARGS="--kadmin /usr/bin/kadmin " + agent_args, FRONT_ARGS=front_args,
                       KRB5_CONFIG=self.krb["KRB5_CONFIG"])
        else:
            subprocess.run([ROOT / "scripts/freeipa-testbed", "start", base / "ipa"], check=True, capture_output=True,
                           env=dict(os.environ, IPA_TESTBED_HOSTNAME="localhost"))
            self.ipa = _env_file(base / "ipa/env")
            env = dict(os.environ, FRONT_ARGS=front_args)
        subprocess.run([ROOT / "scripts/ec2-testbed", "start", base / "ec2"], check=True, capture_output=True, env=env)
        self.ec2 = _env_file(base / "ec2/env")
        if not agent:
            os.kill(int(self.ec2["AGENT_PID"]), signal.SIGTERM)
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.token = os.urandom(24).hex()
        (base / "admin-token").write_text(self.token + "\n")
        os.chmod(base / "admin-token", 0o600)
        base_delay, max_delay, attempts, budget = retry
        e = self.ec2
        (base / "onetouch.yaml").write_text(f"""
listen: 127.0.0.1:{self.port}
public_url: {self.url}
database: {base}/onetouch.sqlite
master_key_file: {base}/master.key
admin_tokens: {{file: {base}/admin-token}}
domain: onetouch.test
concurrency: 32
timeouts: {{bootstrap: 3m, config_pull: 3m}}
retry: {{base_delay: {base_delay}, max_delay: {max_delay}, max_attempts: {attempts}, budget: {budget}}}
config: {{repository: "https://git.onetouch.test/config.git"}}
roles:
  web: {{instance_type: t3.small, volume_gib: 10}}
provider:
  kind: ec2
  region: {e['AWS_REGION']}
  endpoint: {e['EC2_ENDPOINT']}
  image_id: {e['AMI_ID']}
  subnet_id: {e['SUBNET_ID']}
  security_group_ids: [{e['SECURITY_GROUP_ID']}]
  instance_profile: {e['INSTANCE_PROFILE']}
  kms_key_id: {e['KMS_KEY_ARN']}
""" + self.directory_yaml())
        self.proc = None
        self.ec2_client = boto3.client(
            "ec2", endpoint_url=e["MOTO_URL"], region_name=e["AWS_REGION"], aws_access_key_id="testing",
            aws_secret_access_key="testing")

    def directory_yaml(self):
        if self.directory == "mit":
            k = self.krb
            return f"""directory:
  kind: mit
  realm: {k['KRB5_REALM']}
  admin_server: {k['KADMIN_ADDRESS']}
  kdc: 127.0.0.1:{k['KDC_PORT']}
  principal: {k['PROVISIONER_PRINCIPAL']}
  keytab: {k['PROVISIONER_KEYTAB']}
  krb5_config: {k['KRB5_CONFIG']}
"""
        i = self.ipa
        return f"""directory:
  kind: freeipa
  server: {i['IPA_HOSTNAME']}
  port: {i['IPA_PORT']}
  realm: {i['IPA_REALM']}
  domain: onetouch.test
  user: {i['IPA_USER']}
  password: {{file: {i['IPA_PASSWORD_FILE']}}}
  ca_bundle: {i['IPA_CA_BUNDLE']}
"""

    def start_serve(self, kill_at=None, extra_env=None):
        """Starts `onetouch serve` and waits until it answers; with kill_at ("STEP:POINT[:N]") it runs
        `onetouch-crashtest serve`, which SIGKILLs itself at that step boundary (ONETOUCH_TEST_KILL_AT) and
        may be gone before it answers, so then only the start is awaited."""
        env = dict(os.environ, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", ONETOUCH_LOG_LEVEL="info")
        env.pop("ONETOUCH_TEST_KILL_AT", None)
        if kill_at:
            env["ONETOUCH_TEST_KILL_AT"] = kill_at
        env.update(extra_env or {})
        log = open(self.base / "serve.log", "ab")
        self.proc = subprocess.Popen([self.crashtest_bin if kill_at else self.bin, "serve", "--config", str(self.base / "onetouch.yaml")],
                                     stdout=log, stderr=subprocess.STDOUT, env=env)
        if kill_at:
            return
        wait_for_healthz(self.proc, self.url, self.base / "serve.log")

    def kill_serve(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop_serve(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        subprocess.run([ROOT / "scripts/ec2-testbed", "stop", self.base / "ec2"], capture_output=True)
        if self.directory == "mit":
            subprocess.run([ROOT / "scripts/krb5-testbed", "stop", self.base / "krb5"], capture_output=True)
        else:
            subprocess.run([ROOT / "scripts/freeipa-testbed", "stop", self.base / "ipa"], capture_output=True)

    def api(self, method, path, body=None):
        req = urllib.request.Request(self.url + path, method=method, data=json.dumps(body).encode() if body else None,
                                     headers={"Authorization": "Bearer " + self.token, "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())

    def create(self, names):
        for name in names:
            self.api("POST", "/v1/admin/hosts", {"name": name, "role": "web"})

    def hosts(self):
        return self.api("GET", "/v1/admin/hosts")

    def wait_settled(self, timeout=240):
        deadline = time.time() + timeout
        while time.time() < deadline:
            hosts = self.hosts()
            if all(h["state"] in ("ready", "failed", "paused") for h in hosts):
                return hosts
            time.sleep(0.5)
        raise AssertionError("not settled: " + json.dumps([(h["name"], h["state"], h.get("step")) for h in self.hosts()]))

    def hosts_from_database(self):
        """(name, state, step) of every host, read from the database while `serve` is down."""
        with sqlite3.connect(f"file:{self.base}/onetouch.sqlite?mode=ro", uri=True) as db:
            return db.execute("SELECT name, state, step FROM hosts ORDER BY name").fetchall()

    def front_stats(self):
        with urllib.request.urlopen(self.ec2["EC2_ENDPOINT"] + "/_front/stats", timeout=5) as r:
            return json.loads(r.read())

    def set_front(self, **config):
        req = urllib.request.Request(self.ec2["EC2_ENDPOINT"] + "/_front/config", method="POST", data=json.dumps(config).encode(),
                                     headers={"Content-Type": "application/json"})
        urllib.request.urlopen(req, timeout=5).read()

    def managed(self):
        """Live instances and data volumes in moto, by host id."""
        instances, volumes = {}, {}
        for page in self.ec2_client.get_paginator("describe_instances").paginate(
                Filters=[{"Name": "tag-key", "Values": ["onetouch:host-id"]}]):
            for r in page["Reservations"]:
                for i in r["Instances"]:
                    if i["State"]["Name"] != "terminated":
                        tags = {t["Key"]: t["Value"] for t in i.get("Tags", [])}
                        instances.setdefault(tags["onetouch:host-id"], []).append(i)
        for v in self.ec2_client.describe_volumes(Filters=[{"Name": "tag:onetouch:volume", "Values": ["data"]}])["Volumes"]:
            tags = {t["Key"]: t["Value"] for t in v.get("Tags", [])}
            volumes.setdefault(tags["onetouch:host-id"], []).append(v)
        return instances, volumes


@pytest.fixture
def base():
    with tempfile.TemporaryDirectory(prefix="onetouch-e2e-") as d:
        yield Path(d)


def assert_exactly_one_each(stack, hosts):
    instances, volumes = stack.managed()
    ids = {h["id"] for h in hosts}
    assert set(instances) == ids, "every host has an instance and no instance is an orphan"
    assert set(volumes) == ids, "every host has a data volume and no volume is an orphan"
    for host in hosts:
        assert len(instances[host["id"]]) == 1, f"{host['name']} has {len(instances[host['id']])} instances"
        assert len(volumes[host["id"]]) == 1, f"{host['name']} has {len(volumes[host['id']])} data volumes"
        volume = volumes[host["id"]][0]
        assert volume["Encrypted"] and volume["KmsKeyId"] == stack.ec2["KMS_KEY_ARN"]
        assert volume["Attachments"][0]["InstanceId"] == host["instanceId"]
        assert instances[host["id"]][0]["MetadataOptions"]["HttpTokens"] == "required"
    report = stack.api("GET", "/v1/admin/reconcile")
    assert report["orphans"] == [] and report["vanished"] == [], report


def test_twenty_hosts_reach_ready_with_one_instance_and_one_volume_each(base):
    stack = Stack(base)
    try:
        stack.start_serve()
        stack.create([f"web-{i:02d}" for i in range(HOSTS)])
        hosts = stack.wait_settled()
        assert [h["state"] for h in hosts] == ["ready"] * HOSTS, [(h["name"], h.get("reason")) for h in hosts if h["state"] != "ready"]
        assert_exactly_one_each(stack, hosts)
        stats = stack.front_stats()["byAction"]
        calls = sum(sum(v.values()) for v in stats.values())
        print(f"EC2 calls: {calls} for {HOSTS} hosts ({calls / HOSTS:.2f} per host): {json.dumps(stats)}")
    finally:
        stack.stop()


@pytest.mark.parametrize("seed", [1, 2])
def test_sigkill_at_random_moments_never_duplicates(base, seed):
    rng = random.Random(seed)
    stack = Stack(base)
    try:
        stack.start_serve()
        stack.create([f"db-{i:02d}" for i in range(HOSTS)])
        kills = 0
        deadline = time.time() + 240
        while time.time() < deadline:
            time.sleep(rng.uniform(0.05, 0.6))
            stack.kill_serve()
            kills += 1
            stack.start_serve()
            hosts = stack.hosts()
            if all(h["state"] in ("ready", "failed", "paused") for h in hosts) or kills >= 12:
                break
        hosts = stack.wait_settled()
        assert [h["state"] for h in hosts] == ["ready"] * HOSTS, [(h["name"], h["state"], h.get("step"), h.get("reason")) for h in hosts if h["state"] != "ready"]
        assert_exactly_one_each(stack, hosts)
        print(f"seed {seed}: {kills} SIGKILLs")
    finally:
        stack.stop()


STEPS = ("provision", "preregister", "bootstrap", "attach-volume", "config-pull", "complete")
POINTS = ("attempt-committed", "external-call-made", "result-committed")


def test_sigkill_at_every_step_boundary_never_duplicates(base):
    """For every step and each point around its external call, `serve` SIGKILLs itself the first time
    any of the 20 hosts gets there; the next start resumes.  18 real SIGKILLs at exact boundaries."""
    stack = Stack(base)
    try:
        # The first boundary is met while the hosts are created: the engine begins a host's provision
        # the moment it exists, so a plain serve would have begun all 20 before it could be killed
        # (an attempt a crash left open is continued, not begun again). This serve dies when the 20th
        # host's provision attempt is committed: the 20th create may lose its answer, not its host.
        stack.start_serve(kill_at=f"provision:attempt-committed:{HOSTS}")
        wait_for_healthz(stack.proc, stack.url, base / "serve.log")
        names = [f"kv-{i:02d}" for i in range(HOSTS)]
        stack.create(names[:-1])
        try:
            stack.create(names[-1:])
        except OSError:
            pass
        status = stack.proc.wait(60)
        missed = [] if status == -signal.SIGKILL else [("provision", "attempt-committed", status)]
        for step in STEPS:
            for point in POINTS:
                if (step, point) == ("provision", "attempt-committed"):
                    continue
                stack.start_serve(kill_at=f"{step}:{point}")
                try:
                    status = stack.proc.wait(90)
                except subprocess.TimeoutExpired:
                    status = None
                    stack.kill_serve()
                if status != -signal.SIGKILL:
                    missed.append((step, point, status))
        stack.start_serve()
        hosts = stack.wait_settled()
        assert not missed, f"boundaries never reached (or serve exited otherwise): {missed}"
        assert [h["state"] for h in hosts] == ["ready"] * HOSTS, [(h["name"], h["state"], h.get("step"), h.get("reason")) for h in hosts if h["state"] != "ready"]
        assert_exactly_one_each(stack, hosts)
        runs = stack.front_stats()["byAction"]["RunInstances"]
        print(f"18 SIGKILLs at step boundaries; RunInstances {runs}")
    finally:
        stack.stop()


def test_the_shipped_binary_has_no_kill_switch(base):
    """ONETOUCH_TEST_KILL_AT is test tooling of `onetouch-crashtest`: set for `onetouch serve`, it does
    nothing, neither a kill at the boundary nor a refusal of a malformed value."""
    stack = Stack(base)
    try:
        stack.start_serve(extra_env={"ONETOUCH_TEST_KILL_AT": "provision:attempt-committed"})
        stack.create(["ks-01"])
        [host] = stack.wait_settled(timeout=120)
        assert host["state"] == "ready", (host["state"], host.get("step"), host.get("reason"))
        assert stack.proc.poll() is None, "serve is still running"
        stack.stop_serve()
        stack.start_serve(extra_env={"ONETOUCH_TEST_KILL_AT": "not-a-step"})
        assert stack.proc.poll() is None, "a malformed value is not even read"
    finally:
        stack.stop()


def test_chaos_5xx_lost_responses_lag_and_throttling(base):
    stack = Stack(base, front_args="--error-rate 0.05 --lose-rate 0.15 --lag 2 --seed 11")
    try:
        stack.start_serve()
        stack.create([f"app-{i:02d}" for i in range(HOSTS)])
        hosts = stack.wait_settled()
        assert [h["state"] for h in hosts] == ["ready"] * HOSTS, [(h["name"], h["state"], h.get("step"), h.get("reason")) for h in hosts if h["state"] != "ready"]
        print("front:", json.dumps(stack.front_stats()["byOutcome"]))
        stack.set_front(error_rate=0.0, lose_rate=0.0, lag_seconds=0.0)  # calm, to count what exists
        assert_exactly_one_each(stack, hosts)
    finally:
        stack.stop()


def test_unknown_subnet_fails_with_the_aws_reason_and_no_retry(base):
    stack = Stack(base)
    try:
        config = (base / "onetouch.yaml").read_text().replace(stack.ec2["SUBNET_ID"], "subnet-0000000000bad")
        (base / "onetouch.yaml").write_text(config)
        stack.start_serve()
        stack.create(["bad-01"])
        [host] = stack.wait_settled(timeout=60)
        assert host["state"] == "failed" and host["step"] == "provision"
        assert "InvalidSubnetID.NotFound" in host["reason"]
        assert "onetouch retry bad-01 --from provision" in host["reason"]
        assert stack.front_stats()["byAction"]["RunInstances"] == {"forwarded": 1}, "zero retries"
        instances, volumes = stack.managed()
        assert not instances and not volumes, "nothing left behind"
    finally:
        stack.stop()


def wait_all(stack, state, timeout=240):
    deadline = time.time() + timeout
    while time.time() < deadline:
        hosts = stack.hosts()
        if all(h["state"] == state for h in hosts):
            return hosts
        time.sleep(0.5)
    raise AssertionError(f"not all {state}: " + json.dumps([(h["name"], h["state"], h.get("step"), h.get("reason")) for h in stack.hosts()]))


def test_destroy_while_steps_run_under_visibility_lag_leaves_nothing_behind(base):
    """EC2 lists new instances and volumes late (the front hides them for 2 s). Twelve hosts are each
    destroyed 0.2–3 s after `create`, while their launch or their volume is in flight or not listed
    yet, and one more at each step that lasts long enough to be seen from outside; every host ends
    destroyed with no instance or volume left."""
    stack = Stack(base, front_args="--lag 2")
    try:
        stack.start_serve()
        early = [f"gone-{i:02d}" for i in range(12)]
        # Preregister and complete last milliseconds here, too short to catch from outside: the unit
        # tests destroy around every external call instead.
        by_step = {step: f"at-{step}" for step in ("provision", "bootstrap", "attach-volume", "config-pull")}
        stack.create(early)
        created = time.time()
        for i, name in enumerate(early):
            time.sleep(max(0.0, created + 0.2 + i * 0.25 - time.time()))
            stack.api("POST", f"/v1/admin/hosts/{name}/destroy", {"keepVolume": False})
        stack.create(list(by_step.values()))
        pending = dict(by_step)
        deadline = time.time() + 180
        while pending and time.time() < deadline:
            for step, name in list(pending.items()):
                host = stack.api("GET", f"/v1/admin/hosts/{name}")
                if host["state"] in ("running", "waiting") and host.get("step") == step:
                    stack.api("POST", f"/v1/admin/hosts/{name}/destroy", {"keepVolume": False})
                    del pending[step]
                elif host["state"] in ("ready", "failed"):
                    raise AssertionError(f"{name} got to {host['state']} before it was seen at {step}")
            time.sleep(0.05)
        assert not pending, f"never seen at these steps: {pending}"
        hosts = wait_all(stack, "destroyed")
        stack.set_front(lag_seconds=0.0)  # to count what exists
        instances, volumes = stack.managed()
        assert instances == {} and volumes == {}, (
            f"left behind: instances of {sorted(instances)}, volumes of {sorted(volumes)} "
            f"(hosts: {sorted((h['id'], h['name']) for h in hosts)})")
        runs = stack.front_stats()["byAction"]["RunInstances"]
        print(f"{len(hosts)} hosts destroyed mid-step under a 2 s lag; RunInstances {runs}")
    finally:
        stack.stop()


def test_sigterm_mid_wave_fails_no_host_and_a_restart_finishes_the_wave(base):
    """`systemctl restart` in the middle of a wave: 40 creates with EC2's throttling on, SIGTERM after
    2 s, start again. A shutdown is a crash the engine survives: no host failed, none spent an attempt
    on it, and every host is ready with one instance and one volume."""
    stack = Stack(base)
    try:
        stack.start_serve()
        names = [f"wave-{i:02d}" for i in range(40)]
        stack.create(names)
        time.sleep(2)
        stack.proc.send_signal(signal.SIGTERM)
        status = stack.proc.wait(30)
        assert status == 0, f"serve exits cleanly on SIGTERM (status {status})"
        moving = [h for h in stack.hosts_from_database() if h[1] not in ("pending", "ready")]
        stack.start_serve()
        hosts = stack.wait_settled()
        assert [h["state"] for h in hosts] == ["ready"] * 40, [
            (h["name"], h["state"], h.get("step"), h.get("reason")) for h in hosts if h["state"] != "ready"]
        assert moving, "the SIGTERM came mid-wave: some hosts were between steps"
        failed = [(h["name"], e["from"], e["to"], e["reason"]) for h in hosts
                  for e in stack.api("GET", f"/v1/admin/hosts/{h['name']}/events")
                  if e["to"].startswith("failed") or "Cancellation" in e["reason"] or "unexpected error" in e["reason"]]
        assert failed == [], failed
        assert_exactly_one_each(stack, hosts)
        print(f"SIGTERM with {len(moving)} of 40 hosts mid-step; after the restart 40 ready, 0 failed")
    finally:
        stack.stop()


def test_a_second_serve_is_refused_while_the_first_is_stopped_past_its_lease(base):
    """The first `serve` is paused (SIGSTOP) longer than its lease lives (30 s) while a wave runs; a
    second `serve` on the same database (another port) is refused by the OS lock, naming the first,
    instead of taking over while the first can still wake up and write. Resumed, the first finishes
    the wave alone: one instance and one volume per host."""
    stack = Stack(base)
    try:
        stack.start_serve()
        stack.create([f"st-{i:02d}" for i in range(10)])
        time.sleep(1.5)
        stack.proc.send_signal(signal.SIGSTOP)
        try:
            time.sleep(35)
            other = base / "second.yaml"
            other.write_text((base / "onetouch.yaml").read_text().replace(f"127.0.0.1:{stack.port}", f"127.0.0.1:{_free_port()}"))
            env = dict(os.environ, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing")
            second = subprocess.run([stack.bin, "serve", "--config", str(other)], capture_output=True, text=True, timeout=60, env=env)
        finally:
            stack.proc.send_signal(signal.SIGCONT)
        assert second.returncode == 1, second.stderr
        assert f"pid {stack.proc.pid}) is running on the database {base}/onetouch.sqlite" in second.stderr, second.stderr
        hosts = stack.wait_settled()
        assert [h["state"] for h in hosts] == ["ready"] * 10, [(h["name"], h["state"], h.get("reason")) for h in hosts if h["state"] != "ready"]
        assert_exactly_one_each(stack, hosts)
    finally:
        stack.stop()
