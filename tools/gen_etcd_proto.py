#!/usr/bin/env python3
"""Generate module_utils/etcd_rpc_pb2.py and etcd_rpc_pb2_grpc.py from proto/etcd_rpc.proto.

    .venv/bin/python tools/gen_etcd_proto.py           # write the two files
    .venv/bin/python tools/gen_etcd_proto.py --check   # exit 1 when the committed files differ

Needs grpcio-tools (requirements-dev.txt), whose protoc decides the protobuf runtime the generated code asks
for (its ValidateProtobufRuntimeVersion line): requirements.txt pins a protobuf of that major version. The
generated files are committed, so the lab itself needs only grpcio and protobuf.

One edit is made to protoc's output: the service stubs import their messages as a top-level module
(`import etcd_rpc_pb2`), which neither Ansible's module packer (AnsiballZ) nor a module run from it can
resolve; they import it as `from ansible.module_utils import etcd_rpc_pb2`, as every module_utils file does.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO = ROOT / "proto" / "etcd_rpc.proto"
OUT = ROOT / "module_utils"
NAMES = ("etcd_rpc_pb2.py", "etcd_rpc_pb2_grpc.py")
TOP_LEVEL_IMPORT = "import etcd_rpc_pb2 as etcd__rpc__pb2\n"
ANSIBLE_IMPORT = "from ansible.module_utils import etcd_rpc_pb2 as etcd__rpc__pb2\n"


def generate() -> dict[str, str]:
    """{file name: text} of the generated files, the import already rewritten."""
    from grpc_tools import protoc

    with tempfile.TemporaryDirectory(prefix="etcd-proto-") as tmp:
        code = protoc.main(
            [
                "grpc_tools.protoc",
                f"-I{PROTO.parent}",
                f"--python_out={tmp}",
                f"--grpc_python_out={tmp}",
                str(PROTO),
            ]
        )
        if code != 0:
            raise SystemExit(f"protoc failed on {PROTO} (exit {code})")
        texts = {name: (Path(tmp) / name).read_text() for name in NAMES}
    grpc_text = texts["etcd_rpc_pb2_grpc.py"]
    if TOP_LEVEL_IMPORT not in grpc_text:
        raise SystemExit(f"protoc's etcd_rpc_pb2_grpc.py no longer has the line {TOP_LEVEL_IMPORT.strip()!r}")
    texts["etcd_rpc_pb2_grpc.py"] = grpc_text.replace(TOP_LEVEL_IMPORT, ANSIBLE_IMPORT)
    return texts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--check", action="store_true", help="compare with the committed files, write nothing"
    )
    args = parser.parse_args(argv)
    texts = generate()
    if args.check:
        stale = [name for name, text in texts.items() if (OUT / name).read_text() != text]
        for name in stale:
            print(
                f"module_utils/{name} differs from what {PROTO.relative_to(ROOT)} generates", file=sys.stderr
            )
        return 1 if stale else 0
    for name, text in texts.items():
        (OUT / name).write_text(text)
        print(f"wrote module_utils/{name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
