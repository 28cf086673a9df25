"""etcd_member against a real etcd 3.5 cluster on loopback: add learner, start it, promote, remove,
idempotence, check mode, and the quorum guard."""

from __future__ import annotations

import json
import time

import etcd_member
import pytest
from etcd_fixtures import etcd_cluster_factory, run_module  # noqa: F401 - fixture


def member(cluster, check_mode=False, **args):
    return run_module(
        etcd_member, {"endpoints": cluster.endpoints, "timeout": 3, **args}, check_mode=check_mode
    )


@pytest.mark.parametrize("version", ["3.5"])
def test_add_learner_start_promote_remove(etcd_cluster_factory, version):  # noqa: F811
    cluster = etcd_cluster_factory(version, size=3)
    listed = member(cluster)
    assert listed["changed"] is False and listed["action"] == "none"
    assert sorted(m["name"] for m in listed["members"]) == ["etcd-0", "etcd-1", "etcd-2"]
    assert all(m["healthy"] for m in listed["members"])

    new = cluster.new_member("etcd-3")
    add = {"state": "present", "name": "etcd-3", "peer_urls": [new.peer_url], "learner": True}
    planned = member(cluster, check_mode=True, **add)
    assert planned["changed"] is True and planned["action"] == "add"
    assert len(member(cluster)["members"]) == 3  # check mode added nothing

    deadline = time.monotonic() + 15
    while True:  # etcd refuses changes until every voter has been connected for 5 s ("unhealthy cluster")
        added = member(cluster, **add)
        if not added.get("failed") or time.monotonic() > deadline:
            break
        assert "unhealthy cluster" in added["msg"] and "retry" in added["msg"], added["msg"]
        time.sleep(0.5)
    assert added.get("changed") is True and added["member"]["is_learner"] is True, added
    assert added["member"]["peer_urls"] == [new.peer_url]
    assert f"etcd-3={new.peer_url}" in added["initial_cluster"]
    again = member(cluster, **add)
    assert again["changed"] is False  # matched by peer URLs before it has a name

    # Promoting a learner that has not started: etcd refuses; the module says why.
    early = member(cluster, state="promoted", id=added["member"]["id"])
    assert early["failed"] and "etcd at" in early["msg"] and "learner" in early["msg"].lower()

    cluster.start_member(new, state="existing")
    cluster.wait_ready([new])
    promoted = None
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        promoted = member(cluster, state="promoted", name="etcd-3")
        if not promoted.get("failed"):
            break
        time.sleep(0.5)  # a learner is promotable once it has caught up with the leader
    assert promoted["changed"] is True and promoted["action"] == "promote", promoted
    assert member(cluster, state="promoted", name="etcd-3")["changed"] is False
    assert not next(m for m in member(cluster)["members"] if m["name"] == "etcd-3")["is_learner"]

    removed = member(cluster, state="absent", name="etcd-3")
    assert removed["changed"] is True and removed["member"]["name"] == "etcd-3"
    assert sorted(m["name"] for m in removed["members"]) == ["etcd-0", "etcd-1", "etcd-2"]
    cluster.stop_member(new)
    assert member(cluster, state="absent", name="etcd-3")["changed"] is False


def test_quorum_guard(etcd_cluster_factory):  # noqa: F811
    cluster = etcd_cluster_factory("3.5", size=3)
    cluster.stop_member(cluster.member("etcd-2"))
    # 2 healthy of 3: removing a healthy voter leaves 1 of 2 -> refused, nothing removed.
    refused = member(cluster, state="absent", name="etcd-1")
    assert refused["failed"] and refused["msg"].startswith("Refusing to remove etcd-1")
    assert "quorum of 2" in refused["msg"]
    assert len(member(cluster)["members"]) == 3
    # Adding a voter would need 3 healthy of 4 -> refused.
    add = member(cluster, state="present", name="etcd-9", peer_urls=["http://127.0.0.1:9"])
    assert add["failed"] and "Refusing to add voter etcd-9" in add["msg"]
    # Removing the stopped member is safe: 2 healthy of 2.
    ok = member(cluster, check_mode=True, state="absent", name="etcd-2")
    assert ok["changed"] is True and ok["quorum"]["safe"] is True
    assert len(member(cluster)["members"]) == 3
    # Unknown member: promote fails clearly, absent is already true.
    unknown = member(cluster, state="promoted", name="nobody")
    assert unknown["failed"] and unknown["msg"].startswith("No member nobody in the cluster")
    assert member(cluster, state="absent", name="nobody")["changed"] is False
    # A forked member does not count as healthy for the majority.
    cluster.start_member(cluster.member("etcd-2"))
    cluster.wait_ready()
    cluster.fork("etcd-2")
    listed = member(cluster)
    health = {m["name"]: m["healthy"] for m in listed["members"]}
    assert health == {"etcd-0": True, "etcd-1": True, "etcd-2": False}


def test_leaderless_cluster_is_listed_but_not_changed(etcd_cluster_factory):  # noqa: F811
    cluster = etcd_cluster_factory("3.4", size=3)
    cluster.stop_member(cluster.member("etcd-1"))
    cluster.stop_member(cluster.member("etcd-2"))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # etcd-0 steps down once it has lost its quorum
        listed = member(cluster)
        if not listed.get("failed") and not any(m["healthy"] for m in listed["members"]):
            break
        time.sleep(0.3)
    assert sorted(m["name"] for m in listed["members"]) == ["etcd-0", "etcd-1", "etcd-2"]
    assert not any(m["healthy"] for m in listed["members"])
    assert "No member follows a leader" in json.dumps(listed.get("warnings")), listed.keys()
    change = member(cluster, state="absent", name="etcd-2")
    assert change["failed"] and change["msg"].startswith("No endpoint follows a leader")
    assert "connection refused" in change["msg"]
