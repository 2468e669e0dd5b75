"""NUMA balancing (kernel/sched/fair.c, Linux 6.3+): scan period, the
scanner's choice of PTEs, the hot threshold auto-adjustment, the promotion
rate limit, and the free-space rule."""

from __future__ import annotations

import numpy as np

from cxlemu.kernel.mm.frames import PROT_NUMA
from cxlemu.kernel.sched import numa as nb
from cxlemu.kernel.syscalls import Process

from .support import tiered


def test_scan_period_formulas():
    n = nb.NumaBalancing()
    assert nb.task_scan_min(n, 16 << 18) == 100           # 16 GiB: floor 1000 / (2560/256)
    assert nb.task_scan_min(n, 1 << 16) == 1000           # 256 MiB: one window
    assert nb.task_scan_max(n, 16 << 18) == 60000 // 64
    n.scan_size_mb = 0
    assert nb.nr_scan_windows(n, 123) == 1


def test_adjust_threshold_steps_within_bounds():
    n = nb.NumaBalancing(promote_rate_limit_mbps=1)      # 256 pages/s
    p = nb.PgdatNumab()
    ref_cand = 256 * 60
    nb.adjust_threshold(n, p, 0, 60_001)                  # no candidates: threshold goes up one step
    assert p.nbp_threshold == 1000 + 125
    for t in range(2, 20):
        nb.adjust_threshold(n, p, p.nbp_th_nr_cand, 60_001 * t)
    assert p.nbp_threshold == 2000                         # capped at 2 x default
    for t in range(20, 60):
        nb.adjust_threshold(n, p, p.nbp_th_nr_cand + ref_cand * 2, 60_001 * t)
    assert p.nbp_threshold == 125                          # floor: one step (2 * 1000 / 16)
    before = p.nbp_threshold
    nb.adjust_threshold(n, p, p.nbp_th_nr_cand + ref_cand, 60_001 * 61)   # within +-10 %: unchanged
    assert p.nbp_threshold == before


def _machine_with_pages_on_cxl(mode: str = "2"):
    b = tiered("2G", "8G")
    k = b.kernel
    b.write("/proc/sys/kernel/numa_balancing", mode)
    p = Process.new(k, "t")
    p.set_mempolicy(2, (1,))                 # bind to CXL for the first touch
    p.mmap(64 << 20, "a")
    v = p.task.mm.vmas[0]
    p.task.access(np.arange(v.start, v.end), None)
    p.set_mempolicy(0, ())                   # back to default: NUMA balancing may migrate
    return b, k, p, v


def test_tiering_scanner_marks_slow_pages_and_promotes_hot_ones():
    b, k, p, v = _machine_with_pages_on_cxl("2")
    vm = k.mm.vm
    k.clock_ns = 2_000_000_000
    upd, cost = nb.task_numa_work(k, p.task, k.clock_ns)      # sets numa_next_scan (scan delay)
    k.clock_ns += 1_000_000_001
    upd, cost = nb.task_numa_work(k, p.task, k.clock_ns)
    assert upd == 16384 and cost > 0
    pt = p.task.mm.pt[v.start:v.end]
    assert np.all(pt >= PROT_NUMA)
    assert vm.vmstat.events["numa_pte_updates"] == 16384
    k.clock_ns += 5_000_000                                    # accessed 5 ms after the scan: hot
    p.task.access(np.arange(v.start, v.end), None)
    assert vm.vmstat.events["numa_hint_faults"] == 16384
    assert vm.vmstat.node_event_total("pgpromote_success") == 16384      # free space enough: all go
    fr = p.task.mm.pt[v.start:v.end].astype(np.int64)
    assert set(vm.frames.node[fr].tolist()) == {0}
    assert "pgpromote_success 16384" in b.read("/proc/vmstat")


def test_hint_fault_latency_threshold_when_dram_is_short():
    b, k, p, v = _machine_with_pages_on_cxl("2")
    vm = k.mm.vm
    # fill DRAM so that pgdat_free_space_enough() is false
    hog = Process.new(k, "hog")
    hog.set_mempolicy(2, (0,))
    hog.mmap(1500 << 20, "hog")
    hv = hog.task.mm.vmas[0]
    hog.task.access(np.arange(hv.start, hv.end), None)
    assert nb.pgdat_free_space_enough_pages(k, 0) == 0
    k.clock_ns = 10_000_000_000
    nb.task_numa_work(k, p.task, k.clock_ns)
    k.clock_ns += 2_000_000_000
    nb.task_numa_work(k, p.task, k.clock_ns)
    k.clock_ns += 1_500_000_000                  # 1.5 s after the scan: colder than 1000 ms
    p.task.access(np.arange(v.start, v.end), None)
    assert vm.vmstat.events["numa_hint_faults"] == 16384
    assert vm.vmstat.node_event_total("pgpromote_candidate") == 0
    assert vm.vmstat.node_event_total("pgpromote_success") == 0


def test_rate_limit_counts_candidates():
    b, k, p, v = _machine_with_pages_on_cxl("2")
    vm = k.mm.vm
    hog = Process.new(k, "hog")
    hog.set_mempolicy(2, (0,))
    hog.mmap(1500 << 20, "hog")
    hv = hog.task.mm.vmas[0]
    hog.task.access(np.arange(hv.start, hv.end), None)
    b.write("/proc/sys/kernel/numa_balancing_promote_rate_limit_MBps", "4")   # 1024 pages/s
    k.clock_ns = 10_000_000_000
    nb.task_numa_work(k, p.task, k.clock_ns)
    k.clock_ns += 2_000_000_000
    nb.task_numa_work(k, p.task, k.clock_ns)
    k.clock_ns += 1_000_000
    fr = p.task.mm.pt[v.start:v.end] & ((1 << 30) - 1)
    allow = nb.tiering_candidates(k, fr.astype(np.int64), 0, k.clock_ns)
    assert vm.vmstat.node_event_total("pgpromote_candidate") == 16384
    assert allow.sum() == 1024                    # the rate limit per second


def test_normal_mode_migrates_on_the_second_fault():
    b, k, p, v = _machine_with_pages_on_cxl("1")
    vm = k.mm.vm
    t = 2_000_000_000
    for i in range(2):
        k.clock_ns = t + i * 3_000_000_000
        nb.task_numa_work(k, p.task, k.clock_ns)
        k.clock_ns += 1_100_000_000
        nb.task_numa_work(k, p.task, k.clock_ns)
        p.task.access(np.arange(v.start, v.end), None)
        moved = vm.vmstat.events["numa_pages_migrated"]
        assert moved == (0 if i == 0 else 16384)
    assert vm.vmstat.node_event_total("pgpromote_success") == 0   # NORMAL mode is not promotion
