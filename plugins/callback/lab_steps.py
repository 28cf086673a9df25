"""Callback plugin lab_steps: the default output, quieter, with the playbooks' explanations as plain text."""

from __future__ import annotations

DOCUMENTATION = r"""
---
name: lab_steps
type: stdout
short_description: The default screen output, with debug messages as plain text and quiet ok tasks
description:
  - The lab's playbooks explain each step with C(ansible.builtin.debug). This callback prints those messages
    as plain text under their task's banner (a list as one line per item, no C(ok [localhost] =>) prefix, no
    JSON escapes), so the learner reads sentences, not data.
  - Everything else is the default callback (C(ansible.builtin.default)) with its options. The lab's
    C(ansible.cfg) turns C(display_ok_hosts) and C(display_skipped_hosts) off, so a task shows only when it
    changed something, failed, or explains; a debug message shows whatever these options say.
  - An C(ansible.builtin.assert) that passes shows its C(success_msg) the same way (a verdict such as
    recover.yml's C(Recovered - one cluster, one leader ...)); one without a C(success_msg) stays quiet.
  - An C(include_tasks) or C(include_role) banner (a stage, such as recover.yml's C(Step 5 | ...)) shows only
    once a task inside it shows, just before that task's banner; of nested includes only the outermost.
  - A task that changed something and has nothing else to say takes one line, C(changed [host] <task name>),
    with the labels of a loop's changed items. A failure shows its banner and its result (no code excerpt of
    the failing task; -v shows it); the lab_timing callback ends the run with its one-line C(ERROR) message.
  - Run with C(-v) (or set E(ANSIBLE_DISPLAY_OK_HOSTS=true) and E(ANSIBLE_DISPLAY_SKIPPED_HOSTS=true)) to see
    every task's banner as it starts, as the default callback prints it.
version_added: "1.0.0"
author: etcd split-brain lab developers
extends_documentation_fragment:
  - default_callback
  - result_format_callback
requirements:
  - set as stdout in configuration (stdout_callback = lab_steps)
"""

from typing import Any

from ansible import constants as C
from ansible.playbook.task_include import TaskInclude
from ansible.plugins.callback.default import CallbackModule as DefaultCallback

ASSERT_ACTIONS = ("assert", "ansible.builtin.assert", "ansible.legacy.assert")


def message_lines(msg: Any) -> list[str]:
    """A debug message as lines of text: a string split at its newlines, a list one line per item (nested
    strings split too), anything else as its repr."""
    if msg is None:
        return []
    if isinstance(msg, str):
        return msg.splitlines() or [""]
    if isinstance(msg, (list, tuple)):
        lines: list[str] = []
        for item in msg:
            lines += message_lines(item) if isinstance(item, str) else [str(item)]
        return lines
    return [str(msg)]


def debug_text(result: dict) -> list[str] | None:
    """The lines a debug result prints, or None when it is not a plain message (a var dump, a failure)."""
    if result.get("failed") or "msg" not in result:
        return None
    return message_lines(result["msg"])


def ancestor_uuids(task: Any) -> set[str]:
    """The uuids of the blocks and includes a task sits in (an included task's chain holds its include)."""
    found, node = set(), getattr(task, "_parent", None)
    while node is not None and len(found) < 1000:
        found.add(node._uuid)
        node = getattr(node, "_parent", None)
    return found


class CallbackModule(DefaultCallback):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "stdout"
    CALLBACK_NAME = "lab_steps"

    def __init__(self) -> None:
        super().__init__()
        self._pending: list[tuple[str, str]] = []  # (uuid, banner name) of includes not shown yet
        self._shown_stages: set[str] = set()  # uuids of the includes whose banner was shown
        self._changed_items: dict[tuple[str, str], list[str]] = {}  # (task uuid, host): labels

    def _quiet(self) -> bool:
        return not self.get_option("display_ok_hosts") and self._display.verbosity == 0

    def _show_stages(self, task: Any) -> None:
        """The banner of the outermost include (the stage) that task sits in, when not shown yet: an include
        inside a stage (a platform's file, a loop over members) adds nothing that the task's own name and
        its changed line do not say."""
        if self._pending:
            inside = ancestor_uuids(task)
            if not inside & self._shown_stages:
                for uuid, name in [p for p in self._pending if p[0] in inside][:1]:
                    self._display.banner(f"TASK [{name}]")
                    self._shown_stages.add(uuid)
            self._pending = []

    def _print_task_banner(self, task: Any) -> None:
        self._show_stages(task)
        super()._print_task_banner(task)

    def _changed_line(self, result: Any, items: list[str] | None = None) -> None:
        """A task that changed something and has nothing else to say: one line, no banner."""
        self._show_stages(result.task)
        name = self._last_task_name or result.task.get_name().strip()
        name = name.split(" : ", 1)[-1] if getattr(result.task, "_role", None) else name
        line = f"changed: [{self.host_label(result)}] {name}" + (f" ({', '.join(items)})" if items else "")
        self._display.display(line, color=C.COLOR_CHANGED)

    def _plain(self, result: Any, lines: list[str]) -> None:
        if self._last_task_banner != result.task._uuid:
            self._print_task_banner(result.task)
        self._handle_warnings_and_exception(result)
        for line in lines:
            self._display.display(line)

    def _explains(self, result: Any) -> list[str] | None:
        if self._display.verbosity > 0:
            return None
        if result.task.action in C._ACTION_DEBUG:
            return debug_text(result.result)
        if result.task.action in ASSERT_ACTIONS and result.task.args.get("success_msg"):
            return debug_text(result.result)  # an assert's verdict, such as "Recovered: one cluster ..."
        return None

    def v2_runner_on_ok(self, result: Any) -> None:
        looped = bool(result.task.loop and "results" in result.result)
        if isinstance(result.task, TaskInclude) and self._quiet():
            inside = ancestor_uuids(result.task)
            self._pending = [p for p in self._pending if p[0] in inside]
            self._pending.append((result.task._uuid, self._last_task_name or result.task.get_name().strip()))
            return
        lines = None if looped else self._explains(result)
        if lines is not None:
            self._plain(result, lines)
            return
        if looped and result.task.action in C._ACTION_DEBUG:
            return  # each item was printed as it came
        labels = self._changed_items.pop((result.task._uuid, self.host_label(result)), None)
        if labels:
            self._changed_line(result, labels)
            return
        if self._quiet() and not looped and result.result.get("changed"):
            self._handle_warnings_and_exception(result)
            self._changed_line(result)
            return
        super().v2_runner_on_ok(result)

    def v2_runner_item_on_ok(self, result: Any) -> None:
        lines = self._explains(result)
        if lines is not None:
            self._plain(result, lines)
            return
        if self._quiet() and result.result.get("changed") and not isinstance(result.task, TaskInclude):
            self._handle_warnings_and_exception(result)
            key = (result.task._uuid, self.host_label(result))
            self._changed_items.setdefault(key, []).append(str(self._get_item_label(result.result)))
            return
        super().v2_runner_item_on_ok(result)

    def v2_runner_on_failed(self, result: Any, ignore_errors: bool = False) -> None:
        labels = self._changed_items.pop((result.task._uuid, self.host_label(result)), None)
        if labels:
            self._changed_line(result, labels)
        if self._quiet():
            # no "[ERROR]: Task failed ... Origin:" excerpt of the task: the message is in the result
            result.result.pop("exception", None)
        super().v2_runner_on_failed(result, ignore_errors=ignore_errors)

    def v2_runner_item_on_failed(self, result: Any) -> None:
        if self._quiet():
            result.result.pop("exception", None)
        super().v2_runner_item_on_failed(result)

    def v2_playbook_on_include(self, included_file: Any) -> None:
        if not self._quiet():
            super().v2_playbook_on_include(included_file)
