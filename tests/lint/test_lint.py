"""Lint and static checks: ruff, ansible-lint (production profile), playbook syntax, module documentation."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / ".venv" / "bin"
PYTHON_FILES = ["lab", "library", "module_utils", "plugins", "roles", "tests", "benchmarks"]

pytestmark = pytest.mark.lint


def run(*argv: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, timeout=timeout)


def test_ruff_check():
    proc = run(str(BIN / "ruff"), "check", *[p for p in PYTHON_FILES if (ROOT / p).exists()])
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_ruff_format():
    proc = run(str(BIN / "ruff"), "format", "--check", *[p for p in PYTHON_FILES if (ROOT / p).exists()])
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_ansible_lint_production_profile():
    proc = run(str(BIN / "ansible-lint"), "--format=pep8", "--nocolor")
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-3000:]
    assert "Profile 'production' was required, and it passed" in proc.stderr + proc.stdout


PLAYBOOKS = [
    *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "playbooks").glob("*.yml")),
    "setup.yml",
    "teardown.yml",
]


@pytest.mark.parametrize("playbook", PLAYBOOKS)
def test_playbook_syntax(playbook):
    proc = run(str(BIN / "ansible-playbook"), "--syntax-check", playbook)
    assert proc.returncode == 0, proc.stdout + proc.stderr


MODULES = sorted(p.stem for p in (ROOT / "library").glob("*.py"))


@pytest.mark.parametrize("module", MODULES)
def test_module_documentation_renders(module):
    proc = run(str(BIN / "ansible-doc"), "-M", "library", module)
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    assert "OPTIONS" in text and "EXAMPLES" in text and "RETURN VALUES" in text, text[:2000]
