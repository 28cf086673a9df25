"""lab_role_settings: role settings given with -e checked against the roles' argument specs, table-driven."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from lab_role_settings import SettingError, check_given, read_options, role_prefix

ROOT = Path(__file__).resolve().parents[2]
ROLES_DIR = str(ROOT / "roles")
# The roles whose settings setup.yml checks before it changes anything, as its first play lists them.
SETUP_ROLES = yaml.safe_load((ROOT / "playbooks" / "setup.yml").read_text())[0]["vars"]["setup_checked_roles"]


def options_of(*roles: str) -> tuple[dict, dict]:
    options, owner = {}, {}
    for role in roles:
        for name, spec in read_options(ROLES_DIR, role).items():
            options.setdefault(name, spec)
            owner.setdefault(name, role)
    return options, owner


def test_only_the_roles_own_settings_count():
    options, owner = options_of(*SETUP_ROLES)
    assert "lab_workload_rate" in options and owner["lab_workload_rate"] == "lab_workload"
    assert "etcd_heartbeat_interval" in options and owner["etcd_heartbeat_interval"] == "etcd"
    assert "lab_plan" not in options and "lab_state_dir" not in options and "lab_member" not in options
    assert all(name.startswith(role_prefix(owner[name])) for name in options)
    assert not any("required" in spec or "default" in spec for spec in options.values())


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"lab_workload_rate": "abc"}, "lab_workload_rate='abc' is wrong for role lab_workload"),
        ({"fault_partition_port": "http"}, "fault_partition_port='http' is wrong for role fault_partition"),
        (
            {"lab_platform_kill_timeout": "soon"},
            "lab_platform_kill_timeout='soon' is wrong for role lab_platform",
        ),
        ({"lab_workload_state": "paused"}, "lab_workload_state='paused' is wrong"),
    ],
)
def test_a_wrong_setting_is_one_line_naming_it(given, message):
    options, owner = options_of(*SETUP_ROLES)
    with pytest.raises(SettingError) as err:
        check_given(options, given, owner)
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(
    "given",
    [
        {},
        {"lab_workload_rate": "5"},
        {"lab_workload_rate": 2.5, "fault_partition_port": 2380},
        {"other_var": "x"},
    ],
)
def test_right_or_foreign_settings_pass(given):
    options, owner = options_of(*SETUP_ROLES)
    checked = check_given(options, given, owner)
    assert checked == sorted(name for name in given if name in options)


def test_a_role_without_a_spec_is_named(tmp_path):
    with pytest.raises(SettingError, match="cannot read the argument spec of role nosuch"):
        read_options(str(tmp_path), "nosuch")
