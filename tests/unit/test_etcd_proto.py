"""The committed messages (module_utils/etcd_rpc_pb2.py) are what tools/gen_etcd_proto.py makes of
proto/etcd_rpc.proto, and etcd_grpc builds etcd's method calls from its service descriptors."""

from __future__ import annotations

from pathlib import Path

import gen_etcd_proto
import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_committed_stubs_are_what_the_proto_generates():
    generated = gen_etcd_proto.generate()
    assert sorted(generated) == ["etcd_rpc_pb2.py"]
    for name, text in generated.items():
        assert (ROOT / "module_utils" / name).read_text() == text, "regenerate with tools/gen_etcd_proto.py"


class _Channel:
    """Records what a call is built from, as grpc's channel would take it."""

    def unary_unary(self, path, request_serializer, response_deserializer):
        return ("unary_unary", path, request_serializer, response_deserializer)

    def unary_stream(self, path, request_serializer, response_deserializer):
        return ("unary_stream", path, request_serializer, response_deserializer)


@pytest.mark.parametrize(
    ("service", "name", "kind", "request_type", "reply_type"),
    [
        ("KV", "Range", "unary_unary", "RangeRequest", "RangeResponse"),
        ("Maintenance", "HashKV", "unary_unary", "HashKVRequest", "HashKVResponse"),
        ("Maintenance", "Snapshot", "unary_stream", "SnapshotRequest", "SnapshotResponse"),
    ],
)
def test_calls_are_built_from_the_service_descriptors(service, name, kind, request_type, reply_type):
    """etcd serves /etcdserverpb.KV/Range etc.; the snapshot is a server stream."""
    from ansible.module_utils import etcd_grpc, etcd_rpc_pb2

    client = etcd_grpc.GrpcClient.__new__(etcd_grpc.GrpcClient)
    client.pb, client.channel = etcd_rpc_pb2, _Channel()
    built_kind, path, serialize, parse = client._call(service, name)
    assert (built_kind, path) == (kind, f"/etcdserverpb.{service}/{name}")
    request = getattr(etcd_rpc_pb2, request_type)()
    assert serialize(request) == request.SerializeToString()  # another message type's serializer raises
    reply = getattr(etcd_rpc_pb2, reply_type)
    assert type(parse(reply().SerializeToString())) is reply


def test_the_stubs_call_etcds_methods():
    from ansible.module_utils import etcd_rpc_pb2

    services = etcd_rpc_pb2.DESCRIPTOR.services_by_name
    assert [m.full_name for m in services["KV"].methods] == ["etcdserverpb.KV.Range"]
    assert [m.full_name for m in services["Maintenance"].methods] == [
        "etcdserverpb.Maintenance.HashKV",
        "etcdserverpb.Maintenance.Snapshot",
    ]


def test_modules_start_without_grpc():
    """grpc and protobuf add about 35 ms to a module's start: it imports them on its first gRPC call only."""
    import subprocess
    import sys

    modules = sorted(p.stem for p in (ROOT / "library").glob("etcd_*.py"))
    code = (
        f"import sys; sys.path.insert(0, {str(ROOT / 'tools')!r})\n"
        "from lab_imports import lab_module\n"
        f"for name in {modules!r}: lab_module(name)\n"
        "print(sorted(m for m in ('grpc', 'google.protobuf') if m in sys.modules))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert len(modules) >= 8 and proc.stdout.strip() == "[]"
