#!/usr/bin/python
# Copyright: etcd split-brain lab contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module etcd_member: list, add, remove and promote etcd members, guarding quorum."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: etcd_member
short_description: List, add, remove and promote etcd cluster members without losing quorum
description:
  - Manages the membership of an etcd cluster through the v3 JSON gateway
    (C(/v3/cluster/member/list|add|remove|promote)).
  - O(state=list) only reads. O(state=present) adds a member by O(name) and O(peer_urls) (as a
    learner with O(learner=true)); O(state=absent) removes a member by O(name) or O(id);
    O(state=promoted) promotes a learner to a voter. All are idempotent.
  - The module acts through the first endpoint that follows a leader, and judges the members'
    health from every endpoint given; a member counts as a I(healthy voter) only when one of its
    client URLs (from the member list or O(endpoints)) answers and follows the same leader.
    Members that answer but follow another leader (a forked member) do not count.
  - It refuses a change that would leave the cluster without quorum unless O(force=true) is given.
    Removing a voter is refused when the healthy voters left would be fewer than the new quorum;
    adding or promoting a voter is refused when the healthy voters (the new one not counted unless
    it already answers) could not meet the new quorum. Learners never count towards quorum.
  - A member is matched by name, or, before it has started (when it has no name yet), by its
    peer URLs.
  - O(state=absent) first waits up to O(settle_timeout) for an endpoint that follows a leader, then proposes
    the removal only to a settled leader (see O(settle_timeout)). When its reply
    never comes (a timeout), the module reads the member list again and says in one sentence whether the
    removal was applied late or dropped (with the leader and term before and after); it proposes it again
    only when it was dropped, up to 3 attempts in all (RV(remove_attempts), RV(remove_notes)).
version_added: "1.0.0"
options:
  endpoints:
    description:
      - Client URLs of members to talk to, C(http(s)://HOST:PORT). Give every member's URL so the
        quorum check sees every healthy member.
    type: list
    elements: str
    required: true
  state:
    description:
      - C(list) reads the member list and changes nothing.
      - C(present) makes sure a member named O(name) with O(peer_urls) exists.
      - C(absent) makes sure the member O(name) or O(id) does not exist.
      - C(promoted) makes sure the member O(name) or O(id) is a voter.
    type: str
    choices: [list, present, absent, promoted]
    default: list
  name:
    description:
      - Member name (C(--name) of the member). Required for O(state=present) unless the member is
        matched by O(peer_urls) only.
    type: str
  id:
    description:
      - Member id in hex as C(etcdctl member list --hex) prints it. Alternative to O(name) for
        O(state=absent) and O(state=promoted).
    type: str
  peer_urls:
    description:
      - Peer URLs of the member to add, required with O(state=present).
    type: list
    elements: str
  learner:
    description:
      - Add the member as a non-voting learner (etcd 3.4+). Promote it later with O(state=promoted).
    type: bool
    default: false
  force:
    description:
      - Make the change even when the quorum check refuses it. Read the refusal first.
    type: bool
    default: false
  settle_timeout:
    description:
      - O(state=absent) only. Seconds to wait for a settled leader before proposing the removal, and again
        after a removal whose reply never came. Settled - the acting endpoint follows a leader, a linearizable
        read through it succeeds (the leader has committed an entry of its term), and the leader has applied
        every entry the endpoint saw committed just before. raft silently drops a conf change proposed
        without a leader or while the leader has an unapplied one, which every new leader has until it
        commits an entry of its term; etcd then answers nothing and the client waits for its deadline.
      - O(state=present) too. Seconds an add waits for an endpoint that follows a leader, then (looking every
        half second) while the quorum check refuses it (a voter healed, restarted or paused a moment ago
        follows no leader for a heartbeat or two), and
        is asked again while etcd refuses it as an C(unhealthy cluster) (a new voter only once every voter has
        been connected for 5 s). Nothing is applied by either refusal.
    type: float
    default: 30.0
extends_documentation_fragment:
  - etcd_connection
  - lab_module
attributes:
  check_mode:
    details: Reads the member list and health, runs the quorum check, and reports what would change.
notes:
  - After adding a member, start it with C(--initial-cluster-state existing), the returned
    RV(initial_cluster) and an empty data dir.
  - etcd itself also refuses unsafe reconfigurations (C(--strict-reconfig-check), on by default);
    O(force=true) only skips this module's check, not etcd's.
"""

EXAMPLES = r"""
- name: Members | List
  etcd_member:
    endpoints: "{{ etcd_client_urls }}"
  register: etcd_members

- name: Recover | Remove the forked member from the majority
  etcd_member:
    endpoints: [http://198.18.213.11:2379, http://198.18.213.12:2379]
    name: etcd-2
    state: absent

- name: Recover | Add it back as a learner
  etcd_member:
    endpoints: [http://198.18.213.11:2379, http://198.18.213.12:2379]
    name: etcd-2
    peer_urls: [http://198.18.213.13:2380]
    learner: true
    state: present
  register: etcd_added

- name: Recover | Promote it once it has caught up
  etcd_member:
    endpoints: "{{ etcd_client_urls }}"
    name: etcd-2
    state: promoted
  register: etcd_promote
  until: etcd_promote is succeeded
  retries: 10
  delay: 3
"""

RETURN = r"""
members:
  description: The member list after the change (before it in check mode).
  returned: always
  type: list
  elements: dict
  contains:
    id: {description: Member id in hex., type: str}
    name: {description: Member name; empty until the member has started., type: str}
    peer_urls: {description: Peer URLs., type: list}
    client_urls: {description: Client URLs; empty until the member has started., type: list}
    is_learner: {description: Whether the member is a learner., type: bool}
    started: {description: Whether the member has started (has a name or client URLs)., type: bool}
    healthy: {description: Whether it answers and follows the acting endpoint's leader., type: bool}
member:
  description: The member added, removed or promoted (as it was before removal).
  returned: when O(state) is not C(list) and the member exists or was added
  type: dict
action:
  description: What was done or would be done, C(none), C(add), C(remove) or C(promote).
  returned: always
  type: str
quorum:
  description: Voters, healthy voters and quorum before and after the change.
  returned: always
  type: dict
  sample: {voters_before: 3, voters_after: 2, healthy_voters_after: 2, quorum_after: 2, safe: true}
endpoint:
  description: The endpoint the change was sent through.
  returned: always
  type: str
initial_cluster:
  description: C(--initial-cluster) value for starting an added member (name=peer_url,...).
  returned: when O(state=present)
  type: str
add_attempts:
  description: How many times the add was asked (1 unless etcd refused it as an unhealthy cluster at first).
  returned: when a member was added (not in check mode)
  type: int
  sample: 1
add_notes:
  description:
    - A sentence when the quorum check refused the add at first and the module looked again (up to
      O(settle_timeout)) until it was safe.
  returned: when a member was added (not in check mode)
  type: list
  elements: str
remove_attempts:
  description: How many times the removal was proposed (1 unless a reply never came and it had been dropped).
  returned: when a member was removed (not in check mode)
  type: int
  sample: 1
remove_notes:
  description:
    - One sentence per removal whose reply never came - applied late, or dropped (and why) and proposed again;
      and one when the module had to wait for a leader before proposing.
  returned: when a member was removed (not in check mode)
  type: list
  elements: str
  sample: []
"""


import time

from ansible.module_utils.etcd_client import (
    ETCD_COMMON_ARGUMENT_SPEC,
    client_from_params,
    etcd_module,
    normalize_url,
    validate_endpoint,
)
from ansible.module_utils.etcd_codec import hex_to_id, id_to_hex, parse_member
from ansible.module_utils.etcd_diagnosis import quorum
from ansible.module_utils.etcd_errors import EtcdError, run_or_fail
from ansible.module_utils.etcd_probe import parallel_map, probe_member
from ansible.module_utils.etcd_tls import check_tls_params


def probe(endpoint, params):
    """(endpoint, status dict or None, member list or None, error): None for both when either failed."""
    got = probe_member(endpoint, params, members=True)
    if got["status"] is None or got["members"] is None:
        return endpoint, None, None, got["error"]
    return endpoint, got["status"], got["members"], None


def gather(params, need_leader=True):
    """Probe every endpoint; choose the acting endpoint; mark members healthy. Raises EtcdError.

    Without need_leader (state=list), a cluster with no leader is still listed, from the first
    endpoint that answers, with every member marked unhealthy.
    """
    results = parallel_map(lambda e: probe(e, params), params["endpoints"])
    acting = next((r for r in results if r[1] and r[1].get("leader", "0") not in ("0", None)), None)
    if acting is None and not need_leader:
        answered = next((r for r in results if r[2]), None)
        if answered is not None:
            members = [parse_member(m) | {"healthy": False} for m in answered[2].get("members", [])]
            return answered[0], members
    if acting is None:
        errors = "; ".join(r[3] or f"{r[0]} has no leader" for r in results)
        raise EtcdError(f"No endpoint follows a leader, so membership cannot be changed or trusted: {errors}")
    leader = acting[1]["leader"]
    members = [parse_member(m) for m in acting[2].get("members", [])]
    # A member is healthy when an endpoint answering as that member id follows the same leader.
    healthy_ids = {
        id_to_hex(r[1]["header"]["member_id"]) for r in results if r[1] and r[1].get("leader") == leader
    }
    # Members whose client URLs were not among the endpoints: probe them too (they are in the list).
    given = {normalize_url(e) for e in params["endpoints"]}
    extra = []
    for m in members:
        if m["id"] in healthy_ids or not m["client_urls"]:
            continue
        if any(normalize_url(u) in given for u in m["client_urls"]):
            continue
        extra.append(m["client_urls"][0])
    if extra:
        for r in parallel_map(lambda e: probe(e, params), extra):
            if r[1] and r[1].get("leader") == leader:
                healthy_ids.add(id_to_hex(r[1]["header"]["member_id"]))
    for m in members:
        m["healthy"] = m["id"] in healthy_ids
    return acting[0], members


def find_member(members, name=None, member_id=None, peer_urls=None):
    if member_id:
        wanted = id_to_hex(hex_to_id(member_id))
        return next((m for m in members if m["id"] == wanted), None)
    if name:
        found = next((m for m in members if m["name"] == name), None)
        if found:
            return found
    if peer_urls:
        wanted = {normalize_url(u) for u in peer_urls}
        return next((m for m in members if {normalize_url(u) for u in m["peer_urls"]} == wanted), None)
    return None


def quorum_check(members, action, target=None):
    """Return a dict describing quorum before/after; 'safe' False when the change would lose it."""
    voters = [m for m in members if not m["is_learner"]]
    healthy = [m for m in voters if m["healthy"]]
    info = {
        "voters_before": len(voters),
        "healthy_voters_before": len(healthy),
        "quorum_before": quorum(len(voters)) if voters else 0,
    }
    if action == "remove":
        if target["is_learner"]:
            after, healthy_after = len(voters), len(healthy)
        else:
            after = len(voters) - 1
            healthy_after = len([m for m in healthy if m["id"] != target["id"]])
    elif action in ("add", "promote"):
        after = len(voters) + 1
        healthy_after = len(healthy) + (1 if target is not None and target.get("healthy") else 0)
    else:
        after, healthy_after = len(voters), len(healthy)
    info["voters_after"] = after
    info["healthy_voters_after"] = healthy_after
    info["quorum_after"] = quorum(after) if after else 0
    info["safe"] = after > 0 and healthy_after >= info["quorum_after"]
    return info


def initial_cluster(members, name, peer_urls):
    parts = []
    for m in members:
        same_urls = {normalize_url(u) for u in m["peer_urls"]} == {normalize_url(u) for u in peer_urls}
        member_name = m["name"] or (name if same_urls else "")
        if not member_name:
            continue
        parts += [f"{member_name}={u}" for u in m["peer_urls"]]
    return ",".join(parts)


def check_params(params):
    for e in params["endpoints"] or []:
        validate_endpoint(e)
    if not params["endpoints"]:
        raise EtcdError("endpoints is empty: give the members' client URLs, e.g. http://127.0.0.1:2379")
    state = params["state"]
    if state == "present":
        if not params.get("peer_urls"):
            raise EtcdError("state=present needs peer_urls (the new member's --initial-advertise-peer-urls)")
        if not params.get("name"):
            raise EtcdError("state=present needs name (the new member's --name)")
    if state in ("absent", "promoted") and not (params.get("name") or params.get("id")):
        raise EtcdError(f"state={state} needs name or id of the member")
    if params.get("id"):
        hex_to_id(params["id"])
    for url in params.get("peer_urls") or []:
        try:
            validate_endpoint(url)
        except EtcdError as exc:
            raise EtcdError(str(exc).replace("Endpoint", "Peer URL")) from None
    check_tls_params(params["endpoints"], params)


HINTS = {
    "unhealthy cluster": "etcd refuses changes until every voter has been connected for 5 s; retry",
    "not enough started members": "etcd refuses a new voter while members are down; start them first",
    "learner member which is in sync": "the learner has not caught up (is it started?); retry",
    "Peer URLs already exists": "another member already uses these peer URLs",
}


def with_hint(exc):
    for needle, hint in HINTS.items():
        if needle.lower() in str(exc).lower():
            return EtcdError(f"{exc} ({hint})", exc.endpoint, exc.kind, exc.code)
    return exc


def refuse(info, what):
    return EtcdError(
        f"Refusing to {what}: afterwards {info['healthy_voters_after']} healthy voter(s) of "
        f"{info['voters_after']} could not meet the quorum of {info['quorum_after']}, and the cluster would "
        "stop accepting writes. Bring members back first, or set force=true if you know why this is safe."
    )


# A reply that never came: the change may be applied late, or raft may have dropped it (etcd's
# ProposeConfChange does not wait, so a dropped conf change is never reported: the request waits for its
# deadline). Everything else etcd answers is a definite refusal.
UNCERTAIN = ("deadline exceeded", "request timed out", "timed out", "leader changed")
MAX_REMOVE_ATTEMPTS = 3


def outcome_unknown(exc):
    """Whether a failed change may still have been applied (its reply timed out) rather than refused."""
    return exc.kind == "timeout" or any(n in str(exc).lower() for n in UNCERTAIN)


def raft_view(status):
    """Leader (hex or None), term, committed and applied index from one status reply (gateway JSON)."""
    leader = status.get("leader", "0")
    return {
        "member": id_to_hex(status.get("header", {}).get("member_id", "0")),
        "leader": id_to_hex(leader) if leader not in ("0", 0, None) else None,
        "term": int(status.get("raftTerm", 0) or 0),
        "index": int(status.get("raftIndex", 0) or 0),
        "applied": int(status.get("raftAppliedIndex", 0) or 0),
    }


def leader_settled(via, leader, read_ok):
    """Why a conf change proposed now could be dropped (a sentence), or None when the leader is settled.

    `via` is the raft view of the endpoint the change goes through, `leader` that of the leader itself
    (None when unreachable), `read_ok` whether a linearizable read through `via` just succeeded. raft drops
    a conf change proposed with no leader, and one proposed to a leader that still has an unapplied conf
    change - which every new leader has until it commits an entry of its own term (it sets its pending
    conf index to its last index). A linearizable read succeeds only once the leader has committed an
    entry of its term. The leader must also have applied what `via` saw committed before the read (not
    all it has committed now: on a busy cluster that is always a few entries ahead).
    """
    if via["leader"] is None:
        return f"{via['member']} has no leader at term {via['term']}"
    if not read_ok:
        return (
            f"a linearizable read through {via['member']} failed: leader {via['leader']} has not committed "
            f"an entry of term {via['term']} yet"
        )
    if leader is None:
        return f"the leader {via['leader']} does not answer"
    if leader["term"] != via["term"] or leader["leader"] != via["leader"]:
        return f"the leader changed (term {via['term']} -> {leader['term']})"
    if leader["applied"] < via["index"]:
        return f"the leader {via['leader']} has applied {leader['applied']} of {via['index']} committed"
    return None


def settle(params, endpoint, members, deadline, waited=None):
    """Wait (until `deadline`, monotonic) until the leader that `endpoint` follows is settled (see
    leader_settled); return the leader's raft view. Raises EtcdError naming what was not reached."""
    urls = {m["id"]: m["client_urls"][0] for m in members if m["client_urls"]}
    start, first_why = time.monotonic(), None
    while True:
        try:
            with client_from_params(endpoint, params) as client:
                via = raft_view(client.status().data)
                try:
                    client.range(b"\x00", limit=1)  # linearizable (ReadIndex): needs a commit of this term
                    read_ok = True
                except EtcdError:
                    read_ok = False
            leader = None
            if via["leader"] is not None and via["leader"] in urls:
                try:
                    with client_from_params(urls[via["leader"]], params) as client:
                        leader = raft_view(client.status().data)
                except EtcdError:
                    leader = None
            elif via["leader"] is not None and via["leader"] == via["member"]:
                leader = via
            why = leader_settled(via, leader, read_ok)
        except EtcdError as exc:
            why = str(exc)
        if why is None:
            if first_why and waited is not None:
                waited.append(
                    f"Waited {time.monotonic() - start:.1f} s for a settled leader before proposing "
                    f"({first_why})."
                )
            return leader
        first_why = first_why or why
        if time.monotonic() > deadline:
            raise EtcdError(
                f"No settled leader to propose a membership change to within "
                f"{params['settle_timeout']:g} s: {why}"
            )
        time.sleep(0.2)


def decide_remove(target, before, at_timeout, after, members, error):
    """After a removal whose reply never came: (verdict, one sentence). verdict is "applied" (the member
    list no longer has the target: applied late) or "dropped" (it still has it: it was never proposed, or
    raft dropped it, so proposing it again is safe). before/after are the leader's raft views before the
    proposal and now; at_timeout is the view of the endpoint the removal went through, read as soon as the
    reply was overdue (None when it did not answer)."""
    names = {m["id"]: m["name"] or m["id"] for m in members} | {target["id"]: target["name"] or target["id"]}

    def lead(view):
        return f"{names.get(view['leader'], view['leader'])} at term {view['term']}"

    who = f"{target['name'] or target['id']} (id {target['id']})"
    if all(m["id"] != target["id"] for m in members):
        return "applied", (
            f"The removal of {who} got no reply ({error}) but was applied late: the member list no longer "
            f"has it (leader {lead(after)})."
        )
    changed = (after["leader"], after["term"]) != (before["leader"], before["term"])
    if at_timeout is not None and at_timeout["leader"] is None:
        cause = (
            f"{names.get(at_timeout['member'], at_timeout['member'])} had no leader at term "
            f"{at_timeout['term']} "
            "when the reply was due (an election was going on; etcd waits for a leader to propose a conf "
            "change, and gives up at the request's deadline)"
            + (
                f"; the leader went from {lead(before)} to {lead(after)}"
                if changed
                else f"; {lead(after)} leads again"
            )
        )
    elif at_timeout is None:
        cause = f"the member it went through did not answer when the reply was due (leader now {lead(after)})"
    elif changed:
        cause = (
            f"the leader changed from {lead(before)} to {lead(after)} while it was pending (raft drops a "
            "conf change that reaches no leader, or a leader that has not yet committed an entry of its term)"
        )
        if before["leader"] == target["id"]:
            cause += f"; {target['name'] or target['id']} was itself the leader"
    else:
        cause = (
            f"no leader change (leader {lead(after)}): raft ignores a conf change proposed while the leader "
            "still has another one unapplied"
        )
    return (
        "dropped",
        f"The removal of {who} got no reply ({error}) and was dropped: the member list still has it; "
        f"{cause}.",
    )


def remove_member(params, endpoint, members, target):
    """Remove `target`, proposing only to a settled leader; after a reply that never came, read the member
    list again and propose again only when the removal was dropped. Returns (members, attempts, notes)."""
    notes = []
    for attempt in range(1, MAX_REMOVE_ATTEMPTS + 1):
        before = settle(params, endpoint, members, time.monotonic() + params["settle_timeout"], notes)
        try:
            with client_from_params(endpoint, params) as client:
                reply = client.member_remove(hex_to_id(target["id"])).data
        except EtcdError as exc:
            if not outcome_unknown(exc):
                raise
            at_timeout = view_of(params, endpoint)
            endpoint, members = gather_when_led(params, time.monotonic() + params["settle_timeout"])
            after = settle(params, endpoint, members, time.monotonic() + params["settle_timeout"])
            verdict, sentence = decide_remove(target, before, at_timeout, after, members, exc)
            if verdict == "applied":
                notes.append(sentence)
                return members, attempt, notes
            if attempt == MAX_REMOVE_ATTEMPTS:
                raise EtcdError(f"{sentence} Gave up after {attempt} attempts.") from None
            notes.append(f"{sentence} Proposing it again (attempt {attempt + 1}).")
            continue
        known = {m["id"]: m["healthy"] for m in members}
        after_members = [parse_member(m) for m in reply.get("members", [])]
        for m in after_members:
            m["healthy"] = known.get(m["id"], False)
        return after_members, attempt, notes
    raise AssertionError("unreachable")


def view_of(params, endpoint):
    """The raft view of one endpoint, or None when it does not answer."""
    try:
        with client_from_params(endpoint, params) as client:
            return raft_view(client.status().data)
    except EtcdError:
        return None


def gather_when_led(params, deadline, waited=None):
    """gather(), waiting (until `deadline`) for an endpoint that follows a leader. With a list `waited`,
    append one sentence when it had to wait (how long, and what the members said meanwhile)."""
    start, first_error = time.monotonic(), None
    while True:
        try:
            out = gather(params)
        except EtcdError as exc:
            first_error = first_error or str(exc)
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
            continue
        if first_error and waited is not None:
            waited.append(
                f"Waited {time.monotonic() - start:.1f} s for a leader before proposing (an election was "
                f"going on: {first_error})."
            )
        return out


def add_member(params, endpoint, peer_urls, pause=0.5):
    """member_add through endpoint, asked again while etcd refuses it as an unhealthy cluster (a definite
    refusal, nothing applied) until settle_timeout; (reply, attempts)."""
    deadline = time.monotonic() + params["settle_timeout"]
    attempts = 0
    while True:
        attempts += 1
        try:
            with client_from_params(endpoint, params) as client:
                return client.member_add(peer_urls, is_learner=params["learner"]).data, attempts
        except EtcdError as exc:
            if "unhealthy cluster" not in str(exc) or time.monotonic() + pause > deadline:
                raise
        time.sleep(pause)


def wait_until_safe(params, endpoint, members, info, waited, pause=0.5):
    """Before an add that the quorum check refuses: look again every half second, up to settle_timeout, while
    it refuses (a voter that was just healed, restarted or paused by ptrace misses a heartbeat or two and
    follows no leader for a moment). (endpoint, members, info) of the last look; a sentence in `waited`."""
    start = time.monotonic()
    deadline = start + params["settle_timeout"]
    first = info["healthy_voters_after"]
    looks = 0
    while not info["safe"] and time.monotonic() + pause <= deadline:
        time.sleep(pause)
        looks += 1
        try:
            endpoint, members = gather(params, need_leader=True)
        except EtcdError:
            continue
        info = quorum_check(members, "add", None)
    if looks:
        waited.append(
            f"The quorum check refused the add at first ({first} healthy voter(s) "
            f"after it); looked again {looks} time(s) in {time.monotonic() - start:.1f} s: "
            + ("safe now." if info["safe"] else "still refused.")
        )
    return endpoint, members, info


def run(params, check_mode=False):
    check_params(params)
    state = params["state"]
    waited = []
    if state in ("absent", "present"):
        # A change waits for a leader: an election right after a change is common (an add right after a
        # removal found both members of a 2-voter cluster without a leader for several seconds).
        endpoint, members = gather_when_led(params, time.monotonic() + params["settle_timeout"], waited)
    else:
        endpoint, members = gather(params, need_leader=state != "list")
    result = {"changed": False, "action": "none", "endpoint": endpoint, "warnings": []}
    if state == "list" and not any(m["healthy"] for m in members):
        result["warnings"].append(f"No member follows a leader; the list is what {endpoint} knows")
    name, member_id, peer_urls = params.get("name"), params.get("id"), params.get("peer_urls")

    if state == "list":
        result["members"] = members
        result["quorum"] = quorum_check(members, "none")
        return result

    if state == "present":
        target = find_member(members, name=name, peer_urls=peer_urls)
        result["initial_cluster"] = initial_cluster(members, name, peer_urls)
        if target is not None:
            if {normalize_url(u) for u in target["peer_urls"]} != {normalize_url(u) for u in peer_urls}:
                raise EtcdError(
                    f"Member {name} exists with peer URLs {', '.join(target['peer_urls'])}, not "
                    f"{', '.join(peer_urls)}: remove it first (state=absent) to re-add it with new URLs"
                )
            if target["is_learner"] and not params["learner"]:
                result["warnings"].append(
                    f"{name} exists as a learner; use state=promoted to make it a voter"
                )
            result["member"] = target
            result["members"] = members
            result["quorum"] = quorum_check(members, "none")
            return result
        action = "add"
        info = quorum_check(members, "none" if params["learner"] else "add", None)
        if not params["learner"] and not info["safe"] and not params["force"]:
            if not check_mode:
                endpoint, members, info = wait_until_safe(params, endpoint, members, info, waited)
            if not info["safe"]:
                raise refuse(info, f"add voter {name}")
        result.update(action=action, changed=True, quorum=info)
        planned = {
            "id": None,
            "name": name,
            "peer_urls": list(peer_urls),
            "client_urls": [],
            "is_learner": bool(params["learner"]),
            "started": False,
            "healthy": False,
        }
        result["initial_cluster"] = initial_cluster([*members, {**planned, "name": ""}], name, peer_urls)
        if check_mode:
            result["member"] = planned
            result["members"] = members
            return result
        reply, result["add_attempts"] = add_member(params, endpoint, peer_urls)
        result["add_notes"] = waited
        added = parse_member(reply.get("member", {}))
        added["healthy"] = False
        result["member"] = added
        result["members"] = [parse_member(m) | {"healthy": False} for m in reply.get("members", [])]
        known = {m["id"]: m["healthy"] for m in members}
        for m in result["members"]:
            m["healthy"] = known.get(m["id"], False)
        return result

    target = find_member(members, name=name, member_id=member_id)
    who = name or member_id
    if state == "absent":
        if target is None:
            result["members"] = members
            result["quorum"] = quorum_check(members, "none")
            return result
        info = quorum_check(members, "remove", target)
        if not info["safe"] and not params["force"]:
            raise refuse(info, f"remove {who}")
        result.update(action="remove", changed=True, quorum=info, member=target)
        if check_mode:
            result["members"] = members
            return result
        result["members"], result["remove_attempts"], notes = remove_member(params, endpoint, members, target)
        result["remove_notes"] = waited + notes
        return result

    # promoted
    if target is None:
        known = ", ".join(m["name"] or m["id"] for m in members)
        raise EtcdError(f"No member {who} in the cluster (members: {known})")
    if not target["is_learner"]:
        result.update(member=target, members=members, quorum=quorum_check(members, "none"))
        return result
    info = quorum_check(members, "promote", target)
    if not info["safe"] and not params["force"]:
        raise refuse(info, f"promote {who}")
    result.update(action="promote", changed=True, quorum=info, member=target)
    if check_mode:
        result["members"] = members
        return result
    with client_from_params(endpoint, params) as client:
        reply = client.member_promote(hex_to_id(target["id"])).data
    known = {m["id"]: m["healthy"] for m in members}
    result["members"] = [parse_member(m) for m in reply.get("members", [])]
    for m in result["members"]:
        m["healthy"] = known.get(m["id"], False)
    result["member"] = next((m for m in result["members"] if m["id"] == target["id"]), target)
    return result


def argument_spec():
    spec = {
        "endpoints": {"type": "list", "elements": "str", "required": True},
        "state": {"type": "str", "default": "list", "choices": ["list", "present", "absent", "promoted"]},
        "name": {"type": "str"},
        "id": {"type": "str"},
        "peer_urls": {"type": "list", "elements": "str"},
        "learner": {"type": "bool", "default": False},
        "force": {"type": "bool", "default": False},
        "settle_timeout": {"type": "float", "default": 30.0},
    }
    spec.update(ETCD_COMMON_ARGUMENT_SPEC)
    return spec


def main():
    module = etcd_module(argument_spec(), mutually_exclusive=[("name", "id")])
    result = run_or_fail(
        module, lambda: run(module.params, module.check_mode), etcd_message=lambda e: str(with_hint(e))
    )
    warnings = result.pop("warnings", [])
    for w in warnings:
        module.warn(w)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
