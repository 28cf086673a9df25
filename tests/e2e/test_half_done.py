"""End to end: recover.yml meets the cluster as a person left it, half-done steps included.

- Hint 8 by hand, stopped halfway: `member remove` of the fork's id on the majority, then `member add` of the
  same name with its peer URL, not started. The majority kept its quorum the whole time: the status report
  must say what it sees in plain words (never "restarted with --force-new-cluster"), and recover.yml must
  finish from there (start the member that was added back first: etcd refuses any other add while a voter
  is not connected).
- recover.yml killed with SIGKILL in its rejoin step, after the member to rejoin was removed: the next run
  finds a majority of two and a fork it stopped itself, and finishes the job instead of proposing a restore.

Both end with verify.yml: one cluster, every acknowledged write kept or reported (0 missing).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess

import pytest
from lablib import (
    STATE,
    alive,
    assert_one_cluster,
    kill_recover_at,
    lab_json,
    out,
    pid_of,
    playbook,
    run,
    setup_lab,
    wait_until,
)

pytestmark = pytest.mark.lab


def etcdctl_on(node: str, *args: str) -> subprocess.CompletedProcess:
    """The learner's own command: etcdctl inside the node, as README's hints give it."""
    return run(["./lab", "exec", node, "--", "etcdctl", *args], timeout=60)


def member_id(node: str, name: str) -> str:
    listed = etcdctl_on(node, "member", "list", "-w", "json")
    assert listed.returncode == 0, listed.stderr
    return next(format(m["ID"], "x") for m in json.loads(listed.stdout)["members"] if m.get("name") == name)


def recover_and_grade(lab: dict) -> str:
    recovered = playbook("recover.yml", check=False, timeout=900)
    assert recovered.returncode == 0, out(recovered)
    assert "Refusing to recover" not in recovered.stdout
    assert_one_cluster(lab)
    graded = playbook("verify.yml", check=False)
    assert graded.returncode == 0, out(graded)
    assert re.search(
        r"every acknowledged write kept or reported: \d+ acknowledged writes: .* 0 missing", graded.stdout
    )
    return recovered.stdout


def test_hint_8_by_hand_stopped_halfway_then_recover(clean_host):
    setup_lab()
    lab = lab_json()
    forced, leader_side = lab["forced"], lab["majority"][0]
    peer_url = next(m["peer_url"] for m in lab["members"] if m["name"] == forced)

    removed = etcdctl_on(leader_side, "member", "remove", member_id(leader_side, forced))
    assert removed.returncode == 0, removed.stderr
    added = etcdctl_on(leader_side, "member", "add", forced, f"--peer-urls={peer_url}")
    if added.returncode != 0 and ("request timed out" in added.stderr or "deadline exceeded" in added.stderr):
        # Seen on a loaded host (three labs, or two and a test run): the add right after the remove timed out
        # ("request timed out", or etcdctl's own "context deadline exceeded"). A timed-out
        # proposal may still be applied: as a learner would, look at the member list before trying again.
        listed = etcdctl_on(leader_side, "member", "list")
        if peer_url not in listed.stdout:
            added = etcdctl_on(leader_side, "member", "add", forced, f"--peer-urls={peer_url}")
        else:
            added = listed
    assert added.returncode == 0, added.stderr

    status = run(["./lab", "status", "--explain"], timeout=120)
    assert status.returncode == 0, out(status)
    assert f"a member {forced} was added back" in status.stdout and "has not started" in status.stdout
    for name in lab["majority"]:
        assert f"{name} reports a membership" not in status.stdout, status.stdout
    assert "No view holds a reachable quorum" not in status.stdout
    auth = re.search(r"Authoritative side: (etcd-\d+)'s view", status.stdout)
    assert auth and auth.group(1) in lab["majority"], status.stdout

    text = recover_and_grade(lab)
    assert f"{forced} was already added back to the authoritative cluster" in text
    assert f"{forced}: already added back (id " in text
    # The fork's old data was moved aside, never deleted.
    assert list((STATE / "nodes" / forced).glob("data.moved-*/member"))


def test_recover_killed_in_its_rejoin_step_then_run_again(clean_host):
    setup_lab()
    lab = lab_json()
    forced = lab["forced"]
    first = kill_recover_at(f"Rejoin | Move the old data dir aside (never deleted): {forced}")
    assert "Rejoin | Remove every member to rejoin" in first
    # The member to rejoin is out of the membership, the fork is stopped: a healthy majority is left.
    listed = etcdctl_on(lab["majority"][0], "member", "list")
    assert listed.returncode == 0 and forced not in listed.stdout, listed.stdout
    assert json.loads((STATE / "recovery" / "forks.json").read_text())["forks"] == [forced]

    # Killed a second time, after the replay of the fork's writes but before it was marked finished: the
    # third run finds a healthy cluster, and still finishes the replay before it grades.
    second = kill_recover_at("Reconcile | Show what was written")
    assert f"{forced} was removed from" in second and "Nothing was forced here" in second
    assert not (STATE / "recovery" / "reconciled.sha256").exists()

    # Killed a third time, as it starts the incident report (the replay finished, the forks still recorded):
    # the last run finds a healthy cluster and nothing pending, and still writes the report and clears the
    # record of the forks.
    third = kill_recover_at("Verify | Write the incident report")
    assert "the replay of the writes of the fork (step 9) did not finish" in third
    assert (STATE / "recovery" / "reconciled.sha256").exists()
    assert not (STATE / "report" / "index.html").exists()

    text = recover_and_grade(lab)
    assert "The incident, step by step" in text
    assert (STATE / "report" / "index.html").exists()
    assert json.loads((STATE / "recovery" / "forks.json").read_text())["forks"] == []


def test_fork_stopped_by_hand_before_recover(clean_host):
    """A learner stops the forked member by hand before running recover.yml: nobody exported it, and it no
    longer answers. Its data dir still holds the writes only it acknowledged: recover.yml reads them from
    there (a private copy on loopback) and reconciles them; verify.yml finds 0 missing."""
    setup_lab()
    lab = lab_json()
    forced = lab["forced"]
    pid = pid_of(forced)
    os.kill(pid, signal.SIGTERM)
    wait_until(lambda: not alive(pid), 60, f"{forced} to stop")

    text = recover_and_grade(lab)
    assert f"nodes/{forced}/data: writes of its own after the fork point" in text
    served = re.findall(r"Serve a private copy of the data dir on loopback: ([^\s\]]+)", text)
    # not the data dirs of the running members (the timing summary may name the task again)
    assert set(served) == {f"nodes/{forced}/data"}, served
    diff = json.loads((STATE / "recovery" / f"diff-{forced}.json").read_text())
    assert diff["only_right"] and 0 < diff["history"]["fork_revision"] < diff["right"]["revision"]
