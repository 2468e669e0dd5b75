"""Page reclaim (mm/vmscan.c): kswapd, direct reclaim, LRU aging, demotion,
swap-out and page-cache eviction — vectorised over batches of pages.

* ``kswapd(nid)`` (balance_pgdat): reclaims from the node's LRU lists until
  the node is balanced: some zone up to the waking allocation's class zone
  is above its high watermark, or above WMARK_PROMO when NUMA balancing's
  memory-tiering mode is on (the reclaim target TPP decoupled from the
  allocation watermark).  A run that frees nothing counts a failure; after
  MAX_RECLAIM_RETRIES (16) the node is left alone until direct reclaim
  makes progress there.
* ``try_to_free_pages`` (direct reclaim) reclaims for a stalled allocation
  on the nodes of its zonelist, charged to the task.
* ``shrink_node``: anon/file balance from ``vm.swappiness`` (no anonymous
  scanning without swap space or a demotion target), active lists aged when
  ``inactive_is_low`` (ratio ``int_sqrt(10 * GB)``), inactive lists shrunk.
* ``shrink_folio_list``: PTE accessed bits are tested and cleared
  (folio_referenced): a referenced anonymous page is activated; a file page
  needs two references (PG_referenced) before activation; long-term pinned
  pages stay.  The rest is reclaimed: with ``demotion_enabled`` every
  candidate is first migrated to the node's demotion targets (preferred
  targets, then the lower tiers; GFP_NOWAIT: no reclaim on the target,
  only above its min watermark) — ``pgdemote_kswapd``/``pgdemote_direct``;
  pages that could not be demoted fall back to normal reclaim (6.1+): anon
  and shmem pages go to swap (through zswap when enabled), clean file pages
  are dropped, dirty ones written back first.  Demoted pages count as
  reclaimed (``pgsteal_*``).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from cxlemu.kernel.mm import rmap
from cxlemu.kernel.mm.frames import (PG_ACTIVE, PG_ANON, PG_DIRTY, PG_PINNED, PG_REFERENCED, PG_SWAPBACKED,
                                     PG_UNEVICTABLE, swp_entry)
from cxlemu.kernel.mm.lru import LRU_ACTIVE_ANON, LRU_ACTIVE_FILE, LRU_INACTIVE_ANON, LRU_INACTIVE_FILE
from cxlemu.kernel.mm.migrate import MR_DEMOTION, migrate_pages
from cxlemu.kernel.mm.mmap import File
from cxlemu.kernel.mm.page_alloc import MAX_RECLAIM_RETRIES, WMARK_HIGH, WMARK_MIN, WMARK_PROMO
from cxlemu.kernel.mm.swap import SWAP_WRITE_NS, shadow_pack
from cxlemu.kernel.mm.zones import ZONE_MOVABLE

if TYPE_CHECKING:
    from cxlemu.kernel.mm.vmstate import VmState

PAGE = 4096
WRITEBACK_NS = 20_000            # writing a dirty file page back before eviction
KSWAPD_BATCH_MIN = 1024
DEF_PRIORITY = 12


def tiering_mode(vm: "VmState") -> bool:
    sched = getattr(vm.kernel, "sched", None)
    return bool(sched is not None and sched.numab.mode & 2)


def pgdat_balanced(vm: "VmState", nid: int, classzone: int = ZONE_MOVABLE) -> bool:
    """pgdat_balanced(): some managed zone up to ``classzone`` is above its
    high (or, in memory-tiering mode, promo) watermark."""
    if vm.frames is None:
        return True
    pa = vm.page_alloc
    which = WMARK_PROMO if tiering_mode(vm) else WMARK_HIGH
    seen = False
    for z in range(classzone + 1):
        if not pa.zone_slots(nid, z).size:
            continue
        seen = True
        if pa.watermark_ok(nid, z, which, classzone):
            return True
    return not seen


def balance_target(vm: "VmState", nid: int, classzone: int) -> int:
    """Pages to free so that the best zone reaches its target watermark."""
    pa = vm.page_alloc
    which = WMARK_PROMO if tiering_mode(vm) else WMARK_HIGH
    best = None
    for z in range(classzone + 1):
        if not pa.zone_slots(nid, z).size:
            continue
        need = -pa.headroom(nid, z, which, classzone) + 1
        best = need if best is None else min(best, need)
    return max(best or 0, 0)


def kswapd(vm: "VmState", nid: int, classzone: int = ZONE_MOVABLE) -> int:
    """One kswapd wakeup: reclaim until balanced.  Returns pages reclaimed."""
    k = vm.kswapd_of(nid)
    k.runs += 1
    vm.vmstat.count("pageoutrun")
    total = 0
    aged0 = getattr(vm, "kswapd_aged", 0)
    # kswapd runs concurrently with the tasks; cxlemu runs it between epochs, so a
    # wakeup also covers what promotions asked for in the meantime (k.demand), as
    # far as one kswapd thread can migrate in the time since its last run
    from cxlemu.kernel.mm.migrate import page_copy_ns
    elapsed = max(vm.now - k.last_run_ns, 0)
    budget = int(elapsed / page_copy_ns(1))
    extra = min(k.demand, budget)
    k.demand = 0
    k.last_run_ns = vm.now
    for _ in range(MAX_RECLAIM_RETRIES):
        need = balance_target(vm, nid, classzone)
        if need > 0 or extra > 0:
            need = max(need, 0) + extra
            extra = 0
        if need <= 0:
            break
        got, cost = shrink_node(vm, nid, max(need, KSWAPD_BATCH_MIN), kswapd=True)
        vm.kthread_ns += cost
        total += got
        if got == 0:
            break
    aged = getattr(vm, "kswapd_aged", 0) - aged0
    if total == 0 and not aged and not pgdat_balanced(vm, nid, classzone):
        k.failures += 1
    elif total:
        k.failures = 0
    if not pgdat_balanced(vm, nid, classzone):
        k.woken = True          # still below the target: kswapd keeps running next time
        k.priority = max(k.priority - 1, 0)
    else:
        k.priority = DEF_PRIORITY
    return total


def try_to_free_pages(vm: "VmState", nodes: list[int], nr: int, task=None) -> int:
    """Direct reclaim for a stalled allocation; the time is the task's."""
    total = 0
    for nid in nodes:
        if total >= nr:
            break
        got, cost = shrink_node(vm, nid, nr - total, kswapd=False, task=task)
        total += got
        if task is not None:
            task.stall_ns += cost
        if got:
            vm.kswapd_of(nid).failures = 0
    return total


def inactive_is_low(vm: "VmState", nid: int, inactive_lru: int) -> bool:
    inactive = vm.lru.size(nid, inactive_lru)
    active = vm.lru.size(nid, inactive_lru + 1)
    gb = (inactive + active) >> 18
    ratio = math.isqrt(10 * gb) if gb else 1
    return inactive * ratio < active


def can_reclaim_anon(vm: "VmState", nid: int) -> bool:
    """can_reclaim_anon_pages(): free swap, or a demotion target."""
    if vm.swap is not None and any(d.used < d.slots for d in vm.swap):
        return True
    return vm.can_demote(nid)


def shrink_node(vm: "VmState", nid: int, nr_to_reclaim: int, kswapd: bool, task=None) -> tuple[int, float]:
    """Reclaim about ``nr_to_reclaim`` pages from a node's LRU lists.

    Direct reclaim scans with falling priority (``lru_size >> prio`` from
    DEF_PRIORITY 12 down to 0, like do_try_to_free_pages), ageing the active
    list before each inactive scan; kswapd does one pass at its current
    priority and ages after reclaiming (see kswapd())."""
    if vm.frames is None:
        return 0, 0.0
    reclaimed = 0
    cost = 0.0
    swp = vm.knobs.swappiness
    anon_ok = can_reclaim_anon(vm, nid)
    prios = [vm.kswapd_of(nid).priority] * 2 if kswapd else list(range(DEF_PRIORITY, -1, -1))
    for prio in prios:
        want = nr_to_reclaim - reclaimed
        if want <= 0:
            break
        anon = vm.lru.size(nid, LRU_INACTIVE_ANON) + vm.lru.size(nid, LRU_ACTIVE_ANON)
        file = vm.lru.size(nid, LRU_INACTIVE_FILE) + vm.lru.size(nid, LRU_ACTIVE_FILE)
        if not anon_ok or (swp == 0 and file):
            anon_share = 0.0
        elif not file:
            anon_share = 1.0
        else:
            anon_share = anon * swp / (anon * swp + file * (200 - swp))
        batch = max(want * 2, 256)
        scanned = 0
        aged = 0
        for base, share in ((LRU_INACTIVE_ANON, anon_share), (LRU_INACTIVE_FILE, 1.0 - anon_share)):
            if share <= 0:
                continue
            n = max(int(math.ceil(batch * share)), vm.lru.size(nid, base) >> prio)
            n_age = max(int(math.ceil(batch * share)), vm.lru.size(nid, base + 1) >> prio)
            if not kswapd and (inactive_is_low(vm, nid, base) or vm.lru.size(nid, base) < n):
                aged += shrink_active_list(vm, nid, base + 1, n_age)
            r, sc, c = shrink_inactive_list(vm, nid, base, n, kswapd, task)
            reclaimed += r
            scanned += sc
            cost += c
            if kswapd and (inactive_is_low(vm, nid, base) or vm.lru.size(nid, base) < n):
                # kswapd runs between epochs: pages it deactivates now get the time
                # until its next run to be referenced again before they can be reclaimed
                aged += shrink_active_list(vm, nid, base + 1, n_age)
        vm.kswapd_aged = getattr(vm, "kswapd_aged", 0) + aged
        if not scanned and not aged:
            break
        if kswapd and aged and reclaimed < nr_to_reclaim:
            break
    return reclaimed, cost


def shrink_active_list(vm: "VmState", nid: int, lru: int, n: int) -> int:
    """Deactivate the oldest active pages (their accessed bits are cleared)."""
    pf = vm.frames
    f = vm.lru.isolate(nid, lru, n, pf)
    if not f.size:
        return 0
    vm.vmstat.count("pgrefill", f.size)
    young = pf.access[f] > 0
    pf.access[f[young]] = -pf.access[f[young]]
    vm.lru.add(f, pf, active=False)
    vm.vmstat.count("pgdeactivate", f.size)
    return int(f.size)


def shrink_inactive_list(vm: "VmState", nid: int, lru: int, n: int, kswapd: bool, task=None) -> tuple[int, int, float]:
    pf = vm.frames
    f = vm.lru.isolate(nid, lru, n, pf)
    if not f.size:
        return 0, 0, 0.0
    who = "kswapd" if kswapd else "direct"
    vm.vmstat.count(f"pgscan_{who}", f.size)
    vm.vmstat.count("pgscan_anon" if lru == LRU_INACTIVE_ANON else "pgscan_file", f.size)
    got, cost = shrink_folio_list(vm, nid, f, kswapd, task)
    vm.vmstat.count(f"pgsteal_{who}", got)
    vm.vmstat.count("pgsteal_anon" if lru == LRU_INACTIVE_ANON else "pgsteal_file", got)
    return got, int(f.size), cost


def shrink_folio_list(vm: "VmState", nid: int, f: np.ndarray, kswapd: bool, task=None) -> tuple[int, float]:
    """Decide and act for isolated inactive pages; returns (reclaimed, cost ns)."""
    pf = vm.frames
    fl = pf.flags[f]
    swapbacked = (fl & PG_SWAPBACKED) != 0
    pinned = (fl & (PG_PINNED | PG_UNEVICTABLE)) != 0
    acc = pf.access[f]
    young = acc > 0
    pf.access[f[young]] = -acc[young]                     # folio_referenced: test and clear
    ref_page = (fl & PG_REFERENCED) != 0
    activate = pinned | (young & (swapbacked | ref_page))
    keep = young & ~swapbacked & ~ref_page & ~pinned
    if keep.any():
        pf.flags[f[keep]] |= np.uint16(PG_REFERENCED)
    cand_mask = ~young & ~pinned
    # FOLIOREF_RECLAIM_CLEAN: a referenced file page gives up its flag
    pf.flags[f[cand_mask & ref_page & ~swapbacked]] &= ~np.uint16(PG_REFERENCED)
    cand = f[cand_mask]
    reclaimed = 0
    cost = 0.0
    back_active: list[np.ndarray] = [f[activate]]
    back_inactive: list[np.ndarray] = [f[keep]]
    if cand.size and vm.can_demote(nid):
        res = demote_folio_list(vm, nid, cand, kswapd)
        reclaimed += res.ok
        cost += res.cost_ns
        cand = res.failed
    if cand.size:
        fl2 = pf.flags[cand]
        sb = (fl2 & PG_SWAPBACKED) != 0
        anon_c = cand[sb]
        file_c = cand[~sb]
        if anon_c.size:
            done, c = swap_out(vm, anon_c, nid)
            reclaimed += done
            cost += c
            if done < anon_c.size:
                back_active.append(anon_c[done:])
        if file_c.size:
            done, c = evict_file_pages(vm, file_c, nid)
            reclaimed += done
            cost += c
    act = np.concatenate(back_active)
    if act.size:
        vm.lru.add(act, pf, active=True)
        vm.vmstat.count("pgactivate", act.size)
        age_nonresident(vm, nid, act.size)
    ina = np.concatenate(back_inactive)
    if ina.size:
        vm.lru.add(ina, pf, active=False)
    return reclaimed, cost


def demotion_targets(vm: "VmState", nid: int) -> list[int]:
    d = vm.mm.tiers.demotion
    pref = list(d.preferred.get(nid, []))
    rest = [n for n in d.fallback.get(nid, []) if n not in pref]
    return pref + rest


def demote_folio_list(vm: "VmState", nid: int, f: np.ndarray, kswapd: bool):
    """demote_folio_list(): migrate to the demotion targets, GFP_NOWAIT."""
    cpu = vm.kernel.sched.cpu_node_of_kthread(nid) if hasattr(vm.kernel, "sched") else 0
    res = migrate_pages(vm, f, demotion_targets(vm, nid), MR_DEMOTION, which=WMARK_MIN, cpu_nid=cpu)
    if res.ok:
        vm.vmstat.count_node(nid, "pgdemote_kswapd" if kswapd else "pgdemote_direct", res.ok)
    return res


def age_nonresident(vm: "VmState", nid: int, n: int) -> None:
    vm.wsage[nid] = vm.wsage.get(nid, 0) + int(n)


def swap_out(vm: "VmState", f: np.ndarray, nid: int) -> tuple[int, float]:
    """Anonymous/shmem pages to swap (zswap first); returns (done, cost).
    Pages beyond the free swap space are not reclaimed (the first ``done``
    of ``f`` are)."""
    from cxlemu.kernel.mm import zswap as zswap_ops
    if vm.swap is None or not vm.swap:
        return 0, 0.0
    dev = vm.swap[0]
    slots = dev.alloc(f.size)
    n = slots.size
    if not n:
        return 0, 0.0
    pages = f[:n]
    pf = vm.frames
    age = vm.wsage.get(nid, 0)
    dev.shadow[slots] = shadow_pack(nid, age)
    age_nonresident(vm, nid, n)
    cost = 0.0
    stored = zswap_ops.store(vm, dev, pages, slots, nid)
    cost += stored.cost_ns
    to_disk = ~stored.mask
    nd = int(np.count_nonzero(to_disk))
    if nd:
        vm.vmstat.count("pswpout", nd)
        vm.vmstat.count("pgpgout", nd * 4)
        cost += nd * SWAP_WRITE_NS / 32        # asynchronous writeback, queue depth 32
    ent = swp_entry(slots).astype(np.int32)
    anon = (pf.flags[pages] & PG_ANON) != 0
    pte = np.where(anon, ent, np.int32(-1)).astype(np.int32)     # shmem: PTE none, page cache holds the entry
    for node, c in zip(*np.unique(pf.node[pages], return_counts=True)):
        vm.add_traffic(int(node), read=PAGE * int(c))
    rmap.replace(vm, pages, pte, ent)
    vm.page_alloc.free(pages)
    return n, cost


def evict_file_pages(vm: "VmState", f: np.ndarray, nid: int) -> tuple[int, float]:
    """Drop clean page-cache pages; write dirty ones back first."""
    pf = vm.frames
    dirty = (pf.flags[f] & PG_DIRTY) != 0
    nd = int(np.count_nonzero(dirty))
    cost = 0.0
    if nd:
        vm.vmstat.count_node(nid, "nr_vmscan_write", nd)
        vm.vmstat.count_node(nid, "nr_written", nd)
        vm.vmstat.count("pgpgout", nd * 4)
        cost += nd * WRITEBACK_NS / 32
    age = vm.wsage.get(nid, 0)
    owner = pf.owner[f]
    index = pf.index[f].astype(np.int64)
    for oid, pos in rmap.groups(owner):
        sp = vm.spaces.get(oid)
        if isinstance(sp, File):
            if getattr(sp, "shadow", None) is None or sp.shadow.size != sp.npages:
                sp.shadow = np.zeros(sp.npages, np.int64)
            sp.shadow[index[pos]] = shadow_pack(nid, age)
    age_nonresident(vm, nid, f.size)
    rmap.replace(vm, f, np.full(f.size, -1, np.int32))
    vm.page_alloc.free(f)
    return int(f.size), cost


def refault(vm: "VmState", shadows: np.ndarray, anon: bool) -> np.ndarray:
    """workingset_refault(): which refaulting pages should start active."""
    from cxlemu.kernel.mm.swap import shadow_unpack
    if not shadows.size:
        return np.zeros(0, np.bool_)
    nodes, ages = shadow_unpack(shadows)
    kind = "anon" if anon else "file"
    valid = shadows != 0
    act = np.zeros(shadows.size, np.bool_)
    for nid in np.unique(nodes[valid]).tolist():
        sel = valid & (nodes == nid)
        vm.vmstat.count_node(int(nid), f"workingset_refault_{kind}", int(sel.sum()))
        dist = vm.wsage.get(int(nid), 0) - ages[sel]
        ws = vm.lru.size(int(nid), LRU_ACTIVE_FILE) + vm.lru.size(int(nid), LRU_INACTIVE_FILE)
        if can_reclaim_anon(vm, int(nid)):
            ws += vm.lru.size(int(nid), LRU_ACTIVE_ANON) + vm.lru.size(int(nid), LRU_INACTIVE_ANON)
        hot = dist <= ws
        idx = np.flatnonzero(sel)
        act[idx[hot]] = True
        if hot.any():
            vm.vmstat.count_node(int(nid), f"workingset_activate_{kind}", int(hot.sum()))
    return act


def drop_pagecache(vm: "VmState") -> int:
    """drop_caches 1: clean page-cache pages nobody maps (invalidate_mapping_pages)."""
    if vm.frames is None:
        return 0
    total = 0
    for sp in list(vm.spaces.values()):
        if isinstance(sp, File) and not sp.shmem and not sp.mappers:
            pages = sp.pages[sp.pages >= 0].astype(np.int64)
            clean = pages[(vm.frames.flags[pages] & PG_DIRTY) == 0]
            if clean.size:
                rmap.replace(vm, clean, np.full(clean.size, -1, np.int32))
                vm.page_alloc.free(clean)
                total += clean.size
    return total
