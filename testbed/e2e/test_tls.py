"""End to end: `onetouch serve` with TLS and the host API on an address of its own.

A real `onetouch serve` with a certificate made here (openssl, for 127.0.0.1), `listen` for the admin
API and `host_listen` for the host API. Nothing in EC2 or the realm is contacted: no host is created.
What users care about: tokens never cross the network in clear unless they say so, each address
serves only its own API, and a certificate that does not load stops `serve` before it writes anything.
"""
import json
import os
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from test_onetouch_ec2 import _bin, _free_port

TOKEN = "tls-admin-token-0123456789abcdef"


@pytest.fixture
def base():
    with tempfile.TemporaryDirectory(prefix="onetouch-tls-") as d:
        yield Path(d)


def make_certificate(base: Path):
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
         "-subj", "/CN=onetouch test", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(base / "key.pem"), "-out", str(base / "cert.pem")],
        check=True, capture_output=True)
    os.chmod(base / "key.pem", 0o600)


def write_config(base: Path, admin_port: int, host_port: int, extra: str = "") -> Path:
    (base / "admin-token").write_text(f"ops {TOKEN}\n")
    os.chmod(base / "admin-token", 0o600)
    (base / "provisioner.keytab").write_text("not a keytab: never read, no host is created\n")
    config = base / "onetouch.yaml"
    config.write_text(f"""
listen: 127.0.0.1:{admin_port}
host_listen: 127.0.0.1:{host_port}
public_url: https://127.0.0.1:{host_port}
database: data/onetouch.sqlite
master_key_file: master.key
admin_tokens: {{file: admin-token}}
domain: onetouch.test
config: {{repository: "https://git.example.test/config.git"}}
roles:
  web: {{instance_type: t3.small}}
provider: {{kind: ec2, region: us-east-1, endpoint: "http://127.0.0.1:9", image_id: ami-12345678}}
directory:
  kind: mit
  realm: ONETOUCH.TEST
  admin_server: 127.0.0.1:9
  kdc: 127.0.0.1:9
  principal: onetouch/admin
  keytab: provisioner.keytab
{extra}
""")
    return config


def serve_env(base: Path):
    return dict(os.environ, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
                AWS_CONFIG_FILE=str(base / "none"), AWS_SHARED_CREDENTIALS_FILE=str(base / "none"))


def status(url, context, method="GET", headers=None):
    req = urllib.request.Request(url, method=method, headers=headers or {}, data=b"" if method == "POST" else None)
    try:
        with urllib.request.urlopen(req, timeout=5, context=context) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def test_tls_on_both_addresses_each_serving_its_own_api(base):
    make_certificate(base)
    admin_port, host_port = _free_port(), _free_port()
    config = write_config(base, admin_port, host_port, "tls: {certificate: cert.pem, key: key.pem}")
    log = open(base / "serve.log", "wb")
    proc = subprocess.Popen([_bin(), "serve", "--config", str(config)], stdout=log, stderr=subprocess.STDOUT, env=serve_env(base))
    context = ssl.create_default_context(cafile=str(base / "cert.pem"))
    admin, host = f"https://127.0.0.1:{admin_port}", f"https://127.0.0.1:{host_port}"
    try:
        deadline = time.time() + 30
        def up():
            try:
                return status(admin + "/healthz", context) == 200
            except urllib.error.URLError:
                return False

        while not up():
            assert proc.poll() is None, (base / "serve.log").read_text()
            assert time.time() < deadline, "serve did not answer over TLS"
            time.sleep(0.2)
        auth = {"Authorization": f"Bearer {TOKEN}"}
        assert status(admin + "/v1/admin/hosts", context, headers=auth) == 200
        assert status(host + "/healthz", context) == 200
        # Each address serves its own API only.
        assert status(host + "/v1/admin/hosts", context, headers=auth) == 404
        assert status(admin + "/v1/hosts/h-none/claim", context, method="POST", headers=auth) == 404
        assert status(host + "/v1/hosts/h-none/claim", context, method="POST", headers=auth) == 401
        # Plain HTTP gets no answer on a TLS port; a client that does not trust the certificate fails.
        with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
            urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/healthz", timeout=5).read()
        with pytest.raises(urllib.error.URLError) as refused:
            urllib.request.urlopen(admin + "/healthz", timeout=5, context=ssl.create_default_context())
        assert "CERTIFICATE_VERIFY_FAILED" in str(refused.value)
        # The CLI trusts a private CA through ONETOUCH_CA_FILE; without it, it says what to set.
        cli = subprocess.run([_bin(), "list", "--json"], capture_output=True, text=True, timeout=30,
                             env=dict(os.environ, ONETOUCH_SERVER=admin, ONETOUCH_TOKEN=TOKEN, ONETOUCH_CA_FILE=str(base / "cert.pem")))
        assert cli.returncode == 0 and json.loads(cli.stdout) == [], cli.stderr
        untrusting = subprocess.run([_bin(), "list"], capture_output=True, text=True, timeout=30,
                                    env=dict(os.environ, ONETOUCH_SERVER=admin, ONETOUCH_TOKEN=TOKEN))
        assert untrusting.returncode == 3
        assert "has a certificate this machine does not trust; set ONETOUCH_CA_FILE" in untrusting.stderr, untrusting.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)


def test_a_certificate_that_does_not_load_stops_serve_before_it_writes_anything(base):
    (base / "cert.pem").write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    (base / "key.pem").write_text("nothing\n")
    os.chmod(base / "key.pem", 0o600)
    config = write_config(base, _free_port(), _free_port(), "tls: {certificate: cert.pem, key: key.pem}")
    run = subprocess.run([_bin(), "serve", "--config", str(config)], capture_output=True, text=True, timeout=60, env=serve_env(base))
    assert run.returncode != 0
    assert f"tls: cannot use {base}/cert.pem and {base}/key.pem as a PEM certificate chain and its private key" in run.stderr, run.stderr
    assert not (base / "data").exists() and not (base / "master.key").exists(), "nothing written"


def test_listening_beyond_this_machine_without_tls_is_refused_unless_asked(base):
    config = write_config(base, _free_port(), _free_port())
    config.write_text(config.read_text().replace("listen: 127.0.0.1:", "listen: 0.0.0.0:", 1))
    run = subprocess.run([_bin(), "serve", "--config", str(config)], capture_output=True, text=True, timeout=60, env=serve_env(base))
    assert run.returncode == 2, run.stderr
    assert "listen: listening on 0.0.0.0 without TLS sends admin and host tokens in clear" in run.stderr
    assert "allow_plain_http: true" in run.stderr
    assert not (base / "data").exists()
