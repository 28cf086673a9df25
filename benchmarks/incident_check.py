#!/usr/bin/env python3
"""Independent history checker: every acknowledged operation of the writers' ledgers is accounted for.

It shares no code with the lab (nothing from library/ or module_utils/): it reads the ledgers, lab.json and
the conflict report from the state dir, and asks the final cluster itself, with `etcdctl -w json` and the v3
JSON gateway on the members' client URLs. The ledgers are read first; then every read of keys is at ONE fixed
revision (what the leader had applied then; hashkv at the lowest revision every member has applied), so
writers still running cannot race it.

An acknowledged operation is accounted for when it is
  in_force        a put whose very write (same value, mod revision = its revision) is the key's value now;
  superseded      in the cluster's MVCC history (a range read at its revision shows that very write), and a
                  later revision changed the key; or a delete of the authoritative history;
  expired         a leased put whose key is gone (the lease expired or was revoked);
  fork_superseded a write acknowledged by a fork, overwritten by a later acknowledged operation on the same
                  key through the same fork;
  fork_reported   a fork's write listed in conflicts.json: forks[].only_fork, forks[].conflicts[] (its value
                  kept under the quarantine key), forks[].deleted_on_fork, forks[].leased_only_on_fork;
  replayed        a fork's put whose value is the key's value now (written again by a recovery);
  lost            listed under the report's top-level `lost` (a restore without quorum, opted into);
and is a FAILURE otherwise (a fork write missing and unreported, a fork delete of a key the cluster still
holds that the report does not list, a key gone with no acknowledged delete). Every final value must be one
a client wrote to that key (an acknowledged value, or a writer's last in-flight write that got no answer).

The cluster checks: every lab member answers, one leader, one membership equal to the lab's (all started
voters), no alarms, hashkv equal on every member at the fixed revision, no --force-new-cluster process left,
and every data dir that was moved aside still there.

    .venv/bin/python benchmarks/incident_check.py --state-dir .lab [--expect-moved PATH] [--json]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

ACCOUNTED = (
    "in_force",
    "superseded",
    "expired",
    "maybe_deleted",
    "maybe_put",
    "fork_superseded",
    "fork_reported",
    "replayed",
    "lost",
)
VALUE_RE = re.compile(r"^(?P<writer>.+)#(?P<seq>\d+)$")
DEFAULT_QPREFIX = "/recovery/quarantine/"


@dataclass(frozen=True)
class Op:
    """One acknowledged operation of a writer's ledger (puts of the old schema have no "op")."""

    writer: str
    endpoint: str
    key: str
    value: str | None
    revision: int
    time: str
    op: str = "put"
    lease: str | None = None
    deleted: int | None = None
    member_id: str = ""

    @classmethod
    def from_entry(cls, e: dict) -> Op:
        op = e.get("op") or "put"
        if op not in ("put", "delete"):
            raise ValueError(f"unknown op {op!r} in ledger entry {e}")
        return cls(
            writer=str(e.get("writer", "")),
            endpoint=str(e.get("endpoint", "")),
            key=e["key"],
            value=e.get("value"),
            revision=int(e.get("revision", 0)),
            time=str(e.get("time", "")),
            op=op,
            lease=e.get("lease") or None,
            deleted=None if e.get("deleted") is None else int(e["deleted"]),
            member_id=str(e.get("member_id", "")),
        )


# (value, mod_revision) of a key at a revision, or None when the key does not exist there.
KV = tuple[str, int]


@dataclass
class Verdict:
    outcomes: Counter = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    lost: int = 0

    @property
    def ok(self) -> bool:
        return not self.failures


def load_failures(ledger_dir: Path) -> list[dict]:
    """The writers' failed attempts (<ledger>.failures): a request that timed out may still have been applied,
    even late, after the partition heals (benchmarks/late_requests.py)."""
    out = []
    for path in sorted(ledger_dir.glob("*.jsonl.failures")):
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue  # the torn last line of a writer that was killed
    return out


def failed_delete_times(failures: list[dict]) -> dict[str, list[str]]:
    """{key: [times]} of the failed deletes: a key can be gone without an acknowledged delete."""
    out: dict[str, list[str]] = defaultdict(list)
    for entry in failures:
        if entry.get("op") == "delete":
            out[entry["key"]].append(entry["time"])
    return out


def failed_put_values(failures: list[dict]) -> dict[str, set[str]]:
    """{key: {values}} of the failed puts: one may land over what a fork did to the key since."""
    out: dict[str, set[str]] = defaultdict(set)
    for entry in failures:
        if entry.get("op") == "put" and entry.get("value") is not None:
            out[entry["key"]].add(entry["value"])
    return out


def load_ledgers(ledger_dir: Path) -> list[Op]:
    ops = []
    for path in sorted(ledger_dir.glob("*.jsonl")):
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                ops.append(Op.from_entry(json.loads(line)))
            except (ValueError, KeyError) as exc:
                # A writer killed mid-line leaves a torn last line: never acknowledged to anyone else.
                if n < len(path.read_text(encoding="utf-8").splitlines()):
                    raise ValueError(f"{path}:{n}: {exc}") from None
    return ops


def _keys_of(entries: Iterable) -> set[str]:
    """Keys of a report list whose items are keys or dicts with a "key"."""
    return {e if isinstance(e, str) else e.get("key") for e in entries or []}


@dataclass
class Report:
    """What conflicts.json says; empty when there is no report."""

    only_fork: set[tuple[str, str]] = field(default_factory=set)
    conflicts: dict[tuple[str, str], list[str]] = field(default_factory=dict)  # (key, fork value) -> qkeys
    deleted_on_fork: set[str] = field(default_factory=set)
    # Quarantine keys that hold the recovery's own note of a fork's delete (not a client's value).
    delete_markers: set[str] = field(default_factory=set)
    leased_only_on_fork: set[str] = field(default_factory=set)
    lost: set[tuple[str, str | None]] = field(default_factory=set)
    policy: str = "quarantine"
    quarantine_prefix: str = DEFAULT_QPREFIX

    @classmethod
    def from_json(cls, data: dict | None) -> Report:
        r = cls()
        if not data:
            return r
        r.policy = data.get("policy", "quarantine")
        r.quarantine_prefix = data.get("quarantine_prefix", DEFAULT_QPREFIX)
        for fork in data.get("forks", []):
            r.only_fork |= {(e["key"], e.get("value")) for e in fork.get("only_fork", [])}
            for c in fork.get("conflicts", []):
                right = c.get("right") or {}
                r.conflicts.setdefault((c["key"], right.get("value")), []).append(c.get("quarantine_key", ""))
            # Keys only on the fork that the authoritative side deleted after the split: not brought back,
            # the fork's value kept under its quarantine key, like a conflict.
            for e in fork.get("deleted_on_authoritative", []):
                r.conflicts.setdefault((e["key"], e.get("value")), []).append(e.get("quarantine_key", ""))
            r.deleted_on_fork |= _keys_of(fork.get("deleted_on_fork"))
            r.delete_markers |= {
                e["marker_key"]
                for e in fork.get("deleted_on_fork", [])
                if isinstance(e, dict) and e.get("marker_key")
            }
            r.leased_only_on_fork |= _keys_of(fork.get("leased_only_on_fork"))
        r.lost = {(e["key"], e.get("value")) for e in data.get("lost", [])}
        return r


def fork_starts(ops: list[Op], in_history: Callable[[Op], bool]) -> dict[str, tuple[str, str]]:
    """Per endpoint, the time of its first put that is not in the cluster's history, and the member id that
    answered it: from then on, what that member acknowledged through that endpoint belongs to a fork. A member
    added again under the same name (a new member id) answers in the cluster's history again."""
    starts: dict[str, tuple[str, str]] = {}
    for op in ops:
        if (
            op.op == "put"
            and not in_history(op)
            and (op.endpoint not in starts or op.time < starts[op.endpoint][0])
        ):
            starts[op.endpoint] = (op.time, op.member_id)
    return starts


def classify(
    ops: list[Op],
    final: dict[str, KV],
    history: dict[tuple[str, int], KV | None],
    report: Report,
    failed_deletes: dict[str, list[str]] | None = None,
    failed_puts: dict[str, set[str]] | None = None,
) -> Verdict:
    """Account for every acknowledged operation. `final`: the cluster's keys at the fixed revision; `history`
    maps (key, revision of an op) to what the cluster held at that revision (None: absent, or the revision is
    beyond the fixed one); `failed_deletes`: {key: [times]} of deletes that failed, which may have been
    applied all the same (a reply lost after etcd committed the request); `failed_puts`: {key: {values}} of
    puts that failed, which may land late."""
    failed_deletes = failed_deletes or {}
    failed_puts = failed_puts or {}

    def maybe_deleted(op: Op) -> bool:
        """A put of the cluster's history whose key is gone: a failed delete of the key may have removed it,
        whenever it failed. A request that a member cut off from its leader had already forwarded reaches
        the leader when the partition heals, after later writes, even when that member has stopped."""
        return bool(failed_deletes.get(op.key))

    def in_history(op: Op) -> bool:
        return op.op == "put" and history.get((op.key, op.revision)) == (op.value, op.revision)

    starts = fork_starts(ops, in_history)

    def is_fork(op: Op) -> bool:
        if op.op == "put":
            return not in_history(op)
        if op.endpoint in starts and op.time >= starts[op.endpoint][0]:
            return op.member_id == starts[op.endpoint][1]
        # A delete in the authoritative history leaves the key absent at its revision.
        return history.get((op.key, op.revision)) is not None

    fork_ops_by_key: dict[tuple[str, str], list[Op]] = defaultdict(list)
    auth_deletes: dict[str, list[int]] = defaultdict(list)
    for op in ops:
        if is_fork(op):
            fork_ops_by_key[(op.endpoint, op.key)].append(op)
        elif op.op == "delete":
            auth_deletes[op.key].append(op.revision)

    def later_on_fork(op: Op) -> bool:
        return any(
            o.time > op.time or (o.time == op.time and o.revision > op.revision)
            for o in fork_ops_by_key[(op.endpoint, op.key)]
        )

    v = Verdict()

    def account(op: Op, outcome: str | None, why: str = "") -> None:
        if outcome is None:
            v.failures.append(
                f"{op.op} {op.key}={op.value!r} by {op.writer} via {op.endpoint} at revision "
                f"{op.revision} ({op.time}): {why}"
            )
            v.outcomes["unaccounted"] += 1
        else:
            v.outcomes[outcome] += 1
            v.lost += outcome == "lost"

    for op in ops:
        now = final.get(op.key)
        if op.op == "put" and not is_fork(op):
            if now == (op.value, op.revision):
                account(op, "in_force")
            elif now is not None and now[1] > op.revision:
                account(op, "superseded")
            elif now is None and op.lease:
                account(op, "expired")
            elif now is None and any(r > op.revision for r in auth_deletes[op.key]):
                account(op, "superseded")
            elif now is None and op.key in report.deleted_on_fork:
                account(op, "superseded")  # removed by a recovery that applied a reported fork delete
            elif now is None and maybe_deleted(op):
                account(op, "maybe_deleted")
            else:
                account(
                    op,
                    None,
                    f"in the cluster's history but the key is now {now!r} and no acknowledged "
                    "operation explains it",
                )
        elif op.op == "put":
            if (op.key, op.value) in report.lost:
                account(op, "lost")
            elif later_on_fork(op):
                account(op, "fork_superseded")
            elif (op.key, op.value) in report.only_fork:
                account(op, "fork_reported")
            elif (op.key, op.value) in report.conflicts:
                qkeys = report.conflicts[(op.key, op.value)]
                kept = any(final.get(q, (None,))[0] == op.value for q in qkeys)
                if kept or report.policy != "quarantine":
                    account(op, "fork_reported")
                else:
                    account(
                        op,
                        None,
                        f"a fork's conflicting write listed in the report but not kept under "
                        f"{', '.join(qkeys)}",
                    )
            elif op.lease and (op.key in report.leased_only_on_fork or now is None):
                account(op, "fork_reported" if op.key in report.leased_only_on_fork else "expired")
            elif now is not None and now[0] == op.value:
                account(op, "replayed")
            else:
                account(
                    op,
                    None,
                    "acknowledged by a fork, not in the cluster's history, not in the cluster "
                    "and not in the conflict report",
                )
        elif not is_fork(op):  # a delete of the authoritative history
            if now is None or now[1] > op.revision:
                account(op, "superseded" if now is not None else "in_force")
            else:
                account(op, None, f"deleted at revision {op.revision} but the key holds {now!r} from before")
        else:  # a delete acknowledged by a fork
            if (op.key, None) in report.lost:
                account(op, "lost")
            elif later_on_fork(op):
                account(op, "fork_superseded")
            elif now is None or op.deleted == 0:
                account(op, "in_force")
            elif op.key in report.deleted_on_fork:
                account(op, "fork_reported")
            elif now[0] in failed_puts.get(op.key, ()):
                # The key holds a value whose put its client saw fail: that request, forwarded by a member
                # cut off from its leader, reached the leader after the heal, after the fork had written the
                # key again and deleted it (seen with heal_first: the late put landed after the comparison).
                account(op, "maybe_put")
            else:
                account(
                    op,
                    None,
                    f"a fork deleted a key the cluster still holds ({now[0]!r}) and the conflict "
                    "report does not list it under deleted_on_fork",
                )
    v.failures.extend(check_values(ops, final, report.quarantine_prefix, report.delete_markers))
    return v


def check_values(
    ops: list[Op], final: dict[str, KV], qprefix: str = DEFAULT_QPREFIX, markers: Iterable[str] = ()
) -> list[str]:
    """No final value may be one that no client wrote to that key (the recovery's listed notes of a fork's
    deletes, under the quarantine prefix, are the only values of its own it may leave)."""
    markers = set(markers)
    acked: dict[str, set[str]] = defaultdict(set)
    max_seq: dict[str, int] = {}
    writers = {op.writer for op in ops}
    for op in ops:
        if op.value is not None:
            acked[op.key].add(op.value)
            m = VALUE_RE.match(op.value)
            if m and m["writer"] == op.writer:
                max_seq[op.writer] = max(max_seq.get(op.writer, -1), int(m["seq"]))
    qprefix = qprefix.rstrip("/") + "/"
    failures = []
    for key, (value, _rev) in sorted(final.items()):
        if key in markers:
            continue
        if key.startswith(qprefix):
            rest = key[len(qprefix) :]
            original = rest[rest.index("/") :] if "/" in rest else ""
            if value not in acked.get(original, ()):
                failures.append(f"quarantine key {key} holds {value!r}, which no client wrote to {original}")
            continue
        if value in acked.get(key, ()):
            continue
        m = VALUE_RE.match(value)
        in_flight = m and m["writer"] in writers and int(m["seq"]) > max_seq.get(m["writer"], -1)
        if key in acked and not in_flight:
            failures.append(f"{key} holds {value!r}, which no client wrote to it")
        elif key not in acked and m and m["writer"] in writers and not in_flight:
            failures.append(f"{key} holds {value!r}, a value its writer was told went elsewhere")
    return failures


# ---- reading the cluster (etcdctl -w json and the JSON gateway), at fixed revisions ----------------


def b64(s: str | bytes) -> str:
    return base64.b64encode(s.encode() if isinstance(s, str) else s).decode()


def unb64(s: str | None) -> str:
    return base64.b64decode(s or "").decode("utf-8", errors="replace")


# A TLS lab (lab.json's tls): the CA and the client certificate, for etcdctl (its variables) and the gateway.
TLS_ENV: dict[str, str] = {}
TLS_CONTEXT: ssl.SSLContext | None = None


def use_lab_tls(lab: dict) -> None:
    global TLS_CONTEXT
    tls = lab.get("tls") or {}
    TLS_ENV.clear()
    TLS_CONTEXT = None
    if tls.get("enabled"):
        TLS_ENV.update(
            ETCDCTL_CACERT=tls["ca_file"], ETCDCTL_CERT=tls["cert_file"], ETCDCTL_KEY=tls["key_file"]
        )
        TLS_CONTEXT = ssl.create_default_context(cafile=tls["ca_file"])
        TLS_CONTEXT.load_cert_chain(tls["cert_file"], tls["key_file"])


def gateway(url: str, path: str, body: dict, timeout: float = 10) -> dict:
    req = urllib.request.Request(url + path, json.dumps(body).encode(), {"Content-Type": "application/json"})
    context = TLS_CONTEXT if url.startswith("https://") else None
    with urllib.request.urlopen(req, timeout=timeout, context=context) as resp:
        return json.load(resp)


def range_at(url: str, key: str, revision: int) -> KV | None:
    data = gateway(url, "/v3/kv/range", {"key": b64(key), "revision": str(revision)})
    kvs = data.get("kvs") or []
    return (unb64(kvs[0].get("value")), int(kvs[0].get("mod_revision", 0))) if kvs else None


def read_all(url: str, revision: int, page: int = 1000, max_pages: int = 10000) -> dict[str, KV]:
    out: dict[str, KV] = {}
    start = b"\0"
    for _ in range(max_pages):  # bounded
        data = gateway(
            url,
            "/v3/kv/range",
            {"key": b64(start), "range_end": b64(b"\0"), "revision": str(revision), "limit": page},
        )
        kvs = data.get("kvs") or []
        for kv in kvs:
            out[unb64(kv["key"])] = (unb64(kv.get("value")), int(kv.get("mod_revision", 0)))
        if not data.get("more") or not kvs:
            return out
        start = base64.b64decode(kvs[-1]["key"]) + b"\0"
    raise RuntimeError("more than max_pages pages of keys")


def etcdctl_json(bin_dir: str, endpoint: str, *args: str, timeout: float = 20) -> dict | list | None:
    try:
        proc = subprocess.run(
            [f"{bin_dir}/etcdctl", f"--endpoints={endpoint}", "--command-timeout=5s", "-w", "json", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=dict(os.environ, ETCDCTL_API="3", **TLS_ENV),
        )
    except subprocess.TimeoutExpired:
        return None
    if proc.returncode != 0:
        return None
    return json.loads(proc.stdout)


def fork_processes(state_dir: Path) -> list[str]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        text = " ".join(c.decode(errors="replace") for c in cmd)
        if f"{state_dir}/" in text and any(c.startswith(b"--force-new-cluster") for c in cmd):
            found.append(f"{pid}: {text[:160]}")
    return found


def cluster_checks(lab: dict, state_dir: Path) -> tuple[list[str], int | None, str | None]:
    """Failures of the cluster-level checks, the fixed revision and a client URL to read from."""
    bin_dir, members = lab["etcd_bin_dir"], lab["members"]
    names = {m["name"] for m in members}
    failures: list[str] = []
    statuses, lists = {}, {}
    for m in members:
        st = etcdctl_json(bin_dir, m["client_url"], "endpoint", "status")
        ml = etcdctl_json(bin_dir, m["client_url"], "member", "list")
        if not st or not ml:
            failures.append(f"{m['name']} does not answer endpoint status / member list")
            continue
        statuses[m["name"]], lists[m["name"]] = st[0]["Status"], ml.get("members", [])
    if not statuses:
        return failures or ["no member answers"], None, None
    leaders = {int(s.get("leader", 0)) for s in statuses.values()}
    self_leaders = [
        n for n, s in statuses.items() if int(s["header"]["member_id"]) == int(s.get("leader", 0))
    ]
    if len(leaders) != 1 or 0 in leaders or len(self_leaders) != 1:
        failures.append(f"not one leader: members follow {sorted(leaders)}, leaders {self_leaders}")
    for name, ml in lists.items():
        listed = sorted(x.get("name", "") for x in ml)
        if set(listed) != names or len(listed) != len(names):
            failures.append(f"{name}'s membership is {listed}, not the lab's {sorted(names)}")
        if any(not x.get("name") or not x.get("clientURLs") for x in ml):
            failures.append(f"{name} lists an unstarted member")
        if any(x.get("isLearner") for x in ml):
            failures.append(f"{name} lists a learner")
    ids = {frozenset(int(x["ID"]) for x in ml) for ml in lists.values()}
    if len(ids) > 1:
        failures.append("members list different member ids")
    revision = min(int(s["header"]["revision"]) for s in statuses.values())
    hashes = {}
    for m in members:
        if m["name"] not in statuses:
            continue
        hk = etcdctl_json(bin_dir, m["client_url"], "endpoint", "hashkv", f"--rev={revision}")
        hashes[m["name"]] = hk[0]["HashKV"]["hash"] if hk else None
    if len(set(hashes.values())) != 1 or None in hashes.values():
        failures.append(f"hashkv differs at revision {revision}: {hashes}")
    first = next(m for m in members if m["name"] in statuses)
    alarms = etcdctl_json(bin_dir, first["client_url"], "alarm", "list")
    if alarms is None:
        failures.append("alarm list failed")
    elif alarms.get("alarms"):
        failures.append(f"alarms raised: {alarms['alarms']}")
    failures += [f"a --force-new-cluster process is left: {p}" for p in fork_processes(state_dir)]
    # The history to account against: the leader with the most members following it, read at the revision that
    # leader had applied when asked (the ledgers are read before: every write they hold that this side
    # acknowledged is at or below it, even while writers still run after a refused recovery). A fork's lower
    # revision (the min over all members) would hide the majority's last writes.
    followers = Counter(int(s.get("leader", 0)) for s in statuses.values() if int(s.get("leader", 0)))
    if not followers:
        return failures, None, None
    lead_id = followers.most_common(1)[0][0]
    side = [n for n, s in statuses.items() if int(s.get("leader", 0)) == lead_id]
    leader_name = next((n for n in side if int(statuses[n]["header"]["member_id"]) == lead_id), side[0])
    read_rev = int(statuses[leader_name]["header"]["revision"])
    url = next(m["client_url"] for m in members if m["name"] == leader_name)
    return failures, read_rev, url


def check(state_dir: Path, expect_moved: Iterable[str] = (), expect_moved_in: Iterable[str] = ()) -> dict:
    """The whole check; a dict with ok, failures, outcomes, lost, revision."""
    state_dir = Path(state_dir).resolve()
    lab = json.loads((state_dir / "lab.json").read_text())
    use_lab_tls(lab)
    ops = load_ledgers(state_dir / "ledger")  # before the cluster's revision is fixed: see cluster_checks
    failures, revision, url = cluster_checks(lab, state_dir)
    for path in expect_moved:
        if not (Path(path) / "member").is_dir():
            failures.append(f"the data dir moved aside to {path} is gone")
    for name in expect_moved_in:
        if not list((state_dir / "nodes" / name).glob("data.moved-*/member")):
            failures.append(
                f"no data.moved-*/member under nodes/{name}: the data dir of a member that recover.yml "
                "rejoins must be kept aside"
            )
    result: dict = {"revision": revision, "outcomes": {}, "lost": 0}
    if revision is not None and url is not None:
        report_path = state_dir / "recovery" / "conflicts.json"
        report = Report.from_json(json.loads(report_path.read_text()) if report_path.exists() else None)
        final = read_all(url, revision)
        history: dict[tuple[str, int], KV | None] = {}
        for op in ops:
            if (op.key, op.revision) in history:
                continue
            try:
                history[(op.key, op.revision)] = (
                    range_at(url, op.key, op.revision) if op.revision <= revision else None
                )
            except urllib.error.HTTPError as exc:  # compacted or future: not readable in this history
                history[(op.key, op.revision)] = None
                if exc.code != 400:
                    raise
        attempts = load_failures(state_dir / "ledger")
        verdict = classify(
            ops, final, history, report, failed_delete_times(attempts), failed_put_values(attempts)
        )
        failures += verdict.failures
        result.update(outcomes=dict(verdict.outcomes), lost=verdict.lost, operations=len(ops))
    result.update(ok=not failures, failures=failures)
    return result


def doc_parser(doc: str) -> argparse.ArgumentParser:
    """The command line of a benchmark script: its docstring's first line is the description, the rest (after
    the first blank line) the epilog, as written."""
    return argparse.ArgumentParser(
        description=doc.splitlines()[0],
        epilog=doc.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def env_option(
    parser: argparse.ArgumentParser, flag: str, variable: str, fallback, text: str, **kwargs
) -> None:
    """An option whose default is the environment variable `variable`, else `fallback`; its help says so."""
    parser.add_argument(
        flag,
        default=os.environ.get(variable, fallback),
        help=f"{text}; default ${variable} or {fallback}",
        **kwargs,
    )


def main(argv: list[str] | None = None) -> int:
    parser = doc_parser(__doc__)
    env_option(
        parser, "--state-dir", "LAB_STATE_DIR", ".lab", "the lab's state dir (lab.json, ledger/, recovery/)"
    )
    parser.add_argument(
        "--expect-moved",
        action="append",
        default=[],
        metavar="PATH",
        help="a data dir that was moved aside and must still be there (repeatable)",
    )
    parser.add_argument(
        "--expect-moved-in",
        action="append",
        default=[],
        metavar="MEMBER",
        help="a member whose node dir must hold a data.moved-*/member dir (repeatable)",
    )
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")
    args = parser.parse_args(argv)
    result = check(Path(args.state_dir), args.expect_moved, args.expect_moved_in)
    if args.json:
        print(json.dumps(result, sort_keys=True))
    else:
        print(
            f"{'OK' if result['ok'] else 'FAIL'}: {result.get('operations', 0)} acknowledged operations at "
            f"revision {result['revision']}: {result['outcomes']}, lost {result['lost']}"
        )
        for f in result["failures"][:50]:
            print(f"  FAIL {f}")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
