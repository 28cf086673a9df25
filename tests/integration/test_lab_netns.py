"""lab_netns against the real kernel: bridge and node creation, idempotence, check mode, removal that kills
what runs inside. Uses names of its own (sbtnx*) and an address range no lab uses."""

from __future__ import annotations

import subprocess
import time

import pytest
from lab_netns import (
    NetnsError,
    Planner,
    bridge_absent,
    bridge_present,
    netns_exists,
    node_absent,
    node_present,
)

BRIDGE = "sbtnx0"
NODE = {
    "name": "sbtnx-etcd-0",
    "bridge": BRIDGE,
    "address": "198.18.252.11/24",
    "veth_host": "sbtnx-h0",
    "veth_node": "sbtnx-n0",
    "kill_timeout": 2.0,
}


def ip_ok(*args: str) -> bool:
    return subprocess.run(["ip", *args], capture_output=True).returncode == 0


@pytest.fixture
def clean():
    yield
    subprocess.run(["ip", "netns", "del", NODE["name"]], capture_output=True)
    for dev in (NODE["veth_host"], BRIDGE, "sbtnxv0"):
        subprocess.run(["ip", "link", "del", dev], capture_output=True)


def test_bridge_and_node_are_built_once_then_left_alone(clean):
    run = Planner(check_mode=False)
    bridge_present(run, BRIDGE, "198.18.252.1/24")
    node_present(run, NODE)
    assert "add netns sbtnx-etcd-0" in run.actions and f"attach sbtnx-h0 to {BRIDGE}" in run.actions
    assert netns_exists(NODE["name"])
    addr = subprocess.run(["ip", "-n", NODE["name"], "-br", "addr"], capture_output=True, text=True).stdout
    assert "198.18.252.11/24" in addr

    again = Planner(check_mode=False)
    bridge_present(again, BRIDGE, "198.18.252.1/24")
    node_present(again, NODE)
    assert again.actions == []


def test_check_mode_plans_without_changing(clean):
    run = Planner(check_mode=True)
    bridge_present(run, BRIDGE, "198.18.252.1/24")
    node_present(run, NODE)
    assert run.actions[0] == f"add bridge {BRIDGE}"
    assert not ip_ok("link", "show", BRIDGE)
    assert not netns_exists(NODE["name"])


def test_removal_kills_processes_left_in_the_namespace(clean):
    run = Planner(check_mode=False)
    bridge_present(run, BRIDGE, "198.18.252.1/24")
    node_present(run, NODE)
    stubborn = "import signal,time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(120)"
    proc = subprocess.Popen(["ip", "netns", "exec", NODE["name"], "python3", "-c", stubborn])
    time.sleep(0.5)
    result: dict = {}
    gone = Planner(check_mode=False)
    node_absent(gone, NODE, result)
    bridge_absent(gone, BRIDGE)
    assert result["killed_pids"] == [proc.pid]
    assert proc.wait(timeout=5) != 0
    assert not netns_exists(NODE["name"])
    assert not ip_ok("link", "show", NODE["veth_host"]) and not ip_ok("link", "show", BRIDGE)
    nothing = Planner(check_mode=False)
    node_absent(nothing, NODE, {})
    bridge_absent(nothing, BRIDGE)
    assert nothing.actions == []


def test_an_existing_interface_that_is_not_a_bridge_is_refused(clean):
    subprocess.run(["ip", "link", "add", BRIDGE, "type", "veth", "peer", "name", "sbtnxv0"], check=True)
    with pytest.raises(NetnsError, match="is not a bridge"):
        bridge_present(Planner(check_mode=False), BRIDGE, "198.18.252.1/24")
