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


ALL_THREE = ("etcd-0", "etcd-1", "etcd-3")
# etcd-3 led at term 3 when its removal was proposed.
STATUS_ETCD3_LEADS = dict(STATUS_LEADER, leader="7204070240172478498")
# etcd-1 had no leader when the reply was due; 3.5 with pre-vote keeps the term.
STATUS_NO_LEADER_TERM_3 = dict(STATUS_NO_LEADER, raftTerm="3")


@pytest.mark.parametrize(
    ("before", "at_timeout", "after", "still", "verdict", "says"),
    [
        pytest.param(
            STATUS_LEADER,
            STATUS_LEADER,
            STATUS_LEADER,
            ("etcd-0", "etcd-1"),
            "applied",
            ["was applied late: the member list no longer has it (leader etcd-0 at term 3)."],
            id="applied-late",
        ),
        pytest.param(
            STATUS_LEADER,
            STATUS_NEW_LEADER,
            STATUS_NEW_LEADER,
            ALL_THREE,
            "dropped",
            [
                "was dropped: the member list still has it",
                "the leader changed from etcd-0 at term 3 to etcd-1 at term 9 while it was pending",
            ],
            id="dropped-during-a-leader-change",
        ),
        pytest.param(
            STATUS_LEADER,
            STATUS_LEADER,
            STATUS_LEADER,
            ALL_THREE,
            "dropped",
            ["no leader change (leader etcd-0 at term 3)", "another one unapplied"],
            id="dropped-without-a-leader-change",
        ),
        pytest.param(
            STATUS_ETCD3_LEADS,
            STATUS_NEW_LEADER,
            STATUS_NEW_LEADER,
            ALL_THREE,
            "dropped",
            ["etcd-3 was itself the leader"],
            id="of-the-leader-itself",
        ),
        pytest.param(
            STATUS_LEADER,
            STATUS_NO_LEADER_TERM_3,
            STATUS_LEADER,
            ALL_THREE,
            "dropped",
            ["etcd-1 had no leader at term 3 when the reply was due", "etcd-0 at term 3 leads again"],
            id="through-a-member-without-a-leader",
        ),
        pytest.param(
            STATUS_LEADER,
            None,
            STATUS_NEW_LEADER,
            ALL_THREE,
            "dropped",
            ["did not answer when the reply was due (leader now etcd-1 at term 9)"],
            id="through-a-member-that-stopped-answering",
        ),
    ],
)
def test_a_removal_without_a_reply_is_judged_applied_or_dropped_and_why(
    before, at_timeout, after, still, verdict, says
):
    """The raft views before the removal, when its reply was due (None: the member did not answer) and
    after, and the members the list still has: the verdict, and the sentence that explains it."""
    got, sentence = mod.decide_remove(
        target(),
        mod.raft_view(before),
        at_timeout and mod.raft_view(at_timeout),
        mod.raft_view(after),
        members(*still),
        TIMEOUT,
    )
    assert got == verdict
    assert sentence.startswith(f"The removal of etcd-3 (id {ETCD3}) got no reply ("), sentence
    for part in says:
        assert part in sentence


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
