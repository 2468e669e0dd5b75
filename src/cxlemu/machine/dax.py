"""A machine's device-DAX device, mapped from Python (the convenience the
README and the demo use; the mapping itself is data/dax_mapping.py).

It opens the machine by name, so it lives on the machine floor: the data
path below it knows nothing of machines in a store.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

from cxlemu.data.dax_mapping import DaxDevice, DaxMapping
from cxlemu.machine.store import Store


@contextlib.contextmanager
def open_dax(machine: str, dev: str = "/dev/dax0.0", length: int | None = None, offset: int = 0,
             store: Store | None = None, populate: bool = False) -> Iterator[DaxMapping]:
    """Open machine ``machine`` (holding its lock), map ``dev`` (/dev/daxX.Y
    or daxX.Y) and yield the :class:`DaxMapping`; unmapped on exit, stores
    not flushed by then stay in the CPU cache (the journal)."""
    st = store or Store()
    with st.open(machine) as m:
        d = DaxDevice.open(m.backend(), dev)
        mapping = d.mmap(length, offset, populate=populate)
        try:
            yield mapping
        finally:
            mapping.close()
