#!/usr/bin/env python3
"""The lab's flight recorder: what every member says, several times a second, from setup to teardown.

  lab_recorder.py --lab-json .lab/lab.json --out .lab/recorder [--interval 0.25] [--duration 7200]

Each round asks every member, in parallel, for its status (and every fourth round for its member list) over
the same client as the lab's modules, and appends one line to --out/samples.jsonl when something changed (a
member's answer, leader, term or membership) or --heartbeat seconds passed:

  {"time": "2026-12-06T20:01:02.250Z", "members": {"etcd-0": {"up": true, "id": "8e9e05c52164694d",
   "leader": "8e9e05c52164694d", "term": 2, "index": 812, "revision": 790, "members": ["etcd-0", ...],
   "clock_offset": 0.0}, "etcd-2": {"up": false, "error": "connection refused"}}}

Times are this host's clock (UTC), never a member's skewed one; clock_offset is the member's HTTP Date header
against it. The playbooks add their own events (partition cut, member forced, ...) to --out/events.jsonl
(the lab_timing callback, from tasks tagged event:<text>).

Bounded: it stops after --duration seconds, when --lab-json disappears (teardown), cleanly on SIGTERM or
SIGINT, and it stops writing samples once samples.jsonl reaches --max-bytes (said once in its log). It talks
only to the members' client URLs listed in --lab-json.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import signal
import sys
import time
from pathlib import Path

STOP = False
# The repository (roles/lab_workload/files/ -> root); the lab's shared client code lives there.
ROOT_DEPTH = 3


def on_signal(_signum, _frame) -> None:
    global STOP
    STOP = True


def load_client():
    """The lab's member probe (module_utils/etcd_probe.py), imported the way Ansible resolves it
    (tools/lab_imports.py)."""
    tools = str(Path(__file__).resolve().parents[ROOT_DEPTH] / "tools")
    if tools not in sys.path:
        sys.path.insert(0, tools)
    from lab_imports import lab_module_utils

    return lab_module_utils("etcd_probe")


def stamp(moment: dt.datetime | None = None) -> str:
    moment = moment or dt.datetime.now(dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def hex_id(value) -> str:
    """etcd's JSON gateway gives uint64 ids as decimal strings; the lab shows them in hex, as etcdctl does."""
    try:
        return format(int(value), "x")
    except (TypeError, ValueError):
        return ""


def summarize(probe: dict, previous: dict | None) -> dict:
    """One member's answer in the recorder's terms. The member list is kept from the previous round when it
    was not asked for this time."""
    status = probe.get("status")
    if status is None:
        return {"up": False, "error": str(probe.get("error") or "no answer")[:200]}
    header = status.get("header") or {}
    out = {
        "up": True,
        "id": hex_id(header.get("member_id")),
        "leader": hex_id(status.get("leader")) if str(status.get("leader", "0")) != "0" else "",
        "term": int(status.get("raftTerm") or header.get("raft_term") or 0),
        "index": int(status.get("raftIndex") or 0),
        "revision": int(header.get("revision") or 0),
    }
    if probe.get("clock_offset") is not None:
        out["clock_offset"] = round(float(probe["clock_offset"]), 1)
    listed = probe.get("members")
    if listed is not None:
        out["members"] = sorted(m.get("name") or hex_id(m.get("ID")) for m in listed.get("members", []))
    elif previous and previous.get("up") and "members" in previous:
        out["members"] = previous["members"]
    return out


def significant(state: dict) -> dict:
    """What makes a round worth a line of its own: all but the counters that move with every write."""
    return {
        name: {k: v for k, v in entry.items() if k not in ("index", "revision", "error", "clock_offset")}
        for name, entry in state.items()
    }


class Recorder:
    def __init__(self, args: argparse.Namespace, client) -> None:
        self.args = args
        self.client = client
        lab = json.loads(Path(args.lab_json).read_text())
        self.members = [(m["name"], m["client_url"]) for m in lab["members"] if m.get("client_url")]
        tls = lab.get("tls") or {}
        self.params = {
            "timeout": args.timeout,
            "ca_cert": tls.get("ca_file"),
            "client_cert": tls.get("cert_file"),
            "client_key": tls.get("key_file"),
            "validate_certs": True,
        }
        self.out = Path(args.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.samples = self.out / "samples.jsonl"
        self.state: dict[str, dict] = {}
        self.last_written = 0.0
        self.full = False

    def probe(self, with_members: bool) -> dict[str, dict]:
        def one(item):
            name, url = item
            return name, self.client.probe_member(url, self.params, members=with_members)

        results = self.client.parallel_map(one, self.members)
        return {name: summarize(probe, self.state.get(name)) for name, probe in results}

    def round(self, number: int) -> bool:
        """One round; True when it wrote a line."""
        when = dt.datetime.now(dt.UTC)
        state = self.probe(with_members=number % self.args.members_every == 0)
        now = time.monotonic()
        changed = significant(state) != significant(self.state)
        self.state = state
        if not (changed or now - self.last_written >= self.args.heartbeat) or self.full:
            return False
        line = json.dumps({"time": stamp(when), "members": state}, sort_keys=True) + "\n"
        size = self.samples.stat().st_size if self.samples.exists() else 0
        if size + len(line) > self.args.max_bytes:
            self.full = True
            print(f"{stamp()} samples.jsonl reached {self.args.max_bytes} bytes: no more samples", flush=True)
            return False
        with self.samples.open("a") as handle:
            handle.write(line)
        self.last_written = now
        return True


def run(args: argparse.Namespace) -> int:
    recorder = Recorder(args, load_client())
    names = ", ".join(name for name, _ in recorder.members)
    print(f"{stamp()} recording {names} every {args.interval} s into {recorder.samples}", flush=True)
    deadline = time.monotonic() + args.duration
    number = 0
    while not STOP and time.monotonic() < deadline and Path(args.lab_json).exists():
        started = time.monotonic()
        recorder.round(number)
        number += 1
        with contextlib.suppress(ValueError):
            time.sleep(max(0.0, args.interval - (time.monotonic() - started)))
    why = "signal" if STOP else ("lab gone" if not Path(args.lab_json).exists() else "lifetime over")
    print(f"{stamp()} stopped after {number} rounds ({why})", flush=True)
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lab-json", required=True, help="the lab's layout (its members and client URLs)")
    parser.add_argument("--out", required=True, help="directory of samples.jsonl (events.jsonl beside it)")
    parser.add_argument("--interval", type=float, default=0.25, help="seconds between rounds")
    parser.add_argument("--heartbeat", type=float, default=2.0, help="a line at least this often (s)")
    parser.add_argument("--members-every", type=int, default=4, help="ask for member lists every N rounds")
    parser.add_argument("--timeout", type=float, default=0.8, help="seconds a member may take to answer")
    parser.add_argument("--duration", type=float, default=7200, help="stop after this many seconds")
    parser.add_argument("--max-bytes", type=int, default=32 * 1024 * 1024, help="size cap of samples.jsonl")
    args = parser.parse_args(argv)
    if args.interval <= 0 or args.duration <= 0 or args.members_every < 1 or args.max_bytes < 1024:
        parser.error(
            "--interval and --duration must be positive, --members-every at least 1, "
            "--max-bytes at least 1024"
        )
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        return run(args)
    except (OSError, ValueError, KeyError) as exc:
        print(f"lab_recorder: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
