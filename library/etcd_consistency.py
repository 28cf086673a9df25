#!/usr/bin/python
# Copyright: etcd split-brain lab contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Is the cluster one cluster again: membership, leader, hashkv at one revision, and the write ledger."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: etcd_consistency
short_description: Check that an etcd cluster is one consistent cluster, and that acknowledged writes survived
description:
  - Asks every endpoint for its status, member list and (where it has a leader) alarms, then checks - every
    member answers; all report the same membership, which has O(expected_members) and only started members;
    exactly one leader; no alarm.
  - Compares C(HashKV) at one fixed revision that every member has applied - the lowest current revision among
    the members, so writers may keep writing - asking each member over gRPC (the JSON gateway does not serve
    it), as etcd's own corruption check does. Equal means the same hash and the same compact revision. A
    revision at or below a member's compaction is reported as such; it, different compact revisions (a
    compaction being applied) and a member that cannot answer are retried at a new revision up to
    O(settle_timeout).
  - With O(ledger_dir), audits the write ledger (one JSON object per acknowledged operation - op, key,
    value, endpoint, revision, and for a put with a lease the lease ID; a line without C(op) is a put)
    against the cluster's keys. A put counts as kept when the cluster holds its value; when a later
    operation of the same history changed the key (a later ledger entry, or the key's mod revision); when
    its value sits under O(quarantine_prefix); when the conflict report (O(report_path)) lists it (also
    under C(leased_only_on_fork)); or, for a put with a lease, when that lease is no longer alive in the
    cluster (etcd removed the key with its lease). A delete counts as kept when the key is absent; when a
    later operation of the same history recreated it; or, for a fork's delete, when the report lists the
    key under C(deleted_on_fork). A put whose key is gone with no acknowledged delete is accounted for
    when a delete of that key failed (the writers' C(<ledger>.failures) files) - a request that timed out
    may have been applied - and counted apart; a failed delete from before the put was acknowledged counts
    only when the cluster's history holds the put at its revision. A request forwarded by a member just
    cut off from its leader can reach the leader when the partition heals, after later writes (measured
    on etcd 3.5.1). Operations that a forked member acknowledged
    after the split (O(forked_endpoints), revisions above the last revision of its puts still in the
    cluster's history and above the fork's C(fork_revision) in the report) form a history of their own.
  - Never changes anything. Each check is a result with C(name), C(ok) and C(detail); the module fails
    only on bad arguments.
version_added: "1.0.0"
options:
  endpoints:
    description:
      - Client URLs of every member, C(http(s)://HOST:PORT).
    type: list
    elements: str
    required: true
  expected_members:
    description:
      - Names that the membership must hold.
    type: list
    elements: str
    default: []
  settle_timeout:
    description:
      - Seconds to keep retrying the C(HashKV) comparison (at a new fixed revision) while a member cannot
        answer it, the revision is compacted on a member, or the members' compact revisions differ.
        Different hashes at one revision fail at once.
    type: float
    default: 15.0
  ledger_dir:
    description:
      - Directory of the ledgers (C(*.jsonl)); no ledger audit without it.
    type: path
  forked_endpoints:
    description:
      - Client URLs of members that were forked (their writers' later writes form a separate history).
    type: list
    elements: str
    default: []
  quarantine_prefix:
    description:
      - Prefix under which a recovery keeps the fork's values of conflicting keys.
    type: str
    default: /recovery/quarantine/
  report_path:
    description:
      - A conflict report written by C(etcd_reconcile operation=report); its fork values count as listed.
    type: path
  missing_path:
    description:
      - Write every ledger operation that is neither kept nor reported to this JSON file (a list), for a
        report of what a restore lost. Not written in check mode.
    type: path
extends_documentation_fragment:
  - etcd_connection
  - lab_module
attributes:
  check_mode:
    details: Only reads.
"""

EXAMPLES = r"""
- name: Check that the cluster is one again and no acknowledged write was lost
  etcd_consistency:
    endpoints: [http://198.18.213.11:2379, http://198.18.213.12:2379, http://198.18.213.13:2379]
    expected_members: [etcd-0, etcd-1, etcd-2]
    ledger_dir: .lab/ledger
    forked_endpoints: [http://198.18.213.13:2379]
    report_path: .lab/recovery/conflicts.json
  register: check
"""

RETURN = r"""
ok:
  description: Whether every check passed.
  returned: always
  type: bool
checks:
  description: One entry per check, C(name), C(ok), C(detail).
  returned: always
  type: list
  elements: dict
revision:
  description:
    - The fixed revision the hashes were compared at, the lowest current revision among the members (null when
      not every member answered).
  returned: always
  type: int
hashes:
  description:
    - Member name to C(HashKV) hash at RV(revision), or C(error - ...) where the member could not answer.
  returned: always
  type: dict
ledger:
  description:
    - Ledger audit counts, C(entries), C(present), C(superseded), C(quarantined), C(listed), C(deleted)
      (deletes in effect), C(expired) (puts whose lease is gone), C(maybe_deleted), C(missing),
      C(after_read) (acknowledged after the cluster was read, by writers still running; not judged),
      C(failed_but_applied) (puts no client saw succeed - every attempt is in the writers'
      C(<ledger>.failures) files, none in a ledger - whose value the cluster holds all the same, under the
      key, in quarantine or in the report; not a fault, a lower bound), and
      C(missing_items) (up to 20 operations that are neither in effect, superseded nor in the report; the
      first five carry C(trace), what the cluster's history says of each - C(at_revision), the key's value
      and mod revision at the operation's revision or null, and C(later_events), the key's events after it
      up to the audit's read - or C(error) where the history could not be read).
  returned: when O(ledger_dir) is given
  type: dict
"""

import glob
import json
import os
import time
from datetime import UTC, datetime

from ansible.module_utils.etcd_client import (
    ETCD_COMMON_ARGUMENT_SPEC,
    client_from_params,
    etcd_module,
    watch_history,
)
from ansible.module_utils.etcd_codec import id_to_hex, parse_kv, parse_member
from ansible.module_utils.etcd_diagnosis import compare_hashkv, fixed_revision, hashkv_at
from ansible.module_utils.etcd_errors import EtcdError, exit_with_run
from ansible.module_utils.etcd_probe import parallel_map, probe_member


def probe(params, endpoint):
    """A member's id, leader, revision, members and alarms; reachable only when all of them were read (an
    alarm list that could not be read is not taken for none)."""
    got = probe_member(endpoint, params, members=True, alarms=True)
    error = got["error"] or got["alarms_error"]
    if got["status"] is None or got["members"] is None or error:
        return {"endpoint": endpoint, "reachable": False, "error": error}
    st = got["status"]
    leader = id_to_hex(st["leader"]) if int(st.get("leader", 0) or 0) else None
    return {
        "endpoint": endpoint,
        "reachable": True,
        "member_id": id_to_hex(st.get("header", {}).get("member_id")),
        "leader": leader,
        "revision": int(st.get("header", {}).get("revision", 0)),
        "members": [parse_member(m) for m in got["members"].get("members", [])],
        "alarms": (got["alarms"] or {}).get("alarms", []) if leader else [],
    }


def check(name, ok, detail):
    return {"name": name, "ok": bool(ok), "detail": detail}


def cluster_checks(params):
    endpoints = params["endpoints"]
    probes = parallel_map(lambda e: probe(params, e), endpoints)
    checks = []
    down = [p for p in probes if not p["reachable"]]
    up = [p for p in probes if p["reachable"]]
    checks.append(
        check(
            "all members answer",
            not down,
            "every member answers" if not down else "; ".join(p["error"] for p in down),
        )
    )
    names = {}
    for p in up:
        for m in p["members"]:
            names[m["id"]] = m["name"] or m["peer_urls"][0]
    by_id = {p["member_id"]: p for p in up}
    memberships = {tuple(sorted(m["id"] for m in p["members"])) for p in up}
    member_names = sorted(names[i] for i in (next(iter(memberships)) if memberships else ()))
    one = len(memberships) == 1
    checks.append(
        check(
            "one membership seen by all members",
            one and up,
            f"all report {', '.join(member_names)}"
            if one
            else "memberships differ: "
            + "; ".join(
                f"{names.get(p['member_id'], p['endpoint'])} sees "
                + ", ".join(sorted(names[m["id"]] for m in p["members"]))
                for p in up
            ),
        )
    )
    expected = sorted(params["expected_members"] or [])
    if expected:
        checks.append(
            check(
                "membership is the original one",
                one and member_names == expected,
                f"expected {', '.join(expected)}, found {', '.join(member_names)}",
            )
        )
    unstarted = sorted({names[m["id"]] for p in up for m in p["members"] if not m["started"]})
    learners = sorted({names[m["id"]] for p in up for m in p["members"] if m["is_learner"]})
    checks.append(
        check(
            "all members started voters",
            not unstarted and not learners and not down,
            "every member has started and votes"
            if not unstarted and not learners and not down
            else f"not started: {unstarted or '-'}; learners: {learners or '-'}; "
            f"not answering: {[p['endpoint'] for p in down] or '-'}",
        )
    )
    leaders = sorted({p["leader"] for p in up if p["leader"]})
    leaderless = [names.get(p["member_id"], p["endpoint"]) for p in up if not p["leader"]]
    checks.append(
        check(
            "exactly one leader",
            len(leaders) == 1 and not leaderless,
            f"leader {names.get(leaders[0], leaders[0])}"
            if len(leaders) == 1 and not leaderless
            else f"leaders {[names.get(x, x) for x in leaders]}, without a leader {leaderless}",
        )
    )
    alarms = [a for p in up for a in p["alarms"]]
    checks.append(check("no alarms", not alarms, "no alarm" if not alarms else json.dumps(alarms)))
    return probes, checks, names, by_id


def hash_check(params, probes, names, wait=True):
    """HashKV of every member at one fixed revision that all of them have applied (no waiting for writers
    to pause): the lowest current revision (fixed_revision). Retried with a new revision, up to
    settle_timeout, unless the hashes were compared (equal, or different: a real difference)."""
    name = "hashkv equal at one revision"
    up = [p for p in probes if p["reachable"]]
    if not up or len(up) != len(probes):
        return check(name, False, "not every member answers"), None, {}
    deadline = time.monotonic() + (params["settle_timeout"] if wait else 0)
    while True:
        label = {p["endpoint"]: names.get(p["member_id"], p["endpoint"]) for p in up}
        revision = fixed_revision({label[p["endpoint"]]: p["revision"] for p in up})
        replies = hashkv_at(params, {label[p["endpoint"]]: p["endpoint"] for p in up}, revision)
        verdict, detail = compare_hashkv(revision, replies)
        if verdict in ("equal", "differ") or time.monotonic() > deadline:
            break
        time.sleep(0.5)
        up = [probe(params, p["endpoint"]) for p in up]
        if not all(p["reachable"] for p in up):
            return check(name, False, "a member stopped answering"), None, {}
    current = ", ".join(f"{label[p['endpoint']]}={p['revision']}" for p in up)
    hashes = {n: (r["hash"] if "error" not in r else f"error: {r['error']}") for n, r in replies.items()}
    return (
        check(name, verdict == "equal", f"{detail} (the lowest current revision of {current})"),
        revision,
        hashes,
    )


class ClusterKeys(dict):
    """{key: (value, mod_revision)}, read at one revision (attribute revision; None when unknown), and
    read_at: the UTC time (ISO 8601, the ledgers' format) just before the read was sent."""

    revision = None
    read_at = None


def read_cluster(params, endpoint):
    """Every key of the cluster at one revision: {key: (value, mod_revision)} (text keys; a linearizable first
    read, the next pages at its revision)."""
    out = ClusterKeys()
    out.read_at = datetime.now(UTC).isoformat(timespec="milliseconds")
    with client_from_params(endpoint, params) as client:
        start, revision = b"\x00", 0
        while True:
            data = client.range(start, b"\x00", limit=5000, revision=revision).data
            revision = revision or int(data.get("header", {}).get("revision", 0))
            out.revision = revision
            kvs = data.get("kvs") or []
            for kv in kvs:
                f = parse_kv(kv)
                out[f["key"].decode(errors="replace")] = (
                    f["value"].decode(errors="replace"),
                    f["mod_revision"],
                )
            if not data.get("more") or not kvs:
                return out
            start = parse_kv(kvs[-1])["key"] + b"\x00"


def live_leases(params, endpoint):
    """The IDs (lowercase hex) of the cluster's live leases."""
    with client_from_params(endpoint, params) as client:
        leases = client.call("/v3/lease/leases", {}).data.get("leases") or []
    return {id_to_hex(item.get("ID")) for item in leases}


def load_ledger(ledger_dir):
    """Every ledger entry; a line without "op" (an older ledger) is a put."""
    entries = []
    for path in sorted(glob.glob(os.path.join(ledger_dir, "*.jsonl"))):
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    entry = json.loads(line)
                    entry.setdefault("op", "put")
                    entries.append(entry)
    return entries


def load_failures(ledger_dir):
    """The operations whose clients saw them fail (the writers' <ledger>.failures files). A request that
    timed out may still have been applied."""
    out = []
    for path in sorted(glob.glob(os.path.join(ledger_dir, "*.jsonl.failures"))):
        with open(path, encoding="utf-8") as f:
            for line in f:
                try:
                    out.append(json.loads(line))
                except ValueError:
                    continue  # a torn last line of a writer that was killed
    return out


def failed_deletes(failures):
    """{key: [times]} of the deletes that failed: a key can be gone without an acknowledged delete."""
    out = {}
    for entry in failures:
        if entry.get("op") == "delete":
            out.setdefault(entry["key"], []).append(entry["time"])
    return out


def failed_puts_applied(failures, entries, cluster, quarantined_values, listed):
    """How many puts no client saw succeed (each attempt failed, none is in a ledger) have their value in the
    cluster all the same (under the key, in quarantine, or in the conflict report): a request that timed out
    is not one that failed. A lower bound: one that took effect and was overwritten since leaves no trace."""
    acknowledged = {(e["key"], e["value"]) for e in entries if e["op"] == "put"}
    applied = set()
    for entry in failures:
        key, value = entry.get("key"), entry.get("value")
        if entry.get("op") != "put" or key is None or value is None or (key, value) in acknowledged:
            continue
        now = cluster.get(key)
        if (now and now[0] == value) or value in quarantined_values.get(key, ()) or (key, value) in listed:
            applied.add((key, value))
    return len(applied)


def report_listings(report_path):
    """From a conflict report: the (key, value) writes it lists, the keys of the fork deletes it lists, and
    each fork's fork point (the last revision both histories share), keyed by the fork's endpoint and by the
    member it stands for ("name:<member>"; a data dir read through a private copy has a loopback endpoint,
    and its report entry "etcd-2@data.moved-..." stands for etcd-2 too, when no entry "etcd-2" does); last,
    the authoritative side's revision when the forks were compared (0 without a report)."""
    listed, deleted, points, compared = set(), set(), {}, 0
    if not report_path or not os.path.exists(report_path):
        return listed, deleted, points, compared
    with open(report_path, encoding="utf-8") as f:
        report = json.load(f)
    for fork in report.get("forks", []):
        for c in fork.get("conflicts", []):
            listed.add((c["key"], c["right"]["value"]))
        for e in fork.get("only_fork", []) + fork.get("leased_only_on_fork", []):
            listed.add((e["key"], e["value"]))
        for e in fork.get("deleted_on_fork", []):
            deleted.add(e["key"])
        compared = max(compared, int((fork.get("authoritative") or {}).get("revision") or 0))
        if fork.get("fork_revision") and (fork.get("fork") or {}).get("endpoint"):
            points[fork["fork"]["endpoint"]] = int(fork["fork_revision"])
        if fork.get("fork_revision") and fork.get("member"):
            name, _, dir_name = fork["member"].partition("@")
            if not dir_name or "name:" + name not in points:
                points["name:" + name] = int(fork["fork_revision"])
    for e in report.get("lost", []):
        listed.add((e["key"], e.get("value")))  # a lost delete has the value null
    return listed, deleted, points, compared


LEDGER_SETTLE = 1.0  # seconds: a writer appends its ledger line right after etcd's reply


def audit(params, endpoint, endpoint_names=None, following=None):
    """Account for every ledger operation; endpoint_names ({client URL: member name}, from the probes) finds
    a fork's fork point in the report when the report read it through another endpoint.

    Writers may still be writing (verify.yml grades a running lab): the cluster is read first, at one
    revision, then the ledgers; operations of the cluster's history acknowledged after that revision are not
    judged. A write the read saw superseded can lack its superseding line for the moment between etcd's reply
    and the writer's append: what looks missing is judged once more on the ledgers read again a moment later.
    """
    cluster = read_cluster(params, endpoint)
    entries = load_ledger(params["ledger_dir"])
    leases = live_leases(params, endpoint) if any(e.get("lease") for e in entries) else set()

    held = {}

    def held_at(e):
        """Whether the cluster's history holds e's value for e's key at e's revision (cached; False when
        the history cannot tell, compacted or not answering)."""
        if (e["key"], e["revision"]) not in held:
            try:
                with client_from_params(endpoint, params) as client:
                    kvs = client.range(e["key"].encode(), revision=e["revision"]).data.get("kvs") or []
                held[(e["key"], e["revision"])] = bool(kvs) and _shown(kvs[0]) == e["value"]
            except EtcdError:
                held[(e["key"], e["revision"])] = False
        return held[(e["key"], e["revision"])]

    def judged(entries):
        failures = load_failures(params["ledger_dir"])
        return judge(params, entries, failures, cluster, leases, endpoint_names, following, held_at=held_at)

    result = judged(entries)
    if result[1]["missing"] and getattr(cluster, "revision", None):
        time.sleep(LEDGER_SETTLE)
        result = judged(load_ledger(params["ledger_dir"]))
    lcheck, counts, missing = result
    read_revision = getattr(cluster, "revision", None)
    if missing and read_revision:
        try:
            traced = trace_missing(params, endpoint, missing, read_revision)
        except EtcdError as exc:  # the trace explains a failure; it never turns one into an error
            traced = f"not traced ({exc})"
        if traced:
            lcheck["detail"] += f"; etcd's history: {traced}"
    return lcheck, counts, missing


TRACE_ITEMS = 5  # missing operations traced through etcd's history
TRACE_REVISIONS = 50000  # at most this many revisions watched for their later events
TRACE_EVENTS = 10  # later events kept per traced key


def _shown(kv):
    return parse_kv(kv)["value"].decode(errors="replace")


def trace_missing(params, endpoint, missing, read_revision):
    """What the cluster's own history says about the first missing operations, added to each as "trace":
    the key at the operation's revision (a range at that revision) and the key's events after it, up to
    the revision the audit read. A put whose value the history does not hold at its revision was written in
    another history (or lost); an event after it that no ledger has is a change nobody acknowledged (a
    client killed between etcd's reply and its ledger line). Best effort: a compacted revision or an error
    is noted in the trace. Returns the first trace in words (empty when nothing could be traced)."""
    items = [m for m in missing[:TRACE_ITEMS] if m.get("revision")]
    if not items:
        return ""
    keys = {m["key"] for m in items}
    later = {key: [] for key in keys}
    start = min(m["revision"] for m in items) + 1
    with client_from_params(endpoint, params) as client:
        for m in items:
            try:
                kvs = client.range(m["key"].encode(), revision=m["revision"]).data.get("kvs") or []
                m["trace"] = {
                    "at_revision": {"value": _shown(kvs[0]), "mod_revision": parse_kv(kvs[0])["mod_revision"]}
                    if kvs
                    else None
                }
            except EtcdError as exc:
                m["trace"] = {"error": str(exc)}
        if read_revision - start < TRACE_REVISIONS:
            try:
                for kind, key, revision, kv in watch_history(client, start, read_revision):
                    events = later.get(key.decode(errors="replace"))
                    if events is not None and len(events) < TRACE_EVENTS:
                        events.append({"type": kind, "revision": revision, "value": _shown(kv) or None})
            except EtcdError as exc:
                for m in items:
                    m["trace"].setdefault("error", str(exc))
                later = {}
    for m in items:
        if m["key"] in later:
            m["trace"]["later_events"] = [e for e in later[m["key"]] if e["revision"] > m["revision"]]
    return trace_words(items[0])


def trace_words(item):
    """One missing operation's trace as a sentence."""
    trace = item.get("trace") or {}
    if "at_revision" not in trace:
        return f"{item['key']} at revision {item['revision']}: {trace.get('error', 'not traced')}"
    at = trace["at_revision"]
    held = f"{at['value']!r} (mod revision {at['mod_revision']})" if at else "nothing"
    words = f"{item['key']} at revision {item['revision']} held {held}"
    if "later_events" in trace:
        events = trace["later_events"]
        words += "; then " + (
            ", ".join(
                f"{e['type']} at {e['revision']}" + (f" {e['value']!r}" if e["value"] is not None else "")
                for e in events
            )
            if events
            else "no event of the key"
        )
    elif trace.get("error"):
        words += f"; later events unknown ({trace['error']})"
    return words


def judge(params, entries, failures, cluster, leases, endpoint_names=None, following=None, held_at=None):
    """The ledger audit proper, against one read of the cluster. failures: the operations whose clients saw
    them fail (load_failures). following: {client URL: member id} of the members that follow the cluster's
    leader (from the probes). held_at(entry): whether the cluster's history holds a put at its revision
    (None: nothing is asked)."""
    unknown_deletes = failed_deletes(failures)
    read_revision = getattr(cluster, "revision", None)
    read_at = getattr(cluster, "read_at", None)
    qprefix = params["quarantine_prefix"].rstrip("/") + "/"
    quarantined_values = {}
    for key, (value, _rev) in cluster.items():
        if key.startswith(qprefix):
            rest = key[len(qprefix) :]
            if "/" in rest:
                original = rest[rest.index("/") :]
                quarantined_values.setdefault(original, set()).add(value)
    listed, listed_deletes, report_points, compared = report_listings(params["report_path"])
    forked = set(params["forked_endpoints"] or [])
    # The member that answered through each forked endpoint first: a forced member keeps its id, while one
    # added again under the same name (by an operator, or by an earlier recovery) has a new one, and what
    # it acknowledged through the same endpoint is the cluster's history.
    fork_member = {}
    for e in sorted(entries, key=lambda x: x.get("time", "")):
        if e.get("endpoint") in forked:
            fork_member.setdefault(e["endpoint"], e.get("member_id"))
    # The fork point of each forked writer: the report's fork point (the last revision both histories share,
    # read from etcd), found by its endpoint or by the member name the endpoint answers as, when it has one;
    # else the last revision of its puts that are still in the cluster's own history (same value at the same
    # mod revision - a guess: a replayed key can land at the same revision by chance). Its later operations
    # are the fork's history.
    fork_point = {}
    for e in forked:
        point = report_points.get(e, report_points.get("name:" + ((endpoint_names or {}).get(e) or "")))
        if point is not None:
            fork_point[e] = point
    # A forced endpoint whose member follows the cluster's leader under the very id it first wrote with, and
    # that no report compared, never split (the safeguards scenario builds a whole cluster; the lab's planned
    # forced member wrote on, and a guessed fork point made its puts superseded by other writers look lost).
    for e, member_now in (following or {}).items():
        first_writer = fork_member.get(e)
        if e in forked and e not in fork_point and first_writer is not None and member_now == first_writer:
            forked.discard(e)
    known = set(fork_point)
    for e in entries:
        if (
            e.get("endpoint") in forked
            and e["endpoint"] not in known
            and e["op"] == "put"
            and e.get("member_id") == fork_member[e["endpoint"]]
        ):
            now = cluster.get(e["key"])
            if now and now[0] == e["value"] and now[1] == e["revision"]:
                fork_point[e["endpoint"]] = max(fork_point.get(e["endpoint"], 0), e["revision"])

    def history(e):
        endpoint = e.get("endpoint")
        if (
            endpoint in forked
            and e["revision"] > fork_point.get(endpoint, 0)
            and e.get("member_id") == fork_member.get(endpoint, e.get("member_id"))
        ):
            return "fork:" + endpoint
        return "main"

    # The last operation (put or delete) of each key in each history. A delete's revision is its reply's
    # header revision; a delete of a missing key does not change the revision, so a put with the same
    # revision came before it.
    latest = {}
    for e in entries:
        k = (history(e), e["key"])
        latest[k] = max(latest.get(k, 0), e["revision"])
    counts = {
        "entries": len(entries),
        "present": 0,
        "superseded": 0,
        "quarantined": 0,
        "listed": 0,
        "deleted": 0,
        "expired": 0,
        "maybe_deleted": 0,
        "missing": 0,
        "after_read": 0,
        "failed_but_applied": failed_puts_applied(failures, entries, cluster, quarantined_values, listed),
    }
    missing = []
    for e in entries:
        key, h = e["key"], history(e)
        # Acknowledged after the cluster was read: not judged here. By revision in the cluster's own history;
        # by time in a fork's (its revisions are its own; and the forced member of a lab that was never
        # split, as in the safeguards scenario, writes on while its "fork point" is guessed).
        if (read_revision and h == "main" and e["revision"] > read_revision) or (
            read_at and e.get("time", "") > read_at
        ):
            counts["after_read"] += 1
            continue
        now = cluster.get(key)
        later = latest[(h, key)] > e["revision"] or (h == "main" and now and now[1] > e["revision"])
        if e["op"] == "delete":
            # Accounted for: the key is gone, a later operation of the same history recreated it, or the
            # conflict report lists it as a fork's delete of a key the authoritative side still holds.
            if now is None:
                outcome = "deleted"
            elif later or (h != "main" and compared and now[1] > compared):
                # A fork's delete of a key the cluster lacked too when the recovery compared the sides (so
                # not a conflict to list) is superseded by a client's write of that key after the comparison.
                outcome = "superseded"
            elif (h != "main" and key in listed_deletes) or (key, None) in listed:
                outcome = "listed"  # a fork's delete in deleted_on_fork, or a delete a restore lost ("lost")
            else:
                outcome = "missing"
        elif now and now[0] == e["value"]:
            outcome = "present"
        elif e["value"] in quarantined_values.get(key, ()):
            outcome = "quarantined"
        elif (key, e["value"]) in listed:
            outcome = "listed"
        elif later:
            outcome = "superseded"
        elif e.get("lease") and e["lease"].lower() not in leases:
            outcome = "expired"  # etcd removed the key with its lease
        elif (
            now is None
            and unknown_deletes.get(key)
            and (any(t > e["time"] for t in unknown_deletes[key]) or (held_at is not None and held_at(e)))
        ):
            # A delete of the key failed, and may have been applied - even one that failed before this put
            # was acknowledged: a request that a member cut off from its leader had already forwarded waits
            # in the kernel's send buffer (even after that member stopped) and reaches the leader when the
            # partition heals. Such an earlier one counts only when the cluster's own history holds this put
            # (so the put took effect, and an operation nobody acknowledged removed the key later).
            outcome = "maybe_deleted"
        else:
            outcome = "missing"
        counts[outcome] += 1
        if outcome == "missing":
            missing.append(
                {k: e.get(k) for k in ("op", "key", "value", "writer", "endpoint", "revision", "time")}
            )
    counts["missing_items"] = missing[:20]
    ok = counts["missing"] == 0
    detail = (
        f"{counts['entries']} acknowledged writes: {counts['present']} present, {counts['superseded']} "
        f"superseded by a later write, {counts['quarantined']} kept under {qprefix}, {counts['deleted']} "
        f"deletes in effect, {counts['expired']} leased puts whose lease is gone, {counts['maybe_deleted']} "
        f"gone by a delete that failed (it may have been applied), {counts['listed']} listed "
        f"in the conflict report, {counts['missing']} missing"
        + (
            f"; {counts['after_read']} acknowledged after the cluster was read at revision {read_revision}, "
            "not judged"
            if counts["after_read"]
            else ""
        )
        + (
            f"; {counts['failed_but_applied']} of the puts that clients saw fail were applied all the same "
            "(a request that timed out may still land)"
            if counts["failed_but_applied"]
            else ""
        )
    )
    if missing:
        detail += (
            " (first: "
            + ", ".join(
                f"{m['op']} {m['key']}" + (f"={m['value']}" if m["value"] is not None else "")
                for m in missing[:5]
            )
            + ")"
        )
    return check("every acknowledged write kept or reported", ok, detail), counts, missing


def run(params, check_mode=False):
    probes, checks, names, _by_id = cluster_checks(params)
    # Members of different memberships never reach one revision: do not wait for them to.
    one_cluster = all(c["ok"] for c in checks if c["name"] == "one membership seen by all members")
    hcheck, revision, hashes = hash_check(params, probes, names, wait=one_cluster)
    checks.append(hcheck)
    result = {"changed": False, "checks": checks, "revision": revision, "hashes": hashes}
    if params["ledger_dir"]:
        leader_ep = next((p["endpoint"] for p in probes if p["reachable"] and p["leader"]), None)
        if leader_ep is None:
            checks.append(check("every acknowledged write kept or reported", False, "no member has a leader"))
        else:
            endpoint_names = {p["endpoint"]: names.get(p["member_id"]) for p in probes if p["reachable"]}
            leader = next(p["leader"] for p in probes if p["endpoint"] == leader_ep)
            following = {
                p["endpoint"]: p["member_id"] for p in probes if p["reachable"] and p["leader"] == leader
            }
            lcheck, counts, missing = audit(params, leader_ep, endpoint_names, following)
            if params["missing_path"] and not check_mode:
                with open(params["missing_path"], "w", encoding="utf-8") as f:
                    json.dump(missing, f, indent=1, sort_keys=True)
            checks.append(lcheck)
            result["ledger"] = counts
    result["ok"] = all(c["ok"] for c in checks)
    return result


def argument_spec():
    spec = {
        "endpoints": {"type": "list", "elements": "str", "required": True},
        "expected_members": {"type": "list", "elements": "str", "default": []},
        "settle_timeout": {"type": "float", "default": 15.0},
        "ledger_dir": {"type": "path"},
        "forked_endpoints": {"type": "list", "elements": "str", "default": []},
        "quarantine_prefix": {"type": "str", "default": "/recovery/quarantine/"},
        "report_path": {"type": "path"},
        "missing_path": {"type": "path"},
    }
    spec.update(ETCD_COMMON_ARGUMENT_SPEC)
    return spec


def main():
    module = etcd_module(argument_spec())
    exit_with_run(module, run, local_errors=(OSError, ValueError, KeyError), local_prefix="etcd_consistency")


if __name__ == "__main__":
    main()
