#!/usr/bin/env python3
"""Recovery Job of the kind platform: move one member's etcd data dir aside on its volume, never delete it.

Renames DIR/NAME to DIR/NAME.aside-<UTC timestamp>. Refuses while an etcd process still holds the data dir
(etcd locks its WAL files; hold the member first with `lab-hold: true` in the ConfigMap etcd-overrides and
delete its pod). A missing data dir is not an error: it was already moved (the Job can run twice).
Standard library only.
"""

from __future__ import annotations

import argparse
import fcntl
import glob
import os
import sys
from datetime import UTC, datetime


def locked_wal(data_dir: str) -> str | None:
    """The first WAL file that another process holds a lock on (etcd's OFD/flock lock), or None."""
    for path in sorted(glob.glob(os.path.join(data_dir, "member", "wal", "*.wal"))):
        try:
            fd = os.open(path, os.O_RDWR)
        except OSError:
            continue
        try:
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                return path
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                return path
        finally:
            os.close(fd)  # closing drops our own locks
    return None


def move_aside(volume: str, name: str, now: datetime | None = None) -> str | None:
    """Move volume/name aside; the new path, or None when there was nothing to move."""
    src = os.path.join(volume, name)
    if not os.path.exists(src):
        return None
    holder = locked_wal(src)
    if holder:
        raise RuntimeError(f"{src} is in use ({holder} is locked): stop the member before moving it")
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    dest = os.path.join(volume, f"{name}.aside-{stamp}")
    if os.path.exists(dest):
        raise RuntimeError(f"{dest} already exists: run the Job again in a second")
    os.rename(src, dest)
    return dest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--volume", required=True, help="mount point of the member's data volume")
    parser.add_argument("--name", default="data", help="the data dir's name inside the volume")
    parser.add_argument("--member", default="", help="member name, for the messages")
    args = parser.parse_args(argv)
    who = args.member or args.volume
    try:
        dest = move_aside(args.volume, args.name)
    except (RuntimeError, OSError) as exc:
        print(f"{who}: {exc}", file=sys.stderr)
        return 1
    if dest is None:
        print(f"{who}: no {args.name} in {args.volume}: nothing to move (already moved aside?)")
    else:
        print(f"{who}: moved {os.path.join(args.volume, args.name)} to {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
