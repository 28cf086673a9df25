# Copyright: etcd split-brain lab contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One client for etcd's v3 JSON gateway (grpc-gateway), shared by the etcd_* modules.

Standard library only (http.client, ssl, concurrent.futures) for the gateway; the three calls that speak
gRPC (HashKV, the snapshot stream, the diff's key ranges) are in etcd_grpc.py, which imports grpcio only
when one of them is made. Every failure is raised as EtcdError (etcd_errors.py) whose message names the
endpoint and the cause, so a module can hand it to fail_json unchanged.

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

import base64
import binascii
import datetime
import email.utils
import http.client
import json
import os
import socket
import ssl
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

from ansible.module_utils.basic import AnsibleModule, env_fallback
from ansible.module_utils.etcd_errors import EtcdError, exit_with, run_or_fail  # noqa: F401 (re-exported)

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


def id_to_hex(value):
    """Format an etcd id (decimal string or int) as `etcdctl --hex` prints it: '%x'."""
    if value in (None, "", "0", 0):
        return None
    return f"{int(value):x}"


def hex_to_id(value):
    """Parse a hex member id as printed by etcdctl (with or without 0x) to an int."""
    text = str(value).strip().lower()
    if text.startswith("0x"):
        text = text[2:]
    try:
        number = int(text, 16)
    except ValueError:
        raise EtcdError(f"Member id '{value}' is not a hexadecimal etcd id", kind="url") from None
    if number <= 0 or number >= 2**64:
        raise EtcdError(f"Member id '{value}' is out of range for an etcd id", kind="url")
    return number


def b64(data):
    if isinstance(data, str):
        data = data.encode("utf-8")
    return base64.b64encode(data).decode("ascii")


def unb64(text):
    if not text:
        return b""
    return base64.b64decode(text)


def prefix_range_end(prefix):
    """range_end for every key starting with prefix (bytes), as etcdctl --prefix computes it."""
    end = bytearray(prefix)
    for i in range(len(end) - 1, -1, -1):
        if end[i] < 0xFF:
            end[i] += 1
            return bytes(end[: i + 1])
    return b"\x00"  # all keys


def decode_value(data):
    """Return (text, is_base64): UTF-8 text when the bytes are valid UTF-8, else base64."""
    try:
        return data.decode("utf-8"), False
    except UnicodeDecodeError:
        return base64.b64encode(data).decode("ascii"), True


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
    """A URL as etcd compares it in member lists: no surrounding blanks, no trailing slash, lower case."""
    return url.strip().rstrip("/").lower()


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
        self.endpoint = endpoint.strip().rstrip("/") if isinstance(endpoint, str) else endpoint
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
        Importing grpc costs about 60-120 ms, so only the operations that speak gRPC pay it."""
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


def kv_value(kv):
    """The value bytes of a KeyValue message (gRPC) or a gateway kv dict."""
    if isinstance(kv, dict):
        return unb64(kv.get("value", ""))
    return kv.value


def parse_kv(kv):
    """A KeyValue message (gRPC, etcd_rpc_pb2) or a gateway kv dict -> dict of key/value bytes and ints."""
    if isinstance(kv, dict):
        return {
            "key": unb64(kv.get("key", "")),
            "value": unb64(kv.get("value", "")),
            "create_revision": int(kv.get("create_revision", 0)),
            "mod_revision": int(kv.get("mod_revision", 0)),
            "version": int(kv.get("version", 0)),
            "lease": int(kv.get("lease", 0)),
        }
    return {
        "key": kv.key,
        "value": kv.value,
        "create_revision": kv.create_revision,
        "mod_revision": kv.mod_revision,
        "version": kv.version,
        "lease": kv.lease,
    }


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


def probe_member(endpoint, params, members=True, alarms=False):
    """One member's status and, on request, its member list and alarms, over one client; never raises.

    The one way the modules ask a member about itself (etcd_endpoint_status, etcd_consistency, etcd_member,
    etcd_force_guard). Returns a dict: endpoint; status (the raw /v3/maintenance/status reply, or None when
    the member did not answer); clock_offset (from the reply's Date header); members (the raw member list
    reply, or None); alarms (the raw alarm list reply, or None); error (why the status or the member list
    failed, or None); alarms_error. Alarms are asked only of a member that follows a leader: an alarm GET
    goes through Raft, and on a member without a leader it hangs until the timeout.
    """
    out = {
        "endpoint": endpoint,
        "status": None,
        "clock_offset": None,
        "members": None,
        "alarms": None,
        "error": None,
        "alarms_error": None,
    }
    try:
        with client_from_params(endpoint, params) as client:
            reply = client.status()
            out["status"], out["clock_offset"] = reply.data, reply.clock_offset
            if members:
                try:
                    out["members"] = client.member_list().data
                except EtcdError as exc:
                    out["error"] = f"member list failed: {exc}"
            if alarms and out["status"].get("leader", "0") not in ("0", 0, None):
                try:
                    out["alarms"] = client.alarms().data
                except EtcdError as exc:
                    out["alarms_error"] = str(exc)
    except EtcdError as exc:
        out["error"] = str(exc)
    return out


def parallel_map(func, items, max_workers=16):
    """Run func over items in threads, keeping order. func must not raise (catch inside)."""
    items = list(items)
    if not items:
        return []
    with ThreadPoolExecutor(max_workers=min(max_workers, len(items))) as pool:
        return list(pool.map(func, items))


def parse_member(member):
    """Normalise one member object of /v3/cluster/member/list."""
    return {
        "id": id_to_hex(member.get("ID")),
        "name": member.get("name", ""),
        "peer_urls": list(member.get("peerURLs") or []),
        "client_urls": list(member.get("clientURLs") or []),
        "is_learner": bool(member.get("isLearner", False)),
        "started": bool(member.get("name")) or bool(member.get("clientURLs")),
    }


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


def quorum(voters):
    return voters // 2 + 1


def etcd_module(argument_spec, **kwargs):
    """The AnsibleModule of one of the lab's modules: check mode supported, and the connection options' rule
    (a client certificate needs its key) when its spec has them."""
    together = list(kwargs.pop("required_together", []))
    if "client_cert" in argument_spec:
        together += ETCD_COMMON_REQUIRED_TOGETHER
    return AnsibleModule(
        argument_spec=argument_spec, supports_check_mode=True, required_together=together or None, **kwargs
    )


def fixed_revision(revisions):
    """The revision at which members' key spaces can be compared while writers keep writing.

    `revisions` maps a member's name to its current revision (the header revision of a status reply).
    Revisions only grow and a member's current revision is one it has applied, so the lowest of them is
    a revision every member has applied, however far the others have moved on since: HashKV at it is
    comparable on every member (etcd's own corruption check also hashes at one revision). Raises
    ValueError for no members or a revision below 1.
    """
    if not revisions:
        raise ValueError("no member revision to choose from")
    values = {name: int(rev) for name, rev in revisions.items()}
    low = min(values.values())
    if low < 1:
        raise ValueError(
            f"a member reports revision {low}: " + ", ".join(f"{n}={r}" for n, r in sorted(values.items()))
        )
    return low


def hashkv_at(params, endpoints, revision):
    """HashKV of each member at one `revision`: {name: reply}, with endpoints as {name: client URL}.

    A reply is the dict of EtcdClient.hashkv, or {"error": message, "compact_revision": C or None,
    "current_revision": N or None} when the call failed; C and N come from a second HashKV at the
    member's latest revision, so that a revision compacted away on that member (R <= C) or not yet
    applied (R > N) can be named. Never raises EtcdError.
    """

    def one(item):
        _name, endpoint = item
        try:
            with client_from_params(endpoint, params) as client:
                return client.hashkv(revision)
        except EtcdError as exc:
            failed = {"error": str(exc), "compact_revision": None, "current_revision": None}
        try:
            with client_from_params(endpoint, params) as client:
                latest = client.hashkv(0)
            failed.update(compact_revision=latest["compact_revision"], current_revision=latest["revision"])
        except EtcdError:
            pass
        return failed

    items = sorted(endpoints.items())
    return dict(zip((n for n, _e in items), parallel_map(one, items), strict=True))


def compare_hashkv(revision, replies):
    """Judge HashKV replies taken at one revision: (verdict, detail).

    verdict is "equal" (every member hashes the same with the same compact revision), "differ" (same
    compact revision, different hashes: different data at `revision`, a real inconsistency),
    "compacted" (`revision` is at or below a member's compaction, so there is nothing to compare at it;
    a later revision may do once the lagging member has caught up), or "retry" (a member failed for
    another reason, or the compact revisions differ, which happens while a compaction is being applied:
    the hashes cover different ranges and are not comparable yet).
    """
    failed = {n: r for n, r in replies.items() if "error" in r}
    compacted = {
        n: r
        for n, r in failed.items()
        if r.get("compact_revision") is not None and revision <= r["compact_revision"]
    }
    if compacted:
        return "compacted", f"revision {revision} is compacted on " + ", ".join(
            f"{n} (compact revision {r['compact_revision']})" for n, r in sorted(compacted.items())
        ) + ": HashKV cannot be compared there"
    if failed:
        return "retry", f"HashKV at revision {revision} failed on " + "; ".join(
            f"{n}: {r['error']}"
            + (f" (its revision {r['current_revision']})" if r.get("current_revision") is not None else "")
            for n, r in sorted(failed.items())
        )
    compacts = {n: r["compact_revision"] for n, r in replies.items()}
    if len(set(compacts.values())) > 1:
        return "retry", f"at revision {revision} the compact revisions differ (" + ", ".join(
            f"{n}={c}" for n, c in sorted(compacts.items())
        ) + "): the hashes cover different ranges"
    hashes = {n: r["hash"] for n, r in replies.items()}
    compact = next(iter(compacts.values()), -1)
    compact = f"compact revision {compact}" if compact > 0 else "never compacted"
    if len(set(hashes.values())) == 1:
        return "equal", (
            f"revision {revision} ({compact}): all {len(hashes)} members hash {next(iter(hashes.values()))}"
        )
    groups = {}
    for n, h in sorted(hashes.items()):
        groups.setdefault(h, []).append(n)
    return "differ", f"revision {revision} ({compact}): hashes differ: " + "; ".join(
        f"{', '.join(ns)}={h}" for h, ns in groups.items()
    )
