#!/usr/bin/env python3
"""Clock-skew pod of the kind platform: shift the wall clock of one member's running etcd process.

Runs in a privileged pod with hostPID on the node of the target pod (pod affinity on its pod name), so the
node's processes are visible in /proc. The target is the process named `etcd` whose environment holds
LAB_MEMBER=<member> (set by the StatefulSet from the pod name); the kind cluster's own control-plane etcd
has no such variable and is never touched. The offset is applied with the lab's vdso_clock module (ptrace,
x86_64 only), checked every --interval seconds and applied again when the member's etcd restarted (a new
pid runs on the real clock). On SIGTERM (pod deleted) the offset is removed before the pod exits.
The offset is also written to /lab/clock/offset inside the etcd container (through /proc/PID/root), where the
container's `date` (lab-date.sh) reads it, and removed with the offset.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time

STOP = False


def on_signal(_signum, _frame) -> None:
    global STOP
    STOP = True


def find_pid(member: str, proc: str = "/proc", comm: str = "etcd") -> int | None:
    """Pid of the process named `comm` whose environment has LAB_MEMBER=member, or None."""
    wanted = f"LAB_MEMBER={member}".encode()
    for entry in sorted(os.listdir(proc)):
        if not entry.isdigit():
            continue
        try:
            with open(os.path.join(proc, entry, "comm"), encoding="utf-8") as handle:
                if handle.read().strip() != comm:
                    continue
            with open(os.path.join(proc, entry, "environ"), "rb") as handle:
                if wanted in handle.read().split(b"\0"):
                    return int(entry)
        except OSError:
            continue
    return None


CLOCK_FILE = "lab/clock/offset"


def publish_offset(pid: int, offset: float | None, proc: str = "/proc") -> bool:
    """Write (None: remove) the offset file in the container of `pid`; False when it has no /lab/clock."""
    path = os.path.join(proc, str(pid), "root", CLOCK_FILE)
    if not os.path.isdir(os.path.dirname(path)):
        return False
    if offset is None:
        if os.path.exists(path):
            os.unlink(path)
        return True
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(f"{offset:g}\n")
    os.replace(tmp, path)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--member", required=True, help="pod name of the target member, e.g. etcd-0")
    parser.add_argument("--offset", type=float, required=True, help="seconds added to its wall clock")
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between checks")
    parser.add_argument("--proc", default="/proc", help="the node's /proc (hostPID)")
    args = parser.parse_args(argv)

    import vdso_clock  # shipped next to this script in the same ConfigMap

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    pid = None
    while not STOP:
        found = find_pid(args.member, args.proc)
        if found is None:
            print(f"{args.member}: no etcd with LAB_MEMBER={args.member} on this node yet", flush=True)
        elif found != pid:
            try:
                result = vdso_clock.apply(found, args.offset)
                pid = found
                action = result["action"]
                print(f"{args.member}: etcd pid {found}: offset {args.offset:+g}s ({action})", flush=True)
                if not publish_offset(found, args.offset, args.proc):
                    print(f"{args.member}: no /lab/clock in the etcd container: date shows the real time")
            except vdso_clock.ClockSkewError as exc:
                print(f"{args.member}: etcd pid {found}: {exc}", file=sys.stderr, flush=True)
        time.sleep(args.interval)
    if pid is not None and find_pid(args.member, args.proc) == pid:
        try:
            vdso_clock.undo(pid)
            publish_offset(pid, None, args.proc)
            print(f"{args.member}: etcd pid {pid}: offset removed", flush=True)
        except vdso_clock.ClockSkewError as exc:
            print(f"{args.member}: etcd pid {pid}: could not remove the offset: {exc}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
