"""The page-state provider memory_failure() uses (kernel/mm/hwpoison.py):
what a frame holds, and retiring it the way memory-failure.c does."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from cxlemu.kernel.mm import procfs
from cxlemu.kernel.mm.frames import OWNER_FREE, PG_HWPOISON
from cxlemu.kernel.mm.hwpoison import FramesProvider
from cxlemu.kernel.mm.mmap import PTE_HWPOISON
from cxlemu.kernel.syscalls import Process

from .support import tiered
from .test_engine import check_invariants

PAGE = 4096


def _setup():
    b = tiered("512M", "2G")
    k = b.kernel
    p = Process.new(k, "victim")
    anon = p.mmap(16 * PAGE, "data")
    f = p.mmap(16 * PAGE, "cache", kind="file")
    mm = p.task.mm
    va, vf = mm.vpn_of_addr(anon), mm.vpn_of_addr(f)
    vp = np.r_[np.arange(va, va + 16), np.arange(vf, vf + 16)]
    p.task.access(vp, np.zeros(vp.size, np.bool_))
    return k, p, va, vf


def test_anonymous_page_is_unmapped_and_its_task_killed():
    k, p, va, _ = _setup()
    pv = FramesProvider(k.mm)
    pf = k.mm.vm.frames
    f = int(p.task.mm.pt[va + 3])
    pfn = int(pf.pfn(np.array([f]))[0])
    info = pv.hwpoison_page_info(pfn)
    assert info.kind == "anon" and info.dirty
    assert [(m.pid, m.comm, m.vaddr) for m in info.mappers] == [(p.pid, "victim", p.task.mm.vpn_addr(va + 3))]
    free0 = procfs.mem_counts(k.mm, int(pf.node[np.array([f])][0]))["free"]
    # memory_failure() without a kill (early kill off, nobody touched it): unmapped, retired
    pv.hwpoison_isolate(pfn, info, [])
    assert int(p.task.mm.pt[va + 3]) == PTE_HWPOISON
    assert pf.flags[f] & PG_HWPOISON and not pf.free[f]
    # the frame counts as retired on its node (/proc/meminfo's HardwareCorrupted counts
    # what memory_failure() marked: this isolation bypassed it, see test_mce.py for the whole path)
    assert procfs.mem_counts(k.mm, int(pf.node[np.array([f])][0]))["hwpoison"] == 1
    check_invariants(k)
    # the page left the process (not freed: retired)
    assert procfs.mem_counts(k.mm, int(pf.node[np.array([f])][0]))["free"] == free0
    # the next access is a machine check: SIGBUS
    out = p.task.access(np.array([va + 2, va + 3]), None)
    assert out.stop == 1 and out.signal == "SIGBUS" and not p.alive
    # the process's other pages are free again; the poisoned frame stays out of use
    assert not pf.free[f] and pf.flags[f] & PG_HWPOISON
    check_invariants(k)
    assert pv.hwpoison_page_info(pfn) is None       # a retired frame: the caller's own records say it


def test_kill_list_sends_sigbus():
    k, p, va, _ = _setup()
    pv = FramesProvider(k.mm)
    pf = k.mm.vm.frames
    pfn = int(pf.pfn(np.array([int(p.task.mm.pt[va])]))[0])
    info = pv.hwpoison_page_info(pfn)
    pv.hwpoison_isolate(pfn, info, [SimpleNamespace(pid=p.pid, reason="SIGBUS (BUS_MCEERR_AR)")])
    assert not p.alive and p.task.exit_signal == "SIGBUS"
    check_invariants(k)


def test_clean_file_page_is_dropped_and_read_again():
    k, p, _, vf = _setup()
    pv = FramesProvider(k.mm)
    pf = k.mm.vm.frames
    f = int(p.task.mm.pt[vf + 5])
    pfn = int(pf.pfn(np.array([f]))[0])
    info = pv.hwpoison_page_info(pfn)
    assert info.kind == "file" and not info.dirty and info.mappers[0].pid == p.pid
    pv.hwpoison_isolate(pfn, info, [])
    assert int(p.task.mm.pt[vf + 5]) == -1
    maj = k.mm.vm.vmstat.events.get("pgmajfault", 0)
    out = p.task.access(np.array([vf + 5]), None)
    assert p.alive and out.stop < 0 and int(out.frames[0]) != f
    assert k.mm.vm.vmstat.events.get("pgmajfault", 0) == maj + 1
    check_invariants(k)


def test_free_page_is_taken_off_the_free_lists():
    k, p, _, _ = _setup()
    pv = FramesProvider(k.mm)
    pf = k.mm.vm.frames
    f = int(np.flatnonzero(pf.free & (pf.owner == OWNER_FREE))[-1])
    pfn = int(pf.pfn(np.array([f]))[0])
    assert pv.hwpoison_page_info(pfn).kind == "free"
    blk = k.mm.blocks[pfn // k.mm.pages_per_block]
    free0 = blk.free
    pv.hwpoison_isolate(pfn, pv.hwpoison_page_info(pfn), [])
    assert not pf.free[f] and blk.hwpoison == 1 and blk.free == free0 - 1
    check_invariants(k)
    # never handed out again: fill the rest of the memory
    p.exit(0)
    q = Process.new(k, "filler")
    a = q.mmap(2 << 30, "all")
    mm = q.task.mm
    v0 = mm.vpn_of_addr(a)
    q.task.access(np.arange(v0, v0 + (2 << 30) // PAGE), None)
    assert k.mm.vm.frames is None or not np.any(k.mm.vm.frames.owner[f] >= 0)
