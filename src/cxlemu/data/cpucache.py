"""The CPU cache in front of persistent memory: what a power failure loses.

Stores to a device-DAX mapping land on the device media at once (the
mapping *is* the media file, data/dax_mapping.py).  The CPU-cache model
decides only what a reset does to stores that were never flushed:

* a store dirties its 64-byte cache line; clwb + sfence (``persist``) of the
  line makes it durable (clean);
* caches are coherent: every reader sees the newest data, flushed or not;
* an orderly reboot writes dirty lines back (they stay); a power failure
  loses them -- the line reverts to what it held when it was last durable --
  unless the platform has persistent CPU caches (FADT PERSISTENT_CPU_CACHES,
  eADR: ``boot.persistent_cpu_caches``);
* writes by the kernel (labels, info blocks, the pmem driver) are flushed
  (non-temporal) writes: they leave the lines they cover clean.

State, per device, under ``<machine>/cpu_cache/`` (a data format, nothing is
executed when it is read; docs/devdax.md):

``<media>.lines``
    a 4096-byte header (:class:`Header`) and one byte per 64-byte line of
    the device: 0 clean, 1 dirty (its undo data is valid);
``<media>.undo``
    a sparse file the size of the device: for a dirty line, what it held
    when it was last durable, at the line's DPA;
``lock``
    flock(2) between processes that change the two files.

Who marks lines dirty: a trapped mapping's first store to a write-protected
page (the store trap in src/cxlemu/preload/cpucache.c, loaded with ctypes:
:func:`trap_lib`); without the compiled library, a mapping marks all of its
lines at map time and again after each flush (exact, but a flush then costs
a copy).  ``dd`` to /dev/daxX.Y (:class:`~cxlemu.data.dax_mapping.DaxFile`)
marks the lines it writes.  A line whose undo data equals the media is
indistinguishable from a clean one (restoring it changes nothing): reports
count only lines that differ.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import functools
import mmap
import os
import struct
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import numpy as np

from cxlemu.util.lazydc import dataclass

if TYPE_CHECKING:
    from cxlemu.machine.store import Machine

LINE = 64
PAGE = 4096
HEADER_SIZE = 4096
MAGIC = b"CXLEMU-CPUCACHE\x01"
VERSION = 1
DIRNAME = "cpu_cache"
LOCKNAME = "lock"
_HDR = struct.Struct("<16sIIQQ64s")

#: cc_unregister modes (cpucache.h)
KEEP, EVICT = 0, 1

SEEK_DATA = getattr(os, "SEEK_DATA", 3)
SEEK_HOLE = getattr(os, "SEEK_HOLE", 4)


class CacheFormatError(ValueError):
    """A cpu_cache file that is not what this version writes."""


@dataclass(frozen=True)
class Header:
    """The first 4096 bytes of a ``.lines`` file (little endian):
    magic[16], u32 version, u32 line size, u64 capacity, u64 data offset,
    char media[64] (the media file name, NUL padded), zeros."""

    capacity: int
    media: str

    def pack(self) -> bytes:
        name = self.media.encode()
        if not name or len(name) > 63 or b"/" in name or b"\0" in name:
            raise CacheFormatError(f"bad media file name {self.media!r}")
        if self.capacity <= 0 or self.capacity % PAGE:
            raise CacheFormatError(f"capacity {self.capacity} is not a positive multiple of {PAGE}")
        raw = _HDR.pack(MAGIC, VERSION, LINE, self.capacity, HEADER_SIZE, name)
        return raw + bytes(HEADER_SIZE - len(raw))

    @classmethod
    def unpack(cls, raw: bytes) -> "Header":
        if len(raw) < _HDR.size:
            raise CacheFormatError("cpu_cache header truncated")
        magic, version, line, capacity, offset, name = _HDR.unpack_from(raw)
        if magic != MAGIC or version != VERSION or line != LINE or offset != HEADER_SIZE:
            raise CacheFormatError("not a cxlemu cpu_cache file of this version")
        media = name.rstrip(b"\0")
        if not media or b"\0" in media or b"/" in media:
            raise CacheFormatError("bad media file name in cpu_cache header")
        try:
            text = media.decode()
        except UnicodeDecodeError:
            raise CacheFormatError("bad media file name in cpu_cache header") from None
        if capacity <= 0 or capacity % PAGE:
            raise CacheFormatError("bad capacity in cpu_cache header")
        return cls(capacity, text)


def cache_dir(machine_path: str | os.PathLike[str]) -> Path:
    return Path(machine_path) / DIRNAME


def lines_path(cdir: Path, media: str) -> Path:
    return Path(cdir) / f"{media}.lines"


def undo_path(cdir: Path, media: str) -> Path:
    return Path(cdir) / f"{media}.undo"


def ensure_files(cdir: str | os.PathLike[str], media: str, capacity: int) -> None:
    """Create the device's .lines and .undo files (sparse) unless they exist;
    atomic (temp file + rename), so concurrent creators agree."""
    cdir = Path(cdir)
    if cdir.is_file():                       # a pickle journal of older versions: never loaded
        cdir.unlink()
    cdir.mkdir(parents=True, exist_ok=True)
    lp, up = lines_path(cdir, media), undo_path(cdir, media)
    if up.exists() and lp.exists():
        return
    head = Header(capacity, media).pack()
    for path, size, data in ((up, capacity, b""), (lp, HEADER_SIZE + capacity // LINE, head)):
        if path.exists():
            continue
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            if data:
                os.pwrite(fd, data, 0)
            os.ftruncate(fd, size)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)               # never replaces a file another process created
        except FileExistsError:
            pass
        finally:
            os.unlink(tmp)


def read_header(path: Path) -> Header:
    with open(path, "rb") as f:
        return Header.unpack(f.read(HEADER_SIZE))


# ---------------------------------------------------------------------------------------------
# the compiled store trap (src/cxlemu/preload/cpucache.c)
# ---------------------------------------------------------------------------------------------

class CcSeg(ctypes.Structure):
    """struct cc_seg"""
    _fields_ = [("off", ctypes.c_uint64), ("len", ctypes.c_uint64), ("dpa", ctypes.c_uint64),
                ("dev", ctypes.c_uint32), ("pad", ctypes.c_uint32)]


SEG_DTYPE = np.dtype([("off", "<u8"), ("len", "<u8"), ("dpa", "<u8"), ("dev", "<u4"), ("pad", "<u4")])


class TrapLib:
    """ctypes binding of the store trap (cpucache.h)."""

    def __init__(self, path: str):
        lib = ctypes.CDLL(path)
        u64, i32, u32, vp = ctypes.c_uint64, ctypes.c_int, ctypes.c_uint32, ctypes.c_void_p
        sig = {
            "cc_dir": (i32, [ctypes.c_char_p]),
            "cc_device": (i32, [i32, ctypes.c_char_p, u64]),
            "cc_dir_release": (i32, [i32]),
            "cc_device_release": (i32, [i32]),
            "cc_register": (i32, [vp, u64, i32, u32, vp, u32]),
            "cc_unregister": (i32, [i32, i32]),
            "cc_clean": (i32, [i32, u64, u64]),
            "cc_capture_buf": (i32, [i32, u64, vp, u64]),
            "cc_persist": (i32, [vp, u64]),
            "cc_lock": (i32, [i32]),
            "cc_unlock": (i32, [i32]),
            "cc_stat": (u64, [i32]),
            "cc_reinstall": (i32, []),
        }
        for name, (res, args) in sig.items():
            fn = getattr(lib, name)
            fn.restype, fn.argtypes = res, args
        self.lib = lib
        self.path = path

    @staticmethod
    def _ok(rc: int, what: str) -> int:
        if rc < 0:
            raise OSError(-rc, f"{what}: {os.strerror(-rc)}")
        return rc

    def dir(self, path: str | os.PathLike[str]) -> int:
        return self._ok(self.lib.cc_dir(os.fsencode(path)), f"cpu cache {path}")

    def device(self, d: int, media: str, capacity: int) -> int:
        return self._ok(self.lib.cc_device(d, media.encode(), capacity), f"cpu cache of {media}")

    def release_dir(self, d: int) -> None:
        self.lib.cc_dir_release(d)

    def release_device(self, dev: int) -> None:
        self.lib.cc_device_release(dev)

    def register(self, addr: int, length: int, d: int, segs: np.ndarray, unit_pages: int) -> int:
        segs = np.ascontiguousarray(segs, dtype=SEG_DTYPE)
        return self._ok(self.lib.cc_register(addr, length, d, len(segs), segs.ctypes.data, unit_pages),
                        "cc_register")

    def unregister(self, mid: int, mode: int = KEEP) -> None:
        self.lib.cc_unregister(mid, mode)

    def clean(self, dev: int, dpa: int, n: int) -> None:
        self._ok(self.lib.cc_clean(dev, dpa, n), "cc_clean")

    def capture_buf(self, dev: int, dpa: int, old: np.ndarray) -> None:
        old = np.ascontiguousarray(old, dtype=np.uint8)
        self._ok(self.lib.cc_capture_buf(dev, dpa, old.ctypes.data, old.size), "cc_capture_buf")

    def stat(self, what: int) -> int:
        return int(self.lib.cc_stat(what))

    @contextlib.contextmanager
    def locked(self, d: int) -> Iterator[None]:
        self._ok(self.lib.cc_lock(d), "cc_lock")
        try:
            yield
        finally:
            self.lib.cc_unlock(d)


@functools.lru_cache(maxsize=4)
def _load(path: str) -> TrapLib | None:
    try:
        return TrapLib(path)
    except (OSError, AttributeError):
        return None


def trap_lib() -> TrapLib | None:
    """The store trap, or None when the C library was not built (or
    ``CXLEMU_PRELOAD_LIB=none``): mappings then capture eagerly."""
    from cxlemu.preload import library_path
    path = library_path()
    return _load(path) if path else None


# ---------------------------------------------------------------------------------------------
# one device's state, and a machine's cache
# ---------------------------------------------------------------------------------------------

def _map(path: Path, offset: int, length: int) -> tuple[mmap.mmap, np.ndarray]:
    fd = os.open(path, os.O_RDWR)
    try:
        m = mmap.mmap(fd, length, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE, offset=offset)
    finally:
        os.close(fd)
    return m, np.frombuffer(m, dtype=np.uint8)


class DeviceCache:
    """The state and undo arrays of one device (shared mappings of its files)."""

    def __init__(self, cdir: Path, media: str, capacity: int):
        lp = lines_path(cdir, media)
        try:
            h = read_header(lp)
        except CacheFormatError as e:
            raise CacheFormatError(f"{lp}: {e}") from None
        if h.capacity != capacity or h.media != media:
            raise CacheFormatError(f"{lp}: header says {h.media} of {h.capacity} bytes, "
                                   f"the device is {media} of {capacity}")
        if lp.stat().st_size < HEADER_SIZE + capacity // LINE or undo_path(cdir, media).stat().st_size < capacity:
            raise CacheFormatError(f"{lp}: truncated")
        self.media, self.capacity = media, capacity
        self._ms, self.state = _map(lp, HEADER_SIZE, capacity // LINE)
        self._mu, self.undo = _map(undo_path(cdir, media), 0, capacity)
        self.lines_file, self.undo_file = lp, undo_path(cdir, media)

    def close(self) -> None:
        self.state = self.undo = None  # type: ignore[assignment]
        for m in (self._ms, self._mu):
            with contextlib.suppress(BufferError):
                m.close()

    def allocated_lines(self) -> Iterator[tuple[int, int]]:
        """(first, last+1) line ranges of the state file that are not holes."""
        fd = os.open(self.lines_file, os.O_RDONLY)
        try:
            end = HEADER_SIZE + self.capacity // LINE
            pos = HEADER_SIZE
            while pos < end:
                try:
                    start = os.lseek(fd, pos, SEEK_DATA)
                except OSError as e:
                    if e.errno == errno.ENXIO:
                        return
                    start = pos                     # no SEEK_DATA: scan everything
                if start >= end:
                    return
                try:
                    stop = min(end, os.lseek(fd, start, SEEK_HOLE))
                except OSError:
                    stop = end
                yield start - HEADER_SIZE, stop - HEADER_SIZE
                pos = stop
        finally:
            os.close(fd)

    def dirty_lines(self) -> np.ndarray:
        """Indexes of lines marked dirty."""
        parts = [np.flatnonzero(self.state[a:b]) + a for a, b in self.allocated_lines()]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

    def reset(self, idx: np.ndarray | None = None) -> None:
        """Every line clean (``idx``: the dirty ones, when known).  The undo
        data is left where it is (a clean line's undo data means nothing):
        the blocks stay allocated, so that the next store trap does not
        have to allocate them again."""
        if idx is None:
            idx = self.dirty_lines()
        for a, b in runs(idx):
            self.state[a:b] = 0

    def discard(self) -> None:
        """Drop everything: the files become holes again."""
        from cxlemu.data.media import punch_hole
        for path, off, n in ((self.lines_file, HEADER_SIZE, self.capacity // LINE),
                             (self.undo_file, 0, self.capacity)):
            fd = os.open(path, os.O_RDWR)
            try:
                punch_hole(fd, off, n)
            finally:
                os.close(fd)


def _line_span(dpa: int, n: int) -> tuple[int, int]:
    return dpa // LINE, -(-(dpa + n) // LINE)


def runs(idx: np.ndarray) -> list[tuple[int, int]]:
    """(first, last+1) runs of consecutive integers in a sorted index array."""
    if idx.size == 0:
        return []
    brk = np.flatnonzero(np.diff(idx) != 1) + 1
    starts = np.concatenate(([0], brk))
    ends = np.concatenate((brk, [idx.size]))
    return list(zip(idx[starts].tolist(), (idx[ends - 1] + 1).tolist()))


class CpuCache:
    """One machine's CPU cache (its ``cpu_cache/`` directory)."""

    def __init__(self, cdir: str | os.PathLike[str], trap: TrapLib | None | bool = True):
        self.dir = Path(cdir)
        self.trap = trap_lib() if trap is True else (trap or None)
        self._devs: dict[str, DeviceCache] = {}
        self._slots: dict[str, int] = {}
        self._dir_slot: int | None = None
        self._tlock = threading.Lock()

    # ---- files ----------------------------------------------------------------------------
    def exists(self, media: str) -> bool:
        return lines_path(self.dir, media).exists() and undo_path(self.dir, media).exists()

    def device(self, media: str, capacity: int, create: bool = True) -> DeviceCache | None:
        d = self._devs.get(media)
        if d is not None:
            return d
        if not self.exists(media):
            if not create:
                return None
            ensure_files(self.dir, media, capacity)
        d = self._devs[media] = DeviceCache(self.dir, media, capacity)
        return d

    def dir_slot(self) -> int:
        """The trap library's slot for this directory (held until close)."""
        assert self.trap is not None
        if self._dir_slot is None:
            self.dir.mkdir(parents=True, exist_ok=True)
            self._dir_slot = self.trap.dir(self.dir)
        return self._dir_slot

    def slot(self, media: str, capacity: int) -> int:
        """The trap library's device slot (files created on demand; held
        until close)."""
        s = self._slots.get(media)
        if s is None:
            assert self.trap is not None
            ensure_files(self.dir, media, capacity)
            s = self._slots[media] = self.trap.device(self.dir_slot(), media, capacity)
        return s

    def close(self) -> None:
        for d in self._devs.values():
            d.close()
        self._devs.clear()
        if self.trap is not None:
            for s in self._slots.values():
                self.trap.release_device(s)
            self._slots.clear()
            if self._dir_slot is not None:
                self.trap.release_dir(self._dir_slot)
                self._dir_slot = None

    # ---- locking ----------------------------------------------------------------------------
    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Exclusive against every other process (flock) and thread."""
        self.dir.mkdir(parents=True, exist_ok=True)
        if self.trap is not None:
            with self.trap.locked(self.dir_slot()):
                yield
            return
        with self._tlock:
            fd = os.open(self.dir / LOCKNAME, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)

    # ---- the model's operations -------------------------------------------------------------
    def capture(self, media: str, capacity: int, data: np.ndarray, dpa: int, n: int) -> None:
        """Lines of [dpa, dpa+n) are about to be stored to (cached stores
        that no trap sees): remember what the clean ones hold (``data`` is
        the device's whole media array)."""
        if n <= 0:
            return
        l0, l1 = _line_span(dpa, n)
        if self.trap is not None:
            self.trap.capture_buf(self.slot(media, capacity), l0 * LINE, data[l0 * LINE:l1 * LINE])
            return
        d = self.device(media, capacity)
        assert d is not None
        with self.locked():
            st = d.state[l0:l1]
            clean = st == 0
            if clean.all():
                d.undo[l0 * LINE:l1 * LINE] = data[l0 * LINE:l1 * LINE]
                st[:] = 1
            elif clean.any():
                idx = np.flatnonzero(clean) + l0
                usable = capacity - capacity % LINE
                d.undo[:usable].reshape(-1, LINE)[idx] = data[:usable].reshape(-1, LINE)[idx]
                d.state[idx] = 1

    def clean(self, media: str, capacity: int, dpa: int, n: int) -> None:
        """clwb + sfence of [dpa, dpa+n): the lines are durable."""
        if n <= 0 or not self.exists(media):
            return
        if self.trap is not None:
            self.trap.clean(self.slot(media, capacity), dpa, n)
            return
        d = self.device(media, capacity, create=False)
        assert d is not None
        l0, l1 = _line_span(dpa, n)
        with self.locked():
            st = d.state[l0:l1]
            if st.any():
                st[:] = 0

    def dirty_runs(self, media: str, capacity: int, data: np.ndarray) -> list[tuple[int, int]]:
        """(dpa, length) runs of lines a power failure would change: dirty,
        and holding something else than their undo data."""
        d = self.device(media, capacity, create=False)
        if d is None:
            return []
        with self.locked():
            idx = d.dirty_lines()
            if idx.size == 0:
                return []
            usable = capacity - capacity % LINE
            u2 = d.undo[:usable].reshape(-1, LINE)
            m2 = data[:usable].reshape(-1, LINE)
            differ = np.zeros(idx.size, dtype=bool)
            for i in range(0, idx.size, 1 << 16):
                j = idx[i:i + (1 << 16)]
                differ[i:i + j.size] = (u2[j] != m2[j]).any(axis=1)
            return [(a * LINE, (b - a) * LINE) for a, b in runs(idx[differ])]

    def power_loss(self, media: str, capacity: int, data: np.ndarray) -> int:
        """A power failure without persistent caches: every dirty line gets
        its undo data back; returns the number of lines restored."""
        d = self.device(media, capacity, create=False)
        if d is None:
            return 0
        with self.locked():
            idx = d.dirty_lines()
            usable = capacity - capacity % LINE
            u2 = d.undo[:usable].reshape(-1, LINE)
            m2 = data[:usable].reshape(-1, LINE)
            for a, b in runs(idx):
                m2[a:b] = u2[a:b]
            d.reset(idx)
            return int(idx.size)

    def writeback(self, media: str, capacity: int) -> None:
        """An orderly reset (or eADR): dirty lines are written back, i.e.
        the media keep the newest data and the undo data is dropped."""
        d = self.device(media, capacity, create=False)
        if d is None:
            return
        with self.locked():
            d.reset()


# ---------------------------------------------------------------------------------------------
# machine-level entry points
# ---------------------------------------------------------------------------------------------

def devices_with_state(machine: "Machine") -> list:
    cdir = cache_dir(machine.path)
    return [hw for hw in machine.platform.devices if lines_path(cdir, hw.media_file).exists()]


def on_reset(machine: "Machine", power_loss: bool) -> None:
    """Called before a reset: write back or drop the unflushed stores."""
    cdir = cache_dir(machine.path)
    if cdir.is_file():                       # a pickle journal of older versions: never loaded
        cdir.unlink()
        return
    if not cdir.is_dir():
        return
    cache = CpuCache(cdir)
    try:
        lose = power_loss and not machine.topology.boot.persistent_cpu_caches
        for hw in devices_with_state(machine):
            try:
                if lose:
                    cache.power_loss(hw.media_file, hw.media_size, machine.media.array(hw))
                else:
                    cache.writeback(hw.media_file, hw.media_size)
            except CacheFormatError:
                # not ours to interpret: its lines count as written back
                discard_files(cdir, hw.media_file)
    finally:
        cache.close()


def discard_files(cdir: Path, media: str) -> None:
    for p in (lines_path(cdir, media), undo_path(cdir, media)):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()


def dirty_report(machine: "Machine", bad: list[str] | None = None) -> dict[str, list[tuple[int, int]]]:
    """media file -> (dpa, length) runs of lines a power failure would change.
    Files that are not valid cpu_cache files are skipped (and appended to
    ``bad``)."""
    cache = CpuCache(cache_dir(machine.path))
    try:
        out = {}
        for hw in devices_with_state(machine):
            try:
                r = cache.dirty_runs(hw.media_file, hw.media_size, machine.media.array(hw))
            except CacheFormatError as e:
                if bad is not None:
                    bad.append(str(e))
                continue
            if r:
                out[hw.media_file] = r
        return out
    finally:
        cache.close()
