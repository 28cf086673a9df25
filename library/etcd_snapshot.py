#!/usr/bin/python
# Copyright: etcd split-brain lab contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module etcd_snapshot: save, check and restore etcd v3 snapshots."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: etcd_snapshot
short_description: Save, check and restore etcd v3 snapshots safely
description:
  - O(operation=save) streams a snapshot from exactly one endpoint into O(path), over gRPC or
    through the v3 JSON gateway (C(/v3/maintenance/snapshot)), see O(transport). The file is
    written atomically (temporary file, fsync, rename, fsync of the directory) and holds what
    C(etcdctl snapshot save) writes, the database followed by the 32-byte sha256 that etcd
    appends to the stream; that hash is verified
    before the file is renamed into place. An existing valid file is kept (C(changed=false))
    unless O(force=true). A snapshot needs no leader, so every side of a split can be saved.
  - O(operation=status) checks a snapshot file. The trailing sha256 is verified (a truncated or
    corrupted file fails with a clear message); revision, total key count and hash come from
    C(etcdutl snapshot status -w json) (etcd 3.5+) or C(etcdctl snapshot status -w json)
    (etcd 3.4), whichever is found first in O(bin_dir) or on the PATH (etcdutl preferred).
  - O(operation=restore) restores a snapshot into O(data_dir) on the host where the module runs,
    with C(etcdutl snapshot restore) (3.5+) or C(etcdctl snapshot restore) (3.4). The snapshot is
    verified first. A non-empty data dir is refused unless O(move_aside=true), which renames it
    with a UTC timestamp suffix (it is never deleted). The restore writes into a temporary
    directory that is renamed into place, then records a marker file C(<data_dir>.restore.json)
    with the snapshot's sha256 and the restore arguments; a restore already done with the same
    snapshot and arguments is not redone.
  - A restore always creates a new logical cluster (new member and cluster ids); every member of
    the new cluster must be restored from the same snapshot with the same O(initial_cluster) and
    O(initial_cluster_token).
version_added: "1.0.0"
options:
  operation:
    description:
      - C(save) a snapshot from an endpoint, show the C(status) of a snapshot file, or C(restore)
        one into a data dir.
    type: str
    choices: [save, status, restore]
    required: true
  path:
    description:
      - The snapshot file (written by C(save), read by C(status) and C(restore)).
    type: path
    required: true
  endpoints:
    description:
      - For O(operation=save), exactly one client URL, C(http(s)://HOST:PORT).
    type: list
    elements: str
  force:
    description:
      - For O(operation=save), replace an existing file at O(path).
    type: bool
    default: false
  data_dir:
    description:
      - For O(operation=restore), the member's data dir (C(--data-dir)).
    type: path
  name:
    description:
      - For O(operation=restore), the member's name (C(--name)).
    type: str
  initial_cluster:
    description:
      - For O(operation=restore), the new cluster's C(--initial-cluster), C(name=peer_url,...).
    type: str
  initial_cluster_token:
    description:
      - For O(operation=restore), the new cluster's C(--initial-cluster-token).
    type: str
    default: etcd-cluster
  peer_urls:
    description:
      - For O(operation=restore), the member's C(--initial-advertise-peer-urls).
    type: list
    elements: str
  move_aside:
    description:
      - For O(operation=restore), rename a non-empty O(data_dir) to C(<data_dir>.moved-<UTC time>)
        instead of refusing. Nothing is ever deleted.
    type: bool
    default: false
  skip_hash_check:
    description:
      - Accept a snapshot without the trailing sha256 (a C(member/snap/db) file copied from a data
        dir). Such a file cannot be checked for corruption.
    type: bool
    default: false
  create_directory:
    description:
      - For O(operation=save), create the directory of O(path) (mode 0755) when it is missing, instead of
        failing.
    type: bool
    default: false
  metadata:
    description:
      - For O(operation=save), also write C(<path without .db>.json) beside the snapshot (mode 0644), this
        dict with the snapshot's C(revision), C(key_count), C(sha256) and C(size) added, so that whoever
        restores it later knows where it came from. Written again only when its content changes.
    type: dict
  transport:
    description:
      - How O(operation=save) streams the snapshot. C(grpc) speaks gRPC over HTTP/2 like etcdctl
        (a small built-in client, standard library only; three to four times faster than the gateway
        for large databases). C(gateway) uses the v3 JSON gateway (every chunk base64 in JSON).
        C(auto) tries gRPC and, if it fails for any reason, starts again through the gateway.
      - Either way the trailing sha256 is verified before the file is renamed into place.
    type: str
    choices: [auto, grpc, gateway]
    default: auto
  bin_dir:
    description:
      - Directory holding C(etcdutl) and/or C(etcdctl). When omitted, the PATH is searched.
    type: path
extends_documentation_fragment:
  - etcd_connection
  - lab_module
attributes:
  check_mode:
    details: Save and restore check the inputs and report what they would do without writing.
notes:
  - C(save) runs on the controller (or where delegated); C(restore) must run on the member's node.
  - The snapshot's revision is exact when etcdutl/etcdctl is available, or when the member's
    revision did not move during the save; otherwise RV(revision_exact) is false.
"""

EXAMPLES = r"""
- name: Recover | Save every side before touching anything
  etcd_snapshot:
    operation: save
    endpoints: ["{{ item.client_url }}"]
    path: "{{ lab_state_dir }}/snapshots/{{ item.name }}.db"
  loop: "{{ lab.members }}"

- name: Recover | Check a snapshot
  etcd_snapshot:
    operation: status
    path: /var/backups/etcd/etcd-0.db
    bin_dir: /usr/local/bin
  register: etcd_snap

- name: Recover | Restore into a fresh data dir, keeping the old one
  etcd_snapshot:
    operation: restore
    path: /var/backups/etcd/etcd-0.db
    data_dir: /var/lib/etcd
    move_aside: true
    name: etcd-0
    initial_cluster: etcd-0=http://10.0.0.1:2380
    initial_cluster_token: etcd-restored
    peer_urls: [http://10.0.0.1:2380]
"""

RETURN = r"""
path:
  description: The snapshot file.
  returned: always
  type: str
metadata_path:
  description: The metadata file written beside the snapshot.
  returned: with O(metadata), outside check mode
  type: str
  sample: /srv/lab/recovery/snapshot-etcd-0.json
size:
  description: File size in bytes (database plus the 32-byte hash).
  returned: always
  type: int
db_size:
  description: Size of the database part in bytes.
  returned: always
  type: int
sha256:
  description: The sha256 of the database that etcd appended to the snapshot (hex), verified.
  returned: always
  type: str
has_hash:
  description: Whether the file carries etcd's trailing sha256.
  returned: always
  type: bool
revision:
  description: Revision of the key space in the snapshot.
  returned: when known
  type: int
revision_exact:
  description: Whether RV(revision) is exactly the snapshot's (false when estimated from status calls).
  returned: for save
  type: bool
key_count:
  description: Number of live keys at the snapshot's revision (a count_only range on the endpoint).
  returned: for save, when the revision is still available on the member
  type: int
total_key:
  description: etcd's C(totalKey) from the snapshot status tool (every stored key revision).
  returned: when a status tool was found
  type: int
hash:
  description: etcd's own C(hash) (crc32 of the database content) from the status tool.
  returned: when a status tool was found
  type: int
tool:
  description: The tool used for status or restore (path), or null.
  returned: always
  type: str
transport:
  description: How the snapshot was streamed, C(grpc) or C(gateway).
  returned: for save, when a snapshot was taken
  type: str
endpoint:
  description: The endpoint saved from.
  returned: for save
  type: str
data_dir:
  description: The restored data dir.
  returned: for restore
  type: str
moved_to:
  description: Where the previous data dir was moved, or null.
  returned: for restore
  type: str
marker:
  description: Path of the restore marker file.
  returned: for restore
  type: str
"""

import datetime
import hashlib
import json
import os
import shutil
import tempfile

from ansible.module_utils.etcd_client import (
    ETCD_COMMON_ARGUMENT_SPEC,
    client_from_params,
    etcd_module,
    normalize_url,
    validate_endpoint,
)
from ansible.module_utils.etcd_errors import EtcdError, run_or_fail
from ansible.module_utils.etcd_grpc import SNAPSHOT_HASH_SIZE
from ansible.module_utils.lab_files import write_if_changed

BOLT_MAGIC = 0xED0CDAED
CHUNK = 1 << 20


def verify_snapshot_file(path, skip_hash_check=False, verified_sha256=None):
    """Check the file: bolt magic, size shape, trailing sha256. Returns facts; raises EtcdError.

    verified_sha256: the hash was already checked while the file was written (save): compare the
    stored hash with it instead of reading the whole file again.
    """
    try:
        size = os.path.getsize(path)
    except OSError as exc:
        raise EtcdError(f"Cannot read snapshot {path}: {exc.strerror}", kind="file") from None
    if size < 4096:
        raise EtcdError(f"Snapshot {path} is {size} bytes: too small to be an etcd database (truncated?)")
    rem = size % 512
    with open(path, "rb") as f:
        head = f.read(32)
        magic = int.from_bytes(head[16:20], "little")
        if magic != BOLT_MAGIC:
            raise EtcdError(f"Snapshot {path} is not an etcd (bbolt) database: bad magic at its start")
        if rem == SNAPSHOT_HASH_SIZE and verified_sha256:
            f.seek(size - SNAPSHOT_HASH_SIZE)
            stored = f.read(SNAPSHOT_HASH_SIZE)
            if stored.hex() != verified_sha256:
                raise EtcdError(f"Snapshot {path} does not end with the hash verified while it was written")
            return {
                "path": path,
                "size": size,
                "db_size": size - SNAPSHOT_HASH_SIZE,
                "sha256": stored.hex(),
                "has_hash": True,
            }
        if rem == SNAPSHOT_HASH_SIZE:
            db_size = size - SNAPSHOT_HASH_SIZE
            f.seek(0)
            h = hashlib.sha256()
            left = db_size
            while left:
                block = f.read(min(CHUNK, left))
                if not block:
                    break
                h.update(block)
                left -= len(block)
            stored = f.read(SNAPSHOT_HASH_SIZE)
            if h.digest() != stored:
                raise EtcdError(
                    f"Snapshot {path} is corrupted or truncated: the sha256 of its database "
                    f"({h.hexdigest()[:16]}...) does not match the hash stored at its end "
                    f"({stored.hex()[:16]}...)"
                )
            return {"path": path, "size": size, "db_size": db_size, "sha256": stored.hex(), "has_hash": True}
    if rem == 0:
        if not skip_hash_check:
            raise EtcdError(
                f"Snapshot {path} has no trailing sha256: it is truncated, or a member/snap/db copied "
                "from a data dir, which cannot be checked for corruption; set skip_hash_check=true "
                "to use such a copy"
            )
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(CHUNK), b""):
                h.update(block)
        return {"path": path, "size": size, "db_size": size, "sha256": h.hexdigest(), "has_hash": False}
    raise EtcdError(
        f"Snapshot {path} is truncated or corrupted: its size {size} is neither a whole database "
        "(multiple of 512) nor a database plus its 32-byte sha256"
    )


# ---- tools --------------------------------------------------------------------------------


def find_tool(bin_dir, which):
    """Return (kind, path) of etcdutl (preferred) or etcdctl, or (None, None)."""
    for kind in ("etcdutl", "etcdctl"):
        if bin_dir:
            candidate = os.path.join(bin_dir, kind)
            path = candidate if os.access(candidate, os.X_OK) else None
        else:
            path = which(kind)
        if path:
            return kind, path
    return None, None


def tool_env(kind):
    env = {"ETCDCTL_API": "3"} if kind == "etcdctl" else {}
    return env


def tool_status(runner, kind, tool, path):
    rc, out, err = runner([tool, "snapshot", "status", path, "-w", "json"], tool_env(kind))
    if rc != 0:
        raise EtcdError(f"{kind} snapshot status {path} failed: {(err or out).strip().splitlines()[-1:]}")
    try:
        data = json.loads(out.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise EtcdError(f"{kind} snapshot status printed no JSON: {out.strip()[:200]}") from None
    return {
        "revision": data.get("revision"),
        "total_key": data.get("totalKey"),
        "hash": data.get("hash"),
    }


# ---- operations ---------------------------------------------------------------------------


def _fsync_dir(directory):
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save(params, check_mode, runner, which):
    endpoints = params.get("endpoints") or []
    if len(endpoints) != 1:
        raise EtcdError(
            f"operation=save needs exactly one endpoint (got {len(endpoints)}): a snapshot comes from one "
            "member; loop over members to save each side"
        )
    endpoint = normalize_url(endpoints[0])
    validate_endpoint(endpoint)
    path = params["path"]
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory) and params.get("create_directory") and not check_mode:
        os.makedirs(directory, mode=0o755, exist_ok=True)
    if not os.path.isdir(directory) and not check_mode:
        raise EtcdError(f"Directory {directory} for the snapshot does not exist")
    if os.path.exists(path) and not params["force"]:
        try:
            facts = verify_snapshot_file(path)
        except EtcdError as exc:
            raise EtcdError(f"{exc}. Refusing to overwrite it without force=true") from None
        return {
            "changed": False,
            "endpoint": endpoint,
            "tool": None,
            "msg": "snapshot file exists; kept",
            **facts,
        }
    client = client_from_params(endpoint, params)
    with client:
        before = client.status().data
        rev_before = int(before.get("header", {}).get("revision", 0))
        if check_mode:
            return {
                "changed": True,
                "endpoint": endpoint,
                "path": path,
                "revision": rev_before,
                "revision_exact": False,
                "tool": None,
                "msg": "would save a snapshot",
            }
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".part", dir=directory)
        try:
            with os.fdopen(fd, "wb") as out:
                _written, used = client.snapshot(out, transport=params.get("transport") or "auto")
                out.flush()
                os.fsync(out.fileno())
            facts = verify_snapshot_file(tmp, verified_sha256=client.last_snapshot_sha256)
            if not facts["has_hash"]:
                raise EtcdError(f"etcd at {endpoint} sent a snapshot without its sha256")
            os.chmod(tmp, 0o600)
            os.replace(tmp, path)
            _fsync_dir(directory)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        facts["path"] = path
        after = client.status().data
        rev_after = int(after.get("header", {}).get("revision", 0))
        result = {"changed": True, "endpoint": endpoint, "tool": None, "transport": used, **facts}
        result["revision"] = rev_after
        result["revision_exact"] = rev_before == rev_after
        kind, tool = find_tool(params.get("bin_dir"), which)
        if tool:
            try:
                result.update(tool_status(runner, kind, tool, path))
                result["tool"] = tool
                result["revision_exact"] = True
            except EtcdError as exc:
                result["tool_error"] = str(exc)
        try:
            counted = client.range(
                b"\x00", b"\x00", revision=result["revision"], serializable=True, count_only=True
            ).data
            result["key_count"] = int(counted.get("count", 0))
        except EtcdError as exc:
            result["key_count"] = None
            result["key_count_error"] = str(exc)
    return result


def status(params, runner, which):
    facts = verify_snapshot_file(params["path"], params["skip_hash_check"])
    result = {"changed": False, "tool": None, **facts}
    kind, tool = find_tool(params.get("bin_dir"), which)
    if tool:
        result.update(tool_status(runner, kind, tool, params["path"]))
        result["tool"] = tool
    return result


def _dir_is_empty(path):
    return not os.listdir(path)


def restore(params, check_mode, runner, which):
    for key in ("data_dir", "name", "initial_cluster", "peer_urls"):
        if not params.get(key):
            raise EtcdError(f"operation=restore needs {key}")
    for url in params["peer_urls"]:
        try:
            validate_endpoint(url)
        except EtcdError as exc:
            raise EtcdError(str(exc).replace("Endpoint", "Peer URL")) from None
    if f"{params['name']}=" not in params["initial_cluster"]:
        raise EtcdError(
            f"initial_cluster '{params['initial_cluster']}' has no entry for member {params['name']}"
        )
    facts = verify_snapshot_file(params["path"], params["skip_hash_check"])
    data_dir = os.path.abspath(params["data_dir"]).rstrip("/")
    marker_path = data_dir + ".restore.json"
    wanted = {
        "sha256": facts["sha256"],
        "name": params["name"],
        "initial_cluster": params["initial_cluster"],
        "initial_cluster_token": params["initial_cluster_token"],
        "peer_urls": list(params["peer_urls"]),
    }
    result = {
        "changed": False,
        "data_dir": data_dir,
        "marker": marker_path,
        "moved_to": None,
        "tool": None,
        **facts,
    }
    db_file = os.path.join(data_dir, "member", "snap", "db")
    if os.path.exists(marker_path) and os.path.exists(db_file):
        try:
            with open(marker_path) as f:
                done = json.load(f)
        except (OSError, ValueError):
            done = {}
        if {k: done.get(k) for k in wanted} == wanted:
            result["msg"] = "already restored from this snapshot with these arguments"
            return result
    kind, tool = find_tool(params.get("bin_dir"), which)
    if not tool:
        where = params.get("bin_dir") or "the PATH"
        raise EtcdError(f"Neither etcdutl nor etcdctl found in {where}: cannot restore")
    result["tool"] = tool
    parent = os.path.dirname(data_dir)
    if not os.path.isdir(parent):
        raise EtcdError(f"Parent directory {parent} of data_dir does not exist")
    move = None
    if os.path.lexists(data_dir):
        if not os.path.isdir(data_dir):
            raise EtcdError(f"data_dir {data_dir} exists and is not a directory")
        if not _dir_is_empty(data_dir):
            if not params["move_aside"]:
                raise EtcdError(
                    f"data_dir {data_dir} is not empty: refusing to restore over it. Set move_aside=true to "
                    f"rename it to {data_dir}.moved-<UTC time> (it is never deleted)"
                )
            stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
            move = f"{data_dir}.moved-{stamp}"
            n = 1
            while os.path.lexists(move):
                n += 1
                move = f"{data_dir}.moved-{stamp}-{n}"
    result["changed"] = True
    result["moved_to"] = move
    if check_mode:
        result["msg"] = "would restore" + (f" after moving {data_dir} to {move}" if move else "")
        return result
    staging = tempfile.mkdtemp(prefix=os.path.basename(data_dir) + ".restoring-", dir=parent)
    os.rmdir(staging)  # the tools insist on creating the data dir themselves
    argv = [
        tool,
        "snapshot",
        "restore",
        params["path"],
        "--name",
        params["name"],
        "--data-dir",
        staging,
        "--initial-cluster",
        params["initial_cluster"],
        "--initial-cluster-token",
        params["initial_cluster_token"],
        "--initial-advertise-peer-urls",
        ",".join(params["peer_urls"]),
    ]
    if params["skip_hash_check"]:
        argv.append("--skip-hash-check")
    rc, out, err = runner(argv, tool_env(kind))
    if rc != 0:
        shutil.rmtree(staging, ignore_errors=True)  # only our own half-written staging dir
        lines = (err or out).strip().splitlines()
        raise EtcdError(f"{kind} snapshot restore failed (rc={rc}): {lines[-1] if lines else 'no output'}")
    if move:
        os.rename(data_dir, move)
    elif os.path.isdir(data_dir):
        os.rmdir(data_dir)  # empty
    os.rename(staging, data_dir)
    os.chmod(data_dir, 0o700)
    fd, tmp = tempfile.mkstemp(prefix=".restore-marker.", dir=parent)
    with os.fdopen(fd, "w") as f:
        json.dump(
            {
                **wanted,
                "snapshot": params["path"],
                "moved_to": move,
                "restored_at": datetime.datetime.now(datetime.UTC).isoformat(),
            },
            f,
            indent=1,
        )
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, marker_path)
    _fsync_dir(parent)
    result["msg"] = "restored"
    return result


def argument_spec():
    spec = {
        "operation": {"type": "str", "required": True, "choices": ["save", "status", "restore"]},
        "path": {"type": "path", "required": True},
        "endpoints": {"type": "list", "elements": "str"},
        "force": {"type": "bool", "default": False},
        "data_dir": {"type": "path"},
        "name": {"type": "str"},
        "initial_cluster": {"type": "str"},
        "initial_cluster_token": {"type": "str", "default": "etcd-cluster"},
        "peer_urls": {"type": "list", "elements": "str"},
        "move_aside": {"type": "bool", "default": False},
        "skip_hash_check": {"type": "bool", "default": False},
        "bin_dir": {"type": "path"},
        "transport": {"type": "str", "default": "auto", "choices": ["auto", "grpc", "gateway"]},
        "create_directory": {"type": "bool", "default": False},
        "metadata": {"type": "dict"},
    }
    spec.update(ETCD_COMMON_ARGUMENT_SPEC)
    return spec


def metadata_path(path):
    """Where the metadata of the snapshot at path goes: the same name with .json instead of .db."""
    root, ext = os.path.splitext(path)
    return (root if ext == ".db" else path) + ".json"


def write_metadata(path, metadata, result):
    """Write the snapshot's metadata file (see the metadata option); True when its content changed."""
    facts = {k: result.get(k) for k in ("revision", "key_count", "sha256", "size")}
    text = json.dumps({**metadata, **facts}, indent=4, sort_keys=True) + "\n"
    return write_if_changed(metadata_path(path), text)


def run(params, check_mode, runner, which):
    op = params["operation"]
    if op == "save":
        result = save(params, check_mode, runner, which)
        if params.get("metadata") is not None and not check_mode:
            wrote = write_metadata(params["path"], params["metadata"], result)
            result["metadata_path"] = metadata_path(params["path"])
            result["changed"] = result["changed"] or wrote
        return result
    if op == "status":
        return status(params, runner, which)
    return restore(params, check_mode, runner, which)


def main():
    module = etcd_module(
        argument_spec(),
        required_if=[
            ("operation", "save", ["endpoints"]),
            ("operation", "restore", ["data_dir", "name", "initial_cluster", "peer_urls"]),
        ],
    )

    def runner(argv, env):
        return module.run_command(argv, environ_update=env)

    def which(name):
        return module.get_bin_path(name)

    result = run_or_fail(
        module,
        lambda: run(module.params, module.check_mode, runner, which),
        local_errors=(OSError,),
        local_prefix="File system error",
    )
    module.exit_json(**result)


if __name__ == "__main__":
    main()
