#!/usr/bin/env python3
"""The lab's two watchers: a split-brain detector and a periodic snapshot taker, each a bounded loop.

  lab_watch.py detect   --endpoints URL,... --expected NAME,... --out DIR [--interval 3]
  lab_watch.py snapshot --endpoints URL,... --expected NAME,... --out DIR [--interval 60 --keep 5]
  lab_watch.py rotate   --out DIR [--incoming incoming.db --keep 5]

detect asks every member for its status, leader and member list (the same probe and diagnosis as
etcd_endpoint_status and the status report), then writes, under --out:
  detector.json   the current state: ok, warning or critical, with the active alerts (atomic rewrite)
  detector.prom   the same as Prometheus metrics (node_exporter textfile format), for the alert rules
  alerts.log      one line when an alert fires and one when it resolves (appended, never rewritten)
Alerts: split_brain (more than one leader, or members that disagree on the member list), no_quorum,
no_leader:<member>, unreachable:<member>, clock_skew:<member> (the member's HTTP Date header against this
host's clock).

snapshot saves a verified snapshot (sha256 checked) from a member of the side that holds a quorum of the
original membership, every --interval seconds, into --out/snapshot-<UTC time>.db, and keeps the newest --keep
of them: older files that it named itself are removed. No side with a quorum: no snapshot (a snapshot of a
fork would be the wrong history), and the reason is logged.

rotate (the kind platform's snapshot CronJob, after `etcdctl snapshot save DIR/incoming.db`) renames the
new snapshot to snapshot-<UTC time>.db and applies the same retention; standard library only.

detect and snapshot stop by themselves after --duration seconds or --max-cycles rounds, when
--stop-if-missing disappears (the lab was torn down), and cleanly on SIGTERM or SIGINT. They talk only to
the endpoints given.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STOP = False
# The repository (roles/safeguards/files/ -> root); resolved when the lab's modules are loaded.
ROOT_DEPTH = 3
SNAPSHOT_RE = re.compile(r"^snapshot-\d{8}T\d{6}Z\.db$")
SEVERITY_ORDER = {"ok": 0, "warning": 1, "critical": 2}


def on_signal(_signum, _frame) -> None:
    global STOP
    STOP = True


def load_lab_modules():
    """Import the lab's modules the way Ansible resolves them (shared code as ansible.module_utils.*), through
    tools/lab_imports.py."""
    tools = str(Path(__file__).resolve().parents[ROOT_DEPTH] / "tools")
    if tools not in sys.path:
        sys.path.insert(0, tools)
    from lab_imports import lab_module

    return lab_module("etcd_endpoint_status"), lab_module("etcd_snapshot")


def now_utc() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def stamp(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def probe_params(args: argparse.Namespace) -> dict:
    return {
        "timeout": args.timeout,
        # A TLS lab: etcdctl's variables, which the playbook that started the watcher set.
        "ca_cert": os.environ.get("ETCDCTL_CACERT"),
        "client_cert": os.environ.get("ETCDCTL_CERT"),
        "client_key": os.environ.get("ETCDCTL_KEY"),
        "validate_certs": True,
    }


# ---- detector ---------------------------------------------------------------------------------


def alerts_from(diagnosis: dict, results: list[dict]) -> dict[str, dict]:
    """The alerts a diagnosis raises, by key. A pure function of the diagnosis (unit-tested)."""
    findings = diagnosis["findings"]

    def finding(start: str, default: str) -> str:
        return next((f for f in findings if f.startswith(start)), default)

    alerts: dict[str, dict] = {}
    if diagnosis["split_brain"]:
        alerts["split_brain"] = {
            "severity": "critical",
            "message": finding(
                "Split-brain", "Split-brain: members disagree on the leader or the membership."
            ),
        }
    reachable = [r for r in results if r["reachable"]]
    if reachable and diagnosis["authoritative_view"] is None:
        alerts["no_quorum"] = {
            "severity": "critical",
            "message": finding("No view holds", "No side holds a quorum of the original membership."),
        }
    for name in diagnosis["leaderless_members"]:
        alerts[f"no_leader:{name}"] = {
            "severity": "warning",
            "message": finding(f"{name} has no leader", name),
        }
    for item in diagnosis["unreachable_endpoints"]:
        label = item["name"] or item["endpoint"]
        alerts[f"unreachable:{label}"] = {
            "severity": "warning",
            "message": f"{label} ({item['endpoint']}) is unreachable: {item['error']}",
        }
    for item in diagnosis["clock_skew"]:
        alerts[f"clock_skew:{item['name']}"] = {
            "severity": "warning",
            "message": finding(
                f"{item['name']}'s clock", f"{item['name']}'s clock is off by {item['clock_offset']} s"
            ),
        }
    return alerts


def transitions(before: dict[str, dict], after: dict[str, dict], when: str) -> list[str]:
    """Alert log lines for alerts that fired or resolved between two rounds."""
    lines = []
    for key in sorted(after.keys() - before.keys()):
        lines.append(f"{when} FIRING {after[key]['severity']} {key}: {after[key]['message']}")
    for key in sorted(before.keys() - after.keys()):
        lines.append(f"{when} RESOLVED {before[key]['severity']} {key}: {before[key]['message']}")
    return lines


def overall(alerts: dict[str, dict]) -> str:
    return max((a["severity"] for a in alerts.values()), key=SEVERITY_ORDER.get, default="ok")


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def distinct_member_lists(results: list[dict]) -> int:
    """How many different member lists (as sets of member ids) the reachable members report."""
    return len(
        {tuple(sorted(m["id"] for m in r["members"])) for r in results if r["reachable"] and r["members"]}
    )


def metrics_text(diagnosis: dict, results: list[dict], when: float) -> str:
    """The detector's view as Prometheus metrics (the names the alert rules use)."""
    leader_ids = {r["leader"] for r in results if r["reachable"] and r["leader"]}
    lines = [
        "# HELP etcd_lab_detector_last_run_timestamp_seconds When the detector last compared the members.",
        "# TYPE etcd_lab_detector_last_run_timestamp_seconds gauge",
        f"etcd_lab_detector_last_run_timestamp_seconds {when:.3f}",
        "# HELP etcd_lab_detector_leaders Distinct leaders that the reachable members report.",
        "# TYPE etcd_lab_detector_leaders gauge",
        f"etcd_lab_detector_leaders {len(leader_ids)}",
        "# HELP etcd_lab_detector_member_lists Distinct member lists that the reachable members report.",
        "# TYPE etcd_lab_detector_member_lists gauge",
        f"etcd_lab_detector_member_lists {distinct_member_lists(results)}",
        "# HELP etcd_lab_detector_split_brain 1 when more than one leader or member list is seen.",
        "# TYPE etcd_lab_detector_split_brain gauge",
        f"etcd_lab_detector_split_brain {int(bool(diagnosis['split_brain']))}",
        "# HELP etcd_lab_detector_member_up 1 when the member answered the status request.",
        "# TYPE etcd_lab_detector_member_up gauge",
    ]
    for r in results:
        lines.append(
            f'etcd_lab_detector_member_up{{member="{_label(r["name"] or r["endpoint"])}"}} '
            f"{int(r['reachable'])}"
        )
    lines += [
        "# HELP etcd_lab_detector_member_has_leader 1 when the member reports a leader.",
        "# TYPE etcd_lab_detector_member_has_leader gauge",
    ]
    for r in results:
        if r["reachable"]:
            has = int(bool(r["leader"]))
            lines.append(
                f'etcd_lab_detector_member_has_leader{{member="{_label(r["name"] or r["endpoint"])}"}} {has}'
            )
    lines += [
        "# HELP etcd_lab_clock_offset_seconds Member's wall clock minus this host's (HTTP Date, +/-0.5 s).",
        "# TYPE etcd_lab_clock_offset_seconds gauge",
    ]
    for r in results:
        if r["reachable"] and r["clock_offset"] is not None:
            name = _label(r["name"] or r["endpoint"])
            lines.append(f'etcd_lab_clock_offset_seconds{{member="{name}"}} {r["clock_offset"]}')
    return "\n".join(lines) + "\n"


def detect_round(status_mod, args: argparse.Namespace) -> tuple[dict, list[dict]]:
    params = probe_params(args)
    results = status_mod.parallel_map(lambda e: status_mod.probe_endpoint(e, params), args.endpoints)
    if len(args.expected) == len(args.endpoints):  # the lab passes both in the same order
        for result, name in zip(results, args.expected, strict=True):
            result["name"] = result["name"] or name
    diagnosis = status_mod.diagnose(results, args.expected or None, args.skew_threshold)
    return diagnosis, results


def run_detect(args: argparse.Namespace) -> int:
    status_mod, _ = load_lab_modules()
    out = Path(args.out)
    state_file = out / "detector.json"
    active: dict[str, dict] = {}
    since: dict[str, str] = {}
    if state_file.exists():  # a restarted detector does not log the same alerts again
        try:
            previous = json.loads(state_file.read_text())
            active = {
                a["key"]: {"severity": a["severity"], "message": a["message"]} for a in previous["alerts"]
            }
            since = {a["key"]: a["since"] for a in previous["alerts"]}
        except (OSError, ValueError, KeyError, TypeError):
            active, since = {}, {}
    return loop(args, lambda cycle: detect_cycle(status_mod, args, out, cycle, active, since))


def detect_cycle(status_mod, args, out: Path, cycle: int, active: dict, since: dict) -> None:
    diagnosis, results = detect_round(status_mod, args)
    moment = now_utc()
    when = stamp(moment)
    alerts = alerts_from(diagnosis, results)
    lines = transitions(active, alerts, when)
    if lines:
        with open(out / "alerts.log", "a") as log:
            log.write("\n".join(lines) + "\n")
        for line in lines:
            print(line, flush=True)
    for key in list(since):
        if key not in alerts:
            del since[key]
    for key in alerts:
        since.setdefault(key, when)
    active.clear()
    active.update(alerts)
    state = {
        "time": when,
        "cycle": cycle,
        "interval": args.interval,
        "pid": os.getpid(),
        "status": overall(alerts),
        "split_brain": diagnosis["split_brain"],
        "leaders": [leader["name"] for leader in diagnosis["leaders"]],
        # The same count as the metric: views also split by leader, and list member ids unsorted.
        "member_lists": distinct_member_lists(results),
        "alerts": [{"key": k, "since": since[k], **alerts[k]} for k in sorted(alerts)],
        "findings": diagnosis["findings"],
    }
    write_atomic(out / "detector.json", json.dumps(state, indent=1) + "\n")
    write_atomic(out / "detector.prom", metrics_text(diagnosis, results, moment.timestamp()))


# ---- snapshots ------------------------------------------------------------------------------


def snapshot_name(moment: dt.datetime) -> str:
    return f"snapshot-{moment.strftime('%Y%m%dT%H%M%SZ')}.db"


def prune(directory: Path, keep: int) -> list[str]:
    """Remove the oldest snapshots this tool named beyond the newest `keep`; other files are never touched."""
    ours = sorted(p.name for p in directory.iterdir() if p.is_file() and SNAPSHOT_RE.match(p.name))
    doomed = ours[: max(0, len(ours) - keep)]
    for name in doomed:
        (directory / name).unlink()
    return doomed


def snapshot_source(diagnosis: dict, results: list[dict]) -> dict | None:
    """A reachable member of the side with a quorum of the original membership: its leader if reachable."""
    if diagnosis["authoritative_view"] is None:
        return None
    view = diagnosis["views"][diagnosis["authoritative_view"]]
    members = [r for r in results if r["reachable"] and (r["name"] or r["endpoint"]) in view["endpoints"]]
    members.sort(key=lambda r: (not r["is_leader"], r["name"] or r["endpoint"]))
    return members[0] if members else None


def run_snapshot(args: argparse.Namespace) -> int:
    status_mod, snapshot_mod = load_lab_modules()
    out = Path(args.out)
    state_file = out / "snapshots.json"
    state = {"taken": 0, "pruned": 0, "skipped": 0, "last": None, "last_error": None}
    if state_file.exists():
        with contextlib.suppress(OSError, ValueError):
            state.update(json.loads(state_file.read_text()))

    def runner(argv, env):
        proc = subprocess.run(argv, env={**os.environ, **env}, capture_output=True, text=True, check=False)
        return proc.returncode, proc.stdout, proc.stderr

    def which(name):
        return shutil.which(name)

    def cycle(_n: int) -> None:
        diagnosis, results = detect_round(status_mod, args)
        source = snapshot_source(diagnosis, results)
        moment = now_utc()
        if source is None:
            state["skipped"] += 1
            state["last_error"] = f"{stamp(moment)} no snapshot: no reachable side holds a quorum"
            print(state["last_error"], flush=True)
        else:
            path = out / snapshot_name(moment)
            params = {
                **probe_params(args),
                "endpoints": [source["endpoint"]],
                "path": str(path),
                "force": False,
                "bin_dir": args.bin_dir,
                "transport": "auto",
            }
            try:
                facts = snapshot_mod.save(params, False, runner, which)
            except (snapshot_mod.EtcdError, OSError) as exc:
                state["last_error"] = f"{stamp(moment)} snapshot from {source['name']} failed: {exc}"
                print(state["last_error"], flush=True)
            else:
                state["taken"] += 1
                state["last"] = {
                    "time": stamp(moment),
                    "path": str(path),
                    "member": source["name"],
                    "revision": facts.get("revision"),
                    "sha256": facts.get("sha256"),
                    "size": facts.get("size"),
                }
                state["last_error"] = None
                removed = prune(out, args.keep)
                state["pruned"] += len(removed)
                print(
                    f"{stamp(moment)} saved {path.name} from {source['name']}; pruned {removed or 'nothing'}",
                    flush=True,
                )
        state["kept"] = sorted(p.name for p in out.iterdir() if SNAPSHOT_RE.match(p.name))
        state["keep"] = args.keep
        state["interval"] = args.interval
        write_atomic(state_file, json.dumps(state, indent=1) + "\n")

    return loop(args, cycle)


def run_rotate(args: argparse.Namespace) -> int:
    """Name the snapshot that etcdctl just saved and apply the retention (one round, no etcd access)."""
    out = Path(args.out)
    incoming = out / args.incoming
    if not incoming.is_file() or incoming.stat().st_size == 0:
        print(f"{incoming} is missing or empty: the snapshot was not saved", file=sys.stderr)
        return 1
    moment = now_utc()
    path = out / snapshot_name(moment)
    os.replace(incoming, path)
    removed = prune(out, args.keep)
    kept = sorted(p.name for p in out.iterdir() if SNAPSHOT_RE.match(p.name))
    state = {"last": {"time": stamp(moment), "path": str(path), "size": path.stat().st_size}, "kept": kept}
    write_atomic(out / "snapshots.json", json.dumps(state, indent=1) + "\n")
    print(f"{stamp(moment)} saved {path.name}; pruned {removed or 'nothing'}", flush=True)
    return 0


# ---- the bounded loop -----------------------------------------------------------------------


def loop(args: argparse.Namespace, cycle) -> int:
    started = time.monotonic()
    n = 0
    while not STOP and n < args.max_cycles and time.monotonic() - started < args.duration:
        if args.stop_if_missing and not os.path.exists(args.stop_if_missing):
            print(f"{args.stop_if_missing} is gone: the lab was torn down, stopping", flush=True)
            break
        n += 1
        begun = time.monotonic()
        cycle(n)
        # Sleep in small steps so that SIGTERM stops the loop quickly.
        while not STOP and time.monotonic() - begun < args.interval:
            time.sleep(min(0.2, args.interval))
    return 0


def _csv(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["detect", "snapshot", "rotate"])
    parser.add_argument(
        "--endpoints", type=_csv, default=[], help="client URLs of every member, comma-separated"
    )
    parser.add_argument("--incoming", default="incoming.db", help="file that etcdctl saved (rotate mode)")
    parser.add_argument(
        "--expected", type=_csv, default=[], help="names of the original members, comma-separated"
    )
    parser.add_argument(
        "--out", required=True, help="directory for the state, metrics, alert log or snapshots"
    )
    parser.add_argument("--interval", type=float, default=3.0, help="seconds between rounds")
    parser.add_argument("--timeout", type=float, default=2.0, help="seconds per request")
    parser.add_argument(
        "--skew-threshold", type=float, default=2.0, help="clock offset (s) that raises an alert"
    )
    parser.add_argument("--keep", type=int, default=5, help="snapshots to keep (snapshot mode)")
    parser.add_argument(
        "--bin-dir", default=None, help="directory of etcdctl/etcdutl for the snapshot status"
    )
    parser.add_argument("--duration", type=float, default=7200.0, help="stop after this many seconds")
    parser.add_argument("--max-cycles", type=int, default=100000, help="stop after this many rounds")
    parser.add_argument("--stop-if-missing", default=None, help="stop when this file disappears")
    args = parser.parse_args(argv)
    if not args.endpoints and args.mode != "rotate":
        parser.error("--endpoints names no endpoint")
    if "/" in args.incoming or args.incoming.startswith("snapshot-"):
        parser.error("--incoming must be a plain file name that is not snapshot-*")
    if args.interval <= 0 or args.duration <= 0 or args.max_cycles <= 0 or args.timeout <= 0:
        parser.error("--interval, --duration, --max-cycles and --timeout must be positive")
    if args.keep < 1:
        parser.error("--keep must be at least 1")
    if not os.path.isdir(args.out):
        parser.error(f"--out {args.out} is not a directory")
    return args


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    args = parse_args(argv)
    return {"detect": run_detect, "snapshot": run_snapshot, "rotate": run_rotate}[args.mode](args)


if __name__ == "__main__":
    sys.exit(main())
