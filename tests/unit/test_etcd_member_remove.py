"""etcd_member's removal without etcd: when is a leader settled, and after a removal whose reply never came,
was it applied late or dropped (and why). The status and member list replies are recorded from etcd 3.4.23
through the JSON gateway (the lab, five members, after the first removal)."""

from __future__ import annotations

import etcd_member as mod
import pytest
from ansible.module_utils.etcd_codec import parse_member
from ansible.module_utils.etcd_errors import EtcdError

# etcd-0 leads at term 3 and has applied all it committed.
STATUS_LEADER = {
    "header": {"cluster_id": "9431100287530229363", "member_id": "6727849678051610300", "revision": "1533"},
    "version": "3.4.23",
    "leader": "6727849678051610300",
    "raftIndex": "1568",
    "raftTerm": "3",
    "raftAppliedIndex": "1568",
}
# etcd-1 follows it.
STATUS_FOLLOWER = dict(STATUS_LEADER, header={"member_id": "5072727843200702552"})
# etcd-1 after the leader was paused: an election is going on at term 9.
STATUS_NO_LEADER = dict(STATUS_FOLLOWER, leader="0", raftTerm="9")
# etcd-1 after the election: it leads at term 9.
STATUS_NEW_LEADER = dict(STATUS_FOLLOWER, leader="5072727843200702552", raftTerm="9")
MEMBERS = [
    {"ID": "5072727843200702552", "name": "etcd-1", "clientURLs": ["http://198.18.221.12:2379"]},
    {"ID": "6727849678051610300", "name": "etcd-0", "clientURLs": ["http://198.18.221.11:2379"]},
    {"ID": "7204070240172478498", "name": "etcd-3", "clientURLs": ["http://198.18.221.14:2379"]},
]
ETCD0, ETCD1, ETCD3 = "5d5e1fa2f27e0ebc", "4665f318d0361858", "63f9ffb6f2719022"
TIMEOUT = EtcdError("Cannot reach etcd at http://198.18.221.11:2379: timed out after 5 s", kind="timeout")


def members(*names):
    return [parse_member(m) | {"healthy": True} for m in MEMBERS if m["name"] in names]


def target():
    return next(m for m in members("etcd-3"))


def test_raft_view_reads_the_gateway_strings():
    view = mod.raft_view(STATUS_LEADER)
    assert view == {"member": ETCD0, "leader": ETCD0, "term": 3, "index": 1568, "applied": 1568}
    assert mod.raft_view(STATUS_NO_LEADER)["leader"] is None
    assert target()["id"] == ETCD3


def test_settled_leader():
    via, leader = mod.raft_view(STATUS_FOLLOWER), mod.raft_view(STATUS_LEADER)
    assert mod.leader_settled(via, leader, read_ok=True) is None


@pytest.mark.parametrize(
    ("via", "leader", "read_ok", "why"),
    [
        (STATUS_NO_LEADER, None, False, f"{ETCD1} has no leader at term 9"),
        (STATUS_NEW_LEADER, STATUS_NEW_LEADER, False, "has not committed an entry of term 9 yet"),
        (STATUS_FOLLOWER, None, True, f"the leader {ETCD0} does not answer"),
        (STATUS_FOLLOWER, STATUS_NEW_LEADER, True, "the leader changed (term 3 -> 9)"),
        (STATUS_FOLLOWER, dict(STATUS_LEADER, raftAppliedIndex="1566"), True, "has applied 1566 of 1568"),
    ],
)
def test_unsettled_leader_says_why(via, leader, read_ok, why):
    got = mod.leader_settled(mod.raft_view(via), leader and mod.raft_view(leader), read_ok)
    assert got is not None and why in got


def test_removal_applied_late():
    before = after = mod.raft_view(STATUS_LEADER)
    verdict, sentence = mod.decide_remove(
        target(), before, before, after, members("etcd-0", "etcd-1"), TIMEOUT
    )
    assert verdict == "applied"
    assert sentence.startswith(f"The removal of etcd-3 (id {ETCD3}) got no reply (")
    assert "was applied late: the member list no longer has it (leader etcd-0 at term 3)." in sentence


def test_removal_dropped_during_a_leader_change():
    before, after = mod.raft_view(STATUS_LEADER), mod.raft_view(STATUS_NEW_LEADER)
    verdict, sentence = mod.decide_remove(
        target(), before, after, after, members("etcd-0", "etcd-1", "etcd-3"), TIMEOUT
    )
    assert verdict == "dropped"
    assert "was dropped: the member list still has it" in sentence
    assert "the leader changed from etcd-0 at term 3 to etcd-1 at term 9 while it was pending" in sentence


def test_removal_dropped_without_a_leader_change():
    before = after = mod.raft_view(STATUS_LEADER)
    verdict, sentence = mod.decide_remove(
        target(), before, before, after, members("etcd-0", "etcd-1", "etcd-3"), TIMEOUT
    )
    assert verdict == "dropped"
    assert "no leader change (leader etcd-0 at term 3)" in sentence
    assert "another one unapplied" in sentence


def test_removal_of_the_leader_itself_is_named():
    leader3 = dict(STATUS_LEADER, leader="7204070240172478498")
    before, after = mod.raft_view(leader3), mod.raft_view(STATUS_NEW_LEADER)
    _verdict, sentence = mod.decide_remove(
        target(), before, after, after, members("etcd-0", "etcd-1", "etcd-3"), TIMEOUT
    )
    assert "etcd-3 was itself the leader" in sentence


@pytest.mark.parametrize(
    ("error", "unknown"),
    [
        (TIMEOUT, True),
        (
            EtcdError("etcd at X refused /v3/cluster/member/remove: context deadline exceeded", kind="etcd"),
            True,
        ),
        (
            EtcdError(
                "etcd at X refused /v3/cluster/member/remove: etcdserver: request timed out", kind="etcd"
            ),
            True,
        ),
        (
            EtcdError(
                "etcd at X refused /v3/cluster/member/remove: etcdserver: member not found", kind="etcd"
            ),
            False,
        ),
        (
            EtcdError(
                "etcd at X refused /v3/cluster/member/remove: etcdserver: unhealthy cluster", kind="etcd"
            ),
            False,
        ),
    ],
)
def test_outcome_unknown(error, unknown):
    assert mod.outcome_unknown(error) is unknown


class FakeCluster:
    """What remove_member sees of etcd: removal replies from `replies` in turn (an EtcdError is raised)."""

    def __init__(self, replies, after):
        self.replies, self.after, self.proposed = list(replies), after, 0

    def install(self, monkeypatch):
        monkeypatch.setattr(
            mod,
            "settle",
            lambda params, endpoint, members, deadline, waited=None: mod.raft_view(STATUS_LEADER),
        )
        monkeypatch.setattr(mod, "view_of", lambda params, endpoint: mod.raft_view(STATUS_LEADER))
        monkeypatch.setattr(mod, "gather_when_led", lambda params, deadline: ("http://e0", self.after.pop(0)))
        fake = self

        class Client:
            def __enter__(self):
                return self

            def __exit__(self, *exc):
                return False

            def member_remove(self, member_id):
                fake.proposed += 1
                reply = fake.replies.pop(0)
                if isinstance(reply, Exception):
                    raise reply
                return type("R", (), {"data": reply})()

        monkeypatch.setattr(mod, "client_from_params", lambda endpoint, params: Client())


PARAMS = {"settle_timeout": 1.0}


def test_remove_member_retries_only_a_dropped_removal(monkeypatch):
    fake = FakeCluster([TIMEOUT, {"members": MEMBERS[:2]}], after=[members("etcd-0", "etcd-1", "etcd-3")])
    fake.install(monkeypatch)
    after, attempts, notes = mod.remove_member(
        PARAMS, "http://e0", members("etcd-0", "etcd-1", "etcd-3"), target()
    )
    assert (fake.proposed, attempts) == (2, 2)
    assert [m["name"] for m in after] == ["etcd-1", "etcd-0"]
    assert (
        len(notes) == 1 and "was dropped" in notes[0] and notes[0].endswith("Proposing it again (attempt 2).")
    )


def test_remove_member_does_not_propose_again_when_applied_late(monkeypatch):
    fake = FakeCluster([TIMEOUT], after=[members("etcd-0", "etcd-1")])
    fake.install(monkeypatch)
    after, attempts, notes = mod.remove_member(
        PARAMS, "http://e0", members("etcd-0", "etcd-1", "etcd-3"), target()
    )
    assert (fake.proposed, attempts) == (1, 1)
    assert [m["name"] for m in after] == ["etcd-1", "etcd-0"]
    assert "applied late" in notes[0]


def test_remove_member_gives_up_after_three_drops(monkeypatch):
    still = members("etcd-0", "etcd-1", "etcd-3")
    fake = FakeCluster([TIMEOUT] * 3, after=[still, still, still])
    fake.install(monkeypatch)
    with pytest.raises(EtcdError, match=r"was dropped.*Gave up after 3 attempts"):
        mod.remove_member(PARAMS, "http://e0", still, target())
    assert fake.proposed == 3


def test_remove_member_does_not_retry_a_refusal(monkeypatch):
    refused = EtcdError(
        "etcd at X refused /v3/cluster/member/remove: etcdserver: unhealthy cluster", kind="etcd"
    )
    fake = FakeCluster([refused], after=[])
    fake.install(monkeypatch)
    with pytest.raises(EtcdError, match="unhealthy cluster"):
        mod.remove_member(PARAMS, "http://e0", members("etcd-0", "etcd-1", "etcd-3"), target())
    assert fake.proposed == 1


def test_removal_through_a_member_without_a_leader():
    # 3.5 with pre-vote: the term stays, the same leader leads again; the follower had no leader meanwhile.
    before = after = mod.raft_view(STATUS_LEADER)
    at_timeout = mod.raft_view(dict(STATUS_NO_LEADER, raftTerm="3"))
    verdict, sentence = mod.decide_remove(
        target(), before, at_timeout, after, members("etcd-0", "etcd-1", "etcd-3"), TIMEOUT
    )
    assert verdict == "dropped"
    assert "etcd-1 had no leader at term 3 when the reply was due" in sentence
    assert "etcd-0 at term 3 leads again" in sentence


def test_removal_through_a_member_that_stopped_answering():
    before, after = mod.raft_view(STATUS_LEADER), mod.raft_view(STATUS_NEW_LEADER)
    _verdict, sentence = mod.decide_remove(
        target(), before, None, after, members("etcd-0", "etcd-1", "etcd-3"), TIMEOUT
    )
    assert "did not answer when the reply was due (leader now etcd-1 at term 9)" in sentence
