"""Smoke test for the local VM image (scripts/build-image) and the QEMU command line of
protocols.md §8: boot the base image from an overlay with a NoCloud seed, let cloud-init's runcmd
call a tiny HTTP server on 127.0.0.1 through a guestfwd relay and `git ls-remote` the config
repository through a second one. User networking with restrict=on: the relays are all the guest
can reach; then ansible-pull runs the demo role's playbook (demo.yml) from that repository.
QEMU is killed by its PID.

Builds the image first if this machine has none (about 2-4 minutes, once per machine); skipped
only when the tools to build and boot it are missing (scripts/install-vm-deps installs them).
Boot timings are printed (pytest -s) and written to the test's folder as timings.json.
"""

import json
import os
import re
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

import stack

pytestmark = pytest.mark.skipif(
    bool(stack.missing_vm_tools()),
    reason=f"cannot build or boot the VM image: missing {', '.join(stack.missing_vm_tools())} "
    "(run scripts/install-vm-deps)",
)

BOOT_TIMEOUT = float(os.environ.get("ONETOUCH_VM_BOOT_TIMEOUT", "600"))

SMOKE_SCRIPT = """\
#!/bin/bash
# runs from cloud-init's runcmd
up() { cut -d' ' -f1 /proc/uptime; }
ip=$(ip -4 -o addr show scope global | awk '{print $4}' | head -n1)
curl -fsS -m 30 --retry 3 "http://10.0.2.100:8080/booted?ip=${ip%/*}&uptime=$(up)" >/dev/null
t0=$(up)
git ls-remote git://10.0.2.102/config >/run/ls-remote.txt 2>&1
rc=$?
curl -fsS -m 30 --retry 3 --data-binary @/run/ls-remote.txt \\
    "http://10.0.2.100:8080/ls-remote?rc=$rc&start=$t0&end=$(up)" >/dev/null
# the demo role's playbook, pulled the way the host bootstrap pulls it
t0=$(up)
# (each output line prefixed with the guest's uptime, to see where the time goes)
PYTHONUNBUFFERED=1 ansible-pull -U git://10.0.2.102/config -C main -d /var/lib/onetouch/config demo.yml 2>&1 \\
    | while IFS= read -r line; do printf '%s %s\\n' "$(up)" "$line"; done >/run/pull.txt
rc=${PIPESTATUS[0]}
{ cat /var/lib/onetouch-demo/marker /etc/motd; echo ---; tail -c 4000 /run/pull.txt; } >/run/pull-report.txt 2>&1
curl -fsS -m 30 --retry 3 --data-binary @/run/pull-report.txt \\
    "http://10.0.2.100:8080/pulled?rc=$rc&start=$t0&end=$(up)" >/dev/null
"""


class Sink:
    """A tiny HTTP server on 127.0.0.1 that records every request."""

    def __init__(self):
        self.requests = []
        self.arrived = threading.Condition()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def _record(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n).decode(errors="replace") if n else ""
                u = urlparse(self.path)
                with sink.arrived:
                    sink.requests.append({"path": u.path, "query": {k: v[0] for k, v in parse_qs(u.query).items()},
                                          "body": body, "at": time.monotonic()})
                    sink.arrived.notify_all()
                self.send_response(200)
                self.send_header("Content-Length", "3")
                self.end_headers()
                self.wfile.write(b"ok\n")

            do_GET = do_POST = _record

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def wait(self, path, timeout, vm):
        deadline = time.monotonic() + timeout
        with self.arrived:
            while True:
                for r in self.requests:
                    if r["path"] == path:
                        return r
                if not vm.alive():
                    raise AssertionError(f"QEMU exited (status {vm.proc.returncode}) before {path}; "
                                         f"serial log tail:\n{vm.serial()[-3000:]}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no {path} request within {timeout:.0f} s; serial log tail:\n"
                                         f"{vm.serial()[-3000:]}")
                self.arrived.wait(min(left, 1.0))

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def image():
    try:
        return stack.build_image()
    except stack.ImageUnavailable as exc:
        pytest.skip(f"cannot build the VM image: {exc}")


def test_image_boots_and_reaches_only_its_relays(image, tmp_path):
    sink = Sink()
    repo = stack.ConfigRepo(tmp_path / "git").create()
    git = stack.GitDaemon(tmp_path / "git", log=tmp_path / "git-daemon.log").start()
    user_data = "#cloud-config\n" + json.dumps({
        "fqdn": "smoke.onetouch.test",
        "manage_etc_hosts": True,
        "write_files": [{"path": "/usr/local/sbin/onetouch-smoke", "permissions": "0755",
                         "content": SMOKE_SCRIPT}],
        "runcmd": [["/usr/local/sbin/onetouch-smoke"]],
    }, indent=1) + "\n"
    meta_data = f"instance-id: i-smoke-{secrets.token_hex(4)}\nlocal-hostname: smoke\n"
    vm = stack.VM(image, tmp_path / "vm", user_data, meta_data,
                  forwards={"10.0.2.100:8080": sink.port, "10.0.2.102:9418": git.port})
    try:
        vm.start()
        booted = sink.wait("/booted", BOOT_TIMEOUT, vm)
        lsr = sink.wait("/ls-remote", 120, vm)
        pulled = sink.wait("/pulled", 600, vm)
        # cloud-init's final message comes right after runcmd: wait for it for the timings.
        final = None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and vm.alive():
            final = re.search(r"Cloud-init v\. \S+ finished at .*Up ([0-9.]+) seconds", vm.serial())
            if final:
                break
            time.sleep(0.5)
        final_at = time.monotonic()
    finally:
        vm.stop()
        git.stop()
        sink.close()

    assert not stack.pid_alive(vm.proc.pid), "QEMU still running after stop"
    assert not stack.pid_alive(git.pid), "git daemon still running after stop"
    # slirp's DHCP gave the guest its usual address even with restrict=on
    assert booted["query"]["ip"] == "10.0.2.15", booted
    # git over the second relay: the guest sees the repository's main branch at its head
    assert lsr["query"]["rc"] == "0", lsr["body"]
    assert f"{repo.head()}\trefs/heads/main" in lsr["body"], lsr["body"]

    (tmp_path / "ansible-pull.txt").write_text(pulled["body"])
    # ansible-pull ran demo.yml from the repository through the relay
    assert pulled["query"]["rc"] == "0", pulled["body"]
    marker, motd = pulled["body"].splitlines()[:2]
    assert marker == "smoke.onetouch.test", pulled["body"]
    assert motd.startswith("smoke.onetouch.test: configured by onetouch"), pulled["body"]

    serial = vm.serial()
    assert "onetouch-demo: smoke.onetouch.test" in serial, "demo.yml's console line is missing"
    kernel = re.search(r"Linux version (\S+)", serial)
    timings = {
        "kernel": kernel.group(1) if kernel else None,
        "host_seconds_qemu_start_to_first_request": round(booted["at"] - vm.started_at, 1),
        "guest_uptime_at_runcmd": float(booted["query"]["uptime"]),
        "guest_seconds_git_ls_remote": round(float(lsr["query"]["end"]) - float(lsr["query"]["start"]), 2),
        "guest_seconds_ansible_pull_demo": round(float(pulled["query"]["end"]) - float(pulled["query"]["start"]), 1),
        "guest_uptime_at_cloud_init_final": float(final.group(1)) if final else None,
        "host_seconds_qemu_start_to_final_message": round(final_at - vm.started_at, 1) if final else None,
        "load_average_after": os.getloadavg()[0],
    }
    (tmp_path / "timings.json").write_text(json.dumps(timings, indent=1) + "\n")
    print("\nVM boot timings:", json.dumps(timings))
    assert final, "cloud-init's final message never reached the serial console"
