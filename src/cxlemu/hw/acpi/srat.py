"""SRAT — System Resource Affinity Table (ACPI spec §5.2.16, ACPICA ``actbl3.h``).

Signature ``"SRAT"``, revision 3. Layout after the 36-byte ACPI header:
``table_revision u32`` (must be 1) and 8 reserved bytes, then sub-structures
that start with ``type u8 @0, length u8 @1``:

* type 1 **Memory Affinity** (40 bytes): proximity_domain u32 @2, reserved
  u16 @6, base u64 @8, length u64 @16, reserved u32 @24, flags u32 @28
  (ENABLED bit0, HOT_PLUGGABLE bit1, NON_VOLATILE bit2), reserved u64 @32.
* type 2 **Processor Local x2APIC Affinity** (24 bytes): reserved u16 @2,
  proximity_domain u32 @4, x2apic_id u32 @8, flags u32 @12 (ENABLED bit0),
  clock_domain u32 @16, reserved u32 @20.
* type 6 **Generic Port Affinity** (32 bytes): reserved u8 @2,
  device_handle_type u8 @3 (0 = ACPI, 1 = PCI), proximity_domain u32 @4,
  device_handle[16] @8 (ACPI: _HID char[8], _UID u32, reserved u32),
  flags u32 @24 (ENABLED bit0, ARCH_TRANSACTIONS bit1), reserved u32 @28.

Other types (and generic ports with a PCI device handle, which the kernel
skips) are kept as :class:`UnknownSrat`.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

from cxlemu.hw.acpi.table import (
    ACPI_HEADER_SIZE,
    AcpiHeader,
    AcpiTableError,
    SubtableLayout,
    build_table,
    parse_table,
    walk_subtables,
)
from cxlemu.util.lazydc import dataclass

__all__ = [
    "SRAT_SIGNATURE",
    "SRAT_REVISION",
    "SRAT_TYPE_MEMORY_AFFINITY",
    "SRAT_TYPE_X2APIC_AFFINITY",
    "SRAT_TYPE_GENERIC_PORT_AFFINITY",
    "SRAT_MEM_ENABLED",
    "SRAT_MEM_HOT_PLUGGABLE",
    "SRAT_MEM_NON_VOLATILE",
    "SRAT_CPU_ENABLED",
    "SRAT_GENERIC_AFFINITY_ENABLED",
    "SRAT_ARCHITECTURAL_TRANSACTIONS",
    "SRAT_DEVICE_HANDLE_ACPI",
    "SRAT_DEVICE_HANDLE_PCI",
    "CXL_HOST_BRIDGE_HID",
    "MemoryAffinity",
    "X2ApicAffinity",
    "GenericPortAffinity",
    "UnknownSrat",
    "SratSubtable",
    "SratDecodeError",
    "encode_subtable",
    "encode_srat",
    "decode_srat",
    "parse_srat",
    "proximity_domains",
]

SRAT_SIGNATURE = "SRAT"
SRAT_REVISION = 3

SRAT_TYPE_MEMORY_AFFINITY = 1
SRAT_TYPE_X2APIC_AFFINITY = 2
SRAT_TYPE_GENERIC_PORT_AFFINITY = 6

SRAT_MEM_ENABLED = 1 << 0
SRAT_MEM_HOT_PLUGGABLE = 1 << 1
SRAT_MEM_NON_VOLATILE = 1 << 2
SRAT_CPU_ENABLED = 1 << 0
SRAT_GENERIC_AFFINITY_ENABLED = 1 << 0
SRAT_ARCHITECTURAL_TRANSACTIONS = 1 << 1

SRAT_DEVICE_HANDLE_ACPI = 0
SRAT_DEVICE_HANDLE_PCI = 1

#: _HID of an ACPI CXL host bridge.
CXL_HOST_BRIDGE_HID = "ACPI0016"

_RESERVED = struct.Struct("<IQ")  # table_revision (=1) + reserved
SRAT_FIXED_BODY = _RESERVED.size  # 12
_LAYOUT = SubtableLayout("<BB", type_index=0, length_index=1)

_MEM = struct.Struct("<BBIHQQIIQ")  # 40
_X2APIC = struct.Struct("<BBHIIIII")  # 24
_GENPORT = struct.Struct("<BBBBI8sIIII")  # 32
assert (_MEM.size, _X2APIC.size, _GENPORT.size) == (40, 24, 32)


class SratDecodeError(AcpiTableError):
    """An SRAT sub-structure cannot be decoded (names the structure and offset)."""


@dataclass(frozen=True)
class MemoryAffinity:
    """Memory range [base, base+length) belongs to ``proximity_domain``."""

    proximity_domain: int
    base: int
    length: int
    flags: int = SRAT_MEM_ENABLED

    TYPE = SRAT_TYPE_MEMORY_AFFINITY

    @property
    def enabled(self) -> bool:
        return bool(self.flags & SRAT_MEM_ENABLED)

    @property
    def hot_pluggable(self) -> bool:
        return bool(self.flags & SRAT_MEM_HOT_PLUGGABLE)

    @property
    def non_volatile(self) -> bool:
        return bool(self.flags & SRAT_MEM_NON_VOLATILE)


@dataclass(frozen=True)
class X2ApicAffinity:
    """Processor with x2APIC id ``x2apic_id`` belongs to ``proximity_domain``."""

    proximity_domain: int
    x2apic_id: int
    flags: int = SRAT_CPU_ENABLED
    clock_domain: int = 0

    TYPE = SRAT_TYPE_X2APIC_AFFINITY

    @property
    def enabled(self) -> bool:
        return bool(self.flags & SRAT_CPU_ENABLED)


@dataclass(frozen=True)
class GenericPortAffinity:
    """Generic port (a CXL host bridge, ACPI device handle ``hid``/``uid``) in ``proximity_domain``.

    The kernel keys generic-port performance data by the _UID stored as a
    u32 at device_handle[8] (drivers/acpi/numa/hmat.c).
    """

    proximity_domain: int
    uid: int
    hid: str = CXL_HOST_BRIDGE_HID
    flags: int = SRAT_GENERIC_AFFINITY_ENABLED

    TYPE = SRAT_TYPE_GENERIC_PORT_AFFINITY

    @property
    def enabled(self) -> bool:
        return bool(self.flags & SRAT_GENERIC_AFFINITY_ENABLED)


@dataclass(frozen=True)
class UnknownSrat:
    """A sub-structure we do not decode; ``raw`` includes its 2-byte header."""

    type: int
    raw: bytes


SratSubtable = MemoryAffinity | X2ApicAffinity | GenericPortAffinity | UnknownSrat


def _check(value: int, bits: int, what: str) -> None:
    if not 0 <= value < (1 << bits):
        raise ValueError(f"{what} {value} does not fit in u{bits}")


def encode_subtable(sub: SratSubtable) -> bytes:
    """Encode one SRAT sub-structure including its header."""
    if isinstance(sub, MemoryAffinity):
        _check(sub.proximity_domain, 32, "SRAT memory proximity_domain")
        _check(sub.base, 64, "SRAT memory base")
        _check(sub.length, 64, "SRAT memory length")
        _check(sub.flags, 32, "SRAT memory flags")
        return _MEM.pack(
            SRAT_TYPE_MEMORY_AFFINITY, _MEM.size, sub.proximity_domain, 0, sub.base, sub.length, 0, sub.flags, 0
        )
    if isinstance(sub, X2ApicAffinity):
        for v, what in ((sub.proximity_domain, "proximity_domain"), (sub.x2apic_id, "x2apic_id"),
                        (sub.flags, "flags"), (sub.clock_domain, "clock_domain")):
            _check(v, 32, f"SRAT x2APIC {what}")
        return _X2APIC.pack(
            SRAT_TYPE_X2APIC_AFFINITY, _X2APIC.size, 0, sub.proximity_domain, sub.x2apic_id, sub.flags,
            sub.clock_domain, 0,
        )
    if isinstance(sub, GenericPortAffinity):
        hid = sub.hid.encode("ascii")
        if len(hid) > 8:
            raise ValueError(f"generic port _HID {sub.hid!r} longer than 8 bytes")
        _check(sub.proximity_domain, 32, "SRAT generic port proximity_domain")
        _check(sub.uid, 32, "SRAT generic port uid")
        _check(sub.flags, 32, "SRAT generic port flags")
        return _GENPORT.pack(
            SRAT_TYPE_GENERIC_PORT_AFFINITY, _GENPORT.size, 0, SRAT_DEVICE_HANDLE_ACPI, sub.proximity_domain,
            hid.ljust(8, b"\0"), sub.uid, 0, sub.flags, 0,
        )
    if isinstance(sub, UnknownSrat):
        if len(sub.raw) < 2:
            raise ValueError("UnknownSrat.raw must include the 2-byte sub-structure header")
        return bytes(sub.raw)
    raise TypeError(f"not an SRAT sub-structure: {sub!r}")


def encode_srat(subtables: Iterable[SratSubtable], **header_kwargs) -> bytes:
    """Encode a whole SRAT (header, table_revision 1, reserved, sub-structures)."""
    body = _RESERVED.pack(1, 0) + b"".join(encode_subtable(s) for s in subtables)
    return build_table(SRAT_SIGNATURE, SRAT_REVISION, body, **header_kwargs)


def _decode_one(off: int, stype: int, raw: bytes) -> SratSubtable:
    def need(name: str, size: int) -> None:
        # The kernel rejects shorter entries ("SRAT: Unexpected header length")
        # and tolerates longer ones; so do we.
        if len(raw) < size:
            raise SratDecodeError(
                f"SRAT: {name} at offset 0x{off:X} has length {len(raw)}, expected {size}",
                signature=SRAT_SIGNATURE,
                offset=off,
            )

    if stype == SRAT_TYPE_MEMORY_AFFINITY:
        need("Memory Affinity", _MEM.size)
        _, _, pd, _, base, length, _, flags, _ = _MEM.unpack_from(raw)
        return MemoryAffinity(proximity_domain=pd, base=base, length=length, flags=flags)
    if stype == SRAT_TYPE_X2APIC_AFFINITY:
        need("Processor Local x2APIC Affinity", _X2APIC.size)
        _, _, _, pd, apic, flags, clock, _ = _X2APIC.unpack_from(raw)
        return X2ApicAffinity(proximity_domain=pd, x2apic_id=apic, flags=flags, clock_domain=clock)
    if stype == SRAT_TYPE_GENERIC_PORT_AFFINITY:
        need("Generic Port Affinity", _GENPORT.size)
        _, _, _, handle_type, pd, hid, uid, _, flags, _ = _GENPORT.unpack_from(raw)
        if handle_type != SRAT_DEVICE_HANDLE_ACPI:
            return UnknownSrat(type=stype, raw=raw)  # kernel: PCI handles skipped for now
        return GenericPortAffinity(
            proximity_domain=pd, uid=uid, hid=hid.rstrip(b"\0").decode("latin-1"), flags=flags
        )
    return UnknownSrat(type=stype, raw=raw)


def parse_srat(data: bytes | bytearray | memoryview) -> tuple[AcpiHeader, list[SratSubtable]]:
    """Validate an SRAT and decode its sub-structures."""
    header, body = parse_table(data, expect_signature=SRAT_SIGNATURE)
    if len(body) < SRAT_FIXED_BODY:
        raise SratDecodeError(
            f"SRAT: table length {header.length} too short for the {SRAT_FIXED_BODY} bytes after the header",
            signature=SRAT_SIGNATURE,
            offset=ACPI_HEADER_SIZE,
        )
    table = bytes(data[: header.length])
    start = ACPI_HEADER_SIZE + SRAT_FIXED_BODY
    subs = [
        _decode_one(off, stype, raw)
        for off, stype, raw in walk_subtables(table, start, header.length, _LAYOUT, SRAT_SIGNATURE)
    ]
    return header, subs


def decode_srat(data: bytes | bytearray | memoryview) -> list[SratSubtable]:
    """Decode a whole SRAT into its sub-structures."""
    return parse_srat(data)[1]


def proximity_domains(subtables: Iterable[SratSubtable]) -> set[int]:
    """Every proximity domain named by a decoded (enabled or not) SRAT entry."""
    return {
        s.proximity_domain
        for s in subtables
        if isinstance(s, (MemoryAffinity, X2ApicAffinity, GenericPortAffinity))
    }
