#!/usr/bin/python
# Copyright: etcd split-brain lab contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module etcd_endpoint_status: status of every etcd endpoint plus a split-brain diagnosis."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: etcd_endpoint_status
short_description: Status of etcd members and a split-brain diagnosis
description:
  - Queries every given client URL in parallel through etcd's v3 JSON gateway
    (C(/v3/maintenance/status), C(/v3/cluster/member/list), C(/v3/maintenance/alarm)) and reports,
    per endpoint, the member's identity, leader, Raft term and indexes, revision, database size,
    alarms, the member list as that member sees it, and its wall-clock offset from the controller.
  - Then diagnoses the cluster as a whole, the way an operator would during an incident. Endpoints
    are grouped into I(views) by the membership and the leader they report. A split-brain is
    reported when reachable members report more than one leader, or more than one membership.
  - The I(original membership) is O(expected_members) when given; otherwise the largest membership
    that any reachable endpoint reports (a member forced into a cluster of its own with
    C(--force-new-cluster) reports a smaller one). The I(authoritative view) is the view whose
    leader holds a quorum of its own membership and is followed by a quorum of the original
    members. Its membership may differ from the original by changes made through Raft (a member
    removed, or added back and not started yet, as a half-done manual fix or an interrupted
    recovery leaves it); RV(views) lists them in C(membership_changes) and a finding says so in words. A
    member forced into a cluster of its own can never be followed by a quorum of the original
    members. When no view qualifies, RV(authoritative_view) is null and a finding says so -
    recovery must then stop and ask.
  - The cluster id does not reveal a fork (a forced new cluster keeps it) and Raft indexes of
    different views are not comparable (the fork can have the higher index); the diagnosis uses
    neither to choose a side.
  - Never changes anything. An unreachable endpoint is a result (RV(unreachable_endpoints), an RV(endpoints)
    entry with C(reachable=false) and an C(error)), not a module failure; only bad arguments fail.
  - The clock offset comes from the HTTP C(Date) header, which has a resolution of one second; the
    estimate is Date + 0.5 s minus the midpoint of the request, good to about +/-0.5 s plus half
    the round trip. Offsets below O(clock_skew_threshold) are not reported as skew.
version_added: "1.0.0"
options:
  endpoints:
    description:
      - Client URLs of the members, C(http://HOST:PORT) or C(https://HOST:PORT). Duplicates are
        ignored.
    type: list
    elements: str
    required: true
  expected_members:
    description:
      - Names of the members of the original cluster (as in C(--initial-cluster)).
      - When omitted, the largest membership reported by any reachable endpoint is taken as the
        original one.
    type: list
    elements: str
  member_peer_urls:
    description:
      - Peer URLs of the expected members by name (a URL or a list of URLs each). A member added
        with C(etcdctl member add) has no name until it starts; its peer URL tells which member it
        was meant to be. Without this option, names come from the peer URLs that reachable members
        report.
    type: dict
  clock_skew_threshold:
    description:
      - Report a member in RV(clock_skew) when the absolute value of its clock offset exceeds this
        many seconds. Keep it at 2 or more, since the C(Date) header has 1 s resolution.
    type: float
    default: 2.0
  explain:
    description:
      - When true, RV(report) groups the members by the view they report, marks the authoritative one and
        ends with the findings (the diagnosis in words).
      - When false, RV(report) is what each member says and nothing more, one row each with the members it
        lists, the raw material of an investigation. The diagnosis stays in the other return values.
    type: bool
    default: true
  detector_state:
    description:
      - The state file of the lab's split-brain detector (C(detector.json), written by safeguards.yml's
        detector). When it exists, RV(report) ends with what the detector last saw - its status, how long
        ago, STALE when it stopped - and its alerts.
    type: path
  leader_wait:
    description:
      - When no view is authoritative while some member answers without a leader (an election in progress,
        as on a loaded host right after a membership change), ask every member again every half second for
        up to this many seconds, until a view is authoritative or no answering member is without a leader.
      - 0 asks once. RV(leader_wait_s) says how long it waited.
    type: float
    default: 0
  sync_wait:
    description:
      - Ask every member again every quarter second for up to this many seconds until RV(in_sync) (a member
        that was just started and is catching up). 0 asks once. RV(leader_wait_s) counts this wait too.
    type: float
    default: 0
extends_documentation_fragment:
  - etcd_connection
  - lab_module
attributes:
  check_mode:
    details: The module only reads; check mode runs it unchanged.
notes:
  - Runs on the controller (or wherever it is delegated); needs only the Python standard library.
  - Tested against etcd 3.4.23 and 3.5.1.
seealso:
  - name: etcd maintenance API
    description: The gateway endpoints used here.
    link: https://etcd.io/docs/v3.5/dev-guide/api_grpc_gateway/
"""

EXAMPLES = r"""
- name: Status | Diagnose the cluster
  etcd_endpoint_status:
    endpoints:
      - http://198.18.213.11:2379
      - http://198.18.213.12:2379
      - http://198.18.213.13:2379
    expected_members: [etcd-0, etcd-1, etcd-2]
  register: etcd_status

- name: Status | Print the report
  ansible.builtin.debug:
    msg: "{{ etcd_status.report }}"

- name: Status | Stop when there is no authoritative side
  ansible.builtin.assert:
    that: etcd_status.authoritative_view is not none
    fail_msg: "{{ etcd_status.findings }}"

- name: Status | Over TLS with a client certificate
  etcd_endpoint_status:
    endpoints: ["https://10.0.0.1:2379", "https://10.0.0.2:2379", "https://10.0.0.3:2379"]
    ca_cert: /etc/etcd/pki/ca.crt
    client_cert: /etc/etcd/pki/healthcheck-client.crt
    client_key: /etc/etcd/pki/healthcheck-client.key
"""

RETURN = r"""
endpoints:
  description: One entry per endpoint, in the order given.
  returned: always
  type: list
  elements: dict
  contains:
    endpoint: {description: The client URL queried., type: str, sample: "http://127.0.0.1:2379"}
    reachable: {description: Whether the status call succeeded., type: bool}
    error: {description: Why the endpoint could not be queried (one line), or null., type: str}
    name: {description: Member name, from the member's own member list., type: str, sample: etcd-0}
    member_id:
      description: Member id in hex as C(etcdctl --hex) prints it.
      type: str
      sample: 8e9e05c52164694d
    cluster_id: {description: Cluster id in hex (a forced new cluster keeps it)., type: str}
    leader: {description: Hex id of the leader this member follows, null when it has none., type: str}
    leader_name: {description: Name of that leader in this member's member list., type: str}
    is_leader: {description: Whether this member is the leader it reports., type: bool}
    is_learner: {description: Whether this member is a learner., type: bool}
    raft_term: {description: Raft term., type: int}
    raft_index: {description: Raft log index (not comparable across forks)., type: int}
    raft_applied_index: {description: Applied Raft index., type: int}
    revision: {description: MVCC revision of the key space., type: int}
    db_size: {description: Database size in bytes., type: int}
    db_size_in_use: {description: Bytes in use in the database., type: int}
    version: {description: etcd server version., type: str, sample: "3.5.1"}
    alarms:
      description: Alarms raised in the cluster (not queried from a member without a leader, where it hangs).
      type: list
      elements: dict
    status_errors:
      description: Errors the member reports in its status, for example C(etcdserver - no leader).
      type: list
    members:
      description: The member list as this member sees it (id, name, peer_urls, client_urls, is_learner).
      type: list
    clock_offset:
      description: Member wall clock minus controller clock in seconds (about +/-1 s).
      type: float
split_brain:
  description: True when reachable members report more than one leader or more than one membership.
  returned: always
  type: bool
leaders:
  description: Every distinct leader reported, with its name, id, term, membership and who follows it.
  returned: always
  type: list
  elements: dict
views:
  description:
    - Endpoints grouped by the membership and leader they report. Each has C(leader), C(leader_id),
      C(raft_term), C(members) (names of the membership), C(member_ids), C(endpoints) (names of the
      members reporting this view), C(reachable_voters), C(quorum), C(has_quorum),
      C(is_original_membership), C(original_followers) (reachable original members that follow
      the leader), C(membership_changes) (C(removed) names, C(added_unstarted) members with C(id),
      C(peer_urls) and the C(name) their peer URL belongs to, C(added) names) and C(authoritative).
  returned: always
  type: list
  elements: dict
original_membership:
  description:
    - Names of the original membership (C(members)), its voter count, and where it came from
      (C(source) is C(expected_members) or C(largest_reported)).
  returned: always
  type: dict
authoritative_view:
  description: Index into RV(views) of the authoritative view, or null when no view qualifies.
  returned: always
  type: int
forked_members:
  description:
    - Members outside the authoritative view whose own membership holds fewer than a quorum of
      the original members (a member forced into a cluster of its own lists only itself).
    - A side that removed or re-added members through Raft is not a fork.
  returned: always
  type: list
  elements: str
leaderless_members:
  description: Reachable members that follow no leader.
  returned: always
  type: list
  elements: str
in_sync:
  description: Every endpoint answers, all follow the same leader, and all are at the same revision.
  returned: always
  type: bool
leader_wait_s:
  description: Seconds spent asking again (see O(leader_wait) and O(sync_wait)); 0 when the first answers did.
  returned: always
  type: float
unreachable_endpoints:
  description:
    - Endpoints (named when another member knows them) that could not be queried, with the error.
    - Not called C(unreachable), a key Ansible reserves for hosts it cannot reach.
  returned: always
  type: list
  elements: dict
clock_skew:
  description: Members whose clock offset exceeds O(clock_skew_threshold).
  returned: always
  type: list
  elements: dict
findings:
  description: Plain sentences describing what was found, for a learner or an operator.
  returned: always
  type: list
  elements: str
report:
  description: Preformatted lines (one table per view, then the findings) for a plain terminal.
  returned: always
  type: list
  elements: str
"""


import json
import time
from datetime import UTC, datetime

from ansible.module_utils.etcd_client import (
    ETCD_COMMON_ARGUMENT_SPEC,
    etcd_module,
    normalize_url,
    validate_endpoint,
)
from ansible.module_utils.etcd_codec import id_to_hex, parse_member
from ansible.module_utils.etcd_diagnosis import quorum
from ansible.module_utils.etcd_errors import EtcdError, exit_with
from ansible.module_utils.etcd_probe import parallel_map, probe_member
from ansible.module_utils.etcd_tls import check_tls_params


def _int(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def empty_result(endpoint):
    return {
        "endpoint": endpoint,
        "reachable": False,
        "error": None,
        "name": None,
        "member_id": None,
        "cluster_id": None,
        "leader": None,
        "leader_name": None,
        "is_leader": False,
        "is_learner": False,
        "raft_term": None,
        "raft_index": None,
        "raft_applied_index": None,
        "revision": None,
        "db_size": None,
        "db_size_in_use": None,
        "version": None,
        "alarms": [],
        "status_errors": [],
        "members": [],
        "clock_offset": None,
    }


def parse_endpoint(endpoint, status, members=None, alarms=None, clock_offset=None):
    """Build an endpoint result from gateway replies (dicts as decoded from JSON)."""
    result = empty_result(endpoint)
    header = status.get("header", {})
    result["reachable"] = True
    result["member_id"] = id_to_hex(header.get("member_id"))
    result["cluster_id"] = id_to_hex(header.get("cluster_id"))
    result["leader"] = id_to_hex(status.get("leader"))
    result["is_leader"] = result["leader"] is not None and result["leader"] == result["member_id"]
    result["is_learner"] = bool(status.get("isLearner", False))
    result["raft_term"] = _int(status.get("raftTerm", header.get("raft_term")))
    result["raft_index"] = _int(status.get("raftIndex"))
    result["raft_applied_index"] = _int(status.get("raftAppliedIndex"))
    result["revision"] = _int(header.get("revision", 0))
    result["db_size"] = _int(status.get("dbSize"))
    result["db_size_in_use"] = _int(status.get("dbSizeInUse"))
    result["version"] = status.get("version")
    result["status_errors"] = list(status.get("errors") or [])
    result["clock_offset"] = clock_offset
    member_list = [parse_member(m) for m in (members or {}).get("members", [])]
    result["members"] = member_list
    by_id = {m["id"]: m for m in member_list}
    me = by_id.get(result["member_id"])
    if me:
        result["name"] = me["name"] or None
        result["is_learner"] = result["is_learner"] or me["is_learner"]
    if result["leader"] in by_id:
        result["leader_name"] = by_id[result["leader"]]["name"] or None
    result["alarms"] = [
        {"member_id": id_to_hex(a.get("memberID")), "alarm": a.get("alarm", "NONE")}
        for a in (alarms or {}).get("alarms", [])
    ]
    return result


def probe_endpoint(endpoint, params):
    """Query one endpoint; never raises: failures end up in result['error']."""
    got = probe_member(endpoint, params, members=True, alarms=True)
    if got["status"] is None:
        return empty_result(endpoint) | {"error": got["error"]}
    parsed = parse_endpoint(
        endpoint, got["status"], got["members"] or {}, got["alarms"] or {}, got["clock_offset"]
    )
    parsed["error"] = got["error"]
    return parsed


# ---- diagnosis ------------------------------------------------------------------------------


def _names(members):
    return sorted(m["name"] or f"(unstarted {m['id']})" for m in members)


def _label(result):
    return result["name"] or result["endpoint"]


def _fmt_list(names):
    names = list(names)
    if not names:
        return "nobody"
    return ", ".join(names)


def _membership_key(result):
    return tuple(sorted(m["id"] for m in result["members"]))


def name_endpoints(results):
    """Give unreachable endpoints a name when a reachable member lists that client URL."""
    url_names = {}
    for r in results:
        for m in r["members"]:
            for url in m["client_urls"]:
                if m["name"]:
                    url_names[normalize_url(url)] = m["name"]
    for r in results:
        if not r["name"]:
            r["name"] = url_names.get(normalize_url(r["endpoint"]))


def peer_url_names(results, member_peer_urls=None):
    """Map each known peer URL to a member name: from O(member_peer_urls), then from every report naming it.

    A member added by hand (C(etcdctl member add)) has no name until it starts; its peer URL tells who it
    was meant to be."""
    names = {}
    for name, urls in (member_peer_urls or {}).items():
        for url in [urls] if isinstance(urls, str) else urls or []:
            names.setdefault(normalize_url(url), name)
    for r in results:
        for m in r["members"]:
            if m["name"]:
                for url in m["peer_urls"]:
                    names.setdefault(normalize_url(url), m["name"])
    return names


def membership_changes(view, original, peer_names):
    """How a view's membership differs from the original one, by name: removed, added back unstarted, added.

    These are the traces of a half-done manual fix (hint 8: member remove, then member add) or of an
    interrupted recovery, made through Raft by a side that kept its quorum, never by --force-new-cluster."""
    named = {m["name"] for m in view["_members"] if m["name"]}
    unstarted = []
    for m in view["_members"]:
        if m["name"]:
            continue
        urls = [normalize_url(u) for u in m["peer_urls"]]
        guess = next((peer_names[u] for u in urls if u in peer_names), None)
        unstarted.append({"id": m["id"], "peer_urls": m["peer_urls"], "name": guess})
    back = {u["name"] for u in unstarted if u["name"]}
    return {
        "removed": sorted(n for n in original if n not in named and n not in back),
        "added_unstarted": unstarted,
        "added": sorted(n for n in named if n not in original),
    }


def describe_changes(leader, changes):
    """One plain sentence on the half-done steps found on the side led by leader; None when there are none."""
    parts = []
    for name in changes["removed"]:
        parts.append(f"{name} was removed from {leader}'s membership (by hand or by an interrupted recovery)")
    for u in changes["added_unstarted"]:
        who = f"a member {u['name']}" if u["name"] else "a member"
        url = ", ".join(u["peer_urls"])
        was = f"{u['name']}'s old id was removed; " if u["name"] else ""
        parts.append(f"{was}{who} was added back (id {u['id']}, peer URL {url}) and has not started")
    for name in changes["added"]:
        parts.append(f"{name} was added and is not in the original membership")
    if not parts:
        return None
    return (
        "Membership changed through Raft on the authoritative side: " + "; ".join(parts) + ". Nothing was "
        "forced here: the side kept its quorum; recovery finishes these steps (it starts a member that was "
        "added back before it adds any other: etcd refuses a new voter while one is not connected)."
    )


def diagnose(results, expected_members=None, skew_threshold=2.0, member_peer_urls=None):
    """Group endpoint results into views and decide split-brain, authority and findings."""
    name_endpoints(results)
    reachable = [r for r in results if r["reachable"]]
    findings = []

    # Views: same membership (ids) and same leader.
    views = []
    index = {}
    for r in reachable:
        key = (_membership_key(r), r["leader"])
        if key not in index:
            index[key] = len(views)
            views.append(
                {
                    "leader_id": r["leader"],
                    "leader": None,
                    "raft_term": None,
                    "members": _names(r["members"]),
                    "member_ids": [m["id"] for m in r["members"]],
                    "voters": [m["name"] or m["id"] for m in r["members"] if not m["is_learner"]],
                    "endpoints": [],
                    "_results": [],
                    "_members": r["members"],
                }
            )
        view = views[index[key]]
        view["endpoints"].append(_label(r))
        view["_results"].append(r)

    for view in views:
        by_id = {m["id"]: m for m in view["_members"]}
        if view["leader_id"]:
            leader_member = by_id.get(view["leader_id"])
            view["leader"] = (leader_member or {}).get("name") or view["leader_id"]
            own = [r for r in view["_results"] if r["is_leader"]]
            terms = [r["raft_term"] for r in (own or view["_results"]) if r["raft_term"] is not None]
        else:
            terms = [r["raft_term"] for r in view["_results"] if r["raft_term"] is not None]
        view["raft_term"] = max(terms) if terms else None

    # The original membership.
    if expected_members:
        original = sorted(set(expected_members))
        source = "expected_members"
    else:
        candidates = sorted(views, key=lambda v: (len(v["members"]), len(v["endpoints"])), reverse=True)
        original = sorted(candidates[0]["members"]) if candidates else []
        source = "largest_reported"
    original_set = set(original)
    original_voters = None

    authoritative = None
    for view in views:
        view["is_original_membership"] = set(view["members"]) == original_set
        if view["is_original_membership"] and original_voters is None:
            original_voters = len(view["voters"])
        voters = set(view["voters"])
        view["reachable_voters"] = sorted(
            _label(r) for r in view["_results"] if not r["is_learner"] and _label(r) in voters
        )
        view["quorum"] = quorum(len(view["voters"]))
        view["has_quorum"] = view["leader_id"] is not None and len(view["reachable_voters"]) >= view["quorum"]
        view["authoritative"] = False
    if original_voters is None:
        original_voters = len(original)
    original_quorum = quorum(original_voters) if original_voters else 0
    # Authority: a leader with a quorum of its own membership, followed by a quorum of the ORIGINAL members.
    # Its membership may differ from the original one by changes made through Raft (a member removed, or
    # added back and not started yet: a half-done hint 8, an interrupted recovery); a member forced into a
    # cluster of its own can never be followed by a quorum of the original members. Two views cannot both
    # qualify: each member reports one view, and two quorums of the same membership overlap.
    peer_names = peer_url_names(results, member_peer_urls)
    for i, view in enumerate(views):
        in_original = [n for n in view["reachable_voters"] if n in original_set]
        view["original_followers"] = len(in_original)
        view["membership_changes"] = membership_changes(view, original, peer_names)
        if (
            view["leader_id"] is not None
            and view["has_quorum"]
            and original_quorum
            and len(in_original) >= original_quorum
            and authoritative is None
        ):
            view["authoritative"] = True
            authoritative = i

    leaders = []
    for view in views:
        if view["leader_id"] and view["leader_id"] not in [x["id"] for x in leaders]:
            leader_result = next((r for r in view["_results"] if r["is_leader"]), None)
            leaders.append(
                {
                    "name": view["leader"],
                    "id": view["leader_id"],
                    "raft_term": view["raft_term"],
                    "members": view["members"],
                    "followers": [e for e in view["endpoints"] if e != view["leader"]],
                    "reachable": leader_result is not None,
                }
            )

    memberships = {tuple(sorted(v["member_ids"])) for v in views}
    split_brain = len(leaders) > 1 or len(memberships) > 1

    # A fork: a member whose own membership holds fewer than a quorum of the original members (a forced new
    # cluster lists only itself). A side that removed or re-added members through Raft keeps a quorum of them.
    def original_in(r):
        return len({m["name"] for m in r["members"] if m["name"]} & original_set)

    auth_endpoints = set(views[authoritative]["endpoints"]) if authoritative is not None else set()
    forked = sorted(
        {
            _label(r)
            for r in reachable
            if _label(r) not in auth_endpoints and r["members"] and original_in(r) < (original_quorum or 1)
        }
    )
    leaderless = sorted(_label(r) for r in reachable if r["leader"] is None)
    unreachable = [
        {"name": r["name"], "endpoint": r["endpoint"], "error": r["error"]}
        for r in results
        if not r["reachable"]
    ]
    skew = [
        {"name": _label(r), "endpoint": r["endpoint"], "clock_offset": r["clock_offset"]}
        for r in reachable
        if r["clock_offset"] is not None and abs(r["clock_offset"]) > skew_threshold
    ]
    reachable_names = {_label(r) for r in reachable}
    missing_expected = [
        n for n in original if n not in reachable_names and n not in [u["name"] for u in unreachable]
    ]

    # ---- findings, most important first
    def describe(view):
        size = len(view["members"])
        if view["leader_id"] is None:
            return None
        if size == 1 and view["members"] == [view["leader"]]:
            who = f"a one-member cluster of its own ({view['leader']})"
        else:
            who = _fmt_list(view["members"])
        return f"{view['leader']} leads {who} at term {view['raft_term']}"

    if not reachable:
        findings.append(
            f"No endpoint answered: all {len(results)} are unreachable, nothing can be diagnosed."
        )
    elif split_brain:
        leading = [describe(v) for v in views if v["leader_id"]]
        if len(leaders) > 1:
            findings.append(f"Split-brain: {len(leaders)} leaders at once. " + " while ".join(leading) + ".")
        else:
            findings.append(
                "Split-brain: members disagree on the membership ("
                + "; ".join(
                    f"{_fmt_list(v['endpoints'])} report{'s' if len(v['endpoints']) == 1 else ''} "
                    f"{_fmt_list(v['members'])}"
                    for v in views
                )
                + ")."
            )
    elif len(views) == 1 and views[0]["leader_id"]:
        v = views[0]
        findings.append(f"No split-brain: all {len(reachable)} reachable members agree that {describe(v)}.")
    for name in forked:
        r = next(x for x in reachable if _label(x) == name)
        findings.append(
            f"{name} reports a membership ({_fmt_list(_names(r['members']))}) that differs from the original "
            f"({_fmt_list(original)}): it was probably restarted with --force-new-cluster. Its cluster id "
            f"{r['cluster_id']} stays the same, so the cluster id does not reveal the fork."
        )
    if authoritative is not None:
        changed = describe_changes(views[authoritative]["leader"], views[authoritative]["membership_changes"])
        if changed:
            findings.append(changed)
    if len(views) > 1:
        indexed = [r for r in reachable if r["raft_index"] is not None]
        if len({_membership_key(r) for r in indexed}) > 1 and authoritative is not None:
            top = max(indexed, key=lambda r: r["raft_index"])
            auth_results = views[authoritative]["_results"]
            if top not in auth_results:
                best_auth = max(r["raft_index"] for r in auth_results if r["raft_index"] is not None)
                findings.append(
                    f"{_label(top)} has the highest raft index ({top['raft_index']} > {best_auth}) but is "
                    "not on the authoritative side: raft indexes of different histories are not comparable; "
                    "do not choose the source of truth by the highest index."
                )
    for name in leaderless:
        r = next(x for x in reachable if _label(x) == name)
        why = "; ".join(r["status_errors"]) or "no leader reported"
        findings.append(
            f"{name} has no leader ({why}) at term {r['raft_term']}: it cannot reach a quorum of its "
            f"membership ({_fmt_list(_names(r['members']))})."
        )
    for u in unreachable:
        label = f"{u['name']} ({u['endpoint']})" if u["name"] else u["endpoint"]
        findings.append(f"{label} is unreachable: {u['error']}")
    for n in missing_expected:
        findings.append(f"{n} is in the expected membership but no endpoint of it was given or reported.")
    if reachable:
        if authoritative is not None:
            v = views[authoritative]
            findings.append(
                f"Authoritative side: {v['leader']}'s view. "
                + (
                    f"It leads the original membership ({_fmt_list(original)})"
                    if v["is_original_membership"]
                    else f"It leads {_fmt_list(v['members'])}, changed from the original "
                    f"({_fmt_list(original)})"
                )
                + f" and {v['original_followers']} of the {original_voters} original voters "
                f"(quorum {original_quorum}) follow it: {_fmt_list(v['reachable_voters'])}."
            )
        else:
            findings.append(
                f"No view holds a reachable quorum ({original_quorum} of {original_voters}) of the original "
                f"membership ({_fmt_list(original)}): there is no safe source of truth. Stop and decide "
                "explicitly before any recovery step."
            )
    for s in skew:
        direction = "ahead of" if s["clock_offset"] > 0 else "behind"
        findings.append(
            f"{s['name']}'s clock is {abs(s['clock_offset']):.1f} s {direction} the controller's "
            f"(threshold {skew_threshold:g} s). Clock skew does not elect a second leader (Raft uses "
            "local timers), but it breaks leases, TLS and tokens and should be fixed."
        )
    for r in reachable:
        for a in r["alarms"]:
            if a["alarm"] != "NONE":
                findings.append(f"{_label(r)} reports alarm {a['alarm']} on member {a['member_id']}.")

    for view in views:
        del view["_results"]
        del view["_members"]
    return {
        "split_brain": split_brain,
        "leaders": leaders,
        "views": views,
        "original_membership": {"members": original, "source": source, "voters": original_voters},
        "authoritative_view": authoritative,
        "forked_members": forked,
        "leaderless_members": leaderless,
        "unreachable_endpoints": unreachable,
        "clock_skew": skew,
        "findings": _dedupe(findings),
    }


def _dedupe(items):
    seen = set()
    return [x for x in items if not (x in seen or seen.add(x))]


# ---- report -----------------------------------------------------------------------------------


def _size(n):
    if n is None:
        return "-"
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024.0
    return str(n)


def _table(header, rows):
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=False)]
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    out = [line.format(*header).rstrip(), line.format(*["-" * w for w in widths]).rstrip()]
    out += [line.format(*[str(c) for c in row]).rstrip() for row in rows]
    return out


def detector_lines(path, now=None):
    """What the split-brain detector last saw (its state file): status, how old, alerts; [] without one."""
    if not path:
        return []
    try:
        with open(path, encoding="utf-8") as f:
            state = json.load(f)
        seen = datetime.strptime(state["time"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()
    except (OSError, ValueError, KeyError, TypeError):
        return []
    age = int((time.time() if now is None else now) - seen)
    stale = ", STALE: is it still running?" if age > 4 * float(state.get("interval", 3)) + 10 else ""
    lines = [f"Split-brain detector: {str(state.get('status', '?')).upper()} (last round {age} s ago{stale})"]
    for alert in state.get("alerts", []):
        lines.append(f"  since {alert.get('since')} {alert.get('severity')} {alert.get('message')}")
    return lines


REPORT_HEADER = ["MEMBER", "ID", "LEADER", "TERM", "RAFT INDEX", "REVISION", "DB SIZE", "CLOCK", "ERROR"]


def _row(r):
    """One member's answers, as the report's table shows them (REPORT_HEADER's columns)."""
    leader = "-"
    if r["reachable"]:
        leader = "self" if r["is_leader"] else (r["leader_name"] or r["leader"] or "none")
    offset = "-" if r["clock_offset"] is None else f"{r['clock_offset']:+.1f}s"
    error = r["error"] or "; ".join(r["status_errors"]) or ""
    return [
        _label(r) + (" (learner)" if r["is_learner"] else ""),
        r["member_id"] or "-",
        leader,
        "-" if r["raft_term"] is None else r["raft_term"],
        "-" if r["raft_index"] is None else r["raft_index"],
        "-" if r["revision"] is None else r["revision"],
        _size(r["db_size"]),
        offset,
        error,
    ]


def raw_report(results):
    """What each member says and nothing more: one row each, with the members it lists; no diagnosis."""
    rows = []
    for r in results:
        cells = _row(r)
        members = _fmt_list(_names(r["members"])) if r["reachable"] and r["members"] else "-"
        rows.append([*cells[:-1], members, cells[-1]])
    return _table([*REPORT_HEADER[:-1], "MEMBERS IT LISTS", REPORT_HEADER[-1]], rows)


def format_report(results, diagnosis, explain=True):
    """Preformatted lines: one table per view, unreachable endpoints, then the findings; without explain,
    raw_report's table."""
    if not explain:
        return raw_report(results)
    lines = []
    by_label = {_label(r): r for r in results}

    for i, view in enumerate(diagnosis["views"]):
        tag = " [authoritative]" if view["authoritative"] else ""
        leader = f"leader {view['leader']}" if view["leader"] else "no leader"
        lines.append(
            f"View {i + 1}{tag}: {leader}, term {view['raft_term']}, membership {_fmt_list(view['members'])}"
        )
        lines += ["  " + x for x in _table(REPORT_HEADER, [_row(by_label[e]) for e in view["endpoints"]])]
        lines.append("")
    down = [r for r in results if not r["reachable"]]
    if down:
        lines.append("Unreachable:")
        rows = [[r["name"] or "?", r["endpoint"], r["error"]] for r in down]
        lines += ["  " + x for x in _table(["MEMBER", "ENDPOINT", "ERROR"], rows)]
        lines.append("")
    lines.append("Findings:")
    lines += [f"  - {f}" for f in diagnosis["findings"]]
    return lines


# ---- module -----------------------------------------------------------------------------------


def argument_spec():
    spec = {
        "endpoints": {"type": "list", "elements": "str", "required": True},
        "expected_members": {"type": "list", "elements": "str"},
        "member_peer_urls": {"type": "dict"},
        "clock_skew_threshold": {"type": "float", "default": 2.0},
        "leader_wait": {"type": "float", "default": 0.0},
        "sync_wait": {"type": "float", "default": 0.0},
        "explain": {"type": "bool", "default": True},
        "detector_state": {"type": "path"},
    }
    spec.update(ETCD_COMMON_ARGUMENT_SPEC)
    return spec


def check_params(params):
    """Validate arguments before any request; returns the de-duplicated endpoint list."""
    endpoints = []
    for e in params["endpoints"] or []:
        if not isinstance(e, str):
            raise EtcdError(f"Endpoint {e!r} is not a URL string")
        validate_endpoint(e)
        if normalize_url(e) not in endpoints:
            endpoints.append(normalize_url(e))
    if not endpoints:
        raise EtcdError("endpoints is empty: give at least one client URL such as http://127.0.0.1:2379")
    if params.get("timeout") is not None and params["timeout"] <= 0:
        raise EtcdError("timeout must be a positive number of seconds")
    if params.get("clock_skew_threshold") is not None and params["clock_skew_threshold"] < 0:
        raise EtcdError("clock_skew_threshold must not be negative")
    check_tls_params(endpoints, params)
    return endpoints


def in_sync(results):
    """Every endpoint answers, follows the same leader, at the same revision."""
    return (
        all(r["reachable"] for r in results)
        and len({r["leader"] for r in results}) == 1
        and results[0]["leader"] is not None
        and len({r["revision"] for r in results}) == 1
    )


def run(params):
    """Everything main() does, without AnsibleModule: returns the result dict or raises EtcdError."""
    endpoints = check_params(params)
    start = time.monotonic()
    sync_wait = float(params.get("sync_wait") or 0)
    deadline = start + max(float(params.get("leader_wait") or 0), sync_wait)
    waits = 0
    while True:  # bounded by the deadline
        results = parallel_map(lambda e: probe_endpoint(e, params), endpoints)
        diagnosis = diagnose(
            results,
            params.get("expected_members"),
            params.get("clock_skew_threshold", 2.0),
            params.get("member_peer_urls"),
        )
        electing = diagnosis["authoritative_view"] is None and diagnosis["leaderless_members"]
        synced = in_sync(results)
        pause = 0.25 if sync_wait and not synced else 0.5
        if not (electing or (sync_wait and not synced)) or time.monotonic() + pause > deadline:
            break
        time.sleep(pause)
        waits += 1
    waited = round(time.monotonic() - start, 1) if waits else 0.0
    out = {"changed": False, "endpoints": results, "leader_wait_s": waited, "in_sync": synced}
    out.update(diagnosis)
    out["report"] = format_report(results, diagnosis, params.get("explain", True))
    detector = detector_lines(params.get("detector_state"))
    if detector:
        out["report"] = [*out["report"], "", *detector]
    return out


def main():
    module = etcd_module(argument_spec())
    exit_with(module, lambda: run(module.params))


if __name__ == "__main__":
    main()
