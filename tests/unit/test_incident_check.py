"""The incident checker's classification on small constructed histories (no etcd): what must pass and what
must fail. Also the campaign's draw: a pure function of (seed, k), and --force keeps the plan consistent."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent.parent / "benchmarks"))
import incident_check as ic
import incidents

MAJ = "http://10.0.0.1:2379"
FORK = "http://10.0.0.3:2379"


def op(key, value, rev, t, endpoint=MAJ, writer="etcd-0", **kw) -> ic.Op:
    return ic.Op(writer=writer, endpoint=endpoint, key=key, value=value, revision=rev, time=t, **kw)


def hist(*ops_in_history: ic.Op) -> dict:
    """The authoritative history holds exactly these puts, each at its own revision."""
    return {(o.key, o.revision): (o.value, o.revision) for o in ops_in_history}


# A split: both sides wrote /s (shared) and the fork wrote a key of its own; revisions of the two histories
# overlap (the fork's 12 is not the majority's 12).
PRE = op("/w/etcd-0/1", "etcd-0#1", 5, "t01")
M1 = op("/s", "etcd-0#2", 12, "t05")
M2 = op("/s", "etcd-0#3", 14, "t07")
F1 = op("/s", "etcd-2#7", 12, "t06", FORK, "etcd-2")
F2 = op("/w/etcd-2/8", "etcd-2#8", 13, "t08", FORK, "etcd-2")
OPS = [PRE, M1, M2, F1, F2]
HISTORY = hist(PRE, M1, M2) | {("/s", 12): ("etcd-0#2", 12), ("/w/etcd-2/8", 13): None}
REPORT = {
    "policy": "quarantine",
    "quarantine_prefix": "/recovery/quarantine/",
    "forks": [
        {
            "member": "etcd-2",
            "only_fork": [{"key": "/w/etcd-2/8", "value": "etcd-2#8", "mod_revision": 13}],
            "conflicts": [
                {
                    "key": "/s",
                    "left": {"value": "etcd-0#3"},
                    "right": {"value": "etcd-2#7"},
                    "quarantine_key": "/recovery/quarantine/etcd-2/s",
                }
            ],
        }
    ],
}
FINAL = {
    "/w/etcd-0/1": ("etcd-0#1", 5),
    "/s": ("etcd-0#3", 14),
    "/w/etcd-2/8": ("etcd-2#8", 40),
    "/recovery/quarantine/etcd-2/s": ("etcd-2#7", 41),
}


def verdict(ops=OPS, final=FINAL, history=HISTORY, report=REPORT) -> ic.Verdict:
    return ic.classify(ops, final, history, ic.Report.from_json(report))


def test_recovered_split_is_fully_accounted():
    v = verdict()
    assert v.ok, v.failures
    assert v.outcomes == {"in_force": 2, "superseded": 1, "fork_reported": 2}
    assert v.lost == 0


def test_fork_write_missing_and_unreported_fails():
    report = {**REPORT, "forks": [{**REPORT["forks"][0], "only_fork": []}]}
    final = {k: v for k, v in FINAL.items() if k != "/w/etcd-2/8"}
    v = verdict(final=final, report=report)
    assert not v.ok
    assert any("/w/etcd-2/8" in f and "not in the conflict report" in f for f in v.failures), v.failures


def test_conflict_listed_but_not_quarantined_fails():
    final = {k: v for k, v in FINAL.items() if not k.startswith("/recovery/")}
    v = verdict(final=final)
    assert any("not kept under /recovery/quarantine/etcd-2/s" in f for f in v.failures), v.failures


def test_a_fork_write_with_the_same_revision_as_the_majoritys_is_not_in_history():
    """Same key, same revision number, other value: the fork's write is NOT the cluster's write at 12."""
    report = {**REPORT, "forks": [{**REPORT["forks"][0], "conflicts": []}]}
    v = verdict(report=report)
    assert any("/s='etcd-2#7'" in f for f in v.failures), v.failures


def test_value_no_client_wrote_fails():
    final = dict(FINAL, **{"/s": ("forged", 20)})
    v = verdict(final=final)
    assert any("/s holds 'forged', which no client wrote to it" in f for f in v.failures), v.failures


def test_value_written_to_another_key_fails_and_quarantine_value_must_be_the_forks():
    final = dict(FINAL, **{"/recovery/quarantine/etcd-2/s": ("etcd-0#1", 41)})
    v = verdict(final=final)
    assert any("quarantine key" in f and "no client wrote to /s" in f for f in v.failures), v.failures
    final = dict(FINAL, **{"/other": ("etcd-0#2", 30)})
    assert not verdict(final=final).ok


def test_a_writers_last_unacknowledged_write_is_a_value_a_client_wrote():
    final = dict(FINAL, **{"/s": ("etcd-0#4", 15)})  # in flight when the writer stopped: no answer
    v = verdict(final=final)
    assert v.ok, v.failures
    assert v.outcomes["superseded"] == 2


def test_authoritative_key_gone_without_a_delete_fails():
    final = {k: v for k, v in FINAL.items() if k != "/w/etcd-0/1"}
    v = verdict(final=final)
    assert any("/w/etcd-0/1" in f and "no acknowledged operation explains it" in f for f in v.failures)


FDEL = op("/w/etcd-0/1", None, 15, "t09", FORK, "incident-client", op="delete", deleted=1)


def test_fork_delete_unreported_fails():
    v = verdict(ops=[*OPS, FDEL], history=HISTORY | {("/w/etcd-0/1", 15): ("etcd-0#1", 5)})
    assert any("fork deleted a key the cluster still holds" in f for f in v.failures), v.failures


def test_fork_delete_reported_under_deleted_on_fork_passes():
    report = {**REPORT, "forks": [{**REPORT["forks"][0], "deleted_on_fork": [{"key": "/w/etcd-0/1"}]}]}
    v = verdict(ops=[*OPS, FDEL], report=report, history=HISTORY | {("/w/etcd-0/1", 15): ("etcd-0#1", 5)})
    assert v.ok, v.failures
    assert v.outcomes["fork_reported"] == 3
    # The report may also list bare keys.
    report["forks"][0]["deleted_on_fork"] = ["/w/etcd-0/1"]
    assert verdict(ops=[*OPS, FDEL], report=report).ok


def test_a_fork_delete_undone_by_a_put_that_failed_and_landed_late_is_accounted_for(tmp_path):
    """Seen in a fresh-clone run (heal_first, 3.5.1): the fork's writer put /w/etcd-2/21 while cut off (it
    timed out), put it again on the fork and deleted it there; the first request, forwarded before the cut,
    reached the leader after the heal and after the recovery compared the sides, so the cluster holds the
    value and the report has no fork delete to list. Only the writer's logged failed put explains it."""
    put = op("/w/etcd-2/21", "etcd-2#21", 61, "t06", FORK, "etcd-2")
    gone = op("/w/etcd-2/21", None, 65, "t07", FORK, "etcd-2", op="delete", deleted=1)
    ops = [*OPS, put, gone]
    final = FINAL | {"/w/etcd-2/21": ("etcd-2#21", 520)}
    history = HISTORY | {("/w/etcd-2/21", 61): None, ("/w/etcd-2/21", 65): None}
    without = ic.classify(ops, final, history, ic.Report.from_json(REPORT))
    assert any("fork deleted a key the cluster still holds" in f for f in without.failures), without.failures
    failure = {"op": "put", "key": "/w/etcd-2/21", "value": "etcd-2#21", "time": "t03", "error": "timed out"}
    (tmp_path / "etcd-2.jsonl.failures").write_text(json.dumps(failure) + "\n" + '{"op": "pu')  # torn line
    failed_puts = ic.failed_put_values(ic.load_failures(tmp_path))
    assert failed_puts == {"/w/etcd-2/21": {"etcd-2#21"}}
    late = ic.classify(ops, final, history, ic.Report.from_json(REPORT), None, failed_puts)
    assert late.ok, late.failures
    assert late.outcomes["maybe_put"] == 1
    # Another value in the key is no such case.
    other = ic.classify(ops, final | {"/w/etcd-2/21": ("etcd-0#99", 520)}, history,
                        ic.Report.from_json(REPORT), None, failed_puts)  # fmt: skip
    assert not other.ok


def test_authoritative_delete_and_a_put_it_supersedes():
    d = op("/w/etcd-0/1", None, 20, "t10", op="delete", deleted=1)
    final = {k: v for k, v in FINAL.items() if k != "/w/etcd-0/1"}
    v = verdict(ops=[*OPS, d], final=final, history=HISTORY | {("/w/etcd-0/1", 20): None})
    assert v.ok, v.failures
    assert v.outcomes["superseded"] == 2 and v.outcomes["in_force"] == 2


def test_leased_put_whose_key_expired_is_accounted_and_fork_lease_listed():
    leased = op("/l", "etcd-0#9", 16, "t11", lease="694d7b")
    assert verdict(ops=[*OPS, leased], history=HISTORY | hist(leased)).outcomes["expired"] == 1
    fleased = op("/fl", "etcd-2#10", 17, "t12", FORK, "etcd-2", lease="1f")
    final = dict(FINAL, **{"/fl": ("etcd-0#3", 50)})  # the key exists: the lease is not why it is absent
    report = {**REPORT, "forks": [{**REPORT["forks"][0], "leased_only_on_fork": ["/fl"]}]}
    ops = [*OPS, op("/fl", "etcd-0#3", 50, "t13"), fleased]
    assert verdict(ops=ops, final=final, report=report).ok
    assert not verdict(ops=ops, final=final).ok


def test_restore_lists_lost_writes():
    report = {"policy": "quarantine", "forks": [], "lost": [{"key": "/w/etcd-2/8", "value": "etcd-2#8"}]}
    ops = [PRE, F2]
    v = verdict(ops=ops, final={"/w/etcd-0/1": ("etcd-0#1", 5)}, report=report)
    assert v.ok, v.failures
    assert v.lost == 1 and v.outcomes["lost"] == 1


def test_fork_write_superseded_on_the_fork_is_accounted():
    f0 = op("/s", "etcd-2#6", 11, "t04", FORK, "etcd-2")
    v = verdict(ops=[f0, *OPS])
    assert v.ok, v.failures
    assert v.outcomes["fork_superseded"] == 1


def test_ledger_reader_accepts_both_schemas_and_a_torn_last_line(tmp_path):
    (tmp_path / "a.jsonl").write_text(
        '{"writer":"w","endpoint":"e","key":"/k","value":"w#0","revision":3,"time":"t"}\n'
        '{"writer":"w","endpoint":"e","key":"/k","value":null,"op":"delete","deleted":1,"revision":4,"time":"u"}\n'
        '{"writer":"w","endpo'
    )
    ops = ic.load_ledgers(tmp_path)
    assert [o.op for o in ops] == ["put", "delete"] and ops[1].deleted == 1
    (tmp_path / "b.jsonl").write_text('{"bad json\n{"key":"/k","revision":1}\n')
    with pytest.raises(ValueError, match=r"b\.jsonl:1"):
        ic.load_ledgers(tmp_path)


def test_draw_is_a_function_of_seed_and_k():
    assert incidents.draw("7", 3) == incidents.draw("7", 3)
    draws = [incidents.draw("7", k) for k in range(40)]
    assert len({d["size"] for d in draws}) == 3 and len({d["action"] for d in draws}) > 5
    for d in draws:
        assert len(d["isolated"]) < incidents.quorum(d["size"]) and d["forced"] in d["isolated"]
        assert d["victim"] not in d["isolated"]
        assert len(d["interrupt_at"]) == d["interrupt_times"]


def test_force_overrides_and_keeps_the_plan_consistent():
    p = incidents.apply_forces(incidents.draw("7", 0), ["size=3", "action=kill_majority", "interrupt=null"])
    assert p["size"] == 3 and len(p["isolated"]) == 1 and p["forced"] in p["isolated"]
    assert p["interrupt_at"] == [] and incidents.quorum_lost(p)
    with pytest.raises(SystemExit, match="KEY=VALUE"):
        incidents.apply_forces(p, ["nosuch=1"])
    p = incidents.apply_forces(p, ["interrupt=SIGKILL", "interrupt_times=2"])
    assert len(p["interrupt_at"]) == 2


def test_summary_counts_failures_by_cause_and_lists_replays():
    base = incidents.draw("7", 0)
    results = [
        {"seed": "7", "k": 0, "params": base, "cause": None, "recover_s": 10.0, "lost": 0,
         "refused_by_design": 0, "interrupted_runs": 1, "replay": "r0"},
        {"seed": "7", "k": 1, "params": base, "cause": "recover", "failure": "Refusing to recover: no side",
         "recover_s": 30.0, "lost": 2, "refused_by_design": 1, "interrupted_runs": 0, "replay": "R1"},
        {"seed": "7", "k": 2, "params": base, "cause": "check", "failure": "3 check failures: x",
         "recover_s": 20.0, "lost": 0, "refused_by_design": 0, "interrupted_runs": 2, "replay": "R2"},
    ]  # fmt: skip
    text = incidents.summarize(results)
    assert (
        "incidents 3; ok 1; failures by cause check/checker 1, recover/refused without quorum 1; "
        "lost operations 2" in text
    )
    assert "refused by design 1; interrupted runs 3; recover p50 20.0s p95 29.0s" in text
    assert "replay 7/1: R1" in text and "replay 7/2: R2" in text and "r0" not in text


def test_fail_lines_pick_verify_fails_before_errors():
    out = 'x\n        "FAIL | one leader | two",\nfatal: [localhost]: FAILED! => {\n  FAIL  hashkv: differs\n'
    assert incidents.fail_lines(out) == ["FAIL | one leader | two", "FAIL  hashkv: differs",
                                         "fatal: [localhost]: FAILED! => {"]  # fmt: skip
    assert incidents.replay_command("7", 3, ["size=3"]) == (
        ".venv/bin/python benchmarks/incidents.py --seed 7 --only 3 --force 'size=3'"
    )


def test_the_recovery_notes_and_keys_the_cluster_deleted_are_accounted_for():
    """The report's shape as etcd_reconcile writes it: a fork delete with its marker key (the recovery's own
    note, not a client's value), and a key only on the fork that the cluster deleted after the split, kept
    under its quarantine key instead of coming back."""
    data = {
        "policy": "quarantine",
        "quarantine_prefix": "/recovery/quarantine/",
        "forks": [
            {
                "member": "etcd-2",
                "deleted_on_fork": [
                    {
                        "key": "/lab/shared/k3",
                        "marker_key": "/recovery/quarantine/etcd-2/deleted/lab/shared/k3",
                    }
                ],
                "deleted_on_authoritative": [
                    {
                        "key": "/lab/shared/k0",
                        "value": "etcd-2#192",
                        "quarantine_key": "/recovery/quarantine/etcd-2/lab/shared/k0",
                    }
                ],
            }
        ],
    }
    report = ic.Report.from_json(data)
    assert ("/lab/shared/k0", "etcd-2#192") in report.conflicts
    assert report.delete_markers == {"/recovery/quarantine/etcd-2/deleted/lab/shared/k3"}
    final = {
        "/recovery/quarantine/etcd-2/deleted/lab/shared/k3": ('{"deleted_on_fork": "etcd-2"}', 90),
        "/recovery/quarantine/etcd-2/lab/shared/k0": ("etcd-2#192", 91),
    }
    ops = [op("/lab/shared/k0", "etcd-2#192", 50, "t09", FORK, "etcd-2")]
    assert ic.check_values(ops, final, "/recovery/quarantine/", report.delete_markers) == []
    assert ic.check_values(ops, final, "/recovery/quarantine/") != []  # the note alone is no client's value


def test_a_key_gone_by_a_delete_that_failed_is_accounted_for_only_with_such_a_failure():
    """A delete that timed out may have been applied (etcd committed it; the reply was lost): the writer
    logs the failed attempt, and only that explains a key gone without an acknowledged delete."""
    ops = [PRE]
    final: dict = {}
    history = hist(PRE)
    without = ic.classify(ops, final, history, ic.Report.from_json(None))
    assert without.outcomes["unaccounted"] == 1
    with_failure = ic.classify(ops, final, history, ic.Report.from_json(None), {PRE.key: ["t02"]})
    assert with_failure.failures == [] and with_failure.outcomes["maybe_deleted"] == 1
    # Even a delete that failed before the put was acknowledged: a member cut off from its leader had
    # forwarded it, and it reached the leader when the partition healed (measured on etcd 3.5.1). The put is
    # in the cluster's history, so it took effect and was removed later.
    before = ic.classify(ops, final, history, ic.Report.from_json(None), {PRE.key: ["t00"]})
    assert before.failures == [] and before.outcomes["maybe_deleted"] == 1


def test_a_member_added_again_writes_in_the_clusters_history():
    """The operator stopped the fork and added the member again (a new member id): what it acknowledges from
    then on, a delete included, is the cluster's history, not the fork's."""
    fork_put = op("/w/etcd-2/8", "etcd-2#8", 13, "t08", FORK, "etcd-2", member_id="old")
    main_put = op("/s", "etcd-0#9", 20, "t09", MAJ, "etcd-0", member_id="m0")
    delete = op("/s", None, 21, "t10", FORK, "etcd-2", op="delete", deleted=1, member_id="new")
    history = hist(main_put) | {("/w/etcd-2/8", 13): None, ("/s", 21): None}
    report = {"forks": [{"member": "etcd-2", "only_fork": [{"key": "/w/etcd-2/8", "value": "etcd-2#8"}]}]}
    final = {"/w/etcd-2/8": ("etcd-2#8", 30)}
    verdict = ic.classify([fork_put, main_put, delete], final, history, ic.Report.from_json(report))
    assert verdict.failures == [], verdict.failures
    assert verdict.outcomes["superseded"] == 1 and verdict.outcomes["in_force"] == 1
    old_id = ic.classify(
        [
            fork_put,
            main_put,
            op("/s", None, 21, "t10", FORK, "etcd-2", op="delete", deleted=1, member_id="old"),
        ],
        final,
        history,
        ic.Report.from_json(report),
    )
    assert old_id.outcomes["unaccounted"] == 1  # the same delete by the fork explains nothing on this side


def test_a_quorum_the_fork_shut_down_can_be_revived_so_no_restore_is_expected():
    """Campaign 61206 k=22: 5 members, etcd-0 and etcd-1 cut off (etcd-1 forced), etcd-4 killed with its data
    dir gone. etcd-0 was shut down by the fork with its data intact: with etcd-2 and etcd-3 it is a quorum
    again, and recover.yml rightly revived it instead of refusing (0 operations lost)."""
    forces = ["size=5", "action=kill_majority", "disk_lost=true", 'isolated=["etcd-0", "etcd-1"]']
    forces += ["forced=etcd-1", "victim=etcd-4"]
    p = incidents.apply_forces(incidents.draw("61206", 22), forces)
    assert incidents.quorum_lost(p) and incidents.revivable_quorum(p) and not incidents.restore_expected(p)
    three = incidents.apply_forces(p, ["size=3", 'isolated=["etcd-1"]', "forced=etcd-1", "victim=etcd-0"])
    assert incidents.restore_expected(three)  # 3 members, one isolated: nothing to revive


class _AddTimesOutButApplies:
    """The CI failure of the campaign's operator: `member add` timed out while the proposal was applied; a
    second add then fails with "not enough started members" (the first one is in the list, unstarted)."""

    def __init__(self) -> None:
        self.members = [
            {"ID": 1, "name": "etcd-0", "peerURLs": ["http://10.0.0.1:2380"]},
            {"ID": 2, "name": "etcd-1", "peerURLs": ["http://10.0.0.2:2380"]},
        ]
        self.adds = 0

    def member(self, name: str) -> dict:
        return {"peer_url": "http://10.0.0.3:2380"}

    def etcdctl(self, via: str, *args: str):
        import subprocess

        if args[:2] == ("member", "add"):
            self.adds += 1
            if self.adds == 1:
                self.members.append({"ID": 3, "peerURLs": ["http://10.0.0.3:2380"]})
                return subprocess.CompletedProcess(args, 1, "", "Error: etcdserver: request timed out")
            return subprocess.CompletedProcess(
                args, 1, "", "Error: etcdserver: re-configuration failed due to not enough started members"
            )
        return subprocess.CompletedProcess(args, 0, json.dumps({"members": self.members}), "")


def test_a_member_add_that_timed_out_but_was_applied_is_not_tried_again(monkeypatch):
    monkeypatch.setattr(incidents.time, "sleep", lambda s: None)
    lab = _AddTimesOutButApplies()
    err, initial = incidents.add_fork(lab, "etcd-0", "etcd-2")
    assert err == "" and lab.adds == 1
    assert sorted(initial.split(",")) == [
        "etcd-0=http://10.0.0.1:2380",
        "etcd-1=http://10.0.0.2:2380",
        "etcd-2=http://10.0.0.3:2380",
    ]


def test_the_campaigns_commands_run_in_a_process_group_of_their_own(tmp_path, monkeypatch):
    lab = incidents.Lab("sbunit", "198.18.250.0/24", tmp_path)
    code = "import os, sys; print(os.getpgid(0) == os.getpid(), os.environ['LAB_NAME']); sys.exit('e')"
    done = lab.sh([sys.executable, "-c", code])
    assert (done.returncode, done.stdout, done.stderr) == (1, "True sbunit\n", "e\n")
    # A playbook's stderr goes with its stdout; the interruption kills its whole group at the task named.
    playbook = tmp_path / "ansible-playbook"
    playbook.write_text("#!/bin/sh\necho warned >&2\necho 'TASK [one]'\nexec sleep 60\n")
    playbook.chmod(0o755)
    monkeypatch.setattr(incidents, "PLAYBOOK", str(playbook))
    out = incidents.run_playbook(lab, [], interrupt="SIGKILL", at="one", timeout=30)
    assert (out["rc"], out["interrupted"], out["stdout"]) == (-9, "TASK [one]", "warned\nTASK [one]\n")


def test_an_option_read_from_the_environment_says_which_variable(monkeypatch):
    def parser():
        made = ic.doc_parser(ic.__doc__)
        ic.env_option(made, "--state-dir", "LAB_UNIT_DIR", Path("/fallback"), "the dir", type=Path)
        return made

    assert "the dir; default $LAB_UNIT_DIR or /fallback" in " ".join(parser().format_help().split())
    assert parser().parse_args([]).state_dir == Path("/fallback")
    monkeypatch.setenv("LAB_UNIT_DIR", "/from/env")
    assert parser().parse_args([]).state_dir == Path("/from/env")
    assert parser().parse_args(["--state-dir", "x"]).state_dir == Path("x")
