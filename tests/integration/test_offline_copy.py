"""etcd_offline_copy on real data dirs (etcd 3.4 and 3.5): a fork stopped before anyone exported it, served
from a private copy on loopback and compared with etcd_kv_diff history=true; a member that was merely
behind. The data dir is only read; nothing is left running or on disk."""

from __future__ import annotations

import base64
import json
import os
import time

import etcd_kv_diff
import etcd_offline_copy
import pytest
from etcd_fixtures import VERSIONS, etcd_cluster_factory, run_module  # noqa: F401 - fixture


def delete(cluster, member, key):
    with cluster.client(member) as c:
        c.call("/v3/kv/deleterange", {"key": base64.b64encode(key.encode()).decode()})


def wait_revision(cluster, member, revision, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with cluster.client(member) as c:
            if int(c.status().data["header"]["revision"]) >= revision:
                return
        time.sleep(0.1)
    raise AssertionError(f"{member.name} never reached revision {revision}")


def tree(path):
    return sorted(
        (os.path.relpath(os.path.join(d, f), path), os.path.getsize(os.path.join(d, f)))
        for d, _, files in os.walk(path)
        for f in files
    )


def serve(data_dir, work_dir, version, **extra):
    args = {
        "data_dir": data_dir,
        "work_dir": str(work_dir),
        "bin_dir": os.path.dirname(VERSIONS[version].etcd),
    }
    return run_module(etcd_offline_copy, {**args, **extra})


def alive(pid):
    """Running, not a zombie (in-process, the copy is this test's child until someone reaps it)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.parametrize("version", ["3.4", "3.5"])
def test_a_stopped_fork_is_read_from_a_private_copy(etcd_cluster_factory, version, tmp_path):  # noqa: F811
    cluster = etcd_cluster_factory(version, size=3)
    first = cluster.members[0]
    for i in range(6):
        reply = cluster.put(first, f"/app/k{i}", f"v{i}")
    wait_revision(cluster, cluster.member("etcd-2"), int(reply["header"]["revision"]))
    forked = cluster.fork("etcd-2")
    cluster.put(forked, "/app/k1", "fork-value")  # conflict
    cluster.put(forked, "/app/only-fork", "f")  # only on the fork
    delete(cluster, forked, "/app/k2")  # the fork deletes a key the majority keeps: a conflict to report
    cluster.put(first, "/app/k3", "majority-value")  # the majority's own write
    cluster.stop_member(forked)
    before = tree(forked.data_dir)
    work = tmp_path / "offline"

    started = serve(forked.data_dir, work, version)
    assert started.get("failed") is not True, started
    assert started["changed"] and started["url"].startswith("http://127.0.0.1:")
    again = serve(forked.data_dir, work, version)
    assert again["changed"] is False and again["pid"] == started["pid"]

    report = tmp_path / "diff-etcd-2.json"
    diff = run_module(
        etcd_kv_diff,
        {"endpoints": [first.client_url, started["url"]], "report_path": str(report), "history": True},
    )
    assert diff.get("failed") is not True, diff
    doc = json.loads(report.read_text())
    assert [e["key"] for e in doc["only_right"]] == ["/app/only-fork"]
    assert ("/app/k1", "v1", "fork-value") in [
        (c["key"], c["left"]["value"], c["right"]["value"]) for c in doc["conflicts"]
    ]
    history = doc["history"]
    assert history["fork_revision"] >= 7 and not history.get("error")
    assert [d["key"] for d in history["deleted_right"]] == ["/app/k2"]

    stopped = serve(forked.data_dir, work, version, state="stopped")
    assert stopped["changed"] and not alive(started["pid"])
    assert os.listdir(work) == []
    # The data dir was only read.
    assert tree(forked.data_dir) == before


def test_a_member_that_was_merely_behind_shares_its_whole_history(etcd_cluster_factory, tmp_path):  # noqa: F811
    cluster = etcd_cluster_factory("3.4", size=3)
    first, last = cluster.members[0], cluster.member("etcd-2")
    reply = cluster.put(first, "/app/a", "1")
    wait_revision(cluster, last, int(reply["header"]["revision"]))
    cluster.stop_member(last)
    cluster.put(first, "/app/a", "2")
    delete(cluster, first, "/app/a")
    started = serve(last.data_dir, tmp_path, "3.4")
    try:
        diff = run_module(
            etcd_kv_diff,
            {"endpoints": [first.client_url, started["url"]], "history": True},
        )
        assert diff["history"]["fork_revision"] == diff["right"]["revision"], diff["history"]
    finally:
        serve(last.data_dir, tmp_path, "3.4", state="stopped")
    assert not alive(started["pid"])


def test_a_dir_without_etcd_data(tmp_path):
    failed = serve(str(tmp_path), tmp_path / "w", "3.4")
    assert failed["failed"] is True
    assert "holds no etcd data" in failed["msg"] and "\n" not in failed["msg"]
    empty = serve(str(tmp_path), tmp_path / "w", "3.4", missing_ok=True)
    assert empty["empty"] is True and empty["changed"] is False and empty["url"] is None
