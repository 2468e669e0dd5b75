"""The run-time state of the VM (what ``struct pglist_data`` and ``struct
zone`` carry beyond the memory layout): knobs, watermarks, page frames, LRU
lists, address spaces, swap, zswap, kswapd, and the counters.

``Mm.vm`` (created on first use) is the one :class:`VmState` of a kernel.
Other modules (vmscan, migrate, fault, swap, zswap, oom, the NUMA
balancing scanner) are functions over it; extensions (DAMON, RAS, the rack
agent) should use the same entry points, listed in docs/tiering.md.

Costs: the kernel records the background memory traffic it causes (page
copies of migration, compression) per node in ``traffic`` (bytes read,
written) and the CPU time of its kernel threads in ``kthread_ns``; the
workload engine (sim/) drains both every epoch and prices them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from cxlemu.kernel.mm.frames import PageFrames
from cxlemu.kernel.mm.lru import Lru
from cxlemu.kernel.mm.mempolicy import WeightedInterleave
from cxlemu.kernel.mm.mmap import File, MmStruct
from cxlemu.kernel.mm.page_alloc import (PageAllocator, ZoneInfo, calculate_min_free_kbytes, lowmem_reserve,
                                         setup_wmarks, thp_recommended_min_free_kbytes)
from cxlemu.kernel.mm.vmstat import VmStat
from cxlemu.kernel.mm.zones import PAGE_SHIFT, ZONE_MOVABLE, ZONE_NORMAL
from cxlemu.util.lazydc import dataclass

if TYPE_CHECKING:
    from cxlemu.kernel.mm.subsys import Mm


@dataclass
class Kswapd:
    """struct pglist_data's kswapd fields."""
    woken: bool = False
    classzone: int = ZONE_MOVABLE
    failures: int = 0           # kswapd_failures (MAX_RECLAIM_RETRIES: the node is hopeless)
    runs: int = 0
    priority: int = 12          # scan priority: a run scans lru_size >> priority
    last_run_ns: int = 0
    demand: int = 0             # pages promotions could not get since the last run


@dataclass
class Knobs:
    """vm.* sysctls (kernel/sysctl.c, mm/page_alloc.c, mm/vmscan.c)."""
    user_min_free_kbytes: int = -1          # -1: never written (calculated)
    min_free_kbytes: int = 0
    watermark_scale_factor: int = 10
    watermark_boost_factor: int = 15000
    swappiness: int = 60
    zone_reclaim_mode: int = 0
    thp: str = "madvise"                    # /sys/kernel/mm/transparent_hugepage/enabled


class VmState:
    def __init__(self, mm: "Mm"):
        self.mm = mm
        self.knobs = Knobs()
        self.vmstat = VmStat()
        self.frames: PageFrames | None = None
        self.lru = Lru()
        self.wmarks: dict[tuple[int, int], list[int]] = {}
        self.lowmem: dict[tuple[int, int], list[int]] = {}
        self.spaces: dict[int, MmStruct | File] = {}
        self.next_space_id = 1
        self.kswapd: dict[int, Kswapd] = {}
        self.wi = WeightedInterleave()
        self.swap = None            # swap.SwapInfo, created by swapon
        self.zswap = None           # zswap.Zswap
        self.traffic: dict[int, list[float]] = {}      # node -> [read bytes, write bytes] since last drain
        self.kthread_ns = 0.0
        self.wsage: dict[int, int] = {}                 # node -> nonresident age (workingset)
        self.kswapd_aged = 0                            # pages kswapd deactivated (aging progress)
        self.layout_gen = 0
        self._zone_slot_cache: dict = {}
        self._zone_slot_gen = -1
        self.setup_watermarks()
        self.swapon_from_topology()

    def swapon_from_topology(self) -> None:
        """swapon of the machine's swap disk (``[boot] swap``), and zswap's boot default."""
        from cxlemu.kernel.mm.swap import SwapDevice
        from cxlemu.kernel.mm.zswap import Zswap
        boot = self.mm.kernel.platform.topology.boot
        size = int(getattr(boot, "swap", 0) or 0)
        if size and self.swap is None:
            self.swap = [SwapDevice("/dev/vdb", size // 4096 - 1)]
            self.mm.kernel.log(f"Adding {(size // 4096 - 1) * 4}k swap on /dev/vdb.  Priority:-2 extents:1 "
                               f"across:{(size // 4096 - 1) * 4}k FS")
        if self.zswap is None:
            self.zswap = Zswap(enabled=bool(getattr(boot, "zswap", False)),
                               pool_node=str(getattr(boot, "zswap_pool_node", "reclaimer")))

    # ---- small helpers ----------------------------------------------------------------------
    @property
    def kernel(self):
        return self.mm.kernel

    @property
    def now(self) -> int:
        return self.mm.kernel.clock_ns

    @property
    def page_alloc(self) -> PageAllocator:
        return PageAllocator(self)

    def kswapd_of(self, nid: int) -> Kswapd:
        k = self.kswapd.get(nid)
        if k is None:
            k = self.kswapd[nid] = Kswapd()
        return k

    def add_traffic(self, nid: int, read: float = 0.0, write: float = 0.0) -> None:
        t = self.traffic.setdefault(int(nid), [0.0, 0.0])
        t[0] += read
        t[1] += write

    def drain_traffic(self) -> dict[int, list[float]]:
        t, self.traffic = self.traffic, {}
        return t

    # ---- zones and watermarks -------------------------------------------------------------------
    def zone_infos(self) -> list[ZoneInfo]:
        out: dict[tuple[int, int], int] = {}
        for b in self.mm.blocks.values():
            if b.online and b.zone is not None:
                out[(b.nid, b.zone)] = out.get((b.nid, b.zone), 0) + b.managed
        return [ZoneInfo(n, z, m) for (n, z), m in sorted(out.items())]

    def setup_watermarks(self) -> None:
        """init_per_zone_wmark_min() + setup_per_zone_wmarks() + lowmem reserves."""
        zones = self.zone_infos()
        kn = self.knobs
        lowmem = sum(z.managed for z in zones if z.zidx <= ZONE_NORMAL)
        if kn.user_min_free_kbytes < 0:
            v = calculate_min_free_kbytes(lowmem << (PAGE_SHIFT - 10))
            if kn.thp != "never":
                nz = len({(z.nid, z.zidx) for z in zones if z.zidx <= ZONE_NORMAL and z.managed})
                v = max(v, thp_recommended_min_free_kbytes(nz, lowmem))
            kn.min_free_kbytes = v
        else:
            kn.min_free_kbytes = kn.user_min_free_kbytes
        self.wmarks = setup_wmarks(zones, kn.min_free_kbytes, kn.watermark_scale_factor)
        self.lowmem = lowmem_reserve(zones)

    def memory_layout_changed(self) -> None:
        """A block went online or offline: frames, zone lists and watermarks."""
        self.layout_gen += 1
        if self.frames is not None:
            for blk in self.mm.blocks.values():
                if blk.id in self.frames.slot_of_block:
                    self.frames.block_changed(blk, self.hwpoison_pfns())
            self.frames.add_blocks([b for b in self.mm.blocks.values() if b.online], self.hwpoison_pfns())
        self.setup_watermarks()

    def zone_slots(self, nid: int, zidx: int) -> np.ndarray:
        if self.frames is None:
            return np.zeros(0, np.int64)
        if self._zone_slot_gen != (self.layout_gen, self.frames.nslots):
            self._zone_slot_cache = {}
            self._zone_slot_gen = (self.layout_gen, self.frames.nslots)
        key = (nid, zidx)
        s = self._zone_slot_cache.get(key)
        if s is None:
            bids = [b for b in self.mm.zone_blocks.get(key, ())
                    if self.mm.blocks[b].zone == zidx and self.mm.blocks[b].online]
            s = np.asarray([self.frames.slot_of_block[b] for b in bids if b in self.frames.slot_of_block],
                           np.int64)
            self._zone_slot_cache[key] = s
        return s

    # ---- frames lifecycle ---------------------------------------------------------------------
    def frames_get(self) -> PageFrames:
        """The memmap, built on first use."""
        if self.frames is None:
            pf = PageFrames(self.mm)
            self.frames = pf
            pf.add_blocks([b for b in sorted(self.mm.blocks.values(), key=lambda b: b.id) if b.online],
                          self.hwpoison_pfns())
            self.lru = Lru()
            self._zone_slot_gen = -1
        return self.frames

    def hwpoison_pfns(self) -> list[int]:
        """The pfns memory_failure retired (sorted): a rebuilt memmap keeps them out of use."""
        failure = getattr(self.mm, "failure", None)
        return failure.hwpoison if failure is not None else []

    def frames_put(self) -> None:
        """Drop the memmap when nothing owns pages any more (keeps state files small)."""
        pf = self.frames
        if pf is None:
            return
        if self.spaces or (self.zswap is not None and self.zswap.pool_frames.size):
            return
        if np.any(pf.owner >= 0):
            return
        self.frames = None
        self.lru = Lru()
        self._zone_slot_cache = {}
        self._zone_slot_gen = -1

    def block_model_changed(self, bids) -> None:
        """alloc.py changed a block's kernel/user counts."""
        if self.frames is None:
            return
        for bid in bids:
            blk = self.mm.blocks.get(bid)
            if blk is not None and bid in self.frames.slot_of_block:
                self.frames.sync_block(blk)

    # ---- address spaces ---------------------------------------------------------------------------
    def new_mm(self, pid: int) -> MmStruct:
        self.frames_get()
        m = MmStruct(self.next_space_id, pid)
        self.spaces[m.id] = m
        self.next_space_id += 1
        return m

    def new_file(self, name: str, npages: int, shmem: bool = False) -> File:
        self.frames_get()
        f = File(self.next_space_id, name, npages, shmem)
        self.spaces[f.id] = f
        self.next_space_id += 1
        return f

    def drop_space(self, sid: int) -> None:
        self.spaces.pop(sid, None)
        self.frames_put()

    # ---- kswapd ------------------------------------------------------------------------------------
    def wakeup_kswapd(self, nid: int, classzone: int = ZONE_MOVABLE) -> None:
        """wakeup_kswapd(): unless the node is hopeless or already balanced."""
        from cxlemu.kernel.mm import vmscan
        k = self.kswapd_of(nid)
        if k.failures >= 16:
            return
        if vmscan.pgdat_balanced(self, nid, classzone):
            return
        k.woken = True
        k.classzone = classzone

    def run_woken_kswapd(self) -> None:
        from cxlemu.kernel.mm import vmscan
        for nid, k in sorted(self.kswapd.items()):
            if k.woken:
                k.woken = False
                vmscan.kswapd(self, nid, k.classzone)

    def kswapd_pending(self) -> bool:
        return any(k.woken for k in self.kswapd.values())

    def direct_reclaim(self, nodes: list[int], nr: int, task=None) -> int:
        from cxlemu.kernel.mm import vmscan
        return vmscan.try_to_free_pages(self, nodes, nr, task)

    def out_of_memory(self, nodemask, task=None):
        from cxlemu.kernel.mm import oom
        return oom.out_of_memory(self, nodemask, task)

    def can_demote(self, nid: int) -> bool:
        """can_demote(): demotion enabled and the node has somewhere to go."""
        tiers = self.mm.tiers
        if not tiers.demotion_enabled:
            return False
        return bool(tiers.demotion.preferred.get(nid) or tiers.demotion.fallback.get(nid))

    def node_present_pages(self, nid: int) -> int:
        return sum(b.present for b in self.mm.blocks.values() if b.nid == nid and b.online)

    def node_is_toptier(self, nid: int) -> bool:
        return self.mm.tiers.node_is_toptier(nid)
