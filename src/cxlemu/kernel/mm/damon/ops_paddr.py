"""DAMON's physical address space operation set (mm/damon/paddr.c).

Regions are physical address ranges the user gives (damo gives a NUMA
node's System RAM ranges, or all System RAM); there is no ``init`` or
``update`` work.  A sample picks one random physical address per region
and checks the page frame behind it (``damon_pa_young``); frames of offline
or absent memory blocks and pages no address space owns are never young.

Actions (``damon_pa_apply_scheme``): pageout, lru_prio, lru_deprio,
migrate_hot, migrate_cold, stat; the others apply to nothing.  pageout
adds an implicit "reject young" filter unless the scheme has a young filter
(``damon_pa_pageout``).  Scores: cold for pageout, lru_deprio and
migrate_cold; hot for lru_prio and migrate_hot.
"""

from __future__ import annotations

import numpy as np

from cxlemu.kernel.mm.damon import ops_common as oc

PAGE_SHIFT = 12


def _pfn_lookup(ctx, pf) -> tuple[np.ndarray, int]:
    """A block id -> slot table (transient, rebuilt when the memmap changes)."""
    key = (id(pf), pf.nslots)
    cache = ctx.__dict__.get("_pa_lookup")
    if cache is not None and cache[0] == key:
        return cache[1], cache[2]
    if pf.slot_of_block:
        nb = max(pf.slot_of_block) + 1
        table = np.full(nb, -1, np.int64)
        for bid, s in pf.slot_of_block.items():
            table[bid] = s
    else:
        table = np.full(1, -1, np.int64)
    ctx.__dict__["_pa_lookup"] = (key, table, pf.ppb)
    return table, pf.ppb


def frames_of_pfns(ctx, pf, pfn: np.ndarray) -> np.ndarray:
    """Frame number of each pfn (-1 where no memory block has frames)."""
    table, ppb = _pfn_lookup(ctx, pf)
    bid = pfn // ppb
    ok = (bid >= 0) & (bid < table.size)
    slot = np.where(ok, table[np.where(ok, bid, 0)], -1)
    return np.where(slot >= 0, slot * ppb + pfn % ppb, -1)


def init(ctx, kernel) -> None:
    """paddr has no default regions: the user sets them."""


def update(ctx, kernel) -> None:
    """paddr targets do not change with the mappings."""


def prepare_access_checks(ctx, kernel, rng: np.random.Generator) -> None:
    for t in ctx.targets:
        r = t.regions
        if len(r):
            r.sampling_addr = r.start + (rng.random(len(r)) * (r.end - r.start)).astype(np.int64)


def check_accesses(ctx, kernel, since: int, attrs) -> int:
    pf = kernel.mm.vm.frames
    mx = 0
    for t in ctx.targets:
        r = t.regions
        if not len(r):
            continue
        if pf is None:
            acc = np.zeros(len(r), np.bool_)
        else:
            fr = frames_of_pfns(ctx, pf, r.sampling_addr >> PAGE_SHIFT)
            acc = oc.young(pf, fr, since)
        oc.update_access_rate(r, acc, attrs)
        mx = max(mx, int(r.nr_accesses.max()))
    return mx


def scheme_score(ctx, t, idx: np.ndarray, s) -> np.ndarray:
    if s.action in ("pageout", "lru_deprio", "migrate_cold"):
        return oc.cold_score(ctx, t.regions, idx, s)
    if s.action in ("lru_prio", "migrate_hot"):
        return oc.hot_score(ctx, t.regions, idx, s)
    return np.full(idx.size, oc.DAMOS_MAX_SCORE, np.int64)


def region_frames(ctx, kernel, t, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(frames, region position in ``idx``, pfn) of the DAMON folios (owned
    pages on an LRU list) in the regions.  Walks the regions block by block
    and skips blocks that hold no process pages, so free memory costs nothing."""
    pf = kernel.mm.vm.frames
    z = np.zeros(0, np.int64)
    if pf is None or not idx.size:
        return z, z, z
    r = t.regions
    ppb = pf.ppb
    fr_l, wh_l, pfn_l = [], [], []
    for j, i in enumerate(idx.tolist()):
        lo = int(r.start[i]) >> PAGE_SHIFT
        hi = -(-int(r.end[i]) // 4096)
        for bid in range(lo // ppb, -(-hi // ppb)):
            slot = pf.slot_of_block.get(bid)
            if slot is None or not pf.proc_pages[slot]:
                continue
            a = max(lo, bid * ppb) - bid * ppb
            b = min(hi, (bid + 1) * ppb) - bid * ppb
            base = slot * ppb
            own = pf.owner[base + a: base + b]
            off = np.flatnonzero(own >= 0)
            if not off.size:
                continue
            f = base + a + off
            keep = (pf.flags[f] & oc.PG_LRU) != 0
            f = f[keep]
            fr_l.append(f)
            wh_l.append(np.full(f.size, j, np.int64))
            pfn_l.append(bid * ppb + a + off[keep])
    if not fr_l:
        return z, z, z
    return np.concatenate(fr_l), np.concatenate(wh_l), np.concatenate(pfn_l)


def mapped(vm, frames: np.ndarray) -> np.ndarray:
    """folio_mapped(): anonymous pages are mapped; page-cache pages when a VMA maps their file."""
    from cxlemu.kernel.mm.mmap import File
    pf = vm.frames
    out = np.ones(frames.size, np.bool_)
    own = pf.owner[frames]
    for oid in np.unique(own).tolist():
        sp = vm.spaces.get(int(oid))
        if isinstance(sp, File) and not sp.mappers:
            out[own == oid] = False
    return out


def apply_scheme(ctx, kernel, t, idx: np.ndarray, s, cpu_nid: int, dry: bool = False):
    """damon_pa_apply_scheme() on regions ``idx`` of ``t``: returns (bytes
    applied per region, bytes that passed the ops filters per region, cost ns)."""
    vm = kernel.mm.vm
    k = idx.size
    applied = np.zeros(k, np.int64)
    passed_sz = np.zeros(k, np.int64)
    fr, which, pfn = region_frames(ctx, kernel, t, idx)
    if not fr.size:
        return applied, passed_sz, 0.0
    from cxlemu.kernel.mm.damon.schemes import DamosFilter
    flts = s.ops_filters
    extra = None
    if s.action == "pageout" and not any(f.type == "young" for f in flts):
        extra = DamosFilter("young", matching=True, allow=False)
        s.ops_filters = list(flts) + [extra]
    try:
        mp = mapped(vm, fr) if any(f.type == "unmapped" for f in s.ops_filters) else None
        ok = oc.ops_filter_pass(vm, s, fr, mp)
    finally:
        if extra is not None:
            s.ops_filters = flts
    passed_sz = np.bincount(which[ok], minlength=k).astype(np.int64) * 4096
    if dry:
        return applied, passed_sz, 0.0
    f = fr[ok]
    w = which[ok]
    cost = 0.0
    done = np.zeros(0, np.int64)
    if s.action == "pageout":
        before = vm.frames.owner[f].copy() if f.size else None
        n, cost = oc.pageout(vm, f)
        if n and before is not None:
            gone = vm.frames.owner[f] != before
            done = w[gone]
    elif s.action in ("lru_prio", "lru_deprio"):
        pf = vm.frames
        act = (pf.flags[f] & oc.PG_ACTIVE) != 0
        want = s.action == "lru_prio"
        change = act != want
        oc.lru_prio(vm, f, want)
        done = w[change]
        cost = f.size * 100.0
    elif s.action in ("migrate_hot", "migrate_cold"):
        dests = s.destinations()
        if dests:
            moved, cost = oc.migrate(vm, f, dests, pfn[ok], cpu_nid)
            if moved.size:
                mset = np.isin(f, moved)
                done = w[mset]
    elif s.action == "stat":
        pass
    if done.size:
        applied = np.bincount(done, minlength=k).astype(np.int64) * 4096
    return applied, passed_sz, cost
