"""tools/lab_imports.py, the one way the lab's scripts and tests import its modules and module_utils, and the
four users that once patched ansible.module_utils.__path__ each on their own."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import ansible.module_utils
import lab_imports

ROOT = Path(__file__).resolve().parents[2]


def test_module_utils_and_modules_come_from_this_repository():
    probe = lab_imports.lab_module_utils("etcd_probe")
    assert probe.__name__ == "ansible.module_utils.etcd_probe"
    assert Path(probe.__file__) == ROOT / "module_utils" / "etcd_probe.py"
    status = lab_imports.lab_module("etcd_endpoint_status")
    assert Path(status.__file__) == ROOT / "library" / "etcd_endpoint_status.py"


def test_use_lab_code_is_idempotent():
    for _ in range(3):
        assert lab_imports.use_lab_code() == ROOT
    assert list(ansible.module_utils.__path__).count(str(ROOT / "module_utils")) == 1
    assert sys.path.count(str(ROOT / "library")) == 1


def test_only_the_helper_touches_ansible_module_utils_path():
    files = ["lab", *map(str, (ROOT / "roles").rglob("*.py")), *map(str, (ROOT / "tests").rglob("*.py"))]
    files += [*map(str, (ROOT / "benchmarks").rglob("*.py")), *map(str, (ROOT / "library").rglob("*.py"))]
    files += [*map(str, (ROOT / "plugins").rglob("*.py")), *map(str, (ROOT / "tools").rglob("*.py"))]
    # Besides the helper, only the in-process action plugin, which runs inside Ansible and takes the
    # module_utils paths from Ansible's configuration (ansible.cfg, ANSIBLE_MODULE_UTILS) as AnsiballZ does.
    allowed = {str(Path(__file__).resolve()), str(ROOT / "tools" / "lab_imports.py")}
    allowed.add(str(ROOT / "plugins" / "action" / "lab_inprocess.py"))
    patched = [f for f in files if f not in allowed and "module_utils.__path__" in (ROOT / f).read_text()]
    assert patched == []


def test_the_scripts_load_the_lab_code_in_a_fresh_python():
    """The recorder, the watcher and the lab script, in a Python of its own (nothing set up by pytest)."""
    code = (
        "import importlib.machinery, importlib.util\n"
        "def load(path, name):\n"
        "    spec = importlib.util.spec_from_loader(name, importlib.machinery.SourceFileLoader(name, path))\n"
        "    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod); return mod\n"
        f"root = {str(ROOT)!r}\n"
        "rec = load(root + '/roles/lab_workload/files/lab_recorder.py', 'rec')\n"
        "watch = load(root + '/roles/safeguards/files/lab_watch.py', 'watch')\n"
        "lab = load(root + '/lab', 'labcli')\n"
        "print(rec.load_client().__name__, *(m.__name__ for m in watch.load_lab_modules()),"
        " lab.endpoint_status_module().__name__)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [
        "ansible.module_utils.etcd_probe",
        "etcd_endpoint_status",
        "etcd_snapshot",
        "etcd_endpoint_status",
    ]
