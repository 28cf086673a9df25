"""The workload writer: key layout, ledger entries, surviving an unreachable member (no crash, bounded)."""

from __future__ import annotations

import base64
import json
import signal
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

ROOT = Path(__file__).resolve().parents[2]
WRITER = ROOT / "roles" / "lab_workload" / "files" / "lab_writer.py"
sys.path.insert(0, str(WRITER.parent))
sys.path.insert(0, str(ROOT / "roles" / "fault_split_brain" / "files"))

from diverged import first_conflict
from lab_writer import LeaseHolder, count_lines, key_for, ledger_entry, op_for, parse_args


@pytest.mark.parametrize(
    ("seq", "shared", "key"),
    [
        (0, 5, "/lab/shared/k0"),
        (1, 5, "/lab/writers/etcd-1/00000001"),
        (2, 5, "/lab/shared/k1"),
        (12, 5, "/lab/shared/k2"),
        (18, 5, "/lab/shared/k0"),
        (4, 0, "/lab/writers/etcd-1/00000004"),
    ],
)
def test_even_writes_hit_shared_keys_odd_writes_unique_keys(seq, shared, key):
    assert key_for("etcd-1", "/lab", seq, shared) == key


@pytest.mark.parametrize(
    ("seq", "shared", "op", "key"),
    [
        (0, 5, "delete", "/lab/shared/k0"),
        (1, 5, "put", "/lab/writers/etcd-1/00000001"),
        (2, 5, "put", "/lab/shared/k1"),
        (5, 5, "delete", "/lab/writers/etcd-1/00000001"),
        (15, 5, "delete", "/lab/writers/etcd-1/00000011"),
        (10, 5, "delete", "/lab/shared/k1"),
        (20, 5, "delete", "/lab/shared/k2"),
        (40, 5, "delete", "/lab/shared/k4"),
        (50, 3, "delete", "/lab/shared/k2"),
        (10, 0, "put", "/lab/writers/etcd-1/00000010"),
        (11, 5, "put", "/lab/writers/etcd-1/00000011"),
    ],
)
def test_every_10th_op_deletes_a_shared_key_every_10th_plus_5_an_own_key(seq, shared, op, key):
    assert op_for("etcd-1", "/lab", seq, shared) == (op, key)


def test_every_key_deleted_was_put_before_and_every_shared_key_is_put_again_after_a_delete():
    puts, deleted = set(), set()
    for seq in range(200):
        op, key = op_for("w", "/lab", seq, 5)
        if op == "put":
            puts.add(key)
            deleted.discard(key)
        else:
            assert key in puts or seq < 10, f"seq {seq} deletes {key}, never put"
            deleted.add(key)
    shared_deleted_last = {k for k in deleted if "/shared/" in k}
    assert len(shared_deleted_last) <= 1  # a shared key stays deleted only until the next round puts it
    assert {k for k in puts if "/shared/" in k} == {f"/lab/shared/k{i}" for i in range(5)}


def test_ledger_entry_of_a_delete_and_of_a_leased_put():
    header = {"member_id": "11046527456118344142", "revision": "3", "raft_term": "2"}
    gone = ledger_entry("etcd-0", "http://e:2379", "/lab/shared/k0", "ignored", header, "delete", 0)
    assert gone["op"] == "delete" and gone["value"] is None and gone["deleted"] == 0
    assert gone["revision"] == 3 and "lease" not in gone
    leased = ledger_entry(
        "etcd-0", "http://e:2379", "/lab/leases/etcd-0", "v", header, lease=706680626364361479, lease_ttl=12
    )
    assert leased["op"] == "put" and leased["value"] == "v"
    assert leased["lease"] == "9cea24918192b07" and leased["lease_ttl"] == 12
    assert "deleted" not in leased


class FakeGateway(BaseHTTPRequestHandler):
    """Lease grant / keepalive and put, answered like etcd 3.4.23's gateway (replies recorded there)."""

    calls: ClassVar[list] = []
    alive: ClassVar[set] = set()
    next_id = 706680626364361477

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        header = {"cluster_id": "1", "member_id": "11046527456118344142", "revision": "7", "raft_term": "2"}
        FakeGateway.calls.append((self.path, body))
        if self.path == "/v3/lease/grant":
            FakeGateway.next_id += 2
            FakeGateway.alive.add(str(FakeGateway.next_id))
            reply = {"header": header, "ID": str(FakeGateway.next_id), "TTL": body["TTL"]}
        elif self.path == "/v3/lease/keepalive":
            reply = {"result": {"header": header, "ID": body["ID"]}}  # a lease that is gone: no TTL
            if body["ID"] in FakeGateway.alive:
                reply["result"]["TTL"] = "12"
        else:
            reply = {"header": header}
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *_args):
        pass


@pytest.fixture
def gateway():
    FakeGateway.calls, FakeGateway.alive = [], set()
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeGateway)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_lease_key_is_granted_kept_alive_and_put_again_when_the_lease_is_gone(gateway):
    args = parse_args(["--name", "w", "--endpoint", gateway, "--ledger", "/tmp/x", "--lease-ttl", "12"])
    holder = LeaseHolder(args)
    first = holder.step(seq=3, now=100.0)
    assert first["key"] == "/lab/leases/w" and first["lease_ttl"] == 12
    assert first["lease"] == format(holder.lease, "x") and first["value"] == f"w#3#lease-{first['lease']}"
    put_body = FakeGateway.calls[-1][1]
    assert FakeGateway.calls[-1][0] == "/v3/kv/put" and put_body["lease"] == str(holder.lease)
    assert base64.b64decode(put_body["key"]) == b"/lab/leases/w"
    assert holder.step(seq=4, now=101.0) is None  # not due yet: no request
    assert len(FakeGateway.calls) == 2
    assert holder.step(seq=5, now=104.5) is None  # due: kept alive, nothing new in the ledger
    assert FakeGateway.calls[-1][0] == "/v3/lease/keepalive"
    FakeGateway.alive.clear()  # the lease expired (the member had lost its leader)
    again = holder.step(seq=9, now=109.0)
    assert again is not None and again["lease"] != first["lease"]
    assert [c[0] for c in FakeGateway.calls[-3:]] == ["/v3/lease/keepalive", "/v3/lease/grant", "/v3/kv/put"]


def test_no_lease_key_with_a_ttl_of_zero(gateway):
    args = parse_args(["--name", "w", "--endpoint", gateway, "--ledger", "/tmp/x", "--lease-ttl", "0"])
    assert LeaseHolder(args).step(seq=0, now=1.0) is None and FakeGateway.calls == []


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
    assert "stopped after 0 acknowledged" in proc.stderr and "lease /lab/leases/w failed" in proc.stderr
    assert ledger.read_text() == ""


def test_a_stop_signal_ends_a_long_backoff_at_once(tmp_path):
    """A recovery stops every writer at once and waits for them: a writer of an unreachable member sleeps
    in a 5 s backoff, and must not hold the stop up for the rest of it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, str(WRITER), "--name=w", f"--endpoint=http://127.0.0.1:{port}",
         f"--ledger={tmp_path / 'w.jsonl'}", "--duration=60", "--max-backoff=30"],
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        log = ""
        while log.count("retrying in") < 5:  # backoffs 0.2, 0.4, 0.8, 1.6, then 3.2 s
            line = proc.stderr.readline()
            assert line, f"the writer ended early: {log}"
            log += line
        start = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        assert time.monotonic() - start < 2.0, "the writer slept on after SIGTERM"
        assert "stopped after 0 acknowledged" in proc.stderr.read()
    finally:
        proc.kill()
        proc.wait()


def test_first_conflict_finds_a_key_with_different_values():
    assert first_conflict({"a": "1", "b": "2"}, {"a": "1", "b": "3", "c": "4"}) == "b"
    assert first_conflict({"a": "1"}, {"a": "1", "c": "4"}) is None
    assert json.dumps(first_conflict({}, {})) == "null"


def test_catch_up_writes_without_pause_until_the_index_is_above_the_others(monkeypatch):
    import lab_writer

    args = parse_args(
        ["--name=etcd-2", "--endpoint=http://f:2379", "--ledger=x", "--catch-up=http://a:2379,"]
    )
    args.catch_up_margin = 100
    indexes = {"http://f:2379": 50, "http://a:2379": 300}
    reads = []

    def fake_index(url, _timeout):
        reads.append(url)
        return indexes[url]

    monkeypatch.setattr(lab_writer, "raft_index", fake_index)
    catch_up = lab_writer.CatchUp(args)
    assert args.catch_up == ["http://a:2379"]
    # Below: a burst (no pause) of 26 writes before the indexes are read again.
    assert all(catch_up.due() for _ in range(26)) and len(reads) == 2
    indexes["http://f:2379"] = 401
    assert catch_up.due() is False and catch_up.active is False
    assert catch_up.due() is False and len(reads) == 4  # done: never read again


def test_catch_up_gives_up_when_an_index_cannot_be_read_or_after_its_maximum(monkeypatch):
    import lab_writer

    args = parse_args(["--name=e", "--endpoint=http://f:2379", "--ledger=x", "--catch-up=http://a:2379"])
    monkeypatch.setattr(lab_writer, "raft_index", lambda url, _t: (_ for _ in ()).throw(TimeoutError("t")))
    assert lab_writer.CatchUp(args).due() is False
    monkeypatch.setattr(lab_writer, "raft_index", lambda url, _t: 0 if "f:" in url else 10**6)
    args.catch_up_max = 30
    catch_up = lab_writer.CatchUp(args)
    assert sum(catch_up.due() for _ in range(100)) < 30 and not catch_up.active
    assert (
        lab_writer.CatchUp(parse_args(["--name=e", "--endpoint=http://f:2379", "--ledger=x"])).due() is False
    )
