"""etcd_endpoint_status on recorded real gateway replies (etcd 3.4.23 and 3.5.1), table-driven."""

from __future__ import annotations

import email.utils
import json
from pathlib import Path

import etcd_endpoint_status as mod
import pytest
import yaml
from ansible.module_utils.etcd_client import clock_offset_from_date

FIXTURES = Path(__file__).parent / "fixtures"
CASES = yaml.safe_load((FIXTURES / "endpoint_status_cases.yaml").read_text())


def load_phase(version, phase):
    data = json.loads((FIXTURES / f"gateway_{version}.json").read_text())
    return next(p for p in data["phases"] if p["phase"] == phase)


def results_from_recording(version, phase, only=None, clock_shift=None):
    """Turn recorded replies into endpoint results exactly as probe_endpoint would."""
    results = []
    for name, member in load_phase(version, phase)["members"].items():
        if only and name not in only:
            continue
        replies = member["replies"]
        status = replies["status"]
        if "transport_error" in status:
            result = mod.empty_result(member["endpoint"])
            result["error"] = f"Cannot reach etcd at {member['endpoint']}: connection refused"
            results.append(result)
            continue
        date = status["date"]
        shift = (clock_shift or {}).get(name)
        if shift:
            date = email.utils.formatdate(
                email.utils.parsedate_to_datetime(date).timestamp() + shift, usegmt=True
            )
        alarm = json.loads(replies["alarm"]["body"]) if "body" in replies["alarm"] else {}
        results.append(
            mod.parse_endpoint(
                member["endpoint"],
                json.loads(status["body"]),
                json.loads(replies["member_list"]["body"]),
                alarm,
                clock_offset_from_date(date, status["sent"], status["received"]),
            )
        )
    return results


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_diagnosis_of_recorded_cluster(case):
    results = results_from_recording(
        case["version"], case["phase"], case.get("only"), case.get("clock_shift")
    )
    diag = mod.diagnose(results, case.get("expected_members"), 2.0)
    assert diag["split_brain"] is case["split_brain"]
    assert sorted(leader["name"] for leader in diag["leaders"]) == case["leaders"]
    auth = diag["authoritative_view"]
    assert (diag["views"][auth]["leader"] if auth is not None else None) == case["authoritative_leader"]
    assert diag["forked_members"] == case["forked"]
    assert diag["leaderless_members"] == case["leaderless"]
    assert [u["name"] for u in diag["unreachable_endpoints"]] == case["unreachable"]
    if "skewed" in case:
        assert [s["name"] for s in diag["clock_skew"]] == case["skewed"]
    text = "\n".join(diag["findings"])
    for expected in case["findings"]:
        assert expected in text
    # The report has one table per view, then the findings, and mentions every endpoint.
    report = "\n".join(mod.format_report(results, diag))
    assert report.count("View ") == len(diag["views"])
    assert "Findings:" in report
    for r in results:
        assert (r["name"] or r["endpoint"]) in report


@pytest.mark.parametrize("version", ["3.4", "3.5"])
def test_parse_endpoint_fields_from_real_reply(version):
    results = results_from_recording(version, "fork")
    forked = next(r for r in results if r["name"] == "etcd-2")
    majority = [r for r in results if r["name"] != "etcd-2"]
    # Same cluster id on both sides of the fork: the id does not reveal it.
    assert {r["cluster_id"] for r in results} == {forked["cluster_id"]}
    assert forked["is_leader"] and forked["leader_name"] == "etcd-2"
    assert [m["name"] for m in forked["members"]] == ["etcd-2"]
    assert all(len(r["members"]) == 3 for r in majority)
    # Hex ids, as etcdctl --hex prints them.
    assert all(int(r["member_id"], 16) > 0 and r["member_id"] == r["member_id"].lower() for r in results)
    assert forked["raft_index"] > max(r["raft_index"] for r in majority)
    assert forked["version"].startswith(version)
    assert forked["revision"] == 14 and forked["db_size"] > 0


@pytest.mark.parametrize("version", ["3.4", "3.5"])
def test_leaderless_status_has_no_leader_and_the_error(version):
    results = results_from_recording(version, "leaderless")
    etcd0 = next(r for r in results if r["name"] == "etcd-0")
    assert etcd0["leader"] is None and not etcd0["is_leader"]
    assert etcd0["status_errors"] == ["etcdserver: no leader"]


def test_no_endpoint_reachable():
    results = [mod.empty_result("http://127.0.0.1:1"), mod.empty_result("http://127.0.0.1:2")]
    for r in results:
        r["error"] = "Cannot reach etcd: connection refused"
    diag = mod.diagnose(results)
    assert diag["authoritative_view"] is None and not diag["split_brain"]
    assert diag["findings"][0].startswith("No endpoint answered")
    assert len(diag["unreachable_endpoints"]) == 2


BAD_ARGS = [
    ({"endpoints": []}, "endpoints is empty"),
    ({"endpoints": ["not a url"]}, "has no scheme"),
    ({"endpoints": ["unix:///run/etcd.sock"]}, "only http:// and https://"),
    ({"endpoints": ["ftp://127.0.0.1:2379"]}, "has scheme 'ftp'"),
    ({"endpoints": ["http://127.0.0.1"]}, "has no port"),
    ({"endpoints": ["http://127.0.0.1:99999"]}, "not a valid URL"),
    ({"endpoints": ["http://:2379"]}, "has no host"),
    ({"endpoints": ["http://127.0.0.1:2379/v3"]}, "without a path"),
    (
        {"endpoints": ["https://127.0.0.1:2379"], "ca_cert": "/nonexistent/ca.pem"},
        "CA file '/nonexistent/ca.pem'",
    ),
    ({"endpoints": ["http://127.0.0.1:2379"], "timeout": 0}, "timeout must be a positive"),
    ({"endpoints": ["http://127.0.0.1:2379"], "clock_skew_threshold": "abc"}, "clock_skew_threshold"),
    ({"endpoints": ["http://127.0.0.1:2379"], "bogus": 1}, "Unsupported parameters"),
]


@pytest.mark.parametrize(("args", "message"), BAD_ARGS, ids=[m for _, m in BAD_ARGS])
def test_bad_arguments_fail_with_one_clear_message(args, message):
    from integration.etcd_fixtures import run_module

    result = run_module(mod, args)
    assert result.get("failed") is True
    assert message in result["msg"]
    assert "Traceback" not in result["msg"]
    assert result.get("changed") is False or "changed" not in result


@pytest.mark.parametrize("version", ["3.4", "3.5"])
def test_member_added_back_is_named_by_the_peer_urls_given(version):
    """No report names etcd-2 (the fork is down): member_peer_urls tells who the unstarted member is."""
    results = [r for r in results_from_recording(version, "hint8") if r["name"] != "etcd-2"]
    auth = next(r for r in results if r["is_leader"])
    unstarted = next(m for m in auth["members"] if not m["name"])
    plain = mod.diagnose([dict(r) for r in results], ["etcd-0", "etcd-1", "etcd-2"])
    assert "a member was added back" in "\n".join(plain["findings"])
    named = mod.diagnose(results, ["etcd-0", "etcd-1", "etcd-2"], 2.0, {"etcd-2": unstarted["peer_urls"]})
    view = named["views"][named["authoritative_view"]]
    assert view["membership_changes"]["added_unstarted"] == [
        {"id": unstarted["id"], "peer_urls": unstarted["peer_urls"], "name": "etcd-2"}
    ]
    assert view["membership_changes"]["removed"] == []
    assert "a member etcd-2 was added back" in "\n".join(named["findings"])


def test_a_forced_member_is_never_authoritative_even_when_alone_with_a_quorum_of_one():
    """Only the fork answers: its one-member cluster has a quorum of its own, not of the original members."""
    results = results_from_recording("3.4", "fork", only=["etcd-2"])
    diag = mod.diagnose(results, ["etcd-0", "etcd-1", "etcd-2"])
    assert diag["authoritative_view"] is None
    assert diag["forked_members"] == ["etcd-2"]


def _asked(monkeypatch, phases):
    """probe_endpoint answers from the recorded phases in turn (the last one again and again)."""
    calls = {"rounds": 0}
    by_endpoint = [{r["endpoint"]: r for r in results_from_recording("3.5", phase)} for phase in phases]

    def probe(endpoint, params):
        answers = by_endpoint[min(calls["rounds"], len(by_endpoint) - 1)]
        return answers.get(endpoint) or mod.empty_result(endpoint)

    def run_once(func, items, max_workers=16):
        out = [func(e) for e in items]
        calls["rounds"] += 1
        return out

    monkeypatch.setattr(mod, "probe_endpoint", probe)
    monkeypatch.setattr(mod, "parallel_map", run_once)
    endpoints = [r["endpoint"] for r in results_from_recording("3.5", "healthy")]
    return calls, endpoints


@pytest.mark.parametrize("wait", [0, 5])
def test_leader_wait_asks_again_while_a_member_has_no_leader(monkeypatch, wait):
    """An election in progress (a member answers without a leader) is not taken for a lost quorum when
    leader_wait allows a few seconds: the module asks again until a view is authoritative."""
    calls, endpoints = _asked(monkeypatch, ["leaderless", "leaderless", "healthy"])
    out = mod.run({"endpoints": endpoints, "leader_wait": wait, "timeout": 1})
    if wait:
        assert out["authoritative_view"] is not None and calls["rounds"] == 3 and out["leader_wait_s"] >= 0.9
    else:
        assert out["authoritative_view"] is None and calls["rounds"] == 1 and out["leader_wait_s"] == 0


def test_leader_wait_is_bounded(monkeypatch):
    calls, endpoints = _asked(monkeypatch, ["leaderless"])
    out = mod.run({"endpoints": endpoints, "leader_wait": 1.2, "timeout": 1})
    assert out["authoritative_view"] is None and 2 <= calls["rounds"] <= 4 and out["leader_wait_s"] < 3


def test_without_explain_the_report_is_what_each_member_says():
    """explain=false: one row per member with the members it lists, and no diagnosis (no view marked
    authoritative, no findings): the learner's raw material."""
    results = results_from_recording("3.5", "fork")
    diag = mod.diagnose(results, ["etcd-0", "etcd-1", "etcd-2"], 2.0)
    raw = "\n".join(mod.format_report(results, diag, explain=False))
    explained = "\n".join(mod.format_report(results, diag))
    assert "Findings:" in explained and "[authoritative]" in explained
    assert "Findings:" not in raw and "authoritative" not in raw and "View " not in raw
    assert "MEMBERS IT LISTS" in raw and len(raw.splitlines()) == 2 + len(results)  # header, rule, rows
    rows = {line.split()[0]: line for line in raw.splitlines()[2:]}
    assert rows["etcd-2"].rstrip().endswith("self    3     28          14        20.0 kB  +0.0s  etcd-2")
    assert rows["etcd-0"].rstrip().endswith("etcd-0, etcd-1, etcd-2")


@pytest.mark.parametrize("wait", [0, 5])
def test_sync_wait_asks_again_until_every_member_is_at_the_same_revision(monkeypatch, wait):
    """A member that was just started answers behind the others for a moment: with sync_wait the module asks
    again until every member follows the same leader at the same revision."""
    healthy = {r["endpoint"]: r for r in results_from_recording("3.5", "healthy")}
    assert mod.in_sync(list(healthy.values()))
    lagging = dict(healthy)
    first = next(iter(lagging))
    lagging[first] = {**lagging[first], "revision": (lagging[first]["revision"] or 0) - 5}
    calls = {"rounds": 0}

    def run_once(func, items, max_workers=16):
        answers = lagging if calls["rounds"] < 2 else healthy
        calls["rounds"] += 1
        return [answers[e] for e in items]

    monkeypatch.setattr(mod, "parallel_map", run_once)
    out = mod.run({"endpoints": list(healthy), "sync_wait": wait, "timeout": 1})
    assert out["in_sync"] is bool(wait)
    assert calls["rounds"] == (3 if wait else 1)
