"""The grader's HashKV comparison at one fixed revision (module_utils/etcd_diagnosis.py), without etcd.

The replies below have the shape EtcdClient.hashkv returns, and of hashkv_at for a failed call."""

from __future__ import annotations

import etcd_consistency
import pytest
from ansible.module_utils.etcd_diagnosis import compare_hashkv, fixed_revision


def reply(h, compact=0, revision=100):
    return {"hash": h, "compact_revision": compact, "revision": revision, "member_id": "1"}


def failure(compact=None, current=None):
    return {"error": "HashKV over gRPC failed", "compact_revision": compact, "current_revision": current}


def test_fixed_revision_is_the_lowest_current_revision():
    # The suite's failure: three members at 4414, two already at 4415 (the writers never pause).
    revisions = {"etcd-0": 4414, "etcd-1": 4414, "etcd-2": 4414, "etcd-3": 4415, "etcd-4": 4415}
    assert fixed_revision(revisions) == 4414
    assert fixed_revision({"etcd-0": "77"}) == 77  # the gateway's 64-bit integers are strings


@pytest.mark.parametrize("revisions", [{}, {"etcd-0": 5, "etcd-1": 0}])
def test_fixed_revision_refuses_nothing_to_compare(revisions):
    with pytest.raises(ValueError):
        fixed_revision(revisions)


def test_equal_hashes_and_compact_revisions_pass():
    verdict, detail = compare_hashkv(100, {"etcd-0": reply(7, 40), "etcd-1": reply(7, 40)})
    assert verdict == "equal"
    assert detail == "revision 100 (compact revision 40): all 2 members hash 7"


def test_one_member_with_other_data_fails_and_is_named():
    replies = {"etcd-0": reply(7), "etcd-1": reply(7), "etcd-2": reply(9)}
    verdict, detail = compare_hashkv(100, replies)
    assert verdict == "differ"
    assert "etcd-0, etcd-1=7" in detail and "etcd-2=9" in detail


def test_different_compact_revisions_are_not_compared():
    verdict, detail = compare_hashkv(100, {"etcd-0": reply(7, 40), "etcd-1": reply(7, 50)})
    assert verdict == "retry"
    assert "compact revisions differ (etcd-0=40, etcd-1=50)" in detail


def test_a_revision_compacted_on_a_member_is_said_so():
    replies = {"etcd-0": reply(7, 40), "etcd-1": failure(compact=120, current=130)}
    verdict, detail = compare_hashkv(100, replies)
    assert verdict == "compacted"
    assert "revision 100 is compacted on etcd-1 (compact revision 120)" in detail
    # At the compaction itself there is nothing left either (etcd: rev <= compactRev is ErrCompacted).
    assert compare_hashkv(120, replies)[0] == "compacted"


def test_another_failure_is_retried_with_its_cause():
    verdict, detail = compare_hashkv(100, {"etcd-0": reply(7), "etcd-1": failure(compact=0, current=99)})
    assert verdict == "retry"
    assert "etcd-1: HashKV over gRPC failed (its revision 99)" in detail


def probe_at(name, revision):
    return {"endpoint": f"http://{name}:2379", "member_id": name, "reachable": True, "revision": revision}


def test_hash_check_asks_every_member_at_the_lowest_revision(monkeypatch):
    asked = []

    def fake_hashkv_at(params, endpoints, revision):
        asked.append((sorted(endpoints), revision))
        return {n: reply(11, 3, revision) for n in endpoints}

    monkeypatch.setattr(etcd_consistency, "hashkv_at", fake_hashkv_at)
    probes = [probe_at("a", 4414), probe_at("b", 4415), probe_at("c", 4415)]
    names = {"a": "etcd-0", "b": "etcd-1", "c": "etcd-2"}
    result, revision, hashes = etcd_consistency.hash_check({"settle_timeout": 0}, probes, names)
    assert asked == [(["etcd-0", "etcd-1", "etcd-2"], 4414)]
    assert revision == 4414 and result["ok"]
    assert hashes == {"etcd-0": 11, "etcd-1": 11, "etcd-2": 11}
    assert "the lowest current revision of etcd-0=4414, etcd-1=4415, etcd-2=4415" in result["detail"]


def test_hash_check_does_not_retry_a_real_difference(monkeypatch):
    calls = []

    def fake_hashkv_at(params, endpoints, revision):
        calls.append(revision)
        return {n: reply(1 if n == "etcd-0" else 2) for n in endpoints}

    monkeypatch.setattr(etcd_consistency, "hashkv_at", fake_hashkv_at)
    probes = [probe_at("a", 10), probe_at("b", 10)]
    result, _rev, _h = etcd_consistency.hash_check(
        {"settle_timeout": 30}, probes, {"a": "etcd-0", "b": "etcd-1"}
    )
    assert calls == [10] and not result["ok"]
    assert "hashes differ" in result["detail"]
