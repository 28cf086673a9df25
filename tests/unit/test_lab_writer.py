"""The workload writer: key layout, ledger entries, surviving an unreachable member (no crash, bounded)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
WRITER = ROOT / "roles" / "lab_workload" / "files" / "lab_writer.py"
sys.path.insert(0, str(WRITER.parent))
sys.path.insert(0, str(ROOT / "roles" / "fault_split_brain" / "files"))

from diverged import first_conflict
from lab_writer import count_lines, key_for, ledger_entry, parse_args


@pytest.mark.parametrize(
    ("seq", "shared", "key"),
    [
        (0, 5, "/lab/shared/k0"),
        (1, 5, "/lab/writers/etcd-1/00000001"),
        (2, 5, "/lab/shared/k1"),
        (10, 5, "/lab/shared/k0"),
        (4, 0, "/lab/writers/etcd-1/00000004"),
    ],
)
def test_even_writes_hit_shared_keys_odd_writes_unique_keys(seq, shared, key):
    assert key_for("etcd-1", "/lab", seq, shared) == key


def test_ledger_entry_from_a_recorded_put_header():
    # Header of a real PUT reply from etcd 3.4.23's gateway (64-bit integers come as strings).
    header = {
        "cluster_id": "10321537626233546438",
        "member_id": "2549956555327886437",
        "revision": "292",
        "raft_term": "2",
    }
    entry = ledger_entry("etcd-0", "http://198.18.213.11:2379", "/lab/shared/k0", "etcd-0#0", header)
    assert entry["member_id"] == "236343fa10ff5465"
    assert entry["revision"] == 292 and entry["raft_term"] == 2
    assert entry["time"].endswith("+00:00")


def test_count_lines_continues_the_sequence(tmp_path):
    ledger = tmp_path / "l.jsonl"
    assert count_lines(str(ledger)) == 0
    ledger.write_text('{"a": 1}\n{"a": 2}\n')
    assert count_lines(str(ledger)) == 2


@pytest.mark.parametrize("endpoint", ["198.18.213.11:2379", "ftp://x:1"])
def test_bad_endpoint_is_refused(endpoint):
    with pytest.raises(SystemExit):
        parse_args(["--name", "w", "--endpoint", endpoint, "--ledger", "/tmp/x"])


def test_unreachable_member_is_retried_with_backoff_and_the_writer_stops_by_itself(tmp_path):
    with socket.socket() as sock:  # a loopback port with nothing listening
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    ledger = tmp_path / "w.jsonl"
    proc = subprocess.run(
        [
            sys.executable,
            str(WRITER),
            "--name=w",
            f"--endpoint=http://127.0.0.1:{port}",
            f"--ledger={ledger}",
            "--rate=50",
            "--duration=2",
            "--max-backoff=0.4",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 0
    assert "Connection refused" in proc.stderr and "retrying in" in proc.stderr
    assert "stopped after 0 acknowledged" in proc.stderr
    assert ledger.read_text() == ""


def test_first_conflict_finds_a_key_with_different_values():
    assert first_conflict({"a": "1", "b": "2"}, {"a": "1", "b": "3", "c": "4"}) == "b"
    assert first_conflict({"a": "1"}, {"a": "1", "c": "4"}) is None
    assert json.dumps(first_conflict({}, {})) == "null"
