# Copyright: etcd split-brain lab contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""TLS files of the connection options (ca_cert, client_cert, client_key, validate_certs): checked before any
request, so that a missing, unreadable, expired or mismatched file fails with one line naming it."""

from __future__ import annotations

import datetime
import os
import ssl

from ansible.module_utils.etcd_errors import EtcdError


def check_tls_files(ca_file=None, cert_file=None, key_file=None):
    """Raise EtcdError for a missing or unreadable TLS file, or a certificate without its key."""
    for label, path in (("CA file", ca_file), ("client certificate", cert_file), ("client key", key_file)):
        if path is None:
            continue
        if not os.path.isfile(path):
            raise EtcdError(f"The {label} '{path}' does not exist or is not a file", kind="file")
        if not os.access(path, os.R_OK):
            raise EtcdError(f"The {label} '{path}' is not readable", kind="file")


def check_validity(label, path, now=None):
    """Raise EtcdError naming the file when a PEM certificate has expired or is not valid yet (OpenSSL would
    only say "certificate verify failed", or the member would drop the handshake). A file cryptography cannot
    read as a certificate is left to ssl, which names it."""
    try:
        from cryptography import x509
    except ImportError:  # pragma: no cover - ansible-core requires cryptography
        return
    try:
        with open(path, "rb") as handle:
            cert = x509.load_pem_x509_certificate(handle.read())
    except (OSError, ValueError):
        return
    now = now or datetime.datetime.now(datetime.UTC)
    if cert.not_valid_after_utc < now:
        raise EtcdError(
            f"The {label} '{path}' expired on {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC: make a new one",
            kind="file",
        )
    if cert.not_valid_before_utc > now:
        raise EtcdError(
            f"The {label} '{path}' is not valid before {cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC "
            "(is this host's clock right?)",
            kind="file",
        )


def make_ssl_context(ca_file=None, cert_file=None, key_file=None, validate_certs=True):
    check_tls_files(ca_file, cert_file, key_file)
    for label, path in (("CA file", ca_file), ("client certificate", cert_file)):
        if path:
            check_validity(label, path)
    try:
        if validate_certs:
            ctx = ssl.create_default_context(cafile=ca_file)
        else:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
    except ssl.SSLError as exc:
        raise EtcdError(
            f"The CA file '{ca_file}' is not a valid PEM certificate: {exc}", kind="file"
        ) from None
    if cert_file:
        try:
            ctx.load_cert_chain(cert_file, key_file)
        except ssl.SSLError as exc:
            reason = getattr(exc, "reason", None) or str(exc)
            if "KEY_VALUES_MISMATCH" in str(exc):
                reason = "the key does not match the certificate"
            raise EtcdError(
                f"Cannot load client certificate '{cert_file}' with key '{key_file}': {reason}", kind="file"
            ) from None
    return ctx


def check_tls_params(endpoints, params):
    """When any endpoint is https, build the TLS context from the shared options once, so that a missing or
    bad CA, certificate or key fails before any request with one clear message (EtcdError)."""
    if any(e.startswith("https") for e in endpoints):
        make_ssl_context(
            params.get("ca_cert"),
            params.get("client_cert"),
            params.get("client_key"),
            params.get("validate_certs", True),
        )
