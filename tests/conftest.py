"""Shared pytest setup: make library/ modules and module_utils/ importable as Ansible would
(tools/lab_imports.py), and give each pytest-xdist worker a lab of its own. ./test.sh runs the workers with
--dist loadfile: a test file (its module-scoped lab, its fixed subnets) stays on one worker."""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tools"))

from lab_imports import use_lab_code

# Modules in library/ import shared code as ansible.module_utils.<name>, as Ansible resolves it at run time.
use_lab_code()

# Every pytest-xdist worker (and a run without xdist, as gw0) builds labs of its own name, subnet and state
# dir (sbgw0, 198.18.215.0/24, .lab-gw0/; sbgw1 ...), and molecule labs of its own (MOLECULE_LAB_NAME/_SUBNET,
# read by .config/molecule/config.yml), so that two labs run side by side, and a learner's lab from ./setup.sh
# (sblab, .lab/) is neither in the suite's way nor touched by it. Set before any test module imports lablib,
# which reads them once. A LAB_NAME given by the caller wins.
WORKER = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
WORKER_LABS = {
    f"gw{n}": {
        "LAB_NAME": f"sbgw{n}",
        "LAB_SUBNET": f"198.18.{215 + n}.0/24",
        "LAB_STATE_DIR": str(ROOT / f".lab-gw{n}"),
        "MOLECULE_LAB_NAME": f"sbmx{n}",
        "MOLECULE_LAB_SUBNET": f"198.18.{226 + n}.0/24",
        "INCIDENTS_LAB_NAME": f"sbinx{n}",
        "INCIDENTS_LAB_SUBNET": f"198.18.{234 + n}.0/24",
        "INCIDENTS_LAB_STATE_DIR": str(ROOT / f".lab-incidents-gw{n}"),
    }
    for n in range(5)
}
if WORKER in WORKER_LABS and "LAB_NAME" not in os.environ:
    os.environ.update(WORKER_LABS[WORKER])
