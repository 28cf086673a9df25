"""lab_process: start, idempotence, restart on a changed command line, stop with SIGKILL after the bound."""

from __future__ import annotations

import os
import signal
import sys
import time

import pytest
from lab_process import (
    cmdline,
    own_lineage,
    pids_matching,
    read_pid,
    reused_since,
    running_pid,
    spawn,
    started_at,
    stop,
    stop_all,
    wait_gone,
    write_pidfile,
)

STUBBORN = "import signal,time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"


@pytest.fixture
def proc_dir(tmp_path):
    pids: list[int] = []
    yield tmp_path, pids
    for pid in pids:
        if cmdline(pid) is not None:
            os.kill(pid, signal.SIGKILL)
            wait_gone(pid, 5)


def test_spawn_records_a_detached_process_with_its_log(proc_dir):
    tmp, pids = proc_dir
    argv = [sys.executable, "-c", "print('hello', flush=True); import time; time.sleep(60)"]
    pid = spawn(argv, None, str(tmp / "p.log"), {"LAB_TEST": "1"})
    pids.append(pid)
    write_pidfile(str(tmp / "p.pid"), pid)
    assert read_pid(str(tmp / "p.pid")) == pid
    # Right after fork, /proc shows the parent's command line until the exec completes: poll for it.
    deadline = time.monotonic() + 5
    while running_pid(str(tmp / "p.pid"), argv[0]) != (pid, argv) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert running_pid(str(tmp / "p.pid"), argv[0]) == (pid, argv)
    assert os.getsid(pid) == pid  # its own session: Ansible's exit does not take it down
    deadline = time.monotonic() + 5
    while "hello" not in (tmp / "p.log").read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "hello" in (tmp / "p.log").read_text()


def test_a_stale_pid_file_counts_as_stopped(tmp_path):
    write_pidfile(str(tmp_path / "p.pid"), 2**22 + 12345)
    assert running_pid(str(tmp_path / "p.pid")) == (None, None)


def test_a_pid_reused_by_another_program_counts_as_stopped(tmp_path):
    write_pidfile(str(tmp_path / "p.pid"), os.getpid())
    assert running_pid(str(tmp_path / "p.pid"), "/usr/bin/etcd") == (None, None)


def test_a_pid_reused_after_the_pid_file_was_written_counts_as_stopped(proc_dir):
    """The kernel hands pids out again once they wrap (pid_max 32768 here): a pid file left by a process that
    died names, later, another process, which a stop must never signal, whatever program it runs."""
    tmp, pids = proc_dir
    argv = [sys.executable, "-c", "import time; time.sleep(60)"]
    pid = spawn(argv, None, str(tmp / "p.log"), {})
    pids.append(pid)
    started = started_at(pid)
    assert started is not None and abs(started - time.time()) < 5
    pidfile = tmp / "p.pid"
    write_pidfile(str(pidfile), pid)
    seen = (cmdline(pid), started_at(pid), pidfile.stat().st_mtime)
    assert not reused_since(str(pidfile), pid) and running_pid(str(pidfile))[0] == pid, seen
    # The same pid file, as if written a minute before this process started (its own process gone since).
    os.utime(pidfile, (time.time() - 60, time.time() - 60))
    assert reused_since(str(pidfile), pid)
    assert running_pid(str(pidfile)) == (None, None)
    assert running_pid(str(pidfile), argv[0]) == (None, None)


def test_stop_kills_after_the_bound_when_sigterm_is_ignored(proc_dir):
    tmp, pids = proc_dir
    pid = spawn([sys.executable, "-c", STUBBORN], None, str(tmp / "s.log"), {})
    pids.append(pid)
    time.sleep(0.5)  # let the child install its SIGTERM handler before we signal it
    started = time.monotonic()
    assert stop(pid, 1.0) is True
    assert cmdline(pid) is None
    assert 0.9 <= time.monotonic() - started < 10


def test_stop_all_waits_once_for_every_process_and_kills_only_the_stubborn(proc_dir):
    tmp, pids = proc_dir
    stubborn = [spawn([sys.executable, "-c", STUBBORN], None, str(tmp / f"s{i}.log"), {}) for i in range(3)]
    sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
    polite = [spawn(sleeper, None, str(tmp / f"p{i}.log"), {}) for i in range(2)]
    pids += stubborn + polite
    time.sleep(0.5)  # let the children install their SIGTERM handlers before we signal them
    started = time.monotonic()
    killed = stop_all(stubborn + polite, 1.0)
    # One wait of the bound for all five, not one per process (that would be at least 3 s).
    assert 0.9 <= time.monotonic() - started < 2.5
    assert sorted(killed) == sorted(stubborn)
    assert all(cmdline(pid) is None for pid in stubborn + polite)
    assert stop_all([], 1.0) == []


def test_stop_of_a_cooperative_process_needs_no_kill(proc_dir):
    tmp, pids = proc_dir
    pid = spawn([sys.executable, "-c", "import time; time.sleep(60)"], None, str(tmp / "c.log"), {})
    pids.append(pid)
    assert stop(pid, 5.0) is False
    assert cmdline(pid) is None


def test_a_sweep_by_command_line_finds_lost_processes_but_never_itself(proc_dir):
    tmp, pids = proc_dir
    marker = f"{tmp}/state/"
    # A process that names the state dir on its command line, as a writer whose pid file was lost does.
    pid = spawn(
        [sys.executable, "-c", "import time; time.sleep(60)", marker + "workload"], None, str(tmp / "log"), {}
    )
    pids.append(pid)
    other = spawn(
        [sys.executable, "-c", "import time; time.sleep(60)", f"{tmp}/elsewhere"], None, str(tmp / "l2"), {}
    )
    pids.append(other)
    # Right after fork the child shows the parent's command line until its exec: wait until it shows its own.
    deadline = time.monotonic() + 5
    while pid not in pids_matching(marker) and time.monotonic() < deadline:
        time.sleep(0.02)
    found = pids_matching(marker)
    assert pid in found and other not in found
    assert os.getpid() not in pids_matching(" ".join(cmdline(os.getpid())))
    assert os.getpid() in own_lineage() and os.getppid() in own_lineage()
