"""``open_dax``: a dax device of a stored machine, mapped (the Python
counterpart of open(2) + mmap(2) of /dev/daxX.Y; data/dax_mapping.py has
the mapping itself and docs/devdax.md the design)."""

from __future__ import annotations

import contextlib
from typing import Iterator

from cxlemu.data.dax_mapping import DaxDevice, DaxMapping


@contextlib.contextmanager
def open_dax(machine: str, dev: str = "/dev/dax0.0", length: int | None = None, offset: int = 0,
             store=None, populate: bool = False) -> Iterator[DaxMapping]:
    """Map ``dev`` (/dev/daxX.Y or daxX.Y) of machine ``machine`` and yield
    the :class:`~cxlemu.data.dax_mapping.DaxMapping`; unmapped on exit,
    stores not flushed by then stay in the CPU cache.  The machine is locked
    only while the mapping is set up."""
    from cxlemu.machine.store import Store
    st = store or Store()
    with st.open(machine, write=False) as m:
        d = DaxDevice.open(m.backend(), dev)
        n = d.size - offset if length is None else length
        d.check_mmap(n, offset)
        lay = d.layout(offset, n)
    mapping = DaxMapping(lay, populate=populate, dev=d)

    def machine_check(pfn: int) -> None:          # the MCE handler runs in the machine
        from cxlemu.kernel.mm.memory_failure import MF_ACTION_REQUIRED
        with st.open(machine) as mm:
            mm.kernel.mm.failure.memory_failure(pfn, MF_ACTION_REQUIRED)
            mm.kernel.dirty = True
    mapping.on_machine_check = machine_check
    try:
        yield mapping
    finally:
        mapping.close()
