#!/usr/bin/env python3
"""Benchmark the etcd_* modules against etcdctl on loopback clusters this script starts and stops.

    .venv/bin/python benchmarks/bench_modules.py            # small defaults (about a minute)
    .venv/bin/python benchmarks/bench_modules.py --full     # 100k keys per side, ~100 MB snapshot

Prints figures; it is not a pass/fail test. Every etcd started here is stopped at the end and its
temporary directory removed. Only 127.0.0.1 is used.

- status: etcd_endpoint_status (in-process, and as a fresh Python process that imports the module) on
  3, 5 and 7 members vs `etcdctl endpoint status --cluster -w json` on the same endpoints.
- diff: etcd_kv_diff on two one-member clusters holding N keys each (1% conflicting, 0.5% only on
  each side) vs `etcdctl get "" --prefix -w json` on both sides (one after the other) plus a Python
  dict diff.
- snapshot: etcd_snapshot save of a database of about S MB vs `etcdctl snapshot save`.
- the diff's and the snapshot's gRPC runs also give the module's CPU time (this process, every thread), the
  figure to compare across runs on a shared machine, where wall times move with the load.

--tls on runs the clusters with mutual TLS on the client port (--client-cert-auth, certificates made for the
run, as the lab's lab_tls does) and gives the modules and etcdctl the CA and a client certificate; --tls both
runs every figure plain, then with TLS, so that the cost of TLS shows side by side.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tools"), str(ROOT / "tests" / "integration")]

from lab_imports import use_lab_code

use_lab_code()

import etcd_endpoint_status
import etcd_kv_diff
import etcd_snapshot
from etcd_fixtures import VERSIONS, Cluster, make_tls_files

COMMON = {"timeout": 30.0, "ca_cert": None, "client_cert": None, "client_key": None, "validate_certs": True}
TLS = None  # the run's TLS files (etcd_fixtures.make_tls_files) when the clusters speak TLS


def use_tls(files) -> None:
    """Every cluster, module call and etcdctl from here on with (files) or without (None) mutual TLS."""
    global TLS
    TLS = files
    COMMON.update(
        ca_cert=files.ca if files else None,
        client_cert=files.client_cert if files else None,
        client_key=files.client_key if files else None,
    )


def new_cluster(binaries, size):
    return Cluster(binaries, size=size, tls=TLS)


def timed(func, repeat):
    """Median and minimum wall time of func over repeat runs."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return statistics.median(times), min(times)


def cpu(func, repeat):
    """Median CPU time of this process (all its threads) running an in-process func: what a module costs
    the controller, steadier than wall time on a shared machine."""
    times = []
    for _ in range(repeat):
        start = time.process_time()
        func()
        times.append(time.process_time() - start)
    return statistics.median(times)


def etcdctl(binaries, *args):
    env = {**os.environ, "ETCDCTL_API": "3"}
    tls = [f"--cacert={TLS.ca}", f"--cert={TLS.client_cert}", f"--key={TLS.client_key}"] if TLS else []
    proc = subprocess.run([binaries.etcdctl, *tls, *args], capture_output=True, env=env, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"etcdctl {' '.join(args)} failed: {proc.stderr.decode()[-500:]}")
    return proc.stdout


def bench_status(binaries, repeat):
    print("\n== status: etcd_endpoint_status vs etcdctl endpoint status --cluster -w json")
    print(f"{'members':>7}  {'module in-process':>18}  {'module new process':>19}  {'etcdctl':>9}  ratio*")
    script = (
        "import sys; sys.path.insert(0, sys.argv[1]); from lab_imports import lab_module; "
        "import json; m = lab_module('etcd_endpoint_status'); "
        "params = json.loads(sys.argv[2]); r = m.run(params); print(len(r['endpoints']))"
    )
    for size in (3, 5, 7):
        cluster = new_cluster(binaries, size)
        try:
            cluster.start()
            params = {
                "endpoints": cluster.endpoints,
                "expected_members": None,
                "clock_skew_threshold": 2.0,
                **COMMON,
            }

            def module_run(params=params):
                result = etcd_endpoint_status.run(params)
                assert all(e["reachable"] for e in result["endpoints"])

            def module_process(params=params):
                subprocess.run(
                    [
                        sys.executable,
                        "-c",
                        script,
                        str(ROOT / "tools"),
                        json.dumps(params),
                    ],
                    check=True,
                    capture_output=True,
                )

            def ctl(cluster=cluster, size=size):
                out = json.loads(
                    etcdctl(
                        binaries,
                        "--endpoints",
                        cluster.endpoints[0],
                        "endpoint",
                        "status",
                        "--cluster",
                        "-w",
                        "json",
                    )
                )
                assert len(out) == size

            module_run()
            ctl()
            m_in, _ = timed(module_run, repeat)
            m_proc, _ = timed(module_process, max(3, repeat // 3))
            c, _ = timed(ctl, repeat)
            row = f"{size:>7}  {m_in * 1000:>15.1f} ms  {m_proc * 1000:>16.1f} ms  {c * 1000:>6.1f} ms"
            print(f"{row}  {c / m_in:5.2f}x")
        finally:
            cluster.stop()
    print("  * ratio = etcdctl time / module in-process time (>1: the module is faster). The module also")
    print("    fetches every member's member list and alarms and computes the diagnosis.")


def load_keys(cluster, member, items, batch=5000):
    """Write (key, value) pairs through /v3/kv/txn in batches (needs --max-txn-ops >= batch)."""
    with cluster.client(member, timeout=60) as c:
        for i in range(0, len(items), batch):
            ops = [
                {"request_put": {"key": base64.b64encode(k).decode(), "value": base64.b64encode(v).decode()}}
                for k, v in items[i : i + batch]
            ]
            c.call("/v3/kv/txn", {"success": ops})


def bench_diff(binaries, nkeys, repeat):
    print("\n== diff: etcd_kv_diff vs etcdctl get --prefix -w json on both sides + Python diff")
    print(f"  {nkeys} keys per side")
    extra = [
        "--max-txn-ops",
        "10000",
        "--max-request-bytes",
        str(16 * 1024 * 1024),
        "--quota-backend-bytes",
        str(4 << 30),
    ]
    sides = [new_cluster(binaries, 1), new_cluster(binaries, 1)]
    try:
        for s in sides:
            s.members[0].extra_args = extra
            s.start()
        left = [(f"/bench/key-{i:08d}".encode(), f"value-{i}-{'x' * 40}".encode()) for i in range(nkeys)]
        right = list(left)
        step = 100
        for i in range(0, nkeys, step):  # 1% conflicts
            right[i] = (right[i][0], b"changed")
        right = [kv for j, kv in enumerate(right) if j % 200 != 1]  # 0.5% only on the left
        right += [(f"/bench/key-{i:08d}-r".encode(), b"r") for i in range(0, nkeys, 200)]  # 0.5% only right
        t0 = time.perf_counter()
        load_keys(sides[0], sides[0].members[0], left)
        load_keys(sides[1], sides[1].members[0], right)
        print(f"  loaded {len(left)} + {len(right)} keys in {time.perf_counter() - t0:.1f} s")
        endpoints = [s.endpoints[0] for s in sides]
        params = {
            "endpoints": endpoints,
            "prefix": "",
            "page_size": 10000,  # the module default
            "max_items": 10,
            "report_path": None,
            "serializable": True,
            **COMMON,
        }
        expected = None

        def module_run():
            nonlocal expected
            result = etcd_kv_diff.run(params)
            expected = result["counts"]

        def ctl_run():
            dumps = [
                json.loads(etcdctl(binaries, "--endpoints", e, "get", "", "--prefix", "-w", "json"))
                for e in endpoints
            ]
            maps = [{kv["key"]: kv for kv in d.get("kvs", [])} for d in dumps]
            only_left = [k for k in maps[0] if k not in maps[1]]
            only_right = [k for k in maps[1] if k not in maps[0]]
            conflicts = [
                k for k, kv in maps[0].items() if k in maps[1] and maps[1][k].get("value") != kv.get("value")
            ]
            return len(only_left), len(only_right), len(conflicts)

        module_run()
        counts = ctl_run()
        assert counts == (expected["only_left"], expected["only_right"], expected["conflicts"]), (
            counts,
            expected,
        )
        m, _ = timed(module_run, repeat)
        m_cpu = cpu(module_run, repeat)
        c, _ = timed(ctl_run, repeat)
        params["transport"] = "gateway"
        g, _ = timed(module_run, repeat)
        print(f"  counts: {expected}")
        print(f"  module, gRPC     {m:.2f} s   speed-up vs etcdctl+python {c / m:.2f}x   (CPU {m_cpu:.2f} s)")
        print(f"  module, gateway  {g:.2f} s   speed-up vs etcdctl+python {c / g:.2f}x")
        print(f"  etcdctl+python   {c:.2f} s")
    finally:
        for s in sides:
            s.stop()


def bench_snapshot(binaries, megabytes, repeat):
    print(f"\n== snapshot: etcd_snapshot save vs etcdctl snapshot save (~{megabytes} MB database)")
    cluster = new_cluster(binaries, 1)
    workdir = tempfile.mkdtemp(prefix="etcd-bench-snap-")
    try:
        cluster.members[0].extra_args = ["--quota-backend-bytes", str(4 << 30)]
        cluster.start()
        value = os.urandom(96 * 1024)  # incompressible
        with cluster.client(cluster.members[0], timeout=60) as c:
            for i in range(megabytes * 1024 // 96):
                c.put(f"/blob/{i:06d}", value)
        path_m = os.path.join(workdir, "module.db")
        path_c = os.path.join(workdir, "etcdctl.db")

        def module_run(transport="auto"):
            if os.path.exists(path_m):
                os.unlink(path_m)
            params = {
                "operation": "save",
                "path": path_m,
                "endpoints": cluster.endpoints,
                "force": True,
                "bin_dir": None,
                "transport": transport,
                **COMMON,
            }
            return etcd_snapshot.run(params, False, None, lambda name: None)

        def ctl_run():
            if os.path.exists(path_c):
                os.unlink(path_c)
            etcdctl(binaries, "--endpoints", cluster.endpoints[0], "snapshot", "save", path_c)

        result = module_run()
        ctl_run()
        size = result["size"]
        assert size == os.path.getsize(path_c), (size, os.path.getsize(path_c))
        assert result["transport"] == "grpc"
        m, _ = timed(module_run, repeat)
        m_cpu = cpu(module_run, repeat)
        g, _ = timed(lambda: module_run("gateway"), repeat)
        c, _ = timed(ctl_run, repeat)
        mb = size / 1e6
        print(f"  snapshot {mb:.1f} MB (identical size from both)")
        print(
            f"  module, gRPC     {m:.2f} s ({mb / m:.0f} MB/s)  throughput vs etcdctl {c / m:.2f}x"
            f"   (CPU {m_cpu:.2f} s)"
        )
        print(f"  module, gateway  {g:.2f} s ({mb / g:.0f} MB/s)  throughput vs etcdctl {c / g:.2f}x")
        print(f"  etcdctl          {c:.2f} s ({mb / c:.0f} MB/s)")
        print("  (all include writing the file with fsync; the module also verifies the sha256)")
    finally:
        cluster.stop()
        for name in ("module.db", "etcdctl.db"):
            path = os.path.join(workdir, name)
            if os.path.exists(path):
                os.unlink(path)
        os.rmdir(workdir)


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--full", action="store_true", help="100k keys per side and a ~100 MB snapshot")
    parser.add_argument("--keys", type=int, help="keys per side for the diff (default 20000, --full 100000)")
    parser.add_argument(
        "--snapshot-mb", type=int, help="database size for the snapshot (default 20, --full 100)"
    )
    parser.add_argument("--repeat", type=int, default=5, help="runs per measurement (median reported)")
    parser.add_argument(
        "--version", choices=sorted(VERSIONS), default="3.5", help="etcd version (default 3.5)"
    )
    parser.add_argument(
        "--only", choices=["status", "diff", "snapshot"], action="append", help="run only these"
    )
    parser.add_argument(
        "--tls", choices=["off", "on", "both"], default="off", help="mutual TLS on the clusters (default off)"
    )
    args = parser.parse_args()
    keys = args.keys or (100_000 if args.full else 20_000)
    snap_mb = args.snapshot_mb or (100 if args.full else 20)
    binaries = VERSIONS[args.version]
    only = set(args.only or ["status", "diff", "snapshot"])
    print(f"etcd {binaries.version} from {binaries.bin_dir}")
    print(f"python {sys.version.split()[0]}; {os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.1f}")
    modes = {"off": [False], "on": [True], "both": [False, True]}[args.tls]
    with tempfile.TemporaryDirectory(prefix="etcd-bench-tls-") as tls_dir:
        for tls in modes:
            use_tls(make_tls_files(tls_dir) if tls else None)
            print(f"\n######## {'mutual TLS on the client port' if tls else 'plain HTTP'}")
            if "status" in only:
                bench_status(binaries, args.repeat * 2)
            if "diff" in only:
                bench_diff(binaries, keys, max(1, args.repeat // 2))
            if "snapshot" in only:
                bench_snapshot(binaries, snap_mb, max(1, args.repeat // 2))


if __name__ == "__main__":
    main()
