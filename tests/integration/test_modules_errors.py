"""Bad input against real servers on loopback: each gives one clear message and changes nothing.

Unreachable port, a plain HTTP server that is not etcd, and a TLS etcd (client-cert-auth) with
certificates generated here: right and wrong CA, missing files, no client cert, mismatched key,
https against a plain-HTTP member and http against the TLS member.
"""

from __future__ import annotations

import subprocess
import sys
import time

import etcd_endpoint_status
import etcd_kv_diff
import etcd_member
import etcd_snapshot
import pytest
from ansible.module_utils.etcd_client import EtcdClient
from ansible.module_utils.etcd_codec import id_to_hex
from ansible.module_utils.etcd_errors import EtcdError
from etcd_fixtures import free_ports, run_module, running_cluster, tls_files  # noqa: F401 - fixture


@pytest.fixture(scope="module")
def tls_cluster(tls_files):  # noqa: F811
    with running_cluster("3.5", size=1, tls=tls_files) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def plain_cluster():
    with running_cluster("3.4", size=1) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def http_server(tmp_path_factory):
    """python -m http.server on 127.0.0.1: answers POST with 501 HTML, GET / with a listing."""
    port = free_ports(1)[0]
    root = tmp_path_factory.mktemp("www")
    proc = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(root)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                import socket

                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def probe(url, **tls):
    return run_module(etcd_endpoint_status, {"endpoints": [url], "timeout": 2, **tls})


def test_unreachable_port_is_a_result_not_a_failure():
    url = f"http://127.0.0.1:{free_ports(1)[0]}"
    result = probe(url)
    assert not result.get("failed")
    (endpoint,) = result["endpoints"]
    assert endpoint["reachable"] is False
    assert (
        endpoint["error"]
        == f"Cannot reach etcd at {url}: connection refused (is etcd running and listening on this port?)"
    )
    assert result["findings"][0].startswith("No endpoint answered")


@pytest.mark.parametrize(
    "module_args",
    [
        (etcd_member, {"state": "list"}),
        (etcd_kv_diff, {}),
        (etcd_snapshot, {"operation": "save", "path": "/tmp/never-written.db"}),
    ],
    ids=["member", "kv_diff", "snapshot"],
)
def test_other_modules_fail_clearly_on_unreachable(module_args, tmp_path):
    module, extra = module_args
    url = f"http://127.0.0.1:{free_ports(1)[0]}"
    endpoints = [url, url] if module is etcd_kv_diff else [url]
    result = run_module(module, {"endpoints": endpoints, "timeout": 1, **extra})
    assert result["failed"] is True and result["changed"] is False
    assert f"Cannot reach etcd at {url}: connection refused" in result["msg"]
    assert "Traceback" not in result["msg"]
    import os

    assert not os.path.exists("/tmp/never-written.db")


def test_plain_http_server_is_not_an_etcd_gateway(http_server):
    (endpoint,) = probe(http_server)["endpoints"]
    assert endpoint["reachable"] is False
    assert (
        f"{http_server} is not an etcd v3 gateway: POST /v3/maintenance/status answered HTTP 501"
        in endpoint["error"]
    )


def test_snapshot_from_non_etcd_fails_and_writes_nothing(http_server, tmp_path):
    target = tmp_path / "s.db"
    result = run_module(etcd_snapshot, {"operation": "save", "endpoints": [http_server], "path": str(target)})
    assert result["failed"] and "is not an etcd v3 gateway" in result["msg"]
    assert list(tmp_path.iterdir()) == []


def test_tls_with_the_right_ca_and_client_cert(tls_cluster, tls_files):  # noqa: F811
    result = probe(tls_cluster.endpoints[0], **tls_files.options())
    (endpoint,) = result["endpoints"]
    assert endpoint["reachable"] is True and endpoint["name"] == "etcd-0", endpoint["error"]
    assert result["split_brain"] is False


@pytest.mark.parametrize("transport", ["grpc", "gateway"])
def test_tls_snapshot_save(tls_cluster, tls_files, tmp_path, transport):  # noqa: F811
    tls = tls_files.options()
    target = tmp_path / "tls.db"
    args = {
        "operation": "save",
        "endpoints": tls_cluster.endpoints,
        "path": str(target),
        "transport": transport,
    }
    result = run_module(etcd_snapshot, {**args, **tls})
    assert result.get("failed") is not True, result.get("msg")
    assert result["transport"] == transport and result["has_hash"] and target.exists()
    # Without the client certificate: a clear failure and no file.
    bad = run_module(etcd_snapshot, {**args, "path": str(tmp_path / "no.db"), "ca_cert": tls_files.ca})
    assert bad["failed"] and tls_cluster.endpoints[0] in bad["msg"]
    assert not (tmp_path / "no.db").exists()


def tls_error(tls_cluster, **tls):
    result = probe(tls_cluster.endpoints[0], **tls)
    if result.get("failed"):
        return result["msg"]
    return result["endpoints"][0]["error"]


def test_tls_wrong_ca(tls_cluster, tls_files):  # noqa: F811
    # The options' earlier names (ca_file, cert_file, key_file) are aliases: they still work.
    msg = tls_error(
        tls_cluster,
        ca_file=tls_files.other_ca,
        cert_file=tls_files.client_cert,
        key_file=tls_files.client_key,
    )
    assert msg.startswith(
        f"Cannot reach etcd at {tls_cluster.endpoints[0]}: TLS certificate verification failed"
    )


def test_tls_without_ca_uses_system_store_and_fails(tls_cluster, tls_files):  # noqa: F811
    msg = tls_error(tls_cluster, cert_file=tls_files.client_cert, key_file=tls_files.client_key)
    assert "TLS certificate verification failed" in msg


def test_tls_without_client_certificate(tls_cluster, tls_files):  # noqa: F811
    msg = tls_error(tls_cluster, ca_file=tls_files.ca)
    assert f"Cannot reach etcd at {tls_cluster.endpoints[0]}:" in msg
    assert "client certificate" in msg, msg


def test_tls_key_does_not_match_certificate(tls_cluster, tls_files):  # noqa: F811
    result = probe(tls_cluster.endpoints[0], **tls_files.options(client_key=tls_files.server_key))
    assert result["failed"] and "the key does not match the certificate" in result["msg"]


@pytest.mark.parametrize("missing", ["ca_cert", "client_cert", "client_key"])
def test_tls_missing_files(tls_cluster, tls_files, missing):  # noqa: F811
    result = probe(tls_cluster.endpoints[0], **tls_files.options(**{missing: "/nonexistent/file.pem"}))
    assert result["failed"] and "'/nonexistent/file.pem' does not exist" in result["msg"]


@pytest.mark.parametrize("given", [{"client_cert": "/c.pem"}, {"key_file": "/k.pem"}])
def test_a_client_certificate_needs_its_key(given):
    """required_together in the argument spec: refused before any connection, naming both options."""
    result = probe("https://127.0.0.1:1", **given)
    assert result["failed"] and "parameters are required together: client_cert, client_key" in result["msg"]


def test_tls_validate_certs_false_skips_verification(tls_cluster, tls_files):  # noqa: F811
    result = probe(
        tls_cluster.endpoints[0],
        validate_certs=False,
        client_cert=tls_files.client_cert,
        client_key=tls_files.client_key,
    )
    assert result["endpoints"][0]["reachable"] is True


def test_http_url_against_tls_member(tls_cluster):
    url = tls_cluster.endpoints[0].replace("https://", "http://")
    (endpoint,) = probe(url)["endpoints"]
    assert endpoint["reachable"] is False
    assert endpoint["error"].startswith(f"Cannot reach etcd at {url}: ")
    assert "use an https:// URL" in endpoint["error"]


def test_https_url_against_plain_member(plain_cluster, tls_files):  # noqa: F811
    url = plain_cluster.endpoints[0].replace("http://", "https://")
    (endpoint,) = probe(url, ca_cert=tls_files.ca)["endpoints"]
    assert endpoint["reachable"] is False
    # etcd answers a TLS ClientHello on a plain port either with bytes the handshake rejects or by closing
    # the connection (both seen on 3.4.23, depending on timing): either way the hint names the fix.
    assert endpoint["error"].startswith(f"Cannot reach etcd at {url}: "), endpoint["error"]
    assert (
        "TLS handshake failed" in endpoint["error"]
        or "connection closed by the server without a reply" in endpoint["error"]
    ), endpoint["error"]
    assert "use an http:// URL for a plain-HTTP member" in endpoint["error"]


def test_timeout_is_reported(plain_cluster):
    # A listening socket that never answers: the request times out.
    import socket

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    url = f"http://127.0.0.1:{server.getsockname()[1]}"
    try:
        with pytest.raises(EtcdError, match=r"timed out after 0.5 s"):
            EtcdClient(url, timeout=0.5).status()
    finally:
        server.close()


@pytest.fixture(scope="module")
def http1_proxy(plain_cluster):
    """An HTTP/1.1-only reverse proxy in front of the member (like many load balancers): gRPC over
    HTTP/2 cannot pass, the JSON gateway can."""
    import http.client
    import http.server
    import threading

    upstream = plain_cluster.members[0]

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            conn = http.client.HTTPConnection("127.0.0.1", upstream.client_port, timeout=10)
            conn.request("POST", self.path, body=body, headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            data = resp.read()
            self.send_response(resp.status)
            for name in ("Content-Type", "Date"):
                if resp.getheader(name):
                    self.send_header(name, resp.getheader(name))
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            conn.close()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_auto_transport_falls_back_to_the_gateway_behind_an_http1_proxy(plain_cluster, http1_proxy, tmp_path):
    plain_cluster.put(plain_cluster.members[0], "/app/x", "1")
    direct = tmp_path / "direct.db"
    proxied = tmp_path / "proxied.db"
    first = run_module(
        etcd_snapshot, {"operation": "save", "endpoints": plain_cluster.endpoints, "path": str(direct)}
    )
    assert first["transport"] == "grpc"
    result = run_module(
        etcd_snapshot, {"operation": "save", "endpoints": [http1_proxy], "path": str(proxied)}
    )
    assert result.get("failed") is not True, result.get("msg")
    assert result["transport"] == "gateway" and result["sha256"] == first["sha256"]
    forced = run_module(
        etcd_snapshot,
        {
            "operation": "save",
            "endpoints": [http1_proxy],
            "path": str(tmp_path / "f.db"),
            "transport": "grpc",
        },
    )
    assert forced["failed"] and forced["msg"].startswith(f"Snapshot over gRPC from {http1_proxy} failed")
    assert not (tmp_path / "f.db").exists()
    diff = run_module(etcd_kv_diff, {"endpoints": [plain_cluster.endpoints[0], http1_proxy]})
    assert diff["left"]["transport"] == "grpc" and diff["right"]["transport"] == "gateway"
    assert diff["identical"] is True and diff["counts"]["identical"] >= 1


def test_hashkv_over_grpc(plain_cluster, tls_cluster, tls_files):  # noqa: F811
    member = plain_cluster.members[0]
    plain_cluster.put(member, "/app/hash", "1")
    with plain_cluster.client(member) as c:
        first = c.hashkv()
        rev = first["revision"]
        assert first["hash"] > 0 and rev > 0
        assert first["member_id"] == id_to_hex(c.status().data["header"]["member_id"])
        same = c.hashkv(rev)
        assert same["hash"] == first["hash"]
        c.put("/app/hash", "2")
        assert c.hashkv()["hash"] != first["hash"]
        assert c.hashkv(rev)["hash"] == first["hash"]  # the old revision still hashes the same
        # etcd's gRPC status (in the reply's trailers) is the message, on one line with the endpoint.
        with pytest.raises(EtcdError) as err:
            c.hashkv(rev + 1000)
        assert str(err.value) == (
            f"HashKV over gRPC from {c.endpoint} failed: OUT_OF_RANGE: "
            "etcdserver: mvcc: required revision is a future revision"
        )
        assert err.value.code == "OUT_OF_RANGE"
    with tls_cluster.client(tls_cluster.members[0]) as c:
        assert c.hashkv()["hash"] > 0


def test_grpc_without_certificate_verification(tls_cluster, tls_files, tmp_path):  # noqa: F811
    """grpcio always verifies the member's certificate: with validate_certs=false HashKV fails saying so,
    and a snapshot (transport auto) comes through the JSON gateway."""
    tls = {"client_cert": tls_files.client_cert, "client_key": tls_files.client_key, "validate_certs": False}
    with (
        EtcdClient(
            tls_cluster.endpoints[0],
            cert_file=tls_files.client_cert,
            key_file=tls_files.client_key,
            validate_certs=False,
        ) as c,
        pytest.raises(EtcdError, match=r"gRPC always verifies the member's certificate"),
    ):
        c.hashkv()
    target = tmp_path / "unverified.db"
    args = {"operation": "save", "endpoints": tls_cluster.endpoints, "path": str(target), **tls}
    result = run_module(etcd_snapshot, args)
    assert result.get("failed") is not True, result.get("msg")
    assert result["transport"] == "gateway" and result["has_hash"] and target.exists()
