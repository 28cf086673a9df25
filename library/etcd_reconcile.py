#!/usr/bin/python
# Copyright: etcd split-brain lab contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Export a fork's keys, build the conflict report, replay a fork's writes into the recovered cluster."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: etcd_reconcile
short_description: Export a fork's keys, report conflicts and replay a fork's writes after a split-brain
description:
  - O(operation=export) reads every key (under O(prefix)) of one endpoint with serializable, paginated
    ranges pinned to one revision and writes them as JSON to O(path) (atomically). An existing export is
    kept unless O(force=true) - it is the backup of a side as it was before the recovery changed anything.
    It also records the member's history since its compact revision (a bounded watch) - a short digest of
    each revision's events and the keys whose last event is a delete - so that a diff made after the fork
    stopped can still find the fork point and the fork's deletes (C(history.error) says why when it could
    not).
  - O(operation=report) merges C(etcd_kv_diff) reports (left the authoritative side, right a fork) into one
    conflict report, O(path) (JSON) and O(summary_path) (readable text) - keys only on each fork, keys
    with different values (both values and mod revisions) - and the plan that O(policy) makes of them.
  - From a diff made with C(history=true) (the fork still running), the report also lists per fork the fork
    point (C(fork_revision)), C(deleted_on_fork) - keys the fork deleted after it while the authoritative
    side still holds them (key, key_base64, the authoritative value, mod_revision and lease, the fork's
    C(fork_delete_revision), and C(marker_key)) - and C(deleted_on_authoritative) - keys only on the fork
    that the authoritative side deleted after the split (not brought back). Without that history
    C(deletes_checked) is false, C(deletes_error) says why, and the summary warns.
  - Keys only on the fork that hold a lease (C(leased_only_on_fork)) are listed and never written - the lease
    belongs to the fork's history and dies with it; such a key replayed without it (a leader-election lock)
    would never expire.
  - O(operation=diff) compares an export (O(export_path), the fork as it was saved) with the live
    authoritative side (the first of O(endpoints) that follows a leader) and writes O(path) in the format
    of the C(etcd_kv_diff) report (left the authoritative side, right the export), for a fork that is no
    longer running. With the history recorded in the export it also writes C(history) as
    C(etcd_kv_diff history=true) does - the fork point is the last revision up to which both sides have the
    same events at every revision (the authoritative side's are read with a bounded watch).
  - O(operation=replay) applies that plan to the recovered cluster through O(endpoints). A key only on the
    fork is written when the cluster still lacks it (a transaction that compares the key's create
    revision with 0); a key with different values keeps the cluster's value and the fork's value is
    written under O(quarantine_prefix)/<member><key>, as is the fork's value of a key the authoritative
    side deleted. For a key the fork deleted while the authoritative side holds it, the authoritative value
    stays and a note (JSON - key, member, both revisions) is written to
    O(quarantine_prefix)/<member>/deleted<key>; none when the authoritative side holds the key with a
    lease (the lease holder's key, left alone). It reads the current values first and writes only what is
    missing, so a second run writes nothing.
  - Nothing is deleted, ever.
version_added: "1.0.0"
options:
  operation:
    description:
      - C(export) the keys of one endpoint, C(report) the conflicts, or C(replay) a report into the cluster.
    type: str
    choices: [export, diff, report, replay]
    required: true
  endpoints:
    description:
      - C(export) - exactly one client URL. C(replay) - client URLs of the recovered cluster (the first one
        that answers is used).
    type: list
    elements: str
  path:
    description:
      - C(export) - the export file written. C(diff) - the diff written. C(report) - the JSON conflict
        report written. C(replay) - the JSON conflict report read.
    type: path
    required: true
  export_path:
    description:
      - C(diff) - the export of the fork (written by O(operation=export)).
    type: path
  summary_path:
    description:
      - C(report) - a readable summary of the report.
    type: path
  diffs:
    description:
      - C(report) - the forks to report, each a dict with C(member) (the forked member's name) and
        C(diff) (path of an C(etcd_kv_diff) report with the authoritative side left and the fork right).
    type: list
    elements: dict
  prefix:
    description:
      - C(export) - only keys under this prefix; empty exports every key.
    type: str
    default: ""
  policy:
    description:
      - C(quarantine) (the safe default) - replay keys only on the fork; for keys with different values the
        authoritative value stays and the fork's value is kept under O(quarantine_prefix).
      - C(report_only) - write nothing into the cluster; every fork-only key and conflict stays in the report.
    type: str
    choices: [quarantine, report_only]
    default: quarantine
  quarantine_prefix:
    description:
      - Prefix under which the fork's values of conflicting keys are kept (then the member name and the key).
    type: str
    default: /recovery/quarantine/
  force:
    description:
      - C(export) - replace an existing export.
    type: bool
    default: false
  page_size:
    description:
      - Keys per range request for C(export) and for reading current values in C(replay).
    type: int
    default: 5000
extends_documentation_fragment:
  - etcd_connection
  - lab_module
attributes:
  check_mode:
    details: Reads and plans as usual; writes neither files nor keys, and reports what it would write.
notes:
  - A range keeps no tombstone - a key only on one side may be one that the other side deleted after the
    split. Only the history tells (C(etcd_kv_diff) C(history=true), or the history recorded by
    O(operation=export)); it needs the revisions since the split uncompacted on both sides. Without it (an
    export of an older version, a compacted history) such a key only on the fork is replayed, and the report
    says that deletes were not checked. Use O(policy=report_only) to decide by hand.
"""

EXAMPLES = r"""
- name: Export the fork's keys before anything changes
  etcd_reconcile:
    operation: export
    endpoints: [http://198.18.213.13:2379]
    path: .lab/recovery/export-etcd-2.json

- name: Merge the kv diffs into one conflict report
  etcd_reconcile:
    operation: report
    diffs: [{member: etcd-2, diff: .lab/recovery/diff-etcd-2.json}]
    path: .lab/recovery/conflicts.json
    summary_path: .lab/recovery/conflicts.txt

- name: Replay the fork's writes into the recovered cluster
  etcd_reconcile:
    operation: replay
    endpoints: [http://198.18.213.11:2379, http://198.18.213.12:2379]
    path: .lab/recovery/conflicts.json
"""

RETURN = r"""
path:
  description: The file written or read.
  returned: always
  type: str
count:
  description: C(export) - keys exported.
  returned: for export
  type: int
revision:
  description: C(export) - the revision the keys were read at.
  returned: for export
  type: int
counts:
  description: C(diff) - C(only_left), C(only_right), C(conflicts), C(identical), as in C(etcd_kv_diff).
  returned: for diff
  type: dict
forks:
  description:
    - C(report) - per fork, C(member), C(fork_revision), C(deletes_checked), and the counts C(only_fork),
      C(only_authoritative), C(conflicts), C(deleted_on_fork), C(deleted_on_authoritative) and
      C(leased_only_on_fork).
  returned: for report
  type: list
  elements: dict
summary:
  description:
    - C(report) and C(replay) - readable lines for the screen, at most 5 keys of each list (the report's
      O(summary_path) file lists up to 20, the JSON report every one).
  returned: for report and replay
  type: list
  elements: str
replayed:
  description: C(replay) - keys written (or that would be written) because only the fork had them.
  returned: for replay
  type: list
  elements: dict
quarantined:
  description: C(replay) - fork values written (or that would be) under the quarantine prefix.
  returned: for replay
  type: list
  elements: dict
marked:
  description:
    - C(replay) - notes of the fork's deletes written (or that would be) under the quarantine prefix (C(key),
      C(marker_key), C(value) - the note).
  returned: for replay
  type: list
  elements: dict
leased:
  description:
    - C(replay) - keys only on the fork with a fork's lease, never written (C(key), C(value), C(lease)).
  returned: for replay
  type: list
  elements: dict
listed:
  description: C(replay) with O(policy=report_only) - every write the report plans, none made.
  returned: for replay
  type: list
  elements: dict
already:
  description: C(replay) - entries that the cluster already holds (nothing to write).
  returned: for replay
  type: int
"""

import hashlib
import json
import os
import tempfile

from ansible.module_utils.etcd_client import (
    ETCD_COMMON_ARGUMENT_SPEC,
    client_from_params,
    etcd_module,
    watch_history,
)
from ansible.module_utils.etcd_codec import b64, decode_value, id_to_hex, parse_kv, prefix_range_end, unb64
from ansible.module_utils.etcd_errors import EtcdError, exit_with_run


def write_atomic(path, text):
    """Write text to path atomically; return True when the content changed."""
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            if f.read() == text:
                return False
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".part", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return True


def key_bytes(entry):
    return unb64(entry["key"]) if entry.get("key_base64") else entry["key"].encode()


def value_bytes(entry):
    return unb64(entry["value"]) if entry.get("value_base64") else entry["value"].encode()


def kv_entry(fields):
    key, key_b64 = decode_value(fields["key"])
    value, value_b64 = decode_value(fields["value"])
    return {
        "key": key,
        "key_base64": key_b64,
        "value": value,
        "value_base64": value_b64,
        "mod_revision": fields["mod_revision"],
        "create_revision": fields["create_revision"],
        "version": fields["version"],
        "lease": id_to_hex(fields.get("lease")),
    }


def read_all(client, prefix, page_size):
    """Every key under prefix at one revision (serializable, paginated). Returns (revision, entries)."""
    start = prefix or b"\x00"
    end = prefix_range_end(prefix) if prefix else b"\x00"
    revision = 0
    entries = []
    while True:
        data = client.range(start, end, limit=page_size, revision=revision, serializable=True).data
        if not revision:
            revision = int(data.get("header", {}).get("revision", 0))
        kvs = data.get("kvs") or []
        entries.extend(kv_entry(parse_kv(kv)) for kv in kvs)
        if not data.get("more") or not kvs:
            return revision, entries
        start = parse_kv(kvs[-1])["key"] + b"\x00"


def _signed64(value):
    return value - (1 << 64) if value >= 1 << 63 else value


def _event_digest(kind, kv):
    """A short digest of one event: equal events of two members mean the same write at that revision."""
    fields = [kind] + [kv.get(x, "") for x in ("key", "value", "create_revision", "version", "lease")]
    return hashlib.sha256(json.dumps(fields).encode()).hexdigest()[:16]


def read_history(client, start, end):
    """The member's events from start to end: ({revision: digest of its events}, {key bytes: (kind,
    revision)} - the last event of each key)."""
    digests, last = {}, {}
    for kind, key, revision, kv in watch_history(client, start, end):
        digests[revision] = _event_digest(kind, kv) + digests.get(revision, "")
        last[key] = (kind, revision)
    return digests, last


def record_history(client, revision):
    """What an export keeps of a fork's history, so that a diff made after the fork stopped can still find
    the fork point and the fork's deletes: a digest per revision since the compact revision and the keys
    whose last event is a delete."""
    try:
        start = max(_signed64(client.hashkv(revision)["compact_revision"]), 0) + 1
        digests, last = read_history(client, start, revision)
    except EtcdError as exc:
        return {"error": str(exc)}
    deletes = []
    for key, (kind, rev) in sorted(last.items()):
        if kind == "DELETE":
            text, is_b64 = decode_value(key)
            deletes.append({"key": text, "key_base64": is_b64, "revision": rev})
    return {
        "start_revision": start,
        "digests": [digests.get(r, "") for r in range(start, revision + 1)],
        "deletes": deletes,
    }


def export(params, check_mode):
    endpoints = params["endpoints"] or []
    if len(endpoints) != 1:
        raise ValueError(f"operation=export needs exactly one endpoint, got {len(endpoints)}")
    path = params["path"]
    if os.path.exists(path) and not params["force"]:
        with open(path, encoding="utf-8") as f:
            head = json.load(f)
        return {"changed": False, "path": path, "count": head.get("count"), "revision": head.get("revision")}
    with client_from_params(endpoints[0], params) as client:
        status = client.status().data
        revision, entries = read_all(client, params["prefix"].encode(), params["page_size"])
        history = record_history(client, revision)
    doc = {
        "endpoint": endpoints[0],
        "member_id": format(int(status.get("header", {}).get("member_id", 0)), "x"),
        "revision": revision,
        "prefix": params["prefix"],
        "count": len(entries),
        "kvs": entries,
        "history": history,
    }
    if not check_mode:
        write_atomic(path, json.dumps(doc, sort_keys=True, indent=1) + "\n")
    return {"changed": True, "path": path, "count": len(entries), "revision": revision}


def _side(entry):
    return {x: entry[x] for x in entry if x not in ("key", "key_base64")}


def in_prefix(key, prefix):
    return key.startswith(prefix)


def history_from_export(recorded, auth_digests, auth_last, left, right, prefix):
    """The diff's history (as etcd_kv_diff history=true makes it) from a fork's recorded history and the
    authoritative side's events since the same start revision: the fork point is the last revision up to
    which every revision's events are the same on both sides."""
    start = recorded["start_revision"]
    point = start - 1
    for offset, digest in enumerate(recorded["digests"]):
        if auth_digests.get(start + offset, "") != digest:  # revision 1 has no events on either side
            break
        point = start + offset
    deleted_right = []
    for d in recorded["deletes"]:
        held = left.get((d["key"], d["key_base64"]))
        if d["revision"] > point and held is not None and in_prefix(d["key"], prefix):
            deleted_right.append(
                {
                    "key": d["key"],
                    "key_base64": d["key_base64"],
                    "delete_revision": d["revision"],
                    "left": _side(held),
                }
            )
    deleted_left = []
    for key, (kind, revision) in sorted(auth_last.items()):
        text, is_b64 = decode_value(key)
        held = right.get((text, is_b64))
        if kind == "DELETE" and revision > point and held is not None and in_prefix(text, prefix):
            deleted_left.append(
                {"key": text, "key_base64": is_b64, "delete_revision": revision, "right": _side(held)}
            )
    return {"fork_revision": point, "deleted_left": deleted_left, "deleted_right": deleted_right}


def diff(params, check_mode):
    with open(params["export_path"], encoding="utf-8") as f:
        fork = json.load(f)
    recorded = fork.get("history")
    client = first_client(params)
    try:
        revision, entries = read_all(client, fork.get("prefix", "").encode(), params["page_size"])
        endpoint = client.endpoint
        auth_history = None
        if recorded and not recorded.get("error"):
            try:
                auth_history = read_history(client, recorded["start_revision"], revision)
            except EtcdError as exc:
                recorded = {"error": f"the authoritative side's history: {exc}"}
    finally:
        client.close()
    left = {(e["key"], e["key_base64"]): e for e in entries}
    right = {(e["key"], e["key_base64"]): e for e in fork["kvs"]}
    only_left = [left[k] for k in sorted(left.keys() - right.keys())]
    only_right = [right[k] for k in sorted(right.keys() - left.keys())]
    conflicts = []
    for k in sorted(left.keys() & right.keys()):
        a, b = left[k], right[k]
        if (a["value"], a["value_base64"]) != (b["value"], b["value_base64"]):
            conflicts.append(
                {
                    "key": k[0],
                    "key_base64": k[1],
                    "left": {x: a[x] for x in a if x not in ("key", "key_base64")},
                    "right": {x: b[x] for x in b if x not in ("key", "key_base64")},
                }
            )
    counts = {
        "only_left": len(only_left),
        "only_right": len(only_right),
        "conflicts": len(conflicts),
        "identical": len(left.keys() & right.keys()) - len(conflicts),
    }
    doc = {
        "left": {"endpoint": endpoint, "revision": revision, "keys": len(entries)},
        "right": {
            "endpoint": fork["endpoint"],
            "revision": fork["revision"],
            "keys": fork["count"],
            "export": params["export_path"],
        },
        "prefix": fork.get("prefix", ""),
        "counts": counts,
        "identical": not (only_left or only_right or conflicts),
        "only_left": only_left,
        "only_right": only_right,
        "conflicts": conflicts,
    }
    if auth_history is not None:
        doc["history"] = history_from_export(recorded, *auth_history, left, right, fork.get("prefix", ""))
    elif recorded:
        doc["history"] = {"fork_revision": None, "deleted_left": [], "deleted_right": [], **recorded}
    changed = True
    if not check_mode:
        changed = write_atomic(params["path"], json.dumps(doc, sort_keys=True, indent=1) + "\n")
    return {"changed": changed, "path": params["path"], "counts": counts}


def quarantine_key(prefix, member, key):
    return prefix.rstrip("/") + "/" + member + ("" if key.startswith("/") else "/") + key


def marker_key(prefix, member, key):
    """Where the note of a fork's delete is kept: <prefix><member>/deleted<key>."""
    return quarantine_key(prefix, member, "/deleted" + ("" if key.startswith("/") else "/") + key)


def marker_value(member, entry):
    """The note of a fork's delete: small, deterministic JSON (so a second run finds it equal)."""
    note = {
        "authoritative_mod_revision": entry["mod_revision"],
        "deleted_on_fork": member,
        "fork_delete_revision": entry["fork_delete_revision"],
        "key": entry["key"],
        "kept": "the authoritative value",
    }
    return json.dumps(note, sort_keys=True, separators=(",", ":"))


def deleted_on_fork(history, member, qprefix):
    """Keys the fork deleted after the fork point that the authoritative side still holds (from the
    diff's history, right the fork). A key the authoritative side holds with a lease is the lease
    holder's, alive on that side: no marker (its owner keeps or drops it)."""
    out = []
    for d in history.get("deleted_right", []):
        auth = d["left"]
        out.append(
            {
                "key": d["key"],
                "key_base64": d["key_base64"],
                "value": auth["value"],
                "value_base64": auth["value_base64"],
                "mod_revision": auth["mod_revision"],
                "lease": auth.get("lease"),
                "fork_delete_revision": d["delete_revision"],
                "marker_key": None if auth.get("lease") else marker_key(qprefix, member, d["key"]),
            }
        )
    return out


def split_only_fork(diff, member, qprefix):
    """The keys only on the fork: (to replay, leased ones never replayed, ones the authoritative side
    deleted after the fork point - quarantined rather than brought back)."""
    deleted_on_auth = {
        (d["key"], d["key_base64"]) for d in (diff.get("history") or {}).get("deleted_left", [])
    }
    replay, leased, deleted = [], [], []
    for e in diff["only_right"]:
        if e["key"].startswith(qprefix.rstrip("/")):
            continue
        if e.get("lease"):
            leased.append(e)
        elif (e["key"], e.get("key_base64", False)) in deleted_on_auth:
            deleted.append(dict(e, quarantine_key=quarantine_key(qprefix, member, e["key"])))
        else:
            replay.append(e)
    return replay, leased, deleted


def build_report(params):
    forks = []
    for item in params["diffs"] or []:
        member, diff_path = item.get("member"), item.get("diff")
        if not member or not diff_path:
            raise ValueError(
                "every entry of diffs needs a member and a diff (path of an etcd_kv_diff report)"
            )
        with open(diff_path, encoding="utf-8") as f:
            diff = json.load(f)
        qprefix = params["quarantine_prefix"]
        only_fork, leased, deleted_on_auth = split_only_fork(diff, member, qprefix)
        conflicts = []
        for c in diff["conflicts"]:
            c = dict(c)
            c["quarantine_key"] = quarantine_key(qprefix, member, c["key"])
            conflicts.append(c)
        history = diff.get("history")
        forks.append(
            {
                "member": member,
                "authoritative": diff["left"],
                "fork": diff["right"],
                "only_fork": only_fork,
                "only_authoritative_count": len(diff["only_left"]),
                "conflicts": conflicts,
                "fork_revision": (history or {}).get("fork_revision"),
                "deletes_checked": bool(history) and not history.get("error"),
                "deletes_error": (history or {}).get("error")
                or (None if history else "no history: the fork was not running and its export has none"),
                "deleted_on_fork": deleted_on_fork(history or {}, member, qprefix),
                "deleted_on_authoritative": deleted_on_auth,
                "leased_only_on_fork": leased,
            }
        )
    return {"policy": params["policy"], "quarantine_prefix": params["quarantine_prefix"], "forks": forks}


SCREEN_LIMIT = 5  # keys listed per list on screen; the summary file lists FILE_LIMIT, the JSON report all
FILE_LIMIT = 20


def _listing(entries, line, limit=FILE_LIMIT):
    lines = [line(e) for e in entries[:limit]]
    if len(entries) > limit:
        lines.append(f"    ... {len(entries) - limit} more in the JSON report")
    return lines


def fork_summary(fork, policy, limit=FILE_LIMIT):
    """The readable lines of one fork of the report, at most limit keys per list (conflicts all)."""
    auth, side = fork["authoritative"], fork["fork"]
    quarantine = policy == "quarantine"
    lines = [
        f"Fork {fork['member']} (read at revision {side.get('revision')} of its own history) against the "
        f"authoritative side {auth.get('endpoint')} (revision {auth.get('revision')}):"
    ]
    if fork.get("fork_revision") is not None:
        lines.append(
            f"  The histories split after revision {fork['fork_revision']} (the same history up to it on "
            "both sides: HashKV, or each revision's events recorded in the export)."
        )
    lines.append(
        f"  {len(fork['only_fork'])} keys only on the fork (acknowledged by the fork alone): "
        + ("replayed into the cluster" if quarantine else "listed, not written")
    )
    lines += _listing(
        fork["only_fork"],
        lambda e: f"    {e['key']} = {e['value']!r} (fork mod revision {e['mod_revision']})",
        limit=limit,
    )
    lines.append(
        f"  {len(fork['conflicts'])} keys with different values: the authoritative value stays, "
        "the fork's " + ("is kept under the quarantine key" if quarantine else "is listed here")
    )
    lines += _listing(
        fork["conflicts"],
        lambda c: (
            f"    {c['key']}: authoritative {c['left']['value']!r} (rev {c['left']['mod_revision']}) / "
            f"fork {c['right']['value']!r} (rev {c['right']['mod_revision']}) -> {c['quarantine_key']}"
        ),
        limit=len(fork["conflicts"]),
    )
    deleted = fork.get("deleted_on_fork", [])
    if fork.get("deletes_checked", False):
        lines.append(
            f"  {len(deleted)} keys the fork deleted after the split that the authoritative side still holds "
            "(conflicts): the authoritative value stays, "
            + ("a note of the delete goes under the quarantine prefix" if quarantine else "listed here")
        )
    else:
        lines.append(
            f"  WARNING: the fork's deletes were not checked ({fork.get('deletes_error')}): a key it deleted "
            "that the authoritative side holds is not listed; review by hand (snapshot of the fork)."
        )
    lines += _listing(
        deleted,
        lambda d: (
            f"    {d['key']}: deleted on the fork at its rev {d['fork_delete_revision']}, authoritative "
            f"{d['value']!r} (rev {d['mod_revision']}) kept"
            + (
                f" -> {d['marker_key']}"
                if d["marker_key"]
                else f" (lease {d['lease']} on that side: left alone)"
            )
        ),
        limit=limit,
    )
    gone = fork.get("deleted_on_authoritative", [])
    if gone:
        lines.append(
            f"  {len(gone)} keys only on the fork that the authoritative side deleted after the split "
            "(conflicts): not brought back; the fork's value "
            + ("is kept under the quarantine key" if quarantine else "is listed here")
        )
        lines += _listing(
            gone, lambda e: f"    {e['key']} = {e['value']!r} -> {e['quarantine_key']}", limit=limit
        )
    leased = fork.get("leased_only_on_fork", [])
    lines.append(
        f"  {len(leased)} keys only on the fork that hold a lease of the fork: never written (the lease dies "
        "with the fork; a lock replayed without it would never expire)"
    )
    lines += _listing(
        leased, lambda e: f"    {e['key']} = {e['value']!r} (fork lease {e['lease']})", limit=limit
    )
    lines.append(
        f"  {fork['only_authoritative_count']} keys only on the authoritative side (written after the "
        "split by the majority, or deleted by the fork as listed above; they stay)"
    )
    return lines


def summary_lines(report, limit=FILE_LIMIT):
    lines = [f"Conflict report (policy {report['policy']}, quarantine prefix {report['quarantine_prefix']})"]
    if not report["forks"]:
        lines.append("No fork: nothing conflicts.")
    for fork in report["forks"]:
        lines += fork_summary(fork, report["policy"], limit)
    return lines


def report(params, check_mode):
    doc = build_report(params)
    lines = summary_lines(doc)
    changed = False
    if not check_mode:
        changed = write_atomic(params["path"], json.dumps(doc, sort_keys=True, indent=1) + "\n")
        if params["summary_path"]:
            changed = write_atomic(params["summary_path"], "\n".join(lines) + "\n") or changed
    else:
        changed = not os.path.exists(params["path"])
    lines = summary_lines(doc, SCREEN_LIMIT)
    forks = [
        {
            "member": f["member"],
            "only_fork": len(f["only_fork"]),
            "only_authoritative": f["only_authoritative_count"],
            "conflicts": len(f["conflicts"]),
            "fork_revision": f["fork_revision"],
            "deletes_checked": f["deletes_checked"],
            "deleted_on_fork": len(f["deleted_on_fork"]),
            "deleted_on_authoritative": len(f["deleted_on_authoritative"]),
            "leased_only_on_fork": len(f["leased_only_on_fork"]),
        }
        for f in doc["forks"]
    ]
    return {"changed": changed, "path": params["path"], "forks": forks, "summary": lines}


def first_client(params):
    errors = []
    for endpoint in params["endpoints"] or []:
        client = client_from_params(endpoint, params)
        try:
            status = client.status().data
            if int(status.get("leader", 0) or 0):
                return client
            errors.append(f"{endpoint}: no leader")
        except EtcdError as exc:
            errors.append(str(exc))
        client.close()
    raise EtcdError("No endpoint of the recovered cluster follows a leader: " + "; ".join(errors))


def current(client, key):
    kvs = client.range(key).data.get("kvs") or []
    return parse_kv(kvs[0]) if kvs else None


def put_if_absent(client, key, value):
    body = {
        "compare": [{"key": b64(key), "target": "CREATE", "result": "EQUAL", "create_revision": "0"}],
        "success": [{"request_put": {"key": b64(key), "value": b64(value)}}],
    }
    return bool(client.call("/v3/kv/txn", body).data.get("succeeded"))


def plan_writes(doc):
    """What a report asks to write, per fork: (kind, key bytes, value bytes, record), kind "replay" (a key
    only the fork had), "quarantine" (the fork's value of a conflicting key, or of a key the authoritative
    side deleted) or "mark" (the note of a fork's delete of a key the authoritative side holds). Keys only
    on the fork that hold a fork's lease are never written."""
    qprefix = doc["quarantine_prefix"]
    todo = []
    for fork in doc.get("forks", []):
        member = fork["member"]
        for e in fork["only_fork"]:
            record = {"member": member, "key": e["key"], "value": e["value"]}
            todo.append(("replay", key_bytes(e), value_bytes(e), record))
        for c in fork["conflicts"]:
            qkey = c.get("quarantine_key") or quarantine_key(qprefix, member, c["key"])
            record = {"member": member, "key": c["key"], "quarantine_key": qkey, "value": c["right"]["value"]}
            todo.append(("quarantine", qkey.encode(), value_bytes(c["right"]), record))
        for e in fork.get("deleted_on_authoritative", []):
            record = {
                "member": member,
                "key": e["key"],
                "quarantine_key": e["quarantine_key"],
                "value": e["value"],
            }
            todo.append(("quarantine", e["quarantine_key"].encode(), value_bytes(e), record))
        for d in fork.get("deleted_on_fork", []):
            if d.get("marker_key"):
                note = marker_value(member, d)
                record = {"member": member, "key": d["key"], "marker_key": d["marker_key"], "value": note}
                todo.append(("mark", d["marker_key"].encode(), note.encode(), record))
    return todo


def replay_lines(replayed, quarantined, marked, listed, leased, already):
    lines = [
        f"Replayed {len(replayed)} keys that only the fork had, quarantined {len(quarantined)} fork values, "
        f"marked {len(marked)} fork deletes, {already} already in place"
        + (f", {len(listed)} listed only (policy report_only)" if listed else "")
        + (
            f"; {len(leased)} leased keys of the fork not written (their lease died with it)"
            if leased
            else ""
        )
    ]
    lines += [f"  replayed {r['key']} = {r['value']!r} (from {r['member']})" for r in replayed[:SCREEN_LIMIT]]
    if len(replayed) > SCREEN_LIMIT:
        lines.append(f"  ... {len(replayed) - SCREEN_LIMIT} more replayed: the conflict report lists them")
    lines += [
        f"  quarantined {r['key']}: fork value {r['value']!r} -> {r['quarantine_key']}" for r in quarantined
    ]
    lines += [
        f"  {r['member']} deleted {r['key']}: authoritative value kept, note -> {r['marker_key']}"
        for r in marked
    ]
    lines += [f"  not written: {r['key']} = {r['value']!r} (fork lease {r['lease']})" for r in leased]
    return lines


def replay(params, check_mode):
    with open(params["path"], encoding="utf-8") as f:
        doc = json.load(f)
    policy = params["policy"]
    done = {"replay": [], "quarantine": [], "mark": []}
    listed, already = [], 0
    leased = [
        {"member": fork["member"], "key": e["key"], "value": e["value"], "lease": e.get("lease")}
        for fork in doc.get("forks", [])
        for e in fork.get("leased_only_on_fork", [])
    ]
    if not params["endpoints"]:
        raise ValueError("operation=replay needs endpoints of the recovered cluster")
    client = first_client(params)
    try:
        for kind, key, value, record in plan_writes(doc):
            if policy == "report_only":
                listed.append(record)
                continue
            now = current(client, key)
            if now is not None and now["value"] == value:
                already += 1
                continue
            if kind == "replay" and now is not None:
                # The cluster has the key with another value (written since the report): keep the
                # cluster's value and quarantine the fork's, as for any conflict.
                key = quarantine_key(doc["quarantine_prefix"], record["member"], record["key"]).encode()
                record["quarantine_key"] = key.decode(errors="replace")
                kind = "quarantine"
                q = current(client, key)
                if q is not None and q["value"] == value:
                    already += 1
                    continue
            if not check_mode:
                if kind == "replay":
                    put_if_absent(client, key, value)
                else:
                    client.put(key, value)
            done[kind].append(record)
    finally:
        client.close()
    replayed, quarantined, marked = done["replay"], done["quarantine"], done["mark"]
    return {
        "changed": bool(replayed or quarantined or marked),
        "path": params["path"],
        "replayed": replayed,
        "quarantined": quarantined,
        "marked": marked,
        "leased": leased,
        "listed": listed,
        "already": already,
        "summary": replay_lines(replayed, quarantined, marked, listed, leased, already),
    }


def argument_spec():
    spec = {
        "operation": {"type": "str", "choices": ["export", "diff", "report", "replay"], "required": True},
        "endpoints": {"type": "list", "elements": "str"},
        "path": {"type": "path", "required": True},
        "export_path": {"type": "path"},
        "summary_path": {"type": "path"},
        "diffs": {"type": "list", "elements": "dict"},
        "prefix": {"type": "str", "default": ""},
        "policy": {"type": "str", "choices": ["quarantine", "report_only"], "default": "quarantine"},
        "quarantine_prefix": {"type": "str", "default": "/recovery/quarantine/"},
        "force": {"type": "bool", "default": False},
        "page_size": {"type": "int", "default": 5000},
    }
    spec.update(ETCD_COMMON_ARGUMENT_SPEC)
    return spec


def run(params, check_mode):
    operations = {"export": export, "diff": diff, "report": report, "replay": replay}
    return operations[params["operation"]](params, check_mode)


def main():
    module = etcd_module(argument_spec())
    exit_with_run(
        module,
        run,
        local_errors=(OSError, ValueError, KeyError),
        local_prefix=f"etcd_reconcile {module.params['operation']}",
    )


if __name__ == "__main__":
    main()
