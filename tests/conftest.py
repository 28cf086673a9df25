"""Shared pytest setup: make library/ modules and module_utils/ importable as Ansible would."""

from __future__ import annotations

import sys
from pathlib import Path

import ansible.module_utils

ROOT = Path(__file__).resolve().parent.parent
# Modules in library/ import shared code as ansible.module_utils.<name>, as Ansible resolves it at run time.
ansible.module_utils.__path__.append(str(ROOT / "module_utils"))
sys.path.insert(0, str(ROOT / "library"))
sys.path.insert(0, str(ROOT / "tests"))
