"""NUMA hinting faults (mm/memory.c do_numa_page, mm/migrate.c
migrate_misplaced_folio / numamigrate_isolate_folio); the decision rules
live in kernel/sched/numa.py (fair.c)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from cxlemu.kernel.mm.frames import PG_DIRTY, PG_SWAPBACKED, PROT_NUMA
from cxlemu.kernel.mm.migrate import MR_NUMA_MISPLACED, migrate_pages, page_copy_ns
from cxlemu.kernel.mm.page_alloc import WMARK_HIGH
from cxlemu.kernel.sched import numa as nbal

if TYPE_CHECKING:
    from cxlemu.kernel.sched.task import Task


def migrate_balanced_pages(vm, nid: int) -> int:
    """migrate_balanced_pgdat(): pages the node takes while staying above
    its high watermark (the best zone decides)."""
    pa = vm.page_alloc
    best = 0
    for z in (3, 2, 1, 0):
        if pa.zone_slots(nid, z).size:
            best = max(best, pa.headroom(nid, z, WMARK_HIGH))
    return max(best, 0)


def do_numa_page(task: "Task", uv: np.ndarray, ents: np.ndarray, now: int) -> np.ndarray:
    kernel = task.kernel
    vm = kernel.mm.vm
    pf = vm.frames
    nb = kernel.sched.numab
    mm = task.mm
    frames = (ents & np.int32(~PROT_NUMA)).astype(np.int64)
    mm.pt[uv] = frames.astype(np.int32)                 # the PTE gets its protection back
    n = frames.size
    costs = np.full(n, float(nbal.HINT_FAULT_NS))
    nodes = pf.node[frames].astype(np.int64)
    cpu = task.cpu_node
    local = nodes == cpu
    vm.vmstat.count("numa_hint_faults", n)
    vm.vmstat.count("numa_hint_faults_local", int(local.sum()))
    task.numa_faults_local += int(local.sum())
    task.numa_faults_remote += int(n - local.sum())
    cand = np.flatnonzero(~local)
    if not cand.size or not nb.mode:
        return costs
    cf = frames[cand]
    cn = nodes[cand]
    fl = pf.flags[cf]
    # dirty file pages are not migrated from a fault (MIGRATE_ASYNC)
    movable = ~(((fl & PG_SWAPBACKED) == 0) & ((fl & PG_DIRTY) != 0))
    tt = np.array([vm.node_is_toptier(x) for x in range(int(cn.max()) + 1)], np.bool_)
    toptier = tt[cn]
    allow = np.zeros(cand.size, np.bool_)
    slow = ~toptier & movable
    if nb.mode & nbal.NUMA_BALANCING_MEMORY_TIERING and vm.node_is_toptier(cpu):
        if slow.any():
            allow[slow] = nbal.tiering_candidates(kernel, cf[slow], cpu, now)
        rest = toptier & movable
    else:
        rest = movable
    if nb.mode & nbal.NUMA_BALANCING_NORMAL and rest.any():
        allow[rest] = nbal.normal_candidates(kernel, cf[rest])
    go = np.flatnonzero(allow)
    if not go.size:
        return costs
    room = migrate_balanced_pages(vm, cpu)
    take, fail = go[:room], go[room:]
    if fail.size and nb.mode & nbal.NUMA_BALANCING_MEMORY_TIERING:
        vm.kswapd_of(cpu).demand += int(fail.size)
        vm.wakeup_kswapd(cpu)
    if not take.size:
        return costs
    src_slow = ~toptier[take]
    res = migrate_pages(vm, cf[take], [cpu], MR_NUMA_MISPLACED, which=WMARK_HIGH, cpu_nid=cpu)
    moved = np.isin(cf[take], res.old)
    vm.vmstat.count("numa_pages_migrated", res.ok)
    promoted = int(np.count_nonzero(moved & src_slow))
    # migrate_misplaced_folio(): PGPROMOTE_SUCCESS only in memory-tiering mode
    if promoted and vm.node_is_toptier(cpu) and nb.mode & nbal.NUMA_BALANCING_MEMORY_TIERING:
        vm.vmstat.count_node(cpu, "pgpromote_success", promoted)
    costs[cand[take[moved]]] += page_copy_ns(1)
    return costs
