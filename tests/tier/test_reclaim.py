"""Reclaim (mm/vmscan.c): watermarks, the zonelist fallback, kswapd,
demotion to the memory tier below, swap and zswap, the OOM killer."""

from __future__ import annotations

import numpy as np
import pytest

from cxlemu.kernel.mm import page_alloc as pa
from cxlemu.kernel.mm.page_alloc import ZoneInfo
from cxlemu.kernel.mm.zones import ZONE_DMA32, ZONE_MOVABLE, ZONE_NORMAL
from cxlemu.sim.engine import run
from cxlemu.kernel.syscalls import Process
from cxlemu.userspace import workloads as W

from .support import tiered


def test_watermark_arithmetic():
    """__setup_per_zone_wmarks(): min shares over lowmem zones, movable capped,
    scale factor distance; min_free_kbytes from int_sqrt(lowmem * 16)."""
    assert pa.calculate_min_free_kbytes(16 << 20) == 16384          # 16 GiB of lowmem
    assert pa.calculate_min_free_kbytes(10) == 128
    assert pa.calculate_min_free_kbytes(1 << 40) == 262144
    assert pa.thp_recommended_min_free_kbytes(3, 4 << 20) == 67584   # the familiar 66 MiB with THP
    zones = [ZoneInfo(0, ZONE_DMA32, 1 << 18), ZoneInfo(0, ZONE_NORMAL, 3 << 18), ZoneInfo(1, ZONE_MOVABLE, 1 << 24)]
    w = pa.setup_wmarks(zones, 16384, 10)
    assert w[(0, ZONE_NORMAL)][0] == 3072 and w[(0, ZONE_DMA32)][0] == 1024
    assert w[(1, ZONE_MOVABLE)][0] == 128                             # managed/1024 capped at 128
    mn, lo, hi, pr = w[(0, ZONE_NORMAL)]
    assert lo - mn == hi - lo == pr - hi == max(3072 // 4, (3 << 18) * 10 // 10000)
    r = pa.lowmem_reserve(zones)
    assert r[(0, ZONE_DMA32)][ZONE_NORMAL] == (3 << 18) // 256


def test_zoneinfo_shows_watermarks_and_sysctls_recompute_them():
    b = tiered("2G", "8G")
    zi = b.read("/proc/zoneinfo")
    assert "Node 1, zone  Movable" in zi and "        promo    " in zi and "protection: (" in zi
    before = b.kernel.mm.vm.wmarks[(1, ZONE_MOVABLE)]
    b.write("/proc/sys/vm/watermark_scale_factor", "200")
    after = b.kernel.mm.vm.wmarks[(1, ZONE_MOVABLE)]
    assert after[1] - after[0] > before[1] - before[0]
    b.write("/proc/sys/vm/min_free_kbytes", "131072")
    assert b.read("/proc/sys/vm/min_free_kbytes") == "131072\n"


def _fill(b, size: str, policy: str | None = None, **kw):
    return run(b.kernel, W.SeqScan(rss=size, threads=1), policy=policy, keep=True, **kw)


def test_no_demotion_no_swap_spills_to_cxl_by_the_zonelist():
    """Demotion off, no swap: DRAM fills to its low watermark, the rest comes
    from the CXL node (numa_miss there, numa_foreign on node 0); nothing is
    reclaimed."""
    b = tiered("2G", "8G")
    vm = b.kernel.mm.vm
    res = _fill(b, "3G", "default", accesses=3 * 2 ** 18 * 64)     # one pass over 3 GiB
    p = res.processes_live[0]
    mm = p.task.mm
    fr = mm.pt[mm.pt >= 0].astype(np.int64)
    nodes = np.bincount(vm.frames.node[fr], minlength=2)
    low0 = sum(w[1] for (n, z), w in vm.wmarks.items() if n == 0)
    free0 = b.kernel.mm.node_stats(0)["free"]
    assert nodes[1] > 0 and nodes[0] > 0
    assert free0 <= low0 + 2 * 1024                        # node 0 ran down to its low watermark
    ev = vm.vmstat.events
    assert ev["pgsteal_kswapd"] == ev["pgsteal_direct"] == 0
    assert vm.vmstat.node_event_total("pgdemote_kswapd") == 0
    assert vm.vmstat.numa_events[1]["numa_miss"] == nodes[1]
    assert vm.vmstat.numa_events[0]["numa_foreign"] == nodes[1]
    p.exit()


def test_demotion_moves_cold_pages_down_first():
    """tpp on: a cold tenant fills DRAM first; a hot tenant starts later and
    spills to CXL; its hot pages get promoted, which wakes kswapd on node 0,
    which demotes the cold tenant's pages (demotion, not swap) to make room."""
    from cxlemu.userspace.spec import ProcSpec
    b = tiered("2G", "8G")
    k = b.kernel
    vm = k.mm.vm
    cold = ProcSpec(W.HotCold(hot="4K", cold="1500M", threads=1), name="cold")
    hot = ProcSpec(W.Gups(rss="1G", hot="512M", hot_prob=1.0, threads=1), name="hot", start_ns=2_000_000_000)
    res = run(k, [cold, hot], policy="tpp", duration=8_000_000_000, keep=True, seed=3)
    pc, ph = res.processes_live
    assert vm.vmstat.node_event_total("pgdemote_kswapd") > 1000
    assert vm.vmstat.node_event_total("pgpromote_success") > 1000
    assert vm.vmstat.events["pswpout"] == 0                       # demoted, not swapped
    cold_v = pc.task.mm.vma_by_name("cold")
    cf = pc.task.mm.pt[cold_v.start:cold_v.end]
    cold_nodes = np.bincount(vm.frames.node[(cf[cf >= 0] & ((1 << 30) - 1)).astype(np.int64)], minlength=2)
    demoted = vm.vmstat.node_event_total("pgdemote_kswapd")
    assert cold_nodes[1] >= 0.9 * demoted                          # what went down was the cold tenant's
    hv = ph.task.mm.vmas[0]
    hf = ph.task.mm.pt[hv.start:hv.end]
    hot_nodes = np.bincount(vm.frames.node[(hf[hf >= 0] & ((1 << 30) - 1)).astype(np.int64)], minlength=2)
    assert hot_nodes[0] > 0.9 * hot_nodes.sum()                     # the hot set is in DRAM
    assert res.steady_hit_ratio() > 0.95
    pc.exit()
    ph.exit()


def test_swap_when_no_demotion_target():
    """A DRAM-only machine with a swap disk: reclaim swaps (pswpout), faults
    read back (pswpin, pgmajfault), workingset refaults are counted."""
    from cxltest_support import boot_text
    b = boot_text("""[machine]
name = "swapbox"
[boot]
swap = "2G"
[[numa]]
node = 0
cpus = 2
memory = "1G"
""")
    vm = b.kernel.mm.vm
    assert "/dev/vdb" in b.read("/proc/swaps")
    res = run(b.kernel, W.Gups(rss="1200M", hot="128M", threads=1), accesses=30_000_000, policy="default")
    ev = vm.vmstat.events
    assert ev["pswpout"] > 0 and ev["pswpin"] > 0 and ev["pgmajfault"] > 0
    assert ev["pgsteal_kswapd"] + ev["pgsteal_direct"] >= ev["pswpout"]
    assert vm.vmstat.node_event_total("workingset_refault_anon") > 0
    assert res.processes[0]["exit"] == "exited"
    assert vm.swap[0].used == 0                     # the process exited: its swap is free
    assert "SwapFree:        2097148 kB" in b.read("/proc/meminfo") or "SwapFree:" in b.read("/proc/meminfo")


def test_zswap_compresses_into_dram_even_from_cxl():
    """zswap's pool is kernel memory on the reclaiming CPU's node: pages
    reclaimed from the CXL node end up compressed in node 0 (seed 002)."""
    b = tiered("4G", "1G", "boot.swap=2G", "boot.zswap=true")
    k = b.kernel
    vm = k.mm.vm
    p = Process.new(k, "z")
    p.set_mempolicy(2, (1,))                                   # bind to the CXL node
    res = run(k, [__import__("cxlemu.userspace.spec", fromlist=["ProcSpec"]).ProcSpec(
        W.Gups(rss="1200M", hot="64M", threads=1), process=p)], accesses=20_000_000)
    ev = vm.vmstat.events
    assert ev["zswpout"] > 0
    z = vm.zswap
    if z.pool_frames.size:
        assert set(vm.frames.node[z.pool_frames].tolist()) == {0}
    assert b.read("/sys/module/zswap/parameters/enabled") == "Y\n"
    assert int(b.read("/sys/kernel/debug/zswap/stored_pages")) == z.stored_pages
    p.exit()
    assert z.stored_pages == 0 and z.pool_pages == 0


def test_oom_kill_without_swap_or_cxl():
    from cxltest_support import boot_text
    b = boot_text("""[machine]
name = "small"
[[numa]]
node = 0
cpus = 1
memory = "512M"
""")
    k = b.kernel
    res = run(k, W.SeqScan(rss="1G", threads=1, write_ratio=1.0), accesses=10_000_000)
    assert res.processes[0]["exit"].startswith("SIGKILL")
    assert k.mm.vm.vmstat.events["oom_kill"] == 1
    assert any("Out of memory: Killed process" in l for l in k.dmesg)
    assert "oom_kill 1" in b.read("/proc/vmstat")
    assert k.mm.node_stats(0)["user"] == 0               # its memory went back
