"""End to end: incidents 0, 3 and 5 of the short fixed-seed campaign (tests/incidentlib.py): hint 8 by hand,
the partition lifted while the fork runs, the quorum lost and restored with the fork's writes replayed."""

from __future__ import annotations

import pytest
from incidentlib import run_case

pytestmark = pytest.mark.lab


@pytest.mark.parametrize("case", ["hint8_by_hand", "healed_while_fork_runs", "restore_replays_the_fork"])
def test_incident(case, tmp_path):
    run_case(case, tmp_path)
