"""Bad input: one clear line naming what is wrong, as the last thing printed, and the running lab untouched.

Three groups, in this order (the first two need no lab; the third builds one lab for all its cases):

- ./teardown.sh whatever state the lab's files are in: lab.json truncated, {}, [], garbage or missing, with
  namespaces, a bridge and processes left to find by the lab's name and state directory;
- ./lab with a broken lab.json: one line, no traceback;
- ./setup.sh with a bad setting, and ./lab with an unknown member, each run against ONE running lab, whose
  member ids, leaders, etcd pids and lab.json must be the same after every case.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from lablib import (
    LAB_NAME,
    ROOT,
    STATE,
    lab_json,
    lab_leftovers,
    member_view,
    pid_of,
    setup_lab,
    teardown_lab,
)

pytestmark = pytest.mark.lab


@dataclass
class Output:
    returncode: int
    text: str  # stdout and stderr merged, in the order they were written

    @property
    def last_line(self) -> str:
        lines = [line for line in self.text.splitlines() if line.strip()]
        return lines[-1] if lines else ""


def run_merged(argv: list[str], timeout: float = 300, env: dict | None = None) -> Output:
    proc = subprocess.run(
        argv,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )
    return Output(proc.returncode, proc.stdout)


def assert_clear_error(out: Output, message: str, prefix: str = "ERROR: ") -> None:
    """Non-zero, no traceback, and the last line printed starts with prefix and names the problem."""
    assert out.returncode != 0, out.text[-3000:]
    assert "Traceback" not in out.text, out.text[-3000:]
    assert out.last_line.startswith(prefix), out.text[-3000:]
    assert message in out.last_line, out.text[-3000:]


# --- ./teardown.sh with the lab's files in any state ------------------------------------------------------

LAB_JSON_STATES = {
    "truncated": "{",
    "empty object": "{}",
    "a list": "[]",
    "garbage": "\x00\x01 not json at all \xff",
    "missing": None,
}


def sleeper(tag: str) -> list[str]:
    """A bounded process (5 minutes at most) whose command line names the lab's state directory."""
    return [sys.executable, "-c", "import time; time.sleep(300)", f"{STATE}/{tag}"]


@pytest.fixture
def lab_remains(request):
    """What a lab leaves when its lab.json is lost: a namespace with etcd-like processes in it, the bridge, a
    writer whose pid file is lost, an etcd pid file, and the state dir with lab.json in the given state."""
    assert not lab_leftovers(), f"a lab is up: {lab_leftovers()}"
    netns = f"{LAB_NAME}-etcd-0"
    subprocess.run(["ip", "netns", "add", netns], check=True)
    subprocess.run(["ip", "link", "add", f"{LAB_NAME}0", "type", "bridge"], check=True)
    (STATE / "nodes" / "etcd-0").mkdir(parents=True)
    in_netns = subprocess.Popen(["ip", "netns", "exec", netns, *sleeper("nodes/etcd-0/data")])
    (STATE / "nodes" / "etcd-0" / "etcd.pid").write_text(f"{in_netns.pid}\n")
    lost_writer = subprocess.Popen(sleeper("workload/etcd-0"), start_new_session=True)
    content = LAB_JSON_STATES[request.param]
    if content is not None:
        (STATE / "lab.json").write_text(content)
    yield [in_netns, lost_writer]
    for proc in (in_netns, lost_writer):
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
    if lab_leftovers():
        teardown_lab()


@pytest.mark.parametrize("lab_remains", list(LAB_JSON_STATES), indirect=True)
def test_teardown_works_whatever_state_lab_json_is_in(lab_remains):
    out = run_merged(["./teardown.sh"])
    assert out.returncode == 0, out.text[-4000:]
    assert "Traceback" not in out.text
    assert lab_leftovers() == []
    for proc in lab_remains:
        proc.wait(timeout=15)  # stopped by the sweep; a wait that hangs fails the test


# --- ./lab with a broken lab.json ---------------------------------------------------------------------------


@pytest.fixture
def broken_lab_json(request):
    assert not lab_leftovers(), f"a lab is up: {lab_leftovers()}"
    STATE.mkdir(parents=True)
    (STATE / "lab.json").write_text(request.param)
    yield STATE / "lab.json"
    teardown_lab()


LAB_COMMANDS = [["nodes"], ["exec", "etcd-0", "--", "true"], ["logs", "etcd-0"], ["status"]]


@pytest.mark.parametrize("broken_lab_json", ["{", "{}", "[1, 2]"], indirect=True)
@pytest.mark.parametrize("command", LAB_COMMANDS, ids=lambda c: c[0])
def test_lab_command_with_a_broken_lab_json(broken_lab_json, command):
    out = run_merged(["./lab", *command], timeout=60)
    assert_clear_error(out, f"{broken_lab_json} is not", prefix="lab: ")
    assert len(out.text.strip().splitlines()) == 1, out.text


def test_lab_command_without_a_lab():
    assert not lab_leftovers(), f"a lab is up: {lab_leftovers()}"
    out = run_merged(["./lab", "nodes"], timeout=60)
    assert_clear_error(out, "no lab is set up here", prefix="lab: ")


# --- ./setup.sh with a bad setting, against one running lab -------------------------------------------------


@dataclass(frozen=True)
class LabState:
    views: dict  # member name -> (member id, leader id, member names)
    etcd_pids: dict  # member name -> pid
    layout: str  # lab.json as written


def lab_state() -> LabState:
    lab = lab_json()
    views = {}
    for member in lab["members"]:
        view = member_view(lab["etcd_bin_dir"], member["name"], member["client_url"])
        views[member["name"]] = view and (view.member_id, view.leader, view.members)
    pids = {m["name"]: pid_of(m["name"]) for m in lab["members"]}
    return LabState(views=views, etcd_pids=pids, layout=(STATE / "lab.json").read_text())


@pytest.fixture(scope="module")
def running_lab():
    """One lab for every bad setting: built once, checked after each case, torn down at the end."""
    assert not lab_leftovers(), f"a lab is up: {lab_leftovers()}"
    setup_lab()
    before = lab_state()
    assert all(before.views.values()), before.views  # every member answers
    assert all(before.etcd_pids.values()), before.etcd_pids
    assert len({v[1] for v in before.views.values()}) == 2  # the split: two leaders
    yield before
    teardown_lab()
    assert not lab_leftovers(), lab_leftovers()


@pytest.fixture
def untouched(running_lab):
    yield
    after = lab_state()
    assert after.etcd_pids == running_lab.etcd_pids, "an etcd member was restarted"
    assert after.views == running_lab.views, "member ids or leaders changed"
    assert after.layout == running_lab.layout, "lab.json changed"


SETUP_CASES = [
    (["-e", "lab_members=2"], "lab_members=2 is out of range: the lab builds 3 to 7 members"),
    (["-e", "lab_members=9"], "lab_members=9 is out of range"),
    (["-e", "lab_members=4"], "lab_members=4 is even"),
    (["-e", "lab_members=three"], "lab_members=three is not a whole number"),
    (["-e", "lab_members=-3"], "lab_members=-3 is not a whole number"),
    (["-e", "etcd_source=brew"], "etcd_source=brew is unknown: use distro, pypi or path"),
    (
        ["-e", "etcd_source=path", "-e", "etcd_bin_path=/nonexistent"],
        "no etcd and etcdctl in etcd_bin_path=/nonexistent",
    ),
    # This machine has no Docker engine, kind or kubectl: the kind preflight names what is missing.
    (["-e", "lab_platform=kind"], "The kind platform cannot run here:"),
    (["-e", "lab_platform=nomad"], "lab_platform=nomad is unknown"),
    (["-e", "lab_subnet=10.300.0.0/24"], "lab_subnet='10.300.0.0/24' is not a valid IPv4 network"),
    (["-e", "lab_subnet=fd00:1::/64"], "must be an IPv4 network"),
    (["-e", "lab_subnet=127.0.0.0/24"], "lab_subnet=127.0.0.0/24 holds loopback addresses"),
    # Refused, never used: no packet is ever sent to it.
    (["-e", "lab_subnet=8.8.8.0/24"], "lab_subnet=8.8.8.0/24 holds public addresses"),
    (["-e", "lab_subnet=203.0.113.0/24"], "holds a documentation range (RFC 5737)"),
    (["-e", "lab_subnet=198.18.220.0/29"], "is too small: use a /28 or larger"),
    (["-e", "lab_subnet=198.18.221.0/28", "-e", "lab_members=5"], "is too small for 5 members"),
    (["-e", '{"lab_isolated_members": ["etcd-1", "etcd-2"]}'], "is not a minority of 3"),
    (["-e", '{"lab_isolated_members": ["etcd-7"]}'], "names unknown members ['etcd-7']"),
    (["-e", "lab_forced_member=etcd-0"], "lab_forced_member='etcd-0' must be one of the isolated members"),
    (["-e", "lab_forced_member=nosuch"], "lab_forced_member='nosuch' must be one of the isolated members"),
    (["-e", "lab_skewed_member=nosuch"], "lab_skewed_member=nosuch is not a member"),
    (["-e", "lab_clock_skew_offset=abc"], "lab_clock_skew_offset='abc' is not a number of seconds"),
    (["-e", "lab_clock_skew_offset=100000"], "lab_clock_skew_offset=100000 is more than a day"),
    (["-e", "lab_tls=maybe"], "lab_tls=maybe is not true or false"),
    (["-e", "lab_name=Bad_Name"], "lab_name='Bad_Name' must be 1 to 6 lower-case letters or digits"),
    (["-e", "lab_name=muchtoolong"], "(it prefixes interface names"),
    (["-e", "lab_state_dir=/proc/sbbad-state"], "lab_state_dir=/proc/sbbad-state is not writable"),
    (["-e", f"lab_state_dir={ROOT}/README.md/state"], "README.md is not a directory"),
    (
        ["-e", "lab_state_dir=/"],
        "lab_state_dir=/ is a top-level directory, which ./teardown.sh would remove whole",
    ),
    # A role's own setting, which its argument spec would only check after the teardown.
    (["-e", "lab_workload_rate=fast"], "lab_workload_rate='fast' is wrong for role lab_workload"),
    (["-e", "fault_partition_port=peer"], "fault_partition_port='peer' is wrong for role fault_partition"),
]


@pytest.mark.parametrize(("args", "message"), SETUP_CASES, ids=[" ".join(c[0]) for c in SETUP_CASES])
def test_bad_setting_fails_clearly_and_leaves_the_lab_alone(untouched, args, message):
    assert_clear_error(run_merged(["./setup.sh", *args]), message)


@pytest.fixture
def host_link():
    """A bridge of the test's own (not the lab's name), removed afterwards."""
    name = "sbbt0"
    subprocess.run(["ip", "link", "add", name, "type", "bridge"], check=True)
    subprocess.run(["ip", "link", "set", name, "up"], check=True)
    yield name
    subprocess.run(["ip", "link", "del", name], check=False)


def test_subnet_clash_with_an_address_on_the_host(untouched, host_link):
    subprocess.run(["ip", "addr", "add", "198.18.250.1/24", "dev", host_link], check=True)
    out = run_merged(["./setup.sh", "-e", "lab_subnet=198.18.250.0/24"])
    assert_clear_error(
        out, f"lab_subnet=198.18.250.0/24 clashes with 198.18.250.1/24 on interface {host_link}"
    )


def test_subnet_overlapping_a_route_of_the_host(untouched, host_link):
    # A route with no address on this host: only `ip route` shows that the subnet is taken.
    subprocess.run(["ip", "route", "add", "198.18.251.0/24", "dev", host_link], check=True)
    out = run_merged(["./setup.sh", "-e", "lab_subnet=198.18.251.128/25"])
    assert_clear_error(out, f"overlaps the host's route to 198.18.251.0/24 via {host_link}")


def test_not_root_is_refused_with_the_reason(untouched):
    out = run_merged(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "./setup.sh"], timeout=60
    )
    assert_clear_error(out, "run as root", prefix="setup.sh: ")
    assert out.returncode == 1 and "network namespaces" in out.last_line


@pytest.mark.parametrize(
    "command", [["exec", "etcd-9", "--", "true"], ["logs", "etcd-9"], ["shell", "etcd-9"]]
)
def test_lab_command_with_an_unknown_member(untouched, command):
    out = run_merged(["./lab", *command], timeout=60)
    assert_clear_error(
        out, "no member 'etcd-9' in this lab: members are etcd-0, etcd-1, etcd-2", prefix="lab: "
    )


def test_a_failed_run_logs_its_task_times_in_the_state_dir(untouched):
    logs = set((STATE / "logs").glob("setup-*.log"))
    out = run_merged(["./setup.sh", "-e", "lab_members=2"])
    assert_clear_error(out, "lab_members=2 is out of range")
    assert "the slowest:" in out.text and "Every task's time:" in out.text
    new = set((STATE / "logs").glob("setup-*.log")) - logs
    assert len(new) == 1
    log = Path(new.pop()).read_text()
    assert "# in the order they ran" in log and "Plan | Check the lab settings and compute the layout" in log
