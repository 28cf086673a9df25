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
  - Waits (up to O(settle_timeout) seconds) until every member reports the same revision, then asks each for
    C(HashKV) at that revision over gRPC (the JSON gateway does not serve it) and compares the hashes.
  - With O(ledger_dir), audits the write ledger (one JSON object per acknowledged write - key, value,
    endpoint, revision) against the cluster's keys. A write counts as kept when the cluster holds its value;
    when a later write of the same history changed the key (a later ledger entry, or the key's mod
    revision); when its value sits under O(quarantine_prefix); or when the conflict report (O(report_path))
    lists it. Writes that a forked member acknowledged after the split (O(forked_endpoints), revisions above
    the last revision of its writes still in the cluster's history) form a history of their own.
  - Never changes anything. Each check is a result with C(name), C(ok) and C(detail); the module fails
    only on bad arguments.
version_added: "1.0.0"
author:
  - etcd split-brain lab contributors
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
      - Seconds to wait for all members to reach the same revision before comparing hashes.
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
      - Write every ledger write that is neither kept nor reported to this JSON file (a list), for a report of
        what a restore lost. Not written in check mode.
    type: path
extends_documentation_fragment:
  - etcd_connection
attributes:
  check_mode:
    support: full
    description: Only reads.
  diff_mode:
    support: none
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
  description: The revision the hashes were compared at (null when the members never agreed on one).
  returned: always
  type: int
hashes:
  description: Member name to C(HashKV) hash at RV(revision).
  returned: always
  type: dict
ledger:
  description:
    - Ledger audit counts, C(entries), C(present), C(superseded), C(quarantined), C(listed), C(missing), and
      C(missing_items) (up to 20 writes that are neither in the cluster nor in the report).
  returned: when O(ledger_dir) is given
  type: dict
"""

import glob
import json
import os
import time

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.etcd_client import (
    ETCD_COMMON_ARGUMENT_SPEC,
    EtcdError,
    client_from_params,
    id_to_hex,
    parallel_map,
    parse_kv,
    parse_member,
    run_or_fail,
)


def probe(params, endpoint):
    out = {"endpoint": endpoint, "reachable": False}
    try:
        with client_from_params(endpoint, params) as client:
            st = client.status().data
            out["member_id"] = id_to_hex(st.get("header", {}).get("member_id"))
            out["leader"] = id_to_hex(st["leader"]) if int(st.get("leader", 0) or 0) else None
            out["revision"] = int(st.get("header", {}).get("revision", 0))
            out["members"] = [parse_member(m) for m in client.member_list().data.get("members", [])]
            out["alarms"] = client.alarms().data.get("alarms", []) if out["leader"] else []
            out["reachable"] = True
    except EtcdError as exc:
        out["error"] = str(exc)
    return out


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
    up = [p for p in probes if p["reachable"]]
    if not up or len(up) != len(probes):
        return check("hashkv equal at one revision", False, "not every member answers"), None, {}
    deadline = time.monotonic() + (params["settle_timeout"] if wait else 0)
    while True:
        revisions = {p["revision"] for p in up}
        if len(revisions) == 1 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
        up = [probe(params, p["endpoint"]) for p in up]
        if not all(p["reachable"] for p in up):
            return check("hashkv equal at one revision", False, "a member stopped answering"), None, {}
    if len(revisions) != 1:
        detail = ", ".join(f"{names.get(p['member_id'], p['endpoint'])}={p['revision']}" for p in up)
        return check("hashkv equal at one revision", False, f"revisions differ: {detail}"), None, {}
    revision = revisions.pop()

    def one(p):
        try:
            with client_from_params(p["endpoint"], params) as client:
                return client.hashkv(revision)["hash"]
        except EtcdError as exc:
            return f"error: {exc}"

    hashes = dict(
        zip(
            (names.get(p["member_id"], p["endpoint"]) for p in up),
            parallel_map(one, up),
            strict=True,
        )
    )
    same = len(set(hashes.values())) == 1 and not any(isinstance(h, str) for h in hashes.values())
    detail = ", ".join(f"{n}={h}" for n, h in sorted(hashes.items()))
    return check("hashkv equal at one revision", same, f"revision {revision}: {detail}"), revision, hashes


def read_cluster(params, endpoint):
    """Every key of the cluster: {key: (value, mod_revision)} (text keys; linearizable reads)."""
    out = {}
    with client_from_params(endpoint, params) as client:
        start, revision = b"\x00", 0
        while True:
            data = client.range(start, b"\x00", limit=5000, revision=revision).data
            revision = revision or int(data.get("header", {}).get("revision", 0))
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


def audit(params, endpoint):
    entries = []
    for path in sorted(glob.glob(os.path.join(params["ledger_dir"], "*.jsonl"))):
        with open(path, encoding="utf-8") as f:
            entries.extend(json.loads(line) for line in f if line.strip())
    cluster = read_cluster(params, endpoint)
    qprefix = params["quarantine_prefix"].rstrip("/") + "/"
    quarantined_values = {}
    for key, (value, _rev) in cluster.items():
        if key.startswith(qprefix):
            rest = key[len(qprefix) :]
            if "/" in rest:
                original = rest[rest.index("/") :]
                quarantined_values.setdefault(original, set()).add(value)
    listed = set()
    if params["report_path"] and os.path.exists(params["report_path"]):
        with open(params["report_path"], encoding="utf-8") as f:
            report = json.load(f)
        for fork in report.get("forks", []):
            for c in fork.get("conflicts", []):
                listed.add((c["key"], c["right"]["value"]))
            for e in fork.get("only_fork", []):
                listed.add((e["key"], e["value"]))
        for e in report.get("lost", []):
            listed.add((e["key"], e["value"]))
    forked = set(params["forked_endpoints"] or [])
    # The fork point of each forked writer: the last revision of its writes that are still in the cluster's
    # own history (same value at the same mod revision). Its later writes belong to the fork's history.
    fork_point = {}
    for e in entries:
        if e.get("endpoint") in forked:
            now = cluster.get(e["key"])
            if now and now[0] == e["value"] and now[1] == e["revision"]:
                fork_point[e["endpoint"]] = max(fork_point.get(e["endpoint"], 0), e["revision"])

    def history(e):
        if e.get("endpoint") in forked and e["revision"] > fork_point.get(e["endpoint"], 0):
            return "fork:" + e["endpoint"]
        return "main"

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
        "missing": 0,
    }
    missing = []
    for e in entries:
        key, value, h = e["key"], e["value"], history(e)
        now = cluster.get(key)
        if now and now[0] == value:
            counts["present"] += 1
        elif value in quarantined_values.get(key, ()):
            counts["quarantined"] += 1
        elif (key, value) in listed:
            counts["listed"] += 1
        elif latest[(h, key)] > e["revision"] or (h == "main" and now and now[1] > e["revision"]):
            counts["superseded"] += 1
        else:
            counts["missing"] += 1
            missing.append({k: e.get(k) for k in ("key", "value", "writer", "endpoint", "revision", "time")})
    counts["missing_items"] = missing[:20]
    ok = counts["missing"] == 0
    detail = (
        f"{counts['entries']} acknowledged writes: {counts['present']} present, {counts['superseded']} "
        f"superseded by a later write, {counts['quarantined']} kept under {qprefix}, {counts['listed']} "
        f"listed in the conflict report, {counts['missing']} missing"
    )
    if missing:
        detail += " (first: " + ", ".join(f"{m['key']}={m['value']}" for m in missing[:5]) + ")"
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
            lcheck, counts, missing = audit(params, leader_ep)
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
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    result = run_or_fail(
        module,
        lambda: run(module.params, module.check_mode),
        local_errors=(OSError, ValueError, KeyError),
        local_prefix="etcd_consistency",
    )
    module.exit_json(**result)


if __name__ == "__main__":
    main()
