# Copyright: etcd split-brain lab contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One client for etcd's v3 JSON gateway (grpc-gateway), shared by the etcd_* modules.

Standard library only (http.client, ssl) for the gateway; the three calls that speak gRPC (HashKV, the
snapshot stream, the diff's key ranges) are in etcd_grpc.py, which imports grpcio only when one of them is
made. Every failure is raised as EtcdError (etcd_errors.py) whose message names the endpoint and the cause,
so a module can hand it to fail_json unchanged.

The rest of the shared code, by concern: etcd_codec.py (ids, base64, key-values and members as dicts),
etcd_tls.py (the TLS files), etcd_probe.py (status of many members at once), etcd_diagnosis.py (quorum and
the HashKV comparison), etcd_errors.py (the error and the modules' one-line failure).

Gateway facts this client relies on (checked on etcd 3.4.23 and 3.5.1):
- every call is a POST of a JSON body to /v3/<service>/<method>;
- keys and values are base64; 64-bit integers (ids, revisions, sizes) are JSON strings;
- fields with zero values are omitted (leader "0" is absent-or-"0", isLearner false is absent);
- errors come back as {"error": "...", "code": N, "message": "..."} with a non-200 status;
- /v3/maintenance/snapshot streams newline-delimited {"result": {"blob": "<base64>"}} objects,
  the last of which carries the 32-byte sha256 of the database;
- /v3/maintenance/hashkv is NOT served by the gateway (404) on 3.4.23 nor 3.5.1: EtcdClient.hashkv
  speaks gRPC instead (EtcdClient.grpc(), also used for snapshots and key ranges);
- the HTTP Date header comes from the member's own wall clock (1 s resolution).
"""

from __future__ import annotations

import binascii
import email.utils
import http.client
import json
import socket
import ssl
import time
from urllib.parse import urlsplit

from ansible.module_utils.basic import AnsibleModule, env_fallback
from ansible.module_utils.etcd_codec import b64, unb64
from ansible.module_utils.etcd_errors import EtcdError
from ansible.module_utils.etcd_tls import make_ssl_context

# Shared Ansible argument spec for the connection / TLS options of every etcd_* module.
ETCD_COMMON_ARGUMENT_SPEC = {
    "timeout": {"type": "float", "default": 5.0},
    # Named as in the collections (community.general etcd3, kubernetes.core); the earlier names are aliases.
    # Unset, they come from etcdctl's own variables, which the lab's playbooks set on a TLS lab.
    "ca_cert": {"type": "path", "aliases": ["ca_file"], "fallback": (env_fallback, ["ETCDCTL_CACERT"])},
    "client_cert": {"type": "path", "aliases": ["cert_file"], "fallback": (env_fallback, ["ETCDCTL_CERT"])},
    "client_key": {
        "type": "path",
        "aliases": ["key_file"],
        "no_log": False,
        "fallback": (env_fallback, ["ETCDCTL_KEY"]),
    },
    "validate_certs": {"type": "bool", "default": True},
}

# Passed to AnsibleModule with the spec above: a client certificate needs its key.
ETCD_COMMON_REQUIRED_TOGETHER = [("client_cert", "client_key")]

# Their documentation: plugins/doc_fragments/etcd_connection.py (extends_documentation_fragment).


def validate_endpoint(url):
    """Check a client URL: http or https, a host and an explicit port. Returns (scheme, host, port)."""
    if not isinstance(url, str) or not url.strip():
        raise EtcdError(f"Endpoint {url!r} is not a URL: expected http(s)://HOST:PORT", url, "url")
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise EtcdError(f"Endpoint '{url}' is not a valid URL: {exc}", url, "url") from None
    if not parts.scheme:
        raise EtcdError(
            f"Endpoint '{url}' has no scheme: write it as http://HOST:PORT or https://HOST:PORT", url, "url"
        )
    if parts.scheme not in ("http", "https"):
        shown = parts.scheme
        raise EtcdError(
            f"Endpoint '{url}' has scheme '{shown}': only http:// and https:// client URLs are supported",
            url,
            "url",
        )
    if not parts.hostname:
        raise EtcdError(f"Endpoint '{url}' has no host: expected {parts.scheme}://HOST:PORT", url, "url")
    if port is None:
        raise EtcdError(
            f"Endpoint '{url}' has no port: give it explicitly, e.g. {parts.scheme}://{parts.hostname}:2379",
            url,
            "url",
        )
    if port == 0:
        raise EtcdError(f"Endpoint '{url}' has port 0", url, "url")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise EtcdError(f"Endpoint '{url}' must be scheme://host:port without a path or query", url, "url")
    return parts.scheme, parts.hostname, port


def normalize_url(url):
    """A client or peer URL as the lab compares and shows it (the modules' one normaliser): no surrounding
    blanks, no trailing slash, lower case (scheme and host are case-insensitive, and a member URL has no
    path: validate_endpoint refuses one)."""
    return url.strip().rstrip("/").lower()


def _looks_like_tls_refusal(exc):
    text = str(exc).lower()
    return "wrong version number" in text or "record layer failure" in text or "unknown protocol" in text


class Response:
    """A decoded gateway reply with the member's clock offset estimate."""

    __slots__ = ("clock_offset", "data", "rtt")

    def __init__(self, data, clock_offset, rtt):
        self.data = data
        self.clock_offset = clock_offset
        self.rtt = rtt


def clock_offset_from_date(date_header, sent, received):
    """Offset (s) of the server's wall clock from ours: Date - midpoint(sent, received).

    The Date header truncates the server's time to the second, so the server's time when it wrote the
    header lies in [Date, Date + 1): we add 0.5 s for an unbiased estimate. Resolution is therefore
    about +/-0.5 s plus half the round trip; treat anything below 1 s as "no measurable skew".
    """
    if not date_header:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(date_header)
    except (TypeError, ValueError):
        return None
    if parsed is None:
        return None
    return round(parsed.timestamp() + 0.5 - (sent + received) / 2.0, 3)


class EtcdClient:
    """Talks to one member's client URL. Not thread-safe: use one client per thread."""

    def __init__(
        self, endpoint, timeout=5.0, ca_file=None, cert_file=None, key_file=None, validate_certs=True
    ):
        self.endpoint = normalize_url(endpoint) if isinstance(endpoint, str) else endpoint
        self.scheme, self.host, self.port = validate_endpoint(self.endpoint)
        self.timeout = float(timeout)
        self.ssl_context = None
        if self.scheme == "https":
            self.ssl_context = make_ssl_context(ca_file, cert_file, key_file, validate_certs)
        self._conn = None
        self._grpc = None  # the GrpcClient of grpc()
        self.last_clock_offset = None
        self.last_snapshot_sha256 = None
        self.ca_file, self.cert_file, self.key_file = ca_file, cert_file, key_file
        self.validate_certs = validate_certs

    # ---- transport -------------------------------------------------------------------------

    def _connection(self):
        if self._conn is None:
            if self.scheme == "https":
                self._conn = http.client.HTTPSConnection(
                    self.host, self.port, timeout=self.timeout, context=self.ssl_context
                )
            else:
                self._conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        return self._conn

    def close(self):
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        self.close_grpc()

    def close_grpc(self):
        """Close the gRPC channel (its connection and grpc's threads for it); the next gRPC call opens one."""
        if self._grpc is not None:
            self._grpc.close()
            self._grpc = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _fail(self, cause, kind, code=None):
        return EtcdError(f"Cannot reach etcd at {self.endpoint}: {cause}", self.endpoint, kind, code)

    def _translate(self, exc):
        """Map a transport exception to one EtcdError with a plain cause."""
        if isinstance(exc, EtcdError):
            return exc
        if isinstance(exc, ConnectionRefusedError):
            return self._fail("connection refused (is etcd running and listening on this port?)", "refused")
        if isinstance(exc, (socket.timeout, TimeoutError)):
            return self._fail(f"timed out after {self.timeout:g} s", "timeout")
        if isinstance(exc, ssl.SSLCertVerificationError):
            return self._fail(f"TLS certificate verification failed: {exc.verify_message or exc}", "tls")
        if isinstance(exc, ssl.SSLError):
            if _looks_like_tls_refusal(exc):
                return self._fail(
                    "TLS handshake failed: the member does not speak TLS on this port "
                    "(use an http:// URL for a plain-HTTP member)",
                    "tls",
                )
            reason = exc.reason or str(exc)
            if "CERTIFICATE_REQUIRED" in str(exc).upper():
                reason = "the member requires a client certificate (give client_cert and client_key)"
            elif "UNKNOWN_CA" in str(exc).upper() or "BAD_CERTIFICATE" in str(exc).upper():
                reason = f"the member rejected the client certificate ({exc.reason})"
            if "UNEXPECTED_EOF" in str(exc).upper() or "EOF OCCURRED" in str(exc).upper():
                reason = (
                    "the member closed the connection during the handshake (does it speak TLS on this port? "
                    "use an http:// URL for a plain-HTTP member)"
                )
            return self._fail(f"TLS handshake failed: {reason}", "tls")
        if isinstance(exc, socket.gaierror):
            return self._fail(f"cannot resolve host '{self.host}': {exc.strerror}", "refused")
        if isinstance(exc, (ConnectionResetError, http.client.RemoteDisconnected, BrokenPipeError)):
            if self.scheme == "http":
                hint = " (if the member serves TLS, use an https:// URL)"
            elif self.cert_file:
                hint = (
                    " (did it reject the client certificate? If it does not speak TLS on this port, "
                    "use an http:// URL for a plain-HTTP member)"
                )
            else:
                # A plain-HTTP member may reset a TLS ClientHello instead of answering it (etcd 3.4).
                hint = " (does it speak TLS on this port? use an http:// URL for a plain-HTTP member)"
            return self._fail(f"connection closed by the server without a reply{hint}", "refused")
        if isinstance(exc, http.client.HTTPException):
            return self._fail(
                f"invalid HTTP reply ({exc.__class__.__name__}): not an etcd gateway?", "not_etcd"
            )
        if isinstance(exc, OSError):
            return self._fail(exc.strerror or str(exc), "refused")
        return self._fail(f"{exc.__class__.__name__}: {exc}", "error")

    def _send(self, path, body):
        """POST body to path; returns (http response object, sent time, received time)."""
        payload = json.dumps(body or {}).encode("utf-8")
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        for attempt in range(2):  # one retry when a kept-alive connection was closed by the server
            fresh = self._conn is None
            conn = self._connection()
            sent = time.time()
            try:
                conn.request("POST", path, body=payload, headers=headers)
                resp = conn.getresponse()
                return resp, sent, time.time()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as exc:
                self.close()
                if attempt == 0 and not fresh:
                    continue
                raise self._translate(exc) from None
            except Exception as exc:  # every transport failure becomes one message
                self.close()
                raise self._translate(exc) from None
        raise self._fail("connection closed by the server", "refused")

    def _error_from_reply(self, path, status, content_type, raw):
        text = raw[:300].decode("utf-8", "replace").strip()
        if "json" in content_type:
            try:
                data = json.loads(raw)
            except ValueError:
                data = None
            if isinstance(data, dict) and ("error" in data or "message" in data):
                message = data.get("message") or data.get("error")
                if isinstance(message, dict):
                    message = message.get("message") or json.dumps(message)
                return EtcdError(
                    f"etcd at {self.endpoint} refused {path}: {message}",
                    self.endpoint,
                    "etcd",
                    data.get("code"),
                )
        if "Client sent an HTTP request to an HTTPS server" in text:
            return self._fail("the member serves HTTPS on this port: use an https:// URL", "tls")
        short = " ".join(text.split())[:120]
        return EtcdError(
            f"{self.endpoint} is not an etcd v3 gateway: POST {path} answered HTTP {status} "
            f"({content_type or 'no content type'}): {short}",
            self.endpoint,
            "not_etcd",
            status,
        )

    def call(self, path, body=None):
        """POST a JSON body to a gateway path; return a Response (data dict, clock offset)."""
        resp, sent, received = self._send(path, body)
        try:
            raw = resp.read()
        except Exception as exc:
            self.close()
            raise self._translate(exc) from None
        if resp.will_close:
            self.close()
        content_type = (resp.getheader("Content-Type") or "").lower()
        if resp.status != 200:
            raise self._error_from_reply(path, resp.status, content_type, raw)
        if "json" not in content_type:
            raise self._error_from_reply(path, resp.status, content_type, raw)
        try:
            data = json.loads(raw)
        except ValueError:
            raise self._error_from_reply(path, resp.status, content_type, raw) from None
        if not isinstance(data, dict):
            raise self._error_from_reply(path, resp.status, content_type, raw)
        if "error" in data and "result" not in data:
            raise self._error_from_reply(path, 200, content_type, raw)
        offset = clock_offset_from_date(resp.getheader("Date"), sent, received)
        self.last_clock_offset = offset
        return Response(data, offset, received - sent)

    # ---- API ---------------------------------------------------------------------------------

    def status(self):
        return self.call("/v3/maintenance/status", {})

    def member_list(self):
        return self.call("/v3/cluster/member/list", {})

    def alarms(self):
        return self.call("/v3/maintenance/alarm", {"action": "GET", "memberID": "0", "alarm": "NONE"})

    def range(
        self, key, range_end=None, limit=0, revision=0, serializable=False, count_only=False, keys_only=False
    ):
        body = {"key": b64(key)}
        if range_end is not None:
            body["range_end"] = b64(range_end)
        if limit:
            body["limit"] = str(int(limit))
        if revision:
            body["revision"] = str(int(revision))
        if serializable:
            body["serializable"] = True
        if count_only:
            body["count_only"] = True
        if keys_only:
            body["keys_only"] = True
        return self.call("/v3/kv/range", body)

    def put(self, key, value):
        return self.call("/v3/kv/put", {"key": b64(key), "value": b64(value)})

    def member_add(self, peer_urls, is_learner=False):
        body = {"peerURLs": list(peer_urls)}
        if is_learner:
            body["isLearner"] = True
        return self.call("/v3/cluster/member/add", body)

    def member_remove(self, member_id):
        return self.call("/v3/cluster/member/remove", {"ID": str(int(member_id))})

    def member_promote(self, member_id):
        return self.call("/v3/cluster/member/promote", {"ID": str(int(member_id))})

    def grpc(self):
        """The member's GrpcClient (module_utils/etcd_grpc.py), made on first use and closed by close().
        Importing grpc and protobuf adds about 35 ms, so only the operations that speak gRPC pay it."""
        if self._grpc is None:
            from ansible.module_utils.etcd_grpc import GrpcClient

            self._grpc = GrpcClient(self)
        return self._grpc

    def hashkv(self, revision=0):
        """HashKV of the member's key space at `revision` (0: latest), over gRPC.

        The JSON gateway does not serve /v3/maintenance/hashkv (404 on 3.4.23 and 3.5.1), so this
        one call always speaks gRPC. Returns {"hash", "compact_revision", "revision", "member_id"}.
        Hashes are comparable only between members at the same revision with the same history.
        Costly on a large database: the member reads all of it.
        """
        return self.grpc().hashkv(int(revision))

    def snapshot(self, out, progress=None, transport="auto"):
        """Stream the member's snapshot into the seekable binary file `out`; return (bytes, transport).

        transport: "grpc" (as etcdctl; 3-4x faster than the gateway), "gateway" (JSON), or "auto": gRPC,
        and when that fails for any reason (no HTTP/2 on the way, validate_certs=false, a reset, a stream
        that does not end with its sha256), start again through the gateway.
        """
        from ansible.module_utils.etcd_grpc import TailHashWriter

        if transport in ("auto", "grpc"):
            start = out.tell()
            hashing = TailHashWriter(out)
            try:
                try:
                    written = self.grpc().snapshot(hashing, progress)
                finally:
                    hashing.finish()
                    # A snapshot is one call: the channel goes before the caller runs etcdutl / etcdctl on
                    # the file (a fork), as the connection of the earlier hand-written client did.
                    self.close_grpc()
                if not hashing.intact():
                    raise EtcdError(
                        f"Snapshot over gRPC from {self.endpoint} failed: the stream did not end with the "
                        "sha256 of the database",
                        self.endpoint,
                        "protocol",
                    )
                self.last_snapshot_sha256 = hashing.sha256()
                return written, "grpc"
            except EtcdError:
                if transport == "grpc":
                    raise
                out.seek(start)
                out.truncate()
        hashing = TailHashWriter(out)
        try:
            written = self._snapshot_gateway(hashing, progress)
        finally:
            hashing.finish()
        if not hashing.intact():
            raise EtcdError(
                f"etcd at {self.endpoint} sent a snapshot that does not end with the sha256 of its database "
                "(cut or corrupted in transit)",
                self.endpoint,
                "protocol",
            )
        self.last_snapshot_sha256 = hashing.sha256()
        return written, "gateway"

    def _snapshot_gateway(self, out, progress=None):
        """Stream the member's snapshot through the JSON gateway into the binary file object `out`.

        Writes every chunk (the database followed by its 32-byte sha256, exactly as
        `etcdctl snapshot save` stores it) and returns the number of bytes written. Raises EtcdError
        when the stream is cut, malformed, or carries an error object.
        """
        path = "/v3/maintenance/snapshot"
        resp, _sent, _received = self._send(path, {})
        content_type = (resp.getheader("Content-Type") or "").lower()
        if resp.status != 200 or "json" not in content_type:
            raw = resp.read()
            self.close()
            raise self._error_from_reply(path, resp.status, content_type, raw)
        total = 0
        marker = b'{"result":{"blob":"'
        try:
            for line in _lines(resp):
                end = line.find(b'"', len(marker)) if line.startswith(marker) else -1
                if end > 0:  # base64 holds no quote: the blob ends at the next one
                    chunk = binascii.a2b_base64(line[len(marker) : end])
                else:  # slow path: any other field order or an error object
                    obj = json.loads(line)
                    if "error" in obj:
                        err = obj["error"]
                        message = err.get("message") if isinstance(err, dict) else err
                        raise EtcdError(
                            f"etcd at {self.endpoint} aborted the snapshot: {message}", self.endpoint, "etcd"
                        )
                    chunk = unb64(obj.get("result", {}).get("blob", ""))
                out.write(chunk)
                total += len(chunk)
                if progress:
                    progress(total)
        except EtcdError:
            self.close()
            raise
        except (ValueError, binascii.Error):
            self.close()
            raise EtcdError(
                f"etcd at {self.endpoint} sent a malformed snapshot stream", self.endpoint, "protocol"
            ) from None
        except Exception as exc:
            self.close()
            raise self._translate(exc) from None
        self.close()
        return total


def _lines(resp, block=1 << 20):
    """Yield the non-empty lines of a streamed response, reading large blocks (much faster than readline)."""
    pending = b""
    while True:
        data = resp.read1(block) if hasattr(resp, "read1") else resp.read(block)
        if not data:
            break
        parts = (pending + data).split(b"\n")
        pending = parts.pop()
        for part in parts:
            part = part.strip()
            if part:
                yield part
    pending = pending.strip()
    if pending:
        yield pending


def watch_history(client, start_revision, end_revision, max_events=1000000):
    """The events of the whole key space from start_revision to end_revision, read from a member's history
    with a bounded watch through the gateway (POST /v3/watch, one JSON reply per line).

    Yields (type, key bytes, mod revision, kv dict) with type "PUT" or "DELETE", in revision order. Every
    revision after 1 has at least one event, so the stream reaches end_revision; it stops there,
    after max_events events, or when the member sends nothing for the client's timeout (an error).
    """
    start_revision = max(start_revision, 2)  # revision 1 is the empty key space: no event
    if end_revision < start_revision:
        return
    body = {
        "create_request": {
            "key": b64(b"\x00"),
            "range_end": b64(b"\x00"),
            "start_revision": str(start_revision),
        }
    }
    resp, _sent, _received = client._send("/v3/watch", body)
    seen = 0
    try:
        if resp.status != 200:
            raise client._error_from_reply(
                "/v3/watch", resp.status, resp.getheader("Content-Type") or "", resp.read()
            )
        for line in _lines(resp, block=1 << 16):
            reply = json.loads(line)
            result = reply.get("result") or {}
            if "error" in reply or result.get("canceled"):
                reason = (
                    (reply.get("error") or {}).get("message") or result.get("cancel_reason") or "canceled"
                )
                compacted = int(result.get("compact_revision", 0) or 0)
                if compacted:
                    reason = f"revision {start_revision} was compacted (compact revision {compacted})"
                raise EtcdError(
                    f"Watch of the history of {client.endpoint} failed: {reason}", client.endpoint, "etcd"
                )
            last = 0
            for event in result.get("events") or []:
                kv = event.get("kv") or {}
                last = int(kv.get("mod_revision", 0))
                if last > end_revision:
                    return
                yield event.get("type", "PUT"), unb64(kv.get("key", "")), last, kv
                seen += 1
            if last >= end_revision:  # the events of one revision come in one reply
                return
            if seen >= max_events:
                raise EtcdError(
                    f"Watch of the history of {client.endpoint}: more than {max_events} events",
                    client.endpoint,
                    "etcd",
                )
        raise EtcdError(
            f"Watch of the history of {client.endpoint} ended before revision {end_revision}",
            client.endpoint,
            "protocol",
        )
    except (OSError, http.client.HTTPException) as exc:
        raise client._translate(exc) from None
    finally:
        client.close()  # the watch stream never ends by itself


def client_from_params(endpoint, params):
    """Build an EtcdClient from a module's params (the shared argument spec)."""
    return EtcdClient(
        endpoint,
        timeout=params.get("timeout") or 5.0,
        ca_file=params.get("ca_cert"),
        cert_file=params.get("client_cert"),
        key_file=params.get("client_key"),
        validate_certs=params.get("validate_certs", True),
    )


def free_ports(count):
    """Ports the kernel hands out for 127.0.0.1:0, all distinct (sockets held open until all chosen)."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def etcd_module(argument_spec, **kwargs):
    """The AnsibleModule of one of the lab's modules: check mode supported, and the connection options' rule
    (a client certificate needs its key) when its spec has them."""
    together = list(kwargs.pop("required_together", []))
    if "client_cert" in argument_spec:
        together += ETCD_COMMON_REQUIRED_TOGETHER
    return AnsibleModule(
        argument_spec=argument_spec, supports_check_mode=True, required_together=together or None, **kwargs
    )
