"""lab_steps stdout callback: explanations as plain text, quiet ok and skipped tasks, every banner on demand.

The playbook runs for real with the repo's ansible.cfg (localhost, no etcd)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "plugins" / "callback"))

from lab_steps import debug_text, message_lines

PLAYBOOK = """
- name: Demo
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Demo | Read something (ok, not shown)
      ansible.builtin.stat:
        path: /
    - name: Demo | Skip something (not shown)
      ansible.builtin.stat:
        path: /
      when: false
    - name: Demo | Explain in one sentence
      ansible.builtin.debug:
        msg: 'etcd-2 says "leader" at term 7; the majority does not.'
    - name: Demo | Explain in lines
      ansible.builtin.debug:
        msg: ["first line", "second line\\nthird line"]
    - name: Demo | Explain per member
      ansible.builtin.debug:
        msg: "member {{ item }}"
      loop: [etcd-0, etcd-1]
    - name: Demo | Change something
      ansible.builtin.command: "true"
      changed_when: true
    - name: Demo | Check quietly
      ansible.builtin.assert:
        that: true
        quiet: true
    - name: Demo | Give the verdict
      ansible.builtin.assert:
        that: true
        success_msg: "Recovered: one cluster, one leader."
    - name: Demo | Change per member
      ansible.builtin.command: "true"
      changed_when: item != "etcd-1"
      loop: [etcd-0, etcd-1, etcd-2]
    - name: Demo | Stage 1 | Quiet stage
      ansible.builtin.include_tasks: quiet.yml
    - name: Demo | Stage 2 | Stage that explains
      ansible.builtin.include_tasks: explains.yml
"""
STAGES = {
    "quiet.yml": "- name: Quiet | Read\n  ansible.builtin.stat:\n    path: /\n",
    "explains.yml": "- name: Explains | Read\n  ansible.builtin.stat:\n    path: /\n"
    "- name: Explains | Say\n  ansible.builtin.debug:\n    msg: inside stage 2\n"
    "- name: Explains | On this platform (a nested include)\n  ansible.builtin.include_tasks: nested.yml\n",
    "nested.yml": "- name: Nested | Change\n  ansible.builtin.command: 'true'\n  changed_when: true\n",
}


@pytest.mark.parametrize(
    ("msg", "lines"),
    [
        ("one", ["one"]),
        ("a\nb", ["a", "b"]),
        ("", [""]),
        (["a", "b\nc"], ["a", "b", "c"]),
        ([1, {"k": 2}], ["1", "{'k': 2}"]),
        (None, []),
        (7, ["7"]),
    ],
)
def test_message_lines(msg, lines):
    assert message_lines(msg) == lines


def test_only_plain_messages_are_text():
    assert debug_text({"msg": "x", "changed": False}) == ["x"]
    assert debug_text({"msg": "x", "failed": True}) is None
    assert debug_text({"some_var": 1}) is None


def run(tmp_path: Path, playbook: str = PLAYBOOK, rc: int = 0, **env: str) -> str:
    book = tmp_path / "demo.yml"
    book.write_text(playbook)
    for name, text in STAGES.items():
        (tmp_path / name).write_text(text)
    proc = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "ansible-playbook"), str(book)],
        cwd=ROOT,
        env=dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), LAB_STATE_DIR=str(tmp_path), **env),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == rc, proc.stdout + proc.stderr
    return proc.stdout + proc.stderr  # warnings and errors go to stderr


def test_the_learner_reads_sentences_and_what_changed(tmp_path):
    text = run(tmp_path).split("PLAY RECAP")[0]  # the timing summary after it names every slow task
    lines = text.splitlines()
    assert 'etcd-2 says "leader" at term 7; the majority does not.' in lines
    assert lines[lines.index("first line") : lines.index("first line") + 3] == [
        "first line",
        "second line",
        "third line",
    ]
    assert "member etcd-0" in lines and "member etcd-1" in lines
    assert "Read something" not in text and "Skip something" not in text
    assert "ok: [localhost]" not in text and "skipping:" not in text and '"msg"' not in text
    # a task that changed something and says nothing else: one line
    assert "changed: [localhost] Demo | Change something" in lines and "TASK [Demo | Change" not in text
    assert "changed: [localhost] Demo | Change per member (etcd-0, etcd-2)" in lines and "(item=" not in text
    # a stage's banner shows only when something inside it shows, right before it
    assert "Quiet stage" not in text and "included:" not in text
    assert "Recovered: one cluster, one leader." in lines and "Check quietly" not in text
    assert "All assertions passed" not in text
    stage = next(
        i for i, line in enumerate(lines) if line.startswith("TASK [Demo | Stage 2 | Stage that explains]")
    )
    assert lines[stage + 2].startswith("TASK [Explains | Say]") and lines[stage + 3] == "inside stage 2"
    # a nested include's banner does not show: the change inside it says what it did
    assert "changed: [localhost] Nested | Change" in lines and "On this platform" not in text
    # the explanation sits under its own banner
    assert lines.index("first line") - 1 == next(
        i for i, line in enumerate(lines) if line.startswith("TASK [Demo | Explain in lines]")
    )


def test_every_task_shows_when_asked(tmp_path):
    text = run(tmp_path, ANSIBLE_DISPLAY_OK_HOSTS="true", ANSIBLE_DISPLAY_SKIPPED_HOSTS="true")
    assert "TASK [Demo | Read something (ok, not shown)]" in text and "TASK [Demo | Change something]" in text
    assert "TASK [Demo | Skip something (not shown)]" in text
    assert 'etcd-2 says "leader" at term 7; the majority does not.' in text.splitlines()


def test_a_failure_shows_in_full_with_its_banner(tmp_path):
    book = PLAYBOOK.split("    - name: Demo | Stage 1")[0] + (
        '    - name: Demo | Fail on purpose\n      ansible.builtin.command: "false"\n'
    )
    text = run(tmp_path, book, rc=2)
    assert "TASK [Demo | Fail on purpose]" in text and "fatal: [localhost]: FAILED!" in text
    assert proc_last_line(text).startswith("ERROR: Demo | Fail on purpose")
    assert "Origin:" not in text and "[ERROR]" not in text  # no code excerpt, no second copy of the message


def proc_last_line(text: str) -> str:
    return [line for line in text.splitlines() if line.strip()][-1]
