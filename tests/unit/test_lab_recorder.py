"""The recorder's reading of a member's answer (roles/lab_workload/files/lab_recorder.py) and the events the
lab_timing callback takes from task tags. Status replies as etcd 3.4's JSON gateway gives them."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


recorder = load("lab_recorder", ROOT / "roles" / "lab_workload" / "files" / "lab_recorder.py")
timing = load("lab_timing_callback", ROOT / "plugins" / "callback" / "lab_timing.py")

STATUS = {
    "header": {"cluster_id": "14841639068965178418", "member_id": "10276657743932975437", "revision": "41",
               "raft_term": "2"},
    "version": "3.4.23", "dbSize": "20480", "leader": "10276657743932975437", "raftIndex": "57",
    "raftTerm": "2",
}  # fmt: skip
MEMBERS = {"members": [{"ID": "10276657743932975437", "name": "etcd-1"}, {"ID": "1", "name": "etcd-0"}]}


def test_a_leader_with_its_member_list():
    out = recorder.summarize({"status": STATUS, "members": MEMBERS, "clock_offset": 0.4}, None)
    assert out == {
        "up": True, "id": "8e9e05c52164694d", "leader": "8e9e05c52164694d", "term": 2, "index": 57,
        "revision": 41, "members": ["etcd-0", "etcd-1"], "clock_offset": 0.4,
    }  # fmt: skip


def test_no_leader_and_the_member_list_kept_from_the_round_before():
    status = dict(STATUS, leader="0")
    before = {"up": True, "members": ["etcd-0", "etcd-1"]}
    out = recorder.summarize({"status": status, "members": None}, before)
    assert out["leader"] == "" and out["members"] == ["etcd-0", "etcd-1"]
    assert "members" not in recorder.summarize({"status": status, "members": None}, {"up": False})


def test_a_member_that_does_not_answer():
    out = recorder.summarize({"status": None, "error": "connection refused"}, None)
    assert out == {"up": False, "error": "connection refused"}


def test_counters_and_clock_noise_do_not_make_a_line_of_their_own():
    one = {"etcd-0": {"up": True, "leader": "a", "term": 2, "index": 5, "revision": 3, "clock_offset": 0.1}}
    two = {"etcd-0": {"up": True, "leader": "a", "term": 2, "index": 9, "revision": 7, "clock_offset": -0.6}}
    assert recorder.significant(one) == recorder.significant(two)
    three = {"etcd-0": dict(two["etcd-0"], term=3)}
    assert recorder.significant(two) != recorder.significant(three)


@pytest.mark.parametrize(
    ("tags", "when", "texts"),
    [
        (["event:partition lifted"], "changed", ["partition lifted"]),
        (["event:partition lifted"], "ok", []),
        (["event:partition lifted"], "failed", ["partition lifted"]),
        (["event-done:briefing", "other"], "ok", ["briefing"]),
        ([], "changed", []),
        (None, "changed", []),
    ],
)
def test_event_tags(tags, when, texts):
    assert timing.event_texts(tags, when) == texts


def test_bad_arguments_are_refused(capsys):
    with pytest.raises(SystemExit):
        recorder.parse_args(["--lab-json", "x", "--out", "y", "--interval", "0"])
    assert "--interval and --duration must be positive" in capsys.readouterr().err
