"""Callback plugin lab_timing: a timing summary, every task's time in a log, a failed run's error last."""

from __future__ import annotations

DOCUMENTATION = r"""
---
name: lab_timing
type: aggregate
short_description: Task times in a log file, a short summary, and a failed run's error as its last line
description:
  - Times every task, from its start to the start of the next one (as ansible.posix.profile_tasks does).
  - At the end of the run, prints the total time and the five slowest tasks, and writes the time of every
    task, in the order they ran and slowest first, to C(<lab_state_dir>/logs/<playbook>-<UTC time>.log).
    When the state directory does not exist (no lab is set up, or teardown has just removed it), no log is
    written, so that a run never creates the state directory by itself.
  - "When the run failed, its last line is C(ERROR: <message>), the failing task's message on one line, so
    that the reason is the last thing printed (not a timing table)."
  - "A playbook's closing words come last of all, after the timing summary: the lines a task gave with
    C(ansible.builtin.set_stats) as C(data: {lab_last_words: [...]}) (setup's briefing). A failed run prints
    its C(ERROR:) line instead."
  - "Records the run's events for the lab's timeline: every task tagged C(event:<text>) that changed something
    or failed, and every task tagged C(event-done:<text>) that ended at all (a wait that marks a moment),
    appends a line (time on this host's clock, the text, the host, the task, ok or failed) to
    C(<lab_state_dir>/recorder/events.jsonl), and so does the start and the end of every playbook run; only
    when the state directory exists. C(./lab report) draws them beside the recorder's samples."
  - The state directory is C(lab_state_dir) given with C(-e), else the environment's E(LAB_STATE_DIR), else
    C(.lab) next to the Ansible configuration file, as the lab's inventory defines it.
version_added: "1.0.0"
author: etcd split-brain lab developers
requirements:
  - enable in ansible.cfg (callbacks_enabled = lab_timing)
options:
  slowest:
    description: How many of the slowest tasks to print.
    type: int
    default: 5
    ini:
      - section: callback_lab_timing
        key: slowest
"""

import json
import os
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from ansible import constants as C
from ansible.plugins.callback import CallbackBase


@dataclass
class TaskTime:
    name: str
    start: float
    seconds: float = 0.0


@dataclass
class RunTimes:
    """Per-task durations: a task runs from its start until the next task (or the end) starts."""

    started: float = field(default_factory=time.monotonic)
    tasks: list[TaskTime] = field(default_factory=list)

    def start_task(self, name: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        self.close(now)
        self.tasks.append(TaskTime(name=name, start=now - self.started))

    def close(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        if self.tasks and self.tasks[-1].seconds == 0.0:
            self.tasks[-1].seconds = max(0.0, now - self.started - self.tasks[-1].start)

    def total(self, now: float | None = None) -> float:
        return (time.monotonic() if now is None else now) - self.started

    def slowest(self, count: int) -> list[TaskTime]:
        return sorted(self.tasks, key=lambda t: t.seconds, reverse=True)[:count]


def duration(seconds: float) -> str:
    minutes, secs = divmod(seconds, 60)
    return f"{int(minutes // 60)}:{int(minutes % 60):02d}:{secs:06.3f}"


def one_line(text: str) -> str:
    return re.sub(r"\s+", " ", str(text)).strip()


def failure_message(task_name: str, result: dict) -> str:
    """The failing task's message on one line; a loop's first failed item; a command's stderr when generic."""
    msg = result.get("msg", "")
    items = [r for r in result.get("results", []) or [] if isinstance(r, dict) and r.get("failed")]
    if items and (not msg or "items failed" in msg or "one or more items" in msg.lower()):
        return failure_message(task_name, items[0])
    stderr = one_line(result.get("stderr", "") or "")
    if not msg or msg == "non-zero return code":
        detail = stderr or one_line(result.get("stdout", "") or "") or msg or "failed"
        return f"{task_name}: {detail[-400:]}"
    return one_line(msg)


def last_words(custom: dict | None) -> list[str]:
    """The closing lines a playbook set with set_stats (data: {lab_last_words: str or list}), run-wide."""
    words = ((custom or {}).get("_run") or {}).get("lab_last_words")
    if not words:
        return []
    items = [words] if isinstance(words, str) else words
    return [line for item in items for line in (str(item).splitlines() or [""])]


EVENT_TAGS = {"event:": "changed", "event-done:": "done"}


def event_texts(tags, when: str) -> list[str]:
    """The event texts of a task's tags: event:<text> when it changed something (or failed),
    event-done:<text> whenever it ended."""
    texts = []
    for tag in tags or []:
        for prefix, kind in EVENT_TAGS.items():
            if str(tag).startswith(prefix) and (kind == "done" or when in ("changed", "failed")):
                texts.append(str(tag)[len(prefix) :].strip())
    return texts


def event_line(text: str, host: str, task: str, outcome: str, playbook: str) -> str:
    moment = datetime.now(UTC)
    when = moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    entry = {"time": when, "event": text, "host": host, "task": task, "outcome": outcome}
    entry["playbook"] = playbook
    return json.dumps(entry, sort_keys=True) + "\n"


def timing_log(times: RunTimes, playbook: str, total: float) -> str:
    lines = [f"# {playbook}: {len(times.tasks)} tasks in {duration(total)}", "", "# in the order they ran"]
    lines.append(f"# {'start':>12} {'seconds':>9}  task")
    lines += [f"{duration(t.start):>14} {t.seconds:9.3f}  {t.name}" for t in times.tasks]
    lines += ["", "# slowest first"]
    lines += [f"{t.seconds:9.3f}  {t.name}" for t in times.slowest(len(times.tasks))]
    return "\n".join(lines) + "\n"


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "lab_timing"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self) -> None:
        super().__init__()
        self._times = RunTimes()
        self._playbook = "ansible"
        self._state_dir: str | None = None
        self._failure: str | None = None
        self._started = False

    def set_options(self, task_keys=None, var_options=None, direct=None) -> None:
        super().set_options(task_keys=task_keys, var_options=var_options, direct=direct)
        self._slowest = int(self.get_option("slowest"))

    def v2_playbook_on_start(self, playbook) -> None:
        self._playbook = os.path.splitext(os.path.basename(playbook._file_name))[0]

    def v2_playbook_on_play_start(self, play) -> None:
        if self._state_dir is None:
            manager = getattr(play, "_variable_manager", None)
            extra = getattr(manager, "extra_vars", None) or {}
            default = os.path.join(os.path.dirname(C.CONFIG_FILE or os.getcwd()), ".lab")
            self._state_dir = str(extra.get("lab_state_dir") or os.environ.get("LAB_STATE_DIR") or default)
        if not self._started:
            self._started = True
            self._event(f"{self._playbook}.yml started", "localhost", "", "ok")

    def _event(self, text: str, host: str, task: str, outcome: str) -> None:
        """One line in the state directory's recorder/events.jsonl (never creates the state directory)."""
        if not self._state_dir or not os.path.isdir(self._state_dir):
            return
        path = os.path.join(self._state_dir, "recorder", "events.jsonl")
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "a", encoding="utf-8") as handle:
                handle.write(event_line(text, host, task, outcome, self._playbook))
        except OSError:
            pass

    def _task_events(self, result, when: str) -> None:
        outcome = "failed" if when == "failed" else "ok"
        for text in event_texts(getattr(result._task, "tags", None), when):
            self._event(text, result._host.get_name(), result._task.get_name().strip(), outcome)

    def v2_runner_on_ok(self, result) -> None:
        self._task_events(result, "changed" if result._result.get("changed") else "ok")

    def v2_playbook_on_task_start(self, task, is_conditional) -> None:
        self._times.start_task(task.get_name().strip())

    def v2_playbook_on_handler_task_start(self, task) -> None:
        self._times.start_task(task.get_name().strip())

    def v2_runner_on_failed(self, result, ignore_errors=False) -> None:
        self._task_events(result, "failed")
        if not ignore_errors:
            self._failure = failure_message(result._task.get_name().strip(), result._result)

    def v2_runner_on_unreachable(self, result) -> None:
        self._failure = failure_message(result._task.get_name().strip(), result._result)

    def v2_playbook_on_stats(self, stats) -> None:
        self._times.close()
        total = self._times.total()
        self._display.display(f"Total {duration(total)} for {len(self._times.tasks)} tasks; the slowest:")
        for task in self._times.slowest(self._slowest):
            self._display.display(f"  {duration(task.seconds)}  {task.name}")
        path = self._write_log(total)
        if path:
            self._display.display(f"Every task's time: {path}")
        failed = any(stats.failures.values()) or any(stats.dark.values())
        self._event(f"{self._playbook}.yml {'failed' if failed else 'finished'}", "localhost", "", "ok")
        if failed:
            message = self._failure or "a task failed: see the task marked fatal above"
            self._display.display(f"ERROR: {message}", color=C.COLOR_ERROR)
        elif words := last_words(getattr(stats, "custom", None)):
            self._display.display("")
            for line in words:
                self._display.display(line)

    def _write_log(self, total: float) -> str | None:
        """The full table under the state directory's logs/, only when the state directory exists."""
        if not self._state_dir or not os.path.isdir(self._state_dir):
            return None
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        path = os.path.join(self._state_dir, "logs", f"{self._playbook}-{stamp}.log")
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w", encoding="utf-8") as handle:
                handle.write(timing_log(self._times, self._playbook, total))
        except OSError as exc:
            self._display.warning(f"lab_timing: cannot write {path}: {exc.strerror}")
            return None
        return path
