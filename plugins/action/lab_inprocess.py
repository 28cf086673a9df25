# Copyright: etcd split-brain lab contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run the lab's own modules inside Ansible's worker process when the target is the controller itself.

Every task of the lab runs on localhost over the local connection, under the controller's own Python
(``ansible_python_interpreter: "{{ ansible_playbook_python }}"``). For such a task Ansible still packs the
module into an AnsiballZ zip, starts a new Python, imports ``ansible.module_utils.basic`` there (about 0.1 s
on a quiet host, more under load) and parses its output: about 0.2 s a call, which is most of what
recover.yml's steps cost (issue 12). Ansible runs every task in a worker process forked for that task
(``ansible.utils.multiprocessing``: the fork context), with its stdio detached; a module run in that
worker cannot touch the controller's own state, and the worker exits when the task is done.

So this action plugin runs the module file there, the way AnsiballZ's loader does
(``ansible.module_utils._internal._ansiballz._loader``): the same arguments, internal options and
serialization profile that ``_execute_module`` would send, the task's environment in ``os.environ``, the
module run as ``__main__``, its JSON output parsed by ``_parse_returned_data``. Any other task goes the way of
Ansible's own ``normal`` action (AnsiballZ), which this class inherits: another connection or host, become,
async, another interpreter, or ``LAB_INPROCESS_MODULES=0`` in the controller's environment (the benchmark
measures both; ``tests/integration/test_inprocess.py`` runs the modules both ways and compares the results).

Each module of ``library/`` has an action plugin of its own name in this directory that is this class.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import runpy
import sys

from ansible.module_utils.common.json import Direction, get_module_encoder
from ansible.plugins.action import ActionBase
from ansible.plugins.action.normal import ActionModule as NormalAction
from ansible.utils.vars import merge_hash
from ansible.vars.clean import remove_internal_keys

try:  # ansible-core 2.19: the module side's global warnings, reset between two runs in the same worker
    from ansible.module_utils.common import warnings as _module_warnings
except ImportError:  # pragma: no cover
    _module_warnings = None

ENV_SWITCH = "LAB_INPROCESS_MODULES"


def inprocess_enabled(environ=os.environ) -> bool:
    """False when the controller's environment turns the in-process path off (LAB_INPROCESS_MODULES=0)."""
    return environ.get(ENV_SWITCH, "1").strip().lower() not in ("0", "false", "no", "off")


def same_python(interpreter: str) -> bool:
    """Whether the task's interpreter is this Python: the same path, or a path into the same environment (a
    venv reached through a symlink, as a git worktree's .venv). The binary alone does not tell: every venv's
    python links to the system's."""
    if interpreter == sys.executable:
        return True
    if not interpreter or os.path.basename(interpreter) not in (
        "python",
        "python3",
        os.path.basename(sys.executable),
    ):
        return False
    env = os.path.realpath(os.path.dirname(os.path.dirname(interpreter)))
    return env == os.path.realpath(sys.prefix) and sys.prefix != sys.base_prefix


class ActionModule(NormalAction):
    """Run the task's module in this worker process when the target is the controller (see above); any other
    task goes the way of Ansible's own `normal` action (AnsiballZ), which this class inherits."""

    def _may_run_here(self) -> bool:
        """What can be told before the module is built: the switch, the connection, async and become."""
        return (
            inprocess_enabled()
            and self._connection.transport in ("local", "ansible.builtin.local")
            and not self._task.async_val
            and not self._play_context.become
        )

    def run(self, tmp=None, task_vars=None):
        task_vars = task_vars or {}
        if not self._may_run_here():
            return super().run(tmp, task_vars)
        name = self._task.action
        args = dict(self._task.args)
        bits, path = self._configure_module(module_name=name, module_args=args, task_vars=task_vars)
        if not same_python((bits.shebang or "").lstrip("#!").strip()):
            return super().run(tmp, task_vars)
        result = ActionBase.run(self, tmp, task_vars)
        self._update_module_args(name, args, task_vars)
        environment: dict = {}
        self._compute_environment_string(raw_environment_out=environment)
        out = run_module_file(path, args, bits.serialization_profile, environment)
        data = self._parse_returned_data({"stdout": out, "stderr": "", "rc": 0}, bits.serialization_profile)
        return merge_hash(result, finish_result(data))


def finish_result(data: dict) -> dict:
    """What _execute_module does to a module's parsed result before it returns it."""
    data.pop("_ansible_suppress_tmpdir_delete", None)
    remove_internal_keys(data)
    for name in ("stdout", "stderr"):
        if name in data and f"{name}_lines" not in data:
            data[f"{name}_lines"] = (data.get(name) or "").splitlines()
    return data


def run_module_file(path: str, args: dict, profile: str, environment: dict) -> str:
    """Run the module at path as __main__ with args; return what it printed (its JSON result)."""
    from ansible.module_utils import _internal, basic
    from ansible.module_utils._internal._ansiballz._loader import _handle_exception

    encoder = get_module_encoder(profile, Direction.CONTROLLER_TO_MODULE)
    basic._ANSIBLE_ARGS = json.dumps({"ANSIBLE_MODULE_ARGS": args}, cls=encoder).encode()
    basic._ANSIBLE_PROFILE = profile
    if _module_warnings is not None:
        _module_warnings._global_warnings.clear()
        _module_warnings._global_deprecations.clear()
    os.environ.update({str(k): str(v) for k, v in environment.items()})
    _lab_module_utils_importable()
    out = io.StringIO()
    # The module runs as on a target: ansible-core's module_utils check this flag (module.warn() returns its
    # warnings in the result there, instead of displaying them as the controller does).
    controller, _internal.is_controller = _internal.is_controller, False
    try:
        with contextlib.redirect_stdout(out):
            try:
                runpy.run_path(path, run_name="__main__")
                # As AnsiballZ's loader says it: a module must print its result and exit.
                raise RuntimeError("New-style module did not handle its own exit.")
            except SystemExit:
                pass
            except Exception as exc:  # what AnsiballZ's loader does: a failed result
                with contextlib.suppress(SystemExit):
                    _handle_exception(exc, profile)
    finally:
        _internal.is_controller = controller
    return out.getvalue()


def _lab_module_utils_importable() -> None:
    """The lab's module_utils (ansible.cfg) importable under ansible.module_utils, as AnsiballZ packs them."""
    import ansible.module_utils
    from ansible import constants as C

    for path in C.config.get_config_value("DEFAULT_MODULE_UTILS_PATH") or []:
        if path not in ansible.module_utils.__path__:
            ansible.module_utils.__path__.append(path)
