"""etcd_reconcile and etcd_consistency without etcd: the conflict report and the ledger audit.

Their documentation is checked with every etcd_* module in test_etcd_docs.py."""

from __future__ import annotations

import base64
import json

import etcd_consistency
import etcd_reconcile

QUARANTINE = "/recovery/quarantine/"


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
    params = report_params(tmp_path, diff_file)
    result = etcd_reconcile.report(params, check_mode=False)
    assert result["changed"]
    assert result["forks"] == [
        {
            "member": "etcd-2",
            "only_fork": 1,
            "only_authoritative": 1,
            "conflicts": 1,
            "fork_revision": None,
            "deletes_checked": False,
            "deleted_on_fork": 0,
            "deleted_on_authoritative": 0,
            "leased_only_on_fork": 0,
        }
    ]
    report = json.loads((tmp_path / "conflicts.json").read_text())
    (conflict,) = report["forks"][0]["conflicts"]
    assert conflict["quarantine_key"] == "/recovery/quarantine/etcd-2/lab/shared/k0"
    text = (tmp_path / "conflicts.txt").read_text()
    assert "'a#2' (rev 39)" in text and "'f#4' (rev 30)" in text
    # A diff without history (an export of a fork that no longer runs): the fork's deletes are unknown.
    assert "WARNING: the fork's deletes were not checked (no history: the fork was not running" in text
    # Same input, same files: nothing changes the second time.
    assert not etcd_reconcile.report(params, check_mode=False)["changed"]


def write_ledger(tmp_path, entries, name="etcd-2.jsonl"):
    """A writer's ledger in tmp_path, one JSON line an entry (the audit reads every *.jsonl there)."""
    (tmp_path / name).write_text("".join(json.dumps(e) + "\n" for e in entries))


def write_report(tmp_path, doc):
    """A conflict report in tmp_path; returns its path."""
    report = tmp_path / "conflicts.json"
    report.write_text(json.dumps(doc))
    return report


def audit_params(tmp_path, monkeypatch, cluster, forked=None, report=None):
    """The audit's params for the ledgers in tmp_path, with `cluster` as what it reads of the cluster."""
    monkeypatch.setattr(etcd_consistency, "read_cluster", lambda params, endpoint: cluster)
    return {
        "ledger_dir": str(tmp_path),
        "quarantine_prefix": QUARANTINE,
        "report_path": str(report) if report else None,
        "forked_endpoints": [forked] if forked else [],
    }


def put(endpoint, key, value, revision, **extra):
    """A writer's acknowledged put, as its ledger line holds it."""
    return {"endpoint": endpoint, "op": "put", "key": key, "value": value, "revision": revision, **extra}


def delete(endpoint, key, revision, **extra):
    """A writer's acknowledged delete of one key, as its ledger line holds it."""
    line = {"endpoint": endpoint, "op": "delete", "key": key, "value": None, "revision": revision}
    return {**line, "deleted": 1, **extra}


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
    write_ledger(tmp_path, ledger)
    cluster = {
        "/w/f/1": ("f#1", 5),
        "/k0": ("a#2", 12),
        "/k1": ("a#9", 13),
        "/w/f/3": ("f#3", 20),
        "/recovery/quarantine/etcd-2/k0": ("f#4", 21),
    }
    params = audit_params(tmp_path, monkeypatch, cluster, fork)
    check, counts, missing = etcd_consistency.audit(params, main)
    assert not check["ok"]
    assert counts["present"] == 3 and counts["superseded"] == 1 and counts["quarantined"] == 1
    # The fork's k1 was overwritten on the majority's side at a higher revision of another history: that
    # does not supersede it, so it is missing unless a report lists it.
    assert [m["value"] for m in missing] == ["f#5"]
    report = write_report(tmp_path, {"forks": [], "lost": [{"key": "/k1", "value": "f#5"}]})
    params["report_path"] = str(report)
    check, counts, missing = etcd_consistency.audit(params, main)
    assert check["ok"] and counts["listed"] == 1 and not missing


def history_diff_file(tmp_path):
    """A diff made with history=true: the fork deleted /lab/shared/k1 and /lab/writers/a/1 (the authoritative
    side holds both; /lab/leases/etcd-0 with a lease alive there), wrote a leased key of its own, and has
    /lab/shared/k4, which the authoritative side deleted after the split."""
    diff = json.loads(diff_file(tmp_path).read_text())
    diff["only_right"] += [
        {
            "key": "/lab/leases/etcd-2",
            "key_base64": False,
            "value": "f#9#lease-7",
            "value_base64": False,
            "mod_revision": 31,
            "lease": "7",
        },
        {
            "key": "/lab/shared/k4",
            "key_base64": False,
            "value": "f#8",
            "value_base64": False,
            "mod_revision": 27,
            "lease": None,
        },
    ]

    def held(key, value, rev, lease=None):
        return {
            "key": key,
            "key_base64": False,
            "delete_revision": 28,
            "left": {"value": value, "value_base64": False, "mod_revision": rev, "lease": lease},
        }

    diff["history"] = {
        "fork_revision": 25,
        "deleted_right": [
            held("/lab/shared/k1", "a#5", 38),
            held("/lab/writers/a/1", "a#1", 20),
            held("/lab/leases/etcd-0", "a#0#lease-3", 21, lease="3"),
        ],
        "deleted_left": [
            {
                "key": "/lab/shared/k4",
                "key_base64": False,
                "delete_revision": 33,
                "right": {"value": "f#8", "value_base64": False, "mod_revision": 27},
            }
        ],
    }
    path = tmp_path / "diff-etcd-2.json"
    path.write_text(json.dumps(diff))
    return path


def report_params(tmp_path, diff=history_diff_file):
    """The report's params for etcd-2's diff, written in tmp_path by `diff`; the report goes there too."""
    return {
        "diffs": [{"member": "etcd-2", "diff": str(diff(tmp_path))}],
        "path": str(tmp_path / "conflicts.json"),
        "summary_path": str(tmp_path / "conflicts.txt"),
        "policy": "quarantine",
        "quarantine_prefix": QUARANTINE,
    }


def test_report_lists_fork_deletes_leased_fork_keys_and_keys_the_authoritative_side_deleted(tmp_path):
    result = etcd_reconcile.report(report_params(tmp_path), check_mode=False)
    (counts,) = result["forks"]
    assert counts["deletes_checked"] is True and counts["fork_revision"] == 25
    assert counts["deleted_on_fork"] == 3 and counts["leased_only_on_fork"] == 1
    assert counts["deleted_on_authoritative"] == 1 and counts["only_fork"] == 1  # only /lab/w/f/3 replayed
    (fork,) = json.loads((tmp_path / "conflicts.json").read_text())["forks"]
    by_key = {d["key"]: d for d in fork["deleted_on_fork"]}
    assert by_key["/lab/shared/k1"]["marker_key"] == "/recovery/quarantine/etcd-2/deleted/lab/shared/k1"
    assert (
        by_key["/lab/shared/k1"]["value"] == "a#5" and by_key["/lab/shared/k1"]["fork_delete_revision"] == 28
    )
    assert by_key["/lab/leases/etcd-0"]["marker_key"] is None  # leased on the authoritative side: left alone
    assert [e["key"] for e in fork["leased_only_on_fork"]] == ["/lab/leases/etcd-2"]
    assert (
        fork["deleted_on_authoritative"][0]["quarantine_key"] == "/recovery/quarantine/etcd-2/lab/shared/k4"
    )
    text = "\n".join(result["summary"])
    assert "The histories split after revision 25" in text
    assert "3 keys the fork deleted after the split" in text and "/lab/shared/k1: deleted on the fork" in text
    assert "1 keys only on the fork that hold a lease of the fork: never written" in text
    assert "WARNING" not in text


def test_plan_writes_marks_fork_deletes_quarantines_and_never_writes_a_leased_fork_key(tmp_path):
    etcd_reconcile.report(report_params(tmp_path), check_mode=False)
    doc = json.loads((tmp_path / "conflicts.json").read_text())
    plan = {key.decode(): (kind, value.decode()) for kind, key, value, _r in etcd_reconcile.plan_writes(doc)}
    assert plan["/lab/w/f/3"] == ("replay", "f#3")
    assert plan["/recovery/quarantine/etcd-2/lab/shared/k0"] == ("quarantine", "f#4")
    assert plan["/recovery/quarantine/etcd-2/lab/shared/k4"] == ("quarantine", "f#8")
    kind, note = plan["/recovery/quarantine/etcd-2/deleted/lab/shared/k1"]
    assert kind == "mark" and json.loads(note) == {
        "authoritative_mod_revision": 38,
        "deleted_on_fork": "etcd-2",
        "fork_delete_revision": 28,
        "key": "/lab/shared/k1",
        "kept": "the authoritative value",
    }
    assert "/lab/leases/etcd-2" not in plan and "/lab/shared/k4" not in plan  # neither brought back
    assert not any("leases/etcd-0" in k for k in plan)
    assert len(plan) == 5


class FakeCluster:
    """The recovered cluster as replay sees it: reads and writes of a dict."""

    def __init__(self, kv):
        self.kv = kv
        self.writes = []


def test_replay_writes_the_plan_once_and_nothing_the_second_time(tmp_path, monkeypatch):
    etcd_reconcile.report(report_params(tmp_path), check_mode=False)
    cluster = FakeCluster({b"/lab/shared/k1": b"a#5"})

    class Client:
        def close(self):
            pass

        def put(self, key, value):
            cluster.writes.append(key)
            cluster.kv[key] = value

    monkeypatch.setattr(etcd_reconcile, "first_client", lambda params: Client())
    monkeypatch.setattr(
        etcd_reconcile,
        "current",
        lambda client, key: {"value": cluster.kv[key]} if key in cluster.kv else None,
    )
    monkeypatch.setattr(
        etcd_reconcile, "put_if_absent", lambda client, key, value: Client().put(key, value) or True
    )
    params = {
        "path": str(tmp_path / "conflicts.json"),
        "policy": "quarantine",
        "endpoints": ["http://a:2379"],
    }
    first = etcd_reconcile.replay(params, check_mode=False)
    assert first["changed"] and len(first["marked"]) == 2 and len(first["quarantined"]) == 2
    assert [r["key"] for r in first["leased"]] == ["/lab/leases/etcd-2"]
    assert b"/lab/leases/etcd-2" not in cluster.kv and cluster.kv[b"/lab/shared/k1"] == b"a#5"
    assert "marked 2 fork deletes" in first["summary"][0]
    assert "1 leased keys of the fork not written" in first["summary"][0]
    second = etcd_reconcile.replay(params, check_mode=False)
    assert not second["changed"] and second["already"] == 5 and len(cluster.writes) == 5
    only = etcd_reconcile.replay(dict(params, policy="report_only"), check_mode=False)
    assert not only["changed"] and len(only["listed"]) == 5


def test_ledger_audit_of_deletes_and_leased_puts(tmp_path, monkeypatch):
    fork, main = "http://f:2379", "http://a:2379"
    ledger = [
        {"endpoint": fork, "key": "/w/f/1", "value": "f#1", "revision": 5},  # no "op": an older line, a put
        delete(main, "/k0", 10),
        delete(main, "/k2", 11),
        put(main, "/k2", "a#3", 14),  # recreated later
        put(main, "/l/a", "a#L", 12, lease="a1", lease_ttl=12),  # its lease expired: etcd removed the key
        put(main, "/l/b", "a#M", 13, lease="b2", lease_ttl=12),  # lease alive, key gone: lost
        # fork after the split: deletes /k1 (the cluster holds it), and /k3 (nobody lists it)
        delete(fork, "/k1", 7),
        delete(fork, "/k3", 8),
        put(fork, "/l/f", "f#L", 9, lease="f3", lease_ttl=12),
    ]
    write_ledger(tmp_path, ledger)
    cluster = {"/w/f/1": ("f#1", 5), "/k1": ("a#9", 13), "/k2": ("a#3", 14), "/k3": ("a#7", 6)}
    monkeypatch.setattr(etcd_consistency, "live_leases", lambda params, endpoint: {"b2", "f3"})
    params = audit_params(tmp_path, monkeypatch, cluster, fork)
    check, counts, missing = etcd_consistency.audit(params, main)
    assert not check["ok"]
    assert counts["deleted"] == 1 and counts["expired"] == 1 and counts["present"] == 2
    assert counts["superseded"] == 1
    assert sorted((m["op"], m["key"]) for m in missing) == [
        ("delete", "/k1"),
        ("delete", "/k3"),
        ("put", "/l/b"),
        ("put", "/l/f"),
    ]
    listed = {"deleted_on_fork": [{"key": "/k1"}], "leased_only_on_fork": [{"key": "/l/f", "value": "f#L"}]}
    report = write_report(tmp_path, {"forks": [listed]})
    params["report_path"] = str(report)
    check, counts, missing = etcd_consistency.audit(params, main)
    assert counts["listed"] == 2 and counts["missing"] == 2
    assert sorted(m["key"] for m in missing) == ["/k3", "/l/b"]
    assert "delete /k3" in check["detail"]
    # After a restore, the report's "lost" lists what the audit found missing, deletes included.
    doc = json.loads(report.read_text())
    doc["lost"] = missing
    report.write_text(json.dumps(doc))
    check, counts, missing = etcd_consistency.audit(params, main)
    assert check["ok"] and counts["listed"] == 4 and not missing


def test_history_from_an_export_finds_the_fork_point_and_both_sides_deletes():
    recorded = {
        "start_revision": 1,
        "digests": ["a1", "a2", "a3", "f4", "f5", "f6"],  # the fork's own events from revision 4
        "deletes": [
            {"key": "/k1", "key_base64": False, "revision": 5},  # after the split, the majority holds /k1
            {"key": "/k0", "key_base64": False, "revision": 2},  # before it: the majority saw it too
            {"key": "/gone", "key_base64": False, "revision": 6},  # the majority does not hold it
        ],
    }
    auth_digests = {1: "a1", 2: "a2", 3: "a3", 4: "m4", 5: "m5"}
    auth_last = {b"/k2": ("DELETE", 5), b"/k3": ("PUT", 4), b"/k0": ("PUT", 4)}
    left = {
        ("/k1", False): {"key": "/k1", "key_base64": False, "value": "m", "mod_revision": 3},
        ("/k0", False): {"key": "/k0", "key_base64": False, "value": "again", "mod_revision": 4},
    }
    right = {("/k2", False): {"key": "/k2", "key_base64": False, "value": "f", "mod_revision": 3}}
    history = etcd_reconcile.history_from_export(recorded, auth_digests, auth_last, left, right, "")
    assert history["fork_revision"] == 3
    assert [(d["key"], d["delete_revision"], d["left"]["value"]) for d in history["deleted_right"]] == [
        ("/k1", 5, "m")
    ]
    assert [(d["key"], d["right"]["value"]) for d in history["deleted_left"]] == [("/k2", "f")]
    assert etcd_reconcile.history_from_export(recorded, auth_digests, auth_last, left, right, "/x/") == {
        "fork_revision": 3,
        "deleted_left": [],
        "deleted_right": [],
    }


def test_ledger_audit_takes_the_fork_point_from_the_report(tmp_path, monkeypatch):
    """A forked writer's last operations before the split (after its last put still in the cluster) are
    the common history: the report's fork point, read from etcd, says so; the ledger alone cannot."""
    fork, main = "http://f:2379", "http://a:2379"
    ledger = [
        put(fork, "/w/f/1", "f#1", 5),
        delete(fork, "/k5", 7),
    ]
    write_ledger(tmp_path, ledger)
    cluster = {"/w/f/1": ("f#1", 5), "/k5": ("a#9", 12)}  # the majority wrote /k5 again after the split
    params = audit_params(tmp_path, monkeypatch, cluster, fork)
    check, counts, missing = etcd_consistency.audit(params, main)
    assert [m["key"] for m in missing] == ["/k5"]  # taken for a fork delete that nobody lists
    report = write_report(tmp_path, {"forks": [{"fork": {"endpoint": fork}, "fork_revision": 8}]})
    params["report_path"] = str(report)
    check, counts, missing = etcd_consistency.audit(params, main)
    assert check["ok"] and counts["superseded"] == 1 and counts["present"] == 1


def test_ledger_audit_prefers_the_report_fork_point_to_a_replayed_key_at_the_same_revision(
    tmp_path, monkeypatch
):
    """Seen in the revive e2e: a fork key replayed into the cluster landed at the revision it had on the
    fork, so the ledger's guess moved the fork point past the fork's later writes: the majority's, it said."""
    fork, main = "http://f:2379", "http://a:2379"
    ledger = [
        put(fork, "/w/f/1", "f#1", 5),  # before the split
        put(fork, "/k1", "f#2", 11),  # fork, superseded
        put(fork, "/k1", "f#3", 14),  # fork, quarantined
        put(fork, "/w/f/4", "f#4", 12),  # replayed at 12
    ]
    write_ledger(tmp_path, ledger)
    cluster = {
        "/w/f/1": ("f#1", 5),
        "/k1": ("a#7", 10),
        "/recovery/quarantine/etcd-2/k1": ("f#3", 15),
        "/w/f/4": ("f#4", 12),  # the replay happened to get revision 12 in the cluster too
    }
    report = write_report(tmp_path, {"forks": [{"fork": {"endpoint": fork}, "fork_revision": 6}]})
    params = audit_params(tmp_path, monkeypatch, cluster, fork, report)
    check, counts, missing = etcd_consistency.audit(params, main)
    assert check["ok"], missing
    assert counts["superseded"] == 1 and counts["quarantined"] == 1 and counts["present"] == 2
    params["report_path"] = None  # the ledger's guess: fork point 12, so f#2 is taken for a main write
    check, counts, missing = etcd_consistency.audit(params, main)
    assert [m["value"] for m in missing] == ["f#2"]


def test_ledger_audit_finds_the_fork_point_of_a_data_dir_read_through_a_private_copy(tmp_path, monkeypatch):
    """Seen in CI (5 members, 3.5.1): the conflict report's fork was read through a private copy of its data
    dir on loopback, so its endpoint was not the forked member's; the audit fell back to its guess and took a
    fork put deleted later on the fork for a write of the majority that was lost."""
    fork, main = "http://f:2379", "http://a:2379"
    ledger = [
        put(fork, "/w/f/1", "f#1", 5),  # before the split
        put(fork, "/w/f/2", "f#2", 9),  # fork
        put(fork, "/w/f/3", "f#3", 10),  # fork, replayed
        delete(fork, "/w/f/2", 11),
    ]
    write_ledger(tmp_path, ledger)
    # the replay of /w/f/3 landed at revision 10 in the cluster too: the ledger's guess says fork point 10
    cluster = {"/w/f/1": ("f#1", 5), "/w/f/3": ("f#3", 10)}
    copy = {"fork": {"endpoint": "http://127.0.0.1:40001"}, "fork_revision": 6, "member": "etcd-2"}
    report = write_report(tmp_path, {"forks": [copy]})
    params = audit_params(tmp_path, monkeypatch, cluster, fork, report)
    check, counts, missing = etcd_consistency.audit(params, main)
    assert [m["key"] for m in missing] == ["/w/f/2"]  # without the member's name: the guess
    check, counts, missing = etcd_consistency.audit(params, main, {fork: "etcd-2", main: "etcd-0"})
    assert check["ok"], missing
    assert counts["deleted"] == 1 and counts["superseded"] == 1 and counts["present"] == 2
    # a moved-aside data dir of the same member stands for it only when no entry of its own name does
    moved = {"fork": {"endpoint": "http://127.0.0.1:40002"}, "fork_revision": 12}
    moved["member"] = "etcd-2@data.moved-1"
    report.write_text(json.dumps({"forks": [moved, copy]}))
    check, counts, missing = etcd_consistency.audit(params, main, {fork: "etcd-2"})
    assert check["ok"], missing
    report.write_text(json.dumps({"forks": [dict(moved, fork_revision=6)]}))
    check, counts, missing = etcd_consistency.audit(params, main, {fork: "etcd-2"})
    assert check["ok"], missing


def test_a_fork_delete_the_cluster_agreed_with_is_superseded_by_a_later_write(tmp_path, monkeypatch):
    """Seen in test_safeguards (5 members, 3.5.1): the fork deleted /lab/shared/k1 while the majority had
    deleted it too, so the recovery had nothing to list and its verify counted the delete in effect; the
    writers went on, wrote k1 again, and a later verify took the fork's delete for a lost one."""
    fork, main = "http://f:2379", "http://a:2379"
    ledger = [
        put(fork, "/w/f/1", "f#1", 5, member_id="f"),
        delete(fork, "/k1", 9, member_id="f"),
    ]
    write_ledger(tmp_path, ledger)
    compared = {
        "fork": {"endpoint": fork},
        "fork_revision": 6,
        "member": "etcd-2",
        "authoritative": {"revision": 40},
    }
    report = write_report(tmp_path, {"forks": [compared]})
    cluster = {"/w/f/1": ("f#1", 5)}
    params = audit_params(tmp_path, monkeypatch, cluster, fork, report)
    check, counts, missing = etcd_consistency.audit(params, main)
    assert check["ok"] and counts["deleted"] == 1, missing  # right after the recovery
    cluster["/k1"] = ("a#77", 52)  # a client wrote k1 again after the comparison (revision 40)
    check, counts, missing = etcd_consistency.audit(params, main)
    assert check["ok"] and counts["superseded"] == 1, missing
    cluster["/k1"] = ("a#70", 31)  # but a value from before the comparison: the fork's delete was not listed
    check, counts, missing = etcd_consistency.audit(params, main)
    assert [m["key"] for m in missing] == ["/k1"]


def test_the_audit_does_not_race_running_writers(tmp_path, monkeypatch):
    """Seen with verify.yml on a lab whose writers run (test_safeguards): the ledgers were read before the
    cluster, so a put that its writer deleted in between looked missing (2 audits in 6 here). Now the cluster
    is read first at one revision, later operations are not judged, and what looks missing is judged again
    on the ledgers read a moment later (a superseding line can still be on its way)."""
    main = "http://a:2379"
    written = put(main, "/w/a/21", "a#21", 50)
    deleted = delete(main, "/w/a/21", 54)
    after = put(main, "/w/a/30", "a#30", 61)
    cluster = etcd_consistency.ClusterKeys()
    cluster.revision = 60  # the read: /w/a/21 deleted at 54, /w/a/30 not yet written
    ledgers = iter([[written, after], [written, deleted, after]])  # the delete's line arrives a moment late
    monkeypatch.setattr(etcd_consistency, "load_ledger", lambda ledger_dir: next(ledgers))
    monkeypatch.setattr(etcd_consistency.time, "sleep", lambda seconds: None)
    params = audit_params(tmp_path, monkeypatch, cluster)
    check, counts, missing = etcd_consistency.audit(params, main)
    assert check["ok"], missing
    assert counts["superseded"] == 1 and counts["deleted"] == 1 and counts["after_read"] == 1
    assert "1 acknowledged after the cluster was read at revision 60, not judged" in check["detail"]
    ledgers = iter([[written, after], [written, after]])  # no delete at all: really missing
    check, counts, missing = etcd_consistency.audit(params, main)
    assert [m["key"] for m in missing] == ["/w/a/21"]


def test_audit_a_key_gone_by_a_delete_that_failed(tmp_path, monkeypatch):
    """A delete that timed out may have been applied all the same (etcd committed it, the reply was lost):
    a put of the key is then gone without an acknowledged delete. Only the writer's logged failed attempt,
    made after the put, accounts for it."""
    main = "http://10.0.0.1:2379"
    written = {
        "endpoint": main,
        "key": "/w/a/21",
        "value": "a#21",
        "revision": 62,
        "time": "2026-12-06T03:09:57.553",
    }
    write_ledger(tmp_path, [written], name="etcd-0.jsonl")
    params = audit_params(tmp_path, monkeypatch, {})
    check, counts, _ = etcd_consistency.audit(params, main)
    assert not check["ok"] and counts["missing"] == 1
    failure = {
        "op": "delete",
        "key": "/w/a/21",
        "value": None,
        "time": "2026-12-06T03:09:57.950",
        "error": "timed out",
    }
    (tmp_path / "etcd-0.jsonl.failures").write_text(json.dumps(failure) + "\n" + '{"op": "del')  # a torn line
    check, counts, _ = etcd_consistency.audit(params, main)
    assert check["ok"] and counts["maybe_deleted"] == 1
    assert "1 gone by a delete that failed" in check["detail"]


def test_audit_a_member_added_again_answers_in_the_main_history(tmp_path, monkeypatch):
    """The operator stopped the fork and added the member again (a new member id) before recover.yml: its
    writer's later operations through the same endpoint are the cluster's history, deletes included."""
    main, fork = "http://10.0.0.1:2379", "http://10.0.0.3:2379"
    ledger = [
        {"endpoint": fork, "member_id": "old", "key": "/w/f/1", "value": "f#1", "revision": 5, "time": "t1"},
        {"endpoint": main, "member_id": "m0", "key": "/s", "value": "a#2", "revision": 50, "time": "t5"},
        delete(fork, "/s", 51, member_id="new", time="t6"),
    ]
    write_ledger(tmp_path, ledger)
    params = audit_params(tmp_path, monkeypatch, {"/w/f/1": ("f#1", 5)}, fork)
    check, counts, missing = etcd_consistency.audit(params, main)
    assert check["ok"], missing
    assert counts["superseded"] == 1 and counts["deleted"] == 1
    ledger[2]["member_id"] = "old"  # the fork's own delete: nothing on the main side explains /s gone
    write_ledger(tmp_path, ledger)
    check, counts, missing = etcd_consistency.audit(params, main)
    assert not check["ok"] and [m["key"] for m in missing] == ["/s"]


READ_AT = "2026-12-06T09:26:32.000+00:00"


def ledger_op(endpoint, member_id, key, value, revision, time):
    return put(endpoint, key, value, revision, member_id=member_id, time=f"2026-12-06T09:26:{time}+00:00")


def audit_at_revision_8(tmp_path, monkeypatch, ledger, keys, forked):
    """An audit whose cluster read holds `keys` at revision 8, sent at READ_AT; returns the params to pass."""
    write_ledger(tmp_path, ledger)
    cluster = etcd_consistency.ClusterKeys(keys)
    cluster.revision, cluster.read_at = 8, READ_AT
    monkeypatch.setattr(etcd_consistency, "LEDGER_SETTLE", 0)
    return audit_params(tmp_path, monkeypatch, cluster, forked)


def test_writes_of_the_forced_members_writer_after_the_read_are_not_judged(tmp_path, monkeypatch):
    """Seen in the safeguards molecule scenario (a lab that was never split, writers running): the forced
    member's endpoint counts as a fork, whose fork point is a guess, so its writes acknowledged after the
    cluster was read fell into the fork's history and looked missing (10 of them). Anything acknowledged
    after the read is counted apart; what came before it is still judged."""
    main, fork = "http://10.0.0.1:2379", "http://10.0.0.3:2379"
    ledger = [
        ledger_op(fork, "c", "/w/f/1", "f#1", 5, "30.000"),
        ledger_op(fork, "c", "/w/f/2", "f#2", 7, "31.000"),
        ledger_op(fork, "c", "/w/f/3", "f#3", 9, "33.000"),
    ]
    params = audit_at_revision_8(tmp_path, monkeypatch, ledger, {"/w/f/1": ("f#1", 5)}, fork)
    check, counts, missing = etcd_consistency.audit(params, main)
    # f#3 came after the read: not judged. f#2 came before it and is not in the cluster: missing.
    assert counts["after_read"] == 1 and [m["value"] for m in missing] == ["f#2"] and not check["ok"]


def test_a_forced_member_that_never_split_is_audited_as_the_cluster(tmp_path, monkeypatch):
    """The safeguards scenario (a whole cluster, the lab's planned forced member writing on): its put of a
    shared key, superseded by another writer, looked missing in a "fork" history with a guessed fork point.
    Following the cluster's leader under the id it wrote with, and compared by no report, it is no fork; a
    member that writes under another id (a fork, or one added again) still is one."""
    main, forced = "http://10.0.0.1:2379", "http://10.0.0.3:2379"
    ledger = [
        ledger_op(forced, "c", "/w/c/1", "c#1", 5, "30.000"),
        ledger_op(forced, "c", "/s/k1", "c#2", 7, "31.000"),
        ledger_op(main, "a", "/s/k1", "a#9", 8, "31.500"),
    ]
    keys = {"/w/c/1": ("c#1", 5), "/s/k1": ("a#9", 8)}
    params = audit_at_revision_8(tmp_path, monkeypatch, ledger, keys, forced)
    names = {forced: "etcd-2"}
    check, counts, missing = etcd_consistency.audit(params, main, names, {main: "a", forced: "c"})
    assert check["ok"] and counts["superseded"] == 1 and not missing
    # The same ledger while the member leads a cluster of its own (not following the leader): a fork.
    check, counts, missing = etcd_consistency.audit(params, main, names, {main: "a"})
    assert [m["value"] for m in missing] == ["c#2"]


class TraceClient:
    """What trace_missing asks of a member: range at a revision (gateway kv dicts), as a context manager."""

    def __init__(self, at):
        self.at = at  # {(key, revision): (value, mod_revision)}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def range(self, key, revision=0, **_kw):
        held = self.at.get((key.decode(), revision))
        kvs = []
        if held:
            kvs = [{"key": b64(key.decode()), "value": b64(held[0]), "mod_revision": str(held[1])}]
        return type("Reply", (), {"data": {"kvs": kvs}})()


def b64(text):
    return base64.b64encode(text.encode()).decode()


def test_a_missing_write_is_traced_through_the_clusters_history(tmp_path, monkeypatch):
    """The audit says what etcd's history holds where a missing write should be: here another value at
    the write's revision (another history) and a delete after it that no ledger has (a client killed
    between etcd's reply and its ledger line)."""
    main = "http://a:2379"
    write_ledger(tmp_path, [put(main, "/k3", "b#222", 640, time="2026-12-07T05:50:00.000+00:00")])

    class Cluster(dict):
        revision = 700
        read_at = "2026-12-07T05:55:00.000+00:00"

    params = audit_params(tmp_path, monkeypatch, Cluster({"/k3": ("a#220", 630)}))
    monkeypatch.setattr(etcd_consistency, "LEDGER_SETTLE", 0)
    monkeypatch.setattr(
        etcd_consistency, "client_from_params", lambda ep, p: TraceClient({("/k3", 640): ("a#220", 630)})
    )
    events = [
        ("PUT", b"/k2", 641, {"value": b64("x")}),
        ("DELETE", b"/k3", 650, {}),
        ("PUT", b"/k3", 660, {"value": b64("c#230")}),
    ]
    seen = {}

    def history(client, start, end):
        seen["range"] = (start, end)
        yield from events

    monkeypatch.setattr(etcd_consistency, "watch_history", history)
    check, counts, missing = etcd_consistency.audit(params, main)
    assert not check["ok"] and counts["missing"] == 1
    assert seen["range"] == (641, 700)
    assert missing[0]["trace"] == {
        "at_revision": {"value": "a#220", "mod_revision": 630},
        "later_events": [
            {"type": "DELETE", "revision": 650, "value": None},
            {"type": "PUT", "revision": 660, "value": "c#230"},
        ],
    }
    assert check["detail"].endswith(
        "etcd's history: /k3 at revision 640 held 'a#220' (mod revision 630); then DELETE at 650, "
        "PUT at 660 'c#230'"
    ), check["detail"]


def test_trace_words_name_an_untraceable_write():
    item = {"key": "/k", "revision": 9, "trace": {"error": "revision 9 was compacted"}}
    assert etcd_consistency.trace_words(item) == "/k at revision 9: revision 9 was compacted"
    item = {"key": "/k", "revision": 9, "trace": {"at_revision": None, "later_events": []}}
    assert etcd_consistency.trace_words(item) == "/k at revision 9 held nothing; then no event of the key"


def late_delete_case(tmp_path, monkeypatch, history_holds_the_put):
    """The CI case of 2026-12-07: the isolated member's writer tried to delete /lab/shared/k3 right at the
    cut and timed out; its request reached the leader when the partition healed, after the majority's last
    acknowledged put of k3."""
    main, isolated = "http://a:2379", "http://i:2379"
    write_ledger(
        tmp_path, [put(main, "/lab/shared/k3", "etcd-1#222", 640, time="2026-12-07T05:50:30.000+00:00")]
    )
    failure = {"time": "2026-12-07T05:49:02.000+00:00", "writer": "etcd-3", "endpoint": isolated,
               "op": "delete", "key": "/lab/shared/k3", "value": None, "error": "TimeoutError"}  # fmt: skip
    (tmp_path / "etcd-3.jsonl.failures").write_text(json.dumps(failure) + "\n")

    class Cluster(dict):
        revision = 957
        read_at = "2026-12-07T05:51:00.000+00:00"

    params = audit_params(tmp_path, monkeypatch, Cluster())
    monkeypatch.setattr(etcd_consistency, "LEDGER_SETTLE", 0)
    at = {("/lab/shared/k3", 640): ("etcd-1#222", 640)} if history_holds_the_put else {}
    monkeypatch.setattr(etcd_consistency, "client_from_params", lambda ep, p: TraceClient(at))
    monkeypatch.setattr(etcd_consistency, "watch_history", lambda client, start, end: iter(()))
    return etcd_consistency.audit(params, main)


def test_a_delete_that_timed_out_before_a_put_may_still_remove_its_key_later(tmp_path, monkeypatch):
    check, counts, missing = late_delete_case(tmp_path, monkeypatch, history_holds_the_put=True)
    assert check["ok"] and counts["maybe_deleted"] == 1 and not missing, check["detail"]


def test_a_put_the_history_never_held_is_missing_despite_an_earlier_failed_delete(tmp_path, monkeypatch):
    # The put is not in the cluster's history at its revision (a restore from an older snapshot, say): the
    # earlier failed delete explains nothing.
    check, counts, missing = late_delete_case(tmp_path, monkeypatch, history_holds_the_put=False)
    assert not check["ok"] and counts["maybe_deleted"] == 0
    assert [m["value"] for m in missing] == ["etcd-1#222"]
    assert "/lab/shared/k3 at revision 640 held nothing; then no event of the key" in check["detail"]


def test_puts_whose_clients_saw_them_fail_and_that_landed_are_counted(tmp_path, monkeypatch):
    """A put that timed out can land all the same (benchmarks/late_requests.py measured it on 3.5.1): the
    audit counts the failed puts whose value the cluster holds, under the key, in quarantine or in the
    report, and says so; they are not a failure of the check. Each put counts once, however many attempts
    failed; not counted: a failed put whose value is nowhere, one acknowledged on a later attempt, a failed
    delete."""
    main = "http://a:2379"
    write_ledger(tmp_path, [put(main, "/k/acked", "a#1", 5, time="2026-12-07T05:50:00.000+00:00")])
    failures = [
        {"op": "put", "key": "/k/late", "value": "i#7", "time": "2026-12-07T05:49:02.000+00:00"},
        {"op": "put", "key": "/k/kept", "value": "i#8", "time": "2026-12-07T05:49:03.000+00:00"},
        {"op": "put", "key": "/k/late", "value": "i#7", "time": "2026-12-07T05:49:02.500+00:00"},  # again
        {"op": "put", "key": "/k/lost", "value": "i#9", "time": "2026-12-07T05:49:04.000+00:00"},
        # failed once, then acknowledged when the writer asked again: no news
        {"op": "put", "key": "/k/acked", "value": "a#1", "time": "2026-12-07T05:49:59.000+00:00"},
        {"op": "delete", "key": "/k/acked", "value": None, "time": "2026-12-07T05:49:05.000+00:00"},
    ]
    (tmp_path / "etcd-2.jsonl.failures").write_text("".join(json.dumps(f) + "\n" for f in failures))
    cluster = {
        "/k/acked": ("a#1", 5),
        "/k/late": ("i#7", 9),
        "/k/lost": ("a#3", 11),
        QUARANTINE + "etcd-2/k/kept": ("i#8", 12),
    }
    params = audit_params(tmp_path, monkeypatch, cluster)
    check, counts, _ = etcd_consistency.audit(params, main)
    assert check["ok"] and counts["failed_but_applied"] == 2, check["detail"]
    assert "2 of the puts that clients saw fail were applied all the same" in check["detail"]
    (tmp_path / "etcd-2.jsonl.failures").write_text(json.dumps(failures[3]) + "\n")
    check, counts, _ = etcd_consistency.audit(params, main)
    assert counts["failed_but_applied"] == 0 and "saw fail" not in check["detail"]
