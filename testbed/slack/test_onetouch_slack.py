"""End to end: a real `onetouch serve` (the EC2 test bed, the MIT realm and the simulated hosts of
testbed/e2e) announcing in the Slack test server, and taking `/onetouch` commands from it.

Asserts what the team sees in Slack: one thread per host that follows the steps and ends with the
outcome; failure alerts that name the command that fixes them; no message twice, even when `serve` is
SIGKILLed between a post and its record; Retry-After and permanent errors honoured; chatops that only
acts on signed, fresh, first-time requests from people allowed to.
"""
import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT / "testbed/e2e"))
from test_onetouch_ec2 import Stack, _env_file  # noqa: E402  (the e2e helpers, reused)

ADMIN = "U0ADMIN001"
OPERATOR = "U0OPERATOR"
STRANGER = "U0STRANGER"


class SlackStack(Stack):
    """The e2e stack plus the Slack test server, with `notifier: {kind: slack}` in onetouch.yaml."""

    def __init__(self, base: Path, mode="bot", post_interval="1s", socket_mode=False, **kwargs):
        super().__init__(base, **kwargs)
        subprocess.run([HERE / "ctl", "start", base / "slack"], check=True, capture_output=True)
        self.slack = _env_file(base / "slack/env")
        s = self.slack
        if mode == "bot":
            delivery = f"  bot_token: {{file: {s['SLACK_TOKEN_FILE']}}}\n  channel: {s['SLACK_CHANNEL']}\n"
        else:
            delivery = f"  webhook_url: {{file: {s['SLACK_WEBHOOK_URL_FILE']}}}\n"
        with open(base / "onetouch.yaml", "a") as f:
            f.write(f"""notifier:
  kind: slack
{delivery}  api_url: {s['SLACK_API_URL']}
  post_interval: {post_interval}
  chatops:
    {"app_token" if socket_mode else "signing_secret"}: {{file: {s['SLACK_APP_TOKEN_FILE' if socket_mode else 'SLACK_SIGNING_SECRET_FILE']}}}
    allow:
      status: ["*"]
      list: ["*"]
      create: [{ADMIN}]
      destroy: [{"S0OPSGROUP" if mode == "bot" else OPERATOR}]
""")
        self.control("groups", {"S0OPSGROUP": [OPERATOR]})

    def stop(self):
        try:
            super().stop()
        finally:
            subprocess.run([HERE / "ctl", "stop", self.base / "slack"], capture_output=True)

    def control(self, what, body=None):
        request = urllib.request.Request(self.slack["SLACK_URL"] + "/_control/" + what, method="POST" if body is not None else "GET",
                                         data=json.dumps(body).encode() if body is not None else None,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as r:
            return json.loads(r.read())

    def messages(self):
        return self.control("messages")

    def requests(self, method=None):
        return [r for r in self.control("requests") if method is None or r["method"] == method]

    def wait_messages(self, predicate, what, timeout=120):
        deadline = time.time() + timeout
        while time.time() < deadline:
            messages = self.messages()
            if predicate(messages):
                return messages
            time.sleep(0.3)
        raise AssertionError(f"Slack never showed {what}: " + json.dumps([m["text"] for m in self.messages()])[:3000])

    def slash(self, text, user=ADMIN, **extra):
        return self.control("slash", {"url": self.url + "/v1/slack/commands", "text": text, "user_id": user, **extra})

    def click(self, button, user):
        return self.control("click", {"url": self.url + "/v1/slack/interactions", "user_id": user,
                                      "action_id": button["action_id"], "value": button["value"]})

    def cli(self, *args):
        return subprocess.run([self.bin, *args, "--server", self.url, "--token-file", str(self.base / "admin-token")],
                              capture_output=True, text=True, timeout=30)

    def events(self, name):
        return self.api("GET", f"/v1/admin/hosts/{name}/events")


def key(message):
    return ((message.get("metadata") or {}).get("event_payload") or {}).get("key", "")


def threads(messages):
    """Parents by host id, and each parent's replies in order."""
    parents = {key(m)[:-len("-parent")]: m for m in messages if not m["thread_ts"] and key(m).endswith("-parent")}
    replies = {host: [m for m in messages if m["thread_ts"] == p["ts"]] for host, p in parents.items()}
    return parents, replies


@pytest.fixture
def base():
    import tempfile
    with tempfile.TemporaryDirectory(prefix="onetouch-slack-e2e-") as d:
        yield Path(d)


def test_one_thread_per_host_follows_the_steps_and_ends_ready_then_destroyed(base):
    stack = SlackStack(base)
    try:
        stack.start_serve()
        names = ["web-01", "web-02", "web-03"]
        stack.create(names)
        hosts = stack.wait_settled()
        assert [h["state"] for h in hosts] == ["ready"] * 3
        messages = stack.wait_messages(
            lambda ms: sum(key(m).endswith("-ready") for m in ms) == 3 and sum("ready after" in m["text"] for m in ms) == 3,
            "three ready replies and three parents showing ready")
        parents, replies = threads(messages)
        assert len(parents) == 3 and len(messages) == 6, "one parent and one reply per host, nothing else"
        for host in hosts:
            parent, [ready] = parents[host["id"]], replies[host["id"]]
            assert parent["text"].startswith(f"{host['fqdn']} (role web): ready after ")
            assert ready["text"].startswith(f"{host['fqdn']} is ready (role web, instance {host['instanceId']}, address {host['privateIp']})")
            assert "slowest step: " in ready["text"]
            fields = [f["text"] for f in ready["blocks"][1]["fields"]]
            assert fields[:3] == ["*Role*\nweb", f"*Instance*\n{host['instanceId']}", f"*Address*\n{host['privateIp']}"]
        # A parent posted while its host was still under way is edited as the steps go (one posted later
        # shows the state it has by then): never posted twice.
        assert parents[hosts[0]["id"]]["updates"] >= 1
        status = stack.cli("status", "web-01")
        assert status.returncode == 0 and "slack:    1 sent, 0 waiting (bot); delivery: delivering" in status.stdout, status.stdout

        stack.api("POST", "/v1/admin/hosts/web-02/destroy", {"keepVolume": False})
        messages = stack.wait_messages(lambda ms: any(key(m).endswith("-destroyed") for m in ms), "the destroyed reply")
        parents, replies = threads(messages)
        web02 = next(h for h in hosts if h["name"] == "web-02")
        assert [key(m).rsplit("-", 1)[1] for m in replies[web02["id"]]] == ["ready", "command", "destroyed"]
        assert re.search(r"destroy requested \(the CLI as token-[0-9a-f]{8}\)$", replies[web02["id"]][1]["text"]), replies[web02["id"]][1]["text"]
        stack.wait_messages(lambda ms: threads(ms)[0][web02["id"]]["text"].endswith(": destroyed"), "the parent showing destroyed")
        log = (base / "serve.log").read_text()
        for secret in ("SLACK_TOKEN_FILE", "SLACK_SIGNING_SECRET_FILE"):
            assert Path(stack.slack[secret]).read_text().strip() not in log
    finally:
        stack.stop()


def test_a_failure_is_an_alert_with_the_reason_and_the_exact_command(base):
    stack = SlackStack(base)
    try:
        config = (base / "onetouch.yaml").read_text().replace(stack.ec2["SUBNET_ID"], "subnet-0000000000bad")
        (base / "onetouch.yaml").write_text(config)
        stack.start_serve()
        stack.create(["bad-01"])
        [host] = stack.wait_settled(timeout=60)
        assert host["state"] == "failed"
        messages = stack.wait_messages(lambda ms: any(key(m).endswith("-failed") for m in ms), "the failure reply")
        [alert] = [m for m in messages if key(m).endswith("-failed")]
        assert alert["thread_ts"], "in the host's thread"
        assert alert["text"].startswith("bad-01.onetouch.test failed at provision: ")
        assert "InvalidSubnetID.NotFound" in alert["text"]
        assert alert["text"].endswith("Then run: onetouch retry bad-01 --from provision")
        texts = [b["text"]["text"] for b in alert["blocks"] if b.get("text")]
        assert texts[-1] == "*Once the cause is fixed:* `onetouch retry bad-01 --from provision`\nor here: `/onetouch retry bad-01 from=provision`"
        stack.wait_messages(lambda ms: any(m["text"].startswith("bad-01.onetouch.test (role web): failed at provision") for m in ms),
                            "the parent showing failed")
    finally:
        stack.stop()


def test_sigkill_between_the_post_and_its_record_gives_no_second_message(base):
    stack = SlackStack(base)
    try:
        stack.start_serve()
        stack.create(["kv-01"])
        stack.wait_messages(lambda ms: len(ms) == 1, "the parent")
        # The next post reaches Slack, but its answer is held: serve dies before it can record it.
        stack.control("faults", {"method": "chat.postMessage", "hold_seconds": 60})
        [host] = stack.wait_settled()
        assert host["state"] == "ready"
        stack.wait_messages(lambda ms: any(key(m).endswith("-ready") for m in ms), "the ready reply (answer held)")
        stack.kill_serve()
        stack.start_serve()
        deadline = time.time() + 30
        while time.time() < deadline and "0 waiting" not in stack.cli("status", "kv-01").stdout:
            time.sleep(0.3)
        status = stack.cli("status", "kv-01").stdout
        assert "slack:    1 sent, 0 waiting" in status, status
        time.sleep(2)
        messages = stack.messages()
        assert sum(key(m).endswith("-ready") for m in messages) == 1, "exactly one ready message after the SIGKILL"
        assert len(stack.requests("conversations.replies")) >= 1, "the restarted serve looked for its message first"
        assert len(stack.requests("chat.postMessage")) == 2
    finally:
        stack.stop()


def test_retry_after_is_waited_out_and_a_permanent_error_stops_after_one_try(base):
    stack = SlackStack(base)
    try:
        stack.control("faults", {"method": "chat.postMessage", "status": 429, "retry_after": 2})
        stack.start_serve()
        stack.create(["rl-01"])
        stack.wait_messages(lambda ms: len(ms) == 1, "the parent after the rate limit")
        requests = stack.requests()
        assert requests[0]["status"] == 429
        assert requests[1]["at"] - requests[0]["at"] >= 2.0, "no request before Retry-After elapsed"

        stack.control("faults", {"method": "chat.postMessage", "error": "channel_not_found"})
        [host] = stack.wait_settled()
        assert host["state"] == "ready", "Slack never holds a host back"
        deadline = time.time() + 20
        while time.time() < deadline and "stopped" not in stack.cli("status", "rl-01").stdout:
            time.sleep(0.3)
        posts = len(stack.requests("chat.postMessage"))
        time.sleep(3)
        assert len(stack.requests("chat.postMessage")) == posts, "nothing more after the permanent error"
        status = stack.cli("status", "rl-01").stdout
        assert "delivery: stopped: Slack refuses to post in the configured channel (channel_not_found)" in status, status
        assert "Slack announcements stopped" in (base / "serve.log").read_text()

        # Fixed (here: the fault is gone) and restarted: what waited is posted, once.
        stack.kill_serve()
        stack.start_serve()
        stack.wait_messages(lambda ms: any(key(m).endswith("-ready") for m in ms), "the ready reply after the restart")
        assert sum(key(m).endswith("-ready") for m in stack.messages()) == 1
    finally:
        stack.stop()


def test_chatops_acts_only_on_signed_fresh_allowed_requests_and_destroy_needs_its_button(base):
    stack = SlackStack(base)
    try:
        stack.start_serve()
        forged = stack.slash("create web-09 role=web", secret="0" * 32)
        stale = stack.slash("create web-09 role=web", timestamp_offset=-360)
        unsigned = stack.slash("create web-09 role=web", unsigned=True)
        assert (forged["status"], stale["status"], unsigned["status"]) == (401, 401, 401)
        refused = stack.slash("create web-09 role=web", user=STRANGER)
        assert refused["status"] == 200 and "may not create hosts" in refused["body"]["text"]
        assert stack.hosts() == [], "nothing was created"

        created = stack.slash("create web-01 role=web")
        assert created["status"] == 200 and created["body"]["text"].startswith("web-01 is created")
        assert created["elapsed_ms"] < 3000, f"answered in {created['elapsed_ms']:.0f} ms"
        assert stack.control("replay", {})["status"] == 401, "a replayed request is refused"
        assert stack.events("web-01")[0]["actor"] == f"slack:{ADMIN}"
        [host] = stack.wait_settled()
        assert host["state"] == "ready"

        denied = stack.slash("destroy web-01", user=STRANGER)
        assert "may not destroy hosts" in denied["body"]["text"] and "blocks" not in denied["body"]
        assert stack.events("web-01")[-1]["actor"] == f"slack:{STRANGER}" and stack.events("web-01")[-1]["reason"].startswith("refused: destroy")

        asked = stack.slash("destroy web-01", user=OPERATOR)
        button = next(e for e in asked["body"]["blocks"][-1]["elements"] if e["action_id"] == "onetouch_destroy")
        time.sleep(1)
        assert stack.hosts()[0]["state"] == "ready", "asking is not destroying"
        assert stack.click(button, STRANGER)["status"] == 200
        time.sleep(1)
        assert stack.hosts()[0]["state"] == "ready", "a click by someone not allowed does nothing"
        assert stack.click(button, OPERATOR)["status"] == 200
        stack.wait_messages(lambda ms: any(key(m).endswith("-destroyed") for m in ms), "the destroyed reply")
        _, replies = threads(stack.messages())
        texts = [m["text"] for m in replies[host["id"]]]
        assert any(t.endswith(f"refused: destroy from Slack (not allowed by notifier.chatops.allow.destroy) (Slack user {STRANGER})") for t in texts)
        assert any(t.endswith(f"destroy requested (Slack user {OPERATOR})") for t in texts)
        answers = [r["body"]["text"] for r in stack.control("responses")]
        assert any(a.startswith(f"Destroying web-01 (confirmed by <@{OPERATOR}>)") for a in answers)
    finally:
        stack.stop()


def test_socket_mode_takes_commands_without_an_inbound_endpoint_and_reconnects(base):
    stack = SlackStack(base, socket_mode=True)
    try:
        stack.start_serve()
        deadline = time.time() + 30
        while time.time() < deadline and not stack.control("socket")["open"]:
            time.sleep(0.2)
        assert stack.control("socket") == {"connections": 1, "open": True}
        request = urllib.request.Request(stack.url + "/v1/slack/commands", data=b"text=list", method="POST")
        try:
            urllib.request.urlopen(request, timeout=5)
            raise AssertionError("the HTTP command endpoint should not exist in Socket Mode")
        except urllib.error.HTTPError as error:
            assert error.code == 404

        created = stack.control("socket", {"text": "create web-01 role=web", "user_id": ADMIN})
        assert created["ack"]["payload"]["text"].startswith("web-01 is created"), created
        assert created["elapsed_ms"] < 3000
        again = stack.control("socket", {"redeliver": True})
        assert again["ack"] == {"envelope_id": created["envelope_id"]}, "a redelivered envelope is acked, not acted on"
        refused = stack.control("socket", {"text": "create web-02 role=web", "user_id": STRANGER})
        assert "may not create hosts" in refused["ack"]["payload"]["text"]
        assert [h["name"] for h in stack.hosts()] == ["web-01"]
        assert stack.events("web-01")[0]["actor"] == f"slack:{ADMIN}"

        stack.control("socket_disconnect", {})
        deadline = time.time() + 30
        while time.time() < deadline and stack.control("socket") != {"connections": 2, "open": True}:
            time.sleep(0.2)
        assert stack.control("socket") == {"connections": 2, "open": True}, "a new connection after disconnect"
        listed = stack.control("socket", {"text": "list", "user_id": STRANGER})
        assert "`web-01`" in listed["ack"]["payload"]["text"]
        assert Path(stack.slack["SLACK_APP_TOKEN_FILE"]).read_text().strip() not in (base / "serve.log").read_text()
    finally:
        stack.stop()


def test_cloud_drift_is_one_reply_in_the_hosts_thread_when_it_appears_and_one_when_it_clears(base):
    stack = SlackStack(base)
    try:
        stack.start_serve()
        stack.create(["web-01"])
        (host,) = stack.wait_settled()
        assert host["state"] == "ready"
        stack.wait_messages(lambda ms: any(key(m).endswith("-ready") for m in ms), "the ready reply")
        instance = host["instanceId"]
        # someone makes the instance bigger at the console; two looks at the cloud see it
        stack.ec2_client.modify_instance_attribute(InstanceId=instance, InstanceType={"Value": "m5.4xlarge"})
        for _ in range(2):
            out = stack.cli("drift", "--cloud")
            assert out.returncode == 0 and "instance type: expected t3.small, actual m5.4xlarge" in out.stdout, out.stdout + out.stderr
        stack.ec2_client.modify_instance_attribute(InstanceId=instance, InstanceType={"Value": "t3.small"})
        out = stack.cli("drift", "--cloud")
        assert out.returncode == 0, out.stderr
        messages = stack.wait_messages(lambda ms: any("cloud drift cleared" in m["text"] for m in ms), "the cleared reply")
        parents, replies = threads(messages)
        drift = [m for m in replies[host["id"]] if key(m).endswith("-drift")]
        # delivered in event order: a second announcement of the same drift would come before the clear
        assert [m["text"] for m in drift] == [
            "web-01.onetouch.test: cloud drift: web-01: instance type is m5.4xlarge, the configuration declares t3.small; "
            "nothing was changed (put it back by hand, or change the configuration)",
            "web-01.onetouch.test: cloud drift cleared: web-01: instance type is t3.small again",
        ], [m["text"] for m in messages]
        assert all(not m["thread_ts"] for m in messages if m not in replies[host["id"]]), "nothing outside the host's thread but its parent"
        assert parents[host["id"]]["text"].startswith("web-01.onetouch.test (role web): ready after ")
    finally:
        stack.stop()


def test_webhook_mode_posts_each_announcement_once_without_threads(base):
    stack = SlackStack(base, mode="webhook")
    try:
        stack.start_serve()
        stack.create(["hook-01", "hook-02"])
        hosts = stack.wait_settled()
        assert [h["state"] for h in hosts] == ["ready", "ready"]
        messages = stack.wait_messages(lambda ms: len(ms) == 2, "two ready messages")
        assert sorted(m["text"].split(" ")[0] for m in messages) == ["hook-01.onetouch.test", "hook-02.onetouch.test"]
        assert all(m["via"] == "webhook" and not m["thread_ts"] and " is ready (role web, instance i-" in m["text"] for m in messages)
        assert {r["method"] for r in stack.requests()} == {"webhook"}
        log = (base / "serve.log").read_text()
        assert Path(stack.slack["SLACK_WEBHOOK_URL_FILE"]).read_text().strip().rsplit("/", 1)[1] not in log
    finally:
        stack.stop()


def fifty_hosts_ready_together(base, hosts=50, lag=0):
    """Creates `hosts` hosts and waits for their ready announcements in Slack, whose server refuses
    (429) a post less than 0.9 s after the previous one. With `lag` seconds of EC2 visibility lag the
    hosts become ready only after every thread was opened (as with a real cloud, where hosts take
    minutes), so the ready replies compete with nothing else."""
    stack = SlackStack(base, retry=("100ms", "2s", 400, "10m"))
    try:
        stack.control("config", {"strict_rate": True, "min_gap": 0.9})
        if lag:
            stack.set_front(lag_seconds=lag)
        stack.start_serve()
        names = [f"app-{i:02d}" for i in range(hosts)]
        stack.create(names)
        settled = stack.wait_settled(timeout=600)
        assert [h["state"] for h in settled] == ["ready"] * hosts, [(h["name"], h["state"]) for h in settled if h["state"] != "ready"]
        messages = stack.wait_messages(lambda ms: sum(key(m).endswith("-ready") for m in ms) == hosts,
                                       f"{hosts} ready replies", timeout=hosts * 3 + 120)
        ready_at = {}
        for h in settled:
            ready_at[h["id"]] = max(e["at"] for e in stack.events(h["name"]) if e["to"] == "ready")
        stats = stack.control("stats")
        requests = stack.requests("chat.postMessage")
        return stack, settled, messages, ready_at, stats, requests
    except BaseException:
        stack.stop()
        raise


def test_fifty_hosts_ready_together_stay_within_one_post_per_second_none_lost_order_kept(base):
    stack, hosts, messages, _, stats, requests = fifty_hosts_ready_together(base)
    try:
        parents, replies = threads(messages)
        assert len(parents) == 50 and all(len(replies[h["id"]]) == 1 for h in hosts), "none lost, none twice"
        for h in hosts:
            [ready] = replies[h["id"]]
            assert key(ready).startswith(h["id"]) and parents[h["id"]]["posted_at"] < ready["posted_at"], "order kept per host"
        assert stats["rate_limited"] == 0 and stats["min_gap"] >= 0.9, stats
        assert all(r["status"] == 200 for r in requests)
    finally:
        stack.stop()
