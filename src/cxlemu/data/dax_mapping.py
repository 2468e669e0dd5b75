"""Device-DAX mappings of a machine's /dev/daxX.Y, with a CPU-cache model.

A :class:`DaxMapping` is what ``mmap(fd_of("/dev/dax0.0"), MAP_SHARED)``
gives a program: a writable byte array (``.array`` for numpy,
``.view`` for memoryview) whose loads and stores reach the device media at
the DPA the committed HDM decoders translate the dax device's HPA range to.

CPU cache model (persistent-memory programming model, x86):

* a store lands in the CPU cache first; ``persist(offset, length)`` is
  clwb of every cache line of the range followed by sfence, ``flush()``
  persists the whole mapping: the lines are then durable on the device;
* caches are coherent: a store that was never flushed is still seen by
  every later reader (another mapping, dd, the kernel);
* an orderly reboot writes dirty lines back; a power failure loses them
  unless the platform has persistent CPU caches (FADT
  PERSISTENT_CPU_CACHES / eADR, ``boot.persistent_cpu_caches``).

Implementation: the media files always hold the newest data, and the
"cache" is an undo journal (``<machine>/cpu_cache``) holding, for every
cache line that was stored to but not flushed, the content it had when it
was last durable.  :func:`writeback_journal` (orderly reset) discards the
journal; :func:`drop_journal` (power loss without eADR) restores those
lines.  A flush -- by any program, of any line -- removes the lines from the
journal, as clwb cleans a line whoever dirtied it.  Writes made by the
kernel (info blocks, the pmem driver's zeroing) use non-temporal,
flushed stores and also clean the lines they cover.

While a mapping is open, its stores stay private (a copy-on-write mapping
of the media file for a single-device range, an in-memory buffer for an
interleaved one); they are merged into the media, with their undo data,
on ``close()``, and written through on ``persist()``.  A program killed
before ``close()`` loses its unflushed stores, like a crash with dirty
lines that were never evicted.

mmap rules of device-dax (drivers/dax/device.c check_vma): only shared
mappings; the start and the length must be multiples of the device's
``align`` (2 MiB by default), otherwise EINVAL.  (Linux accepts a
misaligned file offset at mmap time and faults with SIGBUS on first
access; this API refuses it at map time with EINVAL.)

Poison (machine checks): a load from a poisoned cache line of a device-DAX
mapping makes the CPU take a machine check, which Linux turns into SIGBUS
for the process (memory_failure_dev_pagemap, "dax page").  Here the checked
loads -- :meth:`DaxMapping.load`, :meth:`DaxMapping.load_lines`,
:meth:`DaxMapping.check` -- raise :class:`MachineCheck` (an ``OSError``
with errno EIO carrying ``hpa``, ``offset``, ``device`` and ``dpa``) and
the kernel accounts the failure (``HardwareCorrupted``).  ``array`` and
``view`` are raw memory, like a C pointer: they are not checked (a numpy
load cannot trap), so programs that must see poison use the checked loads.
``DaxFile`` reads (dd of /dev/daxX.Y) fail with EIO.
"""

from __future__ import annotations

import contextlib
import errno
import mmap
import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

CACHE_LINE = 64
PAGE = 4096
JOURNAL_NAME = "cpu_cache"
#: madvise(2) MADV_POPULATE_WRITE (Linux 5.14): prefault writable pages in one call.
MADV_POPULATE_WRITE = getattr(mmap, "MADV_POPULATE_WRITE", 23)


# ---------------------------------------------------------------------------------------------
# the journal of unflushed cache lines (undo log)
# ---------------------------------------------------------------------------------------------

_CMP_CHUNK = 1 << 22


def diff_lines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Bool per 64-byte line: does ``a`` differ from ``b``?  Both are uint8
    arrays of the same line-multiple length; compared as 64-bit words in
    chunks with one reused scratch buffer (no mapping-sized temporaries)."""
    n = a.size
    out = np.empty(n // CACHE_LINE, dtype=bool)
    words = min(n, _CMP_CHUNK) // 8
    scratch = np.empty(words, dtype=bool)
    for i in range(0, n, _CMP_CHUNK):
        j = min(n, i + _CMP_CHUNK)
        s = scratch[:(j - i) // 8]
        np.not_equal(a[i:j].view(np.uint64), b[i:j].view(np.uint64), out=s)
        out[i // CACHE_LINE:j // CACHE_LINE] = s.reshape(-1, CACHE_LINE // 8).any(axis=1)
    return out


def _line_runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(first, last+1) index runs of True in a 1-D bool array."""
    if mask.size == 0 or not mask.any():
        return []
    m = mask.astype(np.int8)
    d = np.diff(np.concatenate(([0], m, [0])))
    starts = np.flatnonzero(d == 1)
    ends = np.flatnonzero(d == -1)
    return list(zip(starts.tolist(), ends.tolist()))


@dataclass
class CpuCacheJournal:
    """Undo data of dirty lines, per media file: sorted, non-overlapping
    ``(dpa, old_bytes)`` extents, line aligned."""

    path: Path
    extents: dict[str, list[tuple[int, bytes]]] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> "CpuCacheJournal":
        j = cls(Path(path))
        if j.path.exists():
            try:
                j.extents = pickle.loads(j.path.read_bytes())
            except (EOFError, pickle.UnpicklingError):
                j.extents = {}
        return j

    def save(self) -> None:
        self.extents = {k: v for k, v in self.extents.items() if v}
        if not self.extents:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
            return
        from cxlemu.util.fileio import atomic_write
        atomic_write(self.path, pickle.dumps(self.extents, protocol=pickle.HIGHEST_PROTOCOL))

    def add_dirty(self, media_file: str, dpa: int, old: bytes) -> None:
        """Record that [dpa, dpa+len(old)) became dirty; lines already dirty
        keep their older undo data."""
        exts = self.extents.setdefault(media_file, [])
        start, end = dpa, dpa + len(old)
        pieces = []
        cur = start
        for s, b in exts:
            e = s + len(b)
            if e <= cur or s >= end:
                continue
            if s > cur:
                pieces.append((cur, old[cur - start:s - start]))
            cur = max(cur, e)
        if cur < end:
            pieces.append((cur, old[cur - start:]))
        exts.extend(p for p in pieces if p[1])
        exts.sort(key=lambda x: x[0])

    def clean(self, media_file: str, dpa: int, length: int) -> None:
        """Lines of [dpa, dpa+length) were written back: forget their undo."""
        exts = self.extents.get(media_file)
        if not exts:
            return
        start, end = dpa, dpa + length
        out = []
        for s, b in exts:
            e = s + len(b)
            if e <= start or s >= end:
                out.append((s, b))
                continue
            if s < start:
                out.append((s, b[:start - s]))
            if e > end:
                out.append((end, b[end - s:]))
        self.extents[media_file] = out

    def dirty_bytes(self) -> int:
        return sum(len(b) for exts in self.extents.values() for _s, b in exts)


def journal_path_for(media_dir: Path) -> Path:
    return Path(media_dir).parent / JOURNAL_NAME


def writeback_journal(machine) -> None:
    """Orderly reset: the caches write every dirty line back (the media
    already holds them), so the undo data is dropped."""
    with contextlib.suppress(FileNotFoundError):
        (Path(machine.path) / JOURNAL_NAME).unlink()


def drop_journal(machine) -> None:
    """Power loss without persistent caches: dirty lines never reached the
    media; restore what the media held when they were last durable."""
    j = CpuCacheJournal.load(Path(machine.path) / JOURNAL_NAME)
    by_file = {d.media_file: d for d in machine.platform.devices}
    for media_file, exts in j.extents.items():
        hw = by_file.get(media_file)
        if hw is None:
            continue
        arr = machine.media.array(hw)
        for s, b in exts:
            arr[s:s + len(b)] = np.frombuffer(b, dtype=np.uint8)
    machine.media.flush()
    with contextlib.suppress(FileNotFoundError):
        j.path.unlink()


def _lines_of(space, hpa: int, n: int) -> list[tuple[Any, int, int]]:
    """(device, dpa, length) line-aligned pieces covering [hpa, hpa+n)."""
    first = hpa - hpa % CACHE_LINE
    last = -(-(hpa + n) // CACHE_LINE) * CACHE_LINE
    lines = np.arange(first, last, CACHE_LINE, dtype=np.uint64)
    out = []
    for di, _sel, dpa in space._route_lines(lines, CACHE_LINE):
        dpa = np.sort(dpa)
        brk = np.flatnonzero(np.diff(dpa) != CACHE_LINE) + 1
        for chunk in np.split(dpa, brk):
            out.append((space.p.devices[di], int(chunk[0]), int(chunk.size) * CACHE_LINE))
    return out


def note_kernel_write(kernel, space, hpa: int, n: int) -> None:
    """A flushed (non-temporal) write by the kernel: its lines are clean."""
    media = getattr(kernel, "media_store", None) if kernel is not None else None
    media = media or getattr(space, "media", None)
    if media is None:
        return
    path = journal_path_for(media.dir)
    if not path.exists():
        return
    j = CpuCacheJournal.load(path)
    for hw, dpa, length in _lines_of(space, hpa, n):
        j.clean(hw.media_file, dpa, length)
    j.save()


def _written_pages(addr: int, npages: int) -> np.ndarray | None:
    """Pages of a private file mapping that were written (copied on write),
    from /proc/self/pagemap: present or swapped, and no longer file-backed
    (bit 61).  None when pagemap cannot be read."""
    try:
        with open("/proc/self/pagemap", "rb") as f:
            f.seek((addr // PAGE) * 8)
            raw = f.read(npages * 8)
    except OSError:
        return None
    if len(raw) != npages * 8:
        return None
    e = np.frombuffer(raw, dtype=np.uint64)
    in_mem = ((e >> np.uint64(63)) | (e >> np.uint64(62))) & np.uint64(1)
    file_backed = (e >> np.uint64(61)) & np.uint64(1)
    return (in_mem == 1) & (file_backed == 0)


# ---------------------------------------------------------------------------------------------
# dax devices
# ---------------------------------------------------------------------------------------------

class MachineCheck(OSError):
    """A load consumed poison through a dax mapping: the SIGBUS (BUS_MCEERR_AR)
    a process gets.  errno is EIO; ``offset`` is the mapping offset of the
    first poisoned byte, ``hpa``/``device``/``dpa`` where it lives."""

    def __init__(self, offset: int, hpa: int, device: str, dpa: int):
        super().__init__(errno.EIO, f"machine check: poison at mapping offset {offset:#x} "
                                    f"(HPA {hpa:#x}, {device} DPA {dpa:#x})")
        self.offset, self.hpa, self.device, self.dpa = offset, hpa, device, dpa


@dataclass(frozen=True)
class DaxRange:
    hpa: int
    length: int
    pgoff: int        # offset of the range inside the device


def _read_int(backend, path: str) -> int | None:
    try:
        return int(backend.read(path).strip(), 0)
    except (OSError, ValueError):
        return None


@dataclass
class DaxDevice:
    """An open /dev/daxX.Y of a machine."""

    backend: Any
    name: str
    sysfs: str
    size: int
    align: int
    ranges: list[DaxRange]

    @classmethod
    def open(cls, backend, path: str) -> "DaxDevice":
        """``path`` is /dev/daxX.Y (or just daxX.Y)."""
        if not path.startswith("/"):
            path = f"/dev/{path}"
        dev = backend.dax_device(path) if hasattr(backend, "dax_device") else None
        if dev is None:
            raise OSError(errno.ENOENT, os.strerror(errno.ENOENT), path)
        sysfs = dev.sysfs_path
        if not backend.exists(f"{sysfs}/driver"):
            raise OSError(errno.ENXIO, os.strerror(errno.ENXIO), path)
        size = _read_int(backend, f"{sysfs}/size") or 0
        align = _read_int(backend, f"{sysfs}/align") or 4096
        ranges: list[DaxRange] = []
        i = 0
        while backend.exists(f"{sysfs}/mapping{i}"):
            s = _read_int(backend, f"{sysfs}/mapping{i}/start")
            e = _read_int(backend, f"{sysfs}/mapping{i}/end")
            off = _read_int(backend, f"{sysfs}/mapping{i}/page_offset") or 0
            if s is not None and e is not None:
                ranges.append(DaxRange(s, e - s + 1, off * 4096))
            i += 1
        if not ranges:
            start = _read_int(backend, f"{sysfs}/resource")
            if start is None:
                raise OSError(errno.ENXIO, "dax device without a resource", path)
            ranges = [DaxRange(start, size, 0)]
        return cls(backend, dev.name, sysfs, size, align, sorted(ranges, key=lambda r: r.pgoff))

    def hpa_of(self, offset: int) -> tuple[int, int]:
        """(hpa, bytes left in that range) of a device offset."""
        for r in self.ranges:
            if r.pgoff <= offset < r.pgoff + r.length:
                return r.hpa + offset - r.pgoff, r.pgoff + r.length - offset
        raise OSError(errno.ENXIO, f"offset {offset:#x} beyond {self.name}")

    def mmap(self, length: int | None = None, offset: int = 0, *, shared: bool = True,
             populate: bool = False) -> "DaxMapping":
        """mmap(2) of the device; EINVAL for private, misaligned or
        oversized mappings (device.c check_vma, dax_get_unmapped_area).
        ``populate`` is MAP_POPULATE: fault every page in at map time, so
        that first stores run at memory speed (device-dax faults are cheap
        PMD-sized faults on real hardware; the emulation's 4 KiB
        copy-on-write faults are not).  Lazy by default, as mmap(2) is."""
        if length is None:
            length = self.size - offset
        if not shared:
            raise OSError(errno.EINVAL, f"{self.name}: fail, attempted private mapping")
        if length <= 0 or length % self.align or offset % self.align or offset < 0:
            raise OSError(errno.EINVAL, f"{self.name}: fail, unaligned vma "
                                        f"(offset {offset:#x}, length {length:#x}, align {self.align:#x})")
        if offset + length > self.size:
            raise OSError(errno.ENXIO, f"{self.name}: mapping beyond the device")
        return DaxMapping(self, offset, length, populate=populate)


class DaxMapping:
    """A shared mapping of a dax device (see the module docstring)."""

    def __init__(self, dev: DaxDevice, offset: int, length: int, *, populate: bool = False):
        self.dev = dev
        self.offset = offset
        self.length = length
        backend = dev.backend
        if getattr(backend, "machine", None) is None:
            raise OSError(errno.ENODEV, "no media attached to this kernel")
        self.machine = backend.machine
        self.space = backend.hpa_space()
        self._mm: mmap.mmap | None = None
        self._fd: int | None = None
        self.closed = False
        self._direct = self._single_extent()
        if self._direct is not None:
            hw, dpa = self._direct
            path = self.machine.media.path(hw)
            self.machine.media.array(hw)            # make sure the file exists at full size
            self._fd = os.open(path, os.O_RDWR)
            self._mm = mmap.mmap(self._fd, length, flags=mmap.MAP_PRIVATE,
                                 prot=mmap.PROT_READ | mmap.PROT_WRITE, offset=dpa)
            if populate:
                with contextlib.suppress(OSError, ValueError):
                    self._mm.madvise(MADV_POPULATE_WRITE)
            self.array = np.frombuffer(self._mm, dtype=np.uint8)
        else:
            self.array = np.empty(length, dtype=np.uint8)
            self._read_into(self.array, 0, length)
        self.view = memoryview(self.array)

    @property
    def buffer(self) -> memoryview:
        """The mapping as a writable memoryview (same memory as ``array``)."""
        return self.view

    # ---- geometry --------------------------------------------------------------------------
    def _single_extent(self):
        """(device, dpa) when the mapped range is one contiguous DPA run of a
        single device (a 1-way region)."""
        pieces = self._hpa_pieces(0, self.length)
        if len(pieces) != 1:
            return None
        hpa, n = pieces[0]
        for r in self.space.ranges:
            if r.base <= hpa and hpa + n <= r.end and not r.interleaved:
                hw, dpa = self.space.locate(hpa)
                if dpa % mmap.ALLOCATIONGRANULARITY == 0:
                    return hw, dpa
        return None

    def _hpa_pieces(self, off: int, n: int) -> list[tuple[int, int]]:
        out = []
        pos, end = self.offset + off, self.offset + off + n
        while pos < end:
            hpa, left = self.dev.hpa_of(pos)
            take = min(left, end - pos)
            out.append((hpa, take))
            pos += take
        return out

    def _read_into(self, buf: np.ndarray, off: int, n: int) -> None:
        pos = 0
        for hpa, take in self._hpa_pieces(off, n):
            self.space.read_into(hpa, buf[pos:pos + take])
            pos += take

    def _media_view(self, off: int, n: int) -> np.ndarray:
        """What the device holds now for [off, off+n) of the mapping."""
        if self._direct is not None:
            hw, dpa = self._direct
            return self.machine.media.array(hw)[dpa + off:dpa + off + n]
        out = np.empty(n, dtype=np.uint8)
        self._read_into(out, off, n)
        return out

    def _write_media(self, off: int, data: np.ndarray) -> None:
        if self._direct is not None:
            hw, dpa = self._direct
            self.machine.media.array(hw)[dpa + off:dpa + off + data.size] = data
            return
        pos = 0
        for hpa, take in self._hpa_pieces(off, data.size):
            self.space.write(hpa, data[pos:pos + take])
            pos += take

    def _journal(self) -> CpuCacheJournal:
        return CpuCacheJournal.load(Path(self.machine.path) / JOURNAL_NAME)

    def _clean_lines(self, j: CpuCacheJournal, off: int, n: int) -> None:
        for hpa, take in self._hpa_pieces(off, n):
            for hw, dpa, length in _lines_of(self.space, hpa, take):
                j.clean(hw.media_file, dpa, length)

    def _dirty_lines(self, lo: int, hi: int) -> np.ndarray:
        """Bool per cache line of [lo, hi) (line aligned): differs from the media."""
        nlines = (hi - lo) // CACHE_LINE
        if self._mm is not None and lo % PAGE == 0:
            addr = self.array.ctypes.data + lo
            npages = -(-(hi - lo) // PAGE)
            pages = _written_pages(addr, npages)
            if pages is not None:
                mask = np.zeros(nlines, dtype=bool)
                per = PAGE // CACHE_LINE
                media = self._media_view(lo, hi - lo)
                for a, b in _line_runs(pages):
                    pa, pb = lo + a * PAGE, min(hi, lo + b * PAGE)
                    mask[a * per:a * per + (pb - pa) // CACHE_LINE] = diff_lines(self.array[pa:pb],
                                                                                media[pa - lo:pb - lo])
                return mask
        return diff_lines(self.array[lo:hi], self._media_view(lo, hi - lo))

    # ---- checked loads (poison -> machine check) -------------------------------------------------
    def _poison_at(self, offsets: np.ndarray) -> tuple[int, int] | None:
        """(mapping offset, HPA) of the first poisoned line among ``offsets``
        (one vectorised pass through the hardware's poison lists)."""
        hpas = self._hpas(offsets)
        _, bad = self.space.gather_checked(hpas - hpas % np.uint64(CACHE_LINE), CACHE_LINE)
        if not bad.any():
            return None
        i = int(np.argmax(bad))
        return int(offsets[i]), int(hpas[i])

    def _hpas(self, offsets: np.ndarray) -> np.ndarray:
        out = np.empty(offsets.size, dtype=np.uint64)
        pos = self.offset + offsets.astype(np.int64)
        for r in self.dev.ranges:
            m = (pos >= r.pgoff) & (pos < r.pgoff + r.length)
            out[m] = (pos[m] - r.pgoff + r.hpa).astype(np.uint64)
        return out

    def _machine_check(self, off: int, hpa: int) -> "MachineCheck":
        """The MCE: the kernel handles the failure of the page (a "dax page":
        the process is signalled) and the load raises MachineCheck."""
        from cxlemu.kernel.mm.memory_failure import MF_ACTION_REQUIRED
        hw, dpa = self.space.locate(hpa - hpa % CACHE_LINE)
        kernel = getattr(self.dev.backend, "kernel", None)
        if kernel is not None:
            kernel.mm.failure.memory_failure(hpa >> 12, MF_ACTION_REQUIRED)
        return MachineCheck(off, hpa, hw.name, dpa)

    def check(self, offset: int, length: int) -> None:
        """Raise MachineCheck if a load of [offset, offset+length) would consume poison."""
        self._check_open()
        if length <= 0:
            return
        if offset < 0 or offset + length > self.length:
            raise OSError(errno.EFAULT, "load outside the mapping")
        lo = offset - offset % CACHE_LINE
        offs = np.arange(lo, offset + length, CACHE_LINE, dtype=np.int64)
        hit = self._poison_at(offs)
        if hit is not None:
            off, hpa = hit
            raise self._machine_check(max(off, offset), hpa + max(0, offset - off))

    def load(self, offset: int, length: int) -> bytes:
        """A checked load: the bytes, or MachineCheck when any line is poisoned."""
        self.check(offset, length)
        return bytes(self.array[offset:offset + length])

    def load_lines(self, offsets) -> np.ndarray:
        """Checked loads of whole cache lines at ``offsets`` (line aligned), vectorised:
        an (N, 64) array, or MachineCheck for the first poisoned one."""
        self._check_open()
        offs = np.asarray(offsets, dtype=np.int64)
        if offs.size and (np.any(offs % CACHE_LINE) or offs.min() < 0 or offs.max() + CACHE_LINE > self.length):
            raise OSError(errno.EFAULT, "line loads must be 64-byte aligned and inside the mapping")
        hit = self._poison_at(offs) if offs.size else None
        if hit is not None:
            raise self._machine_check(*hit)
        return self.array.reshape(-1, CACHE_LINE)[offs // CACHE_LINE] if self.length % CACHE_LINE == 0 \
            else np.stack([self.array[o:o + CACHE_LINE] for o in offs.tolist()])

    # ---- the programming model ------------------------------------------------------------------
    def persist(self, offset: int, length: int) -> None:
        """clwb every cache line of [offset, offset+length), then sfence."""
        self._check_open()
        if length <= 0:
            return
        if offset < 0 or offset + length > self.length:
            raise OSError(errno.EFAULT, "persist range outside the mapping")
        lo = offset - offset % CACHE_LINE
        hi = min(self.length, -(-(offset + length) // CACHE_LINE) * CACHE_LINE)
        plo = lo - lo % PAGE
        phi = min(self.length, -(-hi // PAGE) * PAGE)
        dirty = self._dirty_lines(plo, phi)
        first, last = (lo - plo) // CACHE_LINE, (hi - plo) // CACHE_LINE
        dirty[:first] = False
        dirty[last:] = False
        for a, b in _line_runs(dirty):
            self._write_media(plo + a * CACHE_LINE, self.array[plo + a * CACHE_LINE:plo + b * CACHE_LINE])
        path = Path(self.machine.path) / JOURNAL_NAME
        if path.exists():
            j = self._journal()
            self._clean_lines(j, lo, hi - lo)
            j.save()

    def flush(self) -> None:
        """Persist the whole mapping (clwb of every line + sfence)."""
        self.persist(0, self.length)

    def close(self) -> None:
        """munmap: unflushed stores stay in the CPU cache (the journal)."""
        if self.closed:
            return
        self.closed = True
        runs = _line_runs(self._dirty_lines(0, self.length))
        if runs:
            j = self._journal()
            for a, b in runs:
                lo, hi = a * CACHE_LINE, b * CACHE_LINE
                for hpa, take in self._hpa_pieces(lo, hi - lo):
                    for hw, dpa, length in _lines_of(self.space, hpa, take):
                        old = self.machine.media.array(hw)[dpa:dpa + length].tobytes()
                        j.add_dirty(hw.media_file, dpa, old)
                self._write_media(lo, self.array[lo:hi])
            j.save()
        self.view.release()
        self.view = None  # type: ignore[assignment]
        self.array = None  # type: ignore[assignment]
        if self._mm is not None:
            with contextlib.suppress(BufferError):
                self._mm.close()
            self._mm = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _check_open(self) -> None:
        if self.closed:
            raise ValueError("mapping is closed")

    def __enter__(self) -> "DaxMapping":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __len__(self) -> int:
        return self.length


# ---------------------------------------------------------------------------------------------
# dd's view of a dax device
# ---------------------------------------------------------------------------------------------

class DaxFile:
    """/dev/daxX.Y for dd: positional reads see the newest data; writes are
    ordinary (cached) stores, journalled like a mapping's unflushed stores."""

    def __init__(self, dev: DaxDevice, write: bool):
        self.dev = dev
        self.writable = write
        self.size = dev.size
        self.space = dev.backend.hpa_space()
        self.machine = dev.backend.machine
        self._journal: CpuCacheJournal | None = None
        self.is_regular = False

    @classmethod
    def open(cls, backend, path: str, write: bool) -> "DaxFile":
        return cls(DaxDevice.open(backend, path), write)

    def _pieces(self, off: int, n: int) -> list[tuple[int, int]]:
        out = []
        end = min(off + n, self.size)
        while off < end:
            hpa, left = self.dev.hpa_of(off)
            take = min(left, end - off)
            out.append((hpa, take))
            off += take
        return out

    def pread(self, n: int, off: int) -> bytes:
        return b"".join(self.space.read(hpa, take) for hpa, take in self._pieces(off, n))

    def pwrite(self, data: bytes, off: int) -> int:
        if off + len(data) > self.size:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        if self._journal is None:
            self._journal = CpuCacheJournal.load(Path(self.machine.path) / JOURNAL_NAME)
        pos = 0
        for hpa, take in self._pieces(off, len(data)):
            for hw, dpa, length in _lines_of(self.space, hpa, take):
                self._journal.add_dirty(hw.media_file, dpa,
                                        self.machine.media.array(hw)[dpa:dpa + length].tobytes())
            self.space.write(hpa, data[pos:pos + take])
            pos += take
        return len(data)

    def truncate(self, n: int) -> None:
        pass

    def close(self) -> None:
        if self._journal is not None:
            self._journal.save()
            self._journal = None


# ---------------------------------------------------------------------------------------------
# convenience: a machine's dax device, mapped
# ---------------------------------------------------------------------------------------------

@contextlib.contextmanager
def open_dax(machine: str, dev: str = "/dev/dax0.0", length: int | None = None, offset: int = 0,
             store=None, populate: bool = False) -> Iterator[DaxMapping]:
    """Open machine ``machine`` (holding its lock), map ``dev`` (/dev/daxX.Y
    or daxX.Y) and yield the :class:`DaxMapping`; unmapped on exit, stores
    not flushed by then stay in the CPU cache (the journal)."""
    from cxlemu.machine.store import Store
    st = store or Store()
    with st.open(machine) as m:
        d = DaxDevice.open(m.backend(), dev)
        mapping = d.mmap(length, offset, populate=populate)
        try:
            yield mapping
        finally:
            mapping.close()
