"""etcd_snapshot: integrity checks on synthetic files, restore safety with a fake etcdutl."""

from __future__ import annotations

import hashlib
import json
import os

import etcd_snapshot as mod
import pytest
from ansible.module_utils.etcd_errors import EtcdError


def fake_db(size=8192, seed=b"x"):
    """Bytes that look like a bbolt file to the module: meta page magic at offset 16."""
    page = bytearray(size)
    page[16:20] = (0xED0CDAED).to_bytes(4, "little")
    page[100 : 100 + len(seed)] = seed
    return bytes(page)


def write_snapshot(path, db=None, with_hash=True):
    db = db or fake_db()
    path.write_bytes(db + (hashlib.sha256(db).digest() if with_hash else b""))
    return hashlib.sha256(db).hexdigest()


def test_valid_snapshot(tmp_path):
    snap = tmp_path / "s.db"
    digest = write_snapshot(snap)
    facts = mod.verify_snapshot_file(str(snap))
    assert facts == {"path": str(snap), "size": 8224, "db_size": 8192, "sha256": digest, "has_hash": True}


CORRUPTIONS = [
    ("truncated in the middle", lambda b: b[:5000], "truncated or corrupted: its size 5000"),
    ("truncated hash", lambda b: b[:-7], "truncated or corrupted"),
    ("truncated to a page boundary", lambda b: b[:4096], "has no trailing sha256"),
    ("bit flip", lambda b: b[:200] + bytes([b[200] ^ 1]) + b[201:], "does not match the hash"),
    ("hash flip", lambda b: b[:-1] + bytes([b[-1] ^ 0xFF]), "does not match the hash"),
    ("not bolt", lambda b: b"\x00" * 16 + b"JUNK" + b[20:], r"not an etcd \(bbolt\) database"),
    ("empty", lambda b: b"", "too small"),
]


@pytest.mark.parametrize(("name", "damage", "message"), CORRUPTIONS, ids=[c[0] for c in CORRUPTIONS])
def test_damaged_snapshots_are_detected(tmp_path, name, damage, message):
    snap = tmp_path / "s.db"
    write_snapshot(snap)
    snap.write_bytes(damage(snap.read_bytes()))
    with pytest.raises(EtcdError, match=message):
        mod.verify_snapshot_file(str(snap))


def test_copied_db_without_hash_needs_skip_hash_check(tmp_path):
    snap = tmp_path / "db"
    digest = write_snapshot(snap, with_hash=False)
    with pytest.raises(EtcdError, match="skip_hash_check"):
        mod.verify_snapshot_file(str(snap))
    facts = mod.verify_snapshot_file(str(snap), skip_hash_check=True)
    assert facts["has_hash"] is False and facts["sha256"] == digest


def test_find_tool_prefers_etcdutl(tmp_path):
    for name in ("etcdctl", "etcdutl"):
        p = tmp_path / name
        p.write_text("#!/bin/sh\n")
        p.chmod(0o755)
    assert mod.find_tool(str(tmp_path), None) == ("etcdutl", str(tmp_path / "etcdutl"))
    (tmp_path / "etcdutl").unlink()
    assert mod.find_tool(str(tmp_path), None) == ("etcdctl", str(tmp_path / "etcdctl"))
    assert mod.find_tool(None, lambda n: "/x/etcdctl" if n == "etcdctl" else None) == (
        "etcdctl",
        "/x/etcdctl",
    )
    assert mod.tool_env("etcdctl") == {"ETCDCTL_API": "3"}


class FakeTool:
    """Stands in for etcdutl: records calls and makes <data-dir>/member/snap/db."""

    def __init__(self, rc=0):
        self.calls = []
        self.rc = rc

    def __call__(self, argv, env):
        self.calls.append((argv, env))
        if argv[1:3] == ["snapshot", "status"]:
            return 0, json.dumps({"hash": 1, "revision": 7, "totalKey": 9, "totalSize": 8192}), ""
        if self.rc:
            return self.rc, "", "Error: snapshot file integrity check failed"
        data_dir = argv[argv.index("--data-dir") + 1]
        os.makedirs(os.path.join(data_dir, "member", "snap"))
        with open(os.path.join(data_dir, "member", "snap", "db"), "wb") as f:
            f.write(b"restored")
        return 0, "", ""


@pytest.fixture
def restore_params(tmp_path):
    snap = tmp_path / "s.db"
    write_snapshot(snap)
    tool = tmp_path / "bin" / "etcdutl"
    tool.parent.mkdir()
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    return {
        "operation": "restore",
        "path": str(snap),
        "data_dir": str(tmp_path / "etcd-0.data"),
        "name": "etcd-0",
        "initial_cluster": "etcd-0=http://127.0.0.1:2380",
        "initial_cluster_token": "tok",
        "peer_urls": ["http://127.0.0.1:2380"],
        "move_aside": False,
        "skip_hash_check": False,
        "bin_dir": str(tool.parent),
        "endpoints": None,
        "force": False,
    }


def test_restore_into_missing_dir_then_idempotent(restore_params):
    tool = FakeTool()
    result = mod.run(restore_params, False, tool, None)
    assert result["changed"] and result["moved_to"] is None
    argv = tool.calls[0][0]
    assert argv[:4] == [restore_params["bin_dir"] + "/etcdutl", "snapshot", "restore", restore_params["path"]]
    assert argv[argv.index("--initial-cluster-token") + 1] == "tok"
    assert os.path.exists(os.path.join(restore_params["data_dir"], "member", "snap", "db"))
    with open(result["marker"]) as f:
        marker = json.load(f)
    assert marker["sha256"] == result["sha256"]
    # Second run: nothing redone.
    again = mod.run(restore_params, False, tool, None)
    assert again["changed"] is False and len(tool.calls) == 1


def test_restore_refuses_non_empty_data_dir_and_moves_it_aside_when_told(restore_params):
    data_dir = restore_params["data_dir"]
    os.makedirs(os.path.join(data_dir, "member"))
    with open(os.path.join(data_dir, "member", "keep"), "w") as f:
        f.write("old data")
    tool = FakeTool()
    with pytest.raises(EtcdError, match="is not empty: refusing"):
        mod.run(restore_params, False, tool, None)
    assert tool.calls == [] and os.path.exists(os.path.join(data_dir, "member", "keep"))
    # Check mode reports the move, does nothing.
    planned = mod.run({**restore_params, "move_aside": True}, True, tool, None)
    assert planned["changed"] and planned["moved_to"].startswith(data_dir + ".moved-")
    assert tool.calls == [] and not os.path.exists(planned["moved_to"])
    done = mod.run({**restore_params, "move_aside": True}, False, tool, None)
    assert done["changed"] and os.path.exists(os.path.join(done["moved_to"], "member", "keep"))
    assert os.path.exists(os.path.join(data_dir, "member", "snap", "db"))


def test_restore_with_another_snapshot_is_redone_only_with_move_aside(restore_params, tmp_path):
    tool = FakeTool()
    mod.run(restore_params, False, tool, None)
    other = tmp_path / "other.db"
    write_snapshot(other, fake_db(seed=b"other"))
    with pytest.raises(EtcdError, match="is not empty"):
        mod.run({**restore_params, "path": str(other)}, False, tool, None)
    result = mod.run({**restore_params, "path": str(other), "move_aside": True}, False, tool, None)
    assert result["changed"] and result["moved_to"]


def test_restore_refuses_corrupted_snapshot_before_touching_anything(restore_params):
    snap = restore_params["path"]
    with open(snap, "rb") as f:
        data = bytearray(f.read())
    data[300] ^= 0xFF
    with open(snap, "wb") as f:
        f.write(bytes(data))
    os.makedirs(restore_params["data_dir"])
    tool = FakeTool()
    with pytest.raises(EtcdError, match="corrupted"):
        mod.run({**restore_params, "move_aside": True}, False, tool, None)
    assert (
        tool.calls == [] and os.listdir(os.path.dirname(restore_params["data_dir"])).count("etcd-0.data") == 1
    )


def test_restore_tool_failure_leaves_data_dir_alone(restore_params):
    os.makedirs(os.path.join(restore_params["data_dir"], "member"))
    tool = FakeTool(rc=1)
    with pytest.raises(EtcdError, match=r"snapshot restore failed .*integrity check failed"):
        mod.run({**restore_params, "move_aside": True}, False, tool, None)
    parent = os.path.dirname(restore_params["data_dir"])
    assert sorted(os.listdir(parent)) == ["bin", "etcd-0.data", "s.db"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"initial_cluster": "etcd-1=http://127.0.0.1:2380"}, "no entry for member etcd-0"),
        ({"peer_urls": ["127.0.0.1:2380"]}, "Peer URL '127.0.0.1:2380' has no scheme"),
        ({"bin_dir": "/nonexistent"}, "Neither etcdutl nor etcdctl found in /nonexistent"),
    ],
)
def test_restore_bad_arguments(restore_params, change, message):
    with pytest.raises(EtcdError, match=message):
        mod.run({**restore_params, **change}, False, FakeTool(), None)


def test_status_uses_tool(restore_params):
    tool = FakeTool()
    result = mod.run({**restore_params, "operation": "status"}, False, tool, None)
    assert result["revision"] == 7 and result["total_key"] == 9 and result["changed"] is False
    assert tool.calls[0][0][1:3] == ["snapshot", "status"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"operation": "save", "path": "/tmp/x.db"}, "missing: endpoints"),
        ({"operation": "save", "path": "/tmp/x.db", "endpoints": []}, "exactly one endpoint (got 0)"),
        (
            {
                "operation": "save",
                "path": "/tmp/x.db",
                "endpoints": ["http://127.0.0.1:1", "http://127.0.0.1:2"],
            },
            "exactly one endpoint (got 2)",
        ),
        (
            {"operation": "save", "path": "/nonexistent/x.db", "endpoints": ["http://127.0.0.1:1"]},
            "does not exist",
        ),
        (
            {"operation": "restore", "path": "/tmp/x.db"},
            "missing: data_dir, name, initial_cluster, peer_urls",
        ),
        ({"operation": "status", "path": "/nonexistent.db"}, "Cannot read snapshot /nonexistent.db"),
        ({"operation": "backup", "path": "/tmp/x.db"}, "value of operation must be one of"),
    ],
)
def test_module_argument_errors(args, message):
    from integration.etcd_fixtures import run_module

    result = run_module(mod, args)
    assert result["failed"] and message in result["msg"], result["msg"]


def test_the_metadata_goes_beside_the_snapshot_and_is_written_again_only_when_it_changes(tmp_path):
    path = str(tmp_path / "snapshot-etcd-2.db")
    assert mod.metadata_path(path) == str(tmp_path / "snapshot-etcd-2.json")
    assert mod.metadata_path("/x/snap") == "/x/snap.json"
    result = {"revision": 12, "key_count": 3, "sha256": "ab" * 32, "size": 4096, "tool": "etcdutl"}
    assert mod.write_metadata(path, {"member": "etcd-2", "side": "fork"}, result) is True
    written = json.loads((tmp_path / "snapshot-etcd-2.json").read_text())
    assert written == {"member": "etcd-2", "side": "fork", "revision": 12, "key_count": 3,
                       "sha256": "ab" * 32, "size": 4096}  # fmt: skip
    assert (tmp_path / "snapshot-etcd-2.json").stat().st_mode & 0o777 == 0o644
    assert mod.write_metadata(path, {"member": "etcd-2", "side": "fork"}, result) is False
    assert mod.write_metadata(path, {"member": "etcd-2", "side": "fork"}, {**result, "revision": 13}) is True


def test_save_creates_the_directory_only_when_told(tmp_path):
    from integration.etcd_fixtures import run_module

    args = {"operation": "save", "path": str(tmp_path / "new" / "x.db"), "endpoints": ["http://127.0.0.1:1"],
            "timeout": 0.5}  # fmt: skip
    refused = run_module(mod, args)
    assert refused["failed"] and "does not exist" in refused["msg"]
    assert not (tmp_path / "new").exists()
    told = run_module(mod, {**args, "create_directory": True})
    assert told["failed"] and "does not exist" not in told["msg"]  # nobody listens on port 1
    assert (tmp_path / "new").is_dir()
