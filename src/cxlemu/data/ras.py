"""What happens when a CPU loads poisoned CXL memory: the device returns
poison, the CPU raises a machine check, and the kernel runs memory_failure()
on the page (arch/x86 MCE handler -> mm/memory-failure.c) with
MF_ACTION_REQUIRED for the task that touched it.

:func:`cpu_access` is that path for a batch of loads by one task: the lines
are checked against the devices' poison in one vectorised pass (no media is
read), and memory_failure runs once per poisoned page.  The workload
engine's accesses (by page frame, not HPA) take the same path through
kernel/mm/mce.py; device-DAX mappings raise
:class:`~cxlemu.data.dax_mapping.MachineCheck` instead (their own checked
loads).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from cxlemu.kernel.mm.memory_failure import MF_ACTION_REQUIRED, Mapper, Outcome

if TYPE_CHECKING:
    from cxlemu.data.datapath import HpaSpace
    from cxlemu.kernel.kernel import Kernel

PAGE_SHIFT = 12


def cpu_access(kernel: "Kernel", space: "HpaSpace", hpas, task: Mapper, size: int = 64) -> list[Outcome]:
    """Loads by ``task`` of the lines at ``hpas``: one memory_failure per
    poisoned page (in address order), returning the outcomes (with the SIGBUS
    each one sent).  Nothing happens for clean lines."""
    h = np.asarray(hpas, dtype=np.uint64)
    if not h.size:
        return []
    bad = space.poisoned(h, size)
    if not bad.any():
        return []
    pfns = np.unique((h[bad] >> np.uint64(PAGE_SHIFT)).astype(np.int64))
    return [kernel.mm.failure.memory_failure(int(p), MF_ACTION_REQUIRED, task) for p in pfns.tolist()]
