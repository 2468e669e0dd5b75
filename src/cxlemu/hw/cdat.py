"""CDAT — Coherent Device Attribute Table (CDAT spec 1.0x, ACPICA ``actbl1.h``).

A CXL device (or switch) exposes its CDAT over DOE; the kernel reads it in
``drivers/cxl/core/pci.c`` (checksum) and interprets it in
``drivers/cxl/core/cdat.c``.

Header (16 bytes): length u32 @0, revision u8 @4, checksum u8 @5 (all bytes of
the table sum to 0 mod 256), reserved[6] @6, sequence u32 @12. Then
structures starting with ``type u8 @0, reserved u8 @1, length u16 @2``:

====== ======= ===== ==================================================================
Type   Name    Bytes Body (offsets from the structure start)
====== ======= ===== ==================================================================
0      DSMAS   24    handle u8 @4, flags u8 @5, rsvd u16, DPA base u64 @8, DPA length u64 @16
1      DSLBIS  24    handle u8 @4, flags u8 @5, data_type u8 @6, rsvd u8, entry_base_unit u64 @8,
                     entry u16[3] @16, rsvd u16 @22
2      DSMSCIS 20    DSMAS handle u8 @4, rsvd[3], side cache size u64 @8, cache attributes u32 @16
3      DSIS    8     flags u8 @4, handle u8 @5, rsvd u16
4      DSEMTS  24    DSMAS handle u8 @4, EFI memory type/attr u8 @5, rsvd u16, DPA offset u64 @8,
                     range length u64 @16
5      SSLBIS  16+8n data_type u8 @4, rsvd[3], entry_base_unit u64 @8, then n × (port_x u16,
                     port_y u16, latency_or_bandwidth u16, rsvd u16)
====== ======= ===== ==================================================================

``data_type`` uses the HMAT encoding (0 access latency ... 5 write bandwidth).
Latencies in CDAT are picoseconds (``entry_base_unit × entry``), bandwidth
MB/s.
"""

from __future__ import annotations

import errno as _errno
import struct
from collections.abc import Iterable, Sequence
from dataclasses import replace

from cxlemu.util.lazy import lazy_module

np = lazy_module("numpy")  # imported on first use: only the data path pays for numpy

from cxlemu.hw.acpi.hmat import (
    HMAT_ACCESS_BANDWIDTH,
    HMAT_ACCESS_LATENCY,
    HMAT_MEMORY,
    HMAT_MEMORY_HIERARCHY,
    HMAT_READ_BANDWIDTH,
    HMAT_READ_LATENCY,
    HMAT_WRITE_BANDWIDTH,
    HMAT_WRITE_LATENCY,
    choose_entry_base_unit,
)
from cxlemu.hw.acpi.table import AcpiTableError, SubtableLayout, acpi_checksum, checksum_byte, walk_subtables
from cxlemu.util.lazydc import dataclass

__all__ = [
    "CDAT_HEADER_SIZE",
    "CDAT_REVISION",
    "CDAT_TYPE_DSMAS",
    "CDAT_TYPE_DSLBIS",
    "CDAT_TYPE_DSMSCIS",
    "CDAT_TYPE_DSIS",
    "CDAT_TYPE_DSEMTS",
    "CDAT_TYPE_SSLBIS",
    "DSMAS_NONVOLATILE",
    "DSMAS_SHAREABLE",
    "DSMAS_READ_ONLY",
    "DSIS_MEM_ATTACHED",
    "DSEMTS_EFI_CONVENTIONAL",
    "DSEMTS_EFI_CONVENTIONAL_SP",
    "DSEMTS_EFI_RESERVED",
    "SSLBIS_US_PORT",
    "SSLBIS_ANY_PORT",
    "Dsmas",
    "Dslbis",
    "Dsmscis",
    "Dsis",
    "Dsemts",
    "SslbisEntry",
    "Sslbis",
    "UnknownCdat",
    "CdatStructure",
    "Cdat",
    "CdatError",
    "Coordinates",
    "encode_structure",
    "encode_cdat",
    "decode_cdat",
    "cdat_for_device",
    "device_coordinates",
    "switch_port_coordinates",
]

CDAT_HEADER_SIZE = 16
CDAT_REVISION = 1
CDAT_CHECKSUM_OFFSET = 5

CDAT_TYPE_DSMAS = 0
CDAT_TYPE_DSLBIS = 1
CDAT_TYPE_DSMSCIS = 2
CDAT_TYPE_DSIS = 3
CDAT_TYPE_DSEMTS = 4
CDAT_TYPE_SSLBIS = 5

DSMAS_NONVOLATILE = 1 << 2
DSMAS_SHAREABLE = 1 << 3
DSMAS_READ_ONLY = 1 << 6

DSIS_MEM_ATTACHED = 1 << 0

# DSEMTS "EFI memory type and attribute" values.
DSEMTS_EFI_CONVENTIONAL = 0
DSEMTS_EFI_CONVENTIONAL_SP = 1  # EfiConventionalMemory with EFI_MEMORY_SP
DSEMTS_EFI_RESERVED = 2  # EfiReservedMemoryType

SSLBIS_US_PORT = 0x0100
SSLBIS_ANY_PORT = 0xFFFF

_HEADER = struct.Struct("<IBB6sI")
_LAYOUT = SubtableLayout("<BBH", type_index=0, length_index=2)
_DSMAS = struct.Struct("<BBHBBHQQ")  # 24
_DSLBIS = struct.Struct("<BBHBBBBQHHHH")  # 24
_DSMSCIS = struct.Struct("<BBHB3xQI")  # 20
_DSIS = struct.Struct("<BBHBBH")  # 8
_DSEMTS = struct.Struct("<BBHBBHQQ")  # 24
_SSLBIS = struct.Struct("<BBHB3xQ")  # 16 (entries follow)
_SSLBE = 8
assert (_HEADER.size, _DSMAS.size, _DSLBIS.size, _DSMSCIS.size, _DSIS.size, _DSEMTS.size, _SSLBIS.size) == (
    16, 24, 24, 20, 8, 24, 16,
)


class CdatError(AcpiTableError):
    """Malformed CDAT (or a rule the kernel's CDAT parser enforces). ``errno`` is positive."""

    def __init__(self, message: str, *, offset: int | None = None, errno: int = _errno.EINVAL):
        super().__init__(message, signature="CDAT", offset=offset)
        self.errno = errno


@dataclass(frozen=True)
class Dsmas:
    """Device Scoped Memory Affinity Structure: DPA range [dpa_base, dpa_base+dpa_length)."""

    handle: int
    flags: int
    dpa_base: int
    dpa_length: int

    TYPE = CDAT_TYPE_DSMAS

    @property
    def nonvolatile(self) -> bool:
        return bool(self.flags & DSMAS_NONVOLATILE)


@dataclass(frozen=True)
class Dslbis:
    """Device Scoped Latency and Bandwidth Information: value = entry_base_unit × entries[0]."""

    handle: int
    flags: int
    data_type: int
    entry_base_unit: int
    entries: tuple[int, int, int] = (0, 0, 0)

    TYPE = CDAT_TYPE_DSLBIS


@dataclass(frozen=True)
class Dsmscis:
    """Device Scoped Memory Side Cache Information."""

    handle: int
    side_cache_size: int
    cache_attributes: int

    TYPE = CDAT_TYPE_DSMSCIS


@dataclass(frozen=True)
class Dsis:
    """Device Scoped Initiator Structure."""

    flags: int
    handle: int

    TYPE = CDAT_TYPE_DSIS


@dataclass(frozen=True)
class Dsemts:
    """Device Scoped EFI Memory Type Structure."""

    handle: int
    memory_type: int
    dpa_offset: int
    range_length: int

    TYPE = CDAT_TYPE_DSEMTS


@dataclass(frozen=True)
class SslbisEntry:
    port_x: int
    port_y: int
    value: int


@dataclass(frozen=True)
class Sslbis:
    """Switch Scoped Latency and Bandwidth Information (value = entry_base_unit × entry.value)."""

    data_type: int
    entry_base_unit: int
    entries: tuple[SslbisEntry, ...]

    TYPE = CDAT_TYPE_SSLBIS


@dataclass(frozen=True)
class UnknownCdat:
    """A structure of a type we do not decode; ``raw`` includes its 4-byte header."""

    type: int
    raw: bytes


CdatStructure = Dsmas | Dslbis | Dsmscis | Dsis | Dsemts | Sslbis | UnknownCdat


@dataclass(frozen=True)
class Cdat:
    """A whole CDAT: its structures, revision and sequence number."""

    structures: tuple[CdatStructure, ...]
    revision: int = CDAT_REVISION
    sequence: int = 0


@dataclass(frozen=True)
class Coordinates:
    """Access coordinates: latency in picoseconds, bandwidth in MB/s."""

    read_latency: int = 0
    write_latency: int = 0
    read_bandwidth: int = 0
    write_bandwidth: int = 0


# --------------------------------------------------------------------------
# encode
# --------------------------------------------------------------------------
def _check(value: int, bits: int, what: str) -> None:
    if not 0 <= value < (1 << bits):
        raise ValueError(f"CDAT {what} {value} does not fit in u{bits}")


def encode_structure(s: CdatStructure) -> bytes:
    """Encode one CDAT structure including its 4-byte header."""
    if isinstance(s, Dsmas):
        _check(s.handle, 8, "DSMAS handle")
        _check(s.flags, 8, "DSMAS flags")
        _check(s.dpa_base, 64, "DSMAS dpa_base")
        _check(s.dpa_length, 64, "DSMAS dpa_length")
        return _DSMAS.pack(CDAT_TYPE_DSMAS, 0, _DSMAS.size, s.handle, s.flags, 0, s.dpa_base, s.dpa_length)
    if isinstance(s, Dslbis):
        for v, bits, what in ((s.handle, 8, "handle"), (s.flags, 8, "flags"), (s.data_type, 8, "data_type"),
                              (s.entry_base_unit, 64, "entry_base_unit")):
            _check(v, bits, f"DSLBIS {what}")
        if len(s.entries) != 3:
            raise ValueError("DSLBIS carries exactly 3 entries")
        for e in s.entries:
            _check(e, 16, "DSLBIS entry")
        return _DSLBIS.pack(
            CDAT_TYPE_DSLBIS, 0, _DSLBIS.size, s.handle, s.flags, s.data_type, 0, s.entry_base_unit, *s.entries, 0
        )
    if isinstance(s, Dsmscis):
        _check(s.handle, 8, "DSMSCIS handle")
        _check(s.side_cache_size, 64, "DSMSCIS side_cache_size")
        _check(s.cache_attributes, 32, "DSMSCIS cache_attributes")
        return _DSMSCIS.pack(CDAT_TYPE_DSMSCIS, 0, _DSMSCIS.size, s.handle, s.side_cache_size, s.cache_attributes)
    if isinstance(s, Dsis):
        _check(s.flags, 8, "DSIS flags")
        _check(s.handle, 8, "DSIS handle")
        return _DSIS.pack(CDAT_TYPE_DSIS, 0, _DSIS.size, s.flags, s.handle, 0)
    if isinstance(s, Dsemts):
        _check(s.handle, 8, "DSEMTS handle")
        _check(s.memory_type, 8, "DSEMTS memory_type")
        _check(s.dpa_offset, 64, "DSEMTS dpa_offset")
        _check(s.range_length, 64, "DSEMTS range_length")
        return _DSEMTS.pack(
            CDAT_TYPE_DSEMTS, 0, _DSEMTS.size, s.handle, s.memory_type, 0, s.dpa_offset, s.range_length
        )
    if isinstance(s, Sslbis):
        if not s.entries:
            raise ValueError("SSLBIS needs at least one entry (the kernel rejects an empty one)")
        _check(s.data_type, 8, "SSLBIS data_type")
        _check(s.entry_base_unit, 64, "SSLBIS entry_base_unit")
        length = _SSLBIS.size + _SSLBE * len(s.entries)
        _check(length, 16, "SSLBIS length")
        rows = np.zeros((len(s.entries), 4), dtype=np.int64)
        rows[:, 0] = [e.port_x for e in s.entries]
        rows[:, 1] = [e.port_y for e in s.entries]
        rows[:, 2] = [e.value for e in s.entries]
        if rows.min() < 0 or rows.max() > 0xFFFF:
            raise ValueError("SSLBIS port ids and values must fit in u16")
        head = _SSLBIS.pack(CDAT_TYPE_SSLBIS, 0, length, s.data_type, s.entry_base_unit)
        return head + rows.astype("<u2").tobytes()
    if isinstance(s, UnknownCdat):
        if len(s.raw) < 4:
            raise ValueError("UnknownCdat.raw must include the 4-byte structure header")
        return bytes(s.raw)
    raise TypeError(f"not a CDAT structure: {s!r}")


def encode_cdat(cdat: Cdat | Iterable[CdatStructure]) -> bytes:
    """Encode a whole CDAT (header with length and checksum filled in)."""
    if not isinstance(cdat, Cdat):
        cdat = Cdat(tuple(cdat))
    _check(cdat.revision, 8, "revision")
    _check(cdat.sequence, 32, "sequence")
    body = b"".join(encode_structure(s) for s in cdat.structures)
    length = CDAT_HEADER_SIZE + len(body)
    _check(length, 32, "length")
    table = bytearray(_HEADER.pack(length, cdat.revision, 0, bytes(6), cdat.sequence) + body)
    table[CDAT_CHECKSUM_OFFSET] = checksum_byte(table, CDAT_CHECKSUM_OFFSET)
    return bytes(table)


# --------------------------------------------------------------------------
# decode
# --------------------------------------------------------------------------
def _exact(name: str, off: int, raw: bytes, size: int) -> None:
    if len(raw) != size:
        # cdat.c: pr_warn("Malformed DSMAS table length: (%u:%u)\n", size, len)
        raise CdatError(f"Malformed {name} table length: ({size}:{len(raw)}) at offset 0x{off:X}", offset=off)


def _decode_one(off: int, stype: int, raw: bytes) -> CdatStructure:
    if stype == CDAT_TYPE_DSMAS:
        _exact("DSMAS", off, raw, _DSMAS.size)
        _, _, _, handle, flags, _, base, length = _DSMAS.unpack(raw)
        return Dsmas(handle=handle, flags=flags, dpa_base=base, dpa_length=length)
    if stype == CDAT_TYPE_DSLBIS:
        _exact("DSLBIS", off, raw, _DSLBIS.size)
        _, _, _, handle, flags, dtype, _, base, e0, e1, e2, _ = _DSLBIS.unpack(raw)
        return Dslbis(handle=handle, flags=flags, data_type=dtype, entry_base_unit=base, entries=(e0, e1, e2))
    if stype == CDAT_TYPE_DSMSCIS:
        _exact("DSMSCIS", off, raw, _DSMSCIS.size)
        _, _, _, handle, size, attrs = _DSMSCIS.unpack(raw)
        return Dsmscis(handle=handle, side_cache_size=size, cache_attributes=attrs)
    if stype == CDAT_TYPE_DSIS:
        _exact("DSIS", off, raw, _DSIS.size)
        _, _, _, flags, handle, _ = _DSIS.unpack(raw)
        return Dsis(flags=flags, handle=handle)
    if stype == CDAT_TYPE_DSEMTS:
        _exact("DSEMTS", off, raw, _DSEMTS.size)
        _, _, _, handle, mtype, _, dpa_off, length = _DSEMTS.unpack(raw)
        return Dsemts(handle=handle, memory_type=mtype, dpa_offset=dpa_off, range_length=length)
    if stype == CDAT_TYPE_SSLBIS:
        remain = len(raw) - _SSLBIS.size
        if remain <= 0 or remain % _SSLBE:
            # cdat.c: dev_warn(dev, "Malformed SSLBIS table length: (%u)\n", len)
            raise CdatError(f"Malformed SSLBIS table length: ({len(raw)}) at offset 0x{off:X}", offset=off)
        _, _, _, dtype, base = _SSLBIS.unpack_from(raw)
        rows = np.frombuffer(raw, dtype="<u2", offset=_SSLBIS.size).reshape(-1, 4)
        entries = tuple(SslbisEntry(int(r[0]), int(r[1]), int(r[2])) for r in rows)
        return Sslbis(data_type=dtype, entry_base_unit=base, entries=entries)
    return UnknownCdat(type=stype, raw=raw)


def decode_cdat(data: bytes | bytearray | memoryview, *, verify_checksum: bool = True) -> Cdat:
    """Decode a CDAT, checking its length and (by default) its checksum.

    A checksum failure is what makes the kernel log "Failed to read/validate
    CDAT." and drop the table (drivers/cxl/core/pci.c).
    """
    data = bytes(data)
    if len(data) < CDAT_HEADER_SIZE:
        raise CdatError(f"CDAT too short: {len(data)} bytes, the header needs {CDAT_HEADER_SIZE}", offset=0)
    length, revision, csum, _, sequence = _HEADER.unpack_from(data)
    if length < CDAT_HEADER_SIZE:
        raise CdatError(f"CDAT length {length} shorter than its {CDAT_HEADER_SIZE}-byte header", offset=0)
    if length > len(data):
        raise CdatError(f"CDAT length {length} exceeds the {len(data)} bytes available", offset=0)
    table = data[:length]
    if verify_checksum and acpi_checksum(table) != 0:
        raise CdatError(
            f"Failed to read/validate CDAT.: checksum 0x{csum:02X}, should be "
            f"0x{checksum_byte(table, CDAT_CHECKSUM_OFFSET):02X}",
            offset=CDAT_CHECKSUM_OFFSET,
            errno=_errno.EIO,
        )
    subs = walk_subtables(table, CDAT_HEADER_SIZE, length, _LAYOUT, "CDAT")
    return Cdat(
        structures=tuple(_decode_one(off, stype, raw) for off, stype, raw in subs),
        revision=revision,
        sequence=sequence,
    )


# --------------------------------------------------------------------------
# building and interpreting
# --------------------------------------------------------------------------
def _per_range(value, count: int, what: str) -> list[int]:
    if isinstance(value, (int, np.integer)):
        return [int(value)] * count
    values = [int(v) for v in value]
    if len(values) != count:
        raise ValueError(f"{what}: {len(values)} values for {count} DSMAS ranges")
    return values


def cdat_for_device(
    dsmas_ranges: Sequence[tuple[int, int] | tuple[int, int, bool]],
    read_latency_ps,
    write_latency_ps,
    read_bw_mbps,
    write_bw_mbps,
    *,
    sequence: int = 0,
) -> Cdat:
    """A typical Type 3 device CDAT.

    ``dsmas_ranges`` holds ``(dpa_base, dpa_length)`` or
    ``(dpa_base, dpa_length, nonvolatile)`` tuples; handle i is assigned to
    range i. For each range: one DSMAS, four DSLBIS (read/write latency in
    ps, read/write bandwidth in MB/s — each argument is a scalar for all
    ranges or one value per range), and one DSEMTS (EFI conventional memory
    with the SP attribute for volatile ranges, reserved type for persistent
    ranges). Each DSLBIS gets the smallest power-of-ten base unit so its
    u16 entry fits.
    """
    n = len(dsmas_ranges)
    if n > 256:
        raise ValueError("at most 256 DSMAS handles")
    perf = {
        HMAT_READ_LATENCY: _per_range(read_latency_ps, n, "read_latency_ps"),
        HMAT_WRITE_LATENCY: _per_range(write_latency_ps, n, "write_latency_ps"),
        HMAT_READ_BANDWIDTH: _per_range(read_bw_mbps, n, "read_bw_mbps"),
        HMAT_WRITE_BANDWIDTH: _per_range(write_bw_mbps, n, "write_bw_mbps"),
    }
    out: list[CdatStructure] = []
    for handle, rng in enumerate(dsmas_ranges):
        base, length = int(rng[0]), int(rng[1])
        nonvolatile = bool(rng[2]) if len(rng) > 2 else False
        out.append(Dsmas(handle, DSMAS_NONVOLATILE if nonvolatile else 0, base, length))
        for dtype, values in perf.items():
            unit, entries = choose_entry_base_unit([values[handle]])
            out.append(Dslbis(handle, HMAT_MEMORY, dtype, unit, (int(entries[0]), 0, 0)))
        out.append(
            Dsemts(handle, DSEMTS_EFI_RESERVED if nonvolatile else DSEMTS_EFI_CONVENTIONAL_SP, 0, length)
        )
    return Cdat(tuple(out), sequence=sequence)


def _structures(cdat: Cdat | bytes | bytearray | memoryview | Iterable[CdatStructure]) -> tuple:
    if isinstance(cdat, (bytes, bytearray, memoryview)):
        return decode_cdat(cdat).structures
    if isinstance(cdat, Cdat):
        return cdat.structures
    return tuple(cdat)


def _set_coordinate(c: Coordinates, data_type: int, value: int) -> Coordinates:
    """cdat.c cxl_access_coordinate_set: "access" types set both directions."""
    if data_type == HMAT_ACCESS_LATENCY:
        return replace(c, read_latency=value, write_latency=value)
    if data_type == HMAT_READ_LATENCY:
        return replace(c, read_latency=value)
    if data_type == HMAT_WRITE_LATENCY:
        return replace(c, write_latency=value)
    if data_type == HMAT_ACCESS_BANDWIDTH:
        return replace(c, read_bandwidth=value, write_bandwidth=value)
    if data_type == HMAT_READ_BANDWIDTH:
        return replace(c, read_bandwidth=value)
    if data_type == HMAT_WRITE_BANDWIDTH:
        return replace(c, write_bandwidth=value)
    return c


def _scaled(base: int, entry: int) -> int:
    # check_mul_overflow on u64 keeps the wrapped product (and warns); the
    # value is then stored in an unsigned int.
    return (base * entry) & 0xFFFF_FFFF


def device_coordinates(cdat: Cdat | bytes | Iterable[CdatStructure]) -> dict[int, Coordinates]:
    """Per-DSMAS-handle coordinates the way ``cdat.c`` reads an endpoint CDAT.

    All DSMAS first (a duplicate handle fails the parse, -EINVAL), then each
    DSLBIS: data types above write bandwidth are skipped, non-memory
    hierarchies are skipped, DSLBIS without a matching DSMAS are skipped
    ("No matching DSMAS entry for DSLBIS entry."); the value is
    ``entry_base_unit × entry[0]`` (ps or MB/s) and later structures
    overwrite earlier ones. No DSMAS → ``{}`` (the kernel: -ENOENT).
    """
    structs = _structures(cdat)
    coords: dict[int, Coordinates] = {}
    for s in structs:
        if isinstance(s, Dsmas):
            if s.handle in coords:
                raise CdatError(f"duplicate DSMAS handle {s.handle}")
            coords[s.handle] = Coordinates()
    for s in structs:
        if not isinstance(s, Dslbis):
            continue
        if s.data_type > HMAT_WRITE_BANDWIDTH:
            continue
        if (s.flags & HMAT_MEMORY_HIERARCHY) != HMAT_MEMORY:
            continue
        if s.handle not in coords:
            continue
        coords[s.handle] = _set_coordinate(coords[s.handle], s.data_type, _scaled(s.entry_base_unit, s.entries[0]))
    return coords


def _sslbis_dsp_id(x: int, y: int) -> int:
    """Which downstream port an SSLBIS entry describes (cdat.c cdat_sslbis_handler)."""
    if x == SSLBIS_US_PORT:
        return y
    if x == SSLBIS_ANY_PORT:
        if y == SSLBIS_US_PORT:
            return x
        if y == SSLBIS_ANY_PORT:
            return SSLBIS_ANY_PORT
        return y
    return x


def switch_port_coordinates(
    cdat: Cdat | bytes | Iterable[CdatStructure], port_ids: Iterable[int]
) -> dict[int, Coordinates]:
    """Per-downstream-port switch coordinates from SSLBIS, as ``cdat_sslbis_handler`` applies them.

    For each entry the downstream port id is ``port_y`` when ``port_x`` is
    the upstream port, ``port_x`` otherwise (``0xFFFF`` = any port, which
    updates every port). Data types above write bandwidth are skipped.
    """
    coords = {int(p): Coordinates() for p in port_ids}
    for s in _structures(cdat):
        if not isinstance(s, Sslbis) or s.data_type > HMAT_WRITE_BANDWIDTH:
            continue
        for e in s.entries:
            dsp = _sslbis_dsp_id(e.port_x, e.port_y)
            value = _scaled(s.entry_base_unit, e.value)
            for port in coords:
                if dsp == SSLBIS_ANY_PORT or dsp == port:
                    coords[port] = _set_coordinate(coords[port], s.data_type, value)
    return coords
