"""etcd_member's removal when the leader is lost (etcd 3.4 and 3.5 on loopback).

A member remove sent to a member with no leader is never proposed: etcd waits for a leader until the request's
deadline, and nothing is logged (seen on 3.4.23: the call timed out after 4 s, the member list still had the
member, the term went from 2 to 10 while the leader was stopped). The leader is stopped here with SIGSTOP, as
the clock-skew revert's ptrace stops it for a moment."""

from __future__ import annotations

import signal
import threading
import time

import etcd_member
import pytest
from ansible.module_utils.etcd_codec import id_to_hex, parse_member
from etcd_fixtures import etcd_cluster_factory, run_module  # noqa: F401 - fixture


def leader_and_follower(cluster, members):
    with cluster.client(members[0]) as c:
        lead = id_to_hex(c.status().data["leader"])
        names = {parse_member(m)["id"]: parse_member(m)["name"] for m in c.member_list().data["members"]}
    leader = cluster.member(names[lead])
    return leader, next(m for m in members if m is not leader)


def wait_leaderless(cluster, member, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with cluster.client(member) as c:
            if c.status().data.get("leader", "0") == "0":
                return
        time.sleep(0.1)
    raise AssertionError(f"{member.name} still follows a leader after {timeout} s")


def member_names(cluster, member):
    with cluster.client(member) as c:
        return sorted(parse_member(m)["name"] for m in c.member_list().data["members"])


@pytest.mark.parametrize("version", ["3.4", "3.5"])
def test_a_lost_removal_is_explained_and_proposed_again(etcd_cluster_factory, version, monkeypatch):  # noqa: F811
    cluster = etcd_cluster_factory(version, size=3)
    victim = cluster.members[2]
    cluster.stop_member(victim)  # the member to remove is down, as in the recovery
    leader, follower = leader_and_follower(cluster, cluster.members[:2])
    # Skip the pre-flight once, as if the leader were lost right after it: the removal goes out at once.
    real_settle, calls = etcd_member.settle, []
    leaderless, resumed = threading.Event(), threading.Event()

    def settle_once_skipped(params, endpoint, members, deadline, waited=None):
        view = real_settle(params, endpoint, members, deadline, waited)
        calls.append(view)
        if len(calls) == 1:
            leader.proc.send_signal(signal.SIGSTOP)
            wait_leaderless(cluster, follower)
            leaderless.set()
        return view

    monkeypatch.setattr(etcd_member, "settle", settle_once_skipped)

    # The leader comes back 1 s after the removal's 3 s timeout, while the module waits for a leader.
    def resume():
        if leaderless.wait(timeout=30):
            time.sleep(4.0)
        leader.proc.send_signal(signal.SIGCONT)
        resumed.set()

    thread = threading.Thread(target=resume, daemon=True)
    thread.start()
    try:
        result = run_module(
            etcd_member,
            {
                "endpoints": [follower.client_url],
                "name": victim.name,
                "state": "absent",
                "timeout": 3,
                "settle_timeout": 30,
            },
        )
    finally:
        thread.join(timeout=40)
        leader.proc.send_signal(signal.SIGCONT)
    assert resumed.is_set()
    assert not result.get("failed"), result.get("msg")
    assert result["changed"] and result["action"] == "remove"
    assert result["remove_attempts"] == 2, (result["remove_attempts"], result["remove_notes"])
    (note,) = result["remove_notes"]
    assert f"The removal of {victim.name}" in note and "was dropped: the member list still has it" in note
    # Seen: 3.4 "etcd-0 had no leader at term 2 when the reply was due (...); the leader went from etcd-1 at
    # term 2 to etcd-0 at term 9"; 3.5 (pre-vote: the term stays) "...; etcd-0 at term 3 leads again".
    assert f"{follower.name} had no leader at term {calls[0]['term']} when the reply was due" in note, note
    assert note.endswith("Proposing it again (attempt 2).")
    assert member_names(cluster, follower) == sorted(m.name for m in cluster.members[:2])


@pytest.mark.parametrize("version", ["3.4"])
def test_a_removal_waits_for_a_leader_instead_of_timing_out(etcd_cluster_factory, version):  # noqa: F811
    cluster = etcd_cluster_factory(version, size=3)
    victim = cluster.members[2]
    cluster.stop_member(victim)
    leader, follower = leader_and_follower(cluster, cluster.members[:2])
    # The leader stops for 5 s right after the module has found it, longer than the 3 s request timeout (a
    # long ptrace pause): without the wait for a settled leader the removal would time out, be proposed again.
    found = threading.Event()
    real_gather = etcd_member.gather

    def gather_then_pause(params, need_leader=True):
        out = real_gather(params, need_leader)
        if not found.is_set():
            found.set()
            leader.proc.send_signal(signal.SIGSTOP)
            threading.Timer(5.0, leader.proc.send_signal, (signal.SIGCONT,)).start()
        return out

    etcd_member.gather, restore = gather_then_pause, etcd_member.gather
    try:
        result = run_module(
            etcd_member,
            {"endpoints": [follower.client_url], "name": victim.name, "state": "absent", "timeout": 3},
        )
    finally:
        etcd_member.gather = restore
    assert not result.get("failed"), result.get("msg")
    assert result["remove_attempts"] == 1, result["remove_notes"]
    (note,) = result["remove_notes"]
    assert note.startswith("Waited ") and "for a settled leader before proposing" in note, note
    assert member_names(cluster, follower) == sorted(m.name for m in cluster.members[:2])
