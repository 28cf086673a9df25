"""etcd_endpoint_status against real etcd 3.4 and 3.5 on loopback: healthy, forked, member down."""

from __future__ import annotations

import json
import time

import etcd_endpoint_status
import pytest
from etcd_fixtures import ANSIBLE_ENV, etcd_cluster_factory, run_ansible_module, run_module, run_playbook  # noqa: F401 - fixture


def status(cluster, **extra):
    return run_module(etcd_endpoint_status, {"endpoints": cluster.endpoints, "timeout": 2, **extra})


@pytest.mark.parametrize("version", ["3.4", "3.5"])
def test_healthy_then_fork_then_member_down(etcd_cluster_factory, version):  # noqa: F811
    cluster = etcd_cluster_factory(version, size=3)
    cluster.put_keys()

    healthy = status(cluster)
    assert not healthy.get("failed"), healthy
    assert healthy["changed"] is False and healthy["split_brain"] is False
    assert [e["name"] for e in healthy["endpoints"]] == ["etcd-0", "etcd-1", "etcd-2"]
    assert all(e["reachable"] and e["version"].startswith(version) for e in healthy["endpoints"])
    assert len(healthy["views"]) == 1 and healthy["authoritative_view"] == 0
    assert sum(e["is_leader"] for e in healthy["endpoints"]) == 1
    assert all(abs(e["clock_offset"]) < 1.6 for e in healthy["endpoints"])
    assert healthy["clock_skew"] == [] and healthy["unreachable_endpoints"] == []
    assert all(len(e["members"]) == 3 for e in healthy["endpoints"])

    forked = cluster.fork("etcd-2")
    for i in range(12):  # more writes on the fork: its raft index overtakes the majority's
        cluster.put(forked, f"/app/fork{i}", "f")
    cluster.put(cluster.members[0], "/app/k0", "majority")
    split = status(cluster, expected_members=["etcd-0", "etcd-1", "etcd-2"])
    assert split["split_brain"] is True
    assert sorted(leader["name"] for leader in split["leaders"]) != []
    assert len(split["leaders"]) == 2 and "etcd-2" in [leader["name"] for leader in split["leaders"]]
    assert split["forked_members"] == ["etcd-2"]
    auth = split["views"][split["authoritative_view"]]
    assert sorted(auth["reachable_voters"]) == ["etcd-0", "etcd-1"] and auth["leader"] != "etcd-2"
    ids = {e["cluster_id"] for e in split["endpoints"]}
    assert len(ids) == 1  # same cluster id on both sides
    text = "\n".join(split["findings"])
    assert "etcd-2 leads a one-member cluster of its own (etcd-2)" in text
    assert "etcd-2 has the highest raft index" in text
    assert "View 2" in "\n".join(split["report"])

    cluster.stop_member(cluster.member("etcd-1"))
    deadline = time.monotonic() + 10
    while True:  # etcd-0 notices it lost its quorum within an election timeout or so
        down = status(cluster)
        if "etcd-0" in down["leaderless_members"] or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert [u["name"] for u in down["unreachable_endpoints"]] == ["etcd-1"]
    assert "connection refused" in down["unreachable_endpoints"][0]["error"]
    assert down["leaderless_members"] == ["etcd-0"]
    assert down["authoritative_view"] is None
    assert any("No view holds a reachable quorum" in f for f in down["findings"])
    etcd0 = next(e for e in down["endpoints"] if e["name"] == "etcd-0")
    assert etcd0["status_errors"] == ["etcdserver: no leader"]


def test_through_the_ansible_cli_in_check_mode(etcd_cluster_factory):  # noqa: F811
    cluster = etcd_cluster_factory("3.5", size=3)
    args = {"endpoints": cluster.endpoints, "expected_members": ["etcd-0", "etcd-1", "etcd-2"]}
    result = run_ansible_module("etcd_endpoint_status", args, "--check")
    assert result["changed"] is False and result["split_brain"] is False
    assert result["original_membership"]["source"] == "expected_members"
    assert len(result["endpoints"]) == 3


def write_lab_json(directory, cluster):
    members = [
        {"name": m.name, "client_url": m.client_url, "peer_url": m.peer_url, "ip": "127.0.0.1"}
        for m in cluster.members
    ]
    lab = {
        "members": members,
        "etcd_bin_dir": cluster.binaries.bin_dir,
        "etcd_version": cluster.binaries.version,
    }
    (directory / "lab.json").write_text(json.dumps(lab))


def run_status(state_dir):
    # The lab's own screen output (lab_steps: the report as plain text), as ./lab status -- ... prints it.
    env = {**ANSIBLE_ENV, "ANSIBLE_STDOUT_CALLBACK": "lab_steps"}
    return run_playbook("playbooks/status.yml", "-e", f"lab_state_dir={state_dir}", env=env)


def test_status_playbook_on_split_cluster_with_a_member_down(etcd_cluster_factory, tmp_path):  # noqa: F811
    cluster = etcd_cluster_factory("3.4", size=3)
    write_lab_json(tmp_path, cluster)
    healthy = run_status(tmp_path)
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    assert "No split-brain: all 3 reachable members agree" in healthy.stdout
    assert "View 2" not in healthy.stdout

    cluster.fork("etcd-2")
    cluster.put(cluster.member("etcd-2"), "/app/x", "fork")
    split = run_status(tmp_path)
    assert split.returncode == 0, split.stdout + split.stderr
    assert "View 1 [authoritative]" in split.stdout and "View 2" in split.stdout
    assert "MEMBER  ID" in split.stdout and "CLOCK" in split.stdout
    assert "etcd-2 leads a one-member cluster of its own" in split.stdout
    assert "unreachable=0" in split.stdout and "failed=0" in split.stdout

    cluster.stop_member(cluster.member("etcd-0"))
    down = run_status(tmp_path)
    assert down.returncode == 0, down.stdout + down.stderr
    assert "Unreachable:" in down.stdout and "connection refused" in down.stdout


def test_status_playbook_without_a_lab(tmp_path):
    proc = run_status(tmp_path / "nothing-here")
    assert proc.returncode != 0
    assert "The lab is not set up" in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
