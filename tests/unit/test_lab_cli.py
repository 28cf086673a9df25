"""The ./lab command: how it maps the exercise's kubectl commands onto the lab's nodes."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_loader = importlib.machinery.SourceFileLoader("lab_cli", str(ROOT / "lab"))
_spec = importlib.util.spec_from_loader("lab_cli", _loader)
lab = importlib.util.module_from_spec(_spec)
_loader.exec_module(lab)

LAB = {
    "name": "sblab",
    "platform": "local",
    "subnet": "198.18.213.0/24",
    "bridge": "sblab0",
    "etcd_bin_dir": "/usr/bin",
    "members": [
        {"name": "etcd-0", "ip": "198.18.213.11", "netns": "sblab-etcd-0"},
        {"name": "etcd-1", "ip": "198.18.213.12", "netns": "sblab-etcd-1"},
    ],
}


@pytest.fixture
def state(tmp_path, monkeypatch):
    monkeypatch.setenv("LAB_STATE_DIR", str(tmp_path))
    (tmp_path / "lab.json").write_text(json.dumps(LAB))
    return tmp_path


def test_exec_runs_inside_the_node_namespace(state):
    assert lab.exec_argv(LAB, LAB["members"][0], ["etcdctl", "member", "list"]) == [
        "ip", "netns", "exec", "sblab-etcd-0", "etcdctl", "member", "list",
    ]  # fmt: skip


@pytest.mark.parametrize(("recorded", "faketime"), [("90", "+90s"), ("-30.5", "-30.5s"), ("+2", "+2s")])
def test_a_skewed_node_gives_commands_its_offset(state, recorded, faketime):
    node = state / "nodes" / "etcd-1"
    node.mkdir(parents=True)
    (node / "clock_offset").write_text(recorded + "\n")
    argv = lab.exec_argv(LAB, LAB["members"][1], ["date"])
    assert argv[:5] == ["ip", "netns", "exec", "sblab-etcd-1", "env"]
    if any(Path(p).exists() for p in lab.FAKETIME_LIBS):
        assert f"FAKETIME={faketime}" in argv and argv[-1] == "date"


def test_kind_platform_maps_to_kubectl_exec(state):
    kind = {**LAB, "platform": "kind"}
    assert lab.exec_argv(kind, kind["members"][0], ["date"]) == [
        "kubectl", "exec", "-n", "kube-system", "etcd-0", "--", "date",
    ]  # fmt: skip


def test_etcdctl_of_the_lab_comes_first_on_the_path(state):
    env = lab.node_env(LAB, LAB["members"][0])
    assert env["PATH"].startswith("/usr/bin:") and env["ETCDCTL_API"] == "3"


def test_a_tls_lab_gives_etcdctl_its_certificates_in_the_node(state):
    assert "ETCDCTL_CACERT" not in lab.node_env(LAB, LAB["members"][0])
    tls = {"enabled": True, "ca_file": "/s/pki/ca.crt", "cert_file": "/s/pki/c.crt",
           "key_file": "/s/pki/c.key"}  # fmt: skip
    env = lab.node_env({**LAB, "tls": tls}, LAB["members"][0])
    assert env["ETCDCTL_CACERT"] == "/s/pki/ca.crt" and env["ETCDCTL_CERT"] == "/s/pki/c.crt"
    assert env["ETCDCTL_KEY"] == "/s/pki/c.key" and env["ETCDCTL_ENDPOINTS"] == "https://127.0.0.1:2379"


def test_nodes_lists_members(state, capsys):
    assert lab.main(["nodes"]) == 0
    out = capsys.readouterr().out
    assert "etcd-0" in out and "198.18.213.12" in out and "stopped" in out


def test_unknown_node_and_missing_lab_are_clear_errors(state, capsys, monkeypatch, tmp_path):
    assert lab.main(["exec", "etcd-7", "--", "true"]) == 2
    assert "no member 'etcd-7' in this lab: members are etcd-0, etcd-1" in capsys.readouterr().err
    assert lab.main(["exec", "etcd-0"]) == 2
    assert "nothing to run" in capsys.readouterr().err
    monkeypatch.setenv("LAB_STATE_DIR", str(tmp_path / "nowhere"))
    assert lab.main(["logs", "etcd-0"]) == 2
    assert "run ./setup.sh first" in capsys.readouterr().err


@pytest.mark.parametrize(
    "content",
    [
        "{",
        "{}",
        "[]",
        "garbage \x00",
        '"text"',
        '{"name": "sblab", "members": 3}',
        '{"name": "sblab", "members": [{"name": "etcd-0"}]}',
        '{"name": "sblab", "members": [{"ip": "198.18.213.11"}]}',
    ],
)
@pytest.mark.parametrize(
    "argv", [["nodes"], ["exec", "etcd-0", "--", "true"], ["logs", "etcd-0"], ["status"]]
)
def test_a_broken_lab_json_is_one_line_not_a_traceback(state, capsys, content, argv):
    (state / "lab.json").write_text(content)
    assert lab.main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("lab: ") and str(state / "lab.json") in lines[0]
    assert "./teardown.sh" in lines[0]


def test_status_adds_what_the_detector_saw_and_says_when_it_is_stale(state, capsys):
    """The detector's lines come from etcd_endpoint_status (detector_state), as in playbooks/status.yml."""
    assert lab.detector_state(LAB) == state / "safeguards" / "detector.json"
    module = lab.endpoint_status_module()
    assert module.detector_lines(str(lab.detector_state(LAB))) == []  # safeguards.yml has not started it
    (state / "safeguards").mkdir()
    alert = {"since": "2026-12-06T05:00:00Z", "severity": "critical", "message": "2 leaders"}
    detector = {"time": "2026-12-06T05:00:10Z", "interval": 3, "status": "critical", "alerts": [alert]}
    (state / "safeguards" / "detector.json").write_text(json.dumps(detector))
    moment = datetime(2026, 12, 6, 5, 0, 14, tzinfo=UTC).timestamp()
    path = str(lab.detector_state(LAB))
    assert module.detector_lines(path, now=moment) == [
        "Split-brain detector: CRITICAL (last round 4 s ago)",
        "  since 2026-12-06T05:00:00Z critical 2 leaders",
    ]
    assert "STALE: is it still running?" in module.detector_lines(path, now=moment + 60)[0]
    layout = dict(LAB, members=[dict(m, client_url="http://127.0.0.1:9") for m in LAB["members"]])
    (state / "lab.json").write_text(json.dumps(layout))
    assert lab.main(["status"]) == 0 and "Split-brain detector: CRITICAL" in capsys.readouterr().out
    (state / "safeguards" / "detector.json").write_text("{torn")
    assert module.detector_lines(path) == []


def test_status_without_etcd_answering_reports_every_member_unreachable(state, capsys):
    """The direct report (no ansible-playbook) runs the module's own code: members that do not answer are
    listed as such (127.0.0.1 on a port nothing listens on: refused at once)."""
    layout = dict(
        LAB, members=[dict(m, client_url=f"http://127.0.0.1:{9 + i}") for i, m in enumerate(LAB["members"])]
    )
    (state / "lab.json").write_text(json.dumps(layout))
    assert lab.main(["status"]) == 0
    out = capsys.readouterr().out
    assert out.count("connection refused") == 2 and "http://127.0.0.1:9 " in out and "127.0.0.1:10 " in out
    assert lab.main(["status", "--explain"]) == 0
    assert "Unreachable:" in capsys.readouterr().out


def test_ledger_merges_the_writers_by_time_unless_asked_per_writer(state, capsys):
    (state / "ledger").mkdir()

    def line(writer, second, seq):
        return json.dumps({"time": f"2026-12-06T05:00:{second:02d}.000+00:00", "writer": writer, "seq": seq})

    (state / "ledger" / "etcd-0.jsonl").write_text(line("etcd-0", 1, 1) + "\n" + line("etcd-0", 4, 2) + "\n")
    (state / "ledger" / "etcd-1.jsonl").write_text(
        line("etcd-1", 2, 1) + "\n" + line("etcd-1", 3, 2) + "\n{torn"
    )
    assert lab.main(["ledger"]) == 0
    merged = capsys.readouterr().out.splitlines()
    assert [json.loads(x)["time"][17:19] for x in merged[:4]] == ["01", "02", "03", "04"]
    assert merged[4] == "{torn"  # a killed writer's last line: kept, last
    assert lab.main(["ledger", "--per-writer"]) == 0
    assert [json.loads(x)["writer"] for x in capsys.readouterr().out.splitlines()[:4]] == ["etcd-0"] * 2 + [
        "etcd-1"
    ] * 2
    assert lab.main(["ledger", "--writer", "etcd-1"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 3


def test_status_shows_what_each_member_says_and_the_diagnosis_only_with_explain(state, capsys):
    """The findings answer the exercise's first tasks: ./lab status keeps them behind --explain."""
    layout = dict(
        LAB, members=[dict(m, client_url=f"http://127.0.0.1:{9 + i}") for i, m in enumerate(LAB["members"])]
    )
    (state / "lab.json").write_text(json.dumps(layout))
    assert lab.main(["status"]) == 0
    raw = capsys.readouterr().out
    assert "MEMBERS IT LISTS" in raw and "Findings:" not in raw and "--explain adds the diagnosis" in raw
    assert lab.main(["status", "--explain"]) == 0
    explained = capsys.readouterr().out
    assert "Findings:" in explained and "--explain" not in explained


def test_hint_gives_one_more_each_time_then_says_it_was_the_last(state, capsys):
    for n in range(1, len(lab.HINTS) + 1):
        assert lab.main(["hint"]) == 0
        assert capsys.readouterr().out.startswith(f"Hint {n} of {len(lab.HINTS)}: ")
    assert lab.main(["hint"]) == 0
    assert "That was the last" in capsys.readouterr().out
    assert lab.main(["hint", "--all"]) == 0
    assert capsys.readouterr().out.count("Hint ") == len(lab.HINTS)
    assert lab.main(["hint", "--reset"]) == 0 and not (state / "hints.seen").exists()
    capsys.readouterr()
    assert lab.main(["hint"]) == 0 and capsys.readouterr().out.startswith("Hint 1 of")
