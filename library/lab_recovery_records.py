#!/usr/bin/python
"""Ansible module lab_recovery_records: what recover.yml runs recorded, read (and written) in one call."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: lab_recovery_records
short_description: Read (and write) the records that recover.yml runs keep in the recovery directory
description:
  - recover.yml can be killed at any task and run again; what an earlier run decided is kept in small files
    of the recovery directory. This module reads them all at once, so that a run that finds nothing to do
    costs one module start for them.
  - C(forks.json) names the forks that an earlier run found (and may have stopped); C(restore.json) is the
    record of a restore (no quorum, with the opt-in) that an earlier run started, and C(snapshot-SOURCE.db)
    the source's snapshot it saved; C(conflicts.json) is the conflict report and C(reconciled.sha256) the
    marker of its finished replay (the replay is pending while the marker does not hold the report's
    sha256); C(offline-read.json) lists the data dirs moved aside by hand that an earlier run read.
  - A missing file is an empty record; a file that does not hold what it should fails with one line naming it.
  - With O(forks), O(offline_read) or O(mark_reconciled) it first writes that record (atomically, the
    directory created when missing), and reports a change when the file's content changed; then it reads
    them all as above.
version_added: "1.0.0"
options:
  path:
    description: The recovery directory (it need not exist).
    type: path
    required: true
  forks:
    description:
      - Write C(forks.json) with these forks (sorted, without repeats); an empty list clears the record.
    type: list
    elements: str
  offline_read:
    description:
      - Write C(offline-read.json) with these data dirs (relative to the lab's state dir).
    type: list
    elements: str
  mark_reconciled:
    description:
      - Write C(reconciled.sha256) with the sha256 of C(conflicts.json) (the replay of that report finished).
        Nothing is written without a report.
    type: bool
    default: false
extends_documentation_fragment:
  - lab_module
"""

EXAMPLES = r"""
- name: Detect | Read what earlier runs recorded
  lab_recovery_records:
    path: "{{ lab_state_dir }}/recovery"
  register: recover_records

- name: Stop writes | Record the forks first
  lab_recovery_records:
    path: "{{ lab_state_dir }}/recovery"
    forks: [etcd-2]
"""

RETURN = r"""
forks:
  description: The forks recorded in C(forks.json) (empty without it).
  returned: always
  type: list
  elements: str
  sample: [etcd-2]
restore:
  description: The record of a restore that an earlier run started (C(restore.json)), or null.
  returned: always
  type: dict
  sample: {"source": "etcd-0", "stamp": "20261206T101500Z"}
restore_snapshot:
  description: Whether the source's snapshot of that restore (C(snapshot-SOURCE.db)) is there.
  returned: always
  type: bool
conflicts_sha256:
  description: The sha256 of C(conflicts.json), or null without it.
  returned: always
  type: str
reconciled_sha256:
  description: What the replay's marker C(reconciled.sha256) holds, or null without it.
  returned: always
  type: str
reconcile_pending:
  description: Whether a conflict report is there whose replay did not finish.
  returned: always
  type: bool
offline_read:
  description: The moved-aside data dirs that earlier runs read (C(offline-read.json), relative to the lab's
    state dir).
  returned: always
  type: list
  elements: str
"""

import hashlib
import json
import os

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.lab_files import write_if_changed


class RecordError(ValueError):
    """A record file is unreadable or does not hold what it should; the message names it."""


def argument_spec() -> dict:
    return {
        "path": {"type": "path", "required": True},
        "forks": {"type": "list", "elements": "str"},
        "offline_read": {"type": "list", "elements": "str"},
        "mark_reconciled": {"type": "bool", "default": False},
    }


# The records this module writes: option -> (file, key in the file's object).
WRITABLE = {"forks": ("forks.json", "forks"), "offline_read": ("offline-read.json", "dirs")}


def write_record(path: str, option: str, values: list[str], check_mode: bool = False) -> bool:
    """Write one record (sorted, no repeats) atomically; True when the file's content changed."""
    name, key = WRITABLE[option]
    text = json.dumps({key: sorted(set(values))}, indent=4) + "\n"
    return write_text(os.path.join(path, name), text, check_mode)


def mark_reconciled(path: str, check_mode: bool = False) -> bool:
    """Write the replay's marker: the sha256 of the conflict report (none without a report)."""
    digest = sha256_of(os.path.join(path, "conflicts.json"))
    marker = os.path.join(path, "reconciled.sha256")
    return digest is not None and write_text(marker, f"{digest}\n", check_mode)


def write_text(target: str, text: str, check_mode: bool) -> bool:
    """Write text to target atomically (its directory made when missing); True when the content changed."""
    try:
        return write_if_changed(target, text, check_mode=check_mode)
    except OSError as exc:
        raise RecordError(f"cannot write {target}: {exc}") from None


def read_text(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise RecordError(f"cannot read {path}: {exc}") from None


def read_json(path: str, key: str | None = None, kind: type = dict):
    """The file's JSON (or its `key`), checked to be of `kind`; None when the file is missing."""
    text = read_text(path)
    if text is None:
        return None
    try:
        data = json.loads(text)
        value = data[key] if key is not None else data
    except (ValueError, KeyError, TypeError):
        raise RecordError(f"{path} does not hold the expected record ({key or 'an object'}): remove it or "
                          "restore it from the run's output") from None  # fmt: skip
    if not isinstance(value, kind):
        what = key or "the record"
        raise RecordError(f"{path}: {what} should be a {kind.__name__}, not {type(value).__name__}")
    return value


def sha256_of(path: str) -> str | None:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise RecordError(f"cannot read {path}: {exc}") from None
    return digest.hexdigest()


def read_records(path: str) -> dict:
    forks = read_json(os.path.join(path, "forks.json"), "forks", list) or []
    restore = read_json(os.path.join(path, "restore.json"))
    if restore is not None and not isinstance(restore.get("source"), str):
        raise RecordError(f"{os.path.join(path, 'restore.json')} names no source member")
    snapshot = bool(restore) and os.path.isfile(os.path.join(path, f"snapshot-{restore['source']}.db"))
    conflicts = sha256_of(os.path.join(path, "conflicts.json"))
    marker = read_text(os.path.join(path, "reconciled.sha256"))
    marker = marker.strip() if marker is not None else None
    return {
        "forks": sorted(set(forks)),
        "restore": restore,
        "restore_snapshot": snapshot,
        "conflicts_sha256": conflicts,
        "reconciled_sha256": marker,
        "reconcile_pending": conflicts is not None and marker != conflicts,
        "offline_read": read_json(os.path.join(path, "offline-read.json"), "dirs", list) or [],
    }


def run_module() -> None:
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    changed = False
    try:
        path = module.params["path"]
        for option in WRITABLE:
            if module.params[option] is not None:
                changed |= write_record(path, option, module.params[option], module.check_mode)
        if module.params["mark_reconciled"]:
            changed |= mark_reconciled(path, module.check_mode)
        records = read_records(module.params["path"])
    except RecordError as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(changed=changed, **records)


def main() -> None:
    run_module()


if __name__ == "__main__":
    main()
