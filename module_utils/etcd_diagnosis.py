# Copyright: etcd split-brain lab contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Cluster arithmetic and the grader's HashKV comparison: quorum, the revision every member has applied,
HashKV of every member at it, and the verdict on those hashes."""

from __future__ import annotations

from ansible.module_utils.etcd_client import client_from_params
from ansible.module_utils.etcd_errors import EtcdError
from ansible.module_utils.etcd_probe import parallel_map


def quorum(voters):
    return voters // 2 + 1


def fixed_revision(revisions):
    """The revision at which members' key spaces can be compared while writers keep writing.

    `revisions` maps a member's name to its current revision (the header revision of a status reply).
    Revisions only grow and a member's current revision is one it has applied, so the lowest of them is
    a revision every member has applied, however far the others have moved on since: HashKV at it is
    comparable on every member (etcd's own corruption check also hashes at one revision). Raises
    ValueError for no members or a revision below 1.
    """
    if not revisions:
        raise ValueError("no member revision to choose from")
    values = {name: int(rev) for name, rev in revisions.items()}
    low = min(values.values())
    if low < 1:
        raise ValueError(
            f"a member reports revision {low}: " + ", ".join(f"{n}={r}" for n, r in sorted(values.items()))
        )
    return low


def hashkv_at(params, endpoints, revision):
    """HashKV of each member at one `revision`: {name: reply}, with endpoints as {name: client URL}.

    A reply is the dict of EtcdClient.hashkv, or {"error": message, "compact_revision": C or None,
    "current_revision": N or None} when the call failed; C and N come from a second HashKV at the
    member's latest revision, so that a revision compacted away on that member (R <= C) or not yet
    applied (R > N) can be named. Never raises EtcdError.
    """

    def one(item):
        _name, endpoint = item
        try:
            with client_from_params(endpoint, params) as client:
                return client.hashkv(revision)
        except EtcdError as exc:
            failed = {"error": str(exc), "compact_revision": None, "current_revision": None}
        try:
            with client_from_params(endpoint, params) as client:
                latest = client.hashkv(0)
            failed.update(compact_revision=latest["compact_revision"], current_revision=latest["revision"])
        except EtcdError:
            pass
        return failed

    items = sorted(endpoints.items())
    return dict(zip((n for n, _e in items), parallel_map(one, items), strict=True))


def compare_hashkv(revision, replies):
    """Judge HashKV replies taken at one revision: (verdict, detail).

    verdict is "equal" (every member hashes the same with the same compact revision), "differ" (same
    compact revision, different hashes: different data at `revision`, a real inconsistency),
    "compacted" (`revision` is at or below a member's compaction, so there is nothing to compare at it;
    a later revision may do once the lagging member has caught up), or "retry" (a member failed for
    another reason, or the compact revisions differ, which happens while a compaction is being applied:
    the hashes cover different ranges and are not comparable yet).
    """
    failed = {n: r for n, r in replies.items() if "error" in r}
    compacted = {
        n: r
        for n, r in failed.items()
        if r.get("compact_revision") is not None and revision <= r["compact_revision"]
    }
    if compacted:
        return "compacted", f"revision {revision} is compacted on " + ", ".join(
            f"{n} (compact revision {r['compact_revision']})" for n, r in sorted(compacted.items())
        ) + ": HashKV cannot be compared there"
    if failed:
        return "retry", f"HashKV at revision {revision} failed on " + "; ".join(
            f"{n}: {r['error']}"
            + (f" (its revision {r['current_revision']})" if r.get("current_revision") is not None else "")
            for n, r in sorted(failed.items())
        )
    compacts = {n: r["compact_revision"] for n, r in replies.items()}
    if len(set(compacts.values())) > 1:
        return "retry", f"at revision {revision} the compact revisions differ (" + ", ".join(
            f"{n}={c}" for n, c in sorted(compacts.items())
        ) + "): the hashes cover different ranges"
    hashes = {n: r["hash"] for n, r in replies.items()}
    compact = next(iter(compacts.values()), -1)
    compact = f"compact revision {compact}" if compact > 0 else "never compacted"
    if len(set(hashes.values())) == 1:
        return "equal", (
            f"revision {revision} ({compact}): all {len(hashes)} members hash {next(iter(hashes.values()))}"
        )
    groups = {}
    for n, h in sorted(hashes.items()):
        groups.setdefault(h, []).append(n)
    return "differ", f"revision {revision} ({compact}): hashes differ: " + "; ".join(
        f"{', '.join(ns)}={h}" for h, ns in groups.items()
    )
