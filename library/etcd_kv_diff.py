#!/usr/bin/python
# Copyright: etcd split-brain lab contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module etcd_kv_diff: compare the key spaces of two etcd endpoints in bounded memory."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: etcd_kv_diff
short_description: Compare the key spaces of two etcd endpoints (keys only on one side, conflicts)
description:
  - Walks the key space of two endpoints (optionally under O(prefix)) in key order with paginated
    ranges (C(/v3/kv/range) with C(limit); the next page starts after the last key) and merge-joins
    the two sorted streams, so memory stays bounded by the page size even for millions of keys.
    Both sides are fetched concurrently, each page prefetched while the previous one is compared.
  - Each side is read at one revision (the revision of its first page), so the comparison is of two
    consistent snapshots even while writes go on.
  - Reports counts, and lists of keys only on the left, only on the right, and conflicting keys
    (both values and both mod revisions). The lists in the result are cut to O(max_items); the
    JSON report written to O(report_path) holds them all.
  - Keys and values are shown as UTF-8 text when they are valid UTF-8, otherwise as base64 with
    C(key_base64) / C(value_base64) set.
  - By default reads are serializable (answered from the member's own data, no leader needed), so
    both sides of a split, and a member that lost its leader, can be compared.
  - With O(history=true), also finds the fork point (the last revision both histories share, by a binary
    search on C(HashKV) at a revision, equal on both sides up to the fork point and different after it) and
    reads each side's events after it (a watch from the fork point through the gateway, bounded by the
    side's revision). It lists the keys that one side deleted after the fork point while the other still
    holds them - a difference that the key spaces alone cannot show (etcd keeps no tombstone in a range).
  - Changes nothing in etcd. RV(changed) is true only when the report file was written with new
    content.
version_added: "1.0.0"
options:
  endpoints:
    description:
      - Exactly two client URLs, left then right, C(http(s)://HOST:PORT).
    type: list
    elements: str
    required: true
  prefix:
    description:
      - Compare only keys starting with this prefix. Empty compares the whole key space.
    type: str
    default: ""
  page_size:
    description:
      - Keys per range request. About two pages per side are held in memory at a time (page_size
        times the average key-value size each); lower it for large values.
      - etcd counts every key of the remaining range for each page, so very small pages make a
        large key space slow (measured on 100k keys, 3.5.1 - 20000 took 0.55 s, 5000 took 1.16 s).
    type: int
    default: 10000
  max_items:
    description:
      - Maximum number of entries per list in the module result (the report file has them all).
    type: int
    default: 50
  report_path:
    description:
      - Write the full comparison as JSON to this file (atomically). Not written in check mode.
    type: path
  serializable:
    description:
      - Use serializable reads (the member's local data, works without a leader). With false,
        reads are linearizable and fail on a member without a leader.
    type: bool
    default: true
  transport:
    description:
      - How the ranges are read. C(grpc) speaks gRPC over HTTP/2 like etcdctl (a small built-in
        client, standard library only) and compares the raw key-value records, decoding values only
        where the records differ. C(gateway) uses the v3 JSON gateway. C(auto) tries gRPC and falls
        back to the gateway for the rest of the walk at the first failure (the gateway's errors are
        readable).
    type: str
    choices: [auto, grpc, gateway]
    default: auto
  history:
    description:
      - Find the fork point and the keys each side deleted after it (see above). Needs C(HashKV) (gRPC)
        and the revisions after the fork point uncompacted on both sides; costs about 2 log2(revision)
        C(HashKV) calls, each reading the member's whole database.
    type: bool
    default: false
extends_documentation_fragment:
  - etcd_connection
  - lab_module
attributes:
  check_mode:
    details: Compares as usual but does not write O(report_path).
notes:
  - The ranges need the read permission on the compared keys when etcd authentication is on
    (this module does not log in; etcd auth tokens are not supported).
"""

EXAMPLES = r"""
- name: Recover | Find the writes that only the forked member accepted
  etcd_kv_diff:
    endpoints:
      - http://198.18.213.11:2379   # authoritative side
      - http://198.18.213.13:2379   # forked member
    prefix: /app/
    report_path: "{{ lab_state_dir }}/reports/kv-diff.json"
  register: etcd_diff

- name: Recover | Show the conflicts
  ansible.builtin.debug:
    msg: "{{ etcd_diff.conflicts }}"
"""

RETURN = r"""
left:
  description: Left side, C(endpoint), C(revision) it was read at, C(keys) compared, C(transport) used.
  returned: always
  type: dict
right:
  description: Right side, as RV(left).
  returned: always
  type: dict
counts:
  description: C(only_left), C(only_right), C(conflicts), C(identical).
  returned: always
  type: dict
  sample: {only_left: 0, only_right: 8, conflicts: 1, identical: 4}
only_left:
  description:
    - Keys only on the left (key, key_base64, value, value_base64, mod_revision, create_revision,
      version, lease - the lease ID in hex, or null).
  returned: always
  type: list
  elements: dict
only_right:
  description: Keys only on the right, as RV(only_left).
  returned: always
  type: list
  elements: dict
conflicts:
  description:
    - Keys on both sides with different values; C(left) and C(right) hold value, revisions, version and
      lease.
  returned: always
  type: list
  elements: dict
truncated:
  description: Whether any list in the result was cut to O(max_items).
  returned: always
  type: bool
identical:
  description: Whether both key spaces (under the prefix) are the same.
  returned: always
  type: bool
report_path:
  description: The JSON report written, or null.
  returned: always
  type: str
history:
  description:
    - With O(history=true) (else null) - C(fork_revision), the last revision both sides share;
      C(deleted_right), the keys the right side deleted after it that the left still holds (key,
      key_base64, delete_revision - the right's last delete -, and C(left) - the left's value, revisions
      and lease); C(deleted_left), the same the other way round (with C(right)). Also in the report file.
    - When the fork point or the events cannot be read (compacted, no gRPC), C(fork_revision) is null, the
      lists are empty and C(error) says why; the key spaces are compared all the same.
  returned: always
  type: dict
  sample:
    fork_revision: 212
    deleted_right:
      - key: /lab/shared/k0
        key_base64: false
        delete_revision: 240
        left: {value: etcd-0#96, value_base64: false, mod_revision: 305, create_revision: 290, version: 1,
               lease: null}
    deleted_left: []
"""

import hashlib
import json
import os
import tempfile
from binascii import a2b_base64
from concurrent.futures import ThreadPoolExecutor
from itertools import chain

from ansible.module_utils.etcd_client import (
    ETCD_COMMON_ARGUMENT_SPEC,
    client_from_params,
    etcd_module,
    normalize_url,
    validate_endpoint,
    watch_history,
)
from ansible.module_utils.etcd_codec import decode_value, id_to_hex, kv_value, parse_kv, prefix_range_end
from ansible.module_utils.etcd_errors import EtcdError, exit_with_run
from ansible.module_utils.etcd_tls import check_tls_params


class RangeWalker:
    """Yields the pages of one endpoint in key order: lists of (key bytes, comparison token, kvs, index).

    kvs[index] is the KeyValue message (gRPC) or the gateway's kv dict: an item holds the page's list and
    an index rather than the message, because keeping a wrapper object per key costs more than the parse
    (protobuf's upb makes one on access, and frees it at once when nothing keeps it). The token is the
    value bytes (gRPC) or the base64 value (gateway): equal tokens mean equal values, different tokens are
    checked again on the decoded values (one side may have come through the gateway). Both sides read
    their first page as soon as they are made; the next page is requested in a background thread as soon
    as the current one arrives.
    """

    def __init__(self, client, start, end, page_size, serializable, transport="auto"):
        self.client = client
        self.start = start
        self.end = end
        self.page_size = page_size
        self.serializable = serializable
        self.transport = transport
        self.used = set()
        self.revision = 0
        self.count = 0
        self.grpc_ok = True
        self.pool = ThreadPoolExecutor(max_workers=1)
        self.first = self.pool.submit(self._fetch, start)  # both sides start reading at once

    def _grpc(self, start):
        reply = self.client.grpc().range(start, self.end, self.page_size, self.revision, self.serializable)
        kvs = reply.kvs
        return reply.header.revision, reply.more, [(kv.key, kv.value, kvs, i) for i, kv in enumerate(kvs)]

    def _gateway(self, start):
        data = self.client.range(
            start, self.end, limit=self.page_size, revision=self.revision, serializable=self.serializable
        ).data
        kvs = data.get("kvs") or []
        items = [(a2b_base64(kv["key"]), kv.get("value", ""), kvs, i) for i, kv in enumerate(kvs)]
        return int(data.get("header", {}).get("revision", 0)), bool(data.get("more")), items

    def _fetch(self, start):
        if self.transport in ("auto", "grpc") and self.grpc_ok:
            try:
                page = self._grpc(start)
                self.used.add("grpc")
                return page
            except EtcdError:
                if self.transport == "grpc":
                    raise
                self.grpc_ok = False  # from now on through the gateway
        self.used.add("gateway")
        return self._gateway(start)

    def __iter__(self):
        """Yield the pages, lists of (key, token, kv)."""
        try:
            revision, more, items = self.first.result()
            self.revision = revision
            while True:
                pending = None
                if more and items:
                    pending = self.pool.submit(self._fetch, items[-1][0] + b"\x00")
                self.count += len(items)
                yield items
                if pending is None:
                    return
                _revision, more, items = pending.result()
        finally:
            self.close()

    def close(self):
        self.pool.shutdown(wait=True)


def _fields(kv):
    """Value, revisions, version and lease (hex, or null without one) of a kv."""
    fields = parse_kv(kv)
    value, v_b64 = decode_value(fields["value"])
    return {
        "value": value,
        "value_base64": v_b64,
        "mod_revision": fields["mod_revision"],
        "create_revision": fields["create_revision"],
        "version": fields["version"],
        "lease": id_to_hex(fields["lease"]),
    }


def _entry(key, kv):
    text, is_b64 = decode_value(key)
    return {"key": text, "key_base64": is_b64, **_fields(kv)}


def _conflict(key, lkv, rkv):
    text, is_b64 = decode_value(key)
    return {"key": text, "key_base64": is_b64, "left": _fields(lkv), "right": _fields(rkv)}


def _same_history_at(clients, revision):
    """Whether both members have the same HashKV (and compact revision) at revision."""
    left, right = (c.hashkv(revision) for c in clients)
    return (left["hash"], left["compact_revision"]) == (right["hash"], right["compact_revision"])


def _signed64(value):
    return value - (1 << 64) if value >= 1 << 63 else value


def fork_revision(clients, revisions):
    """The last revision both histories share (the fork point), by binary search on HashKV.

    HashKV at revision r hashes every key revision up to r: two members whose histories are one up to R0
    have equal hashes at every r <= R0 and (but for a crc32 collision) different ones above it, so the
    predicate is monotonic. The search stays at or below the lower of the two current revisions and above
    the compact revision (HashKV refuses compacted revisions). About 2 log2(revisions) HashKV calls.
    """
    high = min(revisions)
    if _same_history_at(clients, high):
        return high
    # etcd sends -1 (as an unsigned 64-bit varint) when nothing was ever compacted.
    compacted = max(_signed64(c.hashkv(high)["compact_revision"]) for c in clients)
    low = max(compacted + 1, 1)
    if low >= high or not _same_history_at(clients, low):
        raise EtcdError(
            f"The two histories share no revision above the compact revision {compacted}: the fork point "
            "cannot be found (compacted on either side?)"
        )
    while high - low > 1:
        middle = (low + high) // 2
        if _same_history_at(clients, middle):
            low = middle
        else:
            high = middle
    return low


def deletes_since(client, start_revision, end_revision, start, end):
    """{key bytes: delete revision} of the keys in [start, end) whose last event in the member's history
    from start_revision to end_revision is a delete."""
    last = {}
    for kind, key, revision, _kv in watch_history(client, start_revision, end_revision):
        if key >= start and (end == b"\x00" or key < end):
            last[key] = (kind, revision)
    return {key: revision for key, (kind, revision) in last.items() if kind == "DELETE"}


def still_held(client, deleted, revision, side):
    """The keys of deleted that the other member holds at revision: entries with its value as side."""
    out = []
    for key in sorted(deleted):
        kvs = client.range(key, revision=revision, serializable=True).data.get("kvs") or []
        if kvs:
            text, is_b64 = decode_value(key)
            out.append(
                {"key": text, "key_base64": is_b64, "delete_revision": deleted[key], side: _fields(kvs[0])}
            )
    return out


def history(clients, walkers, start, end):
    """The fork point and, per side, its deletes after it of keys that the other side still holds."""
    revisions = [w.revision for w in walkers]
    point = fork_revision(clients, revisions)
    out = {"fork_revision": point}
    for side, other, name, other_name in ((0, 1, "left", "right"), (1, 0, "right", "left")):
        deleted = deletes_since(clients[side], point + 1, revisions[side], start, end)
        out[f"deleted_{name}"] = still_held(clients[other], deleted, revisions[other], other_name)
    return out


class Sink:
    """Keeps the first max_items entries in memory and streams all of them to a temp file."""

    def __init__(self, max_items, directory):
        self.max_items = max_items
        self.items = []
        self.count = 0
        self.file = None
        if directory is not None:
            self.file = tempfile.TemporaryFile(mode="w+", dir=directory)  # noqa: SIM115

    def add(self, entry):
        if self.count < self.max_items:
            self.items.append(entry)
        if self.file is not None:
            self.file.write(("," if self.count else "") + json.dumps(entry, sort_keys=True) + "\n")
        self.count += 1

    def copy_to(self, out):
        self.file.seek(0)
        for block in iter(lambda: self.file.read(1 << 20), ""):
            out.write(block)

    def close(self):
        if self.file is not None:
            self.file.close()


def compare(left, right, sinks):
    """Merge-join two sides into the sinks; returns the identical count.

    A side is an iterable of pages, each a list of (key, token, kvs, index) in key order (a RangeWalker)."""
    only_left, only_right, conflicts = sinks
    identical = 0
    li, ri = chain.from_iterable(left), chain.from_iterable(right)
    lcur, rcur = next(li, None), next(ri, None)
    while lcur is not None or rcur is not None:
        if rcur is None or (lcur is not None and lcur[0] < rcur[0]):
            only_left.add(_entry(lcur[0], lcur[2][lcur[3]]))
            lcur = next(li, None)
        elif lcur is None or rcur[0] < lcur[0]:
            only_right.add(_entry(rcur[0], rcur[2][rcur[3]]))
            rcur = next(ri, None)
        else:
            if lcur[1] != rcur[1]:
                lkv, rkv = lcur[2][lcur[3]], rcur[2][rcur[3]]
                if kv_value(lkv) == kv_value(rkv):
                    identical += 1
                else:
                    conflicts.add(_conflict(lcur[0], lkv, rkv))
            else:
                identical += 1
            lcur, rcur = next(li, None), next(ri, None)
    return identical


def check_params(params):
    endpoints = params.get("endpoints") or []
    if len(endpoints) != 2:
        raise EtcdError(f"endpoints needs exactly two client URLs, left and right (got {len(endpoints)})")
    for e in endpoints:
        validate_endpoint(e)
    if params["page_size"] < 1 or params["page_size"] > 100000:
        raise EtcdError("page_size must be between 1 and 100000")
    if params["max_items"] < 0:
        raise EtcdError("max_items must not be negative")
    if params.get("report_path"):
        directory = os.path.dirname(os.path.abspath(params["report_path"]))
        if not os.path.isdir(directory):
            raise EtcdError(f"Directory {directory} for report_path does not exist")
    check_tls_params(endpoints, params)
    return [normalize_url(e) for e in endpoints]


def run(params, check_mode=False):
    endpoints = check_params(params)
    prefix = (params.get("prefix") or "").encode("utf-8")
    start, end = (prefix, prefix_range_end(prefix)) if prefix else (b"\x00", b"\x00")
    report_path = params.get("report_path")
    write_report = bool(report_path) and not check_mode
    directory = os.path.dirname(os.path.abspath(report_path)) if write_report else None
    sinks = [Sink(params["max_items"], directory) for _ in range(3)]
    clients = [client_from_params(e, params) for e in endpoints]
    try:
        transport = params.get("transport") or "auto"
        walkers = [
            RangeWalker(c, start, end, params["page_size"], params["serializable"], transport)
            for c in clients
        ]
        try:
            identical = compare(walkers[0], walkers[1], sinks)
        finally:
            for w in walkers:
                w.close()
        only_left, only_right, conflicts = sinks
        fork = None
        if params.get("history"):
            try:
                fork = history(clients, walkers, start, end)
            except EtcdError as exc:  # the key spaces are still compared; the report says what is unknown
                fork = {"fork_revision": None, "deleted_left": [], "deleted_right": [], "error": str(exc)}
        sides = [
            {"endpoint": e, "revision": w.revision, "keys": w.count, "transport": "+".join(sorted(w.used))}
            for e, w in zip(endpoints, walkers, strict=True)
        ]
        counts = {
            "only_left": only_left.count,
            "only_right": only_right.count,
            "conflicts": conflicts.count,
            "identical": identical,
        }
        result = {
            "changed": False,
            "left": sides[0],
            "right": sides[1],
            "prefix": params.get("prefix") or "",
            "counts": counts,
            "identical": not (only_left.count or only_right.count or conflicts.count),
            "only_left": only_left.items,
            "only_right": only_right.items,
            "conflicts": conflicts.items,
            "truncated": any(s.count > len(s.items) for s in sinks),
            "report_path": report_path if write_report else None,
            "history": fork,
        }
        if write_report:
            result["changed"] = write_report_file(report_path, result, sinks)
        return result
    finally:
        for c in clients:
            c.close()
        for s in sinks:
            s.close()


def write_report_file(path, result, sinks):
    """Write the full report atomically; return True when the content changed."""
    directory = os.path.dirname(os.path.abspath(path))
    head = {k: result[k] for k in ("left", "right", "prefix", "counts", "identical")}
    if result.get("history") is not None:
        head["history"] = result["history"]
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".part", dir=directory)
    try:
        with os.fdopen(fd, "w") as out:
            out.write("{\n" + json.dumps(head, sort_keys=True)[1:-1] + ",\n")
            for i, (name, sink) in enumerate(
                zip(("only_left", "only_right", "conflicts"), sinks, strict=True)
            ):
                out.write(f'"{name}": [\n')
                sink.copy_to(out)
                out.write("]" + (",\n" if i < 2 else "\n"))
            out.write("}\n")
            out.flush()
            os.fsync(out.fileno())
        if os.path.exists(path) and _sha(path) == _sha(tmp):
            os.unlink(tmp)
            return False
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
        return True
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _sha(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def argument_spec():
    spec = {
        "endpoints": {"type": "list", "elements": "str", "required": True},
        "prefix": {"type": "str", "default": ""},
        "page_size": {"type": "int", "default": 10000},
        "max_items": {"type": "int", "default": 50},
        "report_path": {"type": "path"},
        "serializable": {"type": "bool", "default": True},
        "transport": {"type": "str", "default": "auto", "choices": ["auto", "grpc", "gateway"]},
        "history": {"type": "bool", "default": False},
    }
    spec.update(ETCD_COMMON_ARGUMENT_SPEC)
    return spec


def main():
    module = etcd_module(argument_spec())
    exit_with_run(module, run, local_errors=(OSError,), local_prefix="Cannot write the report")


if __name__ == "__main__":
    main()
