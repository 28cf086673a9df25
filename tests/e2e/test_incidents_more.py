"""End to end: incidents 1, 2 and 4 of the short fixed-seed campaign (tests/incidentlib.py): recover.yml
SIGKILLed mid-rejoin, a fork delete, the fork moved aside by hand (recover.yml once more: nothing to do)."""

from __future__ import annotations

import pytest
from incidentlib import run_case

pytestmark = pytest.mark.lab


@pytest.mark.parametrize("case", ["recover_sigkilled", "fork_delete", "fork_moved_aside_by_hand"])
def test_incident(case, tmp_path):
    run_case(case, tmp_path)
