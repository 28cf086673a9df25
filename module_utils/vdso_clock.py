"""Per-process wall-clock offset for Go programs (etcd), by patching clock_gettime in the target's vDSO.

A static or cgo Go binary reads the clock through the vDSO, never through libc, so LD_PRELOAD tools
(libfaketime) do not reach it and time namespaces cannot shift CLOCK_REALTIME. This module does what
Chaos Mesh's TimeChaos does, in pure Python + ctypes, for x86_64:

1. ptrace-seize every thread of the target (re-reading /proc/PID/task until no new thread shows up)
   and stop it with PTRACE_INTERRUPT;
2. make one thread run ``mmap`` (an injected syscall: registers saved, ``orig_rax = -1`` so the
   kernel does not "restart" it, registers restored afterwards) to get one anonymous r-x page;
3. write into that page a header (tag, offset, patched address, original bytes) and a replacement
   ``clock_gettime`` that makes the real syscall and adds the offset for CLOCK_REALTIME (0) and
   CLOCK_REALTIME_COARSE (5) only, so Go's monotonic clock (timers, elections, leases) is untouched;
4. single-step every thread whose RIP is inside the bytes about to change, then overwrite the first
   12 bytes of the vDSO's ``clock_gettime`` with ``movabs rax, hook; jmp rax``;
5. detach, re-sending any signal that arrived while the threads were held.

The page is found again from the jump (or, after an undo, by its tag), so a second apply only
rewrites the offset, and undo writes the saved bytes back; no state file is needed.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import platform
import signal
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal

CLOCK_REALTIME = 0
CLOCK_REALTIME_COARSE = 5
SYS_CLOCK_GETTIME = 228
SYS_MMAP = 9
NSEC = 1_000_000_000
PAGE_SIZE = 4096

# Page layout: a header the tool reads back, then the code.
MAGIC = b"LABSKEW1"
HDR = struct.Struct(
    "<8sqqQQ16s"
)  # magic, delta_sec, delta_nsec, patched address, original length, original bytes
OFF_DELTA = 8
CODE_OFF = 0x40
JUMP_LEN = 12  # movabs rax, imm64 (10 bytes) + jmp rax (2 bytes)
VDSO_SYMBOLS = ("__vdso_clock_gettime", "clock_gettime")
GO_SECTIONS = {".go.buildinfo", ".note.go.buildid", ".gopclntab"}
EM_X86_64 = 62

# ptrace requests and wait flags (x86_64 Linux).
PTRACE_CONT = 7
PTRACE_SINGLESTEP = 9
PTRACE_GETREGS = 12
PTRACE_SETREGS = 13
PTRACE_DETACH = 17
PTRACE_SEIZE = 0x4206
PTRACE_INTERRUPT = 0x4207
PTRACE_EVENT_STOP = 128
WALL = 0x40000000
STOP_TIMEOUT = 5.0
MAX_STEPS = 64


class ClockSkewError(Exception):
    """One-line, user-facing error."""


class _ThreadGone(Exception):
    pass


# ---------------------------------------------------------------------------------------------------------
# Pure helpers (unit-tested without a target process)
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Mapping:
    start: int
    end: int
    perms: str
    offset: int
    path: str

    @property
    def size(self) -> int:
        return self.end - self.start


def parse_maps(text: str) -> list[Mapping]:
    """Parse /proc/PID/maps text."""
    out = []
    for line in text.splitlines():
        parts = line.split(None, 5)
        if len(parts) < 5:
            continue
        lo, hi = parts[0].split("-")
        path = parts[5].strip() if len(parts) > 5 else ""
        out.append(Mapping(int(lo, 16), int(hi, 16), parts[1], int(parts[2], 16), path))
    return out


def find_vdso(maps: list[Mapping]) -> Mapping | None:
    """The mapping named exactly [vdso] (not [vvar] or [vvar_vclock])."""
    for m in maps:
        if m.path == "[vdso]":
            return m
    return None


def encode_offset(seconds: float) -> tuple[int, int]:
    """Seconds (may be negative) -> (sec, nsec) with 0 <= nsec < 1e9, rounded to the nanosecond."""
    total = int((Decimal(repr(float(seconds))) * NSEC).to_integral_value(ROUND_HALF_EVEN))
    return divmod(total, NSEC)


def decode_offset(sec: int, nsec: int) -> float:
    return (sec * NSEC + nsec) / NSEC


def hook_code(code_addr_offset: int = CODE_OFF) -> bytes:
    """Replacement clock_gettime(clockid edi, timespec *rsi); the offset is read from the page header.

    endbr64; mov eax, 228; syscall; test rax,rax; jnz done; test edi,edi; je add; cmp edi,5; jne done;
    add: mov rdx,[delta_sec]; add [rsi],rdx; mov rdx,[delta_nsec]; add rdx,[rsi+8];
         cmp rdx,1e9; jl store; sub rdx,1e9; inc qword [rsi]; store: mov [rsi+8],rdx; done: ret
    """
    sec_disp = OFF_DELTA - (code_addr_offset + 0x20)
    nsec_disp = OFF_DELTA + 8 - (code_addr_offset + 0x2A)
    return b"".join(
        [
            bytes.fromhex("f30f1efa"),  # 00 endbr64
            bytes.fromhex("b8e4000000"),  # 04 mov eax, 228 (SYS_clock_gettime)
            bytes.fromhex("0f05"),  # 09 syscall
            bytes.fromhex("4885c0"),  # 0b test rax, rax
            bytes.fromhex("7535"),  # 0e jnz 0x45 (error: return it as is)
            bytes.fromhex("85ff"),  # 10 test edi, edi (CLOCK_REALTIME)
            bytes.fromhex("7405"),  # 12 je 0x19
            bytes.fromhex("83ff05"),  # 14 cmp edi, 5 (CLOCK_REALTIME_COARSE)
            bytes.fromhex("752c"),  # 17 jne 0x45
            bytes.fromhex("488b15") + struct.pack("<i", sec_disp),  # 19 mov rdx, [rip+delta_sec]
            bytes.fromhex("480116"),  # 20 add [rsi], rdx
            bytes.fromhex("488b15") + struct.pack("<i", nsec_disp),  # 23 mov rdx, [rip+delta_nsec]
            bytes.fromhex("48035608"),  # 2a add rdx, [rsi+8]
            bytes.fromhex("4881fa00ca9a3b"),  # 2e cmp rdx, 1000000000
            bytes.fromhex("7c0a"),  # 35 jl 0x41
            bytes.fromhex("4881ea00ca9a3b"),  # 37 sub rdx, 1000000000
            bytes.fromhex("48ff06"),  # 3e inc qword [rsi]
            bytes.fromhex("48895608"),  # 41 mov [rsi+8], rdx
            bytes.fromhex("c3"),  # 45 ret
        ]
    )


def build_page(sec: int, nsec: int, patched_addr: int, original: bytes) -> bytes:
    header = HDR.pack(MAGIC, sec, nsec, patched_addr, len(original), original.ljust(16, b"\0"))
    return header.ljust(CODE_OFF, b"\0") + hook_code()


def parse_header(data: bytes) -> tuple[int, int, int, bytes] | None:
    """(sec, nsec, patched address, original bytes) if data starts with our tag, else None."""
    if len(data) < HDR.size or not data.startswith(MAGIC):
        return None
    _, sec, nsec, addr, length, orig = HDR.unpack_from(data)
    return sec, nsec, addr, orig[:length]


def build_jump(target: int) -> bytes:
    """movabs rax, target; jmp rax (rax is the return register, free at function entry)."""
    return b"\x48\xb8" + struct.pack("<Q", target) + b"\xff\xe0"


def parse_jump(code: bytes) -> int | None:
    if len(code) >= JUMP_LEN and code[:2] == b"\x48\xb8" and code[10:12] == b"\xff\xe0":
        return struct.unpack_from("<Q", code, 2)[0]
    return None


def looks_patched(code: bytes) -> bool:
    """Entry bytes that some other tool replaced with a jump (jmp rel32, jmp [rip], movabs+jmp)."""
    return code[:1] == b"\xe9" or code[:2] in (b"\xff\x25", b"\x48\xb8", b"\x49\xbb")


def elf_dynamic_symbol(image: bytes, names: tuple[str, ...] = VDSO_SYMBOLS) -> int:
    """Offset, from the image's load base, of the first of `names` found in its dynamic symbol table.

    Works on a vDSO dumped from memory: uses program headers (PT_DYNAMIC) only, not sections.
    """
    if image[:4] != b"\x7fELF" or image[4] != 2 or image[5] != 1:
        raise ClockSkewError("vDSO is not a 64-bit little-endian ELF image")
    e_phoff, e_phentsize, e_phnum = (
        struct.unpack_from("<Q", image, 0x20)[0],
        *struct.unpack_from("<HH", image, 0x36),
    )
    load_vaddr = None
    dyn = None
    for i in range(e_phnum):
        p_type, _flags, p_offset, p_vaddr, _paddr, p_filesz = struct.unpack_from(
            "<IIQQQQ", image, e_phoff + i * e_phentsize
        )
        if p_type == 1 and load_vaddr is None:  # PT_LOAD
            load_vaddr = p_vaddr - p_offset
        elif p_type == 2:  # PT_DYNAMIC
            dyn = (p_offset, p_filesz)
    if dyn is None or load_vaddr is None:
        raise ClockSkewError("vDSO has no dynamic section")
    tags: dict[int, int] = {}
    for off in range(dyn[0], dyn[0] + dyn[1], 16):
        tag, val = struct.unpack_from("<qQ", image, off)
        if tag == 0:
            break
        tags.setdefault(tag, val)

    def to_off(vaddr: int) -> int:
        return vaddr - load_vaddr

    symtab, strtab = to_off(tags[6]), to_off(tags[5])  # DT_SYMTAB, DT_STRTAB
    if 4 in tags:  # DT_HASH: nchain == number of symbols
        nsyms = struct.unpack_from("<I", image, to_off(tags[4]) + 4)[0]
    else:
        nsyms = _gnu_hash_count(image, to_off(tags[0x6FFFFEF5]))
    wanted = {n.encode(): rank for rank, n in enumerate(names)}
    best = None
    for i in range(nsyms):
        st_name, st_info, _other, st_shndx, st_value, _size = struct.unpack_from(
            "<IBBHQQ", image, symtab + i * 24
        )
        end = image.index(b"\0", strtab + st_name)
        name = image[strtab + st_name : end]
        if name in wanted and st_shndx != 0 and (st_info & 0xF) == 2:  # defined STT_FUNC
            rank = wanted[name]
            if best is None or rank < best[0]:
                best = (rank, st_value)
    if best is None:
        raise ClockSkewError(f"vDSO has none of the symbols {', '.join(names)}")
    return to_off(best[1])


def _gnu_hash_count(image: bytes, off: int) -> int:
    nbuckets, symoffset, bloom_size, _shift = struct.unpack_from("<IIII", image, off)
    buckets_off = off + 16 + bloom_size * 8
    chains_off = buckets_off + nbuckets * 4
    last = max(struct.unpack_from(f"<{nbuckets}I", image, buckets_off), default=0)
    if last < symoffset:
        return symoffset
    while not struct.unpack_from("<I", image, chains_off + (last - symoffset) * 4)[0] & 1:
        last += 1
    return last + 1


def elf_info(data: bytes) -> tuple[int, set[str], bool]:
    """(e_machine, section names, has PT_INTERP) of an ELF64 file's first bytes/whole content."""
    if data[:4] != b"\x7fELF" or data[4] != 2:
        raise ValueError("not a 64-bit ELF file")
    e_machine = struct.unpack_from("<H", data, 0x12)[0]
    e_phoff, e_shoff = struct.unpack_from("<QQ", data, 0x20)
    e_phentsize, e_phnum, e_shentsize, e_shnum, e_shstrndx = struct.unpack_from("<HHHHH", data, 0x36)
    interp = any(struct.unpack_from("<I", data, e_phoff + i * e_phentsize)[0] == 3 for i in range(e_phnum))
    names: set[str] = set()
    if e_shoff and e_shnum and e_shoff + e_shnum * e_shentsize <= len(data):
        str_off = struct.unpack_from("<Q", data, e_shoff + e_shstrndx * e_shentsize + 0x18)[0]
        for i in range(e_shnum):
            sh_name = struct.unpack_from("<I", data, e_shoff + i * e_shentsize)[0]
            end = data.find(b"\0", str_off + sh_name)
            names.add(data[str_off + sh_name : end].decode(errors="replace"))
    return e_machine, names, interp


# ---------------------------------------------------------------------------------------------------------
# ptrace plumbing
# ---------------------------------------------------------------------------------------------------------


_REG_NAMES = [
    "r15",
    "r14",
    "r13",
    "r12",
    "rbp",
    "rbx",
    "r11",
    "r10",
    "r9",
    "r8",
    "rax",
    "rcx",
    "rdx",
    "rsi",
    "rdi",
    "orig_rax",
    "rip",
    "cs",
    "eflags",
    "rsp",
    "ss",
    "fs_base",
    "gs_base",
    "ds",
    "es",
    "fs",
    "gs",
]  # struct user_regs_struct, x86_64


class UserRegs(ctypes.Structure):
    _fields_ = [(n, ctypes.c_ulonglong) for n in _REG_NAMES]


_libc = None


def _ptrace(req: int, tid: int, addr: int = 0, data: int = 0) -> int:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
        _libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
        _libc.ptrace.restype = ctypes.c_long
    ctypes.set_errno(0)
    res = _libc.ptrace(req, tid, ctypes.c_void_p(addr), ctypes.c_void_p(data))
    if res == -1:
        err = ctypes.get_errno()
        if err == errno.ESRCH:
            raise _ThreadGone(tid)
        raise OSError(err, os.strerror(err))
    return res


class _Tracer:
    """Holds every thread of one process stopped under ptrace."""

    def __init__(self, pid: int):
        self.pid = pid
        self.threads: list[int] = []
        self.pending: dict[int, list[int]] = {}
        self.signals_redelivered = 0

    # -- attach / detach --------------------------------------------------------------------------------
    def attach_all(self) -> None:
        """Seize and stop every thread, re-reading /proc/PID/task until no new thread appears."""
        seen: set[int] = set()
        for _round in range(100):
            try:
                tids = sorted(int(t) for t in os.listdir(f"/proc/{self.pid}/task"))
            except FileNotFoundError:
                raise _ThreadGone(self.pid) from None
            new = [t for t in tids if t not in seen]
            if not new:
                break
            for tid in new:
                seen.add(tid)  # a thread that exits stays listed for a moment: never retry it
                try:
                    _ptrace(PTRACE_SEIZE, tid)
                except _ThreadGone:
                    continue  # the thread exited between listdir and seize
                except OSError as e:
                    if e.errno != errno.EPERM:
                        raise
                    # ptrace refuses a task that is exiting with the same EPERM as a missing permission.
                    if tid != self.pid and _exiting(self.pid, tid):
                        continue
                    if _exiting(self.pid):
                        raise _ThreadGone(self.pid) from None
                    raise ClockSkewError(
                        f"ptrace not permitted on pid {self.pid} (needs root/CAP_SYS_PTRACE; "
                        "check kernel.yama.ptrace_scope and that no other tracer is attached)"
                    ) from None
                self.threads.append(tid)
                try:
                    _ptrace(PTRACE_INTERRUPT, tid)
                    self._wait_attach_stop(tid)
                except _ThreadGone:
                    self.threads.remove(tid)
                    if tid == self.pid:
                        raise
        else:
            raise ClockSkewError(f"pid {self.pid} keeps creating threads faster than they can be stopped")
        if self.pid not in self.threads and not self.threads:
            raise _ThreadGone(self.pid)

    def _wait_attach_stop(self, tid: int) -> None:
        while True:
            sig, event = self._wait(tid)
            if event == PTRACE_EVENT_STOP:
                return
            # Signal-delivery-stop before our interrupt: let the signal through at once (siginfo intact).
            _ptrace(PTRACE_CONT, tid, 0, sig)

    def detach_all(self) -> None:
        for tid in self.threads:
            try:
                _ptrace(PTRACE_DETACH, tid)
            except _ThreadGone:
                self._reap(tid)
            except OSError:
                pass
        for tid, sigs in self.pending.items():
            for sig in sigs:
                try:
                    _tgkill(self.pid, tid, sig)
                    self.signals_redelivered += 1
                except OSError:
                    pass
        self.threads = []
        self.pending = {}

    def _reap(self, tid: int) -> None:
        """Collect the exit of a traced thread that died (a killed target cannot finish exiting before)."""
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            try:
                wpid, status = os.waitpid(tid, os.WNOHANG | WALL)
            except ChildProcessError:
                return
            if wpid and not os.WIFSTOPPED(status):
                return
            if wpid:  # a last stop (e.g. PTRACE_EVENT_EXIT) before the exit itself
                with contextlib.suppress(_ThreadGone, OSError):
                    _ptrace(PTRACE_DETACH, tid)
            time.sleep(0.001)

    # -- waiting and stepping -----------------------------------------------------------------------------
    def _wait(self, tid: int) -> tuple[int, int]:
        deadline = time.monotonic() + STOP_TIMEOUT
        delay = 0.0002
        while True:
            try:
                wpid, status = os.waitpid(tid, os.WNOHANG | WALL)
            except ChildProcessError:
                raise _ThreadGone(tid) from None
            if wpid:
                if os.WIFSTOPPED(status):
                    return os.WSTOPSIG(status), status >> 16
                raise _ThreadGone(tid)
            if time.monotonic() > deadline:
                raise ClockSkewError(
                    f"thread {tid} of pid {self.pid} did not stop within {STOP_TIMEOUT:.0f} s"
                )
            time.sleep(delay)
            delay = min(delay * 2, 0.01)

    def step(self, tid: int) -> None:
        """Execute one instruction; signals that arrive meanwhile are held and re-sent at detach."""
        for _ in range(100):
            _ptrace(PTRACE_SINGLESTEP, tid)
            sig, event = self._wait(tid)
            if sig == signal.SIGTRAP and event == 0:
                return
            if event == 0:
                self.pending.setdefault(tid, []).append(sig)
        raise ClockSkewError(f"thread {tid} of pid {self.pid} did not complete a single step")

    def getregs(self, tid: int) -> UserRegs:
        regs = UserRegs()
        _ptrace(PTRACE_GETREGS, tid, 0, ctypes.addressof(regs))
        return regs

    def setregs(self, tid: int, regs: UserRegs) -> None:
        _ptrace(PTRACE_SETREGS, tid, 0, ctypes.addressof(regs))

    def syscall(self, tid: int, syscall_insn: int, nr: int, *args: int) -> int:
        """Run syscall `nr` in thread `tid` at an existing `syscall` instruction; restore every register."""
        saved = self.getregs(tid)
        regs = UserRegs.from_buffer_copy(saved)
        regs.rax = nr
        for name, val in zip(("rdi", "rsi", "rdx", "r10", "r8", "r9"), args, strict=False):
            setattr(regs, name, val & 0xFFFFFFFFFFFFFFFF)
        regs.orig_rax = 0xFFFFFFFFFFFFFFFF  # -1: not inside a syscall, so no restart logic rewrites rax/rip
        regs.rip = syscall_insn
        self.setregs(tid, regs)
        try:
            self.step(tid)
            after = self.getregs(tid)
        finally:
            self.setregs(tid, saved)
        if after.rip != syscall_insn + 2:
            raise ClockSkewError(f"injected syscall in pid {self.pid} ended at an unexpected address")
        res = after.rax - (1 << 64) if after.rax >= 1 << 63 else after.rax
        if -4096 < res < 0:
            raise ClockSkewError(f"injected syscall {nr} in pid {self.pid} failed: {os.strerror(-res)}")
        return res

    def step_out_of(self, lo: int, hi: int) -> int:
        """Single-step every thread whose RIP lies in [lo, hi) until it is outside; returns threads moved."""
        moved = 0
        for tid in list(self.threads):
            for n in range(MAX_STEPS + 1):
                rip = self.getregs(tid).rip
                if not lo <= rip < hi:
                    break
                if n == MAX_STEPS:
                    raise ClockSkewError(
                        f"thread {tid} of pid {self.pid} stays inside clock_gettime's first bytes"
                    )
                self.step(tid)
                moved += n == 0
        return moved


def _exiting(pid: int, tid: int | None = None, wait: float = 0.3) -> bool:
    """Whether process `pid` (or its thread `tid`) is gone or exits within `wait` s.

    ptrace refuses a task that is exiting with EPERM, the same error as a missing permission.
    """
    path = f"/proc/{pid}/status" if tid is None else f"/proc/{pid}/task/{tid}/status"
    deadline = time.monotonic() + wait
    while True:
        try:
            state = next((ln for ln in _read_text(path).splitlines() if ln.startswith("State:")), "")
            if state.split()[1:2] in (["Z"], ["X"]):
                return True
        except (FileNotFoundError, ProcessLookupError):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)


def _tgkill(tgid: int, tid: int, sig: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.syscall(234, tgid, tid, sig) != 0:  # SYS_tgkill
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


# ---------------------------------------------------------------------------------------------------------
# Target inspection
# ---------------------------------------------------------------------------------------------------------


def _read_text(path: str) -> str:
    with open(path) as f:
        return f.read()


def _proc_status(pid: int) -> dict[str, str]:
    out = {}
    for line in _read_text(f"/proc/{pid}/status").splitlines():
        k, _, v = line.partition(":")
        out[k] = v.strip()
    return out


def _check_host() -> None:
    machine = platform.machine()
    if machine not in ("x86_64", "amd64"):
        raise ClockSkewError(f"clock skew supports x86_64 only; this host is {machine}")
    if os.geteuid() != 0:
        raise ClockSkewError("clock skew must run as root (ptrace and /proc/PID/mem of another process)")


def _check_target(pid: int, expect_comm: str | None) -> None:
    try:
        st = _proc_status(pid)
    except (FileNotFoundError, ProcessLookupError):
        raise ClockSkewError(f"no process with pid {pid}") from None
    if st.get("State", "").startswith(("Z", "X")):
        raise ClockSkewError(f"process {pid} has exited (zombie)")
    if st.get("Tgid") != str(pid):
        raise ClockSkewError(f"pid {pid} is a thread of process {st.get('Tgid')}, not a process")
    comm = st.get("Name", "")
    if expect_comm and comm != expect_comm:
        raise ClockSkewError(f"process {pid} is {comm!r}, not {expect_comm!r}")
    tracer = st.get("TracerPid", "0")
    if tracer != "0":
        raise ClockSkewError(f"process {pid} is already traced by pid {tracer}")
    try:
        with open(f"/proc/{pid}/exe", "rb") as f:
            data = f.read()
    except (FileNotFoundError, ProcessLookupError):
        raise ClockSkewError(f"no process with pid {pid}") from None
    except PermissionError:
        raise ClockSkewError(f"cannot read the executable of pid {pid}: permission denied") from None
    try:
        machine, sections, _interp = elf_info(data)
    except (ValueError, struct.error):
        raise ClockSkewError(f"process {pid} ({comm}) is not a 64-bit ELF program") from None
    if machine != EM_X86_64:
        raise ClockSkewError(f"process {pid} ({comm}) is not an x86_64 program")
    if not sections & GO_SECTIONS:
        raise ClockSkewError(
            f"process {pid} ({comm}) is not a Go program (no Go build sections); "
            "this tool only shifts Go programs that read the clock through the vDSO"
        )


@dataclass
class _Target:
    pid: int
    vdso: Mapping
    entry: int
    syscall_insn: int


def _open_mem(pid: int, write: bool = False) -> int:
    try:
        return os.open(f"/proc/{pid}/mem", os.O_RDWR if write else os.O_RDONLY)
    except (FileNotFoundError, ProcessLookupError):
        raise ClockSkewError(f"no process with pid {pid}") from None
    except PermissionError:
        raise ClockSkewError(f"cannot open /proc/{pid}/mem: permission denied (root needed)") from None


def _pread(fd: int, addr: int, size: int) -> bytes:
    data = os.pread(fd, size, addr)
    if len(data) != size:
        raise OSError(errno.EIO, "short read")
    return data


def _pwrite(fd: int, addr: int, data: bytes) -> None:
    if os.pwrite(fd, data, addr) != len(data):
        raise OSError(errno.EIO, "short write")


def _maps(pid: int) -> list[Mapping]:
    try:
        return parse_maps(_read_text(f"/proc/{pid}/maps"))
    except (FileNotFoundError, ProcessLookupError):
        raise _ThreadGone(pid) from None


def _locate(pid: int, fd: int) -> _Target:
    vdso = find_vdso(_maps(pid))
    if vdso is None:
        raise ClockSkewError(f"process {pid} has no [vdso] mapping")
    image = _pread(fd, vdso.start, vdso.size)
    entry = vdso.start + elf_dynamic_symbol(image)
    insn = image.find(b"\x0f\x05")
    if insn < 0:
        raise ClockSkewError(f"no syscall instruction found in the vDSO of pid {pid}")
    return _Target(pid, vdso, entry, vdso.start + insn)


def _hook_page(pid: int, fd: int, entry: int) -> tuple[int | None, tuple[int, int, int, bytes] | None, bytes]:
    """(page address, header, current entry bytes) of an active hook; page None if not hooked."""
    code = _pread(fd, entry, JUMP_LEN)
    target = parse_jump(code)
    if target is None:
        if looks_patched(code):
            raise ClockSkewError(f"clock_gettime of pid {pid} is already patched by another tool")
        return None, None, code
    page = target - CODE_OFF
    try:
        hdr = parse_header(_pread(fd, page, HDR.size))
    except OSError:
        hdr = None
    if hdr is None or hdr[2] != entry:
        raise ClockSkewError(f"clock_gettime of pid {pid} is already patched by another tool")
    return page, hdr, code


def _find_spare_page(pid: int, fd: int, entry: int) -> int | None:
    """A page of ours left mapped by an earlier undo (anonymous r-x, our tag, same entry)."""
    checked = 0
    for m in _maps(pid):
        if m.perms.startswith("r-x") and not m.path and checked < 64:
            for addr in range(m.start, min(m.end, m.start + 16 * PAGE_SIZE), PAGE_SIZE):
                checked += 1
                try:
                    hdr = parse_header(_pread(fd, addr, HDR.size))
                except OSError:
                    continue
                if hdr and hdr[2] == entry:
                    return addr
    return None


@dataclass
class _Visit:
    """One visit to a process's clock_gettime (see _visit): its memory open, a tracer for its threads (none
    stopped before attach_all), what _locate and _hook_page found, and the step under way (errors name it)."""

    fd: int
    tracer: _Tracer
    stage: str = "reading its vDSO"
    target: _Target = field(init=False)
    page: int | None = field(init=False)
    hdr: tuple[int, int, int, bytes] | None = field(init=False)
    code: bytes = field(init=False)


@contextlib.contextmanager
def _visit(pid: int, write: bool = False) -> Iterator[_Visit]:
    """`pid`'s memory open (read-write with `write`), its clock_gettime and our hook page found. A thread gone
    or an OSError becomes the ClockSkewError of the stage reached; the threads are let go and the memory
    closed however it ends."""
    visit = _Visit(_open_mem(pid, write=write), _Tracer(pid))
    try:
        visit.target = _locate(pid, visit.fd)
        visit.page, visit.hdr, visit.code = _hook_page(pid, visit.fd, visit.target.entry)
        yield visit
    except (_ThreadGone, OSError) as e:
        raise _gone_or(pid, visit.stage, e, visit.tracer) from None
    finally:
        visit.tracer.detach_all()
        os.close(visit.fd)


def _gone_or(pid: int, stage: str, exc: BaseException, tracer: _Tracer | None = None) -> ClockSkewError:
    """The error for a failure at `stage`: "exited" when the process is gone (or going), else the cause."""
    if tracer is not None:
        tracer.detach_all()  # also reaps threads that died while we held them, so the exit can complete
    deadline = time.monotonic() + (0.5 if isinstance(exc, _ThreadGone) else 0)
    while True:
        st = None
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            st = _proc_status(pid).get("State", "")
        if st is None or st.startswith(("Z", "X")):
            return ClockSkewError(f"process {pid} exited while {stage}")
        if time.monotonic() >= deadline:
            return ClockSkewError(f"failed while {stage} in pid {pid}: {exc}")
        time.sleep(0.01)


# ---------------------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------------------


def status(pid: int, expect_comm: str | None = None) -> float | None:
    """The offset (seconds) our hook currently adds in `pid`, or None when clock_gettime is not hooked."""
    _check_host()
    _check_target(pid, expect_comm)
    with _visit(pid) as visit:
        return None if visit.hdr is None else decode_offset(visit.hdr[0], visit.hdr[1])


def apply(pid: int, offset: float, expect_comm: str | None = "etcd", check_mode: bool = False) -> dict:
    """Make CLOCK_REALTIME in `pid` run `offset` seconds off. Idempotent.

    Returns {changed, previous_offset, offset, pid, action} where action is one of
    "none", "delta" (hook present, offset rewritten), "hook" (new hook installed).
    """
    _check_host()
    sec, nsec = encode_offset(offset)
    result = {"pid": pid, "offset": decode_offset(sec, nsec), "changed": False, "action": "none"}
    _check_target(pid, expect_comm)
    with _visit(pid, write=not check_mode) as visit:
        fd, tracer, target, hdr = visit.fd, visit.tracer, visit.target, visit.hdr
        result["previous_offset"] = None if hdr is None else decode_offset(hdr[0], hdr[1])
        if hdr is not None and (hdr[0], hdr[1]) == (sec, nsec):
            return result
        result["changed"] = True
        result["action"] = "delta" if hdr is not None else "hook"
        if check_mode:
            return result
        visit.stage = "stopping its threads"
        tracer.attach_all()
        if visit.page is not None:
            visit.stage = "writing the new offset"
            _pwrite(fd, visit.page + OFF_DELTA, struct.pack("<qq", sec, nsec))
            return result
        visit.stage = "mapping a page for the hook"
        page = _find_spare_page(pid, fd, target.entry)
        if page is None:
            page = tracer.syscall(
                tracer.threads[0], target.syscall_insn, SYS_MMAP, 0, PAGE_SIZE, 0x5, 0x22, -1, 0
            )  # PROT_READ|PROT_EXEC, MAP_PRIVATE|MAP_ANONYMOUS
        visit.stage = "writing the hook"
        _pwrite(fd, page, build_page(sec, nsec, target.entry, visit.code))
        visit.stage = "moving threads out of clock_gettime"
        tracer.step_out_of(target.entry, target.entry + JUMP_LEN)
        visit.stage = "patching clock_gettime"
        _pwrite(fd, target.entry, build_jump(page + CODE_OFF))
        return result


def undo(pid: int, expect_comm: str | None = "etcd", check_mode: bool = False) -> dict:
    """Restore the original clock_gettime in `pid` (from the bytes saved in the hook page)."""
    _check_host()
    _check_target(pid, expect_comm)
    result = {"pid": pid, "offset": None, "changed": False, "action": "none", "previous_offset": None}
    with _visit(pid, write=not check_mode) as visit:
        hdr, entry = visit.hdr, visit.target.entry
        if hdr is None:
            return result
        result.update(changed=True, action="restore", previous_offset=decode_offset(hdr[0], hdr[1]))
        if check_mode:
            return result
        visit.stage = "stopping its threads"
        visit.tracer.attach_all()
        visit.stage = "moving threads out of clock_gettime"
        visit.tracer.step_out_of(entry, entry + JUMP_LEN)
        visit.stage = "restoring clock_gettime"
        _pwrite(visit.fd, entry, hdr[3])
        return result
