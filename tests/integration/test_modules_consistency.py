"""etcd_consistency's HashKV check on real clusters (etcd 3.4 and 3.5): it passes while a writer keeps
writing (the hashes are compared at one revision every member has applied), and it still fails on a fork
whose data differs."""

from __future__ import annotations

import threading
import time

import etcd_consistency
import pytest
from ansible.module_utils.etcd_diagnosis import compare_hashkv, hashkv_at
from etcd_fixtures import etcd_cluster_factory, run_module  # noqa: F401 - fixture

HASH = "hashkv equal at one revision"


class BoundedWriter(threading.Thread):
    """Puts to each member in turn until `stop` is set, at most `limit` puts or `seconds` (ends by itself)."""

    def __init__(self, cluster, limit=3000, seconds=60.0):
        super().__init__(daemon=True)
        self.cluster, self.limit, self.seconds = cluster, limit, seconds
        self.stop = threading.Event()
        self.written = 0
        self.errors = []

    def run(self):
        deadline = time.monotonic() + self.seconds
        members = self.cluster.members
        clients = [self.cluster.client(m) for m in members]
        try:
            while not self.stop.is_set() and self.written < self.limit and time.monotonic() < deadline:
                client = clients[self.written % len(clients)]
                try:
                    client.put(f"/load/k{self.written % 50}", f"v{self.written}")
                    self.written += 1
                except Exception as exc:  # recorded: the test asserts on it
                    self.errors.append(str(exc))
                    return
        finally:
            for c in clients:
                c.close()

    def wait_written(self, count, timeout=30.0):
        deadline = time.monotonic() + timeout
        while self.written < count and self.is_alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert self.written >= count, f"the writer wrote {self.written} puts: {self.errors}"


def hash_result(result):
    return next(c for c in result["checks"] if c["name"] == HASH)


@pytest.mark.parametrize("version", ["3.4", "3.5"])
def test_hashkv_passes_while_a_writer_keeps_writing(etcd_cluster_factory, version):  # noqa: F811
    cluster = etcd_cluster_factory(version, size=3)
    writer = BoundedWriter(cluster)
    writer.start()
    try:
        writer.wait_written(100)
        before = writer.written
        results = []
        for _ in range(3):  # a few times: each one races the writer at a different moment
            results.append(
                run_module(
                    etcd_consistency,
                    {"endpoints": cluster.endpoints, "settle_timeout": 0, "timeout": 5},
                )
            )
        during = writer.written
        assert writer.is_alive(), "the writer stopped before the checks ended: they did not race it"
    finally:
        writer.stop.set()
        writer.join(timeout=30)
    assert not writer.errors
    assert during > before, "no write happened while the checks ran"
    for result in results:
        check = hash_result(result)
        assert check["ok"], check["detail"]
        assert result["ok"], result["checks"]
        assert result["revision"] > 1
        assert set(result["hashes"]) == {"etcd-0", "etcd-1", "etcd-2"}
        assert f"revision {result['revision']} (never compacted): all 3 members hash" in check["detail"]


@pytest.mark.parametrize("version", ["3.5"])
def test_hashkv_fails_on_a_fork_with_other_data(etcd_cluster_factory, version):  # noqa: F811
    cluster = etcd_cluster_factory(version, size=3)
    first = cluster.members[0]
    for i in range(20):
        cluster.put(first, f"/app/k{i}", f"v{i}")
    forked = cluster.fork("etcd-2")
    cluster.put(forked, "/app/k1", "fork-value")
    cluster.put(first, "/app/k1", "majority-value")
    cluster.put(first, "/app/k2", "majority-value")
    result = run_module(etcd_consistency, {"endpoints": cluster.endpoints, "settle_timeout": 0, "timeout": 5})
    check = hash_result(result)
    assert not check["ok"], check["detail"]
    assert "hashes differ" in check["detail"]
    revisions = {}
    for m in cluster.members:
        with cluster.client(m) as c:
            revisions[m.name] = int(c.status().data["header"]["revision"])
    assert result["revision"] == min(revisions.values())
    assert len(set(result["hashes"].values())) == 2


@pytest.mark.parametrize("version", ["3.4"])
def test_a_revision_below_the_compaction_is_named(etcd_cluster_factory, version):  # noqa: F811
    cluster = etcd_cluster_factory(version, size=3)
    first = cluster.members[0]
    params = {"timeout": 5}
    names = {m.name: m.client_url for m in cluster.members}
    for i in range(10):
        cluster.put(first, "/app/k", f"v{i}")
    with cluster.client(first) as c:
        revision = int(c.status().data["header"]["revision"])
        assert c.hashkv(revision)["compact_revision"] == -1  # never compacted (an int64 of -1 on the wire)
        c.call("/v3/kv/compaction", {"revision": str(revision - 3), "physical": True})
    replies = hashkv_at(params, names, revision - 5)
    verdict, detail = compare_hashkv(revision - 5, replies)
    assert verdict == "compacted", detail
    assert f"revision {revision - 5} is compacted on etcd-0 (compact revision {revision - 3})" in detail
    # Above the compaction every member answers, with the compact revision each applied.
    deadline = time.monotonic() + 10
    while True:
        verdict, detail = compare_hashkv(revision, hashkv_at(params, names, revision))
        if verdict != "retry" or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert verdict == "equal", detail
    assert f"(compact revision {revision - 3})" in detail
