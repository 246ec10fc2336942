"""Helpers for the host-side tests: render the templates as the Swift renderer does, a fake host API,
and a sandbox that runs the real rendered bootstrap script as root in a private mount namespace.

Rendering (Sources/OneTouchCore/Templates/UserData.swift): values are checked (no quote, backslash,
line break or control character; playbook, repository and branch must not start with '-'), the
bootstrap template is rendered, indented by six spaces on every non-empty line and put in the
user-data as {{bootstrap_script}}. The templates use no mustache sections, so a regex substitution
of {{name}} is faithful; anything else left as `{{` is an error.

The sandbox: `unshare --mount --propagation private`, an overlay of / (writes land in a temp
directory, the real root is never written), a fresh /dev on tmpfs holding a few device nodes and a
loop device that plays the data volume as /dev/disk/by-id/virtio-<serial>, the stub directory first
in PATH (kadmin, kinit, ansible-pull, systemctl, apt-get, ipa-client-install record argv and stdin),
then `chroot`. cloud-init's part is played here: write_files become files in the overlay, runcmd
is run, then the unit's ExecStart.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
TEMPLATES = REPO / "templates"
STUB_DIR = "/opt/onetouch-stubs"
CHROOT_PATH = f"{STUB_DIR}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
VOLUME_ID = "vol-0123456789abcdef0"
TOKEN = "tok-Sekrit-0123456789abcdef"
OTP = "Otp-9f8e7d6c5b4a-Sekrit"
REPORT_CREDENTIAL = "rpt-Sekrit-0123456789abcdefABCDEF"

TAG = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


class UnsafeValue(ValueError):
    pass


def default_values(**overrides: str) -> dict[str, str]:
    values = {
        "host_id": "h-3xej93edm2d0",
        "generation": "1",
        "fqdn": "web-01.prod.example.com",
        "short_name": "web-01",
        "public_url": "http://127.0.0.1:9",
        "token": TOKEN,
        "config_repository": "https://git.example.com/config.git",
        "config_branch": "main",
        "playbook": "web.yml",
        "pull_period_seconds": "1800",
        "pull_splay_seconds": "385",
    }
    values.update(overrides)
    return values


def check_values(values: dict[str, str]) -> None:
    """The renderer's refusals (UserData.swift)."""
    for field, value in values.items():
        for ch in value:
            if ch in "'\\" or ch in "\n\r\x0b\x0c\x85\u2028\u2029" or ord(ch) < 0x20:
                raise UnsafeValue(field)
    for field in ("playbook", "config_repository", "config_branch"):
        if values[field].startswith("-"):
            raise UnsafeValue(field)


def substitute(template: str, values: dict[str, str]) -> str:
    out = TAG.sub(lambda m: values[m.group(1)], template)
    return out


def indent(text: str, prefix: str) -> str:
    """UserDataRenderer.indent: prefix before every line that is not empty."""
    out = []
    at_line_start = True
    for ch in text:
        if ch == "\n":
            at_line_start = True
        elif at_line_start:
            out.append(prefix)
            at_line_start = False
        out.append(ch)
    return "".join(out)


def render(values: dict[str, str]) -> tuple[str, str]:
    """(user-data, bootstrap script) for `values`."""
    check_values(values)
    script_template = (TEMPLATES / "bootstrap.sh.mustache").read_text()
    user_data_template = (TEMPLATES / "user-data.yaml.mustache").read_text()
    script = substitute(script_template, values)
    context = dict(values, bootstrap_script=indent(script, "      "))
    user_data = substitute(user_data_template, context)
    # Unknown names raise KeyError above; this catches sections, partials and the like.
    assert "{{" not in script and "{{" not in user_data
    return user_data, script


def write_files(user_data: str) -> list[dict]:
    doc = yaml.safe_load(user_data)
    return doc["write_files"]


def host_env_values(user_data: str) -> str:
    for entry in write_files(user_data):
        if entry["path"] == "/etc/onetouch/host.env":
            return entry["content"]
    raise AssertionError("no host.env in the user-data")


# --------------------------------------------------------------------------------------------
# The host API, as the spec (protocol v2) describes it
# --------------------------------------------------------------------------------------------


class FakeHostAPI:
    """Answers /v1/hosts/{id}/... per scenario; records every request in order.

    Queues (`enrollment`, `volume`, `credential`, `task`, `reports`) hold (status, body) answers used
    one per request, the last one repeating. An enrollment 200 is acknowledged by the next report,
    after which /enrollment answers 410, as the orchestrator does.
    """

    def __init__(self, host_id: str, token: str, **queues):
        self.host_id = host_id
        self.token = token
        self.queues = {
            "enrollment": queues.get("enrollment", [(200, mit_answer())]),
            "volume": queues.get("volume", [(200, {"volumeId": VOLUME_ID})]),
            "config-credential": queues.get("credential", [(204, None)]),
            "task": queues.get("task", [(200, {"step": "none", "attempt": "a1"})]),
            "reports": queues.get("reports", [(200, {"recorded": True})]),
            "runs": queues.get("runs", [(200, {"recorded": True, "drift": "in-sync", "nextRun": "apply"})]),
        }
        self.report_credential = REPORT_CREDENTIAL
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        self.enrollment_issued = False
        self.enrollment_acknowledged = False
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                api.handle(self, "GET")

            def do_POST(self):
                api.handle(self, "POST")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def next_answer(self, name: str):
        queue = self.queues[name]
        return queue.pop(0) if len(queue) > 1 else queue[0]

    def handle(self, request: BaseHTTPRequestHandler, method: str):
        length = int(request.headers.get("Content-Length") or 0)
        raw = request.rfile.read(length) if length else b""
        prefix = f"/v1/hosts/{self.host_id}/"
        path = request.path
        with self.lock:
            record = {"method": method, "path": path, "time": time.time(),
                      "auth": request.headers.get("Authorization"), "claim": request.headers.get("X-OneTouch-Claim")}
            if raw:
                record["body"] = json.loads(raw)
            self.requests.append(record)
            if method == "POST" and path == prefix + "runs":  # the report credential, and nothing else
                if request.headers.get("Authorization") != f"Bearer {self.report_credential}":
                    status, body = 401, {"error": "unknown host or invalid report credential"}
                else:
                    status, body = self.next_answer("runs")
                    if status == 200 and body.get("credential"):
                        self.report_credential = body["credential"]
            elif request.headers.get("Authorization") != f"Bearer {self.token}":
                status, body = 401, {"error": "bad token"}
            elif not record["claim"]:  # as onetouch serve: every call carries the machine's boot secret
                status, body = 400, {"error": "no boot secret"}
            elif not path.startswith(prefix):
                status, body = 404, {"error": "unknown host"}
            else:
                name = path[len(prefix):]
                if method == "POST" and name == "claim":
                    status, body = 204, None
                elif method == "POST" and name == "report-credential":
                    status, body = 200, {"credential": self.report_credential}
                elif method == "POST" and name == "reports":
                    status, body = self.next_answer("reports")
                    if status == 200 and self.enrollment_issued:
                        self.enrollment_acknowledged = True
                elif method == "GET" and name == "enrollment" and self.enrollment_acknowledged:
                    status, body = 410, {"error": "the one-time password was used"}
                elif method == "GET" and name in self.queues and name != "reports":
                    status, body = self.next_answer(name)
                    if name == "enrollment" and status == 200:
                        self.enrollment_issued = True
                else:
                    status, body = 404, {"error": "no such call"}
            record["status"] = status
        payload = b"" if body is None else json.dumps(body).encode()
        request.send_response(status)
        if payload:
            request.send_header("Content-Type", "application/json")
        request.send_header("Content-Length", str(len(payload)))
        request.end_headers()
        if payload:
            request.wfile.write(payload)

    def calls(self) -> list[str]:
        with self.lock:
            return [f"{r['method']} {r['path'].rsplit('/', 1)[-1]}" for r in self.requests]

    def reports(self) -> list[dict]:
        with self.lock:
            return [r["body"] for r in self.requests
                    if r["method"] == "POST" and r["path"].endswith("/reports") and r.get("status") == 200]

    def runs(self) -> list[dict]:
        """The configuration runs the host reported and were accepted, in order."""
        with self.lock:
            return [r["body"] for r in self.requests
                    if r["method"] == "POST" and r["path"].endswith("/runs") and r.get("status") == 200]


def mit_answer(**overrides) -> dict:
    answer = {
        "backend": "mit",
        "realm": "PROD.EXAMPLE.COM",
        "server": "kdc.prod.example.com",
        "principal": "host/web-01.prod.example.com",
        "domain": "prod.example.com",
        "kdc": "10.0.2.100:18888",
        "adminServer": "10.0.2.100:18749",
        "oneTimePassword": OTP,
    }
    answer.update(overrides)
    return answer


# --------------------------------------------------------------------------------------------
# The sandbox
# --------------------------------------------------------------------------------------------

STUB = r'''#!/usr/bin/python3
# A stand-in for a host command: records argv, stdin and a few environment variables, then behaves
# as /onetouch-test/behaviour.json says (exit status per call, the last repeating; output).
import json, os, sys, time
name = os.path.basename(sys.argv[0])
results = "/onetouch-test"
stdin = "" if sys.stdin is None else sys.stdin.read()
count_file = f"{results}/count-{name}"
n = int(open(count_file).read()) + 1 if os.path.exists(count_file) else 1
open(count_file, "w").write(str(n))
behaviour = json.load(open(f"{results}/behaviour.json")).get(name, {})
env = {k: os.environ.get(k) for k in ("PYTHONUNBUFFERED", "GIT_TERMINAL_PROMPT", "GIT_SSH_COMMAND", "GIT_ASKPASS", "KRB5CCNAME")}
with open(f"{results}/calls.jsonl", "a") as f:
    umask = os.umask(0o22)
    f.write(json.dumps({"name": name, "argv": sys.argv[1:], "stdin": stdin, "n": n, "env": env, "umask": oct(umask),
                        "time": time.time()}) + "\n")
codes = behaviour.get("exit", [0])
code = codes[min(n, len(codes)) - 1]


def ipa_client_install_arguments(argv):
    """The argument rules of the real ipa-client-install (FreeIPA 4.9-4.12): exit 2 for a usage
    error (ipapython/install/cli.py:330-331), 1 for a refused value, 3 when already configured
    (ipaclient/install/client.py:80-83, 2206-2211); None when the installer would go on."""
    takes_value = {"--server", "--domain", "--realm", "--hostname", "--ca-cert-file", "-w", "--password",
                   "-p", "--principal", "--ntp-server", "--ip-address"}
    flags = {"-U", "--unattended", "--force-join", "--mkhomedir", "--no-ntp", "--fixed-primary", "--no-dns-sshfp"}
    opts, i = {}, 0
    while i < len(argv):
        a = argv[i]
        if a in flags:
            opts[a] = True
        elif a in takes_value and i + 1 < len(argv):
            opts.setdefault(a, []).append(argv[i + 1])
            i += 1
        else:
            return 2, f"ipa-client-install: error: no such option or missing value: {a}"
        i += 1
    if "--server" in opts and "--domain" not in opts:  # client.py:3999-4001
        return 2, "ipa-client-install: error: --server cannot be used without providing --domain"
    if "-W" in argv:
        return 2, "ipa-client-install: error: -W is not allowed in unattended mode"
    for f in opts.get("--ca-cert-file", []):
        if not os.path.isfile(f):
            return 2, f"ipa-client-install: error: option --ca-cert-file: '{f}' does not exist"
    if os.path.exists("/etc/ipa/default.conf"):
        return 3, "IPA client is already configured on this system."
    if "-U" not in opts and "--unattended" not in opts:
        return 1, "stub: would prompt (not unattended)"
    if ("-w" in opts or "--password" in opts) and ("-p" in opts or "--principal" in opts):
        return 1, "stub: -w with --principal is that principal's password, not the one-time password"
    hostname = (opts.get("--hostname") or [""])[0]
    if hostname != hostname.lower():  # client.py:2256-2260
        return 1, f"Invalid hostname, '{hostname}' must be lower case."
    if len(hostname) > 64:  # client.py:2267-2272, MAXHOSTNAMELEN
        return 1, f"Invalid hostname, '{hostname}' must not be longer than 64 characters."
    if not opts.get("--ca-cert-file"):
        return 1, "stub: the CA would be fetched over plain HTTP (http://SERVER/ipa/config/ca.crt)"
    return None


if name == "ipa-client-install":
    refused = ipa_client_install_arguments(sys.argv[1:])
    if refused is not None:
        code, text = refused
        os.makedirs("/var/log", exist_ok=True)
        with open("/var/log/ipaclient-install.log", "a") as log:
            log.write(f"DEBUG stub log\nERROR {text}\n")
        print(text, file=sys.stderr)
        sys.exit(code)
    joined = "Incorrect password."
    if code == 0 and behaviour.get("enroll_url"):
        # What ipa-join does: set the host's keys at the server --server names, over TLS checked
        # against --ca-cert-file, with the one-time password (the test server's /_test/enroll).
        import ssl, urllib.error, urllib.parse, urllib.request
        args = sys.argv[1:]
        value = lambda option: args[args.index(option) + 1]
        url = behaviour["enroll_url"]
        body = json.dumps({"fqdn": value("--hostname"), "password": value("-w")}).encode()
        try:
            if urllib.parse.urlsplit(url).hostname != value("--server"):
                raise OSError(f"the server is {urllib.parse.urlsplit(url).hostname}, not {value('--server')}")
            context = ssl.create_default_context(cafile=value("--ca-cert-file"))
            request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
            urllib.request.urlopen(request, context=context, timeout=30).read()
        except urllib.error.HTTPError as error:
            code, joined = 1, json.loads(error.read() or b"{}").get("error", f"HTTP {error.code}")
        except (OSError, ValueError) as error:
            code, joined = 1, f"cannot connect to the IPA server: {error}"
    if code == 0:
        os.makedirs("/etc/ipa", exist_ok=True)
        open("/etc/ipa/default.conf", "w").write("[global]\n")
    else:
        with open("/var/log/ipaclient-install.log", "a") as log:
            log.write(f"ERROR Joining realm failed: {joined}\n")
outputs = behaviour.get("output", [name + " (stub) ran"])
print(outputs[min(n, len(outputs)) - 1], flush=True)
if n in behaviour.get("power_off_on", []):  # a power cut: every process of the sandbox, at once
    os.killpg(os.getpgrp(), 9)
if code == 0 and name == "kadmin" and "-k" in sys.argv:
    open(sys.argv[sys.argv.index("-k") + 1], "w").write("keytab written by the kadmin stub\n")
if code == 0 and name == "ipa-client-install":
    open("/etc/krb5.keytab", "w").write("keytab written by the ipa-client-install stub\n")
if name == "kinit" and not os.path.exists("/etc/krb5.keytab"):
    print("kinit: Key table file '/etc/krb5.keytab' not found", file=sys.stderr)
    code = 1
sys.exit(code)
'''

STUBS = ("kadmin", "kinit", "ansible-pull", "systemctl", "apt-get", "apt-cache", "ipa-client-install")

HARNESS = r'''set -euo pipefail
M=$1 U=$2 W=$3 RESULTS=$4 LOOP=$5 LINK=$6
shift 6
# the previous run's overlay (a namespace that just ended) may take a moment to let go of $U
for try in $(seq 1 50); do
  if mount -t overlay overlay -o "lowerdir=/,upperdir=$U,workdir=$W" "$M" 2> "$RESULTS/overlay.err"; then break; fi
  if [ "$try" = 50 ]; then cat "$RESULTS/overlay.err" >&2; exit 97; fi
  sleep 0.1
done
mountpoint -q "$M"
mount --rbind /proc "$M/proc"
mount --bind /sys "$M/sys"
mount -o remount,bind,ro "$M/sys"
mount -t tmpfs -o mode=755 tmpfs "$M/dev"
for node in null zero full random urandom tty; do
  touch "$M/dev/$node"
  mount --bind "/dev/$node" "$M/dev/$node"
done
ln -s /proc/self/fd "$M/dev/fd"
ln -s /proc/self/fd/0 "$M/dev/stdin"
ln -s /proc/self/fd/1 "$M/dev/stdout"
ln -s /proc/self/fd/2 "$M/dev/stderr"
mkdir "$M/dev/shm" "$M/dev/pts"
mount -t tmpfs tmpfs "$M/dev/shm"
if [ -n "$LOOP" ]; then
  touch "$M/dev/${LOOP##*/}"
  mount --bind "$LOOP" "$M/dev/${LOOP##*/}"
  mkdir -p "$(dirname "$M/dev/$LINK")"
  ln -s "/dev/${LOOP##*/}" "$M/dev/$LINK"
fi
mkdir -p "$M/onetouch-test"
mount --bind "$RESULTS" "$M/onetouch-test"
exec chroot "$M" /usr/bin/env -i PATH="$PATH_IN_CHROOT" HOME=/root LANG=C.UTF-8 "$@"
'''


def sandbox_unavailable() -> str | None:
    """Why the sandbox cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root (mount namespace, overlay, loop device)"
    for tool in ("unshare", "chroot", "losetup", "mkfs.ext4", "blkid", "curl", "flock"):
        if not shutil.which(tool):
            return f"{tool} is not installed"
    if not Path("/usr/bin/python3").exists():
        return "/usr/bin/python3 is missing"
    probe = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "true"], capture_output=True, text=True
    )
    if probe.returncode != 0:
        return f"unshare --mount fails here: {probe.stderr.strip()}"
    return None


class Sandbox:
    """One host: an overlay upper directory that persists across runs (reboots), a loop device."""

    def __init__(self, base: Path, user_data: str, behaviour: dict | None = None, volume: bool = True,
                 volume_link: str = "disk/by-id/virtio-" + VOLUME_ID[:20], hide: tuple[str, ...] = (),
                 stubs: tuple[str, ...] = STUBS):
        """`volume_link`: where the loop device appears under /dev; `hide`: paths of the real root
        the host does not have; `stubs`: the commands replaced (the others are the real ones)."""
        self.stubs = stubs
        self.volume_link = volume_link
        self.hide = hide
        self.base = base
        self.upper = base / "upper"
        self.work = base / "work"
        self.merged = base / "merged"
        self.results = base / "results"
        for d in (self.upper, self.work, self.merged, self.results):
            d.mkdir(parents=True, exist_ok=True)
        self.user_data = user_data
        (self.results / "behaviour.json").write_text(json.dumps(behaviour or {}))
        self.loop = ""
        self.image = base / "volume.img"
        if volume:
            with open(self.image, "wb") as f:
                f.truncate(32 * 1024 * 1024)
            self.loop = subprocess.run(
                ["losetup", "--find", "--show", str(self.image)], check=True, capture_output=True, text=True
            ).stdout.strip()
        self._hide_host_state()
        self._write_files()
        self._write_stubs()

    def reboot(self):
        """A reboot: /run is a fresh tmpfs; the disk (the rest of the overlay) stays."""
        shutil.rmtree(self.upper / "run", ignore_errors=True)
        self._hide_host_state()

    def close(self):
        if self.loop:
            subprocess.run(["losetup", "-d", self.loop], capture_output=True)
            self.loop = ""

    # cloud-init's write_files, into the overlay's upper directory
    def _write_files(self):
        for entry in write_files(self.user_data):
            path = self.upper / entry["path"].lstrip("/")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(entry.get("content", ""))
            os.chmod(path, int(entry.get("permissions", "0644"), 8))

    def _write_stubs(self):
        stubs = self.upper / STUB_DIR.lstrip("/")
        stubs.mkdir(parents=True, exist_ok=True)
        for name in self.stubs:
            (stubs / name).write_text(STUB)
            os.chmod(stubs / name, 0o755)

    def _hide_host_state(self):
        """So a machine that has these files does not leak them into the sandbox: a whiteout hides a
        file of the real root, an opaque directory hides a directory's contents."""
        for path in ("etc/krb5.conf", "etc/krb5.keytab", "etc/onetouch", "var/lib/onetouch", "var/log/onetouch",
                     "run/onetouch", "run/lock/onetouch-pull.lock", "data", "tmp/pwned",
                     *(p.lstrip("/") for p in self.hide)):
            real = Path("/") / path
            target = self.upper / path
            if os.path.lexists(target):  # hidden already, or the host's own since
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            if real.is_dir() and not real.is_symlink():
                target.mkdir(exist_ok=True)
                os.setxattr(target, "trusted.overlay.opaque", b"y")
            elif real.exists() or real.is_symlink():
                os.mknod(target, 0o600 | 0o020000, os.makedev(0, 0))

    def run(self, argv: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
        harness = self.base / "harness.sh"
        harness.write_text(HARNESS)
        env = dict(os.environ, PATH_IN_CHROOT=CHROOT_PATH)
        process = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "--", "/bin/bash", str(harness),
             str(self.merged), str(self.upper), str(self.work), str(self.results), self.loop, self.volume_link, *argv],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env=env, start_new_session=True,
        )
        try:
            out, _ = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
            out, _ = process.communicate()
            raise AssertionError(f"{argv} still running after {timeout} s; output:\n{out}")
        return subprocess.CompletedProcess(argv, process.returncode, out, "")

    def boot(self, timeout: float = 120) -> subprocess.CompletedProcess:
        """What cloud-init and systemd do: runcmd, then the bootstrap unit's ExecStart."""
        doc = yaml.safe_load(self.user_data)
        for command in doc["runcmd"]:
            result = self.run(command if isinstance(command, list) else ["/bin/sh", "-c", command], timeout=30)
            assert result.returncode == 0, result.stdout
        return self.start_service("onetouch-bootstrap.service", timeout)

    def start_service(self, unit: str, timeout: float = 120) -> subprocess.CompletedProcess:
        text = self.file(f"/etc/systemd/system/{unit}")
        exec_start = next(line.split("=", 1)[1] for line in text.splitlines() if line.startswith("ExecStart="))
        return self.run(exec_start.split(), timeout)

    # reading the host's files after a run
    def path(self, path: str) -> Path:
        return self.upper / path.lstrip("/")

    def file(self, path: str) -> str:
        return self.path(path).read_text()

    def mode(self, path: str) -> int:
        return os.stat(self.path(path)).st_mode & 0o777

    def exists(self, path: str) -> bool:
        p = self.path(path)
        return p.exists() and not (p.is_char_device() and os.stat(p).st_rdev == 0)

    def calls(self, name: str | None = None) -> list[dict]:
        log = self.results / "calls.jsonl"
        if not log.exists():
            return []
        calls = [json.loads(line) for line in log.read_text().splitlines()]
        return [c for c in calls if name is None or c["name"] == name]

    def all_text(self, under: str) -> str:
        """Every regular file under `under` in the host, concatenated (for secret checks)."""
        root = self.path(under)
        texts = []
        for dirpath, _, files in os.walk(root):
            for name in files:
                p = Path(dirpath) / name
                if p.is_file():
                    texts.append(p.read_text(errors="replace"))
        return "\n".join(texts)
