"""The lab's PKI, shared by lab_pki (the CA and every member's certificates) and lab_tls_check (a foreign CA's
client certificate that must be refused): ECDSA P-256 keys and kubeadm's key usages, with cryptography."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os

from ansible.module_utils.lab_pki_layout import CA_CERT, CA_KEY, MEMBER_KINDS, client_file, member_file

try:
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    HAS_CRYPTOGRAPHY = True
except ImportError:  # pragma: no cover - ansible-core requires cryptography
    HAS_CRYPTOGRAPHY = False

SERVER_AND_CLIENT = ("server", "client")
EKU = {"server": "SERVER_AUTH", "client": "CLIENT_AUTH"}
CLIENT_ONLY = ("client",)


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def new_key():
    return ec.generate_private_key(ec.SECP256R1())


def name(common_name: str, organization: str | None = None):
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(attrs)


def sans_for(member: dict, kind: str) -> tuple[set[str], set[str]]:
    """(DNS names, IP addresses) of a member's certificate. The server certificate also answers on the
    node's loopback, where ./lab exec's bare etcdctl talks to it."""
    dns = {member["name"], *member.get("dns", [])}
    ips = {member["ip"]} if member.get("ip") else set()
    if kind == "server":
        dns.add("localhost")
        ips |= {"127.0.0.1", "::1"}
    return dns, ips


def write_private(path: str, data: bytes) -> None:
    """A private key, mode 0600 from its first byte."""
    tmp = f"{path}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def write_public(path: str, data: bytes) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "wb") as handle:
        handle.write(data)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def load_pair(cert_path: str, key_path: str):
    """(certificate, key) from disk, or None when either is missing or unreadable."""
    try:
        with open(cert_path, "rb") as handle:
            cert = x509.load_pem_x509_certificate(handle.read())
        with open(key_path, "rb") as handle:
            key = serialization.load_pem_private_key(handle.read(), password=None)
    except (OSError, ValueError, TypeError):
        return None
    return cert, key


def key_matches(cert, key) -> bool:
    """Whether the certificate was made for this private key (same public key)."""
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return key.public_key().public_bytes(*spki) == cert.public_key().public_bytes(*spki)


def still_good(cert, key, ca_cert, dns: set[str], ips: set[str], usages: tuple[str, ...]) -> bool:
    """Signed by this CA, for this key, with these names and usages, and valid for more than a day."""
    if not key_matches(cert, key):
        return False
    if cert.not_valid_after_utc < now() + dt.timedelta(days=1) or cert.issuer != ca_cert.subject:
        return False
    try:
        ca_cert.public_key().verify(
            cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(cert.signature_hash_algorithm)
        )
    except (InvalidSignature, TypeError, ValueError):
        return False
    try:
        alt = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        have_dns = set(alt.get_values_for_type(x509.DNSName))
        have_ips = {str(ip) for ip in alt.get_values_for_type(x509.IPAddress)}
    except x509.ExtensionNotFound:
        have_dns, have_ips = set(), set()
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return False
    wanted = {
        {"server": ExtendedKeyUsageOID.SERVER_AUTH, "client": ExtendedKeyUsageOID.CLIENT_AUTH}[u]
        for u in usages
    }
    return have_dns == dns and have_ips == ips and set(eku) == wanted


def key_usage(ca: bool):
    """A CA signs certificates; a leaf signs (ECDSA) and, as kubeadm's do, may encipher keys."""
    return x509.KeyUsage(
        digital_signature=True,
        key_encipherment=not ca,
        content_commitment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


def make_self_signed(common_name: str, not_before: dt.datetime, not_after: dt.datetime):
    """A CA certificate signed by its own new key, valid from not_before to not_after: (cert, key)."""
    key = new_key()
    subject = name(common_name)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(key_usage(ca=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    return cert, key


def make_ca(days: int):
    start = now() - dt.timedelta(minutes=5)
    return make_self_signed("etcd-ca", start, start + dt.timedelta(days=days * 10))


def make_leaf(ca_cert, ca_key, common_name: str, dns: set[str], ips: set[str], usages, days: int, org=None):
    key = new_key()
    start = now() - dt.timedelta(minutes=5)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name(common_name, org))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(key_usage(ca=False), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [getattr(ExtendedKeyUsageOID, EKU[u]) for u in usages]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
    )  # fmt: skip
    alt = [x509.DNSName(d) for d in sorted(dns)] + [
        x509.IPAddress(ipaddress.ip_address(i)) for i in sorted(ips)
    ]
    if alt:
        builder = builder.add_extension(x509.SubjectAlternativeName(alt), critical=False)
    return builder.sign(ca_key, hashes.SHA256()), key


def pem(cert) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def key_pem(key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def wanted_leaves(members: list[dict], clients: list[str]) -> list[dict]:
    """Every leaf certificate: relative cert/key paths, common name, SANs, usages, organization."""
    leaves = []
    for member in members:
        for kind in MEMBER_KINDS:
            dns, ips = sans_for(member, kind)
            leaves.append(
                {
                    "cert": member_file(member["name"], kind, "crt"),
                    "key": member_file(member["name"], kind, "key"),
                    "cn": member["name"],
                    "dns": dns,
                    "ips": ips,
                    "usages": SERVER_AND_CLIENT,
                    "org": None,
                }
            )
    for client in clients:
        leaves.append(
            {
                "cert": client_file(client, "crt"),
                "key": client_file(client, "key"),
                "cn": client,
                "dns": set(),
                "ips": set(),
                "usages": CLIENT_ONLY,
                "org": "system:masters",
            }
        )
    return leaves


def ensure(path: str, members: list[dict], clients: list[str], days: int, check: bool) -> list[str]:
    """Make what is missing or wrong; the relative paths of the certificates made."""
    made = []
    ca_cert_path, ca_key_path = os.path.join(path, CA_CERT), os.path.join(path, CA_KEY)
    pair = load_pair(ca_cert_path, ca_key_path)
    ca_ok = (
        pair is not None
        and key_matches(*pair)
        and pair[0].not_valid_after_utc > now() + dt.timedelta(days=days)
    )
    if ca_ok:
        ca_cert, ca_key = pair
    else:
        made.append(CA_CERT)
        ca_cert, ca_key = make_ca(days)
        if not check:
            os.makedirs(path, mode=0o755, exist_ok=True)
            write_private(ca_key_path, key_pem(ca_key))
            write_public(ca_cert_path, pem(ca_cert))
    for leaf in wanted_leaves(members, clients):
        cert_path, key_path = os.path.join(path, leaf["cert"]), os.path.join(path, leaf["key"])
        pair = load_pair(cert_path, key_path)
        if ca_ok and pair and still_good(*pair, ca_cert, leaf["dns"], leaf["ips"], leaf["usages"]):
            continue
        made.append(leaf["cert"])
        if check:
            continue
        cert, key = make_leaf(
            ca_cert, ca_key, leaf["cn"], leaf["dns"], leaf["ips"], leaf["usages"], days, leaf["org"]
        )
        os.makedirs(os.path.dirname(cert_path), mode=0o755, exist_ok=True)
        write_private(key_path, key_pem(key))
        write_public(cert_path, pem(cert))
    return made


def check_members(members: list) -> str | None:
    for member in members:
        if not isinstance(member, dict) or not member.get("name"):
            return f"every member needs a name: {member!r}"
        if member.get("ip"):
            try:
                ipaddress.ip_address(member["ip"])
            except ValueError:
                return f"member {member['name']}: {member['ip']!r} is not an IP address"
    return None
