#!/usr/bin/env python3
"""Do requests that timed out on a member cut off from its leader land later, when the partition heals?

    .venv/bin/python benchmarks/late_requests.py [--version 3.5] [--runs 3] [--requests 2] [--keep-member]

Each run builds a 3-member etcd cluster inside a network namespace of its own (sblate: loopback only,
members on 127.0.0.1-3), cuts one follower off with an nftables table that drops its peer port traffic
(what the lab's partition does to port 2380), and right away sends --requests puts through that follower,
each with a 2 s deadline (etcdctl). Then it stops the follower (unless --keep-member), writes a key through
the leader during the cut, waits --cut seconds, deletes the table, and watches the leader for the timed-out
puts for up to --watch seconds. It prints, per request, whether it timed out, whether and when it landed,
and its revision against the write made during the cut.

What it showed here (2 cores, --cut 15, 2026-12-07): on etcd 3.5.1, 6 of 6 puts that had timed out landed 6
to 7.5 s after the heal, after the write made during the cut, with the follower stopped (4 of 4) or left
running (2 of 2, --keep-member); on 3.4.23, 0 of 4 within 60 s. The follower had forwarded the requests to
the leader as the cut began; they wait in the peer connection's send buffer (kept by the kernel even once the
follower has stopped) and are delivered once the table is gone: a client that saw "context deadline
exceeded" gets its write applied later. The writers' ledgers log such requests as failed (outcome unknown),
and the audit counts a failed delete, whenever it failed, as a possible cause of a key gone after later
writes. Timing-dependent: a run may show fewer.
Needs root (ip netns, nft). Every process, namespace and file it makes is removed at the end.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tools"), str(ROOT / "tests" / "integration")]

from lab_imports import use_lab_code

use_lab_code()

from etcd_fixtures import VERSIONS

NETNS = "sblate"
TABLE = "sblate_cut"


def ns(*argv: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", "netns", "exec", NETNS, *argv], capture_output=True, text=True, **kwargs)


def etcdctl(binaries, member: int, *args: str, timeout: str = "3s") -> subprocess.CompletedProcess:
    env = {**os.environ, "ETCDCTL_API": "3"}
    endpoint = f"--endpoints=http://127.0.0.{member}:2379"
    return ns(binaries.etcdctl, endpoint, f"--command-timeout={timeout}", *args, env=env, timeout=30)


def value_and_revision(binaries, member: int, key: str) -> tuple[str | None, int]:
    proc = etcdctl(binaries, member, "get", key, "-w", "json")
    kvs = json.loads(proc.stdout or "{}").get("kvs") if proc.returncode == 0 else None
    if not kvs:
        return None, 0
    return base64.b64decode(kvs[0]["value"]).decode(), int(kvs[0]["mod_revision"])


def wait_until(check, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise RuntimeError(f"timed out waiting for {what}")


def leader(binaries) -> int:
    proc = etcdctl(binaries, 1, "endpoint", "status", "--cluster", "-w", "json")
    for item in json.loads(proc.stdout):
        status = item["Status"]
        if status["header"]["member_id"] == status["leader"]:
            return int(item["Endpoint"].split("//127.0.0.")[1].split(":")[0])
    raise RuntimeError("no leader")


def cut(member: int) -> None:
    """Drop every packet to or from the member's peer port, and its packets to the others' peer ports."""
    ip = f"127.0.0.{member}"
    rules = "; ".join(
        f"ip {a} {ip} tcp {p} 2380 drop" for a in ("saddr", "daddr") for p in ("dport", "sport")
    )
    spec = f"table inet {TABLE} {{\n chain input {{\n type filter hook input priority 0; {rules};\n }}\n}}\n"
    proc = ns("nft", "-f", "-", input=spec)
    if proc.returncode != 0:
        raise RuntimeError(f"nft: {proc.stderr}")


def one_run(binaries, args, workdir: Path) -> list[dict]:
    initial = ",".join(f"e{i}=http://127.0.0.{i}:2380" for i in (1, 2, 3))
    procs = {}
    for i in (1, 2, 3):
        log = open(workdir / f"e{i}.log", "wb")  # noqa: SIM115 - closed with the process
        procs[i] = subprocess.Popen(
            ["ip", "netns", "exec", NETNS, binaries.etcd, f"--name=e{i}", f"--data-dir={workdir / f'e{i}'}",
             f"--listen-client-urls=http://127.0.0.{i}:2379", f"--advertise-client-urls=http://127.0.0.{i}:2379",
             f"--listen-peer-urls=http://127.0.0.{i}:2380", f"--initial-advertise-peer-urls=http://127.0.0.{i}:2380",
             f"--initial-cluster={initial}", "--initial-cluster-state=new", "--heartbeat-interval=100",
             "--election-timeout=1000"],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        wait_until(lambda: etcdctl(binaries, 1, "put", "/late/ready", "1").returncode == 0, 30, "a leader")
        wait_until(lambda: value_and_revision(binaries, 3, "/late/ready")[0] == "1", 10, "every member")
        lead = leader(binaries)
        follower = lead % 3 + 1
        cut(follower)
        sent = []
        for n in range(args.requests):
            start = time.monotonic()
            proc = etcdctl(binaries, follower, "put", f"/late/r{n}", f"from-e{follower}", timeout="2s")
            sent.append({"key": f"/late/r{n}", "rc": proc.returncode, "seconds": time.monotonic() - start})
        if not args.keep_member:
            procs[follower].terminate()
            procs[follower].wait(timeout=30)
        etcdctl(binaries, lead, "put", "/late/during-cut", "x")
        during = value_and_revision(binaries, lead, "/late/during-cut")[1]
        time.sleep(args.cut)
        ns("nft", "delete", "table", "inet", TABLE)
        healed = time.monotonic()
        deadline = healed + args.watch
        while time.monotonic() < deadline and any("landed_after" not in s for s in sent):
            for s in sent:
                if "landed_after" not in s:
                    value, revision = value_and_revision(binaries, lead, s["key"])
                    if value is not None:
                        s["landed_after"] = round(time.monotonic() - healed, 1)
                        s["revision"] = revision
                        s["after_cut_write"] = revision > during
            time.sleep(0.2)
        return sent
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in procs.values():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--version", choices=sorted(VERSIONS), default="3.5")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--requests", type=int, default=2, help="puts sent through the cut-off follower")
    parser.add_argument("--cut", type=float, default=15.0, help="seconds between the cut and the heal")
    parser.add_argument("--watch", type=float, default=60.0, help="seconds to watch for late requests")
    parser.add_argument("--keep-member", action="store_true", help="leave the follower running")
    args = parser.parse_args()
    if not 1 <= args.runs <= 20 or not 1 <= args.requests <= 10 or not 0 < args.cut <= 120:
        parser.error("--runs 1..20, --requests 1..10, --cut up to 120 s")
    if not 0 < args.watch <= 300:
        parser.error("--watch must be between 0 and 300 s")
    binaries = VERSIONS[args.version]
    if not binaries.available():
        parser.error(f"etcd {args.version} is not installed ({binaries.bin_dir})")
    if os.geteuid() != 0:
        parser.error("needs root (ip netns, nft)")
    landed = total = 0
    for run in range(1, args.runs + 1):
        subprocess.run(["ip", "netns", "del", NETNS], capture_output=True)
        subprocess.run(["ip", "netns", "add", NETNS], check=True)
        workdir = Path(tempfile.mkdtemp(prefix="late-requests-"))
        try:
            ns("ip", "link", "set", "lo", "up")
            for i in (2, 3):
                ns("ip", "addr", "add", f"127.0.0.{i}/8", "dev", "lo")
            for s in one_run(binaries, args, workdir):
                total += 1
                landed += "landed_after" in s
                outcome = (
                    f"landed {s['landed_after']} s after the heal at revision {s['revision']} "
                    f"({'after' if s['after_cut_write'] else 'before'} the write made during the cut)"
                    if "landed_after" in s
                    else f"not applied within {args.watch:.0f} s"
                )
                timed_out = "timed out" if s["rc"] else "acknowledged"
                print(f"run {run}: {s['key']} {timed_out} after {s['seconds']:.1f} s; {outcome}", flush=True)
        finally:
            subprocess.run(["ip", "netns", "del", NETNS], capture_output=True)
            shutil.rmtree(workdir, ignore_errors=True)
    print(f"etcd {args.version}: {landed} of {total} requests sent through the cut-off follower landed later")
    return 0


if __name__ == "__main__":
    sys.exit(main())
