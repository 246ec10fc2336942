"""End to end with FreeIPA: the real `onetouch serve` (EC2 test bed, `directory: {kind: freeipa}`)
against the FreeIPA test server (testbed/freeipa/server.py; no real FreeIPA can run here), and the
real rendered bootstrap script taken from the instance's user-data in moto, run as root in the host
sandbox (testbed/host/hostkit.py).

The host's `ipa-client-install` is a stub that applies the real installer's argument rules
(`--server` without `--domain` is a usage error, `-U`, a CA file that exists, a lower-case name of at
most 64 characters) and then does what `ipa-join` does: sets the host's keys at the server named by
`--server`, over TLS checked against `--ca-cert-file`, with the one-time password given in `-w`.
So the host is enrolled only if onetouch issued the right password through the right server with
the right CA, and `complete` asks FreeIPA (`host_show`, `has_keytab`) before the host is `ready`.
"""
import base64
import contextlib
import gzip
import json
import ssl
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "testbed/host"))
import hostkit  # noqa: E402
from test_onetouch_ec2 import Stack, wait_all  # noqa: E402

REASON = hostkit.sandbox_unavailable()
pytestmark = pytest.mark.skipif(REASON is not None, reason=REASON or "")

FQDN = "ipa-01.onetouch.test"


@pytest.fixture
def base(tmp_path):
    return tmp_path


def ipa(stack, hook):
    """GET a test hook of the FreeIPA test server (over its own CA)."""
    context = ssl.create_default_context(cafile=stack.ipa["IPA_CA_BUNDLE"])
    with urllib.request.urlopen(stack.ipa["IPA_TEST_HOOKS"] + "/" + hook, context=context, timeout=10) as r:
        return json.loads(r.read())


def ipa_command(stack, method, args, options):
    """One JSON-RPC command as the admin, the way `ipa` does it (login, then the session cookie)."""
    context = ssl.create_default_context(cafile=stack.ipa["IPA_CA_BUNDLE"])
    url, referer = stack.ipa["IPA_URL"], "https://localhost/ipa"
    password = Path(stack.ipa["IPA_PASSWORD_FILE"]).read_text()
    login = urllib.request.Request(
        url + "/ipa/session/login_password", method="POST",
        data=urllib.parse.urlencode({"user": stack.ipa["IPA_USER"], "password": password}).encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded", "Referer": referer, "Accept": "text/plain"})
    with urllib.request.urlopen(login, context=context, timeout=10) as r:
        cookie = r.headers["Set-Cookie"].split(";")[0]
    call = urllib.request.Request(
        url + "/ipa/session/json", method="POST",
        data=json.dumps({"method": method, "params": [args, options], "id": 0}).encode(),
        headers={"Content-Type": "application/json", "Referer": referer, "Cookie": cookie})
    with urllib.request.urlopen(call, context=context, timeout=10) as r:
        answer = json.loads(r.read())
    assert answer.get("error") is None, answer
    return answer["result"]


def user_data(stack, host_id, timeout=60):
    """The user-data onetouch launched the host's instance with, as the guest's cloud-init reads it."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        instances, _ = stack.managed()
        if host_id in instances:
            iid = instances[host_id][0]["InstanceId"]
            raw = base64.b64decode(stack.ec2_client.describe_instance_attribute(
                InstanceId=iid, Attribute="userData")["UserData"]["Value"])
            return (gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw).decode()
        time.sleep(0.3)
    raise AssertionError(f"no instance for {host_id} after {timeout} s: {stack.hosts()}")


@pytest.fixture
def launched(base):
    """`serve` with `directory: {kind: freeipa}` and one host, ipa-01, created and launched. Yields the
    stack and a function that makes the host's machine: the sandbox with the instance's user-data,
    whose ipa-client-install enrolls at the test server, and whose data volume appears as xvdf (the EC2
    provider attaches it as /dev/sdf, which a Xen guest sees as xvdf)."""
    stack = Stack(base, directory="freeipa", agent=False)
    machines = []
    try:
        stack.start_serve()
        stack.create(["ipa-01"])
        (host,) = stack.hosts()
        text = user_data(stack, host["id"])

        def machine():
            behaviour = {"ipa-client-install": {"enroll_url": stack.ipa["IPA_TEST_HOOKS"] + "/enroll"}}
            machines.append(hostkit.Sandbox(base / "host", text, behaviour=behaviour, volume_link="xvdf"))
            return machines[-1]

        yield stack, machine
    finally:
        for sandbox in machines:
            sandbox.close()
        stack.stop()


def test_a_host_enrolls_in_freeipa_with_the_real_bootstrap_and_leaves_it_at_destroy(launched):
    stack, machine = launched
    assert ipa(stack, "state")["hosts"][FQDN]["has_password"], "preregister set a one-time password"
    sandbox = machine()
    booted = sandbox.boot(timeout=240)
    assert booted.returncode == 0, booted.stdout

    (host,) = wait_all(stack, "ready", timeout=120)
    entry = ipa(stack, "state")["hosts"][FQDN]
    assert entry["has_keytab"] and not entry["has_password"] and entry["enrollments"] == 1, entry

    (install,) = sandbox.calls("ipa-client-install")
    argv = install["argv"]
    assert argv[argv.index("--server") + 1] == "localhost" and argv[argv.index("--domain") + 1] == "onetouch.test"
    assert "-U" in argv and "-p" not in argv and "--principal" not in argv and "--force-join" not in argv
    assert sandbox.file(argv[argv.index("--ca-cert-file") + 1]) == Path(stack.ipa["IPA_CA_BUNDLE"]).read_text()
    (add,) = [c for c in ipa(stack, "calls?detail=1") if c["method"] == "host_add"]
    assert add["args"] == [FQDN] and add["options"].get("random") is True and "ip_address" not in add["options"]
    assert not sandbox.exists("/run/onetouch/otp")

    # A reboot after ready: the script runs again and changes nothing.
    sandbox.reboot()
    again = sandbox.boot(timeout=120)
    assert again.returncode == 0, again.stdout
    assert len(sandbox.calls("ipa-client-install")) == 1
    assert stack.api("GET", "/v1/admin/hosts/ipa-01")["state"] == "ready"

    stack.api("POST", "/v1/admin/hosts/ipa-01/destroy", {"keepVolume": False})
    wait_all(stack, "destroyed", timeout=120)
    assert FQDN not in ipa(stack, "state")["hosts"]
    instances, volumes = stack.managed()
    assert instances == {} and volumes == {}


def test_a_wrong_one_time_password_fails_the_host_with_the_installers_reason(launched):
    """The host's enrollment is refused by the server (its one-time password was replaced behind
    onetouch's back): the host fails at config-pull with the installer's own log line, not `ready`."""
    stack, machine = launched
    # Someone runs `ipa host-mod --random` by hand: the password onetouch holds is no longer valid.
    ipa_command(stack, "host_mod", [FQDN], {"random": True})
    sandbox = machine()
    # After reporting the failure the script waits for a new attempt (`onetouch retry`); the
    # sandbox's run ends at its timeout, after the host has failed.
    def boot():
        with contextlib.suppress(AssertionError):
            sandbox.boot(timeout=45)

    host_side = threading.Thread(target=boot)
    host_side.start()
    (host,) = wait_all(stack, "failed", timeout=120)
    host_side.join()
    assert host.get("step") == "config-pull", host
    events = json.dumps(stack.api("GET", "/v1/admin/hosts/ipa-01/events"))
    assert "ipa-client-install failed" in events and "Joining realm failed" in events, events[-3000:]
    assert not ipa(stack, "state")["hosts"][FQDN]["has_keytab"]
