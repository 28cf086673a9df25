"""`kubectl exec -n kube-system etcd-0 -- date` on the kind platform, checked offline.

The etcd image is distroless, so the StatefulSet's tools init container copies a static busybox and
lab-date.sh to /lab/bin (first on PATH); the clock-skew pod publishes the offset it applied into
/lab/clock/offset of the etcd container, where lab-date.sh adds it. Here: the rendered wiring, the script run
with a busybox stand-in, and the skew pod's offset file on a fake /proc tree."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
FILES = ROOT / "roles" / "kind_cluster" / "files"
DATE = FILES / "lab-date.sh"
_spec = importlib.util.spec_from_file_location("lab_clock_skew_pod", FILES / "lab_clock_skew_pod.py")
skew_pod = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(skew_pod)


@pytest.fixture(scope="module")
def statefulset(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("kind-date")
    proc = subprocess.run(
        [
            str(ROOT / ".venv/bin/ansible-playbook"),
            "playbooks/render_kind.yml",
            "-e",
            f"lab_render_dir={tmp}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:]
    scripts = next(
        o
        for o in yaml.safe_load_all((tmp / "10-etcd-scripts.yaml").read_text())
        if o and o["metadata"]["name"] == "etcd-scripts"
    )
    sts = yaml.safe_load((tmp / "30-etcd-statefulset.yaml").read_text())
    return sts, scripts


def test_date_is_first_on_the_etcd_containers_path(statefulset):
    sts, scripts = statefulset
    spec = sts["spec"]["template"]["spec"]
    etcd = next(c for c in spec["containers"] if c["name"] == "etcd")
    path = next(e["value"] for e in etcd["env"] if e["name"] == "PATH").split(":")
    assert path[0] == "/lab/bin" and "/usr/local/bin" in path  # etcdctl stays reachable
    mounts = {m["mountPath"]: m for m in etcd["volumeMounts"]}
    assert mounts["/lab/bin"]["name"] == "tools" and mounts["/lab/bin"]["readOnly"]
    assert mounts["/lab/clock"]["name"] == "clock" and not mounts["/lab/clock"].get("readOnly")
    tools = next(c for c in spec["initContainers"] if c["name"] == "tools")
    assert tools["image"].startswith("docker.io/library/busybox:") and tools["image"].endswith("-musl")
    script_mount = next(m["mountPath"] for m in tools["volumeMounts"] if m["name"] == "scripts")
    assert f"cp {script_mount}/lab-date.sh /lab/bin/date" in tools["command"][-1]
    assert "cp /bin/busybox /lab/bin/busybox" in tools["command"][-1]
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert "emptyDir" in volumes["tools"] and "emptyDir" in volumes["clock"]
    assert scripts["data"]["lab-date.sh"] == DATE.read_text()


def busybox_standin(directory: Path) -> Path:
    """A `busybox` that runs the coreutils applet it is asked for (cat, date)."""
    shim = directory / "busybox"
    shim.write_text('#!/bin/sh\napplet=$1; shift; exec "$applet" "$@"\n')
    shim.chmod(0o755)
    return directory


@pytest.mark.parametrize(("offset", "expected"), [(None, 0), ("90", 90), ("-30.6", -30)])
def test_date_adds_the_published_offset(tmp_path, offset, expected):
    assert shutil.which("sh") and shutil.which("date")
    bin_dir = busybox_standin(tmp_path)
    clock = tmp_path / "clock"
    clock.mkdir()
    if offset is not None:
        (clock / "offset").write_text(offset + "\n")
    env = {**os.environ, "LAB_BIN": str(bin_dir), "LAB_CLOCK": str(clock)}
    proc = subprocess.run(["sh", str(DATE), "+%s"], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    assert abs(int(proc.stdout) - time.time() - expected) < 3


def test_skew_pod_publishes_and_removes_the_offset(tmp_path):
    root = tmp_path / "1234" / "root" / "lab" / "clock"
    root.mkdir(parents=True)
    assert skew_pod.publish_offset(1234, 90.0, str(tmp_path))
    assert (root / "offset").read_text() == "90\n"
    assert skew_pod.publish_offset(1234, None, str(tmp_path))
    assert not (root / "offset").exists()
    # A container without /lab/clock (an older StatefulSet): nothing written, and it says so.
    assert not skew_pod.publish_offset(99, 90.0, str(tmp_path))
