"""Bad input to ./setup.sh: one clear error naming what is wrong, and nothing changed on the host."""

from __future__ import annotations

import subprocess

import pytest
from lablib import lab_leftovers, run

pytestmark = pytest.mark.lab

CASES = [
    (["-e", "lab_members=2"], "lab_members=2 is out of range: the lab builds 3 to 7 members"),
    (["-e", "lab_members=9"], "lab_members=9 is out of range"),
    (["-e", "lab_members=4"], "lab_members=4 is even"),
    (["-e", "lab_members=three"], "lab_members=three is not a whole number"),
    (["-e", "etcd_source=brew"], "etcd_source=brew is unknown: use distro, pypi or path"),
    (
        ["-e", "etcd_source=path", "-e", "etcd_bin_path=/nonexistent"],
        "no etcd and etcdctl in etcd_bin_path=/nonexistent",
    ),
    # This machine has no Docker engine, kind or kubectl: the kind preflight names what is missing.
    (["-e", "lab_platform=kind"], "The kind platform cannot run here:"),
    (["-e", "lab_platform=nomad"], "lab_platform=nomad is unknown"),
    (["-e", "lab_subnet=10.300.0.0/24"], "lab_subnet='10.300.0.0/24' is not a valid IPv4 network"),
    (["-e", '{"lab_isolated_members": ["etcd-1", "etcd-2"]}'], "is not a minority of 3"),
]


@pytest.fixture
def no_lab():
    assert not lab_leftovers(), f"a lab is up: {lab_leftovers()}"
    yield
    assert not lab_leftovers(), f"bad input left something behind: {lab_leftovers()}"


@pytest.mark.parametrize(("args", "message"), CASES, ids=[" ".join(c[0]) for c in CASES])
def test_bad_setting_fails_clearly_and_changes_nothing(no_lab, args, message):
    proc = run(["./setup.sh", *args], timeout=300)
    assert proc.returncode != 0
    assert message in proc.stdout + proc.stderr, proc.stdout[-3000:]
    assert "Traceback" not in proc.stdout + proc.stderr


def test_subnet_clash_with_an_existing_interface(no_lab):
    # A bridge of the test's own, holding an address in the subnet the lab is asked to use.
    subprocess.run(["ip", "link", "add", "sbtst0", "type", "bridge"], check=True)
    try:
        subprocess.run(["ip", "addr", "add", "198.18.250.1/24", "dev", "sbtst0"], check=True)
        proc = run(["./setup.sh", "-e", "lab_subnet=198.18.250.0/24"], timeout=300)
        assert proc.returncode != 0
        assert "lab_subnet=198.18.250.0/24 clashes with 198.18.250.1/24 on interface sbtst0" in proc.stdout
    finally:
        subprocess.run(["ip", "link", "del", "sbtst0"], check=False)


def test_not_root_is_refused_with_the_reason(no_lab):
    proc = run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "./setup.sh"], timeout=60)
    assert proc.returncode == 1
    assert "run as root" in proc.stderr and "network namespaces" in proc.stderr
