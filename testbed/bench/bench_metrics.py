"""Benchmark: the cost of a /metrics scrape with 10,000 hosts in the database.

A real `onetouch serve` (ONETOUCH_BIN, else the debug build) on a database holding 10,000 hosts
(ready, failed at every step, destroyed; none unfinished, so the engine is idle), scraped 300 times
in a row. The floor, measured in the same run on the same process: /healthz, which does no work.
Prints the latency (p50, p99) and serve's CPU per request (from /proc/PID/stat) for both.

    python3 testbed/bench/bench_metrics.py [HOSTS]
"""
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "testbed/e2e"))
from test_onetouch_ec2 import _bin, _free_port, wait_for_healthz  # noqa: E402
from test_tls import serve_env, write_config  # noqa: E402

STEPS = ["provision", "preregister", "bootstrap", "attach-volume", "config-pull", "complete"]


def cpu_seconds(pid):
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(url, pid, n):
    latencies = []
    cpu = cpu_seconds(pid)
    for _ in range(n):
        start = time.perf_counter()
        with urllib.request.urlopen(url, timeout=10) as r:
            size = len(r.read())
        latencies.append(time.perf_counter() - start)
    cpu = cpu_seconds(pid) - cpu
    latencies.sort()
    return {"p50_ms": statistics.median(latencies) * 1e3, "p99_ms": latencies[int(n * 0.99) - 1] * 1e3,
            "cpu_ms": cpu / n * 1e3, "bytes": size}


def main():
    hosts = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    with tempfile.TemporaryDirectory(prefix="onetouch-bench-metrics-") as d:
        base = Path(d)
        admin_port, host_port = _free_port(), _free_port()
        config = write_config(base, admin_port, host_port)
        url = f"http://127.0.0.1:{admin_port}"
        log = open(base / "serve.log", "wb")

        def start():
            proc = subprocess.Popen([_bin(), "serve", "--config", str(config)], stdout=subprocess.DEVNULL, stderr=log,
                                    env=serve_env(base))
            wait_for_healthz(proc, url, base / "serve.log")
            return proc

        proc = start()  # creates and migrates the database
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        now = "2026-12-02T00:00:00.000Z"
        with sqlite3.connect(base / "data/onetouch.sqlite") as db:
            rows = []
            for i in range(hosts):
                state, step = ("ready", None) if i % 10 < 8 else ("failed", STEPS[i % 6]) if i % 10 == 8 else ("destroyed", None)
                rows.append((f"h-bench{i:06d}", f"web-{i:05d}", "web", "{}", state, step, now, now))
            db.executemany("INSERT INTO hosts (id, name, role, spec, state, step, created_at, updated_at) "
                           "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
        proc = start()
        try:
            for _ in range(20):  # warm up both
                urllib.request.urlopen(url + "/metrics", timeout=10).read()
                urllib.request.urlopen(url + "/healthz", timeout=10).read()
            n = 300
            floor = measure(url + "/healthz", proc.pid, n)
            scrape = measure(url + "/metrics", proc.pid, n)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
    print(f"{hosts} hosts in the database, {n} requests each, one at a time (binary: {_bin()})")
    print(f"{'':10} {'p50 ms':>8} {'p99 ms':>8} {'CPU ms/request':>15} {'bytes':>7}")
    for name, m in (("/healthz", floor), ("/metrics", scrape)):
        print(f"{name:10} {m['p50_ms']:8.2f} {m['p99_ms']:8.2f} {m['cpu_ms']:15.2f} {m['bytes']:7d}")
    print(f"a scrape costs {scrape['cpu_ms'] - floor['cpu_ms']:.2f} ms of CPU over the floor")


if __name__ == "__main__":
    main()
