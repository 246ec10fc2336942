"""The real rendered bootstrap script, run as root against a fake host API (protocol v2).

Each test gets a sandbox (hostkit.Sandbox): a private mount namespace, an overlay of / whose writes
land in the test's temp directory, a loop device as the data volume, stub commands first in PATH for
kadmin, kinit, ansible-pull, systemctl, apt-get and ipa-client-install, and chroot. mkfs.ext4, blkid,
mount, flock, curl and python3 are the real ones. The script is not changed for the test in any way:
no environment switch, only PATH and the real paths.
"""

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

import hostkit
from hostkit import OTP, REPORT_CREDENTIAL, TOKEN, VOLUME_ID, FakeHostAPI, Sandbox, mit_answer

REASON = hostkit.sandbox_unavailable()
pytestmark = pytest.mark.skipif(REASON is not None, reason=REASON or "")

HOST_ID = "h-3xej93edm2d0"


@pytest.fixture
def host(tmp_path):
    """make(api, **sandbox options) -> Sandbox for the rendered user-data pointing at `api`."""
    sandboxes = []

    def make(api, values=None, **options):
        user_data, _ = hostkit.render(hostkit.default_values(public_url=api.url, **(values or {})))
        sandbox = Sandbox(tmp_path / f"host{len(sandboxes)}", user_data, **options)
        sandboxes.append(sandbox)
        return sandbox

    yield make
    for sandbox in sandboxes:
        sandbox.close()


def stages(api):
    return [r["stage"] for r in api.reports()]


def assert_no_secret_leaked(sandbox):
    """The one-time password is nowhere on the host afterwards; the token only in host.env."""
    everything = sandbox.all_text("/")
    assert OTP not in everything
    assert everything.count(TOKEN) == 1 and TOKEN in sandbox.file("/etc/onetouch/host.env")
    for call in sandbox.calls():
        assert OTP not in " ".join(call["argv"]) and TOKEN not in " ".join(call["argv"])
        assert TOKEN not in call["stdin"]
        assert REPORT_CREDENTIAL not in " ".join(call["argv"]) and REPORT_CREDENTIAL not in call["stdin"]
    assert not sandbox.exists("/run/onetouch/otp") and not sandbox.exists("/run/onetouch/auth")
    assert not sandbox.exists("/run/onetouch/report-auth")
    if sandbox.exists("/etc/onetouch/report-credential"):  # the report credential: only in its 0600 file
        assert everything.count(REPORT_CREDENTIAL) == 1


def test_happy_path_reports_in_order_enrolls_before_the_pull_and_keeps_secrets(host):
    with FakeHostAPI(HOST_ID, TOKEN,
                     enrollment=[(425, {"error": "not yet"}), (200, mit_answer())],
                     volume=[(425, {"error": "not yet"}), (200, {"volumeId": VOLUME_ID})],
                     reports=[(503, {"error": "busy"}), (200, {"recorded": True})]) as api:
        sandbox = host(api)
        result = sandbox.boot()
        assert result.returncode == 0, result.stdout

        reports = api.reports()
        assert [r["stage"] for r in reports] == ["booted", "volume-mounted", "configured"]
        assert reports[1]["volumeId"] == VOLUME_ID and reports[2]["exitStatus"] == 0
        # a 503 on the first report is retried; every call carries the token
        assert [r["status"] for r in api.requests if r["path"].endswith("/reports")][:2] == [503, 200]
        assert api.calls()[0] == "POST claim", "the machine claims the host with its first call, before any stage"
        assert all(r["auth"] == f"Bearer {TOKEN}" for r in api.requests if not r["path"].endswith("/runs"))
        # the first configuration run reports with the report credential (issued before it), never the token
        (run,) = api.runs()
        assert run["exitStatus"] == 0 and run["checkMode"] is False
        assert [r["auth"] for r in api.requests if r["path"].endswith("/runs")] == [f"Bearer {REPORT_CREDENTIAL}"]
        assert api.calls().index("POST report-credential") < api.calls().index("POST runs")
        assert sandbox.mode("/etc/onetouch/report-credential") == 0o600
        # ... and this machine's boot secret: one, 256 random bits, kept 0600 in /var/lib/onetouch/claim
        claims = {r["claim"] for r in api.requests if not r["path"].endswith("/runs")}
        assert len(claims) == 1 and re.fullmatch(r"[0-9a-f]{64}", claims.pop() or "")
        assert sandbox.mode("/var/lib/onetouch/claim") == 0o600
        assert api.calls().count("GET enrollment") == 2  # 425, then 200

        calls = [c["name"] for c in sandbox.calls()]
        assert calls.index("kadmin") < calls.index("kinit") < calls.index("ansible-pull")
        (kadmin,) = sandbox.calls("kadmin")
        assert kadmin["argv"] == ["-r", "PROD.EXAMPLE.COM", "-s", "10.0.2.100:18749", "-p", "host/web-01.prod.example.com",
                                  "ktadd", "-k", "/etc/krb5.keytab", "host/web-01.prod.example.com"]
        assert kadmin["stdin"] == OTP + "\n"
        (kinit,) = sandbox.calls("kinit")
        assert kinit["argv"][:3] == ["-k", "-t", "/etc/krb5.keytab"]
        assert kinit["argv"][-1] == "host/web-01.prod.example.com@PROD.EXAMPLE.COM"

        krb5 = sandbox.file("/etc/krb5.conf")
        assert krb5.startswith("# Written by onetouch")
        for line in ("default_realm = PROD.EXAMPLE.COM", "kdc = 10.0.2.100:18888", "admin_server = 10.0.2.100:18749",
                     "rdns = false", "dns_lookup_kdc = false", "dns_lookup_realm = false", "udp_preference_limit = 1",
                     ".prod.example.com = PROD.EXAMPLE.COM"):
            assert line in krb5

        (pull,) = sandbox.calls("ansible-pull")
        assert pull["argv"] == ["-U", "https://git.example.com/config.git", "-C", "main", "-d", "/var/lib/onetouch/config", "web.yml"]
        assert pull["env"]["PYTHONUNBUFFERED"] == "1" and pull["env"]["GIT_TERMINAL_PROMPT"] == "0"
        assert pull["umask"] == "0o22"  # what the playbook creates is not 0600 (the script's own umask is 077)
        systemctl = [c["argv"] for c in sandbox.calls("systemctl")]
        assert systemctl[0] == ["enable", "--now", "--no-block", "onetouch-bootstrap.service"]  # cloud-init's runcmd
        assert ["enable", "--now", "onetouch-pull.timer"] in systemctl
        assert sandbox.calls("apt-get") == []  # everything is installed: no network for packages

        # the volume: made ext4 (labelled data), in fstab by UUID with nofail
        fstab = [line for line in sandbox.file("/etc/fstab").splitlines() if " /data " in line]
        assert len(fstab) == 1 and re.fullmatch(r"UUID=[0-9a-f-]{36} /data ext4 defaults,nofail 0 2", fstab[0]), fstab
        assert "making an ext4 filesystem" in sandbox.file("/var/log/onetouch/volume.log")
        assert sandbox.file("/var/lib/onetouch/state") == "done\n"
        for stage in ("packages", "enrollment", "credential", "volume", "config-pull", "bootstrap"):
            assert sandbox.exists(f"/var/log/onetouch/{stage}.log")
        assert_no_secret_leaked(sandbox)

        # A second run (the next boot) exits at once, without a single request or command.
        requests, commands = len(api.requests), len(sandbox.calls())
        started = time.monotonic()
        again = sandbox.start_service("onetouch-bootstrap.service")
        assert again.returncode == 0 and "done already" in again.stdout
        assert time.monotonic() - started < 5
        assert len(api.requests) == requests and len(sandbox.calls()) == commands


def test_a_failed_pull_reports_only_its_own_output_then_runs_again_on_a_new_attempt(host):
    behaviour = {
        "ansible-pull": {"exit": [2, 3, 0], "output": ["PULL-1-OUTPUT fatal: [localhost]: FAILED!", "PULL-2-OUTPUT unreachable",
                                                       "PULL-3-OUTPUT ok=3"]},
        "kadmin": {"output": ["KADMIN-OUTPUT"]},
    }
    task = [(200, {"step": "none", "attempt": "a1"}),  # right after the first failure: the attempt it failed under
            (200, {"step": "config-pull", "attempt": "a2"}),  # onetouch retry --from config-pull
            (200, {"step": "config-pull", "attempt": "a2"}),  # right after the second failure
            (200, {"step": "config-pull", "attempt": "a3"})]  # retried again
    with FakeHostAPI(HOST_ID, TOKEN, task=task) as api:
        sandbox = host(api, behaviour=behaviour)
        result = sandbox.boot(timeout=240)
        assert result.returncode == 0, result.stdout

        assert stages(api) == ["booted", "volume-mounted", "failed"] * 2 + ["booted", "volume-mounted", "configured"]
        first, second = [r for r in api.reports() if r["stage"] == "failed"]
        assert first["failedStage"] == "config-pull" and first["exitStatus"] == 2
        assert second["failedStage"] == "config-pull" and second["exitStatus"] == 3
        assert "PULL-1-OUTPUT" in first["logTail"] and "PULL-2-OUTPUT" in second["logTail"]
        # only that stage's output of that run: not the enrollment, not the volume, not an earlier pull
        for other in ("KADMIN-OUTPUT", "kinit", "making an ext4", "/data", "reported"):
            assert other not in first["logTail"] and other not in second["logTail"], other
        assert "PULL-1-OUTPUT" not in second["logTail"]
        # after a failure: /task until the attempt changes, then from the top without asking for the
        # one-time password again (the keytab is there) and without making the filesystem again
        calls = api.calls()
        assert calls.count("GET task") == 4
        assert calls.count("GET enrollment") == 1
        assert calls.index("GET task") > calls.index("POST reports") and calls.count("GET volume") == 3
        assert len(sandbox.calls("ansible-pull")) == 3 and len(sandbox.calls("kadmin")) == 1
        assert sandbox.file("/var/log/onetouch/volume.log").count("making an ext4 filesystem") == 1
        assert sandbox.file("/var/lib/onetouch/state") == "done\n"


def test_a_reboot_in_the_middle_of_the_pull_continues_at_the_next_boot(host):
    behaviour = {"ansible-pull": {"power_off_on": [1]}}
    with FakeHostAPI(HOST_ID, TOKEN) as api:
        sandbox = host(api, behaviour=behaviour)
        first = sandbox.boot()
        assert first.returncode == -9, first.stdout  # the power cut
        assert stages(api) == ["booted", "volume-mounted"]
        assert sandbox.file("/var/lib/onetouch/state") == "running\n"
        uuid = sandbox.file("/etc/fstab").split("UUID=")[1].split()[0]

        sandbox.reboot()
        second = sandbox.start_service("onetouch-bootstrap.service")
        assert second.returncode == 0, second.stdout
        assert stages(api) == ["booted", "volume-mounted", "booted", "volume-mounted", "configured"]
        assert len({r["claim"] for r in api.requests if not r["path"].endswith("/runs")}) == 1, "the machine presents the same boot secret after a reboot"
        assert api.calls().count("GET enrollment") == 1 and len(sandbox.calls("kadmin")) == 1
        assert sandbox.file("/etc/fstab").split("UUID=")[1].split()[0] == uuid
        assert sandbox.file("/var/log/onetouch/volume.log").count("making an ext4 filesystem") == 1
        assert len(sandbox.calls("ansible-pull")) == 2


def test_410_with_a_keytab_present_skips_enrollment(host):
    with FakeHostAPI(HOST_ID, TOKEN, enrollment=[(410, {"error": "gone"})]) as api:
        sandbox = host(api)
        sandbox.path("/etc/krb5.keytab").write_text("a keytab from an earlier boot\n")
        result = sandbox.boot()
        assert result.returncode == 0, result.stdout
        assert stages(api) == ["booted", "volume-mounted", "configured"]
        assert "GET enrollment" not in api.calls()
        assert sandbox.calls("kadmin") == [] and sandbox.calls("kinit") == []
        assert "enrolled already" in sandbox.file("/var/log/onetouch/enrollment.log")


def test_a_retry_given_before_the_hosts_first_poll_still_runs_it_again(host):
    """The failed report's answer names the attempt the failure ends; the retry that follows is new even
    when the host's first /task poll comes after it."""
    behaviour = {"ansible-pull": {"exit": [2, 0], "output": ["PULL-1 FAILED!", "PULL-2 ok=3"]}}
    with FakeHostAPI(HOST_ID, TOKEN, reports=[(200, {"recorded": True, "attempt": "a1"})],
                     task=[(200, {"step": "config-pull", "attempt": "a2"})]) as api:
        sandbox = host(api, behaviour=behaviour)
        result = sandbox.boot(timeout=180)
        assert result.returncode == 0, result.stdout
        assert stages(api) == ["booted", "volume-mounted", "failed", "booted", "volume-mounted", "configured"]
        assert api.calls().count("GET task") == 1


def test_410_without_a_keytab_fails_enrollment_with_what_to_do(host):
    with FakeHostAPI(HOST_ID, TOKEN, enrollment=[(410, {"error": "gone"})], task=[(401, {"error": "revoked"})]) as api:
        sandbox = host(api)
        result = sandbox.boot()
        assert result.returncode == 0, result.stdout  # 401 on /task: the token is revoked, stop
        assert stages(api) == ["booted", "failed"]
        failed = api.reports()[1]
        assert failed["failedStage"] == "enrollment" and failed["exitStatus"] != 0
        assert "the one-time password was already used" in failed["logTail"]
        assert "onetouch retry web-01 --from preregister" in failed["logTail"]
        assert "oneTimePassword" not in failed["logTail"] and "410" in failed["logTail"]
        assert api.calls()[-1] == "GET task"
        assert "GET volume" not in api.calls() and sandbox.calls("ansible-pull") == []
        assert sandbox.calls("kadmin") == []
        assert sandbox.file("/var/lib/onetouch/state").startswith("failed")


def test_freeipa_enrollment_uses_ipa_client_install_with_domain_and_ca(host):
    answer = {"backend": "freeipa", "realm": "IPA.EXAMPLE.COM", "server": "ipa.example.com", "domain": "ipa.example.com",
              "principal": "host/web-01.prod.example.com", "oneTimePassword": OTP,
              "caCertificate": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"}
    with FakeHostAPI(HOST_ID, TOKEN, enrollment=[(200, answer)]) as api:
        sandbox = host(api)
        result = sandbox.boot()
        assert result.returncode == 0, result.stdout
        assert stages(api) == ["booted", "volume-mounted", "configured"]
        (ipa,) = sandbox.calls("ipa-client-install")
        assert ipa["argv"] == ["-U", "--server", "ipa.example.com", "--domain", "ipa.example.com", "--realm", "IPA.EXAMPLE.COM",
                               "--hostname", "web-01.prod.example.com", "--ca-cert-file", "/etc/onetouch/ipa-ca.crt", "-w", OTP]
        assert "BEGIN CERTIFICATE" in sandbox.file("/etc/onetouch/ipa-ca.crt")
        assert not sandbox.exists("/etc/krb5.conf")  # ipa-client-install writes its own
        assert sandbox.calls("kadmin") == [] and len(sandbox.calls("kinit")) == 1
        assert not sandbox.exists("/run/onetouch/otp")


@pytest.mark.parametrize("kind", ["https-token", "ssh-key"])
def test_the_repository_credential_reaches_every_pull(host, kind):
    secret = "ghp_Sekrit0123456789" if kind == "https-token" else "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----"
    with FakeHostAPI(HOST_ID, TOKEN, credential=[(200, {"kind": kind, "secret": secret})]) as api:
        sandbox = host(api)
        assert sandbox.boot().returncode == 0
        assert stages(api) == ["booted", "volume-mounted", "configured"]
        # the timer's pull, later: the same credential, from pull.env
        timer = sandbox.start_service("onetouch-pull.service")
        assert timer.returncode == 0, timer.stdout
        pulls = sandbox.calls("ansible-pull")
        assert len(pulls) == 2
        assert oct(sandbox.path("/etc/onetouch/pull.env").stat().st_mode & 0o777) == "0o600"
        if kind == "https-token":
            assert all(p["env"]["GIT_ASKPASS"] == "/etc/onetouch/git-askpass" for p in pulls)
            assert oct(sandbox.path("/etc/onetouch/git-token").stat().st_mode & 0o777) == "0o600"
            user = sandbox.run(["/etc/onetouch/git-askpass", "Username for 'https://git.example.com': "])
            password = sandbox.run(["/etc/onetouch/git-askpass", "Password for 'https://x-access-token@git.example.com': "])
            assert user.stdout == "x-access-token\n" and password.stdout == secret + "\n"
        else:
            command = "ssh -i /etc/onetouch/deploy-key -o IdentitiesOnly=yes -o StrictHostKeyChecking=accept-new"
            assert all(p["env"]["GIT_SSH_COMMAND"] == command for p in pulls)
            assert sandbox.file("/etc/onetouch/deploy-key") == secret + "\n"
            assert oct(sandbox.path("/etc/onetouch/deploy-key").stat().st_mode & 0o777) == "0o600"
        assert secret not in sandbox.all_text("/var/log")


@pytest.mark.parametrize(
    "link,answer",
    [
        ("disk/by-id/nvme-Amazon_Elastic_Block_Store_vol0123456789abcdef0", {"volumeId": VOLUME_ID}),
        ("disk/by-id/virtio-vol-0123456789abcdef", {"volumeId": VOLUME_ID}),
        ("disk/by-id/scsi-0QEMU_QEMU_HARDDISK_vol-0123456789abcdef0", {"volumeId": VOLUME_ID}),
        ("xvdf", {"volumeId": VOLUME_ID, "device": "/dev/sdf"}),
    ],
)
def test_the_volume_is_found_by_serial_or_xen_device_name(host, link, answer):
    with FakeHostAPI(HOST_ID, TOKEN, volume=[(200, answer)]) as api:
        sandbox = host(api, volume_link=link)
        result = sandbox.boot()
        assert result.returncode == 0, result.stdout
        assert stages(api) == ["booted", "volume-mounted", "configured"]
        assert "/dev/loop" in sandbox.file("/var/log/onetouch/volume.log")


def test_a_missing_package_is_installed_and_a_failed_install_is_reported_as_packages(host):
    behaviour = {"apt-get": {"exit": [0, 100], "output": ["Hit:1 http://deb.debian.org/debian bookworm InRelease",
                                                           "E: Unable to locate package git"]}}
    with FakeHostAPI(HOST_ID, TOKEN, task=[(401, {"error": "revoked"})]) as api:
        sandbox = host(api, behaviour=behaviour, hide=("/usr/bin/git",))
        result = sandbox.boot()
        assert result.returncode == 0, result.stdout
        assert all(c["umask"] == "0o22" for c in sandbox.calls("apt-get"))
        update, install = [c["argv"] for c in sandbox.calls("apt-get")]
        assert update[-1] == "update"
        assert install[-4:] == ["install", "-y", "--no-install-recommends", "git"]
        assert stages(api) == ["failed"]  # before booted: the packages come first
        failed = api.reports()[0]
        assert failed["failedStage"] == "packages" and failed["exitStatus"] == 100
        assert "Unable to locate package git" in failed["logTail"]


def test_hostile_values_reach_ansible_pull_as_literal_arguments(host):
    values = {
        "config_repository": "https://example.com/$(touch${IFS}/tmp/pwned)/`touch${IFS}/tmp/pwned`.git",
        "config_branch": "main;touch${IFS}/tmp/pwned",
        "playbook": "x.yml;touch${IFS}/tmp/pwned|$(id)",
    }
    with FakeHostAPI(HOST_ID, TOKEN) as api:
        sandbox = host(api, values=values, volume=False)
        result = sandbox.start_service("onetouch-pull.service")
        assert result.returncode == 0, result.stdout
        (pull,) = sandbox.calls("ansible-pull")
        assert pull["argv"] == ["-U", values["config_repository"], "-C", values["config_branch"],
                                "-d", "/var/lib/onetouch/config", values["playbook"]]
        assert not sandbox.exists("/tmp/pwned")


@pytest.mark.parametrize(
    "name,value",
    [("ONETOUCH_PLAYBOOK", "x.yml; touch /tmp/pwned"), ("ONETOUCH_CONFIG_REPO", "https://example.com/a b.git version=x"),
     ("ONETOUCH_CONFIG_BRANCH", "--upload-pack=touch /tmp/pwned")],
)
def test_values_ansible_pull_would_split_or_take_as_options_are_refused(host, name, value):
    """The renderer refuses a leading '-'; white space it lets through, but ansible-pull splits its
    command line on it, so the script refuses both, even in a host.env the renderer did not write."""
    with FakeHostAPI(HOST_ID, TOKEN) as api:
        sandbox = host(api, volume=False)
        env = sandbox.path("/etc/onetouch/host.env")
        text = re.sub(rf"^{name}=.*$", f"{name}='{value}'", env.read_text(), flags=re.M)
        env.write_text(text)
        result = sandbox.start_service("onetouch-pull.service")
        assert result.returncode != 0
        assert f"refusing {name}=" in result.stdout
        assert sandbox.calls("ansible-pull") == [] and not sandbox.exists("/tmp/pwned")


def test_the_timer_pull_never_overlaps_another(host):
    with FakeHostAPI(HOST_ID, TOKEN) as api:
        sandbox = host(api, volume=False)
        held = sandbox.run(["flock", "/run/lock/onetouch-pull.lock", "/usr/local/sbin/onetouch-bootstrap", "pull"])
        assert held.returncode == 75, held.stdout  # SuccessExitStatus=75 in onetouch-pull.service
        assert sandbox.calls("ansible-pull") == []
        free = sandbox.run(["/usr/local/sbin/onetouch-bootstrap", "pull"])
        assert free.returncode == 0 and len(sandbox.calls("ansible-pull")) == 1


def test_the_failed_report_log_tail_is_bounded(host):
    big = "x" * 200 + "\n"
    behaviour = {"ansible-pull": {"exit": [4], "output": [big * 2000 + "THE-LAST-LINE"]}}
    with FakeHostAPI(HOST_ID, TOKEN, task=[(401, {"error": "revoked"})]) as api:
        sandbox = host(api, behaviour=behaviour)
        assert sandbox.boot().returncode == 0
        failed = api.reports()[-1]
        assert failed["stage"] == "failed" and failed["exitStatus"] == 4
        assert failed["logTail"].rstrip().endswith("THE-LAST-LINE")
        assert len(json.dumps(failed["logTail"]).encode()) <= 61440


KRB5_TOOLS = ("krb5kdc", "kadmind", "kdb5_util", "kadmin", "kinit", "klist")


@pytest.mark.skipif(not all(shutil.which(t) or Path("/usr/sbin", t).exists() for t in KRB5_TOOLS),
                    reason="MIT krb5 server/client not installed (scripts/install-test-deps)")
def test_enrollment_with_the_real_kadmin_and_kinit_against_a_throwaway_realm(host, tmp_path):
    """No stub for kadmin and kinit: the script's krb5.conf, `kadmin -r -s -p … ktadd` with the
    password on stdin and `kinit -k` against scripts/krb5-testbed's realm on 127.0.0.1."""
    realm_dir = tmp_path / "realm"
    testbed = hostkit.REPO / "scripts" / "krb5-testbed"
    subprocess.run([str(testbed), "start", str(realm_dir)], check=True, capture_output=True)
    try:
        env = dict(os.environ)
        for line in (realm_dir / "env").read_text().splitlines():
            key, _, value = line.partition("=")
            env[key] = value
        env["PATH"] = env.get("PATH", "") + ":/usr/sbin:/sbin"
        principal = "host/web-01.onetouch.test"
        kadmin = ["kadmin", "-p", env["PROVISIONER_PRINCIPAL"], "-k", "-t", env["PROVISIONER_KEYTAB"]]
        subprocess.run([*kadmin, "addprinc", principal], input=f"{OTP}\n{OTP}\n", text=True, env=env,
                       check=True, capture_output=True)
        answer = mit_answer(realm="ONETOUCH.TEST", server="127.0.0.1", principal=principal, domain="onetouch.test",
                            kdc=f"127.0.0.1:{env['KDC_PORT']}", adminServer=env["KADMIN_ADDRESS"])
        with FakeHostAPI(HOST_ID, TOKEN, enrollment=[(200, answer)]) as api:
            sandbox = host(api, stubs=tuple(s for s in hostkit.STUBS if s not in ("kadmin", "kinit")))
            result = sandbox.boot()
            assert result.returncode == 0, result.stdout
            assert stages(api) == ["booted", "volume-mounted", "configured"]
            log = sandbox.file("/var/log/onetouch/enrollment.log")
            assert "kvno 2" in log and "kinit -k got a ticket" in log
            # the host's key was rotated by the host itself: kvno 1 (addprinc) -> 2 (ktadd)
            info = subprocess.run([*kadmin, "getprinc", principal], env=env, capture_output=True, text=True, check=True)
            assert re.search(r"Key: vno 2\b", info.stdout), info.stdout
            keytab = sandbox.path("/etc/krb5.keytab")
            listing = subprocess.run(["klist", "-k", str(keytab)], env=env, capture_output=True, text=True, check=True)
            assert principal in listing.stdout
            assert_no_secret_leaked(sandbox)
    finally:
        subprocess.run([str(testbed), "stop", str(realm_dir)], capture_output=True)


# ------------------------------------------------------------------------- FreeIPA enrollment (issue 14)
IPA_ANSWER = {"backend": "freeipa", "realm": "IPA.EXAMPLE.COM", "server": "ipa.example.com", "domain": "ipa.example.com",
              "principal": "host/web-01.prod.example.com", "oneTimePassword": OTP,
              "caCertificate": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"}


def test_the_ipa_client_install_stub_applies_the_real_argument_rules(host):
    """The stub refuses what the real installer refuses, so the tests above prove the command line."""
    with FakeHostAPI(HOST_ID, TOKEN) as api:
        sandbox = host(api)
        sandbox.path("/tmp/ca.crt").write_text("CA\n")
        base = ["-U", "--realm", "IPA.EXAMPLE.COM", "--ca-cert-file", "/tmp/ca.crt", "-w", "x"]
        cases = [
            (["--server", "ipa.example.com", "--hostname", "a.example.com"], 2, "--server cannot be used without providing --domain"),
            (["--server", "ipa.example.com", "--domain", "example.com", "--hostname", "A.example.com"], 1, "must be lower case"),
            (["--server", "ipa.example.com", "--domain", "example.com", "--hostname", "a" * 60 + ".example.com"], 1, "64"),
            (["--server", "ipa.example.com", "--domain", "example.com", "--hostname", "a.example.com", "--ca-cert-file", "/nope"],
             2, "does not exist"),
        ]
        for extra, code, text in cases:
            result = sandbox.run([hostkit.STUB_DIR + "/ipa-client-install", *base, *extra])
            assert result.returncode == code, (extra, result.stdout, result.stderr)
            assert text in result.stdout + result.stderr
        ok = ["--server", "ipa.example.com", "--domain", "example.com", "--hostname", "a.example.com"]
        assert sandbox.run([hostkit.STUB_DIR + "/ipa-client-install", *base, *ok]).returncode == 0
        assert sandbox.run([hostkit.STUB_DIR + "/ipa-client-install", *base, *ok]).returncode == 3  # configured already


def test_freeipa_without_a_ca_fails_before_the_installer_fetches_it_over_http(host):
    answer = {k: v for k, v in IPA_ANSWER.items() if k != "caCertificate"}
    with FakeHostAPI(HOST_ID, TOKEN, enrollment=[(200, answer)], task=[(401, {"error": "revoked"})]) as api:
        sandbox = host(api)
        result = sandbox.boot()
        assert result.returncode == 0, result.stdout
        assert stages(api) == ["booted", "failed"]
        failed = api.reports()[1]
        assert failed["failedStage"] == "enrollment"
        assert "set ca_bundle" in failed["logTail"]
        assert sandbox.calls("ipa-client-install") == []
        assert not sandbox.exists("/run/onetouch/otp")


def test_a_failed_ipa_client_install_reports_its_log_tail(host):
    behaviour = {"ipa-client-install": {"exit": [1]}}
    with FakeHostAPI(HOST_ID, TOKEN, enrollment=[(200, IPA_ANSWER)], task=[(401, {"error": "revoked"})]) as api:
        sandbox = host(api, behaviour=behaviour)
        result = sandbox.boot()
        assert result.returncode == 0, result.stdout
        assert stages(api) == ["booted", "failed"]
        failed = api.reports()[1]
        assert failed["failedStage"] == "enrollment"
        assert "ipa-client-install failed (exit 1)" in failed["logTail"]
        assert "Joining realm failed: Incorrect password." in failed["logTail"]
        assert OTP not in failed["logTail"]


def test_ipa_client_install_configured_already_is_not_an_installer_failure(host):
    """Exit 3 (configured already, from an earlier run) is not reported as an installer failure; the
    keytab check that follows decides."""
    with FakeHostAPI(HOST_ID, TOKEN, enrollment=[(200, IPA_ANSWER)], task=[(401, {"error": "revoked"})]) as api:
        sandbox = host(api)
        sandbox.path("/etc/ipa").mkdir(parents=True, exist_ok=True)
        sandbox.path("/etc/ipa/default.conf").write_text("[global]\n")
        result = sandbox.boot()
        assert result.returncode == 0, result.stdout
        assert len(sandbox.calls("ipa-client-install")) == 1
        log = sandbox.file("/var/log/onetouch/enrollment.log")
        assert "IPA client is already configured" in log and "ipa-client-install failed" not in log
        assert "kinit" in log  # the keytab check decides
