"""Every etcd_* module: DOCUMENTATION/EXAMPLES/RETURN parse, options match the argument spec, and the
shared TLS/timeout options are documented with the shared text from module_utils."""

from __future__ import annotations

import importlib

import pytest
import yaml
from ansible.module_utils.etcd_client import ETCD_COMMON_ARGUMENT_SPEC, ETCD_COMMON_DOC_OPTIONS

MODULES = ["etcd_endpoint_status", "etcd_member", "etcd_snapshot", "etcd_kv_diff"]


@pytest.mark.parametrize("name", MODULES)
def test_docs_parse_and_match_argument_spec(name):
    mod = importlib.import_module(name)
    doc = yaml.safe_load(mod.DOCUMENTATION)
    yaml.safe_load(mod.EXAMPLES)
    assert isinstance(yaml.safe_load(mod.RETURN), dict)
    assert doc["module"] == name
    assert doc["attributes"]["check_mode"]["support"] == "full"
    spec = mod.argument_spec()
    assert set(doc["options"]) == set(spec)
    for option, entry in spec.items():
        documented = doc["options"][option]
        assert documented.get("type", "str") == entry.get("type", "str"), option
        assert documented.get("choices") == entry.get("choices"), option
        assert documented.get("default") == entry.get("default"), option
        assert bool(documented.get("required", False)) == bool(entry.get("required", False)), option
        assert documented.get("elements") == entry.get("elements"), option


@pytest.mark.parametrize("name", MODULES)
def test_shared_options_use_the_shared_text(name):
    mod = importlib.import_module(name)
    shared = yaml.safe_load(ETCD_COMMON_DOC_OPTIONS)
    assert set(shared) == set(ETCD_COMMON_ARGUMENT_SPEC)
    options = yaml.safe_load(mod.DOCUMENTATION)["options"]
    for option, text in shared.items():
        assert options[option] == text, f"{name}: option {option} differs from ETCD_COMMON_DOC_OPTIONS"
