"""The roles' options have one source, meta/argument_specs.yml: every default in defaults/main.yml is an
option there (with the same default when the spec gives one), and each role's README names every option
and shows, in its ```yaml blocks, the same default values as defaults/main.yml."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent.parent
ROLES = sorted(p for p in (ROOT / "roles").iterdir() if (p / "meta" / "argument_specs.yml").exists())


def spec_options(role: Path) -> dict:
    specs = yaml.safe_load((role / "meta" / "argument_specs.yml").read_text())["argument_specs"]
    options: dict = {}
    for entry in specs.values():
        options.update(entry.get("options") or {})
    return options


def defaults(role: Path) -> dict:
    path = role / "defaults" / "main.yml"
    return (yaml.safe_load(path.read_text()) or {}) if path.exists() else {}


def readme_yaml_blocks(role: Path) -> dict:
    """The variables the README shows with a value, from its ```yaml blocks (playbook examples left out)."""
    shown: dict = {}
    for block in re.findall(r"```yaml\n(.*?)```", (role / "README.md").read_text(), re.S):
        data = yaml.safe_load(block)
        if isinstance(data, dict):
            shown.update(data)
    return shown


def test_every_role_has_an_argument_spec():
    assert {p.name for p in ROLES} == {p.name for p in (ROOT / "roles").iterdir() if p.is_dir()}


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_defaults_are_options_of_the_spec_with_the_same_default(role):
    options = spec_options(role)
    for name, value in defaults(role).items():
        assert name in options, f"{role.name}: default {name} is not in meta/argument_specs.yml"
        if "default" in options[name]:
            assert options[name]["default"] == value, f"{role.name}: {name} has two defaults"


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_readme_names_every_option_and_shows_the_defaults(role):
    readme = (role / "README.md").read_text()
    for name in spec_options(role):
        assert re.search(rf"\b{re.escape(name)}\b", readme), f"{role.name}/README.md does not name {name}"
    role_defaults = defaults(role)
    for name, value in readme_yaml_blocks(role).items():
        if name in role_defaults:
            assert value == role_defaults[name], f"{role.name}/README.md shows {name}: {value!r}"


def test_the_check_can_fail(tmp_path):
    """A README that shows another default than defaults/main.yml is caught."""
    role = tmp_path / "r"
    (role / "defaults").mkdir(parents=True)
    (role / "defaults" / "main.yml").write_text("r_size: 3\n")
    (role / "README.md").write_text("```yaml\nr_size: 5\n```\n")
    assert readme_yaml_blocks(role)["r_size"] != defaults(role)["r_size"]


def test_the_kind_platform_settings_are_declared_once():
    """The etcd image, the kubeconfig context and the namespace of the kind platform are written in one
    place (the inventory's group_vars); the roles' defaults refer to it."""
    files = [*ROOT.glob("roles/*/defaults/main.yml"), *ROOT.glob("roles/*/meta/argument_specs.yml")]
    kind_vars = ROOT / "inventory" / "local" / "group_vars" / "all" / "kind.yml"
    for needle in ("gcr.io/etcd-development/etcd:", "kube-system\n", "kind-{{ lab_plan.name"):
        holders = [p for p in [*files, kind_vars] if needle in p.read_text().replace('"', "")]
        assert holders == [kind_vars], (needle, holders)
