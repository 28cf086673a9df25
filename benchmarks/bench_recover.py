#!/usr/bin/env python3
"""Benchmark: recover.yml, per step, against the same steps as a plain shell script of etcdctl commands.

For each size (3 and 5 members by default): build the lab, put N keys (default 10k, the same on both sides, as
data from before the split) through the JSON gateway in bounded batches, run `ansible-playbook
playbooks/recover.yml` and read each step's time from the lab_timing callback's log (.lab/logs/); then build
the lab again, put the same keys, and run the floor: a bash script of etcdctl commands doing the same steps
(status, stop writers, snapshot each side, export and diff, stop the fork, delete the partition, remove / move
aside / add / start each member to rejoin, replay fork-only keys and quarantine conflicts in txn batches,
endpoint hashkv). The floor does not revert the clock skew (no etcdctl command can) and prints no
explanations. Prints both and the ratio.

In the same run, the lab's other figures against the goals of issue 12: `./setup.sh` from a clean host and
again over the running lab, `./lab status` (median of 5), a second recover.yml (nothing to do), verify.yml
and `./teardown.sh`. Traffic goes only to the lab's own addresses while the lab is up; every loop is bounded.
The lab is the learner's (`sblab`, `.lab/`) unless LAB_NAME, LAB_SUBNET and LAB_STATE_DIR name another, as for
./setup.sh; a lab already up under that name is torn down first.

With --without-inprocess, also recover.yml on a third build of the lab with LAB_INPROCESS_MODULES=0 (every
module call through AnsiballZ, a Python started per call, as without plugins/action/lab_inprocess.py).

    .venv/bin/python benchmarks/bench_recover.py [--members 3 5] [--keys 10000] [--source distro]
                                                 [--without-inprocess]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STATE = Path(os.environ.get("LAB_STATE_DIR", ROOT / ".lab"))
LAB_NAME = os.environ.get("LAB_NAME", "sblab")
# Issue 12's goals, in seconds (the recover.yml ratio is against the shell floor measured in the same run).
GOALS = {
    "setup": {3: 20.0, 5: 30.0},
    "again": 3.0,
    "verify": 2.0,
    "status": 0.5,
    "teardown": 5.0,
    "ratio": 2.0,
}
PLAYBOOK = str(ROOT / ".venv" / "bin" / "ansible-playbook")

STEP_NAMES = {  # as recover.yml prints them (README, Recovery)
    "1": "detect (or refuse)",
    "2": "stop writes",
    "3": "back up every side",
    "4": "revive",
    "5": "conflicts",
    "6": "stop forks",
    "7": "heal",
    "8": "rejoin (or restore)",
    "9": "reconcile",
    "10": "verify",
}


def sh(argv, timeout=900, **kw):
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=timeout, **kw)


def timed(argv, **kw):
    start = time.monotonic()
    proc = sh(argv, **kw)
    return time.monotonic() - start, proc


def setup(members, source):
    """(seconds, lab.json) of ./setup.sh to the broken state."""
    # The floor's script restarts members with plain http URLs: both sides are measured on the plain lab.
    seconds, proc = timed(
        ["./setup.sh", "-e", f"lab_members={members}", "-e", f"etcd_source={source}", "-e", "lab_tls=false"]
    )
    if proc.returncode != 0:
        teardown()
        sys.exit(f"setup failed:\n{proc.stdout[-3000:]}{proc.stderr[-2000:]}")
    return seconds, json.loads((STATE / "lab.json").read_text())


def teardown():
    seconds, proc = timed(["./teardown.sh"])
    if proc.returncode != 0:
        sys.exit(f"teardown failed:\n{proc.stdout[-3000:]}{proc.stderr[-2000:]}")
    return seconds


def playbook(name, env=None):
    seconds, proc = timed([PLAYBOOK, f"playbooks/{name}.yml"], env=env)
    if proc.returncode != 0:
        teardown()
        sys.exit(f"{name}.yml failed:\n{proc.stdout[-4000:]}")
    return seconds, proc.stdout


def status_seconds(times=5):
    """Median wall time of ./lab status (what each member says)."""
    runs = []
    for _ in range(times):
        seconds, proc = timed([str(ROOT / "lab"), "status"])
        if proc.returncode != 0:
            sys.exit(f"./lab status failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
        runs.append(seconds)
    return statistics.median(runs)


def gateway(url, path, body):
    req = urllib.request.Request(url + path, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.load(resp)


def preload(lab, keys, batch=100):
    """The same N keys on the majority and on the fork (data from before the split)."""
    b64 = lambda s: base64.b64encode(s.encode()).decode()  # noqa: E731
    targets = [
        next(m for m in lab["members"] if m["name"] == lab["majority"][0]),
        next(m for m in lab["members"] if m["name"] == lab["forced"]),
    ]
    for member in targets:
        for start in range(0, keys, batch):  # bounded: keys / batch requests
            ops = [
                {"request_put": {"key": b64(f"/bench/k{i:06d}"), "value": b64(f"v{i:06d}-" + "x" * 64)}}
                for i in range(start, min(start + batch, keys))
            ]
            gateway(member["client_url"], "/v3/kv/txn", {"success": ops})


def ansible_steps(log_text):
    """Per-step seconds from the lab_timing callback's log: every task counts for the 'Recover | Step N'
    include that ran last before it (the tasks of a step come after its include)."""
    steps, current = {}, None
    in_order = False
    for line in log_text.splitlines():
        if line.startswith("# in the order they ran"):
            in_order = True
            continue
        if line.startswith("# slowest first"):
            break
        m = re.match(r"^\s*\d+:\d\d:\d\d\.\d+\s+([\d.]+)\s+(.*)$", line) if in_order else None
        if not m:
            continue
        step = re.search(r"Recover \| Step (\d+) \|", m[2])
        current = step[1] if step else current
        if current is not None:
            steps[current] = steps.get(current, 0.0) + float(m[1])
    return steps


def newest_log(playbook):
    """The lab_timing callback's log of the last run of playbook (under the state dir's logs/)."""
    logs = sorted((STATE / "logs").glob(f"{playbook}-*.log"))
    return logs[-1].read_text() if logs else ""


FLOOR = r"""
set -euo pipefail
export ETCDCTL_API=3
E={bin}/etcdctl
S={state}
LEADER={leader_url}
FORK={fork_url}
ALL={all_urls}
T0=$(date +%s.%N)
step() {{ now=$(date +%s.%N); echo "STEP $1 $(echo "$now - $T0" | bc)"; T0=$now; }}
# 1 detect
for u in ${{ALL//,/ }}; do
  $E --endpoints=$u --command-timeout=3s endpoint status -w json >/dev/null 2>&1 || true
  $E --endpoints=$u --command-timeout=3s member list -w json >/dev/null 2>&1 || true; done
step 1
# 2 stop writers
for p in $S/workload/*.pid; do kill $(cat $p) 2>/dev/null || true; done
for i in $(seq 1 100); do n=0; for p in $S/workload/*.pid; do [ -d /proc/$(cat $p) ] && n=$((n+1)); done;
  [ $n -eq 0 ] && break; sleep 0.1; done
step 2
# 3 back up every side
mkdir -p $S/floor
$E --endpoints=$LEADER snapshot save $S/floor/auth.db >/dev/null
$E --endpoints=$FORK snapshot save $S/floor/fork.db >/dev/null
$E --endpoints=$FORK get "" --from-key -w json > $S/floor/fork-export.json
step 3
# 5 conflicts: key<TAB>value lines of both sides, then comm
$E --endpoints=$LEADER get "" --from-key | paste - - | sort > $S/floor/auth.tsv
$E --endpoints=$FORK get "" --from-key | paste - - | sort > $S/floor/fork.tsv
comm -13 $S/floor/auth.tsv $S/floor/fork.tsv > $S/floor/fork-differs.tsv
cut -f1 $S/floor/auth.tsv | sort > $S/floor/auth.keys
step 5
# 6 stop the fork (and nothing else runs on that side)
for m in {rejoin}; do p=$(cat $S/nodes/$m/etcd.pid 2>/dev/null || echo 0); kill $p 2>/dev/null || true; done
for i in $(seq 1 600); do n=0; for m in {rejoin}; do p=$(cat $S/nodes/$m/etcd.pid 2>/dev/null || echo 0);
  [ $p -gt 0 ] && [ -d /proc/$p ] && n=$((n+1)); done; [ $n -eq 0 ] && break; sleep 0.1; done
step 6
# 7 heal
for ns in {isolated_ns}; do ip netns exec $ns nft delete table inet {lab}_partition 2>/dev/null || true; done
step 7
# 8 rejoin each member
{rejoin_script}
step 8
# 9 reconcile: fork-only keys put, conflicting keys quarantined, in txn batches of 100
while IFS=$'\t' read -r k v; do
  if grep -qxF -- "$k" $S/floor/auth.keys; then echo "put /recovery/quarantine/{fork}$k $v"
  else echo "put $k $v"; fi
done < $S/floor/fork-differs.tsv > $S/floor/ops.txt
split -l 100 $S/floor/ops.txt $S/floor/ops.part. || true
for f in $S/floor/ops.part.*; do [ -e "$f" ] || continue
  printf '\n%s\n\n\n' "$(cat $f)" | $E --endpoints=$LEADER txn >/dev/null; done
step 9
# 10 verify
$E --endpoints=$ALL endpoint status -w json >/dev/null
$E --endpoints=$ALL endpoint hashkv -w json >/dev/null
step 10
"""

REMOVE = r"""
id=$($E --endpoints=$LEADER member list | awk -F', ' '$3=="{m}"{{print $1}}')
# As etcd_member does: propose a conf change only once a linearizable read works (the leader has committed
# an entry of its term). A remove sent while the member has no leader is never proposed: it waits for its
# deadline ("context deadline exceeded").
for i in $(seq 1 150); do
  $E --endpoints=$LEADER --command-timeout=2s get /floor-probe >/dev/null 2>&1 && break; sleep 0.2; done
$E --endpoints=$LEADER member remove $id >/dev/null
mv $S/nodes/{m}/data $S/nodes/{m}/data.moved-floor
"""

REJOIN = r"""
for i in $(seq 1 30); do
  out=$($E --endpoints=$LEADER member add {m} --peer-urls={peer} 2>&1) && break; sleep 1; done
ic=$(echo "$out" | sed -n 's/^ETCD_INITIAL_CLUSTER="\(.*\)"$/\1/p')
ip netns exec {ns} setsid {bin}/etcd --name={m} --data-dir=$S/nodes/{m}/data \
  --listen-client-urls={client},http://127.0.0.1:2379 --advertise-client-urls={client} \
  --listen-peer-urls={peer} --initial-advertise-peer-urls={peer} --initial-cluster="$ic" \
  --initial-cluster-token={lab}-cluster --initial-cluster-state=existing \
  >> $S/nodes/{m}/etcd.log 2>&1 < /dev/null &
echo $! > $S/nodes/{m}/etcd.pid
for i in $(seq 1 150); do
  a=$($E --endpoints=$LEADER --dial-timeout=1s --command-timeout=1s endpoint status -w json 2>/dev/null \
    | grep -o '"revision":[0-9]*' | head -1) || true
  b=$($E --endpoints={client} --dial-timeout=1s --command-timeout=1s endpoint status -w json 2>/dev/null \
    | grep -o '"revision":[0-9]*' | head -1) || true
  [ -n "$b" ] && [ "$a" = "$b" ] && break; sleep 0.2; done
[ -n "$b" ] && [ "$a" = "$b" ]
"""


def floor_script(lab):
    by = {m["name"]: m for m in lab["members"]}
    leader = by[lab["majority"][0]]["client_url"]
    rejoin = list(lab["isolated"])
    # etcd refuses to add a voter while a voter is not connected: remove every member to rejoin first.
    parts = [REMOVE.format(m=m) for m in rejoin] + [
        REJOIN.format(
            m=m,
            peer=by[m]["peer_url"],
            client=by[m]["client_url"],
            ns=by[m]["netns"],
            bin=lab["etcd_bin_dir"],
            lab=lab["name"],
        )
        for m in rejoin
    ]
    return FLOOR.format(
        bin=lab["etcd_bin_dir"],
        state=STATE,
        leader_url=leader,
        fork_url=by[lab["forced"]]["client_url"],
        all_urls=",".join(m["client_url"] for m in lab["members"]),
        rejoin=" ".join(rejoin),
        isolated_ns=" ".join(by[m]["netns"] for m in lab["isolated"]),
        rejoin_script="\n".join(parts),
        fork=lab["forced"],
        lab=lab["name"],
    )


def run_size(members, keys, source, without_inprocess=False):
    """The figures of one size: the lab's own times, recover.yml's steps, the floor's steps."""
    teardown()  # a clean host: the first setup builds everything
    fig = {}
    fig["setup"], lab = setup(members, source)
    fig["rebuild"], lab = setup(members, source)
    fig["status"] = status_seconds()
    preload(lab, keys)
    fig["recover"], _ = playbook("recover")
    steps = ansible_steps(newest_log("recover"))
    fig["again"], again = playbook("recover")
    if not re.search(r"changed=0\b", again):
        teardown()
        sys.exit(f"the second recover.yml changed something:\n{again[-3000:]}")
    fig["verify"], _ = playbook("verify")
    fig["teardown"] = teardown()

    _, lab = setup(members, source)
    preload(lab, keys)
    start = time.monotonic()
    floor = sh(["bash", "-c", floor_script(lab)])
    fig["floor"] = time.monotonic() - start
    if floor.returncode != 0:
        print(floor.stdout[-2000:], floor.stderr[-2000:])
    floor_steps = {m[1]: float(m[2]) for m in re.finditer(r"^STEP (\d+) ([\d.]+)$", floor.stdout, re.M)}
    teardown()
    if without_inprocess:
        _, lab = setup(members, source)
        preload(lab, keys)
        fig["ansiballz"], _ = playbook("recover", env=dict(os.environ, LAB_INPROCESS_MODULES="0"))
        teardown()
    return fig, steps, floor_steps, floor.returncode


def verdict(value, goal):
    return f"goal {goal:g}: {'met' if value <= goal else 'OVER'}"


def print_size(members, keys, source, fig, steps, fsteps, frc):
    print(f"\n{members} members, {keys} keys, etcd {source}" + ("" if frc == 0 else " (floor FAILED)"))
    print(f"  {'step':<22} {'recover.yml':>11} {'shell floor':>11} {'ratio':>6}")
    for step in sorted(set(steps) | set(fsteps), key=int):
        a, f = steps.get(step), fsteps.get(step)
        ratio = f"{a / f:.1f}" if a and f else "-"
        name = f"{step} {STEP_NAMES.get(step, '')}"
        fa = f"{a:.1f}" if a is not None else "-"
        ff = f"{f:.1f}" if f is not None else "-"
        print(f"  {name:<22} {fa:>11} {ff:>11} {ratio:>6}")
    ratio = fig["recover"] / fig["floor"]
    print(f"  {'total (wall clock)':<22} {fig['recover']:>11.1f} {fig['floor']:>11.1f} {ratio:>6.1f}  "
          f"{verdict(ratio, GOALS['ratio'])}")  # fmt: skip
    if "ansiballz" in fig:
        slow = fig["ansiballz"] / fig["floor"]
        print(
            f"  {'  without in-process':<22} {fig['ansiballz']:>11.1f} {'':>11} {slow:>6.1f}  "
            "(LAB_INPROCESS_MODULES=0: a Python per module call)"
        )
    setup_goal = GOALS["setup"].get(members)
    rows = [
        ("./setup.sh, clean host", fig["setup"], setup_goal),
        ("./setup.sh over the lab", fig["rebuild"], setup_goal + 5 if setup_goal else None),
        ("./lab status (median)", fig["status"], GOALS["status"] if members == 3 else None),
        ("recover.yml again", fig["again"], GOALS["again"]),
        ("verify.yml", fig["verify"], GOALS["verify"]),
        ("./teardown.sh", fig["teardown"], GOALS["teardown"]),
    ]
    for name, seconds, goal in rows:
        print(f"  {name:<26} {seconds:>7.2f} s  {verdict(seconds, goal) if goal else ''}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, nargs="+", default=[3, 5], choices=[3, 5, 7])
    parser.add_argument("--keys", type=int, default=10000)
    parser.add_argument("--source", default="distro", choices=["distro", "pypi"])
    parser.add_argument(
        "--without-inprocess",
        action="store_true",
        help="also time recover.yml with LAB_INPROCESS_MODULES=0 (a third lab build)",
    )
    args = parser.parse_args()
    if args.keys < 0 or args.keys > 200000:
        parser.error("--keys must be between 0 and 200000")
    print(f"lab {LAB_NAME} ({STATE}); every figure in seconds of wall clock")
    for members in args.members:
        figures = run_size(members, args.keys, args.source, args.without_inprocess)
        print_size(members, args.keys, args.source, *figures)


if __name__ == "__main__":
    main()
