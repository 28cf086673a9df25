# Copyright: etcd split-brain lab contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The three calls the lab makes over etcd's gRPC API: KV.Range, Maintenance.HashKV, Maintenance.Snapshot.

The JSON gateway does not serve HashKV (404 on 3.4.23 and 3.5.1), and it re-encodes every snapshot chunk and
every key as base64 inside JSON, which makes snapshots three to four times slower than etcdctl. These calls
go through grpcio (HTTP/2, TLS, gRPC framing) with the protobuf messages generated from proto/etcd_rpc.proto
(module_utils/etcd_rpc_pb2.py, tools/gen_etcd_proto.py); each call is built from the proto's service
descriptor (method path, request and reply types, streaming or not), so no generated service stub is
needed. grpc is imported when the first call is made, not
when a module starts (grpc, protobuf and the stubs add about 35 ms to a module, 60 ms alone).

A gRPC error status (in the reply's trailers) becomes one EtcdError line naming the operation, the endpoint,
the status code and etcd's message, e.g. "HashKV over gRPC from http://127.0.0.1:2379 failed: OUT_OF_RANGE:
etcdserver: mvcc: required revision is a future revision".
"""

from __future__ import annotations

import hashlib
import queue
import threading

from ansible.module_utils.etcd_errors import EtcdError

SNAPSHOT_HASH_SIZE = 32  # etcd appends sha256(db) to the snapshot stream


def _read(path):
    if not path:
        return None
    with open(path, "rb") as handle:
        return handle.read()


class GrpcClient:
    """gRPC calls to the member of one EtcdClient over one channel (one HTTP/2 connection, made on the
    first call). Thread-safe: a walker may fetch its next page in a background thread.

    validate_certs=False cannot be honoured: grpcio always verifies the member's certificate and has no
    switch to skip it. Building a client for an https endpoint with validate_certs=False raises EtcdError
    (kind "tls") that says so; the snapshot and the diff then use the JSON gateway (transport auto), HashKV
    cannot (the gateway does not serve it) and fails with that message.
    """

    def __init__(self, client):
        try:
            import grpc
            import grpc.experimental
            from ansible.module_utils import etcd_rpc_pb2
        except ImportError as exc:  # a Python without requirements.txt: the gateway may still serve
            raise EtcdError(
                f"Cannot speak gRPC to {client.endpoint}: {exc} (grpcio and protobuf: requirements.txt)",
                client.endpoint,
                "grpc",
            ) from None

        self.grpc, self.pb = grpc, etcd_rpc_pb2
        self.endpoint = client.endpoint
        self.timeout = client.timeout
        host = f"[{client.host}]" if ":" in client.host else client.host
        target = f"{host}:{client.port}"
        options = [
            ("grpc.enable_http_proxy", 0),  # loopback and the lab's namespaces only, never a proxy
            ("grpc.max_receive_message_length", -1),  # a page of large values can pass 4 MiB
            # A snapshot stream has no deadline: a member that stops answering is found by keepalive pings
            # (etcd accepts one every 5 s at the most, --grpc-keepalive-min-time).
            ("grpc.keepalive_time_ms", 10_000),
            ("grpc.keepalive_timeout_ms", max(int(self.timeout * 1000), 1000)),
            ("grpc.http2.max_pings_without_data", 0),
            # The snapshot stream read in the calling thread, without grpc's channel thread handing each
            # message over: a quarter less CPU for a snapshot (grpc's documented experimental option).
            (grpc.experimental.ChannelOptions.SingleThreadedUnaryStream, 1),
        ]
        if client.scheme == "https":
            if not client.validate_certs:
                raise EtcdError(
                    f"Cannot speak gRPC to {self.endpoint} with validate_certs=false: gRPC always verifies "
                    "the member's certificate (give ca_cert and validate_certs=true)",
                    self.endpoint,
                    "tls",
                )
            try:
                credentials = grpc.ssl_channel_credentials(
                    root_certificates=_read(client.ca_file),
                    private_key=_read(client.key_file),
                    certificate_chain=_read(client.cert_file),
                )
            except OSError as exc:  # the files were checked when the EtcdClient was built; removed since?
                raise EtcdError(f"Cannot read a TLS file: {exc}", self.endpoint, "file") from None
            self.channel = grpc.secure_channel(target, credentials, options=options)
        else:
            self.channel = grpc.insecure_channel(target, options=options)
        self._range = self._call("KV", "Range")
        self._hashkv = self._call("Maintenance", "HashKV")
        self._snapshot = self._call("Maintenance", "Snapshot")

    def _call(self, service, name):
        """The channel's callable for one method of proto/etcd_rpc.proto, as a generated stub would make it:
        the path /etcdserverpb.<service>/<name>, the request's serializer, the reply's parser."""
        method = self.pb.DESCRIPTOR.services_by_name[service].methods_by_name[name]
        request = getattr(self.pb, method.input_type.name)
        reply = getattr(self.pb, method.output_type.name)
        factory = self.channel.unary_stream if method.server_streaming else self.channel.unary_unary
        return factory(
            f"/{method.containing_service.full_name}/{method.name}",
            request_serializer=request.SerializeToString,
            response_deserializer=reply.FromString,
        )

    def close(self):
        self.channel.close()

    def error(self, operation, exc):
        """The EtcdError of a failed call: the gRPC status code and etcd's message (details) on one line."""
        if isinstance(exc, self.grpc.RpcError) and hasattr(exc, "code"):
            code = exc.code()
            details = " ".join((exc.details() or "no details").split())
            name = code.name if code is not None else "UNKNOWN"
            return EtcdError(
                f"{operation} over gRPC from {self.endpoint} failed: {name}: {details}",
                self.endpoint,
                "grpc",
                name,
            )
        return EtcdError(
            f"{operation} over gRPC from {self.endpoint} failed: {exc.__class__.__name__}: {exc}",
            self.endpoint,
            "grpc",
        )

    def range(self, key, range_end=None, limit=0, revision=0, serializable=False):
        """One KV.Range call: the RangeResponse message (header.revision, kvs, more)."""
        request = self.pb.RangeRequest(
            key=key, range_end=range_end or b"", limit=limit, revision=revision, serializable=serializable
        )
        try:
            return self._range(request, timeout=self.timeout)
        except self.grpc.RpcError as exc:
            raise self.error("Range", exc) from None

    def hashkv(self, revision=0):
        """HashKV of the member's key space at `revision` (0: latest).

        Returns {"hash", "compact_revision" (-1: never compacted), "revision", "member_id" (hex)}. A
        revision compacted away or not yet written fails with etcd's OUT_OF_RANGE status.
        """
        try:
            reply = self._hashkv(self.pb.HashKVRequest(revision=revision), timeout=self.timeout)
        except self.grpc.RpcError as exc:
            raise self.error("HashKV", exc) from None
        member = reply.header.member_id
        return {
            "hash": reply.hash,
            "compact_revision": reply.compact_revision,
            "revision": reply.header.revision,
            "member_id": f"{member:x}" if member else None,
        }

    def snapshot(self, out, progress=None):
        """Stream the member's snapshot into the binary file object `out`; returns the bytes written (the
        database and its trailing sha256). Bytes may have been written when it raises EtcdError."""
        total = 0
        call = self._snapshot(self.pb.SnapshotRequest())
        try:
            for reply in call:
                chunk = reply.blob
                out.write(chunk)
                total += len(chunk)
                if progress:
                    progress(total)
        except self.grpc.RpcError as exc:
            raise self.error("Snapshot", exc) from None
        finally:
            call.cancel()  # a no-op after the end of the stream; stops it when `out` failed
        return total


class TailHashWriter:
    """Writes to `out` and hashes all but the last 32 bytes, to check etcd's trailing sha256.

    Writing and hashing run in a background thread (both release the GIL), so they overlap with
    reading the network. Chunks are handed to it a batch of at least `batch` bytes at a time (etcd sends
    32 KiB a message: one hand-over, one write and one hash update per MiB instead of 32 cost a snapshot
    about a fifth less time here). Call finish() (or intact(), which calls it) before using `out`; an
    error of the writer thread (a full disk) is raised there or on a later write().
    """

    def __init__(self, out, threaded=True, batch=1 << 20):
        self.out = out
        self.sha = hashlib.sha256()
        self.tail = b""
        self.error = None
        self.queue = None
        self.thread = None
        self.batch, self.pending, self.pending_size = batch, [], 0
        if threaded:
            self.queue = queue.Queue(maxsize=256)
            self.thread = threading.Thread(target=self._drain, daemon=True)
            self.thread.start()

    def _consume(self, data):
        self.out.write(data)
        buf = self.tail + data if len(data) < SNAPSHOT_HASH_SIZE else None
        if buf is None:  # the common case: no copy of the chunk
            if self.tail:
                self.sha.update(self.tail)
            self.sha.update(memoryview(data)[:-SNAPSHOT_HASH_SIZE])
            self.tail = bytes(data[-SNAPSHOT_HASH_SIZE:])
        else:
            if len(buf) > SNAPSHOT_HASH_SIZE:
                self.sha.update(buf[:-SNAPSHOT_HASH_SIZE])
                buf = buf[-SNAPSHOT_HASH_SIZE:]
            self.tail = buf

    def _drain(self):
        while True:
            data = self.queue.get()
            if data is None:
                return
            if self.error is None:
                try:
                    self._consume(data)
                except Exception as exc:  # reported by write()/finish() in the caller's thread
                    self.error = exc

    def write(self, data):
        if self.error is not None:
            raise self.error
        self.pending.append(data)
        self.pending_size += len(data)
        if self.pending_size >= self.batch:
            self._hand_over()

    def _hand_over(self):
        if not self.pending:
            return
        data = self.pending[0] if len(self.pending) == 1 else b"".join(self.pending)
        self.pending, self.pending_size = [], 0
        if self.queue is None:
            self._consume(data)
        else:
            self.queue.put(data)

    def finish(self):
        if self.error is None:
            self._hand_over()
        if self.thread is not None:
            self.queue.put(None)
            self.thread.join()
            self.thread = None
        if self.error is not None:
            raise self.error

    def intact(self):
        self.finish()
        return len(self.tail) == SNAPSHOT_HASH_SIZE and self.sha.digest() == self.tail

    def sha256(self):
        return self.tail.hex()
