"""Binary codecs for CXL memory-device mailbox payloads (device and client side).

Every class is a frozen dataclass with ``encode() -> bytes`` and
``decode(raw) -> Self``; ``decode`` checks the length exactly and raises
:class:`PayloadError` (a ``ValueError``) on a mismatch, ``encode`` raises it for
values that do not fit the wire format.  All integers are little endian
(CXL r3.1 §8 preamble: "All numeric values ... are encoded in little-endian").
Capacities travel in multiples of 256 MiB (:data:`CAPACITY_MULTIPLIER`) and
poison addresses/lengths in 64-byte units (:data:`POISON_LEN_MULT`); the
dataclasses always hold bytes and the codecs convert.

Layout sources.  Section numbers are given for CXL r3.1 (§8.2.9.x) and the
memory-device tables as numbered in r3.2 (§8.2.10.x, Tables 8-142 .. 8-155);
CXL 2.0 numbers are noted where the Linux sources still cite them.  The kernel
structs in ``drivers/cxl/cxlmem.h`` and libcxl's ``cxl/lib/private.h`` were
read to confirm offsets; nothing was copied.

=============================  =================================================
class                          spec table
=============================  =================================================
IdentifyMemoryDevice           r3.2 Table 8-142 "Identify Memory Device Output
                               Payload" (§8.2.9.9.1.1 in r3.1; CXL 2.0 Table
                               175).  0x43 bytes; 0x45 with the r3.0+ "Dynamic
                               Capacity Event Log Size" at 0x43.
PartitionInfo                  Table 8-143 "Get Partition Info Output Payload"
SetPartitionInfo               Table 8-144 "Set Partition Info Input Payload"
                               (0x0A bytes: the kernel's advertised size_in;
                               byte 9 is reserved)
GetLsaInput                    Table 8-145 "Get LSA Input Payload" (the output,
                               Table 8-146, is the raw label data)
SetLsaInput                    Table 8-147 "Set LSA Input Payload"
HealthInfo                     Table 8-148 "Get Health Info Output Payload"
AlertConfig                    Table 8-149 "Get Alert Configuration Output
                               Payload"
SetAlertConfig                 Table 8-150 "Set Alert Configuration Input
                               Payload"
ShutdownState                  Tables 8-151/8-152 "Get/Set Shutdown State"
GetPoisonListInput             Table 8-153 "Get Poison List Input Payload"
GetPoisonListOutput            Table 8-154 "Get Poison List Output Payload"
PoisonRecord                   Table 8-155 "Media Error Record"
InjectPoisonInput              §8.2.9.9.4.2 "Inject Poison Input Payload"
ClearPoisonInput               §8.2.9.9.4.3 "Clear Poison Input Payload"
FwInfo                         §8.2.9.3.1 "Get FW Info Output Payload"
                               (r3.0 Table 8-56)
Timestamp                      §8.2.9.4.1/2 "Get/Set Timestamp" payloads
GetSupportedLogsOutput         r3.2 Tables 8-82/8-83 "Get Supported Logs Output
                               Payload" / "Supported Log Entry"
GetLogInput                    r3.2 Table 8-84 "Get Log Input Payload"
CommandEffectsLog / CelEntry   r3.2 Tables 8-86/8-87 "CEL Output Payload" /
                               "CEL Entry Structure"
=============================  =================================================
"""

from __future__ import annotations

import struct
import uuid
from dataclasses import field
from enum import IntEnum, IntFlag
from typing import ClassVar, Self

from cxlemu.util.lazydc import dataclass

#: Capacity fields are in units of 256 MiB (kernel/libcxl CXL_CAPACITY_MULTIPLIER).
CAPACITY_MULTIPLIER = 256 * 1024 * 1024
#: Poison list addresses/lengths are in units of 64 bytes (CXL_POISON_LEN_MULT).
POISON_LEN_MULT = 64

#: UUID of the Command Effects Log (kernel DEFINE_CXL_CEL_UUID).
CEL_UUID = uuid.UUID("0da9c0b5-bf41-4b78-8f79-96b1623b3f17")
#: UUID of the Vendor Debug log (kernel DEFINE_CXL_VENDOR_DEBUG_UUID).
VENDOR_DEBUG_UUID = uuid.UUID("5e1819d9-11a9-400c-811f-d60719403d86")

FW_REVISION_LEN = 16
FW_MAX_SLOTS = 4


class PayloadError(ValueError):
    """A payload has the wrong length or a value that cannot be encoded."""


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------


def _expect_len(raw: bytes, expected: int | tuple[int, ...], what: str) -> None:
    ok = (expected,) if isinstance(expected, int) else expected
    if len(raw) not in ok:
        want = " or ".join(f"{n:#x}" for n in ok)
        raise PayloadError(f"{what}: payload is {len(raw):#x} bytes, expected {want}")


def _pack(fmt: str, *values: object, what: str) -> bytes:
    try:
        return struct.pack(fmt, *values)
    except struct.error as exc:
        raise PayloadError(f"{what}: {exc}") from None


def bytes_to_capacity_units(nbytes: int, what: str = "capacity") -> int:
    """Byte count -> 256 MiB units; it must be an exact multiple."""
    if nbytes < 0 or nbytes % CAPACITY_MULTIPLIER:
        raise PayloadError(f"{what} {nbytes:#x} is not a multiple of 256 MiB")
    return nbytes // CAPACITY_MULTIPLIER


def capacity_units_to_bytes(units: int) -> int:
    return units * CAPACITY_MULTIPLIER


def _poison_units(nbytes: int, what: str) -> int:
    if nbytes < 0 or nbytes % POISON_LEN_MULT:
        raise PayloadError(f"{what} {nbytes:#x} is not a multiple of 64 bytes")
    return nbytes // POISON_LEN_MULT


def _encode_fixed_str(text: str, size: int, what: str) -> bytes:
    raw = text.encode("ascii", "surrogateescape")
    if len(raw) > size or b"\0" in raw:
        raise PayloadError(f"{what}: {text!r} does not fit {size} bytes without NULs")
    return raw.ljust(size, b"\0")


def _decode_fixed_str(raw: bytes) -> str:
    """Bytes up to the first NUL (a full field needs no terminator)."""
    return raw.split(b"\0", 1)[0].decode("ascii", "surrogateescape")


# --------------------------------------------------------------------------
# Identify Memory Device (opcode 4000h)
# --------------------------------------------------------------------------


class PoisonCaps(IntFlag):
    """Identify "Poison Handling Capabilities" byte."""

    INJECTS_PERSISTENT_POISON = 1 << 0
    SCANS_FOR_POISON = 1 << 1


class QosTelemetryCaps(IntFlag):
    """Identify "QoS Telemetry Capabilities" byte."""

    EGRESS_PORT_CONGESTION = 1 << 0
    TEMPORARY_THROUGHPUT_REDUCTION = 1 << 1


@dataclass(frozen=True, slots=True)
class IdentifyMemoryDevice:
    """Identify Memory Device output.  Capacities are bytes."""

    fw_revision: str = ""
    total_capacity: int = 0
    volatile_only_capacity: int = 0
    persistent_only_capacity: int = 0
    partition_align: int = 0
    info_event_log_size: int = 0
    warning_event_log_size: int = 0
    failure_event_log_size: int = 0
    fatal_event_log_size: int = 0
    lsa_size: int = 0
    poison_list_max_records: int = 0  # 24-bit field
    inject_poison_limit: int = 0
    poison_caps: int = 0
    qos_telemetry_caps: int = 0
    dc_event_log_size: int | None = None  # present only in the 0x45-byte form

    _FMT: ClassVar[str] = "<16sQQQQHHHHI3sHBB"
    SIZE: ClassVar[int] = 0x43
    SIZE_R3: ClassVar[int] = 0x45

    def encode(self) -> bytes:
        what = "Identify Memory Device"
        if not 0 <= self.poison_list_max_records < 1 << 24:
            raise PayloadError(f"{what}: poison_list_max_records out of 24-bit range")
        body = _pack(
            self._FMT,
            _encode_fixed_str(self.fw_revision, FW_REVISION_LEN, what),
            bytes_to_capacity_units(self.total_capacity, "total_capacity"),
            bytes_to_capacity_units(self.volatile_only_capacity, "volatile_only_capacity"),
            bytes_to_capacity_units(self.persistent_only_capacity, "persistent_only_capacity"),
            bytes_to_capacity_units(self.partition_align, "partition_align"),
            self.info_event_log_size,
            self.warning_event_log_size,
            self.failure_event_log_size,
            self.fatal_event_log_size,
            self.lsa_size,
            self.poison_list_max_records.to_bytes(3, "little"),
            self.inject_poison_limit,
            self.poison_caps,
            self.qos_telemetry_caps,
            what=what,
        )
        if self.dc_event_log_size is not None:
            body += _pack("<H", self.dc_event_log_size, what=what)
        return body

    @classmethod
    def decode(cls, raw: bytes) -> Self:
        raw = bytes(raw)
        _expect_len(raw, (cls.SIZE, cls.SIZE_R3), "Identify Memory Device")
        (fw, total, vol, pers, align, info, warn, fail, fatal, lsa, mer, inj,
         pcaps, qcaps) = struct.unpack_from(cls._FMT, raw)
        dc = struct.unpack_from("<H", raw, cls.SIZE)[0] if len(raw) == cls.SIZE_R3 else None
        return cls(
            fw_revision=_decode_fixed_str(fw),
            total_capacity=capacity_units_to_bytes(total),
            volatile_only_capacity=capacity_units_to_bytes(vol),
            persistent_only_capacity=capacity_units_to_bytes(pers),
            partition_align=capacity_units_to_bytes(align),
            info_event_log_size=info,
            warning_event_log_size=warn,
            failure_event_log_size=fail,
            fatal_event_log_size=fatal,
            lsa_size=lsa,
            poison_list_max_records=int.from_bytes(mer, "little"),
            inject_poison_limit=inj,
            poison_caps=pcaps,
            qos_telemetry_caps=qcaps,
            dc_event_log_size=dc,
        )


# --------------------------------------------------------------------------
# Capacity configuration and label storage (41xxh)
# --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PartitionInfo:
    """Get Partition Info output (bytes; "next" values are 0 if no change pending)."""

    active_volatile: int = 0
    active_persistent: int = 0
    next_volatile: int = 0
    next_persistent: int = 0

    _FMT: ClassVar[str] = "<QQQQ"
    SIZE: ClassVar[int] = 0x20

    def encode(self) -> bytes:
        return _pack(
            self._FMT,
            bytes_to_capacity_units(self.active_volatile, "active_volatile"),
            bytes_to_capacity_units(self.active_persistent, "active_persistent"),
            bytes_to_capacity_units(self.next_volatile, "next_volatile"),
            bytes_to_capacity_units(self.next_persistent, "next_persistent"),
            what="Get Partition Info",
        )

    @classmethod
    def decode(cls, raw: bytes) -> Self:
        raw = bytes(raw)
        _expect_len(raw, cls.SIZE, "Get Partition Info")
        return cls(*(capacity_units_to_bytes(v) for v in struct.unpack(cls._FMT, raw)))


#: Set Partition Info flag bit 0: apply now instead of on the next cold reset.
SET_PARTITION_FLAG_IMMEDIATE = 1 << 0


@dataclass(frozen=True, slots=True)
class SetPartitionInfo:
    """Set Partition Info input: new volatile capacity (bytes) and flags."""

    volatile_capacity: int = 0
    flags: int = 0

    _FMT: ClassVar[str] = "<QBx"
    SIZE: ClassVar[int] = 0x0A

    @property
    def immediate(self) -> bool:
        return bool(self.flags & SET_PARTITION_FLAG_IMMEDIATE)

    def encode(self) -> bytes:
        return _pack(
            self._FMT,
            bytes_to_capacity_units(self.volatile_capacity, "volatile_capacity"),
            self.flags,
            what="Set Partition Info",
        )

    @classmethod
    def decode(cls, raw: bytes) -> Self:
        raw = bytes(raw)
        _expect_len(raw, cls.SIZE, "Set Partition Info")
        units, flags = struct.unpack(cls._FMT, raw)
        return cls(capacity_units_to_bytes(units), flags)


@dataclass(frozen=True, slots=True)
class GetLsaInput:
    """Get LSA input: byte offset into the label area and length to read."""

    offset: int = 0
    length: int = 0

    _FMT: ClassVar[str] = "<II"
    SIZE: ClassVar[int] = 0x08

    def encode(self) -> bytes:
        return _pack(self._FMT, self.offset, self.length, what="Get LSA")

    @classmethod
    def decode(cls, raw: bytes) -> Self:
        raw = bytes(raw)
        _expect_len(raw, cls.SIZE, "Get LSA")
        return cls(*struct.unpack(cls._FMT, raw))


@dataclass(frozen=True, slots=True)
class SetLsaInput:
    """Set LSA input: offset, 4 reserved bytes, then the data to write."""

    offset: int = 0
    data: bytes = b""

    _FMT: ClassVar[str] = "<I4x"
    HEADER_SIZE: ClassVar[int] = 0x08

    def encode(self) -> bytes:
        return _pack(self._FMT, self.offset, what="Set LSA") + bytes(self.data)

    @classmethod
    def decode(cls, raw: bytes) -> Self:
        raw = bytes(raw)
        if len(raw) < cls.HEADER_SIZE:
            raise PayloadError(f"Set LSA: payload is {len(raw):#x} bytes, expected >= 0x8")
        (offset,) = struct.unpack_from(cls._FMT, raw)
        return cls(offset, raw[cls.HEADER_SIZE:])


# --------------------------------------------------------------------------
# Health information and alerts (42xxh)
# --------------------------------------------------------------------------


class HealthStatus(IntFlag):
    """Get Health Info byte 0 "Health Status"."""

    MAINTENANCE_NEEDED = 1 << 0
    PERFORMANCE_DEGRADED = 1 << 1
    HW_REPLACEMENT_NEEDED = 1 << 2


class MediaStatus(IntEnum):
    """Get Health Info byte 1 "Media Status" (names as libcxl's accessors)."""

    NORMAL = 0x0
    NOT_READY = 0x1
    PERSISTENCE_LOST = 0x2
    DATA_LOST = 0x3
    POWERLOSS_PERSISTENCE_LOSS = 0x4
    SHUTDOWN_PERSISTENCE_LOSS = 0x5
    PERSISTENCE_LOSS_IMMINENT = 0x6
    POWERLOSS_DATA_LOSS = 0x7
    SHUTDOWN_DATA_LOSS = 0x8
    DATA_LOSS_IMMINENT = 0x9


class ExtStatus(IntEnum):
    """Values of the "Additional Status" sub-fields (3 is reserved)."""

    NORMAL = 0
    WARNING = 1
    CRITICAL = 2


LIFE_USED_NOT_IMPLEMENTED = 0xFF
TEMPERATURE_NOT_IMPLEMENTED = 0xFFFF


@dataclass(frozen=True, slots=True)
class HealthInfo:
    """Get Health Info output.

    The "Additional Status" byte is split into its sub-fields: bits 1:0 life
    used, bits 3:2 device temperature (each NORMAL/WARNING/CRITICAL), bit 4
    corrected volatile error count and bit 5 corrected persistent error count
    (each NORMAL/WARNING); bits 7:6 are reserved.  ``life_used`` (percent) is
    None when the device reports 0xFF; ``temperature`` (degrees C, two's
    complement) is None when it reports 0xFFFF, so -1 C is not representable.
    """

    health_status: int = 0
    media_status: int = MediaStatus.NORMAL
    life_used_status: int = ExtStatus.NORMAL
    temperature_status: int = ExtStatus.NORMAL
    corrected_volatile_status: int = ExtStatus.NORMAL
    corrected_persistent_status: int = ExtStatus.NORMAL
    life_used: int | None = None
    temperature: int | None = None
    dirty_shutdown_count: int = 0
    corrected_volatile_error_count: int = 0
    corrected_persistent_error_count: int = 0

    _FMT: ClassVar[str] = "<BBBBHIII"
    SIZE: ClassVar[int] = 0x12

    @property
    def additional_status(self) -> int:
        return (
            (self.life_used_status & 0x3)
            | (self.temperature_status & 0x3) << 2
            | (self.corrected_volatile_status & 0x1) << 4
            | (self.corrected_persistent_status & 0x1) << 5
        )

    @property
    def temperature_raw(self) -> int:
        """The unsigned 16-bit value libcxl hands out (0xFFFF = not implemented)."""
        if self.temperature is None:
            return TEMPERATURE_NOT_IMPLEMENTED
        return self.temperature & 0xFFFF

    @property
    def maintenance_needed(self) -> bool:
        return bool(self.health_status & HealthStatus.MAINTENANCE_NEEDED)

    @property
    def performance_degraded(self) -> bool:
        return bool(self.health_status & HealthStatus.PERFORMANCE_DEGRADED)

    @property
    def hw_replacement_needed(self) -> bool:
        return bool(self.health_status & HealthStatus.HW_REPLACEMENT_NEEDED)

    def encode(self) -> bytes:
        what = "Get Health Info"
        for name, value, bits in (
            ("life_used_status", self.life_used_status, 2),
            ("temperature_status", self.temperature_status, 2),
            ("corrected_volatile_status", self.corrected_volatile_status, 1),
            ("corrected_persistent_status", self.corrected_persistent_status, 1),
        ):
            if not 0 <= value < 1 << bits:
                raise PayloadError(f"{what}: {name}={value} does not fit {bits} bit(s)")
        if self.life_used is None:
            life = LIFE_USED_NOT_IMPLEMENTED
        elif 0 <= self.life_used < LIFE_USED_NOT_IMPLEMENTED:
            life = self.life_used
        else:
            raise PayloadError(f"{what}: life_used={self.life_used} out of range 0..254")
        if self.temperature is None:
            temp = TEMPERATURE_NOT_IMPLEMENTED
        elif -0x8000 <= self.temperature <= 0x7FFF and self.temperature != -1:
            temp = self.temperature & 0xFFFF
        else:
            raise PayloadError(f"{what}: temperature={self.temperature} not encodable")
        return _pack(
            self._FMT,
            self.health_status,
            self.media_status,
            self.additional_status,
            life,
            temp,
            self.dirty_shutdown_count,
            self.corrected_volatile_error_count,
            self.corrected_persistent_error_count,
            what=what,
        )

    @classmethod
    def decode(cls, raw: bytes) -> Self:
        raw = bytes(raw)
        _expect_len(raw, cls.SIZE, "Get Health Info")
        hs, ms, ext, life, temp, dirty, cvol, cpers = struct.unpack(cls._FMT, raw)
        return cls(
            health_status=hs,
            media_status=ms,
            life_used_status=ext & 0x3,
            temperature_status=(ext >> 2) & 0x3,
            corrected_volatile_status=(ext >> 4) & 0x1,
            corrected_persistent_status=(ext >> 5) & 0x1,
            life_used=None if life == LIFE_USED_NOT_IMPLEMENTED else life,
            temperature=None if temp == TEMPERATURE_NOT_IMPLEMENTED
            else temp - 0x10000 if temp & 0x8000 else temp,
            dirty_shutdown_count=dirty,
            corrected_volatile_error_count=cvol,
            corrected_persistent_error_count=cpers,
        )


class AlertBits(IntFlag):
    """Bits of "Valid Alerts"/"Programmable Alerts" and of the Set Alert
    Configuration "Valid Alert Actions"/"Enable Alert Actions" bytes."""

    LIFE_USED_PROG_WARN = 1 << 0
    DEV_OVER_TEMPERATURE_PROG_WARN = 1 << 1
    DEV_UNDER_TEMPERATURE_PROG_WARN = 1 << 2
    CORRECTED_VOLATILE_MEM_ERR_PROG_WARN = 1 << 3
    CORRECTED_PMEM_ERR_PROG_WARN = 1 << 4


@dataclass(frozen=True, slots=True)
class AlertConfig:
    """Get Alert Configuration output.  Temperatures are signed degrees C
    (cxl set-alert-config accepts SHRT_MIN..SHRT_MAX), error counts unsigned."""

    valid_alerts: int = 0
    programmable_alerts: int = 0
    life_used_crit_alert_threshold: int = 0
    life_used_prog_warn_threshold: int = 0
    dev_over_temperature_crit_alert_threshold: int = 0
    dev_under_temperature_crit_alert_threshold: int = 0
    dev_over_temperature_prog_warn_threshold: int = 0
    dev_under_temperature_prog_warn_threshold: int = 0
    corrected_volatile_mem_err_prog_warn_threshold: int = 0
    corrected_pmem_err_prog_warn_threshold: int = 0

    _FMT: ClassVar[str] = "<BBBBhhhhHH"
    SIZE: ClassVar[int] = 0x10

    def encode(self) -> bytes:
        return _pack(
            self._FMT,
            self.valid_alerts,
            self.programmable_alerts,
            self.life_used_crit_alert_threshold,
            self.life_used_prog_warn_threshold,
            self.dev_over_temperature_crit_alert_threshold,
            self.dev_under_temperature_crit_alert_threshold,
            self.dev_over_temperature_prog_warn_threshold,
            self.dev_under_temperature_prog_warn_threshold,
            self.corrected_volatile_mem_err_prog_warn_threshold,
            self.corrected_pmem_err_prog_warn_threshold,
            what="Get Alert Configuration",
        )

    @classmethod
    def decode(cls, raw: bytes) -> Self:
        raw = bytes(raw)
        _expect_len(raw, cls.SIZE, "Get Alert Configuration")
        return cls(*struct.unpack(cls._FMT, raw))


@dataclass(frozen=True, slots=True)
class SetAlertConfig:
    """Set Alert Configuration input (byte 3 reserved)."""

    valid_alert_actions: int = 0
    enable_alert_actions: int = 0
    life_used_prog_warn_threshold: int = 0
    dev_over_temperature_prog_warn_threshold: int = 0
    dev_under_temperature_prog_warn_threshold: int = 0
    corrected_volatile_mem_err_prog_warn_threshold: int = 0
    corrected_pmem_err_prog_warn_threshold: int = 0

    _FMT: ClassVar[str] = "<BBBxhhHH"
    SIZE: ClassVar[int] = 0x0C

    def encode(self) -> bytes:
        return _pack(
            self._FMT,
            self.valid_alert_actions,
            self.enable_alert_actions,
            self.life_used_prog_warn_threshold,
            self.dev_over_temperature_prog_warn_threshold,
            self.dev_under_temperature_prog_warn_threshold,
            self.corrected_volatile_mem_err_prog_warn_threshold,
            self.corrected_pmem_err_prog_warn_threshold,
            what="Set Alert Configuration",
        )

    @classmethod
    def decode(cls, raw: bytes) -> Self:
        raw = bytes(raw)
        _expect_len(raw, cls.SIZE, "Set Alert Configuration")
        return cls(*struct.unpack(cls._FMT, raw))


@dataclass(frozen=True, slots=True)
class ShutdownState:
    """Get Shutdown State output / Set Shutdown State input (bit 0: dirty)."""

    dirty: bool = False

    SIZE: ClassVar[int] = 0x01

    def encode(self) -> bytes:
        return b"\x01" if self.dirty else b"\x00"

    @classmethod
    def decode(cls, raw: bytes) -> Self:
        raw = bytes(raw)
        _expect_len(raw, cls.SIZE, "Shutdown State")
        return cls(bool(raw[0] & 1))


# --------------------------------------------------------------------------
# Media and poison management (43xxh)
# --------------------------------------------------------------------------


class PoisonFlags(IntFlag):
    """Get Poison List output "Poison List Flags"."""

    MORE = 1 << 0
    OVERFLOW = 1 << 1
    SCANNING = 1 << 2


class PoisonSource(IntEnum):
    """Media Error Record address bits 2:0 (ndctl json.c names: External=1,
    Internal=2)."""

    UNKNOWN = 0
    EXTERNAL = 1
    INTERNAL = 2
    INJECTED = 3
    VENDOR = 7


@dataclass(frozen=True, slots=True)
class GetPoisonListInput:
    """Get Poison List input: start DPA and length, both in bytes (64-aligned)."""

    address: int = 0
    length: int = 0

    _FMT: ClassVar[str] = "<QQ"
    SIZE: ClassVar[int] = 0x10

    def encode(self) -> bytes:
        what = "Get Poison List"
        if self.address % POISON_LEN_MULT:
            raise PayloadError(f"{what}: address {self.address:#x} is not 64-byte aligned")
        return _pack(self._FMT, self.address, _poison_units(self.length, "length"), what=what)

    @classmethod
    def decode(cls, raw: bytes) -> Self:
        raw = bytes(raw)
        _expect_len(raw, cls.SIZE, "Get Poison List")
        addr, units = struct.unpack(cls._FMT, raw)
        return cls(addr & ~(POISON_LEN_MULT - 1), units * POISON_LEN_MULT)


@dataclass(frozen=True, slots=True)
class PoisonRecord:
    """One Media Error Record: DPA and length in bytes, plus the source."""

    dpa: int
    length: int = POISON_LEN_MULT
    source: int = PoisonSource.UNKNOWN

    _FMT: ClassVar[str] = "<QI4x"
    SIZE: ClassVar[int] = 0x10

    def encode(self) -> bytes:
        what = "Media Error Record"
        if self.dpa % POISON_LEN_MULT:
            raise PayloadError(f"{what}: dpa {self.dpa:#x} is not 64-byte aligned")
        if not 0 <= self.source <= 7:
            raise PayloadError(f"{what}: source {self.source} does not fit 3 bits")
        return _pack(self._FMT, self.dpa | self.source,
                     _poison_units(self.length, "length"), what=what)

    @classmethod
    def decode(cls, raw: bytes) -> Self:
        raw = bytes(raw)
        _expect_len(raw, cls.SIZE, "Media Error Record")
        addr, units = struct.unpack(cls._FMT, raw)
        return cls._from_fields(addr, units)

    @classmethod
    def _from_fields(cls, addr: int, units: int) -> Self:
        return cls(addr & ~(POISON_LEN_MULT - 1), units * POISON_LEN_MULT, addr & 0x7)


@dataclass(frozen=True, slots=True)
class GetPoisonListOutput:
    """Get Poison List output: flags, overflow timestamp and media error records."""

    flags: int = 0
    overflow_timestamp: int = 0
    records: tuple[PoisonRecord, ...] = ()

    _HDR: ClassVar[str] = "<BxQH20x"
    HEADER_SIZE: ClassVar[int] = 0x20

    @property
    def more(self) -> bool:
        return bool(self.flags & PoisonFlags.MORE)

    @property
    def overflow(self) -> bool:
        return bool(self.flags & PoisonFlags.OVERFLOW)

    @property
    def scanning(self) -> bool:
        return bool(self.flags & PoisonFlags.SCANNING)

    @classmethod
    def size_for(cls, nrecords: int) -> int:
        return cls.HEADER_SIZE + nrecords * PoisonRecord.SIZE

    @classmethod
    def max_records(cls, payload_size: int) -> int:
        """How many records fit in an output payload of ``payload_size`` bytes."""
        return max(0, (payload_size - cls.HEADER_SIZE) // PoisonRecord.SIZE)

    def encode(self) -> bytes:
        what = "Get Poison List output"
        head = _pack(self._HDR, self.flags, self.overflow_timestamp, len(self.records),
                     what=what)
        return head + b"".join(r.encode() for r in self.records)

    @classmethod
    def decode(cls, raw: bytes) -> Self:
        raw = bytes(raw)
        if len(raw) < cls.HEADER_SIZE:
            raise PayloadError(f"Get Poison List output: {len(raw):#x} bytes < header")
        flags, ts, count = struct.unpack_from(cls._HDR, raw)
        _expect_len(raw, cls.size_for(count), "Get Poison List output")
        records = tuple(
            PoisonRecord._from_fields(addr, units)
            for addr, units in struct.iter_unpack(PoisonRecord._FMT, raw[cls.HEADER_SIZE:])
        )
        return cls(flags, ts, records)


@dataclass(frozen=True, slots=True)
class InjectPoisonInput:
    """Inject Poison input: 64-byte aligned DPA."""

    dpa: int = 0

    SIZE: ClassVar[int] = 0x08

    def encode(self) -> bytes:
        if self.dpa % POISON_LEN_MULT:
            raise PayloadError(f"Inject Poison: dpa {self.dpa:#x} is not 64-byte aligned")
        return _pack("<Q", self.dpa, what="Inject Poison")

    @classmethod
    def decode(cls, raw: bytes) -> Self:
        raw = bytes(raw)
        _expect_len(raw, cls.SIZE, "Inject Poison")
        return cls(struct.unpack("<Q", raw)[0])


@dataclass(frozen=True, slots=True)
class ClearPoisonInput:
    """Clear Poison input: DPA plus the 64 bytes written in place of the poison."""

    dpa: int = 0
    write_data: bytes = bytes(POISON_LEN_MULT)

    _FMT: ClassVar[str] = "<Q64s"
    SIZE: ClassVar[int] = 0x48

    def encode(self) -> bytes:
        what = "Clear Poison"
        if self.dpa % POISON_LEN_MULT:
            raise PayloadError(f"{what}: dpa {self.dpa:#x} is not 64-byte aligned")
        if len(self.write_data) != POISON_LEN_MULT:
            raise PayloadError(f"{what}: write_data must be exactly 64 bytes")
        return _pack(self._FMT, self.dpa, bytes(self.write_data), what=what)

    @classmethod
    def decode(cls, raw: bytes) -> Self:
        raw = bytes(raw)
        _expect_len(raw, cls.SIZE, "Clear Poison")
        dpa, data = struct.unpack(cls._FMT, raw)
        return cls(dpa, data)


# --------------------------------------------------------------------------
# Firmware update (02xxh) and timestamp (03xxh)
# --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FwInfo:
    """Get FW Info output.

    ``slot_revisions[i]`` is the revision in slot i+1 ("" = empty slot);
    ``active_slot`` is "Slot Info" bits 2:0, ``staged_slot`` bits 5:3 (0 = none);
    ``online_activation_capable`` is "FW Activation Capabilities" bit 0.
    """

    slots_supported: int = 0
    active_slot: int = 0
    staged_slot: int = 0
    online_activation_capable: bool = False
    slot_revisions: tuple[str, str, str, str] = ("", "", "", "")

    _FMT: ClassVar[str] = "<BBB13x16s16s16s16s"
    SIZE: ClassVar[int] = 0x50

    @property
    def slot_info(self) -> int:
        return (self.active_slot & 0x7) | (self.staged_slot & 0x7) << 3

    @property
    def activation_caps(self) -> int:
        return 1 if self.online_activation_capable else 0

    def revision(self, slot: int) -> str | None:
        """Revision in 1-based ``slot``; None for an empty slot (libcxl -ENOENT)."""
        rev = self.slot_revisions[slot - 1]
        return rev or None

    def encode(self) -> bytes:
        what = "Get FW Info"
        if not (0 <= self.active_slot <= 7 and 0 <= self.staged_slot <= 7):
            raise PayloadError(f"{what}: slot numbers must fit 3 bits")
        if len(self.slot_revisions) != FW_MAX_SLOTS:
            raise PayloadError(f"{what}: exactly {FW_MAX_SLOTS} slot revisions required")
        revs = [_encode_fixed_str(r, FW_REVISION_LEN, what) for r in self.slot_revisions]
        return _pack(self._FMT, self.slots_supported, self.slot_info,
                     self.activation_caps, *revs, what=what)

    @classmethod
    def decode(cls, raw: bytes) -> Self:
        raw = bytes(raw)
        _expect_len(raw, cls.SIZE, "Get FW Info")
        nslots, info, caps, *revs = struct.unpack(cls._FMT, raw)
        r1, r2, r3, r4 = (_decode_fixed_str(r) for r in revs)
        return cls(nslots, info & 0x7, (info >> 3) & 0x7, bool(caps & 1), (r1, r2, r3, r4))


@dataclass(frozen=True, slots=True)
class Timestamp:
    """Get Timestamp output / Set Timestamp input: nanoseconds since the epoch."""

    nanoseconds: int = 0

    SIZE: ClassVar[int] = 0x08

    def encode(self) -> bytes:
        return _pack("<Q", self.nanoseconds, what="Timestamp")

    @classmethod
    def decode(cls, raw: bytes) -> Self:
        raw = bytes(raw)
        _expect_len(raw, cls.SIZE, "Timestamp")
        return cls(struct.unpack("<Q", raw)[0])


# --------------------------------------------------------------------------
# Logs (04xxh)
# --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SupportedLogEntry:
    """One Get Supported Logs entry: log UUID and its size in bytes."""

    log_id: uuid.UUID
    size: int

    _FMT: ClassVar[str] = "<16sI"
    SIZE: ClassVar[int] = 0x14

    def encode(self) -> bytes:
        # UUIDs are carried in RFC 4122 byte order (kernel uuid_t).
        return _pack(self._FMT, self.log_id.bytes, self.size, what="Supported Log Entry")


@dataclass(frozen=True, slots=True)
class GetSupportedLogsOutput:
    """Get Supported Logs output: entry count, 6 reserved bytes, entries."""

    entries: tuple[SupportedLogEntry, ...] = ()

    _HDR: ClassVar[str] = "<H6x"
    HEADER_SIZE: ClassVar[int] = 0x08

    def encode(self) -> bytes:
        head = _pack(self._HDR, len(self.entries), what="Get Supported Logs")
        return head + b"".join(e.encode() for e in self.entries)

    @classmethod
    def decode(cls, raw: bytes) -> Self:
        raw = bytes(raw)
        if len(raw) < cls.HEADER_SIZE:
            raise PayloadError(f"Get Supported Logs: {len(raw):#x} bytes < header")
        (count,) = struct.unpack_from(cls._HDR, raw)
        _expect_len(raw, cls.HEADER_SIZE + count * SupportedLogEntry.SIZE,
                    "Get Supported Logs")
        entries = tuple(
            SupportedLogEntry(uuid.UUID(bytes=u), size)
            for u, size in struct.iter_unpack(SupportedLogEntry._FMT, raw[cls.HEADER_SIZE:])
        )
        return cls(entries)

    def find(self, log_id: uuid.UUID) -> SupportedLogEntry | None:
        return next((e for e in self.entries if e.log_id == log_id), None)


@dataclass(frozen=True, slots=True)
class GetLogInput:
    """Get Log input: log UUID, byte offset and length."""

    log_id: uuid.UUID = CEL_UUID
    offset: int = 0
    length: int = 0

    _FMT: ClassVar[str] = "<16sII"
    SIZE: ClassVar[int] = 0x18

    def encode(self) -> bytes:
        return _pack(self._FMT, self.log_id.bytes, self.offset, self.length, what="Get Log")

    @classmethod
    def decode(cls, raw: bytes) -> Self:
        raw = bytes(raw)
        _expect_len(raw, cls.SIZE, "Get Log")
        u, off, length = struct.unpack(cls._FMT, raw)
        return cls(uuid.UUID(bytes=u), off, length)


class CommandEffect(IntFlag):
    """CEL entry "Command Effect" bits."""

    CONFIG_CHANGE_AFTER_COLD_RESET = 1 << 0
    IMMEDIATE_CONFIG_CHANGE = 1 << 1
    IMMEDIATE_DATA_CHANGE = 1 << 2
    IMMEDIATE_POLICY_CHANGE = 1 << 3
    IMMEDIATE_LOG_CHANGE = 1 << 4
    SECURITY_STATE_CHANGE = 1 << 5
    BACKGROUND_OPERATION = 1 << 6
    SECONDARY_MAILBOX_SUPPORTED = 1 << 7


@dataclass(frozen=True, slots=True)
class CelEntry:
    """One Command Effects Log entry: opcode and its effect bits."""

    opcode: int
    effect: int = 0

    _FMT: ClassVar[str] = "<HH"
    SIZE: ClassVar[int] = 0x04

    def encode(self) -> bytes:
        return _pack(self._FMT, self.opcode, self.effect, what="CEL entry")

    @classmethod
    def decode(cls, raw: bytes) -> Self:
        raw = bytes(raw)
        _expect_len(raw, cls.SIZE, "CEL entry")
        return cls(*struct.unpack(cls._FMT, raw))


@dataclass(frozen=True, slots=True)
class CommandEffectsLog:
    """The whole CEL: a packed array of :class:`CelEntry` (the kernel walks
    ``size / 4`` entries; a partial trailing entry is an error here)."""

    entries: tuple[CelEntry, ...] = field(default_factory=tuple)

    def encode(self) -> bytes:
        return b"".join(e.encode() for e in self.entries)

    @classmethod
    def decode(cls, raw: bytes) -> Self:
        raw = bytes(raw)
        if len(raw) % CelEntry.SIZE:
            raise PayloadError(f"CEL: {len(raw):#x} bytes is not a multiple of 4")
        return cls(tuple(CelEntry(op, eff) for op, eff in struct.iter_unpack(CelEntry._FMT, raw)))

    @property
    def opcodes(self) -> frozenset[int]:
        return frozenset(e.opcode for e in self.entries)
