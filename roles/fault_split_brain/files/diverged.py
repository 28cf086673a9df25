#!/usr/bin/env python3
"""Exit 0 when some key under a prefix holds different values on the fork and on the majority side.

Reads both sides with plain `etcdctl get --prefix -w json` (one endpoint per side), so what it reports is
exactly what a learner would see. Prints the first differing key; exits 1 while the sides still agree and 2
when a side cannot be read. With --index-above, it also waits until the fork's raft index
(`etcdctl endpoint status`) is above that of every majority member: the trap of the exercise's hint 7.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import subprocess
import sys


def etcdctl_json(etcdctl: str, endpoints: str, *args: str):
    """`etcdctl --endpoints=... ARGS -w json`, parsed; RuntimeError with etcdctl's message when it fails."""
    proc = subprocess.run(
        [etcdctl, f"--endpoints={endpoints}", "--command-timeout=3s", *args, "-w", "json"],
        capture_output=True,
        text=True,
        env=dict(os.environ, ETCDCTL_API="3"),
        timeout=15,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{endpoints}: {proc.stderr.strip()}")
    return json.loads(proc.stdout)


def read_side(etcdctl: str, endpoints: str, prefix: str) -> dict[str, str]:
    kvs = etcdctl_json(etcdctl, endpoints, "get", prefix, "--prefix").get("kvs", [])
    return {
        base64.b64decode(kv["key"]).decode(): base64.b64decode(kv.get("value", "")).decode() for kv in kvs
    }


def raft_indexes(etcdctl: str, endpoints: str) -> dict[str, int]:
    """Each endpoint's raft index, as `etcdctl endpoint status -w json` shows it."""
    return {
        e["Endpoint"]: int(e["Status"]["raftIndex"])
        for e in etcdctl_json(etcdctl, endpoints, "endpoint", "status")
    }


def first_conflict(fork: dict[str, str], majority: dict[str, str]) -> str | None:
    for key in sorted(fork.keys() & majority.keys()):
        if fork[key] != majority[key]:
            return key
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--etcdctl", required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--fork", required=True, help="client URL of the forked member")
    parser.add_argument(
        "--majority", required=True, help="client URL(s) of the majority side, comma-separated"
    )
    parser.add_argument(
        "--index-above",
        type=lambda text: text.lower() in ("true", "yes", "1"),
        default=False,
        help="true: also wait until the fork's raft index is the highest",
    )
    args = parser.parse_args()
    try:
        fork = read_side(args.etcdctl, args.fork, args.prefix)
        majority = read_side(args.etcdctl, args.majority.split(",")[0], args.prefix)
        indexes = raft_indexes(args.etcdctl, f"{args.fork},{args.majority}") if args.index_above else {}
    except (RuntimeError, subprocess.TimeoutExpired, ValueError, KeyError) as exc:
        print(f"cannot read a side: {exc}", file=sys.stderr)
        return 2
    key = first_conflict(fork, majority)
    if key is None:
        print(
            f"no conflict yet under {args.prefix} "
            f"({len(fork)} keys on the fork, {len(majority)} on the majority)"
        )
        return 1
    print(f"{key}: fork has {fork[key]!r}, majority has {majority[key]!r}")
    if indexes:
        fork_index = indexes.pop(args.fork, 0)
        if indexes and fork_index <= max(indexes.values()):
            print(
                f"the fork's raft index {fork_index} is not above the majority's {max(indexes.values())} yet"
            )
            return 1
        others = ", ".join(map(str, indexes.values()))
        print(f"the fork's raft index {fork_index} is above the majority's ({others})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
