#!/usr/bin/python
"""Ansible module lab_plan: check the lab's settings and compute its layout (names, addresses, URLs)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: lab_plan
short_description: Check the split-brain lab's settings and compute its layout
description:
  - Validates the lab-wide settings (member count, platform, subnet, which members are cut off and which
    one is forced into a cluster of its own) and computes every name, address and URL the lab uses.
  - With O(state_file) and O(load=true), reads the layout that setup saved, so that later playbooks
    (status, recover, teardown) act on the lab that exists rather than on the current defaults.
  - Never changes anything on the host; it only reads the network interfaces to check the subnet.
version_added: "1.0.0"
options:
  platform:
    description:
      - Platform the lab runs on, C(local) or C(kind). Checked by the module itself, so that an unknown
        value gets an error that names the lab setting (C(lab_platform)).
    type: str
    default: local
  members:
    description: Number of etcd members.
    type: int
    default: 3
  allow_even_size:
    description: Accept an even member count (odd sizes are one of the lab's lessons).
    type: bool
    default: false
  name:
    description: Short name that prefixes the lab's namespaces, bridge and veth interfaces.
    type: str
    default: sblab
  subnet:
    description:
      - IPv4 subnet of the lab bridge, at least a /28. The host side of the bridge takes the first address,
        members take the 11th, 12th, ...
    type: str
    default: 198.18.213.0/24
  isolated_members:
    description:
      - Members cut off from the others on the peer port. Empty means the default minority, the last
        floor((N-1)/2) members (the last one of three, the last two of five).
    type: list
    elements: str
    default: []
  forced_member:
    description: The isolated member restarted with --force-new-cluster. Empty means the last isolated member.
    type: str
    default: ""
  check_subnet:
    description:
      - Fail when the subnet overlaps an address or a route already on this host, except the lab's own
        bridge and its route (a rebuild over a running lab with the same subnet is fine).
    type: bool
    default: true
  clock_skew_offset:
    description:
      - Seconds added to the skewed member's wall clock (C(lab_clock_skew_offset)), checked only when given.
        It must be a number, at most one day (86400) either way; C(0) turns the skew off.
    type: raw
  skewed_member:
    description: The member whose clock is skewed (C(lab_skewed_member)); empty means the first majority one.
    type: str
    default: ""
  tls:
    description:
      - Mutual TLS on the client and peer ports (C(lab_tls)), on both platforms. The URLs become
        C(https://), and the layout gets C(tls) with the lab's PKI directory (C(<state_dir>/pki), made by the
        C(lab_pki) module) and the CA and client certificate every client uses. On kind the same PKI goes
        into Secrets (the kind_cluster role); the controller keeps using the files under C(<state_dir>/pki).
      - Needs O(state_dir).
    type: bool
    default: false
  state_dir:
    description:
      - The lab's state directory (C(lab_state_dir)), checked only when given. It, or the nearest directory
        above it that exists, must be a directory this user can write to.
    type: path
  save:
    description:
      - Write the layout, with O(extra) and C(state_dir) added, to C(<state_dir>/lab.json) (the directory
        made when missing), as later playbooks load it. A change only when the file's content changes.
    type: bool
    default: false
  extra:
    description: With O(save), more settings saved beside the layout (the etcd binaries setup chose).
    type: dict
    default: {}
  broken_ok:
    description:
      - With O(load=true), return C(exists=false) and C(broken) instead of failing when the saved layout is
        not valid JSON or not a lab layout (teardown then sweeps up by the lab's name).
    type: bool
    default: false
  state_file:
    description: Path of the lab's saved layout (lab.json).
    type: path
  load:
    description:
      - Read the layout from O(state_file) instead of computing it. Fails when the file does not exist,
        unless O(missing_ok=true).
    type: bool
    default: false
  missing_ok:
    description: With O(load=true), return C(exists=false) instead of failing when there is no saved layout.
    type: bool
    default: false
  kind_client_port_base:
    description:
      - With O(platform=kind), member N's client URL is C(http://<kind_listen_address>:<this + N>), the host
        port that the kind cluster maps to member N's client NodePort, so that every module reaches every
        member from the controller unchanged. Must match the kind_cluster role's
        C(kind_cluster_client_node_port_base).
    type: int
    default: 32379
  kind_listen_address:
    description: With O(platform=kind), the host address of those port mappings.
    type: str
    default: 127.0.0.1
  kind_peer_domain:
    description:
      - With O(platform=kind), the DNS domain of the members' peer URLs
        (C(http://etcd-N.<this>:2380), the StatefulSet's headless Service), as etcd advertises them.
    type: str
    default: etcd-peer.kube-system.svc.cluster.local
extends_documentation_fragment:
  - lab_module
"""

EXAMPLES = r"""
- name: Plan | Check the settings and compute the layout
  lab_plan:
    members: 5
    subnet: 198.18.213.0/24
  register: lab_plan_result

- name: Plan | Read the layout of the lab that setup built
  lab_plan:
    state_file: "{{ lab_state_dir }}/lab.json"
    load: true
    missing_ok: true
  register: lab_plan_result
"""

RETURN = r"""
exists:
  description:
    - Whether a layout is returned (false only with O(load) and O(missing_ok) and no saved layout, or
      O(broken_ok) and a broken one).
  returned: always
  type: bool
broken:
  description: With O(load) and O(broken_ok), why the saved layout cannot be used.
  returned: when the saved layout is broken
  type: str
plan:
  description: The lab's layout.
  returned: when exists
  type: dict
  contains:
    name: {description: The lab's name prefix., type: str, sample: sblab}
    platform: {description: The platform., type: str, sample: local}
    subnet: {description: The bridge subnet., type: str, sample: 198.18.213.0/24}
    prefixlen: {description: Prefix length of the subnet., type: int, sample: 24}
    bridge: {description: Name of the bridge on the host., type: str, sample: sblab0}
    bridge_ip: {description: Host-side address on the bridge., type: str, sample: 198.18.213.1}
    initial_cluster: {description: The --initial-cluster value., type: str}
    isolated: {description: Names of the members cut off on the peer port., type: list, sample: [etcd-2]}
    majority: {description: Names of the members on the other side., type: list, sample: [etcd-0, etcd-1]}
    forced: {description: Name of the member forced into a cluster of its own., type: str, sample: etcd-2}
    tls:
      description:
        - Present only with O(tls). C(enabled), C(dir) (the PKI), C(ca_file), the client certificate
          C(cert_file) and key C(key_file) of the writers, the modules and C(./lab exec), and C(members), each
          member's own C(server_cert), C(server_key), C(peer_cert) and C(peer_key) by name
          (C(<dir>/<member>/server.crt) and so on, module_utils/lab_pki_layout.py, where lab_pki writes them).
        - A layout loaded with O(load) gets these paths from that layout too, whatever the file holds.
      type: dict
      sample:
        enabled: true
        dir: /root/lab/.lab/pki
        ca_file: /root/lab/.lab/pki/ca.crt
        cert_file: /root/lab/.lab/pki/clients/lab-client.crt
        key_file: /root/lab/.lab/pki/clients/lab-client.key
        members: {etcd-0: {server_cert: /root/lab/.lab/pki/etcd-0/server.crt}}
    members:
      description: One entry per member.
      type: list
      elements: dict
      sample:
        - name: etcd-0
          index: 0
          ip: 198.18.213.11
          netns: sblab-etcd-0
          veth_host: sblab-h0
          veth_node: sblab-n0
          client_url: http://198.18.213.11:2379
          peer_url: http://198.18.213.11:2380
          isolated: false
          forced: false
      notes:
        - With platform kind, client_url is the host-mapped URL (http://127.0.0.1:32379 for etcd-0) and
          peer_url the member's DNS name (http://etcd-0.etcd-peer.kube-system.svc.cluster.local:2380),
          both https:// with O(tls); ip, netns and veth_* are not used on kind.
"""

import contextlib
import ipaddress
import json
import math
import os
import re
import subprocess
import tempfile
from pathlib import Path

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.lab_files import write_if_changed
from ansible.module_utils.lab_pki_layout import layout_tls

MIN_MEMBERS = 3
MAX_MEMBERS = 7
NAME_RE = re.compile(r"^[a-z][a-z0-9]{0,5}$")
# Subnets the lab may put on its bridge: private (RFC 1918) and the benchmark test range (RFC 2544). The
# documentation nets (RFC 5737) are refused: they are for examples, and hosts do use them (this one does).
ALLOWED_NETS = tuple(
    ipaddress.IPv4Network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "198.18.0.0/15")
)
SUGGESTED_SUBNET = "198.18.214.0/24"
MAX_CLOCK_OFFSET = 86400
LAYOUT_KEYS = ("name", "platform", "bridge", "members")
MEMBER_KEYS = ("name", "ip", "netns", "client_url")
REBUILD_HINT = "run ./teardown.sh (it works without it), then ./setup.sh"
FIRST_MEMBER_HOST = 11
PLATFORMS = ("local", "kind")
KIND_DEFAULTS = {
    "client_port_base": 32379,
    "listen_address": "127.0.0.1",
    "peer_domain": "etcd-peer.kube-system.svc.cluster.local",
}


class PlanError(ValueError):
    """A setting is wrong; the message is one line that names it."""


def default_isolated(names: list[str]) -> list[str]:
    """The default minority: the last floor((N-1)/2) members."""
    return names[len(names) - (len(names) - 1) // 2 :]


def check_size(members: int, allow_even: bool) -> None:
    if members < MIN_MEMBERS or members > MAX_MEMBERS:
        raise PlanError(
            f"lab_members={members} is out of range: the lab builds {MIN_MEMBERS} to {MAX_MEMBERS} members"
        )
    if members % 2 == 0 and not allow_even:
        raise PlanError(
            f"lab_members={members} is even: an even cluster tolerates no more failures than the odd one "
            f"below it ({members - 1}); use an odd size, or -e lab_allow_even_size=true to build it anyway"
        )


def parse_subnet(subnet: str) -> ipaddress.IPv4Network:
    try:
        net = ipaddress.ip_network(subnet, strict=True)
    except ValueError as exc:
        raise PlanError(f"lab_subnet={subnet!r} is not a valid IPv4 network: {exc}") from None
    if not isinstance(net, ipaddress.IPv4Network):
        raise PlanError(f"lab_subnet={subnet!r} must be an IPv4 network")
    if net.prefixlen > 28:
        raise PlanError(f"lab_subnet={subnet!r} is too small: use a /28 or larger")
    check_range(net)
    return net


def range_kind(net: ipaddress.IPv4Network) -> str:
    """What kind of addresses a refused subnet holds, for the error message."""
    if net.is_loopback:
        return "loopback addresses"
    if net.is_link_local:
        return "link-local addresses"
    if net.is_multicast:
        return "multicast addresses"
    if any(
        net.overlaps(ipaddress.IPv4Network(n)) for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24")
    ):
        return "a documentation range (RFC 5737)"
    if net.is_global:
        return "public addresses"
    return "a reserved range"


def check_range(net: ipaddress.IPv4Network) -> None:
    """Only private (RFC 1918) and test (RFC 2544) subnets: never loopback, public or reserved addresses."""
    if any(net.subnet_of(allowed) for allowed in ALLOWED_NETS):
        return
    raise PlanError(
        f"lab_subnet={net} holds {range_kind(net)}: use a private or test subnet inside "
        f"{', '.join(str(n) for n in ALLOWED_NETS)}, e.g. -e lab_subnet={SUGGESTED_SUBNET}"
    )


def ip_json(obj: str) -> list[dict]:
    """What `ip -j -4 OBJ show` prints about this host (OBJ: addr, route), parsed."""
    out = subprocess.run(["ip", "-j", "-4", obj, "show"], capture_output=True, text=True, check=True).stdout
    return json.loads(out or "[]")


def host_networks() -> list[tuple[str, ipaddress.IPv4Interface]]:
    """IPv4 addresses configured on this host's interfaces, from `ip -j addr`."""
    found = []
    for link in ip_json("addr"):
        for addr in link.get("addr_info", []):
            if addr.get("family") == "inet":
                found.append(
                    (link["ifname"], ipaddress.IPv4Interface(f"{addr['local']}/{addr['prefixlen']}"))
                )
    return found


def host_routes() -> list[tuple[str, ipaddress.IPv4Network]]:
    """IPv4 routes of this host's main table, from `ip -j route`, without the default route."""
    found = []
    for route in ip_json("route"):
        dst = route.get("dst", "default")
        if dst == "default":
            continue
        with contextlib.suppress(ValueError):
            found.append((route.get("dev", "?"), ipaddress.IPv4Network(dst, strict=False)))
    return found


def check_clash(
    net: ipaddress.IPv4Network,
    bridge: str,
    networks: list[tuple[str, ipaddress.IPv4Interface]],
    routes: list[tuple[str, ipaddress.IPv4Network]] = (),
) -> None:
    """Refuse a subnet that overlaps an address or a route on this host, except the lab's own bridge."""
    for ifname, iface in networks:
        if ifname == bridge:
            continue
        if iface.network.overlaps(net):
            raise PlanError(
                f"lab_subnet={net} clashes with {iface} on interface {ifname}: "
                f"choose another, e.g. -e lab_subnet={SUGGESTED_SUBNET}"
            )
    for dev, dst in routes:
        if dev == bridge:
            continue
        if dst.overlaps(net):
            raise PlanError(
                f"lab_subnet={net} overlaps the host's route to {dst} via {dev}: "
                f"choose another, e.g. -e lab_subnet={SUGGESTED_SUBNET}"
            )


def check_clock_offset(value: object) -> float:
    """lab_clock_skew_offset as seconds: a finite number, at most a day either way."""
    text = str(value).strip()
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if isinstance(value, bool) or not math.isfinite(seconds):
        raise PlanError(
            f"lab_clock_skew_offset={text!r} is not a number of seconds: use e.g. 90, -30, or 0 for no skew"
        )
    if abs(seconds) > MAX_CLOCK_OFFSET:
        raise PlanError(
            f"lab_clock_skew_offset={text} is more than a day ({MAX_CLOCK_OFFSET} s) either way: "
            f"a few seconds to minutes shows the drift warnings"
        )
    return seconds


def check_skewed_member(member: str, names: list[str]) -> None:
    if member and member not in names:
        raise PlanError(f"lab_skewed_member={member} is not a member: members are {', '.join(names)}")


def writable_ancestor(path: str) -> str:
    """The nearest directory at or above path that exists; PlanError when a file is in the way."""
    current = os.path.abspath(path)
    while not os.path.lexists(current):
        current = os.path.dirname(current)
    if not os.path.isdir(current):
        raise PlanError(f"lab_state_dir={path} cannot be created: {current} is not a directory")
    return current


def check_state_dir(path: str) -> None:
    """The state directory (or where it would be created) takes files: probed with a temporary file."""
    if not path:
        raise PlanError("lab_state_dir is empty: give a directory, e.g. -e lab_state_dir=/root/lab-state")
    if len(Path(os.path.abspath(path)).parts) < 3:
        raise PlanError(
            f"lab_state_dir={path} is a top-level directory, which ./teardown.sh would remove whole: "
            f"use a directory of the lab's own, e.g. -e lab_state_dir=/root/lab-state"
        )
    where = writable_ancestor(path)
    try:
        handle, probe = tempfile.mkstemp(prefix=".lab-probe-", dir=where)
    except OSError as exc:
        raise PlanError(
            f"lab_state_dir={path} is not writable: cannot create a file in {where} ({exc.strerror})"
        ) from None
    os.close(handle)
    os.unlink(probe)


def check_layout(plan: object, path: str) -> dict:
    """A saved layout that later playbooks can act on; PlanError (one line) when it is not one."""
    hint = REBUILD_HINT
    if not isinstance(plan, dict):
        raise PlanError(f"{path} is not a lab layout (a JSON {type(plan).__name__}, not an object): {hint}")
    missing = [key for key in LAYOUT_KEYS if key not in plan]
    if missing:
        raise PlanError(f"{path} is not a lab layout (no {', '.join(missing)}): {hint}")
    members = plan["members"]
    if not isinstance(members, list) or not all(isinstance(m, dict) for m in members):
        raise PlanError(f"{path} is not a lab layout (members is not a list of objects): {hint}")
    keys = MEMBER_KEYS if plan.get("platform", "local") == "local" else ("name", "client_url")
    for entry in members:
        lacking = [key for key in keys if key not in entry]
        if lacking:
            raise PlanError(f"{path} is not a lab layout (a member has no {', '.join(lacking)}): {hint}")
    tls = plan.get("tls")
    if isinstance(tls, dict) and tls.get("dir"):
        # Every file's path from the PKI's one layout, also for a lab.json saved before it listed them all.
        plan["tls"] = {**tls, **layout_tls(tls["dir"], [m["name"] for m in members])}
    return plan


def build_plan(
    *,
    platform: str,
    members: int,
    allow_even: bool,
    name: str,
    subnet: str,
    isolated: list[str],
    forced: str,
    kind: dict | None = None,
    tls_dir: str | None = None,
) -> dict:
    if platform not in PLATFORMS:
        raise PlanError(f"lab_platform={platform} is unknown: use {' or '.join(PLATFORMS)}")
    if not NAME_RE.match(name):
        raise PlanError(
            f"lab_name={name!r} must be 1 to 6 lower-case letters or digits, starting with a letter "
            f"(it prefixes interface names, which Linux limits to 15 characters)"
        )
    check_size(members, allow_even)
    net = parse_subnet(subnet)
    hosts = list(net.hosts())
    if len(hosts) < FIRST_MEMBER_HOST + members:
        raise PlanError(f"lab_subnet={subnet} is too small for {members} members")
    names = [f"etcd-{i}" for i in range(members)]
    isolated = list(isolated) or default_isolated(names)
    unknown = [m for m in isolated if m not in names]
    if unknown:
        raise PlanError(
            f"lab_isolated_members names unknown members {unknown}: members are {', '.join(names)}"
        )
    if len(isolated) * 2 >= members:
        raise PlanError(
            f"lab_isolated_members={isolated} is not a minority of {members}: the cut-off side must be "
            f"smaller than the side that keeps the quorum"
        )
    forced = forced or isolated[-1]
    if forced not in isolated:
        raise PlanError(f"lab_forced_member={forced!r} must be one of the isolated members {isolated}")
    entries = []
    for i, member in enumerate(names):
        ip = str(hosts[FIRST_MEMBER_HOST - 1 + i])
        entries.append(
            {
                "name": member,
                "index": i,
                "ip": ip,
                "netns": f"{name}-{member}",
                "veth_host": f"{name}-h{i}",
                "veth_node": f"{name}-n{i}",
                "client_url": f"http://{ip}:2379",
                "peer_url": f"http://{ip}:2380",
                "isolated": member in isolated,
                "forced": member == forced,
            }
        )
    if platform == "kind":
        use_kind_urls(entries, {**KIND_DEFAULTS, **(kind or {})})
    plan = {
        "name": name,
        "platform": platform,
        "subnet": str(net),
        "prefixlen": net.prefixlen,
        "bridge": f"{name}0",
        "bridge_ip": str(hosts[0]),
        "initial_cluster": ",".join(f"{e['name']}={e['peer_url']}" for e in entries),
        "isolated": isolated,
        "majority": [m for m in names if m not in isolated],
        "forced": forced,
        "members": entries,
    }
    if tls_dir:
        use_tls(plan, tls_dir)
    return plan


def use_tls(plan: dict, tls_dir: str) -> None:
    """https:// on both ports, and where the lab's PKI keeps the CA and the client certificate."""
    for entry in plan["members"]:
        entry["client_url"] = entry["client_url"].replace("http://", "https://", 1)
        entry["peer_url"] = entry["peer_url"].replace("http://", "https://", 1)
    plan["initial_cluster"] = ",".join(f"{e['name']}={e['peer_url']}" for e in plan["members"])
    plan["tls"] = layout_tls(tls_dir, [e["name"] for e in plan["members"]])


def use_kind_urls(entries: list[dict], kind: dict) -> None:
    """The kind platform's URLs: clients through the host-mapped NodePorts, peers by their pod DNS names."""
    for entry in entries:
        entry["client_url"] = (
            f"http://{kind['listen_address']}:{int(kind['client_port_base']) + entry['index']}"
        )
        entry["peer_url"] = f"http://{entry['name']}.{kind['peer_domain']}:2380"


def load_plan(path: str) -> dict | None:
    if not os.path.exists(path):
        return None
    try:
        with open(path, encoding="utf-8") as handle:
            plan = json.load(handle)
    except (ValueError, UnicodeDecodeError) as exc:
        raise PlanError(f"{path} is not valid JSON ({exc}): {REBUILD_HINT}") from None
    except OSError as exc:
        raise PlanError(f"cannot read {path}: {exc.strerror}") from None
    return check_layout(plan, path)


def run_module() -> None:
    module = AnsibleModule(
        argument_spec={
            "platform": {"type": "str", "default": "local"},
            "members": {"type": "int", "default": 3},
            "allow_even_size": {"type": "bool", "default": False},
            "name": {"type": "str", "default": "sblab"},
            "subnet": {"type": "str", "default": "198.18.213.0/24"},
            "isolated_members": {"type": "list", "elements": "str", "default": []},
            "forced_member": {"type": "str", "default": ""},
            "check_subnet": {"type": "bool", "default": True},
            "clock_skew_offset": {"type": "raw"},
            "skewed_member": {"type": "str", "default": ""},
            "tls": {"type": "bool", "default": False},
            "state_dir": {"type": "path"},
            "broken_ok": {"type": "bool", "default": False},
            "save": {"type": "bool", "default": False},
            "extra": {"type": "dict", "default": {}},
            "state_file": {"type": "path"},
            "load": {"type": "bool", "default": False},
            "missing_ok": {"type": "bool", "default": False},
            "kind_client_port_base": {"type": "int", "default": KIND_DEFAULTS["client_port_base"]},
            "kind_listen_address": {"type": "str", "default": KIND_DEFAULTS["listen_address"]},
            "kind_peer_domain": {"type": "str", "default": KIND_DEFAULTS["peer_domain"]},
        },
        required_if=[
            ("load", True, ["state_file"]),
            ("tls", True, ["state_dir"]),
            ("save", True, ["state_dir"]),
        ],
        supports_check_mode=True,
    )
    p = module.params
    try:
        if p["load"]:
            try:
                plan = load_plan(p["state_file"])
            except PlanError as exc:
                if not p["broken_ok"]:
                    raise
                broken = str(exc).removesuffix(f": {REBUILD_HINT}")
                module.warn(f"{broken}: going on without it, by the lab's name and state directory")
                module.exit_json(changed=False, exists=False, broken=broken)
            if plan is None:
                if p["missing_ok"]:
                    module.exit_json(changed=False, exists=False)
                module.fail_json(
                    msg=f"No lab is set up here ({p['state_file']} does not exist): run ./setup.sh"
                )
            module.exit_json(changed=False, exists=True, plan=plan)
        plan = build_plan(
            platform=p["platform"],
            members=p["members"],
            allow_even=p["allow_even_size"],
            name=p["name"],
            subnet=p["subnet"],
            isolated=p["isolated_members"],
            forced=p["forced_member"],
            kind={
                "client_port_base": p["kind_client_port_base"],
                "listen_address": p["kind_listen_address"],
                "peer_domain": p["kind_peer_domain"],
            },
            tls_dir=os.path.join(p["state_dir"], "pki") if p["tls"] else None,
        )
        check_settings(plan, p)
        saved = {**plan, **p["extra"], "state_dir": p["state_dir"]}
        changed = p["save"] and save_plan(saved, module.check_mode)
    except PlanError as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(changed=changed, exists=True, plan=plan)


def save_plan(saved: dict, check_mode: bool = False) -> bool:
    """Write <state_dir>/lab.json (as to_nice_json writes it); True when its content changed."""
    target = os.path.join(saved["state_dir"], "lab.json")
    try:
        text = json.dumps(saved, indent=4, sort_keys=True) + "\n"
        return write_if_changed(target, text, check_mode=check_mode)
    except OSError as exc:
        raise PlanError(f"cannot write {target}: {exc}") from None


def check_settings(plan: dict, params: dict) -> None:
    """The settings that are not part of the layout, and the host: every check before anything changes."""
    names = [m["name"] for m in plan["members"]]
    if params["clock_skew_offset"] is not None:
        check_clock_offset(params["clock_skew_offset"])
    check_skewed_member(params["skewed_member"], names)
    if params["state_dir"] is not None:
        check_state_dir(params["state_dir"])
    if params["check_subnet"] and params["platform"] == "local":
        check_clash(ipaddress.ip_network(plan["subnet"]), plan["bridge"], host_networks(), host_routes())


def main() -> None:
    run_module()


if __name__ == "__main__":
    main()
