"""End to end: a real `onetouch serve`'s liveness and readiness.

`/healthz` says the process answers and which build it is (the same words as `onetouch --version`).
`/readyz` says whether it can work: the database takes writes, this process holds the engine's
lease, the engine's loop is ticking. Here another process holds SQLite's write lock for longer
than serve's 10 s busy timeout (someone's `sqlite3` session in a write transaction, a backup tool):
readiness turns 503 and says why, serve stays up, and it is ready again once the lock is gone.
"""
import json
import re
import signal
import sqlite3
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from test_onetouch_ec2 import Stack, _bin, _free_port, wait_for_healthz
from test_tls import serve_env, write_config


@pytest.fixture
def base():
    with tempfile.TemporaryDirectory(prefix="onetouch-health-") as d:
        yield Path(d)


def get(url, timeout=30):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        body = e.read()
        return e.code, json.loads(body) if body.startswith(b"{") else body.decode()


def checks(answer):
    return {c["name"]: c for c in answer["checks"]}


def test_readyz_says_what_is_wrong_while_the_database_takes_no_writes_and_recovers(base):
    admin_port, host_port = _free_port(), _free_port()
    config = write_config(base, admin_port, host_port)
    proc = subprocess.Popen([_bin(), "serve", "--config", str(config)], stdout=subprocess.DEVNULL,
                            stderr=open(base / "serve.log", "wb"), env=serve_env(base))
    url = f"http://127.0.0.1:{admin_port}"
    try:
        wait_for_healthz(proc, url, base / "serve.log")
        status, live = get(url + "/healthz")
        version = subprocess.run([_bin(), "--version"], capture_output=True, text=True, check=True).stdout.strip()
        assert status == 200 and live["status"] == "ok"
        assert version == f"onetouch {live['version']} (commit {live['commit']})"
        first_line = (base / "serve.log").read_text().splitlines()[0]
        assert "Starting" in first_line and f"commit={live['commit']}" in first_line

        deadline = time.time() + 30
        while (answer := get(url + "/readyz"))[0] != 200 and time.time() < deadline:
            time.sleep(0.2)
        status, ready = answer
        assert status == 200 and ready["ready"], ready
        assert {name: c["ok"] for name, c in checks(ready).items()} == {"database": True, "lease": True, "engine": True}
        assert "held by this process" in checks(ready)["lease"]["detail"]
        assert get(f"http://127.0.0.1:{host_port}/readyz")[0] == 404, "not on the hosts' listener"

        # An online backup of the live database: checked, private, never over an existing file.
        backup = subprocess.run([_bin(), "backup", str(base / "copy.sqlite"), "--config", str(config)],
                                capture_output=True, text=True, timeout=60)
        assert backup.returncode == 0, backup.stderr
        assert "integrity check ok" in backup.stdout and "master key is not in it" in backup.stdout
        assert (base / "copy.sqlite").stat().st_mode & 0o777 == 0o600
        with sqlite3.connect(base / "copy.sqlite") as copy:
            assert copy.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        again = subprocess.run([_bin(), "backup", str(base / "copy.sqlite"), "--config", str(config)],
                               capture_output=True, text=True, timeout=60)
        assert again.returncode == 1 and "exists already" in again.stderr

        locker = sqlite3.connect(base / "data/onetouch.sqlite", timeout=30, isolation_level=None)
        locker.execute("BEGIN EXCLUSIVE")
        try:
            status, blocked = get(url + "/readyz")
            assert status == 503 and not blocked["ready"], blocked
            database = checks(blocked)["database"]
            assert database["ok"] is False and "database is locked" in database["detail"], blocked
            time.sleep(12)  # past the lease renewal and its 10 s busy timeout
            assert proc.poll() is None, "serve stays up while it cannot write"
        finally:
            locker.execute("ROLLBACK")
            locker.close()

        deadline = time.time() + 40
        while (answer := get(url + "/readyz"))[0] != 200 and time.time() < deadline:
            time.sleep(0.5)
        assert answer[0] == 200 and answer[1]["ready"], answer
        assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


def parse_metrics(text):
    """Samples by series as printed (`name{labels}`), after checking each line against the format."""
    assert text.endswith("\n")
    samples = {}
    for line in text.splitlines():
        if line.startswith("#") or not line:
            continue
        name, value = line.rsplit(" ", 1)
        assert re.fullmatch(r'[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="[^"]*",?)*\})?', name), line
        samples[name] = float(value)
    return samples


def test_metrics_match_the_database_after_twenty_hosts(tmp_path):
    """A real serve against the EC2 test bed: after 20 hosts, /metrics says what the database says."""
    stack = Stack(tmp_path)
    try:
        stack.start_serve()
        stack.create([f"m-{i:02d}" for i in range(20)])
        hosts = stack.wait_settled()
        assert all(h["state"] == "ready" for h in hosts)
        with urllib.request.urlopen(stack.url + "/metrics", timeout=10) as r:
            assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            samples = parse_metrics(r.read().decode())
        with sqlite3.connect(f"file:{tmp_path}/onetouch.sqlite?mode=ro", uri=True) as db:
            by_state = dict(db.execute("SELECT state || '/' || COALESCE(step, ''), count(*) FROM hosts GROUP BY 1"))
            reports = dict(db.execute("SELECT stage, count(*) FROM reports GROUP BY stage"))
            provisions = db.execute("SELECT count(*) FROM step_attempts WHERE step = 'provision' AND outcome = 'succeeded'").fetchone()[0]
        assert by_state == {"ready/": 20}
        assert samples['onetouch_hosts{state="ready",step=""}'] == 20
        for stage, count in reports.items():
            assert samples[f'onetouch_host_reports_total{{stage="{stage}"}}'] == count, stage
        assert samples['onetouch_step_duration_seconds_count{step="provision",outcome="succeeded"}'] == provisions == 20
        launches = stack.front_stats()
        assert samples['onetouch_external_call_duration_seconds_count{adapter="ec2",action="launch"}'] >= 20, launches
        assert samples['onetouch_external_call_duration_seconds_count{adapter="mit",action="preregister"}'] == 20
        assert samples["onetouch_sqlite_commit_seconds_count"] > 0
    finally:
        stack.stop()
