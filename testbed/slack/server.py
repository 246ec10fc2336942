#!/usr/bin/env python3
"""Slack-compatible test server (Python standard library only), for onetouch's Slack notifier.

Models what onetouch uses of Slack, following the facts in ../shared/design/slack.md:

Web API (POST form or JSON; `Authorization: Bearer <bot token>`; errors are HTTP 200
{"ok": false, "error": code}, rate limits HTTP 429 + Retry-After, outages 5xx):
  chat.postMessage      channel, text, blocks, thread_ts, metadata {event_type, event_payload}
                        -> {"ok", "channel", "ts", "message"}; channel_not_found, not_in_channel,
                        is_archived, no_text, invalid_blocks (blocks not a list of objects with "type"),
                        thread_ts of no message in the channel -> thread_not_found
  chat.update           channel, ts, text, blocks (metadata kept unless given) -> message_not_found,
                        cant_update_message (not the bot's), edit_window_closed (via faults)
  conversations.history channel, oldest, latest, limit (<= 999), cursor, include_all_metadata:
                        top-level messages, newest first, paginated with response_metadata.next_cursor
  conversations.replies channel, ts, include_all_metadata, limit, cursor: the parent then its replies
  usergroups.users.list usergroup -> {"users": [...]}; no_such_subteam
  auth.test             -> {"ok", "user_id", "team_id"}
Incoming webhook: POST /services/<T>/<B>/<secret> JSON -> 200 "ok", or the error as plain text
  (400 invalid_payload / no_text, 403 action_prohibited, 404 channel_not_found / no_service,
  410 channel_is_archived, 500 rollup_error); it posts to the channel it was made for.
response_url sink: POST /commands/... and /actions/... (JSON) -> "ok", recorded.

Pacing: with --strict-rate (or control "strict_rate": true), a second post to the same channel
less than --min-gap seconds (default 0.9) after the previous one answers 429 + Retry-After: 1, as
Slack may when an app bursts beyond one message per second per channel. Every gap is measured.

Slash commands to onetouch, signed as Slack signs them (v0 HMAC-SHA256 over "v0:ts:body"):
  POST /_control/slash {"url", "text", "user_id", ["channel_id", "secret", "timestamp_offset"]}
        builds the form body Slack sends, signs it with the signing secret (or "secret", to forge),
        POSTs it, and answers {"status", "body", "elapsed_ms"}; the exact request is kept
  POST /_control/replay                re-sends the last delivered request byte for byte
  POST /_control/click {"url", "user_id", "action_id", "value"} a signed block_actions payload
        (the button of an earlier answer), with a response_url on this server

Socket Mode (RFC 6455 WebSocket over plain ws:// on loopback):
  apps.connections.open (Bearer app-level token xapp-…) -> {"ok", "url": "ws://127.0.0.1:PORT/link/?ticket=…"},
        a single-use ticket; the connection gets {"type": "hello"} first
  POST /_control/socket {"type": "slash_commands", "text", "user_id"} or {"type": "interactive",
        "user_id", "action_id", "value"}: sends an envelope to the connected client and waits (5 s)
        for its ack {"envelope_id"[, "payload"]}; answers {"ack", "elapsed_ms"}; "redeliver": true
        sends the previous envelope again (same envelope_id, retry_attempt 1)
  POST /_control/socket_disconnect {"reason": "refresh_requested"}  a disconnect message
  GET  /_control/socket                connections so far and whether one is open

Control (no auth; loopback only):
  POST /_control/faults {"method": "chat.postMessage"|"chat.update"|"webhook"|"*"|..., "times": N,
        and one of: "status": 429|5xx [+ "retry_after": s], "error": code [+ "http_status"],
        "hold_seconds": s (do the call, then wait before answering), "drop": true (do the call, then
        close the connection without an answer)}
  DELETE /_control/faults              clear pending faults
  POST /_control/config {"strict_rate": bool, "min_gap": s, "archived": [channel], "not_member": [channel]}
  POST /_control/groups {"S0GROUP": ["U1", ...]}
  POST /_control/reset                 forget messages, requests, faults, responses
  GET  /_control/messages              every message (with "updates", the number of edits)
  GET  /_control/requests              every API request: method, monotonic time, status
  GET  /_control/responses             what was posted to response_urls
  GET  /_control/stats                 posts per channel, smallest gap, 429s sent

Usage: server.py --port 0 --token-file F --signing-secret-file F --webhook-secret-file F
         [--app-token-file F] [--channel C0ONETOUCH1]
prints PORT=<n> and URL=http://127.0.0.1:<n> on stdout, then serves until SIGTERM.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import re
import signal
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TEAM = "T0ONETOUCH"
BOT_USER = "U0ONETOUCHBOT"
BOT_ID = "B0ONETOUCHBOT"


class Slack:
    """The workspace: channels, messages, faults and what was asked. One lock guards it all."""

    def __init__(self, token: str, signing_secret: str, webhook_path: str, channel: str, app_token: str = ""):
        self.token = token
        self.app_token = app_token
        self.signing_secret = signing_secret
        self.webhook_path = webhook_path
        self.webhook_channel = channel
        self.lock = threading.Lock()
        self.channels = {channel: {"archived": False, "member": True}}
        self.reset()

    def reset(self):
        with self.lock:
            self.messages = []  # dicts: channel, ts, thread_ts, text, blocks, metadata, user, updates
            self.requests = []
            self.faults = []
            self.responses = []
            self.groups = {}
            self.last_post_at = {}
            self.gaps = {}
            self.rate_limited = 0
            self.strict_rate = False
            self.min_gap = 0.9
            self.counter = 0
            self.last_delivery = None
            self.tickets = set()
            self.socket = None  # the open Socket Mode connection: {"send": fn, "acks": {id: ack}, "cond": Condition}
            self.socket_connections = 0
            self.last_envelope = None
            for info in self.channels.values():
                info.update(archived=False, member=True)

    def next_ts(self) -> str:
        self.counter += 1
        return f"{int(time.time())}.{self.counter:06d}"

    def take_fault(self, method: str):
        with self.lock:
            for i, fault in enumerate(self.faults):
                if fault["method"] in (method, "*"):
                    fault["times"] -= 1
                    if fault["times"] <= 0:
                        self.faults.pop(i)
                    return dict(fault)
        return None


def sign(secret: str, timestamp: str, body: bytes) -> str:
    base = b"v0:" + timestamp.encode() + b":" + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def public_message(m: dict, with_metadata: bool) -> dict:
    out = {"type": "message", "subtype": "bot_message", "ts": m["ts"], "text": m["text"], "user": m["user"],
           "bot_id": BOT_ID, "blocks": m["blocks"]}
    if m["thread_ts"]:
        out["thread_ts"] = m["thread_ts"]
    if with_metadata and m["metadata"]:
        out["metadata"] = m["metadata"]
    return out


def page(items: list, args: dict):
    """Slack's cursor pagination: an opaque cursor, `limit` (default 100, at most 999)."""
    try:
        limit = max(1, min(999, int(args.get("limit", 100))))
    except ValueError:
        return None, "invalid_limit"
    start = 0
    if args.get("cursor"):
        try:
            start = int(base64.b64decode(args["cursor"]).decode().split(":", 1)[1])
        except Exception:
            return None, "invalid_cursor"
    chunk = items[start:start + limit]
    more = start + limit < len(items)
    meta = {"next_cursor": base64.b64encode(f"next:{start + limit}".encode()).decode() if more else ""}
    return {"messages": chunk, "has_more": more, "response_metadata": meta}, None


def truthy(value) -> bool:
    return value in (True, 1, "1", "true", "True")


def make_handler(slack: Slack):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "slack-testbed/1"

        def log_message(self, fmt, *args):  # quiet; requests are recorded instead
            pass

        # ---------------------------------------------------------------- plumbing
        def body(self) -> bytes:
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        def send(self, status: int, payload, headers=None):
            data = payload if isinstance(payload, bytes) else (
                payload.encode() if isinstance(payload, str) else json.dumps(payload).encode())
            self.send_response(status)
            ctype = "application/json; charset=utf-8" if not isinstance(payload, (str, bytes)) else "text/plain; charset=utf-8"
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def args(self, raw: bytes) -> dict:
            query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.path).query))
            ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip()
            if ctype == "application/json":
                try:
                    data = json.loads(raw or b"{}")
                except ValueError:
                    return {"__invalid_json": True}
                return {**query, **data} if isinstance(data, dict) else {"__invalid_json": True}
            return {**query, **dict(urllib.parse.parse_qsl(raw.decode(errors="replace"), keep_blank_values=True))}

        def record(self, method: str, status: int):
            with slack.lock:
                slack.requests.append({"method": method, "at": time.monotonic(), "status": status})

        # ---------------------------------------------------------------- routing
        def do_GET(self):
            self.route(b"")

        def do_POST(self):
            self.route(self.body())

        def do_DELETE(self):
            self.body()
            if self.path == "/_control/faults":
                with slack.lock:
                    slack.faults.clear()
                return self.send(200, {"ok": True})
            self.send(404, {"ok": False, "error": "not_found"})

        def route(self, raw: bytes):
            path = urllib.parse.urlsplit(self.path).path
            if path == "/link/" and (self.headers.get("Upgrade") or "").lower() == "websocket":
                return self.socket_mode()
            if path.startswith("/_control/"):
                return self.control(path[len("/_control/"):], raw)
            if path.startswith("/api/"):
                return self.api(path[len("/api/"):], raw)
            if path.startswith("/services/"):
                return self.webhook(path, raw)
            if path.startswith("/commands/") or path.startswith("/actions/"):
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    return self.send(400, "invalid_payload")
                with slack.lock:
                    slack.responses.append({"path": path, "body": body, "at": time.monotonic()})
                return self.send(200, "ok")
            self.send(404, {"ok": False, "error": "unknown_method"})

        # ---------------------------------------------------------------- faults
        def apply_fault(self, method: str):
            """Returns (answered, fault): answered when the fault already produced the response."""
            fault = slack.take_fault(method)
            if not fault:
                return False, None
            if "status" in fault:
                status = int(fault["status"])
                headers = {"Retry-After": str(fault["retry_after"])} if "retry_after" in fault else {}
                if method == "webhook":
                    body = "rate_limited" if status == 429 else fault.get("body", "rollup_error" if status >= 500 else "")
                    self.send(status, body, headers)
                else:
                    error = "ratelimited" if status == 429 else "internal_error"
                    self.send(status, {"ok": False, "error": error}, headers)
                self.record(method, status)
                return True, fault
            if "error" in fault:
                if method == "webhook":
                    self.send(int(fault.get("http_status", 400)), fault["error"])
                else:
                    self.send(int(fault.get("http_status", 200)), {"ok": False, "error": fault["error"]})
                self.record(method, int(fault.get("http_status", 200 if method != "webhook" else 400)))
                return True, fault
            return False, fault  # hold / drop: act first, then misbehave

        def finish_with(self, fault, status: int, payload, method: str, headers=None):
            if fault and fault.get("drop"):
                self.record(method, 0)
                self.close_connection = True
                try:
                    self.connection.shutdown(2)
                except OSError:
                    pass
                return
            self.record(method, status)  # when it arrived, even if its answer is held
            if fault and fault.get("hold_seconds"):
                time.sleep(float(fault["hold_seconds"]))
            try:
                self.send(status, payload, headers)
            except (BrokenPipeError, ConnectionResetError):
                pass

        # ---------------------------------------------------------------- web API
        def api(self, method: str, raw: bytes):
            answered, fault = self.apply_fault(method)
            if answered:
                return
            auth = self.headers.get("Authorization") or ""
            args = self.args(raw)
            if "__invalid_json" in args:
                return self.finish_with(fault, 200, {"ok": False, "error": "invalid_json"}, method)
            token = auth[7:] if auth.startswith("Bearer ") else args.get("token")
            if not token:
                return self.finish_with(fault, 200, {"ok": False, "error": "not_authed"}, method)
            if method == "apps.connections.open":
                if not auth.startswith("Bearer ") or not slack.app_token or not hmac.compare_digest(token, slack.app_token):
                    return self.finish_with(fault, 200, {"ok": False, "error": "invalid_auth"}, method)
                ticket = base64.urlsafe_b64encode(hashlib.sha256(f"{time.time()}{slack.next_ts()}".encode()).digest()[:12]).decode()
                with slack.lock:
                    slack.tickets.add(ticket)
                host, port = self.server.server_address[:2]
                return self.finish_with(fault, 200, {"ok": True, "url": f"ws://{host}:{port}/link/?ticket={ticket}"}, method)
            if not hmac.compare_digest(token, slack.token):
                return self.finish_with(fault, 200, {"ok": False, "error": "invalid_auth"}, method)
            handler = {
                "auth.test": self.auth_test, "chat.postMessage": self.post_message, "chat.update": self.update,
                "conversations.history": self.history, "conversations.replies": self.replies,
                "usergroups.users.list": self.group_users,
            }.get(method)
            if not handler:
                return self.finish_with(fault, 404, {"ok": False, "error": "unknown_method"}, method)
            status, payload = handler(args)
            self.finish_with(fault, status, payload, method, {"Retry-After": "1"} if status == 429 else None)

        def channel_error(self, channel):
            info = slack.channels.get(channel)
            if info is None:
                return "channel_not_found"
            if info["archived"]:
                return "is_archived"
            if not info["member"]:
                return "not_in_channel"
            return None

        def auth_test(self, args):
            return 200, {"ok": True, "user_id": BOT_USER, "team_id": TEAM, "bot_id": BOT_ID}

        def parse_blocks(self, blocks):
            if blocks in (None, ""):
                return [], None
            if isinstance(blocks, str):
                try:
                    blocks = json.loads(blocks)
                except ValueError:
                    return None, "invalid_blocks_format"
            if not isinstance(blocks, list) or not all(isinstance(b, dict) and "type" in b for b in blocks):
                return None, "invalid_blocks"
            if len(blocks) > 50:
                return None, "invalid_blocks"
            return blocks, None

        def parse_metadata(self, metadata):
            if metadata in (None, ""):
                return None, None
            if isinstance(metadata, str):
                try:
                    metadata = json.loads(metadata)
                except ValueError:
                    return None, "invalid_metadata_format"
            if not isinstance(metadata, dict) or "event_type" not in metadata or "event_payload" not in metadata:
                return None, "invalid_metadata_schema"
            return metadata, None

        def post_message(self, args):
            channel = args.get("channel", "")
            with slack.lock:
                error = self.channel_error(channel)
                if error:
                    return 200, {"ok": False, "error": error}
                blocks, error = self.parse_blocks(args.get("blocks"))
                if error:
                    return 200, {"ok": False, "error": error}
                metadata, error = self.parse_metadata(args.get("metadata"))
                if error:
                    return 200, {"ok": False, "error": error}
                text = args.get("text") or ""
                if not text and not blocks:
                    return 200, {"ok": False, "error": "no_text"}
                thread = args.get("thread_ts") or None
                if thread and not any(m["ts"] == thread and m["channel"] == channel for m in slack.messages):
                    return 200, {"ok": False, "error": "thread_not_found"}
                now = time.monotonic()
                last = slack.last_post_at.get(channel)
                if last is not None:
                    gap = now - last
                    slack.gaps.setdefault(channel, []).append(gap)
                    if slack.strict_rate and gap < slack.min_gap:
                        slack.rate_limited += 1
                        return 429, {"ok": False, "error": "ratelimited"}
                slack.last_post_at[channel] = now
                message = {"channel": channel, "ts": slack.next_ts(), "thread_ts": thread, "text": text,
                           "blocks": blocks or [], "metadata": metadata, "user": BOT_USER, "updates": 0,
                           "posted_at": now, "posted_wall": time.time()}
                slack.messages.append(message)
            return 200, {"ok": True, "channel": channel, "ts": message["ts"], "message": public_message(message, True)}

        def update(self, args):
            channel, ts = args.get("channel", ""), args.get("ts", "")
            with slack.lock:
                error = self.channel_error(channel)
                if error:
                    return 200, {"ok": False, "error": error}
                found = next((m for m in slack.messages if m["channel"] == channel and m["ts"] == ts), None)
                if not found:
                    return 200, {"ok": False, "error": "message_not_found"}
                if found["user"] != BOT_USER:
                    return 200, {"ok": False, "error": "cant_update_message"}
                blocks, error = self.parse_blocks(args.get("blocks"))
                if error:
                    return 200, {"ok": False, "error": error}
                text = args.get("text") or ""
                if not text and not blocks:
                    return 200, {"ok": False, "error": "no_text"}
                if "metadata" in args:
                    metadata, error = self.parse_metadata(args.get("metadata"))
                    if error:
                        return 200, {"ok": False, "error": error}
                    found["metadata"] = metadata
                found.update(text=text, blocks=blocks or [], updates=found["updates"] + 1)
                return 200, {"ok": True, "channel": channel, "ts": ts, "text": text,
                             "message": public_message(found, False)}

        def history(self, args):
            channel = args.get("channel", "")
            with slack.lock:
                if channel not in slack.channels:
                    return 200, {"ok": False, "error": "channel_not_found"}
                if not slack.channels[channel]["member"]:
                    return 200, {"ok": False, "error": "not_in_channel"}
                try:
                    oldest = float(args.get("oldest") or 0)
                    latest = float(args.get("latest") or 1e12)
                except ValueError:
                    return 200, {"ok": False, "error": "invalid_ts_oldest"}
                with_metadata = truthy(args.get("include_all_metadata"))
                top = [m for m in slack.messages if m["channel"] == channel and not m["thread_ts"]
                       and oldest < float(m["ts"]) <= latest]
                items = [public_message(m, with_metadata) for m in reversed(top)]
            result, error = page(items, args)
            return 200, ({"ok": False, "error": error} if error else {"ok": True, **result})

        def replies(self, args):
            channel, ts = args.get("channel", ""), args.get("ts", "")
            with slack.lock:
                if channel not in slack.channels:
                    return 200, {"ok": False, "error": "channel_not_found"}
                parent = next((m for m in slack.messages if m["channel"] == channel and m["ts"] == ts), None)
                if not parent:
                    return 200, {"ok": False, "error": "thread_not_found"}
                root = parent["thread_ts"] or parent["ts"]
                with_metadata = truthy(args.get("include_all_metadata"))
                thread = [m for m in slack.messages if m["channel"] == channel and (m["ts"] == root or m["thread_ts"] == root)]
                items = [public_message(m, with_metadata) for m in thread]
            if "limit" not in args:
                args = {**args, "limit": 999}
            result, error = page(items, args)
            return 200, ({"ok": False, "error": error} if error else {"ok": True, **result})

        def group_users(self, args):
            with slack.lock:
                users = slack.groups.get(args.get("usergroup", ""))
            if users is None:
                return 200, {"ok": False, "error": "no_such_subteam"}
            return 200, {"ok": True, "users": users}

        # ---------------------------------------------------------------- incoming webhook
        def webhook(self, path: str, raw: bytes):
            answered, fault = self.apply_fault("webhook")
            if answered:
                return
            if not hmac.compare_digest(path, slack.webhook_path):
                return self.finish_with(fault, 404, "no_service", "webhook")
            try:
                body = json.loads(raw)
            except ValueError:
                return self.finish_with(fault, 400, "invalid_payload", "webhook")
            if not isinstance(body, dict):
                return self.finish_with(fault, 400, "invalid_payload", "webhook")
            channel = slack.webhook_channel
            with slack.lock:
                info = slack.channels[channel]
                if info["archived"]:
                    status, answer = 410, "channel_is_archived"
                elif not body.get("text") and not body.get("blocks"):
                    status, answer = 400, "no_text"
                else:
                    blocks, error = self.parse_blocks(body.get("blocks"))
                    if error:
                        status, answer = 400, "invalid_blocks"
                    else:
                        now = time.monotonic()
                        last = slack.last_post_at.get(channel)
                        if last is not None:
                            slack.gaps.setdefault(channel, []).append(now - last)
                        if last is not None and slack.strict_rate and now - last < slack.min_gap:
                            slack.rate_limited += 1
                            status, answer = 429, "rate_limited"
                        else:
                            slack.last_post_at[channel] = now
                            slack.messages.append({"channel": channel, "ts": slack.next_ts(), "thread_ts": body.get("thread_ts"),
                                                   "text": body.get("text") or "", "blocks": blocks or [],
                                                   "metadata": body.get("metadata"), "user": "U0WEBHOOK", "updates": 0,
                                                   "posted_at": now, "posted_wall": time.time(), "via": "webhook"})
                            status, answer = 200, "ok"
            if status == 429:
                self.record("webhook", 429)
                return self.send(429, answer, {"Retry-After": "1"})
            self.finish_with(fault, status, answer, "webhook")

        # ---------------------------------------------------------------- Socket Mode
        def socket_mode(self):
            ticket = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.path).query)).get("ticket", "")
            with slack.lock:
                valid = ticket in slack.tickets
                slack.tickets.discard(ticket)
            key = self.headers.get("Sec-WebSocket-Key")
            if not valid or not key:
                return self.send(401 if not valid else 400, {"ok": False, "error": "invalid_ticket"})
            accept = base64.b64encode(hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()).decode()
            self.send_response(101, "Switching Protocols")
            self.send_header("Upgrade", "websocket")
            self.send_header("Connection", "Upgrade")
            self.send_header("Sec-WebSocket-Accept", accept)
            self.end_headers()
            self.wfile.flush()
            write_lock = threading.Lock()
            sock = self.connection

            def send_frame(opcode: int, data: bytes):
                header = bytes([0x80 | opcode])
                n = len(data)
                if n < 126:
                    header += bytes([n])
                elif n < 65536:
                    header += bytes([126]) + n.to_bytes(2, "big")
                else:
                    header += bytes([127]) + n.to_bytes(8, "big")
                with write_lock:
                    sock.sendall(header + data)

            connection = {"send": lambda text: send_frame(1, text.encode()), "acks": {}, "cond": threading.Condition(),
                          "close": lambda: send_frame(8, (1000).to_bytes(2, "big"))}
            with slack.lock:
                slack.socket = connection
                slack.socket_connections += 1

            send_frame(1, json.dumps({"type": "hello", "num_connections": 1, "debug_info": {"host": "applink-test"},
                                      "connection_info": {"app_id": "A0ONETOUCH"}}).encode())
            try:
                message = b""
                while True:
                    head = self.rfile.read(2)
                    if len(head) < 2:
                        break
                    fin, opcode, masked, n = head[0] & 0x80, head[0] & 0x0F, head[1] & 0x80, head[1] & 0x7F
                    if n == 126:
                        n = int.from_bytes(self.rfile.read(2), "big")
                    elif n == 127:
                        n = int.from_bytes(self.rfile.read(8), "big")
                    mask = self.rfile.read(4) if masked else b"\0\0\0\0"
                    payload = bytes(b ^ mask[i % 4] for i, b in enumerate(self.rfile.read(n)))
                    if not masked:
                        break  # RFC 6455: a client's frames are masked
                    if opcode == 8:
                        send_frame(8, payload[:2])
                        break
                    if opcode == 9:
                        send_frame(10, payload)
                        continue
                    if opcode in (0, 1):
                        message += payload
                        if fin:
                            try:
                                ack = json.loads(message)
                            except ValueError:
                                ack = {}
                            message = b""
                            with connection["cond"]:
                                connection["acks"][ack.get("envelope_id")] = ack
                                connection["cond"].notify_all()
            except OSError:
                pass
            finally:
                with slack.lock:
                    if slack.socket is connection:
                        slack.socket = None
                self.close_connection = True

        def socket_envelope(self, data: dict):
            with slack.lock:
                connection = slack.socket
                last = slack.last_envelope
            if connection is None:
                return self.send(409, {"error": "no Socket Mode connection is open"})
            if data.get("redeliver") and last:
                envelope = dict(last, retry_attempt=1, retry_reason="timeout")
            else:
                host, port = self.server.server_address[:2]
                envelope_id = base64.b32encode(hashlib.sha256(slack.next_ts().encode()).digest()[:10]).decode().lower()
                if data.get("type") == "interactive":
                    payload = {
                        "type": "block_actions", "user": {"id": data.get("user_id", "U0NOBODY"), "team_id": TEAM},
                        "team": {"id": TEAM}, "api_app_id": "A0ONETOUCH",
                        "response_url": f"http://{host}:{port}/actions/{TEAM}/{int(time.time())}/{envelope_id}",
                        "actions": [{"action_id": data.get("action_id", ""), "value": data.get("value", ""), "type": "button"}],
                    }
                    envelope = {"envelope_id": envelope_id, "type": "interactive", "accepts_response_payload": False,
                                "payload": payload}
                else:
                    payload = {"token": "deprecated", "team_id": TEAM, "team_domain": "onetouch",
                               "channel_id": data.get("channel_id", slack.webhook_channel), "channel_name": "ops",
                               "user_id": data.get("user_id", "U0NOBODY"), "user_name": "someone",
                               "command": "/onetouch", "text": data.get("text", ""), "api_app_id": "A0ONETOUCH",
                               "response_url": f"http://{host}:{port}/commands/{TEAM}/{int(time.time())}/{envelope_id}",
                               "trigger_id": f"{int(time.time())}.3.ghi"}
                    envelope = {"envelope_id": envelope_id, "type": "slash_commands", "accepts_response_payload": True,
                                "payload": payload}
                with slack.lock:
                    slack.last_envelope = envelope
            started = time.monotonic()
            with connection["cond"]:
                connection["acks"].pop(envelope["envelope_id"], None)
            connection["send"](json.dumps(envelope))
            with connection["cond"]:
                connection["cond"].wait_for(lambda: envelope["envelope_id"] in connection["acks"], timeout=5)
                ack = connection["acks"].get(envelope["envelope_id"])
            return self.send(200, {"ack": ack, "elapsed_ms": (time.monotonic() - started) * 1000,
                                   "envelope_id": envelope["envelope_id"]})

        # ---------------------------------------------------------------- control
        def control(self, what: str, raw: bytes):
            try:
                data = json.loads(raw or b"{}")
            except ValueError:
                return self.send(400, {"error": "invalid JSON"})
            if what == "messages":
                with slack.lock:
                    return self.send(200, [dict(m) for m in slack.messages])
            if what == "requests":
                with slack.lock:
                    return self.send(200, list(slack.requests))
            if what == "responses":
                with slack.lock:
                    return self.send(200, list(slack.responses))
            if what == "stats":
                with slack.lock:
                    per_channel = {}
                    for m in slack.messages:
                        per_channel[m["channel"]] = per_channel.get(m["channel"], 0) + 1
                    gaps = [g for gs in slack.gaps.values() for g in gs]
                    return self.send(200, {"posts": per_channel, "min_gap": min(gaps) if gaps else None,
                                           "rate_limited": slack.rate_limited})
            if what == "reset":
                slack.reset()
                return self.send(200, {"ok": True})
            if what == "faults":
                fault = {"times": int(data.get("times", 1)), **data}
                if "method" not in fault:
                    return self.send(400, {"error": "method is required"})
                with slack.lock:
                    slack.faults.append(fault)
                return self.send(200, {"ok": True})
            if what == "config":
                with slack.lock:
                    if "strict_rate" in data:
                        slack.strict_rate = bool(data["strict_rate"])
                    if "min_gap" in data:
                        slack.min_gap = float(data["min_gap"])
                    for channel in data.get("archived", []):
                        slack.channels.setdefault(channel, {"archived": False, "member": True})["archived"] = True
                    for channel in data.get("not_member", []):
                        slack.channels.setdefault(channel, {"archived": False, "member": True})["member"] = False
                return self.send(200, {"ok": True})
            if what == "groups":
                with slack.lock:
                    slack.groups.update(data)
                return self.send(200, {"ok": True})
            if what == "slash":
                return self.slash(data)
            if what == "click":
                return self.click(data)
            if what == "socket" and self.command == "POST":
                return self.socket_envelope(data)
            if what == "socket":
                with slack.lock:
                    return self.send(200, {"connections": slack.socket_connections, "open": slack.socket is not None})
            if what == "socket_disconnect":
                with slack.lock:
                    connection = slack.socket
                if connection is None:
                    return self.send(409, {"error": "no Socket Mode connection is open"})
                connection["send"](json.dumps({"type": "disconnect", "reason": data.get("reason", "refresh_requested"),
                                               "debug_info": {"host": "applink-test"}}))
                return self.send(200, {"ok": True})
            if what == "replay":
                with slack.lock:
                    last = slack.last_delivery
                if not last:
                    return self.send(400, {"error": "nothing delivered yet"})
                return self.send(200, deliver(last["url"], last["body"], last["headers"]))
            self.send(404, {"error": "unknown control endpoint"})

        def deliver_signed(self, url: str, body: bytes, data: dict):
            timestamp = str(int(time.time()) + int(data.get("timestamp_offset", 0)))
            secret = data.get("secret", slack.signing_secret)
            headers = {"Content-Type": "application/x-www-form-urlencoded", "X-Slack-Request-Timestamp": timestamp,
                       "X-Slack-Signature": sign(secret, timestamp, body)}
            if data.get("unsigned"):
                headers = {"Content-Type": "application/x-www-form-urlencoded"}
            with slack.lock:
                slack.last_delivery = {"url": url, "body": body, "headers": headers}
            return self.send(200, deliver(url, body, headers))

        def slash(self, data: dict):
            host, port = self.server.server_address[:2]
            response_url = f"http://{host}:{port}/commands/{TEAM}/{int(time.time())}/{slack.next_ts().replace('.', '')}"
            fields = [("token", "deprecated-verification-token"), ("team_id", TEAM), ("team_domain", "onetouch"),
                      ("channel_id", data.get("channel_id", slack.webhook_channel)), ("channel_name", "ops"),
                      ("user_id", data.get("user_id", "U0NOBODY")), ("user_name", "someone"),
                      ("command", data.get("command", "/onetouch")), ("text", data.get("text", "")),
                      ("api_app_id", "A0ONETOUCH"), ("is_enterprise_install", "false"),
                      ("response_url", response_url), ("trigger_id", f"{int(time.time())}.1.abc")]
            return self.deliver_signed(data["url"], urllib.parse.urlencode(fields).encode(), data)

        def click(self, data: dict):
            host, port = self.server.server_address[:2]
            payload = {
                "type": "block_actions", "user": {"id": data.get("user_id", "U0NOBODY"), "username": "someone", "team_id": TEAM},
                "api_app_id": "A0ONETOUCH", "token": "deprecated-verification-token", "team": {"id": TEAM, "domain": "onetouch"},
                "container": {"type": "message", "message_ts": "1.1", "channel_id": slack.webhook_channel, "is_ephemeral": True},
                "trigger_id": f"{int(time.time())}.2.def", "channel": {"id": slack.webhook_channel, "name": "ops"},
                "response_url": f"http://{host}:{port}/actions/{TEAM}/{int(time.time())}/{slack.next_ts().replace('.', '')}",
                "actions": [{"action_id": data.get("action_id", ""), "block_id": "b", "value": data.get("value", ""),
                             "type": "button", "action_ts": f"{time.time():.6f}"}],
            }
            body = ("payload=" + urllib.parse.quote(json.dumps(payload))).encode()
            return self.deliver_signed(data["url"], body, data)

    return Handler


def deliver(url: str, body: bytes, headers: dict) -> dict:
    """POSTs to onetouch as Slack would, and says what came back and how long it took."""
    started = time.monotonic()
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status, answer = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, answer = error.code, error.read()
    except OSError as error:
        return {"status": 0, "body": None, "error": str(error), "elapsed_ms": (time.monotonic() - started) * 1000}
    elapsed = (time.monotonic() - started) * 1000
    try:
        parsed = json.loads(answer) if answer else None
    except ValueError:
        parsed = answer.decode(errors="replace")
    return {"status": status, "body": parsed, "elapsed_ms": elapsed}


def read_secret(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--bind", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--token-file", required=True)
    p.add_argument("--signing-secret-file", required=True)
    p.add_argument("--webhook-secret-file", required=True, help="the secret last part of the webhook URL")
    p.add_argument("--app-token-file", help="the app-level token (xapp-…) for Socket Mode")
    p.add_argument("--channel", default="C0ONETOUCH1")
    p.add_argument("--strict-rate", action="store_true")
    args = p.parse_args(argv)
    if args.bind != "127.0.0.1":
        p.error("the test server binds 127.0.0.1 only")
    slack = Slack(read_secret(args.token_file), read_secret(args.signing_secret_file),
                  f"/services/{TEAM}/B0WEBHOOK/{read_secret(args.webhook_secret_file)}", args.channel,
                  read_secret(args.app_token_file) if args.app_token_file else "")
    slack.strict_rate = args.strict_rate
    server = ThreadingHTTPServer((args.bind, args.port), make_handler(slack))
    server.daemon_threads = True
    port = server.server_address[1]
    print(f"PORT={port}", flush=True)
    print(f"URL=http://127.0.0.1:{port}", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown, daemon=True).start())
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()


if __name__ == "__main__":
    sys.exit(main())
