"""memory_failure(): what Linux does when a CPU consumes poison from a
page, or software asks it to retire one (mm/memory-failure.c).

``memory_failure(pfn, flags)``:

* a pfn that is not memory the kernel manages (no online memory block): a
  device-DAX page is handled as a "dax page" (the mapping processes are
  signalled, the page is retired); anything else: -ENXIO "memory outside
  kernel control";
* a page already marked HWPoison: -EHWPOISON; with MF_ACTION_REQUIRED the
  task that touched it gets SIGBUS again (kill_accessing_process);
* otherwise the page is marked HWPoison and handled by its state:

  =======================  ========================================  ==========
  page                     action                                    result
  =======================  ========================================  ==========
  free (buddy)             taken off the free lists                  Recovered
  memblock-reserved        nothing ("reserved kernel page")          Ignored
  kernel allocation        nothing ("kernel slab page")              Ignored
  anonymous / dirty        mapping tasks are killed with SIGBUS      Recovered
                           (BUS_MCEERR_AR for the task that touched
                           it, BUS_MCEERR_AO for the others), the
                           page is unmapped and isolated
  clean page cache         dropped; nobody is killed (a later        Recovered
                           access reads the file again)
  =======================  ========================================  ==========

  Ignored and Failed return -EBUSY.  Every outcome is traced
  (``ras:memory_failure_event``), logged ("Memory failure: %#lx: recovery
  action for %s: %s") and counted: ``num_poisoned_pages`` (HardwareCorrupted
  in /proc/meminfo) and the node's ``memory_failure/{total,ignored,failed,
  delayed,recovered}`` (6.6+).
* Offlining skips HWPoison pages: they never block it; removing the memory
  forgets them (num_poisoned_pages drops).

What a page holds comes from a *page-state provider*: the workload engine,
when one is attached (``provider``: an object with ``hwpoison_page_info(pfn)
-> PageInfo | None`` and ``hwpoison_isolate(pfn, info, kills)``), else the
block-level allocation model (kernel/mm/alloc.py), whose pages are laid out
in each block as [reserved | kernel | user allocations by id | free].
"""

from __future__ import annotations

import bisect
import errno
from typing import TYPE_CHECKING, Any

from cxlemu.util.lazy import lazy_module

np = lazy_module("numpy")   # only for batches of pfns (the workload engine, dax)

from cxlemu.kernel.mm.zones import PAGE_SHIFT
from cxlemu.util.lazydc import dataclass

if TYPE_CHECKING:
    from cxlemu.kernel.mm.subsys import Mm

MF_ACTION_REQUIRED = 1 << 0
MF_MUST_KILL = 1 << 2
MF_SW_SIMULATED = 1 << 7

# enum mf_result
MF_IGNORED, MF_FAILED, MF_DELAYED, MF_RECOVERED = 0, 1, 2, 3
RESULT_NAMES = ("Ignored", "Failed", "Delayed", "Recovered")
# enum mf_action_page_type (indices into kernel/trace/catalog.py MF_TYPE)
MF_MSG_KERNEL, MF_MSG_SLAB = 0, 2
MF_MSG_DIRTY_LRU, MF_MSG_CLEAN_LRU = 15, 16
MF_MSG_BUDDY, MF_MSG_DAX, MF_MSG_UNKNOWN = 18, 20, 22
MF_MSG_ALREADY_POISONED = 22     # "already poisoned" is reported with the unknown-page text here
EHWPOISON = 133

BUS_MCEERR_AR, BUS_MCEERR_AO = 4, 5


@dataclass(frozen=True)
class Mapper:
    """A task mapping the page: who it is and where."""

    pid: int
    comm: str
    vaddr: int = 0
    owner: Any = None          # provider's handle (allocation id, process object ...)


@dataclass(frozen=True)
class PageInfo:
    """What a page holds, as memory_failure needs to know it."""

    kind: str                  # "free" | "reserved" | "kernel" | "anon" | "file" | "dax" | "unknown"
    dirty: bool = True
    mappers: tuple[Mapper, ...] = ()


@dataclass(frozen=True)
class Kill:
    """A SIGBUS sent because of the failure."""

    pid: int
    comm: str
    pfn: int
    vaddr: int
    si_code: int               # BUS_MCEERR_AR / BUS_MCEERR_AO
    owner: Any = None

    @property
    def reason(self) -> str:
        kind = "BUS_MCEERR_AR" if self.si_code == BUS_MCEERR_AR else "BUS_MCEERR_AO"
        return (f"SIGBUS ({kind}) at {self.vaddr:#x}: hardware memory corruption in pfn {self.pfn:#x}")


@dataclass(frozen=True)
class Outcome:
    """What ``memory_failure()`` did to one pfn: return value, page type, result, kills."""
    pfn: int
    ret: int                   # 0 or -errno
    page_type: int
    result: int
    kills: tuple[Kill, ...] = ()

    @property
    def type_name(self) -> str:
        from cxlemu.kernel.trace.catalog import MF_TYPE
        return MF_TYPE[self.page_type]


@dataclass
class NodeStats:
    """A node's ``memory_failure`` statistics (``/sys/devices/system/node/nodeN/memory_failure``)."""
    total: int = 0
    ignored: int = 0
    failed: int = 0
    delayed: int = 0
    recovered: int = 0


class MemoryFailure:
    def __init__(self, mm: "Mm"):
        self.mm = mm
        self.hwpoison: list[int] = []                   # sorted pfns marked HWPoison
        self.num_poisoned_pages = 0
        self.node_stats: dict[int, NodeStats] = {}
        self.provider: Any = None                       # the workload engine, when attached
        self.kills: list[Kill] = []                      # the latest SIGBUS deliveries (bounded)
        self.early_kill = 0                              # vm.memory_failure_early_kill

    # ---- queries -------------------------------------------------------------------------
    def is_poisoned(self, pfn: int) -> bool:
        i = bisect.bisect_left(self.hwpoison, pfn)
        return i < len(self.hwpoison) and self.hwpoison[i] == pfn

    def poisoned_mask(self, pfns: np.ndarray) -> np.ndarray:
        p = np.asarray(pfns, dtype=np.int64)
        if not self.hwpoison:
            return np.zeros(p.shape, dtype=bool)
        hw = np.asarray(self.hwpoison, dtype=np.int64)
        i = np.minimum(np.searchsorted(hw, p), hw.size - 1)
        return hw[i] == p

    def media_poisoned_pfns(self) -> np.ndarray:
        """Sorted pfns of pages that hold poisoned lines on their memory device
        (CXL devices mapped by regions): a CPU access to one consumes poison."""
        cxl = getattr(self.mm.kernel, "cxl", None)
        return cxl.poison.poisoned_pages() if cxl is not None else np.zeros(0, np.int64)

    def consumes_poison(self, pfns: np.ndarray) -> np.ndarray:
        """Per pfn: does an access read a poisoned line there (page granular:
        the workload engine does not track lines inside a page)."""
        bad = self.media_poisoned_pfns()
        p = np.asarray(pfns, dtype=np.int64)
        if not bad.size or not p.size:
            return np.zeros(p.shape, dtype=bool)
        i = np.minimum(np.searchsorted(bad, p), bad.size - 1)
        return bad[i] == p

    def hardware_corrupted_kb(self) -> int:
        return self.num_poisoned_pages * 4

    def _mark(self, pfn: int) -> None:
        bisect.insort(self.hwpoison, int(pfn))

    def _block(self, pfn: int):
        mm = self.mm
        blk = mm.blocks.get(pfn // mm.pages_per_block)
        return blk if blk is not None and blk.online else None

    # ---- the default page-state provider: the allocation model ------------------------------
    def _alloc_page_info(self, pfn: int) -> PageInfo:
        blk = self._block(pfn)
        assert blk is not None
        i = pfn - blk.start_pfn
        if i < blk.reserved:
            return PageInfo("reserved")
        i -= blk.reserved
        if i < blk.kernel:
            return PageInfo("kernel")
        i -= blk.kernel
        if i < blk.user:
            for a in sorted(self.mm.pages.allocs.values(), key=lambda x: x.id):
                if not a.movable:
                    continue
                n = a.pieces.get(blk.id, 0)
                if i < n:
                    label = a.label or f"alloc{a.id}"
                    return PageInfo("anon", True, (Mapper(pid=0, comm=label, vaddr=0, owner=a.id),))
                i -= n
            return PageInfo("unknown")
        return PageInfo("free")

    def alloc_pages(self, aid: int) -> np.ndarray:
        """The pfns of a user allocation in the model's layout (the pages a
        task owning it would touch): per block, after the reserved and kernel
        pages and the lower-numbered allocations' pages."""
        pages = self.mm.pages
        a = pages.allocs[aid]
        out = []
        for bid, n in sorted(a.pieces.items()):
            blk = self.mm.blocks[bid]
            first = blk.start_pfn + blk.reserved + blk.kernel
            for other in sorted(pages.allocs.values(), key=lambda x: x.id):
                if other.id == aid:
                    break
                if other.movable:
                    first += other.pieces.get(bid, 0)
            out.append(np.arange(first, first + n, dtype=np.int64))
        return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)

    def _alloc_isolate(self, pfn: int, info: PageInfo, kills: list[Kill]) -> None:
        """The killed allocation's task exits: its memory is freed except the
        poisoned page, which stays out of use."""
        blk = self._block(pfn)
        if info.kind == "free":
            blk.hwpoison += 1
            return
        if info.kind == "anon":
            for m in info.mappers:
                if m.owner in self.mm.pages.allocs:
                    self.mm.pages.free(m.owner)
            blk.hwpoison += 1

    # ---- memory_failure() ------------------------------------------------------------------------
    def memory_failure(self, pfn: int, flags: int = 0, current: Mapper | None = None) -> Outcome:
        k = self.mm.kernel
        if self.is_poisoned(pfn):
            k.log(f"Memory failure: {pfn:#x}: already hardware poisoned")
            kills: list[Kill] = []
            if flags & MF_ACTION_REQUIRED and current is not None:
                kills.append(self._signal(pfn, current, BUS_MCEERR_AR))
            self._record(kills)
            return Outcome(pfn, -EHWPOISON, MF_MSG_ALREADY_POISONED, MF_FAILED, tuple(kills))
        blk = self._block(pfn)
        if blk is None:
            dax = self._dax_page(pfn)
            if dax is None:
                k.log(f"Memory failure: {pfn:#x}: memory outside kernel control")
                return Outcome(pfn, -errno.ENXIO, MF_MSG_UNKNOWN, MF_IGNORED)
            self._mark(pfn)
            return self._finish(pfn, MF_MSG_DAX, MF_RECOVERED, self._kill_all(pfn, dax, flags, current), None)
        info = None
        if self.provider is not None:
            info = self.provider.hwpoison_page_info(pfn)
        isolate = self.provider.hwpoison_isolate if info is not None else self._alloc_isolate
        if info is None:
            info = self._alloc_page_info(pfn)
        kills = []
        if info.kind == "free":
            ptype, res = MF_MSG_BUDDY, MF_RECOVERED
        elif info.kind == "reserved":
            ptype, res = MF_MSG_KERNEL, MF_IGNORED
        elif info.kind == "kernel":
            ptype, res = MF_MSG_SLAB, MF_IGNORED
        elif info.kind in ("anon", "file") and (info.dirty or info.kind == "anon"):
            ptype, res = MF_MSG_DIRTY_LRU, MF_RECOVERED
            kills = self._kill_all(pfn, info, flags, current)
        elif info.kind == "file":
            ptype, res = MF_MSG_CLEAN_LRU, MF_RECOVERED        # clean page cache: dropped, nobody killed
        else:
            ptype, res = MF_MSG_UNKNOWN, MF_FAILED
            k.log(f"Memory failure: {pfn:#x}: Unknown page state")
        self._mark(pfn)
        if res in (MF_RECOVERED, MF_DELAYED):
            isolate(pfn, info, kills)
        return self._finish(pfn, ptype, res, kills, blk.nid)

    def _kill_all(self, pfn: int, info: PageInfo, flags: int, current: Mapper | None) -> list[Kill]:
        out = []
        for m in info.mappers:
            touching = current is not None and (m.pid, m.owner) == (current.pid, current.owner)
            if flags & MF_ACTION_REQUIRED and touching:
                out.append(self._signal(pfn, m, BUS_MCEERR_AR))
            else:
                # other mappers are killed now for anonymous data (it is gone); with
                # early kill they get the advisory AO signal
                out.append(self._signal(pfn, m, BUS_MCEERR_AO))
        return out

    def _signal(self, pfn: int, m: Mapper, code: int) -> Kill:
        self.mm.kernel.log(f"Memory failure: {pfn:#x}: Sending SIGBUS to {m.comm}:{m.pid} due to hardware "
                           f"memory corruption")
        return Kill(m.pid, m.comm, pfn, m.vaddr, code, m.owner)

    def _record(self, kills: list[Kill]) -> None:
        self.kills.extend(kills)
        del self.kills[:-64]

    def _finish(self, pfn: int, ptype: int, res: int, kills: list[Kill], nid: int | None) -> Outcome:
        k = self.mm.kernel
        from cxlemu.kernel.trace.catalog import MF_TYPE
        k.trace("ras", "memory_failure_event", {"pfn": pfn, "type": ptype, "result": res})
        self.num_poisoned_pages += 1
        if nid is not None:
            st = self.node_stats.setdefault(nid, NodeStats())
            st.total += 1
            name = RESULT_NAMES[res].lower()
            setattr(st, name, getattr(st, name) + 1)
        k.log(f"Memory failure: {pfn:#x}: recovery action for {MF_TYPE[ptype]}: {RESULT_NAMES[res]}")
        self._record(kills)
        k.dirty = True
        ret = 0 if res in (MF_RECOVERED, MF_DELAYED) else -errno.EBUSY
        return Outcome(pfn, ret, ptype, res, tuple(kills))

    def _dax_page(self, pfn: int) -> PageInfo | None:
        """A pfn inside a device-DAX device (ZONE_DEVICE): memory_failure_dev_pagemap."""
        dax = getattr(self.mm.kernel, "dax", None)
        if dax is None:
            return None
        hpa = pfn << PAGE_SHIFT
        for dev in dax.devices():
            if dev.driver is None or dev.driver.name != "device_dax":
                continue
            for r in dev.ranges:
                if r.start <= hpa <= r.end:
                    return PageInfo("dax", True, ())
        return None

    # ---- software entry points ------------------------------------------------------------------------
    def hard_offline_page(self, addr: int) -> None:
        """/sys/devices/system/memory/hard_offline_page: memory_failure(MF_SW_SIMULATED)."""
        out = self.memory_failure(addr >> PAGE_SHIFT, MF_SW_SIMULATED)
        if out.ret and out.ret != -errno.EOPNOTSUPP:
            from cxlemu.kernel.base.device import KernelError
            raise KernelError(-out.ret)

    def soft_offline_page(self, addr: int) -> None:
        """soft_offline_page: free pages are taken away, in-use movable pages
        migrated first (nobody is killed), unmovable ones refused (-EBUSY);
        only online memory (-EIO otherwise)."""
        from cxlemu.kernel.base.device import KernelError
        pfn = addr >> PAGE_SHIFT
        blk = self._block(pfn)
        if blk is None:
            raise KernelError(errno.EIO, f"soft offline: {pfn:#x}: page not online")
        if self.is_poisoned(pfn):
            self.mm.kernel.log(f"soft offline: {pfn:#x}: page already poisoned")
            return
        info = self._alloc_page_info(pfn) if self.provider is None else \
            (self.provider.hwpoison_page_info(pfn) or self._alloc_page_info(pfn))
        if info.kind in ("reserved", "kernel", "unknown"):
            raise KernelError(errno.EBUSY, f"soft offline: {pfn:#x}: unmovable page")
        if info.kind != "free":
            # migrate_pages(): the data moves to a new page of the same node if possible
            mig = self.mm.pages.candidates((blk.zone,), blk.nid, exclude=blk.id) if blk.zone is not None else iter(())
            if not any(free > 0 for _, free in mig):
                raise KernelError(errno.EBUSY, f"soft offline: {pfn:#x}: migration failed")
        self._mark(pfn)
        blk.hwpoison += 1
        if info.kind != "free":
            blk.user -= 1 if blk.user else 0
        self.num_poisoned_pages += 1
        self.mm.kernel.log(f"soft offline: {pfn:#x}: {'free' if info.kind == 'free' else 'page migration'} "
                           f"succeeded")
        self.mm.kernel.dirty = True

    def forget_range(self, start_pfn: int, nr: int) -> None:
        """Memory removal: the struct pages (and their HWPoison marks) go away."""
        keep = [p for p in self.hwpoison if not start_pfn <= p < start_pfn + nr]
        gone = len(self.hwpoison) - len(keep)
        if gone:
            self.hwpoison = keep
            self.num_poisoned_pages = max(0, self.num_poisoned_pages - gone)
            self.mm.kernel.dirty = True

    def node_stat_files(self, nid: int) -> dict[str, int]:
        st = self.node_stats.get(nid, NodeStats())
        return {"total": st.total, "ignored": st.ignored, "failed": st.failed, "delayed": st.delayed,
                "recovered": st.recovered}
