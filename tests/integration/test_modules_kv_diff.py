"""etcd_kv_diff against a real fork (etcd 3.4 and 3.5): keys only on each side, conflicts, binary
values, pagination, the report file, and a leaderless side (serializable reads)."""

from __future__ import annotations

import json
import time

import etcd_kv_diff
import pytest
from etcd_fixtures import etcd_cluster_factory, run_module  # noqa: F401 - fixture


@pytest.mark.parametrize("version", ["3.4", "3.5"])
def test_diff_of_a_fork(etcd_cluster_factory, version, tmp_path):  # noqa: F811
    cluster = etcd_cluster_factory(version, size=3)
    first = cluster.members[0]
    for i in range(40):
        cluster.put(first, f"/app/k{i:02d}", f"v{i}")
    cluster.put(first, "/other/x", "outside the prefix")
    # Wait until etcd-2 has applied everything, /other/x too (the whole key space is compared below), before
    # it is forked: a serializable read answers from what the member itself has applied.
    deadline, applied = time.monotonic() + 10, 0
    while applied != 41 and time.monotonic() < deadline:
        with cluster.client(cluster.member("etcd-2")) as c:
            applied = int(c.range(b"\x00", b"\x00", count_only=True, serializable=True).data.get("count", 0))
        if applied != 41:
            time.sleep(0.1)
    assert applied == 41, f"etcd-2 applied {applied} of the 41 keys in 10 s"
    forked = cluster.fork("etcd-2")
    cluster.put(forked, "/app/k01", "fork-value")
    cluster.put(forked, "/app/only-fork", "f")
    with cluster.client(forked) as c:
        c.call("/v3/kv/put", {"key": "L2FwcC9iaW4=", "value": "AP8BAg=="})  # /app/bin = 00 ff 01 02
    cluster.put(first, "/app/k02", "majority-value")
    cluster.put(first, "/app/only-majority", "m")
    with cluster.client(first) as c:
        c.call("/v3/kv/deleterange", {"key": "L2FwcC9rMDM="})  # delete /app/k03 on the majority

    report = tmp_path / "diff.json"
    args = {
        "endpoints": [first.client_url, forked.client_url],
        "prefix": "/app/",
        "page_size": 7,
        "max_items": 2,
        "report_path": str(report),
    }
    result = run_module(etcd_kv_diff, args)
    assert result.get("failed") is not True, result.get("msg")
    assert result["counts"] == {"only_left": 1, "only_right": 3, "conflicts": 2, "identical": 37}
    assert result["left"]["keys"] == 40 and result["right"]["keys"] == 42
    assert result["truncated"] is True and len(result["only_right"]) == 2
    assert result["changed"] is True and result["identical"] is False
    data = json.loads(report.read_text())
    assert [e["key"] for e in data["only_right"]] == ["/app/bin", "/app/k03", "/app/only-fork"]
    binary = data["only_right"][0]
    assert binary["value_base64"] is True and binary["value"] == "AP8BAg=="
    assert [e["key"] for e in data["only_left"]] == ["/app/only-majority"]
    conflicts = {c["key"]: c for c in data["conflicts"]}
    assert (
        conflicts["/app/k01"]["left"]["value"] == "v1"
        and conflicts["/app/k01"]["right"]["value"] == "fork-value"
    )
    assert conflicts["/app/k02"]["left"]["value"] == "majority-value"
    assert conflicts["/app/k01"]["right"]["mod_revision"] > conflicts["/app/k01"]["left"]["mod_revision"]

    assert result["left"]["transport"] == "grpc" and result["right"]["transport"] == "grpc"
    # The JSON gateway gives the same answer, entry for entry.
    gateway = run_module(
        etcd_kv_diff, {**args, "report_path": str(tmp_path / "gw.json"), "transport": "gateway"}
    )
    assert gateway["left"]["transport"] == "gateway" and gateway["counts"] == result["counts"]
    assert json.loads((tmp_path / "gw.json").read_text()) == {
        **data,
        "left": {**data["left"], "transport": "gateway"},
        "right": {**data["right"], "transport": "gateway"},
    }

    # Same data: the report is unchanged; check mode writes nothing.
    assert run_module(etcd_kv_diff, args)["changed"] is False
    other = tmp_path / "other.json"
    checked = run_module(etcd_kv_diff, {**args, "report_path": str(other)}, check_mode=True)
    assert checked["changed"] is False and not other.exists() and checked["report_path"] is None

    # Whole key space, no prefix: the key outside /app/ is identical on both sides.
    whole = run_module(etcd_kv_diff, {"endpoints": args["endpoints"], "page_size": 1000})
    assert whole["counts"]["identical"] == 38

    # A side without a leader can still be compared (serializable reads).
    cluster.stop_member(cluster.member("etcd-1"))
    time.sleep(1.5)
    leaderless = run_module(etcd_kv_diff, {**args, "report_path": None, "timeout": 3})
    assert leaderless["counts"] == result["counts"]
    linear = run_module(etcd_kv_diff, {**args, "report_path": None, "timeout": 1, "serializable": False})
    assert linear["failed"] and first.client_url in linear["msg"]
