"""The report page in a real browser: Debian's chromium, headless, driven by Playwright (which cannot download
browsers here: it is given the system one). Used by the unit test of the report (recorded data) and by the
end-to-end tests after a real recovery."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

CHROMIUM = os.environ.get("LAB_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = Path(__file__).resolve().parent.parent / ".artifacts"

PAGE_FACTS = """() => {
  const box = (el) => { const r = el.getBoundingClientRect(); return [r.left, r.right, r.width, r.height]; };
  const lanes = Array.from(document.querySelectorAll('svg g[id^="lane-"]')).map((g) => g.id);
  const split = document.querySelector('svg g#split-window path');
  return {
    title: document.title,
    lanes,
    segments: Object.fromEntries(lanes.map((id) =>
      [id, Array.from(document.querySelectorAll(`svg g[id="${id}"] path`)).map(box)])),
    split: split ? box(split) : null,
    events: document.querySelectorAll('svg g[id^="event-"]').length,
    tables: Array.from(document.querySelectorAll('table')).map((t) => t.className),
  };
}"""


def lane_members(lane_ids: list[str], roles: tuple[str, ...]) -> set[str]:
    """Member names from the lanes' group ids (lane-<member>-<role>)."""
    out = set()
    for lane in lane_ids:
        for role in sorted(roles, key=len, reverse=True):  # no-leader before leader
            if lane.startswith("lane-") and lane.endswith(f"-{role}"):
                out.add(lane[len("lane-") : -len(f"-{role}")])
                break
    return out


def overlaps(a: list[float], b: list[float]) -> float:
    """Horizontal overlap in pixels of two boxes [left, right, width, height]."""
    return max(0.0, min(a[1], b[1]) - max(a[0], b[0]))


def render(index: Path, screenshot_name: str) -> dict:
    """Open the page, collect console errors and the chart's facts, keep a full-page PNG under .artifacts/."""
    from playwright.sync_api import sync_playwright

    assert CHROMIUM, "chromium is not installed (apt-get install chromium)"
    errors: list[str] = []
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / screenshot_name
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"], headless=True)
        try:
            page = browser.new_page(viewport={"width": 1300, "height": 1000})
            page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("requestfailed", lambda req: errors.append(f"request failed: {req.url}"))
            page.goto(index.resolve().as_uri(), wait_until="load")
            facts = page.evaluate(PAGE_FACTS)
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    facts["errors"] = errors
    facts["screenshot"] = str(shot)
    return facts


def assert_report_page(index: Path, members: list[str], forced: str, screenshot_name: str) -> dict:
    """The page renders without console errors, holds one lane per member, and the forced member's lane
    shows it leading inside the window of conflicting writes."""
    from lab_report import ROLES

    facts = render(index, screenshot_name)
    assert facts["errors"] == [], facts["errors"]
    assert lane_members(facts["lanes"], ROLES) == set(members), facts["lanes"]
    assert facts["split"] and facts["split"][2] > 0, "no window of conflicting writes in the chart"
    leading = facts["segments"].get(f"lane-{forced}-leader", [])
    assert any(overlaps(box, facts["split"]) > 0 and box[3] > 0 for box in leading), (leading, facts["split"])
    assert {"signals", "conflicts", "events"} <= set(facts["tables"]), facts["tables"]
    assert Path(facts["screenshot"]).stat().st_size > 10_000
    return facts
