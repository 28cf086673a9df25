#!/usr/bin/python
"""Ansible module lab_role_settings: check role settings given with -e before a later play's role runs."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: lab_role_settings
short_description: Check the role settings given on the command line against the roles' argument specs
description:
  - Setup tears the running lab down before it builds the new one; a role's own argument spec is only
    checked when the role starts, after that. This module checks them first, in the play that checks
    every setting, so that a wrong C(-e lab_workload_rate=abc) stops the run before anything changes.
  - Reads C(meta/argument_specs.yml) of each role in O(roles). Only the role's own variables count (those
    whose name starts with the role's name, C(etcd_) for the etcd role); C(required) is ignored, as the roles
    set their defaults themselves.
  - Without O(given), returns the names of those variables, so that a playbook can look up which are set.
version_added: "1.0.0"
options:
  roles_dir:
    description: Directory that holds the roles.
    type: path
    required: true
  roles:
    description: Roles whose settings are checked.
    type: list
    elements: str
    required: true
  given:
    description: The settings that are set (name to value); each is checked against its role's spec.
    type: dict
extends_documentation_fragment:
  - lab_module
"""

EXAMPLES = r"""
- name: Setup | Find the names of the later roles' settings
  lab_role_settings:
    roles_dir: "{{ playbook_dir }}/../roles"
    roles: [etcd, lab_workload]
  register: lab_setup_role_settings

- name: Setup | Check the ones that are set
  lab_role_settings:
    roles_dir: "{{ playbook_dir }}/../roles"
    roles: [etcd, lab_workload]
    given:
      lab_workload_rate: abc
"""

RETURN = r"""
names:
  description: The roles' own setting names.
  returned: always
  type: list
  elements: str
checked:
  description: The given settings that were checked.
  returned: always
  type: list
  elements: str
"""

import os

import yaml
from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

SPEC_KEYS = ("type", "elements", "choices", "options", "no_log")


class SettingError(ValueError):
    """A setting is wrong; the message is one line that names it."""


def role_prefix(role: str) -> str:
    return "etcd_" if role == "etcd" else f"{role}_"


def read_options(roles_dir: str, role: str) -> dict[str, dict]:
    """The role's own options across its entry points (names prefixed with the role's name)."""
    path = os.path.join(roles_dir, role, "meta", "argument_specs.yml")
    try:
        with open(path, encoding="utf-8") as handle:
            specs = (yaml.safe_load(handle) or {}).get("argument_specs", {})
    except (OSError, yaml.YAMLError) as exc:
        raise SettingError(f"cannot read the argument spec of role {role} ({path}): {exc}") from None
    options: dict[str, dict] = {}
    for entry in specs.values():
        for name, spec in (entry.get("options") or {}).items():
            if name.startswith(role_prefix(role)):
                options.setdefault(name, {k: v for k, v in spec.items() if k in SPEC_KEYS})
    return options


def check_given(options: dict[str, dict], given: dict, owner: dict[str, str]) -> list[str]:
    """Check each given setting alone; SettingError with one line naming the first wrong one."""
    checked = []
    for name in sorted(given):
        if name not in options:
            continue
        result = ArgumentSpecValidator({name: options[name]}).validate({name: given[name]})
        if result.error_messages:
            detail = " ".join(" ".join(result.error_messages).split())
            raise SettingError(f"{name}={given[name]!r} is wrong for role {owner[name]}: {detail}")
        checked.append(name)
    return checked


def run_module() -> None:
    module = AnsibleModule(
        argument_spec={
            "roles_dir": {"type": "path", "required": True},
            "roles": {"type": "list", "elements": "str", "required": True},
            "given": {"type": "dict"},
        },
        supports_check_mode=True,
    )
    p = module.params
    try:
        options: dict[str, dict] = {}
        owner: dict[str, str] = {}
        for role in p["roles"]:
            for name, spec in read_options(p["roles_dir"], role).items():
                options.setdefault(name, spec)
                owner.setdefault(name, role)
        checked = check_given(options, p["given"] or {}, owner)
    except SettingError as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(changed=False, names=sorted(options), checked=checked)


def main() -> None:
    run_module()


if __name__ == "__main__":
    main()
