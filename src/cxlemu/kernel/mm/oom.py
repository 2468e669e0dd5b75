"""The OOM killer (mm/oom_kill.c): when an allocation cannot be satisfied
after reclaim, kill the task with the highest badness (resident pages +
swap entries + page tables), log as the kernel does, free its memory."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from cxlemu.kernel.mm.mmap import MmStruct

if TYPE_CHECKING:
    from cxlemu.kernel.mm.vmstate import VmState


def badness(mm: MmStruct) -> int:
    pt = mm.pt
    rss = int(np.count_nonzero(pt >= 0))
    swapents = int(np.count_nonzero(pt <= -2))
    pgtables = -(-mm.total_vm // 512)
    return rss + swapents + pgtables


def rss_kb(vm: "VmState", mm: MmStruct) -> tuple[int, int, int]:
    """(anon, file, shmem) resident kB."""
    from cxlemu.kernel.mm.frames import PG_ANON, PG_SWAPBACKED
    pf = vm.frames
    e = mm.pt[mm.pt >= 0] & ((1 << 30) - 1)
    if not e.size or pf is None:
        return 0, 0, 0
    fl = pf.flags[e.astype(np.int64)]
    is_anon = (fl & PG_ANON) != 0
    anon = int(np.count_nonzero(is_anon))
    shmem = int(np.count_nonzero(((fl & PG_SWAPBACKED) != 0) & ~is_anon))
    return anon * 4, (e.size - anon - shmem) * 4, shmem * 4


def out_of_memory(vm: "VmState", nodemask, task=None):
    """Kill the worst task; return it (None if there is none to kill)."""
    kernel = vm.kernel
    sched = kernel.sched
    cands = [t for t in sched.live_tasks() if t.mm is not None]
    if not cands:
        return None
    victim = max(cands, key=lambda t: (badness(t.mm), t.pid))
    from cxlemu.kernel.mm.numa import nodelist
    mems = nodelist(kernel.mm.numa.state_nodes("memory"))
    constraint = "CONSTRAINT_MEMORY_POLICY" if nodemask else "CONSTRAINT_NONE"
    nm = nodelist(nodemask) if nodemask else "(null)"
    who = task.comm if task is not None else victim.comm
    kernel.log(f"{who} invoked oom-killer: gfp_mask=0x140dca(GFP_HIGHUSER_MOVABLE|__GFP_COMP|__GFP_ZERO), "
               f"order=0, oom_score_adj=0")
    kernel.log(f"oom-kill:constraint={constraint},nodemask={nm},cpuset=/,mems_allowed={mems},global_oom,"
               f"task_memcg=/,task={victim.comm},pid={victim.pid},uid=0")
    anon, file, shmem = rss_kb(vm, victim.mm)
    kernel.log(f"Out of memory: Killed process {victim.pid} ({victim.comm}) total-vm:{victim.mm.total_vm * 4}kB, "
               f"anon-rss:{anon}kB, file-rss:{file}kB, shmem-rss:{shmem}kB, UID:0 "
               f"pgtables:{-(-victim.mm.total_vm // 512) * 4}kB oom_score_adj:0")
    vm.vmstat.count("oom_kill")
    victim.kill("SIGKILL", "Out of memory", oom=True)
    return victim
