"""CEDT — CXL Early Discovery Table (CXL spec §9.18, ACPICA ``actbl1.h``).

Signature ``"CEDT"``, revision 1. After the 36-byte ACPI header come
sub-structures, each starting with ``type u8 @0, reserved u8 @1, length u16 @2``:

* type 0 **CHBS** (32 bytes): uid u32 @4, cxl_version u32 @8, reserved u32 @12,
  base u64 @16, length u64 @24.
* type 1 **CFMWS** (36 + 4·NIW bytes): reserved u32 @4, base_hpa u64 @8,
  window_size u64 @16, ENIW u8 @24, interleave arithmetic u8 @25,
  reserved u16 @26, HBIG u32 @28, restrictions u16 @32, QTG id u16 @34,
  interleave targets u32[NIW] @36.
* type 2 **CXIMS** (8 + 8·N bytes): reserved u16 @4, HBIG u8 @6,
  nr_xormaps u8 @7, xormaps u64[N] @8.
* type 3 **RDPAS** (17 bytes, packed): segment u16 @4, bdf u16 @6,
  protocol u8 @8, address u64 @9.

Unknown types are kept as :class:`UnknownCedt` and skipped by users, like the
kernel (which walks the table per type).

The kernel's acceptance rules (``drivers/cxl/acpi.c``: which windows, CHBS
and CXIMS ``cxl_acpi`` accepts) are kernel policy: they live in
``cxlemu.kernel.cxl.acpi``; this module only encodes and decodes.
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
    "CEDT_SIGNATURE",
    "CEDT_REVISION",
    "CEDT_TYPE_CHBS",
    "CEDT_TYPE_CFMWS",
    "CEDT_TYPE_CXIMS",
    "CEDT_TYPE_RDPAS",
    "CHBS_VERSION_CXL11",
    "CHBS_VERSION_CXL20",
    "CHBS_LENGTH_CXL11",
    "CHBS_LENGTH_CXL20",
    "CFMWS_ARITHMETIC_MODULO",
    "CFMWS_ARITHMETIC_XOR",
    "CFMWS_RESTRICT_DEVMEM",
    "CFMWS_RESTRICT_TYPE2",
    "CFMWS_RESTRICT_HOSTONLYMEM",
    "CFMWS_RESTRICT_TYPE3",
    "CFMWS_RESTRICT_VOLATILE",
    "CFMWS_RESTRICT_PMEM",
    "CFMWS_RESTRICT_FIXED",
    "RDPAS_PROTOCOL_IO",
    "RDPAS_PROTOCOL_CACHEMEM",
    "SZ_256M",
    "Chbs",
    "Cfmws",
    "Cxims",
    "Rdpas",
    "UnknownCedt",
    "CedtSubtable",
    "CedtDecodeError",
    "encode_subtable",
    "encode_cedt",
    "decode_cedt",
    "parse_cedt",
]

CEDT_SIGNATURE = "CEDT"
CEDT_REVISION = 1

CEDT_TYPE_CHBS = 0
CEDT_TYPE_CFMWS = 1
CEDT_TYPE_CXIMS = 2
CEDT_TYPE_RDPAS = 3

CHBS_VERSION_CXL11 = 0  # RCRB
CHBS_VERSION_CXL20 = 1  # CHBCR
CHBS_LENGTH_CXL11 = 0x2000
CHBS_LENGTH_CXL20 = 0x10000

CFMWS_ARITHMETIC_MODULO = 0
CFMWS_ARITHMETIC_XOR = 1

# Window restriction bits (CXL spec names; ACPICA still calls bit0/bit1 TYPE2/TYPE3).
CFMWS_RESTRICT_DEVMEM = 1 << 0
CFMWS_RESTRICT_TYPE2 = CFMWS_RESTRICT_DEVMEM
CFMWS_RESTRICT_HOSTONLYMEM = 1 << 1
CFMWS_RESTRICT_TYPE3 = CFMWS_RESTRICT_HOSTONLYMEM
CFMWS_RESTRICT_VOLATILE = 1 << 2
CFMWS_RESTRICT_PMEM = 1 << 3
CFMWS_RESTRICT_FIXED = 1 << 4

RDPAS_PROTOCOL_IO = 0
RDPAS_PROTOCOL_CACHEMEM = 1

SZ_256M = 256 << 20

_SUB_HDR = struct.Struct("<BBH")
_LAYOUT = SubtableLayout("<BBH", type_index=0, length_index=2)

_CHBS = struct.Struct("<BBHIIIQQ")  # 32
_CFMWS = struct.Struct("<BBHIQQBBHIHH")  # 36 (targets follow)
_CXIMS = struct.Struct("<BBHHBB")  # 8 (xormaps follow)
_RDPAS = struct.Struct("<BBHHHBQ")  # 17
CHBS_SIZE = _CHBS.size
CFMWS_FIXED_SIZE = _CFMWS.size
CXIMS_FIXED_SIZE = _CXIMS.size
RDPAS_SIZE = _RDPAS.size
assert (CHBS_SIZE, CFMWS_FIXED_SIZE, CXIMS_FIXED_SIZE, RDPAS_SIZE) == (32, 36, 8, 17)


def eniw_to_ways(eniw: int) -> int:
    """CFMWS ENIW (CXL r3.1 Table 9-22) -> host-bridge interleave ways."""
    if 0 <= eniw <= 4:
        return 1 << eniw
    if 8 <= eniw <= 10:
        return 3 << (eniw - 8)
    raise ValueError(f"invalid encoded interleave ways: {eniw}")


# --------------------------------------------------------------------------
# structures
# --------------------------------------------------------------------------
class CedtDecodeError(AcpiTableError):
    """A CEDT sub-structure cannot be decoded (names the structure and offset)."""


@dataclass(frozen=True)
class Chbs:
    """CXL Host Bridge Structure: register block of host bridge ``uid``."""

    uid: int
    cxl_version: int
    base: int
    length: int

    TYPE = CEDT_TYPE_CHBS

    @property
    def is_rch(self) -> bool:
        """CXL 1.1 restricted host (RCRB) rather than a CXL 2.0 CHBCR."""
        return self.cxl_version == CHBS_VERSION_CXL11


@dataclass(frozen=True)
class Cfmws:
    """CXL Fixed Memory Window Structure.

    ``eniw``/``hbig`` are the *encoded* fields; ``targets`` are all the
    host-bridge UIDs present in the structure (decoding is lossless: a
    structure shorter than ENIW demands keeps fewer targets, so
    :func:`validate_cfmws` can reject it like the kernel; a longer one keeps
    the extra words, and :attr:`interleave_targets` is what the kernel uses).
    ``record_length`` is the raw header length when it is not
    ``36 + 4·len(targets)`` (a partial trailing word); ``None`` = natural.
    """

    base_hpa: int
    window_size: int
    eniw: int
    interleave_arithmetic: int
    hbig: int
    restrictions: int
    qtg_id: int
    targets: tuple[int, ...]
    record_length: int | None = None

    TYPE = CEDT_TYPE_CFMWS

    @property
    def ways(self) -> int:
        """Host-bridge interleave ways encoded by ENIW (CXL r3.1 Table 9-22:
        0-4 -> 1, 2, 4, 8, 16; 8-10 -> 3, 6, 12); ValueError otherwise."""
        return eniw_to_ways(self.eniw)

    @property
    def interleave_targets(self) -> tuple[int, ...]:
        """The first ``ways`` targets: the root decoder's target map (acpi.c)."""
        return self.targets[: self.ways]

    @property
    def granularity(self) -> int:
        """Host-bridge interleave granularity in bytes (``256 << hbig``)."""
        return 256 << self.hbig

    @property
    def natural_length(self) -> int:
        return CFMWS_FIXED_SIZE + 4 * len(self.targets)

    @property
    def header_length(self) -> int:
        """The value of the sub-structure header's length field."""
        return self.natural_length if self.record_length is None else self.record_length

    @property
    def end(self) -> int:
        """Last byte address of the window (inclusive)."""
        return self.base_hpa + self.window_size - 1

    @property
    def is_xor(self) -> bool:
        return self.interleave_arithmetic == CFMWS_ARITHMETIC_XOR

    @property
    def is_volatile(self) -> bool:
        return bool(self.restrictions & CFMWS_RESTRICT_VOLATILE)

    @property
    def is_pmem(self) -> bool:
        return bool(self.restrictions & CFMWS_RESTRICT_PMEM)

    @property
    def is_fixed(self) -> bool:
        return bool(self.restrictions & CFMWS_RESTRICT_FIXED)


@dataclass(frozen=True)
class Cxims:
    """CXL XOR Interleave Math Structure: XOR maps for windows of granularity ``256 << hbig``."""

    hbig: int
    xormaps: tuple[int, ...]

    TYPE = CEDT_TYPE_CXIMS

    @property
    def granularity(self) -> int:
        return 256 << self.hbig


@dataclass(frozen=True)
class Rdpas:
    """RCEC Downstream Port Association Structure (CXL r3.0 Table 9-24)."""

    segment: int
    bdf: int
    protocol: int
    address: int

    TYPE = CEDT_TYPE_RDPAS

    @property
    def bus(self) -> int:
        return (self.bdf >> 8) & 0xFF

    @property
    def device(self) -> int:
        return (self.bdf >> 3) & 0x1F

    @property
    def function(self) -> int:
        return self.bdf & 0x7


@dataclass(frozen=True)
class UnknownCedt:
    """A sub-structure of a type we do not decode; ``raw`` includes its header."""

    type: int
    raw: bytes


CedtSubtable = Chbs | Cfmws | Cxims | Rdpas | UnknownCedt


def _check_range(value: int, bits: int, what: str) -> None:
    if not 0 <= value < (1 << bits):
        raise ValueError(f"{what} {value} does not fit in u{bits}")


def _u32_array(values: Sequence[int], what: str) -> bytes:
    for v in values:
        _check_range(v, 32, what)
    return np.asarray(values, dtype="<u4").tobytes()


def _u64_array(values: Sequence[int], what: str) -> bytes:
    for v in values:
        _check_range(v, 64, what)
    return np.asarray(values, dtype=np.uint64).astype("<u8").tobytes()


def encode_subtable(sub: CedtSubtable) -> bytes:
    """Encode one CEDT sub-structure including its 4-byte header."""
    if isinstance(sub, Chbs):
        _check_range(sub.uid, 32, "CHBS uid")
        _check_range(sub.cxl_version, 32, "CHBS cxl_version")
        _check_range(sub.base, 64, "CHBS base")
        _check_range(sub.length, 64, "CHBS length")
        return _CHBS.pack(CEDT_TYPE_CHBS, 0, CHBS_SIZE, sub.uid, sub.cxl_version, 0, sub.base, sub.length)
    if isinstance(sub, Cfmws):
        length = sub.header_length
        if length < sub.natural_length:
            raise ValueError(
                f"CFMWS record_length {length} cannot hold {len(sub.targets)} targets "
                f"(needs {sub.natural_length}); drop targets to model a short structure"
            )
        _check_range(length, 16, "CFMWS length")
        _check_range(sub.base_hpa, 64, "CFMWS base_hpa")
        _check_range(sub.window_size, 64, "CFMWS window_size")
        _check_range(sub.eniw, 8, "CFMWS eniw")
        _check_range(sub.interleave_arithmetic, 8, "CFMWS interleave_arithmetic")
        _check_range(sub.hbig, 32, "CFMWS hbig")
        _check_range(sub.restrictions, 16, "CFMWS restrictions")
        _check_range(sub.qtg_id, 16, "CFMWS qtg_id")
        fixed = _CFMWS.pack(
            CEDT_TYPE_CFMWS,
            0,
            length,
            0,
            sub.base_hpa,
            sub.window_size,
            sub.eniw,
            sub.interleave_arithmetic,
            0,
            sub.hbig,
            sub.restrictions,
            sub.qtg_id,
        )
        body = fixed + _u32_array(sub.targets, "CFMWS target")
        return body.ljust(length, b"\0")
    if isinstance(sub, Cxims):
        _check_range(sub.hbig, 8, "CXIMS hbig")
        _check_range(len(sub.xormaps), 8, "CXIMS nr_xormaps")
        length = CXIMS_FIXED_SIZE + 8 * len(sub.xormaps)
        return _CXIMS.pack(CEDT_TYPE_CXIMS, 0, length, 0, sub.hbig, len(sub.xormaps)) + _u64_array(
            sub.xormaps, "CXIMS xormap"
        )
    if isinstance(sub, Rdpas):
        _check_range(sub.segment, 16, "RDPAS segment")
        _check_range(sub.bdf, 16, "RDPAS bdf")
        _check_range(sub.protocol, 8, "RDPAS protocol")
        _check_range(sub.address, 64, "RDPAS address")
        return _RDPAS.pack(CEDT_TYPE_RDPAS, 0, RDPAS_SIZE, sub.segment, sub.bdf, sub.protocol, sub.address)
    if isinstance(sub, UnknownCedt):
        if len(sub.raw) < _SUB_HDR.size:
            raise ValueError("UnknownCedt.raw must include the 4-byte sub-structure header")
        return bytes(sub.raw)
    raise TypeError(f"not a CEDT sub-structure: {sub!r}")


def encode_cedt(subtables: Iterable[CedtSubtable], **header_kwargs) -> bytes:
    """Encode a whole CEDT (header + sub-structures, checksum filled in).

    ``header_kwargs`` are passed to :func:`build_table` (``oem_id`` ...).
    """
    body = b"".join(encode_subtable(s) for s in subtables)
    return build_table(CEDT_SIGNATURE, CEDT_REVISION, body, **header_kwargs)


# --------------------------------------------------------------------------
# decode
# --------------------------------------------------------------------------
def _too_short(name: str, off: int, have: int, need: int) -> CedtDecodeError:
    return CedtDecodeError(
        f"CEDT: {name} at offset 0x{off:X} has length {have}, less than the {need} bytes of its layout",
        signature=CEDT_SIGNATURE,
        offset=off,
    )


def _decode_one(off: int, stype: int, raw: bytes) -> CedtSubtable:
    n = len(raw)
    if stype == CEDT_TYPE_CHBS:
        # The kernel never checks the CHBS record length; we need the full layout.
        if n < CHBS_SIZE:
            raise _too_short("CHBS", off, n, CHBS_SIZE)
        _, _, _, uid, ver, _, base, length = _CHBS.unpack_from(raw)
        return Chbs(uid=uid, cxl_version=ver, base=base, length=length)
    if stype == CEDT_TYPE_CFMWS:
        if n < CFMWS_FIXED_SIZE:
            raise _too_short("CFMWS", off, n, CFMWS_FIXED_SIZE)
        (_, _, _, _, base, size, eniw, arith, _, hbig, restr, qtg) = _CFMWS.unpack_from(raw)
        # Keep every whole target the record holds; validate_cfmws compares
        # the length with the ENIW-derived expectation like the kernel does.
        ntargets = (n - CFMWS_FIXED_SIZE) // 4
        targets = tuple(
            int(t) for t in np.frombuffer(raw, dtype="<u4", count=ntargets, offset=CFMWS_FIXED_SIZE)
        )
        natural = CFMWS_FIXED_SIZE + 4 * ntargets
        return Cfmws(
            base_hpa=base,
            window_size=size,
            eniw=eniw,
            interleave_arithmetic=arith,
            hbig=hbig,
            restrictions=restr,
            qtg_id=qtg,
            targets=targets,
            record_length=None if n == natural else n,
        )
    if stype == CEDT_TYPE_CXIMS:
        if n < CXIMS_FIXED_SIZE:
            raise _too_short("CXIMS", off, n, CXIMS_FIXED_SIZE)
        _, _, _, _, hbig, nr = _CXIMS.unpack_from(raw)
        need = CXIMS_FIXED_SIZE + 8 * nr
        if n < need:
            raise CedtDecodeError(
                f"CEDT: CXIMS at offset 0x{off:X} declares {nr} xormaps ({need} bytes) "
                f"but its length is {n}",
                signature=CEDT_SIGNATURE,
                offset=off,
            )
        maps = tuple(int(m) for m in np.frombuffer(raw, dtype="<u8", count=nr, offset=CXIMS_FIXED_SIZE))
        return Cxims(hbig=hbig, xormaps=maps)
    if stype == CEDT_TYPE_RDPAS:
        if n < RDPAS_SIZE:
            raise _too_short("RDPAS", off, n, RDPAS_SIZE)
        _, _, _, seg, bdf, proto, addr = _RDPAS.unpack_from(raw)
        return Rdpas(segment=seg, bdf=bdf, protocol=proto, address=addr)
    return UnknownCedt(type=stype, raw=raw)


def parse_cedt(data: bytes | bytearray | memoryview) -> tuple[AcpiHeader, list[CedtSubtable]]:
    """Validate a CEDT (signature, length, checksum) and decode its sub-structures."""
    header, _ = parse_table(data, expect_signature=CEDT_SIGNATURE)
    table = bytes(data[: header.length])
    subs = [
        _decode_one(off, stype, raw)
        for off, stype, raw in walk_subtables(table, ACPI_HEADER_SIZE, header.length, _LAYOUT, CEDT_SIGNATURE)
    ]
    return header, subs


def decode_cedt(data: bytes | bytearray | memoryview) -> list[CedtSubtable]:
    """Decode a whole CEDT into its sub-structures (see :func:`parse_cedt`)."""
    return parse_cedt(data)[1]
