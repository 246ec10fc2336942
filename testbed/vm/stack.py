"""The local VM stack: the pieces `onetouch serve` with `provider: {kind: qemu}` runs against, and
helpers to boot the base image by hand.

Everything listens on 127.0.0.1 only and everything started here is stopped by its PID, never by
name. Used by testbed/vm/test_image.py, scripts/quickstart and the end-to-end tests.

    image = build_image()                         # scripts/build-image (once per machine)
    with Stack(Path(".local/x"), onetouch_bin=BIN, image=image) as st:
        st.start()                                # realm, git daemon + config repo, onetouch serve
        st.cli("create", "demo-01", "--role", "demo", "--wait")

Guests reach the host only through `guestfwd` relays (user networking, restrict=on), one
`socat STDIO TCP:127.0.0.1:PORT` per guest connection, at fixed guest addresses:
10.0.2.100 onetouch host API, 10.0.2.101:88/749 KDC/kadmind, 10.0.2.102:9418 git.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BUILD_IMAGE = REPO / "scripts" / "build-image"
KRB5_TESTBED = REPO / "scripts" / "krb5-testbed"

GUEST_API = "10.0.2.100"
GUEST_KDC = "10.0.2.101"
GUEST_GIT = "10.0.2.102"

# What booting and building the image needs, and the package that brings it.
VM_TOOLS = {
    "qemu-system-x86_64": "qemu-system-x86",
    "qemu-img": "qemu-utils",
    "mmdebstrap": "mmdebstrap",
    "genisoimage": "genisoimage",
    "socat": "socat",
    "git": "git",
}

for _d in ("/usr/sbin", "/sbin"):
    if _d not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = os.environ.get("PATH", "") + os.pathsep + _d


# ---------------------------------------------------------------- small helpers ----------------


def free_ports(n: int) -> list[int]:
    """n distinct free TCP ports on 127.0.0.1 (held open together while picked)."""
    socks, ports = [], []
    try:
        while len(ports) < n:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


def free_port() -> int:
    return free_ports(1)[0]


def missing_vm_tools() -> list[str]:
    """The packages (scripts/install-vm-deps) whose programs are not on PATH."""
    return sorted({pkg for prog, pkg in VM_TOOLS.items() if shutil.which(prog) is None})


def read_env_file(path: Path) -> dict[str, str]:
    env = {}
    for line in Path(path).read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            k, v = line.split("=", 1)
            env[k] = v
    return env


def pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(") ", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def stop_process(proc: subprocess.Popen | None, timeout: float = 10.0) -> None:
    """SIGTERM the process by its PID, wait, then SIGKILL; reaps it."""
    if proc is None or proc.poll() is not None:
        return
    try:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
    except ProcessLookupError:
        pass


def wait_for(predicate, timeout: float, interval: float = 0.2, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return 200 <= r.status < 300
    except (urllib.error.URLError, OSError):
        return False


# ---------------------------------------------------------------- image -------------------------


class ImageUnavailable(RuntimeError):
    """The image cannot be built here (tools missing or not root)."""


def build_image(log=None) -> Path:
    """Run scripts/build-image (reuses the built image) and return the image folder.

    Its progress lines go to `log` (a file object; default: this process's stderr)."""
    missing = missing_vm_tools()
    if missing:
        raise ImageUnavailable(f"missing {', '.join(missing)} (run scripts/install-vm-deps)")
    r = subprocess.run([str(BUILD_IMAGE)], stdout=subprocess.PIPE, stderr=log, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"scripts/build-image failed (exit {r.returncode})")
    path = Path(r.stdout.strip().splitlines()[-1])
    for f in ("base.qcow2", "vmlinuz", "initrd.img"):
        if not (path / f).is_file():
            raise RuntimeError(f"scripts/build-image printed {path}, which has no {f}")
    return path


# ---------------------------------------------------------------- git daemon + config repo ------

DEMO_PLAYBOOK = """\
# The demo role's playbook, run on the guest by ansible-pull from git://10.0.2.102/config.
# No fact gathering: under emulation it is the slowest module of all; the name comes from hostname.
- hosts: localhost
  connection: local
  gather_facts: false
  vars:
    fqdn: "{{ lookup('ansible.builtin.pipe', 'hostname --fqdn 2>/dev/null || hostname') }}"
  tasks:
    - name: marker folder
      ansible.builtin.file: {path: /var/lib/onetouch-demo, state: directory, mode: "0755"}
    - name: marker with this host's name
      ansible.builtin.copy:
        dest: /var/lib/onetouch-demo/marker
        content: "{{ fqdn }}\\n"
        mode: "0644"
    - name: message of the day
      ansible.builtin.copy:
        dest: /etc/motd
        content: "{{ fqdn }}: configured by onetouch from git://10.0.2.102/config (demo.yml)\\n"
        mode: "0644"
    - name: show both on the serial console (the VM's serial.log on the host)
      ansible.builtin.shell: "sed 's/^/onetouch-demo: /' /var/lib/onetouch-demo/marker /etc/motd >/dev/console"
      changed_when: false
"""

BROKEN_TASK = """\
    - name: broken on purpose (testbed/vm ConfigRepo.break_playbook)
      ansible.builtin.fail: {msg: "demo.yml is broken on purpose; ConfigRepo.fix_playbook() repairs it"}
"""


def _git(repo: Path, *args: str) -> str:
    env = dict(os.environ, GIT_AUTHOR_NAME="onetouch testbed", GIT_AUTHOR_EMAIL="testbed@onetouch.test",
               GIT_COMMITTER_NAME="onetouch testbed", GIT_COMMITTER_EMAIL="testbed@onetouch.test")
    r = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, env=env, timeout=60)
    if r.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)}: {r.stderr.strip()}")
    return r.stdout


class ConfigRepo:
    """The configuration repository `config` (branch main) with demo.yml, under BASE/config."""

    def __init__(self, base: Path, name: str = "config"):
        self.base = Path(base)
        self.path = self.base / name
        self.name = name

    def create(self) -> "ConfigRepo":
        self.path.mkdir(parents=True, exist_ok=True)
        if not (self.path / ".git").exists():
            _git(self.path, "init", "-q", "-b", "main")
        self._commit(DEMO_PLAYBOOK, "demo playbook")
        return self

    def _commit(self, playbook: str, message: str) -> str:
        (self.path / "demo.yml").write_text(playbook)
        _git(self.path, "add", "demo.yml")
        _git(self.path, "commit", "-q", "--allow-empty", "-m", message)
        return self.head()

    def head(self) -> str:
        return _git(self.path, "rev-parse", "HEAD").strip()

    def break_playbook(self) -> str:
        """Commit a demo.yml whose last task fails; returns the new commit."""
        return self._commit(DEMO_PLAYBOOK + BROKEN_TASK, "break demo.yml on purpose")

    def fix_playbook(self) -> str:
        """Commit the working demo.yml again; returns the new commit."""
        return self._commit(DEMO_PLAYBOOK, "fix demo.yml")


class GitDaemon:
    """`git daemon` on 127.0.0.1:port serving every repository under base (git://HOST/NAME)."""

    def __init__(self, base: Path, port: int | None = None, log: Path | None = None):
        self.base = Path(base)
        self.port = port or free_port()
        self.log = Path(log) if log else self.base.parent / "git-daemon.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> "GitDaemon":
        self.base.mkdir(parents=True, exist_ok=True)
        logf = open(self.log, "ab")
        # git-daemon itself, not the `git daemon` wrapper (which runs it as a child): the PID held
        # here is then the daemon's own.
        exec_path = subprocess.run(["git", "--exec-path"], capture_output=True, text=True,
                                   check=True).stdout.strip()
        self.proc = subprocess.Popen(
            [os.path.join(exec_path, "git-daemon"), "--listen=127.0.0.1", f"--port={self.port}", "--reuseaddr",
             "--export-all", f"--base-path={self.base}", "--informative-errors", "--verbose",
             str(self.base)],
            stdin=subprocess.DEVNULL, stdout=logf, stderr=logf, start_new_session=True)
        logf.close()

        def listening():
            if self.proc.poll() is not None:
                raise RuntimeError(f"git daemon exited (status {self.proc.returncode}); see {self.log}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return True
            except OSError:
                return False

        wait_for(listening, 15, what="git daemon")
        return self

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def stop(self) -> None:
        stop_process(self.proc)


# ---------------------------------------------------------------- MIT realm ---------------------


class Realm:
    """scripts/krb5-testbed's throwaway realm ONETOUCH.TEST under dir; env = its env file."""

    def __init__(self, dir: Path):
        self.dir = Path(dir)
        self.env: dict[str, str] = {}

    def start(self) -> "Realm":
        r = subprocess.run([str(KRB5_TESTBED), "start", str(self.dir)], capture_output=True, text=True,
                           timeout=180)
        if r.returncode != 0:
            raise RuntimeError(f"krb5-testbed start failed: {r.stderr.strip()}")
        self.env = read_env_file(self.dir / "env")
        return self

    def stop(self) -> None:
        if (self.dir / "env").exists():
            subprocess.run([str(KRB5_TESTBED), "stop", str(self.dir)], capture_output=True, timeout=60)

    def kadmin(self, *query: str) -> subprocess.CompletedProcess:
        """Run one kadmin query as the provisioner (e.g. "getprinc", "host/x@ONETOUCH.TEST")."""
        e = self.env
        env = dict(os.environ, KRB5_CONFIG=e["KRB5_CONFIG"], KRB5CCNAME=e["KRB5CCNAME"])
        return subprocess.run(
            ["kadmin", "-p", e["PROVISIONER_PRINCIPAL"], "-k", "-t", e["PROVISIONER_KEYTAB"],
             "-r", e["KRB5_REALM"], "-s", e["KADMIN_ADDRESS"], "-q", " ".join(query)],
            capture_output=True, text=True, env=env, timeout=60)


# ---------------------------------------------------------------- onetouch config + serve -------


def _q(value) -> str:
    """A YAML scalar: JSON strings are valid YAML flow scalars."""
    return json.dumps(str(value))


def write_config(path: Path, *, port: int, image: Path, realm_env: dict[str, str], git_port: int,
                 state_directory: Path, database: Path, master_key_file: Path, admin_token_file: Path,
                 memory_mib: int = 1024, cpus: int = 2, accelerator: str = "tcg",
                 bootstrap_timeout: str = "10m", config_pull_timeout: str = "20m") -> Path:
    """The onetouch configuration for the local QEMU stack (/tmp/spec/qemu-config.md)."""
    e = realm_env
    text = f"""\
# onetouch on the local QEMU stack (written by testbed/vm/stack.py)
listen: 127.0.0.1:{port}
public_url: http://{GUEST_API}:{port}
database: {_q(database)}
master_key_file: {_q(master_key_file)}
admin_tokens: {{file: {_q(admin_token_file)}}}
domain: onetouch.test
timeouts: {{bootstrap: {bootstrap_timeout}, config_pull: {config_pull_timeout}}}
config: {{repository: "git://{GUEST_GIT}/config", branch: main, pull_period: 30m}}
roles:
  demo: {{instance_type: local, volume_gib: 1, playbook: demo.yml}}
provider:
  kind: qemu
  image: {_q(image)}
  state_directory: {_q(state_directory)}
  memory_mib: {memory_mib}
  cpus: {cpus}
  accelerator: {accelerator}
  forwards:
    - {{guest: "{GUEST_API}:{port}", host: "127.0.0.1:{port}"}}
    - {{guest: "{GUEST_KDC}:88", host: "127.0.0.1:{e['KDC_PORT']}"}}
    - {{guest: "{GUEST_KDC}:749", host: "127.0.0.1:{e['KADMIN_PORT']}"}}
    - {{guest: "{GUEST_GIT}:9418", host: "127.0.0.1:{git_port}"}}
directory:
  kind: mit
  realm: {e['KRB5_REALM']}
  admin_server: {e['KADMIN_ADDRESS']}
  kdc: {GUEST_KDC}:88
  host_admin_server: {GUEST_KDC}:749
  principal: {_q(e['PROVISIONER_PRINCIPAL'])}
  keytab: {_q(e['PROVISIONER_KEYTAB'])}
  krb5_config: {_q(e['KRB5_CONFIG'])}
notifier: {{kind: log}}
"""
    path = Path(path)
    path.write_text(text)
    return path


class Serve:
    """`onetouch serve --config CONFIG`, output to log; stopped by PID."""

    def __init__(self, binary: Path, config: Path, port: int, log: Path):
        self.binary, self.config, self.port, self.log = Path(binary), Path(config), port, Path(log)
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60) -> "Serve":
        logf = open(self.log, "ab")
        self.proc = subprocess.Popen([str(self.binary), "serve", "--config", str(self.config)],
                                     stdin=subprocess.DEVNULL, stdout=logf, stderr=logf,
                                     start_new_session=True)
        logf.close()

        def up():
            if self.proc.poll() is not None:
                tail = self.log.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"onetouch serve exited (status {self.proc.returncode}):\n{tail}")
            return http_ok(self.url + "/healthz")

        wait_for(up, timeout, what="onetouch serve /healthz")
        return self

    def stop(self) -> None:
        # SIGTERM first: serve stops its VMs' QEMU processes itself on a clean shutdown (its choice).
        stop_process(self.proc, timeout=30)


@dataclass
class Stack:
    """Realm + git daemon with the config repo + onetouch serve (qemu provider, SQLite) under base."""

    base: Path
    onetouch_bin: Path | None
    image: Path
    memory_mib: int = 1024
    cpus: int = 2
    realm: Realm | None = None
    repo: ConfigRepo | None = None
    git: GitDaemon | None = None
    serve: Serve | None = None
    port: int = 0
    config_path: Path | None = None
    admin_token_file: Path | None = None
    _started: list = field(default_factory=list)

    def start(self, serve: bool = True) -> "Stack":
        self.base = Path(self.base).resolve()
        self.base.mkdir(parents=True, exist_ok=True)
        # Each piece is recorded before it starts, so one that fails half-way is stopped too.
        self.realm = Realm(self.base / "krb5")
        self._started.append(self.realm)
        self.realm.start()
        self.repo = ConfigRepo(self.base / "git").create()
        self.git = GitDaemon(self.base / "git", log=self.base / "git-daemon.log")
        self._started.append(self.git)
        self.git.start()
        self.port = free_port()
        self.admin_token_file = self.base / "admin-token"
        old = os.umask(0o077)
        try:
            if not self.admin_token_file.exists():
                self.admin_token_file.write_text(secrets.token_hex(32) + "\n")
        finally:
            os.umask(old)
        (self.base / "vms").mkdir(exist_ok=True)
        self.config_path = write_config(
            self.base / "onetouch.yaml", port=self.port, image=Path(self.image).resolve(),
            realm_env=self.realm.env, git_port=self.git.port, state_directory=self.base / "vms",
            database=self.base / "onetouch.sqlite", master_key_file=self.base / "master.key",
            admin_token_file=self.admin_token_file, memory_mib=self.memory_mib, cpus=self.cpus)
        if serve:
            self.start_serve()
        return self

    def start_serve(self) -> Serve:
        if self.onetouch_bin is None:
            raise ValueError("no onetouch binary given")
        self.serve = Serve(self.onetouch_bin, self.config_path, self.port, self.base / "serve.log")
        self._started.append(self.serve)  # before start: a serve that never answers is stopped too
        return self.serve.start()

    def cli_env(self) -> dict[str, str]:
        return dict(os.environ, ONETOUCH_SERVER=f"http://127.0.0.1:{self.port}",
                    ONETOUCH_TOKEN_FILE=str(self.admin_token_file))

    def cli(self, *args: str, **kw) -> subprocess.CompletedProcess:
        """Run `onetouch ARGS` against this stack's serve (output captured unless told otherwise)."""
        kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        return subprocess.run([str(self.onetouch_bin), *args], env=self.cli_env(), **kw)

    @property
    def vms_dir(self) -> Path:
        return Path(self.base) / "vms"

    def vm_folders(self) -> list[Path]:
        """The provider's per-VM folders (state_directory/i-*/), oldest first."""
        if not self.vms_dir.is_dir():
            return []
        return sorted((p for p in self.vms_dir.iterdir() if p.is_dir() and p.name.startswith("i-")),
                      key=lambda p: p.stat().st_mtime)

    def demo_lines(self) -> list[tuple[Path, str]]:
        """The `onetouch-demo: ...` lines demo.yml printed on a guest's console, with the log's path."""
        found = []
        for folder in self.vm_folders():
            log = folder / "serial.log"
            if log.is_file():
                for line in log.read_text(errors="replace").splitlines():
                    i = line.find("onetouch-demo: ")
                    if i >= 0:
                        found.append((log, line[i:].strip()))
        return found

    def stop_vms(self) -> None:
        """Kill the QEMU of every VM under state_directory by the PID in its qemu.pid (QEMU runs
        daemonized and outlives serve), after checking that PID's command line names that file."""
        for folder in self.vm_folders():
            pidfile = folder / "qemu.pid"
            try:
                pid = int(pidfile.read_text().strip())
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
            except (OSError, ValueError):
                continue
            if "qemu-system" not in cmdline or str(pidfile) not in cmdline or not pid_alive(pid):
                continue
            os.kill(pid, signal.SIGTERM)
            try:
                wait_for(lambda: not pid_alive(pid), 15, what=f"QEMU {pid} to exit")
            except TimeoutError:
                os.kill(pid, signal.SIGKILL)

    def stop(self) -> None:
        """Stop everything this stack started, newest first, each by its PID; then the VMs' QEMU."""
        while self._started:
            part = self._started.pop()
            try:
                part.stop()
            except Exception as exc:  # keep stopping the rest
                print(f"stack: stopping {type(part).__name__} failed: {exc}")
        try:
            self.stop_vms()
        except Exception as exc:
            print(f"stack: stopping the VMs failed: {exc}")

    def __enter__(self) -> "Stack":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


# ---------------------------------------------------------------- booting the image by hand -----


def make_seed(dir: Path, user_data: str, meta_data: str, network_config: str | None = None) -> Path:
    """A NoCloud seed: ISO 9660 labelled cidata with user-data, meta-data (and network-config)."""
    dir = Path(dir)
    src = dir / "seed-src"
    src.mkdir(parents=True, exist_ok=True)
    (src / "user-data").write_text(user_data)
    (src / "meta-data").write_text(meta_data)
    files = [src / "user-data", src / "meta-data"]
    if network_config is not None:
        (src / "network-config").write_text(network_config)
        files.append(src / "network-config")
    seed = dir / "seed.iso"
    subprocess.run(["genisoimage", "-quiet", "-output", str(seed), "-volid", "cidata", "-joliet", "-rock",
                    *map(str, files)], check=True, capture_output=True, timeout=60)
    return seed


def relay(host_port: int) -> str:
    """The guestfwd command: one socat per guest connection to 127.0.0.1:PORT."""
    return f"socat STDIO TCP:127.0.0.1:{host_port}"


def qemu_command(*, image: Path, overlay: Path, seed: Path, dir: Path, forwards: dict[str, int],
                 memory_mib: int = 1024, cpus: int = 2, accelerator: str = "tcg") -> list[str]:
    """The QEMU command line of protocols.md §8; forwards maps "GUESTIP:PORT" to a host port."""
    image, dir = Path(image), Path(dir)
    netdev = "user,id=n0,restrict=on" + "".join(
        f",guestfwd=tcp:{guest}-cmd:{relay(port)}" for guest, port in forwards.items())
    accel = ["-accel", "tcg", "-cpu", "max"] if accelerator == "tcg" else ["-accel", "kvm", "-cpu", "host"]
    return [
        "qemu-system-x86_64", *accel, "-m", str(memory_mib), "-smp", str(cpus),
        "-nodefaults", "-display", "none", "-no-reboot",
        "-serial", f"file:{dir / 'serial.log'}", "-monitor", "none",
        "-qmp", f"unix:{dir / 'qmp.sock'},server=on,wait=off", "-pidfile", str(dir / "qemu.pid"),
        "-kernel", str(image / "vmlinuz"), "-initrd", str(image / "initrd.img"),
        "-append", "root=LABEL=vmroot rw console=ttyS0 panic=-1",
        "-drive", f"file={overlay},if=none,id=root,format=qcow2",
        "-device", "virtio-blk-pci,drive=root,serial=rootdisk",
        "-drive", f"file={seed},if=none,id=seed,format=raw,readonly=on",
        "-device", "virtio-blk-pci,drive=seed,serial=cidata",
        "-netdev", netdev, "-device", "virtio-net-pci,netdev=n0",
    ]


class VM:
    """One QEMU guest booted from an overlay on the base image; killed by PID."""

    def __init__(self, image: Path, dir: Path, user_data: str, meta_data: str,
                 forwards: dict[str, int], memory_mib: int = 1024, cpus: int = 2):
        self.image, self.dir = Path(image), Path(dir)
        self.user_data, self.meta_data, self.forwards = user_data, meta_data, forwards
        self.memory_mib, self.cpus = memory_mib, cpus
        self.proc: subprocess.Popen | None = None
        self.started_at = 0.0

    @property
    def serial_log(self) -> Path:
        return self.dir / "serial.log"

    def start(self) -> "VM":
        self.dir.mkdir(parents=True, exist_ok=True)
        overlay = self.dir / "overlay.qcow2"
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(self.image / "base.qcow2"),
                        "-F", "qcow2", str(overlay)], check=True, capture_output=True, timeout=60)
        seed = make_seed(self.dir, self.user_data, self.meta_data)
        cmd = qemu_command(image=self.image, overlay=overlay, seed=seed, dir=self.dir,
                           forwards=self.forwards, memory_mib=self.memory_mib, cpus=self.cpus)
        (self.dir / "qemu.cmdline").write_text(" ".join(cmd) + "\n")
        logf = open(self.dir / "qemu.log", "ab")
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=logf, stderr=logf,
                                     start_new_session=True)
        logf.close()
        return self

    def serial(self) -> str:
        try:
            return self.serial_log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        stop_process(self.proc, timeout=15)
