"""lab_clock_skew's record of the offset (for restarts and ./lab exec): written as a plain number, removed on
revert, read back to skew a restarted etcd again; a record that is not a number is one line naming it."""

from __future__ import annotations

import lab_clock_skew as mod
import pytest
from ansible.module_utils.vdso_clock import ClockSkewError


@pytest.mark.parametrize(
    ("offset", "text"), [(90, "90"), (-2.5, "-2.5"), (0.000000001, "1e-09"), (-90.0, "-90")]
)
def test_the_record_is_a_plain_number_of_seconds(offset, text):
    assert mod.format_offset(offset) == text
    assert float(text) == pytest.approx(offset)


def test_a_record_is_written_once_and_removed_once(tmp_path):
    record = str(tmp_path / "clock_offset")
    assert mod.update_record(record, 90, check_mode=True) is True
    assert not (tmp_path / "clock_offset").exists()
    assert mod.update_record(record, 90, check_mode=False) is True
    assert (tmp_path / "clock_offset").read_text() == "90\n"
    assert mod.read_record(record) == 90.0
    assert mod.update_record(record, 90, check_mode=False) is False
    assert mod.update_record(record, None, check_mode=False) is True
    assert mod.read_record(record) is None
    assert mod.update_record(record, None, check_mode=False) is False


def test_reapply_without_a_record_does_nothing(tmp_path):
    params = {"pid": None, "pidfile": str(tmp_path / "etcd.pid"), "offset": 0, "state": "present",
              "expect_comm": "etcd", "record": str(tmp_path / "clock_offset"), "reapply": True}  # fmt: skip
    assert mod.run(params, check_mode=False) == {
        "changed": False, "pid": None, "offset": None, "previous_offset": None, "action": "none"
    }  # fmt: skip


def test_reapply_reads_the_record_and_names_a_bad_one(tmp_path):
    (tmp_path / "clock_offset").write_text("ninety\n")
    params = {"pid": None, "pidfile": str(tmp_path / "etcd.pid"), "offset": 0, "state": "present",
              "expect_comm": "etcd", "record": str(tmp_path / "clock_offset"), "reapply": True}  # fmt: skip
    with pytest.raises(ClockSkewError, match=r"clock_offset does not hold a number of seconds: 'ninety'"):
        mod.run(params, check_mode=False)
    (tmp_path / "clock_offset").write_text("90\n")  # a record, but no process: the pid file is named
    with pytest.raises(ClockSkewError, match=r"etcd.pid"):
        mod.run(params, check_mode=False)


def test_revert_of_a_stopped_process_still_removes_the_record(tmp_path):
    (tmp_path / "clock_offset").write_text("90\n")
    params = {"pid": None, "pidfile": str(tmp_path / "etcd.pid"), "offset": 0, "state": "absent",
              "expect_comm": "etcd", "record": str(tmp_path / "clock_offset"), "reapply": False}  # fmt: skip
    assert mod.run(params, check_mode=False)["changed"] is True
    assert not (tmp_path / "clock_offset").exists()
    assert mod.run(params, check_mode=False)["changed"] is False
