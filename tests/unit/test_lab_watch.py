"""The split-brain detector and snapshot loop (roles/safeguards/files/lab_watch.py), on recorded replies."""

from __future__ import annotations

import importlib.util
import json
import os
import time
from pathlib import Path

import etcd_endpoint_status as status_mod
import pytest
from unit.test_etcd_endpoint_status import results_from_recording

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("lab_watch", ROOT / "roles/safeguards/files/lab_watch.py")
watch = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(watch)


def diagnose(version, phase, **kw):
    results = results_from_recording(version, phase, kw.get("only"), kw.get("clock_shift"))
    return status_mod.diagnose(results, kw.get("expected"), 2.0), results


@pytest.mark.parametrize("version", ["3.4", "3.5"])
def test_healthy_cluster_raises_no_alert(version):
    diag, results = diagnose(version, "healthy")
    assert watch.alerts_from(diag, results) == {}
    assert watch.overall({}) == "ok"


@pytest.mark.parametrize("version", ["3.4", "3.5"])
def test_fork_raises_a_critical_split_brain_alert(version):
    diag, results = diagnose(version, "fork")
    alerts = watch.alerts_from(diag, results)
    assert alerts["split_brain"]["severity"] == "critical"
    assert alerts["split_brain"]["message"].startswith("Split-brain: 2 leaders at once")
    assert watch.overall(alerts) == "critical"
    metrics = watch.metrics_text(diag, results, 1700000000.0)
    assert "etcd_lab_detector_leaders 2\n" in metrics
    assert "etcd_lab_detector_member_lists 2\n" in metrics
    assert "etcd_lab_detector_split_brain 1\n" in metrics
    assert watch.distinct_member_lists(results) == 2


def test_member_lists_counts_sets_not_orders():
    # A partitioned member reports the same members as the majority, in another order, with no leader.
    members = [{"id": "a"}, {"id": "b"}, {"id": "c"}]
    results = [
        {"reachable": True, "members": members, "leader": "a"},
        {"reachable": True, "members": members[::-1], "leader": None},
        {"reachable": False, "members": [], "leader": None},
    ]
    assert watch.distinct_member_lists(results) == 1


@pytest.mark.parametrize("version", ["3.4", "3.5"])
def test_leaderless_member_raises_a_warning_not_a_split(version):
    # etcd-0 cut off from its peers (no leader), etcd-1 down, the fork not asked: no split seen, no quorum.
    diag, results = diagnose(version, "leaderless", only=["etcd-0", "etcd-1"])
    alerts = watch.alerts_from(diag, results)
    assert "split_brain" not in alerts
    assert alerts["no_leader:etcd-0"]["severity"] == "warning"
    assert "etcd-0 has no leader" in alerts["no_leader:etcd-0"]["message"]
    assert alerts["unreachable:etcd-1"]["severity"] == "warning"
    assert alerts["no_quorum"]["severity"] == "critical"
    metrics = watch.metrics_text(diag, results, 0.0)
    assert 'etcd_lab_detector_member_has_leader{member="etcd-0"} 0' in metrics
    assert 'etcd_lab_detector_member_up{member="etcd-1"} 0' in metrics
    assert "etcd_lab_detector_leaders 0\n" in metrics


@pytest.mark.parametrize("version", ["3.4", "3.5"])
def test_fork_with_the_majority_down_is_split_and_without_quorum(version):
    diag, results = diagnose(version, "leaderless")
    assert set(watch.alerts_from(diag, results)) == {
        "split_brain",
        "no_quorum",
        "no_leader:etcd-0",
        "unreachable:etcd-1",
    }


def test_clock_skew_alert_and_metric():
    diag, results = diagnose("3.4", "healthy", clock_shift={"etcd-0": 90})
    alerts = watch.alerts_from(diag, results)
    assert set(alerts) == {"clock_skew:etcd-0"}
    assert "ahead of" in alerts["clock_skew:etcd-0"]["message"]
    metrics = watch.metrics_text(diag, results, 0.0)
    line = next(
        x for x in metrics.splitlines() if x.startswith('etcd_lab_clock_offset_seconds{member="etcd-0"}')
    )
    assert 88 < float(line.split()[-1]) < 92


def test_unreachable_member_and_no_quorum():
    # Only the forked member answers, the others are given but do not: no side holds a quorum.
    diag, results = diagnose("3.5", "fork", only=["etcd-2"], expected=["etcd-0", "etcd-1", "etcd-2"])
    alerts = watch.alerts_from(diag, results)
    assert alerts["no_quorum"]["severity"] == "critical"


def test_transitions_log_firing_and_resolved_once():
    a = {"severity": "warning", "message": "etcd-2 has no leader"}
    b = {"severity": "critical", "message": "Split-brain: 2 leaders"}
    assert watch.transitions({}, {"no_leader:etcd-2": a}, "T1") == [
        "T1 FIRING warning no_leader:etcd-2: etcd-2 has no leader"
    ]
    assert watch.transitions({"no_leader:etcd-2": a}, {"no_leader:etcd-2": a}, "T2") == []
    lines = watch.transitions({"no_leader:etcd-2": a}, {"split_brain": b}, "T3")
    assert lines == [
        "T3 FIRING critical split_brain: Split-brain: 2 leaders",
        "T3 RESOLVED warning no_leader:etcd-2: etcd-2 has no leader",
    ]


def test_prune_keeps_the_newest_and_never_touches_other_files(tmp_path):
    names = [f"snapshot-2026112{d}T120000Z.db" for d in range(7)]
    for n in names:
        (tmp_path / n).write_bytes(b"x")
    (tmp_path / "snapshots.json").write_text("{}")
    (tmp_path / "my-own-backup.db").write_bytes(b"keep me")
    removed = watch.prune(tmp_path, 3)
    assert removed == names[:4]
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted([*names[4:], "snapshots.json", "my-own-backup.db"])


def test_snapshot_source_is_the_authoritative_leader_and_none_without_quorum():
    diag, results = diagnose("3.4", "fork")
    src = watch.snapshot_source(diag, results)
    assert src["name"] == "etcd-0" and src["is_leader"]
    diag, results = diagnose("3.5", "fork", only=["etcd-2"], expected=["etcd-0", "etcd-1", "etcd-2"])
    assert watch.snapshot_source(diag, results) is None


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["detect", "--endpoints", ",", "--out", "/"], "--endpoints names no endpoint"),
        (
            ["detect", "--endpoints", "http://127.0.0.1:1", "--out", "/", "--interval", "0"],
            "must be positive",
        ),
        (["snapshot", "--endpoints", "http://127.0.0.1:1", "--out", "/", "--keep", "0"], "--keep"),
        (["detect", "--endpoints", "http://127.0.0.1:1", "--out", "/nonexistent-dir"], "is not a directory"),
    ],
)
def test_bad_arguments_are_refused(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        watch.parse_args(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_detector_loop_is_bounded_and_writes_state_and_log(tmp_path):
    """A real run against a closed loopback port: every member unreachable, alert fired once, loop ends."""
    stop_file = tmp_path / "lab.json"
    stop_file.write_text("{}")
    started = time.monotonic()
    rc = watch.main(
        [
            "detect",
            "--endpoints",
            "http://127.0.0.1:9",
            "--expected",
            "etcd-0",
            "--out",
            str(tmp_path),
            "--interval",
            "0.1",
            "--timeout",
            "0.5",
            "--max-cycles",
            "3",
            "--stop-if-missing",
            str(stop_file),
        ]
    )
    assert rc == 0
    assert time.monotonic() - started < 20
    state = json.loads((tmp_path / "detector.json").read_text())
    assert state["cycle"] == 3
    assert state["status"] == "warning"
    assert [a["key"] for a in state["alerts"]] == ["unreachable:etcd-0"]
    log = (tmp_path / "alerts.log").read_text().splitlines()
    assert len(log) == 1 and " FIRING warning unreachable:etcd-0: " in log[0]
    assert 'etcd_lab_detector_member_up{member="etcd-0"} 0' in (tmp_path / "detector.prom").read_text()
    # The lab is torn down: the next run stops before its first round.
    os.unlink(stop_file)
    assert (
        watch.main(
            [
                "detect",
                "--endpoints",
                "http://127.0.0.1:9",
                "--out",
                str(tmp_path),
                "--stop-if-missing",
                str(stop_file),
            ]
        )
        == 0
    )
    assert json.loads((tmp_path / "detector.json").read_text())["cycle"] == 3


def test_rotate_names_the_new_snapshot_and_applies_retention(tmp_path):
    old = [f"snapshot-2026112{d}T120000Z.db" for d in range(3)]
    for n in old:
        (tmp_path / n).write_bytes(b"old")
    (tmp_path / "incoming.db").write_bytes(b"new snapshot")
    assert watch.main(["rotate", "--out", str(tmp_path), "--keep", "2"]) == 0
    assert not (tmp_path / "incoming.db").exists()
    state = json.loads((tmp_path / "snapshots.json").read_text())
    assert len(state["kept"]) == 2 and state["kept"][0] == old[-1]
    assert (tmp_path / state["kept"][-1]).read_bytes() == b"new snapshot"
    # Nothing saved: a clear failure, nothing removed.
    assert watch.main(["rotate", "--out", str(tmp_path), "--keep", "1"]) == 1
    assert len(list(tmp_path.glob("snapshot-*.db"))) == 2


def test_rotate_runs_from_any_directory_with_the_standard_library_only(tmp_path):
    """The kind CronJob runs the script from a ConfigMap mount, in a plain python image."""
    import shutil
    import subprocess
    import sys

    script = tmp_path / "lab_watch.py"
    shutil.copy(ROOT / "roles/safeguards/files/lab_watch.py", script)
    (tmp_path / "snaps").mkdir()
    (tmp_path / "snaps" / "incoming.db").write_bytes(b"x")
    proc = subprocess.run(
        [sys.executable, "-I", "-S", str(script), "rotate", "--out", str(tmp_path / "snaps")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert len(list((tmp_path / "snaps").glob("snapshot-*.db"))) == 1
