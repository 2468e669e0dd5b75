"""DAMON's virtual address space operation set (mm/damon/vaddr.c); ``fvaddr``
is the same with fixed, user-given regions.

Targets are processes (by pid).  ``init`` gives a target without regions
the *three regions* of its address space: the mappings between the two
biggest unmapped gaps (``__damon_va_three_regions``), each split evenly so
that all together make ``min_nr_regions`` regions; ``update`` (every update
interval) moves the regions to the current three regions.  cxlemu models
the mmap area of a process (``MmStruct``); its program image and heap below
and its stack above are there as two small areas with no pages
(HEAP_AREA, STACK_AREA), so the two biggest gaps are around the mmap area as
in a real process.

A sample picks one random address per region and checks the page the
page table maps there.  Actions (``damon_va_apply_scheme``): willneed,
cold, pageout, hugepage, nohugepage (madvise on the range), migrate_hot,
migrate_cold (several destinations: each page goes where weighted
interleave of its virtual page number points), stat; lru_prio/lru_deprio
apply to nothing.  Scores: cold for pageout and migrate_cold, hot for
migrate_hot.
"""

from __future__ import annotations

import numpy as np

from cxlemu.kernel.mm.damon import ops_common as oc
from cxlemu.kernel.mm.damon.regions import DAMON_MIN_REGION
from cxlemu.kernel.mm.frames import PROT_NUMA
from cxlemu.kernel.mm.mmap import MMAP_BASE

PAGE_SHIFT = 12
HEAP_AREA = (0x5555_5555_4000, 0x5555_5557_9000)      # program image, data and heap (148 KiB)
STACK_AREA = (0x7FFF_FFFD_E000, 0x7FFF_FFFF_F000)     # [stack] (132 KiB)


def task_of(kernel, t):
    if t.pid is None:
        return None
    task = kernel.sched.tasks.get(int(t.pid))
    if task is None or not task.alive or task.mm is None:
        return None
    return task


def target_valid(ctx, kernel, t) -> bool:
    return task_of(kernel, t) is not None


def areas(mm) -> list[tuple[int, int]]:
    """The mapped areas of a process: heap, its VMAs, stack (address order)."""
    out = [HEAP_AREA]
    out += [(v.vm_start, v.vm_end) for v in mm.vmas]
    out.append(STACK_AREA)
    return sorted(out)


def three_regions(mm) -> list[tuple[int, int]] | None:
    """__damon_va_three_regions(): None when there are fewer than two gaps."""
    a = areas(mm)
    first = (0, 0)
    second = (0, 0)
    for (ps, pe), (s, e) in zip(a, a[1:]):
        gap = s - pe
        if gap > first[1] - first[0]:
            second = first
            first = (pe, s)
        elif gap > second[1] - second[0]:
            second = (pe, s)
    if second[1] - second[0] <= 0 or first[1] - first[0] <= 0:
        return None
    if first[0] > second[0]:
        first, second = second, first
    al = DAMON_MIN_REGION

    def up(x):
        return -(-x // al) * al
    return [(up(a[0][0]), up(first[0])), (up(first[1]), up(second[0])), (up(second[1]), up(a[-1][1]))]


def init(ctx, kernel) -> None:
    """__damon_va_init_regions() for targets without user regions."""
    from cxlemu.kernel.mm.damon.regions import Regions
    for t in ctx.targets:
        if len(t.regions) or ctx.ops == "fvaddr":
            continue
        task = task_of(kernel, t)
        if task is None:
            continue
        three = three_regions(task.mm)
        if three is None:
            continue
        sz = sum(e - s for s, e in three)
        if ctx.attrs.min_nr_regions:
            sz //= ctx.attrs.min_nr_regions
        sz = max(sz, DAMON_MIN_REGION)
        r = Regions([s for s, _ in three], [e for _, e in three])
        for i in (2, 1, 0):
            r.evenly_split(i, (three[i][1] - three[i][0]) // sz)
        t.regions = r


def update(ctx, kernel) -> None:
    """damon_va_update(): follow the current three regions."""
    if ctx.ops == "fvaddr":
        return
    for t in ctx.targets:
        task = task_of(kernel, t)
        if task is None:
            continue
        three = three_regions(task.mm)
        if three is not None:
            t.regions.set_ranges(three, ctx.min_sz_region)


def prepare_access_checks(ctx, kernel, rng: np.random.Generator) -> None:
    for t in ctx.targets:
        r = t.regions
        if len(r):
            r.sampling_addr = r.start + (rng.random(len(r)) * (r.end - r.start)).astype(np.int64)


def _frames_at(mm, vaddr: np.ndarray) -> np.ndarray:
    vpn = (vaddr - MMAP_BASE) >> PAGE_SHIFT
    ok = (vpn >= 0) & (vpn < mm.pt.size)
    e = np.where(ok, mm.pt[np.where(ok, vpn, 0)], -1).astype(np.int64)
    return np.where(e >= 0, e & ~PROT_NUMA, -1)


def check_accesses(ctx, kernel, since: int, attrs) -> int:
    pf = kernel.mm.vm.frames
    mx = 0
    for t in ctx.targets:
        r = t.regions
        if not len(r):
            continue
        task = task_of(kernel, t)
        if task is None or pf is None:
            acc = np.zeros(len(r), np.bool_)
        else:
            acc = oc.young(pf, _frames_at(task.mm, r.sampling_addr), since)
        oc.update_access_rate(r, acc, attrs)
        mx = max(mx, int(r.nr_accesses.max()))
    return mx


def scheme_score(ctx, t, idx: np.ndarray, s) -> np.ndarray:
    if s.action in ("pageout", "migrate_cold"):
        return oc.cold_score(ctx, t.regions, idx, s)
    if s.action == "migrate_hot":
        return oc.hot_score(ctx, t.regions, idx, s)
    return np.full(idx.size, oc.DAMOS_MAX_SCORE, np.int64)


def region_pages(mm, r, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(vpn, region position in ``idx``, pte) of the pages of the regions inside the page table."""
    lo = np.maximum((r.start[idx] - MMAP_BASE) >> PAGE_SHIFT, 0)
    hi = np.minimum(-(-(r.end[idx] - MMAP_BASE) // 4096), mm.pt.size)
    n = np.maximum(hi - lo, 0)
    tot = int(n.sum())
    if tot <= 0:
        z = np.zeros(0, np.int64)
        return z, z, z
    which = np.repeat(np.arange(idx.size), n)
    vpn = lo[which] + (np.arange(tot) - np.repeat(np.cumsum(n) - n, n))
    return vpn, which, mm.pt[vpn].astype(np.int64)


def apply_scheme(ctx, kernel, t, idx: np.ndarray, s, cpu_nid: int, dry: bool = False):
    """damon_va_apply_scheme() on regions ``idx`` of ``t``: returns (bytes
    applied per region, bytes that passed the ops filters per region, cost ns)."""
    vm = kernel.mm.vm
    k = idx.size
    applied = np.zeros(k, np.int64)
    passed_sz = np.zeros(k, np.int64)
    task = task_of(kernel, t)
    if task is None or vm.frames is None or not k:
        return applied, passed_sz, 0.0
    mm = task.mm
    r = t.regions
    vpn, which, pte = region_pages(mm, r, idx)
    present = pte >= 0
    fr = np.where(present, pte & ~PROT_NUMA, -1)
    pf = vm.frames
    pv = np.flatnonzero(present)
    ok_p = np.zeros(vpn.size, np.bool_)
    if pv.size:
        ok_p[pv] = oc.ops_filter_pass(vm, s, fr[pv], None)
    passed_sz = np.bincount(which[ok_p], minlength=k).astype(np.int64) * 4096
    if dry:
        return applied, passed_sz, 0.0
    cost = 0.0
    done = np.zeros(0, np.int64)
    a = s.action
    f = fr[ok_p]
    w = which[ok_p]
    if a == "pageout":
        f2 = oc.lru_frames(pf, f)
        before = pf.owner[f2].copy()
        n, cost = oc.pageout(vm, f2)
        if n:
            gone = vm.frames.owner[f2] != before
            done = w[np.isin(f, f2[gone])]
    elif a == "cold":
        pf.flags[f] &= ~np.uint16(oc.PG_REFERENCED)
        act = (pf.flags[f] & oc.PG_ACTIVE) != 0
        oc.lru_prio(vm, oc.lru_frames(pf, f), False)
        done = w[act]
        cost = f.size * 100.0
    elif a == "willneed":
        sw = (pte <= -2) & (pte != np.iinfo(np.int32).min)
        if sw.any():
            out = task.access(vpn[sw], None)
            cost = float(out.fault_ns.sum())
            done = which[sw][: out.frames.size]
    elif a in ("hugepage", "nohugepage"):
        from cxlemu.kernel.sched.task import MADV_HUGEPAGE, MADV_NOHUGEPAGE
        adv = MADV_HUGEPAGE if a == "hugepage" else MADV_NOHUGEPAGE
        for j in range(k):
            i = int(idx[j])
            for v in mm.vmas:
                if v.vm_start < r.end[i] and v.vm_end > r.start[i]:
                    task.madvise(v.vm_start, v.npages * 4096, adv)
                    applied[j] += min(v.vm_end, int(r.end[i])) - max(v.vm_start, int(r.start[i]))
        return applied, passed_sz, float(k) * 500.0
    elif a in ("migrate_hot", "migrate_cold"):
        dests = s.destinations()
        if dests and f.size:
            moved, cost = oc.migrate(vm, f, dests, vpn[ok_p], cpu_nid)
            if moved.size:
                done = w[np.isin(f, moved)]
    if done.size:
        applied = np.bincount(done, minlength=k).astype(np.int64) * 4096
    return applied, passed_sz, cost
