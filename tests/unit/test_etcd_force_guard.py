"""etcd_force_guard: the decision, the override's reason and the decision log."""

from __future__ import annotations

import json

import etcd_force_guard as guard
import pytest

L0 = "8e9e05c52164694d"


def test_every_other_member_down_is_allowed():
    refused, reasons, reachable, leaders = guard.decide(
        "etcd-2", [("http://a:2379", None, "refused"), ("http://b:2379", None, "timeout")], [], None, 3
    )
    assert (refused, reasons, reachable, leaders) == (False, [], [], {})


def test_a_quorum_following_a_leader_is_refused_with_the_evidence():
    refused, reasons, reachable, leaders = guard.decide(
        "etcd-2", [("http://a:2379", L0, None), ("http://b:2379", L0, None)], [], None, 3
    )
    assert refused
    assert reachable == ["http://a:2379", "http://b:2379"]
    assert leaders == {L0: 2}
    assert any("2 of the 3 original members follow leader" in r and "quorum 2" in r for r in reasons)


def test_one_answering_member_without_leader_is_enough_to_refuse():
    refused, reasons, _r, _l = guard.decide(
        "etcd-4", [("http://a:2379", None, None)] + [("x", None, "e")] * 3, [], None, 5
    )
    assert refused
    assert "answers (it has no leader now" in reasons[0]


def test_peer_port_reachable_or_own_leader_refuses():
    assert guard.decide("etcd-2", [("http://a:2379", None, "e")], [("http://a:2380", True)], None, 2)[0]
    refused, reasons, _r, _l = guard.decide("etcd-2", [("http://a:2379", None, "e")], [], L0, 2)
    assert refused and reasons == [f"etcd-2 itself still follows leader {L0}"]


def params(tmp_path, **kw):
    base = {
        "member": "etcd-2",
        "endpoints": ["http://127.0.0.1:9"],
        "peer_urls": ["http://127.0.0.1:9"],
        "names": [],
        "member_endpoint": None,
        "override": False,
        "reason": "",
        "log_path": str(tmp_path / "guard.log"),
        "timeout": 0.5,
        "ca_cert": None,
        "client_cert": None,
        "client_key": None,
        "validate_certs": True,
    }
    base.update(kw)
    return base


def test_override_without_reason_is_refused_before_anything(tmp_path):
    with pytest.raises(ValueError, match="override=true needs a reason"):
        guard.run(params(tmp_path, override=True, reason="  "))
    assert not (tmp_path / "guard.log").exists()


def test_nothing_answers_allowed_and_logged(tmp_path):
    result = guard.run(params(tmp_path))
    assert result["decision"] == "allowed"
    entry = json.loads((tmp_path / "guard.log").read_text())
    assert entry["decision"] == "allowed" and entry["member"] == "etcd-2"


def test_check_mode_logs_nothing(tmp_path):
    assert guard.run(params(tmp_path), check_mode=True)["decision"] == "allowed"
    assert not (tmp_path / "guard.log").exists()


def test_bad_url_is_one_clear_error(tmp_path):
    from ansible.module_utils.etcd_errors import EtcdError

    with pytest.raises(EtcdError):
        guard.run(params(tmp_path, endpoints=["ftp://x"]))


def test_names_label_the_reasons():
    labels = guard.named(["http://a:2379", "http://b:2379"], ["etcd-0", "etcd-1"])
    assert labels == {"http://a:2379": "etcd-0 (http://a:2379)", "http://b:2379": "etcd-1 (http://b:2379)"}
    assert guard.named(["http://a:2379"], []) == {"http://a:2379": "http://a:2379"}
