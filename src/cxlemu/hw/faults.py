"""Faults a Type 3 device experiences on its own, and what it reports about
them, as the CXL r3.1 device rules say (§8.2.9.9.4 poison list, §8.2.9.2
event records, §8.2.9.9.3 health):

* ``media_error``: an uncorrectable error in [dpa, dpa+len): the lines are
  poisoned (source internal unless told otherwise), the poison list gets the
  records while it has room (else it overflows), and the device logs a
  General Media (or DRAM) Event Record in the Failure log with the
  Uncorrectable descriptor -- plus the Poison List Overflow descriptor when
  this error overflowed the list.  A *latent* error is only in the media:
  no record, no event, until a scan or a host access finds it.
* ``corrected_error``: a corrected error: nothing is poisoned; the device's
  corrected-error count for the partition goes up (which may cross the
  alert threshold, see hw/health.py) and an Informational General Media /
  DRAM record is logged.
* ``health``: hw/health.py.
* ``link_down`` / ``link_up``: the CXL link drops (accesses return all-ones,
  the mailbox does not answer) or retrains; a retrain resets the device
  (hot reset): decoders reset, volatile contents lost.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cxlemu.hw.mailbox import events as E
from cxlemu.hw.poison import SOURCE_INTERNAL

if TYPE_CHECKING:
    from cxlemu.hw.type3 import Type3Device


class FaultError(ValueError):
    """A fault that this device cannot have (bad address, length ...)."""


def _check_range(d: "Type3Device", dpa: int, length: int) -> None:
    if length <= 0:
        raise FaultError(f"length must be positive (got {length})")
    if length % 64:
        raise FaultError(f"length {length:#x} is not a multiple of 64 bytes")
    if dpa % 64:
        raise FaultError(f"DPA {dpa:#x} is not 64-byte aligned")
    if dpa < 0 or dpa + length > d.total_capacity:
        raise FaultError(f"[{dpa:#x}, {dpa + length:#x}) is outside the device "
                         f"(capacity {d.total_capacity:#x})")


def _record(d: "Type3Device", dpa: int, dram: bool, transaction: int, descriptor: int, log: int,
            flags: int = 0) -> E.EventRecord:
    dflags = E.DPA_VOLATILE if dpa < d.ram_size else 0
    if dram:
        body = E.DramEvent(dpa=dpa, dpa_flags=dflags, descriptor=descriptor, type=0, transaction_type=transaction)
    else:
        body = E.GeneralMediaEvent(dpa=dpa, dpa_flags=dflags, descriptor=descriptor,
                                   type=E.MediaEventType.ECC_ERROR, transaction_type=transaction)
    return E.EventRecord.build(body, severity=log, flags=flags, timestamp=d.timestamp())


def media_error(d: "Type3Device", dpa: int, length: int, *, source: int = SOURCE_INTERNAL, dram: bool = False,
                latent: bool = False, transaction: int = E.TransactionType.INTERNAL_MEDIA_SCRUB) -> list:
    """An uncorrectable media error appears; returns the new poison records."""
    _check_range(d, dpa, length)
    if not d.link_up:
        raise FaultError(f"{d.name}: the link is down (the device cannot report anything)")
    overflow_before = d.poison.overflow
    new = d.poison.add(dpa, length, source, d.timestamp())
    if latent:
        # the device has not noticed: nothing is listed, nothing logged
        for r in new:
            d.poison.listed[d.poison.start == r.dpa] = False
        return new
    desc = E.MediaDescriptor.UNCORRECTABLE
    if d.poison.overflow and not overflow_before:
        desc |= E.MediaDescriptor.POISON_LIST_OVERFLOW
    first = new[0].dpa if new else dpa - dpa % 64
    d.events.add(E.EventLog.FAIL, _record(d, first, dram, transaction, int(desc), E.EventLog.FAIL,
                                          E.RecordFlags.PERMANENT), d.clock_ns)
    return new


def corrected_error(d: "Type3Device", dpa: int, *, dram: bool = False, count: int = 1) -> None:
    """A corrected error at ``dpa`` (``count`` of them): counters and Info records."""
    _check_range(d, dpa - dpa % 64, 64)
    from cxlemu.hw import health as H
    key = "volatile_errors" if dpa < d.ram_size else "pmem_errors"
    total = getattr(d.health, key) + count
    d.events.add(E.EventLog.INFO, _record(d, dpa - dpa % 64, dram, E.TransactionType.HOST_READ, 0,
                                          E.EventLog.INFO), d.clock_ns)
    H.apply(d, {key: min(total, (1 << 32) - 1)}, d.clock_ns)


def link_down(d: "Type3Device") -> None:
    d.link_up = False


def link_up(d: "Type3Device") -> None:
    """The link retrains; the device went through a hot reset."""
    if d.link_up:
        return
    d.link_up = True
    if d.hdm:
        d.hdm.reset_all()
    d.poison.drop_injected(0, d.ram_size)
