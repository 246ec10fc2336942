"""End to end: `log_format: json`. A real `onetouch serve` writes one JSON object a line, with the
host's id as a field, and no secret; nothing in EC2 or the realm is reachable, so the host's first
step retries (which is what gets logged)."""
import json
import os
import signal
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from test_onetouch_ec2 import _bin, _free_port, wait_for_healthz
from test_tls import TOKEN, serve_env, write_config


@pytest.fixture
def base():
    with tempfile.TemporaryDirectory(prefix="onetouch-log-") as d:
        yield Path(d)


def test_json_log_lines_parse_and_carry_the_host(base):
    admin_port, host_port = _free_port(), _free_port()
    config = write_config(base, admin_port, host_port, "log_format: json")
    config.write_text(config.read_text().replace(f"public_url: https://127.0.0.1:{host_port}", f"public_url: http://127.0.0.1:{host_port}"))
    err = open(base / "serve.log", "wb")
    proc = subprocess.Popen([_bin(), "serve", "--config", str(config)], stdout=subprocess.DEVNULL, stderr=err,
                            env=dict(serve_env(base), ONETOUCH_LOG_LEVEL="debug"))
    try:
        wait_for_healthz(proc, f"http://127.0.0.1:{admin_port}", base / "serve.log")
        req = urllib.request.Request(f"http://127.0.0.1:{admin_port}/v1/admin/hosts", method="POST",
                                     data=json.dumps({"name": "web-01", "role": "web"}).encode(),
                                     headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
        host = json.loads(urllib.request.urlopen(req, timeout=10).read())
        time.sleep(3)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
    text = (base / "serve.log").read_text()
    lines = [json.loads(line) for line in text.splitlines()]  # every line is one JSON object
    assert all({"time", "level", "message"} <= set(line) for line in lines)
    about_host = [line for line in lines if line.get("host.id") == host["id"]]
    assert any(line["message"] == "Host created" and line.get("host.name") == "web-01" for line in about_host), lines
    assert len(about_host) >= 2, "the host's first step is logged with its id too"
    assert TOKEN not in text
