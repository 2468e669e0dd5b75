"""The page allocator's placement and watermark rules for pages of address
spaces (mm/page_alloc.c), on the frames of frames.py.

Watermarks (``__setup_per_zone_wmarks``): ``min_free_kbytes`` is split over
the zones below Movable in proportion to their managed pages; a Movable zone
gets ``managed/1024`` clamped to [32, 128]; the kswapd distance ``tmp =
max(min_share/4, managed * watermark_scale_factor / 10000)`` gives low = min
+ tmp, high = low + tmp, promo = high + tmp (WMARK_PROMO, the memory-tiering
reclaim target).  ``min_free_kbytes`` itself is ``int_sqrt(lowmem_kb * 16)``
clamped to [128, 262144] unless the user wrote one, raised by khugepaged's
recommendation (11 pageblocks per populated zone up to Normal, at most 5 %
of lowmem) because THP defaults to ``madvise``.  ``lowmem_reserve``
(``setup_per_zone_lowmem_reserve``, ratios 256/256/32) keeps DMA and DMA32
for allocations that need them.

Allocation (``__alloc_pages``) walks the zonelist of the preferred node
(nodes by distance, zones from Movable down), limited by a policy nodemask:

1. fast path: a zone gives pages while free > low watermark + lowmem
   reserve; *with the default ``zone_reclaim_mode`` 0 a node below its low
   watermark is simply skipped and the next node (a CXL node) serves* —
   kswapd is not woken while any zone of the zonelist is above low;
2. slow path: kswapd is woken on every node of the zonelist, then the min
   watermark applies; cxlemu runs a woken kswapd at once (it keeps up with
   the faulting task), and its work is not charged to the task;
3. direct reclaim on the zonelist's nodes (``allocstall_*``) and retry, up
   to MAX_RECLAIM_RETRIES rounds without progress;
4. the OOM killer.

Every page placed counts ``pgalloc_<zone>`` and the NUMA events of
``zone_statistics()``: numa_hit/numa_miss on the node that gave the page
(hit when it is the preferred node), numa_foreign on the preferred node,
numa_local/numa_other against the CPU's node, numa_interleave for an
interleave target hit.
"""

from __future__ import annotations

import errno
import math
from typing import TYPE_CHECKING

import numpy as np

from cxlemu.kernel.base.device import KernelError
from cxlemu.kernel.mm.zones import PAGE_SHIFT, ZONE_DMA, ZONE_DMA32, ZONE_MOVABLE, ZONE_NAMES, ZONE_NORMAL
from cxlemu.util.lazydc import dataclass

if TYPE_CHECKING:
    from cxlemu.kernel.mm.vmstate import VmState

WMARK_MIN, WMARK_LOW, WMARK_HIGH, WMARK_PROMO = range(4)
LOWMEM_RESERVE_RATIO = (256, 256, 32, 0)
MAX_RECLAIM_RETRIES = 16
SWAP_CLUSTER_MAX = 32
USER_ZONES = (ZONE_MOVABLE, ZONE_NORMAL, ZONE_DMA32, ZONE_DMA)
KERNEL_ZONES = (ZONE_NORMAL, ZONE_DMA32, ZONE_DMA)
PAGEBLOCK_PAGES = 512
MIGRATE_PCPTYPES = 3


def calculate_min_free_kbytes(lowmem_kbytes: int) -> int:
    """calculate_min_free_kbytes(): int_sqrt(lowmem * 16) in [128, 262144]."""
    v = math.isqrt(max(lowmem_kbytes, 0) * 16)
    return min(max(v, 128), 262144)


def thp_recommended_min_free_kbytes(nr_lowmem_zones: int, lowmem_pages: int) -> int:
    """khugepaged set_recommended_min_free_kbytes()."""
    rec = PAGEBLOCK_PAGES * nr_lowmem_zones * 2
    rec += PAGEBLOCK_PAGES * nr_lowmem_zones * MIGRATE_PCPTYPES * MIGRATE_PCPTYPES
    rec = min(rec, lowmem_pages // 20)
    return rec << (PAGE_SHIFT - 10)


@dataclass
class ZoneInfo:
    nid: int
    zidx: int
    managed: int


def setup_wmarks(zones: list[ZoneInfo], min_free_kbytes: int, scale_factor: int) -> dict[tuple[int, int], list[int]]:
    """__setup_per_zone_wmarks(): (nid, zone) -> [min, low, high, promo]."""
    pages_min = min_free_kbytes >> (PAGE_SHIFT - 10)
    lowmem = sum(z.managed for z in zones if z.zidx != ZONE_MOVABLE)
    out: dict[tuple[int, int], list[int]] = {}
    for z in zones:
        tmp = pages_min * z.managed // lowmem if lowmem else 0
        if z.zidx == ZONE_MOVABLE:
            wmin = min(max(z.managed // 1024, SWAP_CLUSTER_MAX), 128)
        else:
            wmin = tmp
        tmp = max(tmp >> 2, z.managed * scale_factor // 10000)
        low = wmin + tmp
        high = low + tmp
        out[(z.nid, z.zidx)] = [wmin, low, high, high + tmp]
    return out


def lowmem_reserve(zones: list[ZoneInfo], ratios=LOWMEM_RESERVE_RATIO) -> dict[tuple[int, int], list[int]]:
    """setup_per_zone_lowmem_reserve(): (nid, zone) -> reserve per class zone."""
    by_node: dict[int, dict[int, int]] = {}
    for z in zones:
        by_node.setdefault(z.nid, {})[z.zidx] = z.managed
    out: dict[tuple[int, int], list[int]] = {}
    for nid, zs in by_node.items():
        for i in range(4):
            res = [0, 0, 0, 0]
            ratio = ratios[i]
            managed_i = zs.get(i, 0)
            acc = 0
            for j in range(i + 1, 4):
                acc += zs.get(j, 0)
                res[j] = 0 if (not ratio or not managed_i) else acc // ratio
            out[(nid, i)] = res
    return out


class PageAllocator:
    """The allocation paths over one kernel's VmState."""

    def __init__(self, vm: "VmState"):
        self.vm = vm

    # ---- zone state ---------------------------------------------------------------------
    def zone_slots(self, nid: int, zidx: int) -> np.ndarray:
        return self.vm.zone_slots(nid, zidx)

    def zone_free(self, nid: int, zidx: int) -> int:
        s = self.zone_slots(nid, zidx)
        return int(self.vm.frames.slot_free[s].sum()) if s.size else 0

    def wmark(self, nid: int, zidx: int, which: int) -> int:
        return self.vm.wmarks.get((nid, zidx), [0, 0, 0, 0])[which]

    def reserve(self, nid: int, zidx: int, classzone: int) -> int:
        return self.vm.lowmem.get((nid, zidx), [0, 0, 0, 0])[classzone]

    def headroom(self, nid: int, zidx: int, which: int, classzone: int = ZONE_MOVABLE) -> int:
        """Pages a zone can give before failing zone_watermark_ok(mark)."""
        if not self.zone_slots(nid, zidx).size:
            return 0
        return self.zone_free(nid, zidx) - self.wmark(nid, zidx, which) - self.reserve(nid, zidx, classzone)

    def watermark_ok(self, nid: int, zidx: int, which: int, classzone: int = ZONE_MOVABLE, pages: int = 1) -> bool:
        return self.headroom(nid, zidx, which, classzone) >= pages

    def node_free(self, nid: int) -> int:
        return sum(self.zone_free(nid, z) for z in range(4))

    def zonelist(self, nid: int, nodemask: tuple[int, ...] | None, zones=USER_ZONES) -> list[tuple[int, int]]:
        from cxlemu.kernel.mm.alloc import zonelist_nodes
        mm = self.vm.mm
        nodes = mm.numa.state_nodes("memory")
        if nodemask is not None:
            nodes = [n for n in nodes if n in nodemask]
        order = zonelist_nodes(nid, nodes, mm.numa.distance)
        return [(n, z) for n in order for z in zones if self.zone_slots(n, z).size]

    # ---- taking frames ---------------------------------------------------------------------
    def take(self, nid: int, zidx: int, n: int) -> np.ndarray:
        pf = self.vm.frames
        out = []
        got = 0
        for s in self.zone_slots(nid, zidx):
            if got >= n:
                break
            if pf.slot_free[s] <= 0:
                continue
            f = pf.take_from_slot(int(s), n - got)
            if f.size:
                out.append(f)
                got += f.size
        return np.concatenate(out) if out else np.zeros(0, np.int64)

    def take_zonelist(self, zl: list[tuple[int, int]], n: int, which: int, classzone: int) -> list[np.ndarray]:
        out = []
        need = n
        for nid, z in zl:
            if need <= 0:
                break
            room = self.headroom(nid, z, which, classzone)
            if room <= 0:
                continue
            f = self.take(nid, z, min(room, need))
            if f.size:
                out.append(f)
                need -= f.size
        return out

    # ---- the allocation paths -----------------------------------------------------------------
    def alloc(self, n: int, nid: int, nodemask: tuple[int, ...] | None = None, *, cpu_nid: int = 0,
              kernel: bool = False, interleave: bool = False, try_mask: tuple[int, ...] | None = None,
              reclaim: bool = True, which: int = WMARK_LOW, task=None, thisnode: bool = False,
              zones: tuple[int, ...] | None = None, exmem: bool = False) -> np.ndarray:
        """``n`` frames for the preferred node ``nid``; fewer if memory ran out
        (after reclaim and, when ``reclaim``, the OOM killer found nothing)."""
        vm = self.vm
        if zones is None:
            zones = KERNEL_ZONES if kernel else USER_ZONES
            if kernel and exmem:         # GFP_EXMEM (SMDK): kernel memory may come from ZONE_EXMEM
                from cxlemu.kernel.mm.exmem import gfp_exmem_zones
                zones = gfp_exmem_zones(vm.kernel)
        classzone = ZONE_MOVABLE if ZONE_MOVABLE in zones else ZONE_NORMAL
        if thisnode:
            nodemask = (nid,)
        got: list[np.ndarray] = []
        need = n
        if try_mask is not None:
            # MPOL_PREFERRED_MANY: the preferred nodes first, without reclaim
            zl = self.zonelist(nid, try_mask, zones)
            got += self.take_zonelist(zl, need, which, classzone)
            need = n - sum(x.size for x in got)
        zl = self.zonelist(nid, nodemask, zones)
        if need > 0:
            got += self.take_zonelist(zl, need, which, classzone)
            need = n - sum(x.size for x in got)
        if need > 0:
            # slow path: wake kswapd on the zonelist's nodes (run now), min watermark
            for node in sorted({z[0] for z in zl}):
                vm.wakeup_kswapd(node, classzone)
            vm.run_woken_kswapd()
            got += self.take_zonelist(zl, need, WMARK_MIN if which <= WMARK_LOW else which, classzone)
            need = n - sum(x.size for x in got)
        if need > 0 and reclaim:
            stalls = 0
            no_progress = 0
            while need > 0 and no_progress < MAX_RECLAIM_RETRIES:
                nodes = sorted({z[0] for z in zl})
                vm.vmstat.count(f"allocstall_{ZONE_NAMES[classzone].lower()}")
                stalls += 1
                freed = vm.direct_reclaim(nodes, need + SWAP_CLUSTER_MAX, task)
                more = self.take_zonelist(zl, need, WMARK_MIN, classzone)
                got += more
                need = n - sum(x.size for x in got)
                if freed <= 0 and not sum(x.size for x in more):
                    no_progress += 1
                    if no_progress >= 2:
                        break
                else:
                    no_progress = 0
            if need > 0:
                while need > 0:
                    victim = vm.out_of_memory(nodemask, task)
                    if victim is None or victim is task:
                        break
                    more = self.take_zonelist(zl, need, WMARK_MIN, classzone)
                    got += more
                    need = n - sum(x.size for x in got)
        frames = np.concatenate(got) if got else np.zeros(0, np.int64)
        if frames.size:
            # the preferred zone of zone_statistics(): the first of the (nodemask-limited) zonelist
            first = self.zonelist(nid, try_mask, zones) if try_mask is not None else zl
            pref = first[0][0] if first else nid
            self.account(frames, pref, cpu_nid, interleave, kernel=kernel)
        return frames

    def account(self, frames: np.ndarray, nid: int | np.ndarray, cpu_nid: int, interleave: bool,
                kernel: bool = False) -> None:
        """pgalloc_* and zone_statistics() for placed frames."""
        vm = self.vm
        pf = vm.frames
        nodes = pf.node[frames].astype(np.int64)
        zc = np.bincount(pf.zone[frames].astype(np.int64), minlength=4)
        for z in np.flatnonzero(zc).tolist():
            vm.vmstat.count(f"pgalloc_{ZONE_NAMES[z].lower()}", int(zc[z]))
        nn = int(nodes.max()) + 1
        if np.ndim(nid) == 0:
            pref_n = int(nid)
            hit = nodes == pref_n
            nh = int(np.count_nonzero(hit))
            if nh:
                vm.vmstat.count_numa(pref_n, "numa_hit", nh)
                if interleave:
                    vm.vmstat.count_numa(pref_n, "numa_interleave", nh)
            if nh < nodes.size:
                mc = np.bincount(nodes[~hit], minlength=nn)
                for node in np.flatnonzero(mc).tolist():
                    vm.vmstat.count_numa(node, "numa_miss", int(mc[node]))
                vm.vmstat.count_numa(pref_n, "numa_foreign", nodes.size - nh)
        else:
            pref = np.asarray(nid, np.int64)
            hit = nodes == pref
            hc = np.bincount(nodes[hit], minlength=nn)
            for node in np.flatnonzero(hc).tolist():
                vm.vmstat.count_numa(node, "numa_hit", int(hc[node]))
                if interleave:
                    vm.vmstat.count_numa(node, "numa_interleave", int(hc[node]))
            if not hit.all():
                mc = np.bincount(nodes[~hit], minlength=nn)
                for node in np.flatnonzero(mc).tolist():
                    vm.vmstat.count_numa(node, "numa_miss", int(mc[node]))
                fc = np.bincount(pref[~hit])
                for node in np.flatnonzero(fc).tolist():
                    vm.vmstat.count_numa(node, "numa_foreign", int(fc[node]))
        local = int(np.count_nonzero(nodes == cpu_nid))
        if local:
            vm.vmstat.count_numa(cpu_nid, "numa_local", local)
        if local < nodes.size:
            oc = np.bincount(nodes[nodes != cpu_nid], minlength=nn)
            for node in np.flatnonzero(oc).tolist():
                vm.vmstat.count_numa(node, "numa_other", int(oc[node]))
        # block-level accounting (alloc.py's model sees process pages as user pages)
        s, c = pf.slot_counts(frames)
        for slot, cnt in zip(s.tolist(), c.tolist()):
            blk = vm.mm.blocks[int(pf.block_of_slot[slot])]
            if kernel:
                blk.kernel += cnt
            else:
                blk.user += cnt
        if kernel:
            from cxlemu.kernel.mm.frames import OWNER_MODEL, PG_KERNEL
            pf.owner[frames] = OWNER_MODEL
            pf.flags[frames] = PG_KERNEL

    def free_kernel(self, frames: np.ndarray) -> None:
        """Free unmovable kernel pages allocated with ``alloc(kernel=True)``."""
        vm = self.vm
        pf = vm.frames
        frames = np.asarray(frames, np.int64)
        if not frames.size:
            return
        s, c = pf.slot_counts(frames)
        for slot, cnt in zip(s.tolist(), c.tolist()):
            vm.mm.blocks[int(pf.block_of_slot[slot])].kernel -= cnt
        pf.free[frames] = True
        pf.owner[frames] = -1
        pf.flags[frames] = 0
        pf.slot_free[s] += c
        vm.vmstat.count("pgfree", frames.size)

    def free(self, frames: np.ndarray) -> None:
        """free_unref_folios(): pages go back; block counts drop; pgfree."""
        vm = self.vm
        pf = vm.frames
        frames = np.asarray(frames, np.int64)
        if not frames.size:
            return
        vm.lru.delete(frames, pf)
        s, c = pf.slot_counts(frames)
        for slot, cnt in zip(s.tolist(), c.tolist()):
            blk = vm.mm.blocks[int(pf.block_of_slot[slot])]
            blk.user -= cnt
        pf.release(frames)
        vm.vmstat.count("pgfree", frames.size)


def enomem(what: str) -> KernelError:
    return KernelError(errno.ENOMEM, what)
