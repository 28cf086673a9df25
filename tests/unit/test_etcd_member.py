"""etcd_member: quorum arithmetic, member matching, initial_cluster, argument checks (no etcd needed)."""

from __future__ import annotations

import etcd_member as mod
import pytest
from ansible.module_utils.etcd_errors import EtcdError


def member(name, healthy=True, learner=False, mid=None, peer=None):
    return {
        "id": mid or f"{abs(hash(name)) % (1 << 60):x}",
        "name": name,
        "peer_urls": [peer or f"http://10.0.0.{len(name)}:2380"],
        "client_urls": [f"http://10.0.0.{len(name)}:2379"] if name else [],
        "is_learner": learner,
        "started": bool(name),
        "healthy": healthy,
    }


def cluster(spec):
    """'HHD' -> three voters: healthy, healthy, down; 'l' a healthy learner, 'L' a down learner."""
    out = []
    for i, c in enumerate(spec):
        out.append(member(f"etcd-{i}", healthy=c in "Hl", learner=c in "lL", mid=f"{i + 1:x}"))
    return out


QUORUM_CASES = [
    # spec, action, target index, safe, healthy_after, quorum_after
    ("HHH", "remove", 2, True, 2, 2),
    ("HHD", "remove", 2, True, 2, 2),  # removing the down one is fine
    ("HHD", "remove", 1, False, 1, 2),  # removing a healthy one leaves 1 of 2
    ("HHHDD", "remove", 4, True, 3, 3),
    ("HHHDD", "remove", 0, False, 2, 3),
    ("H", "remove", 0, False, 0, 0),  # removing the last member
    ("HHl", "remove", 2, True, 2, 2),  # learners do not count
    ("HHH", "add", None, True, 3, 3),
    ("HHD", "add", None, False, 2, 3),  # 4 voters need 3 healthy
    ("HHHH", "add", None, True, 4, 3),
    ("HHl", "promote", 2, True, 3, 2),
    ("HDL", "promote", 2, False, 1, 2),
]


@pytest.mark.parametrize(("spec", "action", "target", "safe", "healthy_after", "quorum_after"), QUORUM_CASES)
def test_quorum_check(spec, action, target, safe, healthy_after, quorum_after):
    members = cluster(spec)
    info = mod.quorum_check(members, action, members[target] if target is not None else None)
    assert info["safe"] is safe
    assert info["healthy_voters_after"] == healthy_after
    assert info["quorum_after"] == quorum_after


def test_find_member_by_name_id_and_peer_urls():
    members = cluster("HHH")
    members.append(member("", healthy=False, mid="ff", peer="http://10.0.0.9:2380"))
    assert mod.find_member(members, name="etcd-1")["id"] == "2"
    assert mod.find_member(members, member_id="0x3")["name"] == "etcd-2"
    assert mod.find_member(members, member_id="FF")["peer_urls"] == ["http://10.0.0.9:2380"]
    # An added-but-unstarted member has no name yet: matched by its peer URLs.
    assert mod.find_member(members, name="etcd-9", peer_urls=["http://10.0.0.9:2380/"])["id"] == "ff"
    assert mod.find_member(members, name="nope") is None


def test_initial_cluster_names_the_new_member():
    members = [member("etcd-0", peer="http://10.0.0.1:2380"), member("", peer="http://10.0.0.3:2380")]
    assert mod.initial_cluster(members, "etcd-2", ["http://10.0.0.3:2380"]) == (
        "etcd-0=http://10.0.0.1:2380,etcd-2=http://10.0.0.3:2380"
    )


def base(**kw):
    params = {
        "endpoints": ["http://127.0.0.1:2379"],
        "state": "list",
        "name": None,
        "id": None,
        "peer_urls": None,
        "learner": False,
        "force": False,
        "timeout": 1.0,
        "ca_cert": None,
        "client_cert": None,
        "client_key": None,
        "validate_certs": True,
    }
    params.update(kw)
    return params


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (base(endpoints=[]), "endpoints is empty"),
        (base(endpoints=["10.0.0.1:2379"]), "has no scheme"),
        (base(state="present", name="etcd-3"), "needs peer_urls"),
        (base(state="present", peer_urls=["http://10.0.0.4:2380"]), "needs name"),
        (
            base(state="present", name="x", peer_urls=["10.0.0.4:2380"]),
            "Peer URL '10.0.0.4:2380' has no scheme",
        ),
        (base(state="absent"), "needs name or id"),
        (base(state="promoted", id="xyz"), "not a hexadecimal etcd id"),
        (
            base(endpoints=["https://127.0.0.1:2379"], client_cert="/nope.pem", client_key="/nope.key"),
            "does not exist",
        ),
    ],
)
def test_check_params(params, message):
    with pytest.raises(EtcdError, match=message):
        mod.check_params(params)


def test_module_rejects_name_and_id_together():
    from integration.etcd_fixtures import run_module

    result = run_module(
        mod, {"endpoints": ["http://127.0.0.1:2379"], "state": "absent", "name": "a", "id": "1"}
    )
    assert result["failed"] and "mutually exclusive" in result["msg"]
    result = run_module(mod, {"endpoints": ["http://127.0.0.1:2379"], "state": "removed"})
    assert result["failed"] and "value of state must be one of" in result["msg"]


class RefusingClient:
    """member_add refused as an unhealthy cluster `refusals` times, then accepted (as etcd does for 5 s after
    a voter reconnects); or refused for another reason."""

    def __init__(self, log, refusals, other=None):
        self.log, self.refusals, self.other = log, refusals, other

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def member_add(self, peer_urls, is_learner=False):
        self.log.append(peer_urls)
        if self.other:
            raise EtcdError(self.other, "http://e0")
        if len(self.log) <= self.refusals:
            raise EtcdError("etcdserver: unhealthy cluster", "http://e0")
        return type("Reply", (), {"data": {"member": {"ID": "1", "peerURLs": peer_urls}}})()


@pytest.mark.parametrize(("refusals", "attempts"), [(0, 1), (3, 4)])
def test_an_add_refused_as_an_unhealthy_cluster_is_asked_again(monkeypatch, refusals, attempts):
    log = []
    monkeypatch.setattr(mod, "client_from_params", lambda endpoint, params: RefusingClient(log, refusals))
    params = {"settle_timeout": 5, "learner": False}
    reply, tried = mod.add_member(params, "http://e0", ["http://n:2380"], pause=0.01)
    assert tried == attempts == len(log)
    assert reply["member"]["peerURLs"] == ["http://n:2380"]


def test_an_add_is_not_asked_again_for_other_refusals_nor_past_the_timeout(monkeypatch):
    log = []
    refusal = "not enough started members"
    monkeypatch.setattr(mod, "client_from_params", lambda e, p: RefusingClient(log, 0, refusal))
    with pytest.raises(EtcdError, match="not enough started members"):
        mod.add_member({"settle_timeout": 5, "learner": False}, "http://e0", ["http://n:2380"], pause=0.01)
    assert len(log) == 1
    log.clear()
    monkeypatch.setattr(mod, "client_from_params", lambda e, p: RefusingClient(log, 1000))
    with pytest.raises(EtcdError, match="unhealthy cluster"):
        mod.add_member({"settle_timeout": 0.1, "learner": False}, "http://e0", ["http://n:2380"], pause=0.02)
    assert 2 <= len(log) <= 7


def test_an_add_refused_by_the_quorum_check_looks_again_until_a_voter_follows_again(monkeypatch):
    """Seen in a benchmark run: right after the clock revert (ptrace pauses etcd) one majority member followed
    no leader for a moment, the add was refused, and the rejoin failed. The module now looks again."""
    paused = [member("etcd-0"), member("etcd-1", healthy=False)]
    back = [member("etcd-0"), member("etcd-1")]
    looks = iter([paused, paused, back])
    monkeypatch.setattr(mod, "gather", lambda params, need_leader=True: ("http://e0", next(looks)))
    info = mod.quorum_check(paused, "add", None)
    assert info["safe"] is False
    waited = []
    params = {"settle_timeout": 5}
    _, members, info = mod.wait_until_safe(params, "http://e0", paused, info, waited, pause=0.01)
    assert info["safe"] is True and members == back
    assert waited and "looked again 3 time(s)" in waited[0] and waited[0].endswith("safe now.")


def test_the_look_again_before_an_add_is_bounded(monkeypatch):
    paused = [member("etcd-0"), member("etcd-1", healthy=False)]
    calls = []

    def gather(params, need_leader=True):
        calls.append(1)
        return "http://e0", paused

    monkeypatch.setattr(mod, "gather", gather)
    waited = []
    info = mod.quorum_check(paused, "add", None)
    _, _, info = mod.wait_until_safe({"settle_timeout": 0.1}, "http://e0", paused, info, waited, pause=0.02)
    assert info["safe"] is False and 2 <= len(calls) <= 6 and waited[0].endswith("still refused.")


def test_an_add_waits_for_a_leader_as_a_removal_does(monkeypatch):
    """Seen in bench_recover: an add right after a removal found no member following a leader (an
    election) and failed at once. It now waits for a leader, as a removal does, and says so."""
    led = [member("etcd-0"), member("etcd-1")]
    answers = iter([EtcdError("No endpoint follows a leader: http://e0 has no leader", "http://e0")] * 2)

    def gather(params, need_leader=True):
        for answer in answers:
            raise answer
        return "http://e0", led

    monkeypatch.setattr(mod, "gather", gather)
    monkeypatch.setattr(mod, "add_member", lambda params, endpoint, peer_urls: ({"member": {"ID": "1"}}, 1))
    params = {"endpoints": ["http://e0:2379"], "state": "present", "name": "etcd-2", "learner": False,
              "peer_urls": ["http://10.0.0.3:2380"], "force": False, "settle_timeout": 5}  # fmt: skip
    result = mod.run(params)
    assert result["action"] == "add" and result["changed"] is True
    assert result["add_notes"] and result["add_notes"][0].startswith("Waited ")
