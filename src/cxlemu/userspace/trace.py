"""Traces of real programs: recording under valgrind and replay.

``record(cmd, out)`` runs ``cmd`` under ``valgrind --tool=lackey
--trace-mem=yes`` (Debian's ``valgrind``), which reports every instruction
and every data load, store and modify with its address.  The trace keeps
page-granular data accesses: within each window of 4096 instructions, the
accesses to one page of one kind (read, or write/modify) become one record
with a count and the window's start (instructions executed before it: the
program's time).

File format (little endian)::

    magic    8  b"CXLTRACE"
    version  2  1
    shift    2  page shift (12)
    flags    4  0
    records  8  number of records
    instrs   8  instructions executed by the program
    cmdlen   4  length of the command line, then the command (UTF-8)
    4 blocks     each: u32 compressed length + zlib(data):
                 page deltas (int64), instruction deltas (uint64),
                 kinds (uint8, 1 = write), counts (uint32)
    crc32    4  CRC-32 of the header, the command and the four
                 uncompressed blocks

A truncated file, another file type, a newer version or a corrupted block
raises :class:`TraceError` naming the problem.

Replay (:class:`TraceReplay`, workload ``trace``): the trace's pages are
grouped into regions (gaps of more than ``gap`` pages split them), each
mapped as an anonymous VMA ``trace-<address>``; the records are replayed in
order, an instruction costing ``ns_per_instr`` of compute.
"""

from __future__ import annotations

import os
import re
import struct
import subprocess
import zlib

import numpy as np

from cxlemu.userspace.workloads.base import Batch, Param, Workload, WorkloadError
from cxlemu.util.lazydc import dataclass

MAGIC = b"CXLTRACE"
VERSION = 1
HEADER = struct.Struct("<8sHHIQQI")
_LINE = re.compile(rb"^(?:I  ([0-9a-fA-F]+),\d+| ([LSM]) ([0-9a-fA-F]+),\d+)", re.M)


class TraceError(ValueError):
    pass


@dataclass
class Trace:
    pages: np.ndarray       # int64 page numbers
    instr: np.ndarray       # uint64 instructions before each record (cumulative)
    kinds: np.ndarray       # uint8, 1 = write
    counts: np.ndarray      # uint32 accesses in the record
    instructions: int
    command: str = ""
    shift: int = 12

    @property
    def accesses(self) -> int:
        return int(self.counts.sum())


def _block(arr: np.ndarray) -> bytes:
    raw = arr.tobytes()
    comp = zlib.compress(raw, 6)
    return struct.pack("<I", len(comp)) + comp


def dumps(t: Trace) -> bytes:
    cmd = t.command.encode()
    head = HEADER.pack(MAGIC, VERSION, t.shift, 0, t.pages.size, t.instructions, len(cmd)) + cmd
    pd = np.diff(t.pages.astype(np.int64), prepend=np.int64(0))
    idl = np.diff(t.instr.astype(np.uint64), prepend=np.uint64(0))
    arrays = (pd.astype("<i8"), idl.astype("<u8"), t.kinds.astype("<u1"), t.counts.astype("<u4"))
    crc = zlib.crc32(head)
    body = b""
    for a in arrays:
        crc = zlib.crc32(a.tobytes(), crc)
        body += _block(a)
    return head + body + struct.pack("<I", crc)


def loads(data: bytes) -> Trace:
    if len(data) < 8 or data[:8] != MAGIC:
        raise TraceError("not a cxlemu trace (bad magic: record one with `cxlemu trace record`)")
    if len(data) < HEADER.size:
        raise TraceError("truncated trace (header)")
    magic, ver, shift, _flags, n, instrs, cmdlen = HEADER.unpack_from(data)
    if ver != VERSION:
        raise TraceError(f"unsupported trace version {ver} (this cxlemu reads version {VERSION})")
    if shift not in (12, 21):
        raise TraceError(f"corrupt trace: page shift {shift}")
    pos = HEADER.size
    if pos + cmdlen > len(data):
        raise TraceError("truncated trace (command line)")
    cmd = data[pos:pos + cmdlen].decode(errors="replace")
    pos += cmdlen
    dtypes = ("<i8", "<u8", "<u1", "<u4")
    arrays = []
    crc = zlib.crc32(data[:pos])
    for dt in dtypes:
        if pos + 4 > len(data):
            raise TraceError("truncated trace (data block)")
        (clen,) = struct.unpack_from("<I", data, pos)
        pos += 4
        if pos + clen > len(data):
            raise TraceError("truncated trace (data block)")
        try:
            raw = zlib.decompress(data[pos:pos + clen])
        except zlib.error:
            raise TraceError("corrupt trace (a data block does not decompress)") from None
        pos += clen
        if len(raw) != n * np.dtype(dt).itemsize:
            raise TraceError("corrupt trace (block length does not match the record count)")
        crc = zlib.crc32(raw, crc)
        arrays.append(np.frombuffer(raw, dtype=dt))
    if pos + 4 > len(data):
        raise TraceError("truncated trace (checksum)")
    (want,) = struct.unpack_from("<I", data, pos)
    if want != crc:
        raise TraceError("corrupt trace (checksum mismatch)")
    if pos + 4 != len(data):
        raise TraceError("corrupt trace (trailing bytes)")
    pages = np.cumsum(arrays[0]).astype(np.int64)
    instr = np.cumsum(arrays[1]).astype(np.uint64)
    counts = arrays[3].astype(np.uint32)
    if n and (counts == 0).any():
        raise TraceError("corrupt trace (a record with no access)")
    if n and (pages < 0).any():
        raise TraceError("corrupt trace (negative page)")
    return Trace(pages, instr, arrays[2].astype(np.uint8), counts, int(instrs), cmd, shift)


def load(path: str) -> Trace:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise TraceError(f"{path}: {e.strerror}") from None
    return loads(data)


def save(t: Trace, path: str) -> None:
    with open(path, "wb") as f:
        f.write(dumps(t))


# --------------------------------------------------------------------------------------------
# recording
# --------------------------------------------------------------------------------------------
class Collector:
    """Turns lackey's output, chunk by chunk, into page-granular records."""

    def __init__(self, shift: int = 12, window: int = 4096):
        self.shift = shift
        self.window = window
        self.parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.instr = 0
        self.tail = b""

    def feed(self, chunk: bytes) -> None:
        data = self.tail + chunk
        cut = data.rfind(b"\n")
        if cut < 0:
            self.tail = data
            return
        self.tail = data[cut + 1:]
        self._parse(data[:cut + 1])

    def _parse(self, data: bytes) -> None:
        pages, kinds, when = [], [], []
        instr = self.instr
        for m in _LINE.finditer(data):
            if m.group(1) is not None:
                instr += 1
                continue
            pages.append(int(m.group(3), 16) >> self.shift)
            kinds.append(0 if m.group(2) == b"L" else 1)
            when.append(instr)
        self.instr = instr
        if pages:
            self.parts.append((np.asarray(pages, np.int64), np.asarray(kinds, np.uint8),
                               np.asarray(when, np.uint64)))

    def finish(self, command: str = "") -> Trace:
        if self.tail:
            self._parse(self.tail + b"\n")
            self.tail = b""
        if not self.parts:
            return Trace(np.zeros(0, np.int64), np.zeros(0, np.uint64), np.zeros(0, np.uint8),
                         np.zeros(0, np.uint32), self.instr, command, self.shift)
        p = np.concatenate([x[0] for x in self.parts])
        k = np.concatenate([x[1] for x in self.parts])
        w = np.concatenate([x[2] for x in self.parts]) // np.uint64(self.window)
        # one record per (time window, page, kind) with its count
        key = (w.astype(np.int64) << np.int64(38)) | (p << np.int64(1)) | k.astype(np.int64)
        uk, counts = np.unique(key, return_counts=True)
        win = (uk >> 38).astype(np.uint64) * np.uint64(self.window)
        pages = (uk >> 1) & ((1 << 37) - 1)
        return Trace(pages.astype(np.int64), win, (uk & 1).astype(np.uint8), counts.astype(np.uint32),
                     self.instr, command, self.shift)


def record(cmd: list[str], out: str, valgrind: str = "valgrind") -> Trace:
    """Run ``cmd`` under valgrind's lackey and write the trace to ``out``."""
    import shutil
    if shutil.which(valgrind) is None:
        raise TraceError("valgrind is not installed (Debian: apt-get install valgrind)")
    if not cmd:
        raise TraceError("no command to record")
    # refuse an output that cannot be written before running the program
    if os.path.isdir(out):
        raise TraceError(f"{out}: Is a directory")
    if not os.path.isdir(os.path.dirname(os.path.abspath(out))):
        raise TraceError(f"{out}: No such file or directory")
    if not os.access(os.path.dirname(os.path.abspath(out)), os.W_OK):
        raise TraceError(f"{out}: Permission denied")
    rfd, wfd = os.pipe()
    args = [valgrind, "--tool=lackey", "--trace-mem=yes", f"--log-fd={wfd}", "-q", *cmd]
    try:
        proc = subprocess.Popen(args, pass_fds=(wfd,))
    except OSError as e:
        os.close(rfd)
        os.close(wfd)
        raise TraceError(f"cannot run valgrind: {e.strerror}") from None
    os.close(wfd)
    col = Collector()
    with os.fdopen(rfd, "rb", buffering=0) as r:
        while True:
            chunk = r.read(1 << 20)
            if not chunk:
                break
            col.feed(chunk)
    rc = proc.wait()
    t = col.finish(" ".join(cmd))
    if not t.pages.size:
        raise TraceError(f"valgrind recorded no memory access (exit status {rc}): is {cmd[0]!r} a program?")
    try:
        save(t, out)
    except OSError as e:
        raise TraceError(f"{out}: {e.strerror}") from None
    return t


# --------------------------------------------------------------------------------------------
# replay
# --------------------------------------------------------------------------------------------
class TraceReplay(Workload):
    """Replays a recorded trace: workload ``trace``."""
    name = "trace"
    summary = "replay a trace recorded with `cxlemu trace record`"
    PARAMS = (Param("file", "str", "", "the trace file"),
              Param("loop", "bool", False, "start over at the end (else the process exits)"),
              Param("gap", "count", 256, "pages between regions that become separate VMAs", 1),
              Param("ns_per_instr", "float", 0.5, "compute time per instruction", 0.0, 1e6))
    default_mlp = 2.0
    default_cpu_ns = 0.5

    def validate(self) -> None:
        if not self.p["file"]:
            raise WorkloadError("file", "required: the trace to replay")
        try:
            self.trace = load(self.p["file"])
        except TraceError as e:
            raise WorkloadError("file", str(e)) from None
        if not self.trace.pages.size:
            raise WorkloadError("file", "the trace has no access")

    def setup(self, proc) -> None:
        t = self.trace
        uniq = np.unique(t.pages)
        brk = np.flatnonzero(np.diff(uniq) > self.p["gap"]) + 1
        starts = np.concatenate([[0], brk])
        ends = np.concatenate([brk, [uniq.size]])
        self.region_lo = uniq[starts]
        self.region_base = np.zeros(starts.size, np.int64)
        for i, (a, b) in enumerate(zip(starts, ends)):
            lo, hi = int(uniq[a]), int(uniq[b - 1])
            size = (hi - lo + 1) << t.shift
            addr = proc.mmap(size, f"trace-{lo << t.shift:x}", "anon", compress_ratio=self.p["compress_ratio"])
            self.region_base[i] = addr >> 12
        region = np.searchsorted(self.region_lo, t.pages, side="right") - 1
        self.vpages = self.region_base[region] + (t.pages - self.region_lo[region])
        self.pos = 0

    def batch(self, n: int, rng: np.random.Generator) -> Batch:
        t = self.trace
        counts = t.counts
        start = self.pos
        if start >= counts.size:
            if not self.p["loop"]:
                self.done = True
                return Batch(np.zeros(0, np.int64))
            start = self.pos = 0
        cum = np.cumsum(counts[start:start + max(n, 1)])
        k = int(np.searchsorted(cum, n)) + 1
        end = min(start + k, counts.size)
        self.pos = end
        if end >= counts.size and not self.p["loop"]:
            self.done = True
        acc = int(counts[start:end].sum())
        instr = int(t.instr[end - 1] - t.instr[start]) if end > start else 0
        cpu = self.p["ns_per_instr"] * instr / max(acc, 1)
        return Batch(self.vpages[start:end].copy(), t.kinds[start:end].astype(np.bool_),
                     counts[start:end].astype(np.int64), cpu_ns=cpu)
