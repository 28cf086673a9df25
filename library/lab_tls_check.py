#!/usr/bin/python
"""Ansible module lab_tls_check: the members' ports refuse whoever the lab's CA did not vouch for."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: lab_tls_check
short_description: Check that the members' ports refuse plain HTTP, no client certificate and another CA's
description:
  - For every URL in O(urls) (the members' client and peer URLs, C(https://)), asks C(GET /version) four ways
    and says whether the member answered (an HTTP 200 with etcd's version) - with the lab's client
    certificate (it must answer; the control), over plain HTTP, over TLS without a client certificate, and
    with a client certificate of another CA made for this check (each must be refused).
  - The other CA and its certificate are made in memory and written only to a private temporary directory,
    removed at the end.
  - Read-only; never reports a change. One check per URL and way, each C(name), C(ok), C(detail), as
    etcd_consistency's checks.
version_added: "1.0.0"
options:
  urls:
    description: The URLs to check, C(https://HOST:PORT).
    type: list
    elements: str
    required: true
  ca_cert:
    description: The lab's CA certificate (verifies the members' server certificates).
    type: path
    required: true
  client_cert:
    description: The lab's client certificate (the control, which must be answered).
    type: path
    required: true
  client_key:
    description: Its private key.
    type: path
    required: true
  timeout:
    description: Seconds each attempt may take.
    type: float
    default: 3.0
extends_documentation_fragment:
  - lab_module
"""

EXAMPLES = r"""
- name: Verify | Check that the members refuse clients without the lab's certificate
  lab_tls_check:
    urls: "{{ lab_plan.members | map(attribute='client_url') | list }}"
    ca_cert: "{{ lab_plan.tls.ca_file }}"
    client_cert: "{{ lab_plan.tls.cert_file }}"
    client_key: "{{ lab_plan.tls.key_file }}"
  register: verify_tls
"""

RETURN = r"""
ok:
  description: Every check passed.
  returned: always
  type: bool
summary:
  description: One check per way over every URL (C(TLS - every port refuses plain HTTP), ...), C(name), C(ok),
    C(detail) (the ports that failed and what they did).
  returned: always
  type: list
  elements: dict
checks:
  description: One per URL and way - C(name) (for example C(https://198.18.213.11:2380 refuses another CA)),
    C(ok), C(detail) (what the member did).
  returned: always
  type: list
  elements: dict
"""

import os
import shutil
import socket
import ssl
import tempfile
from urllib.parse import urlsplit

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.lab_pki_core import HAS_CRYPTOGRAPHY, ensure

REQUEST = b"GET /version HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n"


def answered(reply: bytes) -> bool:
    """An HTTP 200 with etcd's version: the member served the request."""
    return reply.startswith(b"HTTP/1.1 200") and b"etcdserver" in reply


def ask(host: str, port: int, context: ssl.SSLContext | None, timeout: float) -> tuple[bool, str]:
    """(answered, what happened) of one GET /version, over TLS with the context or plain without one."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw:
            conn = context.wrap_socket(raw, server_hostname=host) if context else raw
            try:
                conn.sendall(REQUEST % host.encode())
                reply = read_reply(conn)
            finally:
                if context:
                    conn.close()
    except (ssl.SSLError, OSError) as exc:
        return False, f"refused ({exc.__class__.__name__}: {str(exc)[:120]})"
    if answered(reply):
        return True, "answered " + reply.split(b"\r\n\r\n", 1)[-1][:80].decode(errors="replace")
    first = reply.split(b"\r\n", 1)[0].decode(errors="replace") or "the connection closed with no reply"
    return False, f"refused ({first[:120]})"


def read_reply(conn) -> bytes:
    """The reply's head and its Content-Length of body (a member may keep the connection open after it)."""
    reply = b""
    while len(reply) < 65536:
        head, sep, body = reply.partition(b"\r\n\r\n")
        if sep:
            length = next(
                (
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                ),
                None,
            )
            if length is not None and len(body) >= length:
                break
        chunk = conn.recv(4096)
        if not chunk:
            break
        reply += chunk
    return reply


def context_for(ca: str, cert: str | None, key: str | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=ca)
    # Without ALPN, etcd's peer port (3.4) never answers an HTTP/1.1 request; with it, both ports do.
    context.set_alpn_protocols(["http/1.1"])
    if cert:
        context.load_cert_chain(cert, key)
    return context


def check_url(url: str, ways: dict, timeout: float) -> list[dict]:
    parts = urlsplit(url)
    host, port = parts.hostname, parts.port
    checks = []
    for way, (context, must_answer) in ways.items():
        did_answer, detail = ask(host, port, context, timeout)
        checks.append(
            {
                "name": f"{url} {way}",
                "ok": did_answer == must_answer,
                "detail": detail,
                "url": url,
                "way": way,
            }
        )
    return checks


def run(params: dict) -> dict:
    bad = [u for u in params["urls"] if urlsplit(u).scheme != "https" or not urlsplit(u).port]
    if bad:
        raise ValueError(
            f"not https://HOST:PORT URLs: {', '.join(bad)} (is the lab built with lab_tls=true?)"
        )
    foreign = tempfile.mkdtemp(prefix="lab-foreign-ca-")
    try:
        os.chmod(foreign, 0o700)
        ensure(foreign, [], ["intruder"], 2, False)
        ca = params["ca_cert"]
        ways = {
            "answers the lab's client certificate": (
                context_for(ca, params["client_cert"], params["client_key"]),
                True,
            ),
            "refuses plain HTTP": (None, False),
            "refuses TLS without a client certificate": (context_for(ca, None, None), False),
            "refuses another CA's client certificate": (
                context_for(
                    ca,
                    os.path.join(foreign, "clients", "intruder.crt"),
                    os.path.join(foreign, "clients", "intruder.key"),
                ),
                False,
            ),
        }
        checks = [c for url in params["urls"] for c in check_url(url, ways, params["timeout"])]
    finally:
        shutil.rmtree(foreign, ignore_errors=True)
    return {
        "changed": False,
        "ok": all(c["ok"] for c in checks),
        "checks": checks,
        "summary": summary(checks),
    }


def summary(checks: list[dict]) -> list[dict]:
    """One check per way over every URL, as the grader prints them."""
    out = []
    for way in dict.fromkeys(c["way"] for c in checks):
        these = [c for c in checks if c["way"] == way]
        failed = [c for c in these if not c["ok"]]
        detail = (
            f"all {len(these)} ports"
            if not failed
            else "; ".join(f"{c['url']}: {c['detail']}" for c in failed)
        )
        out.append({"name": f"TLS: every port {way}", "ok": not failed, "detail": detail})
    return out


def run_module() -> None:
    module = AnsibleModule(
        argument_spec={
            "urls": {"type": "list", "elements": "str", "required": True},
            "ca_cert": {"type": "path", "required": True},
            "client_cert": {"type": "path", "required": True},
            "client_key": {"type": "path", "required": True, "no_log": False},
            "timeout": {"type": "float", "default": 3.0},
        },
        supports_check_mode=True,
    )
    if not HAS_CRYPTOGRAPHY:
        module.fail_json(msg="lab_tls_check needs the Python library cryptography")
    for option in ("ca_cert", "client_cert", "client_key"):
        if not os.access(module.params[option], os.R_OK):
            module.fail_json(msg=f"{option}={module.params[option]} cannot be read")
    try:
        result = run(module.params)
    except (ValueError, OSError, ssl.SSLError) as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(**result)


def main() -> None:
    run_module()


if __name__ == "__main__":
    main()
