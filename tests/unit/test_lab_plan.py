"""lab_plan: the settings checks and the computed layout, table-driven."""

from __future__ import annotations

import ipaddress
import json
import subprocess

import lab_plan
import pytest
from lab_plan import (
    PlanError,
    build_plan,
    check_clash,
    check_clock_offset,
    check_skewed_member,
    check_state_dir,
    default_isolated,
    load_plan,
)

BASE = dict(
    platform="local",
    members=3,
    allow_even=False,
    name="sblab",
    subnet="198.18.213.0/24",
    isolated=[],
    forced="",
)


@pytest.mark.parametrize(
    ("members", "isolated"),
    [(3, ["etcd-2"]), (5, ["etcd-3", "etcd-4"]), (7, ["etcd-4", "etcd-5", "etcd-6"])],
)
def test_default_minority_is_the_last_members(members, isolated):
    assert default_isolated([f"etcd-{i}" for i in range(members)]) == isolated
    plan = build_plan(**{**BASE, "members": members})
    assert plan["isolated"] == isolated
    assert plan["forced"] == isolated[-1]
    assert len(plan["majority"]) > members // 2


def test_layout_names_addresses_and_urls():
    plan = build_plan(**BASE)
    first = plan["members"][0]
    assert first == {
        "name": "etcd-0",
        "index": 0,
        "ip": "198.18.213.11",
        "netns": "sblab-etcd-0",
        "veth_host": "sblab-h0",
        "veth_node": "sblab-n0",
        "client_url": "http://198.18.213.11:2379",
        "peer_url": "http://198.18.213.11:2380",
        "isolated": False,
        "forced": False,
    }
    assert plan["bridge"] == "sblab0" and plan["bridge_ip"] == "198.18.213.1" and plan["prefixlen"] == 24
    assert plan["initial_cluster"] == (
        "etcd-0=http://198.18.213.11:2380,etcd-1=http://198.18.213.12:2380,etcd-2=http://198.18.213.13:2380"
    )
    assert [m["forced"] for m in plan["members"]] == [False, False, True]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"members": 1}, "lab_members=1 is out of range"),
        ({"members": 8}, "lab_members=8 is out of range"),
        ({"members": 4}, "lab_members=4 is even"),
        ({"members": 6}, "-e lab_allow_even_size=true"),
        ({"subnet": "198.18.213.5/24"}, "is not a valid IPv4 network"),
        ({"subnet": "fd00::/64"}, "must be an IPv4 network"),
        ({"subnet": "198.18.213.0/29"}, "is too small: use a /28 or larger"),
        ({"name": "Bad-Name"}, "lab_name='Bad-Name' must be 1 to 6"),
        ({"name": "toolongname"}, "must be 1 to 6"),
        ({"isolated": ["etcd-7"]}, "names unknown members ['etcd-7']"),
        ({"isolated": ["etcd-1", "etcd-2"]}, "is not a minority of 3"),
        ({"forced": "etcd-0"}, "lab_forced_member='etcd-0' must be one of the isolated members"),
        ({"platform": "nomad"}, "lab_platform=nomad is unknown: use local or kind"),
    ],
)
def test_bad_settings_name_what_is_wrong(override, message):
    with pytest.raises(PlanError) as err:
        build_plan(**{**BASE, **override})
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_even_size_with_explicit_override():
    plan = build_plan(**{**BASE, "members": 4, "allow_even": True})
    assert len(plan["members"]) == 4 and plan["isolated"] == ["etcd-3"]


def test_a_smaller_subnet_still_fits_seven_members():
    plan = build_plan(**{**BASE, "members": 7, "subnet": "198.18.213.0/27"})
    assert plan["members"][-1]["ip"] == "198.18.213.17"


@pytest.mark.parametrize(
    ("existing", "clash"),
    [
        ([("eth0", "192.0.2.2/24")], False),
        ([("eth0", "198.18.213.7/24")], True),
        ([("eth1", "198.18.0.1/16")], True),
        ([("sblab0", "198.18.213.1/24")], False),  # the lab's own bridge
        ([("lo", "127.0.0.1/8")], False),
    ],
)
def test_subnet_clash_detection(existing, clash):
    networks = [(name, ipaddress.IPv4Interface(addr)) for name, addr in existing]
    net = ipaddress.ip_network("198.18.213.0/24")
    if clash:
        with pytest.raises(PlanError, match="clashes with"):
            check_clash(net, "sblab0", networks)
    else:
        check_clash(net, "sblab0", networks)


def test_the_hosts_addresses_and_routes_are_read_from_ip_json(monkeypatch):
    printed = {
        "addr": [
            {"ifname": "lo", "addr_info": [{"family": "inet", "local": "127.0.0.1", "prefixlen": 8}]},
            {"ifname": "eth0", "addr_info": [{"family": "inet6", "local": "fe80::1", "prefixlen": 64}]},
        ],
        "route": [
            {"dst": "default", "dev": "eth0"},
            {"dst": "10.1.0.0/16", "dev": "eth1"},
            {"dst": "10.2.0.9"},
        ],
    }
    calls = []

    def ip(argv, **kwargs):
        calls.append(argv)
        return subprocess.CompletedProcess(argv, 0, json.dumps(printed[argv[3]]), "")

    monkeypatch.setattr(lab_plan.subprocess, "run", ip)
    assert lab_plan.host_networks() == [("lo", ipaddress.IPv4Interface("127.0.0.1/8"))]
    assert lab_plan.host_routes() == [
        ("eth1", ipaddress.IPv4Network("10.1.0.0/16")),
        ("?", ipaddress.IPv4Network("10.2.0.9/32")),
    ]
    assert calls == [["ip", "-j", "-4", "addr", "show"], ["ip", "-j", "-4", "route", "show"]]


def test_kind_members_are_reached_through_the_host_mapped_ports():
    plan = build_plan(**{**BASE, "platform": "kind", "members": 5})
    assert [m["client_url"] for m in plan["members"]] == [f"http://127.0.0.1:{32379 + i}" for i in range(5)]
    assert plan["members"][2]["peer_url"] == "http://etcd-2.etcd-peer.kube-system.svc.cluster.local:2380"
    assert (
        plan["initial_cluster"].split(",")[0]
        == "etcd-0=http://etcd-0.etcd-peer.kube-system.svc.cluster.local:2380"
    )
    assert (
        plan["platform"] == "kind" and plan["isolated"] == ["etcd-3", "etcd-4"] and plan["forced"] == "etcd-4"
    )


def test_kind_urls_follow_the_given_ports_and_domain():
    kind = {"client_port_base": 31000, "listen_address": "127.0.0.2", "peer_domain": "p.ns.svc"}
    plan = build_plan(**{**BASE, "platform": "kind", "kind": kind})
    assert plan["members"][1]["client_url"] == "http://127.0.0.2:31001"
    assert plan["members"][1]["peer_url"] == "http://etcd-1.p.ns.svc:2380"


def test_kind_settings_leave_the_local_layout_alone():
    kind = {"client_port_base": 31000}
    assert build_plan(**{**BASE, "kind": kind}) == build_plan(**BASE)


def test_kind_url_defaults_match_the_kind_cluster_role():
    from pathlib import Path

    import yaml
    from lab_plan import KIND_DEFAULTS

    role = Path(__file__).resolve().parents[2] / "roles" / "kind_cluster"
    defaults = yaml.safe_load((role / "defaults" / "main.yml").read_text())
    role_vars = yaml.safe_load((role / "vars" / "main.yml").read_text())
    assert KIND_DEFAULTS["client_port_base"] == defaults["kind_cluster_client_node_port_base"]
    assert KIND_DEFAULTS["listen_address"] == defaults["kind_cluster_listen_address"]
    kind_vars = yaml.safe_load((role.parents[1] / "inventory/local/group_vars/all/kind.yml").read_text())
    assert KIND_DEFAULTS["peer_domain"] == "{}.{}.svc.cluster.local".format(
        role_vars["kind_cluster_peer_service"], kind_vars["lab_kind_namespace"]
    )
    plan_task = (role.parents[1] / "roles/lab_inventory/tasks/plan.yml").read_text()
    service = role_vars["kind_cluster_peer_service"]
    assert f'kind_peer_domain: "{service}.{{{{ lab_kind_namespace }}}}.svc.cluster.local"' in plan_task


@pytest.mark.parametrize(
    ("subnet", "message"),
    [
        ("127.0.0.0/24", "lab_subnet=127.0.0.0/24 holds loopback addresses"),
        ("8.8.8.0/24", "lab_subnet=8.8.8.0/24 holds public addresses"),
        ("169.254.10.0/24", "holds link-local addresses"),
        ("224.0.1.0/24", "holds multicast addresses"),
        ("192.0.2.0/24", "holds a documentation range (RFC 5737)"),
        ("203.0.113.0/24", "holds a documentation range (RFC 5737)"),
        ("100.64.0.0/24", "holds a reserved range"),
        ("0.0.0.0/24", "holds a reserved range"),
        ("198.16.0.0/14", "holds"),  # reaches outside 198.18.0.0/15
        ("10.300.0.0/24", "is not a valid IPv4 network"),
        ("banana", "is not a valid IPv4 network"),
    ],
)
def test_subnets_outside_the_private_and_test_ranges_are_refused(subnet, message):
    with pytest.raises(PlanError) as err:
        build_plan(**{**BASE, "subnet": subnet})
    assert message in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("subnet", ["10.20.30.0/24", "172.31.0.0/16", "192.168.7.0/28", "198.19.255.0/24"])
def test_private_and_test_subnets_are_accepted(subnet):
    assert build_plan(**{**BASE, "subnet": subnet})["subnet"] == subnet


def test_a_subnet_too_small_for_the_members():
    with pytest.raises(PlanError, match=r"lab_subnet=198.18.213.0/28 is too small for 5 members"):
        build_plan(**{**BASE, "members": 5, "subnet": "198.18.213.0/28"})


@pytest.mark.parametrize(
    ("routes", "message"),
    [
        ([("eth0", "198.18.213.128/25")], "overlaps the host's route to 198.18.213.128/25 via eth0"),
        ([("tun0", "198.18.0.0/15")], "overlaps the host's route to 198.18.0.0/15 via tun0"),
        ([("sblab0", "198.18.213.0/24")], None),  # the lab's own route: a rebuild over a running lab
        ([("eth0", "192.0.2.0/24")], None),
        ([("sbgrd0", "198.18.213.0/24")], "via sbgrd0"),  # another lab's bridge is somebody else's
    ],
)
def test_subnet_overlapping_a_host_route(routes, message):
    net = ipaddress.ip_network("198.18.213.0/24")
    parsed = [(dev, ipaddress.IPv4Network(dst)) for dev, dst in routes]
    if message is None:
        check_clash(net, "sblab0", [], parsed)
    else:
        with pytest.raises(PlanError) as err:
            check_clash(net, "sblab0", [], parsed)
        assert message in str(err.value)


@pytest.mark.parametrize(
    ("value", "seconds", "message"),
    [
        (90, 90.0, None),
        ("-30", -30.0, None),
        ("0", 0.0, None),
        ("2.5", 2.5, None),
        (86400, 86400.0, None),
        ("abc", None, "lab_clock_skew_offset='abc' is not a number of seconds"),
        ("", None, "is not a number of seconds"),
        ("nan", None, "is not a number of seconds"),
        ("inf", None, "is not a number of seconds"),
        (True, None, "is not a number of seconds"),
        ("86401", None, "lab_clock_skew_offset=86401 is more than a day"),
        (-100000, None, "is more than a day"),
    ],
)
def test_clock_offset(value, seconds, message):
    if message is None:
        assert check_clock_offset(value) == seconds
    else:
        with pytest.raises(PlanError) as err:
            check_clock_offset(value)
        assert message in str(err.value)


@pytest.mark.parametrize(
    ("member", "message"),
    [
        ("", None),
        ("etcd-1", None),
        ("nosuch", "lab_skewed_member=nosuch is not a member"),
        ("etcd-3", "etcd-3"),
    ],
)
def test_skewed_member(member, message):
    names = ["etcd-0", "etcd-1", "etcd-2"]
    if message is None:
        check_skewed_member(member, names)
    else:
        with pytest.raises(PlanError, match=message):
            check_skewed_member(member, names)


def test_state_dir_that_can_be_created_or_written(tmp_path):
    check_state_dir(str(tmp_path))
    check_state_dir(str(tmp_path / "not" / "yet"))
    assert list(tmp_path.iterdir()) == []  # the probe leaves nothing, and creates nothing


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: (p / "file").write_text("x") and str(p / "file" / "lab"), "is not a directory"),
        (lambda p: "", "lab_state_dir is empty"),
        (lambda p: "/proc/sbbad-lab", "is not writable"),
        (lambda p: "/", "is a top-level directory, which ./teardown.sh would remove whole"),
        (lambda p: "/work", "is a top-level directory"),
    ],
)
def test_state_dir_that_cannot_be_used(tmp_path, make, message):
    with pytest.raises(PlanError) as err:
        check_state_dir(make(tmp_path))
    assert message in str(err.value)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{", "is not valid JSON"),
        ("\x00\xff garbage", "is not valid JSON"),
        ("{}", "is not a lab layout (no name, platform, bridge, members)"),
        ("[]", "is not a lab layout (a JSON list, not an object)"),
        ('"text"', "a JSON str"),
        ('{"name": "x", "platform": "local", "bridge": "x0", "members": 3}', "members is not a list"),
        (
            '{"name": "x", "platform": "local", "bridge": "x0", "members": [{"name": "etcd-0"}]}',
            "no ip, netns",
        ),
    ],
)
def test_a_broken_lab_json_is_one_line_naming_it(tmp_path, content, message):
    path = tmp_path / "lab.json"
    path.write_text(content)
    with pytest.raises(PlanError) as err:
        load_plan(str(path))
    assert message in str(err.value) and "./teardown.sh" in str(err.value)
    assert "\n" not in str(err.value)


def test_a_saved_layout_loads_back(tmp_path):
    path = tmp_path / "lab.json"
    plan = build_plan(**BASE)
    path.write_text(json.dumps(plan))
    assert load_plan(str(path)) == plan
    assert load_plan(str(tmp_path / "missing.json")) is None


def test_tls_gives_https_urls_and_the_pki_paths():
    plan = build_plan(**BASE, tls_dir="/s/.lab/pki")
    assert plan["members"][0]["client_url"] == "https://198.18.213.11:2379"
    assert all(m["peer_url"].startswith("https://") for m in plan["members"])
    assert plan["initial_cluster"].startswith("etcd-0=https://198.18.213.11:2380,")
    assert plan["tls"] == {
        "enabled": True,
        "dir": "/s/.lab/pki",
        "ca_file": "/s/.lab/pki/ca.crt",
        "cert_file": "/s/.lab/pki/clients/lab-client.crt",
        "key_file": "/s/.lab/pki/clients/lab-client.key",
        "members": {
            f"etcd-{i}": {
                "server_cert": f"/s/.lab/pki/etcd-{i}/server.crt",
                "server_key": f"/s/.lab/pki/etcd-{i}/server.key",
                "peer_cert": f"/s/.lab/pki/etcd-{i}/peer.crt",
                "peer_key": f"/s/.lab/pki/etcd-{i}/peer.key",
            }
            for i in range(3)
        },
    }
    assert "tls" not in build_plan(**BASE)


def test_a_layout_saved_before_it_named_the_members_files_gets_them_on_load(tmp_path):
    plan = build_plan(**BASE, tls_dir="/s/.lab/pki")
    old = {**plan, "tls": {k: v for k, v in plan["tls"].items() if k != "members"}}
    path = tmp_path / "lab.json"
    path.write_text(json.dumps(old))
    assert load_plan(str(path))["tls"] == plan["tls"]


def test_tls_on_kind_gives_https_on_the_mapped_ports_and_the_pod_names():
    plan = build_plan(**{**BASE, "platform": "kind"}, tls_dir="/s/pki")
    assert [m["client_url"] for m in plan["members"]] == [f"https://127.0.0.1:{32379 + i}" for i in range(3)]
    assert plan["members"][2]["peer_url"] == "https://etcd-2.etcd-peer.kube-system.svc.cluster.local:2380"
    assert plan["initial_cluster"].startswith(
        "etcd-0=https://etcd-0.etcd-peer.kube-system.svc.cluster.local:2380,"
    )
    assert plan["tls"]["ca_file"] == "/s/pki/ca.crt"
    assert plan["tls"]["cert_file"] == "/s/pki/clients/lab-client.crt"
    assert build_plan(**{**BASE, "platform": "kind"})["members"][0]["client_url"] == "http://127.0.0.1:32379"


def test_the_saved_layout_is_loaded_back_and_saved_only_when_it_changes(tmp_path):
    from lab_plan import save_plan

    state = tmp_path / "lab"  # not there yet: the save makes it
    plan = build_plan(**{**BASE, "name": "sbsave"})
    saved = {**plan, "etcd_version": "3.4.23", "state_dir": str(state)}
    assert save_plan(saved, check_mode=True) is True and not state.exists()
    assert save_plan(saved) is True
    assert load_plan(str(state / "lab.json")) == saved
    assert (state / "lab.json").stat().st_mode & 0o777 == 0o644
    assert save_plan(saved) is False
    assert save_plan({**saved, "etcd_version": "3.5.1"}) is True
