#!/usr/bin/env python3
"""EC2 benchmark: onetouch beside Ansible against the same local EC2 test bed.

Prints numbers; asserts nothing about time.  Run through `scripts/bench-ec2`, which builds the
release binary and sets ONETOUCH_BIN.

Every measurement gets a fresh test bed (`Stack` from testbed/e2e: MIT realm, moto, the
fault-injecting front, the simulated host agent, and for onetouch a real `onetouch serve` with a
new database), so numbers never mix.  Everything is stopped by PID afterwards.

onetouch, for each N: create N hosts through the admin API at once (16 client threads), poll
`GET /v1/admin/hosts` every 0.2 s, and take the wall time from the first create until every host
is `ready` (or settled as failed/paused); EC2 calls come from the front's counters.  Once with
the front's token buckets off, once with EC2's buckets emulated (RunInstances: 5 burst, 2 per
second, so N hosts cannot launch faster than (N - 5) / 2 s: the floor).

Ansible, for each N: `testbed/bench/ansible-launch.yml` (amazon.aws.ec2_instance, wait: true)
from the venv in .local/bench-venv, against the same front, counters reset before.  mode `loop`
launches one named instance per host, mode `count` one task of N identical instances.

The table goes to stdout and to .local/bench-ec2.md.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "testbed/e2e"))
from test_onetouch_ec2 import Stack  # noqa: E402  (the e2e test bed, reused as is)

VENV = ROOT / ".local/bench-venv"
PLAYBOOK = ROOT / "testbed/bench/ansible-launch.yml"
OUT = ROOT / ".local/bench-ec2.md"
LOGS = ROOT / ".local/bench-ec2-logs"

WIDE_SUBNET = "10.42.16.0/20"  # 4,091 usable addresses; the seeded 10.42.1.0/24 holds only 251 instances
POLL = 0.2
CREATE_THREADS = 16
RUN_BURST, RUN_RATE = 5, 2  # RunInstances bucket (protocols.md 1.6)

TARGET_MS_PER_HOST = 25  # onetouch, N = 100, no throttling
TARGET_CALLS_PER_HOST = 4.5  # onetouch, happy path
TARGET_FLOOR_RATIO = 1.10  # onetouch, buckets emulated


def log(msg: str) -> None:
    print(f"[bench-ec2 {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def floor_seconds(n: int) -> float:
    return max(0, n - RUN_BURST) / RUN_RATE


def front_args(throttle: bool) -> str:
    return "" if throttle else "--no-throttle"


@contextmanager
def fresh_stack(label: str, throttle: bool):
    """A fresh test bed in its own temporary folder, as (folder, Stack); stopped by PID afterwards."""
    with tempfile.TemporaryDirectory(prefix="onetouch-bench-") as d:
        base = Path(d)
        log(f"{label}: starting the test bed in {base}")
        stack = make_stack(base, throttle)
        try:
            yield base, stack
        finally:
            stack.stop()


def make_stack(base: Path, throttle: bool) -> Stack:
    """A fresh Stack; if its start-up fails half way, stop what did start (by the PIDs it recorded).

    The seeded subnet is a /24: moto hands out 251 addresses and then fails RunInstances with
    HTTP 500 (AWS would say InsufficientFreeAddressesInSubnet).  The benchmark adds a /20 in the
    same VPC and zone (straight to moto, so the front counts nothing) and uses it everywhere.
    """
    try:
        stack = Stack(base, front_args=front_args(throttle))
        e = stack.ec2
        subnet = stack.ec2_client.create_subnet(
            VpcId=e["VPC_ID"], CidrBlock=WIDE_SUBNET, AvailabilityZone=e["AVAILABILITY_ZONE"])["Subnet"]["SubnetId"]
        config = base / "onetouch.yaml"
        config.write_text(config.read_text().replace(f"subnet_id: {e['SUBNET_ID']}\n", f"subnet_id: {subnet}\n"))
        e["SUBNET_ID"] = subnet
        return stack
    except BaseException:
        for script, sub in (("ec2-testbed", "ec2"), ("krb5-testbed", "krb5")):
            if (base / sub / "env").exists():
                subprocess.run([ROOT / "scripts" / script, "stop", base / sub], capture_output=True)
        raise


def descendants(pid: int) -> list[int]:
    """PIDs of every process below pid (Ansible's workers start their own sessions, so a process
    group does not reach them)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def stop_tree(proc: subprocess.Popen) -> None:
    """Stop a process this script started and everything below it, by PID."""
    if proc.poll() is not None:
        return
    pids = descendants(proc.pid)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids + [proc.pid]:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            continue
        if sig == signal.SIGTERM:
            time.sleep(0.5)  # let the workers go too, then make sure
    proc.poll()


def ec2_counts(stats: dict, before: dict | None = None) -> dict:
    """From /_front/stats (minus an earlier snapshot): all EC2 calls, those refused by the buckets,
    per action, per outcome."""
    old = (before or {}).get("byAction", {})
    per_action, by_outcome = {}, {}
    total = throttled = 0
    for action, outcomes in stats["byAction"].items():
        for outcome, n in outcomes.items():
            if outcome == "passthrough":
                continue  # IAM / KMS / moto-api: not EC2 Query calls
            n -= old.get(action, {}).get(outcome, 0)
            if n <= 0:
                continue
            per_action[action] = per_action.get(action, 0) + n
            by_outcome[outcome] = by_outcome.get(outcome, 0) + n
            total += n
            if outcome == "throttled":
                throttled += n
    return {"total": total, "throttled": throttled, "perAction": per_action, "byOutcome": by_outcome}


def percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p * (len(values) - 1))))]


def moto_requests(base: Path) -> int:
    """HTTP requests moto has logged so far, from every client (the front, the host agent, seeding)."""
    try:
        with open(base / "ec2/moto.log", "rb") as f:
            return sum(1 for line in f if b'] "' in line)
    except OSError:
        return 0


def cpu_seconds(pid: int, children: bool = False) -> float:
    """CPU time (user + system) of a process, or of its children that have exited and been waited
    for (e.g. the kadmin runs of `serve` and of the host agent), from /proc; 0 if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # after the command: state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14)
    return sum(int(x) for x in (fields[13:15] if children else fields[11:13])) / os.sysconf("SC_CLK_TCK")


def testbed_pids(stack: Stack) -> dict[str, tuple[int, bool]]:
    """Every process of one measurement (and the children of some), by role: (pid, children)."""
    pids = {}
    if stack.proc:
        pids["onetouch serve"] = (stack.proc.pid, False)
        pids["kadmin runs of onetouch"] = (stack.proc.pid, True)
    for role, key in (("moto", "MOTO_PID"), ("fault front", "FRONT_PID"), ("host agent", "AGENT_PID")):
        if stack.ec2.get(key, "").isdigit():
            pids[role] = (int(stack.ec2[key]), False)
    if stack.ec2.get("AGENT_PID", "").isdigit():
        pids["kadmin runs of the host agent"] = (int(stack.ec2["AGENT_PID"]), True)
    for role, key in (("krb5kdc", "KDC_PID"), ("kadmind", "KADMIND_PID")):
        if stack.krb.get(key, "").isdigit():
            pids[role] = (int(stack.krb[key]), False)
    return pids


def cpu_meter(stack: Stack):
    """Starts counting the CPU time of every process of the test bed; call the result for the
    CPU-seconds each used since."""
    pids = testbed_pids(stack)
    start = {role: cpu_seconds(*pid) for role, pid in pids.items()}
    return lambda: {role: round(cpu_seconds(*pid) - start[role], 2) for role, pid in pids.items()}


def save_logs(label: str, base: Path, names: list[str]) -> Path:
    dest = LOGS / label
    dest.mkdir(parents=True, exist_ok=True)
    for name in names:
        src = base / name
        if src.exists():
            shutil.copy(src, dest / src.name)
    return dest


# --------------------------------------------------------------------------------------------
# onetouch
# --------------------------------------------------------------------------------------------


def run_onetouch(n: int, throttle: bool, client_buckets: bool, timeout: float, keep_logs: bool = False) -> dict:
    """throttle: the front emulates EC2's buckets; client_buckets: onetouch's own token buckets
    (provider `rate_limits`, default true) pace its calls."""
    label = f"onetouch-{n}-{'throttled' if throttle else 'unthrottled'}{'' if client_buckets else '-no-client-buckets'}"
    result = {"tool": "onetouch", "mode": "admin API", "n": n, "throttle": throttle, "client_buckets": client_buckets,
              "load": os.getloadavg()[0]}
    with fresh_stack(label, throttle) as (base, stack):
        if not client_buckets:
            config = base / "onetouch.yaml"
            text = config.read_text()
            assert "\n  kind: ec2\n" in text, text
            config.write_text(text.replace("\n  kind: ec2\n", "\n  kind: ec2\n  rate_limits: false\n"))
        stack.start_serve()
        stats0 = stack.front_stats()
        assert stats0["config"]["throttle"] == throttle, stats0["config"]
        moto0 = moto_requests(base)
        cpu_used = cpu_meter(stack)
        names = [f"bench-{i:04d}" for i in range(n)]
        ready_at: dict[str, float] = {}
        create_errors: list[str] = []

        def create(name):
            try:
                stack.api("POST", "/v1/admin/hosts", {"name": name, "role": "web"})
            except Exception as exc:  # recorded, the host is then missing from the list
                create_errors.append(f"{name}: {exc}")

        log(f"{label}: creating {n} hosts")
        start = time.monotonic()
        pool = ThreadPoolExecutor(CREATE_THREADS)
        futures = [pool.submit(create, name) for name in names]
        hosts, settled, created_s = [], False, None
        deadline = start + timeout
        last_note = start
        while time.monotonic() < deadline:
            if created_s is None and all(f.done() for f in futures):
                created_s = time.monotonic() - start
            try:
                hosts = stack.hosts()
            except Exception as exc:
                log(f"{label}: GET /v1/admin/hosts failed: {exc}")
                hosts = []
            now = time.monotonic() - start
            for h in hosts:
                if h["state"] == "ready" and h["name"] not in ready_at:
                    ready_at[h["name"]] = now
            expected = n - len(create_errors)
            if created_s is not None and len(hosts) >= expected and all(
                    h["state"] in ("ready", "failed", "paused") for h in hosts):
                settled = True
                break
            if time.monotonic() - last_note > 15:
                last_note = time.monotonic()
                by_state = {}
                for h in hosts:
                    key = h["state"] + (f":{h['step']}" if h.get("step") else "")
                    by_state[key] = by_state.get(key, 0) + 1
                log(f"{label}: {now:.0f} s {json.dumps(by_state)}")
            time.sleep(POLL)
        wall = time.monotonic() - start
        cpu = cpu_used()
        stats = stack.front_stats()  # snapshot at the moment all are settled
        moto_total = moto_requests(base) - moto0
        pool.shutdown(wait=True)
        counts = ec2_counts(stats, stats0)
        states = {}
        for h in hosts:
            states[h["state"]] = states.get(h["state"], 0) + 1
        failed = sorted((h for h in hosts if h["state"] != "ready"), key=lambda h: h["state"] != "failed")
        times = list(ready_at.values())
        result.update(
            wall_s=wall, settled=settled, created_s=created_s, ready=states.get("ready", 0), cpu_s=cpu,
            failed=n - states.get("ready", 0), states=states, calls=counts["total"],
            throttled=counts["throttled"], per_action=counts["perAction"],
            by_outcome=counts["byOutcome"], create_errors=create_errors[:5],
            ready_first_s=min(times) if times else None, ready_p50_s=percentile(times, 0.5),
            ready_p95_s=percentile(times, 0.95), moto_requests=moto_total,
            failed_examples=[{"name": h["name"], "state": h["state"], "step": h.get("step"),
                              "reason": h.get("reason")} for h in failed[:5]],
        )
        log(f"{label}: {states} in {wall:.1f} s, {counts['total']} EC2 calls")
        if failed or create_errors or not settled or keep_logs:
            dest = save_logs(label, base, ["serve.log", "ec2/front.log", "ec2/agent.log", "ec2/moto.log"])
            tail = (base / "serve.log").read_text(errors="replace").splitlines()[-40:]
            result["serve_log_tail"] = tail
            result["logs"] = str(dest.relative_to(ROOT))
    return result


# --------------------------------------------------------------------------------------------
# Ansible
# --------------------------------------------------------------------------------------------


def ansible_ready() -> tuple[bool, str]:
    """Whether the venv has ansible-playbook and the amazon.aws collection (checked offline)."""
    doc = VENV / "bin/ansible-doc"
    if not doc.exists():
        return False, f"no {doc.relative_to(ROOT)}; scripts/bench-ec2 creates it with pip (PyPI)"
    out = subprocess.run([doc, "amazon.aws.ec2_instance"], capture_output=True, text=True,
                         env=ansible_env(Path(tempfile.gettempdir())))
    if out.returncode != 0:
        return False, "ansible-doc amazon.aws.ec2_instance failed: " + (out.stderr.strip().splitlines() or ["?"])[-1]
    return True, ""


def ansible_env(base: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "ANSIBLE_"))}
    env.update(
        PATH=f"{VENV / 'bin'}:{env.get('PATH', '')}", AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
        AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull, ANSIBLE_NOCOLOR="1",
        ANSIBLE_RETRY_FILES_ENABLED="0", ANSIBLE_LOCAL_TEMP=str(base / "ansible-tmp"),
        ANSIBLE_HOME=str(base / "ansible-home"), ANSIBLE_LOCALHOST_WARNING="0",
    )
    return env


def run_moto_floor(n: int) -> dict:
    """What moto alone needs for the EC2 work of N hosts: each host's RunInstances (own ClientToken,
    tags, one instance), CreateVolume (encrypted, KMS key) and AttachVolume, one host after another,
    straight to moto (no front, no orchestrator).  moto serves one request at a time, so this is the
    wall-time floor any tool meets on this test bed for that work."""
    label = f"moto-floor-{n}"
    result = {"tool": "moto alone", "mode": "the EC2 calls of N hosts, serially", "n": n, "throttle": False,
              "load": os.getloadavg()[0]}
    with fresh_stack(label, False) as (base, stack):
        e, ec2 = stack.ec2, stack.ec2_client
        cpu_used = cpu_meter(stack)
        start = time.monotonic()
        for i in range(n):
            tags = [{"Key": "Name", "Value": f"floor-{i:04d}"}]
            instance = ec2.run_instances(
                ImageId=e["AMI_ID"], InstanceType="t3.small", MinCount=1, MaxCount=1, SubnetId=e["SUBNET_ID"],
                SecurityGroupIds=[e["SECURITY_GROUP_ID"]], ClientToken=f"floor-{i}",
                MetadataOptions={"HttpTokens": "required", "HttpPutResponseHopLimit": 1},
                TagSpecifications=[{"ResourceType": "instance", "Tags": tags}, {"ResourceType": "volume", "Tags": tags}],
            )["Instances"][0]
            volume = ec2.create_volume(
                AvailabilityZone=instance["Placement"]["AvailabilityZone"], Size=10, Encrypted=True,
                KmsKeyId=e["KMS_KEY_ARN"], ClientToken=f"floor-vol-{i}",
                TagSpecifications=[{"ResourceType": "volume", "Tags": tags}])
            ec2.attach_volume(VolumeId=volume["VolumeId"], InstanceId=instance["InstanceId"], Device="/dev/sdf")
        wall = time.monotonic() - start
        cpu = cpu_used()
        result.update(wall_s=wall, settled=True, ready=n, failed=0, calls=3 * n, throttled=0,
                      per_action={"RunInstances": n, "CreateVolume": n, "AttachVolume": n}, cpu_s=cpu)
        log(f"{label}: {n} hosts' EC2 calls in {wall:.1f} s")
    return result


def run_ansible(n: int, throttle: bool, mode: str, timeout: float) -> dict:
    label = f"ansible-{mode}-{n}-{'throttled' if throttle else 'unthrottled'}"
    result = {"tool": "Ansible", "mode": mode, "n": n, "throttle": throttle, "load": os.getloadavg()[0]}
    with fresh_stack(label, throttle) as (base, stack):
        proc = None
        try:
            e = stack.ec2
            stats0 = stack.front_stats()
            assert stats0["config"]["throttle"] == throttle, stats0["config"]
            # Counters are taken relative to this snapshot: /_front/reset would also reset moto
            # and drop the seeded subnet, security group and image.
            moto0 = moto_requests(base)
            prefix = f"ansible-{n}"
            cmd = [
                str(VENV / "bin/ansible-playbook"), "-i", "localhost,", "-c", "local", str(PLAYBOOK),
                "-e", f"ansible_python_interpreter={VENV / 'bin/python'}",
                "-e", f"n={n}", "-e", f"mode={mode}", "-e", f"name_prefix={prefix}",
                "-e", f"ec2_endpoint={e['EC2_ENDPOINT']}", "-e", f"aws_region={e['AWS_REGION']}",
                "-e", f"ami_id={e['AMI_ID']}", "-e", f"subnet_id={e['SUBNET_ID']}",
                "-e", f"security_group_id={e['SECURITY_GROUP_ID']}",
            ]
            out = open(base / "ansible.log", "wb")
            log(f"{label}: ansible-playbook, mode {mode}, {n} instances")
            cpu_used = cpu_meter(stack)
            children0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            start = time.monotonic()
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=ansible_env(base),
                                    cwd=ROOT, start_new_session=True)
            timed_out = False
            last_note = start
            while proc.poll() is None:
                if time.monotonic() - start > timeout:
                    timed_out = True
                    stop_tree(proc)
                    break
                if time.monotonic() - last_note > 30:
                    last_note = time.monotonic()
                    log(f"{label}: {last_note - start:.0f} s, {stack.front_stats()['byAction'].get('RunInstances', {})}")
                time.sleep(0.1)
            wall = time.monotonic() - start
            out.close()
            cpu = cpu_used()
            children = resource.getrusage(resource.RUSAGE_CHILDREN)  # ansible-playbook and its workers, reaped
            cpu["ansible-playbook (with its workers)"] = round(
                children.ru_utime + children.ru_stime - children0.ru_utime - children0.ru_stime, 2)
            stats = stack.front_stats()
            moto_total = moto_requests(base) - moto0
            counts = ec2_counts(stats, stats0)
            # Count what runs, straight from moto (not through the front: not counted).
            running = 0
            for page in stack.ec2_client.get_paginator("describe_instances").paginate(
                    Filters=[{"Name": "tag:Name", "Values": [f"{prefix}*"]},
                             {"Name": "instance-state-name", "Values": ["running"]}]):
                running += sum(len(r["Instances"]) for r in page["Reservations"])
            recap = [line for line in (base / "ansible.log").read_text(errors="replace").splitlines()
                     if line.startswith("localhost") and "ok=" in line]
            result.update(
                wall_s=wall, settled=not timed_out, timed_out=timed_out, rc=proc.returncode, ready=running,
                failed=n - running, calls=counts["total"], throttled=counts["throttled"], cpu_s=cpu,
                per_action=counts["perAction"], by_outcome=counts["byOutcome"], moto_requests=moto_total, recap=recap[-1:] if recap else [],
            )
            log(f"{label}: rc {proc.returncode}, {running}/{n} running in {wall:.1f} s, {counts['total']} EC2 calls"
                + (" (TIMED OUT)" if timed_out else ""))
            if proc.returncode != 0 or running != n:
                dest = save_logs(label, base, ["ansible.log", "ec2/front.log"])
                result["logs"] = str(dest.relative_to(ROOT))
                result["ansible_log_tail"] = (base / "ansible.log").read_text(errors="replace").splitlines()[-15:]
        finally:
            if proc is not None:
                stop_tree(proc)
    return result


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


def fmt(v, spec=".1f", dash="—"):
    return dash if v is None else format(v, spec)


def throttling(r: dict) -> str:
    if r["throttle"]:
        return "on"
    return "off, onetouch's client buckets on" if r.get("client_buckets") else "off"


def row(r: dict) -> str:
    n = r["n"]
    if "skipped" in r:
        return f"| {r['tool']} | {r['mode']} | {n} | {throttling(r)} | skipped: {r['skipped']} |||||||"
    wall = r["wall_s"]
    done = r["ready"] if r.get("timed_out") else n  # a stopped run: per instance that did launch
    per_host_ms = wall * 1000 / max(1, done)
    calls_per_host = r["calls"] / max(1, done)
    calls = f"**{calls_per_host:.2f}**"
    artefact = r["per_action"].get("ModifyInstanceAttribute", 0) if r["tool"] == "Ansible" else 0
    if artefact:
        calls += f" ({(r['calls'] - artefact) / max(1, done):.2f} on AWS¹)"
    if r["throttle"] and not (r["tool"] == "Ansible" and r["mode"] == "count"):
        fl = floor_seconds(n)
        ratio = f"{wall / fl:.2f} × {fl:.1f} s" if fl else "—"
    else:
        ratio = "—"
    status = f"{r['ready']}/{n} {'running' if r['tool'] == 'Ansible' else 'ready' if r['tool'] == 'onetouch' else 'done'}"
    if r["failed"]:
        status += f", **{r['failed']} not**"
    if not r.get("settled", True):
        status += " (stopped at the time limit; per-host figures per launched instance)" if r.get("timed_out") else " (not settled)"
    p = (f"{fmt(r.get('ready_first_s'))} / {fmt(r.get('ready_p50_s'))} / {fmt(r.get('ready_p95_s'))}"
         if r["tool"] == "onetouch" else "—")
    return (f"| {r['tool']} | {r['mode']} | {n} | {throttling(r)} | {wall:.1f} | "
            f"**{per_host_ms:.0f}** | {calls} | {r['throttled']} | {status} | {ratio} | {p} |")


def targets_for(r: dict) -> str:
    if r["tool"] != "onetouch" or "skipped" in r:
        return ""
    notes = []
    if not r["throttle"] and r.get("client_buckets"):
        return (f"- onetouch N={r['n']} throttling {throttling(r)}: {r['calls'] / r['n']:.2f} calls/host; onetouch paces "
                f"RunInstances to EC2's 2/s itself, so the floor of (N − 5) / 2 s = {floor_seconds(r['n']):.1f} s holds here too "
                f"(total {r['wall_s'] / floor_seconds(r['n']):.2f} × that floor)" if floor_seconds(r['n']) else "")
    if not r["throttle"]:
        ms = r["wall_s"] * 1000 / r["n"]
        cph = r["calls"] / r["n"]
        if r["n"] == 100:
            notes.append(f"wall/host {ms:.0f} ms vs target ≤ {TARGET_MS_PER_HOST} ms: {'met' if ms <= TARGET_MS_PER_HOST else 'MISSED'}")
        notes.append(f"calls/host {cph:.2f} vs target ≤ {TARGET_CALLS_PER_HOST}: {'met' if cph <= TARGET_CALLS_PER_HOST else 'MISSED'}")
    else:
        fl = floor_seconds(r["n"])
        ratio = r["wall_s"] / fl if fl else 0
        ok = ratio <= TARGET_FLOOR_RATIO
        notes.append(f"total {ratio:.2f} × floor vs target ≤ {TARGET_FLOOR_RATIO}: {'met' if ok else 'MISSED'}")
        notes.append(f"failed {r['failed']} vs target 0: {'met' if r['failed'] == 0 else 'MISSED'}")
    return f"- onetouch N={r['n']} throttling {throttling(r)}: " + "; ".join(notes)


def report(results: list[dict], args, notes: list[str]) -> str:
    lines = [
        f"## EC2: onetouch and Ansible, same local test bed ({time.strftime('%Y-%m-%d %H:%M')})",
        "",
        "`scripts/bench-ec2` (release build; moto + fault front + simulated host agent + MIT realm, a fresh "
        f"test bed per row; {os.cpu_count()} cores). onetouch: N hosts created through the admin API at once, "
        "wall time from the first create until all are `ready`; each host is an instance **plus** an encrypted "
        "data volume attached, Kerberos enrollment and the host protocol. Ansible: amazon.aws.ec2_instance, "
        "`wait: true`, instance only. EC2 calls are what the front counted (throttled refusals included). "
        "Throttling on = EC2's token buckets emulated by the front (RunInstances 5 burst, 2/s): floor = (N − 5) / 2 s; "
        "onetouch then runs with its default client-side buckets (provider `rate_limits: true`). Throttling off = the "
        "front's buckets off and, for onetouch, `rate_limits: false`. Per-host figures divide by N. "
        "Test-bed config: concurrency 32, retry 100ms / 2s / 40 attempts / 5m budget (the e2e Stack's); instances go "
        f"into a {WIDE_SUBNET} subnet the benchmark adds (the seeded /24 holds 251).",
        "",
        "| tool | mode | N | throttling | wall s | wall ms / host | EC2 calls / host | throttled calls | hosts | total vs floor | first / p50 / p95 ready s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [row(r) for r in results]
    lines += ["", "EC2 calls per host by action:", ""]
    for r in results:
        if "skipped" in r:
            continue
        per = ", ".join(f"{a} {c / r['n']:.2f}" for a, c in sorted(r["per_action"].items(), key=lambda x: -x[1]))
        thr = f" (throttled refusals: {r['throttled']})" if r["throttled"] else ""
        moto = r.get("moto_requests") or 0
        share = f", {100 * (r['calls'] - r['throttled']) / moto:.0f} % of them through the front" if moto else ""
        lines.append(f"- {r['tool']} {r['mode']}, N={r['n']}, throttling {throttling(r)}: {per}{thr}"
                     f" [moto served {moto / r['n']:.1f} requests per host from all clients{share}; "
                     f"load average at start {r['load']:.1f}]")
        if r.get("cpu_s"):
            total = sum(r["cpu_s"].values())
            lines.append("  CPU seconds while it ran (2 cores = 2 s per wall second): " + ", ".join(
                f"{role} {secs:.1f}" for role, secs in sorted(r["cpu_s"].items(), key=lambda kv: -kv[1]))
                + f"; total {total:.1f} over {r['wall_s']:.1f} s of wall time")
    lines += [
        "",
        "Targets (issue): onetouch ≤ 25 ms wall per host at N = 100 without throttling; ≤ 4.5 EC2 calls per host on "
        "the happy path; with buckets emulated total ≤ 1.10 × floor and zero hosts failed. Ansible measured earlier: "
        "400–930 ms per host for the instance alone, 7 calls per host.",
        "",
    ]
    lines += [t for t in (targets_for(r) for r in results) if t]
    if any(r["tool"] == "Ansible" and r.get("per_action", {}).get("ModifyInstanceAttribute") for r in results):
        lines += ["", "¹ moto artefact: for an instance launched with NetworkInterfaces (how ec2_instance passes subnet "
                  "and security group) moto answers DescribeInstanceAttribute groupSet with no groups, so ec2_instance "
                  "sends one ModifyInstanceAttribute (Groups) per instance that it would not send to AWS; the figure in "
                  "brackets leaves those calls out."]
    if notes:
        lines += [""] + [f"- {n}" for n in notes]
    problems = [r for r in results if "skipped" not in r and (r["failed"] or not r.get("settled", True) or r.get("create_errors"))]
    if problems:
        lines += ["", "### Problems", ""]
        for r in problems:
            lines.append(f"- {r['tool']} {r['mode']} N={r['n']} throttling {throttling(r)}: "
                         f"{r['failed']} not ready; states {json.dumps(r.get('states', {}))}; logs in {r.get('logs')}")
            for ex in r.get("failed_examples", []):
                lines.append(f"  - {ex['name']}: {ex['state']} at {ex['step']}: {ex['reason']}")
            for ce in r.get("create_errors", []):
                lines.append(f"  - create error: {ce}")
            tail = r.get("serve_log_tail") or r.get("ansible_log_tail")
            if tail:
                lines.append("")
                lines.append("  ```")
                lines += [f"  {t[:300]}" for t in tail]
                lines.append("  ```")
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default="100,500", help="comma-separated host counts (default 100,500)")
    p.add_argument("--onetouch", choices=("yes", "no"), default="yes")
    p.add_argument("--floor", choices=("yes", "no"), default="yes",
                   help="also time moto alone doing the EC2 calls of N hosts one after another (throttling off only)")
    p.add_argument("--ansible", choices=("yes", "no"), default="yes")
    p.add_argument("--ansible-modes", default="loop,count", help="loop and/or count (default both)")
    p.add_argument("--throttle", default="off,on",
                   help="off (front and onetouch's client buckets off), on (front emulates EC2's buckets, onetouch's "
                        "default client buckets), front-off (front off, onetouch's client buckets on); default off,on")
    p.add_argument("--keep-logs", action="store_true", help="copy serve/front/agent logs of every onetouch run to .local/bench-ec2-logs")
    p.add_argument("--timeout", type=float, default=900, help="seconds one onetouch measurement may take")
    p.add_argument("--ansible-throttled-max", type=int, default=100,
                   help="run Ansible with throttling on only for N up to this (default 100: its serial loop "
                        "launches below the RunInstances refill rate, and N=500 takes long)")
    p.add_argument("--ansible-timeout", type=float, default=900, help="seconds one ansible-playbook run may take")
    p.add_argument("--merge", action="store_true",
                   help="add to the rows already in .local/bench-ec2.json (same tool, mode, N and throttling replaced)")
    args = p.parse_args()
    # Ctrl-C and SIGTERM unwind through the finally blocks, which stop every process by PID.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    variants = {"off": (False, False), "on": (True, True), "front-off": (False, True)}
    throttles = [variants[t] for t in args.throttle.split(",") if t]
    modes = [m for m in args.ansible_modes.split(",") if m]

    notes = []
    have_ansible = False
    if args.ansible == "yes":
        have_ansible, why = ansible_ready()
        if not have_ansible:
            notes.append(f"Ansible not measured: {why}")
            log(notes[-1])
        else:
            version = subprocess.run([VENV / "bin/ansible", "--version"], capture_output=True, text=True).stdout.splitlines()[0]
            coll = subprocess.run([VENV / "bin/ansible-galaxy", "collection", "list", "amazon.aws"], capture_output=True,
                                  text=True, env=ansible_env(Path(tempfile.gettempdir()))).stdout
            coll_v = next((line.split()[1] for line in coll.splitlines() if line.startswith("amazon.aws ")), "?")
            notes.append(f"Ansible: {version.strip()}, amazon.aws {coll_v}; wall time is the whole ansible-playbook process")

    results = []
    json_out = OUT.with_suffix(".json")
    if args.merge and json_out.exists():
        results = json.loads(json_out.read_text())

    def add(r):
        key = (r["tool"], r["mode"], r["n"], r["throttle"], r.get("client_buckets"))
        for i, old in enumerate(results):
            if (old["tool"], old["mode"], old["n"], old["throttle"], old.get("client_buckets")) == key:
                results[i] = r
                return
        results.append(r)

    for n in sizes:
        for throttle, client_buckets in throttles:
            if args.floor == "yes" and not throttle and not client_buckets:
                add(run_moto_floor(n))
            if args.onetouch == "yes":
                add(run_onetouch(n, throttle, client_buckets, args.timeout, args.keep_logs))
            if have_ansible and (throttle or not client_buckets):  # Ansible once per front setting
                for mode in modes:
                    if throttle and n > args.ansible_throttled_max:
                        add({"tool": "Ansible", "mode": mode, "n": n, "throttle": throttle,
                             "skipped": f"N > --ansible-throttled-max {args.ansible_throttled_max}"})
                        continue
                    r = run_ansible(n, throttle, mode, args.ansible_timeout)
                    add(r)
                    if r.get("timed_out"):
                        notes.append(f"Ansible {mode} N={n} throttling {'on' if throttle else 'off'} stopped after "
                                     f"{args.ansible_timeout:.0f} s (--ansible-timeout)")
            results.sort(key=lambda r: (r["n"], r["throttle"], bool(r.get("client_buckets")) and not r["throttle"],
                                        r["tool"] != "onetouch", r["mode"]))
            OUT.parent.mkdir(parents=True, exist_ok=True)
            OUT.write_text(report(results, args, notes))  # after every group: a long run leaves something behind
            json_out.write_text(json.dumps(results, indent=1, default=str) + "\n")
    text = report(results, args, notes)
    OUT.write_text(text)
    json_out.write_text(json.dumps(results, indent=1, default=str) + "\n")
    print(text)
    log(f"written to {OUT.relative_to(ROOT)} (raw numbers: {OUT.with_suffix('.json').relative_to(ROOT)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
