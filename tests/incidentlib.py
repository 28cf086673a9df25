"""The incident cases of tests/e2e/test_incidents*.py: a short fixed-seed campaign (benchmarks/incidents.py)
in a lab of its own, each incident forced into the shape it must cover (see --force in the campaign's help):
  0  hint 8 by hand: the learner ran `member remove` of the fork's id and `member add` of the same name, and
     did not start it, before recover.yml;
  1  recover.yml SIGKILLed (its whole process group) in the middle of its rejoin step (after the member to
     rejoin was removed), then run again to the end;
  2  a fork delete conflict: a key written before the split is deleted on the fork (and logged in the ledger
     as an acknowledged delete) while the majority still holds it;
  3  the partition lifted while the fork still runs, recover.yml started at once (etcd 3.5);
  4  the fork stopped by hand, its data dir moved aside, the member added back and started empty;
  5  a majority member killed with its data dir (no quorum): refused, then restored with the opt-in.
Each must end with recover.yml and verify.yml passing, the independent checker's verdict ok and 0 lost
operations. The campaign's lab is `sbinc` (198.18.222.0/24, .lab-incidents/) unless INCIDENTS_LAB_NAME,
INCIDENTS_LAB_SUBNET and INCIDENTS_LAB_STATE_DIR say otherwise (tests/conftest.py gives each
pytest-xdist worker one of its own); it is torn down after each incident. The cases are split over two test
files so that two workers run them side by side.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from lablib import ROOT

CAMPAIGN_LAB = os.environ.get("INCIDENTS_LAB_NAME", "sbinc")
# The default lab's shape (etcd-2 cut off and forced, etcd-0's clock 90 s ahead). The interrupted run is
# killed at "Rejoin | Move the old data dir aside", right after the member to rejoin was removed.
COMMON = ["--force", "size=3", "--force", "source=distro", "--force", "split_seconds=8", "--force",
          'isolated=["etcd-2"]', "--force", "forced=etcd-2", "--force", "skew_member=etcd-0", "--force",
          "skew_offset=90"]  # fmt: skip
INCIDENTS = {
    "hint8_by_hand": (0, ["--force", "action=remove_add", "--force", "fork_delete=false", "--force",
                          "interrupt=null"]),
    "recover_sigkilled": (1, ["--force", "action=nothing", "--force", "fork_delete=false", "--force",
                              "interrupt=SIGKILL", "--force", "interrupt_times=1", "--force",
                              'interrupt_at=["Rejoin | Move the old data dir aside"]']),
    "fork_delete": (2, ["--force", "action=nothing", "--force", "fork_delete=true", "--force",
                        "interrupt=null"]),
    # Found by the campaign (seed 5, incident 5): the partition lifted while the fork runs and recover.yml
    # started at once, while the majority's members were still shutting down one after the other.
    "healed_while_fork_runs": (3, ["--force", "action=heal_first", "--force", "source=pypi", "--force",
                                   "fork_delete=false", "--force", "interrupt=null"]),
    # Found by the campaign (seed 5, incidents 4 and 7): the operator stopped the fork, moved its data dir
    # aside and started the member again with an empty one: the fork's writes are only in the moved dir.
    # Without a clock offset (seed 61206, incident 40) the cluster then looks healthy: recover.yml must still
    # read the moved dir, and a second run must find nothing left to do (--again).
    "fork_moved_aside_by_hand": (4, ["--force", "action=add_started", "--force", "fork_delete=false",
                                     "--force", "interrupt=null", "--force", "skew_offset=0", "--again"]),
    # Found by the campaign (seed 61207, incident 28): a majority member killed with its data dir on 3 members
    # (no quorum): refused, then restored from the other majority member with the opt-in; the fork's writes,
    # exported in step 3, were listed as lost instead of replayed.
    "restore_replays_the_fork": (5, ["--force", "action=kill_majority", "--force", "disk_lost=true",
                                     "--force", "fork_delete=false", "--force", "interrupt=null"]),
}  # fmt: skip


def case_action(case: str) -> str:
    forces = INCIDENTS[case][1]
    return next(f.split("=", 1)[1] for f in forces if f.startswith("action="))


def campaign_namespaces() -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
    return [n for n in out if n.startswith(f"{CAMPAIGN_LAB}-")]


def run_case(case: str, tmp_path) -> None:
    """Run one incident through the campaign and check its result."""
    k, forces = INCIDENTS[case]
    out = tmp_path / "results.jsonl"
    argv = [sys.executable, "benchmarks/incidents.py", "--seed", "e2e", "--only", str(k), *COMMON, *forces,
            "--out", str(out)]  # fmt: skip
    proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=1500)
    output = f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    assert out.exists(), f"the campaign wrote no result: {output}"
    (result,) = [json.loads(line) for line in out.read_text().splitlines()]
    detail = f"{output}\n{json.dumps(result, indent=1)[:4000]}"
    assert not campaign_namespaces(), "the campaign left its lab up"
    assert "teardown_error" not in result, detail

    # The incident had the shape this case is about.
    if case == "hint8_by_hand":
        assert result["params"]["action"] == "remove_add" and "operator_error" not in result, detail
    elif case == "recover_sigkilled":
        assert result["interrupted_runs"] == 1, detail
        assert result["recover_runs"][0]["rc"] != 0 and result["recover_runs"][-1]["tasks"] > 0, detail
    elif case == "fork_delete":
        assert result["fork_delete"] and result["fork_delete"]["deleted"] == 1, detail
    elif case == "restore_replays_the_fork":
        assert result["refused_by_design"] == 1 and result["lost_reported"] == 0, detail
    else:
        assert result["params"]["action"] == case_action(case) and "operator_error" not in result, detail

    # Nothing acknowledged was lost, and the checker found every operation accounted for.
    assert result["operations"] > 0, detail
    assert result["lost"] == 0, detail
    assert result["check_failures"] == [], detail
    assert result["cause"] is None, detail
    if "--again" in forces:
        assert result["again"]["healthy"] and result["again"]["changed"] == 0, detail
        recovered = (ROOT / ".incidents" / "artifacts" / f"e2e-{k}" / "recover.log").read_text()
        assert "Data dirs that no member uses and that no recovery has read" in recovered, detail
    assert proc.returncode == 0, detail
