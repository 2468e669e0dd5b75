"""DAMOS on the workload engine's pages: the kernel's migrate_hot /
migrate_cold example, quotas and their goals, watermarks, filters, pageout,
LRU priorities, weighted destinations, statistics and tried regions."""

from __future__ import annotations

import numpy as np
import pytest

from cxlemu.kernel.mm import mempolicy as mp
from cxlemu.kernel.mm.mmap import MMAP_BASE
from cxlemu.sim.engine import run
from cxlemu.kernel.syscalls import Process
from cxlemu.tools import damos
from cxlemu.userspace.spec import ProcSpec
from cxlemu.userspace.workloads import make

from .support import MiB, machine, one_kdamond, r, w

ULONG_MAX = (1 << 64) - 1


def _by_node(res, name):
    v = next(x for x in res.vmas if x["name"] == name)
    return {int(n): b for n, b in v["resident_by_node"].items()}


@pytest.mark.parametrize("start_on", [0, 1])
def test_hot_cold_example(start_on):
    """The kernel commit's example: ``hot_cold 500M 600M`` under migrate_cold
    to the CXL node and migrate_hot to the DRAM node ends with the hot memory
    on the DRAM node and the cold on the CXL node (here within 2 %), whether
    the process started on the DRAM node (``numactl -p 0``, demotion does the
    work) or on the CXL node (``numactl -p 1``, promotion does).

    As in Linux, a region of cold pages that still holds a few hot ones can
    show a 5 % access rate in one aggregation and be promoted whole, then
    demoted again at the next apply interval: the check allows one such
    burst in flight (it looks again one apply interval later)."""
    b = machine("2G", "4G")
    k = b.kernel
    specs = damos.recipe("hot_cold", b)
    damos.stage(b, specs)
    damos.turn_on(b, len(specs))
    p = Process.new(k, "hot_cold")
    p.set_mempolicy(mp.MPOL_PREFERRED, (start_on,))
    wl = make("hotcold", hot="500M", cold="600M")
    res = run(k, ProcSpec(wl, process=p), duration=6_000_000_000, keep=True)
    migrated = res.vmstat.get("pgmigrate_success", 0)
    for _ in range(3):
        hot, cold = _by_node(res, "hot"), _by_node(res, "cold")
        if hot.get(0, 0) >= 0.98 * 500 * MiB and cold.get(1, 0) >= 0.98 * 600 * MiB:
            break
        wl.setup = lambda proc: None
        res = run(k, ProcSpec(wl, process=p), duration=1_000_000_000, keep=True)
    assert hot.get(0, 0) >= 0.98 * 500 * MiB, hot
    assert cold.get(1, 0) >= 0.98 * 600 * MiB, cold
    st = damos.collect_stats(b)
    applied = {s["action"]: s["sz_applied"] for kd in st for s in kd["schemes"]}
    if start_on == 0:
        assert applied["migrate_cold"] >= 0.98 * 600 * MiB
    else:
        assert applied["migrate_hot"] >= 0.98 * 500 * MiB
    assert migrated * 4096 >= 0.98 * 500 * MiB
    damos.turn_off(b)
    p.exit()


def _scheme_on_process(b, action, *, pattern=None, update_us=100000, apply_us=0):
    p = Process.new(b.kernel, "w")
    c = one_kdamond(b, "vaddr")
    w(b, f"{c}/monitoring_attrs/intervals/update_us", update_us)
    w(b, f"{c}/targets/nr_targets", 1)
    w(b, f"{c}/targets/0/pid_target", p.pid)
    w(b, f"{c}/schemes/nr_schemes", 1)
    s = f"{c}/schemes/0"
    w(b, f"{s}/action", action)
    w(b, f"{s}/apply_interval_us", apply_us)
    pat = {"sz": (0, ULONG_MAX), "nr_accesses": (0, ULONG_MAX), "age": (0, ULONG_MAX)}
    pat.update(pattern or {})
    for key, (lo, hi) in pat.items():
        w(b, f"{s}/access_pattern/{key}/min", lo)
        w(b, f"{s}/access_pattern/{key}/max", hi)
    return p, s


def test_size_quota_and_its_goal():
    b = machine("2G", "4G")
    k = b.kernel
    p, s = _scheme_on_process(b, "migrate_cold", pattern={"nr_accesses": (0, 0)}, apply_us=100000)
    w(b, f"{s}/target_nid", 1)
    w(b, f"{s}/quotas/bytes", 8 * MiB)
    w(b, f"{s}/quotas/reset_interval_ms", 100)
    w(b, "0/state", "on")
    run(k, ProcSpec(make("hotcold", hot="64M", cold="256M"), process=p), duration=1_000_000_000, keep=True)
    w(b, "0/state", "update_schemes_stats")
    w(b, "0/state", "update_schemes_effective_quotas")
    applied = int(r(b, f"{s}/stats/sz_applied"))
    # at most 8 MiB per 100 ms window over about 10 windows
    assert 0 < applied <= 11 * 8 * MiB
    assert int(r(b, f"{s}/stats/qt_exceeds")) > 0
    assert r(b, f"{s}/quotas/effective_bytes") == str(8 * MiB)
    # a user_input goal far below its target grows the effective quota (feedback loop)
    kd = k.mm.damon.kdamonds[0].kd
    w(b, f"{s}/quotas/bytes", 0)
    w(b, f"{s}/quotas/goals/nr_goals", 1)
    w(b, f"{s}/quotas/goals/0/target_metric", "user_input")
    w(b, f"{s}/quotas/goals/0/target_value", 10000)
    w(b, f"{s}/quotas/goals/0/current_value", 2000)
    w(b, "0/state", "commit")
    esz = []
    for _ in range(4):
        run(k, ProcSpec(_Again(p), process=p), duration=200_000_000, keep=True)
        esz.append(kd.ctx.schemes[0].quota.esz)
    assert esz == sorted(esz) and esz[-1] > esz[0]
    # ...and a goal met twice over drops it to the minimum
    w(b, f"{s}/quotas/goals/0/current_value", 30000)
    w(b, "0/state", "commit_schemes_quota_goals")
    run(k, ProcSpec(_Again(p), process=p), duration=300_000_000, keep=True)
    assert kd.ctx.schemes[0].quota.esz == 1
    w(b, "0/state", "off")
    p.exit()


class _Again:
    """Continue the workload already set up in process ``p`` (no new mmaps)."""

    def __init__(self, p):
        self.name = "again"
        self.threads = 0
        self.mlp = 8.0
        self.cpu_ns = 2.0
        self.done = False
        self.p = p

    def setup(self, proc):
        mm = proc.task.mm
        self.v = mm.vma_by_name("hot")

    def tick(self, proc, now):
        pass

    def describe(self):
        return {"workload": "again"}

    def batch(self, n, rng):
        from cxlemu.userspace.workloads.simple import uniform_batch
        return uniform_batch((MMAP_BASE >> 12) + self.v.start, self.v.npages, n, rng)


def test_watermarks_deactivate_a_scheme():
    """free_mem_rate above ``high``: the scheme sleeps (nothing tried); with
    thresholds that hold, it applies."""
    b = machine("1G", "1G")
    k = b.kernel
    p, s = _scheme_on_process(b, "stat")
    for name, v in (("metric", "free_mem_rate"), ("interval_us", 50000), ("high", 100), ("mid", 50), ("low", 10)):
        w(b, f"{s}/watermarks/{name}", v)
    w(b, "0/state", "on")
    run(k, ProcSpec(make("uniform", rss="16M"), process=p), duration=500_000_000, keep=True)
    w(b, "0/state", "update_schemes_stats")
    assert r(b, f"{s}/stats/nr_tried") == "0"                 # ~97 % free > high 10 %
    kd = k.mm.damon.kdamonds[0].kd
    assert kd.ctx.passed_sample_intervals == 0                # kdamond_wait_activation(): no sampling at all
    w(b, f"{s}/watermarks/high", 1000)
    w(b, f"{s}/watermarks/mid", 999)
    w(b, "0/state", "commit")
    run(k, ProcSpec(_Again2(), process=p), duration=500_000_000, keep=True)
    w(b, "0/state", "update_schemes_stats")
    assert int(r(b, f"{s}/stats/nr_tried")) > 0
    w(b, "0/state", "off")
    p.exit()


class _Again2(_Again):
    def __init__(self):
        super().__init__(None)

    def setup(self, proc):
        self.v = proc.task.mm.vma_by_name("uniform")


def test_pageout_reclaims_cold_pages_to_swap_and_filters():
    b = machine("1G", "1G", "boot.swap=1G")
    k = b.kernel
    p, s = _scheme_on_process(b, "pageout", pattern={"nr_accesses": (0, 0), "age": (3, ULONG_MAX)})
    w(b, "0/state", "on")
    res = run(k, ProcSpec(make("hotcold", hot="32M", cold="64M"), process=p), duration=1_500_000_000, keep=True)
    cold = next(v for v in res.vmas if v["name"] == "cold")
    hot = next(v for v in res.vmas if v["name"] == "hot")
    assert cold["swapped_bytes"] >= 0.9 * 64 * MiB
    assert hot["swapped_bytes"] == 0
    assert k.mm.vm.vmstat.events.get("pswpout", 0) > 0
    w(b, "0/state", "update_schemes_stats")
    assert int(r(b, f"{s}/stats/sz_applied")) >= 0.9 * 64 * MiB
    w(b, "0/state", "off")
    p.exit()


def test_addr_filter_limits_the_action():
    """A core addr filter (allow) lets migrate_cold act only inside the range."""
    b = machine("1G", "1G")
    k = b.kernel
    p, s = _scheme_on_process(b, "migrate_cold", pattern={"nr_accesses": (0, 0)})
    w(b, f"{s}/target_nid", 1)
    wl = make("hotcold", hot="16M", cold="64M")
    run(k, ProcSpec(wl, process=p), duration=50_000_000, keep=True)
    cold = p.task.mm.vma_by_name("cold")
    half = cold.vm_start + 32 * MiB
    w(b, f"{s}/core_filters/nr_filters", 1)
    f = f"{s}/core_filters/0"
    w(b, f"{f}/type", "addr")
    w(b, f"{f}/addr_start", cold.vm_start)
    w(b, f"{f}/addr_end", half)
    w(b, f"{f}/matching", "Y")
    w(b, f"{f}/allow", "Y")
    w(b, "0/state", "on")
    run(k, ProcSpec(_Again3(wl), process=p), duration=1_000_000_000, keep=True)
    pf = k.mm.vm.frames
    pte = p.task.mm.pt[cold.start:cold.end]
    nodes = pf.node_of(pte[pte >= 0] & ~(1 << 30))
    first = nodes[: nodes.size // 2]
    second = nodes[nodes.size // 2:]
    assert (first == 1).mean() > 0.95 and (second == 0).all()
    w(b, "0/state", "off")
    p.exit()


class _Again3:
    def __init__(self, wl):
        self.wl = wl
        self.name = wl.name
        self.threads, self.mlp, self.cpu_ns, self.done = 0, 8.0, 2.0, False

    def setup(self, proc):
        pass

    def tick(self, proc, now):
        pass

    def describe(self):
        return {"workload": self.name}

    def batch(self, n, rng):
        return self.wl.batch(n, rng)


def test_weighted_destinations_and_lru_prio():
    """migrate_cold with dests 0:1 and 1:1 spreads the pages (weighted
    interleave by virtual page number); lru_prio (paddr) activates pages."""
    b = machine("1G", "1G")
    k = b.kernel
    p, s = _scheme_on_process(b, "migrate_cold")
    w(b, f"{s}/dests/nr_dests", 2)
    for i, (nid, wt) in enumerate(((0, 1), (1, 3))):
        w(b, f"{s}/dests/{i}/id", nid)
        w(b, f"{s}/dests/{i}/weight", wt)
    w(b, "0/state", "on")
    res = run(k, ProcSpec(make("uniform", rss="64M"), process=p), duration=800_000_000, keep=True)
    by = _by_node(res, "uniform")
    frac1 = by.get(1, 0) / sum(by.values())
    assert abs(frac1 - 0.75) < 0.05, by
    w(b, "0/state", "off")
    p.exit()
    # lru_prio on the physical address space
    b2 = machine("1G", "1G")
    k2 = b2.kernel
    c = one_kdamond(b2, "paddr")
    rng = damos.numa_node_ranges(b2, 0)
    w(b2, f"{c}/targets/nr_targets", 1)
    w(b2, f"{c}/targets/0/regions/nr_regions", len(rng))
    for i, (a, e) in enumerate(rng):
        w(b2, f"{c}/targets/0/regions/{i}/start", a)
        w(b2, f"{c}/targets/0/regions/{i}/end", e)
    w(b2, f"{c}/schemes/nr_schemes", 1)
    s2 = f"{c}/schemes/0"
    w(b2, f"{s2}/action", "lru_prio")
    for key in ("sz", "nr_accesses", "age"):
        w(b2, f"{s2}/access_pattern/{key}/max", ULONG_MAX)
    w(b2, f"{s2}/access_pattern/nr_accesses/min", 1)
    w(b2, "0/state", "on")
    res = run(k2, ProcSpec(make("uniform", rss="32M")), duration=500_000_000, keep=False)
    w(b2, "0/state", "update_schemes_stats")
    assert int(r(b2, f"{s2}/stats/sz_applied")) >= 16 * MiB
    assert k2.mm.vm.vmstat.events.get("pgactivate", 0) > 0
    w(b2, "0/state", "off")


def test_tried_regions_and_total_bytes():
    b = machine("1G", "1G")
    k = b.kernel
    p, s = _scheme_on_process(b, "stat", pattern={"nr_accesses": (5, ULONG_MAX)})
    w(b, "0/state", "on")
    run(k, ProcSpec(make("hotcold", hot="32M", cold="32M"), process=p), duration=600_000_000, keep=True)
    w(b, "0/state", "update_schemes_tried_regions")
    tr = f"{s}/tried_regions"
    names = [e for e in b.listdir(f"/sys/kernel/mm/damon/admin/kdamonds/{tr}") if e.isdigit()]
    assert names
    total = int(r(b, f"{tr}/total_bytes"))
    sizes = [int(r(b, f"{tr}/{n}/end")) - int(r(b, f"{tr}/{n}/start")) for n in names]
    assert total == sum(sizes)
    hot = p.task.mm.vma_by_name("hot")
    for n in names:
        assert int(r(b, f"{tr}/{n}/nr_accesses")) >= 5
        assert hot.vm_start - 4 * MiB <= int(r(b, f"{tr}/{n}/start")) < hot.vm_end
        assert int(r(b, f"{tr}/{n}/sz_filter_passed")) > 0
    assert abs(total - 32 * MiB) <= 8 * MiB
    w(b, "0/state", "update_schemes_tried_bytes")
    assert int(r(b, f"{tr}/total_bytes")) == total
    assert not [e for e in b.listdir(f"/sys/kernel/mm/damon/admin/kdamonds/{tr}") if e.isdigit()]
    w(b, "0/state", "clear_schemes_tried_regions")
    assert r(b, f"{tr}/total_bytes") == "0"
    w(b, "0/state", "off")
    p.exit()


@pytest.mark.slow
def test_mem_tier_settles_near_the_dram_goal():
    """damo's mem_tier recipe with a DRAM node smaller than the workload: the
    DRAM node ends near its used-memory goal (99.7 %) and holds the hottest
    memory.  The process starts on the CXL node (``numactl -p 1``); the
    goal-tuned quota grows from 1 byte by the kernel's feedback loop
    (``damon_feed_loop_next_input``), so promotion starts slowly and then
    fills the DRAM node at up to the 200 MB/s quota.  The DRAM node is tiny
    (512 MiB, a quarter of it slab), so ``vm.min_free_kbytes`` is lowered as an
    administrator would: with the default, the min watermark is 4 % of the
    node and no migration can fill it past 96 %."""
    b = machine("512M", "16G")
    k = b.kernel
    b.write("/proc/sys/vm/min_free_kbytes", "512\n")
    specs = damos.recipe("mem_tier", b)
    damos.stage(b, specs)
    damos.turn_on(b, len(specs))
    p = Process.new(k, "gups")
    p.set_mempolicy(mp.MPOL_PREFERRED, (1,))
    wl = make("gups", rss="1536M", hot="256M", threads=1)

    def used_bp() -> int:
        st = k.mm.node_stats(0)
        return (st["managed"] - st["free"]) * 10000 // st["managed"]

    def chunk(seconds: float) -> None:
        run(k, ProcSpec(wl, process=p), duration=int(seconds * 1e9), keep=True,
            epoch_ns=100_000_000, epoch_accesses=1 << 24)
        wl.setup = lambda proc: None          # the same process carries on

    start = used_bp()
    assert start < 6000
    elapsed = 0.0
    while used_bp() < 9950 and elapsed < 160:
        chunk(5)
        elapsed += 5
    chunk(5)                                   # and it stays there
    bp = used_bp()
    assert 9950 <= bp <= 9995, (bp, elapsed)
    # the DRAM node's user pages are the hot set's (random placement: 1/6)
    mm = p.task.mm
    v = mm.vmas[0]
    pte = mm.pt[v.start: v.end]
    frames = (pte[pte >= 0] & ~(1 << 30)).astype(np.int64)
    on0 = k.mm.vm.frames.node_of(frames) == 0
    idx = np.flatnonzero(pte >= 0)
    hot = (idx >= wl.hot_start) & (idx < wl.hot_start + wl.hot_pages)
    assert on0.sum() * 4096 >= 150 * MiB
    assert hot[on0].mean() >= 0.8, hot[on0].mean()
    st = {s["action"]: s for kd in damos.collect_stats(b) for s in kd["schemes"]}
    assert st["migrate_hot"]["sz_applied"] >= 150 * MiB
    damos.turn_off(b)
    p.exit()
