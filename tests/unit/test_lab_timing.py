"""lab_timing callback: task times, the log's table, and the failed run's one-line message, table-driven."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "plugins" / "callback"))

from lab_timing import RunTimes, duration, failure_message, last_words, timing_log


def test_a_task_lasts_until_the_next_one_starts():
    times = RunTimes(started=100.0)
    times.start_task("A", now=100.0)
    times.start_task("B", now=103.5)
    times.start_task("C", now=104.0)
    times.close(now=110.0)
    assert [(t.name, t.start, t.seconds) for t in times.tasks] == [
        ("A", 0.0, 3.5),
        ("B", 3.5, 0.5),
        ("C", 4.0, 6.0),
    ]
    assert [t.name for t in times.slowest(2)] == ["C", "A"]
    assert times.total(now=110.0) == 10.0


def test_the_log_lists_every_task_in_order_then_slowest_first():
    times = RunTimes(started=0.0)
    times.start_task("fast", now=0.0)
    times.start_task("slow", now=1.0)
    times.close(now=61.0)
    log = timing_log(times, "setup", 61.0)
    order = log.split("# in the order they ran")[1].split("# slowest first")
    assert order[0].index("fast") < order[0].index("slow")
    assert order[1].index("slow") < order[1].index("fast")
    assert "0:01:01.000" in log.splitlines()[0]


@pytest.mark.parametrize(
    ("seconds", "text"), [(0.25, "0:00:00.250"), (61.5, "0:01:01.500"), (3725.0, "1:02:05.000")]
)
def test_duration(seconds, text):
    assert duration(seconds) == text


@pytest.mark.parametrize(
    ("result", "message"),
    [
        ({"msg": "lab_members=2 is out of range"}, "lab_members=2 is out of range"),
        (
            {"msg": "Validation of arguments failed:\n  lab_x must be int"},
            "Validation of arguments failed: lab_x must be int",
        ),
        (
            {"msg": "non-zero return code", "stderr": "ip: RTNETLINK answers: File exists\n", "rc": 2},
            "Build | Add the bridge: ip: RTNETLINK answers: File exists",
        ),
        (
            {
                "msg": "One or more items failed",
                "results": [{"failed": False}, {"failed": True, "msg": "etcd-1 down"}],
            },
            "etcd-1 down",
        ),
        ({}, "Build | Add the bridge: failed"),
    ],
)
def test_failure_message_is_one_line_naming_the_problem(result, message):
    text = failure_message("Build | Add the bridge", result)
    assert text == message
    assert "\n" not in text


@pytest.mark.parametrize(
    ("custom", "lines"),
    [
        (None, []),
        ({}, []),
        ({"_run": {"other": 1}}, []),
        ({"_run": {"lab_last_words": "one\ntwo"}}, ["one", "two"]),
        ({"_run": {"lab_last_words": ["a", "b\nc", "", "d"]}}, ["a", "b", "c", "", "d"]),
        ({"localhost": {"lab_last_words": ["per host"]}}, []),
    ],
)
def test_last_words_are_the_run_wide_lines_set_with_set_stats(custom, lines):
    assert last_words(custom) == lines
