"""Fixtures of the end-to-end tests: each test starts on a host without a lab and leaves none behind."""

from __future__ import annotations

import pytest
from lablib import lab_leftovers, teardown_lab


@pytest.fixture
def clean_host():
    assert not lab_leftovers(), f"a lab is already up on this host: {lab_leftovers()}"
    yield
    teardown_lab()
    assert not lab_leftovers(), lab_leftovers()
