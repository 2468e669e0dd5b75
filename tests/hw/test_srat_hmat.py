"""SRAT and HMAT codecs, and the kernel's HMAT value normalisation (drivers/acpi/numa/hmat.c)."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cxlemu.hw.acpi.hmat import (
    HMAT_ACCESS_BANDWIDTH,
    HMAT_ACCESS_LATENCY,
    HMAT_ENTRY_MAX,
    HMAT_READ_BANDWIDTH,
    HMAT_READ_LATENCY,
    HMAT_WRITE_BANDWIDTH,
    HMAT_WRITE_LATENCY,
    HmatDecodeError,
    LocalityInfo,
    MemoryProximityDomain,
    UnknownHmat,
    choose_entry_base_unit,
    decode_hmat,
    encode_hmat,
    encode_subtable as encode_hmat_subtable,
    hmat_from_matrix,
    hmat_normalize,
    hmat_revision_supported,
    hmat_value,
    parse_hmat,
)
from cxlemu.hw.acpi.srat import (
    SRAT_MEM_ENABLED,
    SRAT_MEM_HOT_PLUGGABLE,
    SRAT_MEM_NON_VOLATILE,
    GenericPortAffinity,
    MemoryAffinity,
    SratDecodeError,
    UnknownSrat,
    X2ApicAffinity,
    decode_srat,
    encode_srat,
    encode_subtable as encode_srat_subtable,
    parse_srat,
    proximity_domains,
)
from cxlemu.hw.acpi.table import AcpiTableError, build_table

u8, u16, u32, u64 = (st.integers(0, 2**b - 1) for b in (8, 16, 32, 64))


# ==================================================================== SRAT ===
def test_srat_memory_affinity_golden_bytes():
    # Documentation/driver-api/cxl/platform/acpi/srat.rst example (flags 0xB)
    m = MemoryAffinity(proximity_domain=1, base=0xC050000000, length=0x3CA0000000, flags=0x0B)
    expected = bytes.fromhex(
        "01" "28"                   # type 1, length 40
        "01000000"                  # @2  proximity domain
        "0000"                      # @6  reserved
        "00000050c0000000"          # @8  base
        "000000a03c000000"          # @16 length
        "00000000"                  # @24 reserved
        "0b000000"                  # @28 flags
        "0000000000000000"          # @32 reserved
    )
    assert encode_srat_subtable(m) == expected
    assert m.enabled and m.hot_pluggable and not m.non_volatile


def test_srat_generic_port_golden_bytes():
    g = GenericPortAffinity(proximity_domain=1, uid=1)
    expected = bytes.fromhex(
        "06" "20" "00" "00"         # type 6, length 32, reserved, handle type ACPI
        "01000000"                  # @4  proximity domain
        + b"ACPI0016".hex() +       # @8  _HID
        "01000000"                  # @16 _UID
        "00000000"                  # @20 reserved
        "01000000"                  # @24 flags: enabled
        "00000000"                  # @28 reserved
    )
    assert encode_srat_subtable(g) == expected


def test_srat_x2apic_golden_bytes():
    x = X2ApicAffinity(proximity_domain=2, x2apic_id=0x11, clock_domain=3)
    assert encode_srat_subtable(x) == bytes.fromhex(
        "02" "18" "0000" "02000000" "11000000" "01000000" "03000000" "00000000")


def test_srat_table_header_and_reserved_area():
    t = encode_srat([MemoryAffinity(0, 0, 1 << 30)])
    assert t[:4] == b"SRAT" and t[8] == 3
    assert struct.unpack_from("<IQ", t, 36) == (1, 0)
    assert len(t) == 36 + 12 + 40 and sum(t) % 256 == 0


srat_sub = st.one_of(
    st.builds(MemoryAffinity, proximity_domain=u32, base=u64, length=u64, flags=u32),
    st.builds(X2ApicAffinity, proximity_domain=u32, x2apic_id=u32, flags=u32, clock_domain=u32),
    st.builds(GenericPortAffinity, proximity_domain=u32, uid=u32,
              hid=st.text(alphabet="ACDIP0123456789", min_size=1, max_size=8), flags=u32),
    st.builds(lambda t, p: UnknownSrat(t, bytes([t, 2 + len(p)]) + p),
              st.sampled_from([0, 3, 4, 5, 7, 8]), st.binary(min_size=1, max_size=30)),
)


@settings(max_examples=80, deadline=None)
@given(subs=st.lists(srat_sub, max_size=8))
def test_srat_round_trip(subs):
    t = encode_srat(subs)
    assert sum(t) % 256 == 0
    hdr, got = parse_srat(t)
    assert got == subs and hdr.revision == 3
    assert encode_srat(got) == t


@settings(max_examples=40, deadline=None)
@given(subs=st.lists(srat_sub, min_size=1, max_size=4), data=st.data())
def test_srat_corruption_detected(subs, data):
    t = bytearray(encode_srat(subs))
    i = data.draw(st.integers(36, len(t) - 1))
    t[i] ^= data.draw(st.integers(1, 255))
    with pytest.raises(AcpiTableError, match="Incorrect checksum"):
        decode_srat(bytes(t))


def test_srat_generic_port_with_pci_handle_kept_unknown():
    raw = bytearray(encode_srat_subtable(GenericPortAffinity(1, 5)))
    raw[3] = 1  # PCI device handle: the kernel skips these
    [s] = decode_srat(encode_srat([UnknownSrat(6, bytes(raw))]))
    assert s == UnknownSrat(6, bytes(raw))


def test_srat_short_memory_affinity_rejected_with_offset():
    raw = bytes([1, 24]) + bytes(22)
    with pytest.raises(SratDecodeError) as ei:
        decode_srat(encode_srat([UnknownSrat(1, raw)]))
    assert ei.value.offset == 48 and "Memory Affinity at offset 0x30" in str(ei.value)


def test_srat_longer_entry_tolerated_like_kernel():
    raw = encode_srat_subtable(MemoryAffinity(3, 1 << 32, 1 << 30)) + bytes(8)
    raw = bytes([raw[0], len(raw)]) + raw[2:]
    [m] = decode_srat(encode_srat([UnknownSrat(1, raw)]))
    assert m == MemoryAffinity(3, 1 << 32, 1 << 30)


def test_srat_zero_length_entry_rejected():
    with pytest.raises(AcpiTableError, match="Invalid zero length"):
        decode_srat(build_table("SRAT", 3, struct.pack("<IQ", 1, 0) + bytes([1, 0]) + bytes(38)))


def test_srat_too_short_for_reserved_area():
    with pytest.raises(SratDecodeError):
        decode_srat(build_table("SRAT", 3, bytes(8)))


def test_srat_flag_values_and_proximity_domains():
    assert (SRAT_MEM_ENABLED, SRAT_MEM_HOT_PLUGGABLE, SRAT_MEM_NON_VOLATILE) == (1, 2, 4)
    subs = [X2ApicAffinity(0, 0), MemoryAffinity(1, 0, 1), GenericPortAffinity(4, 0), UnknownSrat(9, b"\x09\x02")]
    assert proximity_domains(subs) == {0, 1, 4}


# ==================================================================== HMAT ===
def test_hmat_proximity_golden_bytes():
    p = MemoryProximityDomain.attached(memory_pd=1, initiator_pd=0)
    assert encode_hmat_subtable(p) == bytes.fromhex(
        "0000" "0000" "28000000"    # type 0, reserved, length 40
        "0100" "0000"               # @8 flags: initiator PD valid, reserved
        "00000000" "01000000"       # @12 initiator PD, @16 memory PD
        "00000000" + "00" * 16)


def test_hmat_locality_golden_bytes():
    loc = LocalityInfo(data_type=HMAT_READ_LATENCY, initiators=(0,), targets=(0, 1),
                       entry_base_unit=1000, entries=(80, 250))
    assert encode_hmat_subtable(loc) == bytes.fromhex(
        "0100" "0000" "30000000"    # type 1, length 32 + 4·1 + 4·2 + 2·2 = 48
        "00" "01" "00" "00"         # flags (memory), data type 1, min transfer, reserved
        "01000000" "02000000"       # 1 initiator, 2 targets
        "00000000"                  # reserved
        "e803000000000000"          # entry base unit 1000
        "00000000"                  # initiator list
        "00000000" "01000000"       # target list
        "5000" "fa00")              # entries 80, 250


pd_list = st.lists(u32, min_size=0, max_size=4, unique=True).map(tuple)


@st.composite
def locality_st(draw):
    inits, targs = draw(pd_list), draw(pd_list)
    ents = tuple(draw(st.lists(u16, min_size=len(inits) * len(targs), max_size=len(inits) * len(targs))))
    return LocalityInfo(data_type=draw(u8), initiators=inits, targets=targs, entry_base_unit=draw(u64),
                        entries=ents, flags=draw(u8), min_transfer_size=draw(u8))


hmat_sub = st.one_of(
    st.builds(MemoryProximityDomain, memory_pd=u32, initiator_pd=u32, flags=u16),
    locality_st(),
    # (a header-only structure at the very end is never visited by the kernel walker)
    st.builds(lambda p: UnknownHmat(2, struct.pack("<HHI", 2, 0, 8 + len(p)) + p), st.binary(min_size=1, max_size=32)),
)


@settings(max_examples=80, deadline=None)
@given(subs=st.lists(hmat_sub, max_size=6))
def test_hmat_round_trip(subs):
    t = encode_hmat(subs)
    assert sum(t) % 256 == 0 and t[8] == 2
    hdr, got = parse_hmat(t)
    assert got == subs
    assert encode_hmat(got) == t


@settings(max_examples=40, deadline=None)
@given(subs=st.lists(hmat_sub, min_size=1, max_size=4), data=st.data())
def test_hmat_corruption_detected(subs, data):
    t = bytearray(encode_hmat(subs))
    i = data.draw(st.integers(36, len(t) - 1))
    t[i] ^= data.draw(st.integers(1, 255))
    with pytest.raises(AcpiTableError, match="Incorrect checksum"):
        decode_hmat(bytes(t))


def test_hmat_proximity_wrong_length_rejected_hmat_c():
    raw = struct.pack("<HHI", 0, 0, 48) + bytes(40)
    with pytest.raises(HmatDecodeError, match="Unexpected address range header length: 48"):
        decode_hmat(encode_hmat([UnknownHmat(0, raw)]))


def test_hmat_locality_too_short_for_matrix_rejected_hmat_c():
    good = encode_hmat_subtable(LocalityInfo(1, (0, 1), (0, 1), 1, (1, 2, 3, 4)))
    bad = good[:4] + struct.pack("<I", len(good) - 2) + good[8:-2]
    with pytest.raises(HmatDecodeError, match="Unexpected locality header length:54, minimum required:56"):
        decode_hmat(encode_hmat([UnknownHmat(1, bad)]))


def test_hmat_revision_support():
    assert hmat_revision_supported(1) and hmat_revision_supported(2)
    assert not hmat_revision_supported(3) and not hmat_revision_supported(0)


@pytest.mark.parametrize(
    "entry,base,dtype,rev,expected",
    [
        (0, 1000, HMAT_READ_LATENCY, 2, 0),            # no data
        (0xFFFF, 1000, HMAT_READ_LATENCY, 2, 0),       # unreachable
        (80, 1000, HMAT_READ_LATENCY, 2, 80),          # 80 000 ps = 80 ns
        (1501, 1, HMAT_WRITE_LATENCY, 2, 2),           # 1501 ps rounds up to 2 ns
        (1500, 10, HMAT_ACCESS_LATENCY, 2, 15),
        (5000, 10, HMAT_READ_BANDWIDTH, 2, 50000),     # MB/s unchanged
        (2, 2**31, HMAT_READ_BANDWIDTH, 2, 0),         # u32 overflow -> 0
        (9, 1, HMAT_READ_LATENCY, 1, 0),               # rev 1: < 10 -> 0
        (25, 1, HMAT_READ_LATENCY, 1, 3),              # rev 1: /10 rounding up
    ],
)
def test_hmat_normalize_matches_kernel(entry, base, dtype, rev, expected):
    assert hmat_normalize(entry, base, dtype, rev) == expected


def test_hmat_from_matrix_exact_for_integer_values():
    rl = [[80, 150], [140, 90]]
    wl = [[85, 160], [150, 95]]
    rb = [[100000, 30000], [28000, 90000]]
    wb = [[90000, 25000], [24000, 80000]]
    subs = hmat_from_matrix([0, 1], [0, 1], rl, wl, rb, wb)
    assert [s.data_type for s in subs] == [HMAT_READ_LATENCY, HMAT_WRITE_LATENCY,
                                           HMAT_READ_BANDWIDTH, HMAT_WRITE_BANDWIDTH]
    decoded = decode_hmat(encode_hmat(subs))
    for dtype, m in ((HMAT_READ_LATENCY, rl), (HMAT_WRITE_LATENCY, wl), (HMAT_READ_BANDWIDTH, rb),
                     (HMAT_WRITE_BANDWIDTH, wb)):
        got = [[hmat_value(decoded, i, t, dtype) for t in (0, 1)] for i in (0, 1)]
        assert got == m
    # 150 ns = 150 000 ps needs base 10 to fit a u16
    assert subs[0].entry_base_unit == 10 and max(subs[0].entries) == 15000


@settings(max_examples=60, deadline=None)
@given(lat=st.lists(st.integers(0, 60000), min_size=1, max_size=6),
       bw=st.lists(st.integers(0, 10**7), min_size=1, max_size=6))
def test_hmat_from_matrix_property(lat, bw):
    n = min(len(lat), len(bw))
    lat, bw = lat[:n], bw[:n]
    subs = decode_hmat(encode_hmat(hmat_from_matrix([0], list(range(n)), [lat], [lat], [bw], [bw])))
    for t in range(n):
        # latency: integer ns always exact (ps values are multiples of the base unit <= 1000)
        assert hmat_value(subs, 0, t, HMAT_READ_LATENCY) == lat[t]
        got = hmat_value(subs, 0, t, HMAT_WRITE_BANDWIDTH)
        unit = subs[-1].entry_base_unit
        assert abs(got - bw[t]) <= unit  # u16 entries share one base unit per structure
        assert (got == 0) == (bw[t] == 0)
        if bw[t] % unit == 0:
            assert got == bw[t]
    for s in subs:
        assert max(s.entries, default=0) <= HMAT_ENTRY_MAX


def test_hmat_from_matrix_scalar_broadcast_and_none():
    subs = hmat_from_matrix([0, 1], [2], 100, None, 5000, None)
    assert [s.data_type for s in subs] == [HMAT_READ_LATENCY, HMAT_READ_BANDWIDTH]
    assert hmat_value(subs, 1, 2, HMAT_READ_LATENCY) == 100
    assert hmat_value(subs, 1, 2, HMAT_WRITE_LATENCY) is None


def test_choose_entry_base_unit():
    base, ents = choose_entry_base_unit([0, 1, 65534])
    assert base == 1 and ents.tolist() == [0, 1, 65534]
    base, ents = choose_entry_base_unit(np.array([[65535, 3]]))
    assert base == 10 and ents.tolist() == [[6554, 1]]  # non-zero stays non-zero
    with pytest.raises(ValueError):
        choose_entry_base_unit([-1])


def test_hmat_access_type_answers_read_and_write_last_wins():
    access = LocalityInfo(HMAT_ACCESS_LATENCY, (0,), (1,), 1000, (100,))
    read = LocalityInfo(HMAT_READ_LATENCY, (0,), (1,), 1000, (70,))
    assert hmat_value([access], 0, 1, HMAT_WRITE_LATENCY) == 100
    assert hmat_value([access, read], 0, 1, HMAT_READ_LATENCY) == 70
    assert hmat_value([read, access], 0, 1, HMAT_READ_LATENCY) == 100
    assert hmat_value([access], 0, 1, HMAT_ACCESS_BANDWIDTH) is None


def test_hmat_value_ignores_non_memory_hierarchy_and_unlisted_pairs():
    cache = LocalityInfo(HMAT_READ_BANDWIDTH, (0,), (1,), 1, (999,), flags=1)
    assert hmat_value([cache], 0, 1, HMAT_READ_BANDWIDTH) is None
    mem = LocalityInfo(HMAT_READ_BANDWIDTH, (0,), (1,), 1, (500,))
    assert hmat_value([mem], 0, 1, HMAT_READ_BANDWIDTH) == 500
    assert hmat_value([mem], 3, 1, HMAT_READ_BANDWIDTH) == 0


def test_locality_entry_count_checked():
    with pytest.raises(ValueError):
        LocalityInfo(HMAT_READ_LATENCY, (0, 1), (0,), 1, (1,))


def test_locality_matrix_view():
    loc = LocalityInfo(HMAT_READ_LATENCY, (0, 1), (5, 6, 7), 1, (1, 2, 3, 4, 5, 6))
    assert loc.matrix().tolist() == [[1, 2, 3], [4, 5, 6]]
    assert loc.entry(1, 6) == 5 and loc.entry(2, 6) is None
