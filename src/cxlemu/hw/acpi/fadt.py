"""Minimal FADT ("FACP") codec — only what cxlemu needs.

We emit an ACPI 6.x FADT (revision 6, 276 bytes) whose fields are zero except
``preferred_pm_profile`` (offset 45), ``flags`` (offset 112, u32) and
``minor_revision`` (offset 131). The Flags field carries the 2-bit
**PERSISTENT_CPU_CACHES** field introduced in ACPI 6.4 (ACPI 6.5 Table 5.10,
Fixed ACPI Description Table Fixed Feature Flags, bits 23:22):

* ``00`` — not reported by the platform (software consults NFIT),
* ``01`` — CPU caches (and caches coherent with them) are not persistent,
* ``10`` — they are persistent (the platform flushes them on power loss),
* ``11`` — reserved.

Linux's ACPICA ``actbl.h`` only defines the flags up to bit 21
(``ACPI_FADT_LOW_POWER_S0``); the bit position above comes from the ACPI
specification as mirrored by other open implementations (e.g. VirtualBox's
``ACPI_FADT_F_PERSISTENT_CPU_CACHES_SHIFT 22``).
"""

from __future__ import annotations

import enum
import struct

from cxlemu.hw.acpi.table import ACPI_HEADER_SIZE, AcpiHeader, AcpiTableError, build_table, parse_table
from cxlemu.util.lazydc import dataclass

__all__ = [
    "FADT_SIGNATURE",
    "FADT_REVISION",
    "FADT_MINOR_REVISION",
    "FADT_LENGTH",
    "FADT_FLAGS_OFFSET",
    "FADT_MINOR_REVISION_OFFSET",
    "FADT_PREFERRED_PROFILE_OFFSET",
    "FADT_WBINVD",
    "FADT_C1_SUPPORTED",
    "FADT_HW_REDUCED",
    "FADT_LOW_POWER_S0",
    "PERSISTENT_CPU_CACHES_SHIFT",
    "PERSISTENT_CPU_CACHES_MASK",
    "PM_ENTERPRISE_SERVER",
    "PersistentCpuCaches",
    "Fadt",
    "get_persistent_cpu_caches",
    "set_persistent_cpu_caches",
    "encode_fadt",
    "decode_fadt",
    "parse_fadt",
]

FADT_SIGNATURE = "FACP"
FADT_REVISION = 6
FADT_MINOR_REVISION = 5  # ACPI 6.5
FADT_LENGTH = 276

# Absolute offsets inside the table (header included).
FADT_PREFERRED_PROFILE_OFFSET = 45
FADT_FLAGS_OFFSET = 112
FADT_MINOR_REVISION_OFFSET = 131
_FLAGS_END = FADT_FLAGS_OFFSET + 4  # ACPI_FADT_V1_SIZE: the smallest FADT carrying Flags

# Fixed feature flags we name (actbl.h ACPI_FADT_*).
FADT_WBINVD = 1 << 0
FADT_C1_SUPPORTED = 1 << 2
FADT_HW_REDUCED = 1 << 20
FADT_LOW_POWER_S0 = 1 << 21

PERSISTENT_CPU_CACHES_SHIFT = 22
PERSISTENT_CPU_CACHES_MASK = 0x3 << PERSISTENT_CPU_CACHES_SHIFT

PM_ENTERPRISE_SERVER = 4


class PersistentCpuCaches(enum.IntEnum):
    """Value of the FADT PERSISTENT_CPU_CACHES field."""

    NOT_REPORTED = 0
    NOT_PERSISTENT = 1
    PERSISTENT = 2
    RESERVED = 3

    @property
    def description(self) -> str:
        return {
            0: "not reported",
            1: "not persistent",
            2: "persistent",
            3: "reserved",
        }[int(self)]

    @classmethod
    def from_description(cls, text: str) -> PersistentCpuCaches:
        """Inverse of :attr:`description` ("not reported", "not persistent", "persistent")."""
        for member in cls:
            if member.description == text.strip().lower():
                return member
        raise ValueError(f"unknown persistent CPU caches setting {text!r}")


def get_persistent_cpu_caches(flags: int) -> PersistentCpuCaches:
    """Extract the PERSISTENT_CPU_CACHES field from a FADT Flags value."""
    return PersistentCpuCaches((flags & PERSISTENT_CPU_CACHES_MASK) >> PERSISTENT_CPU_CACHES_SHIFT)


def set_persistent_cpu_caches(flags: int, value: PersistentCpuCaches | int) -> int:
    """Return ``flags`` with the PERSISTENT_CPU_CACHES field replaced by ``value``."""
    value = PersistentCpuCaches(value)
    return (flags & ~PERSISTENT_CPU_CACHES_MASK & 0xFFFF_FFFF) | (int(value) << PERSISTENT_CPU_CACHES_SHIFT)


@dataclass(frozen=True)
class Fadt:
    """The FADT fields cxlemu models."""

    flags: int = FADT_WBINVD | FADT_C1_SUPPORTED
    minor_revision: int = FADT_MINOR_REVISION
    preferred_pm_profile: int = PM_ENTERPRISE_SERVER

    @property
    def persistent_cpu_caches(self) -> PersistentCpuCaches:
        return get_persistent_cpu_caches(self.flags)

    def with_persistent_cpu_caches(self, value: PersistentCpuCaches | int) -> Fadt:
        return Fadt(
            flags=set_persistent_cpu_caches(self.flags, value),
            minor_revision=self.minor_revision,
            preferred_pm_profile=self.preferred_pm_profile,
        )


def encode_fadt(fadt: Fadt = Fadt(), **header_kwargs) -> bytes:
    """Encode a 276-byte revision-6 FADT (zeros except our fields)."""
    if not 0 <= fadt.flags <= 0xFFFF_FFFF:
        raise ValueError(f"FADT flags {fadt.flags} do not fit in u32")
    if not 0 <= fadt.minor_revision <= 0xFF or not 0 <= fadt.preferred_pm_profile <= 0xFF:
        raise ValueError("FADT minor_revision / preferred_pm_profile must fit in u8")
    body = bytearray(FADT_LENGTH - ACPI_HEADER_SIZE)
    body[FADT_PREFERRED_PROFILE_OFFSET - ACPI_HEADER_SIZE] = fadt.preferred_pm_profile
    struct.pack_into("<I", body, FADT_FLAGS_OFFSET - ACPI_HEADER_SIZE, fadt.flags)
    body[FADT_MINOR_REVISION_OFFSET - ACPI_HEADER_SIZE] = fadt.minor_revision
    return build_table(FADT_SIGNATURE, FADT_REVISION, body, **header_kwargs)


def parse_fadt(data: bytes | bytearray | memoryview) -> tuple[AcpiHeader, Fadt]:
    """Validate a FADT and decode our fields.

    Tolerant like ACPICA, which sizes the FADT by its length rather than its
    revision: any FADT holding the Flags field (≥ 116 bytes) decodes; the
    minor revision reads as 0 when the table is too short to carry it.
    """
    header, _ = parse_table(data, expect_signature=FADT_SIGNATURE)
    if header.length < _FLAGS_END:
        raise AcpiTableError(
            f"FACP: table length {header.length} too short to hold Flags (needs {_FLAGS_END})",
            signature=FADT_SIGNATURE,
            offset=FADT_FLAGS_OFFSET,
        )
    table = bytes(data[: header.length])
    (flags,) = struct.unpack_from("<I", table, FADT_FLAGS_OFFSET)
    minor = table[FADT_MINOR_REVISION_OFFSET] if header.length > FADT_MINOR_REVISION_OFFSET else 0
    return header, Fadt(flags=flags, minor_revision=minor, preferred_pm_profile=table[FADT_PREFERRED_PROFILE_OFFSET])


def decode_fadt(data: bytes | bytearray | memoryview) -> Fadt:
    """Decode a FADT (see :func:`parse_fadt`)."""
    return parse_fadt(data)[1]
