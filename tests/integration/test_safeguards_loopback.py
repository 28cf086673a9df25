"""Safeguards against real etcd on loopback: the alert rules' metric names, the snapshot loop's retention,
the force-new-cluster guard, and the safeguards role's refusal of an even or broken cluster."""

from __future__ import annotations

import importlib.util
import json
import re
import time
import urllib.request
from pathlib import Path

import etcd_force_guard
import etcd_snapshot
import pytest
import yaml
from etcd_fixtures import etcd_cluster_factory, run_module, run_playbook  # noqa: F401 - fixture

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "roles/safeguards/files/prometheus/etcd-alerts.yml"
_spec = importlib.util.spec_from_file_location("lab_watch", ROOT / "roles/safeguards/files/lab_watch.py")
watch = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(watch)


def rule_metrics() -> set[str]:
    exprs = [r["expr"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]
    return {m for e in exprs for m in re.findall(r"\b(etcd_[a-z_]+)\b", e)}


def metric_families(text: str) -> set[str]:
    return {
        line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")
    }


@pytest.mark.parametrize("version", ["3.4", "3.5"])
def test_every_metric_in_the_alert_rules_exists(etcd_cluster_factory, version, tmp_path):  # noqa: F811
    cluster = etcd_cluster_factory(version, size=3)
    etcd_wanted = {m for m in rule_metrics() if not m.startswith("etcd_lab_")}
    # Histograms with a label (the peer round trip, per peer) appear once the prober has measured: wait.
    deadline = time.monotonic() + 60
    while True:
        with urllib.request.urlopen(f"{cluster.endpoints[0]}/metrics", timeout=5) as resp:
            etcd_names = metric_families(resp.read().decode())
        if etcd_wanted <= etcd_names or time.monotonic() > deadline:
            break
        time.sleep(1)
    # The detector's metrics, from one real round against this cluster.
    argv = ["detect", "--endpoints", ",".join(cluster.endpoints), "--out", str(tmp_path), "--max-cycles", "1"]
    assert watch.main(argv) == 0
    lab_names = metric_families((tmp_path / "detector.prom").read_text())
    wanted = rule_metrics()
    assert {"etcd_server_has_leader", "etcd_lab_detector_leaders", "etcd_lab_clock_offset_seconds"} <= wanted
    missing = sorted(m for m in wanted if m not in etcd_names | lab_names)
    assert not missing, (
        f"alert rules use metrics that etcd {version} and the detector do not export: {missing}"
    )
    state = json.loads((tmp_path / "detector.json").read_text())
    assert state["status"] == "ok" and state["alerts"] == []


@pytest.mark.parametrize("version", ["3.4", "3.5"])
def test_snapshot_loop_keeps_the_newest_and_each_verifies(etcd_cluster_factory, version, tmp_path):  # noqa: F811
    cluster = etcd_cluster_factory(version, size=3)
    argv = [
        "snapshot",
        "--endpoints",
        ",".join(cluster.endpoints),
        "--expected",
        "etcd-0,etcd-1,etcd-2",
        "--out",
        str(tmp_path),
        "--interval",
        "1.1",
        "--keep",
        "2",
        "--max-cycles",
        "4",
        "--bin-dir",
        cluster.binaries.bin_dir,
    ]
    (tmp_path / "operator-copy.db").write_bytes(b"not ours")
    assert watch.main(argv) == 0
    state = json.loads((tmp_path / "snapshots.json").read_text())
    assert state["taken"] == 4 and state["pruned"] == 2, state
    kept = sorted(p.name for p in tmp_path.glob("snapshot-*.db"))
    assert kept == state["kept"] and len(kept) == 2
    assert state["last"]["path"].endswith(kept[-1])
    assert (tmp_path / "operator-copy.db").read_bytes() == b"not ours"
    for name in kept:
        facts = etcd_snapshot.verify_snapshot_file(str(tmp_path / name))
        assert facts["has_hash"] and facts["size"] > 0


def test_snapshot_loop_takes_none_without_quorum(etcd_cluster_factory, tmp_path):  # noqa: F811
    cluster = etcd_cluster_factory("3.5", size=3)
    for m in cluster.members[1:]:
        cluster.stop_member(m)
    argv = [
        "snapshot",
        "--endpoints",
        ",".join(cluster.endpoints),
        "--out",
        str(tmp_path),
        "--interval",
        "0.2",
        "--max-cycles",
        "2",
        "--timeout",
        "1",
    ]
    assert watch.main(argv) == 0
    state = json.loads((tmp_path / "snapshots.json").read_text())
    assert state["taken"] == 0 and state["skipped"] == 2
    assert "no reachable side holds a quorum" in state["last_error"]
    assert not list(tmp_path.glob("snapshot-*.db"))


def guard(cluster, tmp_path, name="etcd-2", **kw):
    others = [m for m in cluster.members if m.name != name]
    args = {
        "member": name,
        "endpoints": [m.client_url for m in others],
        "peer_urls": [m.peer_url for m in others],
        "names": [m.name for m in others],
        "member_endpoint": cluster.member(name).client_url,
        "log_path": str(tmp_path / "guard.log"),
        "timeout": 1,
        **kw,
    }
    return run_module(etcd_force_guard, args)


def test_guard_refuses_while_the_cluster_lives_and_allows_when_it_is_gone(etcd_cluster_factory, tmp_path):  # noqa: F811
    cluster = etcd_cluster_factory("3.4", size=3)
    refused = guard(cluster, tmp_path)
    assert refused["failed"] and refused["decision"] == "refused"
    assert refused["msg"].startswith("Refusing --force-new-cluster on etcd-2: etcd-0 (http://127.0.0.1:")
    assert "2 of the 3 original members follow leader" in refused["msg"]
    assert "etcd-2 itself still follows leader" in refused["msg"]

    no_reason = guard(cluster, tmp_path, override=True)
    assert no_reason["failed"] and "override=true needs a reason" in no_reason["msg"]

    overridden = guard(cluster, tmp_path, override=True, reason="drill: the others are about to be wiped")
    assert not overridden.get("failed") and overridden["decision"] == "overridden" and overridden["changed"]

    for m in cluster.members:
        cluster.stop_member(m)
    allowed = guard(cluster, tmp_path)
    assert not allowed.get("failed") and allowed["decision"] == "allowed" and allowed["reachable"] == []

    log = [json.loads(line) for line in (tmp_path / "guard.log").read_text().splitlines()]
    assert [e["decision"] for e in log] == ["refused", "overridden", "allowed"]
    assert log[1]["reason"] == "drill: the others are about to be wiped"


CHECK_PLAY = """
- name: Test | Run the safeguards role's cluster check
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Test | Check
      ansible.builtin.include_role:
        name: safeguards
        tasks_from: check.yml
"""


def run_check(cluster, tmp_path):
    plan = {"members": [{"name": m.name, "client_url": m.client_url} for m in cluster.members]}
    (tmp_path / "play.yml").write_text(CHECK_PLAY)
    (tmp_path / "vars.json").write_text(json.dumps({"lab_plan": plan, "lab_state_dir": str(tmp_path)}))
    return run_playbook(tmp_path / "play.yml", "-e", f"@{tmp_path / 'vars.json'}")


def test_safeguards_refuse_an_even_cluster(etcd_cluster_factory, tmp_path):  # noqa: F811
    cluster = etcd_cluster_factory("3.5", size=4)
    proc = run_check(cluster, tmp_path)
    assert proc.returncode != 0
    assert "The cluster has 4 voting members" in proc.stdout, proc.stdout[-3000:]
    assert "Add or remove one member to reach an odd size" in proc.stdout


def test_safeguards_refuse_a_cluster_that_is_not_whole(etcd_cluster_factory, tmp_path):  # noqa: F811
    cluster = etcd_cluster_factory("3.5", size=3)
    ok = run_check(cluster, tmp_path)
    assert ok.returncode == 0, ok.stdout[-3000:]
    cluster.stop_member(cluster.members[2])
    proc = run_check(cluster, tmp_path)
    assert proc.returncode != 0
    assert "The cluster is not whole" in proc.stdout and "etcd-2" in proc.stdout, proc.stdout[-3000:]
