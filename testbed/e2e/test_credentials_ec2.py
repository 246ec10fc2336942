"""End to end: credentials that stop working for a while, a clock that is off, and the credential
sources the AWS CLI has (credential_process, web identity), with a real `onetouch serve` against moto +
the fault-injecting front + the simulated host agent + a throwaway MIT realm (the Stack of
test_onetouch_ec2.py).

What users care about: expired or refused credentials pause hosts and never fail them; once the
credentials work again every host continues by itself (no restart, no `resume`) to `ready`, with one
instance and one volume each and its one-time password delivered; a paused host writes its first pause
and its way out of it, not two events a minute.
"""
import json
import os
import subprocess
import time
from pathlib import Path

from test_onetouch_ec2 import HOSTS, Stack, assert_exactly_one_each, base, wait_for_healthz  # noqa: F401 (base is a fixture)


def wait_done(stack, timeout=300):
    """Every host ready or failed (a paused host is not done: it is re-checked every minute)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        hosts = stack.hosts()
        if all(h["state"] in ("ready", "failed") for h in hosts):
            return hosts
        time.sleep(1)
    raise AssertionError("not done: " + json.dumps([(h["name"], h["state"], h.get("step")) for h in stack.hosts()]))


def events(stack, name):
    return stack.api("GET", f"/v1/admin/hosts/{name}/events")


def test_expired_credentials_pause_hosts_which_continue_by_themselves_once_they_work(base):
    stack = Stack(base)
    try:
        stack.start_serve()
        names = [f"exp-{i:02d}" for i in range(HOSTS)]
        stack.create(names)
        time.sleep(2)  # hosts at every step: launching, pre-registering, waiting for the boot
        stack.set_front(expire_requests=True)
        time.sleep(25)
        during = stack.hosts()
        paused = [h for h in during if h["state"] == "paused"]
        failed = [h for h in during if h["state"] == "failed"]
        stack.set_front(expire_requests=False)

        assert not failed, [(h["name"], h.get("reason")) for h in failed]
        assert paused, "some hosts were calling EC2 while it refused the credentials"
        assert all("RequestExpired" in h["reason"] for h in paused), [h["reason"] for h in paused]

        hosts = wait_done(stack)
        not_ready = [(h["name"], h["state"], h.get("step"), h.get("reason")) for h in hosts if h["state"] != "ready"]
        assert not not_ready, not_ready
        assert_exactly_one_each(stack, hosts)
        pauses = 0
        for name in names:
            log = events(stack, name)
            into = [e for e in log if e["to"].startswith("paused")]
            out = [e for e in log if (e.get("from") or "").startswith("paused")]
            assert len(into) <= 1 and len(out) == len(into), (name, [(e["to"], e["reason"]) for e in log])
            assert not any(e["to"].startswith("failed") for e in log), name
            assert not any("issued again" in e["reason"] for e in log), "a one-time password was lost"
            pauses += len(into)
        stats = stack.front_stats()["byOutcome"]
        print(f"{len(paused)} of {HOSTS} hosts paused while EC2 said RequestExpired ({stats['expired']} calls refused),"
              f" {pauses} pause events in all; after it healed: {len(hosts)} ready, 0 failed")
    finally:
        stack.stop()


def test_a_clock_twenty_minutes_off_is_corrected_from_the_servers_date(base):
    stack = Stack(base, front_args="--clock-skew 1200")
    try:
        stack.start_serve()
        stack.create([f"skew-{i:02d}" for i in range(HOSTS)])
        hosts = wait_done(stack, timeout=240)
        assert [h["state"] for h in hosts] == ["ready"] * HOSTS, [(h["name"], h.get("reason")) for h in hosts if h["state"] != "ready"]
        assert_exactly_one_each(stack, hosts)
        refused = stack.front_stats()["byOutcome"]["skewRefused"]
        assert refused >= 1, "the first requests were signed with the local clock"
        assert refused <= 40, "after the first answers every request is signed with the server's time"
        print(f"{refused} requests refused for their time, then {HOSTS} hosts ready")
    finally:
        stack.stop()


class BareStack(Stack):
    """`serve` without AWS keys in its environment: the credentials come from where `env` says."""

    def start_serve_with(self, env):
        clean = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        clean.update(env, ONETOUCH_LOG_LEVEL="info")
        log = open(self.base / "serve.log", "ab")
        self.proc = subprocess.Popen([self.bin, "serve", "--config", str(self.base / "onetouch.yaml")], stdout=log,
                                     stderr=subprocess.STDOUT, env=clean)
        wait_for_healthz(self.proc, self.url, self.base / "serve.log")


def test_credentials_from_credential_process_and_from_web_identity(base):
    stack = BareStack(base)
    try:
        # credential_process: a helper that counts its runs and prints the test bed's keys.
        helper = base / "creds-helper"
        helper.write_text("#!/bin/sh\necho run >> \"$1\"\n"
                          "printf '{\"Version\": 1, \"AccessKeyId\": \"testing\", \"SecretAccessKey\": \"testing\"}'\n")
        helper.chmod(0o700)
        (base / "aws-config").write_text(f"[default]\ncredential_process = {helper} {base / 'runs'}\n")
        stack.start_serve_with({"AWS_CONFIG_FILE": str(base / "aws-config"),
                                "AWS_SHARED_CREDENTIALS_FILE": str(base / "none"), "AWS_EC2_METADATA_DISABLED": "true"})
        stack.create(["proc-01", "proc-02"])
        hosts = wait_done(stack, timeout=180)
        assert [h["state"] for h in hosts] == ["ready"] * 2, [(h["name"], h.get("reason")) for h in hosts]
        assert (base / "runs").read_text().count("run") == 1, "long-term keys are cached"
        stack.kill_serve()

        # Web identity: moto's STS exchanges any token for role credentials.
        (base / "token").write_text("eyJhbGciOiJub25lIn0.eyJzdWIiOiJvbmV0b3VjaCJ9.\n")
        stack.start_serve_with({"AWS_WEB_IDENTITY_TOKEN_FILE": str(base / "token"),
                                "AWS_ROLE_ARN": "arn:aws:iam::123456789012:role/onetouch",
                                "AWS_ENDPOINT_URL_STS": stack.ec2["MOTO_URL"], "AWS_CONFIG_FILE": str(base / "none"),
                                "AWS_SHARED_CREDENTIALS_FILE": str(base / "none"), "AWS_EC2_METADATA_DISABLED": "true"})
        stack.create(["web-id-01", "web-id-02"])
        hosts = wait_done(stack, timeout=180)
        assert [h["state"] for h in hosts] == ["ready"] * 4, [(h["name"], h.get("reason")) for h in hosts]
        assert_exactly_one_each(stack, hosts)
    finally:
        stack.stop()
