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
  - O(operation=report) merges C(etcd_kv_diff) reports (left the authoritative side, right a fork) into one
    conflict report, O(path) (JSON) and O(summary_path) (readable text) - keys only on each fork, keys
    with different values (both values and mod revisions) - and the plan that O(policy) makes of them.
  - O(operation=diff) compares an export (O(export_path), the fork as it was saved) with the live
    authoritative side (the first of O(endpoints) that follows a leader) and writes O(path) in the format
    of the C(etcd_kv_diff) report (left the authoritative side, right the export), for a fork that is no
    longer running.
  - O(operation=replay) applies that plan to the recovered cluster through O(endpoints). A key only on the
    fork is written when the cluster still lacks it (a transaction that compares the key's create
    revision with 0); a key with different values keeps the cluster's value and the fork's value is
    written under O(quarantine_prefix)/<member><key>. It reads the current values first and writes only
    what is missing, so a second run writes nothing.
  - Nothing is deleted, ever.
version_added: "1.0.0"
author:
  - etcd split-brain lab contributors
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
attributes:
  check_mode:
    support: full
    description: Reads and plans as usual; writes neither files nor keys, and reports what it would write.
  diff_mode:
    support: none
notes:
  - A key only on the fork may also be a key that the authoritative side deleted after the split; etcd keeps
    no tombstone to tell the two apart, so it is replayed. Use O(policy=report_only) to decide by hand.
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
    - C(report) - per fork, C(member), C(only_fork), C(only_authoritative) and C(conflicts) (counts).
  returned: for report
  type: list
  elements: dict
summary:
  description: C(report) and C(replay) - readable lines.
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
already:
  description: C(replay) - entries that the cluster already holds (nothing to write).
  returned: for replay
  type: int
"""

import json
import os
import tempfile

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.etcd_client import (
    ETCD_COMMON_ARGUMENT_SPEC,
    EtcdError,
    b64,
    client_from_params,
    decode_value,
    parse_kv,
    prefix_range_end,
    run_or_fail,
    unb64,
)


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
    doc = {
        "endpoint": endpoints[0],
        "member_id": format(int(status.get("header", {}).get("member_id", 0)), "x"),
        "revision": revision,
        "prefix": params["prefix"],
        "count": len(entries),
        "kvs": entries,
    }
    if not check_mode:
        write_atomic(path, json.dumps(doc, sort_keys=True, indent=1) + "\n")
    return {"changed": True, "path": path, "count": len(entries), "revision": revision}


def diff(params, check_mode):
    with open(params["export_path"], encoding="utf-8") as f:
        fork = json.load(f)
    client = first_client(params)
    try:
        revision, entries = read_all(client, fork.get("prefix", "").encode(), params["page_size"])
        endpoint = client.endpoint
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
    changed = True
    if not check_mode:
        changed = write_atomic(params["path"], json.dumps(doc, sort_keys=True, indent=1) + "\n")
    return {"changed": changed, "path": params["path"], "counts": counts}


def quarantine_key(prefix, member, key):
    return prefix.rstrip("/") + "/" + member + ("" if key.startswith("/") else "/") + key


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
        only_fork = [e for e in diff["only_right"] if not e["key"].startswith(qprefix.rstrip("/"))]
        conflicts = []
        for c in diff["conflicts"]:
            c = dict(c)
            c["quarantine_key"] = quarantine_key(qprefix, member, c["key"])
            conflicts.append(c)
        forks.append(
            {
                "member": member,
                "authoritative": diff["left"],
                "fork": diff["right"],
                "only_fork": only_fork,
                "only_authoritative_count": len(diff["only_left"]),
                "conflicts": conflicts,
            }
        )
    return {"policy": params["policy"], "quarantine_prefix": params["quarantine_prefix"], "forks": forks}


def summary_lines(report):
    lines = [f"Conflict report (policy {report['policy']}, quarantine prefix {report['quarantine_prefix']})"]
    if not report["forks"]:
        lines.append("No fork: nothing conflicts.")
    for fork in report["forks"]:
        auth, side = fork["authoritative"], fork["fork"]
        lines.append(
            f"Fork {fork['member']} (read at revision {side.get('revision')} of its own history) against the "
            f"authoritative side {auth.get('endpoint')} (revision {auth.get('revision')}):"
        )
        lines.append(
            f"  {len(fork['only_fork'])} keys only on the fork (acknowledged by the fork alone): "
            + ("replayed into the cluster" if report["policy"] == "quarantine" else "listed, not written")
        )
        for e in fork["only_fork"][:20]:
            lines.append(f"    {e['key']} = {e['value']!r} (fork mod revision {e['mod_revision']})")
        if len(fork["only_fork"]) > 20:
            lines.append(f"    ... {len(fork['only_fork']) - 20} more in the JSON report")
        lines.append(
            f"  {len(fork['conflicts'])} keys with different values: the authoritative value stays, "
            "the fork's "
            + ("is kept under the quarantine key" if report["policy"] == "quarantine" else "is listed here")
        )
        for c in fork["conflicts"]:
            lines.append(
                f"    {c['key']}: authoritative {c['left']['value']!r} (rev {c['left']['mod_revision']}) / "
                f"fork {c['right']['value']!r} (rev {c['right']['mod_revision']}) -> {c['quarantine_key']}"
            )
        lines.append(
            f"  {fork['only_authoritative_count']} keys only on the authoritative side (written after the "
            "split by the majority; they stay)"
        )
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
    forks = [
        {
            "member": f["member"],
            "only_fork": len(f["only_fork"]),
            "only_authoritative": f["only_authoritative_count"],
            "conflicts": len(f["conflicts"]),
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


def replay(params, check_mode):
    with open(params["path"], encoding="utf-8") as f:
        doc = json.load(f)
    policy = params["policy"]
    replayed, quarantined, listed, already = [], [], [], 0
    client = first_client(params) if params["endpoints"] else None
    if client is None:
        raise ValueError("operation=replay needs endpoints of the recovered cluster")
    try:
        for fork in doc.get("forks", []):
            member = fork["member"]
            todo = []  # (kind, key bytes, value bytes, entry)
            for e in fork["only_fork"]:
                todo.append(("replay", key_bytes(e), value_bytes(e), e))
            for c in fork["conflicts"]:
                qkey = c.get("quarantine_key") or quarantine_key(doc["quarantine_prefix"], member, c["key"])
                todo.append(("quarantine", qkey.encode(), value_bytes(c["right"]), c))
            for kind, key, value, entry in todo:
                record = {"member": member, "key": key.decode(errors="replace"), "value": entry.get("value")}
                if kind == "quarantine":
                    record = {
                        "member": member,
                        "key": entry["key"],
                        "quarantine_key": key.decode(errors="replace"),
                        "value": entry["right"]["value"],
                    }
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
                    key = quarantine_key(doc["quarantine_prefix"], member, record["key"]).encode()
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
                (replayed if kind == "replay" else quarantined).append(record)
    finally:
        client.close()
    lines = [
        f"Replayed {len(replayed)} keys that only the fork had, quarantined {len(quarantined)} fork values, "
        f"{already} already in place"
        + (f", {len(listed)} listed only (policy report_only)" if listed else "")
    ]
    lines += [f"  replayed {r['key']} = {r['value']!r} (from {r['member']})" for r in replayed[:20]]
    lines += [
        f"  quarantined {r['key']}: fork value {r['value']!r} -> {r['quarantine_key']}" for r in quarantined
    ]
    return {
        "changed": bool(replayed or quarantined),
        "path": params["path"],
        "replayed": replayed,
        "quarantined": quarantined,
        "listed": listed,
        "already": already,
        "summary": lines,
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
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    result = run_or_fail(
        module,
        lambda: run(module.params, module.check_mode),
        local_errors=(OSError, ValueError, KeyError),
        local_prefix=f"etcd_reconcile {module.params['operation']}",
    )
    module.exit_json(**result)


if __name__ == "__main__":
    main()
