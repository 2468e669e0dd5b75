"""The run loop (sim/engine.py): determinism, the page-state invariants, what
a run leaves behind, the loaded-latency model inside a run, and the
hooks extensions use (kernel threads, accessed bits)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from cxlemu.kernel import sysctl
from cxlemu.kernel.mm import procfs
from cxlemu.kernel.mm.frames import OWNER_MODEL
from cxlemu.kernel.mm.mempolicy import MPOL_BIND
from cxlemu.sim.engine import run
from cxlemu.userspace import workloads as W
from cxlemu.userspace.spec import ProcSpec

from .support import tiered


def check_invariants(kernel) -> None:
    """Every online block: its free frames, process frames and block-model
    frames add up to the block-level counts alloc.py and hotplug.py use;
    every process page is mapped by exactly the page table that owns it."""
    vm = kernel.mm.vm
    pf = vm.frames
    if pf is None:
        return
    for bid, s in pf.slot_of_block.items():
        blk = kernel.mm.blocks[bid]
        if not blk.online:
            continue
        lo = s * pf.ppb
        own = pf.owner[lo:lo + blk.present]
        free = int(np.count_nonzero(pf.free[lo:lo + blk.present]))
        procs = int(np.count_nonzero(own >= 0))
        model = int(np.count_nonzero(own == OWNER_MODEL))
        assert free + procs + model == blk.present, blk.name
        assert free == blk.present - blk.reserved - blk.kernel - blk.user - blk.hwpoison, blk.name
        assert model == blk.reserved + blk.kernel + blk.hwpoison + blk.user - procs, blk.name
        assert pf.proc_pages[s] == procs
    anon = 0
    for t in kernel.sched.tasks.values():
        if t.mm is None:
            continue
        for v in t.mm.vmas:
            pt = t.mm.pt[v.start:v.end]
            vpn = v.start + np.flatnonzero(pt >= 0)
            f = pt[pt >= 0] & ~(1 << 30)
            if v.file is None:
                assert np.all(pf.owner[f] == t.mm.id) and np.all(pf.index[f] == vpn)
                anon += f.size
            else:
                assert np.all(pf.owner[f] == v.file.id) and np.all(pf.index[f] == vpn - v.start + v.pgoff)
                assert np.all(v.file.pages[vpn - v.start + v.pgoff] == f)
    cached = sum(int(np.count_nonzero(sp.pages >= 0)) for sp in vm.spaces.values() if hasattr(sp, "pages"))
    assert anon + cached == int(np.count_nonzero(pf.owner >= 0))


def fast_scanning(kernel) -> None:
    """NUMA balancing scans at once and every 100 ms (not after a second, then every second)."""
    sysctl.write(kernel, "/sys/kernel/debug/sched/numa_balancing/scan_delay_ms", "0")
    sysctl.write(kernel, "/sys/kernel/debug/sched/numa_balancing/scan_period_min_ms", "100")


def _small(policy="tpp", seed=3, **kw):
    b = tiered("512M", "2G")
    fast_scanning(b.kernel)
    wl = [ProcSpec(W.Gups(rss="900M", hot="100M", threads=1), name="gups"),
          ProcSpec(W.Zipf(keys="200K", value_size=512, threads=1), name="kv", start_ns=5_000_000)]
    return b, run(b.kernel, wl, policy=policy, accesses=20_000_000, seed=seed, **kw)


def test_same_seed_same_run():
    _, a = _small()
    _, b = _small()
    da, db = a.to_dict(timeline=True), b.to_dict(timeline=True)
    da.pop("wall_seconds")
    db.pop("wall_seconds")
    assert da == db
    _, c = _small(seed=4)
    assert c.to_dict()["latency_ns"] != da["latency_ns"] or c.fast_accesses != a.fast_accesses


def test_invariants_hold_under_pressure():
    b, r = _small(keep=True)
    k = b.kernel
    assert r.pages_demoted > 0
    check_invariants(k)
    # the block model (alloc.py) sees process pages: offlining and meminfo agree
    c0 = procfs.mem_counts(k.mm, 0)
    assert c0["anon"] > 0
    for p in r.processes_live:
        p.exit(0)
    check_invariants(k)


def test_a_run_leaves_counters_and_frees_its_pages():
    b = tiered("512M", "2G")
    k = b.kernel
    size0 = len(pickle.dumps(k))
    free0 = [procfs.mem_counts(k.mm, n)["free"] for n in (0, 1)]
    fast_scanning(k)
    r = run(k, W.Gups(rss="900M", hot="100M", threads=1), policy="tpp", accesses=20_000_000, seed=1)
    assert r.processes[0]["exit"] == "exited" and not k.sched.tasks
    # the processes exited: their pages are free again and the memmap is gone
    assert k.mm.vm.frames is None
    assert [procfs.mem_counts(k.mm, n)["free"] for n in (0, 1)] == free0
    assert len(pickle.dumps(k)) < size0 + 64 * 1024
    vmstat = dict(line.split() for line in procfs.proc_vmstat(k.mm).splitlines())
    assert int(vmstat["numa_hint_faults"]) > 0
    assert int(vmstat["pgdemote_kswapd"]) + int(vmstat["pgdemote_direct"]) == r.pages_demoted
    assert int(vmstat["pgpromote_success"]) == r.pages_promoted
    # a second run adds to them, as on a machine that keeps running
    run(k, W.Gups(rss="900M", hot="100M", threads=1), policy="tpp", accesses=2_000_000, seed=2)
    v2 = dict(line.split() for line in procfs.proc_vmstat(k.mm).splitlines())
    assert int(v2["numa_hint_faults"]) >= int(vmstat["numa_hint_faults"])
    assert int(v2["pgfault"]) > int(vmstat["pgfault"])


def test_a_saturated_dram_node_is_slower_than_idle_cxl_in_a_run():
    """Colloid's observation, inside a run: STREAM on both CPUs bound to DRAM
    loads it past the point where CXL's idle latency is lower."""
    b = tiered("1G", "4G")
    k = b.kernel
    r = run(k, ProcSpec(W.Stream(rss="600M", threads=2), policy=(MPOL_BIND, (0,))), policy="default",
            accesses=20_000_000)
    last = r.timeline.rows[-1]
    assert last["util"][0] > 0.85
    assert last["latency"][0] > r.timings[1].read_latency > r.timings[0].read_latency
    # one pointer-chasing thread on the CXL node hardly loads it: near its idle latency
    r2 = run(k, ProcSpec(W.Chase(rss="64M", threads=1), policy=(MPOL_BIND, (1,))), policy="default",
             accesses=2_000_000)
    assert r2.timeline.rows[-1]["latency"][1] == pytest.approx(r.timings[1].read_latency, rel=0.02)


class Sampler:
    """A periodic kernel thread like a kdamond: every 5 ms it reads and
    clears the accessed bits of the frames."""

    def __init__(self):
        self.next_run_ns = 0
        self.runs = 0
        self.young = []

    def run(self, kernel, now_ns):
        pf = kernel.mm.vm.frames
        if pf is not None:
            young = pf.access > 0
            self.young.append(int(np.count_nonzero(young)))
            pf.access[young] = -pf.access[young]
        self.runs += 1
        self.next_run_ns = now_ns + 5_000_000


def test_kthread_hook_runs_between_epochs():
    b = tiered("512M", "2G")
    k = b.kernel
    s = Sampler()
    k.sched.register_kthread(s)
    r = run(k, W.Gups(rss="200M", hot="20M", threads=1), policy="default", duration=100_000_000, seed=1)
    assert r.sim_ns >= 100_000_000
    assert 15 <= s.runs <= 25
    # after the first interval only recently touched pages are young: the hot set dominates
    assert max(s.young[2:]) < 200 * 256
    k.sched.unregister_kthread(s)


def test_python_api(tmp_path):
    """`cxlemu.workloads` is importable lazily; `cxlemu.sim.run` takes a
    machine (or kernel), a workload and a policy; the timeline plots."""
    import cxlemu
    import cxlemu.sim
    b = tiered("512M", "2G")
    r = cxlemu.sim.run(b.kernel, cxlemu.workloads.Zipf(rss="256M", alpha=0.99, threads=1), policy="tpp",
                       accesses=1_000_000)
    assert r.policy == "tpp" and r.accesses >= 1_000_000
    assert len(r.timeline) == r.epochs and r.timeline.hit_ratio().size == r.epochs
    fig = r.timeline.plot(str(tmp_path / "t.png"))
    assert (tmp_path / "t.png").stat().st_size > 0 and fig is not None
    d = r.to_dict(timeline=True)
    assert len(d["timeline"]["t_ns"]) == r.epochs
