#!/usr/bin/python
# Copyright: etcd split-brain lab contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module etcd_force_guard: refuse --force-new-cluster while the rest of the cluster is alive."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: etcd_force_guard
short_description: Refuse to start an etcd member with --force-new-cluster while its cluster is alive
description:
  - A pre-flight check to run before starting a member with C(--force-new-cluster). That flag makes the
    member a one-member cluster of its own; if any other member of the original membership is still alive,
    the result is two clusters with the same cluster id and two leaders that both accept writes, a
    split-brain.
  - The module asks every other member of the original membership (O(endpoints), their client URLs) for its
    status, and optionally tries a TCP connection to their peer URLs (O(peer_urls)). It refuses when any of
    them answers, or when a quorum of the original membership follows one leader, or when the member to force
    (O(member_endpoint)) itself still follows a leader. The refusal says why and what to do instead.
  - O(override=true) with a non-empty O(reason) lets the start go on anyway; the decision is logged.
  - Every decision (allowed, refused, overridden) is appended as one JSON line to O(log_path) when it is
    given, with the evidence (who answered, which leaders they follow).
version_added: "1.0.0"
extends_documentation_fragment:
  - etcd_connection
  - lab_module
options:
  member:
    description: Name of the member that would be started with C(--force-new-cluster).
    type: str
    required: true
  endpoints:
    description:
      - Client URLs of every other member of the original membership, C(http(s)://HOST:PORT).
    type: list
    elements: str
    required: true
  peer_urls:
    description:
      - Peer URLs of those members. A TCP connection that succeeds counts as reachable.
    type: list
    elements: str
    default: []
  names:
    description:
      - Names of those members, in the order of O(endpoints) (and O(peer_urls)), to name them in the reasons.
    type: list
    elements: str
    default: []
  member_endpoint:
    description:
      - Client URL of the member itself, if it is running. A member that still follows a leader must not be
        forced.
    type: str
  override:
    description:
      - Start anyway although the check refuses. Requires O(reason); the decision is logged.
    type: bool
    default: false
  reason:
    description: Why the operator overrides the guard (required with O(override=true)); written to the log.
    type: str
    default: ""
  log_path:
    description: File that receives one JSON line per decision (appended). Its directory must exist.
    type: path
attributes:
  check_mode:
    details: In check mode the decision is made and returned, but nothing is logged.
notes:
  - Run it from a host that can reach the members' client URLs. A member that this host cannot reach is not
    proof that it is down; when in doubt, do not override.
"""

EXAMPLES = r"""
- name: Force | Check that no other member of etcd-2's cluster is alive
  etcd_force_guard:
    member: etcd-2
    endpoints: [http://198.18.213.11:2379, http://198.18.213.12:2379]
    peer_urls: [http://198.18.213.11:2380, http://198.18.213.12:2380]
    names: [etcd-0, etcd-1]
    member_endpoint: http://198.18.213.13:2379
    log_path: /srv/lab/safeguards/force-guard.log

- name: Force | Go on although the guard refuses (the reason is logged)
  etcd_force_guard:
    member: etcd-2
    endpoints: [http://198.18.213.11:2379, http://198.18.213.12:2379]
    override: true
    reason: "etcd-0 and etcd-1 are destroyed; their disks are gone (INC-1234)"
    log_path: /srv/lab/safeguards/force-guard.log
"""

RETURN = r"""
decision:
  description: C(allowed) (nothing else is alive), C(refused) or C(overridden).
  returned: always
  type: str
  sample: refused
reasons:
  description: Why the start is unsafe (empty when allowed).
  returned: always
  type: list
  elements: str
  sample: ["etcd-0 (http://198.18.213.11:2379) answers and follows leader 8e9e05c52164694d"]
reachable:
  description: Other members that answered on their client URL or accepted a TCP connection on their peer URL.
  returned: always
  type: list
  elements: str
  sample: [http://198.18.213.11:2379]
leaders:
  description: Leader id (hex) -> number of other members that follow it.
  returned: always
  type: dict
  sample: {"8e9e05c52164694d": 2}
quorum:
  description: Quorum of the original membership (the other members plus this one).
  returned: always
  type: int
  sample: 2
msg:
  description: The decision in one sentence, with what to do instead when refused.
  returned: always
  type: str
"""

import datetime
import json
import os
import socket
from collections import Counter

from ansible.module_utils.etcd_client import ETCD_COMMON_ARGUMENT_SPEC, etcd_module, validate_endpoint
from ansible.module_utils.etcd_codec import id_to_hex
from ansible.module_utils.etcd_diagnosis import quorum
from ansible.module_utils.etcd_errors import run_or_fail
from ansible.module_utils.etcd_probe import parallel_map, probe_member


def probe_client(endpoint, params):
    """(endpoint, leader id hex or None, error or None); never raises."""
    got = probe_member(endpoint, params, members=False)
    if got["status"] is None:
        return endpoint, None, got["error"]
    return endpoint, id_to_hex(got["status"].get("leader")), None


def probe_peer(url, timeout):
    """True when a TCP connection to the peer URL's host and port succeeds."""
    _scheme, host, port = validate_endpoint(url)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def named(urls, names):
    """URL -> "name (URL)" when the names line up with the URLs, else URL -> URL."""
    if len(names) != len(urls):
        return {u: u for u in urls}
    return {u: f"{n} ({u})" for u, n in zip(urls, names, strict=True)}


def decide(member, client_results, peer_results, own_leader, original_size):
    """Pure decision: (refused?, reasons, reachable, leaders). client_results: (endpoint, leader, error)."""
    reasons = []
    reachable = []
    leaders = Counter()
    for endpoint, leader, error in client_results:
        if error is not None:
            continue
        reachable.append(endpoint)
        if leader:
            leaders[leader] += 1
            reasons.append(f"{endpoint} answers and follows leader {leader}")
        else:
            reasons.append(f"{endpoint} answers (it has no leader now, but it is alive and holds data)")
    for url, ok in peer_results:
        if ok:
            reachable.append(url)
            reasons.append(f"{url} accepts connections on the peer port")
    need = quorum(original_size)
    if leaders:
        leader, count = leaders.most_common(1)[0]
        if count >= need:
            reasons.append(
                f"{count} of the {original_size} original members follow leader {leader} "
                f"(quorum {need}): the cluster is working"
            )
    if own_leader:
        reasons.append(f"{member} itself still follows leader {own_leader}")
    return bool(reasons), reasons, reachable, dict(leaders)


def advice(member):
    return (
        f"Instead: heal the network so {member} catches up by itself; or replace it (etcdctl member "
        "remove, move its data dir aside, member add, start it with --initial-cluster-state existing); "
        "only when every other member is lost for good, restore a snapshot into a new cluster "
        "(recover.yml). To force anyway, give override=true with a reason (the lab: "
        "-e etcd_force_override=true -e etcd_force_override_reason='...'); the decision is logged."
    )


def append_log(path, entry):
    with open(path, "a") as f:
        f.write(json.dumps(entry, sort_keys=True) + "\n")


def run(params, check_mode=False):
    for url in params["endpoints"] + params["peer_urls"]:
        validate_endpoint(url)
    if params["override"] and not params["reason"].strip():
        raise ValueError("override=true needs a reason: say why forcing a new cluster is safe (it is logged)")
    if params["log_path"] and not os.path.isdir(os.path.dirname(os.path.abspath(params["log_path"]))):
        raise ValueError(f"the directory of log_path {params['log_path']} does not exist")
    label = named(params["endpoints"], params["names"])
    label.update(named(params["peer_urls"], params["names"]))
    clients = [
        (label[e], leader, err)
        for e, leader, err in parallel_map(lambda e: probe_client(e, params), params["endpoints"])
    ]
    peers = [
        (label[u], ok)
        for u, ok in parallel_map(lambda u: (u, probe_peer(u, params["timeout"])), params["peer_urls"])
    ]
    own_leader = None
    if params["member_endpoint"]:
        _e, own_leader, _err = probe_client(params["member_endpoint"], params)
    original_size = len(params["endpoints"]) + 1
    unsafe, reasons, reachable, leaders = decide(params["member"], clients, peers, own_leader, original_size)
    decision = "allowed"
    if unsafe:
        decision = "overridden" if params["override"] else "refused"
    result = {
        "changed": False,
        "decision": decision,
        "reasons": reasons,
        "reachable": reachable,
        "leaders": leaders,
        "quorum": quorum(original_size),
    }
    if decision == "allowed":
        result["msg"] = (
            f"No other member of {params['member']}'s original membership answers: forcing a new cluster "
            "cannot create a second leader that this host can see."
        )
    elif decision == "overridden":
        result["msg"] = (
            f"--force-new-cluster on {params['member']} is unsafe ({'; '.join(reasons)}), started anyway "
            f"because the operator insisted: {params['reason']}"
        )
    else:
        result["msg"] = (
            f"Refusing --force-new-cluster on {params['member']}: {'; '.join(reasons)}. Forcing a new "
            "cluster while others are alive makes a second leader with the same cluster id: a split-brain. "
            + advice(params["member"])
        )
    if params["log_path"] and not check_mode:
        append_log(
            params["log_path"],
            {
                "time": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "member": params["member"],
                "decision": decision,
                "reason": params["reason"] if params["override"] else "",
                "reasons": reasons,
                "user": os.environ.get("SUDO_USER") or os.environ.get("USER") or str(os.getuid()),
            },
        )
        result["changed"] = decision == "overridden"
    return result


def argument_spec():
    spec = {
        "member": {"type": "str", "required": True},
        "endpoints": {"type": "list", "elements": "str", "required": True},
        "peer_urls": {"type": "list", "elements": "str", "default": []},
        "names": {"type": "list", "elements": "str", "default": []},
        "member_endpoint": {"type": "str"},
        "override": {"type": "bool", "default": False},
        "reason": {"type": "str", "default": ""},
        "log_path": {"type": "path"},
    }
    spec.update(ETCD_COMMON_ARGUMENT_SPEC)
    return spec


def main():
    module = etcd_module(argument_spec())
    result = run_or_fail(
        module,
        lambda: run(module.params, module.check_mode),
        local_errors=(ValueError, OSError),
        local_prefix="Bad input",
    )
    if result["decision"] == "refused":
        module.fail_json(**result)
    if result["decision"] == "overridden":
        module.warn(result["msg"])
    module.exit_json(**result)


if __name__ == "__main__":
    main()
