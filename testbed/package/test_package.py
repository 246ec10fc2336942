"""The Debian package: built by scripts/package-deb, checked as Debian and systemd check it, then
installed with dpkg on a copy of this machine and run the way its unit runs it.

The copy is the host sandbox of testbed/host (an overlay of / in a private mount namespace, then
chroot): `dpkg -i` runs the real maintainer scripts there, so the system user is really created and
nothing of this machine changes. systemd does not run here, so the test does what the unit asks of
it: the state directory (StateDirectory=, owned by the user), then ExecStart as User=.
The package is built from the debug binary (`--binary`, `--fast`) to keep the test short; the
release build is the same script without `--binary`.
"""
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "testbed/host"))
import hostkit  # noqa: E402

REASON = hostkit.sandbox_unavailable() or next(
    (f"{tool} is missing (scripts/install-test-deps)" for tool in ("dpkg-deb", "dpkg-shlibdeps", "systemd-analyze", "setpriv")
     if not shutil.which(tool)), None)
pytestmark = pytest.mark.skipif(REASON is not None, reason=REASON or "")


def binary():
    path = os.environ.get("ONETOUCH_BIN")
    if path:
        return Path(path)
    out = subprocess.run(["swift", "build", "--show-bin-path"], cwd=ROOT, capture_output=True, text=True, check=True)
    return Path(out.stdout.strip()) / "onetouch"


@pytest.fixture(scope="module")
def deb(tmp_path_factory):
    out = tmp_path_factory.mktemp("deb")
    result = subprocess.run([ROOT / "scripts/package-deb", "--binary", str(binary()), "--output", str(out), "--fast"],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    return Path(result.stdout.strip())


def test_the_package_has_its_files_its_dependencies_and_a_unit_systemd_accepts(deb, tmp_path):
    version = (ROOT / "VERSION").read_text().strip()
    assert deb.name == f"onetouch_{version}-1_{subprocess.check_output(['dpkg', '--print-architecture'], text=True).strip()}.deb"
    control = subprocess.run(["dpkg-deb", "-f", str(deb)], capture_output=True, text=True, check=True).stdout
    fields = dict(re.findall(r"^(\S+): (.*)$", control, re.M))
    assert fields["Package"] == "onetouch" and fields["Version"] == f"{version}-1"
    assert "libc6" in fields["Depends"] and "libsqlite3-0" in fields["Depends"], "Depends read from the binary"
    listing = subprocess.run(["dpkg-deb", "-c", str(deb)], capture_output=True, text=True, check=True).stdout
    modes = {line.split()[-1].lstrip("."): line.split()[0] for line in listing.splitlines()}
    assert modes["/usr/bin/onetouch"] == "-rwxr-xr-x"
    for path in ("/lib/systemd/system/onetouch.service", "/usr/lib/sysusers.d/onetouch.conf",
                 "/usr/share/doc/onetouch/examples/onetouch.yaml", "/usr/share/onetouch/templates/bootstrap.sh.mustache",
                 "/usr/share/doc/onetouch/operations.md"):
        assert modes.get(path) == "-rw-r--r--", path

    # systemd-analyze without systemd running: the package's files plus this machine's units.
    root = tmp_path / "root"
    subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    shutil.copytree("/lib/systemd/system", root / "lib/systemd/system", dirs_exist_ok=True, symlinks=True)
    unit = "/lib/systemd/system/onetouch.service"
    verify = subprocess.run(["systemd-analyze", "verify", "--man=no", f"--root={root}", unit], capture_output=True, text=True)
    # verify exits 0 even on a misspelt key: any output is a finding.
    assert verify.returncode == 0 and verify.stdout + verify.stderr == "", verify.stdout + verify.stderr
    security = subprocess.run(["systemd-analyze", "security", "--offline=yes", "--man=no", f"--root={root}",
                               "--threshold=25", unit], capture_output=True, text=True)
    assert security.returncode == 0, security.stdout[-1500:]
    score = float(re.search(r"Overall exposure level for onetouch.service: ([\d.]+)", security.stdout).group(1))
    assert score <= 2.5, f"exposure {score}"


def test_dpkg_installs_it_and_serve_runs_as_its_own_user_from_the_unit(deb, tmp_path):
    port = hostkit_free_port()
    sandbox = hostkit.Sandbox(tmp_path / "machine", "#cloud-config\nwrite_files: []\nruncmd: []\n", volume=False, stubs=(),
                              hide=("etc/onetouch", "var/lib/onetouch", "usr/bin/onetouch"))
    shutil.copy(deb, sandbox.results / "onetouch.deb")
    (sandbox.results / "onetouch.yaml").write_text(f"""
listen: 127.0.0.1:{port}
public_url: http://127.0.0.1:{port}
database: /var/lib/onetouch/onetouch.sqlite
master_key_file: /var/lib/onetouch/master.key
admin_tokens: {{file: /etc/onetouch/admin-tokens}}
domain: onetouch.test
config: {{repository: "https://git.example.test/config.git"}}
roles:
  web: {{instance_type: t3.small}}
provider: {{kind: ec2, region: us-east-1, endpoint: "http://127.0.0.1:9", image_id: ami-12345678}}
directory: {{kind: mit, realm: ONETOUCH.TEST, admin_server: "127.0.0.1:9", kdc: "127.0.0.1:9", principal: onetouch/admin,
             keytab: /etc/onetouch/provisioner.keytab}}
""")
    unit = (ROOT / "packaging/onetouch.service").read_text()
    exec_start = re.search(r"^ExecStart=(.*)$", unit, re.M).group(1)
    user = re.search(r"^User=(.*)$", unit, re.M).group(1)
    script = f"""set -eu
dpkg -i /onetouch-test/onetouch.deb
getent passwd {user} > /onetouch-test/passwd
install -m 0644 /onetouch-test/onetouch.yaml /etc/onetouch/onetouch.yaml
echo "ops 0123456789abcdef0123456789abcdef" > /etc/onetouch/admin-tokens
chown {user}: /etc/onetouch/admin-tokens && chmod 600 /etc/onetouch/admin-tokens
echo "never read: no host is created" > /etc/onetouch/provisioner.keytab
/usr/bin/onetouch config check /etc/onetouch/onetouch.yaml
# What StateDirectory= and WorkingDirectory= do before ExecStart.
install -d -o {user} -g {user} -m 0700 /var/lib/onetouch
cd /var/lib/onetouch
env AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing \\
    setpriv --reuid={user} --regid={user} --init-groups {exec_start} 2> /onetouch-test/serve.log &
pid=$!
for i in $(seq 150); do curl -fsS http://127.0.0.1:{port}/healthz > /onetouch-test/healthz.json 2>/dev/null && break; sleep 0.2; done
for i in $(seq 150); do curl -fsS http://127.0.0.1:{port}/readyz > /onetouch-test/readyz.json 2>/dev/null && break; sleep 0.2; done
ps -o user= -p $pid > /onetouch-test/serve-user
kill -TERM $pid
status=0; wait $pid || status=$?
echo "serve exited $status"
stat -c '%U %a %n' /var/lib/onetouch /var/lib/onetouch/onetouch.sqlite /var/lib/onetouch/master.key > /onetouch-test/state
dpkg -r onetouch
test ! -e /usr/bin/onetouch && test -e /var/lib/onetouch/onetouch.sqlite && echo "removed; state kept"
"""
    result = sandbox.run(["/bin/sh", "-c", script], timeout=300)
    log = (sandbox.results / "serve.log").read_text() if (sandbox.results / "serve.log").exists() else ""
    assert result.returncode == 0, result.stdout[-3000:] + "\n--- serve log\n" + log[-2000:]
    assert "would start with it" in result.stdout, "config check accepts the installed configuration"
    passwd = (sandbox.results / "passwd").read_text().split(":")
    assert passwd[0] == user and passwd[5] == "/var/lib/onetouch" and passwd[6].strip() in ("/usr/sbin/nologin", "/sbin/nologin")
    assert (sandbox.results / "serve-user").read_text().strip() == user
    live = json.loads((sandbox.results / "healthz.json").read_text())
    assert live["status"] == "ok" and live["version"] == (ROOT / "VERSION").read_text().strip()
    assert json.loads((sandbox.results / "readyz.json").read_text())["ready"] is True
    assert "serve exited 0" in result.stdout, "SIGTERM is a clean stop"
    state = (sandbox.results / "state").read_text().split("\n")
    assert state[0] == f"{user} 700 /var/lib/onetouch"
    assert state[1] == f"{user} 600 /var/lib/onetouch/onetouch.sqlite" and state[2] == f"{user} 600 /var/lib/onetouch/master.key"
    assert "removed; state kept" in result.stdout
    assert "Starting" in log.splitlines()[0]


def hostkit_free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
