"""Automatic NUMA balancing (kernel/sched/fair.c, mm/mprotect.c
change_prot_numa, mm/memory.c do_numa_page), as in Linux 6.3+.

``kernel.numa_balancing``: bit 0 NUMA_BALANCING_NORMAL (locality: move
pages towards the CPUs using them), bit 1 NUMA_BALANCING_MEMORY_TIERING
(promote hot pages from slow tiers); 0..4 accepted.

Scanning (``task_numa_work``): after ``scan_delay_ms`` (1000), every
``numa_scan_period`` the scanner makes ``scan_size_mb`` (256) of the task's
resident address space PROT_NONE (at most 8x that of virtual space), from
where it stopped (``mm->numa_scan_offset``), wrapping with
``numa_scan_seq++``.  The period starts at ``task_scan_start`` =
max(1000 / (2560 / scan_size), scan_period_min / windows) with windows =
RSS / scan_size; in NORMAL mode it then adapts to the task's locality
(``update_task_scan_period``: +30 % per pass for private faults, up to
``scan_period_max`` / windows).  PTEs skipped: pages on the node of a
single-threaded task's CPU, dirty file pages, and in tiering-only mode
pages on top-tier nodes; tiering mode records the scan time in the page.

Hint faults (``do_numa_page``): ``numa_hint_faults`` (and ``_local``); the
PTE gets its protection back; the page migrates to the faulting CPU's node
when ``should_numa_migrate_memory`` says so:

* tiering, page on a slow node: if the CPU's node has
  ``pgdat_free_space_enough`` (free above WMARK_PROMO + max(1 GiB, 1/16 of
  the node)) every page goes and the threshold resets; otherwise the
  *hint-fault latency* (fault time - scan time, ms) must be below the hot
  threshold (``hot_threshold_ms`` 1000, or the node's adjusted one), and
  ``numa_promotion_rate_limit``: at most ``promote_rate_limit_MBps`` worth
  of candidates (``pgpromote_candidate``) per second;
  ``numa_promotion_adjust_threshold``: once per ``scan_period_max`` the
  threshold moves one step of 2*default/16 down if candidates exceeded the
  rate limit by 10 %, up if they were 10 % below, within [step, 2*default];
* NORMAL mode: the two-stage filter — the first fault on a page records the
  CPU (last_cpupid), a second from the same node migrates it.

Migration (``migrate_misplaced_folio``) needs the target node above its
high watermark plus the pages (``migrate_balanced_pgdat``); in tiering mode
a failure wakes the target's kswapd, which reclaims to WMARK_PROMO —
demoting cold pages when demotion is enabled.  Counters:
``numa_pages_migrated``, ``pgpromote_success`` (per target node),
``pgmigrate_success``/``fail``.
"""

from __future__ import annotations

from dataclasses import field
from typing import TYPE_CHECKING

import numpy as np

from cxlemu.kernel.mm.frames import PG_CPUPID, PG_DIRTY, PG_SWAPBACKED, PROT_NUMA
from cxlemu.util.lazydc import dataclass

if TYPE_CHECKING:
    from cxlemu.kernel.kernel import Kernel
    from cxlemu.kernel.sched.task import Task

NUMA_BALANCING_NORMAL = 1
NUMA_BALANCING_MEMORY_TIERING = 2
MAX_SCAN_WINDOW = 2560
NUMA_MIGRATION_ADJUST_STEPS = 16
PAGE_ACCESS_TIME_MASK = (1 << 21) - 1       # the ms field of a page's cpupid bits (x86-64)
NUMA_PERIOD_SLOTS = 10
NUMA_PERIOD_THRESHOLD = 7
HPAGE_PAGES = 512
HINT_FAULT_NS = 1200          # a NUMA hinting fault without migration (estimate)
PTE_SCAN_NS = 2               # change_prot_numa per PTE (estimate)


@dataclass
class PgdatNumab:
    """The NUMA-balancing fields of struct pglist_data."""
    nbp_threshold: int = 0
    nbp_th_start: int = 0
    nbp_th_nr_cand: int = 0
    nbp_rl_start: int = 0
    nbp_rl_nr_cand: int = 0


@dataclass
class NumaBalancing:
    mode: int = 0                        # kernel.numa_balancing
    promote_rate_limit_mbps: int = 65536
    scan_delay_ms: int = 1000            # /sys/kernel/debug/sched/numa_balancing/*
    scan_period_min_ms: int = 1000
    scan_period_max_ms: int = 60000
    scan_size_mb: int = 256
    hot_threshold_ms: int = 1000
    pgdat: dict[int, PgdatNumab] = field(default_factory=dict)

    def node(self, nid: int) -> PgdatNumab:
        p = self.pgdat.get(nid)
        if p is None:
            p = self.pgdat[nid] = PgdatNumab()
        return p

    def set_mode(self, state: int, kernel: "Kernel") -> None:
        """sysctl_numa_balancing(): entering tiering mode resets the promotion state."""
        if not (self.mode & NUMA_BALANCING_MEMORY_TIERING) and state & NUMA_BALANCING_MEMORY_TIERING:
            now_ms = kernel.clock_ns // 1_000_000
            vm = kernel.mm.vm
            for nid in kernel.mm.numa.state_nodes("memory"):
                p = self.node(nid)
                p.nbp_threshold = 0
                p.nbp_th_nr_cand = vm.vmstat.node(nid).get("pgpromote_candidate", 0)
                p.nbp_th_start = now_ms
        self.mode = state


# --------------------------------------------------------------------------------------------
# scan period (task_scan_min / start / max)
# --------------------------------------------------------------------------------------------
def nr_scan_windows(nb: NumaBalancing, rss_pages: int) -> int:
    nr = nb.scan_size_mb << 8
    if nr <= 0:
        return 1
    rss = rss_pages or nr
    rss = -(-rss // nr) * nr
    return max(rss // nr, 1)


def task_scan_min(nb: NumaBalancing, rss_pages: int) -> int:
    windows = 1
    if nb.scan_size_mb < MAX_SCAN_WINDOW and nb.scan_size_mb > 0:
        windows = MAX_SCAN_WINDOW // nb.scan_size_mb
    floor = 1000 // windows
    scan = nb.scan_period_min_ms // nr_scan_windows(nb, rss_pages)
    return max(floor, scan)


def task_scan_max(nb: NumaBalancing, rss_pages: int) -> int:
    smin = task_scan_min(nb, rss_pages)
    smax = nb.scan_period_max_ms // nr_scan_windows(nb, rss_pages)
    return max(smin, smax)


# --------------------------------------------------------------------------------------------
# the scanner
# --------------------------------------------------------------------------------------------
def task_numa_work(kernel: "Kernel", task: "Task", now_ns: int) -> tuple[int, float]:
    """One scan step for ``task`` if its time has come: (ptes updated, cost ns)."""
    from cxlemu.kernel.mm.mempolicy import numa_balancing_allowed
    nb = kernel.sched.numab
    mm = task.mm
    if not nb.mode or mm is None or not task.alive:
        return 0, 0.0
    vm = kernel.mm.vm
    if not mm.numa_next_scan:
        mm.numa_next_scan = now_ns + nb.scan_delay_ms * 1_000_000
    if now_ns < mm.numa_next_scan:
        return 0, 0.0
    rss = mm.rss()
    if not task.numa_scan_period_set:
        task.numa_scan_period = task_scan_min(nb, rss)
        task.numa_scan_period_set = True
    mm.numa_next_scan = now_ns + task.numa_scan_period * 1_000_000
    pages = nb.scan_size_mb << 8
    if pages <= 0:
        return 0, 0.0
    virtpages = pages * 8
    pf = vm.frames
    if pf is None:
        return 0, 0.0
    now_ms = (now_ns // 1_000_000) & 0xFFFFFFFF
    tiering = bool(nb.mode & NUMA_BALANCING_MEMORY_TIERING)
    normal = bool(nb.mode & NUMA_BALANCING_NORMAL)
    cpu_nid = task.cpu_node
    single = task.nthreads == 1
    toptier = np.array([vm.node_is_toptier(n) for n in range(max(int(pf.node.max(initial=0)) + 1, 1))])
    start = mm.numa_scan_offset
    vmas = [v for v in mm.vmas if v.end > start]
    wrapped = False
    if not vmas:
        mm.numa_scan_seq += 1
        start = 0
        vmas = list(mm.vmas)
        wrapped = True
    updated_total = 0
    pos = start
    done = False
    for v in vmas:
        pol = v.policy if v.policy is not None else task.mempolicy
        if not numa_balancing_allowed(pol):
            continue
        if v.kind == "file" and not v.flags & 0x2:       # read-only file mappings are skipped
            continue
        pos = max(pos, v.start)
        while pos < v.end:
            end = min(v.end, (pos + pages + HPAGE_PAGES - 1) // HPAGE_PAGES * HPAGE_PAGES)
            end = max(end, pos + 1)
            pte = mm.pt[pos:end]
            present = (pte >= 0) & (pte < PROT_NUMA)
            idx = np.flatnonzero(present)
            fr = pte[idx].astype(np.int64)
            nodes = pf.node[fr].astype(np.int64)
            keep = np.ones(idx.size, np.bool_)
            if single:
                keep &= nodes != cpu_nid
            fl = pf.flags[fr]
            keep &= ~(((fl & PG_SWAPBACKED) == 0) & ((fl & PG_DIRTY) != 0))
            is_top = toptier[np.minimum(nodes, toptier.size - 1)]
            if not normal:
                keep &= ~is_top
            sel = idx[keep]
            if sel.size:
                mm.pt[pos + sel] = pte[sel] | np.int32(PROT_NUMA)
                if tiering:
                    slow = fr[keep][~is_top[keep]]
                    pf.scan_ms[slow] = now_ms
            n_upd = int(sel.size)
            updated_total += n_upd
            span = end - pos
            if n_upd:
                pages -= span
            virtpages -= span
            pos = end
            if pages <= 0 or virtpages <= 0:
                done = True
                break
        if done:
            break
    if done and pos < (mm.vmas[-1].end if mm.vmas else 0):
        mm.numa_scan_offset = pos
    else:
        mm.numa_scan_offset = 0
        if not wrapped:
            mm.numa_scan_seq += 1
    vm.vmstat.count("numa_pte_updates", updated_total)
    if normal and mm.numa_scan_seq != task.numa_scan_seq_seen:
        task.numa_scan_seq_seen = mm.numa_scan_seq
        update_task_scan_period(nb, task, rss)
    return updated_total, updated_total * PTE_SCAN_NS


def update_task_scan_period(nb: NumaBalancing, task: "Task", rss: int) -> None:
    """update_task_scan_period() with every fault private (one task per mm)."""
    local, remote = task.numa_faults_local, task.numa_faults_remote
    task.numa_faults_local = task.numa_faults_remote = 0
    smin, smax = task_scan_min(nb, rss), task_scan_max(nb, rss)
    if local + remote == 0:
        task.numa_scan_period = min(smax, task.numa_scan_period * 2)
        return
    period_slot = -(-task.numa_scan_period // NUMA_PERIOD_SLOTS)
    ps_ratio = NUMA_PERIOD_SLOTS            # private / (private + shared) * 10
    slot = ps_ratio - NUMA_PERIOD_THRESHOLD or 1
    diff = slot * period_slot
    task.numa_scan_period = min(max(task.numa_scan_period + diff, smin), smax)


# --------------------------------------------------------------------------------------------
# the promotion decision for a batch of hint faults
# --------------------------------------------------------------------------------------------
def pgdat_free_space_enough_pages(kernel: "Kernel", nid: int) -> int:
    """How many pages can be promoted before pgdat_free_space_enough() turns false."""
    from cxlemu.kernel.mm.page_alloc import WMARK_PROMO
    vm = kernel.mm.vm
    pa = vm.page_alloc
    enough = max((1 << 30) >> 12, vm.node_present_pages(nid) >> 4)
    best = 0
    for z in (3, 2, 1, 0):
        if not pa.zone_slots(nid, z).size:
            continue
        best = max(best, pa.headroom(nid, z, WMARK_PROMO) - enough)
    return max(best, 0)


def adjust_threshold(nb: NumaBalancing, p: PgdatNumab, nr_cand: int, now_ms: int) -> None:
    """numa_promotion_adjust_threshold()."""
    th_period = nb.scan_period_max_ms
    ref_th = nb.hot_threshold_ms
    rate_limit = nb.promote_rate_limit_mbps << 8
    if now_ms - p.nbp_th_start > th_period:
        p.nbp_th_start = now_ms
        ref_cand = rate_limit * nb.scan_period_max_ms // 1000
        diff_cand = nr_cand - p.nbp_th_nr_cand
        unit_th = ref_th * 2 // NUMA_MIGRATION_ADJUST_STEPS
        th = p.nbp_threshold or ref_th
        if diff_cand > ref_cand * 11 // 10:
            th = max(th - unit_th, unit_th)
        elif diff_cand < ref_cand * 9 // 10:
            th = min(th + unit_th, ref_th * 2)
        p.nbp_th_nr_cand = nr_cand
        p.nbp_threshold = th


def tiering_candidates(kernel: "Kernel", frames: np.ndarray, dst: int, now_ns: int) -> np.ndarray:
    """should_numa_migrate_memory() for pages on slow nodes, in fault order.
    Returns a bool mask of pages to promote to ``dst``."""
    nb = kernel.sched.numab
    vm = kernel.mm.vm
    pf = vm.frames
    n = frames.size
    allow = np.zeros(n, np.bool_)
    if not n:
        return allow
    now_ms = (now_ns // 1_000_000) & 0xFFFFFFFF
    p = nb.node(dst)
    free_ok = min(pgdat_free_space_enough_pages(kernel, dst), n)
    if free_ok:
        p.nbp_threshold = 0                     # workload changed, reset hot threshold
        allow[:free_ok] = True
    rest = np.arange(free_ok, n)
    if not rest.size:
        return allow
    def_th = nb.hot_threshold_ms
    rate_limit = nb.promote_rate_limit_mbps << 8
    ns = vm.vmstat.node(dst)
    adjust_threshold(nb, p, ns.get("pgpromote_candidate", 0), now_ms)
    th = p.nbp_threshold or def_th
    fr = frames[rest]
    latency = (now_ms - pf.scan_ms[fr].astype(np.int64)) & PAGE_ACCESS_TIME_MASK
    pf.scan_ms[fr] = now_ms
    hot = latency < th
    hidx = rest[hot]
    k = hidx.size
    if not k:
        return allow
    # numa_promotion_rate_limit(): count candidates, allow while within the limit
    base = ns.get("pgpromote_candidate", 0)
    order = np.arange(1, k + 1)
    if now_ms - p.nbp_rl_start > 1000:
        p.nbp_rl_start = now_ms
        p.nbp_rl_nr_cand = base + 1
    ok = (base + order) - p.nbp_rl_nr_cand < rate_limit
    vm.vmstat.count_node(dst, "pgpromote_candidate", k)
    allow[hidx[ok]] = True
    return allow


def normal_candidates(kernel: "Kernel", frames: np.ndarray) -> np.ndarray:
    """The two-stage filter of NORMAL mode: a page migrates on its second hint
    fault (the first only records last_cpupid)."""
    pf = kernel.mm.vm.frames
    seen = (pf.flags[frames] & PG_CPUPID) != 0
    pf.flags[frames[~seen]] |= np.uint16(PG_CPUPID)
    return seen
