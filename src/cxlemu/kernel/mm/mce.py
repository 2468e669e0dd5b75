"""Machine checks raised by a task's own accesses: the CPU consumed poison
(arch/x86/kernel/cpu/mce/core.c: ``do_machine_check`` queues
``kill_me_maybe`` as task work; it runs ``memory_failure(pfn,
MF_ACTION_REQUIRED)`` for the page before the task returns to user space).

``kill_me_maybe`` then:

* memory_failure returned 0 (the page was recovered): the task returns to
  the faulting instruction.  If memory_failure sent it SIGBUS (anonymous or
  dirty data: ``BUS_MCEERR_AR``) it dies there; if the page was clean page
  cache it was dropped and the access simply faults the file page in again;
* ``-EHWPOISON`` (already poisoned; memory_failure sent SIGBUS itself):
  nothing more;
* anything else (a page memory_failure ignores or cannot handle):
  "Memory error not recovered" and ``force_sig(SIGBUS)``.

:func:`first_poisoned` is the vectorised check of a batch of accesses
against the pages whose media holds poison (one ``searchsorted`` over the
batch, skipped when no device has poison); :func:`machine_check` is the
handler for the first such access.  The caller (kernel/mm/fault.py
``handle_access``) stops the batch there: no access after it happened.

Stores are treated as loads: the engine's accesses are cache-line accesses
whose stores write part of a line, so the core reads the line for ownership
and consumes its poison (see docs/fidelity.md, RAS).
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

import numpy as np

from cxlemu.kernel.mm.memory_failure import EHWPOISON, MF_ACTION_REQUIRED, Mapper, Outcome

if TYPE_CHECKING:
    from cxlemu.kernel.sched.task import Task


def poisoned_frames(kernel) -> np.ndarray:
    """Sorted frame numbers of online frames over pages whose media holds
    poison (empty when nothing is poisoned or no frames exist)."""
    mm = kernel.mm
    failure = getattr(mm, "failure", None)
    pf = mm.vm.frames
    if failure is None or pf is None:
        return np.zeros(0, np.int64)
    bad = failure.media_poisoned_pfns()
    if not bad.size:
        return np.zeros(0, np.int64)
    ppb = pf.ppb
    bids, offs = np.divmod(bad.astype(np.int64), ppb)
    slot = np.full(bids.size, -1, np.int64)
    for b in np.unique(bids).tolist():          # per poisoned memory block, not per page
        s = pf.slot_of_block.get(int(b))
        if s is not None:
            slot[bids == b] = s
    ok = slot >= 0
    return np.sort(slot[ok] * ppb + offs[ok])


def first_poisoned(frames: np.ndarray, bad: np.ndarray) -> int:
    """Position of the first access in ``frames`` to a frame of ``bad``
    (sorted), or -1."""
    if not bad.size or not frames.size:
        return -1
    f = frames.astype(np.int64, copy=False)
    i = np.minimum(np.searchsorted(bad, f), bad.size - 1)
    hit = bad[i] == f
    if not hit.any():
        return -1
    return int(np.argmax(hit))


def machine_check(task: "Task", frame: int, vaddr: int) -> Outcome:
    """kill_me_maybe() for ``task``'s access at ``vaddr`` to ``frame``."""
    k = task.kernel
    mm = k.mm
    pf = mm.vm.frames
    pfn = int(pf.pfn(np.array([frame], np.int64))[0])
    k.log(f"mce: Uncorrected hardware memory error in user-access at {pfn << 12 | (vaddr & 0xfff):x}")
    current = Mapper(task.pid, task.comm, vaddr, task.mm.id if task.mm is not None else None)
    was = (k.current_pid, k.current_comm, k.current_cpu)
    k.set_current(task.pid, task.comm, task.cpu if isinstance(getattr(task, "cpu", None), int) else 0)
    try:                                        # task work: runs as the task (trace records carry it)
        out = mm.failure.memory_failure(pfn, MF_ACTION_REQUIRED, current)
    finally:
        k.set_current(*was)
    if out.ret == 0 or out.ret in (-EHWPOISON, -errno.EOPNOTSUPP):
        if out.ret == -EHWPOISON and task.alive:
            # memory_failure's SIGBUS for a page already poisoned
            task.kill("SIGBUS", f"SIGBUS (BUS_MCEERR_AR) at {vaddr:#x}: hardware memory corruption "
                                f"in pfn {pfn:#x}")
        return out
    k.log("mce: Memory error not recovered")
    if task.alive:
        task.kill("SIGBUS", f"SIGBUS (SI_KERNEL): memory error not recovered in pfn {pfn:#x}")
    return out
