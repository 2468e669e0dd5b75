"""A process whose allocations go through an allocator of
``userspace/allocator.py`` (SMDK's libcxlmalloc, a memkind kind, the
s_malloc table of a workload file): each ``mmap`` a workload makes asks the
allocator where it goes, and the system calls the library would make
(``mbind``, SMDK's mmap flags) are made on the new mapping."""

from __future__ import annotations

import errno

from cxlemu.kernel.syscalls import Process
from cxlemu.userspace.allocator import Allocator, Placement


def make_allocator(kind: str, arg: str, backend) -> Allocator:
    """The allocator library a process runs with: SMDK's libcxlmalloc
    (``smdk``, userspace/smdk/cxlmalloc.py) or memkind (``memkind``,
    userspace/memkind.py), configured by ``arg``."""
    if kind == "smdk":
        from cxlemu.userspace.smdk.cxlmalloc import CxlMalloc
        return CxlMalloc(arg, backend)
    if kind == "memkind":
        from cxlemu.userspace.memkind import MemkindAllocator
        return MemkindAllocator(arg, backend)
    raise ValueError(f"unknown allocator {kind!r}")


class AllocatorProcess(Process):
    """A process whose allocations (mmaps) go through an allocator."""

    def __init__(self, kernel, task, allocator: Allocator):
        super().__init__(kernel, task)
        self.allocator = allocator
        self.placements: dict[int, tuple[Placement, int]] = {}

    def mmap(self, length: int, name: str, kind: str = "anon", compress_ratio: float = 3.0) -> int:
        pl = self.allocator.place(self, int(length), name)
        if pl is None:
            raise OSError(errno.ENOMEM, f"{self.allocator.name}: cannot allocate {length} bytes for {name}")
        addr = self.task.mmap(int(length), name, kind, compress_ratio=compress_ratio, map_flags=pl.map_flags) \
            if pl.map_flags else self.task.mmap(int(length), name, kind, compress_ratio=compress_ratio)
        if pl.mode is not None:
            self.mbind(addr, int(length), pl.mode, pl.nodes)
        self.placements[addr] = (pl, int(length))
        return addr

    def munmap(self, addr: int, length: int | None = None) -> None:
        super().munmap(addr, length)
        ent = self.placements.pop(int(addr), None)
        if ent is not None:
            self.allocator.released(ent[0], ent[1])
