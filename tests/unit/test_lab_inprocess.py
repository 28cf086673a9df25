"""When the lab's modules may run in Ansible's worker process (plugins/action/lab_inprocess.py): only under
this very Python environment, never under another interpreter that merely links to the same binary."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location(
    "lab_inprocess", ROOT / "plugins" / "action" / "lab_inprocess.py"
)
lab_inprocess = importlib.util.module_from_spec(spec)
spec.loader.exec_module(lab_inprocess)


def test_this_python_by_its_path_or_through_a_link_to_its_environment(tmp_path):
    assert lab_inprocess.same_python(sys.executable)
    if sys.prefix == sys.base_prefix:
        pytest.skip("the tests run outside a venv")
    link = tmp_path / "worktree-venv"
    link.symlink_to(sys.prefix)  # a git worktree whose .venv links to the main checkout's
    assert lab_inprocess.same_python(str(link / "bin" / "python"))


def test_another_interpreter_is_not_this_one(tmp_path):
    assert not lab_inprocess.same_python("")
    assert not lab_inprocess.same_python("/usr/bin/python3")  # the system Python: other site-packages
    assert not lab_inprocess.same_python(os.path.join(sys.prefix, "bin", "perl"))
    other = tmp_path / "other-venv" / "bin"
    other.mkdir(parents=True)
    assert not lab_inprocess.same_python(str(other / "python"))


@pytest.mark.parametrize(
    ("value", "enabled"), [(None, True), ("1", True), ("0", False), ("off", False), ("no", False)]
)
def test_the_switch(value, enabled):
    environ = {} if value is None else {"LAB_INPROCESS_MODULES": value}
    assert lab_inprocess.inprocess_enabled(environ) is enabled


def test_every_library_module_has_its_shim():
    modules = {p.stem for p in (ROOT / "library").glob("*.py")}
    shims = {p.stem for p in (ROOT / "plugins" / "action").glob("*.py")} - {"lab_inprocess"}
    assert modules == shims
    for name in shims:
        assert 'action_loader.get("lab_inprocess"' in (ROOT / "plugins" / "action" / f"{name}.py").read_text()
