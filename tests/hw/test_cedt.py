"""CEDT codec and the kernel's (drivers/cxl/acpi.c) acceptance rules."""

from __future__ import annotations

import errno
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cxlemu.hw.acpi.cedt import (
    CFMWS_ARITHMETIC_MODULO,
    CFMWS_ARITHMETIC_XOR,
    CFMWS_RESTRICT_FIXED,
    CFMWS_RESTRICT_HOSTONLYMEM,
    CFMWS_RESTRICT_PMEM,
    CFMWS_RESTRICT_VOLATILE,
    CHBS_LENGTH_CXL11,
    CHBS_LENGTH_CXL20,
    CHBS_VERSION_CXL11,
    CHBS_VERSION_CXL20,
    SZ_256M,
    CedtDecodeError,
    Cfmws,
    Chbs,
    Cxims,
    Rdpas,
    UnknownCedt,
    decode_cedt,
    encode_cedt,
    encode_subtable,
    parse_cedt,
)
from cxlemu.hw.acpi.table import AcpiTableError, build_table
from cxlemu.kernel.cxl.acpi import (CedtError, check_window, chbs_is_usable, cxims_for_window,
                                    failed_window_message, find_chbs, root_decoder_granularity,
                                    validate_cfmws)

VALID_ENIW = [0, 1, 2, 3, 4, 8, 9, 10]
WAYS_OF = {0: 1, 1: 2, 2: 4, 3: 8, 4: 16, 8: 3, 9: 6, 10: 12}

# The real window from the seeds (/proc/iomem c050000000-fcefffffff).
SEED_BASE = 0xC050000000
SEED_SIZE = 0x3CA0000000


def window(**kw) -> Cfmws:
    fields = dict(base_hpa=SEED_BASE, window_size=SEED_SIZE, eniw=0, interleave_arithmetic=0, hbig=0,
                  restrictions=CFMWS_RESTRICT_HOSTONLYMEM | CFMWS_RESTRICT_VOLATILE, qtg_id=1, targets=(7,))
    fields.update(kw)
    return Cfmws(**fields)


# ------------------------------------------------------------ golden bytes ---
def test_chbs_golden_bytes_from_spec_layout():
    # Example from Documentation/driver-api/cxl/platform/acpi/cedt.rst:
    # UID 7, CXL 2.0 (version 1), register base 0x10370400000, length 0x10000.
    expected = bytes.fromhex(
        "00" "00" "2000"            # type 0, reserved, length 0x0020
        "07000000"                  # @4  uid
        "01000000"                  # @8  cxl_version
        "00000000"                  # @12 reserved
        "0000407003010000"          # @16 base 0x0000010370400000
        "0000010000000000"          # @24 length 0x10000
    )
    chbs = Chbs(uid=7, cxl_version=1, base=0x10370400000, length=0x10000)
    assert encode_subtable(chbs) == expected
    assert decode_cedt(build_table("CEDT", 1, expected)) == [chbs]


def test_cfmws_golden_bytes_seed_window_one_target():
    expected = bytes.fromhex(
        "01" "00" "2800"            # type 1, reserved, length 40 = 36 + 4*1
        "00000000"                  # @4  reserved
        "00000050c0000000"          # @8  base 0xC050000000
        "000000a03c000000"          # @16 size 0x3CA0000000
        "00"                        # @24 ENIW 0 (1 way)
        "00"                        # @25 arithmetic: modulo
        "0000"                      # @26 reserved
        "00000000"                  # @28 HBIG 0 (256 B)
        "0600"                      # @32 restrictions: host-only | volatile
        "0100"                      # @34 QTG id 1
        "07000000"                  # @36 target 0: host bridge UID 7
    )
    c = window()
    assert encode_subtable(c) == expected
    [got] = decode_cedt(build_table("CEDT", 1, expected))
    assert got == c
    assert got.ways == 1 and got.granularity == 256 and got.end == 0xFCEFFFFFFF
    assert validate_cfmws(got) is None


def test_cfmws_golden_bytes_two_way_doc_example():
    # cedt.rst example: length 0x2C, ENIW 1, targets 7 and 6.
    expected = bytes.fromhex(
        "01002c00" "00000000" "00000050c0000000" "000000a03c000000"
        "01" "00" "0000" "00000000" "0600" "0100" "07000000" "06000000"
    )
    c = window(eniw=1, targets=(7, 6))
    assert encode_subtable(c) == expected
    assert c.ways == 2 and c.interleave_targets == (7, 6)


def test_cxims_and_rdpas_layouts():
    cx = encode_subtable(Cxims(hbig=0, xormaps=(0x404100, 0x808200)))
    assert cx == bytes.fromhex("0200" "1800" "0000" "00" "02" "0041400000000000" "0082800000000000")
    rd = encode_subtable(Rdpas(segment=1, bdf=0x0108, protocol=1, address=0xFED00000))
    assert len(rd) == 17
    assert rd == bytes.fromhex("03" "00" "1100" "0100" "0801" "01" "0000d0fe00000000")
    r = decode_cedt(build_table("CEDT", 1, rd))[0]
    assert (r.bus, r.device, r.function) == (1, 1, 0)


def test_whole_cedt_header_and_checksum():
    t = encode_cedt([Chbs(0, 1, 0x1000_0000, CHBS_LENGTH_CXL20), window()])
    assert t[:4] == b"CEDT" and t[8] == 1
    assert struct.unpack_from("<I", t, 4)[0] == len(t) == 36 + 32 + 40
    assert sum(t) % 256 == 0


# ------------------------------------------------------ hypothesis codecs ---
u8, u16, u32, u64 = (st.integers(0, 2**b - 1) for b in (8, 16, 32, 64))

chbs_st = st.builds(Chbs, uid=u32, cxl_version=u32, base=u64, length=u64)
cfmws_st = st.builds(
    Cfmws, base_hpa=u64, window_size=u64, eniw=u8, interleave_arithmetic=u8, hbig=u32,
    restrictions=u16, qtg_id=u16, targets=st.lists(u32, max_size=20).map(tuple),
)
cxims_st = st.builds(Cxims, hbig=u8, xormaps=st.lists(u64, max_size=16).map(tuple))
rdpas_st = st.builds(Rdpas, segment=u16, bdf=u16, protocol=u8, address=u64)
unknown_st = st.builds(
    lambda t, payload: UnknownCedt(t, struct.pack("<BBH", t, 0, 4 + len(payload)) + payload),
    st.integers(4, 255), st.binary(min_size=1, max_size=40),
)
any_sub = st.one_of(chbs_st, cfmws_st, cxims_st, rdpas_st, unknown_st)


@settings(max_examples=100, deadline=None)
@given(sub=any_sub)
def test_each_structure_round_trips(sub):
    raw = encode_subtable(sub)
    assert struct.unpack_from("<H", raw, 2)[0] == len(raw)
    assert decode_cedt(build_table("CEDT", 1, raw)) == [sub]


@settings(max_examples=60, deadline=None)
@given(subs=st.lists(any_sub, max_size=8))
def test_whole_table_round_trips_and_checksums(subs):
    t = encode_cedt(subs)
    assert sum(t) % 256 == 0
    hdr, got = parse_cedt(t)
    assert got == subs and hdr.length == len(t)
    assert encode_cedt(got) == t


@settings(max_examples=50, deadline=None)
@given(subs=st.lists(any_sub, min_size=1, max_size=4), data=st.data())
def test_corrupted_cedt_fails_checksum(subs, data):
    t = bytearray(encode_cedt(subs))
    i = data.draw(st.integers(36, len(t) - 1))
    t[i] ^= data.draw(st.integers(1, 255))
    with pytest.raises(AcpiTableError, match="Incorrect checksum"):
        decode_cedt(bytes(t))


@settings(max_examples=60, deadline=None)
@given(eniw=st.sampled_from(VALID_ENIW), hbig=st.integers(0, 6), base=st.integers(0, 2**20), n=st.integers(1, 2**16))
def test_well_formed_windows_validate(eniw, hbig, base, n):
    c = window(eniw=eniw, hbig=hbig, base_hpa=base * SZ_256M, window_size=n * SZ_256M,
               targets=tuple(range(WAYS_OF[eniw])))
    assert validate_cfmws(c) is None
    assert c.ways == WAYS_OF[eniw]
    assert c.granularity == 256 << hbig
    assert root_decoder_granularity(c) == (256 if c.ways == 1 else 256 << hbig)


# --------------------------------------------------- decode strictness ---
def test_unknown_subtable_kept_and_skipped_by_users():
    raw = bytes([9, 0, 8, 0, 1, 2, 3, 4])
    subs = decode_cedt(encode_cedt([UnknownCedt(9, raw), window()]))
    assert subs[0] == UnknownCedt(9, raw)
    assert isinstance(subs[1], Cfmws)


def test_zero_length_subtable_aborts_walk_like_fw_table():
    body = bytes([1, 0, 0, 0]) + bytes(36)
    with pytest.raises(AcpiTableError, match=r"\[CEDT:0x01\] Invalid zero length"):
        decode_cedt(build_table("CEDT", 1, body))


def test_subtable_running_past_table_end_names_offset():
    raw = encode_subtable(window())[:-4]  # header still claims 40 bytes
    with pytest.raises(AcpiTableError) as ei:
        decode_cedt(build_table("CEDT", 1, raw))
    assert ei.value.offset == 36 and "0x24" in str(ei.value)


def test_cfmws_shorter_than_fixed_layout_is_a_decode_error():
    raw = struct.pack("<BBH", 1, 0, 20) + bytes(16)
    with pytest.raises(CedtDecodeError, match=r"CFMWS at offset 0x24 has length 20"):
        decode_cedt(build_table("CEDT", 1, raw))


def test_cxims_claiming_more_maps_than_it_holds_is_a_decode_error():
    raw = struct.pack("<BBHHBB", 2, 0, 16, 0, 0, 2) + bytes(8)
    with pytest.raises(CedtDecodeError, match="CXIMS at offset 0x24 declares 2 xormaps"):
        decode_cedt(build_table("CEDT", 1, raw))


def test_short_trailing_bytes_are_ignored_like_the_kernel_walk():
    # fw_table.c only looks at a header that starts before end - 4
    t = build_table("CEDT", 1, encode_subtable(window()) + b"\x01\x00\x28\x00")
    assert decode_cedt(t) == [window()]


def test_truncated_cfmws_decodes_and_keeps_raw_length():
    # 2-way window whose header length only covers one target
    raw = bytearray(encode_subtable(window(eniw=1, targets=(7,))))
    assert struct.unpack_from("<H", raw, 2)[0] == 40
    [c] = decode_cedt(build_table("CEDT", 1, bytes(raw)))
    assert c.targets == (7,) and c.header_length == 40 and c.ways == 2


def test_partial_trailing_word_kept_in_record_length():
    c = window(record_length=42)
    raw = encode_subtable(c)
    assert len(raw) == 42 and struct.unpack_from("<H", raw, 2)[0] == 42
    assert decode_cedt(build_table("CEDT", 1, raw)) == [c]


def test_record_length_below_targets_rejected_on_encode():
    with pytest.raises(ValueError):
        encode_subtable(window(targets=(1, 2), record_length=40))


# ------------------------------------------- kernel rules: validate_cfmws ---
def test_cfmws_base_not_256m_aligned_rejected_einval_acpi_c():
    err = validate_cfmws(window(base_hpa=SEED_BASE + 0x100000))
    assert err == CedtError(errno.EINVAL, "CFMWS Base HPA not 256MB aligned")


def test_cfmws_size_not_256m_multiple_rejected_einval_acpi_c():
    err = validate_cfmws(window(window_size=SEED_SIZE - 4096))
    assert err == CedtError(errno.EINVAL, "CFMWS Window Size not 256MB aligned")


@pytest.mark.parametrize("eniw", [5, 6, 7, 11, 0xFF])
def test_cfmws_eniw_not_encodable_rejected_einval_acpi_c(eniw):
    err = validate_cfmws(window(eniw=eniw, targets=tuple(range(16))))
    assert err == CedtError(errno.EINVAL, f"CFMWS Interleave Ways ({eniw}) invalid")
    with pytest.raises(ValueError):
        window(eniw=eniw).ways


@pytest.mark.parametrize("arith", [2, 3, 0xFF])
def test_cfmws_unknown_interleave_arithmetic_rejected_einval_acpi_c(arith):
    err = validate_cfmws(window(interleave_arithmetic=arith))
    assert err == CedtError(errno.EINVAL, f"CFMWS Unknown Interleave Arithmetic: {arith}")


def test_cfmws_arithmetic_checked_before_alignment():
    err = validate_cfmws(window(interleave_arithmetic=7, base_hpa=1))
    assert err.message == "CFMWS Unknown Interleave Arithmetic: 7"


def test_cfmws_short_length_rejected_einval_acpi_c():
    # Built from bytes: ENIW 2 (4 ways) but only 2 targets in a 44-byte record.
    raw = encode_subtable(window(eniw=2, targets=(1, 2)))
    [c] = decode_cedt(build_table("CEDT", 1, raw))
    err = validate_cfmws(c)
    assert err == CedtError(errno.EINVAL, "CFMWS length 44 less than expected 52")


def test_cfmws_longer_than_expected_accepted_kernel_only_logs():
    c = window(eniw=0, targets=(7, 8))  # 1 way, 2 targets
    assert validate_cfmws(c) is None
    assert c.interleave_targets == (7,)


def test_cfmws_hbig_not_encodable_rejected_einval():
    err = validate_cfmws(window(hbig=7))
    assert err is not None and err.errno == errno.EINVAL and "Granularity (7)" in err.message


def test_x1_window_advertises_256_granularity_acpi_c():
    assert root_decoder_granularity(window(hbig=4)) == 256
    assert root_decoder_granularity(window(eniw=1, hbig=4, targets=(1, 2))) == 4096


def test_restriction_bits():
    c = window(restrictions=CFMWS_RESTRICT_PMEM | CFMWS_RESTRICT_FIXED)
    assert c.is_pmem and c.is_fixed and not c.is_volatile
    assert (CFMWS_RESTRICT_HOSTONLYMEM, CFMWS_RESTRICT_VOLATILE, CFMWS_RESTRICT_PMEM) == (2, 4, 8)


def test_failed_window_message_format():
    err = validate_cfmws(window(window_size=SEED_SIZE + 1))
    assert failed_window_message(window(), err) == (
        "Failed to add decode range: [0xc050000000 - 0xfcefffffff] (-22)"
    )


# ---------------------------------------------------------- kernel rules: CHBS ---
@pytest.mark.parametrize(
    "version,length,usable",
    [
        (CHBS_VERSION_CXL11, CHBS_LENGTH_CXL11, True),
        (CHBS_VERSION_CXL11, CHBS_LENGTH_CXL20, False),
        (CHBS_VERSION_CXL20, CHBS_LENGTH_CXL20, True),
        (CHBS_VERSION_CXL20, CHBS_LENGTH_CXL11, False),
        (CHBS_VERSION_CXL20, 0x1000, False),
        (2, 0x1234, True),  # the kernel length-checks only versions 0 and 1
    ],
)
def test_chbs_with_wrong_length_for_its_version_ignored_acpi_c(version, length, usable):
    assert chbs_is_usable(Chbs(uid=0, cxl_version=version, base=0xFED0_0000, length=length)) is usable


def test_chbs_with_zero_base_ignored():
    assert not chbs_is_usable(Chbs(0, CHBS_VERSION_CXL20, 0, CHBS_LENGTH_CXL20))


def test_find_chbs_first_usable_match_wins_and_counts_versions():
    bad = Chbs(3, CHBS_VERSION_CXL20, 0x1000, CHBS_LENGTH_CXL11)  # unusable, same uid
    good = Chbs(3, CHBS_VERSION_CXL20, 0x2000, CHBS_LENGTH_CXL20)
    later = Chbs(3, CHBS_VERSION_CXL20, 0x3000, CHBS_LENGTH_CXL20)
    m = find_chbs([bad, good, later], 3)
    assert m.chbs == good and m.nr_versions == 1 and not m.mixed
    rch = Chbs(4, CHBS_VERSION_CXL11, 0x4000, CHBS_LENGTH_CXL11)
    m = find_chbs([good, rch], 9)
    assert m.chbs is None and m.mixed


# -------------------------------------------------------- kernel rules: CXIMS ---
def test_xor_window_without_cxims_rejected_einval_acpi_c():
    c = window(eniw=1, interleave_arithmetic=CFMWS_ARITHMETIC_XOR, targets=(0, 1))
    assert cxims_for_window([c], c) == CedtError(errno.EINVAL, "No CXIMS for HBIG 256")
    assert check_window([c], c) == CedtError(errno.EINVAL, "No CXIMS for HBIG 256")


@pytest.mark.parametrize("eniw", [0, 8])
def test_xor_x1_and_x3_need_no_cxims(eniw):
    c = window(eniw=eniw, interleave_arithmetic=CFMWS_ARITHMETIC_XOR, targets=tuple(range(WAYS_OF[eniw])))
    assert cxims_for_window([c], c) == ()
    assert check_window([c], c) is None


def test_modulo_window_needs_no_cxims():
    c = window(eniw=2, targets=(0, 1, 2, 3), interleave_arithmetic=CFMWS_ARITHMETIC_MODULO)
    assert cxims_for_window([], c) == ()


def test_cxl_test_cfmws7_takes_first_map():
    # tools/testing/cxl: x2 XOR window at HBIG 0, CXIMS maps {0x404100, 0x808200}
    c = window(eniw=1, interleave_arithmetic=CFMWS_ARITHMETIC_XOR, hbig=0, targets=(0, 1))
    cedt = [Cxims(hbig=0, xormaps=(0x404100, 0x808200)), c]
    assert cxims_for_window(cedt, c) == (0x404100,)


@pytest.mark.parametrize("eniw,needed", [(1, 1), (2, 2), (3, 3), (4, 4), (9, 1), (10, 2)])
def test_number_of_xormaps_needed(eniw, needed):
    c = window(eniw=eniw, interleave_arithmetic=CFMWS_ARITHMETIC_XOR, hbig=2,
               targets=tuple(range(WAYS_OF[eniw])))
    maps = tuple(1 << (10 + i) for i in range(5))
    assert cxims_for_window([Cxims(2, maps)], c) == maps[:needed]
    if needed:
        err = cxims_for_window([Cxims(2, maps[: needed - 1])], c)
        assert err == CedtError(errno.EINVAL, f"CXIMS nr_xormaps[{needed - 1}] expected[{needed}]",
                                handler_errno=errno.ENXIO)


def test_cxims_with_other_hbig_is_skipped():
    c = window(eniw=1, interleave_arithmetic=CFMWS_ARITHMETIC_XOR, hbig=1, targets=(0, 1))
    assert cxims_for_window([Cxims(0, (0x100,))], c) == CedtError(errno.EINVAL, "No CXIMS for HBIG 512")


def test_later_matching_cxims_replaces_earlier():
    c = window(eniw=1, interleave_arithmetic=CFMWS_ARITHMETIC_XOR, targets=(0, 1))
    assert cxims_for_window([Cxims(0, (0x100,)), Cxims(0, (0x200,))], c) == (0x200,)


def test_cxims_with_invalid_hbig_fails_the_walk():
    c = window(eniw=1, interleave_arithmetic=CFMWS_ARITHMETIC_XOR, targets=(0, 1))
    err = cxims_for_window([Cxims(0, (0x100,)), Cxims(9, (0x200,))], c)
    assert isinstance(err, CedtError) and err.errno == errno.EINVAL


def test_check_window_reports_validation_before_cxims():
    c = window(eniw=1, interleave_arithmetic=CFMWS_ARITHMETIC_XOR, targets=(0, 1), base_hpa=1 << 20)
    assert check_window([], c).message == "CFMWS Base HPA not 256MB aligned"


def test_cedt_error_str_shows_negative_errno():
    assert str(CedtError(errno.EINVAL, "No CXIMS for HBIG 256")) == "No CXIMS for HBIG 256 (-22)"
