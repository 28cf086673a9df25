"""lab_pki: the lab's CA and certificates, checked with Python's ssl (real mutual TLS handshakes over a socket
pair) and cryptography; idempotence, renewal of what changed, modes of the private keys."""

from __future__ import annotations

import socket
import ssl
import stat
import threading
from pathlib import Path

import lab_pki
import pytest
from ansible.module_utils import lab_pki_layout
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

MEMBERS = [{"name": "etcd-0", "ip": "198.18.213.11"}, {"name": "etcd-1", "ip": "198.18.213.12"}]


def make(path: Path, members=MEMBERS, clients=("lab-client",), check=False) -> list[str]:
    return lab_pki.ensure(str(path), list(members), list(clients), 30, check)


def handshake(server_cert: Path, server_key: Path, ca: Path, client_cert: Path | None,
              client_key: Path | None, hostname: str) -> str:  # fmt: skip
    """A mutual TLS handshake as etcd (--client-cert-auth) and etcdctl (--cacert/--cert/--key) do; the
    server's or the client's error, or "ok"."""
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(ca))
    server_ctx.load_cert_chain(str(server_cert), str(server_key))
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    client_ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca))
    if client_cert:
        client_ctx.load_cert_chain(str(client_cert), str(client_key))
    left, right = socket.socketpair()
    outcome = {}

    def serve():
        try:
            with server_ctx.wrap_socket(left, server_side=True) as conn:
                conn.recv(1)
            outcome["server"] = "ok"
        except (ssl.SSLError, OSError) as exc:
            outcome["server"] = f"server: {exc}"

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        with client_ctx.wrap_socket(right, server_hostname=hostname) as conn:
            conn.sendall(b"x")
        client = "ok"
    except (ssl.SSLError, OSError) as exc:
        client = f"client: {exc}"
        right.close()
    thread.join(5)
    left.close()
    return client if client != "ok" else outcome.get("server", "server: no answer")


def test_layout_usages_names_and_modes(tmp_path):
    made = make(tmp_path)
    assert made[0] == "ca.crt" and "etcd-1/peer.crt" in made and "clients/lab-client.crt" in made
    server = x509.load_pem_x509_certificate((tmp_path / "etcd-0" / "server.crt").read_bytes())
    alt = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(alt.get_values_for_type(x509.DNSName)) == {"etcd-0", "localhost"}
    assert {str(i) for i in alt.get_values_for_type(x509.IPAddress)} == {"198.18.213.11", "127.0.0.1", "::1"}
    eku = server.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    client = x509.load_pem_x509_certificate((tmp_path / "clients" / "lab-client.crt").read_bytes())
    assert set(client.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == {
        ExtendedKeyUsageOID.CLIENT_AUTH
    }
    for key in tmp_path.rglob("*.key"):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key
    for cert in tmp_path.rglob("*.crt"):
        assert stat.S_IMODE(cert.stat().st_mode) == 0o644, cert


def test_the_files_made_are_the_ones_the_layout_names(tmp_path):
    """lab_plan records the paths of module_utils/lab_pki_layout.py in lab.json; the etcd role, the playbooks
    and the kind Secrets read them from there. The CA's key is the one file the layout does not hand out."""
    make(tmp_path)
    tls = lab_pki_layout.layout_tls(str(tmp_path), [m["name"] for m in MEMBERS])
    named = {tls["ca_file"], tls["cert_file"], tls["key_file"]}
    named |= {path for files in tls["members"].values() for path in files.values()}
    made = {str(f) for f in tmp_path.rglob("*") if f.is_file()}
    assert made - named == {str(tmp_path / "ca.key")}
    assert named <= made


def test_mutual_tls_handshakes(tmp_path):
    make(tmp_path)
    ca = tmp_path / "ca.crt"
    server = (tmp_path / "etcd-0" / "server.crt", tmp_path / "etcd-0" / "server.key")
    client = (tmp_path / "clients" / "lab-client.crt", tmp_path / "clients" / "lab-client.key")
    assert handshake(*server, ca, *client, "198.18.213.11") == "ok"
    assert handshake(*server, ca, *client, "localhost") == "ok"
    # A peer certificate is a client certificate too (etcd's peers dial each other with it).
    peer = (tmp_path / "etcd-1" / "peer.crt", tmp_path / "etcd-1" / "peer.key")
    assert (
        handshake(tmp_path / "etcd-0" / "peer.crt", tmp_path / "etcd-0" / "peer.key", ca, *peer, "etcd-0")
        == "ok"
    )
    # No client certificate, another CA's certificate, a name the certificate does not hold: refused.
    assert handshake(*server, ca, None, None, "198.18.213.11").startswith(("server:", "client:"))
    other = tmp_path / "other"
    make(other)
    assert handshake(*server, ca, other / "clients" / "lab-client.crt", other / "clients" / "lab-client.key",
                     "198.18.213.11") != "ok"  # fmt: skip
    assert "client:" in handshake(*server, ca, *client, "198.18.213.99")
    # A client certificate cannot serve.
    assert handshake(*client, ca, *client, "lab-client") != "ok"


def test_idempotent_and_only_what_changed_is_made_again(tmp_path):
    make(tmp_path)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert make(tmp_path) == []
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before
    moved = [MEMBERS[0], {"name": "etcd-1", "ip": "198.18.213.22"}]
    assert make(tmp_path, moved, check=True) == ["etcd-1/server.crt", "etcd-1/peer.crt"]
    assert (tmp_path / "etcd-1" / "server.crt").read_bytes() == before[tmp_path / "etcd-1" / "server.crt"]
    assert make(tmp_path, moved) == ["etcd-1/server.crt", "etcd-1/peer.crt"]
    assert (tmp_path / "etcd-0" / "server.crt").read_bytes() == before[tmp_path / "etcd-0" / "server.crt"]


def test_a_certificate_of_another_ca_or_a_lost_key_is_made_again(tmp_path):
    make(tmp_path)
    other = tmp_path / "other"
    make(other)
    (tmp_path / "etcd-0" / "server.crt").write_bytes((other / "etcd-0" / "server.crt").read_bytes())
    (tmp_path / "etcd-1" / "peer.key").unlink()
    assert make(tmp_path) == ["etcd-0/server.crt", "etcd-1/peer.crt"]
    (tmp_path / "ca.key").write_text("garbage")
    made = make(tmp_path)
    assert made[0] == "ca.crt" and len(made) == 1 + 4 + 1


@pytest.mark.parametrize(
    ("members", "message"),
    [
        ([{"ip": "1.2.3.4"}], "every member needs a name"),
        ([{"name": "e", "ip": "1.2.3"}], "not an IP address"),
    ],
)
def test_bad_members_are_named(members, message):
    assert message in lab_pki.check_members(members)
