"""Generic ACPI table header/checksum codec and the minimal FADT."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cxlemu.hw.acpi.fadt import (
    FADT_FLAGS_OFFSET,
    FADT_LENGTH,
    FADT_MINOR_REVISION_OFFSET,
    PERSISTENT_CPU_CACHES_MASK,
    Fadt,
    PersistentCpuCaches,
    decode_fadt,
    encode_fadt,
    get_persistent_cpu_caches,
    set_persistent_cpu_caches,
)
from cxlemu.hw.acpi.table import (
    ACPI_HEADER_SIZE,
    AcpiHeader,
    AcpiTableError,
    acpi_checksum,
    build_table,
    c_hex,
    checksum_byte,
    parse_table,
)

ascii_id = lambda n: st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=n, max_size=n)  # noqa: E731


# ---------------------------------------------------------------- header ---
def test_header_golden_bytes_match_spec_offsets():
    t = build_table("CEDT", 1, b"", oem_id="CXLEMU", oem_table_id="CXLECEDT", oem_revision=2,
                    creator_id="CXLE", creator_revision=3)
    assert len(t) == 36
    assert t[0:4] == b"CEDT"
    assert struct.unpack_from("<I", t, 4)[0] == 36  # length
    assert t[8] == 1  # revision
    assert t[10:16] == b"CXLEMU"
    assert t[16:24] == b"CXLECEDT"
    assert struct.unpack_from("<I", t, 24)[0] == 2
    assert t[28:32] == b"CXLE"
    assert struct.unpack_from("<I", t, 32)[0] == 3
    assert sum(t) % 256 == 0


def test_default_oem_table_id_names_the_signature():
    hdr, body = parse_table(build_table("SRAT", 3, b"\x01\x02"))
    assert hdr.oem_table_id == "CXLESRAT"
    assert hdr.oem_id == "CXLEMU"
    assert body == b"\x01\x02"


def test_short_oem_fields_are_space_padded():
    t = build_table("HMAT", 2, b"", oem_id="AB", oem_table_id="XY", creator_id="Q")
    assert t[10:16] == b"AB    "
    assert t[16:24] == b"XY      "
    assert t[28:32] == b"Q   "


@pytest.mark.parametrize("field,value", [("oem_id", "TOOLONG"), ("oem_table_id", "NINECHARS"), ("creator_id", "FIVE5")])
def test_overlong_header_strings_rejected(field, value):
    with pytest.raises(ValueError):
        build_table("CEDT", 1, b"", **{field: value})


@settings(max_examples=80, deadline=None)
@given(
    sig=ascii_id(4),
    rev=st.integers(0, 255),
    body=st.binary(max_size=300),
    oem=ascii_id(6),
    oem_tid=ascii_id(8),
    oem_rev=st.integers(0, 2**32 - 1),
    creator=ascii_id(4),
    creator_rev=st.integers(0, 2**32 - 1),
)
def test_build_parse_round_trip_and_checksum(sig, rev, body, oem, oem_tid, oem_rev, creator, creator_rev):
    t = build_table(sig, rev, body, oem_id=oem, oem_table_id=oem_tid, oem_revision=oem_rev,
                    creator_id=creator, creator_revision=creator_rev)
    assert acpi_checksum(t) == 0
    assert sum(t) % 256 == 0
    hdr, got = parse_table(t, expect_signature=sig)
    assert got == body
    assert hdr == AcpiHeader(sig, 36 + len(body), rev, t[9], oem, oem_tid, oem_rev, creator, creator_rev)
    assert hdr.pack() == t[:36]


@settings(max_examples=80, deadline=None)
@given(body=st.binary(min_size=1, max_size=200), data=st.data())
def test_any_single_byte_corruption_is_detected(body, data):
    t = bytearray(build_table("CEDT", 1, body))
    # Corrupting signature or length gives a different error; everything else
    # must fail the checksum.
    idx = data.draw(st.integers(8, len(t) - 1))
    delta = data.draw(st.integers(1, 255))
    t[idx] = (t[idx] + delta) & 0xFF
    with pytest.raises(AcpiTableError, match=r"Incorrect checksum in table \[CEDT\]"):
        parse_table(bytes(t), "CEDT")


def test_checksum_message_reports_expected_value():
    t = bytearray(build_table("CEDT", 1, b"\x00" * 8))
    good = t[9]
    t[9] = (good + 1) & 0xFF
    with pytest.raises(AcpiTableError) as ei:
        parse_table(bytes(t))
    assert str(ei.value) == f"Incorrect checksum in table [CEDT] - 0x{t[9]:02X}, should be 0x{good:02X}"
    assert checksum_byte(t) == good


def test_wrong_signature_message_is_acpica_wording():
    t = build_table("CEDT", 1, b"")
    with pytest.raises(AcpiTableError) as ei:
        parse_table(t, expect_signature="SRAT")
    assert str(ei.value) == "Invalid signature 0x54444543 for ACPI table, expected [SRAT]"


def test_length_beyond_buffer_rejected():
    t = build_table("CEDT", 1, b"\x00" * 16)
    with pytest.raises(AcpiTableError, match="exceeds"):
        parse_table(t[:-1])


def test_length_below_header_rejected():
    t = bytearray(build_table("CEDT", 1, b""))
    struct.pack_into("<I", t, 4, 20)
    with pytest.raises(AcpiTableError, match="Invalid table length 0x14"):
        parse_table(bytes(t))


def test_buffer_shorter_than_header_rejected():
    with pytest.raises(AcpiTableError, match="too short"):
        parse_table(b"CEDT" + b"\x00" * 10)


def test_bytes_after_length_are_ignored():
    t = build_table("CEDT", 1, b"\xAA\xBB")
    hdr, body = parse_table(t + b"\x55" * 7)
    assert hdr.length == 38 and body == b"\xAA\xBB"


def test_c_hex_matches_printf_alternate_form():
    assert c_hex(0) == "0"
    assert c_hex(0xC050000000) == "0xc050000000"


# ------------------------------------------------------------------ FADT ---
def test_fadt_layout_golden():
    f = Fadt(flags=0x1, minor_revision=5, preferred_pm_profile=4).with_persistent_cpu_caches(
        PersistentCpuCaches.PERSISTENT
    )
    t = encode_fadt(f)
    assert len(t) == FADT_LENGTH == 276
    assert t[0:4] == b"FACP" and t[8] == 6
    assert sum(t) % 256 == 0
    # Flags at offset 112: WBINVD (bit0) + PERSISTENT_CPU_CACHES=10b in bits 23:22
    assert t[112:116] == bytes([0x01, 0x00, 0x80, 0x00])
    assert t[FADT_MINOR_REVISION_OFFSET] == 5
    assert t[45] == 4


@pytest.mark.parametrize(
    "value,bits",
    [
        (PersistentCpuCaches.NOT_REPORTED, 0x000000),
        (PersistentCpuCaches.NOT_PERSISTENT, 0x400000),
        (PersistentCpuCaches.PERSISTENT, 0x800000),
    ],
)
def test_persistent_cpu_caches_bits_22_23(value, bits):
    assert set_persistent_cpu_caches(0, value) == bits
    assert get_persistent_cpu_caches(bits) is value
    assert PERSISTENT_CPU_CACHES_MASK == 0xC00000


def test_persistent_cpu_caches_descriptions():
    assert [v.description for v in PersistentCpuCaches] == [
        "not reported", "not persistent", "persistent", "reserved"]
    assert PersistentCpuCaches.from_description("Persistent") is PersistentCpuCaches.PERSISTENT
    assert PersistentCpuCaches.from_description("not persistent") is PersistentCpuCaches.NOT_PERSISTENT
    with pytest.raises(ValueError):
        PersistentCpuCaches.from_description("maybe")


@settings(max_examples=60, deadline=None)
@given(flags=st.integers(0, 2**32 - 1), value=st.sampled_from(list(PersistentCpuCaches)))
def test_set_persistent_cpu_caches_keeps_other_flags(flags, value):
    out = set_persistent_cpu_caches(flags, value)
    assert out & ~PERSISTENT_CPU_CACHES_MASK == flags & ~PERSISTENT_CPU_CACHES_MASK
    assert get_persistent_cpu_caches(out) == value


@settings(max_examples=60, deadline=None)
@given(flags=st.integers(0, 2**32 - 1), minor=st.integers(0, 255), profile=st.integers(0, 255))
def test_fadt_round_trip(flags, minor, profile):
    f = Fadt(flags=flags, minor_revision=minor, preferred_pm_profile=profile)
    t = encode_fadt(f)
    assert decode_fadt(t) == f
    assert struct.unpack_from("<I", t, FADT_FLAGS_OFFSET)[0] == flags


def test_fadt_decode_tolerates_old_short_fadt():
    short = build_table("FACP", 1, encode_fadt(Fadt(flags=0x800001))[36:116])  # ACPI 1.0 size 116
    f = decode_fadt(short)
    assert f.flags == 0x800001 and f.minor_revision == 0
    assert f.persistent_cpu_caches is PersistentCpuCaches.PERSISTENT


def test_fadt_too_short_for_flags_rejected():
    with pytest.raises(AcpiTableError, match="too short to hold Flags"):
        decode_fadt(build_table("FACP", 1, bytes(100 - ACPI_HEADER_SIZE)))


def test_fadt_wrong_signature_rejected():
    with pytest.raises(AcpiTableError, match="expected \\[FACP\\]"):
        decode_fadt(build_table("APIC", 6, bytes(240)))
