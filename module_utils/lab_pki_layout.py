"""Where the lab's PKI keeps each file, in one place: lab_pki writes there (lab_pki_core), lab_plan records
the paths in the layout (lab.json's tls), and the etcd role, the playbooks and the kind Secrets read them from
the layout. Only the standard library: lab_plan imports it on every run, TLS or not."""

from __future__ import annotations

import os

CA_CERT = "ca.crt"
CA_KEY = "ca.key"
# The client certificate of the writers, the modules, ./lab exec and the kind workloads.
LAB_CLIENT = "lab-client"
# Each member has a server certificate (client port) and a peer certificate (peer port).
MEMBER_KINDS = ("server", "peer")


def member_file(member: str, kind: str, ext: str) -> str:
    """A member's certificate (ext crt) or key (ext key), relative to the PKI directory."""
    return f"{member}/{kind}.{ext}"


def client_file(client: str, ext: str) -> str:
    """A client's certificate (ext crt) or key (ext key), relative to the PKI directory."""
    return f"clients/{client}.{ext}"


def member_paths(path: str, member: str) -> dict[str, str]:
    """server_cert, server_key, peer_cert, peer_key of one member, under the PKI directory path."""
    return {
        f"{kind}_{part}": os.path.join(path, member_file(member, kind, ext))
        for kind in MEMBER_KINDS
        for part, ext in (("cert", "crt"), ("key", "key"))
    }


def client_paths(path: str, client: str) -> dict[str, str]:
    return {
        "cert": os.path.join(path, client_file(client, "crt")),
        "key": os.path.join(path, client_file(client, "key")),
    }


def paths(path: str, members: list[str], clients: list[str]) -> dict:
    """Every file of the PKI under path: ca_file, members by name, clients by name."""
    return {
        "ca_file": os.path.join(path, CA_CERT),
        "members": {m: member_paths(path, m) for m in members},
        "clients": {c: client_paths(path, c) for c in clients},
    }


def layout_tls(path: str, members: list[str]) -> dict:
    """The layout's tls entry: the PKI directory, the CA, the lab client's certificate and key (cert_file,
    key_file, as etcdctl's flags call them) and each member's own files."""
    every = paths(path, members, [LAB_CLIENT])
    client = every["clients"][LAB_CLIENT]
    return {
        "enabled": True,
        "dir": path,
        "ca_file": every["ca_file"],
        "cert_file": client["cert"],
        "key_file": client["key"],
        "members": every["members"],
    }
