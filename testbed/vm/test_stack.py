"""Tests for testbed/vm/stack.py's pieces that need no VM: free ports, the config repository and its
break/fix commits served by git daemon, the onetouch configuration file, stopping by PID."""

import shutil
import socket
import subprocess
from pathlib import Path

import pytest
import yaml

import stack


def test_free_ports_are_distinct_and_bindable():
    ports = stack.free_ports(4)
    assert len(set(ports)) == 4
    for p in ports:
        s = socket.socket()
        s.bind(("127.0.0.1", p))
        s.close()


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_git_daemon_serves_the_config_repo_and_its_fixes(tmp_path):
    repo = stack.ConfigRepo(tmp_path / "git").create()
    daemon = stack.GitDaemon(tmp_path / "git", log=tmp_path / "git-daemon.log").start()
    url = f"git://127.0.0.1:{daemon.port}/config"
    try:
        def remote_head():
            r = subprocess.run(["git", "ls-remote", url, "refs/heads/main"], capture_output=True, text=True,
                               timeout=30)
            assert r.returncode == 0, r.stderr
            return r.stdout.split()[0]

        first = repo.head()
        assert remote_head() == first
        play = yaml.safe_load((repo.path / "demo.yml").read_text())
        assert play[0]["hosts"] == "localhost" and play[0]["connection"] == "local"
        good_tasks = play[0]["tasks"]
        assert any(t.get("ansible.builtin.copy", {}).get("dest") == "/var/lib/onetouch-demo/marker"
                   for t in good_tasks)

        broken = repo.break_playbook()
        assert broken != first and remote_head() == broken
        tasks = yaml.safe_load((repo.path / "demo.yml").read_text())[0]["tasks"]
        assert "ansible.builtin.fail" in tasks[-1]

        fixed = repo.fix_playbook()
        assert fixed != broken and remote_head() == fixed
        assert yaml.safe_load((repo.path / "demo.yml").read_text())[0]["tasks"] == good_tasks

        clone = tmp_path / "clone"
        r = subprocess.run(["git", "clone", "-q", "-b", "main", url, str(clone)], capture_output=True, text=True,
                           timeout=30)
        assert r.returncode == 0, r.stderr
        assert (clone / "demo.yml").read_text() == stack.DEMO_PLAYBOOK
    finally:
        daemon.stop()
    assert not stack.pid_alive(daemon.pid)
    base = f"--base-path={tmp_path / 'git'}".encode()
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                assert base not in (proc / "cmdline").read_bytes(), f"a git daemon is left: pid {proc.name}"
            except OSError:
                pass
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", daemon.port), timeout=1).close()


def test_config_file_has_the_qemu_provider_keys(tmp_path):
    realm_env = {"KDC_PORT": "41001", "KADMIN_PORT": "41002", "KRB5_REALM": "ONETOUCH.TEST",
                 "KADMIN_ADDRESS": "127.0.0.1:41002", "PROVISIONER_PRINCIPAL": "onetouch/provisioner@ONETOUCH.TEST",
                 "PROVISIONER_KEYTAB": "/x/provisioner.keytab", "KRB5_CONFIG": "/x/krb5.conf"}
    path = stack.write_config(
        tmp_path / "onetouch.yaml", port=40000, image=Path("/img/abc"), realm_env=realm_env, git_port=40001,
        state_directory=tmp_path / "vms", database=tmp_path / "db.sqlite", master_key_file=tmp_path / "master.key",
        admin_token_file=tmp_path / "admin-token")
    c = yaml.safe_load(path.read_text())
    assert c["listen"] == "127.0.0.1:40000"
    assert c["public_url"] == "http://10.0.2.100:40000"
    assert c["config"] == {"repository": "git://10.0.2.102/config", "branch": "main", "pull_period": "30m"}
    assert c["roles"]["demo"] == {"instance_type": "local", "volume_gib": 1, "playbook": "demo.yml"}
    p = c["provider"]
    assert p["kind"] == "qemu" and p["image"] == "/img/abc" and p["accelerator"] == "tcg"
    assert p["state_directory"] == str(tmp_path / "vms") and p["memory_mib"] == 1024 and p["cpus"] == 2
    assert p["forwards"] == [
        {"guest": "10.0.2.100:40000", "host": "127.0.0.1:40000"},
        {"guest": "10.0.2.101:88", "host": "127.0.0.1:41001"},
        {"guest": "10.0.2.101:749", "host": "127.0.0.1:41002"},
        {"guest": "10.0.2.102:9418", "host": "127.0.0.1:40001"},
    ]
    d = c["directory"]
    assert d == {"kind": "mit", "realm": "ONETOUCH.TEST", "admin_server": "127.0.0.1:41002",
                 "kdc": "10.0.2.101:88", "host_admin_server": "10.0.2.101:749",
                 "principal": "onetouch/provisioner@ONETOUCH.TEST", "keytab": "/x/provisioner.keytab",
                 "krb5_config": "/x/krb5.conf"}
    assert c["admin_tokens"] == {"file": str(tmp_path / "admin-token")}
    assert c["notifier"] == {"kind": "log"}


def test_qemu_command_line_has_one_relay_per_forward(tmp_path):
    cmd = stack.qemu_command(image=Path("/img"), overlay=tmp_path / "o.qcow2", seed=tmp_path / "seed.iso",
                             dir=tmp_path, forwards={"10.0.2.100:8080": 5000, "10.0.2.102:9418": 5001})
    assert cmd[:5] == ["qemu-system-x86_64", "-accel", "tcg", "-cpu", "max"]
    assert "-nodefaults" in cmd
    netdev = cmd[cmd.index("-netdev") + 1]
    assert netdev == ("user,id=n0,restrict=on"
                      ",guestfwd=tcp:10.0.2.100:8080-cmd:socat STDIO TCP:127.0.0.1:5000"
                      ",guestfwd=tcp:10.0.2.102:9418-cmd:socat STDIO TCP:127.0.0.1:5001")


def test_stop_vms_kills_only_a_qemu_named_by_its_pidfile(tmp_path):
    """A pid file whose process is not that VM's QEMU (a reused pid) is left alone."""
    folder = tmp_path / "vms" / "i-0123"
    folder.mkdir(parents=True)
    other = subprocess.Popen(["sleep", "30"])
    try:
        (folder / "qemu.pid").write_text(f"{other.pid}\n")
        st = stack.Stack(tmp_path, onetouch_bin=None, image=Path("/img"))
        st.stop_vms()
        assert other.poll() is None, "a process that is not the VM's QEMU was stopped"
    finally:
        other.kill()
        other.wait()
