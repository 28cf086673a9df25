#!/usr/bin/env python3
"""Init container of the lab's etcd StatefulSet: write one member's etcd config file (--config-file).

The member is the pod (etcd-0, etcd-1, ...; POD_NAME from the downward API). Every setting is computed from
the pod name and the arguments, then the member's entry of the ConfigMap `etcd-overrides` is merged in: a
file named after the pod in --overrides-dir, holding flat `key: value` lines with etcd's flag names
(`force-new-cluster: true`, `initial-cluster-state: existing`). So one member can be forced, or rejoined,
without touching the others. Two keys belong to the lab and never reach etcd:

  lab-hold: true   the init container waits (re-reading the override every --poll seconds) until the key is
                   gone, so the member stays down while its data dir is moved aside.

With --tls-from (a TLS lab), the member's own certificates are copied from the Secrets' volume
(TLS_FROM/<member>/ca.crt, server.crt|key, peer.crt|key, every member's) into --tls-dir, the only
certificate volume the etcd container mounts (keys mode 0600), and the config gets https URLs, kubeadm's
client and peer TLS settings and a plain-HTTP metrics listener for the kubelet's probes (the client port
asks every client for a certificate, which the kubelet does not have).

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
# A member's files in kubeadm's names: (file, mode) in --tls-from/<member>/ and in --tls-dir.
TLS_FILES = (
    ("ca.crt", 0o644),
    ("server.crt", 0o644),
    ("server.key", 0o600),
    ("peer.crt", 0o644),
    ("peer.key", 0o600),
)


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

    scheme = "https" if args.tls_from else "http"

    def peer(member: str) -> str:
        return f"{scheme}://{member}.{args.peer_domain}:{args.peer_port}"

    members = [f"{args.statefulset}-{i}" for i in range(args.members)]
    values = {
        "name": name,
        "data-dir": args.data_dir,
        "listen-client-urls": f"{scheme}://0.0.0.0:{args.client_port}",
        "advertise-client-urls": f"{scheme}://{name}.{args.peer_domain}:{args.client_port}",
        "listen-peer-urls": f"{scheme}://0.0.0.0:{args.peer_port}",
        "initial-advertise-peer-urls": peer(name),
        "initial-cluster": ",".join(f"{m}={peer(m)}" for m in members),
        "initial-cluster-token": args.token,
        "initial-cluster-state": "new",
        "heartbeat-interval": str(args.heartbeat_interval),
        "election-timeout": str(args.election_timeout),
        "force-new-cluster": "false",
        "logger": "zap",
    }
    if args.tls_from:
        values["listen-metrics-urls"] = f"http://0.0.0.0:{args.metrics_port}"
    # JSON strings are YAML strings: URLs and lists need no further quoting.
    return {
        k: v if k in ("heartbeat-interval", "election-timeout", "force-new-cluster") else json.dumps(v)
        for k, v in values.items()
    }


def tls_lines(tls_dir: str) -> list[str]:
    """kubeadm's etcd TLS flags, as the config file spells them: a client certificate required on both
    ports, signed by the lab CA. etcd ignores every command-line flag when it reads a config file."""
    lines = []
    for block, prefix in (("client-transport-security", "server"), ("peer-transport-security", "peer")):
        lines += [
            f"{block}:",
            f"  cert-file: {json.dumps(os.path.join(tls_dir, prefix + '.crt'))}",
            f"  key-file: {json.dumps(os.path.join(tls_dir, prefix + '.key'))}",
            "  client-cert-auth: true",
            f"  trusted-ca-file: {json.dumps(os.path.join(tls_dir, 'ca.crt'))}",
        ]
    return lines


def render(config: dict[str, str], name: str, override: dict[str, str], tls_dir: str = "") -> str:
    lines = [f"# etcd config of {name}, written by the lab's init container (lab_etcd_config.py)."]
    if override:
        keys = ", ".join(sorted(override))
        lines.append(f"# Overrides from the ConfigMap etcd-overrides, key {name}: {keys}")
    merged = dict(config)
    merged.update({k: v for k, v in override.items() if k not in LAB_KEYS})
    lines += [f"{key}: {value}" for key, value in merged.items()]
    if tls_dir:
        lines += tls_lines(tls_dir)
    return "\n".join(lines) + "\n"


def copy_certificates(source: str, name: str, dest: str) -> None:
    """The member's own files from the Secrets' volume into the etcd container's certificate volume; a
    missing file (a Secret without this member) is a ConfigError that names it."""
    os.makedirs(dest, exist_ok=True)
    for filename, mode in TLS_FILES:
        path = os.path.join(source, name, filename)
        try:
            with open(path, "rb") as handle:
                data = handle.read()
        except OSError as exc:
            raise ConfigError(f"cannot read {path} ({exc.strerror}): Secrets {name}-server, -peer?") from None
        target = os.path.join(dest, filename)
        tmp = f"{target}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, target)


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
    parser.add_argument(
        "--tls-from", default="", help="mount of every member's certificates (<dir>/<member>/...): TLS on"
    )
    parser.add_argument("--tls-dir", default="", help="where etcd reads this member's certificates")
    parser.add_argument("--metrics-port", type=int, default=2381, help="plain-HTTP /health for the probes")
    args = parser.parse_args(argv)
    if bool(args.tls_from) != bool(args.tls_dir):
        parser.error("--tls-from and --tls-dir go together")
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
        if args.tls_from:
            copy_certificates(args.tls_from, args.name, args.tls_dir)
        text = render(config, args.name, override, args.tls_dir)
    except ConfigError as exc:
        print(f"{args.name}: {exc}", file=sys.stderr)
        return 2
    write_atomic(args.out, text)
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
