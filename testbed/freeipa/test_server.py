"""Tests for the FreeIPA JSON-RPC test server (testbed/freeipa/server.py) started through
scripts/freeipa-testbed.  The client connects to 127.0.0.1:PORT but speaks TLS/Host/Referer
for ipa.onetouch.test, verifying the server certificate against IPA_CA_BUNDLE."""

import http.client
import json
import re
import socket
import ssl
import string
import subprocess
import time
import urllib.parse
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TESTBED = REPO / "scripts" / "freeipa-testbed"
VERSION = "2.251"


def read_env(path):
    env = {}
    for line in Path(path).read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            k, v = line.split("=", 1)
            env[k] = v
    return env


def pid_alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


class _Conn(http.client.HTTPSConnection):
    """HTTPS to connect_host:port, TLS server name / Host header = hostname."""

    def __init__(self, connect_host, port, hostname, context, timeout=10):
        super().__init__(hostname, port, context=context, timeout=timeout)
        self._connect_host = connect_host

    def connect(self):
        sock = socket.create_connection((self._connect_host, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


class Client:
    def __init__(self, env):
        self.env = env
        self.hostname = env["IPA_HOSTNAME"]
        host, port = env["IPA_CONNECT"].rsplit(":", 1)
        self.connect_host, self.port = host, int(port)
        self.ctx = ssl.create_default_context(cafile=env["IPA_CA_BUNDLE"])
        # what real FreeIPA accepts: no port (ipaserver/rpcserver.py:389-392 is a string prefix)
        self.referer = f"https://{self.hostname}/ipa"
        self.cookie = None
        self.conn = None
        self.timeout = 10

    def raw(self, method, path, body=b"", headers=None, keepalive=False):
        conn = self.conn if keepalive and self.conn else _Conn(self.connect_host, self.port, self.hostname, self.ctx, self.timeout)
        if keepalive:
            self.conn = conn
        if isinstance(body, str):
            body = body.encode()
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        if not keepalive:
            conn.close()
        return resp, data

    def login(self, user=None, password=None, referer=True, ctype="application/x-www-form-urlencoded"):
        user = self.env["IPA_USER"] if user is None else user
        password = Path(self.env["IPA_PASSWORD_FILE"]).read_text() if password is None else password
        headers = {"Content-Type": ctype, "Accept": "text/plain"}
        if referer is True:
            headers["Referer"] = self.referer
        elif referer:
            headers["Referer"] = referer
        resp, data = self.raw("POST", "/ipa/session/login_password",
                              urllib.parse.urlencode({"user": user, "password": password}), headers)
        if resp.status == 200:
            sc = resp.getheader("Set-Cookie")
            self.cookie = sc.split(";", 1)[0]
        return resp, data

    def post_json(self, payload, referer=True, cookie=True, keepalive=False):
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if referer is True:
            headers["Referer"] = self.referer
        elif referer:
            headers["Referer"] = referer
        if cookie is True and self.cookie:
            headers["Cookie"] = self.cookie
        elif isinstance(cookie, str):
            headers["Cookie"] = cookie
        body = payload if isinstance(payload, (str, bytes)) else json.dumps(payload)
        resp, data = self.raw("POST", "/ipa/session/json", body, headers, keepalive=keepalive)
        return resp, (json.loads(data) if resp.status == 200 else data)

    def call(self, method, *args, _id=0, **options):
        options.setdefault("version", VERSION)
        resp, doc = self.post_json({"method": method, "params": [list(args), options], "id": _id})
        assert resp.status == 200, (resp.status, doc)
        return doc

    def hook(self, name, payload=None, method="POST"):
        body = json.dumps(payload or {}) if method == "POST" else b""
        resp, data = self.raw(method, "/_test/" + name, body, {"Content-Type": "application/json"})
        return resp.status, json.loads(data)


PROFILES = ("4.9-pre-cve", "4.12", "master")


def start(base, profile="4.12", args=""):
    import os
    env = dict(os.environ, IPA_TESTBED_PROFILE=profile, IPA_TESTBED_ARGS=args)
    r = subprocess.run([str(TESTBED), "start", str(base)], capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 0, r.stderr
    return read_env(base / "env")


def stop(base):
    r = subprocess.run([str(TESTBED), "stop", str(base)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr


@pytest.fixture(scope="module", params=PROFILES)
def testbed(tmp_path_factory, request):
    base = tmp_path_factory.mktemp("ipa")
    r = subprocess.run([str(TESTBED), "start", str(base)], capture_output=True, text=True, timeout=60,
                       env=dict(__import__("os").environ, IPA_TESTBED_PROFILE=request.param))
    assert r.returncode == 0, r.stderr
    env = read_env(base / "env")
    try:
        yield env
    finally:
        r = subprocess.run([str(TESTBED), "stop", str(base)], capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        assert not pid_alive(int(env["IPA_PID"]))


@pytest.fixture
def ipa(testbed):
    c = Client(testbed)
    status, _ = c.hook("reset")
    assert status == 200
    c.hook("acl", {"deny": False})
    resp, _ = c.login()
    assert resp.status == 200
    return c


def error_of(doc):
    assert doc["result"] is None
    return doc["error"]


# ----------------------------------------------------------------------------- env / TLS
def test_env_file(testbed):
    for key in ("IPA_URL", "IPA_CONNECT", "IPA_CA_BUNDLE", "IPA_USER", "IPA_PASSWORD_FILE", "IPA_PID"):
        assert testbed.get(key), key
    port = testbed["IPA_PORT"]
    assert testbed["IPA_URL"] == f"https://ipa.onetouch.test:{port}"
    assert testbed["IPA_CONNECT"] == f"127.0.0.1:{port}"
    assert Path(testbed["IPA_CA_BUNDLE"]).is_file()
    assert testbed["IPA_USER"] == "admin"
    assert pid_alive(int(testbed["IPA_PID"]))
    # only loopback: nothing answers on another local address
    cmd = Path(f"/proc/{testbed['IPA_PID']}/cmdline").read_bytes().split(b"\0")
    assert b"127.0.0.1" in cmd


def test_certificate_names_the_server_only(testbed):
    # the IPA-issued HTTP certificate has DNS SANs for the server FQDN, no IP SAN (freeipa-real.md row 9)
    ctx = ssl.create_default_context(cafile=testbed["IPA_CA_BUNDLE"])
    port = int(testbed["IPA_PORT"])
    with socket.create_connection(("127.0.0.1", port)) as s:
        with ctx.wrap_socket(s, server_hostname="ipa.onetouch.test") as t:
            assert t.version() in ("TLSv1.2", "TLSv1.3")
    for name in ("127.0.0.1", "other.onetouch.test"):
        with socket.create_connection(("127.0.0.1", port)) as s:
            with pytest.raises(ssl.SSLCertVerificationError):
                ctx.wrap_socket(s, server_hostname=name)


# ----------------------------------------------------------------------------- login
def test_login_referer_by_profile(testbed):
    """4.9-pre-cve: no check; 4.12: string prefix; master: parsed URL. Refusal is 400 'denied'."""
    c = Client(testbed)
    profile = testbed["IPA_PROFILE"]
    port = testbed["IPA_PORT"]
    bad_everywhere = [None, "http://ipa.onetouch.test/ipa", "https://evil.onetouch.test/ipa",
                      "https://ipa.onetouch.test/other"]
    if profile != "master":  # the prefix is case-sensitive; master's urlparse lower-cases the name
        bad_everywhere.append("https://IPA.onetouch.test/ipa")
    for bad in bad_everywhere:
        resp, data = c.login(referer=bad if bad else False)
        if profile == "4.9-pre-cve":
            assert resp.status == 200, bad
        else:
            assert resp.status == 400, bad
            assert b"<strong>denied</strong>" in data
            assert resp.getheader("Content-Type").startswith("text/html")
    # a port: refused by the 4.12 prefix, accepted by master's parsed check
    resp, _ = c.login(referer=f"https://ipa.onetouch.test:{port}/ipa")
    assert resp.status == {"4.9-pre-cve": 200, "4.12": 400, "master": 200}[profile]
    # the prefix accepts /ipaX on 4.12
    resp, _ = c.login(referer="https://ipa.onetouch.test/ipaX")
    assert resp.status == {"4.9-pre-cve": 200, "4.12": 200, "master": 400}[profile]


def test_login_success_sets_session_cookie(testbed):
    c = Client(testbed)
    resp, data = c.login()
    assert resp.status == 200
    assert resp.reason == "Success"
    assert data == b""
    sc = resp.getheader("Set-Cookie")
    assert re.fullmatch(r"ipa_session=MagBearerToken=[^;\s]+;path=/ipa;httponly;secure;", sc), sc
    # also with the plain /ipa referer without port (what upstream clients send)
    resp, _ = c.login(referer="https://ipa.onetouch.test/ipa/ui/")
    assert resp.status == 200


def test_login_bad_password(testbed):
    c = Client(testbed)
    resp, data = c.login(password="wrong-password")
    assert resp.status == 401
    assert resp.getheader("X-IPA-Rejection-Reason") == "invalid-password"
    assert resp.getheader("Set-Cookie") is None
    resp, _ = c.login(user="nobody")
    assert resp.status == 401
    assert resp.getheader("X-IPA-Rejection-Reason") == "invalid-password"


def test_login_wrong_content_type(testbed):
    c = Client(testbed)
    resp, _ = c.login(ctype="application/json")
    assert resp.status == 400


# ----------------------------------------------------------------------------- JSON envelope
def test_json_without_cookie_is_401(testbed):
    c = Client(testbed)
    resp, _ = c.post_json({"method": "ping", "params": [[], {}], "id": 1})
    assert resp.status == 401
    resp, _ = c.post_json({"method": "ping", "params": [[], {}], "id": 1},
                          cookie="ipa_session=MagBearerToken=forged")
    assert resp.status == 401


def test_json_bad_referer_by_profile(ipa):
    """4.9-pre-cve: RefererError 911 in the envelope, id null; 4.12 and master: HTTP 400 'denied'.
    The Referer with the server's port is refused in every profile (the prefix check)."""
    profile = ipa.env["IPA_PROFILE"]
    for bad in (False, "https://evil.example/ipa", f"https://ipa.onetouch.test:{ipa.port}/ipa",
                "https://IPA.ONETOUCH.TEST/ipa"):
        resp, doc = ipa.post_json({"method": "ping", "params": [[], {}], "id": 7}, referer=bad)
        if profile == "4.9-pre-cve":
            assert resp.status == 200
            err = error_of(doc)
            assert err["code"] == 911 and err["name"] == "RefererError"
            assert doc["id"] is None
        else:
            assert resp.status == 400, bad
            assert b"<strong>denied</strong>" in doc
    # without a cookie Apache answers 401 first, in every profile
    resp, _ = ipa.post_json({"method": "ping", "params": [[], {}], "id": 7}, referer=False, cookie="x=y")
    assert resp.status == 401


def test_json_content_type_not_json_is_command_error(ipa):
    headers = {"Content-Type": "text/plain", "Referer": ipa.referer, "Cookie": ipa.cookie}
    resp, data = ipa.raw("POST", "/ipa/session/json", json.dumps({"method": "ping", "params": [[], {}]}), headers)
    assert resp.status == 200
    assert json.loads(data)["error"]["code"] == 905


@pytest.mark.parametrize("payload", [
    {"method": "ping", "params": {}, "id": 5},
    {"method": "ping", "params": [[]], "id": 5},
    {"method": "ping", "params": [[], {}, {}], "id": 5},
    {"method": "ping", "params": [{}, {}], "id": 5},
    {"method": "ping", "params": [[], []], "id": 5},
    {"method": "ping", "id": 5},
    {"params": [[], {}], "id": 5},
])
def test_malformed_params_is_909(ipa, payload):
    resp, doc = ipa.post_json(payload)
    assert resp.status == 200
    err = error_of(doc)
    assert err["code"] == 909 and err["name"] == "JSONError"
    assert err["message"].startswith("Invalid JSON-RPC request: ")
    assert doc["id"] == 5


def test_invalid_json_is_909(ipa):
    resp, doc = ipa.post_json("{not json")
    assert resp.status == 200
    assert error_of(doc)["code"] == 909


def test_ping_envelope(ipa):
    doc = ipa.call("ping", _id=42)
    assert set(doc) == {"result", "error", "id", "principal", "version"}
    assert doc["error"] is None
    assert doc["id"] == 42
    assert doc["principal"] == "admin@ONETOUCH.TEST"
    release, api = {"4.9-pre-cve": ("4.9.13", "2.251"), "4.12": ("4.12.5", "2.254"),
                    "master": ("4.13.0", "2.257")}[ipa.env["IPA_PROFILE"]]
    assert doc["version"] == release
    assert doc["result"]["summary"] == f"IPA server version {release}. API version {api}"
    assert "messages" not in doc["result"]
    # no version sent -> VersionMissing warning message, still succeeds
    resp, doc = ipa.post_json({"method": "ping", "params": [[], {}], "id": 1})
    assert doc["error"] is None
    assert doc["result"]["messages"][0]["name"] == "VersionMissing"


def test_unknown_command_option_and_version(ipa):
    assert error_of(ipa.call("user_add", "bob"))["code"] == 905
    err = error_of(ipa.call("host_show", "vm.onetouch.test", bogus=True))
    assert err["code"] == 3005 and err["message"] == "Unknown option: bogus"
    assert error_of(ipa.call("ping", version="3.0"))["code"] == 901
    # versioned method names are accepted
    assert ipa.call("ping/1")["error"] is None


def test_keepalive_connection(ipa):
    for i in range(3):
        resp, doc = ipa.post_json({"method": "ping", "params": [[], {"version": VERSION}], "id": i},
                                  keepalive=True)
        assert resp.status == 200 and doc["id"] == i
    ipa.conn.close()


# ----------------------------------------------------------------------------- hosts
def test_host_add_random(ipa):
    doc = ipa.call("host_add", "vm1.onetouch.test", _id=3, force=True, random=True, description="test vm")
    assert doc["error"] is None and doc["id"] == 3
    res = doc["result"]
    assert set(res) == {"result", "value", "summary"}
    assert res["value"] == "vm1.onetouch.test"
    assert res["summary"] == 'Added host "vm1.onetouch.test"'
    r = res["result"]
    assert r["fqdn"] == ["vm1.onetouch.test"]
    assert r["description"] == ["test vm"]
    assert r["has_password"] is True and r["has_keytab"] is False
    assert "krbprincipalname" not in r
    otp = r["randompassword"]
    assert isinstance(otp, str)
    # upstream ipa_generate_password(entropy_bits=128, special=None): digit, upper, lower + 20 more
    assert len(otp) == 23
    assert set(otp) <= set(string.ascii_letters + string.digits)
    assert otp[0].isdigit() and otp[1].isupper() and otp[2].islower()
    # randompassword is only ever shown by add/mod
    show = ipa.call("host_show", "vm1.onetouch.test")["result"]["result"]
    assert "randompassword" not in show


def test_host_add_userpassword_and_normalisation(ipa):
    doc = ipa.call("host_add", "VM2.OneTouch.Test.", force=True, userpassword="My-OTP 1")
    r = doc["result"]["result"]
    assert doc["result"]["value"] == "vm2.onetouch.test"
    assert r["has_password"] is True and "randompassword" not in r
    st, res = ipa.hook("enroll", {"fqdn": "vm2.onetouch.test", "password": "My-OTP 1"})
    assert st == 200 and res["ok"]


def test_host_add_force_without_otp_has_principal(ipa):
    r = ipa.call("host_add", "vm3.onetouch.test", force=True)["result"]["result"]
    assert r["has_password"] is False and r["has_keytab"] is False
    assert r["krbprincipalname"] == ["host/vm3.onetouch.test@ONETOUCH.TEST"]


def test_host_add_dns_check_4019(ipa):
    err = error_of(ipa.call("host_add", "vm4.onetouch.test", random=True))
    assert err["code"] == 4019 and err["name"] == "DNSNotARecordError"
    assert err["message"] == "Host 'vm4.onetouch.test' does not have corresponding DNS A/AAAA record"
    # with ip_address the DNS check is skipped
    doc = ipa.call("host_add", "vm4.onetouch.test", random=True, ip_address="10.0.1.23")
    assert doc["error"] is None
    # a name registered as resolvable needs no force
    ipa.hook("dns", {"fqdn": "vm5.onetouch.test"})
    assert ipa.call("host_add", "vm5.onetouch.test", random=True)["error"] is None
    # invalid ip / not fully qualified
    assert error_of(ipa.call("host_add", "vm6.onetouch.test", ip_address="10.0.0.300"))["code"] == 3009
    assert error_of(ipa.call("host_add", "vm6", force=True))["code"] == 3009
    assert error_of(ipa.call("host_add"))["code"] == 3007


def test_host_add_hostname_length_3009(ipa):
    name = "a" * (64 - len(".onetouch.test")) + ".onetouch.test"
    assert len(name) == 64
    assert ipa.call("host_add", name, force=True)["error"] is None
    err = error_of(ipa.call("host_add", "b" + name, force=True))
    assert err["code"] == 3009 and err["message"] == "invalid 'hostname': can be at most 64 characters"


def test_host_add_order_of_checks(ipa):
    """length -> DNS validation -> resolvability -> ACL -> duplicate (baseldap.py:1287-1313)."""
    assert ipa.call("host_add", "gone.onetouch.test", force=True)["error"] is None
    # an existing host whose name does not resolve: 4019, not 4002
    assert error_of(ipa.call("host_add", "gone.onetouch.test"))["code"] == 4019
    ipa.hook("acl", {"deny": True})
    assert error_of(ipa.call("host_add", "gone.onetouch.test"))["code"] == 4019
    assert error_of(ipa.call("host_add", "gone.onetouch.test", force=True))["code"] == 2100
    assert error_of(ipa.call("host_add", "x" * 70 + ".onetouch.test", force=True))["code"] == 3009


def test_host_add_dns_clash_is_4002_for_a_new_host(ipa):
    ipa.hook("dns", {"a": "10.0.1.23", "fqdn": "old.onetouch.test"})
    err = error_of(ipa.call("host_add", "new.onetouch.test", random=True, ip_address="10.0.1.23"))
    assert err["code"] == 4002
    assert err["message"] == "IP address 10.0.1.23 is already assigned in domain onetouch.test."
    ipa.hook("dns", {"ptr": "10.0.1.24"})
    err = error_of(ipa.call("host_add", "new.onetouch.test", random=True, ip_address="10.0.1.24"))
    assert err["code"] == 4002
    assert err["message"] == ("Reverse record for IP address 10.0.1.24 already exists in reverse zone "
                              "1.0.10.in-addr.arpa.")
    assert "new.onetouch.test" not in ipa.hook("state", method="GET")[1]["hosts"]


def test_host_add_dns_records_and_host_del_updatedns(ipa):
    assert ipa.call("host_add", "rec.onetouch.test", random=True, ip_address="10.0.2.1")["error"] is None
    state = ipa.hook("state", method="GET")[1]
    assert state["a_records"] == {"rec.onetouch.test": ["10.0.2.1"]}
    doc = ipa.call("host_del", "rec.onetouch.test", updatedns=True)
    assert doc["error"] is None and "messages" not in doc["result"]
    assert ipa.hook("state", method="GET")[1]["a_records"] == {}
    # no records: only message 13020
    assert ipa.call("host_add", "norec.onetouch.test", force=True)["error"] is None
    doc = ipa.call("host_del", "norec.onetouch.test", updatedns=True)
    assert [m["code"] for m in doc["result"]["messages"]] == [13020]


def test_host_add_zone_not_managed_and_dns_privileges(ipa):
    ipa.hook("dns", {"zone": "onetouch.test", "managed": False})
    err = error_of(ipa.call("host_add", "z.onetouch.test", ip_address="10.0.3.1"))
    assert err["code"] == 4001 and err["message"] == "DNS zone onetouch.test. not found"
    ipa.hook("dns", {"zone": "onetouch.test", "managed": True})
    ipa.hook("dns", {"readable": False})  # a Host-Administrators-only user
    assert error_of(ipa.call("host_add", "z.onetouch.test", ip_address="10.0.3.1"))["code"] == 4001


def test_host_add_record_failure_is_a_warning(ipa):
    ipa.hook("dns", {"fail_records": True})
    doc = ipa.call("host_add", "w.onetouch.test", random=True, ip_address="10.0.4.1")
    assert doc["error"] is None
    assert [(m["name"], m["code"]) for m in doc["result"]["messages"]] == [("FailedToAddHostDNSRecords", 13030)]


def test_login_rejection_reasons(ipa):
    profile = ipa.env["IPA_PROFILE"]
    c = Client(ipa.env)
    ipa.hook("user", {"state": "locked"})
    resp, _ = c.login()
    assert resp.status == 401
    # rpcserver.py:1151 typo: locked users look like a wrong password on 4.9-4.12
    assert resp.getheader("X-IPA-Rejection-Reason") == ("user-locked" if profile == "master" else "invalid-password")
    for state in ("password-expired", "krbprincipal-expired"):
        ipa.hook("user", {"state": state})
        resp, _ = c.login()
        assert resp.status == 401 and resp.getheader("X-IPA-Rejection-Reason") == state
    ipa.hook("user", {"state": "ok"})
    resp, _ = c.login(user="a@B@C")
    assert resp.status == 401 and resp.getheader("X-IPA-Rejection-Reason") == "denied"


def test_session_ccache_expired_gives_empty_401_and_logout_cookie(ipa):
    assert ipa.call("ping")["error"] is None
    ipa.hook("expire-sessions", {"ccache": True})
    resp, data = ipa.post_json({"method": "ping", "params": [[], {"version": VERSION}], "id": 1})
    assert resp.status == 401 and data == b""
    assert resp.getheader("Set-Cookie").startswith("ipa_session=MagBearerToken=;")
    assert resp.getheader("WWW-Authenticate") is None


def test_no_ipa_dns_ignores_ip_address_and_updatedns(tmp_path):
    env = start(tmp_path, args="--no-dns")
    try:
        c = Client(env)
        assert c.login()[0].status == 200
        c.hook("dns", {"a": "10.0.1.23"})
        doc = c.call("host_add", "nodns.onetouch.test", random=True, ip_address="10.0.1.23")
        assert doc["error"] is None and "messages" not in doc["result"]
        doc = c.call("host_del", "nodns.onetouch.test", updatedns=True)
        assert doc["error"] is None and "messages" not in doc["result"]
    finally:
        stop(tmp_path)


def test_host_add_duplicate_4002(ipa):
    assert ipa.call("host_add", "dup.onetouch.test", force=True, random=True)["error"] is None
    err = error_of(ipa.call("host_add", "dup.onetouch.test", force=True, random=True, _id=9))
    assert err == {"code": 4002, "name": "DuplicateEntry", "data": {},
                   "message": 'host with name "dup.onetouch.test" already exists'}


def test_host_show_not_found_4001(ipa):
    doc = ipa.call("host_show", "ghost.onetouch.test", _id=11)
    err = error_of(doc)
    assert err["code"] == 4001 and err["name"] == "NotFound"
    assert err["message"] == "ghost.onetouch.test: host not found"
    assert doc["id"] == 11


def test_enrollment_and_otp_single_use(ipa):
    fqdn = "vm7.onetouch.test"
    otp = ipa.call("host_add", fqdn, force=True, random=True)["result"]["result"]["randompassword"]
    doc = ipa.call("host_show", fqdn)
    assert doc["result"]["value"] == fqdn and doc["result"]["summary"] is None
    r = doc["result"]["result"]
    assert r["has_password"] is True and r["has_keytab"] is False and "krbprincipalname" not in r

    st, res = ipa.hook("enroll", {"fqdn": fqdn, "password": otp + "x"})
    assert st == 401 and not res["ok"]
    st, res = ipa.hook("enroll", {"fqdn": fqdn, "password": otp})
    assert st == 200 and res["ok"]

    r = ipa.call("host_show", fqdn)["result"]["result"]
    assert r["has_keytab"] is True and r["has_password"] is False  # enrollment complete
    assert r["krbprincipalname"] == [f"host/{fqdn}@ONETOUCH.TEST"]

    st, res = ipa.hook("enroll", {"fqdn": fqdn, "password": otp})  # OTP is single use
    assert st == 401 and not res["ok"]
    st, _ = ipa.hook("enroll", {"fqdn": "nope.onetouch.test", "password": otp})
    assert st == 404


def test_host_mod_random_and_disable(ipa):
    fqdn = "vm8.onetouch.test"
    otp1 = ipa.call("host_add", fqdn, force=True, random=True)["result"]["result"]["randompassword"]
    # reset the OTP while not enrolled: allowed, old one stops working
    doc = ipa.call("host_mod", fqdn, random=True)
    assert doc["result"]["summary"] == f'Modified host "{fqdn}"'
    otp2 = doc["result"]["result"]["randompassword"]
    assert otp2 != otp1 and doc["result"]["result"]["has_password"] is True
    assert ipa.hook("enroll", {"fqdn": fqdn, "password": otp1})[0] == 401
    # nothing to disable yet
    err = error_of(ipa.call("host_disable", fqdn))
    assert err["code"] == 4010 and err["name"] == "AlreadyInactive"
    assert ipa.hook("enroll", {"fqdn": fqdn, "password": otp2})[0] == 200
    # enrolled: a new OTP is refused (upstream host_mod pre_callback)
    err = error_of(ipa.call("host_mod", fqdn, random=True))
    assert err["code"] == 3009
    assert err["message"] == "invalid 'password': Password cannot be set on enrolled host."
    assert error_of(ipa.call("host_mod", fqdn))["code"] == 4202
    # disable removes the keytab
    doc = ipa.call("host_disable", fqdn)
    assert doc["result"] == {"result": True, "value": fqdn, "summary": f'Disabled host "{fqdn}"'}
    r = ipa.call("host_show", fqdn)["result"]["result"]
    assert r["has_keytab"] is False and r["has_password"] is False
    assert error_of(ipa.call("host_disable", fqdn))["code"] == 4010
    # re-provision: new OTP, enrol again
    otp3 = ipa.call("host_mod", fqdn, random=True)["result"]["result"]["randompassword"]
    assert ipa.hook("enroll", {"fqdn": fqdn, "password": otp3})[0] == 200
    assert error_of(ipa.call("host_mod", "ghost.onetouch.test", random=True))["code"] == 4001
    assert error_of(ipa.call("host_disable", "ghost.onetouch.test"))["code"] == 4001


def test_host_del_twice(ipa):
    fqdn = "vm9.onetouch.test"
    ipa.call("host_add", fqdn, force=True, random=True)
    doc = ipa.call("host_del", fqdn)
    assert doc["error"] is None
    assert doc["result"] == {"result": {"failed": []}, "value": [fqdn], "summary": f'Deleted host "{fqdn}"'}
    err = error_of(ipa.call("host_del", fqdn, updatedns=True))
    assert err["code"] == 4001 and err["message"] == f"{fqdn}: host not found"
    assert error_of(ipa.call("host_show", fqdn))["code"] == 4001
    # continue=True reports instead of failing
    doc = ipa.call("host_del", [fqdn], **{"continue": True})
    assert doc["error"] is None and doc["result"]["result"]["failed"] == [fqdn]


def test_acl_deny(ipa):
    ipa.call("host_add", "acl.onetouch.test", force=True, random=True)
    st, res = ipa.hook("acl", {"deny": True})
    assert st == 200 and res["deny"] == ["host_add", "host_del"]
    err = error_of(ipa.call("host_add", "acl2.onetouch.test", force=True, random=True))
    assert err["code"] == 2100 and err["name"] == "ACIError"
    assert err["message"].startswith("Insufficient access: ")
    assert error_of(ipa.call("host_del", "acl.onetouch.test"))["code"] == 2100
    assert ipa.call("host_show", "acl.onetouch.test")["error"] is None  # reads still work
    ipa.hook("acl", {"deny": False})
    assert ipa.call("host_del", "acl.onetouch.test")["error"] is None


def test_session_expiry_and_relogin(ipa):
    assert ipa.call("ping")["error"] is None
    old = ipa.cookie
    st, res = ipa.hook("expire-sessions")
    assert st == 200 and res["expired"] >= 1
    resp, _ = ipa.post_json({"method": "ping", "params": [[], {"version": VERSION}], "id": 1})
    assert resp.status == 401
    resp, _ = ipa.login()
    assert resp.status == 200 and ipa.cookie != old
    assert ipa.call("ping")["error"] is None
    resp, _ = ipa.post_json({"method": "ping", "params": [[], {}], "id": 1}, cookie=old)
    assert resp.status == 401


def test_calls_and_state_hooks(ipa):
    ipa.call("ping")
    ipa.call("host_add", "calls.onetouch.test", force=True, random=True)
    ipa.call("host_show", "calls.onetouch.test")
    st, calls = ipa.hook("calls", method="GET")
    assert st == 200 and calls == ["ping", "host_add", "host_show"]
    st, detail = ipa.hook("calls?detail=1", method="GET")
    assert st == 200 and all("method" in c for c in detail)
    st, state = ipa.hook("state", method="GET")
    h = state["hosts"]["calls.onetouch.test"]
    assert h["has_password"] is True and h["otp"]


def test_failure_injection(ipa):
    ipa.hook("fail", {"method": "host_add", "code": 4203, "name": "DatabaseError", "message": "boom"})
    err = error_of(ipa.call("host_add", "f.onetouch.test", force=True))
    assert err["code"] == 4203 and err["name"] == "DatabaseError"
    assert ipa.call("host_add", "f.onetouch.test", force=True)["error"] is None  # only once
    ipa.hook("fail", {"method": "ping", "http_status": 503})
    resp, body = ipa.post_json({"method": "ping", "params": [[], {"version": VERSION}], "id": 1})
    # As jsonserver_session answers a DatabaseError: FreeIPA's HTML page, not a JSON envelope.
    assert resp.status == 503 and resp.getheader("Content-Type").startswith("text/html")
    assert "<title>503 Service Unavailable</title>" in body.decode()
    assert ipa.call("ping")["error"] is None
    ipa.hook("fail", {"method": "ping", "http_status": 500})
    resp, body = ipa.post_json({"method": "ping", "params": [[], {"version": VERSION}], "id": 1})
    assert resp.status == 500 and resp.getheader("Content-Type").startswith("text/plain")
    assert body.decode() == "500 Internal Server Error"


def test_a_slow_answer_comes_after_the_command_is_committed(ipa):
    ipa.hook("slow", {"method": "host_add", "seconds": 2})
    c = Client(ipa.env)
    c.timeout = 0.5
    c.login()
    with pytest.raises((TimeoutError, OSError)):
        c.call("host_add", "slow.onetouch.test", force=True, random=True)
    _, state = ipa.hook("state", method="GET")
    assert "slow.onetouch.test" in state["hosts"], "committed although its answer was late"
    assert ipa.call("host_show", "slow.onetouch.test")["error"] is None  # only the first answer is late


def test_calls_queue_behind_the_workers(tmp_path):
    """--workers 1 --latency 0.3: four concurrent calls are served one after another."""
    import concurrent.futures
    env = start(tmp_path, args="--workers 1 --latency 0.3")
    try:
        clients = [Client(env) for _ in range(4)]
        for c in clients:
            c.login()
        began = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(lambda c: c.call("ping"), clients))
        assert all(a["error"] is None for a in answers)
        assert time.monotonic() - began >= 4 * 0.3, "a single worker serves them one at a time"
    finally:
        stop(tmp_path)
