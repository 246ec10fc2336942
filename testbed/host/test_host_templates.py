"""The rendered user-data and bootstrap script, checked without running them: cloud-init's schema
(Debian's cloud-init under the system python), shellcheck, the renderer's refusals, and values that
try to inject commands when the script sources host.env."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

import hostkit

HOSTILE = {
    # none of these holds a quote, backslash or control character, so the renderer lets them through
    "playbook": "x.yml; touch {pwned}",
    "config_repository": "https://example.com/$(touch {pwned})/`touch {pwned}`/a b.git",
    "config_branch": "main$(touch {pwned})",
    "fqdn": "web-01.prod.example.com",
}


def hostile_values(pwned: Path) -> dict[str, str]:
    values = {k: v.format(pwned=pwned) for k, v in HOSTILE.items()}
    return hostkit.default_values(**values)


def test_rendering_leaves_no_tag_and_carries_the_script_line_for_line():
    user_data, script = hostkit.render(hostkit.default_values())
    assert user_data.startswith("#cloud-config\n")
    doc = yaml.safe_load(user_data)
    files = {entry["path"]: entry for entry in doc["write_files"]}
    assert files["/usr/local/sbin/onetouch-bootstrap"]["content"] == script
    assert script.startswith("#!/bin/bash\n# onetouch bootstrap:")  # UserDataTests.swift checks this too
    assert "\nset -euo pipefail\n" in script
    for path in ("/etc/onetouch/host.env", "/etc/systemd/system/onetouch-bootstrap.service",
                 "/etc/systemd/system/onetouch-pull.service", "/etc/systemd/system/onetouch-pull.timer"):
        assert path in files
    assert files["/etc/onetouch/host.env"]["permissions"] == "0600"
    assert files["/usr/local/sbin/onetouch-bootstrap"]["permissions"] == "0700"
    assert doc["runcmd"] == [["systemctl", "enable", "--now", "--no-block", "onetouch-bootstrap.service"]]


def test_units_say_what_the_protocol_says():
    user_data, _ = hostkit.render(hostkit.default_values(pull_period_seconds="600", pull_splay_seconds="270"))
    files = {entry["path"]: entry["content"] for entry in yaml.safe_load(user_data)["write_files"]}
    service = files["/etc/systemd/system/onetouch-bootstrap.service"]
    assert "ExecStart=/usr/local/sbin/onetouch-bootstrap\n" in service
    assert "After=network-online.target" in service and "WantedBy=multi-user.target" in service
    assert "Restart=on-failure" in service
    assert "StartLimitIntervalSec=0" in service  # Restart= never gives up
    timer = files["/etc/systemd/system/onetouch-pull.timer"]
    assert "OnActiveSec=270s\n" in timer and "OnUnitActiveSec=600s\n" in timer
    pull = files["/etc/systemd/system/onetouch-pull.service"]
    assert "ExecStart=/usr/local/sbin/onetouch-bootstrap pull\n" in pull
    assert "SuccessExitStatus=75" in pull


def test_the_user_data_fits_ec2s_16_kib_with_long_values():
    """RunInstances refuses user-data over 16 KiB (raw, before base64). The EC2 adapter sends user-data
    that does not fit gzip-compressed (EC2Requests.swift), which cloud-init unpacks: what must fit is
    the compressed form, with room to grow."""
    import gzip
    values = hostkit.default_values(
        fqdn="web-01.eu-west-1.prod.internal.example-corp.com", public_url="https://onetouch.ops.example-corp.com:8443",
        config_repository="https://git.example-corp.com/platform/host-configuration.git", token="t" * 64,
        config_branch="production", playbook="roles/web.yml")
    user_data, _ = hostkit.render(values)
    compressed = len(gzip.compress(user_data.encode()))
    assert compressed < 12 * 1024, compressed


def test_the_script_never_turns_on_tracing():
    """Tracing would print the token and the one-time password into the logs."""
    _, script = hostkit.render(hostkit.default_values())
    tracing = re.compile(r"\bset\s+-[A-Za-z]*x|-o\s+xtrace|\bbash\s+-[A-Za-z]*x")
    code = [line for line in script.splitlines() if not line.lstrip().startswith("#")]
    assert [line for line in code if tracing.search(line)] == []


@pytest.mark.parametrize(
    "field,value",
    [("playbook", "web.yml'; rm -rf /"), ("config_branch", "--upload-pack=touch /tmp/pwned"),
     ("config_repository", "-oProxyCommand=x"), ("playbook", "-e@/etc/shadow"), ("public_url", "http://x\\y"),
     ("fqdn", "a\nb"), ("token", "tok\x1b")],
)
def test_the_renderer_refuses_what_the_user_data_cannot_carry(field, value):
    with pytest.raises(hostkit.UnsafeValue):
        hostkit.render(hostkit.default_values(**{field: value}))


@pytest.mark.skipif(not Path("/usr/bin/cloud-init").exists(), reason="cloud-init not installed (scripts/install-test-deps)")
@pytest.mark.parametrize("hostile", [False, True])
def test_cloud_init_schema_accepts_the_user_data(tmp_path, hostile):
    values = hostile_values(tmp_path / "pwned") if hostile else hostkit.default_values()
    user_data, _ = hostkit.render(values)
    path = tmp_path / "user-data.yaml"
    path.write_text(user_data)
    # /usr/bin/cloud-init runs under the system python: cloudinit is not importable from pyenv's.
    result = subprocess.run(["/usr/bin/python3", "/usr/bin/cloud-init", "schema", "-c", str(path)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Valid cloud-config" in result.stdout


@pytest.mark.skipif(not shutil.which("shellcheck"), reason="shellcheck not installed (apt-get install shellcheck)")
def test_shellcheck_passes_on_the_rendered_script(tmp_path):
    _, script = hostkit.render(hostkit.default_values())
    path = tmp_path / "onetouch-bootstrap"
    path.write_text(script)
    result = subprocess.run(["shellcheck", "--severity=style", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hostile_values_stay_literal_when_host_env_is_sourced(tmp_path):
    pwned = tmp_path / "pwned"
    values = hostile_values(pwned)
    user_data, _ = hostkit.render(values)
    env = tmp_path / "host.env"
    env.write_text(hostkit.host_env_values(user_data))
    names = {"ONETOUCH_PLAYBOOK": "playbook", "ONETOUCH_CONFIG_REPO": "config_repository",
             "ONETOUCH_CONFIG_BRANCH": "config_branch", "ONETOUCH_HOST_NAME": "fqdn", "ONETOUCH_TOKEN": "token"}
    program = 'set -euo pipefail; . "$1"; ' + "; ".join(f'printf "%s\\0" "${name}"' for name in names)
    result = subprocess.run(["bash", "-c", program, "bash", str(env)], capture_output=True)
    assert result.returncode == 0, result.stderr
    got = result.stdout.decode().split("\0")[:-1]
    assert got == [values[field] for field in names.values()]
    assert not pwned.exists()
