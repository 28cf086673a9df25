"""Shared pytest setup: make library/ modules and module_utils/ importable as Ansible would
(tools/lab_imports.py), and give each pytest-xdist worker a lab of its own (tests/worker_labs.py). ./test.sh
runs the workers with --dist loadfile: a test file (its module-scoped lab, its fixed subnets) stays on one
worker."""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tools"))

from lab_imports import use_lab_code
from worker_labs import identity_env

# Modules in library/ import shared code as ansible.module_utils.<name>, as Ansible resolves it at run time.
use_lab_code()


def pytest_configure(config):
    os.environ.update(identity_env(config, os.environ))
