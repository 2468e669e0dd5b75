"""Binary codecs for the Events command set (CXL r3.1 §8.2.9.2, opcodes
01xxh) and the event records a memory device logs (§8.2.9.2.1).

Every record is 128 bytes: a 48-byte Common Event Record header (r3.1
Table 8-43: UUID, length, 3 bytes of flags with the severity in bits 1:0,
handle, related handle, timestamp, maintenance operation class/subclass)
followed by 80 bytes of record data:

=============================  ================================================
class                          spec table (r3.1)
=============================  ================================================
EventRecordHeader              Table 8-43 "Common Event Record Format"
GeneralMediaEvent              Table 8-45 "General Media Event Record"
DramEvent                      Table 8-46 "DRAM Event Record"
MemoryModuleEvent              Table 8-47 "Memory Module Event Record"
GetEventRecordsOutput          Table 8-50 "Get Event Records Output Payload"
ClearEventRecordsInput         Table 8-51 "Clear Event Records Input Payload"
EventInterruptPolicy           Table 8-52/8-53 "Get/Set Event Interrupt Policy"
ScanMediaInput                 §8.2.9.9.4.5 "Scan Media Input Payload"
ScanMediaCapsInput/Output      §8.2.9.9.4.4 "Get Scan Media Capabilities"
GetScanMediaResultsOutput      §8.2.9.9.4.6 "Get Scan Media Results Output"
=============================  ================================================

The layouts were checked against the kernel's ``struct cxl_event_gen_media``,
``cxl_event_dram``, ``cxl_event_mem_module``, ``cxl_get_event_payload`` and
``cxl_mbox_clear_event_payload`` (include/cxl/event.h, drivers/cxl/cxlmem.h)
and QEMU's hw/cxl/cxl-events.c; nothing was copied.  UUIDs travel in
RFC 4122 byte order, all integers little endian, the 3-byte fields as
24-bit little-endian integers.
"""

from __future__ import annotations

import struct
import uuid
from dataclasses import field
from enum import IntEnum, IntFlag
from typing import ClassVar, Self

from cxlemu.util.lazy import lazy_module
from cxlemu.util.lazydc import dataclass

P = lazy_module("cxlemu.hw.mailbox.payloads")   # PayloadError, PoisonRecord: on first use

RECORD_SIZE = 0x80
HEADER_SIZE = 0x30
DATA_SIZE = RECORD_SIZE - HEADER_SIZE

GENERAL_MEDIA_UUID = uuid.UUID("fbcd0a77-c260-417f-85a9-088b1621eba6")
DRAM_UUID = uuid.UUID("601dcbb3-9c06-4eab-b8af-4e9bfb5c9624")
MEMORY_MODULE_UUID = uuid.UUID("fe927475-dd59-4339-a586-79bab113b774")
DYNAMIC_CAPACITY_UUID = uuid.UUID("ca95afa7-f183-4018-8c2f-95268e101a2a")


class EventLog(IntEnum):
    """Event Log field of Get/Clear Event Records (and enum cxl_event_log_type)."""

    INFO = 0
    WARN = 1
    FAIL = 2
    FATAL = 3
    DYNAMIC_CAPACITY = 4


#: names as the kernel's cxl_event_log_type_str() prints them
LOG_NAMES = {EventLog.INFO: "Informational", EventLog.WARN: "Warning", EventLog.FAIL: "Failure",
             EventLog.FATAL: "Fatal", EventLog.DYNAMIC_CAPACITY: "Dynamic Capacity"}


class EventStatus(IntFlag):
    """Event Status register (§8.2.8.3.1): a bit per log holding records."""

    INFO = 1 << 0
    WARN = 1 << 1
    FAIL = 1 << 2
    FATAL = 1 << 3
    DYNAMIC_CAPACITY = 1 << 4


class RecordFlags(IntFlag):
    """Event Record Flags bits above the severity (bits 1:0)."""

    PERMANENT = 1 << 2
    MAINTENANCE_NEEDED = 1 << 3
    PERFORMANCE_DEGRADED = 1 << 4
    HW_REPLACEMENT_NEEDED = 1 << 5


class MediaDescriptor(IntFlag):
    """Memory Event Descriptor of general media / DRAM records."""

    UNCORRECTABLE = 1 << 0
    THRESHOLD = 1 << 1
    POISON_LIST_OVERFLOW = 1 << 2


class MediaEventType(IntEnum):
    """General media "Memory Event Type" (r3.1 Table 8-45)."""

    ECC_ERROR = 0x00
    INVALID_ADDRESS = 0x01
    DATA_PATH_ERROR = 0x02


class TransactionType(IntEnum):
    UNKNOWN = 0x00
    HOST_READ = 0x01
    HOST_WRITE = 0x02
    HOST_SCAN_MEDIA = 0x03
    HOST_INJECT_POISON = 0x04
    INTERNAL_MEDIA_SCRUB = 0x05
    INTERNAL_MEDIA_MANAGEMENT = 0x06


class ModuleEventType(IntEnum):
    """Memory Module "Device Event Type" (r3.1 Table 8-47)."""

    HEALTH_STATUS_CHANGE = 0x00
    MEDIA_STATUS_CHANGE = 0x01
    LIFE_USED_CHANGE = 0x02
    TEMPERATURE_CHANGE = 0x03
    DATA_PATH_ERROR = 0x04
    LSA_ERROR = 0x05


#: Physical Address field flag bits of media records
DPA_VOLATILE = 1 << 0
DPA_NOT_REPAIRABLE = 1 << 1
DPA_MASK = ~0x3F & ((1 << 64) - 1)


def _u24(raw: bytes, off: int) -> int:
    return int.from_bytes(raw[off:off + 3], "little")


def _p24(v: int, what: str) -> bytes:
    if not 0 <= v < 1 << 24:
        raise P.PayloadError(f"{what}={v} does not fit 24 bits")
    return v.to_bytes(3, "little")


@dataclass(frozen=True, slots=True)
class EventRecordHeader:
    """Common Event Record header (the first 0x30 bytes of every record)."""

    uuid: uuid.UUID
    severity: int = EventLog.INFO        # bits 1:0 of the flags
    flags: int = 0                       # RecordFlags (bits 23:2)
    handle: int = 0
    related_handle: int = 0
    timestamp: int = 0
    maint_op_class: int = 0
    maint_op_sub_class: int = 0
    length: int = RECORD_SIZE

    _FMT: ClassVar[str] = "<16sB3sHHQBB14x"

    @property
    def raw_flags(self) -> int:
        return (self.severity & 0x3) | (self.flags & ~0x3)

    def encode(self) -> bytes:
        try:
            return struct.pack(self._FMT, self.uuid.bytes, self.length, _p24(self.raw_flags, "flags"),
                               self.handle, self.related_handle, self.timestamp, self.maint_op_class,
                               self.maint_op_sub_class)
        except struct.error as e:
            raise P.PayloadError(f"Event record header: {e}") from None

    @classmethod
    def decode(cls, raw: bytes) -> Self:
        raw = bytes(raw)
        if len(raw) < HEADER_SIZE:
            raise P.PayloadError(f"Event record header: {len(raw):#x} bytes < 0x30")
        u, length, fl, handle, rel, ts, moc, mosc = struct.unpack_from(cls._FMT, raw)
        f = int.from_bytes(fl, "little")
        return cls(uuid.UUID(bytes=u), f & 0x3, f & ~0x3, handle, rel, ts, moc, mosc, length)


@dataclass(frozen=True, slots=True)
class GeneralMediaEvent:
    """General Media Event Record data (after the header)."""

    dpa: int                              # 64-byte aligned
    dpa_flags: int = 0                    # DPA_VOLATILE | DPA_NOT_REPAIRABLE
    descriptor: int = 0                   # MediaDescriptor
    type: int = MediaEventType.ECC_ERROR
    transaction_type: int = TransactionType.UNKNOWN
    validity_flags: int = 0
    channel: int = 0
    rank: int = 0
    device: int = 0
    component_id: bytes = bytes(16)
    cme_threshold_ev_flags: int = 0
    cme_count: int = 0
    sub_type: int = 0

    UUID: ClassVar[uuid.UUID] = GENERAL_MEDIA_UUID
    _FMT: ClassVar[str] = "<QBBBHBB3s16sB3sB41x"

    def encode_data(self) -> bytes:
        if self.dpa % 64:
            raise P.PayloadError(f"General media event: dpa {self.dpa:#x} is not 64-byte aligned")
        try:
            return struct.pack(self._FMT, self.dpa | (self.dpa_flags & 0x3), self.descriptor, self.type,
                               self.transaction_type, self.validity_flags, self.channel, self.rank,
                               _p24(self.device, "device"), bytes(self.component_id).ljust(16, b"\0")[:16],
                               self.cme_threshold_ev_flags, _p24(self.cme_count, "cme_count"), self.sub_type)
        except struct.error as e:
            raise P.PayloadError(f"General media event: {e}") from None

    @classmethod
    def decode_data(cls, raw: bytes) -> Self:
        (pa, desc, typ, tt, vf, ch, rank, dev, comp, cmef, cmec, sub) = struct.unpack(cls._FMT, bytes(raw))
        return cls(pa & DPA_MASK, pa & 0x3, desc, typ, tt, vf, ch, rank, int.from_bytes(dev, "little"),
                   comp, cmef, int.from_bytes(cmec, "little"), sub)


@dataclass(frozen=True, slots=True)
class DramEvent:
    """DRAM Event Record data."""

    dpa: int
    dpa_flags: int = 0
    descriptor: int = 0
    type: int = 0
    transaction_type: int = TransactionType.UNKNOWN
    validity_flags: int = 0
    channel: int = 0
    rank: int = 0
    nibble_mask: int = 0
    bank_group: int = 0
    bank: int = 0
    row: int = 0
    column: int = 0
    correction_mask: bytes = bytes(32)
    component_id: bytes = bytes(16)
    sub_channel: int = 0
    cme_threshold_ev_flags: int = 0
    cvme_count: int = 0
    sub_type: int = 0

    UUID: ClassVar[uuid.UUID] = DRAM_UUID
    _FMT: ClassVar[str] = "<QBBBHBB3sBB3sH32s16sBB3sBx"

    def encode_data(self) -> bytes:
        if self.dpa % 64:
            raise P.PayloadError(f"DRAM event: dpa {self.dpa:#x} is not 64-byte aligned")
        try:
            return struct.pack(self._FMT, self.dpa | (self.dpa_flags & 0x3), self.descriptor, self.type,
                               self.transaction_type, self.validity_flags, self.channel, self.rank,
                               _p24(self.nibble_mask, "nibble_mask"), self.bank_group, self.bank,
                               _p24(self.row, "row"), self.column, bytes(self.correction_mask).ljust(32, b"\0")[:32],
                               bytes(self.component_id).ljust(16, b"\0")[:16], self.sub_channel,
                               self.cme_threshold_ev_flags, _p24(self.cvme_count, "cvme_count"), self.sub_type)
        except struct.error as e:
            raise P.PayloadError(f"DRAM event: {e}") from None

    @classmethod
    def decode_data(cls, raw: bytes) -> Self:
        (pa, desc, typ, tt, vf, ch, rank, nib, bg, bank, row, col, cor, comp, subch, cmef, cvme,
         sub) = struct.unpack(cls._FMT, bytes(raw))
        return cls(pa & DPA_MASK, pa & 0x3, desc, typ, tt, vf, ch, rank, int.from_bytes(nib, "little"), bg, bank,
                   int.from_bytes(row, "little"), col, cor, comp, subch, cmef, int.from_bytes(cvme, "little"), sub)


@dataclass(frozen=True, slots=True)
class MemoryModuleEvent:
    """Memory Module Event Record data: the event type and a Get Health Info
    snapshot (0x12 bytes, the Get Health Info output layout)."""

    event_type: int
    health_info: bytes = bytes(0x12)
    validity_flags: int = 0
    component_id: bytes = bytes(16)
    event_sub_type: int = 0

    UUID: ClassVar[uuid.UUID] = MEMORY_MODULE_UUID
    _FMT: ClassVar[str] = "<B18sH16sB42x"

    def encode_data(self) -> bytes:
        if len(self.health_info) != 0x12:
            raise P.PayloadError("Memory module event: health info must be 0x12 bytes")
        try:
            return struct.pack(self._FMT, self.event_type, bytes(self.health_info), self.validity_flags,
                               bytes(self.component_id).ljust(16, b"\0")[:16], self.event_sub_type)
        except struct.error as e:
            raise P.PayloadError(f"Memory module event: {e}") from None

    @classmethod
    def decode_data(cls, raw: bytes) -> Self:
        t, hi, vf, comp, sub = struct.unpack(cls._FMT, bytes(raw))
        return cls(t, hi, vf, comp, sub)


RECORD_TYPES = {c.UUID: c for c in (GeneralMediaEvent, DramEvent, MemoryModuleEvent)}


@dataclass(frozen=True, slots=True)
class EventRecord:
    """A whole 128-byte record: header plus type-specific data (raw bytes for
    unknown UUIDs, as the kernel's cxl_generic_event sees them)."""

    header: EventRecordHeader
    data: bytes = bytes(DATA_SIZE)

    @classmethod
    def build(cls, body, severity: int, flags: int = 0, timestamp: int = 0) -> Self:
        return cls(EventRecordHeader(body.UUID, severity, flags, timestamp=timestamp), body.encode_data())

    def with_handle(self, handle: int) -> "EventRecord":
        h = self.header
        return EventRecord(EventRecordHeader(h.uuid, h.severity, h.flags, handle, h.related_handle, h.timestamp,
                                             h.maint_op_class, h.maint_op_sub_class, h.length), self.data)

    def body(self):
        cls = RECORD_TYPES.get(self.header.uuid)
        return cls.decode_data(self.data) if cls is not None else None

    def encode(self) -> bytes:
        if len(self.data) != DATA_SIZE:
            raise P.PayloadError(f"Event record data must be {DATA_SIZE:#x} bytes")
        return self.header.encode() + bytes(self.data)

    @classmethod
    def decode(cls, raw: bytes) -> Self:
        raw = bytes(raw)
        if len(raw) != RECORD_SIZE:
            raise P.PayloadError(f"Event record: {len(raw):#x} bytes, expected 0x80")
        return cls(EventRecordHeader.decode(raw[:HEADER_SIZE]), raw[HEADER_SIZE:])


class GetEventFlags(IntFlag):
    OVERFLOW = 1 << 0
    MORE = 1 << 1


@dataclass(frozen=True, slots=True)
class GetEventRecordsOutput:
    flags: int = 0
    overflow_err_count: int = 0
    first_overflow_ts: int = 0
    last_overflow_ts: int = 0
    records: tuple[EventRecord, ...] = ()

    _HDR: ClassVar[str] = "<BxHQQH10x"
    HEADER_SIZE: ClassVar[int] = 0x20

    @classmethod
    def max_records(cls, payload_size: int) -> int:
        return max(0, min(0xFFFF, (payload_size - cls.HEADER_SIZE) // RECORD_SIZE))

    def encode(self) -> bytes:
        try:
            head = struct.pack(self._HDR, self.flags, self.overflow_err_count, self.first_overflow_ts,
                               self.last_overflow_ts, len(self.records))
        except struct.error as e:
            raise P.PayloadError(f"Get Event Records output: {e}") from None
        return head + b"".join(r.encode() for r in self.records)

    @classmethod
    def decode(cls, raw: bytes) -> Self:
        raw = bytes(raw)
        if len(raw) < cls.HEADER_SIZE:
            raise P.PayloadError(f"Get Event Records output: {len(raw):#x} bytes < header")
        flags, cnt, first, last, nrec = struct.unpack_from(cls._HDR, raw)
        if len(raw) < cls.HEADER_SIZE + nrec * RECORD_SIZE:
            raise P.PayloadError(f"Get Event Records output: {nrec} records do not fit {len(raw):#x} bytes")
        recs = tuple(EventRecord.decode(raw[cls.HEADER_SIZE + i * RECORD_SIZE:cls.HEADER_SIZE + (i + 1) * RECORD_SIZE])
                     for i in range(nrec))
        return cls(flags, cnt, first, last, recs)


CLEAR_ALL_EVENTS = 1 << 0


@dataclass(frozen=True, slots=True)
class ClearEventRecordsInput:
    log: int
    handles: tuple[int, ...] = ()
    flags: int = 0

    _HDR: ClassVar[str] = "<BBB3x"
    HEADER_SIZE: ClassVar[int] = 6

    def encode(self) -> bytes:
        if len(self.handles) > 0xFF:
            raise P.PayloadError("Clear Event Records: at most 255 handles")
        try:
            return struct.pack(self._HDR, self.log, self.flags, len(self.handles)) + \
                b"".join(struct.pack("<H", h) for h in self.handles)
        except struct.error as e:
            raise P.PayloadError(f"Clear Event Records: {e}") from None

    @classmethod
    def decode(cls, raw: bytes) -> Self:
        raw = bytes(raw)
        if len(raw) < cls.HEADER_SIZE:
            raise P.PayloadError(f"Clear Event Records: {len(raw):#x} bytes < 6")
        log, flags, n = struct.unpack_from(cls._HDR, raw)
        if len(raw) < cls.HEADER_SIZE + 2 * n:
            raise P.PayloadError(f"Clear Event Records: {n} handles do not fit {len(raw)} bytes")
        handles = tuple(struct.unpack_from("<H", raw, cls.HEADER_SIZE + 2 * i)[0] for i in range(n))
        return cls(log, handles, flags)


class InterruptMode(IntEnum):
    NONE = 0
    MSI_MSIX = 1
    FW = 2


@dataclass(frozen=True, slots=True)
class EventInterruptPolicy:
    """Per-log interrupt settings: mode in bits 1:0, message number in 7:4."""

    info: int = 0
    warn: int = 0
    fail: int = 0
    fatal: int = 0
    dcd: int | None = None

    SIZE_MIN: ClassVar[int] = 4
    SIZE: ClassVar[int] = 5

    @staticmethod
    def setting(mode: int, vector: int = 0) -> int:
        return (mode & 0x3) | ((vector & 0xF) << 4)

    @staticmethod
    def mode(setting: int) -> int:
        return setting & 0x3

    def for_log(self, log: int) -> int:
        return (self.info, self.warn, self.fail, self.fatal, self.dcd or 0)[log]

    def encode(self) -> bytes:
        vals = [self.info, self.warn, self.fail, self.fatal] + ([self.dcd] if self.dcd is not None else [])
        if not all(0 <= v <= 0xFF for v in vals):
            raise P.PayloadError("Event interrupt policy: settings are bytes")
        return bytes(vals)

    @classmethod
    def decode(cls, raw: bytes) -> Self:
        raw = bytes(raw)
        if len(raw) not in (cls.SIZE_MIN, cls.SIZE):
            raise P.PayloadError(f"Event interrupt policy: {len(raw)} bytes, expected 4 or 5")
        return cls(raw[0], raw[1], raw[2], raw[3], raw[4] if len(raw) == 5 else None)


# ---- Scan Media (43xxh) ------------------------------------------------------------------

SCAN_NO_EVENT_LOG = 1 << 0


@dataclass(frozen=True, slots=True)
class ScanMediaInput:
    """Scan Media / Get Scan Media Capabilities input: DPA and length in bytes
    (64-byte units on the wire); Scan Media adds one flags byte."""

    address: int = 0
    length: int = 0
    flags: int | None = 0

    def encode(self) -> bytes:
        if self.address % 64 or self.length % 64 or self.length < 0:
            raise P.PayloadError("Scan Media: address and length must be multiples of 64")
        body = struct.pack("<QQ", self.address, self.length // 64)
        return body + (bytes([self.flags]) if self.flags is not None else b"")

    @classmethod
    def decode(cls, raw: bytes) -> Self:
        raw = bytes(raw)
        if len(raw) not in (0x10, 0x11):
            raise P.PayloadError(f"Scan Media: payload is {len(raw):#x} bytes, expected 0x10 or 0x11")
        addr, units = struct.unpack_from("<QQ", raw)
        return cls(addr & ~0x3F, units * 64, raw[16] if len(raw) == 0x11 else None)


class ScanResultFlags(IntFlag):
    MORE = 1 << 0
    STOPPED_PREMATURELY = 1 << 1


@dataclass(frozen=True, slots=True)
class GetScanMediaResultsOutput:
    restart_address: int = 0
    restart_length: int = 0
    flags: int = 0
    records: "tuple[P.PoisonRecord, ...]" = field(default_factory=tuple)

    _HDR: ClassVar[str] = "<QQBxH12x"
    HEADER_SIZE: ClassVar[int] = 0x20

    @classmethod
    def max_records(cls, payload_size: int) -> int:
        return max(0, (payload_size - cls.HEADER_SIZE) // P.PoisonRecord.SIZE)

    def encode(self) -> bytes:
        head = struct.pack(self._HDR, self.restart_address, self.restart_length // 64, self.flags,
                           len(self.records))
        return head + b"".join(r.encode() for r in self.records)

    @classmethod
    def decode(cls, raw: bytes) -> Self:
        raw = bytes(raw)
        if len(raw) < cls.HEADER_SIZE:
            raise P.PayloadError("Get Scan Media Results: short payload")
        addr, units, flags, n = struct.unpack_from(cls._HDR, raw)
        if len(raw) != cls.HEADER_SIZE + n * P.PoisonRecord.SIZE:
            raise P.PayloadError("Get Scan Media Results: record count does not match the length")
        recs = tuple(P.PoisonRecord.decode(raw[cls.HEADER_SIZE + i * 16:cls.HEADER_SIZE + (i + 1) * 16])
                     for i in range(n))
        return cls(addr, units * 64, flags, recs)
