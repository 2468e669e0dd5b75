"""Device-DAX mappings of a machine's /dev/daxX.Y.

A :class:`DaxMapping` is what ``mmap(fd_of("/dev/dax0.0"), MAP_SHARED)``
gives a program: memory whose loads and stores *are* loads and stores of the
device media, at the DPA the committed HDM decoders translate the dax
device's HPA range to.  The media files are mapped ``MAP_SHARED`` directly:

* a 1-way region: the media file itself, at the right offset -- ``array`` is
  a plain 1-D numpy array over it, ``view`` a memoryview;
* an interleaved region: one address range is reserved and each piece of
  media is mapped into it with ``MAP_FIXED``.  When the interleave granules
  are page multiples and there are not too many of them (``MAX_PIECES``, 512: one 2 MiB unit of 4 KiB granules),
  every granule is mapped in HPA order and ``array`` is again a flat numpy
  array.  Otherwise each device's DPA extent is mapped once, ``rows`` is
  the strided numpy view ``(rows, ways, granule)`` of it in HPA order (when
  the interleave is a modulo one), and ``array`` is a
  :class:`HpaOrderArray`: 1-D indexing in HPA order over the same memory
  (slices read into new arrays and store through, vectorised per granule;
  XOR arithmetic goes through a per-granule position map).

The CPU-cache model (data/cpucache.py) decides only what a power failure
loses, never where bytes are: a writable mapping is registered with the
compiled store trap (src/cxlemu/preload/cpucache.c) -- the first store to a
page saves the clean lines' old content to the undo log -- and
``persist(offset, length)`` is clwb + sfence: the lines become clean and the
pages write-protected again (it costs a few microseconds plus a memset of
one byte per line; no data is copied).  ``close()`` unmaps; unflushed
stores stay "in the CPU cache" (an orderly reboot keeps them, a power
failure loses them unless the platform has eADR).  Without the compiled
library a mapping saves the undo data of all its lines at map time and after
each ``persist`` (exact, slower).

Opening a mapping reads the machine (its sysfs and decoders) under the
machine's lock; the mapping itself holds no lock: other commands and the
machine process run while it is open (``cxlemu.machine.dax.open_dax`` maps
a dax device of a stored machine by name).  A mapping that outlives its dax
device (destroyed, machine reset) keeps mapping the same media (Linux would
raise SIGBUS on the next access).

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

import ctypes
import errno
import mmap
import os
import sys
from pathlib import Path
from typing import Any, Iterator

import numpy as np
from numpy.lib.stride_tricks import as_strided

from cxlemu.data import cpucache
from cxlemu.data.cpucache import KEEP, PAGE, CpuCache
from cxlemu.util.lazydc import dataclass

CACHE_LINE = cpucache.LINE

#: at most this many MAP_FIXED pieces per mapping (vm.max_map_count is 65530, and
#: write-protecting many small VMAs on every persist costs more than it saves)
MAX_PIECES = 512
#: pages captured per store trap (2 MiB)
TRAP_UNIT_PAGES = 512
#: madvise(2) MADV_POPULATE_WRITE (Linux 5.14): prefault writable pages in one call.
MADV_POPULATE_WRITE = getattr(mmap, "MADV_POPULATE_WRITE", 23)

PROT_NONE, PROT_READ, PROT_WRITE = 0, 1, 2
MAP_SHARED, MAP_PRIVATE, MAP_FIXED, MAP_ANONYMOUS = 0x01, 0x02, 0x10, 0x20
MAP_NORESERVE, MAP_POPULATE = 0x4000, 0x8000
MAP_FAILED = ctypes.c_void_p(-1).value


# ---------------------------------------------------------------------------------------------
# libc mmap through ctypes (Python's mmap module cannot map at a fixed address)
# ---------------------------------------------------------------------------------------------

class _Libc:
    def __init__(self) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        vp, sz = ctypes.c_void_p, ctypes.c_size_t
        libc.mmap.restype = vp
        libc.mmap.argtypes = [vp, sz, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
        libc.munmap.restype = ctypes.c_int
        libc.munmap.argtypes = [vp, sz]
        self.c = libc

    def mmap(self, addr: int | None, length: int, prot: int, flags: int, fd: int = -1, off: int = 0) -> int:
        r = self.c.mmap(addr, length, prot, flags, fd, off)
        if r is None or r == MAP_FAILED:
            e = ctypes.get_errno()
            raise OSError(e, f"mmap: {os.strerror(e)}")
        return int(r)

    def munmap(self, addr: int, length: int) -> None:
        self.c.munmap(addr, length)


_LIBC: list[_Libc] = []


def _libc() -> _Libc:
    if not _LIBC:
        _LIBC.append(_Libc())
    return _LIBC[0]


def _array_at(addr: int, n: int) -> np.ndarray:
    return np.ctypeslib.as_array((ctypes.c_uint8 * n).from_address(addr))


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


@dataclass(frozen=True)
class DaxLayout:
    """Where a range of a dax device lives: what the device server answers a
    C program's mmap with, and what :class:`DaxMapping` maps.

    ``pieces`` is an (n, 4) int64 array of ``(offset in the mapping, length,
    file index, DPA)`` rows in mapping (HPA) order; ``files``/``paths``/
    ``capacities`` describe each device's media file."""

    offset: int
    length: int
    files: tuple[str, ...]
    paths: tuple[str, ...]
    capacities: tuple[int, ...]
    pieces: np.ndarray
    granule: int
    ways: int
    cache_dir: str

    @property
    def page_aligned(self) -> bool:
        return not bool(np.any(self.pieces[:, [0, 1, 3]] % PAGE))


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
        return cls.from_sysfs(backend, dev.name, dev.sysfs_path, path)

    @classmethod
    def from_sysfs(cls, backend, name: str, sysfs: str, path: str = "") -> "DaxDevice":
        if not backend.exists(f"{sysfs}/driver"):
            raise OSError(errno.ENXIO, os.strerror(errno.ENXIO), path or name)
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
                raise OSError(errno.ENXIO, "dax device without a resource", path or name)
            ranges = [DaxRange(start, size, 0)]
        return cls(backend, name, sysfs, size, align, sorted(ranges, key=lambda r: r.pgoff))

    def hpa_of(self, offset: int) -> tuple[int, int]:
        """(hpa, bytes left in that range) of a device offset."""
        for r in self.ranges:
            if r.pgoff <= offset < r.pgoff + r.length:
                return r.hpa + offset - r.pgoff, r.pgoff + r.length - offset
        raise OSError(errno.ENXIO, f"offset {offset:#x} beyond {self.name}")

    def hpa_pieces(self, offset: int, n: int) -> list[tuple[int, int]]:
        out = []
        pos, end = offset, offset + n
        while pos < end:
            hpa, left = self.hpa_of(pos)
            take = min(left, end - pos)
            out.append((hpa, take))
            pos += take
        return out

    def check_mmap(self, length: int, offset: int, shared: bool = True) -> None:
        """device.c check_vma / dax_get_unmapped_area: EINVAL for private or
        misaligned mappings, ENXIO beyond the device."""
        if not shared:
            raise OSError(errno.EINVAL, f"{self.name}: fail, attempted private mapping")
        if length <= 0 or length % self.align or offset % self.align or offset < 0:
            raise OSError(errno.EINVAL, f"{self.name}: fail, unaligned vma "
                                        f"(offset {offset:#x}, length {length:#x}, align {self.align:#x})")
        if offset + length > self.size:
            raise OSError(errno.ENXIO, f"{self.name}: mapping beyond the device")

    def layout(self, offset: int, length: int) -> DaxLayout:
        """Where [offset, offset+length) of the device lives on the media
        (and the cache files for those devices exist afterwards)."""
        machine = getattr(self.backend, "machine", None)
        if machine is None:
            raise OSError(errno.ENODEV, "no media attached to this kernel")
        space = self.backend.hpa_space()
        parts, granule, ways = [], 0, 1
        pos = 0
        for hpa, take in self.hpa_pieces(offset, length):
            ext = space.extents(hpa, take)
            ext[:, 0] += pos
            parts.append(ext)
            pos += take
            for r in space.ranges:
                if r.base <= hpa < r.end and r.interleaved:
                    granule = max(granule, r.granule)
                    ways = max(ways, len(r.members))
        pieces = np.concatenate(parts) if parts else np.zeros((0, 4), np.int64)
        devs = sorted(set(pieces[:, 2].tolist()))
        remap = np.full(max(devs) + 1 if devs else 1, -1, dtype=np.int64)
        remap[devs] = np.arange(len(devs))
        pieces[:, 2] = remap[pieces[:, 2]]
        hws = [space.p.devices[d] for d in devs]
        media = machine.media
        cdir = cpucache.cache_dir(machine.path)
        for hw in hws:
            media.array(hw)                     # the file exists at full size
            cpucache.ensure_files(cdir, hw.media_file, hw.media_size)
        return DaxLayout(offset, length, tuple(hw.media_file for hw in hws),
                         tuple(str(media.path(hw)) for hw in hws),
                         tuple(int(hw.media_size) for hw in hws), pieces, granule, ways, str(cdir))

    def mmap(self, length: int | None = None, offset: int = 0, *, shared: bool = True,
             populate: bool = False) -> "DaxMapping":
        """mmap(2) of the device; EINVAL for private, misaligned or
        oversized mappings (device.c check_vma, dax_get_unmapped_area).
        ``populate`` is MAP_POPULATE: fault every page in at map time."""
        if length is None:
            length = self.size - offset
        self.check_mmap(length, offset, shared)
        return DaxMapping(self.layout(offset, length), populate=populate, dev=self)


# ---------------------------------------------------------------------------------------------
# HPA order over per-device extents
# ---------------------------------------------------------------------------------------------

class HpaOrderArray:
    """A 1-D uint8 sequence in HPA order over memory that is laid out per
    device (the extents of an interleaved mapping).  Slices load into new
    numpy arrays and store through; ``np.asarray`` loads everything."""

    def __init__(self, va: np.ndarray, gva: np.ndarray, granule: int, length: int, ways: int = 0):
        self._va = va                        # the reserved range, all extents
        self._gva = gva                      # offset in _va of every granule, HPA order
        self.granule = granule
        self.length = length
        g = granule
        self._rows2d = va[:va.size - va.size % g].reshape(-1, g) if not np.any(gva % g) else None
        # modulo interleave: granule r*ways + w is at cols[w] + r*g (one
        # contiguous run per device): copies go one device at a time
        self._ways, self._cols = ways, None
        if ways > 1 and len(gva) >= ways and len(gva) % ways == 0:
            grid = gva.reshape(-1, ways)
            cols = grid[0]
            if np.array_equal(grid, cols[None, :] + (np.arange(grid.shape[0]) * g)[:, None]):
                self._cols = cols.tolist()

    # numpy-ish surface
    shape = property(lambda self: (self.length,))
    size = property(lambda self: self.length)
    nbytes = property(lambda self: self.length)
    ndim = 1
    dtype = np.dtype(np.uint8)

    def __len__(self) -> int:
        return self.length

    def _span(self, key) -> tuple[int, int] | None:
        if isinstance(key, slice):
            a, b, step = key.indices(self.length)
            return (a, max(a, b)) if step == 1 else None
        return None

    def _pieces(self, a: int, b: int) -> Iterator[tuple[int, int, int]]:
        """(offset in [a,b), va offset, length) per granule piece (slow path)."""
        g = self.granule
        i = a
        while i < b:
            k, r = divmod(i, g)
            take = min(g - r, b - i)
            yield i - a, int(self._gva[k]) + r, take
            i += take

    def _copy(self, a: int, b: int, buf: np.ndarray, store: bool) -> None:
        g, ways = self.granule, self._ways
        if self._cols is not None:
            ra, rb = -(-a // (g * ways)), b // (g * ways)
            if rb > ra:
                lo, hi = ra * ways * g - a, rb * ways * g - a
                part = buf[lo:hi]
                wide = g % 8 == 0 and part.ctypes.data % 8 == 0 and self._va.ctypes.data % 8 == 0
                dt = np.uint64 if wide else np.uint8
                w_g = g // 8 if wide else g
                b3 = part.view(dt).reshape(rb - ra, ways, w_g)
                va = self._va.view(dt) if wide else self._va
                unit = 8 if wide else 1
                cols = self._cols
                step = cols[1] - cols[0]
                if step > 0 and all(cols[w] == cols[0] + w * step for w in range(ways)):
                    # one copy, device-major: each device's run is contiguous
                    start = (cols[0] + ra * g) // unit
                    dev3 = as_strided(va[start:], shape=(ways, rb - ra, w_g),
                                      strides=(step, g, unit))
                    if store:
                        np.copyto(dev3, b3.transpose(1, 0, 2))
                    else:
                        np.copyto(b3.transpose(1, 0, 2), dev3)
                else:
                    for w, c in enumerate(cols):
                        dev = va[(c + ra * g) // unit:(c + rb * g) // unit].reshape(rb - ra, w_g)
                        if store:
                            dev[...] = b3[:, w, :]
                        else:
                            b3[:, w, :] = dev
                if a < ra * ways * g:
                    self._copy_granules(a, ra * ways * g, buf[:lo], store)
                if rb * ways * g < b:
                    self._copy_granules(rb * ways * g, b, buf[hi:], store)
                return
        self._copy_granules(a, b, buf, store)

    def _copy_granules(self, a: int, b: int, buf: np.ndarray, store: bool) -> None:
        g = self.granule
        ga, gb = -(-a // g), b // g
        if self._rows2d is not None and gb > ga:
            # whole granules: one vectorised gather/scatter of rows
            lo, hi = ga * g - a, gb * g - a
            rows = self._gva[ga:gb] // g
            if store:
                self._rows2d[rows] = buf[lo:hi].reshape(-1, g)
            else:
                buf[lo:hi].reshape(-1, g)[:] = self._rows2d[rows]
            edges = [(a, min(b, ga * g)), (max(a, gb * g), b)]
        else:
            edges = [(a, b)]
        for ea, eb in edges:
            if eb <= ea:
                continue
            for off, va, take in self._pieces(ea, eb):
                o = ea - a + off
                if store:
                    self._va[va:va + take] = buf[o:o + take]
                else:
                    buf[o:o + take] = self._va[va:va + take]

    def __getitem__(self, key):
        span = self._span(key)
        if span is not None:
            a, b = span
            out = np.empty(b - a, dtype=np.uint8)
            self._copy(a, b, out, store=False)
            return out
        if isinstance(key, (int, np.integer)):
            i = int(key) + (self.length if key < 0 else 0)
            if not 0 <= i < self.length:
                raise IndexError("index out of range")
            k, r = divmod(i, self.granule)
            return self._va[int(self._gva[k]) + r]
        return np.asarray(self)[key]

    def __setitem__(self, key, value) -> None:
        span = self._span(key)
        if span is None:
            if isinstance(key, (int, np.integer)):
                span = (int(key) % self.length, int(key) % self.length + 1)
            else:
                full = np.asarray(self)
                full[key] = value
                self._copy(0, self.length, full, store=True)
                return
        a, b = span
        if isinstance(value, (bytes, bytearray, memoryview)):
            value = np.frombuffer(value, dtype=np.uint8)
        if isinstance(value, np.ndarray) and value.dtype == np.uint8 and value.shape == (b - a,):
            buf = np.ascontiguousarray(value)
        else:
            buf = np.empty(b - a, dtype=np.uint8)
            buf[...] = value
        self._copy(a, b, buf, store=True)

    def load(self, offset: int, out: np.ndarray) -> np.ndarray:
        """Copy ``out.size`` bytes from ``offset`` into ``out`` (a contiguous
        uint8 array) without a temporary; returns ``out``."""
        if out.dtype != np.uint8 or out.ndim != 1 or not out.flags.c_contiguous:
            raise ValueError("out must be a contiguous 1-D uint8 array")
        if offset < 0 or offset + out.size > self.length:
            raise IndexError("load beyond the mapping")
        self._copy(offset, offset + out.size, out, store=False)
        return out

    def __array__(self, dtype=None, copy=None):
        out = self[:]
        return out if dtype is None else out.astype(dtype)

    def tobytes(self) -> bytes:
        return self[:].tobytes()

    def __eq__(self, other):  # noqa: D105 - elementwise, like numpy
        return np.asarray(self) == other

    def __ne__(self, other):
        return np.asarray(self) != other

    __hash__ = None  # type: ignore[assignment]

    def __bytes__(self) -> bytes:
        return self.tobytes()


# ---------------------------------------------------------------------------------------------
# the mapping
# ---------------------------------------------------------------------------------------------

class DaxMapping:
    """A shared mapping of a dax device (see the module docstring)."""

    def __init__(self, layout: DaxLayout, *, populate: bool = False, dev: DaxDevice | None = None,
                 trap: cpucache.TrapLib | None | bool = True, writable: bool = True):
        self.dev = dev
        self.layout = layout
        self.offset, self.length = layout.offset, layout.length
        self.closed = False
        self.cache = CpuCache(layout.cache_dir, trap)
        self._map_id: int | None = None
        self._root: np.ndarray | None = None
        self._array: Any = None
        self._view: Any = None
        self.rows: np.ndarray | None = None
        self.mode = ""
        self.trapped = False
        base, total = self._map(populate)
        self._base, self._total = base, total
        try:
            if writable:
                self._start_cache()
        except BaseException:
            self._unmap()
            raise

    # ---- mapping the media ----------------------------------------------------------------------
    def _map(self, populate: bool) -> tuple[int, int]:
        lay = self.layout
        libc = _libc()
        fds = [os.open(p, os.O_RDWR) for p in lay.paths]
        pop = MAP_POPULATE if populate else 0
        try:
            pieces = lay.pieces
            if len(pieces) == 1 and lay.page_aligned:
                off, n, fi, dpa = (int(x) for x in pieces[0])
                addr = libc.mmap(None, n, PROT_READ | PROT_WRITE, MAP_SHARED | pop, fds[fi], dpa)
                self.mode = "direct"
                self._segments = np.array([(0, n, dpa, fi, 0)], dtype=cpucache.SEG_DTYPE)
                self._root = self._array = _array_at(addr, n)
                self._view = memoryview(self._array)
                return addr, n
            if lay.page_aligned and len(pieces) <= MAX_PIECES:
                addr = libc.mmap(None, self.length, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE)
                try:
                    for off, n, fi, dpa in pieces.tolist():
                        libc.mmap(addr + off, n, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED | pop, fds[fi], dpa)
                except OSError:
                    libc.munmap(addr, self.length)
                    raise
                self.mode = "granules"
                segs = np.zeros(len(pieces), dtype=cpucache.SEG_DTYPE)
                segs["off"], segs["len"], segs["dpa"], segs["dev"] = \
                    pieces[:, 0], pieces[:, 1], pieces[:, 3], pieces[:, 2]
                self._segments = segs
                self._root = self._array = _array_at(addr, self.length)
                self._view = memoryview(self._array)
                return addr, self.length
            return self._map_extents(libc, fds, pop)
        finally:
            for fd in fds:
                os.close(fd)

    def _map_extents(self, libc: _Libc, fds: list[int], pop: int) -> tuple[int, int]:
        """Each device's DPA extent mapped once, side by side, in the order
        the devices appear in the first row."""
        lay = self.layout
        pieces = lay.pieces
        g = max(lay.granule, 1)
        al = max(g, PAGE)
        order = list(dict.fromkeys(pieces[:, 2].tolist()))
        lo, hi = {}, {}
        for fi in order:
            sel = pieces[pieces[:, 2] == fi]
            lo[fi] = int(sel[:, 3].min()) // al * al
            hi[fi] = min(-(-int((sel[:, 3] + sel[:, 1]).max()) // PAGE) * PAGE, lay.capacities[fi])
        rel = {fi: int(pieces[pieces[:, 2] == fi][:, 3].min()) - lo[fi] for fi in order}
        stride = max(-(-(hi[fi] - lo[fi]) // al) * al for fi in order)
        total = stride * len(order)
        addr = libc.mmap(None, total, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE)
        base = {fi: k * stride for k, fi in enumerate(order)}
        try:
            for fi in order:
                libc.mmap(addr + base[fi], hi[fi] - lo[fi], PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED | pop,
                          fds[fi], lo[fi])
        except OSError:
            libc.munmap(addr, total)
            raise
        self.mode = "extents"
        self._segments = np.array([(base[fi], hi[fi] - lo[fi], lo[fi], fi, 0) for fi in order],
                                  dtype=cpucache.SEG_DTYPE)
        va = self._root = _array_at(addr, total)
        # offset in va of every granule-sized piece, HPA order
        starts = pieces[:, 0]
        if lay.granule and not np.any(starts % g) and not np.any(pieces[:, 1] % g):
            reps = pieces[:, 1] // g
            shift = np.zeros(len(lay.files), dtype=np.int64)
            for fi in order:
                shift[fi] = base[fi] - lo[fi]
            pva = shift[pieces[:, 2]] + pieces[:, 3]
            gva = np.repeat(pva, reps) + (np.arange(int(reps.sum())) - np.repeat(np.cumsum(reps) - reps, reps)) * g
            self._array = HpaOrderArray(va, gva.astype(np.int64), g, self.length, len(order))
            self._rows_view(va, gva, g, order, base, rel, stride)
        else:                                   # odd layouts: one piece at a time
            gva = np.zeros(0, dtype=np.int64)
            self._array = _PieceArray(va, pieces, base, lo, self.length)
        self._view = self._array
        return addr, total

    def _rows_view(self, va, gva, g, order, base, rel, stride) -> None:
        """(rows, ways, granule) strided view when every row puts the devices
        in the same order at the same place (modulo interleave)."""
        ways = len(order)
        if ways < 2 or len(gva) % ways or len(set(rel.values())) != 1:
            return
        rows = len(gva) // ways
        expect = (np.arange(ways) * stride + rel[order[0]])[None, :] + (np.arange(rows) * g)[:, None]
        if np.array_equal(gva.reshape(rows, ways), expect):
            self.rows = as_strided(va[rel[order[0]]:], shape=(rows, ways, g), strides=(g, stride, 1))

    # ---- the CPU cache ------------------------------------------------------------------------------
    def _start_cache(self) -> None:
        lay, cache = self.layout, self.cache
        slots = []
        for fi, media in enumerate(lay.files):
            if cache.trap is not None:
                slots.append(cache.slot(media, lay.capacities[fi]))
            else:
                cpucache.ensure_files(cache.dir, media, lay.capacities[fi])
        if cache.trap is not None:
            segs = self._segments.copy()
            segs["dev"] = np.asarray(slots, dtype=np.uint32)[segs["dev"].astype(np.int64)]
            self._map_id = cache.trap.register(self._base, self._total, cache.dir_slot(), segs,
                                               TRAP_UNIT_PAGES)
            self.trapped = True
        else:
            self.trapped = False
            self._capture_all(0, self.length)

    def _dpa_runs(self, offset: int, length: int) -> list[tuple[int, int, int]]:
        """(file index, dpa, length) runs covering [offset, offset+length), merged per device."""
        p = self.layout.pieces
        a, b = offset, offset + length
        sel = p[(p[:, 0] < b) & (p[:, 0] + p[:, 1] > a)]
        if sel.size == 0:
            return []
        lo = np.maximum(sel[:, 0], a)
        hi = np.minimum(sel[:, 0] + sel[:, 1], b)
        dpa = sel[:, 3] + (lo - sel[:, 0])
        n = hi - lo
        out = []
        for fi in np.unique(sel[:, 2]).tolist():
            m = sel[:, 2] == fi
            d, k = dpa[m], n[m]
            o = np.argsort(d, kind="stable")
            d, k = d[o], k[o]
            brk = np.flatnonzero(d[1:] > d[:-1] + k[:-1]) + 1
            for s, e in zip(np.concatenate(([0], brk)).tolist(), np.concatenate((brk, [d.size])).tolist()):
                out.append((int(fi), int(d[s]), int(d[e - 1] + k[e - 1] - d[s])))
        return out

    def _capture_all(self, offset: int, length: int) -> None:
        """Untrapped mappings: save the undo data of every line up front."""
        lay = self.layout
        for fi, dpa, n in self._dpa_runs(offset, length):
            media = np.memmap(lay.paths[fi], dtype=np.uint8, mode="r", shape=(lay.capacities[fi],))
            try:
                self.cache.capture(lay.files[fi], lay.capacities[fi], media, dpa, n)
            finally:
                del media

    # ---- checked loads (poison -> machine check) -------------------------------------------------
    def _poison_at(self, offsets: np.ndarray) -> tuple[int, int] | None:
        """(mapping offset, HPA) of the first poisoned line among ``offsets``
        (one vectorised pass through the hardware's poison lists)."""
        hpas = self._hpas(offsets)
        bad = self.space.poisoned_lines(hpas - hpas % np.uint64(CACHE_LINE), CACHE_LINE)
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

    @property
    def space(self):
        """The machine's physical address map (routing and poison lists, as
        when the mapping was made)."""
        sp = getattr(self, "_space", None)
        if sp is None:
            if self.dev is None:
                raise OSError(errno.ENODEV, "a mapping without its device cannot check for poison")
            from cxlemu.data.datapath import HpaSpace
            sp = self._space = HpaSpace(self.dev.backend.kernel.platform, None)
        return sp

    def _machine_check(self, off: int, hpa: int) -> "MachineCheck":
        """The MCE: the kernel handles the failure of the page (a "dax page":
        the process is signalled) and the load raises MachineCheck.
        ``on_machine_check(pfn)``, when set (machine/dax.py), runs
        memory_failure in the machine, which is not held open while mapped."""
        from cxlemu.kernel.mm.memory_failure import MF_ACTION_REQUIRED
        hw, dpa = self.space.locate(hpa - hpa % CACHE_LINE)
        hook = getattr(self, "on_machine_check", None)
        if hook is not None:
            hook(hpa >> 12)
        else:
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
    @property
    def array(self):
        """The mapping in HPA order: a numpy array (1-way and page-granular
        interleave) or a :class:`HpaOrderArray`."""
        self._check_open()
        return self._array

    @property
    def view(self):
        """A memoryview of ``array`` (the :class:`HpaOrderArray` itself when
        the memory is not in HPA order)."""
        self._check_open()
        return self._view

    @property
    def buffer(self):
        return self.view

    def persist(self, offset: int, length: int) -> None:
        """clwb every cache line of [offset, offset+length), then sfence."""
        self._check_open()
        if length <= 0:
            return
        if offset < 0 or offset + length > self.length:
            raise OSError(errno.EFAULT, "persist range outside the mapping")
        lo = offset - offset % CACHE_LINE
        hi = -(-(offset + length) // CACHE_LINE) * CACHE_LINE
        lay = self.layout
        for fi, dpa, n in self._dpa_runs(lo, hi - lo):
            self.cache.clean(lay.files[fi], lay.capacities[fi], dpa, n)
        if not self.trapped:
            self._capture_all(lo, hi - lo)

    def flush(self) -> None:
        """Persist the whole mapping (clwb of every line + sfence)."""
        self.persist(0, self.length)

    def close(self) -> None:
        """munmap: unflushed stores stay in the CPU cache; nothing is copied."""
        if self.closed:
            return
        self.closed = True
        if self._map_id is not None and self.cache.trap is not None:
            self.cache.trap.unregister(self._map_id, KEEP)
            self._map_id = None
        self._unmap()
        self.cache.close()

    def _unmap(self) -> None:
        root = self._root
        self._root = self._array = self._view = self.rows = None
        if root is None:
            return
        # anyone still holding a view of the memory?  (this frame and the
        # getrefcount argument are the only other references otherwise)
        referenced = sys.getrefcount(root) > 2
        del root
        libc = _libc()
        if referenced:
            # leave readable zeros there instead of a hole that would crash
            # the interpreter on the next access through the stale view
            libc.mmap(self._base, self._total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED)
        else:
            libc.munmap(self._base, self._total)

    def _check_open(self) -> None:
        if self.closed:
            raise ValueError("mapping is closed")

    def __enter__(self) -> "DaxMapping":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __len__(self) -> int:
        return self.length


class _PieceArray(HpaOrderArray):
    """HPA order for layouts whose pieces are not whole granules."""

    def __init__(self, va: np.ndarray, pieces: np.ndarray, base: dict, lo: dict, length: int):
        self._va = va
        self.length = length
        self.granule = 1
        self._rows2d = None
        self._ways, self._cols = 0, None
        self._p = [(int(o), int(n), base[int(f)] + int(d) - lo[int(f)]) for o, n, f, d in pieces.tolist()]

    def _pieces(self, a: int, b: int):
        for o, n, va in self._p:
            s, e = max(a, o), min(b, o + n)
            if s < e:
                yield s - a, va + s - o, e - s

    def _copy(self, a, b, buf, store):
        for off, va, take in self._pieces(a, b):
            if store:
                self._va[va:va + take] = buf[off:off + take]
            else:
                buf[off:off + take] = self._va[va:va + take]

    def __getitem__(self, key):
        if isinstance(key, (int, np.integer)):
            i = int(key) + (self.length if key < 0 else 0)
            return self[i:i + 1][0]
        return super().__getitem__(key)


# ---------------------------------------------------------------------------------------------
# kernel writes and dd's view of a dax device
# ---------------------------------------------------------------------------------------------

def _lines_of(space, hpa: int, n: int) -> list[tuple[Any, int, int]]:
    """(device, dpa, length) line-aligned pieces covering [hpa, hpa+n)."""
    first = hpa - hpa % CACHE_LINE
    last = -(-(hpa + n) // CACHE_LINE) * CACHE_LINE
    return [(space.p.devices[int(d)], int(dpa), int(ln)) for _o, ln, d, dpa in space.extents(first, last - first).tolist()]


def note_kernel_write(kernel, space, hpa: int, n: int) -> None:
    """A flushed (non-temporal) write by the kernel: its lines are clean."""
    media = getattr(kernel, "media_store", None) if kernel is not None else None
    media = media or getattr(space, "media", None)
    if media is None:
        return
    cdir = cpucache.cache_dir(Path(media.dir).parent)
    if not cdir.is_dir():
        return
    cache = CpuCache(cdir)
    try:
        for hw, dpa, length in _lines_of(space, hpa, n):
            cache.clean(hw.media_file, hw.media_size, dpa, length)
    finally:
        cache.close()


class DaxFile:
    """/dev/daxX.Y for dd: positional reads see the newest data; writes are
    ordinary (cached) stores: their lines become dirty, like a mapping's
    unflushed stores.  (Real device-DAX has no read/write; docs/fidelity.md.)"""

    def __init__(self, dev: DaxDevice, write: bool):
        self.dev = dev
        self.writable = write
        self.size = dev.size
        self.space = dev.backend.hpa_space()
        self.machine = dev.backend.machine
        self._cache: CpuCache | None = None
        self.is_regular = False

    @classmethod
    def open(cls, backend, path: str, write: bool) -> "DaxFile":
        return cls(DaxDevice.open(backend, path), write)

    def _pieces(self, off: int, n: int) -> list[tuple[int, int]]:
        return self.dev.hpa_pieces(off, max(0, min(off + n, self.size) - off))

    def pread(self, n: int, off: int) -> bytes:
        return b"".join(self.space.read(hpa, take) for hpa, take in self._pieces(off, n))

    def pwrite(self, data: bytes, off: int) -> int:
        if off + len(data) > self.size:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        if self._cache is None:
            self._cache = CpuCache(cpucache.cache_dir(self.machine.path))
        pos = 0
        for hpa, take in self._pieces(off, len(data)):
            for hw, dpa, length in _lines_of(self.space, hpa, take):
                self._cache.capture(hw.media_file, hw.media_size, self.machine.media.array(hw), dpa, length)
            self.space.write(hpa, data[pos:pos + take])
            pos += take
        return len(data)

    def truncate(self, n: int) -> None:
        pass

    def close(self) -> None:
        if self._cache is not None:
            self._cache.close()
            self._cache = None
