"""The event logs of a CXL memory device (CXL r3.1 §8.2.9.2): Informational,
Warning, Failure, Fatal and Dynamic Capacity.

Each log holds up to its Identify size of 128-byte records, oldest first.
A record gets a non-zero 16-bit handle when it is logged.  A record that
does not fit is dropped and counted: the log's *overflow* state (count,
first and last overflow timestamps) is reported by Get Event Records with
the Overflow flag until the host has cleared the log.  Records stay until
Clear Event Records names their handles (oldest first; a handle that is not
in the log is an Invalid Handle error and clears nothing) or asks to clear
all.

Interrupts (Set Event Interrupt Policy): a log whose mode is MSI/MSI-X
asserts its vector when a record is added; the device keeps the Event Status
register (a bit per non-empty log) that the host's handler reads.  With the
FW mode the firmware, not the OS, is signalled (firmware-first error
handling); with no mode nobody is.  ``pending`` collects the logs whose
interrupt fired and was not serviced yet -- the kernel model services it.
"""

from __future__ import annotations

from dataclasses import field
from typing import TYPE_CHECKING

from cxlemu.util.lazy import lazy_module
from cxlemu.util.lazydc import dataclass

# the record codecs and the interrupt policy: imported when a record is logged
# or the policy used (loading a machine and listing it need neither)
E = lazy_module("cxlemu.hw.mailbox.events")

if TYPE_CHECKING:
    from cxlemu.hw.mailbox.events import EventInterruptPolicy, EventRecord

DEFAULT_LOG_SIZE = 64


@dataclass
class Log:
    """One event log of a device (CXL r3.1 8.2.9.2): records and overflow bookkeeping."""
    capacity: int = DEFAULT_LOG_SIZE
    records: list[EventRecord] = field(default_factory=list)
    overflow_count: int = 0
    first_overflow_ts: int = 0
    last_overflow_ts: int = 0
    setting: int = 0                 # interrupt setting byte (mode | vector << 4)

    @property
    def mode(self) -> int:
        return E.EventInterruptPolicy.mode(self.setting)


@dataclass
class EventLogs:
    """The device's five event logs (informational, warning, failure, fatal, dynamic capacity)."""
    sizes: tuple[int, int, int, int, int] = (DEFAULT_LOG_SIZE,) * 5
    logs: list[Log] = field(default_factory=list)
    next_handle: int = 1
    pending: int = 0                  # Event Status bits whose MSI fired and was not serviced
    fw_pending: int = 0               # logs signalled to the firmware (FW mode)

    def __post_init__(self) -> None:
        if not self.logs:
            self.logs = [Log(capacity=s) for s in self.sizes]

    def log(self, which: int) -> Log:
        return self.logs[which]

    @property
    def status(self) -> int:
        """The Event Status register: a bit per log that holds records."""
        return sum(1 << i for i, lg in enumerate(self.logs) if lg.records)

    def _handle(self) -> int:
        h = self.next_handle
        self.next_handle = h % 0xFFFF + 1
        return h

    def add(self, which: int, record: EventRecord, now_ns: int) -> EventRecord | None:
        """Log ``record``; None if the log is full (counted as overflow)."""
        lg = self.logs[which]
        if len(lg.records) >= lg.capacity:
            if not lg.overflow_count:
                lg.first_overflow_ts = now_ns
            lg.overflow_count = min(lg.overflow_count + 1, 0xFFFF)
            lg.last_overflow_ts = now_ns
            self._signal(which)
            return None
        rec = record.with_handle(self._handle())
        lg.records.append(rec)
        self._signal(which)
        return rec

    def _signal(self, which: int) -> None:
        mode = self.logs[which].mode
        if mode == E.InterruptMode.MSI_MSIX:
            self.pending |= 1 << which
        elif mode == E.InterruptMode.FW:
            self.fw_pending |= 1 << which

    def get(self, which: int, max_records: int) -> tuple[list[EventRecord], bool, Log]:
        lg = self.logs[which]
        return lg.records[:max_records], len(lg.records) > max_records, lg

    def clear(self, which: int, handles: tuple[int, ...], clear_all: bool) -> bool:
        """False (nothing cleared) when a handle is not in the log."""
        lg = self.logs[which]
        if clear_all:
            lg.records.clear()
        else:
            have = {r.header.handle for r in lg.records}
            if any(h not in have for h in handles):
                return False
            drop = set(handles)
            lg.records = [r for r in lg.records if r.header.handle not in drop]
        if not lg.records:
            lg.overflow_count = 0
            lg.first_overflow_ts = lg.last_overflow_ts = 0
        return True

    def policy(self) -> EventInterruptPolicy:
        s = [lg.setting for lg in self.logs]
        return E.EventInterruptPolicy(s[0], s[1], s[2], s[3], s[4])

    def set_policy(self, p: EventInterruptPolicy) -> None:
        vals = [p.info, p.warn, p.fail, p.fatal] + ([p.dcd] if p.dcd is not None else [])
        for i, v in enumerate(vals):
            mode = E.EventInterruptPolicy.mode(v)
            # the device assigns the MSI message number itself (vector 0 here)
            self.logs[i].setting = E.EventInterruptPolicy.setting(mode, 0) if mode != 3 else 0

    def take_pending(self) -> int:
        bits, self.pending = self.pending, 0
        return bits

    def take_fw_pending(self) -> int:
        bits, self.fw_pending = self.fw_pending, 0
        return bits
