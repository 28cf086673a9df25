"""The lab's modules run in Ansible's worker process (plugins/action/lab_inprocess.py) and give the same
results as through AnsiballZ: a passing call, a refused argument, a warning, check mode, the task's
environment, a module that raises and one that never exits, on a real etcd on loopback. The in-process
path is really taken (no module process is started) unless LAB_INPROCESS_MODULES=0."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from etcd_fixtures import etcd_cluster_factory  # noqa: F401 - fixture

ROOT = Path(__file__).resolve().parents[2]
PLAYBOOK = ROOT / ".venv" / "bin" / "ansible-playbook"

CRASH = """#!/usr/bin/python
from ansible.module_utils.basic import AnsibleModule
DOCUMENTATION = "module: lab_test_crash"
def main():
    module = AnsibleModule({"how": {"type": "str"}})
    if module.params["how"] == "raise":
        raise ValueError("the module broke")
    if module.params["how"] == "warn":
        module.warn("a warning of the module")
        module.exit_json(changed=False, env=__import__("os").environ.get("LAB_TEST_ENV"))
    # "return": falls off the end without exit_json
main()
"""

SHIM = """from ansible.plugins.loader import action_loader
ActionModule = action_loader.get("lab_inprocess", class_only=True)
"""


def play(tmp_path: Path, endpoint: str) -> str:
    out = tmp_path / "results.json"
    tasks = f"""
- hosts: localhost
  gather_facts: false
  tasks:
    - name: status of a real member
      etcd_endpoint_status:
        endpoints: ["{endpoint}"]
      register: status
    - name: a member that is not there
      etcd_endpoint_status:
        endpoints: ["http://127.0.0.1:1"]
        timeout: 0.5
      register: absent
    - name: a bad argument
      lab_process:
        pidfile: {tmp_path}/x.pid
        state: bogus
      register: bad
      ignore_errors: true
    - name: check mode
      lab_process:
        pidfile: {tmp_path}/none.pid
        state: stopped
      check_mode: true
      register: checked
    - name: a warning and the task's environment
      lab_test_crash:
        how: warn
      environment:
        LAB_TEST_ENV: from the task
      register: warned
    - name: a module that raises
      lab_test_crash:
        how: raise
      register: raised
      ignore_errors: true
    - name: a module that never exits
      lab_test_crash:
        how: return
      register: returned
      ignore_errors: true
    - name: write the results
      ansible.builtin.copy:
        dest: {out}
        content: "{{{{ dict(status=status, absent=absent, bad=bad, checked=checked, warned=warned,
                          raised=raised, returned=returned) | to_json }}}}"
        mode: "0644"
"""
    (tmp_path / "play.yml").write_text(tasks)
    return str(tmp_path / "play.yml")


def run(tmp_path: Path, endpoint: str, inprocess: bool) -> tuple[dict, str]:
    library, actions = tmp_path / "library", tmp_path / "action"
    library.mkdir(exist_ok=True)
    actions.mkdir(exist_ok=True)
    (library / "lab_test_crash.py").write_text(CRASH)
    (actions / "lab_test_crash.py").write_text(SHIM)
    env = dict(
        os.environ,
        ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
        ANSIBLE_LIBRARY=f"{ROOT / 'library'}:{library}",
        ANSIBLE_ACTION_PLUGINS=f"{ROOT / 'plugins' / 'action'}:{actions}",
        LAB_INPROCESS_MODULES="1" if inprocess else "0",
    )
    proc = subprocess.run(
        [str(PLAYBOOK), "-vvv", "-i", "localhost,", "-c", "local",
         "-e", f"ansible_python_interpreter={sys.executable}", play(tmp_path, endpoint)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    return json.loads((tmp_path / "results.json").read_text()), proc.stdout


VOLATILE = {
    "db_size",
    "db_size_in_use",
    "raft_index",
    "raft_applied_index",
    "clock_offset",
    "revision",
    "report",
}


def stable(result):
    """A result without what changes between two calls (timings, sizes, indexes) or between two paths."""
    if isinstance(result, dict):
        return {
            k: stable(v)
            for k, v in result.items()
            if k not in VOLATILE and k not in ("exception", "module_stdout", "module_stderr", "invocation")
        }
    if isinstance(result, list):
        return [stable(v) for v in result]
    return result


def test_in_process_and_ansiballz_give_the_same_results(tmp_path, etcd_cluster_factory):  # noqa: F811
    cluster = etcd_cluster_factory(version="3.4", size=1)
    endpoint = cluster.endpoints[0]
    (tmp_path / "fast").mkdir()
    (tmp_path / "slow").mkdir()
    fast, fast_log = run(tmp_path / "fast", endpoint, inprocess=True)
    slow, slow_log = run(tmp_path / "slow", endpoint, inprocess=False)

    # The in-process path starts no module process; the other one starts one per call (AnsiballZ).
    assert "AnsiballZ_etcd_endpoint_status" not in fast_log
    assert "AnsiballZ_lab_test_crash" not in fast_log
    assert "AnsiballZ_etcd_endpoint_status" in slow_log

    assert stable(fast) == stable(slow)
    assert fast["status"]["endpoints"][0]["reachable"] is True
    assert fast["absent"]["endpoints"][0]["reachable"] is False
    assert fast["bad"]["failed"] is True and "value of state must be one of" in fast["bad"]["msg"]
    assert fast["checked"]["changed"] is False and not fast["checked"].get("failed")
    assert fast["warned"]["env"] == "from the task"
    assert fast["warned"]["warnings"] == ["a warning of the module"]
    assert fast["raised"]["failed"] is True and "the module broke" in fast["raised"]["msg"]
    assert fast["returned"]["failed"] is True and "did not handle its own exit" in fast["returned"]["msg"]
