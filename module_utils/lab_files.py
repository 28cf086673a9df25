# Copyright: etcd split-brain lab contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""How the lab's modules write their small records (lab.json, the recovery records, a snapshot's metadata, a
clock offset): atomically, and only when the content changes, so that a second run reports no change."""

from __future__ import annotations

import os


def read_text_or_none(path: str) -> str | None:
    """The file's text; None when it is missing or cannot be read as text."""
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except (OSError, UnicodeDecodeError):
        return None


def write_if_changed(target: str, text: str, mode: int = 0o644, check_mode: bool = False) -> bool:
    """Write text to target through a temporary file and a rename (its directory made, mode 0755, when
    missing); True when the content changed (or would, in check mode). Raises OSError."""
    if read_text_or_none(target) == text:
        return False
    if not check_mode:
        directory = os.path.dirname(target)
        if directory:
            os.makedirs(directory, mode=0o755, exist_ok=True)
        tmp = f"{target}.tmp"
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    return True
