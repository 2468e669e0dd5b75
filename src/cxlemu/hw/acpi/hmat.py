"""HMAT — Heterogeneous Memory Attribute Table (ACPI spec §5.2.28, ACPICA ``actbl1.h``).

Signature ``"HMAT"``, revision 2. After the 36-byte header: reserved u32,
then sub-structures starting with ``type u16 @0, reserved u16 @2, length u32 @4``:

* type 0 **Memory Proximity Domain Attributes** (40 bytes): flags u16 @8
  (bit0 initiator PD valid; bit1 memory PD valid in revision 1), reserved
  u16 @10, initiator (processor) PD u32 @12, memory PD u32 @16, reserved
  u32 @20, reserved u64 @24, reserved u64 @32 (revision-1 address range).
* type 1 **System Locality Latency and Bandwidth Information**
  (32 + 4·m + 4·n + 2·m·n bytes): flags u8 @8 (bits 3:0 memory hierarchy,
  0 = memory), data_type u8 @9, min_transfer_size u8 @10, reserved u8 @11,
  m = number of initiator PDs u32 @12, n = number of target PDs u32 @16,
  reserved u32 @20, entry_base_unit u64 @24, initiator PD list u32[m] @32,
  target PD list u32[n], entries u16[m·n] (row = initiator, column = target).

Units (revision 2, ``drivers/acpi/numa/hmat.c`` ``hmat_normalize``):
``entry × entry_base_unit`` is picoseconds for latencies (reported to sysfs
as ns, rounded up) and MB/s for bandwidths. Entries 0 and 0xFFFF mean
"no data". Other sub-structure types are kept as :class:`UnknownHmat`.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence

from cxlemu.util.lazy import lazy_module

np = lazy_module("numpy")  # imported on first use: only the data path pays for numpy

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
    "HMAT_SIGNATURE",
    "HMAT_REVISION",
    "HMAT_TYPE_PROXIMITY",
    "HMAT_TYPE_LOCALITY",
    "HMAT_INITIATOR_PD_VALID",
    "HMAT_MEMORY_PD_VALID",
    "HMAT_MEMORY_HIERARCHY",
    "HMAT_MEMORY",
    "HMAT_ACCESS_LATENCY",
    "HMAT_READ_LATENCY",
    "HMAT_WRITE_LATENCY",
    "HMAT_ACCESS_BANDWIDTH",
    "HMAT_READ_BANDWIDTH",
    "HMAT_WRITE_BANDWIDTH",
    "HMAT_ENTRY_MAX",
    "MemoryProximityDomain",
    "LocalityInfo",
    "UnknownHmat",
    "HmatSubtable",
    "HmatDecodeError",
    "encode_subtable",
    "encode_hmat",
    "decode_hmat",
    "parse_hmat",
    "hmat_revision_supported",
    "hmat_normalize",
    "choose_entry_base_unit",
    "hmat_from_matrix",
    "hmat_value",
    "is_latency",
]

HMAT_SIGNATURE = "HMAT"
HMAT_REVISION = 2

HMAT_TYPE_PROXIMITY = 0
HMAT_TYPE_LOCALITY = 1

HMAT_INITIATOR_PD_VALID = 1 << 0  # ACPI_HMAT_PROCESSOR_PD_VALID
HMAT_MEMORY_PD_VALID = 1 << 1  # revision 1 only

HMAT_MEMORY_HIERARCHY = 0x0F
HMAT_MEMORY = 0

HMAT_ACCESS_LATENCY = 0
HMAT_READ_LATENCY = 1
HMAT_WRITE_LATENCY = 2
HMAT_ACCESS_BANDWIDTH = 3
HMAT_READ_BANDWIDTH = 4
HMAT_WRITE_BANDWIDTH = 5

#: Largest entry value that carries data (0xFFFF means "unreachable/no data").
HMAT_ENTRY_MAX = 0xFFFE

_U32_MAX = 0xFFFF_FFFF

_LAYOUT = SubtableLayout("<HHI", type_index=0, length_index=2)
_RESERVED = struct.Struct("<I")
_PROX = struct.Struct("<HHIHHIIIQQ")  # 40
_LOC = struct.Struct("<HHIBBBBIIIQ")  # 32 (lists and entries follow)
assert (_PROX.size, _LOC.size) == (40, 32)


class HmatDecodeError(AcpiTableError):
    """An HMAT sub-structure cannot be decoded (names the structure and offset)."""


def is_latency(data_type: int) -> bool:
    return data_type in (HMAT_ACCESS_LATENCY, HMAT_READ_LATENCY, HMAT_WRITE_LATENCY)


@dataclass(frozen=True)
class MemoryProximityDomain:
    """Memory Proximity Domain Attributes: ``memory_pd`` is attached to ``initiator_pd``.

    ``initiator_pd`` is meaningful only when ``flags`` has
    :data:`HMAT_INITIATOR_PD_VALID` (see :meth:`attached`).
    """

    memory_pd: int
    initiator_pd: int = 0
    flags: int = 0

    TYPE = HMAT_TYPE_PROXIMITY

    @classmethod
    def attached(cls, memory_pd: int, initiator_pd: int) -> MemoryProximityDomain:
        return cls(memory_pd=memory_pd, initiator_pd=initiator_pd, flags=HMAT_INITIATOR_PD_VALID)

    @property
    def initiator_valid(self) -> bool:
        return bool(self.flags & HMAT_INITIATOR_PD_VALID)


@dataclass(frozen=True)
class LocalityInfo:
    """System Locality Latency and Bandwidth Information.

    ``entries`` is the m×n matrix flattened row-major (initiator-major), as
    stored in the table.
    """

    data_type: int
    initiators: tuple[int, ...]
    targets: tuple[int, ...]
    entry_base_unit: int
    entries: tuple[int, ...]
    flags: int = HMAT_MEMORY
    min_transfer_size: int = 0

    TYPE = HMAT_TYPE_LOCALITY

    def __post_init__(self) -> None:
        if len(self.entries) != len(self.initiators) * len(self.targets):
            raise ValueError(
                f"HMAT locality: {len(self.entries)} entries for "
                f"{len(self.initiators)}x{len(self.targets)} domains"
            )

    @property
    def memory_hierarchy(self) -> int:
        return self.flags & HMAT_MEMORY_HIERARCHY

    def matrix(self) -> np.ndarray:
        """Entries as an (m, n) uint16 array."""
        return np.asarray(self.entries, dtype=np.uint16).reshape(len(self.initiators), len(self.targets))

    def entry(self, initiator: int, target: int) -> int | None:
        """Raw u16 entry for proximity domains (initiator, target); ``None`` if not listed."""
        try:
            i = self.initiators.index(initiator)
            t = self.targets.index(target)
        except ValueError:
            return None
        return self.entries[i * len(self.targets) + t]

    def value(self, initiator: int, target: int, revision: int = HMAT_REVISION) -> int:
        """Kernel-normalised value (ns or MB/s); 0 when the pair is not listed."""
        raw = self.entry(initiator, target)
        return 0 if raw is None else hmat_normalize(raw, self.entry_base_unit, self.data_type, revision)


@dataclass(frozen=True)
class UnknownHmat:
    """A sub-structure we do not decode (e.g. memory side cache); ``raw`` includes its header."""

    type: int
    raw: bytes


HmatSubtable = MemoryProximityDomain | LocalityInfo | UnknownHmat


def _check(value: int, bits: int, what: str) -> None:
    if not 0 <= value < (1 << bits):
        raise ValueError(f"{what} {value} does not fit in u{bits}")


def _array(values: Sequence[int], dtype: str, bits: int, what: str) -> bytes:
    if len(values) and (min(values) < 0 or max(values) >= (1 << bits)):
        raise ValueError(f"HMAT {what} value out of u{bits} range")
    return np.asarray(values, dtype=np.uint64).astype(dtype).tobytes()


def encode_subtable(sub: HmatSubtable) -> bytes:
    """Encode one HMAT sub-structure including its 8-byte header."""
    if isinstance(sub, MemoryProximityDomain):
        _check(sub.flags, 16, "HMAT proximity flags")
        _check(sub.initiator_pd, 32, "HMAT initiator PD")
        _check(sub.memory_pd, 32, "HMAT memory PD")
        return _PROX.pack(HMAT_TYPE_PROXIMITY, 0, _PROX.size, sub.flags, 0, sub.initiator_pd, sub.memory_pd, 0, 0, 0)
    if isinstance(sub, LocalityInfo):
        m, n = len(sub.initiators), len(sub.targets)
        length = _LOC.size + 4 * m + 4 * n + 2 * m * n
        _check(length, 32, "HMAT locality length")
        _check(sub.flags, 8, "HMAT locality flags")
        _check(sub.data_type, 8, "HMAT data_type")
        _check(sub.min_transfer_size, 8, "HMAT min_transfer_size")
        _check(sub.entry_base_unit, 64, "HMAT entry_base_unit")
        head = _LOC.pack(
            HMAT_TYPE_LOCALITY, 0, length, sub.flags, sub.data_type, sub.min_transfer_size, 0, m, n, 0,
            sub.entry_base_unit,
        )
        return b"".join(
            (
                head,
                _array(sub.initiators, "<u4", 32, "initiator PD"),
                _array(sub.targets, "<u4", 32, "target PD"),
                _array(sub.entries, "<u2", 16, "entry"),
            )
        )
    if isinstance(sub, UnknownHmat):
        if len(sub.raw) < _LAYOUT.header_size:
            raise ValueError("UnknownHmat.raw must include the 8-byte sub-structure header")
        return bytes(sub.raw)
    raise TypeError(f"not an HMAT sub-structure: {sub!r}")


def encode_hmat(subtables: Iterable[HmatSubtable], *, revision: int = HMAT_REVISION, **header_kwargs) -> bytes:
    """Encode a whole HMAT (header, reserved u32, sub-structures)."""
    body = _RESERVED.pack(0) + b"".join(encode_subtable(s) for s in subtables)
    return build_table(HMAT_SIGNATURE, revision, body, **header_kwargs)


def _decode_one(off: int, stype: int, raw: bytes) -> HmatSubtable:
    n_raw = len(raw)
    if stype == HMAT_TYPE_PROXIMITY:
        if n_raw != _PROX.size:
            # hmat.c: exact size required
            raise HmatDecodeError(
                f"HMAT: Unexpected address range header length: {n_raw} (structure at offset 0x{off:X})",
                signature=HMAT_SIGNATURE,
                offset=off,
            )
        _, _, _, flags, _, init_pd, mem_pd, _, _, _ = _PROX.unpack_from(raw)
        return MemoryProximityDomain(memory_pd=mem_pd, initiator_pd=init_pd, flags=flags)
    if stype == HMAT_TYPE_LOCALITY:
        if n_raw < _LOC.size:
            raise HmatDecodeError(
                f"HMAT: Unexpected locality header length: {n_raw} (structure at offset 0x{off:X})",
                signature=HMAT_SIGNATURE,
                offset=off,
            )
        _, _, _, flags, dtype, mts, _, m, n, _, base = _LOC.unpack_from(raw)
        total = _LOC.size + 4 * m + 4 * n + 2 * m * n
        if n_raw < total:
            raise HmatDecodeError(
                f"HMAT: Unexpected locality header length:{n_raw}, minimum required:{total} "
                f"(structure at offset 0x{off:X})",
                signature=HMAT_SIGNATURE,
                offset=off,
            )
        pos = _LOC.size
        inits = np.frombuffer(raw, dtype="<u4", count=m, offset=pos)
        targs = np.frombuffer(raw, dtype="<u4", count=n, offset=pos + 4 * m)
        ents = np.frombuffer(raw, dtype="<u2", count=m * n, offset=pos + 4 * m + 4 * n)
        return LocalityInfo(
            data_type=dtype,
            initiators=tuple(int(x) for x in inits),
            targets=tuple(int(x) for x in targs),
            entry_base_unit=base,
            entries=tuple(int(x) for x in ents),
            flags=flags,
            min_transfer_size=mts,
        )
    return UnknownHmat(type=stype, raw=raw)


def parse_hmat(data: bytes | bytearray | memoryview) -> tuple[AcpiHeader, list[HmatSubtable]]:
    """Validate an HMAT and decode its sub-structures (any revision; see :func:`hmat_revision_supported`)."""
    header, body = parse_table(data, expect_signature=HMAT_SIGNATURE)
    if len(body) < _RESERVED.size:
        raise HmatDecodeError(
            f"HMAT: table length {header.length} too short for the reserved field after the header",
            signature=HMAT_SIGNATURE,
            offset=ACPI_HEADER_SIZE,
        )
    table = bytes(data[: header.length])
    start = ACPI_HEADER_SIZE + _RESERVED.size
    subs = [
        _decode_one(off, stype, raw)
        for off, stype, raw in walk_subtables(table, start, header.length, _LAYOUT, HMAT_SIGNATURE)
    ]
    return header, subs


def decode_hmat(data: bytes | bytearray | memoryview) -> list[HmatSubtable]:
    """Decode a whole HMAT into its sub-structures."""
    return parse_hmat(data)[1]


def hmat_revision_supported(revision: int) -> bool:
    """hmat.c accepts revisions 1 and 2, else logs "Ignoring HMAT: Unknown revision:%d"."""
    return revision in (1, 2)


def hmat_normalize(entry: int, base: int, data_type: int, revision: int = HMAT_REVISION) -> int:
    """The value the kernel derives from one entry (``hmat_normalize`` in hmat.c).

    0 and 0xFFFF entries → 0; ``base × entry`` must fit in u32 else 0.
    Revision 1: value in units of 0.1 (values < 10 → 0, else divided by 10
    rounding up). Revision 2: latencies ps → ns rounding up, bandwidth MB/s.
    """
    if entry == 0 or entry == 0xFFFF:
        return 0
    if base > _U32_MAX // entry:
        return 0
    value = entry * base
    if revision == 1:
        if value < 10:
            return 0
        return -(-value // 10)
    if revision == 2 and is_latency(data_type):
        return -(-value // 1000)
    return value


def choose_entry_base_unit(values: np.ndarray | Sequence[int]) -> tuple[int, np.ndarray]:
    """Pick the smallest power-of-ten base unit so every value fits a u16 entry.

    Returns ``(base, entries)`` where ``entries`` (uint16, same shape) is the
    value divided by ``base`` rounded to nearest; a non-zero value never
    becomes 0, and entries never reach the 0xFFFF "no data" marker. Values
    that are multiples of ``base`` round-trip exactly.
    """
    vals = np.asarray(values, dtype=np.int64)
    if vals.size and vals.min() < 0:
        raise ValueError("HMAT/CDAT performance values must be non-negative")
    top = int(vals.max()) if vals.size else 0
    base = 1
    while -(-top // base) > HMAT_ENTRY_MAX:
        base *= 10
    entries = (vals + base // 2) // base
    entries = np.where((vals > 0) & (entries == 0), 1, entries)
    entries = np.minimum(entries, HMAT_ENTRY_MAX)
    return base, entries.astype(np.uint16)


def hmat_from_matrix(
    initiators: Sequence[int],
    targets: Sequence[int],
    read_latency_ns,
    write_latency_ns,
    read_bw_mbps,
    write_bw_mbps,
    *,
    flags: int = HMAT_MEMORY,
) -> list[LocalityInfo]:
    """Four revision-2 locality structures (read/write latency, read/write bandwidth).

    Each matrix argument is indexed ``[initiator][target]`` (anything
    ``numpy.asarray`` accepts with shape (m, n), or a scalar for all pairs);
    ``None`` omits that data type. Latencies are given in ns and stored in
    ps; each structure gets its own entry base unit (:func:`choose_entry_base_unit`).
    """
    inits = tuple(int(i) for i in initiators)
    targs = tuple(int(t) for t in targets)
    shape = (len(inits), len(targs))
    out: list[LocalityInfo] = []
    for dtype, values, scale in (
        (HMAT_READ_LATENCY, read_latency_ns, 1000),
        (HMAT_WRITE_LATENCY, write_latency_ns, 1000),
        (HMAT_READ_BANDWIDTH, read_bw_mbps, 1),
        (HMAT_WRITE_BANDWIDTH, write_bw_mbps, 1),
    ):
        if values is None:
            continue
        arr = np.broadcast_to(np.asarray(values, dtype=np.float64), shape)
        if arr.size and (not np.all(np.isfinite(arr)) or arr.min() < 0):
            raise ValueError("HMAT performance values must be finite and non-negative")
        scaled = np.rint(arr * scale).astype(np.int64)
        base, entries = choose_entry_base_unit(scaled)
        out.append(
            LocalityInfo(
                data_type=dtype,
                initiators=inits,
                targets=targs,
                entry_base_unit=base,
                entries=tuple(int(e) for e in entries.reshape(-1)),
                flags=flags,
            )
        )
    return out


_ACCESS_OF = {
    HMAT_READ_LATENCY: HMAT_ACCESS_LATENCY,
    HMAT_WRITE_LATENCY: HMAT_ACCESS_LATENCY,
    HMAT_READ_BANDWIDTH: HMAT_ACCESS_BANDWIDTH,
    HMAT_WRITE_BANDWIDTH: HMAT_ACCESS_BANDWIDTH,
}


def hmat_value(
    subtables: Iterable[HmatSubtable],
    initiator: int,
    target: int,
    data_type: int,
    *,
    revision: int = HMAT_REVISION,
) -> int | None:
    """Kernel-normalised value (ns / MB/s) for (initiator PD, target PD, data_type).

    Like hmat.c, only memory-hierarchy structures count, an "access"
    structure also answers read and write queries, and the *last* applicable
    structure in table order wins. ``None`` if no structure applies; 0 if the
    winning structure does not list the pair or holds no data for it.
    """
    wanted = {data_type, _ACCESS_OF.get(data_type, data_type)}
    chosen: LocalityInfo | None = None
    for s in subtables:
        if isinstance(s, LocalityInfo) and s.memory_hierarchy == HMAT_MEMORY and s.data_type in wanted:
            chosen = s
    if chosen is None:
        return None
    return chosen.value(initiator, target, revision)
