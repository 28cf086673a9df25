#!/usr/bin/python
"""Ansible module lab_clock_skew: shift the wall clock (CLOCK_REALTIME) of one running Go process (etcd)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: lab_clock_skew
short_description: Shift the wall clock of one running etcd (Go) process by patching its vDSO
description:
  - Makes C(clock_gettime(CLOCK_REALTIME)) and C(CLOCK_REALTIME_COARSE) in one running process return the
    real time plus O(offset) seconds. Other processes, the host clock and the process's monotonic clock
    (Raft ticks, election and lease timers) are not touched.
  - Works like Chaos Mesh's TimeChaos. It attaches to every thread with ptrace, maps one page in the
    target, writes a replacement C(clock_gettime) there, and patches the vDSO entry with a jump to it.
    O(state=absent) writes the original bytes back.
  - Covers Go programs on x86_64, which read the clock through the vDSO (etcd, static or cgo builds).
    C(gettimeofday), C(time) and direct system calls are not shifted.
  - Idempotent. The offset is read back from the target, so the task reports a change only when the
    offset in the process differs. Applying a new offset over an existing one only rewrites the offset.
  - The change lasts as long as the process does. A restarted process runs on the real clock until the
    offset is applied again.
  - Needs root (ptrace and C(/proc/PID/mem) of another process) on the host that runs the process.
version_added: "1.0.0"
options:
  pid:
    description: Pid of the target process. Exactly one of O(pid) and O(pidfile) is required.
    type: int
  pidfile:
    description:
      - File that holds the pid of the target process.
      - With O(state=absent), a missing pid file, or one whose process is gone or has another name, means
        there is nothing to undo (no change, no error).
    type: path
  offset:
    description:
      - Seconds to add to the wall clock. Can be negative or fractional (nanosecond precision).
      - With O(state=present), C(0) keeps the hook installed but with no offset. Use O(state=absent) to
        remove the hook.
    type: float
    default: 0
  state:
    description: V(present) applies O(offset). V(absent) restores the original C(clock_gettime).
    type: str
    choices: [present, absent]
    default: present
  record:
    description:
      - A file that keeps the offset for restarts and C(./lab exec) (a plain number of seconds, C(90),
        C(-2.5)). O(state=present) writes O(offset) there, O(state=absent) removes it; a change to it counts
        as a change of the task.
    type: path
  reapply:
    description:
      - Take the offset from O(record) (a restarted process, whose offset was lost with it). Without a
        record there is nothing to do (no change, no error).
    type: bool
    default: false
  expect_comm:
    description:
      - Process name (C(/proc/PID/comm)) the target must have. This guards against a stale pid file whose
        pid now belongs to another program.
      - Set to an empty string to skip the check. The target must still be a Go program.
    type: str
    default: etcd
extends_documentation_fragment:
  - lab_module
attributes:
  check_mode:
    details: Reads the current offset from the target and reports what would change, without attaching.
notes:
  - x86_64 only. Other architectures fail with a clear message.
  - To give short-lived tools on the same node (C(date)) the same offset, use libfaketime. The lab's
    C(./lab exec) reads the offset that the C(fault_clock_skew) role records.
seealso:
  - name: Chaos Mesh TimeChaos
    description: The technique this module re-implements.
    link: https://chaos-mesh.org/docs/simulate-time-chaos-on-kubernetes/
"""

EXAMPLES = r"""
- name: Clock skew | Run etcd-0 90 seconds ahead, and keep the offset for restarts
  lab_clock_skew:
    pidfile: "{{ lab_state_dir }}/nodes/etcd-0/etcd.pid"
    offset: 90
    record: "{{ lab_state_dir }}/nodes/etcd-0/clock_offset"

- name: Clock skew | Skew the restarted etcd-0 again, if an offset is recorded
  lab_clock_skew:
    pidfile: "{{ lab_state_dir }}/nodes/etcd-0/etcd.pid"
    record: "{{ lab_state_dir }}/nodes/etcd-0/clock_offset"
    reapply: true

- name: Clock skew | Run etcd-0 90 seconds ahead
  lab_clock_skew:
    pidfile: "{{ lab_state_dir }}/nodes/etcd-0/etcd.pid"
    offset: 90

- name: Clock skew | Run a process 2.5 seconds behind, whatever its name
  lab_clock_skew:
    pid: 4242
    offset: -2.5
    expect_comm: ""

- name: Clock skew | Put etcd-0 back on the real clock
  lab_clock_skew:
    pidfile: "{{ lab_state_dir }}/nodes/etcd-0/etcd.pid"
    state: absent
"""

RETURN = r"""
pid:
  description: Pid of the target process. Null with O(state=absent) when the pid file names no live process.
  returned: always
  type: int
  sample: 4242
offset:
  description: Offset in seconds that is active after the task. Null when the hook is absent.
  returned: always
  type: float
  sample: 90.0
previous_offset:
  description: Offset in seconds that was active before the task. Null when the process was not skewed.
  returned: always
  type: float
  sample: null
action:
  description:
    - What was done, or what would be done in check mode.
    - V(hook) installs a new hook. V(delta) rewrites the offset of an existing hook. V(restore) writes the
      original bytes back. V(none) changes nothing.
  returned: always
  type: str
  sample: hook
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.lab_files import write_if_changed
from ansible.module_utils.vdso_clock import ClockSkewError, apply, undo


def read_pidfile(path: str) -> int:
    """Pid from a pid file; raises ClockSkewError with a one-line message."""
    try:
        with open(path) as f:
            text = f.read().strip()
    except FileNotFoundError:
        raise ClockSkewError(f"pid file {path} does not exist (is the process running?)") from None
    except OSError as e:
        raise ClockSkewError(f"cannot read pid file {path}: {e.strerror}") from None
    try:
        pid = int(text.split()[0])
    except (ValueError, IndexError):
        raise ClockSkewError(f"pid file {path} does not hold a pid: {text[:40]!r}") from None
    if pid <= 0:
        raise ClockSkewError(f"pid file {path} holds an invalid pid {pid}")
    return pid


def process_alive(pidfile: str, comm: str | None) -> bool:
    """Whether the pid file names a live process (with the expected name, when one is given)."""
    try:
        pid = read_pidfile(pidfile)
        with open(f"/proc/{pid}/status") as f:
            fields = dict(line.split(":", 1) for line in f.read().splitlines() if ":" in line)
    except (ClockSkewError, OSError):
        return False
    if fields.get("State", "").strip().startswith(("Z", "X")):
        return False
    return comm is None or fields.get("Name", "").strip() == comm


def format_offset(offset: float) -> str:
    """The record's text of an offset: 90 -> "90", -2.5 -> "-2.5"."""
    text = str(float(offset))
    return text[:-2] if text.endswith(".0") else text


def read_record(path: str) -> float | None:
    """The offset kept in a record file; None without one."""
    try:
        with open(path, encoding="ascii") as handle:
            text = handle.read().strip()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise ClockSkewError(f"cannot read the clock offset record {path}: {exc}") from None
    try:
        return float(text)
    except ValueError:
        raise ClockSkewError(f"{path} does not hold a number of seconds: {text[:40]!r}") from None


def update_record(path: str, offset: float | None, check_mode: bool) -> bool:
    """Write (offset) or remove (None) the record; True when that changes it."""
    try:
        if offset is not None:
            return write_if_changed(path, format_offset(offset) + "\n", check_mode=check_mode)
        if not os.path.lexists(path):
            return False
        if not check_mode:
            os.unlink(path)
        return True
    except OSError as exc:
        raise ClockSkewError(f"cannot update the clock offset record {path}: {exc}") from None


def run(params: dict, check_mode: bool) -> dict:
    """Do the work of the module, the record included; returns the result dict, raises ClockSkewError."""
    record = params.get("record")
    if params.get("reapply"):
        if not record:
            raise ClockSkewError("reapply needs the record that holds the offset")
        offset = read_record(record)
        if offset is None:
            return {"changed": False, "pid": None, "offset": None, "previous_offset": None, "action": "none"}
        return shift({**params, "offset": offset, "state": "present"}, check_mode)
    result = shift(params, check_mode)
    if record:
        wanted = params["offset"] if params["state"] == "present" else None
        result["changed"] = update_record(record, wanted, check_mode) or result["changed"]
    return result


def shift(params: dict, check_mode: bool) -> dict:
    """Apply or undo the offset in the process; returns the result dict, raises ClockSkewError."""
    comm = params["expect_comm"] or None
    if params["pid"] is None and params["state"] == "absent" and not process_alive(params["pidfile"], comm):
        # A stopped process runs on no offset: absent is already true (as lab_process treats stale pid files).
        return {"changed": False, "pid": None, "offset": None, "previous_offset": None, "action": "none"}
    pid = params["pid"] if params["pid"] is not None else read_pidfile(params["pidfile"])
    if pid <= 0:
        raise ClockSkewError(f"invalid pid {pid}")
    if params["state"] == "present":
        res = apply(pid, params["offset"], expect_comm=comm, check_mode=check_mode)
    else:
        res = undo(pid, expect_comm=comm, check_mode=check_mode)
    return {
        "changed": res["changed"],
        "pid": pid,
        "offset": res["offset"],
        "previous_offset": res["previous_offset"],
        "action": res["action"],
    }


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "pid": {"type": "int"},
            "pidfile": {"type": "path"},
            "offset": {"type": "float", "default": 0},
            "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
            "expect_comm": {"type": "str", "default": "etcd"},
            "record": {"type": "path"},
            "reapply": {"type": "bool", "default": False},
        },
        required_one_of=[("pid", "pidfile")],
        mutually_exclusive=[("pid", "pidfile")],
        supports_check_mode=True,
    )
    try:
        result = run(module.params, module.check_mode)
    except ClockSkewError as e:
        module.fail_json(msg=str(e))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
