"""The lab's post-incident report: a timeline page and a postmortem, drawn from what this run recorded.

  python tools/lab_report.py [--state-dir .lab] [--verify-json JSON]

Reads, under the state directory: lab.json (the members, which one was forced), recorder/samples.jsonl (what
every member said, several times a second, on the host's real clock), recorder/events.jsonl (what the
playbooks did), ledger/*.jsonl (every write etcd acknowledged), recovery/conflicts.json (what recover.yml
found and did with the fork's data) and report/verify.json (verify's checks, saved by recover.yml). Writes
report/index.html (one self-contained page: the chart is inline SVG drawn by matplotlib, no script, nothing
fetched) and report/report.md (a postmortem: summary, impact, timeline, root cause, what went well, what
went wrong, actions).

In the chart's SVG each lane's segments are grouped by role with an id (lane-<member>-<role>, role one of
leader, follower, no-leader, down, removed), the window in which both sides acknowledged writes is
split-window, and the event markers are event-<n>: the browser test reads them.
"""

from __future__ import annotations

import argparse
import datetime as dt
import html
import io
import itertools
import json
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROLES = ("leader", "follower", "no-leader", "down", "removed")
ROLE_COLORS = {
    "leader": "#c0392b",
    "follower": "#2e86c1",
    "no-leader": "#f5b041",
    "down": "#7f8c8d",
    "removed": "#d5d8dc",
}
SIDE_COLORS = {"majority": "#2e86c1", "fork": "#c0392b"}
MAX_KEYS_SHOWN = 50


class ReportError(Exception):
    pass


def parse_time(text: str) -> float:
    """Seconds since the epoch of an ISO 8601 UTC time (with Z or +00:00)."""
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def clock(seconds: float) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%H:%M:%S")


def read_jsonl(path: Path) -> list[dict]:
    """The JSON objects of a JSONL file; a torn or foreign line (a process killed mid-write) is skipped."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            item = json.loads(line)
        except ValueError:
            continue
        if isinstance(item, dict) and "time" in item:
            out.append(item)
    return out


def read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ReportError(f"{path} cannot be read as JSON ({exc})") from None
    return data if isinstance(data, dict) else None


@dataclass
class Segment:
    start: float
    end: float
    role: str
    term: int = 0
    membership: tuple[str, ...] = ()


@dataclass
class Run:
    lab: dict
    samples: list[tuple[float, dict]]
    events: list[dict]
    ledger: list[dict]
    conflicts: dict | None
    verify: dict | None
    lanes: dict[str, list[Segment]] = field(default_factory=dict)
    forked: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    # Each ledger entry's acknowledgement time and side (fork or majority), worked out once in load().
    acks: list[tuple[float, str]] = field(default_factory=list)

    @property
    def names(self) -> list[str]:
        return [m["name"] for m in self.lab["members"]]

    @property
    def forced(self) -> str | None:
        return self.lab.get("forced")


def load(state: Path, verify: dict | None = None) -> Run:
    lab = read_json(state / "lab.json")
    if lab is None or "members" not in lab:
        raise ReportError(
            f"no lab is set up in {state} (lab.json missing or not a lab layout): run ./setup.sh"
        )
    samples = [
        (parse_time(s["time"]), s.get("members") or {})
        for s in read_jsonl(state / "recorder" / "samples.jsonl")
    ]
    events = sorted(read_jsonl(state / "recorder" / "events.jsonl"), key=lambda e: e["time"])
    ledger = []
    for path in sorted((state / "ledger").glob("*.jsonl")):
        ledger += [e for e in read_jsonl(path) if "error" not in e]
    ledger.sort(key=lambda e: e["time"])
    if verify is None:
        verify = read_json(state / "report" / "verify.json")
    run = Run(lab, samples, events, ledger, read_json(state / "recovery" / "conflicts.json"), verify)
    run.lanes = lanes(run)
    run.forked = fork_periods(run)
    run.acks = [(parse_time(e["time"]), side_of(run, e)) for e in run.ledger]
    return run


def role_of(name: str, entry: dict | None, listed_elsewhere: bool) -> str:
    if not entry or not entry.get("up"):
        return "down" if listed_elsewhere else "removed"
    if not entry.get("leader"):
        return "no-leader"
    return "leader" if entry.get("leader") == entry.get("id") else "follower"


def lanes(run: Run) -> dict[str, list[Segment]]:
    """Each member's role over time, one segment per stretch of equal role, term and membership. A member
    that does not answer is "removed" when no answering member lists it, else "down"."""
    out: dict[str, list[Segment]] = {name: [] for name in run.names}
    for number, (when, members) in enumerate(run.samples):
        end = run.samples[number + 1][0] if number + 1 < len(run.samples) else when + 0.25
        listed = {n for e in members.values() if e.get("up") for n in e.get("members", [])}
        for name in run.names:
            entry = members.get(name)
            role = role_of(name, entry, name in listed or not listed)
            term = int((entry or {}).get("term") or 0)
            membership = tuple((entry or {}).get("members") or ())
            lane = out[name]
            if lane and (lane[-1].role, lane[-1].term, lane[-1].membership) == (role, term, membership):
                lane[-1].end = end
            else:
                lane.append(Segment(when, end, role, term, membership))
    return out


def fork_periods(run: Run) -> dict[str, list[tuple[float, float]]]:
    """When each member was a cluster of its own (its member list holds only itself, in a lab of more)."""
    out: dict[str, list[tuple[float, float]]] = {}
    for name, lane in run.lanes.items():
        spans = [(s.start, s.end) for s in lane if s.membership == (name,) and len(run.names) > 1]
        if spans:
            out[name] = spans
    return out


def side_of(run: Run, entry: dict) -> str:
    """fork when the write was acknowledged by a member while it was a cluster of its own."""
    endpoint = entry.get("endpoint")
    when = parse_time(entry["time"])
    for name, spans in run.forked.items():
        url = next((m.get("client_url") for m in run.lab["members"] if m["name"] == name), None)
        if endpoint == url and any(start <= when <= end + 1.0 for start, end in spans):
            return "fork"
    return "majority"


def split_window(run: Run) -> tuple[float, float] | None:
    """From the first to the last write that a fork acknowledged: the window of conflicting writes."""
    times = [when for when, side in run.acks if side == "fork"]
    return (min(times), max(times)) if times else None


def writes_per_second(run: Run) -> dict[str, Counter]:
    out = {"majority": Counter(), "fork": Counter()}
    for when, side in run.acks:
        out[side][int(when)] += 1
    return out


def first_event(run: Run, text: str) -> dict | None:
    return next((e for e in run.events if e.get("event") == text), None)


def sample_at(run: Run, when: float) -> dict:
    """The last sample at or before a moment (the first one when the moment comes before all)."""
    chosen = run.samples[0][1] if run.samples else {}
    for moment, members in run.samples:
        if moment > when:
            break
        chosen = members
    return chosen


def briefing_time(run: Run) -> float | None:
    event = first_event(run, "briefing")
    return parse_time(event["time"]) if event else None


def highest(up: dict[str, dict], field: str) -> str:
    return max(up, key=lambda n: up[n].get(field, 0))


def signal_row(signal: str, up: dict[str, dict], field: str, unit: str, meaning: str) -> dict:
    """A misleading signal: the member with the highest value, every member's value, what it meant."""
    top = highest(up, field)
    every = ", ".join(f"{n} {e.get(field)}" for n, e in sorted(up.items()))
    return {"signal": signal, "value": f"{top}: {unit}{up[top].get(field)} ({every})", "meaning": meaning}


def misleading_signals(run: Run) -> list[dict]:
    """What the members said at the briefing, and what each signal really meant in this run."""
    moment = briefing_time(run)
    if moment is None or not run.samples:
        return []
    state = sample_at(run, moment)
    up = {n: e for n, e in state.items() if e.get("up")}
    if not up:
        return []
    majority = set(run.lab.get("majority") or [])
    forced = run.forced
    rows = []
    top_index = highest(up, "index")
    index_meaning = (
        f"{top_index} is the fork: its index counts entries of its own history, which the majority never "
        "saw. Indexes of two histories cannot be compared; picking it would throw away the majority's writes."
        if top_index == forced
        else f"{top_index} is on the majority side, but only because the majority wrote more since the "
        "split: an index says nothing about which history is right (the fork's index may as well be higher)."
    )
    rows.append(signal_row("Highest raft index", up, "index", "", index_meaning))
    top_term = highest(up, "term")
    term_meaning = (
        f"{top_term} campaigned again and again while it was cut off, and was forced to lead alone: a high "
        "term shows failed elections, not authority."
        if top_term == forced or top_term not in majority
        else f"{top_term} holds the highest term; authority comes from a quorum of the original members, "
        "which the majority side has."
    )
    rows.append(signal_row("Highest raft term", up, "term", "term ", term_meaning))
    offsets = {n: e.get("clock_offset") for n, e in up.items() if e.get("clock_offset") is not None}
    if offsets:
        drift = max(offsets, key=lambda n: abs(offsets[n] or 0))
        if abs(offsets[drift] or 0) >= 2:
            rows.append(
                {
                    "signal": "Clock drift",
                    "value": f"{drift}: {offsets[drift]:+.0f} s against this host",
                    "meaning": (
                        f"{drift} {'stayed with the majority' if drift in majority else 'was cut off'}: "
                        "Raft's election and heartbeat timers are local and monotonic, so the wall clock "
                        "elected no "
                        "one. The skew is a red herring (it matters for leases and certificates, not for "
                        "this split)."
                    ),
                }
            )
    return rows


def derived_events(run: Run) -> list[tuple[float, str]]:
    """Changes the recorder saw: a member that stops answering, comes back, or starts leading."""
    out = []
    for name, lane in run.lanes.items():
        for before, after in itertools.pairwise(lane):
            if after.role != before.role and after.role in ("leader", "down", "removed"):
                what = {
                    "leader": f"leads (term {after.term})",
                    "down": "stops answering",
                    "removed": "removed",
                }
                out.append((after.start, f"{name} {what[after.role]}"))
            elif before.role in ("down", "removed") and after.role != before.role:
                out.append((after.start, f"{name} answers again ({after.role})"))
            elif after.membership != before.membership and after.membership and before.membership:
                out.append((after.start, f"{name} sees members {', '.join(after.membership)}"))
    return sorted(out)


def timeline(run: Run) -> list[tuple[float, str, str]]:
    """Playbook events and recorder changes, by time: (time, source, text)."""
    items = [(parse_time(e["time"]), e.get("playbook", ""), event_text(e)) for e in run.events]
    items += [(when, "recorder", text) for when, text in derived_events(run)]
    window = split_window(run)
    if window:
        items += [(window[0], "ledger", "first write acknowledged by the fork alone")]
        items += [(window[1], "ledger", "last write acknowledged by the fork alone")]
    return sorted(items)


def event_text(event: dict) -> str:
    text = str(event.get("event", ""))
    host = event.get("host")
    if host and host != "localhost":
        text += f" ({host})"
    if event.get("outcome") == "failed":
        text += " - failed"
    return text


def conflict_rows(run: Run) -> list[dict]:
    """Every key the fork and the cluster disagreed on, with both values and what recovery did with it."""
    if not run.conflicts:
        return []
    quarantine = run.conflicts.get("policy") == "quarantine"
    rows = []
    for fork in run.conflicts.get("forks") or []:
        member = fork.get("member", "?")
        for item in fork.get("conflicts") or []:
            did = (
                f"kept the cluster's value; the fork's went to {item.get('quarantine_key')}"
                if quarantine
                else "listed only (report_only)"
            )
            rows.append(
                row(
                    member,
                    item,
                    (item.get("left") or {}).get("value"),
                    (item.get("right") or {}).get("value"),
                    did,
                )
            )
        for item in fork.get("deleted_on_authoritative") or []:
            did = (
                f"stays deleted; the fork's value went to {item.get('quarantine_key')}"
                if quarantine
                else "listed only"
            )
            rows.append(row(member, item, "(deleted)", item.get("value"), did))
        for item in fork.get("deleted_on_fork") or []:
            note = item.get("marker_key")
            did = "the cluster's value stays" + (f"; the fork's delete noted at {note}" if note else "")
            rows.append(row(member, item, item.get("value"), "(deleted)", did))
        # Keys only the fork held, by what recovery did with them.
        fork_only = {
            "only_fork": "replayed into the cluster" if quarantine else "listed only",
            "leased_only_on_fork": "not written: its lease lived only on the fork",
        }
        for listed, did in fork_only.items():
            rows += [row(member, item, "(absent)", item.get("value"), did) for item in fork.get(listed) or []]
    for item in run.conflicts.get("lost") or []:
        rows.append(row("-", item, "(absent)", item.get("value"), "LOST: listed, not recovered"))
    return rows


def row(member: str, item: dict, cluster, fork, did: str) -> dict:
    return {
        "member": member,
        "key": item.get("key", "?"),
        "cluster": value_text(cluster),
        "fork": value_text(fork),
        "did": did,
    }


def value_text(value) -> str:
    return "null" if value is None else str(value)


def verify_rows(run: Run) -> list[dict]:
    checks = (run.verify or {}).get("checks") or []
    return [
        {"name": c.get("name", "?"), "ok": bool(c.get("ok")), "detail": c.get("detail", "")} for c in checks
    ]


# ---------------------------------------------------------------------------------------------- the chart


def chart_svg(run: Run) -> str:
    """The timeline as inline SVG: one lane per member, events, writes per second per side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    matplotlib.rcParams["svg.fonttype"] = "none"
    matplotlib.rcParams["svg.hashsalt"] = "lab-report"
    names = run.names
    origin = run.samples[0][0] if run.samples else (parse_time(run.ledger[0]["time"]) if run.ledger else 0.0)
    end = chart_end(run)
    rates = writes_per_second(run)
    fig, (lanes_ax, rate_ax) = plt.subplots(
        2,
        1,
        sharex=True,
        figsize=(12, 1.1 + 0.55 * len(names) + 2.2),
        height_ratios=[0.55 * len(names) + 1, 2.2],
    )
    for row_number, name in enumerate(names):
        y = len(names) - 1 - row_number
        for role in ROLES:
            bars = [(s.start - origin, s.end - s.start) for s in run.lanes.get(name, []) if s.role == role]
            if not bars:
                continue
            hatch = None
            collection = lanes_ax.broken_barh(
                bars, (y - 0.35, 0.7), facecolors=ROLE_COLORS[role], hatch=hatch
            )
            collection.set_gid(f"lane-{name}-{role}")
        for segment in run.lanes.get(name, []):
            if segment.membership == (name,) and len(names) > 1:
                solo = lanes_ax.broken_barh(
                    [(segment.start - origin, segment.end - segment.start)],
                    (y - 0.35, 0.7),
                    facecolors="none",
                    edgecolors="black",
                    hatch="//",
                    linewidth=0,
                )
                solo.set_gid(f"solo-{name}")
        previous = None
        for segment in run.lanes.get(name, []):
            if (
                segment.term
                and segment.term != previous
                and segment.role in ("leader", "follower", "no-leader")
            ):
                lanes_ax.text(segment.start - origin, y + 0.38, f"t{segment.term}", fontsize=7, va="bottom")
                previous = segment.term
    lanes_ax.set_yticks(range(len(names)), list(reversed(names)))
    lanes_ax.set_ylim(-0.7, len(names) - 0.1)
    window = split_window(run)
    for ax in (lanes_ax, rate_ax):
        if window:
            span = ax.axvspan(window[0] - origin, window[1] - origin, color="#f1948a", alpha=0.25, zorder=0)
            span.set_gid("split-window" if ax is lanes_ax else "split-window-rates")
    for number, event in enumerate(run.events):
        if (
            event.get("event", "").endswith((" started", " finished", " failed"))
            and event.get("host") == "localhost"
        ):
            continue
        x = parse_time(event["time"]) - origin
        line = lanes_ax.axvline(x, color="black", linewidth=0.6, linestyle="--")
        line.set_gid(f"event-{number}")
        rate_ax.axvline(x, color="black", linewidth=0.6, linestyle="--")
        lanes_ax.text(
            x, len(names) - 0.1, " " + event_text(event), rotation=90, fontsize=6.5, va="bottom", ha="center"
        )
    for side, counts in rates.items():
        if counts:
            xs = sorted(counts)
            rate_ax.step(
                [x - origin for x in xs],
                [counts[x] for x in xs],
                where="post",
                color=SIDE_COLORS[side],
                label=f"{side} side",
            )
    if end is not None:
        rate_ax.set_xlim(right=end - origin)
    rate_ax.set_ylabel("acknowledged\nwrites / s")
    rate_ax.legend(loc="upper right", fontsize=8)
    rate_ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda x, _pos: clock(origin + x)))
    rate_ax.set_xlabel("time (UTC, this host's clock)")
    handles = [Patch(color=ROLE_COLORS[r], label=r) for r in ROLES]
    handles.append(Patch(facecolor="white", edgecolor="black", hatch="//", label="a cluster of its own"))
    if window:
        handles.append(Patch(color="#f1948a", alpha=0.4, label="conflicting writes"))
    lanes_ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    fig.tight_layout()
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg")
    plt.close(fig)
    svg = buffer.getvalue()
    return svg[svg.index("<svg") :]


def chart_end(run: Run) -> float | None:
    """The chart ends a little after the last event (the recorder keeps sampling a calm cluster until
    teardown), or with the samples."""
    if not run.events:
        return None
    last = parse_time(run.events[-1]["time"]) + 20.0
    return min(last, run.samples[-1][0]) if run.samples else last


# ----------------------------------------------------------------------------------------------- the page


def table(headers: list[str], rows: list[list[str]], cls: str = "") -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def summary_lines(run: Run) -> list[str]:
    window = split_window(run)
    rates = writes_per_second(run)
    conflicts = conflict_rows(run)
    lost = [r for r in conflicts if r["did"].startswith("LOST")]
    checks = verify_rows(run)
    lines = [
        f"Lab {run.lab.get('name')}: {len(run.names)} members, etcd {run.lab.get('etcd_version', '?')}. "
        f"{', '.join(run.lab.get('isolated') or []) or 'no member'} cut off on the peer port 2380; "
        f"{run.forced or 'no member'} restarted with --force-new-cluster, a cluster of its own.",
    ]
    if window:
        lines.append(
            f"For {window[1] - window[0]:.0f} s ({clock(window[0])} to {clock(window[1])} UTC) two "
            "leaders accepted "
            f"writes: {sum(rates['fork'].values())} acknowledged by the fork alone, "
            f"{sum(rates['majority'].values())} by the majority over the whole run."
        )
    if run.conflicts:
        lines.append(
            f"Recovery compared the sides: {len(conflicts)} keys differed, {len(lost)} writes lost"
            f" ({'none' if not lost else 'listed in conflicts.json'})."
        )
    else:
        lines.append("No recovery has run yet (recovery/conflicts.json is missing).")
    if checks:
        failed = [c["name"] for c in checks if not c["ok"]]
        lines.append("Verify: every check passed." if not failed else f"Verify: FAILED {', '.join(failed)}.")
    return lines


PAGE_STYLE = """
body { font-family: sans-serif; margin: 1.5em; color: #222; max-width: 1300px; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.6em; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0; }
td, th { border: 1px solid #ccc; padding: 0.2em 0.5em; text-align: left; vertical-align: top; }
th { background: #f4f6f7; } tr.fail td { background: #fadbd8; }
.chart svg { width: 100%; height: auto; } .note { color: #555; font-size: 0.9em; }
"""


def page(run: Run, svg: str) -> str:
    rows = conflict_rows(run)
    shown = rows[:MAX_KEYS_SHOWN]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>Split-brain report: lab {html.escape(str(run.lab.get('name')))}</title>",
        f"<style>{PAGE_STYLE}</style></head><body>",
        f"<h1>Split-brain report: lab {html.escape(str(run.lab.get('name')))}</h1>",
        "".join(f"<p>{html.escape(line)}</p>" for line in summary_lines(run)),
        "<h2>Timeline</h2>",
        '<p class="note">One lane per member: its role as it answered the recorder (every 0.25 s, on this '
        "host's clock), its raft term (t<i>N</i>) where it changed, hatched while it was a cluster "
        "of its own. "
        "Dashed lines: what the playbooks did. Below: writes acknowledged per second on each side.</p>",
        f'<div class="chart" id="timeline">{svg}</div>',
        "<h2>Signals that misled</h2>",
        table(
            ["signal", "at the briefing", "what it really meant"],
            [[r["signal"], r["value"], r["meaning"]] for r in misleading_signals(run)],
            "signals",
        ),
        "<h2>Conflicting keys and what recovery did</h2>",
        table(
            ["fork", "key", "cluster's value", "fork's value", "recovery"],
            [[r["member"], r["key"], r["cluster"], r["fork"], r["did"]] for r in shown],
            "conflicts",
        )
        if rows
        else "<p>No conflict report (recover.yml has not compared the sides yet).</p>",
    ]
    if len(rows) > len(shown):
        parts.append(f'<p class="note">{len(rows) - len(shown)} more in recovery/conflicts.txt.</p>')
    checks = verify_rows(run)
    parts.append("<h2>Verify</h2>")
    if checks:
        body = "".join(
            f'<tr class="{"ok" if c["ok"] else "fail"}"><td>{"PASS" if c["ok"] else "FAIL"}</td>'
            f"<td>{html.escape(c['name'])}</td><td>{html.escape(str(c['detail']))}</td></tr>"
            for c in checks
        )
        parts.append(
            '<table class="verify"><thead><tr><th></th><th>check</th><th>detail</th></tr></thead>'
            f"<tbody>{body}</tbody></table>"
        )
    else:
        parts.append("<p>Not verified yet (recover.yml saves verify's checks).</p>")
    parts.append("<h2>Events</h2>")
    parts.append(
        table(["time (UTC)", "source", "what"], [[clock(t), s, x] for t, s, x in timeline(run)], "events")
    )
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


# ------------------------------------------------------------------------------------------- the postmortem


def postmortem(run: Run) -> str:
    window = split_window(run)
    rows = conflict_rows(run)
    lost = [r for r in rows if r["did"].startswith("LOST")]
    checks = verify_rows(run)
    kinds = Counter(r["did"].split(";")[0].split(":")[0] for r in rows)
    lines = ["# Postmortem: etcd split-brain in lab " + str(run.lab.get("name")), "", "## Summary", ""]
    lines += summary_lines(run)
    lines += ["", "## Impact", ""]
    if window:
        rates = writes_per_second(run)
        lines.append(
            f"- Two leaders accepted writes for {window[1] - window[0]:.0f} s; "
            f"{sum(rates['fork'].values())} writes were acknowledged by the fork alone."
        )
    lines.append(
        f"- Keys that differed between the sides: {len(rows)}"
        + (" (" + ", ".join(f"{n} {k}" for k, n in kinds.most_common()) + ")." if rows else ".")
    )
    lines.append(f"- Acknowledged writes lost: {len(lost)}.")
    lines += ["", "## Timeline (UTC, this host's clock)", ""]
    lines += [f"- {clock(t)} [{s}] {x}" for t, s, x in timeline(run)]
    lines += [
        "",
        "## Root cause",
        "",
        f"The peer port 2380 of {', '.join(run.lab.get('isolated') or ['a member'])} was cut off, "
        "so it lost its "
        "leader while the majority went on. An operator then restarted "
        f"{run.forced or 'the isolated member'} with --force-new-cluster: etcd made it a one-member cluster "
        "that elected itself and accepted writes, while the majority kept its own leader. The clock skew on "
        "a majority member played no part: Raft's timers are monotonic.",
        "",
        "## What went well",
        "",
        "- The majority kept a quorum of the original membership and served writes throughout.",
        "- Every write was recorded in the clients' ledgers, so none could disappear unnoticed.",
    ]
    if run.conflicts:
        lines.append(
            "- Both sides were backed up before anything was changed; the fork's writes were compared "
            "key by key, replayed or quarantined."
        )
    if checks and all(c["ok"] for c in checks):
        lines.append("- verify found one cluster, one leader, equal hashes and every acknowledged write.")
    lines += [
        "",
        "## What went wrong",
        "",
        "- --force-new-cluster was used on a member of a cluster that still had a quorum elsewhere.",
        "- Clients kept writing to the forced member: nothing told them it had left the cluster.",
        "- Per-member health looked fine on both sides (each had a leader); only comparing member lists and "
        "leaders across members showed the split.",
    ]
    if lost:
        lines.append(f"- {len(lost)} acknowledged writes could not be recovered (listed in conflicts.json).")
    failed = [c for c in checks if not c["ok"]]
    if failed:
        lines.append("- verify failed: " + "; ".join(f"{c['name']}: {c['detail']}" for c in failed))
    lines += [
        "",
        "## Actions",
        "",
        "- Guard --force-new-cluster: refuse it while another member of the original membership answers "
        "(safeguards.yml turns the guard on).",
        "- Alert on split-brain: more than one leader, or members that disagree on the member list "
        "(safeguards.yml's detector and Prometheus rules).",
        "- Take periodic snapshots from the quorum side only.",
        "- Run an odd number of members with pre-vote on; replace a member (remove, add, start "
        "empty) instead "
        "of forcing a new cluster.",
        "",
    ]
    return "\n".join(lines)


def write(state: Path, verify: dict | None = None) -> tuple[Path, Path]:
    run = load(state, verify)
    out = state / "report"
    out.mkdir(parents=True, exist_ok=True)
    if verify is not None:
        (out / "verify.json").write_text(json.dumps(verify, indent=1, sort_keys=True) + "\n")
    index = out / "index.html"
    index.write_text(page(run, chart_svg(run)))
    report = out / "report.md"
    report.write_text(postmortem(run))
    return index, report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--state-dir", default=".lab", help="the lab's state directory (default .lab)")
    parser.add_argument(
        "--verify-json", help="verify's result (etcd_consistency's return), saved beside the report"
    )
    args = parser.parse_args(argv)
    try:
        verify = json.loads(args.verify_json) if args.verify_json else None
        index, report = write(Path(args.state_dir), verify)
    except (ReportError, ValueError, OSError) as exc:
        print(f"lab report: {exc}", file=sys.stderr)
        return 2
    print(f"Report: {index}\nPostmortem: {report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
