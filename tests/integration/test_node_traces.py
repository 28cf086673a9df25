"""lab_node_traces against the real kernel and file system: the partition's nftables table is found in the
namespace that holds it and in no other, a namespace that is gone holds none; clock offsets and data dirs are
found as recover.yml expects them (the role's own moved-aside dirs left out). Names of its own (sbtrc*)."""

from __future__ import annotations

import subprocess

import pytest
from lab_node_traces import delete_table, has_table, scan_nodes_dir

NETNS = ("sbtrc-etcd-0", "sbtrc-etcd-1")
TABLE = "sbtrc_partition"


@pytest.fixture
def namespaces():
    for name in NETNS:
        subprocess.run(["ip", "netns", "add", name], check=True)
    yield NETNS
    for name in NETNS:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


def test_the_table_is_found_only_where_it_is(namespaces):
    with_table, without = namespaces
    subprocess.run(["ip", "netns", "exec", with_table, "nft", "add", "table", "inet", TABLE], check=True)
    assert has_table(with_table, "inet", TABLE)
    assert not has_table(without, "inet", TABLE)
    assert not has_table(with_table, "ip", TABLE), "the family is part of the question"
    subprocess.run(["ip", "netns", "exec", with_table, "nft", "delete", "table", "inet", TABLE], check=True)
    assert not has_table(with_table, "inet", TABLE)


def test_the_table_is_deleted_where_it_is_and_a_refusal_is_one_line(namespaces):
    with_table, without = namespaces
    subprocess.run(["ip", "netns", "exec", with_table, "nft", "add", "table", "inet", TABLE], check=True)
    assert delete_table(with_table, "inet", TABLE) is None
    assert not has_table(with_table, "inet", TABLE)
    error = delete_table(without, "inet", TABLE)
    assert error and "\n" not in error


def test_a_namespace_that_is_gone_holds_no_table():
    assert not has_table("sbtrc-nosuch", "inet", TABLE)


def test_offsets_and_data_dirs_two_levels_down(tmp_path):
    made = ["etcd-0/data/member", "etcd-1/data", "etcd-2/data", "etcd-2/data.by-hand", "etcd-2/data.moved-1"]
    made += ["etcd-1/data.restoring-2", "etcd-1/wal", "etcd-1/data/member/data.deep"]
    for rel in made:
        (tmp_path / rel).mkdir(parents=True)
    (tmp_path / "etcd-0" / "clock_offset").write_text("90\n")
    (tmp_path / "etcd-1" / "datafile").write_text("not a dir\n")
    (tmp_path / "etcd-3").symlink_to(tmp_path / "etcd-2")
    offsets, data_dirs = scan_nodes_dir(str(tmp_path))
    assert offsets == ["etcd-0"]
    assert data_dirs == [str(tmp_path / rel) for rel in ("etcd-0/data", "etcd-1/data", "etcd-2/data",
                                                          "etcd-2/data.by-hand")]  # fmt: skip


def test_a_missing_nodes_dir_has_nothing(tmp_path):
    assert scan_nodes_dir(str(tmp_path / "nosuch")) == ([], [])
