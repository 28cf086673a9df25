"""etcd_kv_diff: the join of two sides, value decoding, truncation and the report file (fake walkers: lists of
pages)."""

from __future__ import annotations

import base64
import json

import etcd_kv_diff as mod
import pytest


def kv(key, value, mod_rev=1):
    """One item as a walker yields it through the gateway: (key, token, kvs, index)."""
    raw = {
        "key": base64.b64encode(key).decode(),
        "value": base64.b64encode(value).decode(),
        "mod_revision": str(mod_rev),
    }
    return (key, raw["value"], [raw], 0)


def side(pairs):
    return [kv(k, v, r) for k, v, r in sorted(pairs)]


CASES = [
    ("identical", [(b"a", b"1", 2), (b"b", b"2", 3)], [(b"a", b"1", 2), (b"b", b"2", 3)], (0, 0, 0, 2)),
    ("empty both", [], [], (0, 0, 0, 0)),
    ("left empty", [], [(b"x", b"1", 1)], (0, 1, 0, 0)),
    ("right empty", [(b"x", b"1", 1)], [], (1, 0, 0, 0)),
    (
        "fork",
        [(b"/app/k0", b"majority", 7), (b"/app/k1", b"v1", 3)],
        [(b"/app/k0", b"v0", 2), (b"/app/k1", b"v1", 3), (b"/app/new", b"f", 9)],
        (0, 1, 1, 1),
    ),
    (
        "interleaved",
        [(b"a", b"", 1), (b"c", b"", 1), (b"e", b"", 1)],
        [(b"b", b"", 1), (b"d", b"", 1)],
        (3, 2, 0, 0),
    ),
    # byte order, not text order: b"\xff" sorts after b"z"
    (
        "binary keys",
        [(b"z", b"1", 1), (b"\xff\x01", b"\x00\xfe", 1)],
        [(b"\xff\x01", b"\x00\xff", 2)],
        (1, 0, 1, 0),
    ),
]


@pytest.mark.parametrize(("name", "left", "right", "expected"), CASES, ids=[c[0] for c in CASES])
def test_merge_join(name, left, right, expected):
    sinks = [mod.Sink(100, None) for _ in range(3)]
    identical = mod.compare([side(left)], [side(right)], sinks)
    assert (sinks[0].count, sinks[1].count, sinks[2].count, identical) == expected


def reference(left, right):
    """The expected sinks of two sides, by a plain walk over both in key order."""
    lmap, rmap = {k: v for k, v, _r in left}, {k: v for k, v, _r in right}
    return (
        sorted(k for k in lmap if k not in rmap),
        sorted(k for k in rmap if k not in lmap),
        sorted(k for k in lmap if k in rmap and lmap[k] != rmap[k]),
        sum(1 for k in lmap if k in rmap and lmap[k] == rmap[k]),
    )


def pages(items, sizes):
    out, pos = [], 0
    for size in sizes:
        out.append(items[pos : pos + size])
        pos += size
    return [p for p in out if p] + ([items[pos:]] if items[pos:] else [])


@pytest.mark.parametrize("seed", range(40))
def test_join_is_the_same_whatever_the_page_boundaries(seed):
    """Pages of any sizes on either side (as walkers with different page fills give them): the same
    entries, in key order in every sink, as a walk over whole sides."""
    import random

    rng = random.Random(seed)
    keys = sorted({bytes(rng.choices(b"abc\xff", k=rng.randint(1, 4))) for _ in range(rng.randint(0, 60))})
    left = [(k, rng.choice([b"1", b"2"]), 1) for k in keys if rng.random() < 0.8]
    right = [(k, rng.choice([b"1", b"2"]), 2) for k in keys if rng.random() < 0.8]
    lpages = pages(side(left), [rng.randint(1, 7) for _ in range(30)])
    rpages = pages(side(right), [rng.randint(1, 7) for _ in range(30)])
    sinks = [mod.Sink(1000, None) for _ in range(3)]
    identical = mod.compare(lpages, rpages, sinks)
    got = tuple(
        [base64.b64decode(e["key"]) if e["key_base64"] else e["key"].encode() for e in s.items] for s in sinks
    )
    assert (*got, identical) == reference(left, right)


def test_conflict_entry_has_both_values_and_revisions_and_base64_flag():
    sinks = [mod.Sink(100, None) for _ in range(3)]
    mod.compare([side([(b"\xff\x01", b"\x00\xfe", 4)])], [side([(b"\xff\x01", b"text", 9)])], sinks)
    (conflict,) = sinks[2].items
    assert conflict["key_base64"] is True and conflict["key"] == base64.b64encode(b"\xff\x01").decode()
    assert conflict["left"] == {
        "value": "AP4=",
        "value_base64": True,
        "mod_revision": 4,
        "create_revision": 0,
        "version": 0,
        "lease": None,
    }
    assert conflict["right"]["value"] == "text" and conflict["right"]["value_base64"] is False
    assert conflict["right"]["mod_revision"] == 9


def test_sink_truncates_result_but_report_has_everything(tmp_path):
    left = side([(f"k{i:04d}".encode(), b"l", 1) for i in range(300)])
    right = side([(f"k{i:04d}".encode(), b"r", 1) for i in range(0, 300, 2)])
    sinks = [mod.Sink(10, str(tmp_path)) for _ in range(3)]
    identical = mod.compare([left], [right], sinks)
    assert identical == 0 and sinks[0].count == 150 and sinks[2].count == 150
    assert len(sinks[0].items) == 10 and len(sinks[2].items) == 10
    result = {
        "left": {"endpoint": "l", "revision": 1, "keys": 300},
        "right": {"endpoint": "r", "revision": 1, "keys": 150},
        "prefix": "",
        "counts": {"only_left": 150, "only_right": 0, "conflicts": 150, "identical": 0},
        "identical": False,
    }
    report = tmp_path / "report.json"
    assert mod.write_report_file(str(report), result, sinks) is True
    data = json.loads(report.read_text())
    assert len(data["only_left"]) == 150 and len(data["conflicts"]) == 150 and data["only_right"] == []
    assert data["counts"]["conflicts"] == 150
    # Same content again: not changed, file kept, no temp files left behind.
    assert mod.write_report_file(str(report), result, sinks) is False
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]
    for s in sinks:
        s.close()


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"endpoints": ["http://127.0.0.1:1"]}, "exactly two"),
        ({"endpoints": ["http://127.0.0.1:1", "http://127.0.0.1:2", "http://127.0.0.1:3"]}, "exactly two"),
        ({"endpoints": ["http://127.0.0.1:1", "127.0.0.1:2"]}, "has no scheme"),
        ({"endpoints": ["http://127.0.0.1:1", "http://127.0.0.1:2"], "page_size": 0}, "page_size"),
        (
            {"endpoints": ["http://127.0.0.1:1", "http://127.0.0.1:2"], "report_path": "/nonexistent/r.json"},
            "does not exist",
        ),
    ],
)
def test_bad_arguments(params, message):
    from integration.etcd_fixtures import run_module

    result = run_module(mod, params)
    assert result["failed"] and message in result["msg"]


class FakeHistory:
    """A member whose HashKV at r hashes its first r revisions (as etcd's hash covers every key revision up
    to r); it counts the calls and refuses future and compacted revisions, as etcd does."""

    def __init__(self, revisions, compacted=0):
        self.revisions = revisions
        self.compacted = compacted
        self.calls = 0

    def hashkv(self, revision):
        self.calls += 1
        if revision > len(self.revisions) or revision <= self.compacted:
            raise mod.EtcdError(f"HashKV at {revision} refused")
        # Never compacted: etcd sends -1, which a protobuf varint reader sees as 2**64 - 1.
        compact = self.compacted or (1 << 64) - 1
        return {"hash": hash(tuple(self.revisions[:revision])), "compact_revision": compact}


@pytest.mark.parametrize(
    ("shared", "left_more", "right_more", "expected"),
    [
        (212, 300, 40, 212),  # the usual split: both wrote after the fork point
        (212, 0, 40, 212),  # the authoritative side wrote nothing since
        (212, 40, 0, 212),  # the fork wrote nothing since (its history is a prefix of the other)
        (1, 50, 50, 1),  # forked at the very start
        (999, 1, 1, 999),
    ],
)
def test_fork_revision_is_the_last_revision_both_histories_share(shared, left_more, right_more, expected):
    common = [f"c{i}" for i in range(shared)]
    left = FakeHistory(common + [f"l{i}" for i in range(left_more)])
    right = FakeHistory(common + [f"r{i}" for i in range(right_more)])
    point = mod.fork_revision([left, right], [len(left.revisions), len(right.revisions)])
    assert point == expected
    assert left.calls <= 2 * (len(left.revisions).bit_length() + 2)  # a binary search, not a scan


def test_fork_revision_refuses_histories_that_differ_above_the_compact_revision():
    left = FakeHistory(["a"] * 10 + ["x"] * 5, compacted=12)
    right = FakeHistory(["a"] * 10 + ["y"] * 5, compacted=12)
    with pytest.raises(mod.EtcdError, match="compact revision 12"):
        mod.fork_revision([left, right], [15, 15])


def test_deletes_since_keeps_the_last_event_of_each_key_in_the_range(monkeypatch):
    events = [
        ("DELETE", b"/lab/shared/k0", 213, {}),
        ("PUT", b"/lab/shared/k1", 214, {}),
        ("DELETE", b"/lab/shared/k1", 215, {}),
        ("DELETE", b"/lab/w/1", 216, {}),
        ("PUT", b"/lab/w/1", 217, {}),  # deleted, then written again: not a delete any more
        ("DELETE", b"/other/x", 218, {}),  # outside the prefix
    ]
    seen = {}

    def fake_watch(client, start, end):
        seen["range"] = (start, end)
        return iter(events)

    monkeypatch.setattr(mod, "watch_history", fake_watch)
    deleted = mod.deletes_since(object(), 213, 218, b"/lab/", b"/lab0")
    assert deleted == {b"/lab/shared/k0": 213, b"/lab/shared/k1": 215}
    assert seen["range"] == (213, 218)
    assert set(mod.deletes_since(object(), 213, 218, b"\x00", b"\x00")) == {
        b"/lab/shared/k0",
        b"/lab/shared/k1",
        b"/other/x",
    }
