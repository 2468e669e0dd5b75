"""DAMOS: DAMON-based operation schemes (mm/damon/core.c ``damos_*``,
include/linux/damon.h).

A scheme (:class:`Damos`) applies an action to the regions whose access
pattern matches (size, ``nr_accesses`` (the moving sum, ``nr_accesses_bp /
10000``), age), once per apply interval (0: the aggregation interval), under

* a **quota**: at most ``sz`` bytes and ``ms`` milliseconds of kdamond time
  per ``reset_interval`` (the time quota converts to bytes with the
  throughput measured so far); when regions exceed it, the regions with the
  highest *score* (the operation set's hot or cold score, weighted by the
  ``weight_*`` permils) go first: a histogram of region bytes per score gives
  the minimum score that fits (``damos_adjust_quota``);
* **quota goals** (``node_mem_used_bp``, ``node_mem_free_bp``,
  ``user_input``, ``some_mem_psi_us``, ``node_memcg_used_bp``,
  ``node_memcg_free_bp``, ``active_mem_bp``): at each charge window the
  effective size quota ``esz`` moves by the feedback loop
  ``damon_feed_loop_next_input`` towards making the best goal's
  ``current/target`` ratio 1;
* **watermarks** (``free_mem_rate`` in permil of total memory): the scheme
  is deactivated above ``high`` or below ``low``, reactivated below ``mid``;
  while every scheme is deactivated the kdamond sleeps (``kdamond_wait_activation``);
* **filters**: core filters (``addr``, ``target``) decide for whole regions
  (splitting a region at an address filter's edge), ops filters (``anon``,
  ``active``, ``memcg``, ``young``, ``hugepage_size``, ``unmapped``) for each
  page; the first filter that matches decides (allow or reject), and when
  none matches the page is rejected if the last filter is an allow filter.

Statistics: ``nr_tried``/``sz_tried`` (regions tried and their bytes),
``nr_applied``/``sz_applied`` (regions/bytes the action applied to),
``sz_ops_filter_passed``, ``qt_exceeds`` (charge windows that used up the
quota).  Every action except ``stat`` resets the age of the regions it tried.
"""

from __future__ import annotations

import errno
from dataclasses import field

import numpy as np

from cxlemu.kernel.base.device import KernelError
from cxlemu.util.lazydc import dataclass

ACTIONS = ("willneed", "cold", "pageout", "hugepage", "nohugepage", "lru_prio", "lru_deprio", "migrate_hot",
           "migrate_cold", "stat")
FILTER_TYPES = ("anon", "active", "memcg", "young", "hugepage_size", "unmapped", "addr", "target")
CORE_FILTER_TYPES = ("addr", "target")
GOAL_METRICS = ("user_input", "some_mem_psi_us", "node_mem_used_bp", "node_mem_free_bp", "node_memcg_used_bp",
                "node_memcg_free_bp", "active_mem_bp")
WMARK_METRICS = ("none", "free_mem_rate")
ULONG_MAX = (1 << 64) - 1
NUMA_NO_NODE = -1


def feed_loop_next_input(last_input: int, score: int) -> int:
    """damon_feed_loop_next_input(): the next input of a feedback loop whose
    goal is score 10000 (bp); over-achieving shrinks the input, under-achieving
    grows it, in proportion to the distance from the goal."""
    goal = 10000
    min_input = 10000
    if score == goal:
        return last_input
    if score >= goal * 2:
        return min_input
    over = score > goal
    diff = score - goal if over else goal - score
    if last_input < ULONG_MAX // max(diff, 1):
        comp = last_input * diff // goal
    else:
        comp = last_input // goal * diff
    if over:
        return max(last_input - comp, min_input)
    if last_input < ULONG_MAX - comp:
        return last_input + comp
    return ULONG_MAX


@dataclass
class DamosFilter:
    type: str
    matching: bool = False
    allow: bool = False
    memcg_path: str = ""
    memcg_id: int = 0
    addr_start: int = 0
    addr_end: int = 0
    min: int = 0
    max: int = 0
    target_idx: int = 0


@dataclass
class QuotaGoal:
    metric: str = "user_input"
    target_value: int = 0
    current_value: int = 0
    nid: int = 0
    memcg_path: str = ""


@dataclass
class Quota:
    ms: int = 0
    sz: int = 0
    reset_interval: int = 0                  # ms
    weight_sz: int = 0
    weight_nr_accesses: int = 0
    weight_age: int = 0
    goals: list[QuotaGoal] = field(default_factory=list)
    # internal state
    esz: int = 0
    esz_bp: int = 0
    charged_sz: int = 0
    charged_from: int = 0                    # ns
    charged_started: bool = False
    total_charged_sz: int = 0
    total_charged_ns: float = 0.0
    min_score: int = 0
    charge_target_from: int = -1
    charge_addr_from: int = 0

    def active(self) -> bool:
        return bool(self.ms or self.sz or self.goals)


@dataclass
class Watermarks:
    metric: str = "none"
    interval: int = 0                        # us
    high: int = 0
    mid: int = 0
    low: int = 0
    activated: bool = True


@dataclass
class DamosStat:
    nr_tried: int = 0
    sz_tried: int = 0
    nr_applied: int = 0
    sz_applied: int = 0
    sz_ops_filter_passed: int = 0
    qt_exceeds: int = 0


@dataclass(eq=False)
class Damos:
    action: str = "stat"
    min_sz_region: int = 0
    max_sz_region: int = ULONG_MAX
    min_nr_accesses: int = 0
    max_nr_accesses: int = ULONG_MAX
    min_age_region: int = 0
    max_age_region: int = ULONG_MAX
    apply_interval_us: int = 0
    quota: Quota = field(default_factory=Quota)
    wmarks: Watermarks = field(default_factory=Watermarks)
    target_nid: int = NUMA_NO_NODE
    dests: list[tuple[int, int]] = field(default_factory=list)
    core_filters: list[DamosFilter] = field(default_factory=list)
    ops_filters: list[DamosFilter] = field(default_factory=list)
    stat: DamosStat = field(default_factory=DamosStat)
    next_apply_sis: int = 0
    core_filters_allowed: bool = False
    core_filters_default_reject: bool = False
    ops_filters_default_reject: bool = False

    def set_next_apply_sis(self, ctx) -> None:
        """damos_set_next_apply_sis()."""
        si = ctx.attrs.sample_interval or 1
        ai = self.apply_interval_us or ctx.attrs.aggr_interval
        self.next_apply_sis = ctx.passed_sample_intervals + ai // si

    def set_filters_default_reject(self) -> None:
        """damos_set_filters_default_reject()."""
        def last_allows(fl):
            return bool(fl) and fl[-1].allow
        self.core_filters_default_reject = False if self.ops_filters else last_allows(self.core_filters)
        self.ops_filters_default_reject = last_allows(self.ops_filters)

    def add_filter(self, f: DamosFilter) -> None:
        (self.core_filters if f.type in CORE_FILTER_TYPES else self.ops_filters).append(f)

    def destinations(self) -> list[tuple[int, int]]:
        """Where migrate_hot/cold send pages: the dests list, else target_nid."""
        if self.dests:
            return [(int(n), int(w)) for n, w in self.dests]
        if self.target_nid >= 0:
            return [(int(self.target_nid), 1)]
        return []

    def valid_mask(self, r) -> np.ndarray:
        """__damos_valid_target() for every region."""
        sz = r.end - r.start
        nr = r.nr_accesses_bp // 10000
        u = np.uint64
        return ((sz.astype(u) >= u(self.min_sz_region)) & (sz.astype(u) <= u(min(self.max_sz_region, ULONG_MAX)))
                & (nr.astype(u) >= u(self.min_nr_accesses)) & (nr.astype(u) <= u(self.max_nr_accesses))
                & (r.age.astype(u) >= u(self.min_age_region)) & (r.age.astype(u) <= u(self.max_age_region)))


# ---- quota goals ------------------------------------------------------------------------------------
def goal_current_value(kernel, g: QuotaGoal) -> int:
    """damos_set_quota_goal_current_value()."""
    if g.metric == "user_input":
        return g.current_value
    mm = kernel.mm
    if g.metric in ("node_mem_used_bp", "node_mem_free_bp", "node_memcg_used_bp", "node_memcg_free_bp"):
        st = mm.node_stats(g.nid) if g.nid in mm.numa.nodes else {"managed": 0, "free": 0}
        total = st["managed"]
        if not total:
            return 0
        free = st["free"]
        if g.metric.endswith("used_bp"):
            return (total - free) * 10000 // total
        return free * 10000 // total
    if g.metric == "active_mem_bp":
        from cxlemu.kernel.mm.procfs import mem_counts
        c = mem_counts(mm)
        act = c["active_anon"] + c["active_file"]
        ina = c["inactive_anon"] + c["inactive_file"]
        return act * 10000 // max(act + ina, 1)
    if g.metric == "some_mem_psi_us":
        # PSI "some" memory stall time since the last check: the time tasks
        # spent in direct reclaim and swap-in (vmstat allocstall stall model)
        vm = mm.vm
        now = int(getattr(vm, "memstall_ns", 0) // 1000)
        last = getattr(g, "_last_psi", now)
        g.__dict__["_last_psi"] = now
        return max(now - last, 0)
    return 0


def quota_score(kernel, q: Quota) -> int:
    """damos_quota_score(): the highest current/target ratio of the goals (bp)."""
    best = 0
    for g in q.goals:
        g.current_value = goal_current_value(kernel, g)
        best = max(best, g.current_value * 10000 // max(g.target_value, 1))
    return best


def set_effective_quota(kernel, q: Quota) -> None:
    """damos_set_effective_quota()."""
    if not q.ms and not q.goals:
        q.esz = q.sz
        return
    esz = ULONG_MAX
    if q.goals:
        score = quota_score(kernel, q)
        q.esz_bp = feed_loop_next_input(max(q.esz_bp, 10000), score)
        esz = q.esz_bp // 10000
    if q.ms:
        if q.total_charged_ns:
            throughput = int(q.total_charged_sz * 1_000_000 // q.total_charged_ns)
        else:
            throughput = 4096 * 1024
        esz = min(throughput * q.ms, esz)
    if q.sz and q.sz < esz:
        esz = q.sz
    q.esz = esz


def adjust_quota(ctx, kernel, s: Damos, now: int) -> None:
    """damos_adjust_quota(): charge windows and the minimum score."""
    q = s.quota
    if not q.active():
        return
    if not q.charged_started:
        q.charged_started = True
        q.charged_from = now
        set_effective_quota(kernel, q)
    if now >= q.charged_from + q.reset_interval * 1_000_000:
        if q.esz and q.charged_sz >= q.esz:
            s.stat.qt_exceeds += 1
        q.total_charged_sz += q.charged_sz
        q.charged_from = now
        q.charged_sz = 0
        set_effective_quota(kernel, q)
    from cxlemu.kernel.mm.damon.ops import ops_of
    ops = ops_of(ctx.ops)
    hist = np.zeros(100, np.int64)
    mx = 0
    for t in ctx.targets:
        r = t.regions
        if not len(r):
            continue
        idx = np.flatnonzero(s.valid_mask(r))
        if not idx.size:
            continue
        sc = ops.scheme_score(ctx, t, idx, s)
        hist += np.bincount(sc, weights=(r.end[idx] - r.start[idx]).astype(np.float64), minlength=100)[:100] \
            .astype(np.int64)
        mx = max(mx, int(sc.max()))
    cum = 0
    score = mx
    while True:
        cum += int(hist[score])
        if cum >= q.esz or not score:
            break
        score -= 1
    q.min_score = score


# ---- watermarks -------------------------------------------------------------------------------------
def wmark_metric(kernel, metric: str) -> int | None:
    """damos_get_wmark_metric_value(): free memory in permil of all memory."""
    if metric != "free_mem_rate":
        return None
    st = kernel.mm.node_stats(None)
    return st["free"] * 1000 // max(st["managed"], 1)


def wmark_wait_us(kernel, s: Damos) -> int:
    """damos_wmark_wait_us()."""
    m = wmark_metric(kernel, s.wmarks.metric)
    w = s.wmarks
    if m is None:
        return 0
    if m > w.high or w.low > m:
        w.activated = False
        return w.interval
    if w.high >= m >= w.mid and not w.activated:
        return w.interval
    w.activated = True
    return 0


def wait_activation_us(ctx, kernel) -> int:
    """kdamond_wait_activation(): the shortest wait of the schemes (0: run)."""
    if not ctx.schemes:
        return 0
    return min(wmark_wait_us(kernel, s) for s in ctx.schemes)


# ---- applying --------------------------------------------------------------------------------------
def core_filter_out(ctx, t_index: int, t, i: int, s: Damos) -> tuple[bool, int]:
    """damos_filter_out() for region ``i``: (filtered out, regions added by splits)."""
    r = t.regions
    s.core_filters_allowed = False
    added = 0
    for f in s.core_filters:
        if f.type == "addr":
            al = ctx.min_sz_region
            a = f.addr_start // al * al
            b = f.addr_end // al * al
            rs, re = int(r.start[i]), int(r.end[i])
            if a <= rs and re <= b:
                matched = True
            elif re <= a or b <= rs:
                matched = False
            elif rs < a:
                r.split_at(i, a - rs)
                added += 1
                matched = False
            else:
                r.split_at(i, b - rs)
                added += 1
                matched = True
        elif f.type == "target":
            matched = f.target_idx == t_index
        else:
            matched = False
        if matched == f.matching:
            if f.allow:
                s.core_filters_allowed = True
            return (not f.allow), added
    return s.core_filters_default_reject, added


def _tried(kd, kernel, s: Damos, t_index: int, t, i: int):
    """Everything damos_apply_scheme() does before the action for region i:
    returns (size to charge, filtered out) after the quota split."""
    ctx = kd.ctx
    q = s.quota
    r = t.regions
    sz = int(r.end[i] - r.start[i])
    if q.esz and q.charged_sz + sz > q.esz:
        sz = (q.esz - q.charged_sz) // ctx.min_sz_region * ctx.min_sz_region
        if not sz:
            return 0, True
        r.split_at(i, sz)
    out, _ = core_filter_out(ctx, t_index, t, i, s)
    return sz, out


def apply_scheme_to_target(kd, kernel, s: Damos, t_index: int, t, now: int, cpu_nid: int) -> float:
    """damon_do_apply_schemes() for one scheme over the regions of one
    target, in address order; actions run once over all the regions that
    got through (vectorised), the charging follows the kernel's order."""
    from cxlemu.kernel.mm.damon import trace
    from cxlemu.kernel.mm.damon.ops import ops_of
    ctx = kd.ctx
    ops = ops_of(ctx.ops)
    q = s.quota
    r = t.regions
    if not len(r):
        return 0.0
    chosen: list[int] = []
    charged: list[int] = []
    i = 0
    # damos_skip_charged_region(): resume after the region where the quota ran out last time
    if q.charge_target_from >= 0 and q.charge_target_from == t_index:
        skip = np.flatnonzero(r.end <= q.charge_addr_from)
        i = int(skip[-1]) + 1 if skip.size else 0
        q.charge_target_from = -1
    elif q.charge_target_from >= 0:
        return 0.0
    valid = s.valid_mask(r)
    scores = None
    if q.esz and q.active():
        idx_all = np.arange(len(r))
        scores = ops.scheme_score(ctx, t, idx_all, s)
    n = len(r)
    tried_sz = 0
    while i < n:
        if q.esz and q.charged_sz >= q.esz:
            break
        if not valid[i] or (scores is not None and scores[i] < q.min_score):
            i += 1
            continue
        sz, out = _tried(kd, kernel, s, t_index, t, i)
        if len(r) != n:          # a split inserted regions after i
            extra = len(r) - n
            valid = np.insert(valid, i + 1, [valid[i]] * extra)
            if scores is not None:
                scores = np.insert(scores, i + 1, [scores[i]] * extra)
            n = len(r)
        if sz == 0:
            s.stat.nr_tried += 1
            i += 1
            continue
        if out:
            i += 1
            continue
        chosen.append(i)
        charged.append(sz)
        q.charged_sz += sz
        tried_sz += sz
        if q.esz and q.charged_sz >= q.esz:
            q.charge_target_from = t_index
            q.charge_addr_from = int(r.end[i]) + 1
        i += 1
    if not chosen:
        return 0.0
    idx = np.asarray(chosen, np.int64)
    trace.before_apply(kernel, kd, s, t_index, t, idx)
    applied, passed, cost = ops.apply_scheme(ctx, kernel, t, idx, s, cpu_nid)
    q.total_charged_ns += cost
    if s.action != "stat":
        t.regions.age[idx] = 0
    st = s.stat
    st.nr_tried += idx.size
    st.sz_tried += int(sum(charged))
    st.nr_applied += int(np.count_nonzero(applied))
    st.sz_applied += int(applied.sum())
    st.sz_ops_filter_passed += int(passed.sum())
    return cost


def apply_schemes(kd, kernel) -> float:
    """kdamond_apply_schemes(); returns the CPU time used (ns)."""
    ctx = kd.ctx
    now = kernel.clock_ns
    due = [s for s in ctx.schemes if ctx.passed_sample_intervals >= s.next_apply_sis and s.wmarks.activated]
    if not due:
        return 0.0
    for s in due:
        adjust_quota(ctx, kernel, s, now)
    cpu = kernel.sched.cpu_node_of_kthread(0) if hasattr(kernel, "sched") else 0
    cost = 0.0
    for s in due:
        for ti, t in enumerate(ctx.targets):
            cost += apply_scheme_to_target(kd, kernel, s, ti, t, now, cpu)
    si = ctx.attrs.sample_interval or 1
    for s in ctx.schemes:
        if ctx.passed_sample_intervals < s.next_apply_sis:
            continue
        s.next_apply_sis = ctx.passed_sample_intervals + (s.apply_interval_us or ctx.attrs.aggr_interval) // si
    return cost


def tried_regions(kd, kernel, s: Damos):
    """What a DAMOS walk (``update_schemes_tried_regions``) collects for a
    scheme now: the regions it would try (pattern, quota's minimum score,
    core filters) with the bytes that pass its ops filters.  Yields
    (target index, start, end, nr_accesses, age, sz_filter_passed)."""
    from cxlemu.kernel.mm.damon.ops import ops_of
    ctx = kd.ctx
    ops = ops_of(ctx.ops)
    out = []
    for ti, t in enumerate(ctx.targets):
        r = t.regions
        if not len(r):
            continue
        idx = np.flatnonzero(s.valid_mask(r))
        if idx.size and s.quota.esz and s.quota.active():
            idx = idx[ops.scheme_score(ctx, t, idx, s) >= s.quota.min_score]
        keep = []
        for i in idx.tolist():
            if s.core_filters:
                rr = r.copy()
                tt = type(t)(t.pid, rr)
                out_, _ = core_filter_out(ctx, ti, tt, i, s)
                if out_:
                    continue
            keep.append(i)
        if not keep:
            continue
        kidx = np.asarray(keep, np.int64)
        _, passed, _ = ops.apply_scheme(ctx, kernel, t, kidx, s, 0, dry=True)
        for j, i in enumerate(keep):
            out.append((ti, int(r.start[i]), int(r.end[i]), int(r.nr_accesses_bp[i] // 10000), int(r.age[i]),
                        int(passed[j])))
    return out


def check_action(name: str) -> str:
    if name not in ACTIONS:
        raise KernelError(errno.EINVAL, f"damos: unknown action {name!r}")
    return name
