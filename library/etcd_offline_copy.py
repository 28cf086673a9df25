#!/usr/bin/python
# Copyright: etcd split-brain lab contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module etcd_offline_copy: serve a private copy of a data dir that no member runs on."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: etcd_offline_copy
short_description: Serve a private, read-only copy of an etcd data dir on loopback, or stop it
description:
  - A fork that was stopped before anyone exported it (an operator stopped it, or moved its data dir aside
    to start the member again with an empty one) still holds the writes it acknowledged, in its data dir.
    This module makes that history readable without touching the data dir, so that the usual tools
    (C(etcd_kv_diff) with C(history=true), C(etcd_reconcile operation=export)) can compare it with the
    authoritative cluster.
  - O(state=started) copies C(member/snap/db) of O(data_dir) into a directory of its own under
    O(work_dir), restores the copy into a one-member cluster (C(etcdutl snapshot restore) on etcd 3.5+,
    C(etcdctl snapshot restore) on 3.4, with C(--skip-hash-check)) whose peer and client URLs are free
    ports on 127.0.0.1, so it can never dial the real cluster, starts etcd on it and waits until it
    answers with a leader. The restore keeps the key space and its history (revisions); it makes new
    member and cluster ids. The data dir itself is only read.
  - A copy of the same database file (same size and modification time) that already runs is reused
    (C(changed=false)); a copy left by a run that was killed is stopped and made again.
  - O(state=stopped) stops the copy of O(data_dir) (or every copy under O(work_dir) when O(data_dir) is
    omitted) and removes its directory. Only this module's own directories and processes are touched.
version_added: "1.1.0"
options:
  data_dir:
    description:
      - The etcd data dir to serve (the directory holding C(member/)). Only read, never changed.
      - Required with O(state=started).
    type: path
  work_dir:
    description:
      - Directory under which each copy gets a directory of its own (named after O(data_dir)).
    type: path
    required: true
  bin_dir:
    description:
      - Directory holding C(etcd) and C(etcdutl) or C(etcdctl) (the version that wrote the data dir, or a
        newer one). Required with O(state=started).
    type: path
  state:
    description:
      - C(started) serves the copy; C(stopped) stops it and removes its directory.
    type: str
    choices: [started, stopped]
    default: started
  missing_ok:
    description:
      - When O(data_dir) holds no etcd database (a member that never started on it), report RV(empty)
        instead of failing.
    type: bool
    default: false
  start_timeout:
    description:
      - Seconds to wait for the copy to elect itself and answer.
    type: float
    default: 30
extends_documentation_fragment:
  - lab_module
attributes:
  check_mode:
    details: Reports what it would start or stop and does neither.
notes:
  - Runs where the data dir is (the controller on the local platform), as a user that can read it.
  - The copy's process names its directory on its command line, so the lab's teardown (which stops any
    process naming the state dir) stops a copy that a killed run left running.
  - Tested against etcd 3.4.23 and 3.5.1.
"""

EXAMPLES = r"""
- name: Backup | Serve a copy of the data dir of etcd-2, stopped before anyone exported it
  etcd_offline_copy:
    data_dir: /srv/lab/nodes/etcd-2/data
    work_dir: /srv/lab/recovery/offline
    bin_dir: /usr/bin
  register: offline_copy

- name: Backup | Compare it with the authoritative side, the fork's deletes included
  etcd_kv_diff:
    endpoints: [http://198.18.213.11:2379, "{{ offline_copy.url }}"]
    report_path: /srv/lab/recovery/offline/diff-etcd-2.json
    history: true

- name: Backup | Stop the copy
  etcd_offline_copy:
    data_dir: /srv/lab/nodes/etcd-2/data
    work_dir: /srv/lab/recovery/offline
    state: stopped
"""

RETURN = r"""
url:
  description: Client URL of the copy (C(state=started)), or null.
  returned: always
  type: str
  sample: http://127.0.0.1:41237
pid:
  description: Process id of the copy's etcd (C(state=started)), or null.
  returned: always
  type: int
empty:
  description: True when O(missing_ok) is set and O(data_dir) holds no etcd database (nothing started).
  returned: always
  type: bool
stopped:
  description: Directories of the copies stopped and removed (C(state=stopped)).
  returned: always
  type: list
  elements: str
"""

import hashlib
import json
import os
import shutil
import signal
import subprocess
import time

from ansible.module_utils.etcd_client import EtcdClient, etcd_module, free_ports
from ansible.module_utils.etcd_errors import EtcdError, exit_with_run

COPY_PREFIX = "copy-"


def db_path(data_dir):
    return os.path.join(data_dir, "member", "snap", "db")


def db_identity(db):
    st = os.stat(db)
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def copy_dir(work_dir, data_dir):
    tag = hashlib.sha256(os.path.abspath(data_dir).encode()).hexdigest()[:12]
    return os.path.join(work_dir, COPY_PREFIX + tag)


def read_state(directory):
    try:
        with open(os.path.join(directory, "state.json"), encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def running_pid(directory, state):
    """The copy's pid when that process is alive and is the etcd of this directory."""
    pid = (state or {}).get("pid")
    if not isinstance(pid, int):
        return None
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return pid if directory.encode() in f.read() else None
    except OSError:
        return None


def stop_copy(directory, timeout=10.0):
    pid = running_pid(directory, read_state(directory))
    if pid is not None:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while running_pid(directory, {"pid": pid}) and time.monotonic() < deadline:
            time.sleep(0.1)
        if running_pid(directory, {"pid": pid}):
            os.kill(pid, signal.SIGKILL)
    shutil.rmtree(directory, ignore_errors=True)


def restore_argv(bin_dir, db, data, peer):
    etcdutl = os.path.join(bin_dir, "etcdutl")
    tool = etcdutl if os.access(etcdutl, os.X_OK) else os.path.join(bin_dir, "etcdctl")
    return [
        tool,
        "snapshot",
        "restore",
        db,
        "--skip-hash-check",
        "--name",
        "offline",
        "--data-dir",
        data,
        "--initial-cluster",
        f"offline={peer}",
        "--initial-cluster-token",
        f"offline-{os.getpid()}-{time.monotonic_ns()}",
        "--initial-advertise-peer-urls",
        peer,
    ]


def wait_leader(url, proc, log_path, timeout):
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            with open(log_path, encoding="utf-8", errors="replace") as f:
                tail = f.read().strip().splitlines()[-1:]
            raise EtcdError(f"the copy's etcd exited: {tail[0] if tail else 'no log'}")
        try:
            with EtcdClient(url, timeout=2) as c:
                if c.status().data.get("leader", "0") != "0":
                    return
                last = "no leader yet"
        except EtcdError as exc:
            last = str(exc)
        time.sleep(0.2)
    raise EtcdError(f"the copy's etcd did not answer within {timeout:g} s: {last}")


def start_copy(data_dir, bin_dir, directory, timeout):
    db = db_path(data_dir)
    etcd = os.path.join(bin_dir, "etcd")
    if not os.access(etcd, os.X_OK):
        raise EtcdError(f"no etcd binary in bin_dir={bin_dir}")
    os.makedirs(directory)
    shutil.copyfile(db, os.path.join(directory, "db"))
    client_port, peer_port = free_ports(2)
    peer, url = f"http://127.0.0.1:{peer_port}", f"http://127.0.0.1:{client_port}"
    data = os.path.join(directory, "data")
    done = subprocess.run(
        restore_argv(bin_dir, os.path.join(directory, "db"), data, peer),
        capture_output=True,
        text=True,
        env=dict(os.environ, ETCDCTL_API="3"),
        check=False,
    )
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        raise EtcdError(f"restore of a copy of {db} failed: {lines[-1] if lines else 'no output'}")
    log_path = os.path.join(directory, "etcd.log")
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [
                etcd,
                "--name=offline",
                f"--data-dir={data}",
                f"--listen-client-urls={url}",
                f"--advertise-client-urls={url}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    state = {"pid": proc.pid, "url": url, "data_dir": data_dir, "db": db_identity(db)}
    with open(os.path.join(directory, "state.json"), "w", encoding="utf-8") as f:
        json.dump(state, f)
    wait_leader(url, proc, log_path, timeout)
    return state


def run(params, check_mode):
    work_dir, data_dir = params["work_dir"], params["data_dir"]
    result = {"changed": False, "url": None, "pid": None, "empty": False, "stopped": []}
    if params["state"] == "stopped":
        if data_dir:
            targets = [copy_dir(work_dir, data_dir)]
        else:
            names = os.listdir(work_dir) if os.path.isdir(work_dir) else []
            targets = [os.path.join(work_dir, n) for n in sorted(names) if n.startswith(COPY_PREFIX)]
        for directory in targets:
            if os.path.exists(directory):
                result["stopped"].append(directory)
                if not check_mode:
                    stop_copy(directory)
        result["changed"] = bool(result["stopped"])
        return result

    if not data_dir or not params["bin_dir"]:
        raise EtcdError("state=started needs data_dir and bin_dir")
    db = db_path(data_dir)
    if not os.path.isfile(db):
        if params["missing_ok"]:
            result["empty"] = True
            return result
        raise EtcdError(f"{data_dir} holds no etcd data ({db} is missing)")
    directory = copy_dir(work_dir, data_dir)
    state = read_state(directory)
    if state and running_pid(directory, state) and state.get("db") == db_identity(db):
        result.update(url=state["url"], pid=state["pid"])
        return result
    result["changed"] = True
    if check_mode:
        return result
    os.makedirs(work_dir, exist_ok=True)
    stop_copy(directory)  # a copy of another version of the db, or the remains of a killed run
    try:
        state = start_copy(data_dir, params["bin_dir"], directory, params["start_timeout"])
    except BaseException:
        stop_copy(directory)
        raise
    result.update(url=state["url"], pid=state["pid"])
    return result


def argument_spec():
    return {
        "data_dir": {"type": "path"},
        "work_dir": {"type": "path", "required": True},
        "bin_dir": {"type": "path"},
        "state": {"type": "str", "choices": ["started", "stopped"], "default": "started"},
        "missing_ok": {"type": "bool", "default": False},
        "start_timeout": {"type": "float", "default": 30.0},
    }


def main():
    module = etcd_module(argument_spec())
    exit_with_run(module, run, local_errors=(OSError,), local_prefix="Cannot copy the data dir")


if __name__ == "__main__":
    main()
