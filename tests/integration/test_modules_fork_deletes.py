"""A fork that deletes a key the majority still holds and writes a leased key of its own (etcd 3.4 and 3.5):
etcd_kv_diff history=true finds the fork point and both sides' deletes; etcd_reconcile reports the delete
and the leased key, writes neither (only a note of the delete), and a second replay writes nothing."""

from __future__ import annotations

import json
import time

import etcd_kv_diff
import etcd_reconcile
import pytest
from ansible.module_utils.etcd_codec import b64
from etcd_fixtures import etcd_cluster_factory, run_module  # noqa: F401 - fixture


def wait_applied(cluster, member, revision, timeout=10.0):
    """Wait until member has applied revision (serializable status); return its revision."""
    deadline = time.monotonic() + timeout
    while True:
        with cluster.client(member) as c:
            now = int(c.status().data["header"]["revision"])
        if now >= revision or time.monotonic() > deadline:
            return now
        time.sleep(0.1)


def fork_that_deletes_and_leases(cluster):
    """/app/k0../app/k4 written and applied on etcd-2, then etcd-2 forked; the fork deletes /app/k1 (the
    majority keeps it) and puts /app/lock with a lease of its own. Returns the forked member, the last
    revision both sides share, and the lease's id."""
    cluster.put_keys()
    with cluster.client(cluster.members[0]) as c:
        shared = int(c.status().data["header"]["revision"])
    assert wait_applied(cluster, cluster.member("etcd-2"), shared) == shared
    forked = cluster.fork("etcd-2")
    with cluster.client(forked) as c:
        c.call("/v3/kv/deleterange", {"key": b64("/app/k1")})
        lease = c.call("/v3/lease/grant", {"TTL": "300"}).data["ID"]
        c.call("/v3/kv/put", {"key": b64("/app/lock"), "value": b64("fork-holder"), "lease": lease})
    return forked, shared, lease


def reconcile(operation, check_mode=False, **args):
    """etcd_reconcile's `operation` with `args`, which must not fail; its result."""
    result = run_module(etcd_reconcile, {"operation": operation, **args}, check_mode=check_mode)
    assert result.get("failed") is not True, result.get("msg")
    return result


def value_of(cluster, member, key):
    with cluster.client(member) as c:
        kvs = c.range(key.encode()).data.get("kvs") or []
    return json.dumps(kvs[0]) if kvs else None


@pytest.mark.parametrize("version", ["3.4", "3.5"])
def test_fork_delete_and_leased_fork_key_are_reported_and_not_written(
    etcd_cluster_factory,  # noqa: F811
    version,
    tmp_path,
):
    cluster = etcd_cluster_factory(version, size=3)
    first, second = cluster.members[0], cluster.members[1]
    forked, shared, lease = fork_that_deletes_and_leases(cluster)
    cluster.put(forked, "/app/only-fork", "f")
    cluster.put(first, "/app/k2", "majority-value")
    with cluster.client(first) as c:
        c.call("/v3/kv/deleterange", {"key": b64("/app/k3")})  # the fork keeps /app/k3
    cluster.put(first, "/app/only-majority", "m")

    diff_path = tmp_path / "diff-etcd-2.json"
    diff = run_module(
        etcd_kv_diff,
        {
            "endpoints": [first.client_url, forked.client_url],
            "prefix": "/app/",
            "report_path": str(diff_path),
            "history": True,
        },
    )
    assert diff.get("failed") is not True, diff.get("msg")
    history = diff["history"]
    assert history["fork_revision"] == shared, history
    assert [(d["key"], d["left"]["value"]) for d in history["deleted_right"]] == [("/app/k1", "v1")]
    assert history["deleted_right"][0]["delete_revision"] == shared + 1
    assert [(d["key"], d["right"]["value"]) for d in history["deleted_left"]] == [("/app/k3", "v3")]
    lock = next(e for e in diff["only_right"] if e["key"] == "/app/lock")
    assert lock["lease"] == format(int(lease), "x")

    conflicts = tmp_path / "conflicts.json"
    diffs = [{"member": "etcd-2", "diff": str(diff_path)}]
    reconcile("report", diffs=diffs, path=str(conflicts), summary_path=str(tmp_path / "conflicts.txt"))
    (fork,) = json.loads(conflicts.read_text())["forks"]
    assert [(d["key"], d["value"]) for d in fork["deleted_on_fork"]] == [("/app/k1", "v1")]
    assert [e["key"] for e in fork["leased_only_on_fork"]] == ["/app/lock"]
    assert [e["key"] for e in fork["deleted_on_authoritative"]] == ["/app/k3"]
    assert [e["key"] for e in fork["only_fork"]] == ["/app/only-fork"]
    text = (tmp_path / "conflicts.txt").read_text()
    assert "/app/k1: deleted on the fork" in text and "/app/lock = 'fork-holder'" in text

    replay_args = {"endpoints": [first.client_url, second.client_url], "path": str(conflicts)}
    marker = "/recovery/quarantine/etcd-2/deleted/app/k1"
    checked = reconcile("replay", check_mode=True, **replay_args)
    assert checked["changed"] and [m["marker_key"] for m in checked["marked"]] == [marker]
    assert value_of(cluster, first, marker) is None  # check mode wrote nothing

    done = reconcile("replay", **replay_args)
    assert [r["key"] for r in done["replayed"]] == ["/app/only-fork"]
    assert [r["key"] for r in done["leased"]] == ["/app/lock"]
    assert '"value": "djE="' in value_of(cluster, first, "/app/k1")  # the majority's v1 stays
    note = json.loads(b64decode_value(value_of(cluster, first, marker)))
    assert note["deleted_on_fork"] == "etcd-2" and note["fork_delete_revision"] == shared + 1
    assert value_of(cluster, first, "/app/lock") is None  # never replayed without its lease
    assert value_of(cluster, first, "/app/k3") is None  # not brought back...
    assert "djM=" in value_of(cluster, first, "/recovery/quarantine/etcd-2/app/k3")  # ...kept aside (v3)

    again = reconcile("replay", **replay_args)
    assert again["changed"] is False and not again["marked"] and not again["replayed"]


@pytest.mark.parametrize("version", ["3.5"])
def test_the_export_keeps_enough_history_to_find_the_fork_deletes_after_the_fork_stopped(
    etcd_cluster_factory,  # noqa: F811
    version,
    tmp_path,
):
    cluster = etcd_cluster_factory(version, size=3)
    first = cluster.members[0]
    forked, shared, _lease = fork_that_deletes_and_leases(cluster)
    with cluster.client(first) as c:
        c.call("/v3/kv/deleterange", {"key": b64("/app/k3")})
    cluster.put(first, "/app/k4", "majority-value")

    export = tmp_path / "export-etcd-2.json"
    exported = reconcile("export", endpoints=[forked.client_url], path=str(export))
    recorded = json.loads(export.read_text())["history"]
    assert recorded["start_revision"] == 1 and len(recorded["digests"]) == exported["revision"]
    cluster.stop_member(forked)  # from now on only the export knows the fork

    diff_path = tmp_path / "diff-etcd-2.json"
    reconcile("diff", export_path=str(export), path=str(diff_path), endpoints=[first.client_url])
    history = json.loads(diff_path.read_text())["history"]
    assert history["fork_revision"] == shared
    assert [(d["key"], d["delete_revision"]) for d in history["deleted_right"]] == [("/app/k1", shared + 1)]
    assert [d["key"] for d in history["deleted_left"]] == ["/app/k3"]

    diffs = [{"member": "etcd-2", "diff": str(diff_path)}]
    report = reconcile("report", diffs=diffs, path=str(tmp_path / "conflicts.json"))
    (counts,) = report["forks"]
    assert counts["deletes_checked"] is True and counts["deleted_on_fork"] == 1
    assert counts["leased_only_on_fork"] == 1 and counts["deleted_on_authoritative"] == 1


def b64decode_value(kv_json):
    import base64

    return base64.b64decode(json.loads(kv_json)["value"]).decode()
