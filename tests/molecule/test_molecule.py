"""Run each molecule scenario of the lab's roles: destroy, syntax, create, (prepare), converge, idempotence,
verify, destroy. Each builds real etcd members in network namespaces of its own lab (sbmol-* by default;
on the suite's pytest-xdist workers sbmxN-*, set by tests/conftest.py, so that two scenarios run side by
side)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = sorted(p.parent.name for p in (ROOT / "molecule").glob("*/molecule.yml"))

pytestmark = pytest.mark.molecule
# The state dir of this worker's scenarios, as .config/molecule/config.yml names it.
STATE_DIR = ROOT / f".lab-{os.environ.get('MOLECULE_LAB_NAME', 'molecule')}"


def test_every_role_with_tasks_has_a_scenario():
    covered = set(SCENARIOS) | {"lab_platform"}  # lab_platform is the default scenario
    # lab_inventory, lab_briefing and lab_teardown run in every scenario's create, converge and destroy;
    # kind_cluster only renders manifests (no Docker engine here): tests/unit/test_kind_render.py covers it.
    # verify is the grader that the recover scenario runs as its verify step.
    exercised_elsewhere = {"lab_inventory", "lab_teardown", "lab_briefing", "kind_cluster", "verify"}
    roles = {p.name for p in (ROOT / "roles").iterdir() if (p / "tasks").is_dir()}
    assert roles - covered - exercised_elsewhere == set()


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_scenario(scenario):
    env = dict(os.environ, PATH=f"{ROOT / '.venv' / 'bin'}:{os.environ['PATH']}", ANSIBLE_FORCE_COLOR="0")
    proc = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "molecule"), "test", "-s", scenario],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=900,
    )
    out = re.sub(r"\x1b\[[0-9;]*m|\x1b\]8;;[^\x1b]*\x1b\\\\", "", proc.stdout + proc.stderr)
    assert proc.returncode == 0, out[-8000:]
    assert re.search(r"idempotence: Executed: Successful", out), out[-3000:]
    assert re.search(r"verify: Executed: Successful", out), out[-3000:]
    assert not STATE_DIR.exists(), f"the scenario left its state directory {STATE_DIR} behind"
