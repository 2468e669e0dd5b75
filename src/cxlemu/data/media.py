"""Device media as files.

Each Type 3 device has one file the size of its capacity, indexed by DPA.
Files are sparse (created with ftruncate) and mapped with mmap on first use,
so a 2 TiB fabric costs nothing until bytes are written.  Volatile capacity
is discarded on reset by punching holes (fallocate PUNCH_HOLE|KEEP_SIZE),
which reads back as zeros like freshly powered DRAM.
"""

from __future__ import annotations

import functools
import mmap
import os
from pathlib import Path
from typing import TYPE_CHECKING

from cxlemu.util.lazy import lazy_module

np = lazy_module("numpy")  # imported on first use: only the data path pays for numpy

from cxlemu.hw.mailbox.access import MediaAccess

if TYPE_CHECKING:
    from cxlemu.hw.type3 import Type3Device

FALLOC_FL_KEEP_SIZE = 0x01
FALLOC_FL_PUNCH_HOLE = 0x02
_ZERO_CHUNK = 64 << 20


@functools.lru_cache(maxsize=1)
def _libc():
    import ctypes.util
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def punch_hole(fd: int, offset: int, length: int) -> None:
    """Deallocate [offset, offset+length); falls back to writing zeros."""
    if length <= 0:
        return
    try:
        import ctypes
        libc = _libc()
        libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
        rc = libc.fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, length)
        if rc == 0:
            return
    except (OSError, AttributeError):
        pass
    zeros = bytes(min(length, _ZERO_CHUNK))
    pos = offset
    while pos < offset + length:
        n = min(len(zeros), offset + length - pos)
        os.pwrite(fd, zeros[:n], pos)
        pos += n


class MediaStore:
    """Opens device media files on demand; one per machine process."""

    def __init__(self, directory: Path):
        self.dir = Path(directory)
        self._maps: dict[str, tuple[int, mmap.mmap, np.ndarray]] = {}

    def path(self, hw: "Type3Device") -> Path:
        return self.dir / hw.media_file

    def _open(self, hw: "Type3Device") -> tuple[int, mmap.mmap, np.ndarray]:
        entry = self._maps.get(hw.media_file)
        if entry is not None:
            return entry
        self.dir.mkdir(parents=True, exist_ok=True)
        p = self.path(hw)
        fd = os.open(p, os.O_RDWR | os.O_CREAT, 0o644)
        size = hw.media_size
        if os.fstat(fd).st_size != size:
            os.ftruncate(fd, size)
        m = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        arr = np.frombuffer(m, dtype=np.uint8)
        entry = (fd, m, arr)
        self._maps[hw.media_file] = entry
        return entry

    def array(self, hw: "Type3Device") -> np.ndarray:
        """The whole DPA space of ``hw`` as a writable uint8 array (mmap)."""
        return self._open(hw)[2]

    def access(self, hw: "Type3Device") -> "DeviceMedia":
        return DeviceMedia(self, hw)

    def discard(self, hw: "Type3Device", start: int, length: int) -> None:
        """Lose [start, start+length) (volatile capacity at reset)."""
        p = self.path(hw)
        if not p.exists():
            return
        fd, _, _ = self._open(hw)
        punch_hole(fd, start, length)

    def flush(self) -> None:
        for _, m, _ in self._maps.values():
            m.flush()

    def close(self) -> None:
        for fd, m, arr in self._maps.values():
            del arr
            try:
                m.close()
            except BufferError:
                pass
            os.close(fd)
        self._maps.clear()


class DeviceMedia(MediaAccess):
    def __init__(self, store: MediaStore, hw: "Type3Device"):
        self.store, self.hw = store, hw

    def write(self, dpa: int, data: bytes) -> None:
        self.store.array(self.hw)[dpa:dpa + len(data)] = np.frombuffer(data, dtype=np.uint8)

    def read(self, dpa: int, length: int) -> bytes:
        return self.store.array(self.hw)[dpa:dpa + length].tobytes()

    def zero(self, dpa: int, length: int) -> None:
        self.store.discard(self.hw, dpa, length)
