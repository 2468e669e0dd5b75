"""What memory_failure() needs from the page state (mm/memory-failure.c):
the page-state provider of the workload engine's page frames.

memory_failure(pfn) asks what the page holds (``hwpoison_page_info``) and,
when it recovers the page, has it isolated (``hwpoison_isolate``).  For a
frame owned by a process or a file, the answer comes from the frames
(kernel/mm/frames.py); for frames of the block-level allocation model and
pfns the frames do not cover, ``hwpoison_page_info`` returns None and the
caller falls back to its own block model.

What a page is, as memory-failure.c classifies it:

* ``free``: on the free lists (buddy) — taken off them, never handed out
  again;
* ``anon``: anonymous or shmem (swap-backed: its data exists nowhere else);
  every task mapping it is a *mapper*; isolating unmaps it everywhere
  (``PTE_HWPOISON``: a later access raises SIGBUS), takes it off the LRU
  and kills the mappers memory_failure() decided to kill (SIGBUS);
* ``file``: page cache; ``dirty`` if it has data not yet written back (then
  as anonymous: the mappers are killed), else it is simply dropped from the
  page cache (a later access reads the file again) and nobody is killed.

An isolated frame keeps ``PG_HWPOISON``, leaves its owner and is counted in
its block's ``hwpoison`` pages (memory_failure's retired pages: never free
again, skipped by offlining, forgotten when the memory is removed).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from cxlemu.kernel.mm.frames import (OWNER_FREE, OWNER_MODEL, PG_DIRTY, PG_HWPOISON, PG_SWAPBACKED,
                                     PROT_NUMA)
from cxlemu.kernel.mm.mmap import File, MmStruct, PTE_HWPOISON
from cxlemu.util.lazydc import dataclass

if TYPE_CHECKING:
    from cxlemu.kernel.mm.subsys import Mm


@dataclass(frozen=True)
class PageMapper:
    """A task mapping the page (memory_failure's Mapper: pid, comm, vaddr, owner)."""

    pid: int
    comm: str
    vaddr: int = 0
    owner: Any = None          # the mm id


@dataclass(frozen=True)
class PageState:
    """What the page holds (memory_failure's PageInfo: kind, dirty, mappers)."""

    kind: str                  # "free" | "anon" | "file"
    dirty: bool = True
    mappers: tuple[PageMapper, ...] = ()


class FramesProvider:
    """memory_failure's page-state provider over the engine's page frames."""

    def __init__(self, mm: "Mm"):
        self.mm = mm

    def _frame(self, pfn: int) -> int:
        vm = self.mm._vm
        pf = vm.frames if vm is not None else None
        if pf is None:
            return -1
        return pf.frame_of_pfn(pfn)

    def _mappers(self, f: int) -> list[PageMapper]:
        vm = self.mm.vm
        pf = vm.frames
        tasks = self.mm.kernel.sched.tasks
        by_mm = {t.mm.id: t for t in tasks.values() if t.mm is not None}
        owner, index = int(pf.owner[f]), int(pf.index[f])
        space = vm.spaces.get(owner)
        out = []
        if isinstance(space, MmStruct):
            t = by_mm.get(space.id)
            if t is not None:
                out.append(PageMapper(t.pid, t.comm, space.vpn_addr(index), space.id))
        elif isinstance(space, File):
            for mm_id, vma_id in space.mappers:
                mm = vm.spaces.get(mm_id)
                t = by_mm.get(mm_id)
                v = next((x for x in mm.vmas if x.id == vma_id), None) if isinstance(mm, MmStruct) else None
                if t is None or v is None or not v.pgoff <= index < v.pgoff + v.npages:
                    continue
                vpn = v.start + index - v.pgoff
                if int(mm.pt[vpn]) & ~PROT_NUMA == f:
                    out.append(PageMapper(t.pid, t.comm, mm.vpn_addr(vpn), mm.id))
        return out

    def hwpoison_page_info(self, pfn: int) -> PageState | None:
        f = self._frame(pfn)
        if f < 0:
            return None
        pf = self.mm.vm.frames
        owner = int(pf.owner[f])
        if owner == OWNER_FREE:
            return PageState("free", False) if bool(pf.free[f]) else None
        if owner == OWNER_MODEL:
            return None                          # the block model's page: the caller knows it
        space = self.mm.vm.spaces.get(owner)
        if space is None:
            return None
        fl = int(pf.flags[f])
        mappers = tuple(self._mappers(f))
        if isinstance(space, MmStruct) or fl & PG_SWAPBACKED:
            return PageState("anon", True, mappers)
        return PageState("file", bool(fl & PG_DIRTY), mappers)

    def hwpoison_isolate(self, pfn: int, info: Any, kills: list) -> None:
        """Retire the frame: off the free lists, or unmapped and out of its
        owner; the tasks memory_failure decided to kill get SIGBUS."""
        vm = self.mm.vm
        pf = vm.frames
        f = self._frame(pfn)
        if f < 0:
            return
        fr = np.array([f], np.int64)
        owner = int(pf.owner[f])
        if owner >= 0:
            space = vm.spaces.get(owner)
            clean_file = isinstance(space, File) and getattr(info, "kind", "") == "file" and \
                not getattr(info, "dirty", True)
            # unmap everywhere: anonymous data is gone (an access is SIGBUS);
            # a clean file page is dropped (an access reads the file again)
            from cxlemu.kernel.mm import rmap
            rmap.replace(vm, fr, np.array([-1 if clean_file else PTE_HWPOISON], np.int32),
                         np.array([-1], np.int32))
            vm.page_alloc.free(fr)               # off the LRU, out of the owner's counts
        if not bool(pf.free[f]) and int(pf.owner[f]) != OWNER_FREE:
            return
        pf.free[f] = False
        s = int(f // pf.ppb)
        pf.slot_free[s] -= 1
        pf.owner[f] = OWNER_MODEL
        pf.flags[f] = PG_HWPOISON
        blk = self.mm.blocks[int(pf.block_of_slot[s])]
        blk.hwpoison = getattr(blk, "hwpoison", 0) + 1
        tasks = self.mm.kernel.sched.tasks
        for k in kills:
            t = tasks.get(getattr(k, "pid", -1))
            if t is not None and t.alive:
                t.kill("SIGBUS", getattr(k, "reason", "hardware memory corruption"))
