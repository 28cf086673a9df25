#!/usr/bin/env python3
"""A client application pinned to one etcd member: bounded-rate writes, every acknowledged one in a ledger.

It works through etcd's v3 JSON gateway like a small application:
  - puts of shared keys (<prefix>/shared/kN), the same keys from every writer, so the two sides of a split
    conflict, and of unique keys (<prefix>/writers/<name>/<seq>), written only by this writer;
  - deletes (POST /v3/kv/deleterange): every 10th operation deletes a shared key, every 10th+5 deletes
    this writer's own key of four operations before;
  - one key attached to a lease, <prefix>/leases/<name>, like a leader-election lock: a lease is granted
    (POST /v3/lease/grant), the key put with it, the lease kept alive (POST /v3/lease/keepalive); when the
    lease is gone (expired while the member had no leader) a new one is granted and the key put again.
Each operation that etcd acknowledges is appended to a JSONL ledger (see the role's README for the fields).
Failures (member unreachable, no leader, timeouts) are logged and retried with backoff; the writer never
crashes on them. It stops by itself after --duration seconds or --max-writes writes, and
cleanly on SIGTERM or SIGINT. With --catch-up, it first writes without pause until its member's raft index is
above that of the members given (a batch job hammering one side of a split). On an https:// endpoint it
reads the CA, certificate and key from ETCDCTL_CACERT, ETCDCTL_CERT and ETCDCTL_KEY, as etcdctl does.
Standard library only.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import signal
import ssl
import sys
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime

STOP = False


def on_signal(_signum, _frame) -> None:
    global STOP
    STOP = True


def pause(seconds: float) -> None:
    """Sleep, but return within 0.1 s of a stop signal: time.sleep goes on sleeping after a signal handler
    that returns, so a writer in a 5 s backoff would hold up a recovery's stop for as long."""
    deadline = time.monotonic() + seconds
    while not STOP:
        left = deadline - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(left, 0.1))


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def key_for(name: str, prefix: str, seq: int, shared_keys: int) -> str:
    """Even sequence numbers write a shared key, odd ones a key of this writer's own. The shared key turns
    one further every ten numbers, so every shared key is also put between the deletes (seq % 10 == 0)."""
    if seq % 2 == 0 and shared_keys > 0:
        return f"{prefix}/shared/k{(seq // 2 + seq // 10) % shared_keys}"
    return f"{prefix}/writers/{name}/{seq:08d}"


def op_for(name: str, prefix: str, seq: int, shared_keys: int) -> tuple[str, str]:
    """The operation of sequence number seq: ("put" or "delete", key). Deterministic, so tests and the
    ledger agree: seq % 10 == 0 deletes shared key (seq // 10) % N, seq % 10 == 5 deletes this writer's own
    key of seq - 4 (an odd sequence number, so a put of a key of its own), the rest put."""
    if seq % 10 == 0 and shared_keys > 0:
        return "delete", f"{prefix}/shared/k{(seq // 10) % shared_keys}"
    if seq % 10 == 5 and seq >= 4:
        return "delete", key_for(name, prefix, seq - 4, shared_keys)
    return "put", key_for(name, prefix, seq, shared_keys)


def lease_key(name: str, prefix: str) -> str:
    return f"{prefix}/leases/{name}"


def tls_context() -> ssl.SSLContext | None:
    """Like etcdctl, the CA, certificate and key of a TLS lab from ETCDCTL_CACERT, ETCDCTL_CERT and
    ETCDCTL_KEY (the playbooks set them); None without them."""
    ca, cert, key = (os.environ.get(f"ETCDCTL_{n}") for n in ("CACERT", "CERT", "KEY"))
    if not (ca or cert):
        return None
    context = ssl.create_default_context(cafile=ca)
    if cert:
        context.load_cert_chain(cert, key)
    return context


TLS = None  # set once in run(): the context every https request uses


def call(endpoint: str, path: str, body: dict, timeout: float) -> dict:
    """POST body to a gateway path; the reply (or the "result" of a streamed reply) as a dict."""
    req = urllib.request.Request(
        f"{endpoint}{path}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    context = TLS if endpoint.startswith("https://") else None
    with urllib.request.urlopen(req, timeout=timeout, context=context) as resp:
        reply = json.loads(resp.readline() or b"{}")  # keepalive is a stream: its first reply is enough
    reply = reply.get("result", reply) if isinstance(reply, dict) else {}
    if "error" in reply or "header" not in reply:
        raise RuntimeError(reply.get("error") or reply.get("message") or f"unexpected reply {reply}")
    return reply


def put(endpoint: str, key: str, value: str, timeout: float, lease: int = 0) -> dict:
    body = {"key": b64(key), "value": b64(value)}
    if lease:
        body["lease"] = str(lease)
    return call(endpoint, "/v3/kv/put", body, timeout)["header"]


def delete(endpoint: str, key: str, timeout: float) -> tuple[dict, int]:
    """Delete one key; (reply header, number of keys deleted: 0 when it did not exist)."""
    reply = call(endpoint, "/v3/kv/deleterange", {"key": b64(key)}, timeout)
    return reply["header"], int(reply.get("deleted", 0))


def grant(endpoint: str, ttl: int, timeout: float) -> int:
    return int(call(endpoint, "/v3/lease/grant", {"TTL": str(ttl)}, timeout)["ID"])


def keepalive(endpoint: str, lease: int, timeout: float) -> int:
    """Renew a lease; its new TTL in seconds, 0 when the lease is gone (etcd then omits the TTL)."""
    return int(call(endpoint, "/v3/lease/keepalive", {"ID": str(lease)}, timeout).get("TTL", 0))


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


def ledger_entry(
    name: str,
    endpoint: str,
    key: str,
    value: str | None,
    header: dict,
    op: str = "put",
    deleted: int = 0,
    lease: int = 0,
    lease_ttl: int = 0,
) -> dict:
    """One acknowledged operation. A delete has value null and the count etcd deleted; a put with a lease
    has the lease id (lowercase hex) and its TTL. revision is the reply header's revision."""
    entry = {
        "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "writer": name,
        "endpoint": endpoint,
        "op": op,
        "key": key,
        "value": value if op == "put" else None,
        "member_id": format(int(header.get("member_id", 0)), "x"),
        "revision": int(header.get("revision", 0)),
        "raft_term": int(header.get("raft_term", 0)),
    }
    if op == "delete":
        entry["deleted"] = int(deleted)
    elif lease:
        entry["lease"] = format(int(lease), "x")
        entry["lease_ttl"] = int(lease_ttl)
    return entry


def failure_entry(name: str, endpoint: str, attempt: dict, exc: BaseException) -> dict:
    """A failed attempt: op, key, value, error. Its outcome is unknown: it may have been applied."""
    return {
        "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "writer": name,
        "endpoint": endpoint,
        **attempt,
        "error": describe(exc),
    }


class LeaseHolder:
    """The writer's lease key: granted, put, kept alive every ttl/3 s; re-granted and put when it is gone."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.key = lease_key(args.name, args.prefix)
        self.lease = 0
        self.due = 0.0  # monotonic time of the next keepalive (or grant)

    def step(self, seq: int, now: float) -> dict | None:
        """Do what is due; the ledger entry of an acknowledged put, else None. Raises on a failure."""
        args = self.args
        if args.lease_ttl <= 0 or now < self.due:
            return None
        if self.lease and keepalive(args.endpoint, self.lease, args.timeout) > 0:
            self.due = now + args.lease_ttl / 3.0
            return None
        self.lease = 0  # gone (or never granted): a new lease, and the key put with it
        lease = grant(args.endpoint, args.lease_ttl, args.timeout)
        value = f"{args.name}#{seq}#lease-{lease:x}"
        header = put(args.endpoint, self.key, value, args.timeout, lease=lease)
        self.lease = lease
        self.due = now + args.lease_ttl / 3.0
        return ledger_entry(
            args.name, args.endpoint, self.key, value, header, lease=lease, lease_ttl=args.lease_ttl
        )


def raft_index(endpoint: str, timeout: float) -> int:
    return int(call(endpoint, "/v3/maintenance/status", {}, timeout).get("raftIndex") or 0)


class CatchUp:
    """A batch job's burst: writes back to back, without the rate's pause, until this member's raft index is
    --catch-up-margin above that of every --catch-up endpoint (checked every 25 writes), then the writer goes
    on at its rate. Gives up after --catch-up-max writes, or when an index cannot be read."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.active = bool(args.catch_up)
        self.left = args.catch_up_max
        self.unchecked = 0

    def due(self) -> bool:
        """True when the next write should follow at once."""
        if not self.active:
            return False
        self.left -= 1
        if self.unchecked > 0 and self.left > 0:
            self.unchecked -= 1
            return True
        args = self.args
        try:
            own = raft_index(args.endpoint, args.timeout)
            other = max(raft_index(url, args.timeout) for url in args.catch_up)
        except Exception as exc:
            print(
                f"{args.name}: catch-up stopped: an index cannot be read ({describe(exc)})", file=sys.stderr
            )
            self.active = False
            return False
        if own > other + args.catch_up_margin or self.left <= 0:
            print(f"{args.name}: catch-up done: raft index {own} against {other}", file=sys.stderr)
            self.active = False
            return False
        self.unchecked = 25
        return True


def run(args: argparse.Namespace) -> int:
    global TLS
    if args.endpoint.startswith("https://"):
        try:
            TLS = tls_context()
        except (OSError, ssl.SSLError) as exc:
            print(
                f"{args.name}: cannot load the TLS files of ETCDCTL_CACERT/CERT/KEY: {exc}", file=sys.stderr
            )
            return 2
    interval = 1.0 / args.rate
    deadline = time.monotonic() + args.duration
    backoff = 0.0
    acked = failed = 0
    seq = args.start_seq + count_lines(args.ledger)
    log = sys.stderr
    print(f"{args.name}: writing to {args.endpoint} at {args.rate}/s for at most {args.duration}s", file=log)
    os.makedirs(os.path.dirname(os.path.abspath(args.ledger)), exist_ok=True)
    # Failed attempts go beside the ledger: a request that timed out may still have been applied (etcd
    # committed it, the reply was lost), so a checker must know that it was tried, and when.
    with (
        open(args.ledger, "a", encoding="utf-8") as ledger,
        open(args.ledger + ".failures", "a", encoding="utf-8") as failures,
    ):
        holder = LeaseHolder(args)
        catch_up = CatchUp(args)
        while not STOP and time.monotonic() < deadline and acked + failed < args.max_writes:
            started = time.monotonic()
            op, key = op_for(args.name, args.prefix, seq, args.shared_keys)
            what = f"lease {holder.key}"
            attempt = {"op": "lease", "key": holder.key, "value": None}
            try:
                leased = holder.step(seq, started)
                if leased is not None:
                    ledger.write(json.dumps(leased) + "\n")
                    ledger.flush()
                what = f"{op} {key}"
                attempt = {"op": op, "key": key, "value": None if op == "delete" else f"{args.name}#{seq}"}
                if op == "delete":
                    header, deleted = delete(args.endpoint, key, args.timeout)
                    entry = ledger_entry(args.name, args.endpoint, key, None, header, "delete", deleted)
                else:
                    value = f"{args.name}#{seq}"
                    header = put(args.endpoint, key, value, args.timeout)
                    entry = ledger_entry(args.name, args.endpoint, key, value, header)
            except Exception as exc:
                failed += 1
                failures.write(json.dumps(failure_entry(args.name, args.endpoint, attempt, exc)) + "\n")
                failures.flush()
                backoff = min(max(backoff * 2, 0.2), args.max_backoff)
                print(f"{args.name}: {what} failed ({describe(exc)}); retrying in {backoff:.1f}s", file=log)
                pause(backoff)
                continue
            backoff = 0.0
            acked += 1
            ledger.write(json.dumps(entry) + "\n")
            ledger.flush()
            seq += 1
            if not catch_up.due():
                pause(interval - (time.monotonic() - started))
    print(f"{args.name}: stopped after {acked} acknowledged and {failed} failed operations", file=log)
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
    parser.add_argument(
        "--lease-ttl", type=int, default=12, help="TTL of the lease key's lease in seconds; 0: no lease key"
    )
    parser.add_argument("--start-seq", type=int, default=0, help="added to the ledger's line count")
    parser.add_argument(
        "--catch-up",
        type=lambda text: [u for u in text.split(",") if u],
        default=[],
        help="client URLs, comma-separated: no pause until this member's raft index is above theirs",
    )
    parser.add_argument("--catch-up-margin", type=int, default=200, help="by how much (raft entries)")
    parser.add_argument(
        "--catch-up-max", type=int, default=5000, help="at most this many writes without pause"
    )
    args = parser.parse_args(argv)
    if not args.endpoint.startswith(("http://", "https://")):
        parser.error(f"--endpoint {args.endpoint!r} must be an http:// or https:// URL")
    if args.rate <= 0 or args.rate > 1000:
        parser.error("--rate must be between 0 and 1000 writes per second")
    if args.lease_ttl < 0 or args.lease_ttl > 3600:
        parser.error("--lease-ttl must be between 0 and 3600 seconds")
    return args


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    return run(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
