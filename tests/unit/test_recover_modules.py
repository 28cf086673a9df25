"""etcd_reconcile and etcd_consistency without etcd: the conflict report and the ledger audit.

Their documentation is checked with every etcd_* module in test_etcd_docs.py."""

from __future__ import annotations

import json

import etcd_consistency
import etcd_reconcile


def test_quarantine_key_keeps_the_member_and_the_key():
    assert etcd_reconcile.quarantine_key("/recovery/quarantine/", "etcd-2", "/lab/k") == (
        "/recovery/quarantine/etcd-2/lab/k"
    )
    assert etcd_reconcile.quarantine_key("/q", "etcd-2", "k") == "/q/etcd-2/k"


def diff_file(tmp_path):
    diff = {
        "left": {"endpoint": "http://a:2379", "revision": 40},
        "right": {"endpoint": "http://f:2379", "revision": 30},
        "only_left": [{"key": "/lab/w/a/1", "value": "a#1"}],
        "only_right": [{"key": "/lab/w/f/3", "key_base64": False, "value": "f#3", "mod_revision": 29}],
        "conflicts": [
            {
                "key": "/lab/shared/k0",
                "key_base64": False,
                "left": {"value": "a#2", "value_base64": False, "mod_revision": 39},
                "right": {"value": "f#4", "value_base64": False, "mod_revision": 30},
            }
        ],
    }
    path = tmp_path / "diff-etcd-2.json"
    path.write_text(json.dumps(diff))
    return path


def test_report_lists_fork_only_keys_and_both_values_of_conflicts(tmp_path):
    params = {
        "diffs": [{"member": "etcd-2", "diff": str(diff_file(tmp_path))}],
        "path": str(tmp_path / "conflicts.json"),
        "summary_path": str(tmp_path / "conflicts.txt"),
        "policy": "quarantine",
        "quarantine_prefix": "/recovery/quarantine/",
    }
    result = etcd_reconcile.report(params, check_mode=False)
    assert result["changed"]
    assert result["forks"] == [{"member": "etcd-2", "only_fork": 1, "only_authoritative": 1, "conflicts": 1}]
    report = json.loads((tmp_path / "conflicts.json").read_text())
    (conflict,) = report["forks"][0]["conflicts"]
    assert conflict["quarantine_key"] == "/recovery/quarantine/etcd-2/lab/shared/k0"
    text = (tmp_path / "conflicts.txt").read_text()
    assert "'a#2' (rev 39)" in text and "'f#4' (rev 30)" in text
    # Same input, same files: nothing changes the second time.
    assert not etcd_reconcile.report(params, check_mode=False)["changed"]


def test_ledger_audit_counts_present_superseded_quarantined_and_missing(tmp_path, monkeypatch):
    fork, main = "http://f:2379", "http://a:2379"
    ledger = [
        # shared history before the split, written through the fork's member
        {"endpoint": fork, "key": "/w/f/1", "value": "f#1", "revision": 5},
        # majority after the split: k0 written twice, the last value stays
        {"endpoint": main, "key": "/k0", "value": "a#1", "revision": 10},
        {"endpoint": main, "key": "/k0", "value": "a#2", "revision": 12},
        # fork after the split: a key of its own (replayed), k0 (quarantined), k1 (lost)
        {"endpoint": fork, "key": "/w/f/3", "value": "f#3", "revision": 7},
        {"endpoint": fork, "key": "/k0", "value": "f#4", "revision": 8},
        {"endpoint": fork, "key": "/k1", "value": "f#5", "revision": 9},
    ]
    (tmp_path / "etcd-x.jsonl").write_text("".join(json.dumps(e) + "\n" for e in ledger))
    cluster = {
        "/w/f/1": ("f#1", 5),
        "/k0": ("a#2", 12),
        "/k1": ("a#9", 13),
        "/w/f/3": ("f#3", 20),
        "/recovery/quarantine/etcd-2/k0": ("f#4", 21),
    }
    monkeypatch.setattr(etcd_consistency, "read_cluster", lambda params, endpoint: cluster)
    params = {
        "ledger_dir": str(tmp_path),
        "quarantine_prefix": "/recovery/quarantine/",
        "report_path": None,
        "forked_endpoints": [fork],
    }
    check, counts, missing = etcd_consistency.audit(params, main)
    assert not check["ok"]
    assert counts["present"] == 3 and counts["superseded"] == 1 and counts["quarantined"] == 1
    # The fork's k1 was overwritten on the majority's side at a higher revision of another history: that
    # does not supersede it, so it is missing unless a report lists it.
    assert [m["value"] for m in missing] == ["f#5"]
    report = tmp_path / "conflicts.json"
    report.write_text(json.dumps({"forks": [], "lost": [{"key": "/k1", "value": "f#5"}]}))
    params["report_path"] = str(report)
    check, counts, missing = etcd_consistency.audit(params, main)
    assert check["ok"] and counts["listed"] == 1 and not missing
