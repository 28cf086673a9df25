# Copyright: etcd split-brain lab contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""etcd's data as the modules show it: ids in hex as etcdctl prints them, base64 keys and values of the JSON
gateway, key ranges, and key-values and members as plain dicts (from gateway replies or gRPC messages)."""

from __future__ import annotations

import base64

from ansible.module_utils.etcd_errors import EtcdError


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
