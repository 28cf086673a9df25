"""Every etcd_* module: DOCUMENTATION/EXAMPLES/RETURN parse, options match the argument spec, and the
shared TLS/timeout options come from the etcd_connection doc fragment, which matches the shared spec."""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path

import pytest
import yaml
from ansible.module_utils.etcd_client import ETCD_COMMON_ARGUMENT_SPEC

FRAGMENT_PATH = Path(__file__).resolve().parents[2] / "plugins" / "doc_fragments" / "etcd_connection.py"
_spec = importlib.util.spec_from_file_location("etcd_connection_fragment", FRAGMENT_PATH)
_fragment = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_fragment)
SHARED = yaml.safe_load(_fragment.ModuleDocFragment.DOCUMENTATION)["options"]


def documented_options(mod) -> dict:
    """The module's own options plus those of the fragments it extends, as ansible-doc shows them."""
    doc = yaml.safe_load(mod.DOCUMENTATION)
    options = dict(doc["options"])
    if "etcd_connection" in doc.get("extends_documentation_fragment", []):
        options.update(SHARED)
    return options


MODULES = sorted(p.stem for p in (Path(__file__).resolve().parents[2] / "library").glob("etcd_*.py"))


@pytest.mark.parametrize("name", MODULES)
def test_docs_parse_and_match_argument_spec(name):
    mod = importlib.import_module(name)
    doc = yaml.safe_load(mod.DOCUMENTATION)
    yaml.safe_load(mod.EXAMPLES)
    assert isinstance(yaml.safe_load(mod.RETURN), dict)
    assert doc["module"] == name
    assert doc["attributes"]["check_mode"]["support"] == "full"
    spec = mod.argument_spec()
    options = documented_options(mod)
    assert set(options) == set(spec)
    for option, entry in spec.items():
        documented = options[option]
        assert documented.get("type", "str") == entry.get("type", "str"), option
        assert documented.get("choices") == entry.get("choices"), option
        assert documented.get("default") == entry.get("default"), option
        assert bool(documented.get("required", False)) == bool(entry.get("required", False)), option
        assert documented.get("elements") == entry.get("elements"), option


def test_fragment_documents_exactly_the_shared_spec():
    assert set(SHARED) == set(ETCD_COMMON_ARGUMENT_SPEC)


@pytest.mark.parametrize("name", MODULES)
def test_shared_options_come_from_the_fragment(name):
    mod = importlib.import_module(name)
    doc = yaml.safe_load(mod.DOCUMENTATION)
    if "endpoints" not in mod.argument_spec():
        # etcd_offline_copy talks to no member (only to the plain-http copy it starts on loopback).
        assert not set(doc["options"]) & set(SHARED), f"{name} documents connection options it has no use for"
        return
    assert doc["extends_documentation_fragment"] == ["etcd_connection"]
    assert not set(doc["options"]) & set(SHARED), f"{name} repeats shared options instead of the fragment"


REFERENCE = (Path(__file__).resolve().parents[2] / "docs" / "modules.md").read_text()


@pytest.mark.parametrize("name", MODULES)
def test_the_reference_lists_every_module(name):
    """docs/modules.md names every etcd_* module in its table and in its ansible-doc commands."""
    assert f"| `{name}` |" in REFERENCE
    assert f"ansible-doc -M library {name}\n" in REFERENCE


def test_the_reference_names_the_shared_options_as_the_spec_does():
    for option, spec in ETCD_COMMON_ARGUMENT_SPEC.items():
        assert f"`{option}`" in REFERENCE, option
        for alias in spec.get("aliases", []):
            assert f"`{alias}`" in REFERENCE and "aliases" in REFERENCE, alias
