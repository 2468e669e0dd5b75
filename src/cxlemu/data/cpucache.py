"""The CPU cache in front of persistent memory.

Stores made through a dax mapping stay "in the CPU cache" until they are
flushed (clwb + sfence, :meth:`DaxMapping.persist`).  Unflushed stores are
kept in a journal next to the media; they are visible to every later reader
(caches are coherent), written back on an orderly reboot, and lost on a power
failure unless the platform reports persistent CPU caches (eADR).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cxlemu.machine.store import Machine


def on_reset(machine: "Machine", power_loss: bool) -> None:
    """Called before a reset: write back or drop the unflushed stores."""
    journal = machine.path / "cpu_cache"
    if not journal.exists():
        return
    from cxlemu.data.dax_mapping import writeback_journal, drop_journal
    if power_loss and not machine.topology.boot.persistent_cpu_caches:
        drop_journal(machine)
    else:
        writeback_journal(machine)
