"""etcd_snapshot against real etcd 3.4 (etcdctl) and 3.5 (etcdutl): save, status, damaged files,
restore into a data dir and start etcd on it."""

from __future__ import annotations

import os
import shutil

import etcd_snapshot
import pytest
from etcd_fixtures import Cluster, Member, free_ports, run_ansible_module, run_module, running_cluster


@pytest.fixture(scope="module", params=["3.4", "3.5"])
def saved(request, tmp_path_factory):
    """A one-member cluster with 50 keys and a snapshot saved from it by the module."""
    version = request.param
    directory = tmp_path_factory.mktemp(f"snap{version}")
    with running_cluster(version, size=1) as cluster:
        for i in range(50):
            cluster.put(cluster.members[0], f"/app/k{i:02d}", f"value-{i}")
        cluster.put(cluster.members[0], "/app/k00", "overwritten")  # 51 revisions of 50 live keys
        path = directory / "etcd-0.db"
        result = run_module(
            etcd_snapshot,
            {
                "operation": "save",
                "endpoints": cluster.endpoints,
                "path": str(path),
                "bin_dir": cluster.binaries.bin_dir,
            },
        )
        yield version, cluster, path, result


def test_save(saved):
    version, _cluster, path, result = saved
    assert result.get("failed") is not True, result.get("msg")
    assert result["changed"] is True and result["has_hash"] is True
    assert result["size"] == os.path.getsize(path) and result["size"] == result["db_size"] + 32
    assert result["key_count"] == 50
    assert result["revision"] == 52 and result["revision_exact"] is True
    expected_tool = "etcdutl" if version == "3.5" else "etcdctl"
    assert result["tool"] and os.path.basename(result["tool"]) == expected_tool, result.get("tool_error")
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"
    assert [p.name for p in path.parent.iterdir()] == ["etcd-0.db"]  # no temp file left


def test_grpc_and_gateway_give_the_same_file(saved, tmp_path):
    _version, cluster, path, first = saved
    assert first["transport"] == "grpc"
    for transport in ("gateway", "grpc"):
        target = tmp_path / f"{transport}.db"
        result = run_module(
            etcd_snapshot,
            {
                "operation": "save",
                "endpoints": cluster.endpoints,
                "path": str(target),
                "transport": transport,
            },
        )
        assert result["transport"] == transport and result["sha256"] == first["sha256"]
        assert target.read_bytes() == path.read_bytes()


def test_save_again_keeps_the_file(saved):
    _version, cluster, path, first = saved
    before = path.stat().st_mtime_ns
    again = run_module(
        etcd_snapshot, {"operation": "save", "endpoints": cluster.endpoints, "path": str(path)}
    )
    assert (
        again["changed"] is False and again["sha256"] == first["sha256"] and path.stat().st_mtime_ns == before
    )


def test_save_check_mode_writes_nothing(saved, tmp_path):
    _version, cluster, _path, _ = saved
    target = tmp_path / "x.db"
    result = run_module(
        etcd_snapshot,
        {"operation": "save", "endpoints": cluster.endpoints, "path": str(target)},
        check_mode=True,
    )
    assert result["changed"] is True and not target.exists()


def test_status_matches_etcd_tools(saved):
    _version, cluster, path, first = saved
    status = run_module(
        etcd_snapshot, {"operation": "status", "path": str(path), "bin_dir": cluster.binaries.bin_dir}
    )
    assert status["changed"] is False and status["sha256"] == first["sha256"]
    assert status["revision"] == 52 and status["total_key"] >= 50


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda b: b[: len(b) // 2 + 100], "truncated or corrupted"),
        (lambda b: b[:8192], "no trailing sha256"),
        (lambda b: b[:5000] + bytes([b[5000] ^ 0x55]) + b[5001:], "does not match the hash"),
    ],
    ids=["cut", "cut-at-page", "bit-flip"],
)
def test_damaged_snapshot_detected_by_status_and_restore(saved, tmp_path, damage, message):
    _version, cluster, path, _ = saved
    bad = tmp_path / "bad.db"
    bad.write_bytes(damage(path.read_bytes()))
    status = run_module(
        etcd_snapshot, {"operation": "status", "path": str(bad), "bin_dir": cluster.binaries.bin_dir}
    )
    assert status["failed"] and message in status["msg"]
    data_dir = tmp_path / "data"
    restore = run_module(
        etcd_snapshot,
        {
            "operation": "restore",
            "path": str(bad),
            "data_dir": str(data_dir),
            "name": "r0",
            "initial_cluster": "r0=http://127.0.0.1:2380",
            "peer_urls": ["http://127.0.0.1:2380"],
            "bin_dir": cluster.binaries.bin_dir,
        },
    )
    assert restore["failed"] and message in restore["msg"] and not data_dir.exists()


def test_restore_and_start_etcd_from_it(saved, tmp_path):
    _version, cluster, path, first = saved
    client_port, peer_port = free_ports(2)
    peer = f"http://127.0.0.1:{peer_port}"
    data_dir = tmp_path / "restored.data"
    data_dir.mkdir()
    (data_dir / "old-file").write_text("precious")
    args = {
        "operation": "restore",
        "path": str(path),
        "data_dir": str(data_dir),
        "name": "r0",
        "initial_cluster": f"r0={peer}",
        "initial_cluster_token": "restored",
        "peer_urls": [peer],
        "bin_dir": cluster.binaries.bin_dir,
    }
    refused = run_module(etcd_snapshot, args)
    assert refused["failed"] and "is not empty: refusing" in refused["msg"]
    assert (data_dir / "old-file").read_text() == "precious"

    done = run_module(etcd_snapshot, {**args, "move_aside": True})
    assert done["changed"] is True, done.get("msg")
    assert (tmp_path / os.path.basename(done["moved_to"]) / "old-file").read_text() == "precious"
    assert (data_dir / "member" / "snap" / "db").exists()
    again = run_module(etcd_snapshot, {**args, "move_aside": True})
    assert again["changed"] is False and again["sha256"] == first["sha256"]

    # Start a member on the restored data dir and read the data back.
    restored = Cluster(cluster.binaries, size=0, workdir=str(tmp_path))
    m = Member("r0", client_port, peer_port, str(data_dir), str(tmp_path / "r0.log"))
    restored.members.append(m)
    try:
        restored.start_member(m)
        restored.wait_ready()
        with restored.client(m) as c:
            kvs = c.range(b"/app/", b"/app0", count_only=True).data
            one = c.range(b"/app/k00").data
        assert int(kvs["count"]) == 50
        import base64

        assert base64.b64decode(one["kvs"][0]["value"]) == b"overwritten"
    finally:
        restored.stop()
    shutil.rmtree(data_dir)


def test_grpc_through_the_ansible_cli(saved, tmp_path):
    """Run by ansible itself, the module's zip (AnsiballZ) carries etcd_grpc and the generated stubs: the
    snapshot comes over gRPC."""
    _version, cluster, _path, _result = saved
    args = {"operation": "save", "endpoints": cluster.endpoints, "path": str(tmp_path / "cli.db")}
    result = run_ansible_module("etcd_snapshot", args)
    assert result["transport"] == "grpc" and result["has_hash"] is True
