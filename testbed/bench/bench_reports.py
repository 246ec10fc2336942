"""Benchmark: `serve` ingesting configuration-run reports from 1,000 hosts.

A real `onetouch serve` (ONETOUCH_BIN, else the debug build) with 1,000 ready hosts, each holding a
report credential. Two loads on the host listener:
  * steady: reports at the rate of 1,000 hosts on a 10-minute pull period (1.67 a second), for
    STEADY seconds (default 120: 200 reports);
  * burst: all 1,000 hosts report at once (250 client threads).
Each report is a real POST /v1/hosts/ID/runs body (a recap, changed tasks, a commit): authenticated,
validated, rate-limited, and recorded with its drift state in one transaction (synchronous=FULL).
The floor, measured in the same run on the same process with the same load: GET /healthz.
Prints latency (p50, p99) and serve's CPU per request (from /proc/PID/stat).

    python3 testbed/bench/bench_reports.py [HOSTS] [STEADY_SECONDS]
"""
import hashlib
import json
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "testbed/e2e"))
from test_onetouch_ec2 import _bin, _free_port, wait_for_healthz  # noqa: E402
from test_tls import serve_env, write_config  # noqa: E402

BODY = json.dumps({
    "commit": "4c95f3c8f8b4f5e3d658164a9fdacdadcbe37140", "started": "2026-12-02T10:00:00Z", "durationSeconds": 41.5,
    "exitStatus": 0, "checkMode": False,
    "recap": {"ok": 42, "changed": 2, "unreachable": 0, "failed": 0, "skipped": 7},
    "changedTasks": ["Write nginx site", "Restart nginx"], "failedTasks": [],
}).encode()


def cpu_seconds(pid):
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed(request):
    start = time.perf_counter()
    with urllib.request.urlopen(request, timeout=60) as r:
        r.read()
        assert r.status == 200, r.status
    return time.perf_counter() - start


def summary(latencies, cpu):
    latencies = sorted(latencies)
    n = len(latencies)
    return {"n": n, "p50_ms": statistics.median(latencies) * 1e3, "p99_ms": latencies[max(0, int(n * 0.99) - 1)] * 1e3,
            "cpu_ms": cpu / n * 1e3}


def steady(requests, pid, rate):
    """One request every 1/rate seconds, each on its own thread (a slow answer does not delay the next)."""
    latencies, lock, threads = [], threading.Lock(), []
    cpu = cpu_seconds(pid)
    start = time.perf_counter()

    def one(request):
        latency = timed(request)
        with lock:
            latencies.append(latency)

    for i, request in enumerate(requests):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        thread = threading.Thread(target=one, args=(request,))
        thread.start()
        threads.append(thread)
    for thread in threads:
        thread.join()
    return summary(latencies, cpu_seconds(pid) - cpu)


def burst(requests, pid):
    cpu = cpu_seconds(pid)
    with ThreadPoolExecutor(max_workers=250) as pool:
        latencies = list(pool.map(timed, requests))
    return summary(latencies, cpu_seconds(pid) - cpu)


def main():
    hosts = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    steady_seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 120
    rate = hosts / 600  # a 10-minute pull period
    with tempfile.TemporaryDirectory(prefix="onetouch-bench-reports-") as d:
        base = Path(d)
        admin_port, host_port = _free_port(), _free_port()
        config = write_config(base, admin_port, host_port, extra="drift: {cloud_check_every: 0s}")
        admin, host_url = f"http://127.0.0.1:{admin_port}", f"http://127.0.0.1:{host_port}"
        log = open(base / "serve.log", "wb")

        def start():
            proc = subprocess.Popen([_bin(), "serve", "--config", str(config)], stdout=subprocess.DEVNULL, stderr=log,
                                    env=dict(serve_env(base), ONETOUCH_LOG_LEVEL="warning"))
            wait_for_healthz(proc, admin, base / "serve.log")
            return proc

        proc = start()  # creates and migrates the database
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        now = "2026-12-02 10:00:00.000"
        credentials = {f"h-bench{i:06d}": os.urandom(24).hex() for i in range(hosts)}
        with sqlite3.connect(base / "data/onetouch.sqlite") as db:
            db.executemany(
                "INSERT INTO hosts (id, name, role, spec, state, created_at, updated_at) VALUES (?, ?, 'web', '{}', 'ready', ?, ?)",
                [(hid, f"web-{i:05d}", now, now) for i, hid in enumerate(credentials)])
            db.executemany("INSERT INTO report_credentials (host_id, hash, issued_at) VALUES (?, ?, ?)",
                           [(hid, hashlib.sha256(c.encode()).digest(), now) for hid, c in credentials.items()])
            db.executemany("INSERT INTO drift (host_id, since, last_report_at) VALUES (?, ?, ?)",
                           [(hid, now, now) for hid in credentials])

        def reports():
            return [urllib.request.Request(f"{host_url}/v1/hosts/{hid}/runs", data=BODY, method="POST",
                                           headers={"Authorization": f"Bearer {c}", "Content-Type": "application/json"})
                    for hid, c in credentials.items()]

        def healthz(n):
            return [urllib.request.Request(f"{host_url}/healthz") for _ in range(n)]

        proc = start()
        try:
            for request in healthz(20):  # warm up
                timed(request)
            n = int(steady_seconds * rate)
            results = {
                "steady /healthz": steady(healthz(n), proc.pid, rate),
                "steady /runs": steady(reports()[:n], proc.pid, rate),
                "burst /healthz": burst(healthz(hosts), proc.pid),
                "burst /runs": burst(reports(), proc.pid),
            }
            with sqlite3.connect(base / "data/onetouch.sqlite") as db:
                recorded = db.execute("SELECT COUNT(*) FROM config_runs").fetchone()[0]
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
    print(f"{hosts} ready hosts; steady: {rate:.2f} requests/s (a 10-minute period) for {steady_seconds:.0f} s; "
          f"burst: all {hosts} at once, 250 client threads (binary: {_bin()})")
    print(f"{'':16} {'requests':>8} {'p50 ms':>8} {'p99 ms':>8} {'CPU ms/request':>15}")
    for name, m in results.items():
        print(f"{name:16} {m['n']:8d} {m['p50_ms']:8.2f} {m['p99_ms']:8.2f} {m['cpu_ms']:15.2f}")
    assert recorded == results["steady /runs"]["n"] + hosts, recorded
    print(f"runs recorded: {recorded}; a report costs {results['steady /runs']['cpu_ms'] - results['steady /healthz']['cpu_ms']:.2f} ms "
          f"(steady) and {results['burst /runs']['cpu_ms'] - results['burst /healthz']['cpu_ms']:.2f} ms (burst) of CPU over the floor")


if __name__ == "__main__":
    main()
