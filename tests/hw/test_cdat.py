"""CDAT codec and the kernel's interpretation of it (drivers/cxl/core/cdat.c, pci.c)."""

from __future__ import annotations

import errno
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cxlemu.hw.acpi.hmat import (
    HMAT_ACCESS_BANDWIDTH,
    HMAT_ACCESS_LATENCY,
    HMAT_READ_BANDWIDTH,
    HMAT_READ_LATENCY,
    HMAT_WRITE_BANDWIDTH,
    HMAT_WRITE_LATENCY,
)
from cxlemu.hw.cdat import (
    DSEMTS_EFI_CONVENTIONAL_SP,
    DSEMTS_EFI_RESERVED,
    DSMAS_NONVOLATILE,
    SSLBIS_ANY_PORT,
    SSLBIS_US_PORT,
    Cdat,
    CdatError,
    Coordinates,
    Dsemts,
    Dsis,
    Dslbis,
    Dsmas,
    Dsmscis,
    Sslbis,
    SslbisEntry,
    UnknownCdat,
    cdat_for_device,
    decode_cdat,
    device_coordinates,
    encode_cdat,
    encode_structure,
    switch_port_coordinates,
)

u8, u16, u32, u64 = (st.integers(0, 2**b - 1) for b in (8, 16, 32, 64))
GiB = 1 << 30


# ------------------------------------------------------------ golden bytes ---
def test_cdat_header_and_dsmas_golden_bytes():
    t = encode_cdat(Cdat((Dsmas(handle=0, flags=DSMAS_NONVOLATILE, dpa_base=0, dpa_length=GiB),), sequence=7))
    expected_wo_csum = bytes.fromhex(
        "28000000"                  # @0 length 16 + 24
        "01"                        # @4 revision
        "00"                        # @5 checksum (patched below)
        "000000000000"              # @6 reserved
        "07000000"                  # @12 sequence
        "00" "00" "1800"            # DSMAS: type 0, reserved, length 24
        "00" "04" "0000"            # handle 0, flags non-volatile, reserved
        "0000000000000000"          # DPA base
        "0000004000000000"          # DPA length 1 GiB
    )
    csum = (-sum(expected_wo_csum)) & 0xFF
    assert t == expected_wo_csum[:5] + bytes([csum]) + expected_wo_csum[6:]
    assert sum(t) % 256 == 0


def test_dslbis_and_sslbis_golden_bytes():
    d = encode_structure(Dslbis(handle=1, flags=0, data_type=HMAT_READ_LATENCY, entry_base_unit=1000,
                                entries=(150, 0, 0)))
    assert d == bytes.fromhex("01" "00" "1800" "01" "00" "01" "00" "e803000000000000" "9600" "0000" "0000" "0000")
    s = encode_structure(Sslbis(HMAT_READ_BANDWIDTH, 100, (SslbisEntry(SSLBIS_US_PORT, 2, 640),)))
    assert s == bytes.fromhex("05" "00" "1800" "04" "000000" "6400000000000000" "0001" "0200" "8002" "0000")


def test_other_structure_sizes():
    assert len(encode_structure(Dsmscis(0, 1 << 20, 0x1234))) == 20
    assert len(encode_structure(Dsis(1, 0))) == 8
    assert len(encode_structure(Dsemts(0, 1, 0, GiB))) == 24


# ------------------------------------------------------ hypothesis codecs ---
cdat_struct = st.one_of(
    st.builds(Dsmas, handle=u8, flags=u8, dpa_base=u64, dpa_length=u64),
    st.builds(Dslbis, handle=u8, flags=u8, data_type=u8, entry_base_unit=u64,
              entries=st.tuples(u16, u16, u16)),
    st.builds(Dsmscis, handle=u8, side_cache_size=u64, cache_attributes=u32),
    st.builds(Dsis, flags=u8, handle=u8),
    st.builds(Dsemts, handle=u8, memory_type=u8, dpa_offset=u64, range_length=u64),
    st.builds(Sslbis, data_type=u8, entry_base_unit=u64,
              entries=st.lists(st.builds(SslbisEntry, u16, u16, u16), min_size=1, max_size=8).map(tuple)),
    st.builds(lambda t, p: UnknownCdat(t, struct.pack("<BBH", t, 0, 4 + len(p)) + p),
              st.integers(6, 255), st.binary(min_size=1, max_size=20)),
)


@settings(max_examples=100, deadline=None)
@given(structs=st.lists(cdat_struct, max_size=10), seq=u32, rev=u8)
def test_cdat_round_trip_and_checksum(structs, seq, rev):
    c = Cdat(tuple(structs), revision=rev, sequence=seq)
    t = encode_cdat(c)
    assert sum(t) % 256 == 0
    assert struct.unpack_from("<I", t, 0)[0] == len(t)
    assert decode_cdat(t) == c
    assert encode_cdat(decode_cdat(t)) == t


@settings(max_examples=60, deadline=None)
@given(structs=st.lists(cdat_struct, min_size=1, max_size=4), data=st.data())
def test_cdat_corruption_detected(structs, data):
    t = bytearray(encode_cdat(structs))
    i = data.draw(st.integers(4, len(t) - 1))  # leave the length alone
    t[i] ^= data.draw(st.integers(1, 255))
    with pytest.raises(CdatError, match="Failed to read/validate CDAT") as ei:
        decode_cdat(bytes(t))
    assert ei.value.errno == errno.EIO


def test_checksum_can_be_skipped():
    t = bytearray(encode_cdat([Dsis(0, 0)]))
    t[5] ^= 0xFF
    assert decode_cdat(bytes(t), verify_checksum=False).structures == (Dsis(0, 0),)


# --------------------------------------------------------- strictness ---
def _with_bad_length(raw: bytes, new_len: int) -> bytes:
    body = raw[:2] + struct.pack("<H", new_len) + raw[4:]
    return body[:new_len].ljust(new_len, b"\0")


@pytest.mark.parametrize("name,struct_,size", [("DSMAS", Dsmas(0, 0, 0, GiB), 24),
                                               ("DSLBIS", Dslbis(0, 0, 1, 1, (1, 0, 0)), 24)])
@pytest.mark.parametrize("delta", [-1, 4])
def test_malformed_dsmas_dslbis_length_rejected_cdat_c(name, struct_, size, delta):
    raw = _with_bad_length(encode_structure(struct_), size + delta)
    with pytest.raises(CdatError, match=rf"Malformed {name} table length: \({size}:{size + delta}\)"):
        decode_cdat(encode_cdat([UnknownCdat(struct_.TYPE, raw)]))


@pytest.mark.parametrize("length", [16, 20, 27])
def test_malformed_sslbis_length_rejected_cdat_c(length):
    raw = _with_bad_length(encode_structure(Sslbis(0, 1, (SslbisEntry(1, 2, 3),))), length)
    with pytest.raises(CdatError, match=rf"Malformed SSLBIS table length: \({length}\)"):
        decode_cdat(encode_cdat([UnknownCdat(5, raw)]))


def test_empty_sslbis_refused_on_encode():
    with pytest.raises(ValueError):
        encode_structure(Sslbis(0, 1, ()))


def test_header_length_errors():
    t = encode_cdat([Dsis(0, 0)])
    with pytest.raises(CdatError, match="exceeds"):
        decode_cdat(t[:-1])
    with pytest.raises(CdatError, match="too short"):
        decode_cdat(t[:10])
    bad = bytearray(t)
    struct.pack_into("<I", bad, 0, 8)
    with pytest.raises(CdatError, match="shorter than"):
        decode_cdat(bytes(bad), verify_checksum=False)


def test_zero_length_structure_rejected():
    body = bytearray(encode_cdat([Dsis(0, 0)]))
    struct.pack_into("<H", body, 16 + 2, 0)
    with pytest.raises(Exception, match="Invalid zero length"):
        decode_cdat(bytes(body), verify_checksum=False)


# --------------------------------------------- building / interpretation ---
def test_cdat_for_device_typical_type3():
    c = cdat_for_device([(0, GiB), (GiB, GiB, True)], read_latency_ps=150_000, write_latency_ps=[170_000, 250_000],
                        read_bw_mbps=40_000, write_bw_mbps=[30_000, 3_000_000])
    kinds = [type(s).__name__ for s in c.structures]
    assert kinds == ["Dsmas"] + ["Dslbis"] * 4 + ["Dsemts"] + ["Dsmas"] + ["Dslbis"] * 4 + ["Dsemts"]
    dsmas = [s for s in c.structures if isinstance(s, Dsmas)]
    assert dsmas == [Dsmas(0, 0, 0, GiB), Dsmas(1, DSMAS_NONVOLATILE, GiB, GiB)]
    dsemts = [s for s in c.structures if isinstance(s, Dsemts)]
    assert [d.memory_type for d in dsemts] == [DSEMTS_EFI_CONVENTIONAL_SP, DSEMTS_EFI_RESERVED]
    coords = device_coordinates(encode_cdat(c))
    assert coords == {
        0: Coordinates(150_000, 170_000, 40_000, 30_000),
        1: Coordinates(150_000, 250_000, 40_000, 3_000_000),
    }
    for s in c.structures:
        if isinstance(s, Dslbis):
            assert s.entries[0] <= 0xFFFE and s.entries[1:] == (0, 0)


@settings(max_examples=60, deadline=None)
@given(rl=st.integers(1, 10**7), wl=st.integers(1, 10**7), rb=st.integers(1, 10**7), wb=st.integers(1, 10**7))
def test_cdat_for_device_coordinates_property(rl, wl, rb, wb):
    coords = device_coordinates(encode_cdat(cdat_for_device([(0, GiB)], rl, wl, rb, wb)))[0]
    for got, want in ((coords.read_latency, rl), (coords.write_latency, wl),
                      (coords.read_bandwidth, rb), (coords.write_bandwidth, wb)):
        assert abs(got - want) <= max(1, want // 65534 * 10)  # u16 entry × power-of-ten unit
        if want <= 0xFFFE:
            assert got == want


def test_device_coordinates_follow_cdat_c_rules():
    structs = [
        Dsmas(3, 0, 0, GiB),
        Dslbis(3, 0, HMAT_ACCESS_LATENCY, 1000, (100, 7, 7)),      # sets read and write, uses entry[0]
        Dslbis(3, 0, HMAT_WRITE_LATENCY, 1000, (120, 0, 0)),       # later overrides write
        Dslbis(3, 0, HMAT_ACCESS_BANDWIDTH, 10, (2000, 0, 0)),
        Dslbis(3, 0, HMAT_READ_BANDWIDTH, 1, (9, 0, 0)),
        Dslbis(3, 1, HMAT_WRITE_BANDWIDTH, 1, (1, 0, 0)),          # not memory hierarchy: skipped
        Dslbis(3, 0, 6, 1, (1, 0, 0)),                             # unknown data type: skipped
        Dslbis(9, 0, HMAT_READ_LATENCY, 1, (1, 0, 0)),             # no matching DSMAS: skipped
    ]
    assert device_coordinates(structs) == {3: Coordinates(100_000, 120_000, 9, 20_000)}


def test_device_coordinates_dsmas_first_regardless_of_order():
    structs = [Dslbis(0, 0, HMAT_READ_LATENCY, 1, (5, 0, 0)), Dsmas(0, 0, 0, GiB)]
    assert device_coordinates(structs)[0].read_latency == 5


def test_device_coordinates_duplicate_dsmas_handle_fails():
    with pytest.raises(CdatError, match="duplicate DSMAS handle 0"):
        device_coordinates([Dsmas(0, 0, 0, GiB), Dsmas(0, 0, GiB, GiB)])


def test_device_coordinates_without_dsmas_is_empty():
    assert device_coordinates([Dslbis(0, 0, HMAT_READ_LATENCY, 1, (5, 0, 0))]) == {}


def test_dslbis_product_truncated_to_unsigned_int():
    c = device_coordinates([Dsmas(0, 0, 0, GiB), Dslbis(0, 0, HMAT_READ_BANDWIDTH, 1 << 32, (3, 0, 0))])
    assert c[0].read_bandwidth == 0  # (3 << 32) does not fit the kernel's unsigned int


def test_switch_port_coordinates_sslbis():
    cdat = Cdat((
        Sslbis(HMAT_READ_LATENCY, 1000, (SslbisEntry(SSLBIS_US_PORT, 1, 50), SslbisEntry(2, SSLBIS_US_PORT, 60))),
        Sslbis(HMAT_WRITE_BANDWIDTH, 10, (SslbisEntry(SSLBIS_ANY_PORT, SSLBIS_ANY_PORT, 1600),)),
        Sslbis(7, 1, (SslbisEntry(SSLBIS_US_PORT, 1, 1),)),  # unknown data type skipped
    ))
    coords = switch_port_coordinates(encode_cdat(cdat), [1, 2, 3])
    assert coords == {
        1: Coordinates(read_latency=50_000, write_bandwidth=16_000),
        2: Coordinates(read_latency=60_000, write_bandwidth=16_000),
        3: Coordinates(write_bandwidth=16_000),
    }


def test_write_latency_and_bandwidth_constants_are_hmat_encoding():
    assert (HMAT_ACCESS_LATENCY, HMAT_READ_LATENCY, HMAT_WRITE_LATENCY,
            HMAT_ACCESS_BANDWIDTH, HMAT_READ_BANDWIDTH, HMAT_WRITE_BANDWIDTH) == (0, 1, 2, 3, 4, 5)
