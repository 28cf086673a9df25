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
    for i in range(5):
        cluster.put(first, f"/app/k{i}", f"v{i}")
    with cluster.client(first) as c:
        shared = int(c.status().data["header"]["revision"])
    assert wait_applied(cluster, cluster.member("etcd-2"), shared) == shared
    forked = cluster.fork("etcd-2")

    with cluster.client(forked) as c:
        c.call("/v3/kv/deleterange", {"key": b64("/app/k1")})  # the majority keeps /app/k1
        lease = c.call("/v3/lease/grant", {"TTL": "300"}).data["ID"]
        c.call("/v3/kv/put", {"key": b64("/app/lock"), "value": b64("fork-holder"), "lease": lease})
        c.call("/v3/kv/put", {"key": b64("/app/only-fork"), "value": b64("f")})
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
    report = run_module(
        etcd_reconcile,
        {
            "operation": "report",
            "diffs": [{"member": "etcd-2", "diff": str(diff_path)}],
            "path": str(conflicts),
            "summary_path": str(tmp_path / "conflicts.txt"),
        },
    )
    assert report.get("failed") is not True, report.get("msg")
    (fork,) = json.loads(conflicts.read_text())["forks"]
    assert [(d["key"], d["value"]) for d in fork["deleted_on_fork"]] == [("/app/k1", "v1")]
    assert [e["key"] for e in fork["leased_only_on_fork"]] == ["/app/lock"]
    assert [e["key"] for e in fork["deleted_on_authoritative"]] == ["/app/k3"]
    assert [e["key"] for e in fork["only_fork"]] == ["/app/only-fork"]
    text = (tmp_path / "conflicts.txt").read_text()
    assert "/app/k1: deleted on the fork" in text and "/app/lock = 'fork-holder'" in text

    replay_args = {
        "operation": "replay",
        "endpoints": [first.client_url, second.client_url],
        "path": str(conflicts),
    }
    marker = "/recovery/quarantine/etcd-2/deleted/app/k1"
    checked = run_module(etcd_reconcile, replay_args, check_mode=True)
    assert checked["changed"] and [m["marker_key"] for m in checked["marked"]] == [marker]
    assert value_of(cluster, first, marker) is None  # check mode wrote nothing

    done = run_module(etcd_reconcile, replay_args)
    assert done.get("failed") is not True, done.get("msg")
    assert [r["key"] for r in done["replayed"]] == ["/app/only-fork"]
    assert [r["key"] for r in done["leased"]] == ["/app/lock"]
    assert '"value": "djE="' in value_of(cluster, first, "/app/k1")  # the majority's v1 stays
    note = json.loads(b64decode_value(value_of(cluster, first, marker)))
    assert note["deleted_on_fork"] == "etcd-2" and note["fork_delete_revision"] == shared + 1
    assert value_of(cluster, first, "/app/lock") is None  # never replayed without its lease
    assert value_of(cluster, first, "/app/k3") is None  # not brought back...
    assert "djM=" in value_of(cluster, first, "/recovery/quarantine/etcd-2/app/k3")  # ...kept aside (v3)

    again = run_module(etcd_reconcile, replay_args)
    assert again["changed"] is False and not again["marked"] and not again["replayed"]


@pytest.mark.parametrize("version", ["3.5"])
def test_the_export_keeps_enough_history_to_find_the_fork_deletes_after_the_fork_stopped(
    etcd_cluster_factory,  # noqa: F811
    version,
    tmp_path,
):
    cluster = etcd_cluster_factory(version, size=3)
    first = cluster.members[0]
    for i in range(5):
        cluster.put(first, f"/app/k{i}", f"v{i}")
    with cluster.client(first) as c:
        shared = int(c.status().data["header"]["revision"])
    assert wait_applied(cluster, cluster.member("etcd-2"), shared) == shared
    forked = cluster.fork("etcd-2")
    with cluster.client(forked) as c:
        c.call("/v3/kv/deleterange", {"key": b64("/app/k1")})
        lease = c.call("/v3/lease/grant", {"TTL": "300"}).data["ID"]
        c.call("/v3/kv/put", {"key": b64("/app/lock"), "value": b64("fork-holder"), "lease": lease})
    with cluster.client(first) as c:
        c.call("/v3/kv/deleterange", {"key": b64("/app/k3")})
    cluster.put(first, "/app/k4", "majority-value")

    export = tmp_path / "export-etcd-2.json"
    exported = run_module(
        etcd_reconcile, {"operation": "export", "endpoints": [forked.client_url], "path": str(export)}
    )
    assert exported.get("failed") is not True, exported.get("msg")
    recorded = json.loads(export.read_text())["history"]
    assert recorded["start_revision"] == 1 and len(recorded["digests"]) == exported["revision"]
    cluster.stop_member(forked)  # from now on only the export knows the fork

    diff_path = tmp_path / "diff-etcd-2.json"
    made = run_module(
        etcd_reconcile,
        {
            "operation": "diff",
            "export_path": str(export),
            "path": str(diff_path),
            "endpoints": [first.client_url],
        },
    )
    assert made.get("failed") is not True, made.get("msg")
    history = json.loads(diff_path.read_text())["history"]
    assert history["fork_revision"] == shared
    assert [(d["key"], d["delete_revision"]) for d in history["deleted_right"]] == [("/app/k1", shared + 1)]
    assert [d["key"] for d in history["deleted_left"]] == ["/app/k3"]

    report = run_module(
        etcd_reconcile,
        {
            "operation": "report",
            "diffs": [{"member": "etcd-2", "diff": str(diff_path)}],
            "path": str(tmp_path / "conflicts.json"),
        },
    )
    (counts,) = report["forks"]
    assert counts["deletes_checked"] is True and counts["deleted_on_fork"] == 1
    assert counts["leased_only_on_fork"] == 1 and counts["deleted_on_authoritative"] == 1


def b64decode_value(kv_json):
    import base64

    return base64.b64decode(json.loads(kv_json)["value"]).decode()
