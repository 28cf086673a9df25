#!/usr/bin/env python3
"""A client application pinned to one etcd member: bounded-rate writes, every acknowledged one in a ledger.

It writes two kinds of keys through etcd's v3 JSON gateway (POST /v3/kv/put):
  - shared keys (<prefix>/shared/kN), the same keys from every writer, so the two sides of a split conflict;
  - unique keys (<prefix>/writers/<name>/<seq>), written only by this writer.
Each write that etcd acknowledges is appended to a JSONL ledger: key, value, endpoint, member id, revision,
raft term and time. Failures (member unreachable, no leader, timeouts) are logged and retried with backoff;
the writer never crashes on them. It stops by itself after --duration seconds or --max-writes writes, and
cleanly on SIGTERM or SIGINT. Standard library only.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import signal
import sys
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime

STOP = False


def on_signal(_signum, _frame) -> None:
    global STOP
    STOP = True


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def key_for(name: str, prefix: str, seq: int, shared_keys: int) -> str:
    """Even sequence numbers write a shared key, odd ones a key of this writer's own."""
    if seq % 2 == 0 and shared_keys > 0:
        return f"{prefix}/shared/k{(seq // 2) % shared_keys}"
    return f"{prefix}/writers/{name}/{seq:08d}"


def put(endpoint: str, key: str, value: str, timeout: float) -> dict:
    body = json.dumps({"key": b64(key), "value": b64(value)}).encode()
    req = urllib.request.Request(
        f"{endpoint}/v3/kv/put", data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        reply = json.loads(resp.read() or b"{}")
    if "error" in reply or "header" not in reply:
        raise RuntimeError(reply.get("error") or reply.get("message") or f"unexpected reply {reply}")
    return reply["header"]


def describe(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        try:
            detail = json.loads(exc.read() or b"{}")
            return f"HTTP {exc.code}: {detail.get('error') or detail.get('message') or detail}"
        except ValueError:
            return f"HTTP {exc.code}"
    if isinstance(exc, urllib.error.URLError):
        return str(exc.reason)
    return f"{type(exc).__name__}: {exc}"


def count_lines(path: str) -> int:
    """Acknowledged writes already in the ledger, so a restarted writer never reuses a unique key."""
    try:
        with open(path, "rb") as handle:
            return sum(1 for _ in handle)
    except FileNotFoundError:
        return 0


def ledger_entry(name: str, endpoint: str, key: str, value: str, header: dict) -> dict:
    return {
        "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "writer": name,
        "endpoint": endpoint,
        "key": key,
        "value": value,
        "member_id": format(int(header.get("member_id", 0)), "x"),
        "revision": int(header.get("revision", 0)),
        "raft_term": int(header.get("raft_term", 0)),
    }


def run(args: argparse.Namespace) -> int:
    interval = 1.0 / args.rate
    deadline = time.monotonic() + args.duration
    backoff = 0.0
    acked = failed = 0
    seq = args.start_seq + count_lines(args.ledger)
    log = sys.stderr
    print(f"{args.name}: writing to {args.endpoint} at {args.rate}/s for at most {args.duration}s", file=log)
    os.makedirs(os.path.dirname(os.path.abspath(args.ledger)), exist_ok=True)
    with open(args.ledger, "a", encoding="utf-8") as ledger:
        while not STOP and time.monotonic() < deadline and acked + failed < args.max_writes:
            started = time.monotonic()
            key = key_for(args.name, args.prefix, seq, args.shared_keys)
            value = f"{args.name}#{seq}"
            try:
                header = put(args.endpoint, key, value, args.timeout)
            except Exception as exc:
                failed += 1
                backoff = min(max(backoff * 2, 0.2), args.max_backoff)
                print(
                    f"{args.name}: put {key} failed ({describe(exc)}); retrying in {backoff:.1f}s", file=log
                )
                time.sleep(backoff)
                continue
            backoff = 0.0
            acked += 1
            ledger.write(json.dumps(ledger_entry(args.name, args.endpoint, key, value, header)) + "\n")
            ledger.flush()
            seq += 1
            time.sleep(max(0.0, interval - (time.monotonic() - started)))
    print(f"{args.name}: stopped after {acked} acknowledged and {failed} failed writes", file=log)
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True, help="writer name (the member it is pinned to)")
    parser.add_argument(
        "--endpoint", required=True, help="the member's client URL, e.g. http://10.0.0.1:2379"
    )
    parser.add_argument("--ledger", required=True, help="JSONL file receiving every acknowledged write")
    parser.add_argument("--prefix", default="/lab", help="key prefix (default /lab)")
    parser.add_argument("--rate", type=float, default=5.0, help="writes per second (default 5)")
    parser.add_argument("--shared-keys", type=int, default=5, help="number of shared keys (default 5)")
    parser.add_argument("--duration", type=float, default=7200, help="stop after this many seconds")
    parser.add_argument("--max-writes", type=int, default=50000, help="stop after this many attempts")
    parser.add_argument("--timeout", type=float, default=2.0, help="seconds per request")
    parser.add_argument("--max-backoff", type=float, default=5.0, help="longest wait between retries")
    parser.add_argument("--start-seq", type=int, default=0, help="added to the ledger's line count")
    args = parser.parse_args(argv)
    if not args.endpoint.startswith(("http://", "https://")):
        parser.error(f"--endpoint {args.endpoint!r} must be an http:// or https:// URL")
    if args.rate <= 0 or args.rate > 1000:
        parser.error("--rate must be between 0 and 1000 writes per second")
    return args


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    return run(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
