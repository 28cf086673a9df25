"""Fixtures of the end-to-end tests: each test starts on a host without a lab and leaves none behind."""

from __future__ import annotations

import pytest


@pytest.fixture
def clean_host():
    # lablib reads the worker's lab identity once, when first imported; pytest imports this conftest before
    # pytest_configure sets that identity when a path under tests/e2e is given on the command line, so
    # lablib is imported here, at the first test, not at the top.
    from lablib import lab_leftovers, teardown_lab

    assert not lab_leftovers(), f"a lab is already up on this host: {lab_leftovers()}"
    yield
    teardown_lab()
    assert not lab_leftovers(), lab_leftovers()
