#!/usr/bin/python
"""Ansible module lab_process: run a detached process (optionally in a network namespace) by pid file."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: lab_process
short_description: Start and stop a detached process by pid file, optionally inside a network namespace
description:
  - Starts a long-running process detached from Ansible (its own session, stdin from /dev/null, stdout and
    stderr appended to a log file) and records its pid in a pid file.
  - Idempotent. A process that is already running with the same command line is left alone; one running
    with a different command line is stopped and started again.
  - Stopping sends SIGTERM, waits up to O(stop_timeout) seconds for the process to exit (an isolated etcd
    leader can take seconds), then sends SIGKILL and waits again.
  - A pid file whose process is gone, or whose pid now belongs to another program, is treated as stopped -
    a process that started after the pid file was last written (its pid reused since, as the kernel hands
    pids out again once they wrap at pid_max) is never signalled, nor is one running another program
    than O(argv) names.
version_added: "1.0.0"
options:
  argv:
    description: Command and arguments, without any shell. Required with O(state=started).
    type: list
    elements: str
  pidfile:
    description: Path of the pid file. One of O(pidfile), O(pidfiles) and O(cmdline_contains) is required.
    type: path
  pidfiles:
    description:
      - With O(state=stopped), several pid files at once - every process is sent SIGTERM together, waited
        for together (O(stop_timeout)), and the ones left are killed, so that stopping N processes takes
        about as long as stopping one. Each pid file is removed.
    type: list
    elements: path
  cmdline_contains:
    description:
      - With O(state=stopped) and no O(pidfile), stop every process whose command line contains this string
        (teardown uses the lab's state directory, to find processes whose pid file is lost). Never this
        module's own process or its parents.
    type: str
  logfile:
    description: Log file that receives stdout and stderr (appended). Required with O(state=started).
    type: path
  netns:
    description: Name of a network namespace (C(ip netns)) to run the process in.
    type: str
  env:
    description: Extra environment variables for the process.
    type: dict
    default: {}
  state:
    description: Whether the process should be running.
    type: str
    choices: [started, stopped]
    default: started
  stop_timeout:
    description: Seconds to wait after SIGTERM before SIGKILL.
    type: float
    default: 15
  start_grace:
    description: Seconds the new process must stay alive for the start to count as successful.
    type: float
    default: 1
extends_documentation_fragment:
  - lab_module
"""

EXAMPLES = r"""
- name: Start | Run etcd-0 inside its namespace
  lab_process:
    argv: [/usr/bin/etcd, --name, etcd-0, --data-dir, /srv/lab/etcd-0/data]
    netns: sblab-etcd-0
    pidfile: /srv/lab/etcd-0/etcd.pid
    logfile: /srv/lab/etcd-0/etcd.log

- name: Stop | Stop etcd-0, killing it after 20 s
  lab_process:
    pidfile: /srv/lab/etcd-0/etcd.pid
    state: stopped
    stop_timeout: 20

- name: Sweep | Stop the writers and etcd of every member at once
  lab_process:
    pidfiles: [/srv/lab/workload/etcd-0.pid, /srv/lab/etcd-0/etcd.pid, /srv/lab/etcd-1/etcd.pid]
    state: stopped
    stop_timeout: 1

- name: Sweep | Stop every process that names the lab's state directory on its command line
  lab_process:
    cmdline_contains: /srv/lab/
    state: stopped
"""

RETURN = r"""
pid:
  description: Pid of the running process; null when stopped.
  returned: always
  type: int
  sample: 12345
previous_pid:
  description: Pid that was running before the task, if any.
  returned: always
  type: int
stopped_pids:
  description: With O(cmdline_contains) or O(pidfiles), the pids of the processes stopped.
  returned: with cmdline_contains or pidfiles
  type: list
  elements: int
killed:
  description: Whether SIGKILL was needed to stop the process.
  returned: when a process was stopped
  type: bool
log_tail:
  description: Last lines of the log file when the process exited right after starting.
  returned: on failure to start
  type: str
"""

import contextlib
import os
import signal
import subprocess
import time

from ansible.module_utils.basic import AnsibleModule


def read_pid(pidfile: str) -> int | None:
    try:
        with open(pidfile, encoding="ascii") as handle:
            return int(handle.read().strip())
    except (OSError, ValueError):
        return None


def stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (state, ppid, ...: field 3 is index 0), or None
    when the process is gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            return handle.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def cmdline(pid: int) -> list[str] | None:
    """The process's argv, or None when it is gone (zombies count as gone)."""
    fields = stat_fields(pid)
    if not fields or fields[0] == "Z":
        return None
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            raw = handle.read()
    except OSError:
        return None
    return [part.decode(errors="replace") for part in raw.split(b"\0")[:-1]]


def boot_time() -> float | None:
    """When the machine booted, in seconds of the wall clock: /proc/stat's btime, which the kernel computes in
    one step (the wall clock minus the time since boot; reading the two apart from here would be off by any
    time this process spent descheduled between the reads)."""
    try:
        with open("/proc/stat", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("btime "):
                    return float(line.split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return None


def started_at(pid: int) -> float | None:
    """When the process started, in seconds of the wall clock (its start in clock ticks since boot, plus the
    boot time), or None when it is gone."""
    fields = stat_fields(pid)
    booted = boot_time()
    if fields is None or len(fields) < 20 or booted is None:
        return None
    return booted + int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22, starttime


# A pid file is written right after its process started; a process that started later than this after the
# file's last write has a reused pid. The margin covers the clock tick and btime's whole seconds.
REUSE_MARGIN = 2.0


def reused_since(pidfile: str, pid: int) -> bool:
    """Whether pid belongs to a process that started after the pid file was last written."""
    try:
        written = os.stat(pidfile).st_mtime
    except OSError:
        return False
    started = started_at(pid)
    return started is not None and started > written + REUSE_MARGIN


def running_pid(pidfile: str, expected_cmd: str | None = None) -> tuple[int | None, list[str] | None]:
    """The pid from the pid file if that process is alive, is the one the file was written for (not a pid
    reused since), and runs expected_cmd, when given."""
    pid = read_pid(pidfile)
    if pid is None:
        return None, None
    argv = cmdline(pid)
    if not argv or reused_since(pidfile, pid):
        return None, None
    if expected_cmd and os.path.basename(argv[0]) != os.path.basename(expected_cmd):
        return None, None
    return pid, argv


def own_lineage() -> set[int]:
    """This process and its ancestors, which a sweep by command line must never stop."""
    pids, pid = set(), os.getpid()
    while pid > 1 and pid not in pids:
        pids.add(pid)
        fields = stat_fields(pid)
        if not fields or len(fields) < 2 or not fields[1].isdigit():
            break
        pid = int(fields[1])
    return pids


def pids_matching(needle: str) -> list[int]:
    """Live processes whose command line contains needle, except this module, its parents and their forks
    (Ansible's workers carry ansible-playbook's command line, which may name the state directory)."""
    skip = own_lineage()
    skip_argv = [cmdline(pid) for pid in skip]
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in skip:
            continue
        argv = cmdline(int(entry))
        if argv and needle in " ".join(argv) and argv not in skip_argv:
            found.append(int(entry))
    return sorted(found)


def wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cmdline(pid) is None:
            return True
        time.sleep(0.05)
    return cmdline(pid) is None


def stop_all(pids: list[int], timeout: float) -> list[int]:
    """SIGTERM to every pid at once, one wait for all, then SIGKILL to those left. Returns the killed pids."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    left = list(pids)
    while left and time.monotonic() < deadline:
        left = [pid for pid in left if cmdline(pid) is not None]
        if left:
            time.sleep(0.05)
    killed = []
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
    stuck = [pid for pid in killed if not wait_gone(pid, 10)]
    if stuck:
        raise RuntimeError(f"process {', '.join(map(str, stuck))} did not exit even after SIGKILL")
    return killed


def stop(pid: int, timeout: float) -> bool:
    """SIGTERM, wait, SIGKILL. Returns whether SIGKILL was needed."""
    return bool(stop_all([pid], timeout))


def tail(path: str, lines: int = 20) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return "".join(handle.readlines()[-lines:])
    except OSError:
        return ""


def spawn(argv: list[str], netns: str | None, logfile: str, env: dict) -> int:
    full = (["ip", "netns", "exec", netns] if netns else []) + argv
    os.makedirs(os.path.dirname(logfile) or ".", exist_ok=True)
    environ = dict(os.environ)
    environ.update({k: str(v) for k, v in env.items()})
    with open(logfile, "ab") as log, open(os.devnull, "rb") as devnull:
        # `ip netns exec` enters the namespace and execs the command in the same process, so the pid we
        # record is the program's own pid.
        proc = subprocess.Popen(
            full, stdin=devnull, stdout=log, stderr=subprocess.STDOUT, env=environ, start_new_session=True
        )
    return proc.pid


def write_pidfile(pidfile: str, pid: int) -> None:
    os.makedirs(os.path.dirname(pidfile) or ".", exist_ok=True)
    tmp = f"{pidfile}.tmp"
    with open(tmp, "w", encoding="ascii") as handle:
        handle.write(f"{pid}\n")
    os.replace(tmp, pidfile)


def remove_pidfile(pidfile: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(pidfile)


def sweep(module: AnsibleModule, needle: str, timeout: float) -> None:
    """Stop every process whose command line contains needle (state=stopped only)."""
    if module.params["state"] != "stopped":
        module.fail_json(msg="cmdline_contains works only with state=stopped")
    if not needle.strip():
        module.fail_json(msg="cmdline_contains is empty: it would match every process")
    pids = pids_matching(needle)
    if not module.check_mode:
        try:
            stop_all(pids, timeout)
        except RuntimeError as exc:
            module.fail_json(msg=str(exc), stopped_pids=pids)
    module.exit_json(changed=bool(pids), pid=None, previous_pid=None, stopped_pids=pids)


def stop_pidfiles(module: AnsibleModule, pidfiles: list[str], timeout: float) -> None:
    """Stop the processes of several pid files at once (state=stopped only) and remove the files."""
    if module.params["state"] != "stopped":
        module.fail_json(msg="pidfiles works only with state=stopped")
    pids = [pid for pid in (running_pid(path)[0] for path in pidfiles) if pid is not None]
    result = {"changed": bool(pids), "pid": None, "previous_pid": None, "stopped_pids": pids}
    if not module.check_mode:
        try:
            result["killed"] = bool(stop_all(pids, timeout))
        except RuntimeError as exc:
            module.fail_json(msg=str(exc), **result)
        for path in pidfiles:
            remove_pidfile(path)
    module.exit_json(**result)


def run_module() -> None:
    module = AnsibleModule(
        argument_spec={
            "argv": {"type": "list", "elements": "str"},
            "pidfile": {"type": "path"},
            "pidfiles": {"type": "list", "elements": "path"},
            "cmdline_contains": {"type": "str"},
            "logfile": {"type": "path"},
            "netns": {"type": "str"},
            "env": {"type": "dict", "default": {}},
            "state": {"type": "str", "default": "started", "choices": ["started", "stopped"]},
            "stop_timeout": {"type": "float", "default": 15},
            "start_grace": {"type": "float", "default": 1},
        },
        required_if=[("state", "started", ["argv", "logfile", "pidfile"])],
        required_one_of=[("pidfile", "pidfiles", "cmdline_contains")],
        mutually_exclusive=[("pidfile", "pidfiles", "cmdline_contains")],
        supports_check_mode=True,
    )
    p = module.params
    if p["cmdline_contains"] is not None:
        sweep(module, p["cmdline_contains"], p["stop_timeout"])
    if p["pidfiles"] is not None:
        stop_pidfiles(module, p["pidfiles"], p["stop_timeout"])
    argv = p["argv"]
    pid, current = running_pid(p["pidfile"], argv[0] if argv else None)
    result = {"changed": False, "pid": pid, "previous_pid": pid}

    if p["state"] == "stopped":
        if pid is None:
            if not module.check_mode:
                remove_pidfile(p["pidfile"])
            module.exit_json(**result)
        result.update(changed=True, pid=None)
        if not module.check_mode:
            try:
                result["killed"] = stop(pid, p["stop_timeout"])
            except RuntimeError as exc:
                module.fail_json(msg=str(exc), **result)
            remove_pidfile(p["pidfile"])
        module.exit_json(**result)

    if pid is not None and current == argv:
        module.exit_json(**result)
    result["changed"] = True
    if module.check_mode:
        module.exit_json(**result)
    if pid is not None:
        result["killed"] = stop(pid, p["stop_timeout"])
    if p["netns"] and not os.path.exists(f"/run/netns/{p['netns']}"):
        module.fail_json(msg=f"Network namespace {p['netns']} does not exist: set up the lab platform first")
    try:
        new_pid = spawn(argv, p["netns"], p["logfile"], p["env"])
    except OSError as exc:
        module.fail_json(msg=f"Cannot start {argv[0]}: {exc.strerror}", **result)
    write_pidfile(p["pidfile"], new_pid)
    deadline = time.monotonic() + p["start_grace"]
    while time.monotonic() < deadline:
        if cmdline(new_pid) is None:
            break
        time.sleep(0.05)
    if cmdline(new_pid) is None:
        remove_pidfile(p["pidfile"])
        module.fail_json(
            msg=f"{os.path.basename(argv[0])} exited right after starting; see {p['logfile']}",
            log_tail=tail(p["logfile"]),
            **result,
        )
    result["pid"] = new_pid
    module.exit_json(**result)


def main() -> None:
    run_module()


if __name__ == "__main__":
    main()
