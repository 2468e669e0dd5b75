"""Binary codecs for Dynamic Capacity: the memory-device mailbox commands
(CXL r3.1 §8.2.9.9.9), the Dynamic Capacity event record (§8.2.9.2.1.6) and
the FM API commands that start an add or a release (§7.6.7.6.5/6).

Like :mod:`cxlemu.hw.mailbox.payloads`, every class is a frozen dataclass with
``encode() -> bytes`` and ``decode(raw) -> Self``; ``decode`` checks lengths
(fixed part and the element count against the payload) and raises
:class:`~cxlemu.hw.mailbox.payloads.PayloadError`.  All integers are little
endian.  Offsets were checked against the spec tables as quoted by QEMU's
``hw/cxl/cxl-mailbox-utils.c`` / ``include/hw/cxl/cxl_device.h`` and the
Linux DCD series (``include/cxl/event.h`` ``struct cxl_extent``,
``struct cxl_event_dcd``; ``drivers/cxl/cxlmem.h``); nothing was copied.

=============================  =================================================
class                          spec table (CXL r3.1)
=============================  =================================================
GetDcConfigInput               Table 8-164 "Get Dynamic Capacity Configuration
                               Input Payload" (4800h): region count, start id
GetDcConfigOutput /            Tables 8-165/8-166: regions returned, then per
DcRegionConfig                 region base, decode length (256 MiB units),
                               length, block size, DSMAD handle, flags; then
                               extents/tags supported and available
GetDcExtentListInput           Table 8-167 (4801h): extent count, start index
GetDcExtentListOutput          Table 8-168: returned, total, generation number
DcExtent                       Table 8-51 "Dynamic Capacity Extent": start DPA,
                               length, tag (16 bytes), shared extent sequence
                               number, 6 reserved -- 40 bytes
DcExtentListUpdate             Tables 8-169/8-170 "Add Dynamic Capacity
                               Response" (4802h) and "Release Dynamic Capacity"
                               (4803h) input: count, flags (bit 0 More), then
                               updated extents {start DPA, length, 8 reserved}
DcEventRecord                  Table 8-50 "Dynamic Capacity Event Record": the
                               48-byte common header (Table 8-43) with the DC
                               event UUID, then event type, validity flags,
                               host id, region index, flags (bit 0 More),
                               the extent, 0x18 reserved, extents and tags
                               available -- 128 bytes
FmInitiateDcAdd                Table 7-70 "Initiate Dynamic Capacity Add"
                               (5604h): host id, selection policy, region,
                               length, tag, extent count, extents
FmInitiateDcRelease            Table 7-71 "Initiate Dynamic Capacity Release"
                               (5605h): host id, flags (removal policy, forced
                               removal, sanitize on release), region, length,
                               tag, extent count, extents
=============================  =================================================
"""

from __future__ import annotations

import struct
import uuid
from enum import IntEnum
from typing import ClassVar, Self

from cxlemu.hw.mailbox.payloads import CAPACITY_MULTIPLIER, PayloadError
from cxlemu.util.lazydc import dataclass

#: The Dynamic Capacity event record UUID (CXL r3.1 Table 8-50).
DC_EVENT_UUID = uuid.UUID("ca95afa7-f183-4018-8c2f-95268e101a2a")
DC_EVENT_RECORD_SIZE = 0x80
DC_EXTENT_SIZE = 0x28
DC_UPDATE_EXTENT_SIZE = 0x18
DC_REGION_CONFIG_SIZE = 0x28
DC_MAX_REGIONS = 8
#: flags bit 0 of an event record, Add DC Response and Release DC
DC_MORE = 1 << 0
NULL_TAG = b"\0" * 16


class DcEventType(IntEnum):
    """Table 8-50 "Dynamic Capacity Event Type"."""
    ADD_CAPACITY = 0
    RELEASE_CAPACITY = 1
    FORCED_CAPACITY_RELEASE = 2
    REGION_CONFIGURATION_UPDATED = 3
    ADD_CAPACITY_RESPONSE = 4
    CAPACITY_RELEASED = 5


class SelectionPolicy(IntEnum):
    """Table 7-70 byte 2 bits [3:0]."""
    FREE = 0
    CONTIGUOUS = 1
    PRESCRIPTIVE = 2
    ENABLE_SHARED_ACCESS = 3


class RemovalPolicy(IntEnum):
    """Table 7-71 byte 2 bits [3:0]."""
    TAG_BASED = 0
    PRESCRIPTIVE = 1


RELEASE_FORCED = 1 << 4
RELEASE_SANITIZE = 1 << 5


def _need(raw: bytes, n: int, what: str, exact: bool = False) -> None:
    if len(raw) < n or (exact and len(raw) != n):
        raise PayloadError(f"{what}: payload is {len(raw)} bytes, {'exactly ' if exact else 'at least '}{n} expected")


def _pack(fmt: str, *values: object, what: str) -> bytes:
    try:
        return struct.pack(fmt, *values)
    except struct.error as e:
        raise PayloadError(f"{what}: {e}") from None


def _tag(tag: bytes, what: str) -> bytes:
    if len(tag) != 16:
        raise PayloadError(f"{what}: tag must be 16 bytes")
    return bytes(tag)


# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class DcExtent:
    """One Dynamic Capacity extent (Table 8-51), DPA and length in bytes."""

    start_dpa: int
    length: int
    tag: bytes = NULL_TAG
    shared_seq: int = 0

    _FMT: ClassVar[str] = "<QQ16sH6x"
    SIZE: ClassVar[int] = DC_EXTENT_SIZE

    def encode(self) -> bytes:
        return _pack(self._FMT, self.start_dpa, self.length, _tag(self.tag, "extent"), self.shared_seq,
                     what="DC extent")

    @classmethod
    def decode(cls, raw: bytes) -> Self:
        raw = bytes(raw)
        _need(raw, cls.SIZE, "DC extent", exact=True)
        dpa, ln, tag, seq = struct.unpack(cls._FMT, raw)
        return cls(dpa, ln, tag, seq)

    @property
    def end(self) -> int:
        return self.start_dpa + self.length

    @property
    def tag_uuid(self) -> uuid.UUID:
        return uuid.UUID(bytes=self.tag)


def _extents_encode(exts: tuple[DcExtent, ...]) -> bytes:
    return b"".join(e.encode() for e in exts)


def _extents_decode(raw: bytes, off: int, count: int, what: str) -> tuple[DcExtent, ...]:
    end = off + count * DC_EXTENT_SIZE
    if end != len(raw):
        raise PayloadError(f"{what}: {count} extents need {end} bytes, payload is {len(raw)}")
    return tuple(DcExtent.decode(raw[o:o + DC_EXTENT_SIZE]) for o in range(off, end, DC_EXTENT_SIZE))


# ---- Get DC Config (4800h) ---------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class GetDcConfigInput:
    region_count: int
    start_region: int = 0

    SIZE: ClassVar[int] = 2

    def encode(self) -> bytes:
        return _pack("<BB", self.region_count, self.start_region, what="Get DC Config input")

    @classmethod
    def decode(cls, raw: bytes) -> Self:
        raw = bytes(raw)
        _need(raw, cls.SIZE, "Get DC Config input", exact=True)
        return cls(*struct.unpack("<BB", raw))


@dataclass(frozen=True, slots=True)
class DcRegionConfig:
    base: int
    decode_length: int          # bytes (wire: 256 MiB units)
    length: int
    block_size: int
    dsmad_handle: int = 0
    flags: int = 0              # bit 0: sanitize on release (r3.1 Table 8-166)

    _FMT: ClassVar[str] = "<QQQQIB3x"

    def encode(self) -> bytes:
        if self.decode_length % CAPACITY_MULTIPLIER:
            raise PayloadError("DC region: decode length is not a multiple of 256 MiB")
        return _pack(self._FMT, self.base, self.decode_length // CAPACITY_MULTIPLIER, self.length,
                     self.block_size, self.dsmad_handle, self.flags, what="DC region config")

    @classmethod
    def decode(cls, raw: bytes) -> Self:
        raw = bytes(raw)
        _need(raw, DC_REGION_CONFIG_SIZE, "DC region config", exact=True)
        base, dl, ln, bs, h, fl = struct.unpack(cls._FMT, raw)
        return cls(base, dl * CAPACITY_MULTIPLIER, ln, bs, h, fl)


@dataclass(frozen=True, slots=True)
class GetDcConfigOutput:
    total_regions: int
    regions: tuple[DcRegionConfig, ...]
    extents_supported: int = 0
    extents_available: int = 0
    tags_supported: int = 0
    tags_available: int = 0

    def encode(self) -> bytes:
        if len(self.regions) > DC_MAX_REGIONS or self.total_regions > DC_MAX_REGIONS:
            raise PayloadError("Get DC Config: at most 8 regions")
        return (_pack("<BB6x", self.total_regions, len(self.regions), what="Get DC Config")
                + b"".join(r.encode() for r in self.regions)
                + _pack("<IIII", self.extents_supported, self.extents_available, self.tags_supported,
                        self.tags_available, what="Get DC Config"))

    @classmethod
    def decode(cls, raw: bytes) -> Self:
        raw = bytes(raw)
        _need(raw, 8 + 16, "Get DC Config output")
        total, returned = struct.unpack_from("<BB", raw)
        if returned > DC_MAX_REGIONS:
            raise PayloadError(f"Get DC Config output: {returned} regions returned (at most 8)")
        need = 8 + returned * DC_REGION_CONFIG_SIZE + 16
        _need(raw, need, "Get DC Config output", exact=True)
        regs = tuple(DcRegionConfig.decode(raw[8 + i * DC_REGION_CONFIG_SIZE: 8 + (i + 1) * DC_REGION_CONFIG_SIZE])
                     for i in range(returned))
        tail = struct.unpack_from("<IIII", raw, 8 + returned * DC_REGION_CONFIG_SIZE)
        return cls(total, regs, *tail)


# ---- Get DC Extent List (4801h) ------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class GetDcExtentListInput:
    count: int
    start_index: int = 0

    SIZE: ClassVar[int] = 8

    def encode(self) -> bytes:
        return _pack("<II", self.count, self.start_index, what="Get DC Extent List input")

    @classmethod
    def decode(cls, raw: bytes) -> Self:
        raw = bytes(raw)
        _need(raw, cls.SIZE, "Get DC Extent List input", exact=True)
        return cls(*struct.unpack("<II", raw))


@dataclass(frozen=True, slots=True)
class GetDcExtentListOutput:
    total: int
    generation: int
    extents: tuple[DcExtent, ...]

    def encode(self) -> bytes:
        return _pack("<III4x", len(self.extents), self.total, self.generation,
                     what="Get DC Extent List") + _extents_encode(self.extents)

    @classmethod
    def decode(cls, raw: bytes) -> Self:
        raw = bytes(raw)
        _need(raw, 16, "Get DC Extent List output")
        n, total, gen = struct.unpack_from("<III", raw)
        if n > total:
            raise PayloadError(f"Get DC Extent List output: {n} returned of {total}")
        return cls(total, gen, _extents_decode(raw, 16, n, "Get DC Extent List output"))


# ---- Add DC Response (4802h) / Release DC (4803h) -------------------------------------------------
@dataclass(frozen=True, slots=True)
class DcExtentListUpdate:
    """Input of Add Dynamic Capacity Response and of Release Dynamic Capacity:
    extents as (start DPA, length)."""

    extents: tuple[tuple[int, int], ...]
    more: bool = False

    def encode(self) -> bytes:
        out = [_pack("<IB3x", len(self.extents), DC_MORE if self.more else 0, what="DC extent list")]
        for dpa, ln in self.extents:
            out.append(_pack("<QQ8x", dpa, ln, what="DC extent list"))
        return b"".join(out)

    @classmethod
    def decode(cls, raw: bytes) -> Self:
        raw = bytes(raw)
        _need(raw, 8, "DC extent list")
        n, flags = struct.unpack_from("<IB", raw)
        if 8 + n * DC_UPDATE_EXTENT_SIZE != len(raw):
            raise PayloadError(f"DC extent list: {n} extents need {8 + n * DC_UPDATE_EXTENT_SIZE} bytes, "
                               f"payload is {len(raw)}")
        exts = tuple(struct.unpack_from("<QQ", raw, 8 + i * DC_UPDATE_EXTENT_SIZE) for i in range(n))
        return cls(exts, bool(flags & DC_MORE))


# ---- the Dynamic Capacity event record ------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class DcEventRecord:
    """Table 8-50 with the common header (Table 8-43: UUID, length, flags,
    handle, related handle, timestamp, maintenance class, reserved)."""

    event_type: int
    extent: DcExtent
    handle: int = 0
    timestamp: int = 0
    host_id: int = 0
    region_index: int = 0
    more: bool = False
    validity_flags: int = 0
    extents_available: int = 0
    tags_available: int = 0
    hdr_flags: int = 0

    _HDR: ClassVar[str] = "<16sB3sHHQB15x"

    def encode(self) -> bytes:
        if not 0 <= self.hdr_flags < 1 << 24:
            raise PayloadError("DC event record: header flags are 3 bytes")
        hdr = _pack(self._HDR, DC_EVENT_UUID.bytes, DC_EVENT_RECORD_SIZE, self.hdr_flags.to_bytes(3, "little"),
                    self.handle, 0, self.timestamp, 0, what="DC event record")
        body = _pack("<BBHBB2x", self.event_type, self.validity_flags, self.host_id, self.region_index,
                     DC_MORE if self.more else 0, what="DC event record")
        tail = _pack("<24xII", self.extents_available, self.tags_available, what="DC event record")
        out = hdr + body + self.extent.encode() + tail
        assert len(out) == DC_EVENT_RECORD_SIZE
        return out

    @classmethod
    def decode(cls, raw: bytes) -> Self:
        raw = bytes(raw)
        _need(raw, DC_EVENT_RECORD_SIZE, "DC event record", exact=True)
        u, ln, fl, handle, _rel, ts, _mc = struct.unpack_from(cls._HDR, raw)
        if uuid.UUID(bytes=u) != DC_EVENT_UUID:
            raise PayloadError("DC event record: not a Dynamic Capacity event (UUID)")
        if ln != DC_EVENT_RECORD_SIZE:
            raise PayloadError(f"DC event record: length {ln}")
        et, vf, hid, rix, flags = struct.unpack_from("<BBHBB", raw, 48)
        ext = DcExtent.decode(raw[56:56 + DC_EXTENT_SIZE])
        ea, ta = struct.unpack_from("<II", raw, 56 + DC_EXTENT_SIZE + 24)
        return cls(et, ext, handle, ts, hid, rix, bool(flags & DC_MORE), vf, ea, ta,
                   int.from_bytes(fl, "little"))


# ---- FM API: Initiate Dynamic Capacity Add / Release ----------------------------------------------
@dataclass(frozen=True, slots=True)
class FmInitiateDcAdd:
    host_id: int
    policy: int
    region: int
    length: int
    tag: bytes = NULL_TAG
    extents: tuple[DcExtent, ...] = ()

    def encode(self) -> bytes:
        return _pack("<HBBQ16sI", self.host_id, self.policy & 0xF, self.region, self.length,
                     _tag(self.tag, "Initiate DC Add"), len(self.extents),
                     what="Initiate DC Add") + _extents_encode(self.extents)

    @classmethod
    def decode(cls, raw: bytes) -> Self:
        raw = bytes(raw)
        _need(raw, 32, "Initiate DC Add")
        hid, pol, reg, ln, tag, n = struct.unpack_from("<HBBQ16sI", raw)
        return cls(hid, pol & 0xF, reg, ln, tag, _extents_decode(raw, 32, n, "Initiate DC Add"))


@dataclass(frozen=True, slots=True)
class FmInitiateDcRelease:
    host_id: int
    flags: int
    region: int
    length: int
    tag: bytes = NULL_TAG
    extents: tuple[DcExtent, ...] = ()

    @property
    def policy(self) -> int:
        return self.flags & 0xF

    @property
    def forced(self) -> bool:
        return bool(self.flags & RELEASE_FORCED)

    @property
    def sanitize(self) -> bool:
        return bool(self.flags & RELEASE_SANITIZE)

    def encode(self) -> bytes:
        return _pack("<HBBQ16sI", self.host_id, self.flags, self.region, self.length,
                     _tag(self.tag, "Initiate DC Release"), len(self.extents),
                     what="Initiate DC Release") + _extents_encode(self.extents)

    @classmethod
    def decode(cls, raw: bytes) -> Self:
        raw = bytes(raw)
        _need(raw, 32, "Initiate DC Release")
        hid, fl, reg, ln, tag, n = struct.unpack_from("<HBBQ16sI", raw)
        return cls(hid, fl, reg, ln, tag, _extents_decode(raw, 32, n, "Initiate DC Release"))


# ---- Get / Clear Event Records (0100h / 0101h) for the Dynamic Capacity log ------------------------
#: Event log type 04h: Dynamic Capacity Event Log (CXL r3.1 Table 8-52).
EVENT_LOG_DCD = 4
EVENT_RECORDS_MAX = 16


@dataclass(frozen=True, slots=True)
class GetEventRecordsInput:
    log: int

    def encode(self) -> bytes:
        return _pack("<B", self.log, what="Get Event Records input")

    @classmethod
    def decode(cls, raw: bytes) -> Self:
        raw = bytes(raw)
        _need(raw, 1, "Get Event Records input", exact=True)
        return cls(raw[0])


@dataclass(frozen=True, slots=True)
class GetEventRecordsOutput:
    """Table 8-53: flags (bit 0 overflow, bit 1 more records), overflow count and
    timestamps, record count, then 128-byte records (DC records only here)."""

    records: tuple[DcEventRecord, ...]
    more: bool = False

    def encode(self) -> bytes:
        hdr = _pack("<BxHQQH10x", 2 if self.more else 0, 0, 0, 0, len(self.records), what="Get Event Records")
        return hdr + b"".join(r.encode() for r in self.records)

    @classmethod
    def decode(cls, raw: bytes) -> Self:
        raw = bytes(raw)
        _need(raw, 0x20, "Get Event Records output")
        flags, _oc, _f, _l, n = struct.unpack_from("<BxHQQH", raw)
        if 0x20 + n * DC_EVENT_RECORD_SIZE != len(raw):
            raise PayloadError(f"Get Event Records output: {n} records need {0x20 + n * DC_EVENT_RECORD_SIZE} bytes")
        recs = tuple(DcEventRecord.decode(raw[0x20 + i * DC_EVENT_RECORD_SIZE: 0x20 + (i + 1) * DC_EVENT_RECORD_SIZE])
                     for i in range(n))
        return cls(recs, bool(flags & 2))


@dataclass(frozen=True, slots=True)
class ClearEventRecordsInput:
    """Table 8-54: log, flags (bit 0 clear all), handle count, 3 reserved, handles."""

    log: int
    handles: tuple[int, ...]

    def encode(self) -> bytes:
        if len(self.handles) > 0xFF:
            raise PayloadError("Clear Event Records: at most 255 handles")
        return _pack(f"<BBB3x{len(self.handles)}H", self.log, 0, len(self.handles), *self.handles,
                     what="Clear Event Records")

    @classmethod
    def decode(cls, raw: bytes) -> Self:
        raw = bytes(raw)
        _need(raw, 6, "Clear Event Records input")
        log, _fl, n = struct.unpack_from("<BBB", raw)
        if 6 + 2 * n != len(raw):
            raise PayloadError(f"Clear Event Records input: {n} handles need {6 + 2 * n} bytes")
        return cls(log, struct.unpack_from(f"<{n}H", raw, 6))
