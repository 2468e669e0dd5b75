"""Page faults (mm/memory.c handle_mm_fault and friends), for a whole batch
of accesses at once.

``handle_access(task, vpns, writes, now)`` is what the workload engine calls
for each batch: it reads the page-table entries of the accessed pages
(one numpy gather), handles every entry that is not a plain present page —
in order of first access, each page once:

* ``pte_none`` in an anonymous VMA: ``do_anonymous_page`` — a zeroed page
  placed by the VMA's or the task's memory policy (first touch on the
  CPU's node by default), on the inactive anon list;
* ``pte_none`` in a file or shmem VMA: the page cache page if there is one
  (minor fault), else a new page read from the file (major fault; shmem:
  zeroed), placed by the task's policy (shmem: the VMA's);
* a swap entry: ``do_swap_page`` — zswap or the swap device, working-set
  refault detection decides the LRU list;
* PROT_NONE (NUMA hinting): ``do_numa_page`` (kernel/sched/numa.py);
* a hardware-poison entry, or an address outside every VMA: the task gets
  SIGBUS / SIGSEGV and dies;

then marks every accessed page young with the access time, and returns the
node of each access and the fault costs at the positions where faults
happened (the first access of each page).
"""

from __future__ import annotations

from dataclasses import field
from typing import TYPE_CHECKING

import numpy as np

from cxlemu.kernel.mm import mempolicy as mp
from cxlemu.kernel.mm.frames import (PG_ANON, PG_DIRTY, PG_SWAPBACKED, PG_UNEVICTABLE, PROT_NUMA, swp_slot)
from cxlemu.kernel.mm.mmap import File, PTE_HWPOISON, VM_EXMEM, VM_LOCKED, VM_NORMAL
from cxlemu.kernel.mm.swap import SWAP_READ_NS
from cxlemu.util.lazydc import dataclass

if TYPE_CHECKING:
    from cxlemu.kernel.sched.task import Task

ANON_FAULT_NS = 1000          # do_anonymous_page: zero a 4 KiB page, install the PTE (estimate)
FILE_MINOR_NS = 400           # map a page-cache page (estimate)
FILE_READ_NS = 80_000         # read a 4 KiB file page from an NVMe SSD (estimate)
PAGE = 4096
PROT_U32 = np.uint32(PROT_NUMA)
VM_SMDK = VM_EXMEM | VM_NORMAL


def add_node_traffic(vm, nodes: np.ndarray, read: int = 0, write: int = 0) -> None:
    """Per-node page traffic of a batch (bytes per page)."""
    c = np.bincount(nodes.astype(np.int64))
    for nid in np.flatnonzero(c).tolist():
        vm.add_traffic(nid, read=read * int(c[nid]), write=write * int(c[nid]))


class TaskKilled(Exception):
    def __init__(self, signal: str, reason: str):
        super().__init__(f"{signal}: {reason}")
        self.signal = signal
        self.reason = reason


@dataclass
class AccessOutcome:
    node: np.ndarray                       # node of each access (int16)
    frames: np.ndarray                     # frame of each access
    fault_pos: np.ndarray                  # positions of faulting accesses
    fault_ns: np.ndarray                   # their costs
    stop: int = -1                         # >= 0: the task died at this access
    signal: str = ""
    counts: dict = field(default_factory=dict)
    mce: list = field(default_factory=list)    # memory_failure outcomes of machine checks (kernel/mm/mce.py)


def handle_access(task: "Task", vpns: np.ndarray, writes: np.ndarray | None, now: int,
                  depth: int = 0) -> AccessOutcome:
    mm = task.mm
    vm = task.kernel.mm.vm
    pf = vm.frames
    e = mm.pt[vpns]
    special = e.view(np.uint32) >= PROT_U32
    fault_pos = np.zeros(0, np.int64)
    fault_ns = np.zeros(0)
    stop, signal = -1, ""
    mces: list = []
    if special.any():
        pos = np.flatnonzero(special)
        v = vpns[pos]
        first = mm.first_occurrences(v)
        uv, firstpos = v[first], pos[first]
        costs = np.zeros(uv.size)
        try:
            handle_faults(task, uv, costs, writes, firstpos, now)
        except TaskKilled as k:
            stop, signal = k.failed_at if hasattr(k, "failed_at") else 0, k.signal
            task.kill(k.signal, k.reason)
        e[pos] = mm.pt[vpns[pos]]
        fault_pos, fault_ns = firstpos, costs
        if stop >= 0:
            stop_pos = int(firstpos[min(stop, firstpos.size - 1)]) if firstpos.size else 0
            e = e[:stop_pos]
            vpns = vpns[:stop_pos]
            keep = fault_pos < stop_pos
            fault_pos, fault_ns = fault_pos[keep], fault_ns[keep]
            stop = stop_pos
    if fault_pos.size:
        frames = (e & np.int32(~PROT_NUMA)).astype(np.intp)
    else:
        frames = e.astype(np.intp)
    if fault_pos.size and frames.size and frames.min() < 0 and depth < 3 and task.alive:
        # reclaim inside this batch took pages faulted earlier in it: fault them again
        bad = np.flatnonzero(frames < 0)
        again = handle_access(task, vpns[bad], None if writes is None else writes[bad], now, depth + 1)
        frames[bad[: again.frames.size]] = again.frames
        mces.extend(again.mce)
        if again.stop >= 0:
            stop = int(bad[again.stop]) if again.stop < bad.size else stop
            signal = again.signal
    if fault_pos.size and frames.size and frames.min() < 0:
        cut = int(np.flatnonzero(frames < 0)[0])
        frames, vpns = frames[:cut], vpns[:cut]
        stop = cut if stop < 0 else min(stop, cut)
        signal = signal or "SIGKILL"
    if frames.size and task.alive and getattr(task.kernel.mm, "failure", None) is not None:
        # loads of poisoned lines: a machine check (kernel/mm/mce.py); nothing
        # to do, and nothing computed, while no device holds poison
        from cxlemu.kernel.mm import mce
        bad = mce.poisoned_frames(task.kernel)
        if bad.size:
            frames, vpns, fault_pos, fault_ns, stop, signal = _consume_poison(
                task, frames, vpns, writes, fault_pos, fault_ns, stop, signal, now, depth, bad, mces)
    node = pf.node_of(frames)
    if frames.size:
        pf.access[frames] = now
        if writes is not None and mm.has_file:
            w = frames[writes[: frames.size]]
            if w.size:
                pf.flags[w] |= np.uint16(PG_DIRTY)
    return AccessOutcome(node, frames, fault_pos, fault_ns, stop, signal, mce=mces)


def _consume_poison(task, frames, vpns, writes, fault_pos, fault_ns, stop, signal, now, depth, bad, mces):
    """The batch's first access to a poisoned frame raises a machine check
    (kernel/mm/mce.py): the batch ends there if the task dies; if the page
    was recovered without killing it (clean page cache dropped), the access
    runs again from there (it faults the page in anew)."""
    from cxlemu.kernel.mm import mce
    i = mce.first_poisoned(frames, bad)
    if i < 0:
        return frames, vpns, fault_pos, fault_ns, stop, signal
    mm = task.mm
    mces.append(mce.machine_check(task, int(frames[i]), mm.vpn_addr(int(vpns[i]))))
    keep = fault_pos < i
    head = (frames[:i], vpns[:i], fault_pos[keep], fault_ns[keep])
    if not task.alive:
        return (*head, i, "SIGBUS")
    again = handle_access(task, vpns[i:], None if writes is None else writes[i:], now, depth)
    mces.extend(again.mce)
    st = stop if again.stop < 0 else i + again.stop
    return (np.concatenate([head[0], again.frames]), vpns[: i + again.frames.size],
            np.concatenate([head[2], again.fault_pos + i]), np.concatenate([head[3], again.fault_ns]),
            st, again.signal or signal)


def handle_faults(task: "Task", uv: np.ndarray, costs: np.ndarray, writes, firstpos, now: int) -> None:
    """Handle the faults of unique vpns ``uv`` (in first-access order)."""
    mm = task.mm
    vm = task.kernel.mm.vm
    ent = mm.pt[uv]
    hwp = ent == PTE_HWPOISON
    if hwp.any():
        i = int(np.flatnonzero(hwp)[0])
        _resolve(task, uv[:i], ent[:i], costs[:i], now)
        k = TaskKilled("SIGBUS", f"access to a hardware-poisoned page at {mm.vpn_addr(int(uv[i])):#x}")
        k.failed_at = i
        raise k
    vi = mm.vma_index(uv)
    outside = (vi < 0) & (ent == -1)
    if outside.any():
        i = int(np.flatnonzero(outside)[0])
        _resolve(task, uv[:i], ent[:i], costs[:i], now)
        k = TaskKilled("SIGSEGV", f"access outside every VMA at {mm.vpn_addr(int(uv[i])):#x}")
        k.failed_at = i
        raise k
    _resolve(task, uv, ent, costs, now)


def _resolve(task, uv, ent, costs, now) -> None:
    if not uv.size:
        return
    none = ent == -1
    swp = (ent <= -2) & (ent != PTE_HWPOISON)
    prot = ent >= PROT_NUMA
    try:
        if none.any():
            costs[none] = do_pte_none(task, uv[none], now)
        if swp.any():
            costs[swp] = do_swap_page(task, uv[swp], ent[swp], now)
        if prot.any():
            from cxlemu.kernel.mm.numa_fault import do_numa_page
            costs[prot] = do_numa_page(task, uv[prot], ent[prot], now)
    except TaskKilled as k:
        k.failed_at = getattr(k, "failed_at", 0)
        raise


# --------------------------------------------------------------------------------------------
def place_and_alloc(task: "Task", pol, n: int, offsets: np.ndarray | None, vflags: int = 0) -> np.ndarray:
    """Frames for ``n`` new pages under policy ``pol`` (fewer: out of memory);
    ``vflags`` MAP_EXMEM / MAP_NORMAL limit the nodes or zones (kernel/mm/exmem.py)."""
    vm = task.kernel.mm.vm
    pa = vm.page_alloc
    pl = mp.placement(pol, n, task.cpu_node, offsets, task.il_state, vm.wi)
    zones = None
    if vflags:
        from cxlemu.kernel.mm.exmem import restriction
        allow, zones = restriction(task.kernel, vflags)
        if allow is not None:
            mask = tuple(x for x in (pl.nodemask if pl.nodemask is not None else allow) if x in allow)
            if not mask:
                return np.full(n, -1, np.int64)
            pl.nodemask = mask
            if pl.try_mask is not None:
                pl.try_mask = tuple(x for x in pl.try_mask if x in allow) or None
            pl.nid = np.where(np.isin(pl.nid, mask), pl.nid, mask[0]).astype(pl.nid.dtype)
    out = np.full(n, -1, np.int64)
    nids = pl.nid.astype(np.int64)
    if not n:
        return out
    if nids.min() == nids.max():
        groups = [(int(nids[0]), np.arange(n))]
    else:
        present = np.flatnonzero(np.bincount(nids))
        groups = [(int(x), np.flatnonzero(nids == x)) for x in present.tolist()]
    for nid, sel in groups:
        f = pa.alloc(sel.size, int(nid), pl.nodemask, cpu_nid=task.cpu_node, interleave=pl.interleave,
                     try_mask=pl.try_mask, task=task, zones=zones)
        out[sel[: f.size]] = f
        if f.size < sel.size:
            break
    return out


def _oom(task, got: np.ndarray) -> None:
    if (got < 0).any():
        k = TaskKilled("SIGKILL", "Out of memory")
        k.failed_at = int(np.flatnonzero(got < 0)[0])
        raise k


def do_pte_none(task: "Task", uv: np.ndarray, now: int) -> np.ndarray:
    mm = task.mm
    vm = task.kernel.mm.vm
    costs = np.zeros(uv.size)
    vi = mm.vma_index(uv)
    # keep fault order within each VMA; VMAs in order of their first fault
    present = np.flatnonzero(np.bincount(vi + 1, minlength=len(mm.vmas) + 1)[1:])
    if present.size == 1:
        order_vmas = present.tolist()
    else:
        order_vmas = sorted(present.tolist(), key=lambda j: int(np.argmax(vi == j)))
    for i in order_vmas:
        sel = np.flatnonzero(vi == i) if len(order_vmas) > 1 else np.arange(vi.size)
        v = mm.vmas[i]
        vp = uv[sel]
        if v.kind == "anon":
            costs[sel] = do_anonymous_pages(task, v, vp, now)
        else:
            costs[sel] = do_file_pages(task, v, vp, now)
    return costs


def do_anonymous_pages(task: "Task", v, vp: np.ndarray, now: int) -> np.ndarray:
    mm = task.mm
    vm = task.kernel.mm.vm
    pf = vm.frames
    pol = v.policy if v.policy is not None else task.mempolicy
    offsets = (vp - v.start + v.pgoff) if v.policy is not None else None
    frames = place_and_alloc(task, pol, vp.size, offsets, v.flags & VM_SMDK)
    ok = frames >= 0
    f = frames[ok]
    if f.size:
        flags = PG_ANON | PG_SWAPBACKED | (PG_UNEVICTABLE if v.flags & VM_LOCKED else 0)
        pf.assign(f, mm.id, vp[ok], flags, now)
        mm.pt[vp[ok]] = f.astype(np.int32)
        if not v.flags & VM_LOCKED:
            vm.lru.add(f, pf, active=False)
        vm.vmstat.count("pgfault", f.size)
        add_node_traffic(vm, pf.node[f], write=PAGE)
    _oom(task, frames)
    return np.full(vp.size, ANON_FAULT_NS, float)


def do_file_pages(task: "Task", v, vp: np.ndarray, now: int) -> np.ndarray:
    mm = task.mm
    vm = task.kernel.mm.vm
    pf = vm.frames
    f: File = v.file
    idx = vp - v.start + v.pgoff
    cache = f.pages[idx]
    costs = np.zeros(vp.size)
    hit = cache >= 0
    if hit.any():
        mm.pt[vp[hit]] = cache[hit]
        costs[hit] = FILE_MINOR_NS
        vm.vmstat.count("pgfault", int(hit.sum()))
    swapped = cache <= -2
    if swapped.any():
        costs[swapped] = swapin_shmem(task, v, vp[swapped], idx[swapped], cache[swapped], now)
    new = cache == -1
    if new.any():
        nv, ni = vp[new], idx[new]
        pol = v.policy if (f.shmem and v.policy is not None) else task.mempolicy
        offsets = ni if (f.shmem and v.policy is not None) else None
        frames = place_and_alloc(task, pol, nv.size, offsets, v.flags & VM_SMDK)
        ok = frames >= 0
        fr = frames[ok]
        if fr.size:
            flags = PG_SWAPBACKED if f.shmem else 0
            pf.assign(fr, f.id, ni[ok], flags, now)
            f.pages[ni[ok]] = fr.astype(np.int32)
            mm.pt[nv[ok]] = fr.astype(np.int32)
            act = np.zeros(fr.size, np.bool_)
            sh = getattr(f, "shadow", None)
            if not f.shmem and sh is not None and sh.size == f.npages:
                from cxlemu.kernel.mm.vmscan import refault
                shs = sh[ni[ok]]
                act = refault(vm, shs, anon=False)
                sh[ni[ok]] = 0
            vm.lru.add(fr[act], pf, active=True)
            vm.lru.add(fr[~act], pf, active=False)
            vm.vmstat.count("pgfault", fr.size)
            if not f.shmem:
                vm.vmstat.count("pgmajfault", fr.size)
                vm.vmstat.count("pgpgin", fr.size * 4)
            add_node_traffic(vm, pf.node[fr], write=PAGE)
        c = np.where(ok, ANON_FAULT_NS if f.shmem else FILE_READ_NS, 0.0)
        costs[new] = c
        _oom(task, frames)
    return costs


def swapin_shmem(task, v, vp, idx, ents, now) -> np.ndarray:
    f: File = v.file
    frames, costs = swap_in(task, v.policy, ents, now, idx if v.policy is not None else None,
                            owner=f.id, index=idx, anon=False)
    ok = frames >= 0
    f.pages[idx[ok]] = frames[ok].astype(np.int32)
    task.mm.pt[vp[ok]] = frames[ok].astype(np.int32)
    _oom(task, frames)
    return costs


def do_swap_page(task: "Task", uv: np.ndarray, ents: np.ndarray, now: int) -> np.ndarray:
    mm = task.mm
    vi = mm.vma_index(uv)
    costs = np.zeros(uv.size)
    for i in np.unique(vi).tolist():
        sel = np.flatnonzero(vi == i)
        v = mm.vmas[i]
        vp = uv[sel]
        offsets = (vp - v.start + v.pgoff) if v.policy is not None else None
        pol = v.policy if v.policy is not None else task.mempolicy
        frames, c = swap_in(task, pol, ents[sel], now, offsets, owner=mm.id, index=vp, anon=True)
        costs[sel] = c
        ok = frames >= 0
        mm.pt[vp[ok]] = frames[ok].astype(np.int32)
        _oom(task, frames)
    return costs


def swap_in(task, pol, ents: np.ndarray, now: int, offsets, owner: int, index: np.ndarray, anon: bool):
    """Read swapped pages back: zswap or the device; returns (frames, costs)."""
    from cxlemu.kernel.mm import zswap
    from cxlemu.kernel.mm.vmscan import refault
    vm = task.kernel.mm.vm
    pf = vm.frames
    dev = vm.swap[0]
    slots = swp_slot(ents.astype(np.int64))
    frames = place_and_alloc(task, pol, slots.size, offsets)
    ok = frames >= 0
    costs = np.zeros(slots.size)
    if not ok.any():
        return frames, costs
    s = slots[ok]
    fr = frames[ok]
    hit, zcost = zswap.load(vm, dev, s)
    nz = int(np.count_nonzero(~hit))
    _, dec = zswap.COMPRESSORS.get(vm.zswap.compressor if vm.zswap else "lzo", (0, 1500))
    c = np.where(hit, dec, SWAP_READ_NS).astype(float)
    costs[ok] = c
    vm.vmstat.count("pswpin", nz)
    vm.vmstat.count("pgpgin", nz * 4)
    vm.vmstat.count("pgmajfault", fr.size)
    vm.vmstat.count("pgfault", fr.size)
    flags = (PG_ANON | PG_SWAPBACKED) if anon else PG_SWAPBACKED
    pf.assign(fr, owner, index[ok], flags, now)
    act = refault(vm, dev.shadow[s], anon=True)
    vm.lru.add(fr[act], pf, active=True)
    vm.lru.add(fr[~act], pf, active=False)
    dev.release(s)
    add_node_traffic(vm, pf.node[fr], write=PAGE)
    return frames, costs
