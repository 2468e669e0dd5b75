"""Generic ACPI System Description Table (SDT) header codec.

Every ACPI table (CEDT, SRAT, HMAT, FACP, ...) starts with the same 36-byte
header (ACPI spec §5.2.6, ACPICA ``struct acpi_table_header``):

====== ==== ==========================
Offset Size Field
====== ==== ==========================
0      4    signature (ASCII)
4      4    length of the whole table
8      1    revision
9      1    checksum (all bytes sum to 0 mod 256)
10     6    OEM ID
16     8    OEM table ID
24     4    OEM revision
28     4    creator ID
32     4    creator revision
====== ==== ==========================

The error messages mimic what ACPICA logs (``tbdata.c``/``utcksum.c``) so the
kernel model can surface them verbatim.
"""

from __future__ import annotations

import struct

from cxlemu.util.lazy import lazy_module
from cxlemu.util.lazydc import dataclass

np = lazy_module("numpy")  # imported on first use: only the data path pays for numpy

__all__ = [
    "ACPI_HEADER_SIZE",
    "AcpiHeader",
    "AcpiTableError",
    "acpi_checksum",
    "checksum_byte",
    "build_table",
    "parse_table",
    "c_hex",
    "SubtableLayout",
    "walk_subtables",
]

ACPI_HEADER_SIZE = 36
#: Offset of the checksum byte inside the header.
ACPI_CHECKSUM_OFFSET = 9

_HEADER = struct.Struct("<4sIBB6s8sI4sI")
assert _HEADER.size == ACPI_HEADER_SIZE


class AcpiTableError(ValueError):
    """A table (or one of its sub-structures) is malformed.

    ``signature`` names the table, ``offset`` (when known) is the byte offset
    of the offending structure inside the table.
    """

    def __init__(self, message: str, *, signature: str = "", offset: int | None = None):
        super().__init__(message)
        self.message = message
        self.signature = signature
        self.offset = offset


def c_hex(value: int) -> str:
    """Format like C's ``%#llx`` (``0`` for zero, ``0x...`` otherwise)."""
    return "0" if value == 0 else f"{value:#x}"


def acpi_checksum(data: bytes | bytearray | memoryview) -> int:
    """Byte sum of ``data`` modulo 256; a valid ACPI/CDAT table sums to 0."""
    arr = np.frombuffer(bytes(data), dtype=np.uint8)
    return int(arr.sum(dtype=np.uint64) & 0xFF)


def checksum_byte(data: bytes | bytearray | memoryview, checksum_offset: int = ACPI_CHECKSUM_OFFSET) -> int:
    """Value the checksum byte at ``checksum_offset`` must hold for ``data`` to sum to 0.

    The current content of the checksum byte is ignored (ACPICA's
    ``acpi_ut_generate_checksum`` excludes it the same way).
    """
    total = acpi_checksum(data) - data[checksum_offset]
    return (-total) & 0xFF


def _fixed_ascii(value: str, size: int, field: str) -> bytes:
    raw = value.encode("ascii")
    if len(raw) > size:
        raise ValueError(f"ACPI header field {field} {value!r} longer than {size} bytes")
    return raw.ljust(size, b" ")


def _u32(value: int, field: str) -> int:
    if not 0 <= value <= 0xFFFF_FFFF:
        raise ValueError(f"ACPI header field {field} {value} does not fit in u32")
    return value


@dataclass(frozen=True)
class AcpiHeader:
    """Decoded 36-byte SDT header. String fields keep their exact padding."""

    signature: str
    length: int
    revision: int
    checksum: int
    oem_id: str
    oem_table_id: str
    oem_revision: int
    creator_id: str
    creator_revision: int

    def pack(self) -> bytes:
        """Encode the header exactly as stored (no length/checksum fix-up)."""
        if len(self.signature.encode("ascii")) != 4:
            raise ValueError(f"ACPI signature must be 4 ASCII characters, got {self.signature!r}")
        if not 0 <= self.revision <= 0xFF or not 0 <= self.checksum <= 0xFF:
            raise ValueError("ACPI revision/checksum must fit in u8")
        return _HEADER.pack(
            self.signature.encode("ascii"),
            _u32(self.length, "length"),
            self.revision,
            self.checksum,
            _fixed_ascii(self.oem_id, 6, "oem_id"),
            _fixed_ascii(self.oem_table_id, 8, "oem_table_id"),
            _u32(self.oem_revision, "oem_revision"),
            _fixed_ascii(self.creator_id, 4, "creator_id"),
            _u32(self.creator_revision, "creator_revision"),
        )

    @classmethod
    def unpack(cls, data: bytes | bytearray | memoryview) -> AcpiHeader:
        """Decode the first 36 bytes of ``data`` (no validation beyond size)."""
        if len(data) < ACPI_HEADER_SIZE:
            raise AcpiTableError(
                f"ACPI table too short: {len(data)} bytes, the header alone needs {ACPI_HEADER_SIZE}"
            )
        sig, length, rev, csum, oem, oem_tid, oem_rev, creator, creator_rev = _HEADER.unpack_from(data, 0)
        return cls(
            signature=sig.decode("latin-1"),
            length=length,
            revision=rev,
            checksum=csum,
            oem_id=oem.decode("latin-1"),
            oem_table_id=oem_tid.decode("latin-1"),
            oem_revision=oem_rev,
            creator_id=creator.decode("latin-1"),
            creator_revision=creator_rev,
        )


def build_table(
    signature: str,
    revision: int,
    body: bytes | bytearray | memoryview,
    *,
    oem_id: str = "CXLEMU",
    oem_table_id: str | None = None,
    oem_revision: int = 1,
    creator_id: str = "CXLE",
    creator_revision: int = 1,
) -> bytes:
    """Return header + ``body`` with the length and checksum fields filled in.

    ``oem_table_id`` defaults to ``"CXLE" + signature`` (e.g. ``CXLECEDT``).
    """
    if oem_table_id is None:
        oem_table_id = "CXLE" + signature
    header = AcpiHeader(
        signature=signature,
        length=ACPI_HEADER_SIZE + len(body),
        revision=revision,
        checksum=0,
        oem_id=oem_id,
        oem_table_id=oem_table_id,
        oem_revision=oem_revision,
        creator_id=creator_id,
        creator_revision=creator_revision,
    )
    table = bytearray(header.pack())
    table += bytes(body)
    table[ACPI_CHECKSUM_OFFSET] = checksum_byte(table)
    return bytes(table)


def _signature_u32(sig: str) -> int:
    return int.from_bytes(sig.encode("latin-1")[:4].ljust(4, b"\0"), "little")


def parse_table(
    data: bytes | bytearray | memoryview, expect_signature: str | None = None
) -> tuple[AcpiHeader, bytes]:
    """Validate an ACPI table and split it into ``(header, body)``.

    Checks, in order: the buffer holds a header; the signature (when
    ``expect_signature`` is given); the header length is at least 36 and
    within the buffer; the byte sum over ``length`` bytes is 0. Bytes after
    ``length`` are ignored (the kernel maps only ``length`` bytes).
    Raises :class:`AcpiTableError` with an ACPICA-style message.
    """
    data = bytes(data)
    header = AcpiHeader.unpack(data)
    sig = header.signature
    if expect_signature is not None and sig != expect_signature:
        raise AcpiTableError(
            # ACPICA tbdata.c wording
            f"Invalid signature 0x{_signature_u32(sig):X} for ACPI table, expected [{expect_signature}]",
            signature=sig,
        )
    if header.length < ACPI_HEADER_SIZE:
        raise AcpiTableError(
            f"Invalid table length 0x{header.length:X} in table [{sig:4.4s}]: shorter than the "
            f"{ACPI_HEADER_SIZE}-byte header",
            signature=sig,
        )
    if header.length > len(data):
        raise AcpiTableError(
            f"Table [{sig:4.4s}] length 0x{header.length:X} exceeds the 0x{len(data):X} bytes available",
            signature=sig,
        )
    table = data[: header.length]
    if acpi_checksum(table) != 0:
        raise AcpiTableError(
            # ACPICA utcksum.c wording (logged as "ACPI BIOS Warning (bug): ...")
            f"Incorrect checksum in table [{sig:4.4s}] - 0x{header.checksum:02X}, "
            f"should be 0x{checksum_byte(table):02X}",
            signature=sig,
        )
    return header, table[ACPI_HEADER_SIZE:]


@dataclass(frozen=True)
class SubtableLayout:
    """Where a table family keeps the type and length of its sub-structures.

    ``fmt`` is a little-endian struct format for the common sub-structure
    header; ``type_index``/``length_index`` select the fields in it.
    """

    fmt: str
    type_index: int
    length_index: int

    @property
    def header_size(self) -> int:
        return struct.calcsize(self.fmt)


def walk_subtables(
    table: bytes, start: int, end: int, layout: SubtableLayout, signature: str
) -> list[tuple[int, int, bytes]]:
    """Split ``table[start:end]`` into ``(offset, type, raw)`` sub-structures.

    Mirrors the kernel's table walker (``lib/fw_table.c``
    ``acpi_parse_entries_array``): a structure is only looked at while its
    common header starts strictly before ``end - header_size`` (a shorter
    tail is ignored), a zero length aborts the walk ("Invalid zero length").
    Stricter than the kernel: a structure running past ``end`` is an error.
    Offsets are relative to the start of ``table``.
    """
    hdr = struct.Struct(layout.fmt)
    out: list[tuple[int, int, bytes]] = []
    off = start
    while off + hdr.size < end:
        fields = hdr.unpack_from(table, off)
        stype = fields[layout.type_index]
        slen = fields[layout.length_index]
        if slen == 0:
            raise AcpiTableError(
                f"[{signature:4.4s}:0x{stype:02x}] Invalid zero length", signature=signature, offset=off
            )
        if off + slen > end:
            raise AcpiTableError(
                f"[{signature:4.4s}:0x{stype:02x}] sub-structure at offset 0x{off:X} has length "
                f"{slen}, running past the end of the table (0x{end:X})",
                signature=signature,
                offset=off,
            )
        out.append((off, stype, table[off : off + slen]))
        off += slen
    return out
