"""What the DAMON operation sets share (mm/damon/ops-common.c): the young
check of a sampled page, the hot/cold scores DAMOS quotas prioritise with,
page-level (ops) DAMOS filters, and the page actions (reclaim, LRU
priority, migration) on the workload engine's page frames.

Pages are frame numbers of ``vm.frames`` (kernel/mm/frames.py).  A frame
counts as a DAMON folio (``damon_get_folio``) when an address space owns it
(anonymous, page cache, shmem); free frames and kernel pages are never
accessed and never acted on.
"""

from __future__ import annotations

import numpy as np

from cxlemu.kernel.mm.frames import (PG_ACTIVE, PG_ANON, PG_HEAD, PG_HWPOISON, PG_LRU, PG_PINNED, PG_REFERENCED,
                                     PG_SWAPBACKED, PG_TAIL, PG_UNEVICTABLE)

DAMOS_MAX_SCORE = 99
DAMON_MAX_SUBSCORE = 100
DAMON_MAX_AGE_IN_LOG = 32
HPAGE_SIZE = 2 << 20
PAGE = 4096
ROOT_MEMCG_ID = 1              # mem_cgroup_id(root_mem_cgroup); cxlemu has one memory cgroup, the root


def young(pf, frames: np.ndarray, since: int) -> np.ndarray:
    """Was each (valid, owned) frame accessed at or after ``since``?"""
    ok = frames >= 0
    out = np.zeros(frames.size, np.bool_)
    if not ok.any() or pf is None:
        return out
    f = frames[ok]
    inside = f < pf.owner.size
    f2 = f[inside]
    acc = np.abs(pf.access[f2])
    y = (pf.owner[f2] >= 0) & (acc >= since) & (acc > 0)
    tmp = np.zeros(f.size, np.bool_)
    tmp[inside] = y
    out[ok] = tmp
    return out


def update_access_rate(r, accessed: np.ndarray, attrs) -> None:
    """damon_update_region_access_rate() for every region at once."""
    win = attrs.max_nr_accesses if attrs.sample_interval else 1
    r.nr_accesses_bp = r.nr_accesses_bp - (r.last_nr_accesses * 10000) // win + np.where(accessed, 10000, 0)
    r.nr_accesses = r.nr_accesses + accessed.astype(np.int64)


def hot_score(ctx, r, idx: np.ndarray, s) -> np.ndarray:
    """damon_hot_score() of regions ``idx``: access frequency and age
    (log2 seconds; negative for regions that were not accessed) weighted by
    the scheme's prioritisation weights, scaled to [0, DAMOS_MAX_SCORE]."""
    attrs = ctx.attrs
    fw = s.quota.weight_nr_accesses
    aw = s.quota.weight_age
    freq = r.nr_accesses[idx] * DAMON_MAX_SUBSCORE // max(attrs.max_nr_accesses, 1)
    age_sec = r.age[idx] * attrs.aggr_interval // 1_000_000
    age_log = np.where(age_sec > 0, np.minimum(np.floor(np.log2(np.maximum(age_sec, 1))).astype(np.int64) + 1,
                                               DAMON_MAX_AGE_IN_LOG), 0)
    age_log = np.where(freq == 0, -age_log, age_log)
    age_sub = (age_log + DAMON_MAX_AGE_IN_LOG) * DAMON_MAX_SUBSCORE // DAMON_MAX_AGE_IN_LOG // 2
    hot = fw * freq + aw * age_sub
    if fw + aw:
        hot = hot // (fw + aw)
    hot = hot * DAMOS_MAX_SCORE // DAMON_MAX_SUBSCORE
    return np.clip(hot, 0, DAMOS_MAX_SCORE)


def cold_score(ctx, r, idx: np.ndarray, s) -> np.ndarray:
    return DAMOS_MAX_SCORE - hot_score(ctx, r, idx, s)


def folio_size(pf, frames: np.ndarray) -> np.ndarray:
    fl = pf.flags[frames]
    return np.where((fl & (PG_HEAD | PG_TAIL)) != 0, HPAGE_SIZE, PAGE)


def filter_match(vm, f, frames: np.ndarray, mapped: np.ndarray | None) -> np.ndarray:
    """damos_folio_filter_match() == filter->matching, per frame.  A young
    filter that matches marks the page old (clears its accessed bit)."""
    pf = vm.frames
    fl = pf.flags[frames]
    t = f.type
    if t == "anon":
        m = (fl & PG_ANON) != 0
    elif t == "active":
        m = (fl & PG_ACTIVE) != 0
    elif t == "memcg":
        m = np.full(frames.size, f.memcg_id == ROOT_MEMCG_ID)
    elif t == "young":
        acc = pf.access[frames]
        m = acc > 0
        if m.any():
            yf = frames[m]
            pf.access[yf] = -pf.access[yf]
    elif t == "hugepage_size":
        sz = folio_size(pf, frames)
        m = (f.min <= sz) & (sz <= f.max)
    elif t == "unmapped":
        m = ~mapped if mapped is not None else np.zeros(frames.size, np.bool_)
    else:
        m = np.zeros(frames.size, np.bool_)
    return m == f.matching


def ops_filter_pass(vm, s, frames: np.ndarray, mapped: np.ndarray | None) -> np.ndarray:
    """damos_pa_filter_out()/damos_va_filter_out() negated: the frames the
    scheme's ops filters let through (the first matching filter decides;
    none matching: the default, reject when the last filter is an allow)."""
    n = frames.size
    if s.core_filters_allowed or not s.ops_filters:
        return np.ones(n, np.bool_)
    decided = np.zeros(n, np.bool_)
    passed = np.zeros(n, np.bool_)
    for flt in s.ops_filters:
        undecided = np.flatnonzero(~decided)
        if not undecided.size:
            break
        m = filter_match(vm, flt, frames[undecided], None if mapped is None else mapped[undecided])
        hit = undecided[m]
        decided[hit] = True
        passed[hit] = flt.allow
    passed[~decided] = not s.ops_filters_default_reject
    return passed


def lru_frames(pf, frames: np.ndarray) -> np.ndarray:
    """damon_get_folio(): pages on an LRU list (owned, not free)."""
    if not frames.size:
        return frames
    ok = (pf.owner[frames] >= 0) & ((pf.flags[frames] & PG_LRU) != 0)
    return frames[ok]


# ---- actions ----------------------------------------------------------------------------------------
def pageout(vm, frames: np.ndarray) -> tuple[int, float]:
    """reclaim_pages(): reclaim the pages (no demotion: sc.no_demotion),
    anonymous and shmem pages to swap, file pages dropped (dirty ones
    written back first).  Returns (pages reclaimed, cost ns)."""
    from cxlemu.kernel.mm import vmscan
    pf = vm.frames
    f = frames[(pf.flags[frames] & (PG_PINNED | PG_UNEVICTABLE | PG_HWPOISON)) == 0]
    if not f.size:
        return 0, 0.0
    done = 0
    cost = 0.0
    nodes = pf.node_of(f)
    for nid in np.unique(nodes).tolist():
        part = f[nodes == nid]
        vm.lru.delete(part, pf)
        pf.flags[part] &= ~np.uint16(PG_REFERENCED)
        sb = (pf.flags[part] & PG_SWAPBACKED) != 0
        back = []
        if sb.any():
            n, c = vmscan.swap_out(vm, part[sb], int(nid))
            done += n
            cost += c
            if n < int(sb.sum()):
                back.append(part[sb][n:])
        if (~sb).any():
            n, c = vmscan.evict_file_pages(vm, part[~sb], int(nid))
            done += n
            cost += c
        if back:
            vm.lru.add(np.concatenate(back), pf, active=None)
    return done, cost


def lru_prio(vm, frames: np.ndarray, active: bool) -> int:
    """folio_activate() / folio_deactivate(): move pages to the head of the
    active or inactive list; returns the pages that changed lists."""
    pf = vm.frames
    f = frames[(pf.flags[frames] & PG_UNEVICTABLE) == 0]
    if not f.size:
        return 0
    is_act = (pf.flags[f] & PG_ACTIVE) != 0
    move = f[~is_act] if active else f[is_act]
    if not move.size:
        return 0
    vm.lru.delete(move, pf)
    vm.lru.add(move, pf, active=active)
    vm.vmstat.count("pgactivate" if active else "pgdeactivate", move.size)
    return int(move.size)


def migrate(vm, frames: np.ndarray, dests: list[tuple[int, int]], index: np.ndarray,
            cpu_nid: int) -> tuple[np.ndarray, float]:
    """damon_migrate_pages(): move pages to ``dests`` ([(nid, weight)], one
    destination: weight ignored); with several, each page goes to the node
    its ``index`` (address in pages) selects by weighted interleave.
    Pages already on their destination, pinned and poisoned pages stay.
    Returns (the frames that moved, cost ns)."""
    from cxlemu.kernel.mm.migrate import migrate_pages
    mem = set(vm.mm.numa.state_nodes("memory"))
    dests = [(n, w) for n, w in dests if n in mem]
    if not frames.size or not dests:
        return np.zeros(0, np.int64), 0.0
    pf = vm.frames
    if len(dests) == 1:
        target = np.full(frames.size, dests[0][0], np.int64)
    else:
        w = np.array([max(int(x), 0) for _, x in dests], np.int64)
        if w.sum() <= 0:
            return np.zeros(0, np.int64), 0.0
        cum = np.cumsum(w)
        pos = np.asarray(index, np.int64) % int(cum[-1])
        target = np.array([n for n, _ in dests], np.int64)[np.searchsorted(cum, pos, side="right")]
    src = pf.node_of(frames).astype(np.int64)
    move = target != src
    moved: list[np.ndarray] = []
    cost = 0.0
    for nid in np.unique(target[move]).tolist():
        sel = frames[move & (target == nid)]
        res = migrate_pages(vm, sel, [int(nid)], "damon", cpu_nid=cpu_nid)
        moved.append(res.old)
        cost += res.cost_ns
    return (np.concatenate(moved) if moved else np.zeros(0, np.int64)), cost
