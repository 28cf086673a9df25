#!/usr/bin/env python3
"""Generate module_utils/etcd_rpc_pb2.py (the messages and services of proto/etcd_rpc.proto).

    .venv/bin/python tools/gen_etcd_proto.py           # write the file
    .venv/bin/python tools/gen_etcd_proto.py --check   # exit 1 when the committed file differs

Needs grpcio-tools (requirements-dev.txt), whose protoc decides the protobuf runtime the generated code asks
for (its ValidateProtobufRuntimeVersion line): requirements.txt pins a protobuf of that major version. The
generated file is committed, so the lab itself needs only grpcio and protobuf.

No service stubs are generated (protoc's --grpc_python_out): module_utils/etcd_grpc.py builds its three calls
from the services' descriptors in etcd_rpc_pb2, which also spares the stubs' top-level `import etcd_rpc_pb2`
that Ansible's module packer (AnsiballZ) could not resolve.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO = ROOT / "proto" / "etcd_rpc.proto"
OUT = ROOT / "module_utils"
NAMES = ("etcd_rpc_pb2.py",)


def generate() -> dict[str, str]:
    """{file name: text} of the generated file."""
    from grpc_tools import protoc

    with tempfile.TemporaryDirectory(prefix="etcd-proto-") as tmp:
        code = protoc.main(
            [
                "grpc_tools.protoc",
                f"-I{PROTO.parent}",
                f"--python_out={tmp}",
                str(PROTO),
            ]
        )
        if code != 0:
            raise SystemExit(f"protoc failed on {PROTO} (exit {code})")
        return {name: (Path(tmp) / name).read_text() for name in NAMES}


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
