"""The run loop: epochs of vectorised accesses in simulated time.

Each epoch (a few milliseconds of simulated time, about a million accesses):

1. processes whose start time has come are created (policy, affinity,
   cpuset applied) and map their VMAs; running workloads get ``tick``;
2. every running process produces a batch of accesses sized by its recent
   access rate, and the kernel resolves it (``Task.access``: page-table
   gather, faults under the task's memory policy, accessed bits);
3. the hardware timing (hw/timing.py) prices the epoch: the bandwidth every
   process offers to each node, plus the kernel's background traffic
   (migration copies), gives each node's loaded latency, and the closed loop
   gives how long the epoch took — ``kernel.clock_ns`` advances by that;
4. the kernel's periodic work runs at its intervals: kswapd woken during the
   epoch, the NUMA-balancing scanner of each task, zswap writeback, and
   registered kernel threads (kdamond ...); then ``machine.yield_point()``;
5. counters, the latency histogram, the access heatmap and the timeline
   row are recorded.

An access to a page whose CXL media holds poison is a machine check: the
kernel's access path (kernel/mm/fault.py, kernel/mm/mce.py) runs
memory_failure(pfn, MF_ACTION_REQUIRED) for the task, which gets SIGBUS and
stops at that access; the run records each memory failure
(``RunResult.memory_failures``) and the other processes go on.

Nothing loops per access in Python.  The run is deterministic for a seed:
one numpy Generator, seeded once, feeds every workload in a fixed order.
"""

from __future__ import annotations

import os
import time
from dataclasses import field
from typing import Any

import numpy as np

from cxlemu.hw.timing import Stream, solve_epoch
from cxlemu.kernel.syscalls import BASE_VPN, Process
from cxlemu.sim.histogram import HIST_EDGES
from cxlemu.userspace.spec import ProcSpec
from cxlemu.util.lazydc import dataclass

HEAT_BUCKETS = 256
HEAT_SAMPLE = 17                    # odd: does not alias with interleaved streams


@dataclass
class RunProc:
    spec: ProcSpec
    proc: Process | None = None
    started: bool = False
    finished: bool = False
    rate: float = 0.0                    # accesses per ns, measured
    warm: bool = False                   # has had an epoch (the rate includes its faults)
    accesses: int = 0
    fast: int = 0
    faults: int = 0
    counts: np.ndarray | None = None     # accesses per page of the mm (for the optimal placement)
    buf_vp: list = field(default_factory=list)
    buf_c: list = field(default_factory=list)
    buf_n: int = 0
    tail_counts: np.ndarray | None = None   # the same over the steady-state window (counts: before it)
    tail_vp: list = field(default_factory=list)
    tail_c: list = field(default_factory=list)
    tail_n: int = 0
    exit: str = ""
    pid: int = 0
    comm: str = ""
    heat_lo: int = 0
    heat_hi: int = 1


class RunError(Exception):
    pass


def check_specs(kernel, specs) -> None:
    """Refuse a run whose processes the kernel would refuse (a memory policy
    with no allowed node that has memory, CPUs that do not exist, a cpuset
    without memory) before anything starts: a bad workload changes nothing."""
    import errno as _errno
    from cxlemu.kernel.mm import mempolicy as mp
    mem = set(kernel.mm.numa.state_nodes("memory"))
    cpus = set(kernel.sched.all_cpus())
    for s in specs:
        if s.process is not None:
            continue
        name = s.name or s.workload.name

        def fail(call: str, e: OSError) -> None:
            why = f" ({e.args[1]})" if len(e.args) > 1 and e.args[1] else ""
            raise RunError(f"process {name}: {call}: {os.strerror(e.errno or _errno.EINVAL)}{why}")

        allowed = tuple(sorted(mem))
        if s.cpuset_mems is not None:
            if not s.cpuset_mems or any(n not in mem for n in s.cpuset_mems):
                fail("cpuset.mems", OSError(_errno.EINVAL, "nodes without memory"))
            allowed = tuple(sorted(s.cpuset_mems))
        if s.cpunodebind is not None:
            c = {c for n in s.cpunodebind for c in kernel.mm.numa.cpus(n)} & cpus
            if not c:
                fail("sched_setaffinity", OSError(_errno.EINVAL, "no online CPU on these nodes"))
        if s.physcpubind is not None and not set(s.physcpubind) & cpus:
            fail("sched_setaffinity", OSError(_errno.EINVAL, "no online CPU in the mask"))
        try:
            if s.policy is not None:
                mp.mpol_new(s.policy[0], s.policy[1], allowed, kernel.version, kernel.mm.numa.possible())
        except OSError as e:
            fail("set_mempolicy", e)
        for vma, mode, nodes, _flags in s.mbind:
            try:
                mp.mpol_new(mode, nodes, allowed, kernel.version, kernel.mm.numa.possible())
            except OSError as e:
                fail(f"mbind({vma})", e)


def _specs(workload) -> list[ProcSpec]:
    if isinstance(workload, ProcSpec):
        return [workload]
    if isinstance(workload, (list, tuple)):
        return [w if isinstance(w, ProcSpec) else ProcSpec(w) for w in workload]
    return [ProcSpec(workload)]


def run(machine, workload, *, policy: str | None = None, accesses: int | None = None,
        duration: int | None = None, seed: int = 0, epoch_accesses: int = 1 << 20, epoch_ns: int = 10_000_000,
        keep: bool = False, label: str = "", progress_label: str | None = None, tail: float = 0.25):
    """Run ``workload`` (a generator, a ProcSpec, or a list of them) on
    ``machine`` (a Machine from the store, or a Kernel).  Stops after
    ``accesses`` accesses or ``duration`` ns of simulated time (default 50
    million accesses), or when every process is done.  ``policy`` names a
    preset of sim/policy.py (None: the machine's knobs as they are).
    Returns a :class:`~cxlemu.sim.results.RunResult`; processes exit at the
    end unless ``keep`` (then ``result.processes`` hold them)."""
    from cxlemu.kernel.sched.numa import task_numa_work
    from cxlemu.sim import policy as pol
    from cxlemu.sim.nodes import node_timings
    from cxlemu.sim.results import RunResult, Timeline
    from cxlemu.util.progress import progress

    kernel = getattr(machine, "kernel", machine)
    yield_point = getattr(machine, "yield_point", None)
    check_specs(kernel, [s for s in _specs(workload)])
    vm = kernel.mm.vm
    wall0 = time.perf_counter()
    if accesses is None and duration is None:
        accesses = 50_000_000
    knobs = pol.apply(kernel, policy) if policy else pol.knobs(kernel)
    policy_name = policy or pol.infer(kernel)
    rng = np.random.default_rng(seed)
    runs = [RunProc(s) for s in _specs(workload)]
    t0 = kernel.clock_ns
    ev0 = dict(vm.vmstat.events)
    nev0 = {n: dict(d) for n, d in vm.vmstat.node_events.items()}
    timings = node_timings(kernel)
    nodes = sorted(timings)
    # a preset that is a task policy (``interleave``: numactl -w all / set_mempolicy
    # MPOL_WEIGHTED_INTERLEAVE over every memory node) for processes without their own
    task_policy = None
    if pol.TASK_POLICY.get(policy or "") == "weighted-interleave":
        from cxlemu.kernel.mm.mempolicy import MPOL_WEIGHTED_INTERLEAVE
        task_policy = (MPOL_WEIGHTED_INTERLEAVE, tuple(nodes))
    nn = (max(nodes) + 1) if nodes else 1
    toptier = np.zeros(nn, np.bool_)
    for n in nodes:
        toptier[n] = vm.node_is_toptier(n)
    capacity = fast_capacity(kernel, nodes, toptier)
    hist = np.zeros(HIST_EDGES.size - 1, np.float64)
    tl = Timeline(nodes)
    heat_rows: list[np.ndarray] = []
    mfs: list[dict] = []                # memory failures the run's accesses raised (machine checks)
    total = 0
    tail_acc = tail_fast = 0.0
    heat_span = 1
    stride = 1      # every access is counted for the optimal placement (see _count_pages)
    fast_total = 0
    lat_sum = 0.0
    epochs = 0
    layout = vm.layout_gen
    cpus = kernel.sched.all_cpus()
    unit = "accesses" if accesses is not None else "ms"
    goal = accesses if accesses is not None else duration / 1e6
    with progress(progress_label or f"run {label or policy_name}", total=goal) as bar:
        while True:
            now = kernel.clock_ns
            rel = now - t0
            if duration is not None and rel >= duration:
                break
            if accesses is not None and total >= accesses:
                break
            for rp in runs:
                if not rp.started and rel >= rp.spec.start_ns:
                    _start(kernel, rp, rng, cpus, task_policy)
                    heat_span = _heat_span(runs)
                if rp.started and not rp.finished:
                    if (rp.spec.stop_ns is not None and rel >= rp.spec.stop_ns) or not rp.proc.alive \
                            or getattr(rp.spec.workload, "done", False):
                        _finish(rp, "stopped" if rp.proc.alive else _killed(rp.proc.task))
            active = [rp for rp in runs if rp.started and not rp.finished]
            pending = [rp for rp in runs if not rp.started]
            if not active:
                if not pending:
                    break
                nxt = min(rp.spec.start_ns for rp in pending)
                kernel.clock_ns = t0 + nxt
                continue
            for rp in active:
                rp.spec.workload.tick(rp.proc, now)
            if vm.layout_gen != layout:
                timings = node_timings(kernel)
                layout = vm.layout_gen
            targets = [timings.get(n) or timings[nodes[0]] for n in range(nn)] if nodes else []
            # ---- epoch size ------------------------------------------------------------------
            rate_sum = sum(rp.rate for rp in active)
            d = min(float(epoch_ns), epoch_accesses / rate_sum) if rate_sum > 0 else float(epoch_ns)
            if duration is not None:
                d = min(d, max(duration - rel, 1.0))
            due = kernel.sched.next_kthread_ns()
            if due is not None:
                # end the epoch when a kernel thread (a kdamond ...) is due
                d = min(d, max(float(due - now), 100_000.0))
            streams, per = [], []
            threads_total = sum(_threads(rp, cpus) for rp in active)
            scale = min(1.0, len(cpus) / threads_total) if threads_total else 1.0
            left = None if accesses is None else accesses - total
            for rp in active:
                wl = rp.spec.workload
                n = int(max(1024, rp.rate * d)) if rp.rate > 0 else 65536
                if not rp.warm:
                    # first epoch: the guessed rate knows nothing of page faults
                    n = min(n, 16384)
                    rp.warm = True
                if left is not None:
                    n = max(1, min(n, int(left * (rp.rate / rate_sum if rate_sum else 1.0 / len(active))) + 1))
                b = wl.batch(n, rng)
                vp = b.vpages - BASE_VPN
                task = rp.proc.task
                out = task.access(vp, b.writes, now)
                if out.mce:
                    mfs += memory_failure_records(kernel, task, out.mce, now - t0)
                m = out.frames.size
                w = b.counts[:m].astype(np.float64) if b.counts is not None else None
                node = out.node
                acc_node = _per_node(node, w, nn, nodes)
                if b.writes is not None and m:
                    wr = b.writes[:m]
                    nw = int(np.count_nonzero(wr))
                    if nw == m:
                        wr_node = acc_node.copy()
                    elif nw:
                        ww = wr.astype(np.float64) if w is None else np.where(wr, w, 0.0)
                        wr_node = np.bincount(node, weights=ww, minlength=nn)[:nn]
                    else:
                        wr_node = np.zeros(nn)
                else:
                    wr_node = np.zeros(nn)
                stall = float(out.fault_ns.sum()) + task.stall_ns
                task.stall_ns = 0.0
                par = _threads(rp, cpus) * scale
                mlp = b.mlp if b.mlp is not None else wl.mlp
                cpu_ns = b.cpu_ns if b.cpu_ns is not None else wl.cpu_ns
                streams.append(Stream(list(acc_node - wr_node), list(wr_node), par, mlp, cpu_ns, stall))
                per.append((rp, out, vp[:m], w, acc_node, node))
                if out.stop >= 0 or not task.alive:
                    rp.exit = f"{task.exit_signal or 'killed'}: {task.exit_reason}"
            traffic = vm.drain_traffic()
            xr = [traffic.get(i, [0.0, 0.0])[0] for i in range(nn)]
            xw = [traffic.get(i, [0.0, 0.0])[1] for i in range(nn)]
            et = solve_epoch(targets, streams, xr, xw)
            dur = max(et.duration_ns, 1.0)
            lat_r = np.asarray(et.read_latency)
            # ---- accounting -------------------------------------------------------------------
            ep_acc = 0.0
            ep_fast = 0.0
            in_tail = _in_tail(rel, total, accesses, duration, tail)
            ep_lat = 0.0
            heat = np.zeros(HEAT_BUCKETS)
            for (rp, out, vpm, w, acc_node, node), tp in zip(per, et.stream_ns):
                a = float(acc_node.sum())
                f = float(acc_node[toptier[:nn]].sum())
                rp.accesses += int(a)
                rp.fast += int(f)
                rp.faults += int(out.fault_pos.size)
                rp.rate = a / max(tp, 1.0) if a else rp.rate
                ep_acc += a
                ep_fast += f
                ep_lat += float((acc_node * lat_r).sum()) + float(out.fault_ns.sum())
                _hist_add(hist, acc_node, lat_r, out, node)
                # per-page counts for the optimal placement: the steady-state
                # window apart (the whole run is both parts added)
                _count_pages(rp, vpm, w, tail=in_tail)
                if in_tail:
                    tail_acc += a
                    tail_fast += f
                if vpm.size:
                    # the heatmap samples one access in HEAT_SAMPLE (a picture, as damo's sampling)
                    gl = rp.heat_lo + vpm[::HEAT_SAMPLE]
                    idx = np.minimum((gl * HEAT_BUCKETS) // heat_span, HEAT_BUCKETS - 1)
                    hw = None if w is None else w[::HEAT_SAMPLE]
                    heat += np.bincount(idx, weights=hw, minlength=HEAT_BUCKETS)[:HEAT_BUCKETS] * HEAT_SAMPLE
            total += int(ep_acc)
            fast_total += int(ep_fast)
            lat_sum += ep_lat
            epochs += 1
            kernel.clock_ns = now + int(round(dur))
            # ---- the kernel's periodic work --------------------------------------------------------
            vm.run_woken_kswapd()
            for rp in active:
                t = rp.proc.task
                if t.alive and t.mm is not None:
                    _, cost = task_numa_work(kernel, t, kernel.clock_ns)
                    t.stall_ns += cost
            if vm.zswap is not None and vm.zswap.reached_full:
                from cxlemu.kernel.mm import zswap
                zswap.writeback(vm)
            kernel.sched.run_kthreads(kernel.clock_ns)
            tl.add(kernel.clock_ns - t0, dur, ep_acc, ep_fast, ep_lat, et, resident_by_node(vm, nn),
                   counters(vm), [float(x.sum()) for x in [p[4] for p in per]])
            heat_rows.append(heat)
            if yield_point is not None:
                yield_point()
            bar.update(completed=min(total, goal) if unit == "accesses" else min((kernel.clock_ns - t0) / 1e6, goal))
    # ---- end of run -------------------------------------------------------------------------------
    snap_nodes = {n: {"resident_bytes": int(resident_by_node(vm, nn)[n]) * 4096} for n in nodes}
    vmas = []
    procs_info = []
    for rp in runs:
        if rp.proc is None:
            continue
        t = rp.proc.task
        if t.mm is not None:
            vmas += vma_residency(vm, t, rp.comm)
        procs_info.append({"pid": rp.pid, "comm": rp.comm, "workload": rp.spec.workload.name,
                           "accesses": rp.accesses, "faults": rp.faults,
                           "fast_tier_hit_ratio": rp.fast / rp.accesses if rp.accesses else 0.0,
                           "exit": rp.exit or ("running" if keep and t.alive else "exited")})
    optimal = optimal_hit_ratio(runs, capacity)
    if tail_acc > 0:
        optimal_tail = optimal_hit_ratio(runs, capacity, tail=True)
    else:
        # every process finished before the steady-state window began: the
        # whole run stands for it (RunResult.steady_window says so)
        optimal_tail, tail_acc, tail_fast, tail = optimal, float(total), float(fast_total), 1.0
    ev1 = vm.vmstat.events
    delta = {k: ev1.get(k, 0) - ev0.get(k, 0) for k in ev1 if ev1.get(k, 0) != ev0.get(k, 0)}
    ndelta: dict[str, int] = {}
    for n, d in vm.vmstat.node_events.items():
        for k2, v in d.items():
            dv = v - nev0.get(n, {}).get(k2, 0)
            if dv:
                ndelta[k2] = ndelta.get(k2, 0) + dv
    if not keep:
        for rp in runs:
            if rp.proc is not None and rp.proc.alive and rp.spec.process is None:
                rp.proc.exit(0)
    res = RunResult(
        label=label or policy_name, policy=policy_name, knobs=knobs, seed=seed,
        sim_ns=kernel.clock_ns - t0, wall_s=time.perf_counter() - wall0, accesses=total,
        fast_accesses=fast_total, latency_sum=lat_sum, hist=hist, optimal=optimal, capacity_pages=capacity,
        nodes=snap_nodes, vmas=vmas, processes=procs_info, vmstat=delta, node_events=ndelta,
        timeline=tl, heat=np.array(heat_rows) if heat_rows else np.zeros((0, HEAT_BUCKETS)),
        timings={n: timings[n] for n in nodes}, toptier=[n for n in nodes if toptier[n]], epochs=epochs,
        count_stride=stride, optimal_tail=optimal_tail, tail=tail, tail_accesses=tail_acc, tail_fast=tail_fast,
        workload=[rp.spec.workload.describe() for rp in runs],
        machine=getattr(machine, "name", ""), memory_failures=mfs)
    if keep:
        res.processes_live = [rp.proc for rp in runs if rp.proc is not None]
    kernel.dirty = True                 # the run changed the machine (counters, knobs, memory)
    return res


def _heat_span(runs: list[RunProc]) -> int:
    """Lay the address spaces of the processes side by side for the heatmap;
    returns the total span in pages."""
    lo = 0
    for rp in runs:
        if rp.proc is None or rp.proc.task.mm is None:
            continue
        mm = rp.proc.task.mm
        span = max(mm.next_vpn, 1)
        rp.heat_lo = lo
        rp.heat_hi = lo + span
        lo += span
    return max(lo, 1)


def _threads(rp: RunProc, cpus: list[int]) -> int:
    t = rp.spec.threads or rp.spec.workload.threads
    if not t:
        allowed = rp.proc.task.cpus_allowed if rp.proc is not None else ()
        t = len(allowed) or len(cpus) or 1
    return int(t)


def _start(kernel, rp: RunProc, rng, cpus, task_policy: tuple | None = None) -> None:
    from cxlemu.hw.timing import LINE  # noqa: F401  (keeps the import graph explicit)
    s = rp.spec
    wl = s.workload
    if s.process is not None:
        proc = s.process
    else:
        proc = Process.new(kernel, s.name or wl.name)
        if s.cpuset_mems is not None:
            proc.set_cpuset_mems(s.cpuset_mems)
        if s.cpunodebind is not None:
            numa = kernel.mm.numa
            proc.sched_setaffinity([c for n in s.cpunodebind for c in numa.cpus(n)])
        if s.physcpubind is not None:
            proc.sched_setaffinity(s.physcpubind)
        if s.policy is not None:
            proc.set_mempolicy(s.policy[0], s.policy[1])
        elif task_policy is not None:
            proc.set_mempolicy(*task_policy)
    rp.proc = proc
    rp.pid = proc.pid
    rp.comm = proc.task.comm
    proc.set_threads(_threads(rp, cpus))
    mark = (proc.pid, proc.task.mm.id if proc.task.mm is not None else -1)
    if getattr(wl, "_set_up_in", None) != mark:
        # a workload run again in the process it was set up in continues
        # where it stopped (its mappings stay); otherwise it maps its VMAs
        wl.setup(proc)
        wl._set_up_in = (proc.pid, proc.task.mm.id if proc.task.mm is not None else -1)
    mm = proc.task.mm
    for name, mode, nodes, flags in s.mbind:
        v = mm.vma_by_name(name) if mm is not None else None
        if v is None:
            raise RunError(f"mbind: process {rp.comm} has no VMA named {name!r}")
        proc.mbind(v.vm_start, v.npages * 4096, mode, nodes, flags)
    # first rate guess: idle local latency
    rp.rate = _threads(rp, cpus) / (wl.cpu_ns + 100.0 / wl.mlp)
    rp.started = True


def _killed(task) -> str:
    """Why a process died outside its own accesses (a signal another task's
    machine check or the OOM killer sent it)."""
    return f"{task.exit_signal}: {task.exit_reason}" if task.exit_signal else "killed"


def memory_failure_records(kernel, task, outcomes, rel_ns: int) -> list[dict]:
    """The run report's rows for the machine checks of one batch of
    ``task``: the pfn, its node, what memory_failure found and did, and the
    signals it sent (kernel/mm/memory_failure.py Outcome)."""
    from cxlemu.kernel.mm.memory_failure import BUS_MCEERR_AR, RESULT_NAMES
    mm = kernel.mm
    out = []
    for o in outcomes:
        blk = mm.blocks.get(o.pfn // mm.pages_per_block)
        sig = [{"pid": k.pid, "comm": k.comm, "signal": "SIGBUS",
                "si_code": "BUS_MCEERR_AR" if k.si_code == BUS_MCEERR_AR else "BUS_MCEERR_AO",
                "vaddr": k.vaddr} for k in o.kills]
        if not task.alive and task.exit_signal == "SIGBUS" and not any(x["pid"] == task.pid for x in sig):
            sig.append({"pid": task.pid, "comm": task.comm, "signal": "SIGBUS", "si_code": "SI_KERNEL",
                        "vaddr": 0})
        out.append({"t_ns": int(rel_ns), "pfn": int(o.pfn), "phys_addr": int(o.pfn) << 12,
                    "node": blk.nid if blk is not None else -1, "pid": task.pid, "comm": task.comm,
                    "page_type": o.type_name, "result": RESULT_NAMES[o.result], "ret": int(o.ret),
                    "signals": sig, "killed": not task.alive})
    return out


def _finish(rp: RunProc, why: str) -> None:
    rp.finished = True
    if not rp.exit:
        rp.exit = why


def _hist_add(hist: np.ndarray, acc_node: np.ndarray, lat_r: np.ndarray, out, node: np.ndarray) -> None:
    bins = np.clip(np.searchsorted(HIST_EDGES, lat_r, side="right") - 1, 0, hist.size - 1)
    np.add.at(hist, bins, acc_node)
    if out.fault_pos.size:
        fl = lat_r[node[out.fault_pos]] + out.fault_ns
        fb = np.clip(np.searchsorted(HIST_EDGES, fl, side="right") - 1, 0, hist.size - 1)
        np.add.at(hist, bins[node[out.fault_pos]], -1.0)
        np.add.at(hist, fb, 1.0)


def _per_node(node: np.ndarray, w: np.ndarray | None, nn: int, nodes: list[int]) -> np.ndarray:
    """Accesses per node (weighted by ``w``): a count per memory node for
    the common case of a few nodes and unit weights, else a bincount."""
    if w is None and len(nodes) <= 4:
        out = np.zeros(nn, np.float64)
        seen = 0
        for n in nodes:
            c = int(np.count_nonzero(node == n))
            out[n] = c
            seen += c
        if seen == node.size:
            return out
    return np.bincount(node, weights=w, minlength=nn)[:nn].astype(np.float64)


def _in_tail(rel: int, total: int, accesses: int | None, duration: int | None, tail: float) -> bool:
    """Is the run in its steady-state window (the last ``tail`` of it)?"""
    if accesses is not None:
        return total >= accesses * (1.0 - tail)
    return rel >= duration * (1.0 - tail)


def _count_pages(rp: RunProc, vpm: np.ndarray, w: np.ndarray | None, tail: bool = False) -> None:
    """Accumulate accesses per page (bincount over buffered batches; exact)."""
    if not vpm.size:
        return
    vps, cs = (rp.tail_vp, rp.tail_c) if tail else (rp.buf_vp, rp.buf_c)
    vps.append(vpm)
    cs.append(w)
    if tail:
        rp.tail_n += vpm.size
        n = rp.tail_n
    else:
        rp.buf_n += vpm.size
        n = rp.buf_n
    mm = rp.proc.task.mm
    size = mm.pt.size if mm is not None else 0
    if n >= max(size, 1 << 21):
        _flush_counts(rp, size, tail)


def _flush_counts(rp: RunProc, size: int | None = None, tail: bool = False) -> None:
    vps, cs = (rp.tail_vp, rp.tail_c) if tail else (rp.buf_vp, rp.buf_c)
    if not vps:
        return
    if size is None:
        size = int(max(v.max() for v in vps)) + 1
    vp = np.concatenate(vps)
    if any(c is not None for c in cs):
        w = np.concatenate([c if c is not None else np.ones(v.size) for c, v in zip(cs, vps)])
    else:
        w = None
    size = max(size, int(vp.max()) + 1)
    add = np.bincount(vp, weights=w, minlength=size)
    cur = rp.tail_counts if tail else rp.counts
    if cur is None:
        cur = np.zeros(size, np.float64)
    elif cur.size < size:
        cur = np.concatenate([cur, np.zeros(size - cur.size)])
    cur[: add.size] += add
    if tail:
        rp.tail_counts, rp.tail_vp, rp.tail_c, rp.tail_n = cur, [], [], 0
    else:
        rp.counts, rp.buf_vp, rp.buf_c, rp.buf_n = cur, [], [], 0


def fast_capacity(kernel, nodes, toptier) -> int:
    """Pages of the fast tier a workload can use: free pages above the low
    watermark (and lowmem reserve) of the top-tier nodes' zones at the start
    of the run, plus what processes already hold there."""
    from cxlemu.kernel.mm.page_alloc import WMARK_LOW
    from cxlemu.kernel.mm.zones import ZONE_MOVABLE
    mm = kernel.mm
    vm = mm.vm
    cap = 0
    for n in nodes:
        if not toptier[n]:
            continue
        for z in range(4):
            st = mm.zone_stats(n, z)
            if not st["managed"]:
                continue
            w = vm.wmarks.get((n, z), [0, 0, 0, 0])[WMARK_LOW]
            r = vm.lowmem.get((n, z), [0, 0, 0, 0])[ZONE_MOVABLE]
            cap += max(st["free"] - w - r, 0)
        cap += int(resident_by_node(vm, n + 1)[n])
    return cap


def optimal_hit_ratio(runs: list[RunProc], capacity: int, tail: bool = False) -> float:
    """The best static placement of this run's accesses (or of its
    steady-state window): the ``capacity`` most-accessed pages in the fast
    tier, as a fraction of all accesses."""
    arrs = []
    for rp in runs:
        _flush_counts(rp, tail=True)
        c = rp.tail_counts
        if not tail:
            _flush_counts(rp)
            a, b = rp.counts, rp.tail_counts
            if a is None or b is None:
                c = a if b is None else b
            else:
                c = np.zeros(max(a.size, b.size))
                c[: a.size] += a
                c[: b.size] += b
        if c is not None:
            arrs.append(c[c > 0])
    if not arrs:
        return 0.0
    c = np.concatenate(arrs)
    if not c.size or c.sum() <= 0:
        return 0.0
    if c.size <= capacity:
        return 1.0
    top = np.partition(c, c.size - capacity)[c.size - capacity:] if capacity > 0 else np.zeros(0)
    return float(top.sum() / c.sum())


def resident_by_node(vm, nn: int) -> np.ndarray:
    pf = vm.frames
    if pf is None or not pf.nslots:
        return np.zeros(nn, np.int64)
    r = np.bincount(np.maximum(pf.slot_node, 0).astype(np.int64), weights=pf.proc_pages, minlength=nn)
    return r[:nn].astype(np.int64)


def counters(vm) -> dict[str, int]:
    ev = vm.vmstat.events
    ne = vm.vmstat.node_event_total
    return {"promoted": ne("pgpromote_success"), "demoted": ne("pgdemote_kswapd") + ne("pgdemote_direct"),
            "migrated": ev.get("pgmigrate_success", 0), "swapped_out": ev.get("pswpout", 0) + ev.get("zswpout", 0),
            "hint_faults": ev.get("numa_hint_faults", 0)}


def vma_residency(vm, task, comm: str) -> list[dict]:
    pf = vm.frames
    out = []
    mm = task.mm
    for v in mm.vmas:
        pte = mm.pt[v.start:v.end]
        fr = (pte[pte >= 0] & ((1 << 30) - 1)).astype(np.int64)
        by = {}
        if fr.size and pf is not None:
            c = np.bincount(pf.node_of(fr).astype(np.int64))
            by = {int(n): int(c[n]) * 4096 for n in np.flatnonzero(c)}
        swapped = int(np.count_nonzero(pte <= -2))
        out.append({"name": v.name, "process": comm, "pid": task.pid, "size": v.npages * 4096,
                    "resident_by_node": by, "swapped_bytes": swapped * 4096})
    return out
