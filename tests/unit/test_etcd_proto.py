"""The committed gRPC stubs (module_utils/etcd_rpc_pb2*.py) are what tools/gen_etcd_proto.py makes of
proto/etcd_rpc.proto, and they import under Ansible's names only."""

from __future__ import annotations

from pathlib import Path

import gen_etcd_proto

ROOT = Path(__file__).resolve().parents[2]


def test_committed_stubs_are_what_the_proto_generates():
    generated = gen_etcd_proto.generate()
    assert sorted(generated) == ["etcd_rpc_pb2.py", "etcd_rpc_pb2_grpc.py"]
    for name, text in generated.items():
        assert (ROOT / "module_utils" / name).read_text() == text, "regenerate with tools/gen_etcd_proto.py"


def test_the_service_stubs_import_the_messages_as_ansible_resolves_them():
    """AnsiballZ packs module_utils by their `ansible.module_utils` imports: a top-level `import etcd_rpc_pb2`
    would be missing from a module's zip."""
    text = (ROOT / "module_utils" / "etcd_rpc_pb2_grpc.py").read_text()
    assert "from ansible.module_utils import etcd_rpc_pb2 as etcd__rpc__pb2\n" in text
    assert "\nimport etcd_rpc_pb2" not in text


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
