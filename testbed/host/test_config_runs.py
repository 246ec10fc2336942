"""Configuration runs reported with the real ansible-pull (Debian's ansible-core, as on the guests).

The rendered bootstrap runs as root in the host sandbox (hostkit), with every stub but ansible-pull:
ansible-pull clones a small local git repository, runs its playbook, and the bootstrap's callback
plugin writes the recap that `POST /runs` carries. Each test changes the repository or the host the
way drift happens and reads what the host reported: changed, in sync, check mode (what would change,
nothing changed), a failed task, an unreachable host, a playbook that does not parse.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

import hostkit
from hostkit import REPORT_CREDENTIAL, TOKEN, FakeHostAPI, Sandbox

REASON = hostkit.sandbox_unavailable() or (None if shutil.which("ansible-pull") else "ansible-pull is not installed")
pytestmark = pytest.mark.skipif(REASON is not None, reason=REASON or "")

HOST_ID = "h-3xej93edm2d0"

PLAY = """\
- name: Drift test play
  hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: Write managed file
      ansible.builtin.copy:
        dest: /srv/managed.txt
        content: "managed by the configuration repository\\n"
        mode: "0644"
    - name: Always ok task
      ansible.builtin.debug:
        msg: hello
"""

FAILING = PLAY + """\
    - name: Optional failing task
      ansible.builtin.command: /bin/false
"""

UNREACHABLE = PLAY + """\
    - name: Task on a host that does not answer
      ansible.builtin.ping:
      vars:
        ansible_connection: ssh
        ansible_host: 127.0.0.1
        ansible_port: 9
"""

BROKEN = PLAY + """\
    - name: Conflicting actions
      ansible.builtin.debug:
        msg: one
      ansible.builtin.command: /bin/true
"""


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout.strip()


def commit(repo: Path, playbook: str, message: str) -> str:
    (repo / "local.yml").write_text(playbook)
    git(repo, "add", "local.yml")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


@pytest.fixture
def repo(tmp_path):
    path = tmp_path / "config"
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    return path


def boot(tmp_path, repo, api) -> Sandbox:
    values = hostkit.default_values(public_url=api.url, config_repository=f"file://{repo}", playbook="local.yml")
    user_data, _ = hostkit.render(values)
    stubs = tuple(s for s in hostkit.STUBS if s != "ansible-pull")
    sandbox = Sandbox(tmp_path / "host", user_data, stubs=stubs)
    result = sandbox.boot(timeout=300)
    assert result.returncode == 0, result.stdout
    return sandbox


def timer_run(sandbox: Sandbox):
    """What onetouch-pull.timer starts."""
    return sandbox.start_service("onetouch-pull.service", timeout=300)


def test_runs_report_changed_then_in_sync_then_check_mode_without_changing_anything(tmp_path, repo):
    first_commit = commit(repo, PLAY, "first")
    answers = [
        (200, {"recorded": True, "drift": "corrected", "nextRun": "apply"}),
        (200, {"recorded": True, "drift": "in-sync", "nextRun": "check"}),  # `onetouch check` was asked for
        (200, {"recorded": True, "drift": "in-sync", "nextRun": "apply"}),
    ]
    with FakeHostAPI(HOST_ID, TOKEN, runs=answers) as api:
        sandbox = boot(tmp_path, repo, api)
        try:
            # the first run (part of setting the host up) changed the file
            (first,) = api.runs()
            assert first["exitStatus"] == 0 and first["checkMode"] is False
            assert first["commit"] == first_commit
            assert first["recap"] == {"ok": 2, "changed": 1, "unreachable": 0, "failed": 0, "skipped": 0}
            assert first["changedTasks"] == ["Write managed file"] and first["failedTasks"] == []
            assert "outputTail" not in first  # only a failed run sends its output
            assert sandbox.file("/srv/managed.txt") == "managed by the configuration repository\n"

            # the timer's run: nothing to change; the answer asks for check mode next time
            assert timer_run(sandbox).returncode == 0
            second = api.runs()[1]
            assert second["recap"]["changed"] == 0 and second["changedTasks"] == [] and second["exitStatus"] == 0
            assert sandbox.exists("/var/lib/onetouch/check-requested")

            # someone edits the managed file by hand; the check run sees it and leaves it alone
            sandbox.path("/srv/managed.txt").write_text("edited by hand\n")
            result = timer_run(sandbox)
            assert result.returncode == 0, result.stdout
            third = api.runs()[2]
            assert third["checkMode"] is True
            assert third["changedTasks"] == ["Write managed file"] and third["recap"]["changed"] == 1
            assert sandbox.file("/srv/managed.txt") == "edited by hand\n"
            assert "--- before: /srv/managed.txt" in result.stdout  # --diff showed it on the host (its journal)
            assert not sandbox.exists("/var/lib/onetouch/check-requested")

            # the next run applies again: drift found and corrected
            assert timer_run(sandbox).returncode == 0
            fourth = api.runs()[3]
            assert fourth["checkMode"] is False and fourth["changedTasks"] == ["Write managed file"]
            assert sandbox.file("/srv/managed.txt") == "managed by the configuration repository\n"
            assert all(r["auth"] == f"Bearer {REPORT_CREDENTIAL}" for r in api.requests if r["path"].endswith("/runs"))
        finally:
            sandbox.close()


def test_a_failed_task_an_unreachable_host_and_a_broken_playbook_each_report_what_happened(tmp_path, repo):
    commit(repo, PLAY, "first")
    with FakeHostAPI(HOST_ID, TOKEN) as api:
        sandbox = boot(tmp_path, repo, api)
        try:
            failing = commit(repo, FAILING, "a task that fails")
            assert timer_run(sandbox).returncode == 2
            run = api.runs()[-1]
            assert run["exitStatus"] == 2 and run["commit"] == failing
            assert run["recap"] == {"ok": 2, "changed": 0, "unreachable": 0, "failed": 1, "skipped": 0}
            assert [t["task"] for t in run["failedTasks"]] == ["Optional failing task"]
            assert "FAILED!" in run["outputTail"] and "PLAY RECAP" in run["outputTail"]

            unreachable = commit(repo, UNREACHABLE, "a host that does not answer")
            assert timer_run(sandbox).returncode == 4
            run = api.runs()[-1]
            assert run["exitStatus"] == 4 and run["commit"] == unreachable
            assert run["recap"]["unreachable"] == 1 and run["recap"]["failed"] == 0
            assert run["failedTasks"][0]["message"].startswith("unreachable: ")

            # exit 4 again, but no recap: the playbook never ran (the same code as unreachable)
            broken = commit(repo, BROKEN, "a playbook that does not parse")
            assert timer_run(sandbox).returncode == 4
            run = api.runs()[-1]
            assert run["exitStatus"] == 4 and "recap" not in run and run["commit"] == broken
            assert "conflicting action statements" in run["outputTail"]
        finally:
            sandbox.close()


def test_a_rotated_credential_is_kept_and_used_and_a_revoked_one_stops_only_the_report(tmp_path, repo):
    commit(repo, PLAY, "first")
    rotated = "rpt-Rotated-0123456789abcdefABCDEF"
    answers = [
        (200, {"recorded": True, "drift": "corrected", "nextRun": "apply"}),
        (200, {"recorded": True, "drift": "in-sync", "nextRun": "apply", "credential": rotated}),
        (200, {"recorded": True, "drift": "in-sync", "nextRun": "apply"}),
    ]
    with FakeHostAPI(HOST_ID, TOKEN, runs=answers) as api:
        sandbox = boot(tmp_path, repo, api)
        try:
            assert timer_run(sandbox).returncode == 0
            assert sandbox.file("/etc/onetouch/report-credential") == rotated + "\n"
            assert sandbox.mode("/etc/onetouch/report-credential") == 0o600
            # the answer that carried it is not left on the host, nor is it in a log
            assert rotated not in sandbox.all_text("/run") and rotated not in sandbox.all_text("/var/log")
            assert timer_run(sandbox).returncode == 0
            auths = [r["auth"] for r in api.requests if r["path"].endswith("/runs")]
            assert auths == [f"Bearer {REPORT_CREDENTIAL}"] * 2 + [f"Bearer {rotated}"]

            api.report_credential = "revoked-at-destroy"  # the server no longer knows the host's credential
            result = timer_run(sandbox)
            assert result.returncode == 0, "a refused report does not fail the configuration run"
            assert "the run report was not accepted: 401" in result.stdout
        finally:
            sandbox.close()
