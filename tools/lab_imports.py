"""The one supported way for the lab's own scripts and tests to import its Ansible modules and their shared
code outside Ansible.

A module in library/ imports its shared code as `ansible.module_utils.<name>`: Ansible resolves that from
the repository's module_utils/ (ansible.cfg: module_utils = module_utils) and packs it into the module's zip.
A script that imports the same code in its own process (the lab script, the recorder, the safeguards'
watcher, the tests, the benchmarks) needs the same names; this helper gives them, and nothing else should
touch ansible.module_utils.__path__:

    sys.path.insert(0, str(REPOSITORY / "tools"))  # where this file is
    from lab_imports import lab_module, lab_module_utils

    probe = lab_module_utils("etcd_probe")  # module_utils/etcd_probe.py as Ansible names it
    status = lab_module("etcd_endpoint_status")  # library/etcd_endpoint_status.py

Needs ansible-core in the running Python (the lab's .venv); without it the import of ansible raises
ImportError, which a caller may catch.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent


def use_lab_code() -> Path:
    """Make module_utils/ resolve as ansible.module_utils.* and library/ importable (idempotent); returns the
    repository's root."""
    import ansible.module_utils

    module_utils = str(ROOT / "module_utils")
    if module_utils not in ansible.module_utils.__path__:
        ansible.module_utils.__path__.append(module_utils)
    library = str(ROOT / "library")
    if library not in sys.path:
        sys.path.insert(0, library)
    return ROOT


def lab_module_utils(name: str) -> ModuleType:
    """module_utils/<name>.py, imported as ansible.module_utils.<name>."""
    use_lab_code()
    return importlib.import_module(f"ansible.module_utils.{name}")


def lab_module(name: str) -> ModuleType:
    """library/<name>.py, with its module_utils imports resolved as Ansible resolves them."""
    use_lab_code()
    return importlib.import_module(name)
