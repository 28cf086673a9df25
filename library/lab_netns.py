#!/usr/bin/python
"""Ansible module lab_netns: a lab node as a network namespace wired to a bridge on this host."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: lab_netns
short_description: Create or remove a lab bridge, or a lab node (network namespace + veth) on it
description:
  - With O(kind=bridge), makes sure a Linux bridge exists, holds O(address) and is up.
  - With O(kind=node), makes sure a network namespace exists with its loopback up, and a veth pair joins it
    to the bridge, the node end inside the namespace holding O(address). The node gets no default route,
    so it reaches the lab subnet and nothing else.
  - O(state=absent) removes the bridge or the node. Removing a node first kills every process still inside
    its namespace (SIGTERM, then SIGKILL after O(kill_timeout) seconds), so that the namespace really goes.
  - Idempotent; reports a change only when something was created, fixed or removed. Runs C(ip) with argument
    lists, never a shell.
version_added: "1.0.0"
options:
  kind:
    description: What to manage.
    type: str
    choices: [bridge, node]
    required: true
  name:
    description: Bridge name (kind=bridge) or network namespace name (kind=node).
    type: str
    required: true
  bridge:
    description: Bridge the node's veth pair attaches to. Required for kind=node with state=present.
    type: str
  address:
    description: IPv4 address with prefix length, for example C(198.18.213.11/24).
    type: str
  veth_host:
    description: Name of the veth end on the host side (at most 15 characters). Required for kind=node.
    type: str
  veth_node:
    description: Name of the veth end inside the namespace. Required for kind=node with state=present.
    type: str
  state:
    description: Whether the bridge or node should exist.
    type: str
    choices: [present, absent]
    default: present
  kill_timeout:
    description: Seconds to wait after SIGTERM before killing the processes left in a namespace being removed.
    type: float
    default: 15
extends_documentation_fragment:
  - lab_module
"""

EXAMPLES = r"""
- name: Platform | Create the lab bridge
  lab_netns:
    kind: bridge
    name: sblab0
    address: 198.18.213.1/24

- name: Platform | Create node etcd-0
  lab_netns:
    kind: node
    name: sblab-etcd-0
    bridge: sblab0
    address: 198.18.213.11/24
    veth_host: sblab-h0
    veth_node: sblab-n0

- name: Teardown | Remove node etcd-0 and every process in it
  lab_netns:
    kind: node
    name: sblab-etcd-0
    veth_host: sblab-h0
    state: absent
"""

RETURN = r"""
actions:
  description: What was done (or would be done in check mode), in order.
  returned: always
  type: list
  elements: str
  sample: ["add netns sblab-etcd-0", "add veth sblab-h0/sblab-n0"]
killed_pids:
  description: Pids of processes that were still running in a namespace being removed.
  returned: when kind=node and state=absent
  type: list
  elements: int
"""

import contextlib
import json
import os
import signal
import subprocess
import time

from ansible.module_utils.basic import AnsibleModule


class NetnsError(RuntimeError):
    pass


def ip(*args: str, netns: str | None = None, check: bool = True) -> str:
    argv = ["ip"] + (["-n", netns] if netns else []) + list(args)
    proc = subprocess.run(argv, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise NetnsError(f"`{' '.join(argv)}` failed: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout


def link(name: str, netns: str | None = None) -> dict | None:
    out = ip("-d", "-j", "addr", "show", "dev", name, netns=netns, check=False)
    try:
        data = json.loads(out) if out.strip() else []
    except ValueError:
        return None
    return data[0] if data else None


def addresses(info: dict) -> set[str]:
    return {f"{a['local']}/{a['prefixlen']}" for a in info.get("addr_info", []) if a.get("family") == "inet"}


def is_up(info: dict) -> bool:
    return "UP" in info.get("flags", [])


def netns_exists(name: str) -> bool:
    return os.path.exists(f"/run/netns/{name}")


class Planner:
    """Collects actions; runs them unless in check mode."""

    def __init__(self, check_mode: bool):
        self.check_mode = check_mode
        self.actions: list[str] = []

    def do(self, label: str, *args: str, netns: str | None = None) -> None:
        self.actions.append(label)
        if not self.check_mode:
            ip(*args, netns=netns)


def ensure_address(run: Planner, dev: str, info: dict | None, address: str | None, netns: str | None) -> None:
    if address and (info is None or address not in addresses(info)):
        run.do(f"add address {address} to {dev}", "addr", "replace", address, "dev", dev, netns=netns)


def ensure_up(run: Planner, dev: str, info: dict | None, netns: str | None) -> None:
    if info is None or not is_up(info):
        run.do(f"set {dev} up", "link", "set", dev, "up", netns=netns)


def bridge_present(run: Planner, name: str, address: str | None) -> None:
    info = link(name)
    if info is None:
        run.do(f"add bridge {name}", "link", "add", name, "type", "bridge")
    elif info.get("linkinfo", {}).get("info_kind") != "bridge":
        raise NetnsError(f"{name} exists and is not a bridge: choose another lab_name")
    ensure_address(run, name, info, address, None)
    ensure_up(run, name, info, None)


def bridge_absent(run: Planner, name: str) -> None:
    if link(name) is not None:
        run.do(f"delete bridge {name}", "link", "del", name)


def node_present(run: Planner, p: dict) -> None:
    ns, host, node, bridge = p["name"], p["veth_host"], p["veth_node"], p["bridge"]
    if link(bridge) is None and not run.check_mode:
        raise NetnsError(f"bridge {bridge} does not exist: create it first")
    if not netns_exists(ns):
        run.do(f"add netns {ns}", "netns", "add", ns)
    exists = netns_exists(ns)
    lo = link("lo", ns) if exists else None
    ensure_up(run, "lo", lo, ns)
    host_info = link(host)
    node_info = link(node, ns) if exists else None
    if host_info is None or node_info is None:
        if host_info is not None:
            run.do(f"delete stale veth {host}", "link", "del", host)
        run.do(
            f"add veth {host}/{node}", "link", "add", host, "type", "veth", "peer", "name", node, "netns", ns
        )
        host_info = node_info = None
    if host_info is None or host_info.get("master") != bridge:
        run.do(f"attach {host} to {bridge}", "link", "set", host, "master", bridge)
    ensure_up(run, host, host_info, None)
    ensure_address(run, node, node_info, p["address"], ns)
    ensure_up(run, node, node_info, ns)


def netns_pids(ns: str) -> list[int]:
    out = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout
    return [int(x) for x in out.split()]


def kill_all(ns: str, timeout: float) -> list[int]:
    pids = netns_pids(ns)
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10.0)):
        for pid in netns_pids(ns):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while netns_pids(ns) and time.monotonic() < deadline:
            time.sleep(0.05)
        if not netns_pids(ns):
            return pids
    raise NetnsError(f"processes {netns_pids(ns)} in {ns} survived SIGKILL")


def node_absent(run: Planner, p: dict, result: dict) -> None:
    ns = p["name"]
    if netns_exists(ns):
        pids = netns_pids(ns)
        if pids:
            run.actions.append(f"kill {len(pids)} processes in {ns}")
            result["killed_pids"] = pids if run.check_mode else kill_all(ns, p["kill_timeout"])
        run.do(f"delete netns {ns}", "netns", "del", ns)
    if p["veth_host"] and link(p["veth_host"]) is not None:
        # Deleting the namespace destroys the node end, and the kernel removes the host end a moment
        # later: the link can vanish between the check and the delete.
        run.actions.append(f"delete veth {p['veth_host']}")
        if not run.check_mode:
            proc = subprocess.run(["ip", "link", "del", p["veth_host"]], capture_output=True, text=True)
            if proc.returncode != 0 and link(p["veth_host"]) is not None:
                raise NetnsError(f"`ip link del {p['veth_host']}` failed: {proc.stderr.strip()}")


def run_module() -> None:
    module = AnsibleModule(
        argument_spec={
            "kind": {"type": "str", "required": True, "choices": ["bridge", "node"]},
            "name": {"type": "str", "required": True},
            "bridge": {"type": "str"},
            "address": {"type": "str"},
            "veth_host": {"type": "str"},
            "veth_node": {"type": "str"},
            "state": {"type": "str", "default": "present", "choices": ["present", "absent"]},
            "kill_timeout": {"type": "float", "default": 15},
        },
        supports_check_mode=True,
    )
    p = module.params
    if p["kind"] == "node" and p["state"] == "present":
        missing = [k for k in ("bridge", "veth_host", "veth_node", "address") if not p[k]]
        if missing:
            module.fail_json(msg=f"kind=node with state=present needs {', '.join(missing)}")
    for dev in (p["name"] if p["kind"] == "bridge" else None, p["veth_host"], p["veth_node"]):
        if dev and len(dev) > 15:
            module.fail_json(msg=f"interface name {dev!r} is longer than Linux's 15 characters")
    run = Planner(module.check_mode)
    result: dict = {}
    try:
        if p["kind"] == "bridge":
            if p["state"] == "present":
                bridge_present(run, p["name"], p["address"])
            else:
                bridge_absent(run, p["name"])
        elif p["state"] == "present":
            node_present(run, p)
        else:
            node_absent(run, p, result)
    except NetnsError as exc:
        module.fail_json(msg=str(exc), actions=run.actions)
    module.exit_json(changed=bool(run.actions), actions=run.actions, **result)


def main() -> None:
    run_module()


if __name__ == "__main__":
    main()
