"""The DAMON core (mm/damon/core.c): monitoring contexts, targets, the
kdamond main loop in simulated time, adaptive regions, interval auto-tuning
and the DAMOS hooks.

A :class:`DamonCtx` holds the attributes (sampling / aggregation / update
intervals, ``[min_nr_regions, max_nr_regions]``, the intervals goal), its
targets (each with its :class:`~cxlemu.kernel.mm.damon.regions.Regions`),
its schemes (schemes.py) and the name of its operation set (``vaddr``,
``fvaddr``, ``paddr``).  A :class:`Kdamond` is the kernel thread that runs
one context: the scheduler's kernel-thread hook (``kernel.sched``) calls
``run(kernel, now)`` between the workload engine's epochs, and it performs
every sampling iteration whose time has come, in the order of
``kdamond_fn()``:

1. (watermarks) ``kdamond_wait_activation()``: sleep while every scheme is
   deactivated by its watermarks;
2. ``prepare_access_checks`` (one random address per region; its page is
   marked old), sleep one sampling interval, ``check_accesses``;
3. at the end of an aggregation interval, ``kdamond_merge_regions`` with
   threshold ``max_nr_accesses / 10`` (doubling while there are more than
   ``max_nr_regions`` regions);
4. DAMOS: every scheme whose apply interval has come (schemes.py);
5. at the end of an aggregation interval: interval auto-tuning when its
   time has come, the ``damon_aggregated`` tracepoint for every region,
   ``nr_accesses`` saved as ``last_nr_accesses`` and reset, and
   ``kdamond_split_regions`` (2 sub-regions each, 3 if the number of regions
   did not change since the last split and is below a third of the maximum;
   nothing if above half of it);
6. at the update interval, the operation set's ``update`` (vaddr: the
   three regions of the address space) and the region size limit
   (total size / ``min_nr_regions``).

Simulated time: accesses in an epoch carry the epoch's start time.  A page
is *young* at a check when it was accessed at or after the time its
sampling page was marked old (the previous check): the engine ends its
epochs at the next kdamond tick (``kernel.sched.next_kthread_ns``), so each
epoch's accesses count for exactly one sampling interval.  When a run covers
several ticks (an epoch longer than the sampling interval), the later ticks
look at the accesses of the epoch just finished.  Marking old does not clear
the PTE accessed bit the reclaim code reads: in Linux, ``damon_ptep_mkold``
clears it but sets ``PG_young`` so that ``folio_referenced`` still sees the
access; the model keeps the bit, which is the same for reclaim.

Cost: a sampling iteration costs work per region, never per page.
"""

from __future__ import annotations

import errno
from dataclasses import field

import numpy as np

from cxlemu.kernel.base.device import KernelError
from cxlemu.kernel.mm.damon.ops import ops_of
from cxlemu.kernel.mm.damon.regions import (DAMON_MIN_REGION, Regions, age_for_new_attrs, max_nr_accesses,
                                            nr_accesses_for_new_attrs)
from cxlemu.util.lazydc import dataclass

OPS_NAMES = ("vaddr", "fvaddr", "paddr")          # damon_sysfs_ops_names order
KDAMOND_TICK_COST_NS = 200                         # per region and sample: random address, PTE walk (estimate)


@dataclass
class IntervalsGoal:
    access_bp: int = 0
    aggrs: int = 0
    min_sample_us: int = 0
    max_sample_us: int = 0


@dataclass
class DamonAttrs:
    """struct damon_attrs (times in microseconds)."""
    sample_interval: int = 5000
    aggr_interval: int = 100000
    ops_update_interval: int = 60_000_000
    min_nr_regions: int = 10
    max_nr_regions: int = 1000
    intervals_goal: IntervalsGoal = field(default_factory=IntervalsGoal)

    @property
    def aggr_samples(self) -> int:
        return self.aggr_interval // (self.sample_interval or 1)

    @property
    def max_nr_accesses(self) -> int:
        return max_nr_accesses(self.sample_interval, self.aggr_interval)


@dataclass(eq=False)
class DamonTarget:
    """struct damon_target: a pid (vaddr) or nothing (paddr), and its regions."""
    pid: int | None = None
    regions: Regions = field(default_factory=Regions)
    obsolete: bool = False
    init_regions_set: bool = False        # the user gave regions (vaddr does not pick its own)


def validate_attrs(a: DamonAttrs) -> None:
    """The checks of damon_set_attrs(): -EINVAL and nothing changes."""
    if a.min_nr_regions < 3:
        raise KernelError(errno.EINVAL, "damon: min_nr_regions < 3")
    if a.min_nr_regions > a.max_nr_regions:
        raise KernelError(errno.EINVAL, "damon: min_nr_regions > max_nr_regions")
    if a.sample_interval > a.aggr_interval:
        raise KernelError(errno.EINVAL, "damon: sample interval > aggregation interval")
    g = a.intervals_goal
    if g.aggrs and (not g.access_bp or g.min_sample_us > g.max_sample_us or not g.max_sample_us):
        raise KernelError(errno.EINVAL, "damon: invalid intervals goal")


@dataclass(eq=False)
class DamonCtx:
    ops: str = "vaddr"
    attrs: DamonAttrs = field(default_factory=DamonAttrs)
    targets: list[DamonTarget] = field(default_factory=list)
    schemes: list = field(default_factory=list)           # schemes.Damos
    min_sz_region: int = DAMON_MIN_REGION
    passed_sample_intervals: int = 0
    next_aggregation_sis: int = 0
    next_ops_update_sis: int = 0
    next_intervals_tune_sis: int = 0
    last_nr_regions: int = 0
    sz_limit: int = 0
    max_nr_accesses_seen: int = 0
    aggregations: int = 0

    def __getstate__(self) -> dict:
        # transient caches (ops_paddr's address lookup, "_"-prefixed) are not state
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}

    # ---- attributes ----------------------------------------------------------------------------
    def set_attrs(self, new: DamonAttrs) -> None:
        """damon_set_attrs(): validate, convert the monitoring results to the
        new intervals, reschedule aggregation, update and scheme application."""
        validate_attrs(new)
        old = self.attrs
        si = new.sample_interval or 1
        aggregating = self.passed_sample_intervals < self.next_aggregation_sis
        self.next_aggregation_sis = self.passed_sample_intervals + new.aggr_interval // si
        self.next_ops_update_sis = self.passed_sample_intervals + new.ops_update_interval // si
        if old.sample_interval and old.aggr_interval and new.sample_interval and new.aggr_interval:
            o = (old.sample_interval, old.aggr_interval)
            n = (new.sample_interval, new.aggr_interval)
            for t in self.targets:
                r = t.regions
                if not len(r):
                    continue
                if not aggregating:
                    r.nr_accesses = nr_accesses_for_new_attrs(r.nr_accesses, o, n)
                    r.nr_accesses_bp = r.nr_accesses * 10000
                else:
                    r.last_nr_accesses = nr_accesses_for_new_attrs(r.last_nr_accesses, o, n)
                    r.nr_accesses_bp = r.last_nr_accesses * 10000
                    r.nr_accesses = np.zeros_like(r.nr_accesses)
                r.age = age_for_new_attrs(r.age, old.aggr_interval, new.aggr_interval)
        self.attrs = new
        for s in self.schemes:
            s.set_next_apply_sis(self)

    def init_counters(self) -> None:
        """kdamond_init_ctx()."""
        si = self.attrs.sample_interval or 1
        self.passed_sample_intervals = 0
        self.next_aggregation_sis = self.attrs.aggr_interval // si
        self.next_ops_update_sis = self.attrs.ops_update_interval // si
        self.next_intervals_tune_sis = self.next_aggregation_sis * self.attrs.intervals_goal.aggrs
        for s in self.schemes:
            s.set_next_apply_sis(self)
            s.set_filters_default_reject()

    def nr_regions(self) -> int:
        return sum(len(t.regions) for t in self.targets)

    def region_sz_limit(self) -> int:
        """damon_region_sz_limit()."""
        sz = sum(t.regions.total() for t in self.targets)
        if self.attrs.min_nr_regions:
            sz //= self.attrs.min_nr_regions
        return max(sz, self.min_sz_region)

    def apply_min_nr_regions(self) -> int:
        """damon_apply_min_nr_regions() (Linux 7.0): split every region larger
        than the size limit (total / min_nr_regions, aligned up) into pieces
        of that size, so a context starts with at least min_nr_regions
        regions; returns the limit."""
        limit = self.region_sz_limit()
        al = self.min_sz_region
        limit = -(-limit // al) * al
        for t in self.targets:
            r = t.regions
            if not len(r) or not ((r.end - r.start) > limit).any():
                continue
            for i in range(len(r) - 1, -1, -1):
                n = -(-int(r.end[i] - r.start[i]) // limit)
                if n > 1:
                    r.evenly_split(i, n, al) if (int(r.end[i] - r.start[i]) % limit == 0) else \
                        _split_by(r, i, limit)
        return limit

    # ---- adaptive regions ------------------------------------------------------------------------
    def merge_regions(self, threshold: int, sz_limit: int) -> None:
        """kdamond_merge_regions()."""
        max_thres = self.attrs.aggr_interval // (self.attrs.sample_interval or 1)
        first = True
        while True:
            nr = 0
            for t in self.targets:
                t.regions.merge(threshold, sz_limit, update_age=first)
                nr += len(t.regions)
            first = False
            threshold = max(1, threshold * 2)
            if not (nr > self.attrs.max_nr_regions and threshold // 2 < max_thres):
                break

    def split_regions(self, rng: np.random.Generator) -> None:
        """kdamond_split_regions()."""
        nr = self.nr_regions()
        if nr > self.attrs.max_nr_regions // 2:
            return
        subs = 2
        if self.last_nr_regions == nr and nr < self.attrs.max_nr_regions // 3:
            subs = 3
        for t in self.targets:
            t.regions.split(subs, self.min_sz_region, rng)
        self.last_nr_regions = nr

    # ---- intervals auto-tuning ------------------------------------------------------------------------
    def intervals_score(self) -> int:
        """damon_get_intervals_score(): observed access events over the goal, bp."""
        max_ev = 0
        ev = 0
        for t in self.targets:
            r = t.regions
            if not len(r):
                continue
            sz = r.size
            max_ev += int(sz.sum()) * self.attrs.aggr_samples
            ev += int((sz * r.nr_accesses).sum())
        target = max_ev * self.attrs.intervals_goal.access_bp // 10000
        return ev * 10000 // max(target, 1)

    def tune_intervals(self, kernel) -> None:
        """kdamond_tune_intervals()."""
        from cxlemu.kernel.mm.damon.schemes import feed_loop_next_input
        score = self.intervals_score()
        adapt = feed_loop_next_input(100_000_000, score) // 10000
        if adapt <= 10000:
            adapt = 5000 + adapt // 2
        if adapt == 10000:
            return
        g = self.attrs.intervals_goal
        new = DamonAttrs(**{k: getattr(self.attrs, k) for k in ("sample_interval", "aggr_interval",
                                                                "ops_update_interval", "min_nr_regions",
                                                                "max_nr_regions")},
                         intervals_goal=IntervalsGoal(g.access_bp, g.aggrs, g.min_sample_us, g.max_sample_us))
        aggr_samples = self.attrs.aggr_samples
        si = min(g.max_sample_us, self.attrs.sample_interval * adapt // 10000)
        si = max(g.min_sample_us, si)
        new.sample_interval = si
        new.aggr_interval = si * aggr_samples
        from cxlemu.kernel.mm.damon import trace
        trace.intervals_tune(kernel, si)
        self.set_attrs(new)


WAKE_SLACK = 0.25      # a kdamond may take its sample this much of an interval early (see Kdamond._schedule)


@dataclass(eq=False)
class Kdamond:
    """A kdamond kernel thread running one context (kernel/sched hook)."""
    ctx: DamonCtx
    pid: int
    name: str = "kdamond.0"
    index: int = 0
    running: bool = False
    next_run_ns: int = 0         # runs from here (up to WAKE_SLACK of an interval early) ...
    wake_ns: int = 0             # ... the nominal time of its next sample (the engine ends an epoch there)
    mkold_ns: int = 0            # when the sampling pages were marked old (prepare_access_checks)
    last_run_ns: int = 0         # the engine's previous call: start of the epoch just finished
    waiting: bool = False        # sleeping on watermarks (no sampling page prepared)
    rng_state: dict | None = None
    cpu_ns: float = 0.0          # CPU time this thread used (sampling + DAMOS)
    stop_reason: str = ""

    # ---- randomness: a numpy Generator rebuilt from its state (plain data is saved) --------------
    _rng = None

    def rng(self) -> np.random.Generator:
        if self._rng is None:
            g = np.random.default_rng()
            if self.rng_state is not None:
                g.bit_generator.state = self.rng_state
            self._rng = g
        return self._rng

    def save_rng(self) -> None:
        if self._rng is not None:
            self.rng_state = self._rng.bit_generator.state

    def __getstate__(self) -> dict:
        self.save_rng()
        d = self.__dict__.copy()
        d.pop("_rng", None)
        return d

    # ---- lifecycle -------------------------------------------------------------------------------
    def start(self, kernel, seed: int) -> None:
        """damon_start() / kdamond_fn() prologue: ops init, counters, first
        sampling pages; register with the scheduler."""
        ctx = self.ctx
        self._rng = np.random.default_rng(seed)
        ops = ops_of(ctx.ops)
        ops.init(ctx, kernel)
        ctx.init_counters()
        ctx.sz_limit = ctx.apply_min_nr_regions()
        now = kernel.clock_ns
        self.running = True
        self.stop_reason = ""
        self.last_run_ns = now
        self.next_run_ns = self.wake_ns = now
        self._iteration_start(kernel, now, now)
        kernel.sched.register_kthread(self)
        self.save_rng()

    def stop(self, kernel, reason: str = "stopped") -> None:
        if not self.running:
            return
        self.running = False
        self.stop_reason = reason
        kernel.sched.unregister_kthread(self)
        self.save_rng()

    def need_stop(self, kernel) -> bool:
        """kdamond_need_stop(): no valid target left (vaddr: every process exited)."""
        ops = ops_of(self.ctx.ops)
        if not hasattr(ops, "target_valid"):
            return False
        return not any(ops.target_valid(self.ctx, kernel, t) for t in self.ctx.targets)

    # ---- the loop --------------------------------------------------------------------------------
    def _iteration_start(self, kernel, tick_ns: int, now: int) -> None:
        """Top of kdamond_fn()'s loop: watermarks, then prepare_access_checks."""
        from cxlemu.kernel.mm.damon import schemes
        ctx = self.ctx
        wait_us = schemes.wait_activation_us(ctx, kernel)
        if wait_us:
            self.waiting = True
            self._schedule(tick_ns, wait_us * 1000)
            return
        self.waiting = False
        ops_of(ctx.ops).prepare_access_checks(ctx, kernel, self.rng())
        self.mkold_ns = now
        self._schedule(tick_ns, max(ctx.attrs.sample_interval, 1) * 1000)
        self.cpu_ns += ctx.nr_regions() * KDAMOND_TICK_COST_NS / 2

    def _schedule(self, tick_ns: int, interval_ns: int) -> None:
        """The next sample is due ``interval_ns`` after this one (the nominal
        cadence, as kdamond_usleep()); the engine's epochs end there, and
        the thread accepts to run from WAKE_SLACK of the interval earlier, so
        that an epoch ending a little short of the due time does not cost
        another epoch.  The sample window stays the interval on average."""
        self.wake_ns = tick_ns + interval_ns
        self.next_run_ns = self.wake_ns - int(interval_ns * WAKE_SLACK)

    def run(self, kernel, now_ns: int) -> None:
        """Every sampling iteration due by ``now_ns`` (simulated time)."""
        if not self.running:
            return
        epoch_start = self.last_run_ns
        first = True
        guard = 0
        while self.running and self.next_run_ns <= now_ns:
            tick = self.wake_ns          # the nominal time (a sample taken early keeps the cadence)
            if self.need_stop(kernel):
                self.stop(kernel, "no target")
                break
            if self.waiting:
                self._iteration_start(kernel, tick, now_ns)
            else:
                self._iteration(kernel, tick, self.mkold_ns if first else epoch_start, now_ns)
                first = False
            guard += 1
            if guard > 1_000_000:        # pragma: no cover - a zero interval cannot loop forever
                break
        self.last_run_ns = now_ns
        self.save_rng()

    def _iteration(self, kernel, tick: int, young_since: int, now: int) -> None:
        from cxlemu.kernel.mm.damon import schemes, trace
        ctx = self.ctx
        ops = ops_of(ctx.ops)
        rng = self.rng()
        next_aggr = ctx.next_aggregation_sis
        next_update = ctx.next_ops_update_sis
        ctx.passed_sample_intervals += 1
        ctx.max_nr_accesses_seen = ops.check_accesses(ctx, kernel, young_since, ctx.attrs)
        self.cpu_ns += ctx.nr_regions() * KDAMOND_TICK_COST_NS / 2
        if ctx.passed_sample_intervals >= next_aggr:
            ctx.merge_regions(ctx.max_nr_accesses_seen // 10, ctx.sz_limit)
        if ctx.schemes:
            self.cpu_ns += schemes.apply_schemes(self, kernel)
        si = ctx.attrs.sample_interval or 1
        if ctx.passed_sample_intervals >= next_aggr:
            if ctx.attrs.intervals_goal.aggrs and ctx.passed_sample_intervals >= ctx.next_intervals_tune_sis:
                ctx.next_aggregation_sis = next_aggr
                ctx.next_intervals_tune_sis += ctx.attrs.aggr_samples * ctx.attrs.intervals_goal.aggrs
                ctx.tune_intervals(kernel)
                si = ctx.attrs.sample_interval or 1
            ctx.next_aggregation_sis = next_aggr + ctx.attrs.aggr_interval // si
            trace.aggregated(kernel, self, min(tick, now))
            for t in ctx.targets:
                r = t.regions
                r.last_nr_accesses = r.nr_accesses.copy()
                r.nr_accesses = np.zeros_like(r.nr_accesses)
            ctx.aggregations += 1
            ctx.split_regions(rng)
        if ctx.passed_sample_intervals >= next_update:
            ctx.next_ops_update_sis = next_update + ctx.attrs.ops_update_interval // si
            ops.update(ctx, kernel)
            ctx.sz_limit = ctx.apply_min_nr_regions()
        self._iteration_start(kernel, tick, now)


def _split_by(r: Regions, i: int, limit: int) -> None:
    """Cut region ``i`` into ``limit``-sized pieces from its start (the last takes the rest)."""
    s, e = int(r.start[i]), int(r.end[i])
    cuts = np.arange(s + limit, e, limit, dtype=np.int64)
    k = cuts.size
    from cxlemu.kernel.mm.damon.regions import FIELDS
    for f in FIELDS:
        a = getattr(r, f)
        setattr(r, f, np.insert(a, i + 1, np.repeat(a[i], k)))
    r.start[i + 1:i + 1 + k] = cuts
    r.end[i:i + k] = cuts
    r.sampling_addr[i:i + k + 1] = r.start[i:i + k + 1]


def seed_for(kernel, index: int) -> int:
    """A deterministic seed for a kdamond started through sysfs."""
    return (0x5DA3_0000 + index * 7919 + kernel.clock_ns) & 0xFFFF_FFFF
