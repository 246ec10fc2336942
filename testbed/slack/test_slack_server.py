"""The Slack test server itself (testbed/slack/server.py), started through testbed/slack/ctl: the Web API
calls onetouch makes, the webhook, the faults, the pacing check, and slash commands signed as Slack signs
them."""

import hashlib
import hmac
import json
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import server as slack_server  # noqa: E402


def read_env(path):
    return dict(line.split("=", 1) for line in Path(path).read_text().splitlines() if "=" in line)


class Slack:
    def __init__(self, base):
        subprocess.run([HERE / "ctl", "start", base], check=True, capture_output=True)
        self.base = base
        self.env = read_env(base / "env")
        self.url = self.env["SLACK_URL"]
        self.api = self.env["SLACK_API_URL"]
        self.token = Path(self.env["SLACK_TOKEN_FILE"]).read_text().strip()
        self.secret = Path(self.env["SLACK_SIGNING_SECRET_FILE"]).read_text().strip()
        self.webhook = Path(self.env["SLACK_WEBHOOK_URL_FILE"]).read_text().strip()
        self.channel = self.env["SLACK_CHANNEL"]

    def stop(self):
        subprocess.run([HERE / "ctl", "stop", self.base], check=True, capture_output=True)

    def call(self, method, token=None, form=False, **args):
        if form:
            data = urllib.parse.urlencode(args).encode()
            ctype = "application/x-www-form-urlencoded"
        else:
            data = json.dumps(args).encode()
            ctype = "application/json; charset=utf-8"
        request = urllib.request.Request(f"{self.api}/{method}", data=data, method="POST",
                                         headers={"Authorization": f"Bearer {token or self.token}", "Content-Type": ctype})
        try:
            with urllib.request.urlopen(request, timeout=10) as r:
                return r.status, dict(r.headers), json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), json.loads(e.read())

    def hook(self, body, url=None):
        request = urllib.request.Request(url or self.webhook, data=json.dumps(body).encode(), method="POST",
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=10) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def control(self, what, body=None, method=None):
        request = urllib.request.Request(f"{self.url}/_control/{what}", data=json.dumps(body).encode() if body is not None else None,
                                         method=method or ("POST" if body is not None else "GET"),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=20) as r:
            return json.loads(r.read())


@pytest.fixture
def slack():
    with tempfile.TemporaryDirectory(prefix="slack-testbed-") as d:
        s = Slack(Path(d))
        try:
            yield s
        finally:
            s.stop()


def test_binds_loopback_only_and_stops_by_pid(slack):
    assert slack.url.startswith("http://127.0.0.1:")
    pid = int(slack.env["SLACK_PID"])
    assert subprocess.run([HERE / "ctl", "status", slack.base]).returncode == 0
    slack.stop()
    assert subprocess.run([HERE / "ctl", "status", slack.base]).returncode == 1
    assert not Path(f"/proc/{pid}").exists() or Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"


def test_a_thread_with_metadata_read_back_only_when_asked(slack):
    meta = {"event_type": "onetouch_announcement", "event_payload": {"key": "h-1-parent"}}
    _, _, parent = slack.call("chat.postMessage", channel=slack.channel, text="parent", metadata=meta,
                              blocks=[{"type": "section", "text": {"type": "mrkdwn", "text": "*p*"}}])
    assert parent["ok"] and parent["message"]["metadata"] == meta
    _, _, reply = slack.call("chat.postMessage", channel=slack.channel, text="reply", thread_ts=parent["ts"],
                             metadata={"event_type": "onetouch_announcement", "event_payload": {"key": "h-1-e5-ready"}})
    _, _, history = slack.call("conversations.history", form=True, channel=slack.channel)
    assert [m["text"] for m in history["messages"]] == ["parent"], "replies are not in the channel's history"
    assert "metadata" not in history["messages"][0]
    _, _, history = slack.call("conversations.history", form=True, channel=slack.channel, include_all_metadata="true")
    assert history["messages"][0]["metadata"] == meta
    _, _, thread = slack.call("conversations.replies", form=True, channel=slack.channel, ts=parent["ts"], include_all_metadata="true")
    assert [m["metadata"]["event_payload"]["key"] for m in thread["messages"]] == ["h-1-parent", "h-1-e5-ready"]
    _, _, updated = slack.call("chat.update", channel=slack.channel, ts=parent["ts"], text="parent, ready")
    assert updated["ok"]
    [stored] = [m for m in slack.control("messages") if m["ts"] == parent["ts"]]
    assert stored["text"] == "parent, ready" and stored["updates"] == 1 and stored["metadata"] == meta, "metadata kept"


def test_history_pages_with_a_cursor_newest_first(slack):
    for i in range(5):
        slack.call("chat.postMessage", channel=slack.channel, text=f"m{i}")
    _, _, first = slack.call("conversations.history", form=True, channel=slack.channel, limit=2)
    assert [m["text"] for m in first["messages"]] == ["m4", "m3"] and first["has_more"]
    cursor = first["response_metadata"]["next_cursor"]
    _, _, second = slack.call("conversations.history", form=True, channel=slack.channel, limit=2, cursor=cursor)
    _, _, third = slack.call("conversations.history", form=True, channel=slack.channel, limit=2,
                             cursor=second["response_metadata"]["next_cursor"])
    assert [m["text"] for m in second["messages"] + third["messages"]] == ["m2", "m1", "m0"]
    assert third["response_metadata"]["next_cursor"] == ""


@pytest.mark.parametrize("args,error", [
    ({"channel": "C0NOWHERE01", "text": "x"}, "channel_not_found"),
    ({"text": "x"}, "channel_not_found"),
    ({"channel": "C0ONETOUCH1"}, "no_text"),
    ({"channel": "C0ONETOUCH1", "text": "x", "blocks": [{"text": "no type"}]}, "invalid_blocks"),
    ({"channel": "C0ONETOUCH1", "text": "x", "thread_ts": "1.000001"}, "thread_not_found"),
    ({"channel": "C0ONETOUCH1", "text": "x", "metadata": {"event_type": "x"}}, "invalid_metadata_schema"),
])
def test_web_api_errors_are_http_200_with_ok_false(slack, args, error):
    status, _, body = slack.call("chat.postMessage", **args)
    assert status == 200 and body == {"ok": False, "error": error}


def test_a_wrong_token_is_invalid_auth_and_archived_or_foreign_channels_refuse(slack):
    assert slack.call("chat.postMessage", token="xoxb-wrong", channel=slack.channel, text="x")[2]["error"] == "invalid_auth"
    slack.control("config", {"archived": [slack.channel]})
    assert slack.call("chat.postMessage", channel=slack.channel, text="x")[2]["error"] == "is_archived"
    assert slack.hook({"text": "x"}) == (410, "channel_is_archived")
    slack.control("reset", {})
    slack.control("config", {"not_member": [slack.channel]})
    assert slack.call("chat.postMessage", channel=slack.channel, text="x")[2]["error"] == "not_in_channel"


def test_update_of_a_message_that_is_not_there(slack):
    assert slack.call("chat.update", channel=slack.channel, ts="1.000009", text="x")[2]["error"] == "message_not_found"


def test_the_webhook_posts_to_its_channel_and_answers_in_plain_text(slack):
    assert slack.hook({"text": "ready", "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "r"}}]}) == (200, "ok")
    assert slack.hook({"blocks": []}) == (400, "no_text")
    assert slack.hook({"text": "x"}, url=slack.webhook[:-3] + "xyz") == (404, "no_service")
    [message] = slack.control("messages")
    assert message["channel"] == slack.channel and message["text"] == "ready" and message["via"] == "webhook"


def test_faults_429_with_retry_after_5xx_and_each_error(slack):
    slack.control("faults", {"method": "chat.postMessage", "status": 429, "retry_after": 3})
    slack.control("faults", {"method": "chat.postMessage", "status": 503})
    slack.control("faults", {"method": "webhook", "error": "action_prohibited", "http_status": 403})
    status, headers, body = slack.call("chat.postMessage", channel=slack.channel, text="x")
    assert status == 429 and headers["Retry-After"] == "3" and body["error"] == "ratelimited"
    assert slack.call("chat.postMessage", channel=slack.channel, text="x")[0] == 503
    assert slack.hook({"text": "x"}) == (403, "action_prohibited")
    assert slack.call("chat.postMessage", channel=slack.channel, text="x")[2]["ok"], "faults are used up"
    assert [r["status"] for r in slack.control("requests")] == [429, 503, 403, 200]


def test_hold_and_drop_post_the_message_but_delay_or_lose_the_answer(slack):
    slack.control("faults", {"method": "chat.postMessage", "hold_seconds": 1.0})
    started = time.monotonic()
    assert slack.call("chat.postMessage", channel=slack.channel, text="held")[2]["ok"]
    assert time.monotonic() - started >= 1.0
    slack.control("faults", {"method": "chat.postMessage", "drop": True})
    with pytest.raises(Exception):
        slack.call("chat.postMessage", channel=slack.channel, text="dropped")
    assert [m["text"] for m in slack.control("messages")] == ["held", "dropped"], "both were posted"


def test_strict_rate_refuses_a_second_post_within_the_second(slack):
    slack.control("config", {"strict_rate": True})
    assert slack.call("chat.postMessage", channel=slack.channel, text="1")[0] == 200
    status, headers, body = slack.call("chat.postMessage", channel=slack.channel, text="2")
    assert status == 429 and headers["Retry-After"] == "1" and body["error"] == "ratelimited"
    time.sleep(1.0)
    assert slack.call("chat.postMessage", channel=slack.channel, text="3")[0] == 200
    stats = slack.control("stats")
    assert stats["rate_limited"] == 1 and stats["posts"] == {slack.channel: 2}


def test_the_signature_matches_slacks_known_answer_vector():
    body = ("token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar"
            "&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com"
            "%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121."
            "803a0bc887a14d10d2c447fce8b6703c").encode()
    assert slack_server.sign("8f742231b10e8888abcd99yyyzzz85a5", "1531420618", body) == \
        "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"


class Receiver:
    """A stand-in for onetouch's command endpoint that checks Slack's signature itself."""

    def __init__(self, secret):
        received = self.received = []

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                ts = self.headers.get("X-Slack-Request-Timestamp", "")
                expected = "v0=" + hmac.new(secret.encode(), b"v0:" + ts.encode() + b":" + body, hashlib.sha256).hexdigest()
                ok = hmac.compare_digest(expected, self.headers.get("X-Slack-Signature", ""))
                received.append((body, ts, ok))
                answer = json.dumps({"text": "signed" if ok else "forged"}).encode()
                self.send_response(200 if ok else 401)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/slack/commands"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()


def test_slash_commands_are_delivered_signed_forged_stale_and_replayed_on_request(slack):
    receiver = Receiver(slack.secret)
    try:
        good = slack.control("slash", {"url": receiver.url, "text": "create web-01 role=web", "user_id": "U0ADMIN001"})
        assert good["status"] == 200 and good["body"] == {"text": "signed"} and good["elapsed_ms"] < 3000
        fields = dict(urllib.parse.parse_qsl(receiver.received[0][0].decode()))
        assert fields["text"] == "create web-01 role=web" and fields["user_id"] == "U0ADMIN001" and fields["command"] == "/onetouch"
        assert fields["response_url"].startswith(slack.url + "/commands/")
        forged = slack.control("slash", {"url": receiver.url, "text": "x", "secret": "not-the-secret"})
        assert forged["status"] == 401
        stale = slack.control("slash", {"url": receiver.url, "text": "x", "timestamp_offset": -600})
        assert int(time.time()) - int(receiver.received[-1][1]) >= 599
        assert stale["status"] == 200, "still signed: the receiver decides about age"
        replay = slack.control("replay", {})
        assert receiver.received[-1][0] == receiver.received[-2][0] and receiver.received[-1][1] == receiver.received[-2][1]
        assert replay["status"] == 200
        click = slack.control("click", {"url": receiver.url, "user_id": "U0OPS", "action_id": "onetouch_destroy", "value": "{}"})
        payload = json.loads(urllib.parse.parse_qs(receiver.received[-1][0].decode())["payload"][0])
        assert click["status"] == 200 and payload["type"] == "block_actions" and payload["user"]["id"] == "U0OPS"
        assert payload["actions"][0]["action_id"] == "onetouch_destroy" and payload["response_url"].startswith(slack.url + "/actions/")
    finally:
        receiver.close()


def test_response_urls_and_user_groups(slack):
    request = urllib.request.Request(f"{slack.url}/commands/T/1/x", data=json.dumps({"text": "done"}).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    assert urllib.request.urlopen(request).read() == b"ok"
    assert slack.control("responses")[0]["body"] == {"text": "done"}
    slack.control("groups", {"S0OPS00001": ["U1", "U2"]})
    assert slack.call("usergroups.users.list", form=True, usergroup="S0OPS00001")[2] == {"ok": True, "users": ["U1", "U2"]}
    assert slack.call("usergroups.users.list", form=True, usergroup="S0NONE0001")[2]["error"] == "no_such_subteam"


class WSClient:
    """A minimal RFC 6455 client (masked frames), enough to play onetouch's side of Socket Mode."""

    def __init__(self, url):
        import base64
        import os
        parts = urllib.parse.urlsplit(url)
        self.sock = socket.create_connection((parts.hostname, parts.port), timeout=10)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET {parts.path}?{parts.query} HTTP/1.1\r\nHost: {parts.netloc}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        self.file = self.sock.makefile("rb")
        self.status = self.file.readline().decode()
        while self.file.readline() not in (b"\r\n", b""):
            pass

    def receive(self):
        head = self.file.read(2)
        n = head[1] & 0x7F
        if n == 126:
            n = int.from_bytes(self.file.read(2), "big")
        elif n == 127:
            n = int.from_bytes(self.file.read(8), "big")
        return head[0] & 0x0F, self.file.read(n)

    def send(self, text):
        import os
        data, mask = text.encode(), os.urandom(4)
        n = len(data)
        header = bytes([0x81]) + (bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + n.to_bytes(2, "big"))
        self.sock.sendall(header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))


def test_socket_mode_hands_out_a_single_use_url_then_envelopes_that_wait_for_their_ack(slack):
    app_token = Path(slack.env["SLACK_APP_TOKEN_FILE"]).read_text().strip()
    assert slack.call("apps.connections.open")[2]["error"] == "invalid_auth", "the bot token is not an app token"
    _, _, opened = slack.call("apps.connections.open", token=app_token)
    assert opened["ok"] and opened["url"].startswith("ws://127.0.0.1:")
    client = WSClient(opened["url"])
    assert client.status.startswith("HTTP/1.1 101")
    opcode, hello = client.receive()
    assert opcode == 1 and json.loads(hello)["type"] == "hello"
    assert WSClient(opened["url"]).status.startswith("HTTP/1.1 401"), "a ticket is good for one connection"

    result = {}
    thread = threading.Thread(target=lambda: result.update(slack.control("socket", {"text": "list", "user_id": "U0ADMIN001"})))
    thread.start()
    _, raw = client.receive()
    envelope = json.loads(raw)
    assert envelope["type"] == "slash_commands" and envelope["accepts_response_payload"]
    assert envelope["payload"]["text"] == "list" and envelope["payload"]["user_id"] == "U0ADMIN001"
    client.send(json.dumps({"envelope_id": envelope["envelope_id"], "payload": {"text": "no hosts"}}))
    thread.join(10)
    assert result["ack"] == {"envelope_id": envelope["envelope_id"], "payload": {"text": "no hosts"}}
    assert slack.control("socket") == {"connections": 1, "open": True}

    thread = threading.Thread(target=lambda: result.update(slack.control("socket_disconnect", {})))
    thread.start()
    _, raw = client.receive()
    assert json.loads(raw)["type"] == "disconnect"
    thread.join(10)
