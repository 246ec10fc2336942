"""Drift end to end, through the real `onetouch serve` and the `onetouch` CLI.

Configuration drift: the real rendered bootstrap (taken from the instance's user-data in moto) runs as
root in the host sandbox (testbed/host/hostkit.py) with the real ansible-pull (Debian's ansible-core)
against a local git repository; its runs reach serve with the report credential. The test changes
the repository and the host the way drift happens and reads `onetouch drift`, `list --drift`, the
events, and `onetouch check`.

Cloud drift: hosts made ready by the EC2 test bed's host agent; the test changes an instance in moto
directly (security groups, instance type, tags) and reads `onetouch drift --cloud`.
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "testbed/host"))
sys.path.insert(0, str(ROOT / "testbed/e2e"))
import hostkit  # noqa: E402
from test_freeipa_serve import user_data  # noqa: E402
from test_onetouch_ec2 import Stack, wait_all  # noqa: E402

PLAY = """\
- name: Web role
  hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: Write managed file
      ansible.builtin.copy:
        dest: /srv/managed.txt
        content: "managed\\n"
        mode: "0644"
"""
FAILING = PLAY + """\
    - name: A task that fails
      ansible.builtin.command: /bin/false
"""


def git(repo, *args):
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout.strip()


def commit(repo, text, message):
    (repo / "web.yml").write_text(text)
    git(repo, "add", "web.yml")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


def cli(stack, *args, check=True):
    env = dict(os.environ, ONETOUCH_SERVER=stack.url, ONETOUCH_TOKEN_FILE=str(stack.base / "admin-token"))
    env.pop("ONETOUCH_TOKEN", None)
    result = subprocess.run([stack.bin, *args], capture_output=True, text=True, timeout=60, env=env)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def drift_of(stack, name):
    (view,) = [v for v in json.loads(cli(stack, "drift", "--json").stdout) if v["name"] == name]
    return view


def drift_events(stack, name):
    return [e["reason"] for e in stack.api("GET", f"/v1/admin/hosts/{name}/events") if e["actor"] == "drift"]


@pytest.mark.skipif(hostkit.sandbox_unavailable() is not None or not shutil.which("ansible-pull"),
                    reason=hostkit.sandbox_unavailable() or "ansible-pull is not installed")
def test_configuration_runs_of_a_real_host_move_its_drift_state_and_each_transition_is_one_event(tmp_path):
    repo = tmp_path / "config"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    first = commit(repo, PLAY, "first")
    stack = Stack(tmp_path, directory="freeipa", agent=False)
    config = stack.base / "onetouch.yaml"
    config.write_text(config.read_text().replace("https://git.onetouch.test/config.git", f"file://{repo}"))
    sandbox = None
    try:
        stack.start_serve()
        stack.create(["drift-01"])
        (host,) = stack.hosts()
        behaviour = {"ipa-client-install": {"enroll_url": stack.ipa["IPA_TEST_HOOKS"] + "/enroll"}}
        stubs = tuple(s for s in hostkit.STUBS if s != "ansible-pull")
        sandbox = hostkit.Sandbox(tmp_path / "host", user_data(stack, host["id"]), behaviour=behaviour,
                                  volume_link="xvdf", stubs=stubs)
        booted = sandbox.boot(timeout=300)
        assert booted.returncode == 0, booted.stdout
        wait_all(stack, "ready", timeout=120)

        # the first run (while the host was set up) put the file in place: corrected
        view = drift_of(stack, "drift-01")
        assert view["drift"] == "corrected" and view["lastRun"]["commit"] == first
        assert view["lastRun"]["changedTasks"] == ["Write managed file"]

        def timer_run():
            return sandbox.start_service("onetouch-pull.service", timeout=300)

        assert timer_run().returncode == 0
        assert drift_of(stack, "drift-01")["drift"] == "in-sync"

        # a commit that fails: failing, announced once however often it runs
        failing = commit(repo, FAILING, "break it")
        for _ in range(2):
            assert timer_run().returncode == 2
        view = drift_of(stack, "drift-01")
        assert view["drift"] == "failing" and view["lastRun"]["commit"] == failing
        assert view["lastRun"]["failedTasks"][0]["task"] == "A task that fails"
        assert "FAILED!" in view["lastRun"]["outputTail"]
        listed = json.loads(cli(stack, "list", "--drift", "failing", "--json").stdout)
        assert [h["name"] for h in listed] == ["drift-01"]
        assert "drift-01" in cli(stack, "status", "drift-01").stdout and "failing" in cli(stack, "status", "drift-01").stdout
        events = drift_events(stack, "drift-01")
        assert len(events) == 1 and "drift-01 is failing its configuration runs (ansible-pull exited 2)" in events[0]

        # fixed in the repository; someone edits the file by hand; `onetouch check` sees it, changes nothing
        commit(repo, PLAY, "fix it")
        assert timer_run().returncode == 0  # corrected (it was failing; not in sync yet)
        assert "check mode requested for 1 host: drift-01" in cli(stack, "check", "drift-01").stdout
        assert timer_run().returncode == 0  # its answer carries the request
        assert drift_of(stack, "drift-01")["checkRequested"] is True
        sandbox.path("/srv/managed.txt").write_text("edited by hand\n")
        assert timer_run().returncode == 0  # the check run
        view = drift_of(stack, "drift-01")
        assert view["lastCheck"]["checkMode"] is True and view["lastCheck"]["changedTasks"] == ["Write managed file"]
        assert view["checkRequested"] is False
        assert sandbox.file("/srv/managed.txt") == "edited by hand\n"
        assert "would change: Write managed file" in cli(stack, "drift").stdout

        # the next run corrects it; the one after is in sync again: announced once
        assert timer_run().returncode == 0
        assert timer_run().returncode == 0
        assert drift_of(stack, "drift-01")["drift"] == "in-sync"
        events = drift_events(stack, "drift-01")
        assert len(events) == 2 and events[1] == "configuration drift: drift-01 is in sync again"

        # destroy revokes the credential: the host's next run is not reported
        stack.api("POST", "/v1/admin/hosts/drift-01/destroy", {"keepVolume": False})
        wait_all(stack, "destroyed", timeout=120)
        result = timer_run()
        assert "the run report was not accepted: 401" in result.stdout
    finally:
        if sandbox:
            sandbox.close()
        stack.stop()


def test_cloud_drift_lists_exactly_what_was_changed_in_the_cloud_and_clears_when_it_is_undone(tmp_path):
    stack = Stack(tmp_path)
    try:
        stack.start_serve()
        stack.create(["web-01", "web-02"])
        hosts = {h["name"]: h for h in wait_all(stack, "ready", timeout=240)}
        assert json.loads(cli(stack, "drift", "--cloud", "--json").stdout) == [
            {"name": name, "id": hosts[name]["id"], "instanceId": hosts[name]["instanceId"], "differences": []}
            for name in ("web-01", "web-02")
        ]
        ec2 = stack.ec2_client
        instance = hosts["web-01"]["instanceId"]
        declared_group = stack.ec2["SECURITY_GROUP_ID"]
        vpc = ec2.describe_subnets(SubnetIds=[stack.ec2["SUBNET_ID"]])["Subnets"][0]["VpcId"]
        opened = ec2.create_security_group(GroupName="why-is-this-port-open", Description="by hand", VpcId=vpc)["GroupId"]
        # someone changes web-01 at the console: another security group, a bigger type, a tag removed
        ec2.modify_instance_attribute(InstanceId=instance, Groups=[declared_group, opened])
        ec2.modify_instance_attribute(InstanceId=instance, InstanceType={"Value": "m5.4xlarge"})
        ec2.delete_tags(Resources=[instance], Tags=[{"Key": "onetouch:role"}])

        found = {v["name"]: v["differences"] for v in json.loads(cli(stack, "drift", "--cloud", "--json").stdout)}
        assert found["web-02"] == []
        assert sorted(found["web-01"], key=lambda d: d["field"]) == [
            {"field": "instance type", "expected": "t3.small", "actual": "m5.4xlarge"},
            {"field": "security groups", "expected": declared_group, "actual": ",".join(sorted([declared_group, opened]))},
            {"field": "tag onetouch:role", "expected": "web", "actual": "(missing)"},
        ]
        text = cli(stack, "drift", "--cloud").stdout
        assert "web-01" in text and "instance type: expected t3.small, actual m5.4xlarge" in text
        cli(stack, "drift", "--cloud")  # a second look announces nothing new
        events = drift_events(stack, "web-01")
        assert len(events) == 3 and all(e.startswith("cloud drift: web-01: ") for e in events)
        assert drift_events(stack, "web-02") == []

        # put back by hand: cleared, once each
        ec2.modify_instance_attribute(InstanceId=instance, Groups=[declared_group])
        ec2.modify_instance_attribute(InstanceId=instance, InstanceType={"Value": "t3.small"})
        ec2.create_tags(Resources=[instance], Tags=[{"Key": "onetouch:role", "Value": "web"}])
        found = {v["name"]: v["differences"] for v in json.loads(cli(stack, "drift", "--cloud", "--json").stdout)}
        assert found == {"web-01": [], "web-02": []}
        events = drift_events(stack, "web-01")
        assert len(events) == 6 and sum(e.startswith("cloud drift cleared: web-01: ") for e in events) == 3
        # nothing was changed in the cloud by onetouch: the group made by hand is still there
        assert ec2.describe_security_groups(GroupIds=[opened])["SecurityGroups"]
    finally:
        stack.stop()
