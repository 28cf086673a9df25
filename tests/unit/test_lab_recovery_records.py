"""lab_recovery_records: what earlier recover.yml runs left behind, read as the role expects it; a record that
does not hold what it should is one line naming the file."""

from __future__ import annotations

import hashlib
import json

import pytest
from lab_recovery_records import RecordError, mark_reconciled, read_records, write_record


def test_an_empty_or_missing_directory_has_no_records(tmp_path):
    for path in (tmp_path, tmp_path / "nosuch"):
        assert read_records(str(path)) == {
            "forks": [],
            "restore": None,
            "restore_snapshot": False,
            "conflicts_sha256": None,
            "reconciled_sha256": None,
            "reconcile_pending": False,
            "offline_read": [],
        }


def test_every_record_is_read(tmp_path):
    (tmp_path / "forks.json").write_text(json.dumps({"forks": ["etcd-2", "etcd-1", "etcd-2"]}))
    (tmp_path / "restore.json").write_text(json.dumps({"source": "etcd-0", "stamp": "20261206T101500Z"}))
    (tmp_path / "snapshot-etcd-0.db").write_bytes(b"x")
    (tmp_path / "offline-read.json").write_text(json.dumps({"dirs": ["nodes/etcd-2/data.old"]}))
    got = read_records(str(tmp_path))
    assert got["forks"] == ["etcd-1", "etcd-2"]
    assert got["restore"] == {"source": "etcd-0", "stamp": "20261206T101500Z"}
    assert got["restore_snapshot"] is True
    assert got["offline_read"] == ["nodes/etcd-2/data.old"]


def test_the_snapshot_is_the_restore_sources_own(tmp_path):
    (tmp_path / "restore.json").write_text(json.dumps({"source": "etcd-1", "stamp": "s"}))
    (tmp_path / "snapshot-etcd-0.db").write_bytes(b"x")
    assert read_records(str(tmp_path))["restore_snapshot"] is False


@pytest.mark.parametrize(
    ("marker", "pending"),
    [(None, True), ("", True), ("0" * 64, True), ("SHA", False), ("SHA\n", False)],
)
def test_the_replay_is_pending_until_its_marker_holds_the_reports_checksum(tmp_path, marker, pending):
    report = b'{"conflicts": []}\n'
    (tmp_path / "conflicts.json").write_bytes(report)
    digest = hashlib.sha256(report).hexdigest()
    if marker is not None:
        (tmp_path / "reconciled.sha256").write_text(marker.replace("SHA", digest))
    got = read_records(str(tmp_path))
    assert got["conflicts_sha256"] == digest
    assert got["reconcile_pending"] is pending


def test_a_marker_without_a_report_is_nothing_to_replay(tmp_path):
    (tmp_path / "reconciled.sha256").write_text("abc\n")
    assert read_records(str(tmp_path))["reconcile_pending"] is False


@pytest.mark.parametrize(
    ("name", "content", "said"),
    [
        ("forks.json", "{", "forks.json does not hold the expected record (forks)"),
        ("forks.json", "{}", "forks.json does not hold the expected record (forks)"),
        ("forks.json", '{"forks": "etcd-2"}', "forks.json: forks should be a list, not str"),
        ("restore.json", "[]", "restore.json: the record should be a dict, not list"),
        ("restore.json", "{}", "restore.json names no source member"),
        ("offline-read.json", '{"dirs": 3}', "offline-read.json: dirs should be a list, not int"),
    ],
)
def test_a_broken_record_is_named(tmp_path, name, content, said):
    (tmp_path / name).write_text(content)
    with pytest.raises(RecordError, match=said.replace("(", r"\(").replace(")", r"\)")) as err:
        read_records(str(tmp_path))
    assert "\n" not in str(err.value)


def test_a_written_record_is_read_back_and_a_second_write_changes_nothing(tmp_path):
    path = tmp_path / "recovery"  # not there yet: the write creates it
    assert write_record(str(path), "forks", ["etcd-2", "etcd-1", "etcd-2"]) is True
    assert read_records(str(path))["forks"] == ["etcd-1", "etcd-2"]
    assert write_record(str(path), "forks", ["etcd-1", "etcd-2"]) is False
    assert write_record(str(path), "offline_read", ["nodes/etcd-2/data.old"]) is True
    assert read_records(str(path))["offline_read"] == ["nodes/etcd-2/data.old"]
    assert write_record(str(path), "forks", []) is True
    assert read_records(str(path))["forks"] == []
    assert (path / "forks.json").stat().st_mode & 0o777 == 0o644


def test_check_mode_writes_nothing_but_says_it_would(tmp_path):
    assert write_record(str(tmp_path / "recovery"), "forks", ["etcd-2"], check_mode=True) is True
    assert not (tmp_path / "recovery").exists()


def test_a_record_that_cannot_be_written_is_one_line_naming_it(tmp_path):
    (tmp_path / "file").write_text("not a dir")
    with pytest.raises(RecordError, match=r"cannot (read|write) .*file/forks.json"):
        write_record(str(tmp_path / "file"), "forks", ["etcd-2"])


def test_the_replay_marker_holds_the_reports_sha256_and_ends_the_pending_replay(tmp_path):
    assert mark_reconciled(str(tmp_path)) is False  # no report: no marker
    assert not (tmp_path / "reconciled.sha256").exists()
    (tmp_path / "conflicts.json").write_text('{"members": []}')
    assert read_records(str(tmp_path))["reconcile_pending"] is True
    assert mark_reconciled(str(tmp_path)) is True
    got = read_records(str(tmp_path))
    assert got["reconcile_pending"] is False
    assert got["reconciled_sha256"] == hashlib.sha256(b'{"members": []}').hexdigest()
    assert mark_reconciled(str(tmp_path)) is False
    (tmp_path / "conflicts.json").write_text('{"members": ["etcd-2"]}')  # a new report: pending again
    assert read_records(str(tmp_path))["reconcile_pending"] is True
