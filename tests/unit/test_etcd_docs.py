"""The modules' documentation as ansible-doc shows it (DOCUMENTATION merged with its doc fragments by
ansible's own loader): every etcd_* module's options match its argument spec, and the shared TLS/timeout
options come from the etcd_connection doc fragment, which matches the shared spec; every module of the lab
takes its authors and its check and diff mode attributes from the lab_module fragment, and they hold."""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path

import pytest
import yaml
from ansible.module_utils import basic
from ansible.module_utils.etcd_client import ETCD_COMMON_ARGUMENT_SPEC
from ansible.plugins.loader import fragment_loader
from ansible.utils.plugin_docs import get_docstring

ROOT = Path(__file__).resolve().parents[2]
LIBRARY = ROOT / "library"
FRAGMENTS = ROOT / "plugins" / "doc_fragments"
# ansible.cfg's doc_fragment_plugins, whatever the directory pytest runs from.
fragment_loader.add_directory(str(FRAGMENTS))


def fragment(name: str) -> dict:
    return yaml.safe_load(fragment_loader.get(name).DOCUMENTATION)


SHARED = fragment("etcd_connection")["options"]
LAB = fragment("lab_module")


def merged_doc(name: str) -> dict:
    """library/<name>.py's DOCUMENTATION with the fragments it extends merged in, as ansible-doc shows it."""
    doc, _examples, _returns, _metadata = get_docstring(
        str(LIBRARY / f"{name}.py"), fragment_loader, is_module=True
    )
    return doc


MODULES = sorted(p.stem for p in LIBRARY.glob("etcd_*.py"))
ALL_MODULES = sorted(p.stem for p in LIBRARY.glob("*.py"))


@pytest.mark.parametrize("name", MODULES)
def test_docs_parse_and_match_argument_spec(name):
    mod = importlib.import_module(name)
    doc = merged_doc(name)
    yaml.safe_load(mod.EXAMPLES)
    assert isinstance(yaml.safe_load(mod.RETURN), dict)
    assert doc["module"] == name
    spec = mod.argument_spec()
    options = doc["options"]
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
        assert "etcd_connection" not in doc["extends_documentation_fragment"]
        return
    assert "etcd_connection" in doc["extends_documentation_fragment"]
    assert not set(doc["options"]) & set(SHARED), f"{name} repeats shared options instead of the fragment"


class Built(Exception):
    """Raised instead of building the AnsibleModule: what a module's main() asked for is all a test needs."""


@pytest.mark.parametrize("name", ALL_MODULES)
def test_lab_fragment_holds_for_every_module(name, monkeypatch):
    """The authors and the check and diff mode attributes come from lab_module, and the module asks Ansible
    for the check mode that the fragment claims."""
    mod = importlib.import_module(name)
    own = yaml.safe_load(mod.DOCUMENTATION)
    assert "lab_module" in own["extends_documentation_fragment"]
    assert "author" not in own, f"{name} names its authors instead of the fragment"
    doc = merged_doc(name)
    assert doc["author"] == LAB["author"]
    for attribute, claim in LAB["attributes"].items():
        assert doc["attributes"][attribute]["support"] == claim["support"], attribute

    asked = {}

    def build(self, *args, **kwargs):
        asked.update(kwargs)
        raise Built

    monkeypatch.setattr(basic.AnsibleModule, "__init__", build)
    with pytest.raises(Built):
        mod.main()
    # What the fragment claims for check mode is what the module asks of Ansible.
    assert asked.get("supports_check_mode", False) is (LAB["attributes"]["check_mode"]["support"] == "full")


REFERENCE = (ROOT / "docs" / "modules.md").read_text()


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
