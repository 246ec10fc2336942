"""End to end on real VMs: the real `onetouch serve` with `provider: {kind: qemu}` boots a Debian
guest under QEMU, and the guest runs the real user-data and bootstrap script from templates/:
cloud-init, Kerberos enrollment against a throwaway MIT realm, the hot-plugged LUKS volume, and
ansible-pull from a local git daemon. Nothing on the guest side is simulated.

Each test boots one VM at a time (TCG: about 1–3 minutes from create to ready on 2 cores).
"""
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "testbed" / "vm"))
import stack as vmstack  # noqa: E402

REALM = "ONETOUCH.TEST"


def _bin(name="onetouch"):
    path = os.environ.get("ONETOUCH_BIN")
    if path:
        return Path(path).parent / name
    out = subprocess.run(["swift", "build", "--show-bin-path"], cwd=ROOT, capture_output=True, text=True, check=True)
    return Path(out.stdout.strip()) / name


@pytest.fixture(scope="module")
def image():
    missing = vmstack.missing_vm_tools()
    assert not missing, f"VM tools missing: {missing}; run scripts/install-vm-deps"
    return vmstack.build_image()


@pytest.fixture
def local(tmp_path, image):
    st = vmstack.Stack(base=tmp_path / "stack", onetouch_bin=_bin(), image=image)
    st.start(serve=False)
    yield st
    st.stop()


def start_serve(st, kill_at=None):
    """serve for this stack; with `kill_at` (STEP:POINT) the test-only build that SIGKILLs itself there."""
    log = open(st.base / "serve.log", "ab")
    binary = _bin("onetouch-crashtest") if kill_at else st.onetouch_bin
    env = {"ONETOUCH_TEST_KILL_AT": kill_at} if kill_at else {}
    proc = subprocess.Popen([str(binary), "serve", "--config", str(st.config_path)],
                            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
                            env=dict(os.environ, **env))
    log.close()
    vmstack.wait_for(lambda: proc.poll() is not None or vmstack.http_ok(f"http://127.0.0.1:{st.port}/healthz"), 60,
                     what="serve /healthz")
    return proc


def kill_serve(proc):
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def status(st, name):
    out = st.cli("status", name, "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def wait_state(st, name, states, timeout=900):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        out = st.cli("status", name, "--json")
        if out.returncode == 0:
            last = json.loads(out.stdout)
            if last["state"] in states:
                return last
        time.sleep(2)
    raise AssertionError(f"{name} did not reach {states} within {timeout}s; last: {last}\n"
                         + (st.base / "serve.log").read_text(errors="replace")[-3000:])


def wait_step(st, name, step, timeout=900):
    deadline = time.time() + timeout
    while time.time() < deadline:
        s = status(st, name)
        if s.get("step") == step or s["state"] in ("ready", "failed"):
            return s
        time.sleep(0.5)
    raise AssertionError(f"{name} never reached step {step}")


def qemu_pids(st):
    """PIDs of live QEMU processes whose command line names this stack's state folder."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().decode(errors="replace")
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if "qemu-system" in cmd and str(st.vms_dir) in cmd and stat.rsplit(")", 1)[1].split()[0] != "Z":
            found.append(int(entry.name))
    return found


def host_token(st, instance_id):
    """The host's bearer token, read from its NoCloud seed (as any process in the guest could)."""
    seed = st.vms_dir / instance_id / "seed.iso"
    text = subprocess.run(["isoinfo", "-R", "-i", str(seed), "-x", "/user-data"], capture_output=True, text=True,
                          check=True).stdout
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("ONETOUCH_TOKEN="):
            return line.split("=", 1)[1].strip("'\"")
    raise AssertionError("no token in the seed's user-data")


def http_status(url, token, claim="a-process-that-is-not-the-machine"):
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}", "X-OneTouch-Claim": claim})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def key_version(st, fqdn):
    out = st.realm.kadmin("getprinc", f"host/{fqdn}@{REALM}")
    if "does not exist" in out.stdout + out.stderr:
        return None
    for line in out.stdout.splitlines():
        if line.strip().startswith("Key: vno"):
            return int(line.split("vno")[1].split(",")[0])
    raise AssertionError(out.stdout + out.stderr)


def luks_encrypted(path):
    info = json.loads(subprocess.run(["qemu-img", "info", "-U", "--output=json", str(path)], capture_output=True,
                                     text=True, check=True).stdout)
    return info.get("encrypted") is True and info["format-specific"]["data"]["encrypt"]["format"] == "luks"


def test_a_real_vm_survives_two_crashes_of_serve_reaches_ready_and_leaves_nothing_when_destroyed(local):
    st = local
    first = start_serve(st)
    out = st.cli("create", "demo-01", "--role", "demo")
    assert out.returncode == 0, out.stderr
    # SIGKILL serve while the guest boots: the VM outlives serve.
    wait_step(st, "demo-01", "bootstrap", timeout=120)
    kill_serve(first)
    time.sleep(5)
    assert len(qemu_pids(st)) == 1, "the VM kept running without serve"

    # The restarted serve adopts it; the kill switch stops this one right after the volume is attached.
    second = start_serve(st, kill_at="attach-volume:external-call-made")
    second.wait(timeout=900)
    assert second.returncode == -signal.SIGKILL, "the kill switch stopped serve right after attaching the volume"

    st.serve = None
    third = start_serve(st)
    try:
        final = wait_state(st, "demo-01", {"ready", "failed"}, timeout=1200)
        assert final["state"] == "ready", final
        assert len(qemu_pids(st)) == 1, "exactly one QEMU for the host"
        instances = [p for p in st.vms_dir.iterdir() if p.name.startswith("i-")]
        volumes = [p for p in st.vms_dir.iterdir() if p.name.startswith("vol-")]
        assert [p.name for p in instances] == [final["instanceId"]]
        assert [p.name for p in volumes] == [final["volumeId"]]
        assert luks_encrypted(volumes[0] / "data.qcow2"), "the volume is LUKS-encrypted on the host side"

        # Enrollment happened on the guest: the principal's key version rose past the one-time password's.
        assert key_version(st, "demo-01.onetouch.test") >= 2
        # The playbook ran on the guest (its marker, printed to the console by demo.yml).
        lines = [line for _, line in st.demo_lines()]
        assert any("demo-01" in line for line in lines), lines
        # The guest mounted its data volume (its own report, after finding the device by serial).
        events = st.cli("events", "demo-01").stdout
        assert "volume-mounted" in events or "attach-volume done" in events
        # Someone else with the token (read from the seed, as any process could) gets no password: the
        # machine claimed the host with its own boot secret (403), and the password is gone anyway.
        token = host_token(st, final["instanceId"])
        assert http_status(f"http://127.0.0.1:{st.port}/v1/hosts/{final['id']}/enrollment", token) in (401, 403, 410)
        assert json.loads(st.cli("status", "demo-01", "--json").stdout)["state"] == "ready", "a ready host stays ready"
        # The guest's first configuration run reported with its report credential, with the recap the
        # bootstrap's callback plugin wrote under the guest's own ansible-core (Debian 12's).
        (view,) = [v for v in json.loads(st.cli("drift", "--json").stdout) if v["name"] == "demo-01"]
        assert view["lastRun"] and view["lastRun"]["exitStatus"] == 0 and view["lastRun"]["recap"], view
        assert view["drift"] in ("in-sync", "corrected") and len(view["lastRun"]["commit"]) == 40, view

        out = st.cli("destroy", "demo-01", "--wait", timeout=300)
        assert out.returncode == 0, out.stdout + out.stderr
        assert qemu_pids(st) == [], "no QEMU left"
        assert not (instances[0] / "disk.qcow2").exists(), "no overlay left"
        assert not (volumes[0] / "data.qcow2").exists(), "no volume file left"
        assert key_version(st, "demo-01.onetouch.test") is None, "no principal left"
    finally:
        kill_serve(third)


def test_a_failing_playbook_fails_config_pull_with_the_guest_log_and_a_retry_after_the_fix_reaches_ready(local):
    st = local
    st.repo.break_playbook()
    serve = start_serve(st)
    try:
        out = st.cli("create", "demo-02", "--role", "demo")
        assert out.returncode == 0, out.stderr
        failed = wait_state(st, "demo-02", {"ready", "failed"}, timeout=1200)
        assert failed["state"] == "failed" and failed["step"] == "config-pull", failed
        assert "configuration pull" in failed["reason"], failed["reason"]
        shown = st.cli("status", "demo-02").stdout
        assert "retry demo-02 --from config-pull" in shown
        assert "broken on purpose" in shown, "the guest's own log tail is shown: " + shown
        instance = failed["instanceId"]

        st.repo.fix_playbook()
        out = st.cli("retry", "demo-02", "--from", "config-pull")
        assert out.returncode == 0, out.stdout + out.stderr
        ready = wait_state(st, "demo-02", {"ready", "failed"}, timeout=900)
        assert ready["state"] == "ready", ready
        assert ready["instanceId"] == instance, "the same VM, not a new one"
        assert len(qemu_pids(st)) == 1
        out = st.cli("destroy", "demo-02", "--wait", timeout=300)
        assert out.returncode == 0
        assert qemu_pids(st) == []
    finally:
        kill_serve(serve)
