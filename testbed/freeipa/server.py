#!/usr/bin/env python3
"""FreeIPA JSON-RPC test server (Python stdlib only).

Models the parts of FreeIPA 4.9-4.12 (API 2.240-2.254) a VM provisioner uses, following the
upstream sources (ipaserver/rpcserver.py, ipaserver/plugins/host.py, ipaserver/plugins/dns.py,
ipalib/errors.py, ipalib/messages.py, ipapython/ipautil.py) as compared in
../shared/design/freeipa-real.md (file:line citations are at tag release-4-12-5 unless noted).

Profiles (--profile), where releases differ:
  4.9-pre-cve  4.9.0-4.9.13, 4.10.0-4.10.2, 4.11.0: no Referer check at login; a bad Referer on
               /ipa/session/json is RefererError 911 in the envelope (id null), after the session.
  4.12         (default) 4.9.14+, 4.10.3+, 4.11.1+, 4.12.x (CVE-2023-5455 fix 13778d88c): a bad
               Referer is HTTP 400 text/html "<strong>denied</strong>" at login and on JSON calls.
  master       as 4.12, but login parses the Referer URL (a port passes login, not JSON calls),
               and a locked user is reported as user-locked (d75ac0729).

Transport
  HTTPS on 127.0.0.1:PORT, self-signed certificate for --hostname (default
  ipa.onetouch.test, SAN DNS only, like the IPA-issued HTTP certificate; --ip-san adds
  IP:127.0.0.1); the certificate is its own CA, its path is
  printed as CA=... and is the client's CA bundle.  Clients connect to 127.0.0.1:PORT
  while verifying / sending Referer for the hostname.

Endpoints
  POST /ipa/session/login_password   form user=&password=, Referer https://<hostname>/ipa...
        400 bad method / Content-Type / Referer / missing user,
        401 + X-IPA-Rejection-Reason: invalid-password on bad credentials,
        200 (empty body) + Set-Cookie: ipa_session=MagBearerToken=<token>; Path=/ipa; Secure; HttpOnly
  POST /ipa/session/json             needs a valid ipa_session cookie (else HTTP 401),
        Referer (else RefererError 911 in the envelope), body
        {"method": "...", "params": [[args], {options}], "id": N} (else JSONError 909).
        Command errors are HTTP 200 with "error" set.
  Commands: ping, host_add, host_show, host_mod, host_disable, host_del.

Host model (mirrors host.py)
  host_add  options force, no_reverse, ip_address, random, userpassword, description, ...
            without force and without ip_address the name must "resolve" (only names
            registered via /_test/dns or --resolvable do) else 4019 DNSNotARecordError;
            random  -> randompassword (ipa_generate_password(128 bits, special=None):
            23 chars [0-9A-Za-z]), has_password true, has_keytab false, no krbprincipalname;
            no OTP  -> krbprincipalname set immediately (admin-side keytab flow).
  host_show has_password = OTP set; has_keytab = key present and no OTP.
  host_mod  random/userpassword allowed while the host is NOT enrolled (resets the OTP);
            on an enrolled host (has_keytab and no OTP) -> 3009 ValidationError
            "invalid 'password': Password cannot be set on enrolled host." (as upstream).
            host_mod random uses ipa_generate_password(128 bits) *with* special chars,
            exactly like upstream, so OTPs may contain !$%&()*+,-./:;<>?@[]^_{|}~
            No modification -> 4202 EmptyModlist.
  host_disable removes the keytab (has_keytab false); nothing to do -> 4010 AlreadyInactive.
            A disabled host may get a new OTP with host_mod random and be re-enrolled.
  host_del  [[fqdn...], {updatedns, continue}]; absent -> 4001 NotFound (or listed in
            result.failed with continue=true); value is the list of deleted fqdns.

Test hooks (no auth, loopback only)
  POST /_test/enroll {"fqdn","password"}  simulate `ipa-join -w OTP`: only with the current
        OTP, once -> has_keytab true, has_password false, krbprincipalname set.
        200 {"ok":true,...} | 401 {"ok":false,"error":...} | 404 unknown host
  POST /_test/expire-sessions             invalidate all cookies
  POST /_test/acl {"deny": true[, "methods": [...]]}  host_add/host_del (default) -> 2100 ACIError
  POST /_test/dns {"fqdn": "..."}          make a name "resolvable" for host_add without force
        {"a": IP[, "fqdn": name]}  an A record elsewhere in the zone holds IP (stale record)
        {"ptr": IP}                a PTR record for IP exists in the reverse zone
        {"zone": "x.y", "managed": false}   the zone is not an IPA DNS zone (4001 on host_add)
        {"fail_records": true}     adding records fails after the host is added (13030 message)
        {"readable": false}        the user lacks the DNS privileges (zones invisible)
  POST /_test/user {"state": "ok"|"locked"|"password-expired"|"krbprincipal-expired"}
  POST /_test/expire-sessions {"ccache": true}   cookies stay known but their ticket expired
  POST /_test/fail {"method","code","name","message"[, "times"]} or {"method","http_status"[, "times"]}
        inject failures into the next `times` (default 1) calls of a method
  POST /_test/slow {"method","seconds"[, "times"]}  the next `times` (default 1) calls of a method run
        and commit, and their answers are sent `seconds` late (a client timing out on a done call)
  POST /_test/reset                        forget hosts, calls, ACL, DNS, failures (not sessions)
  GET  /_test/state                        hosts (incl. current OTP), sessions, acl
  GET  /_test/calls                        JSON list of method names called (?detail=1: objects)

Usage
  server.py --port 0 --user admin --password-file F [--state-dir D] [--hostname H]
            [--profile 4.9-pre-cve|4.12|master] [--no-dns] [--ip-san]
  prints "PORT=<n>", "CA=<path>", "URL=https://H:<n>" on stdout, then serves until SIGTERM.
"""

import argparse
import base64
import html
import ipaddress
import json
import math
import os
import random
import re
import secrets
import signal
import socket
import ssl
import string
import subprocess
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# VERSION.m4 of each release line; set by --profile.
PROFILES = {
    "4.9-pre-cve": ("4.9.13", "2.251"),
    "4.12": ("4.12.5", "2.254"),
    "master": ("4.13.0", "2.257"),
}
IPA_VERSION, API_VERSION = PROFILES["4.12"]
# ipaMaxHostnameLength (install/share/bootstrap-template.ldif:416) and MAXHOSTNAMELEN
# (ipaplatform/base/constants.py:327): host_add refuses longer FQDNs (host.py:719-726).
MAX_HOSTNAME_LENGTH = 64
TMP_PWD_ENTROPY_BITS = 128


# ----------------------------------------------------------------------------- errors
class PublicError(Exception):
    code = 900
    name = "PublicError"

    def __init__(self, message, **data):
        super().__init__(message)
        self.message = message
        self.data = data


def _err(name, code):
    return type(name, (PublicError,), {"code": code, "name": name})


VersionError = _err("VersionError", 901)
CommandError = _err("CommandError", 905)
JSONError = _err("JSONError", 909)
RefererError = _err("RefererError", 911)
ACIError = _err("ACIError", 2100)
MaxArgumentError = _err("MaxArgumentError", 3004)
OptionError = _err("OptionError", 3005)
RequirementError = _err("RequirementError", 3007)
ConversionError = _err("ConversionError", 3008)
ValidationError = _err("ValidationError", 3009)
InternalError = _err("InternalError", 903)
NotFound = _err("NotFound", 4001)
DuplicateEntry = _err("DuplicateEntry", 4002)
AlreadyInactive = _err("AlreadyInactive", 4010)
DNSNotARecordError = _err("DNSNotARecordError", 4019)
EmptyModlist = _err("EmptyModlist", 4202)


class InjectedError(PublicError):
    def __init__(self, code, name, message):
        super().__init__(message)
        self.code = code
        self.name = name


# ----------------------------------------------------------------------------- helpers
def ipa_generate_password(entropy_bits=256, uppercase=1, lowercase=1, digits=1, special=1, min_len=0):
    """Port of ipapython.ipautil.ipa_generate_password."""
    special_chars = "!$%&()*+,-./:;<>?@[]^_{|}~"
    charsets = {
        "uppercase": string.ascii_uppercase,
        "lowercase": string.ascii_lowercase,
        "digits": string.digits,
        "special": special_chars,
    }
    req = dict(uppercase=uppercase, lowercase=lowercase, digits=digits, special=special)
    allchars = "".join(c for n, c in charsets.items() if req[n] is not None)
    rnd = random.SystemRandom()
    todo = entropy_bits
    pw = ""
    for cls in ("digits", "uppercase", "lowercase", "special"):
        n = req[cls]
        if n is None:
            continue
        while n > 0:
            pw += rnd.choice(charsets[cls])
            todo -= math.log(len(charsets[cls]), 2)
            n -= 1
    while todo > 0 or len(pw) < min_len:
        pw += rnd.choice(allchars)
        todo -= math.log(len(allchars), 2)
    return pw


_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


def normalize_hostname(value):
    if not isinstance(value, str):
        raise ConversionError("invalid 'hostname': must be Unicode text", name="hostname")
    v = value.strip().lower()
    if v.endswith("."):
        v = v[:-1]
    return v


def validate_hostname(v):
    labels = v.split(".")
    if len(labels) < 2 or not all(labels):
        raise ValidationError("invalid 'hostname': invalid domain-name: not fully qualified", name="hostname")
    for label in labels:
        if not _LABEL.match(label):
            raise ValidationError(
                "invalid 'hostname': invalid domain-name: only letters, numbers, '-' are allowed. "
                "DNS label may not start or end with '-'", name="hostname")


def referer_prefix_ok(referer, hostname):
    """ipaserver/rpcserver.py:389-392 (wsgi_execute, every release and master) and :159-170
    (check_referer on 4.9.14+/4.12.x): a case-sensitive string prefix 'https://%s/ipa' % host.
    A port, an upper-case name or http:// fail; '/ipaX' passes."""
    return bool(referer) and referer.startswith("https://%s/ipa" % hostname)


def check_referer(referer, hostname):
    """ipaserver/rpcserver.py@master:173-210 (check_referer after freeipa#8324): the URL is
    parsed, https, hostname == server FQDN (any port), path /ipa or /ipa/..."""
    if not referer:
        return False
    try:
        u = urllib.parse.urlparse(referer)
        host = u.hostname
    except ValueError:
        return False
    if u.scheme != "https" or not host or host != hostname:
        return False
    return u.path == "/ipa" or u.path.startswith("/ipa/")


def parse_cookies(header):
    out = {}
    for part in (header or "").split(";"):
        k, sep, v = part.strip().partition("=")
        if sep:
            out[k.strip()] = v.strip()
    return out


def flag(options, name):
    v = options.get(name, False)
    if v is None:
        return False
    if isinstance(v, bool):
        return v
    if isinstance(v, str) and v.upper() in ("TRUE", "FALSE"):
        return v.upper() == "TRUE"
    raise ConversionError(f"invalid '{name}': must be True or False", name=name)


def text_option(options, name):
    v = options.get(name)
    if v is None:
        return None
    if isinstance(v, list) and len(v) == 1:
        v = v[0]
    if not isinstance(v, str):
        raise ConversionError(f"invalid '{name}': must be Unicode text", name=name)
    return v


COMMON_OPTIONS = {"version", "all", "raw"}
ENTRY_ATTR_OPTIONS = {"description", "l", "nshostlocation", "nshardwareplatform", "nsosversion",
                      "userpassword", "random", "macaddress", "userclass"}
COMMAND_OPTIONS = {
    "ping": set(),
    "host_add": ENTRY_ATTR_OPTIONS | {"force", "no_reverse", "ip_address", "no_members", "ipasshpubkey",
                                      "setattr", "addattr"},
    "host_show": {"rights", "no_members", "out"},
    "host_mod": ENTRY_ATTR_OPTIONS | {"rights", "no_members", "updatedns", "ipasshpubkey",
                                      "setattr", "addattr", "delattr"},
    "host_disable": set(),
    "host_del": {"updatedns", "continue"},
}
MODIFYING_OPTIONS = ENTRY_ATTR_OPTIONS | {"ipasshpubkey", "setattr", "addattr", "delattr"}
SIMPLE_ATTRS = ("description", "l", "nshostlocation", "nshardwareplatform", "nsosversion", "macaddress",
                "userclass")


# ----------------------------------------------------------------------------- state
class IPAState:
    def __init__(self, hostname, realm, user, password, session_lifetime, resolvable=(), profile="4.12",
                 ipa_dns=True):
        self.lock = threading.RLock()
        self.profile = profile
        # dns_container_exists() (ipaserver/plugins/host.py:727-739): without IPA DNS,
        # ip_address and updatedns are silently ignored.
        self.ipa_dns = ipa_dns
        self.hostname = hostname
        self.realm = realm
        self.domain = realm.lower()
        self.basedn = ",".join("dc=" + p for p in self.domain.split("."))
        self.user = user
        self.password = password
        self.session_lifetime = session_lifetime
        self.sessions = {}  # token -> {"user", "expires"}
        self.resolvable_initial = {normalize_hostname(n) for n in resolvable}
        self.reset()

    def reset(self):
        with self.lock:
            self.hosts = {}
            self.calls = []
            self.acl_deny = set()
            self.resolvable = set(self.resolvable_initial)
            self.failures = {}  # method -> list of failure dicts
            self.slow = {}  # method -> list of {"seconds", "times"}: answers sent late, after the commit
            self.user_state = "ok"
            # IPA DNS: zones it manages, A records (name -> set of IPs), PTR records (IP -> name)
            self.zones = {self.domain}
            self.a_records = {}
            self.ptr_records = {}
            self.dns_readable = True
            self.fail_records = False

    # sessions ------------------------------------------------------------------------
    def new_session(self, user):
        raw = base64.b64encode(secrets.token_bytes(48)).decode()
        # real mod_auth_gssapi tokens are URL-quoted base64: clients must echo them verbatim
        token = "MagBearerToken=" + urllib.parse.quote(raw, safe="")
        with self.lock:
            self.sessions[token] = {"user": user, "expires": time.time() + self.session_lifetime,
                                    "ccache": True}
        return token

    def session_user(self, token):
        """The user of a known session, "ccache-expired" for a cookie whose ticket expired, or None.
        A session lives as long as the login's Kerberos ticket (ipalib/constants.py:212,
        kinit_lifetime None; SessionMaxAge unset in install/conf/ipa.conf.template:70-72)."""
        with self.lock:
            s = self.sessions.get(token)
            if not s:
                return None
            if s["expires"] < time.time():
                del self.sessions[token]
                return None
            return s["user"] if s["ccache"] else "ccache-expired"

    def expire_sessions(self, ccache=False):
        with self.lock:
            n = len(self.sessions)
            if ccache:
                for s in self.sessions.values():
                    s["ccache"] = False
            else:
                self.sessions.clear()
            return n

    # hosts ---------------------------------------------------------------------------
    def dn(self, fqdn):
        return f"fqdn={fqdn},cn=computers,cn=accounts,{self.basedn}"

    def principal(self, fqdn):
        return f"host/{fqdn}@{self.realm}"

    def entry(self, h, randompassword=None, created=False):
        fqdn = h["fqdn"]
        has_password = h["userpassword"] is not None
        r = {
            "dn": self.dn(fqdn),
            "fqdn": [fqdn],
            "managedby_host": [fqdn],
            "has_password": has_password,
            "has_keytab": bool(h["has_key"]) and not has_password,
        }
        for a in SIMPLE_ATTRS:
            if h.get(a):
                r[a] = [h[a]]
        if h["krbprincipalname"]:
            r["krbprincipalname"] = [h["krbprincipalname"]]
            r["krbcanonicalname"] = [h["krbprincipalname"]]
        if created:
            r["serverhostname"] = [fqdn.split(".", 1)[0]]
            r["ipauniqueid"] = [h["ipauniqueid"]]
            oc = ["ipaobject", "nshost", "ipahost", "pkiuser", "ipaservice", "ieee802device",
                  "ipasshhost", "top", "ipaSshGroupOfPubKeys"]
            if h["krbprincipalname"]:
                oc += ["krbprincipalaux", "krbprincipal"]
            r["objectclass"] = oc
        if randompassword is not None:
            r["randompassword"] = randompassword
        return r

    def public_state(self):
        with self.lock:
            hosts = {}
            for fqdn, h in self.hosts.items():
                hosts[fqdn] = {
                    "fqdn": fqdn,
                    "has_password": h["userpassword"] is not None,
                    "has_keytab": bool(h["has_key"]) and h["userpassword"] is None,
                    "otp": h["userpassword"],
                    "krbprincipalname": h["krbprincipalname"],
                    "kvno": h["kvno"],
                    "ip_address": h.get("ip_address"),
                    "description": h.get("description"),
                    "enrollments": h["enrollments"],
                }
            return {
                "hostname": self.hostname,
                "realm": self.realm,
                "hosts": hosts,
                "sessions": len(self.sessions),
                "acl_deny": sorted(self.acl_deny),
                "resolvable": sorted(self.resolvable),
                "a_records": {k: sorted(v) for k, v in self.a_records.items()},
                "ptr_records": dict(self.ptr_records),
                "profile": self.profile,
                "calls": len(self.calls),
            }

    def enroll(self, fqdn, password):
        with self.lock:
            h = self.hosts.get(normalize_hostname(fqdn or ""))
            if h is None:
                return 404, {"ok": False, "error": f"{fqdn}: host not found"}
            if h["userpassword"] is None:
                if h["has_key"]:
                    return 401, {"ok": False, "error": "Host is already joined (no OTP set)"}
                return 401, {"ok": False, "error": "No one-time password set for this host"}
            if not isinstance(password, str) or not secrets.compare_digest(
                    password.encode(), h["userpassword"].encode()):
                return 401, {"ok": False, "error": "Incorrect password"}
            h["userpassword"] = None
            h["has_key"] = True
            h["kvno"] += 1
            h["enrollments"] += 1
            h["krbprincipalname"] = self.principal(h["fqdn"])
            return 200, {"ok": True, "fqdn": h["fqdn"], "krbprincipalname": h["krbprincipalname"],
                         "kvno": h["kvno"]}

    # command dispatch ----------------------------------------------------------------
    def call(self, method, args, options, user):
        base = method.split("/", 1)[0]
        with self.lock:
            self.calls.append({"method": base, "args": args,
                               "options": {k: ("<redacted>" if k == "userpassword" else v)
                                           for k, v in options.items()},
                               "user": user, "time": time.time()})
            handler = getattr(self, "cmd_" + base, None) if base in COMMAND_OPTIONS else None
            if handler is None:
                raise CommandError(f"unknown command '{base}'", name=base)
            failure = self._take_failure(base)
            if failure is not None:
                if "http_status" in failure:
                    return ("http", failure["http_status"])
                raise InjectedError(int(failure.get("code", 4203)), failure.get("name", "DatabaseError"),
                                    failure.get("message", "injected failure"))
            version = options.get("version")
            messages = []
            if version is None:
                messages.append({
                    "type": "warning", "name": "VersionMissing", "code": 13001,
                    "message": "API Version number was not sent, forward compatibility not "
                               f"guaranteed. Assuming server's API version, {API_VERSION}",
                    "data": {"server_version": API_VERSION},
                })
            else:
                self._check_version(version)
            for k in options:
                if k not in COMMON_OPTIONS and k not in COMMAND_OPTIONS[base]:
                    raise OptionError(f"Unknown option: {k}", option=k)
            result = handler(list(args), options)
            if messages and isinstance(result, dict):
                result["messages"] = messages
            return result

    def _take_failure(self, method, table=None):
        lst = (self.failures if table is None else table).get(method)
        if not lst:
            return None
        f = lst[0]
        f["times"] = int(f.get("times", 1)) - 1
        if f["times"] <= 0:
            lst.pop(0)
        return f

    def _check_version(self, version):
        if not isinstance(version, str):
            raise VersionError(f"{version} client incompatible with {API_VERSION} server at "
                               f"'https://{self.hostname}/ipa/xml'")
        m = re.match(r"^(\d+)\.(\d+)$", version)
        if not m or m.group(1) != API_VERSION.split(".")[0]:
            raise VersionError(f"{version} client incompatible with {API_VERSION} server at "
                               f"'https://{self.hostname}/ipa/xml'",
                               cver=version, sver=API_VERSION, server=f"https://{self.hostname}/ipa/xml")

    def _one_fqdn(self, method, args):
        if len(args) == 0:
            raise RequirementError("'hostname' is required", name="hostname")
        if len(args) > 1:
            raise MaxArgumentError(f"command '{method}' takes at most 1 argument", count=1)
        fqdn = normalize_hostname(args[0])
        if not fqdn:
            raise RequirementError("'hostname' is required", name="hostname")
        return fqdn

    def _get(self, fqdn):
        h = self.hosts.get(fqdn)
        if h is None:
            raise NotFound(f"{fqdn}: host not found", reason=f"{fqdn}: host not found")
        return h

    def _acl(self, method, verb, fqdn):
        if method in self.acl_deny:
            info = f"Insufficient '{verb}' privilege to {verb} the entry '{self.dn(fqdn)}'."
            raise ACIError(f"Insufficient access: {info}", info=info)

    def _otp_from_options(self, options, special):
        if flag(options, "random"):
            # upstream: host_add uses special=None, host_mod the default (with specials)
            if special:
                pw = ipa_generate_password(entropy_bits=TMP_PWD_ENTROPY_BITS)
            else:
                pw = ipa_generate_password(entropy_bits=TMP_PWD_ENTROPY_BITS, special=None)
            return pw, pw
        up = text_option(options, "userpassword")
        if up is not None:
            if up == "":
                raise ValidationError("invalid 'password': must not be empty", name="password")
            return up, None
        return None, None

    def cmd_ping(self, args, options):
        if args:
            raise MaxArgumentError("command 'ping' takes no arguments", count=0)
        return {"summary": f"IPA server version {IPA_VERSION}. API version {API_VERSION}"}

    def _zone_of(self, fqdn):
        return fqdn.split(".", 1)[1]

    def _dns_validate(self, fqdn, ip):
        """add_records_for_host_validation (ipaserver/plugins/dns.py:584-614): the zone must be an
        IPA zone the user can read (dnszone_show), then any A/AAAA record in the zone holding the IP,
        or a PTR for it, is a DuplicateEntry 4002, even though the host does not exist."""
        zone = self._zone_of(fqdn)
        if zone not in self.zones or not self.dns_readable:
            # dnszone_show NotFound; the DNS entries are only visible to DNS Administrators
            # (dns.py:2556-2600), so a Host-Administrators-only user gets the same answer.
            raise NotFound(f"DNS zone {zone}. not found", reason=f"DNS zone {zone}. not found")
        for name, ips in self.a_records.items():
            if ip in ips and self._zone_of(name) == zone:
                raise DuplicateEntry(f"IP address {ip} is already assigned in domain {zone}.")
        if ip in self.ptr_records:
            revzone = ".".join(reversed(ip.split(".")[:3])) + ".in-addr.arpa"
            raise DuplicateEntry(f"Reverse record for IP address {ip} already exists in reverse zone {revzone}.")

    def cmd_host_add(self, args, options):
        fqdn = self._one_fqdn("host_add", args)
        validate_hostname(fqdn)
        force = flag(options, "force")
        flag(options, "no_reverse")
        ip = text_option(options, "ip_address")
        if ip is not None:
            try:
                ipaddress.ip_address(ip)
            except ValueError:
                raise ValidationError("invalid 'ip_address': invalid IP address format", name="ip_address")
        # Order of checks: LDAPCreate.execute runs pre_callback (length, DNS validation,
        # resolvability) before the LDAP add, which raises the ACIError and the DuplicateEntry
        # (ipaserver/plugins/baseldap.py:1287-1289, then 1296-1313).
        if len(fqdn) > MAX_HOSTNAME_LENGTH:  # ipaserver/plugins/host.py:719-726
            raise ValidationError(f"invalid 'hostname': can be at most {MAX_HOSTNAME_LENGTH} characters",
                                  name="hostname")
        if ip is not None and self.ipa_dns:  # host.py:776-794; ignored without IPA DNS
            self._dns_validate(fqdn, ip)
        # host.py:738-739: force, or an ip_address option, skips verify_host_resolvable
        if not force and ip is None and fqdn not in self.resolvable:
            raise DNSNotARecordError(f"Host '{fqdn}' does not have corresponding DNS A/AAAA record",
                                     hostname=fqdn)
        self._acl("host_add", "add", fqdn)
        if fqdn in self.hosts:
            raise DuplicateEntry(f'host with name "{fqdn}" already exists')  # baseldap.py:661, 862-871
        otp, randompassword = self._otp_from_options(options, special=False)
        h = {
            "fqdn": fqdn,
            "userpassword": otp,
            "has_key": False,
            "kvno": 0,
            "enrollments": 0,
            # upstream: krbprincipalname only when no OTP was requested
            "krbprincipalname": None if otp is not None else self.principal(fqdn),
            "ipauniqueid": secrets.token_hex(4) + "-" + secrets.token_hex(2) + "-" + secrets.token_hex(2)
                           + "-" + secrets.token_hex(2) + "-" + secrets.token_hex(6),
            "ip_address": ip,
        }
        for a in SIMPLE_ATTRS:
            v = text_option(options, a)
            if v is not None:
                h[a] = v
        self.hosts[fqdn] = h
        answer = {"result": self.entry(h, randompassword, created=True), "value": fqdn,
                  "summary": f'Added host "{fqdn}"'}
        if ip is not None and self.ipa_dns:
            if self.fail_records:
                # host.py:791-794: the host stays added; the failure is only a message
                # (ipalib/messages.py FailedToAddHostDNSRecords).
                answer["messages"] = [{
                    "type": "warning", "name": "FailedToAddHostDNSRecords", "code": 13030,
                    "message": "The host was added but the DNS update failed with: injected failure",
                    "data": {"reason": "injected failure"}}]
            else:
                self.a_records.setdefault(fqdn, set()).add(ip)
                self.ptr_records[ip] = fqdn
        return answer

    def cmd_host_show(self, args, options):
        fqdn = self._one_fqdn("host_show", args)
        h = self._get(fqdn)
        return {"result": self.entry(h), "value": fqdn, "summary": None}

    def cmd_host_mod(self, args, options):
        fqdn = self._one_fqdn("host_mod", args)
        h = self._get(fqdn)
        self._acl("host_mod", "write", fqdn)
        if not any(k in options and options[k] not in (None, False) for k in MODIFYING_OPTIONS):
            raise EmptyModlist("no modifications to be performed")
        randompassword = None
        if flag(options, "random") or text_option(options, "userpassword") is not None:
            enrolled = h["userpassword"] is None and h["has_key"]
            if enrolled:
                raise ValidationError("invalid 'password': Password cannot be set on enrolled host.",
                                      name="password", error="Password cannot be set on enrolled host.")
            otp, randompassword = self._otp_from_options(options, special=True)
            h["userpassword"] = otp
        for a in SIMPLE_ATTRS:
            v = text_option(options, a)
            if v is not None:
                h[a] = v or None
        return {"result": self.entry(h, randompassword), "value": fqdn, "summary": f'Modified host "{fqdn}"'}

    def cmd_host_disable(self, args, options):
        fqdn = self._one_fqdn("host_disable", args)
        h = self._get(fqdn)
        self._acl("host_disable", "write", fqdn)
        if not (h["has_key"] and h["userpassword"] is None):
            raise AlreadyInactive("This entry is already disabled")
        h["has_key"] = False
        return {"result": True, "value": fqdn, "summary": f'Disabled host "{fqdn}"'}

    def cmd_host_del(self, args, options):
        if len(args) == 0:
            raise RequirementError("'hostname' is required", name="hostname")
        fqdns = args[0] if len(args) == 1 and isinstance(args[0], list) else args
        fqdns = [normalize_hostname(f) for f in fqdns]
        updatedns = flag(options, "updatedns")
        cont = flag(options, "continue")
        deleted, failed = [], []
        for fqdn in fqdns:
            if fqdn not in self.hosts:
                if cont:
                    failed.append(fqdn)
                    continue
                raise NotFound(f"{fqdn}: host not found", reason=f"{fqdn}: host not found")
            self._acl("host_del", "delete", fqdn)
            del self.hosts[fqdn]
            deleted.append(fqdn)
        answer = {"result": {"failed": failed}, "value": deleted,
                  "summary": 'Deleted host "%s"' % ",".join(deleted)}
        # host.py:855-903: updatedns removes the A/AAAA/PTR records (ignored without IPA DNS);
        # records it cannot find (absent, or invisible without DNS privileges) are only message 13020.
        if updatedns and self.ipa_dns:
            for fqdn in deleted:
                ips = self.a_records.get(fqdn) if self.dns_readable else None
                if not ips:
                    answer.setdefault("messages", []).append({
                        "type": "warning", "name": "FailedToRemoveHostDNSRecords", "code": 13020,
                        "message": f"DNS record(s) of host {fqdn} could not be removed. (no records found)",
                        "data": {"host": fqdn}})
                    continue
                for ip in self.a_records.pop(fqdn):
                    if self.ptr_records.get(ip) == fqdn:
                        del self.ptr_records[ip]
        return answer


# ----------------------------------------------------------------------------- HTTP
UNAUTHORIZED_HTML = """<html>
<head>
<title>401 Unauthorized</title>
</head>
<body>
<h1>Invalid Authentication</h1>
<p>
<strong>%s</strong>
</p>
</body>
</html>"""

# ipaserver/rpcserver.py, _service_unavailable_template: jsonserver_session answers a
# DatabaseError while it sets up the session (rpcserver.py:931-940) with this page.
SERVICE_UNAVAILABLE_HTML = """<html>
<head>
<title>503 Service Unavailable</title>
</head>
<body>
<h1>Service Unavailable</h1>
<p>
<strong>%s</strong>
</p>
</body>
</html>"""

BAD_REQUEST_HTML = """<html>
<head>
<title>400 Bad Request</title>
</head>
<body>
<h1>Bad Request</h1>
<p>
<strong>%s</strong>
</p>
</body>
</html>"""


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "Apache"
    sys_version = ""

    def version_string(self):
        return self.server_version

    @property
    def ipa(self):
        return self.server.ipa

    def log_message(self, fmt, *args):
        if self.server.verbose:
            sys.stderr.write("%s - %s\n" % (self.address_string(), fmt % args))

    # utilities -----------------------------------------------------------------------
    def _body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n > 0 else b""

    def _send(self, status, body=b"", ctype="text/plain; charset=utf-8", headers=()):
        if isinstance(body, str):
            body = body.encode()
        self.send_response(status, "Success" if status == 200 else None)  # mod_wsgi: "200 Success"
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status, obj, headers=()):
        self._send(status, json.dumps(obj, sort_keys=True, indent=4), "application/json; charset=utf-8", headers)

    def _bad_request(self, message):
        self._send(400, BAD_REQUEST_HTML % html.escape(message), "text/html; charset=utf-8")

    def _unauthorized(self, message, reason=None, negotiate=False):
        headers = []
        if reason:
            headers.append(("X-IPA-Rejection-Reason", reason))
        if negotiate:
            headers.append(("WWW-Authenticate", "Negotiate"))
        self._send(401, UNAUTHORIZED_HTML % html.escape(message), "text/html; charset=utf-8", headers)

    # routing -------------------------------------------------------------------------
    def do_GET(self):
        self._route("GET")

    def do_POST(self):
        self._route("POST")

    def do_PUT(self):
        self._route("PUT")

    def do_DELETE(self):
        self._route("DELETE")

    def _route(self, method):
        body = self._body()  # always drain the body (keep-alive)
        path = urllib.parse.urlsplit(self.path)
        if path.path.startswith("/ipa/"):
            # FreeIPA's WSGI daemon has 4 single-threaded processes (ipa.conf.template:43-45,
            # WSGI_PROCESSES in ipaplatform/base/constants.py): further calls queue behind them.
            with self.server.workers:
                self._handle(method, path, body)
                time.sleep(self.server.latency)
            return
        self._handle(method, path, body)

    def _handle(self, method, path, body):
        try:
            if path.path == "/ipa/session/login_password":
                return self._login(method, body)
            if path.path == "/ipa/session/json":
                return self._jsonrpc(method, body)
            if path.path.startswith("/_test/"):
                return self._test_hook(method, path, body)
            self._send(404, "<html><head><title>404 Not Found</title></head><body><h1>Not Found</h1>"
                            "</body></html>", "text/html; charset=utf-8")
        except Exception as e:  # pragma: no cover - defensive
            sys.stderr.write(f"internal error: {e!r}\n")
            self._send(500, "500 Internal Server Error")

    # login ---------------------------------------------------------------------------
    def _login(self, method, body):
        if method != "POST":
            return self._bad_request("HTTP request method must be POST")
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if ctype != "application/x-www-form-urlencoded":
            return self._bad_request("Content-Type must be application/x-www-form-urlencoded")
        referer = self.headers.get("Referer")
        profile = self.ipa.profile
        # 4.9-pre-cve: no Referer check at login (rpcserver.py@release-4-9-0 has no check_referer).
        # 4.12: string prefix, 400 "denied" (rpcserver.py:159-170, 1043-1044).
        # master: parsed URL, 400 "denied" (rpcserver.py@master:173-210).
        if profile == "4.12" and not referer_prefix_ok(referer, self.ipa.hostname):
            return self._bad_request("denied")
        if profile == "master" and not check_referer(referer, self.ipa.hostname):
            return self._bad_request("denied")
        try:
            form = urllib.parse.parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
        except UnicodeDecodeError:
            return self._bad_request("Invalid request body")
        user = (form.get("user") or [None])[0]
        password = (form.get("password") or [None])[0]
        if not user:
            return self._bad_request("Missing parameter \"user\"")
        if password is None:
            return self._bad_request("Missing parameter \"password\"")
        ok = (secrets.compare_digest(user.encode(), self.ipa.user.encode())
              and secrets.compare_digest(password.encode(), self.ipa.password.encode()))
        with self.ipa.lock:
            self.ipa.calls.append({"method": "login_password", "args": [user], "options": {},
                                   "user": user, "time": time.time(), "ok": ok})
        if "@" in user and user.count("@") > 1:  # malformed principal (rpcserver.py:1025-1038)
            return self._unauthorized(f"Authentication failed for {user}", reason="denied")
        state = self.ipa.user_state if ok else "ok"
        if not ok or state == "locked":
            # rpcserver.py:1151: on 4.9-4.12 the locked-user message test has a typo ("Clients
            # credentials"), so a locked user gets invalid-password; fixed on master (d75ac0729).
            reason = "user-locked" if ok and profile == "master" else "invalid-password"
            return self._unauthorized(f"Authentication failed for {user}@{self.ipa.realm}", reason=reason)
        if state in ("password-expired", "krbprincipal-expired"):  # rpcserver.py:1025-1038
            return self._unauthorized(f"Authentication failed for {user}@{self.ipa.realm}", reason=state)
        token = self.ipa.new_session(user)
        # mod_session writes the cookie from the IPASESSION header (rpcserver.py:704-726) with
        # "SessionCookieName ipa_session path=/ipa;httponly;secure;" (ipa.conf.template:67-69).
        self._send(200, b"", "text/plain; charset=utf-8",
                   [("Set-Cookie", f"ipa_session={token};path=/ipa;httponly;secure;")])

    # JSON-RPC ------------------------------------------------------------------------
    def _jsonrpc(self, method, body):
        token = parse_cookies(self.headers.get("Cookie")).get("ipa_session")
        user = self.ipa.session_user(token) if token else None
        if user is None:
            # Apache mod_auth_gssapi (Require valid-user, ipa.conf.template:62-96) answers first.
            return self._unauthorized("Authentication required (no valid ipa_session cookie)", negotiate=True)
        referer = self.headers.get("Referer")
        if self.ipa.profile != "4.9-pre-cve" and not referer_prefix_ok(referer, self.ipa.hostname):
            # jsonserver_session checks the Referer before the session (rpcserver.py:916-917).
            return self._bad_request("denied")
        if user == "ccache-expired":
            # the cookie is known but its ticket expired: WSGI answers 401 with an empty body and a
            # logout cookie (rpcserver.py:662-673, 676-702); clients must not adopt it.
            return self._send(401, b"", "text/html; charset=utf-8",
                              [("Set-Cookie", "ipa_session=MagBearerToken=;path=/ipa;httponly;secure;")])
        principal = f"{user}@{self.ipa.realm}"

        def envelope(result=None, error=None, _id=None):
            err = None
            if error is not None:
                err = {"code": error.code, "message": error.message, "data": {}, "name": error.name}
            return {"result": result, "error": err, "id": _id, "principal": principal,
                    "version": IPA_VERSION}

        if not referer_prefix_ok(referer, self.ipa.hostname):
            # 4.9-pre-cve: wsgi_execute checks the referer before parsing the body, so id is null
            # (rpcserver.py@release-4-9-0:373-376)
            return self._json(200, envelope(error=RefererError(
                f"Missing or invalid HTTP Referer, {referer or 'missing'}", referer=referer or "missing")))
        _id = None
        try:
            if method != "POST":
                raise JSONError("Invalid JSON-RPC request: HTTP request method must be POST")
            ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
            if ctype != "application/json":
                # wsgi_execute falls back to simple_unmarshal (rpcserver.py:404-411, 477-480): the
                # command comes from PATH_INFO, which names none here.
                raise CommandError("unknown command 'json'", name="json")
            try:
                d = json.loads(body.decode("utf-8"))
            except (ValueError, UnicodeDecodeError) as e:
                raise JSONError(f"Invalid JSON-RPC request: {e}")
            if not isinstance(d, dict):
                raise JSONError("Invalid JSON-RPC request: Request must be a dict")
            _id = d.get("id")
            if "method" not in d:
                raise JSONError('Invalid JSON-RPC request: Request is missing "method"')
            if "params" not in d:
                raise JSONError('Invalid JSON-RPC request: Request is missing "params"')
            params = d["params"]
            if not isinstance(params, list):
                raise JSONError("Invalid JSON-RPC request: params must be a list")
            if len(params) != 2:
                raise JSONError("Invalid JSON-RPC request: params must contain [args, options]")
            args, options = params
            if not isinstance(args, list):
                raise JSONError("Invalid JSON-RPC request: params[0] (aka args) must be a list")
            if not isinstance(options, dict):
                raise JSONError("Invalid JSON-RPC request: params[1] (aka options) must be a dict")
            if not isinstance(d["method"], str):
                raise JSONError("Invalid JSON-RPC request: method must be a string")
            result = self.ipa.call(d["method"], args, options, user)
            if isinstance(result, tuple) and result[0] == "http":
                status = int(result[1])
                if status == 503:
                    return self._send(503, SERVICE_UNAVAILABLE_HTML % "Server is unwilling to perform",
                                      "text/html; charset=utf-8")
                # A crash below FreeIPA's own handlers (mod_wsgi): Apache's plain answer.
                return self._send(status, f"{status} Internal Server Error" if status == 500 else f"{status} injected failure")
            with self.ipa.lock:
                slow = self.ipa._take_failure(d["method"].split("/", 1)[0], self.ipa.slow)
            if slow:
                # The command is committed; only its answer is late (the client may have given up).
                time.sleep(float(slow.get("seconds", 1)))
            return self._json(200, envelope(result=result, _id=_id))
        except PublicError as e:
            return self._json(200, envelope(error=e, _id=_id))

    # test hooks ----------------------------------------------------------------------
    def _test_hook(self, method, path, body):
        name = path.path[len("/_test/"):]
        try:
            data = json.loads(body.decode("utf-8")) if body.strip() else {}
        except (ValueError, UnicodeDecodeError):
            return self._json(400, {"ok": False, "error": "body must be JSON"})
        if not isinstance(data, dict):
            return self._json(400, {"ok": False, "error": "body must be a JSON object"})
        ipa = self.ipa
        if method == "GET" and name == "state":
            return self._json(200, ipa.public_state())
        if method == "GET" and name == "calls":
            detail = urllib.parse.parse_qs(path.query).get("detail", ["0"])[0] not in ("0", "", "false")
            with ipa.lock:
                calls = [dict(c) for c in ipa.calls] if detail else \
                    [c["method"] for c in ipa.calls if c["method"] != "login_password"]
            return self._json(200, calls)
        if method != "POST":
            return self._json(405, {"ok": False, "error": "use POST"})
        if name == "enroll":
            status, res = ipa.enroll(data.get("fqdn"), data.get("password"))
            return self._json(status, res)
        if name == "expire-sessions":
            return self._json(200, {"ok": True, "expired": ipa.expire_sessions(bool(data.get("ccache")))})
        if name == "user":
            state = data.get("state", "ok")
            if state not in ("ok", "locked", "password-expired", "krbprincipal-expired"):
                return self._json(400, {"ok": False, "error": f"unknown user state {state}"})
            with ipa.lock:
                ipa.user_state = state
            return self._json(200, {"ok": True})
        if name == "acl":
            methods = data.get("methods") or ["host_add", "host_del"]
            with ipa.lock:
                if data.get("deny"):
                    ipa.acl_deny = set(methods)
                else:
                    ipa.acl_deny = set()
                deny = sorted(ipa.acl_deny)
            return self._json(200, {"ok": True, "deny": deny})
        if name == "dns" and ("a" in data or "ptr" in data or "zone" in data or "fail_records" in data
                              or "readable" in data):
            with ipa.lock:
                if "a" in data:
                    name_ = normalize_hostname(data.get("fqdn") or "stale." + ipa.domain)
                    ipa.a_records.setdefault(name_, set()).add(data["a"])
                if "ptr" in data:
                    ipa.ptr_records[data["ptr"]] = normalize_hostname(data.get("fqdn") or "stale." + ipa.domain)
                if "zone" in data:
                    if data.get("managed", True):
                        ipa.zones.add(normalize_hostname(data["zone"]))
                    else:
                        ipa.zones.discard(normalize_hostname(data["zone"]))
                if "fail_records" in data:
                    ipa.fail_records = bool(data["fail_records"])
                if "readable" in data:
                    ipa.dns_readable = bool(data["readable"])
            return self._json(200, {"ok": True})
        if name == "dns":
            fqdn = normalize_hostname(data.get("fqdn") or "")
            if not fqdn:
                return self._json(400, {"ok": False, "error": "fqdn required"})
            with ipa.lock:
                if data.get("remove"):
                    ipa.resolvable.discard(fqdn)
                else:
                    ipa.resolvable.add(fqdn)
            return self._json(200, {"ok": True})
        if name == "fail":
            m = data.get("method")
            if not m:
                return self._json(400, {"ok": False, "error": "method required"})
            with ipa.lock:
                ipa.failures.setdefault(m, []).append(dict(data))
            return self._json(200, {"ok": True})
        if name == "slow":
            m = data.get("method")
            if not m:
                return self._json(400, {"ok": False, "error": "method required"})
            with ipa.lock:
                ipa.slow.setdefault(m, []).append(dict(data))
            return self._json(200, {"ok": True})
        if name == "reset":
            ipa.reset()
            return self._json(200, {"ok": True})
        return self._json(404, {"ok": False, "error": f"unknown test hook {name}"})


class IPAServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, addr, ipa, ssl_context, verbose=False, workers=4, latency=0.0):
        super().__init__(addr, Handler)
        self.workers = threading.BoundedSemaphore(workers)
        self.latency = latency
        self.ipa = ipa
        self.ssl_context = ssl_context
        self.verbose = verbose

    def finish_request(self, request, client_address):
        # TLS handshake in the per-connection thread, not in the accept loop
        request.settimeout(30)
        try:
            tls = self.ssl_context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as e:
            if self.verbose:
                sys.stderr.write(f"TLS handshake from {client_address} failed: {e}\n")
            return
        try:
            super().finish_request(tls, client_address)
        finally:
            try:
                tls.close()
            except OSError:
                pass

    def handle_error(self, request, client_address):
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, ssl.SSLError, socket.timeout, TimeoutError)):
            return
        super().handle_error(request, client_address)


# ----------------------------------------------------------------------------- setup
def ensure_certificate(state_dir, hostname, ip_san=False):
    """The IPA HTTP certificate names the server FQDN only (DNS SAN); --ip-san adds IP:127.0.0.1."""
    tls = os.path.join(state_dir, "tls")
    os.makedirs(tls, exist_ok=True)
    key, cert, marker = (os.path.join(tls, n) for n in ("key.pem", "cert.pem", "hostname"))
    current = open(marker).read().strip() if os.path.exists(marker) else None
    san = f"DNS:{hostname},IP:127.0.0.1" if ip_san else f"DNS:{hostname}"
    if not (os.path.exists(key) and os.path.exists(cert)) or current != san:
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30",
             "-keyout", key, "-out", cert, "-subj", f"/CN={hostname}",
             "-addext", f"subjectAltName={san}",
             "-addext", "keyUsage=critical,digitalSignature,keyEncipherment,keyCertSign",
             "-addext", "extendedKeyUsage=serverAuth"],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        os.chmod(key, 0o600)
        with open(marker, "w") as f:
            f.write(san + "\n")
    return key, cert


def read_password_file(path):
    with open(path, encoding="utf-8") as f:
        pw = f.read()
    if pw.endswith("\r\n"):
        pw = pw[:-2]
    elif pw.endswith("\n"):
        pw = pw[:-1]
    return pw


def main(argv=None):
    p = argparse.ArgumentParser(description="FreeIPA JSON-RPC test server")
    p.add_argument("--bind", default="127.0.0.1", help="listen address (loopback only; default 127.0.0.1)")
    p.add_argument("--port", type=int, default=0, help="TCP port, 0 = pick a free one (default)")
    p.add_argument("--hostname", default="ipa.onetouch.test", help="IPA server FQDN (cert CN/SAN, Referer)")
    p.add_argument("--realm", default="ONETOUCH.TEST")
    p.add_argument("--state-dir", default=None, help="where to keep key/cert (default: a new temp dir)")
    p.add_argument("--user", default="admin")
    p.add_argument("--password-file", required=True)
    p.add_argument("--session-lifetime", type=float, default=86400.0,
                   help="seconds (the login's ticket lifetime; default 24 h)")
    p.add_argument("--profile", choices=sorted(PROFILES), default="4.12", help="FreeIPA release line")
    p.add_argument("--no-dns", action="store_true", help="no IPA DNS: ip_address/updatedns ignored")
    p.add_argument("--ip-san", action="store_true", help="certificate also valid for IP:127.0.0.1")
    p.add_argument("--resolvable", action="append", default=[], help="FQDN that 'has' a DNS A record")
    p.add_argument("--workers", type=int, default=4, help="FreeIPA calls served at once; the rest queue (default 4, "
                   "as FreeIPA's WSGI daemon)")
    p.add_argument("--latency", type=float, default=0.0, help="seconds each FreeIPA call holds its worker after "
                   "its work (default 0)")
    p.add_argument("--verbose", action="store_true")
    a = p.parse_args(argv)

    try:
        if not ipaddress.ip_address(a.bind).is_loopback:
            p.error("--bind must be a loopback address")
    except ValueError:
        p.error("--bind must be an IP address")

    if a.state_dir is None:
        import tempfile
        a.state_dir = tempfile.mkdtemp(prefix="ipa-testbed-")
    os.makedirs(a.state_dir, exist_ok=True)
    global IPA_VERSION, API_VERSION
    IPA_VERSION, API_VERSION = PROFILES[a.profile]
    key, cert = ensure_certificate(a.state_dir, a.hostname, a.ip_san)

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)

    ipa = IPAState(a.hostname, a.realm, a.user, read_password_file(a.password_file), a.session_lifetime,
                   a.resolvable, profile=a.profile, ipa_dns=not a.no_dns)
    server = IPAServer((a.bind, a.port), ipa, ctx, verbose=a.verbose, workers=a.workers, latency=a.latency)
    port = server.server_address[1]

    def stop(signum, frame):
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    print(f"PORT={port}")
    print(f"CA={os.path.abspath(cert)}")
    print(f"URL=https://{a.hostname}:{port}")
    sys.stdout.flush()
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
