#!/usr/bin/env python3
"""Fault-injecting reverse proxy in front of moto_server (the local EC2 test bed).

moto answers the EC2 Query API faithfully enough for shapes, but it never throttles, has no
eventual consistency and ignores ClientToken idempotency (see docs protocols.md §3).  This front
listens on 127.0.0.1:PORT, forwards every request to moto unchanged (body and SigV4 headers
included, so moto's optional signature check still works) and adds:

* ClientToken idempotency for RunInstances and CreateVolume (replay, IdempotentParameterMismatch,
  IdempotentInstanceTerminated);
* EC2's per-action token buckets (RequestLimitExceeded, HTTP 503);
* delayed visibility of freshly created instance and volume ids (InvalidInstanceID.NotFound /
  InvalidVolume.NotFound, and omission from list-style describes);
* seeded random faults: HTTP 500 InternalError before forwarding (no side effect) and "lost"
  responses after forwarding (side effect happened, the client sees a closed connection or 502/504);
* KMS keys EBS cannot use (disabled, pending deletion, missing, or not granted to the caller): a
  CreateVolume with such a key is accepted and its volume then vanishes, as on AWS (see
  "KMS keys EBS cannot use" below);
* credentials that stop working for a while (every EC2 call answered `RequestExpired`, what EC2
  says for expired temporary credentials) and a clock that differs from the caller's (the `Date`
  header shows the front's time; a request signed more than 15 minutes off is refused with
  `AuthFailure`, what EC2 answers for a skewed clock, aws/aws-sdk-java#519);
* per-action / per-outcome counters.

Control endpoints on the same port (JSON):
  GET  /_front/health   200 {"status":"ok",...} when moto answers, 503 otherwise
  GET  /_front/stats    counters, current config, sizes of the token / lag stores
  GET  /_front/launched?after=N   instance ids moto launched through the front, from the N-th on,
                                  every id terminated and every (volume, instance) attached through it
                                  ({"instances": [...], "next": M, "terminated": [...], "attachments":
                                  [[vol, instance], ...]}); lets the host agent follow its instances
                                  without describing everything moto has
  GET  /_front/config   current config
  POST /_front/config   partial update, e.g. {"throttle":false,"error_rate":0.1,"lag_seconds":2}
                        or {"refused_kms_keys":["arn:aws:kms:us-east-1:123456789012:key/..."]}
                        or {"expire_requests":true} (every EC2 call: 400 RequestExpired) or
                        {"clock_skew_seconds":1200} (the front's clock runs 20 minutes ahead)
  POST /_front/reset    clear counters, tokens, lag and buckets, and reset moto (/moto-api/reset)

Only the standard library is used.  Run `front.py --help` for the options.
"""

from __future__ import annotations

import argparse
import calendar
import email.utils
import hashlib
import http.client
import json
import os
import random
import re
import sys
import threading
import time
import traceback
import uuid
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlencode, urlsplit
from xml.sax.saxutils import escape

EC2_API_VERSION = "2016-11-15"

# --------------------------------------------------------------------------------------------
# Throttling: EC2's token buckets (docs.aws.amazon.com/ec2/latest/devguide/ec2-api-throttling.html)
# --------------------------------------------------------------------------------------------

# Actions with their own, "uncategorized" bucket: (capacity, refill per second).
UNCATEGORIZED_BUCKETS = {
    "RunInstances": (5, 2),
    "StartInstances": (5, 2),
    "TerminateInstances": (100, 5),
    "CreateVolume": (100, 5),
    "DeleteVolume": (100, 5),
    "CreateTags": (100, 10),
    "DeleteTags": (100, 10),
    "AssociateIamInstanceProfile": (100, 5),
    "ModifyInstanceMetadataOptions": (100, 5),
}
# Non-mutating actions that draw from a smaller bucket when called with neither a filter nor
# pagination.  Explicit id lists (InstanceId.N) do not count as a filter here, which is the
# stricter reading of the AWS page; use Filter.N.Name=instance-id to get the larger bucket.
UNFILTERED_SMALL_BUCKET_ACTIONS = {
    "DescribeInstances",
    "DescribeInstanceStatus",
    "DescribeNetworkInterfaces",
    "DescribeSecurityGroups",
    "DescribeSnapshots",
    "DescribeSpotInstanceRequests",
    "DescribeVolumes",
}
NON_MUTATING_PREFIXES = ("Describe", "List", "Search", "Get")
NON_MUTATING = (100, 20)
UNFILTERED_UNPAGINATED = (50, 10)
MUTATING = (50, 5)


def bucket_for(action: str, params: dict[str, str]) -> tuple[str, int, int]:
    """Return (category, capacity, refill/s) of the bucket a call draws from.

    Buckets are per action (and per region, see TokenBuckets); the category only tells the
    unfiltered/filtered variants of one Describe action apart.
    """
    if action in UNCATEGORIZED_BUCKETS:
        return ("uncategorized", *UNCATEGORIZED_BUCKETS[action])
    if action.startswith(NON_MUTATING_PREFIXES):
        filtered = any(k.startswith("Filter.") for k in params)
        paginated = "MaxResults" in params or "NextToken" in params
        if action in UNFILTERED_SMALL_BUCKET_ACTIONS and not (filtered or paginated):
            return ("unfiltered-unpaginated", *UNFILTERED_UNPAGINATED)
        return ("non-mutating", *NON_MUTATING)
    return ("mutating", *MUTATING)


class TokenBucket:
    """Classic token bucket; starts full.  Not thread-safe on its own (TokenBuckets locks)."""

    def __init__(self, capacity: int, rate: float, now: float):
        self.capacity = capacity
        self.rate = rate
        self.tokens = float(capacity)
        self.stamp = now

    def take(self, now: float) -> bool:
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class TokenBuckets:
    def __init__(self, clock=time.monotonic):
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[tuple[str, str, str], TokenBucket] = {}

    def take(self, region: str, action: str, params: dict[str, str]) -> bool:
        category, capacity, rate = bucket_for(action, params)
        key = (region, action, category)
        with self._lock:
            now = self._clock()
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = TokenBucket(capacity, rate, now)
            return bucket.take(now)

    def clear(self) -> None:
        with self._lock:
            self._buckets.clear()


# --------------------------------------------------------------------------------------------
# Configuration and counters
# --------------------------------------------------------------------------------------------

LOSE_MODES = ("close", "502", "504")


@dataclass
class FrontConfig:
    throttle: bool = True
    error_rate: float = 0.0  # fraction of calls answered 500 InternalError before forwarding
    lose_rate: float = 0.0  # fraction of forwarded calls whose response is lost
    lose_mode: str = "close"  # how a lost response looks: close | 502 | 504
    lag_seconds: float = 0.0  # visibility delay of ids created by RunInstances / CreateVolume
    fault_actions: list[str] | None = None  # restrict random faults to these actions (None: all)
    seed: int = 0  # seed of the fault RNG; setting it through /_front/config re-seeds
    # CreateVolume KmsKeyId values (compared as sent) that EBS cannot use; see kms_key_refused.
    refused_kms_keys: list[str] = field(default_factory=list)
    expire_requests: bool = False  # answer every EC2 call 400 RequestExpired (expired credentials)
    clock_skew_seconds: float = 0.0  # the front's clock minus the real one; see signed_too_far_off

    def update(self, changes: dict) -> None:
        """Apply a partial update from JSON; raises ValueError on unknown keys or bad values."""
        known = {f for f in asdict(self)}
        unknown = set(changes) - known
        if unknown:
            raise ValueError(f"unknown config keys: {sorted(unknown)}")
        new = FrontConfig(**{**asdict(self), **changes})
        if not isinstance(new.throttle, bool):
            raise ValueError("throttle must be true or false")
        for name in ("error_rate", "lose_rate"):
            value = getattr(new, name)
            if not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be a number in [0, 1]")
        if new.lose_mode not in LOSE_MODES:
            raise ValueError(f"lose_mode must be one of {LOSE_MODES}")
        if not isinstance(new.lag_seconds, (int, float)) or new.lag_seconds < 0:
            raise ValueError("lag_seconds must be a number >= 0")
        if new.fault_actions is not None and not (
            isinstance(new.fault_actions, list) and all(isinstance(a, str) for a in new.fault_actions)
        ):
            raise ValueError("fault_actions must be null or a list of action names")
        if not isinstance(new.seed, int):
            raise ValueError("seed must be an integer")
        if not (isinstance(new.refused_kms_keys, list) and all(isinstance(k, str) and k for k in new.refused_kms_keys)):
            raise ValueError("refused_kms_keys must be a list of KMS key ids, ARNs or aliases")
        if not isinstance(new.expire_requests, bool):
            raise ValueError("expire_requests must be true or false")
        if isinstance(new.clock_skew_seconds, bool) or not isinstance(new.clock_skew_seconds, (int, float)):
            raise ValueError("clock_skew_seconds must be a number of seconds")
        self.__dict__.update(new.__dict__)


OUTCOMES = (
    "forwarded",  # sent to moto, moto's answer returned (whatever its status)
    "replayed",  # idempotent replay of a stored RunInstances/CreateVolume response
    "throttled",  # 503 RequestLimitExceeded, not forwarded
    "injected5xx",  # 500 InternalError, not forwarded
    "lost",  # forwarded (side effect happened) but the response was dropped
    "notVisible",  # 400 *.NotFound because of the visibility lag, not forwarded
    "idempotencyError",  # 400 IdempotentParameterMismatch / IdempotentInstanceTerminated
    "kmsRefused",  # CreateVolume with a refused KMS key: forwarded, then the volume was deleted again
    "expired",  # 400 RequestExpired while expire_requests is on, not forwarded
    "skewRefused",  # 401 AuthFailure: signed more than 15 minutes off the front's (skewed) clock
    "passthrough",  # not an EC2 Query call (e.g. IAM, KMS, moto-api): forwarded untouched
    "frontError",  # a bug in the front itself: 500 InternalError, logged with the traceback
)


class Counters:
    def __init__(self):
        self._lock = threading.Lock()
        self.clear()

    def clear(self) -> None:
        with self._lock:
            self.by_action: dict[str, dict[str, int]] = {}
            self.by_outcome = {o: 0 for o in OUTCOMES}
            self.total = 0

    def record(self, action: str, outcome: str) -> None:
        with self._lock:
            self.total += 1
            self.by_outcome[outcome] += 1
            per = self.by_action.setdefault(action, {})
            per[outcome] = per.get(outcome, 0) + 1

    def snapshot(self) -> dict:
        with self._lock:
            return {
                "total": self.total,
                "byOutcome": dict(self.by_outcome),
                "byAction": {a: dict(o) for a, o in sorted(self.by_action.items())},
            }


# --------------------------------------------------------------------------------------------
# Idempotency store and visibility lag
# --------------------------------------------------------------------------------------------

IDEMPOTENT_ACTIONS = ("RunInstances", "CreateVolume")


def fingerprint(params: dict[str, str]) -> str:
    """Hash of all parameters except ClientToken (what EC2 compares on a token re-use)."""
    items = sorted((k, v) for k, v in params.items() if k != "ClientToken")
    return hashlib.sha256(json.dumps(items).encode()).hexdigest()


@dataclass
class StoredResponse:
    fingerprint: str
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    instance_ids: list[str] = field(default_factory=list)
    rolled_back: bool = False  # a CreateVolume whose volume EBS deleted again (refused KMS key)


class TokenStore:
    """ClientToken -> first successful response, keyed by (region, action, token).

    Each key has its own lock, held while the first call is forwarded, so a concurrent retry
    with the same token waits and then replays instead of launching a second instance.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._entries: dict[tuple[str, str, str], StoredResponse] = {}
        self._key_locks: dict[tuple[str, str, str], threading.Lock] = {}

    def key_lock(self, key) -> threading.Lock:
        with self._lock:
            return self._key_locks.setdefault(key, threading.Lock())

    def get(self, key) -> StoredResponse | None:
        with self._lock:
            return self._entries.get(key)

    def put(self, key, entry: StoredResponse) -> None:
        with self._lock:
            self._entries[key] = entry

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._key_locks.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)


class Visibility:
    """Ids created recently and not yet visible: id -> monotonic deadline."""

    def __init__(self, clock=time.monotonic):
        self._clock = clock
        self._lock = threading.Lock()
        self._hidden: dict[str, float] = {}

    def hide(self, ids, seconds: float) -> None:
        if seconds <= 0 or not ids:
            return
        deadline = self._clock() + seconds
        with self._lock:
            for i in ids:
                self._hidden[i] = deadline

    def hidden_now(self) -> set[str]:
        now = self._clock()
        with self._lock:
            for i in [i for i, d in self._hidden.items() if d <= now]:
                del self._hidden[i]
            return set(self._hidden)

    def clear(self) -> None:
        with self._lock:
            self._hidden.clear()


# Parameters that name existing resources; a hidden id in any of them fails the call.
ID_PARAM = re.compile(r"^(InstanceId|VolumeId|ResourceId)(\.\d+)?$")


def not_found_error(resource_id: str) -> tuple[str, str]:
    if resource_id.startswith("vol-"):
        return "InvalidVolume.NotFound", f"The volume '{resource_id}' does not exist."
    return "InvalidInstanceID.NotFound", f"The instance ID '{resource_id}' does not exist"


# --------------------------------------------------------------------------------------------
# KMS keys EBS cannot use
# --------------------------------------------------------------------------------------------
#
# EC2 has no synchronous refusal for a KMS key EBS cannot use (disabled, pending deletion, not
# existing, or the caller lacks kms:CreateGrant / GenerateDataKeyWithoutPlaintext / DescribeKey):
#
# * EC2 API reference, CreateVolume `KmsKeyId` (same text for CopyImage, CopySnapshot, ...):
#   "Amazon Web Services authenticates the KMS key asynchronously. Therefore, if you specify an
#   identifier that is not valid, the action can appear to complete, but eventually fails."
# * Reports of what the wire shows: CreateVolume answers 200 with `status` creating, a volume id and
#   the key echoed in `kmsKeyId`; moments later DescribeVolumes says InvalidVolume.NotFound and the
#   volume is in no listing (aws/aws-sdk-ruby#1222, aws/aws-cli#2604, kubernetes/kubernetes#48438,
#   hashicorp/terraform-provider-aws#12507).  The same ClientToken again is answered with
#   IdempotentParameterMismatch (kubernetes-sigs/aws-ebs-csi-driver#1916 and #3010, the latter for
#   missing KMS permissions: "no CloudTrail error event and no KMS AccessDenied event").
# * The codes that look like candidates are not CreateVolume answers: `Client.InvalidKMSKey.InvalidState`
#   ("The KMS key provided is in an incorrect state") is the StateReason of an *instance* whose
#   encrypted volume cannot be created (it goes pending -> terminated); `DisabledException` and
#   `KMSInvalidStateException` are errors of the KMS API itself.
#
# So the front forwards such a CreateVolume (the volume exists for a moment, as on AWS), deletes the
# volume in moto straight away, and answers moto's response with `status` creating.  Only an explicit
# KmsKeyId is matched (the account's default EBS key is not modelled); RunInstances block-device
# mappings with a refused key are not modelled either.


def kms_key_refused(action: str, params: dict[str, str], cfg: FrontConfig) -> bool:
    return action == "CreateVolume" and params.get("KmsKeyId") in cfg.refused_kms_keys


def as_creating(body: bytes) -> bytes:
    """A CreateVolume response with `status` creating (moto's volumes are available at once)."""
    return re.sub(rb"<status>[^<]*</status>", b"<status>creating</status>", body, count=1)


# --------------------------------------------------------------------------------------------
# Expired credentials and a skewed clock
# --------------------------------------------------------------------------------------------
#
# EC2 answers `RequestExpired` ("Request has expired.", HTTP 400) for expired temporary credentials
# and for a request time stamp more than 15 minutes off; for a skewed clock it has also been seen to
# answer `AuthFailure` (401, aws/aws-sdk-java#519), which is what the front sends, so that a client
# has to read the `Date` header to tell the two apart, as the AWS SDKs do.

MAX_SIGNATURE_SKEW = 15 * 60


def signed_at(headers) -> float | None:
    """The SigV4 time stamp (X-Amz-Date, yyyymmddThhmmssZ) as a Unix time, if any."""
    text = headers.get("X-Amz-Date", "")
    try:
        return float(calendar.timegm(time.strptime(text, "%Y%m%dT%H%M%SZ")))
    except ValueError:
        return None


def signed_too_far_off(headers, cfg: FrontConfig) -> bool:
    """With a skewed clock configured: is the request signed more than 15 minutes off the front's time?"""
    if not cfg.clock_skew_seconds:
        return False
    stamp = signed_at(headers)
    return stamp is not None and abs(stamp - (time.time() + cfg.clock_skew_seconds)) > MAX_SIGNATURE_SKEW


# --------------------------------------------------------------------------------------------
# XML helpers (match on local names: moto's namespace lacks AWS's trailing slash)
# --------------------------------------------------------------------------------------------


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _child(elem, name):
    for c in elem:
        if _local(c.tag) == name:
            return c
    return None


def _items(elem, name) -> list:
    """Children of elem's child `name` (empty if absent); avoids Element truthiness pitfalls."""
    c = _child(elem, name) if elem is not None else None
    return list(c) if c is not None else []


def _child_text(elem, name) -> str | None:
    c = _child(elem, name)
    return c.text if c is not None else None


def created_ids(action: str, body: bytes) -> tuple[list[str], list[str]]:
    """(instance ids, volume ids) created by a successful RunInstances / CreateVolume."""
    root = ET.fromstring(body)
    instances, volumes = [], []
    if action == "RunInstances":
        for item in _items(root, "instancesSet"):
            iid = _child_text(item, "instanceId")
            if iid:
                instances.append(iid)
            for bdm in _items(item, "blockDeviceMapping"):
                ebs = _child(bdm, "ebs")
                vid = _child_text(ebs, "volumeId") if ebs is not None else None
                if vid:
                    volumes.append(vid)
    elif action == "CreateVolume":
        vid = _child_text(root, "volumeId")
        if vid:
            volumes.append(vid)
    return instances, volumes


# (list element, id element) of the items to drop from list-style describe responses.
_DESCRIBE_SETS = {
    "DescribeInstances": None,  # nested: reservationSet/item/instancesSet/item
    "DescribeVolumes": ("volumeSet", "volumeId"),
    "DescribeInstanceStatus": ("instanceStatusSet", "instanceId"),
}


def strip_hidden(action: str, body: bytes, hidden: set[str]) -> bytes:
    """Remove items with hidden ids from a describe response; body unchanged if none match."""
    if not hidden or action not in _DESCRIBE_SETS:
        return body
    text = body.decode("utf-8", "replace")
    if not any(h in text for h in hidden):
        return body
    root = ET.fromstring(body)
    if action == "DescribeInstances":
        reservations = _child(root, "reservationSet")
        for res in list(reservations if reservations is not None else []):
            iset = _child(res, "instancesSet")
            if iset is None:
                continue
            for item in list(iset):
                if _child_text(item, "instanceId") in hidden:
                    iset.remove(item)
            if len(iset) == 0:
                reservations.remove(res)
    else:
        set_name, id_name = _DESCRIBE_SETS[action]
        items = _child(root, set_name)
        for item in list(items if items is not None else []):
            if _child_text(item, id_name) in hidden:
                items.remove(item)
    ns = root.tag[1:].split("}", 1)[0] if root.tag.startswith("{") else None
    out = ET.tostring(root, encoding="unicode", default_namespace=ns) if ns else ET.tostring(root, encoding="unicode")
    return ('<?xml version="1.0" encoding="UTF-8"?>\n' + out).encode()


def instance_states(body: bytes) -> dict[str, str]:
    """instanceId -> state name from a DescribeInstances response."""
    states = {}
    root = ET.fromstring(body)
    for res in _items(root, "reservationSet"):
        for item in _items(res, "instancesSet"):
            state = _child(item, "instanceState")
            states[_child_text(item, "instanceId")] = _child_text(state, "name") if state is not None else ""
    return states


def error_body(code: str, message: str) -> bytes:
    """EC2's error document (note `RequestID`, capitalised, unlike success bodies)."""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Response><Errors><Error><Code>{escape(code)}</Code><Message>{escape(message)}</Message>"
        f"</Error></Errors><RequestID>{uuid.uuid4()}</RequestID></Response>"
    ).encode()


# --------------------------------------------------------------------------------------------
# The proxy
# --------------------------------------------------------------------------------------------

HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
}
# Response headers we never copy from moto (http.server writes its own).
SKIP_RESPONSE_HEADERS = HOP_BY_HOP | {"content-length", "server", "date"}

CREDENTIAL_SCOPE = re.compile(r"Credential=[^/,\s]+/\d{8}/([^/,\s]+)/([^/,\s]+)/aws4_request")


@dataclass
class Reply:
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    outcome: str
    lose: bool = False  # drop the response instead of sending it


class Front:
    """Everything the handler needs; one instance per server."""

    def __init__(self, moto_host: str, moto_port: int, config: FrontConfig, log=None):
        self.moto_host = moto_host
        self.moto_port = moto_port
        self.config = config
        self.config_lock = threading.Lock()
        self.rng = random.Random(config.seed)
        self.rng_lock = threading.Lock()
        self.counters = Counters()
        self.buckets = TokenBuckets()
        self.tokens = TokenStore()
        self.visibility = Visibility()
        self.launched: list[str] = []  # every instance id RunInstances created, in order
        self.terminated: set[str] = set()  # every instance id TerminateInstances was accepted for
        self.attachments: list[tuple[str, str]] = []  # (volume, instance) of every accepted AttachVolume
        self.launched_lock = threading.Lock()
        self.log = log or (lambda line: None)

    # ---- moto access ------------------------------------------------------------------------

    def call_moto(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, list, bytes]:
        # A fresh connection per call: moto answers `Connection: close` anyway.
        conn = http.client.HTTPConnection(self.moto_host, self.moto_port, timeout=120)
        try:
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, resp.getheaders(), data
        finally:
            conn.close()

    def moto_healthy(self) -> bool:
        try:
            status, _, _ = self.call_moto("GET", "/moto-api/", {}, b"")
            return status == 200
        except OSError:
            return False

    def reset(self) -> bool:
        self.counters.clear()
        self.tokens.clear()
        self.visibility.clear()
        self.buckets.clear()
        with self.launched_lock:
            self.launched.clear()
            self.terminated.clear()
            self.attachments.clear()
        try:
            status, _, _ = self.call_moto("POST", "/moto-api/reset", {"Content-Length": "0"}, b"")
            return status == 200
        except OSError:
            return False

    # ---- configuration ----------------------------------------------------------------------

    def current_config(self) -> FrontConfig:
        with self.config_lock:
            return FrontConfig(**asdict(self.config))

    def update_config(self, changes: dict) -> FrontConfig:
        with self.config_lock:
            self.config.update(changes)
            if "seed" in changes:
                with self.rng_lock:
                    self.rng = random.Random(self.config.seed)
            return FrontConfig(**asdict(self.config))

    def draw_faults(self, cfg: FrontConfig, action: str) -> tuple[bool, bool]:
        """(inject 500 before forwarding, lose the response after forwarding).

        Both numbers are always drawn, so a given sequence of calls sees the same faults for
        the same seed.
        """
        with self.rng_lock:
            r_error, r_lose = self.rng.random(), self.rng.random()
        if cfg.fault_actions is not None and action not in cfg.fault_actions:
            return False, False
        return r_error < cfg.error_rate, r_lose < cfg.lose_rate

    # ---- one EC2 call -----------------------------------------------------------------------

    def handle_ec2(self, method, path, headers, body, action, params, region) -> Reply:
        cfg = self.current_config()

        # Authentication comes before anything else, as on EC2: nothing is counted against a bucket.
        if cfg.expire_requests:
            return self.error(400, "RequestExpired", "Request has expired.", "expired")
        if signed_too_far_off(headers, cfg):
            return self.error(
                401, "AuthFailure", "AWS was not able to validate the provided access credentials", "skewRefused"
            )

        if cfg.throttle and not self.buckets.take(region, action, params):
            return self.error(503, "RequestLimitExceeded", "Request limit exceeded.", "throttled")

        inject, lose = self.draw_faults(cfg, action)
        if inject:
            return self.error(500, "InternalError", "An internal error has occurred.", "injected5xx")

        hidden = self.visibility.hidden_now()
        for key, value in params.items():
            if value in hidden and ID_PARAM.match(key):
                code, message = not_found_error(value)
                return self.error(400, code, message, "notVisible")

        if action == "DescribeInstances":
            body, headers = self.client_token_filter(params, body, headers, region)

        refused = kms_key_refused(action, params, cfg)
        token = params.get("ClientToken")
        if action in IDEMPOTENT_ACTIONS and token:
            key = (region, action, token)
            with self.tokens.key_lock(key):
                stored = self.tokens.get(key)
                if stored is not None:
                    return self.replay(stored, action, params, headers, path)
                reply = self.forward(method, path, headers, body, action, cfg, lose)
                if 200 <= reply.status < 300:
                    if refused:
                        self.roll_back_volume(reply, headers, path)
                    instances, _ = created_ids(action, reply.body)
                    self.tokens.put(
                        key,
                        StoredResponse(
                            fingerprint(params), reply.status, reply.headers, reply.body, instances, rolled_back=refused
                        ),
                    )
                return reply

        reply = self.forward(method, path, headers, body, action, cfg, lose)
        if action == "TerminateInstances" and reply.status == 200:
            with self.launched_lock:
                self.terminated.update(v for k, v in params.items() if k.startswith("InstanceId."))
        if action == "AttachVolume" and reply.status == 200 and params.get("VolumeId") and params.get("InstanceId"):
            with self.launched_lock:
                self.attachments.append((params["VolumeId"], params["InstanceId"]))
        if refused and 200 <= reply.status < 300:
            self.roll_back_volume(reply, headers, path)
        if reply.status == 200 and hidden:
            reply.body = strip_hidden(action, reply.body, self.visibility.hidden_now())
        return reply

    def forward(self, method, path, headers, body, action, cfg: FrontConfig, lose: bool) -> Reply:
        try:
            status, resp_headers, data = self.call_moto(method, path, headers, body)
        except OSError as exc:
            self.log(f"moto unreachable: {exc}")
            return self.error(502, "InternalError", "moto is unreachable.", "forwarded")
        if status == 200 and action in IDEMPOTENT_ACTIONS:
            instances, volumes = created_ids(action, data)
            self.visibility.hide(instances + volumes, cfg.lag_seconds)
            if instances:
                with self.launched_lock:
                    self.launched.extend(instances)
        kept = [(k, v) for k, v in resp_headers if k.lower() not in SKIP_RESPONSE_HEADERS]
        return Reply(status, kept, data, "lost" if lose else "forwarded", lose=lose)

    def roll_back_volume(self, reply: Reply, headers: dict[str, str], path: str) -> None:
        """What EBS does with a volume whose KMS key it cannot use: delete it right after creation."""
        _, volumes = created_ids("CreateVolume", reply.body)
        for volume_id in volumes:
            status, _, data = self.moto_query([("Action", "DeleteVolume"), ("VolumeId", volume_id)], headers, path)
            if status != 200:
                raise RuntimeError(f"could not delete {volume_id} in moto: HTTP {status} {data[:200]!r}")
        reply.body = as_creating(reply.body)
        if not reply.lose:
            reply.outcome = "kmsRefused"

    def client_token_filter(self, params, body, headers, region):
        """EC2's `client-token` filter of DescribeInstances, which moto lacks: rewritten to an
        `instance-id` filter with the ids the front launched under those tokens (none: an id that
        matches nothing)."""
        names = [k for k, v in params.items() if re.fullmatch(r"Filter\.\d+\.Name", k) and v == "client-token"]
        if not names:
            return body, headers
        form = list(params.items())
        for name in names:
            prefix = name[: -len("Name")]
            tokens = [v for k, v in params.items() if k.startswith(prefix + "Value.")]
            ids = []
            for t in tokens:
                stored = self.tokens.get((region, "RunInstances", t))
                if stored is not None:
                    ids.extend(stored.instance_ids)
            form = [(k, v) for k, v in form if not k.startswith(prefix + "Value.") and k != name]
            form.append((name, "instance-id"))
            form.extend((f"{prefix}Value.{i + 1}", v) for i, v in enumerate(ids or ["i-00000000000000000"]))
        new_body = urlencode(form).encode()
        new_headers = {k: v for k, v in headers.items() if k.lower() != "content-length"}
        new_headers["Content-Length"] = str(len(new_body))
        return new_body, new_headers

    def replay(self, stored: StoredResponse, action, params, headers, path) -> Reply:
        # A token whose volume EBS rolled back is answered like a mismatch (see kms_key_refused).
        if stored.fingerprint != fingerprint(params) or stored.rolled_back:
            return self.error(
                400,
                "IdempotentParameterMismatch",
                "Arguments on this idempotent request are inconsistent with arguments used in previous request(s).",
                "idempotencyError",
            )
        if action == "RunInstances" and self.any_terminated(stored.instance_ids, headers, path):
            return self.error(
                400,
                "IdempotentInstanceTerminated",
                "The client token you have provided is associated with a terminated instance. "
                "Please use a different client token.",
                "idempotencyError",
            )
        return Reply(stored.status, list(stored.headers), stored.body, "replayed")

    def any_terminated(self, instance_ids: list[str], headers: dict[str, str], path: str) -> bool:
        """Ask moto for the instances of a stored launch; gone or terminated counts as terminated."""
        if not instance_ids:
            return False
        form = [("Action", "DescribeInstances")] + [(f"InstanceId.{n}", i) for n, i in enumerate(instance_ids, 1)]
        try:
            status, _, data = self.moto_query(form, headers, path)
        except OSError:
            return False  # cannot tell: prefer replaying
        if status == 400 and b"InvalidInstanceID.NotFound" in data:
            return True
        if status != 200:
            return False
        states = instance_states(data)
        return any(states.get(i, "terminated") == "terminated" for i in instance_ids)

    def moto_query(self, form: list[tuple[str, str]], headers: dict[str, str], path: str) -> tuple[int, list, bytes]:
        """An EC2 Query call of the front's own, straight to moto, as the caller of the current request.

        It reuses the caller's headers: moto takes region and account from the SigV4 credential
        scope and, unless started with auth enabled, does not check the signature.
        """
        body = urlencode(form + [("Version", EC2_API_VERSION)]).encode()
        hdrs = {k: v for k, v in headers.items() if k.lower() != "content-length"}
        hdrs["Content-Length"] = str(len(body))
        return self.call_moto("POST", path, hdrs, body)

    @staticmethod
    def error(status: int, code: str, message: str, outcome: str) -> Reply:
        return Reply(status, [("Content-Type", "text/xml")], error_body(code, message), outcome)


def parse_params(query: str, headers, body: bytes) -> dict[str, str]:
    params = dict(parse_qsl(query, keep_blank_values=True))
    ctype = headers.get("Content-Type", "")
    if body and (not ctype or ctype.startswith("application/x-www-form-urlencoded")):
        try:
            params.update(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
        except UnicodeDecodeError:
            pass
    return params


def credential_scope(headers, params) -> tuple[str | None, str | None]:
    """(region, service) from the SigV4 Authorization header or a presigned X-Amz-Credential."""
    auth = headers.get("Authorization", "")
    m = CREDENTIAL_SCOPE.search(auth) or CREDENTIAL_SCOPE.search("Credential=" + params.get("X-Amz-Credential", ""))
    return (m.group(1), m.group(2)) if m else (None, None)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like real EC2 endpoints
    timeout = 120  # idle keep-alive connections are closed after this
    server_version = "onetouch-ec2-front"
    front: Front  # set on the subclass built by make_server

    def log_message(self, fmt, *args):  # http.server's per-request log; we log our own lines
        pass

    def date_time_string(self, timestamp=None):  # the Date header: the front's (possibly skewed) clock
        now = time.time() if timestamp is None else timestamp
        return email.utils.formatdate(now + self.front.current_config().clock_skew_seconds, usegmt=True)

    def do_GET(self):
        self.dispatch()

    def do_POST(self):
        self.dispatch()

    def read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def dispatch(self):
        started = time.monotonic()
        body = self.read_body()
        url = urlsplit(self.path)
        if url.path.startswith("/_front/"):
            self.control(url.path, body)
            return

        params = parse_params(url.query, self.headers, body)
        region, service = credential_scope(self.headers, params)
        action = params.get("Action")
        # http.server already answered any `Expect: 100-continue`; moto must not see it again.
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP | {"expect"}}
        if body or self.command == "POST":
            headers["Content-Length"] = str(len(body))

        front = self.front
        try:
            if action and service in (None, "ec2") and params.get("Version", EC2_API_VERSION) == EC2_API_VERSION:
                reply = front.handle_ec2(self.command, self.path, headers, body, action, params, region or "us-east-1")
            else:
                # Not an EC2 Query call (IAM, KMS, moto-api, ...): no faults, no throttling.
                action = action or self.headers.get("X-Amz-Target") or url.path
                reply = front.forward(self.command, self.path, headers, body, action, front.current_config(), lose=False)
                reply.outcome = "passthrough"
        except Exception:  # never turn our own bug into a silently dropped connection
            front.log(f"front error on {action}: {traceback.format_exc()}")
            reply = front.error(500, "InternalError", "The EC2 test front failed; see its log.", "frontError")

        front.counters.record(action, reply.outcome)
        front.log(
            f"{action} region={region or '-'} outcome={reply.outcome} status={reply.status} "
            f"ms={int((time.monotonic() - started) * 1000)}"
        )
        if reply.lose:
            self.lose_response(front.current_config().lose_mode)
        else:
            self.send(reply.status, reply.headers, reply.body)

    def lose_response(self, mode: str):
        if mode == "close":
            # Nothing is written; the server closes the socket once this method returns.
            self.close_connection = True
            return
        status = int(mode)
        text = {502: "Bad Gateway", 504: "Gateway Timeout"}[status]
        self.send(status, [("Content-Type", "text/html")], f"<html><body><h1>{status} {text}</h1></body></html>".encode())

    def send(self, status: int, headers, body: bytes):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_json(self, status: int, doc):
        self.send(status, [("Content-Type", "application/json")], (json.dumps(doc, indent=1) + "\n").encode())

    def control(self, path: str, body: bytes):
        front = self.front
        if path == "/_front/health" and self.command == "GET":
            ok = front.moto_healthy()
            self.send_json(200 if ok else 503, {"status": "ok" if ok else "moto-unreachable", "moto": f"http://{front.moto_host}:{front.moto_port}"})
        elif path == "/_front/stats" and self.command == "GET":
            doc = front.counters.snapshot()
            doc["idempotencyTokens"] = len(front.tokens)
            doc["hiddenIds"] = len(front.visibility.hidden_now())
            doc["config"] = asdict(front.current_config())
            self.send_json(200, doc)
        elif path == "/_front/launched" and self.command == "GET":
            query = dict(parse_qsl(urlsplit(self.path).query))
            try:
                after = max(0, int(query.get("after", "0")))
            except ValueError:
                self.send_json(400, {"error": "after must be a number"})
                return
            with front.launched_lock:
                ids = front.launched[after:]
                total = len(front.launched)
                terminated = sorted(front.terminated)
                attachments = [list(pair) for pair in front.attachments]
            self.send_json(200, {"instances": ids, "next": total, "terminated": terminated, "attachments": attachments})
        elif path == "/_front/config" and self.command == "GET":
            self.send_json(200, asdict(front.current_config()))
        elif path == "/_front/config" and self.command == "POST":
            try:
                changes = json.loads(body or b"{}")
                if not isinstance(changes, dict):
                    raise ValueError("body must be a JSON object")
                cfg = front.update_config(changes)
            except ValueError as exc:  # includes json.JSONDecodeError
                self.send_json(400, {"error": str(exc)})
                return
            front.log(f"config updated: {json.dumps(asdict(cfg))}")
            self.send_json(200, asdict(cfg))
        elif path == "/_front/reset" and self.command == "POST":
            moto_ok = front.reset()
            front.log(f"reset (moto reset {'ok' if moto_ok else 'FAILED'})")
            self.send_json(200 if moto_ok else 502, {"status": "ok" if moto_ok else "moto-reset-failed", "motoReset": moto_ok})
        else:
            self.send_json(404, {"error": f"no control endpoint {self.command} {path}"})


class FrontServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the default backlog of 5 drops connects under ~50 concurrent clients


def make_server(port: int, moto_port: int, config: FrontConfig, log=None, moto_host="127.0.0.1") -> FrontServer:
    front = Front(moto_host, moto_port, config, log)
    handler = type("BoundHandler", (Handler,), {"front": front})
    server = FrontServer(("127.0.0.1", port), handler)
    server.front = front
    return server


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Fault-injecting EC2 front for moto_server (binds 127.0.0.1 only).")
    p.add_argument("--port", type=int, default=0, help="listen port (0: pick a free one, see --port-file)")
    p.add_argument("--port-file", help="write the bound port to this file once listening")
    p.add_argument("--moto-port", type=int, required=True, help="moto_server port on 127.0.0.1")
    p.add_argument("--seed", type=int, default=0, help="seed of the fault RNG")
    p.add_argument("--error-rate", type=float, default=0.0, help="fraction answered 500 InternalError before forwarding")
    p.add_argument("--lose-rate", type=float, default=0.0, help="fraction forwarded whose response is lost")
    p.add_argument("--lose-mode", choices=LOSE_MODES, default="close", help="lost response: close the connection, or 502/504")
    p.add_argument("--lag", type=float, default=0.0, help="seconds a created instance/volume id stays invisible")
    p.add_argument("--fault-actions", help="comma-separated actions random faults apply to (default: all)")
    p.add_argument(
        "--refuse-kms-key",
        action="append",
        default=[],
        metavar="KEY",
        help="a CreateVolume KmsKeyId EBS cannot use: accepted, then the volume vanishes (repeatable)",
    )
    p.add_argument("--no-throttle", action="store_true", help="disable EC2 token-bucket throttling")
    p.add_argument("--expire-requests", action="store_true", help="answer every EC2 call 400 RequestExpired")
    p.add_argument(
        "--clock-skew",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="the front's clock runs this far ahead (negative: behind); requests signed 15 min off are refused",
    )
    p.add_argument("--quiet", action="store_true", help="do not log one line per call to stderr")
    args = p.parse_args(argv)

    config = FrontConfig()
    try:
        config.update(
            {
                "throttle": not args.no_throttle,
                "error_rate": args.error_rate,
                "lose_rate": args.lose_rate,
                "lose_mode": args.lose_mode,
                "lag_seconds": args.lag,
                "fault_actions": args.fault_actions.split(",") if args.fault_actions else None,
                "seed": args.seed,
                "refused_kms_keys": args.refuse_kms_key,
                "expire_requests": args.expire_requests,
                "clock_skew_seconds": args.clock_skew,
            }
        )
    except ValueError as exc:
        p.error(str(exc))

    def log(line: str) -> None:
        if not args.quiet:
            sys.stderr.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} front {line}\n")
            sys.stderr.flush()

    server = make_server(args.port, args.moto_port, config, log)
    port = server.server_address[1]
    if args.port_file:
        with open(args.port_file + ".tmp", "w") as f:
            f.write(f"{port}\n")
        os.replace(args.port_file + ".tmp", args.port_file)  # atomic: readers never see a partial file
    log(f"listening on 127.0.0.1:{port}, moto at 127.0.0.1:{args.moto_port}, config {json.dumps(asdict(config))}")
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
