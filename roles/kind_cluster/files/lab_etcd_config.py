#!/usr/bin/env python3
"""Init container of the lab's etcd StatefulSet: write one member's etcd config file (--config-file).

The member is the pod (etcd-0, etcd-1, ...; POD_NAME from the downward API). Every setting is computed from
the pod name and the arguments, then the member's entry of the ConfigMap `etcd-overrides` is merged in: a
file named after the pod in --overrides-dir, holding flat `key: value` lines with etcd's flag names
(`force-new-cluster: true`, `initial-cluster-state: existing`). So one member can be forced, or rejoined,
without touching the others. Two keys belong to the lab and never reach etcd:

  lab-hold: true   the init container waits (re-reading the override every --poll seconds) until the key is
                   gone, so the member stays down while its data dir is moved aside.

Standard library only (the etcd image is distroless: this runs in a Python image, etcd reads the result).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time

KEY_RE = re.compile(r"^[a-z][a-z0-9-]*$")
LAB_KEYS = ("lab-hold",)


class ConfigError(ValueError):
    """A wrong argument or override; the message is one line that names it."""


def parse_override(text: str, source: str) -> dict[str, str]:
    """Flat `key: value` lines (YAML scalars kept verbatim); blank lines and # comments are skipped."""
    out: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition(":")
        key = key.strip()
        if not sep or not KEY_RE.match(key):
            raise ConfigError(f"{source} line {number}: expected 'flag-name: value', got {raw!r}")
        out[key] = value.strip()
    return out


def read_override(overrides_dir: str, name: str) -> dict[str, str]:
    path = os.path.join(overrides_dir, name)
    try:
        with open(path, encoding="utf-8") as handle:
            return parse_override(handle.read(), path)
    except FileNotFoundError:
        return {}


def is_true(value: str | None) -> bool:
    return (value or "").strip().strip("'\"").lower() in ("true", "yes", "on", "1")


def base_config(args: argparse.Namespace, name: str) -> dict[str, str]:
    match = re.fullmatch(rf"{re.escape(args.statefulset)}-(\d+)", name)
    if not match or int(match.group(1)) >= args.members:
        raise ConfigError(
            f"pod name {name!r} is not a member: expected {args.statefulset}-0 ... "
            f"{args.statefulset}-{args.members - 1}"
        )

    def peer(member: str) -> str:
        return f"http://{member}.{args.peer_domain}:{args.peer_port}"

    members = [f"{args.statefulset}-{i}" for i in range(args.members)]
    values = {
        "name": name,
        "data-dir": args.data_dir,
        "listen-client-urls": f"http://0.0.0.0:{args.client_port}",
        "advertise-client-urls": f"http://{name}.{args.peer_domain}:{args.client_port}",
        "listen-peer-urls": f"http://0.0.0.0:{args.peer_port}",
        "initial-advertise-peer-urls": peer(name),
        "initial-cluster": ",".join(f"{m}={peer(m)}" for m in members),
        "initial-cluster-token": args.token,
        "initial-cluster-state": "new",
        "heartbeat-interval": str(args.heartbeat_interval),
        "election-timeout": str(args.election_timeout),
        "force-new-cluster": "false",
        "logger": "zap",
    }
    # JSON strings are YAML strings: URLs and lists need no further quoting.
    return {
        k: v if k in ("heartbeat-interval", "election-timeout", "force-new-cluster") else json.dumps(v)
        for k, v in values.items()
    }


def render(config: dict[str, str], name: str, override: dict[str, str]) -> str:
    lines = [f"# etcd config of {name}, written by the lab's init container (lab_etcd_config.py)."]
    if override:
        keys = ", ".join(sorted(override))
        lines.append(f"# Overrides from the ConfigMap etcd-overrides, key {name}: {keys}")
    merged = dict(config)
    merged.update({k: v for k, v in override.items() if k not in LAB_KEYS})
    lines += [f"{key}: {value}" for key, value in merged.items()]
    return "\n".join(lines) + "\n"


def write_atomic(path: str, text: str) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(tmp, path)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", default=os.environ.get("POD_NAME", ""), help="pod name (default $POD_NAME)")
    parser.add_argument("--statefulset", default="etcd", help="StatefulSet name, the pods' name prefix")
    parser.add_argument("--members", type=int, required=True, help="number of members (replicas)")
    parser.add_argument("--peer-domain", required=True, help="headless Service domain, e.g. etcd-peer.ns.svc")
    parser.add_argument("--client-port", type=int, default=2379)
    parser.add_argument("--peer-port", type=int, default=2380)
    parser.add_argument("--token", required=True, help="initial-cluster-token")
    parser.add_argument("--data-dir", required=True, help="etcd data dir inside the member's volume")
    parser.add_argument("--heartbeat-interval", type=int, default=100)
    parser.add_argument("--election-timeout", type=int, default=1000)
    parser.add_argument("--overrides-dir", required=True, help="mount of the ConfigMap etcd-overrides")
    parser.add_argument("--out", required=True, help="config file to write")
    parser.add_argument("--poll", type=float, default=2.0, help="seconds between reads while held")
    parser.add_argument("--max-hold", type=float, default=0, help="give up holding after this (0: never)")
    args = parser.parse_args(argv)
    if not args.name:
        parser.error("no pod name: set POD_NAME or --name")
    if args.members < 1:
        parser.error("--members must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        config = base_config(args, args.name)
        override = read_override(args.overrides_dir, args.name)
        started = time.monotonic()
        while is_true(override.get("lab-hold")):
            if args.max_hold and time.monotonic() - started > args.max_hold:
                print(f"{args.name}: still held after {args.max_hold:g}s, giving up", file=sys.stderr)
                return 3
            print(f"{args.name}: held by etcd-overrides (lab-hold: true); etcd does not start", flush=True)
            time.sleep(args.poll)
            override = read_override(args.overrides_dir, args.name)
        text = render(config, args.name, override)
    except ConfigError as exc:
        print(f"{args.name}: {exc}", file=sys.stderr)
        return 2
    write_atomic(args.out, text)
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
