"""Page migration (mm/migrate.c): move pages to frames on other nodes and
repoint every mapping at them.

``migrate_pages(vm, frames, targets, reason)`` allocates one destination
frame per page on the first target node that has room above the watermark
the caller's GFP allows (``which``), copies the page state (flags, access
bits, NUMA scan time, reverse map), replaces the mappings (PTEs lose their
PROT_NONE hinting state, as ``remove_migration_ptes`` rebuilds them from
the VMA's protection), puts the new page on the same LRU list and frees the
old one.  Pinned (FOLL_LONGTERM) and poisoned pages cannot move
(``pgmigrate_fail``).

The copy costs memory bandwidth on both nodes (a page read on the source,
a page write on the destination: ``VmState.traffic``) and CPU time (the
copy at the slower node's bandwidth plus a fixed overhead for unmapping,
the TLB shootdown and remapping, ``MIGRATE_OVERHEAD_NS``), which the caller
charges to the task (promotion in a fault, mbind) or to kswapd (demotion).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from cxlemu.kernel.mm import rmap
from cxlemu.kernel.mm.frames import PG_ACTIVE, PG_HWPOISON, PG_LRU, PG_PINNED, PROT_NUMA
from cxlemu.kernel.mm.page_alloc import USER_ZONES, WMARK_MIN
from cxlemu.util.lazydc import dataclass

if TYPE_CHECKING:
    from cxlemu.kernel.mm.vmstate import VmState

PAGE = 4096
MIGRATE_OVERHEAD_NS = 2000      # unmap + TLB shootdown IPI + remap per page (estimate)
COPY_GBPS = 8.0                 # single-core 4 KiB copy, GB/s (estimate)

MR_DEMOTION, MR_NUMA_MISPLACED, MR_MEMORY_HOTPLUG, MR_MEMPOLICY_MBIND, MR_LONGTERM_PIN, MR_SYSCALL = \
    "demotion", "numa_misplaced", "memory_hotplug", "mempolicy_mbind", "longterm_pin", "syscall"


@dataclass
class MigrateResult:
    old: np.ndarray          # frames that moved
    new: np.ndarray          # their new frames (same order)
    failed: np.ndarray       # frames that did not move
    cost_ns: float

    @property
    def ok(self) -> int:
        return int(self.old.size)


def page_copy_ns(n: int) -> float:
    return n * (PAGE / (COPY_GBPS * 1e9) * 1e9 + MIGRATE_OVERHEAD_NS)


def alloc_on_nodes(vm: "VmState", targets: list[int], n: int, which: int, cpu_nid: int,
                   wake: bool = True) -> list[np.ndarray]:
    """Destination frames: ``targets`` in order, each with __GFP_THISNODE
    and no direct reclaim; a node below its low watermark wakes its kswapd."""
    pa = vm.page_alloc
    out: list[np.ndarray] = []
    need = n
    for nid in targets:
        if need <= 0:
            break
        zl = [(nid, z) for z in USER_ZONES if pa.zone_slots(nid, z).size]
        got = pa.take_zonelist(zl, need, which, USER_ZONES[0])
        taken = sum(x.size for x in got)
        if taken:
            pa.account(np.concatenate(got), nid, cpu_nid, False)
        out += got
        need -= taken
        if wake and need > 0:
            vm.wakeup_kswapd(nid)
    return out


def migrate_pages(vm: "VmState", frames: np.ndarray, targets: list[int], reason: str, *,
                  which: int = WMARK_MIN, cpu_nid: int = 0, dst: np.ndarray | None = None) -> MigrateResult:
    pf = vm.frames
    frames = np.asarray(frames, np.int64)
    if not frames.size:
        z = np.zeros(0, np.int64)
        return MigrateResult(z, z, z, 0.0)
    movable = (pf.flags[frames] & (PG_PINNED | PG_HWPOISON)) == 0
    cand = frames[movable]
    if dst is None:
        got = alloc_on_nodes(vm, targets, cand.size, which, cpu_nid)
        dst = np.concatenate(got) if got else np.zeros(0, np.int64)
    n = min(cand.size, dst.size)
    old, new = cand[:n], dst[:n]
    failed = np.concatenate([frames[~movable], cand[n:]])
    if n:
        on_lru = (pf.flags[old] & PG_LRU) != 0
        was_active = (pf.flags[old] & PG_ACTIVE) != 0
        vm.lru.delete(old, pf)
        pf.flags[new] = pf.flags[old]
        pf.access[new] = pf.access[old]
        pf.scan_ms[new] = pf.scan_ms[old]
        pf.owner[new] = pf.owner[old]
        pf.index[new] = pf.index[old]
        s, c = pf.slot_counts(new)
        pf.proc_pages[s] += c
        rmap.replace(vm, old, new.astype(np.int32))
        if on_lru.any():
            act = new[on_lru & was_active]
            ina = new[on_lru & ~was_active]
            vm.lru.add(act, pf, active=True)
            vm.lru.add(ina, pf, active=False)
        src_nodes = pf.node[old].astype(np.int64)
        dst_nodes = pf.node[new].astype(np.int64)
        for nid, c in zip(*np.unique(src_nodes, return_counts=True)):
            vm.add_traffic(int(nid), read=PAGE * int(c))
        for nid, c in zip(*np.unique(dst_nodes, return_counts=True)):
            vm.add_traffic(int(nid), write=PAGE * int(c))
        # the old frames: their owner moved; free them (block counts drop)
        pf.owner[old] = -1
        vm.page_alloc.free(old)
    # hand back destination frames we did not use
    if dst.size > n:
        extra = dst[n:]
        s, c = pf.slot_counts(extra)
        for slot, cnt in zip(s.tolist(), c.tolist()):
            vm.mm.blocks[int(pf.block_of_slot[slot])].user -= cnt
        pf.free[extra] = True
        pf.slot_free[s] += c
    vm.vmstat.count("pgmigrate_success", n)
    vm.vmstat.count("pgmigrate_fail", failed.size)
    return MigrateResult(old, new, failed, page_copy_ns(n))


def strip_prot(pte: np.ndarray) -> np.ndarray:
    return np.where(pte >= 0, pte & ~np.int32(PROT_NUMA), pte)
