"""Smoke test for scripts/krb5-testbed: a throwaway MIT realm ONETOUCH.TEST.

Exercises the OTP-style enrollment recipe from docs protocols.md §5:
  provisioner (keytab auth) adds host/vm1 with an OTP given on stdin  -> kvno 1
  host side runs `kadmin -p host/vm1 ktadd` with the OTP on stdin     -> kvno 2
  the same OTP no longer works (rc 1), provisioner is confined to host/*.
"""

import os
import secrets
import shutil
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TESTBED = REPO / "scripts" / "krb5-testbed"
HOST = "host/vm1.onetouch.test"

for _d in ("/usr/sbin", "/sbin"):
    if _d not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = os.environ.get("PATH", "") + os.pathsep + _d

pytestmark = pytest.mark.skipif(
    not all(shutil.which(b) for b in ("krb5kdc", "kadmind", "kdb5_util", "kadmin")),
    reason="MIT krb5 server/client not installed (run scripts/install-test-deps)",
)


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
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


@pytest.fixture
def realm(tmp_path):
    base = tmp_path / "realm"
    r = subprocess.run([str(TESTBED), "start", str(base)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    env = read_env(base / "env")
    try:
        yield base, env
    finally:
        r = subprocess.run([str(TESTBED), "stop", str(base)], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        for key in ("KDC_PID", "KADMIND_PID"):
            assert not pid_alive(int(env[key])), f"{key} still running"


def krb_env(env):
    e = dict(os.environ)
    for k in ("KRB5_CONFIG", "KRB5_KDC_PROFILE", "KRB5CCNAME"):
        e[k] = env[k]
    return e


def provisioner(env, *args, stdin=""):
    cmd = ["kadmin", "-p", env["PROVISIONER_PRINCIPAL"], "-k", "-t", env["PROVISIONER_KEYTAB"], *args]
    return subprocess.run(cmd, input=stdin, capture_output=True, text=True, env=krb_env(env), timeout=60)


def all_cmdlines():
    out = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                out.append((p.name, (p / "cmdline").read_bytes()))
            except OSError:
                pass
    return out


def run_with_secret_on_stdin(cmd, env, secret, lines):
    """Start cmd, check (while it waits for its password prompt) that `secret` is in no
    process's argv nor in cmd's environment, then feed the secret on stdin."""
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=krb_env(env))
    try:
        time.sleep(0.3)  # let it authenticate and block on the prompt
        needle = secret.encode()
        leaks = [pid for pid, cl in all_cmdlines() if needle in cl]
        assert leaks == [], f"OTP visible in argv of pids {leaks}"
        try:
            assert needle not in Path(f"/proc/{proc.pid}/environ").read_bytes()
        except FileNotFoundError:
            pass
        out, err = proc.communicate("".join(secret + "\n" for _ in range(lines)), timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, out, err


def terse_kvno(stdout):
    # "princ" expire last_pwd_change pw_exp max_life "mod_name" mod_date attributes kvno mkvno ...
    line = stdout.strip().splitlines()[-1]
    fields = line.split("\t")
    assert fields[0] == f'"{HOST}@ONETOUCH.TEST"', line
    return int(fields[8]), int(fields[2])


def test_env_file(realm):
    base, env = realm
    for key in ("KRB5_CONFIG", "KRB5_KDC_PROFILE", "KRB5_REALM", "KDC_PORT", "KADMIN_PORT",
                "KADMIN_ADDRESS", "PROVISIONER_PRINCIPAL", "PROVISIONER_KEYTAB", "KDC_PID", "KADMIND_PID"):
        assert env.get(key), key
    assert env["KRB5_REALM"] == "ONETOUCH.TEST"
    assert env["PROVISIONER_PRINCIPAL"] == "onetouch/provisioner@ONETOUCH.TEST"
    assert env["KADMIN_ADDRESS"] == f"127.0.0.1:{env['KADMIN_PORT']}"
    assert int(env["KDC_PORT"]) >= 1024 and int(env["KADMIN_PORT"]) >= 1024
    for key in ("KRB5_CONFIG", "KRB5_KDC_PROFILE", "PROVISIONER_KEYTAB"):
        assert env[key].startswith(str(base) + "/"), key
        assert Path(env[key]).is_file(), key
    assert pid_alive(int(env["KDC_PID"])) and pid_alive(int(env["KADMIND_PID"]))
    assert "adimc" in (base / "kadm5.acl").read_text()


def test_otp_enrollment_flow(realm, tmp_path):
    base, env = realm
    otp = "Otp-" + secrets.token_urlsafe(18)

    # 1. provisioner adds the host principal; OTP given on stdin (password + verify), no -q
    rc, out, err = run_with_secret_on_stdin(
        ["kadmin", "-p", env["PROVISIONER_PRINCIPAL"], "-k", "-t", env["PROVISIONER_KEYTAB"], "addprinc", HOST],
        env, otp, 2)
    assert rc == 0, err
    assert otp not in out and otp not in err

    # 2. getprinc -terse -> kvno 1
    r = provisioner(env, "getprinc", "-terse", HOST)
    assert r.returncode == 0, r.stderr
    kvno, issued_at = terse_kvno(r.stdout)
    assert kvno == 1

    # 3. host side: authenticate with the OTP (stdin), rotate own key into a keytab -> kvno 2
    keytab = tmp_path / "tmp.keytab"
    rc, out, err = run_with_secret_on_stdin(
        ["kadmin", "-p", HOST, "ktadd", "-k", str(keytab), HOST], env, otp, 1)
    assert rc == 0, err
    assert "kvno 2" in out
    assert keytab.is_file() and keytab.stat().st_size > 0

    r = provisioner(env, "getprinc", "-terse", HOST)
    assert r.returncode == 0, r.stderr
    kvno, last_change = terse_kvno(r.stdout)
    assert kvno == 2  # enrollment signal: kvno increased since the OTP was issued
    assert last_change >= issued_at

    # the new keytab really works
    if shutil.which("kinit"):
        k = subprocess.run(["kinit", "-k", "-t", str(keytab), f"{HOST}@ONETOUCH.TEST"],
                           capture_output=True, text=True, env=krb_env(env), timeout=60)
        assert k.returncode == 0, k.stderr

    # 4. the OTP is single-use
    rc, out, err = run_with_secret_on_stdin(
        ["kadmin", "-p", HOST, "ktadd", "-k", str(tmp_path / "again.keytab"), HOST], env, otp, 1)
    assert rc == 1
    assert "Incorrect password" in err

    # 5. provisioner is confined to host/*
    r = provisioner(env, "addprinc", "-randkey", "user1")
    assert r.returncode == 1
    assert "add'' privilege" in r.stderr or "privilege" in r.stderr
    r = provisioner(env, "listprincs")
    assert r.returncode == 1

    # 6. modify (disable analogue) and delete work on host/*
    r = provisioner(env, "modprinc", "-allow_tix", HOST)
    assert r.returncode == 0, r.stderr
    r = provisioner(env, "delprinc", "-force", HOST)
    assert r.returncode == 0, r.stderr
    r = provisioner(env, "getprinc", HOST)
    assert r.returncode == 1
    assert "does not exist" in r.stderr
    r = provisioner(env, "delprinc", "-force", HOST)
    assert r.returncode == 1


def test_stop_kills_recorded_pids(tmp_path):
    base = tmp_path / "r2"
    r = subprocess.run([str(TESTBED), "start", str(base)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    env = read_env(base / "env")
    assert pid_alive(int(env["KDC_PID"])) and pid_alive(int(env["KADMIND_PID"]))
    # starting twice in the same DIR is refused while it runs
    r2 = subprocess.run([str(TESTBED), "start", str(base)], capture_output=True, text=True, timeout=60)
    assert r2.returncode != 0
    r = subprocess.run([str(TESTBED), "stop", str(base)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert not pid_alive(int(env["KDC_PID"])) and not pid_alive(int(env["KADMIND_PID"]))
    # stop is idempotent
    r = subprocess.run([str(TESTBED), "stop", str(base)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0
