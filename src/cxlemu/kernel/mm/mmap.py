"""Address spaces: ``mm_struct`` with its VMAs and page table, and the
``address_space`` of files (include/linux/mm_types.h, mm/mmap.c,
mm/filemap.c, mm/shmem.c).

An :class:`MmStruct` numbers its pages contiguously: a VMA covers virtual
pages ``[start, start + npages)`` of the mm (vpn), and the mm's page table
``pt`` holds one int32 entry per vpn:

* ``>= 0`` a frame number, possibly with :data:`PROT_NUMA` set (PROT_NONE
  for NUMA hinting faults);
* ``-1`` not present (``pte_none``);
* ``<= -2`` a swap entry (``swp_entry``: slot ``-pte - 2``);
* :data:`PTE_HWPOISON` a hardware-poison entry (an access raises SIGBUS).

Virtual addresses are ``MMAP_BASE + vpn * 4096``.  Anonymous pages belong to
the mm (the reverse map of a frame is ``(mm id, vpn)``); file and shmem
pages belong to a :class:`File` (``(file id, page index)``), whose ``pages``
array is the page cache (frame, swap entry for shmem, or -1) and whose
``mappers`` are the VMAs that map it.
"""

from __future__ import annotations

import bisect
from dataclasses import field

import numpy as np

from cxlemu.kernel.mm.mempolicy import MemPolicy
from cxlemu.util.lazydc import dataclass

MMAP_BASE = 0x7F00_0000_0000
PAGE = 4096
PTE_HWPOISON = np.iinfo(np.int32).min

VM_READ = 0x1
VM_WRITE = 0x2
VM_EXEC = 0x4
VM_SHARED = 0x8
VM_LOCKED = 0x2000
VM_HUGEPAGE = 0x20000000
VM_NOHUGEPAGE = 0x40000000
VM_EXMEM = 1 << 40              # SMDK: pages only from ExMem (CXL memory)
VM_NORMAL = 1 << 41             # SMDK: pages only from DDR

MAP_EXMEM = 0x200000            # SMDK's mmap flags (include/uapi/asm-generic/mman-common.h of SMDK's kernel)
MAP_NORMAL = 0x400000

KINDS = ("anon", "file", "shmem")


@dataclass(eq=False)
class File:
    """An inode's page cache (a regular file, or a shmem/tmpfs object)."""
    id: int
    name: str
    npages: int
    shmem: bool = False
    pages: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    mappers: list = field(default_factory=list)        # [(mm id, vma id)]
    unlinked: bool = False
    compress_ratio: float = 3.0                        # what zswap achieves on this data

    def __post_init__(self):
        if self.pages.size != self.npages:
            self.pages = np.full(self.npages, -1, np.int32)


@dataclass(eq=False)
class Vma:
    id: int
    start: int             # first vpn
    npages: int
    name: str
    kind: str = "anon"
    flags: int = VM_READ | VM_WRITE
    file: File | None = None
    pgoff: int = 0         # page offset in the file
    policy: MemPolicy | None = None
    compress_ratio: float = 3.0

    @property
    def end(self) -> int:
        return self.start + self.npages

    @property
    def vm_start(self) -> int:
        return MMAP_BASE + self.start * PAGE

    @property
    def vm_end(self) -> int:
        return MMAP_BASE + self.end * PAGE

    @property
    def swapbacked(self) -> bool:
        return self.kind != "file"


@dataclass(eq=False)
class MmStruct:
    id: int
    owner_pid: int = 0
    pt: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    vmas: list[Vma] = field(default_factory=list)      # sorted by start
    next_vpn: int = 0
    next_vma_id: int = 1
    # NUMA balancing scanner state (mm->numa_next_scan, numa_scan_offset, numa_scan_seq)
    numa_next_scan: int = 0          # ns
    numa_scan_offset: int = 0        # vpn
    numa_scan_seq: int = 0
    has_file: bool = False

    # ---- layout -------------------------------------------------------------------------------
    def add_vma(self, npages: int, name: str, kind: str = "anon", file: File | None = None, pgoff: int = 0,
                flags: int = VM_READ | VM_WRITE, policy: MemPolicy | None = None) -> Vma:
        """mmap(): a new VMA after the last one (one guard page between)."""
        start = self.next_vpn
        v = Vma(self.next_vma_id, start, npages, name, kind, flags, file, pgoff, policy)
        self.next_vma_id += 1
        self.next_vpn = start + npages + 1
        if self.next_vpn > self.pt.size:
            grow = max(self.next_vpn, self.pt.size * 2)
            pt = np.full(grow, -1, np.int32)
            pt[: self.pt.size] = self.pt
            self.pt = pt
        self.vmas.append(v)
        if kind != "anon":
            self.has_file = True
        return v

    def remove_vma(self, v: Vma) -> None:
        self.vmas.remove(v)
        self.pt[v.start:v.end] = -1

    def starts(self) -> list[int]:
        return [v.start for v in self.vmas]

    def find_vma(self, vpn: int) -> Vma | None:
        i = bisect.bisect_right(self.starts(), vpn) - 1
        if i >= 0 and self.vmas[i].start <= vpn < self.vmas[i].end:
            return self.vmas[i]
        return None

    def vma_by_name(self, name: str) -> Vma | None:
        for v in self.vmas:
            if v.name == name:
                return v
        return None

    def vma_index(self, vpns: np.ndarray) -> np.ndarray:
        """Index into ``vmas`` of each vpn (-1 outside every VMA)."""
        vpns = np.asarray(vpns)
        k = len(self.vmas)
        if not k:
            return np.full(vpns.shape, -1, np.int64)
        if k <= 16:
            i = np.full(vpns.shape, -1, np.int64)
            for j, v in enumerate(self.vmas):
                i[(vpns >= v.start) & (vpns < v.end)] = j
            return i
        starts = np.asarray(self.starts(), np.int64)
        ends = np.asarray([v.end for v in self.vmas], np.int64)
        i = np.searchsorted(starts, vpns, side="right") - 1
        ok = (i >= 0) & (vpns < ends[np.maximum(i, 0)])
        return np.where(ok, i, -1)

    def first_occurrences(self, vpns: np.ndarray) -> np.ndarray:
        """Positions of the first access to each distinct vpn, in order
        (a scatter/gather over a scratch array instead of a sort)."""
        scratch = self.__dict__.get("_scratch")
        if scratch is None or scratch.size < self.pt.size:
            scratch = np.zeros(self.pt.size, np.int64)
            self.__dict__["_scratch"] = scratch
        pos = np.arange(vpns.size, dtype=np.int64)
        scratch[vpns[::-1]] = pos[::-1]
        return np.flatnonzero(scratch[vpns] == pos)

    def __getstate__(self):
        d = self.__dict__.copy()
        d.pop("_scratch", None)
        return d

    def vpn_addr(self, vpn: int) -> int:
        return MMAP_BASE + int(vpn) * PAGE

    def vpn_of_addr(self, addr: int) -> int:
        return (addr - MMAP_BASE) // PAGE

    @property
    def total_vm(self) -> int:
        return sum(v.npages for v in self.vmas)

    def rss(self) -> int:
        """Resident pages mapped by this mm (get_mm_rss)."""
        if not self.pt.size:
            return 0
        return int(np.count_nonzero(self.pt >= 0))
