#!/usr/bin/env python3
"""Simulated hosts for the EC2 test bed: plays the VM's part of the host protocol.

moto launches no machine, so nothing would ever run the cloud-init user-data.  This agent polls
moto for running instances tagged `onetouch:host-id`, reads each one's user-data
(`#cloud-config`, the `write_files` entry for /etc/onetouch/host.env) and, in one thread per
host, does what the bootstrap script on a real VM does (docs: architecture "The host protocol"):

  1. POST {URL}/v1/hosts/{id}/reports {"stage":"booted"}
  2. GET  {URL}/v1/hosts/{id}/enrollment   425 -> poll, 200 -> OTP kept in memory, 410 -> go on
  3. wait for a tagged, non-root data volume attached in moto, then
     POST reports {"stage":"volume-mounted","volumeId":"vol-..."}
  4. simulated config pull (fails with exit status 2 for --fail-host NAME)
  5. optional MIT Kerberos enrollment: `kadmin -p <principal> ktadd -k <keytab> <principal>`
     with the OTP on stdin (never on argv)
  6. POST reports {"stage":"configured","exitStatus":0}
Any failure reports {"stage":"failed","logTail":"..."}.

Every call to the orchestrator carries `Authorization: Bearer <ONETOUCH_TOKEN>`.  Neither the
token nor the one-time password is ever logged or written to the state file.

Progress is kept in a JSON state file so a restarted agent neither redoes configured hosts nor
repeats reports it already made.
"""

from __future__ import annotations

import argparse
import base64
import gzip
import hashlib
import json
import logging
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

import boto3
import yaml
from botocore.config import Config

TAG_HOST_ID = "onetouch:host-id"
HOST_ENV_PATH = "/etc/onetouch/host.env"
REQUIRED_ENV = ("ONETOUCH_URL", "ONETOUCH_HOST_ID", "ONETOUCH_TOKEN")

# Persisted host statuses after which a restarted agent leaves the instance alone.
TERMINAL = {"configured", "failed", "refused", "ignored"}

log = logging.getLogger("host-agent")


# --------------------------------------------------------------------------------------------
# User-data parsing
# --------------------------------------------------------------------------------------------


def parse_host_env(text: str) -> dict[str, str]:
    """Parse `KEY=value` lines; values may be single-quoted shell words (`'a'\\''b'` = a'b)."""
    env = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.split("=", 1)
        key = key.strip()
        if key.startswith("export "):
            key = key[len("export ") :].strip()
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == "'":
            value = value[1:-1].replace("'\\''", "'")
        elif len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        env[key] = value
    return env


def decode_write_file(entry: dict) -> str:
    """Content of a cloud-init write_files entry, honouring its `encoding`."""
    content = entry.get("content", "")
    encoding = str(entry.get("encoding", "text/plain")).lower()
    data = content.encode() if isinstance(content, str) else bytes(content)
    if encoding in ("b64", "base64", "gz+b64", "gzip+base64", "gz+base64", "gzip+b64"):
        data = base64.b64decode(data)
    if encoding.startswith("gz"):
        data = gzip.decompress(data)
    return data.decode()


def host_env_from_user_data(raw: bytes) -> dict[str, str] | None:
    """host.env of a `#cloud-config` user-data document, or None if there is none."""
    if raw[:2] == b"\x1f\x8b":  # cloud-init accepts gzip-compressed user-data
        raw = gzip.decompress(raw)
    text = raw.decode("utf-8", "replace")
    if not text.startswith("#cloud-config"):
        return None
    doc = yaml.safe_load(text) or {}
    for entry in doc.get("write_files") or []:
        if isinstance(entry, dict) and entry.get("path") == HOST_ENV_PATH:
            env = parse_host_env(decode_write_file(entry))
            return env if all(env.get(k) for k in REQUIRED_ENV) else None
    return None


def root_volume_id(instance: dict) -> str | None:
    """Volume id of the instance's root device.

    The mapping whose DeviceName is RootDeviceName; moto keeps the AMI's root name even when the
    launch maps another device, so fall back to the first mapping (the one given at launch).
    """
    mappings = [m for m in instance.get("BlockDeviceMappings", []) if m.get("Ebs", {}).get("VolumeId")]
    for m in mappings:
        if m.get("DeviceName") == instance.get("RootDeviceName"):
            return m["Ebs"]["VolumeId"]
    return mappings[0]["Ebs"]["VolumeId"] if mappings else None


# --------------------------------------------------------------------------------------------
# State file
# --------------------------------------------------------------------------------------------


class StateStore:
    """instance id -> {"hostId", "status", "stages": [...], "updatedAt"}; saved atomically."""

    def __init__(self, path: str):
        self.path = path
        self.lock = threading.Lock()
        self.instances: dict[str, dict] = {}
        if os.path.exists(path):
            try:
                with open(path) as f:
                    self.instances = json.load(f).get("instances", {})
            except (OSError, ValueError) as exc:
                log.warning("state file %s unreadable (%s); starting afresh", path, exc)
        self.save()

    def get(self, iid: str) -> dict:
        with self.lock:
            return json.loads(json.dumps(self.instances.get(iid, {})))

    def update(self, iid: str, stage: str | None = None, **fields) -> None:
        with self.lock:
            rec = self.instances.setdefault(iid, {"stages": []})
            rec.update(fields)
            if stage and stage not in rec["stages"]:
                rec["stages"].append(stage)
            rec["updatedAt"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            self._save_locked()

    def save(self) -> None:
        with self.lock:
            self._save_locked()

    def _save_locked(self) -> None:
        tmp = f"{self.path}.tmp"
        with open(tmp, "w") as f:
            json.dump({"version": 1, "instances": self.instances}, f, indent=1, sort_keys=True)
        os.replace(tmp, self.path)


# --------------------------------------------------------------------------------------------
# One host
# --------------------------------------------------------------------------------------------


class HostFailure(Exception):
    """The host protocol failed; report `failed` with the log tail."""

    def __init__(self, message: str, exit_status: int | None = None):
        super().__init__(message)
        self.exit_status = exit_status


class Stop(Exception):
    """Stop working on this host without a `failed` report (refused, gone, or unreachable)."""

    def __init__(self, message: str, status: str):
        super().__init__(message)
        self.status = status  # persisted status


# No proxies: the orchestrator is local.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class HostRunner(threading.Thread):
    def __init__(self, agent: "Agent", instance: dict):
        super().__init__(daemon=True, name=f"host-{instance['InstanceId']}")
        self.agent = agent
        self.instance = instance
        self.iid = instance["InstanceId"]
        tags = {t["Key"]: t["Value"] for t in instance.get("Tags", [])}
        self.tag_host_id = tags.get(TAG_HOST_ID, "")
        self.name_tag = tags.get("Name", "")
        self.host_id = self.tag_host_id  # replaced by ONETOUCH_HOST_ID once user-data is read
        self.url = ""
        self.token = ""
        # The machine's boot secret (X-OneTouch-Claim): the same for this instance across agent restarts,
        # as the real bootstrap keeps it in /var/lib/onetouch/claim.
        self.claim = hashlib.sha256(f"claim of {self.iid}".encode()).hexdigest()
        self.events: list[str] = []  # this host's log lines, the source of `logTail`

    # ---- logging ----------------------------------------------------------------------------

    def event(self, message: str, level=logging.INFO) -> None:
        log.log(level, "host=%s instance=%s %s", self.host_id or "-", self.iid, message)
        self.events.append(f"{time.strftime('%H:%M:%S')} {message}")
        del self.events[:-50]

    def log_tail(self, limit: int = 4000) -> str:
        return "\n".join(self.events)[-limit:]

    # ---- thread body ------------------------------------------------------------------------

    def run(self) -> None:
        state = self.agent.state
        try:
            self.protocol()
        except Stop as stop:
            self.event(f"stopped: {stop}", logging.WARNING)
            state.update(self.iid, status=stop.status)
        except Exception as exc:  # HostFailure or anything unexpected: tell the orchestrator
            status = exc.exit_status if isinstance(exc, HostFailure) else None
            self.event(f"failed: {exc}", logging.ERROR)
            payload = {"stage": "failed", "logTail": self.log_tail()}
            if status is not None:
                payload["exitStatus"] = status
            try:
                if self.url:
                    self.report(payload)
                state.update(self.iid, stage="failed", status="failed")
            except Stop as stop:
                self.event(f"could not report the failure: {stop}", logging.WARNING)
                state.update(self.iid, status=stop.status)
        finally:
            self.token = ""
            with self.agent.active_lock:
                self.agent.active.discard(self.iid)

    def protocol(self) -> None:
        env = self.read_host_env()
        if env is None:
            self.event(f"no {HOST_ENV_PATH} with {', '.join(REQUIRED_ENV)} in user-data; ignoring instance")
            self.agent.state.update(self.iid, status="ignored")
            return
        self.url = env["ONETOUCH_URL"].rstrip("/")
        self.host_id = env["ONETOUCH_HOST_ID"]
        self.token = env["ONETOUCH_TOKEN"]
        state = self.agent.state
        done = state.get(self.iid).get("stages", [])
        state.update(self.iid, hostId=self.host_id, status="in-progress")
        self.event(f"host protocol starting against {self.url}" + (f" (resuming after {done[-1]})" if done else ""))

        if "booted" not in done:
            self.report({"stage": "booted"})
            state.update(self.iid, stage="booted")

        enrollment = self.fetch_enrollment()

        if "volume-mounted" not in done:
            volume_id = self.wait_for_volume()
            self.event(f"data volume {volume_id} attached; formatting and mounting (simulated)")
            self.report({"stage": "volume-mounted", "volumeId": volume_id})
            state.update(self.iid, stage="volume-mounted")

        self.pull_config()
        self.enroll_kerberos(enrollment)

        self.report({"stage": "configured", "exitStatus": 0})
        state.update(self.iid, stage="configured", status="configured")
        self.event("configured")

    # ---- steps ------------------------------------------------------------------------------

    def read_host_env(self) -> dict[str, str] | None:
        for attempt in range(10):
            self.check_alive()
            try:
                attr = self.agent.ec2.describe_instance_attribute(InstanceId=self.iid, Attribute="userData")
                break
            except Exception as exc:  # moto hiccup: retry a few times
                self.event(f"reading user-data failed ({exc}); retrying", logging.WARNING)
                time.sleep(0.5 * (attempt + 1))
        else:
            raise Stop("could not read user-data", "gave-up")
        value = attr.get("UserData", {}).get("Value")
        if not value:
            return None
        try:
            return host_env_from_user_data(base64.b64decode(value))
        except (ValueError, yaml.YAMLError, UnicodeDecodeError, OSError) as exc:
            self.event(f"user-data unparsable: {exc}", logging.WARNING)
            return None

    def fetch_enrollment(self) -> dict | None:
        """The enrollment document (with the OTP), or None if it was already served (410)."""
        deadline = time.monotonic() + self.agent.args.deadline
        waiting_logged = False
        while True:
            status, body = self.call("GET", f"/v1/hosts/{self.host_id}/enrollment", None, "enrollment")
            if status == 200:
                try:
                    doc = json.loads(body)
                except ValueError:
                    raise HostFailure("enrollment response is not JSON")
                if not isinstance(doc, dict) or not doc.get("oneTimePassword"):
                    raise HostFailure("enrollment response lacks oneTimePassword")
                self.event(f"enrollment received (backend={doc.get('backend', '-')}, realm={doc.get('realm', '-')})")
                return doc
            if status == 410:
                self.event("enrollment already served (410); continuing without it")
                return None
            if status == 425:
                if not waiting_logged:
                    self.event("enrollment not ready yet (425); polling")
                    waiting_logged = True
                if time.monotonic() > deadline:
                    raise HostFailure(f"enrollment still not ready after {self.agent.args.deadline:.0f} s")
                self.sleep(0.5)
                continue
            raise HostFailure(f"enrollment request refused: HTTP {status}")

    def wait_for_volume(self) -> str:
        """Wait until a tagged, non-root volume is attached to this instance (seen by the agent's
        shared VolumeWatch: a real VM sees its device locally, so the simulation polls moto once for
        all waiting hosts, not once per host)."""
        root = root_volume_id(self.instance)
        deadline = time.monotonic() + self.agent.args.deadline
        self.event("waiting for the data volume")
        watch = self.agent.volumes
        while True:
            volumes = watch.attached_to(self.iid, timeout=1.0)
            self.check_alive()
            for vol in sorted(volumes, key=lambda v: v["VolumeId"]):
                tagged = any(t["Key"] == TAG_HOST_ID for t in vol.get("Tags", []))
                attached = any(
                    a.get("InstanceId") == self.iid and a.get("State") == "attached" for a in vol.get("Attachments", [])
                )
                if vol["VolumeId"] != root and tagged and attached:
                    return vol["VolumeId"]
            if time.monotonic() > deadline:
                raise HostFailure(f"no tagged data volume attached after {self.agent.args.deadline:.0f} s")

    def pull_config(self) -> None:
        names = {self.host_id, self.tag_host_id, self.name_tag} - {""}
        if names & set(self.agent.args.fail_host):
            self.event("config pull: git clone ok; ansible-pull exited with status 2 (simulated failure)")
            if self.agent.args.fail_report == "configured":
                self.report({"stage": "configured", "exitStatus": 2, "logTail": self.log_tail()})
                raise Stop("reported configured with exit status 2 (simulated failure)", "failed")
            raise HostFailure("ansible-pull exited with status 2", exit_status=2)
        self.event("config pull: git clone + ansible-pull ok (simulated)")

    def enroll_kerberos(self, enrollment: dict | None) -> None:
        if enrollment is None:
            self.event("no enrollment document in this run; Kerberos enrollment skipped")
            return
        otp = enrollment.pop("oneTimePassword", None)  # drop it from the document as we go
        backend = enrollment.get("backend")
        kadmin = self.agent.args.kadmin
        if backend != "mit":
            self.event(f"Kerberos backend {backend or '-'}: enrollment simulated")
            return
        if not kadmin or not os.environ.get("KRB5_CONFIG"):
            self.event("MIT enrollment skipped (agent has no --kadmin or KRB5_CONFIG)")
            return
        principal = enrollment.get("principal")
        if not principal:
            raise HostFailure("enrollment for backend mit lacks principal")
        if "@" not in principal and enrollment.get("realm"):
            principal = f"{principal}@{enrollment['realm']}"
        name = re.sub(r"[^A-Za-z0-9._-]", "_", self.host_id)
        keytab = os.path.join(self.agent.keytab_dir, f"{name}.keytab")
        cmd = [kadmin, "-p", principal]
        if enrollment.get("adminServer"):
            cmd += ["-s", enrollment["adminServer"]]
        cmd += ["ktadd", "-k", keytab, principal]
        self.event(f"kerberos: {' '.join(cmd)} (password on stdin)")
        try:
            # Script mode (command as argv) makes kadmin's exit status meaningful.  The OTP goes
            # to stdin only; a new session keeps kadmin away from any controlling terminal.
            proc = subprocess.run(
                cmd, input=f"{otp}\n", capture_output=True, text=True, timeout=120, start_new_session=True
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise HostFailure(f"kadmin could not run: {exc}")
        finally:
            otp = None
        if proc.returncode != 0:
            tail = "\n".join(proc.stderr.strip().splitlines()[-10:])
            self.event(f"kadmin ktadd exited with status {proc.returncode}: {tail}", logging.ERROR)
            raise HostFailure(f"kadmin ktadd exited with status {proc.returncode}", exit_status=proc.returncode)
        self.event(f"kerberos: keytab written to {keytab}")

    # ---- orchestrator calls -----------------------------------------------------------------

    def report(self, payload: dict) -> None:
        status, _ = self.call("POST", f"/v1/hosts/{self.host_id}/reports", payload, f"report {payload['stage']}")
        if 200 <= status < 300:
            self.event(f"reported {payload['stage']} (HTTP {status})")
        elif status == 409:
            self.event(f"report {payload['stage']}: 409 conflict, already recorded; continuing")
        else:
            raise Stop(f"orchestrator refused report {payload['stage']}: HTTP {status}", "refused")

    def call(self, method: str, path: str, payload: dict | None, what: str) -> tuple[int, bytes]:
        """One orchestrator call, retried on connection errors, 5xx and 429 with full jitter.

        Returns (status, body) for any other status; gives up (Stop) after --deadline seconds.
        """
        deadline = time.monotonic() + self.agent.args.deadline
        attempt = 0
        while True:
            self.check_alive()
            data = json.dumps(payload).encode() if payload is not None else None
            req = urllib.request.Request(self.url + path, data=data, method=method)
            req.add_header("Authorization", f"Bearer {self.token}")
            req.add_header("X-OneTouch-Claim", self.claim)
            req.add_header("Accept", "application/json")
            if data is not None:
                req.add_header("Content-Type", "application/json")
            retry_after = None
            try:
                with _opener.open(req, timeout=15) as resp:
                    return resp.status, resp.read()
            except urllib.error.HTTPError as err:
                body = err.read()
                if err.code < 500 and err.code != 429:
                    return err.code, body
                reason = f"HTTP {err.code}"
                retry_after = err.headers.get("Retry-After")
            except (urllib.error.URLError, OSError) as exc:  # refused, reset, timeout
                reason = str(getattr(exc, "reason", exc))
            if time.monotonic() > deadline:
                raise Stop(f"{what}: giving up after {self.agent.args.deadline:.0f} s ({reason})", "gave-up")
            delay = random.uniform(0, min(5.0, 0.2 * 2**attempt))
            if retry_after and retry_after.isdigit():
                delay = max(delay, float(retry_after))
            attempt += 1
            self.event(f"{what}: {reason}; retry {attempt} in {delay:.1f} s", logging.WARNING)
            self.sleep(delay)

    # ---- helpers ----------------------------------------------------------------------------

    def check_alive(self) -> None:
        if self.agent.stopping.is_set():
            raise Stop("agent shutting down", "in-progress")
        if self.iid not in self.agent.running:
            raise Stop("instance is no longer running", "gone")

    def sleep(self, seconds: float) -> None:
        self.agent.stopping.wait(seconds)
        self.check_alive()


# --------------------------------------------------------------------------------------------
# The agent
# --------------------------------------------------------------------------------------------


class VolumeWatch(threading.Thread):
    """One DescribeVolumes (filtered by attachment.instance-id) every `interval` seconds for every
    host thread that waits for its data volume; the waiters block on a condition until a poll after
    they started waiting has answered."""

    def __init__(self, agent: "Agent", interval: float):
        super().__init__(daemon=True, name="volume-watch")
        self.agent = agent
        self.interval = interval
        self.changed = threading.Condition()
        self.waiting: dict[str, int] = {}  # instance id -> number of waiting threads
        self.seen: dict[str, list[dict]] = {}  # instance id -> volumes attached to it at the last poll
        self.polls = 0

    def attached_to(self, iid: str, timeout: float) -> list[dict]:
        with self.changed:
            self.waiting[iid] = self.waiting.get(iid, 0) + 1
            try:
                start = self.polls
                self.changed.notify_all()  # wake the poller if it idles
                self.changed.wait_for(lambda: self.polls > start + 1 or self.agent.stopping.is_set(), timeout)
                return list(self.seen.get(iid, []))
            finally:
                self.waiting[iid] -= 1
                if not self.waiting[iid]:
                    del self.waiting[iid]

    def run(self) -> None:
        while not self.agent.stopping.is_set():
            with self.changed:
                if not self.waiting:
                    self.changed.wait(1.0)
                    continue
                ids = sorted(self.waiting)
            seen: dict[str, list[dict]] = {}
            if self.agent.args.front:
                # Only the volumes the front saw attached to a waiting instance, by id: describing by
                # attachment makes moto look at every volume for every waiting instance.
                attached = self.agent.attached
                volume_ids = sorted({v for iid in ids for v in attached.get(iid, ())})
                filters = [{"Name": "volume-id", "Values": volume_ids}]
            else:
                volume_ids = ids
                filters = [{"Name": "attachment.instance-id", "Values": ids}]
            try:
                for vol in self.agent.ec2.describe_volumes(Filters=filters)["Volumes"] if volume_ids else []:
                    for a in vol.get("Attachments", []):
                        seen.setdefault(a.get("InstanceId"), []).append(vol)
            except Exception as exc:
                log.warning("DescribeVolumes failed (%s); retrying", exc)
                seen = None
            with self.changed:
                if seen is not None:
                    self.seen = seen
                self.polls += 1
                self.changed.notify_all()
            self.agent.stopping.wait(self.interval)


class Agent:
    def __init__(self, args):
        self.args = args
        self.ec2 = boto3.client(  # clients are thread-safe; the host threads share this one
            "ec2",
            endpoint_url=args.moto,
            region_name=args.region,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            config=Config(retries={"max_attempts": 3, "mode": "standard"}, max_pool_connections=50),
        )
        self.state = StateStore(args.state)
        self.keytab_dir = args.keytab_dir or tempfile.mkdtemp(prefix="onetouch-keytabs-")
        self.stopping = threading.Event()
        self.running: frozenset[str] = frozenset()  # running instances, as of the last look at each
        self.started: set[str] = set()  # instances handled by this process
        self.active: set[str] = set()  # instances whose host thread still runs
        self.active_lock = threading.Lock()
        # With --front: new instance ids come from the front's launch feed (cheap), and moto is asked
        # only about those and about the active ones; describing every instance moto has takes
        # about a second with 100 of them and would slow everything else moto does.
        self.launch_cursor = 0
        self.unseen: dict[str, float] = {}  # launched, not yet seen running (id -> first heard of)
        self.last_liveness = 0.0
        self.volumes = VolumeWatch(self, interval=0.3)
        self.attached: dict[str, set[str]] = {}  # with --front: instance -> volumes attached through it

    def poll_running(self, ids: list[str] | None = None) -> list[dict]:
        filters = [
            {"Name": "tag-key", "Values": [TAG_HOST_ID]},
            {"Name": "instance-state-name", "Values": ["running"]},
        ]
        if ids is not None:
            filters.append({"Name": "instance-id", "Values": ids})
        pages = self.ec2.get_paginator("describe_instances").paginate(Filters=filters)
        return [i for page in pages for r in page["Reservations"] for i in r["Instances"]]

    def look(self) -> list[dict]:
        """The running, tagged instances to know about now; updates `running`."""
        if not self.args.front:
            instances = self.poll_running()
            self.running = frozenset(i["InstanceId"] for i in instances)
            return instances
        with urllib.request.urlopen(f"{self.args.front}/_front/launched?after={self.launch_cursor}", timeout=10) as r:
            feed = json.loads(r.read())
        if feed["next"] < self.launch_cursor:  # the front was reset: read its feed from the start
            self.launch_cursor = 0
            return []
        now = time.monotonic()
        for iid in feed["instances"]:
            self.unseen.setdefault(iid, now)
        self.launch_cursor = feed["next"]
        attached: dict[str, set[str]] = {}
        for volume, iid in feed.get("attachments", []):
            attached.setdefault(iid, set()).add(volume)
        self.attached = attached
        # Terminated through the front: gone (a real VM stops when it is terminated).
        self.running = frozenset(self.running - set(feed.get("terminated", [])))
        # Instances that never show up as running and tagged (someone else's, or terminated) are dropped.
        self.unseen = {iid: t for iid, t in self.unseen.items() if now - t < 60}
        ids = set(self.unseen)
        if now - self.last_liveness >= 10.0:
            # Rarely, for what happened behind the front's back (moto driven directly): describing
            # hundreds of instances takes moto seconds.
            with self.active_lock:
                ids |= self.active
            self.last_liveness = now
        if not ids:
            return []
        instances = self.poll_running(sorted(ids))
        seen = {i["InstanceId"] for i in instances}
        self.running = frozenset((self.running - ids) | seen)
        for iid in seen:
            self.unseen.pop(iid, None)
        return instances

    def run(self) -> None:
        log.info("agent started: moto=%s region=%s state=%s", self.args.moto, self.args.region, self.args.state)
        self.volumes.start()
        failing = False
        while not self.stopping.is_set():
            try:
                instances = self.look()
            except Exception as exc:
                if not failing:
                    log.warning("DescribeInstances against moto failed: %s (will keep trying)", exc)
                failing = True
                self.stopping.wait(self.args.interval)
                continue
            if failing:
                log.info("moto reachable again")
                failing = False
            for instance in instances:
                iid = instance["InstanceId"]
                if iid in self.started:
                    continue
                self.started.add(iid)
                if self.state.get(iid).get("status") in TERMINAL:
                    continue  # done in an earlier run
                with self.active_lock:
                    self.active.add(iid)
                HostRunner(self, instance).start()
            self.stopping.wait(self.args.interval)
        log.info("agent stopping")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Simulated onetouch hosts for instances in moto (no real VMs).")
    p.add_argument("--moto", required=True, help="moto URL (direct, not the front), e.g. http://127.0.0.1:5055")
    p.add_argument("--region", default="us-east-1")
    p.add_argument("--state", default="host-agent-state.json", help="JSON state file (survives restarts)")
    p.add_argument("--log", help="also append the event lines to this file")
    p.add_argument("--fail-host", action="append", default=[], metavar="NAME",
                   help="host id / Name tag whose config pull fails with exit status 2 (repeatable)")
    p.add_argument("--fail-report", choices=("failed", "configured"), default="failed",
                   help="how --fail-host reports: stage failed (default) or configured with exitStatus 2")
    p.add_argument("--kadmin", help="kadmin binary for MIT enrollment (needs KRB5_CONFIG in the environment)")
    p.add_argument("--keytab-dir", help="where keytabs go (default: a new temporary directory)")
    p.add_argument("--interval", type=float, default=0.2, help="seconds between DescribeInstances polls")
    p.add_argument("--front", help="the fault front's URL: learn new instances from its launch feed "
                                   "(GET /_front/launched) instead of describing every instance in moto")
    p.add_argument("--deadline", type=float, default=900.0, help="seconds any single wait or retry loop may take")
    args = p.parse_args(argv)

    fmt = logging.Formatter("%(asctime)s host-agent %(levelname)s %(message)s", "%Y-%m-%dT%H:%M:%S")
    handlers = [logging.StreamHandler(sys.stderr)]
    if args.log:
        handlers.append(logging.FileHandler(args.log))
    for h in handlers:
        h.setFormatter(fmt)
        log.addHandler(h)
    log.setLevel(logging.INFO)
    log.propagate = False

    agent = Agent(args)
    signal.signal(signal.SIGTERM, lambda *_: agent.stopping.set())
    signal.signal(signal.SIGINT, lambda *_: agent.stopping.set())
    agent.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
