#!/usr/bin/python
"""Ansible module lab_node_traces: the faults' traces on the lab's nodes, read in one call."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: lab_node_traces
short_description: Look for the faults' traces on the lab's nodes (local platform) in one call
description:
  - Answers, for every node at once, the questions that recover.yml and verify.yml ask before they decide
    anything, so that each costs one module start instead of one per member.
  - Which nodes' network namespaces hold the nftables table O(nft_table) (the partition's table), the same
    question as C(ip netns exec NODE nft list table inet TABLE), asked of each node's namespace.
  - With O(nodes_dir), which members have a C(clock_offset) file (the clock-skew fault's record), and the
    data dirs under the nodes' directories (C(data) and anything named C(data*) beside it, such as a data dir
    moved aside by hand; the role's own C(data.moved-*) and C(*.restoring-*) dirs are left out).
  - Read-only (never a change), unless O(remove_nft_table=true), which deletes the table from every
    namespace that holds it (C(nft delete table)), which heals the partition in one call.
version_added: "1.0.0"
options:
  nodes:
    description: The lab's nodes, each with its C(name) and its network namespace C(netns).
    type: list
    elements: dict
    required: true
  nft_table:
    description: Name of the nftables table to look for in each node's namespace.
    type: str
    required: true
  nft_family:
    description: Family of that table.
    type: str
    default: inet
  nodes_dir:
    description: The lab's C(nodes/) directory, one directory per member. Without it only the table is
      looked for.
    type: path
  remove_nft_table:
    description: Delete O(nft_table) from each namespace that holds it; C(nft_table_in) still names them.
    type: bool
    default: false
extends_documentation_fragment:
  - lab_module
"""

EXAMPLES = r"""
- name: Detect | Look for the partition's table, the clock offsets and the data dirs
  lab_node_traces:
    nodes: "{{ lab_plan.members }}"
    nft_table: lab_partition
    nodes_dir: "{{ lab_state_dir }}/nodes"
  register: recover_traces
"""

RETURN = r"""
nft_table_in:
  description: Names of the nodes whose namespace holds the table, in the order of O(nodes).
  returned: always
  type: list
  elements: str
  sample: [etcd-2]
clock_offsets:
  description: Names of the nodes with a C(clock_offset) file, sorted (empty without O(nodes_dir)).
  returned: always
  type: list
  elements: str
  sample: [etcd-0]
data_dirs:
  description: Paths of the data dirs under O(nodes_dir), sorted (empty without O(nodes_dir)).
  returned: always
  type: list
  elements: str
  sample: [/root/lab/.lab/nodes/etcd-0/data, /root/lab/.lab/nodes/etcd-2/data.old]
"""

import fnmatch
import os
import subprocess

from ansible.module_utils.basic import AnsibleModule

DATA_PATTERN = "data*"
DATA_EXCLUDES = ("data.moved-*", "*.restoring-*")


def argument_spec() -> dict:
    return {
        "nodes": {"type": "list", "elements": "dict", "required": True},
        "nft_table": {"type": "str", "required": True},
        "nft_family": {"type": "str", "default": "inet"},
        "nodes_dir": {"type": "path"},
        "remove_nft_table": {"type": "bool", "default": False},
    }


def nft_table(netns: str, verb: str, family: str, table: str) -> subprocess.CompletedProcess:
    """`nft <verb> table <family> <table>` inside the namespace (list or delete)."""
    argv = ["ip", "netns", "exec", netns, "nft", verb, "table", family, table]
    return subprocess.run(argv, capture_output=True, text=True, check=False)


def has_table(netns: str, family: str, table: str) -> bool:
    """Whether the namespace holds the table; a namespace that is gone holds none."""
    return nft_table(netns, "list", family, table).returncode == 0


def delete_table(netns: str, family: str, table: str) -> str | None:
    """Delete the table from the namespace; the error (one line) when nft refuses."""
    proc = nft_table(netns, "delete", family, table)
    return None if proc.returncode == 0 else (proc.stderr.strip().splitlines() or ["nft failed"])[-1]


def is_data_dir(name: str) -> bool:
    return fnmatch.fnmatch(name, DATA_PATTERN) and not any(fnmatch.fnmatch(name, x) for x in DATA_EXCLUDES)


def entries(path: str) -> list[os.DirEntry]:
    try:
        with os.scandir(path) as it:
            return sorted(it, key=lambda e: e.name)
    except OSError:
        return []


def scan_nodes_dir(nodes_dir: str) -> tuple[list[str], list[str]]:
    """(members with a clock_offset file, data dirs), at most two levels below nodes_dir; no link followed."""
    offsets: list[str] = []
    data_dirs: list[str] = []
    for top in entries(nodes_dir):
        if top.is_dir(follow_symlinks=False):
            if is_data_dir(top.name):
                data_dirs.append(top.path)
            for entry in entries(top.path):
                if entry.name == "clock_offset" and not entry.is_dir(follow_symlinks=False):
                    offsets.append(top.name)
                elif entry.is_dir(follow_symlinks=False) and is_data_dir(entry.name):
                    data_dirs.append(entry.path)
    return sorted(offsets), sorted(data_dirs)


def run_module() -> None:
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    p = module.params
    missing = [i for i, node in enumerate(p["nodes"]) if not node.get("name") or not node.get("netns")]
    if missing:
        module.fail_json(msg=f"nodes[{missing[0]}] needs a name and a netns: {p['nodes'][missing[0]]!r}")
    holding = [n for n in p["nodes"] if has_table(n["netns"], p["nft_family"], p["nft_table"])]
    nft_table_in = [n["name"] for n in holding]
    if p["remove_nft_table"] and not module.check_mode:
        for node in holding:
            error = delete_table(node["netns"], p["nft_family"], p["nft_table"])
            if error:
                module.fail_json(msg=f"cannot delete the table {p['nft_table']} in {node['netns']}: {error}")
    offsets, data_dirs = scan_nodes_dir(p["nodes_dir"]) if p["nodes_dir"] else ([], [])
    module.exit_json(
        changed=bool(p["remove_nft_table"] and holding),
        nft_table_in=nft_table_in,
        clock_offsets=offsets,
        data_dirs=data_dirs,
    )


def main() -> None:
    run_module()


if __name__ == "__main__":
    main()
