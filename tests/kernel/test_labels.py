"""Tests for the Label Storage Area codec and update protocol
(cxlemu.hw.lsa; rules from drivers/nvdimm/label.[ch], core.c,
CXL r3.1 §9.13.2 and ndctl/lib/dimm.c)."""

from __future__ import annotations

import struct
import uuid
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cxlemu.hw.lsa import (
    CXL_NAMESPACE_TYPE_UUID,
    CXL_REGION_TYPE_UUID,
    LSA_VERSION_1_1,
    LSA_VERSION_1_2,
    LSA_VERSION_2_1,
    NSINDEX_SIGNATURE,
    NSLABEL_FLAG_UPDATING,
    NVDIMM_DAX_GUID,
    NVDIMM_PFN_GUID,
    EfiNamespaceLabel,
    IndexBlock,
    LabelArea,
    LabelAreaFull,
    LabelAreaTooSmall,
    LabelAreaUninitialized,
    NamespaceLabel,
    RegionLabel,
    best_seq,
    checksum_ok,
    claim_class_of,
    current_index,
    decode_label,
    fletcher64,
    index_size_for,
    label_id,
    next_seq,
    nslot_for,
    nslot_legacy,
    probe_label_area,
    select_index,
    slot_valid,
    validate_index,
)

KiB = 1024


# ---------------------------------------------------------------------------
# Fletcher-64 (core.c nd_fletcher64)
# ---------------------------------------------------------------------------

def slow_fletcher64(data: bytes) -> int:
    """Independent word-by-word reference: u32 low sum, u64 high sum."""
    lo, hi = 0, 0
    for i in range(len(data) // 4):
        (w,) = struct.unpack_from("<I", data, 4 * i)
        lo = (lo + w) & 0xFFFFFFFF
        hi = (hi + lo) & 0xFFFFFFFFFFFFFFFF
    return ((hi << 32) & 0xFFFFFFFFFFFFFFFF) | lo


def test_fletcher64_known_vectors_core_c():
    assert fletcher64(b"") == 0
    assert fletcher64(b"abc") == 0                      # no whole word
    words = struct.pack("<3I", 1, 2, 3)                  # lo: 1,3,6  hi: 10
    assert fletcher64(words) == (10 << 32) | 6
    assert fletcher64(words + b"\x07\x07") == (10 << 32) | 6   # tail ignored
    # 64 words of 0xffffffff: lo_i = -i mod 2^32, hi = -(1+..+64) mod 2^32
    assert fletcher64(b"\xff" * 256) == 0xFFFFF7E0_FFFFFFC0
    # little-endian words: bytes 01 00 00 00 is 1, 00 00 00 01 is 2^24
    assert fletcher64(b"\x00\x00\x00\x01") == (0x01000000 << 32) | 0x01000000


def test_fletcher64_matches_reference_with_wraparound():
    data = b"\xff" * (256 * KiB)           # hi wraps many times
    assert fletcher64(data) == slow_fletcher64(data)
    assert fletcher64(bytearray(data)) == fletcher64(memoryview(data))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=1024))
def test_fletcher64_property_matches_slow_reference(data):
    assert fletcher64(data) == slow_fletcher64(data)


# ---------------------------------------------------------------------------
# Geometry (label.c nvdimm_num_label_slots / sizeof_namespace_index)
# ---------------------------------------------------------------------------

def test_nslot_128k_256_byte_labels_label_c():
    assert nslot_for(128 * KiB, 256) == (510, 256)
    assert nslot_legacy(128 * KiB, 256) == (510, 256)
    area = LabelArea(128 * KiB)
    assert area.label_base == 0x200
    assert area.slot_offset(509) + 256 <= 128 * KiB


def test_nslot_256k_and_128_byte_labels_label_c():
    assert nslot_for(256 * KiB, 256) == (1022, 256)
    assert nslot_for(128 * KiB, 128) == (1020, 256)
    assert nslot_legacy(128 * KiB, 128) == (1016, 256)
    assert nslot_for(1 * 1024 * KiB, 256) == (4090, 768)


def test_nslot_minimum_area_label_c_too_small():
    assert nslot_for(1024, 256) == (2, 256)               # ND_LABEL_MIN_SIZE
    with pytest.raises(LabelAreaTooSmall, match=r"label area \(1023\) too small"):
        nslot_for(1023, 256)
    with pytest.raises(LabelAreaTooSmall):
        nslot_for(0, 256)


@settings(max_examples=200, deadline=None)
@given(st.integers(1024, 8 * 1024 * KiB), st.sampled_from([128, 256]))
def test_nslot_layout_always_fits(config_size, label_size):
    nslot, isize = nslot_for(config_size, label_size)
    assert isize % 256 == 0 and isize >= 72 + (nslot + 7) // 8
    assert isize == index_size_for(nslot)
    assert 2 * isize + nslot * label_size <= config_size
    assert nslot >= 2


# ---------------------------------------------------------------------------
# Sequence numbers (label.c best_seq, nd.h nd_inc_seq)
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("seq0,seq1,expected", [
    (3, 2, 0), (1, 2, 1), (3, 1, 1), (1, 3, 0), (2, 2, 1),
])
def test_best_seq_examples_label_c(seq0, seq1, expected):
    assert select_index(seq0, seq1) == expected
    # the same choice when the blocks really sit in an area
    area = _two_block_area(seq0, seq1)
    assert current_index(area) == expected
    assert current_index(area, 256) == expected


def test_best_seq_values_and_next_seq_cycle():
    assert best_seq(3, 2) == 3 and best_seq(1, 2) == 2 and best_seq(3, 1) == 1
    assert best_seq(0, 2) == 2 and best_seq(2, 0) == 2 and best_seq(0, 0) == 0
    assert best_seq(0x7, 0x5) == 1          # only the low two bits count: (3, 1)
    assert select_index(0x7, 0x5) == 1
    assert [next_seq(s) for s in (1, 2, 3, 0)] == [2, 3, 1, 0]
    for s in (1, 2, 3):                      # successor always wins, either side
        assert select_index(s, next_seq(s)) == 1
        assert select_index(next_seq(s), s) == 0


def _block(i, seq, *, isize=256, nslot=510, major=2, minor=1, labelsize=1,
           free=None, **kw):
    blk = IndexBlock(labelsize=labelsize, seq=seq, myoff=i * isize, mysize=isize,
                     otheroff=(1 - i) * isize, labeloff=2 * isize, nslot=nslot,
                     major=major, minor=minor,
                     free=(1 << nslot) - 1 if free is None else free)
    return replace(blk, **kw)


def _two_block_area(seq0, seq1, size=128 * KiB):
    area = bytearray(size)
    area[0:256] = _block(0, seq0).encode()
    area[256:512] = _block(1, seq1).encode()
    return area


# ---------------------------------------------------------------------------
# Codecs: offsets exactly per the tables, and round trips
# ---------------------------------------------------------------------------

def test_index_block_offsets_cxl_9_13_2():
    raw = _block(1, 2, nslot=6, free=0b101101, flags=0x030201).encode()
    assert len(raw) == 256
    assert raw[0:16] == NSINDEX_SIGNATURE
    assert raw[0x10:0x13] == b"\x01\x02\x03"
    assert raw[0x13] == 1
    assert struct.unpack_from("<I", raw, 0x14)[0] == 2
    assert struct.unpack_from("<QQQQ", raw, 0x18) == (256, 256, 0, 512)
    assert struct.unpack_from("<IHH", raw, 0x38) == (6, 2, 1)
    assert raw[0x48] == 0b101101 and raw[0x49:] == bytes(256 - 0x49)
    (csum,) = struct.unpack_from("<Q", raw, 0x40)
    assert csum == slow_fletcher64(raw[:0x40] + bytes(8) + raw[0x48:])


def test_cxl_namespace_label_offsets_label_h():
    ns, region = uuid.UUID(int=0x1122), uuid.UUID(int=0x3344)
    label = NamespaceLabel(uuid=ns, name="pmem0", flags=8, nrange=1, position=3,
                           dpa=0x1000_0000, rawsize=0x2000_0000, slot=7, align=1,
                           region_uuid=region, abstraction_uuid=NVDIMM_DAX_GUID,
                           lbasize=512)
    raw = label.encode()
    assert len(raw) == 256
    assert raw[0:16] == CXL_NAMESPACE_TYPE_UUID.bytes
    assert raw[0x10:0x20] == ns.bytes
    assert raw[0x20:0x60] == b"pmem0".ljust(64, b"\0")
    assert struct.unpack_from("<IHHQQII", raw, 0x60) == (8, 1, 3, 0x1000_0000,
                                                          0x2000_0000, 7, 1)
    assert raw[0x80:0x90] == region.bytes
    assert raw[0x90:0xA0] == NVDIMM_DAX_GUID.bytes
    assert struct.unpack_from("<H", raw, 0xA0)[0] == 512
    assert raw[0xA2:0xF8] == bytes(0x56)
    assert struct.unpack_from("<Q", raw, 0xF8)[0] == slow_fletcher64(raw[:0xF8] + bytes(8))


def test_cxl_region_label_offsets_label_h():
    rg = uuid.UUID(int=0xABCDEF)
    raw = RegionLabel(uuid=rg, flags=8, nlabel=4, position=2, dpa=0x4000_0000,
                      rawsize=0x1000_0000, hpa=0x10_0000_0000, slot=9, ig=1,
                      align=1).encode()
    assert raw[0:16] == CXL_REGION_TYPE_UUID.bytes
    assert raw[0x10:0x20] == rg.bytes
    assert struct.unpack_from("<IHHQQQIII", raw, 0x20) == (
        8, 4, 2, 0x4000_0000, 0x1000_0000, 0x10_0000_0000, 9, 1, 1)
    assert raw[0x4C:0xF8] == bytes(0xAC)
    assert checksum_ok(raw, 0xF8)


def test_efi_label_offsets_v1_2_and_v1_1():
    ns = uuid.UUID(int=0x55)
    label = EfiNamespaceLabel(uuid=ns, name="x", flags=4, nlabel=2, position=1,
                              isetcookie=0xC00C1E, lbasize=4096, dpa=0x1000,
                              rawsize=0x2000, slot=5, align=3,
                              type_guid=NVDIMM_PFN_GUID, abstraction_guid=NVDIMM_DAX_GUID)
    raw = label.encode()
    assert raw[0:16] == ns.bytes and raw[0x10:0x12] == b"x\0"
    assert struct.unpack_from("<IHHQQQQIB", raw, 0x50) == (
        4, 2, 1, 0xC00C1E, 4096, 0x1000, 0x2000, 5, 3)
    assert raw[0x7D:0x80] == bytes(3)
    assert raw[0x80:0x90] == NVDIMM_PFN_GUID.bytes_le        # EFI GUID byte order
    assert raw[0x90:0xA0] == NVDIMM_DAX_GUID.bytes_le
    assert raw[0xA0:0xF8] == bytes(88)
    assert checksum_ok(raw, 0xF8)
    short = label.encode(128)
    assert short == raw[:128]                                  # v1.1: no checksum
    assert EfiNamespaceLabel.decode(short) == replace(
        label, type_guid=uuid.UUID(int=0), abstraction_guid=uuid.UUID(int=0), checksum=0)


u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
u64 = st.integers(0, 2**64 - 1)
names = st.lists(st.integers(1, 255), max_size=64).map(
    lambda b: bytes(b).decode("utf-8", "surrogateescape"))


@st.composite
def index_blocks(draw):
    size = draw(st.sampled_from([256, 512, 768]))
    return IndexBlock(sig=draw(st.binary(min_size=16, max_size=16)),
                      flags=draw(st.integers(0, 2**24 - 1)), labelsize=draw(u8),
                      seq=draw(u32), myoff=draw(u64), mysize=size, otheroff=draw(u64),
                      labeloff=draw(u64), nslot=draw(u32), major=draw(u16),
                      minor=draw(u16), free=draw(st.integers(0, 2**((size - 72) * 8) - 1)))


cxl_ns_labels = st.builds(
    NamespaceLabel, type_uuid=st.uuids(), uuid=st.uuids(), name=names, flags=u32,
    nrange=u16, position=u16, dpa=u64, rawsize=u64, slot=u32, align=u32,
    region_uuid=st.uuids(), abstraction_uuid=st.uuids(), lbasize=u16)
region_labels = st.builds(
    RegionLabel, type_uuid=st.uuids(), uuid=st.uuids(), flags=u32, nlabel=u16,
    position=u16, dpa=u64, rawsize=u64, hpa=u64, slot=u32, ig=u32, align=u32)
efi_labels = st.builds(
    EfiNamespaceLabel, uuid=st.uuids(), name=names, flags=u32, nlabel=u16,
    position=u16, isetcookie=u64, lbasize=u64, dpa=u64, rawsize=u64, slot=u32,
    align=u8, type_guid=st.uuids(), abstraction_guid=st.uuids())


@settings(max_examples=100, deadline=None)
@given(index_blocks())
def test_index_block_round_trip(blk):
    raw = blk.encode()
    assert len(raw) == blk.mysize
    dec = IndexBlock.decode(raw)
    assert replace(dec, checksum=blk.checksum) == blk
    assert dec.checksum == slow_fletcher64(raw[:0x40] + bytes(8) + raw[0x48:])
    assert dec.encode() == raw


@settings(max_examples=100, deadline=None)
@given(st.one_of(cxl_ns_labels, region_labels, efi_labels))
def test_label_round_trip(label):
    cls = type(label)
    raw = label.encode()
    assert len(raw) == 256
    dec = cls.decode(raw)
    assert replace(dec, checksum=label.checksum) == label
    assert dec.checksum == slow_fletcher64(raw[:0xF8] + bytes(8))
    assert dec.encode() == raw


@settings(max_examples=50, deadline=None)
@given(cxl_ns_labels, region_labels)
def test_decode_label_dispatches_on_type_uuid(ns, rg):
    ns = replace(ns, type_uuid=CXL_NAMESPACE_TYPE_UUID)
    rg = replace(rg, type_uuid=CXL_REGION_TYPE_UUID)
    assert isinstance(decode_label(ns.encode()), NamespaceLabel)
    assert isinstance(decode_label(rg.encode()), RegionLabel)
    assert isinstance(decode_label(ns.encode(), cxl=False), EfiNamespaceLabel)


def test_name_too_long_rejected():
    with pytest.raises(ValueError):
        NamespaceLabel(uuid=uuid.uuid4(), name="x" * 65).encode()


def test_helpers_label_id_and_claim_class():
    u = uuid.UUID("12345678-1234-5678-1234-567812345678")
    assert label_id(u) == "pmem-12345678-1234-5678-1234-567812345678"
    assert claim_class_of(NVDIMM_DAX_GUID) == "dax"
    assert claim_class_of(uuid.UUID(int=0)) == "none"
    assert claim_class_of(uuid.UUID(int=5)) == "unknown"


# ---------------------------------------------------------------------------
# Index validation (label.c __nd_label_validate)
# ---------------------------------------------------------------------------

def test_validate_index_accepts_good_blocks_and_probes_size():
    area = _two_block_area(3, 2)
    assert validate_index(area, 0, 256) and validate_index(area, 1, 256)
    assert not validate_index(area, 0, 128)      # labelsize field says 256
    assert probe_label_area(area) == (0, 256)
    assert probe_label_area(bytearray(128 * KiB)) == (-1, None)


@pytest.mark.parametrize("change", [
    dict(sig=b"NAMESPACE_INDEY\0"),
    dict(seq=4),                        # low bits 0
    dict(myoff=256),
    dict(otheroff=0),
    dict(labeloff=1024),
    dict(mysize=71),
    dict(mysize=257),
    dict(nslot=511),                    # 511*256 + 512 > 128 KiB
    dict(labelsize=0),                  # implies 128-byte labels
    dict(major=1, minor=1),             # v1.1 implies 128-byte labels
])
def test_validate_index_rejects_each_field_label_c(change):
    area = _two_block_area(3, 2)
    kw = {"seq": 3, **change}
    area[0:256] = _block(0, kw.pop("seq"), **kw).encode(256)   # checksum still correct
    assert not validate_index(area, 0, 256)
    assert validate_index(area, 1, 256)
    assert current_index(area, 256) == 1


def test_probe_finds_128_byte_block_first_label_c_nd_label_validate():
    # A block whose labelsize implies 128-byte labels validates in the kernel's
    # first probe (128), before the 256-byte block 1 is even considered.
    area = _two_block_area(3, 2)
    area[0:256] = _block(0, 3, labelsize=0).encode()
    assert probe_label_area(area) == (0, 128)
    assert current_index(area) == 0 and current_index(area, 256) == 1


def test_validate_index_v1_2_cxl_accepted():
    area = bytearray(128 * KiB)
    area[0:256] = _block(0, 1, major=1, minor=2).encode()
    assert validate_index(area, 0, 256)
    assert current_index(area) == 0


# ---------------------------------------------------------------------------
# LabelArea: init, labels, updates
# ---------------------------------------------------------------------------

def _ns(n: int, **kw) -> NamespaceLabel:
    return NamespaceLabel(uuid=uuid.UUID(int=n + 1), name=f"ns{n}", dpa=n << 28,
                          rawsize=1 << 28, **kw)


def test_init_kernel_image_128k():
    writes = []
    area = LabelArea(bytearray(128 * KiB), writer=lambda o, d: writes.append((o, len(d))))
    assert not area.is_initialized()
    area.init()
    assert writes == [(0, 256), (256, 256)]           # block 0 first, whole blocks
    b0, b1 = area.index_block(0), area.index_block(1)
    assert (b0.seq, b1.seq) == (3, 2)
    assert (b0.major, b0.minor, b0.labelsize, b0.nslot) == (2, 1, 1, 510)
    assert (b1.myoff, b1.otheroff, b1.labeloff) == (256, 0, 512)
    raw0 = bytes(area.data[0:256])
    assert raw0[0x48:0x48 + 63] == b"\xff" * 63 and raw0[0x48 + 63] == 0x3F  # pad bits 0
    assert raw0[0x48 + 64:] == bytes(256 - 0x48 - 64)
    assert area.current() == 0 and area.nfree() == 510 and area.labels() == []
    assert area.data[512:] == bytes(128 * KiB - 512)  # slots untouched


def test_init_ndctl_style_sets_padding_bits_and_v1_2():
    area = LabelArea(bytearray(128 * KiB))
    area.init(style="ndctl")
    raw0 = bytes(area.data[0:256])
    assert raw0[0x48:0x48 + 64] == b"\xff" * 64      # ALIGN(nslot, 64) bits set
    b0 = area.index_block(0)
    assert (b0.major, b0.minor) == (1, 2)
    assert area.current() == 0 and area.nfree() == 510
    slot = area.write_label(_ns(0))                   # a later kernel update
    assert slot == 0 and area.index_block(1).version == 201


@pytest.mark.parametrize("version", [LSA_VERSION_1_2, LSA_VERSION_2_1])
def test_write_label_protocol_order_and_seq(version):
    writes = []
    area = LabelArea(bytearray(128 * KiB), version=version)
    area.init()
    area.writer = lambda o, d: writes.append((o, len(d)))
    slot = area.write_label(_ns(0))
    assert slot == 0
    assert writes == [(0x200, 256), (256, 256)]       # label, then the next index
    assert area.current() == 1 and area.index_block(1).seq == next_seq(3) == 1
    assert (area.index_block(1).major, area.index_block(1).minor) == version
    writes.clear()
    assert area.write_label(_ns(1)) == 1
    assert writes == [(0x300, 256), (0, 256)]
    assert area.current() == 0 and area.index_block(0).seq == 2
    [(s0, l0), (s1, l1)] = area.labels()
    assert (s0, l0.uuid, l0.slot) == (0, uuid.UUID(int=1), 0)
    assert (s1, l1.name, l1.slot) == (1, "ns1", 1)
    assert area.nfree() == 508


def test_write_label_reap_replaces_atomically():
    area = LabelArea(bytearray(4 * KiB))
    area.init()
    first = area.write_label(_ns(0, flags=NSLABEL_FLAG_UPDATING))
    second = area.write_label(_ns(0), reap=lambda lab: lab.flags & NSLABEL_FLAG_UPDATING)
    assert (first, second) == (0, 1)
    [(slot, label)] = area.labels()
    assert slot == 1 and label.flags == 0
    assert area.write_label(_ns(2)) == 0               # reaped slot reused, lowest first


def test_delete_labels_commits_even_without_match():
    area = LabelArea(bytearray(4 * KiB))
    area.init()
    area.write_label(_ns(0))
    area.write_label(RegionLabel(uuid=uuid.UUID(int=99), nlabel=2))
    cur = area.current()
    assert area.delete_labels(lambda lab: False) == []
    assert area.current() == 1 - cur                     # seq bumped, del_labels does too
    assert area.delete_labels(lambda lab: isinstance(lab, NamespaceLabel)) == [0]
    [(slot, label)] = area.labels()
    assert slot == 1 and isinstance(label, RegionLabel) and label.nlabel == 2


def test_full_area_raises_without_writing():
    area = LabelArea(bytearray(1024))                    # 2 slots
    area.init()
    area.write_label(_ns(0))
    area.write_label(_ns(1))
    writes = []
    area.writer = lambda o, d: writes.append(o)
    with pytest.raises(LabelAreaFull):
        area.write_label(_ns(2))
    assert writes == []


def test_uninitialized_area():
    area = LabelArea(bytearray(4 * KiB))
    with pytest.raises(LabelAreaUninitialized):
        area.write_label(_ns(0))
    assert area.delete_labels(lambda lab: True) == []
    assert area.labels() == [] and area.nfree() == area.nslot == 14


def test_wrong_label_kind_rejected():
    area = LabelArea(bytearray(4 * KiB))
    area.init()
    with pytest.raises(TypeError):
        area.write_label(EfiNamespaceLabel(uuid=uuid.uuid4()))


@pytest.mark.parametrize("version,label_size", [(LSA_VERSION_1_1, 128), (LSA_VERSION_1_2, 256)])
def test_efi_area_round_trip(version, label_size):
    area = LabelArea(bytearray(8 * KiB), version=version, cxl=False, label_size=label_size)
    area.init()
    label = EfiNamespaceLabel(uuid=uuid.UUID(int=7), nlabel=1, dpa=0x1000, rawsize=0x1000)
    slot = area.write_label(label)
    reopened = LabelArea(area.data, cxl=False, version=version)   # probes label size
    assert reopened.label_size == label_size
    [(s, got)] = reopened.labels()
    assert s == slot and got.uuid == label.uuid and got.dpa == 0x1000


def test_memoryview_buffer_and_zero():
    backing = bytearray(4 * KiB)
    writes = []
    area = LabelArea(memoryview(backing), writer=lambda o, d: writes.append((o, len(d))))
    area.init()
    area.write_label(_ns(0))
    assert LabelArea(backing).labels() == area.labels() != []
    writes.clear()
    area.zero()
    assert writes == [(0, 4 * KiB)] and backing == bytearray(4 * KiB)
    assert not area.is_initialized()
    with pytest.raises(TypeError):
        LabelArea(bytes(4 * KiB))


def test_constructor_rejects_inconsistent_formats():
    with pytest.raises(ValueError):
        LabelArea(4 * KiB, cxl=True, label_size=128)
    with pytest.raises(ValueError):
        LabelArea(4 * KiB, cxl=False, version=LSA_VERSION_2_1)
    with pytest.raises(ValueError):
        LabelArea(4 * KiB, cxl=False, version=LSA_VERSION_1_1, label_size=256)
    with pytest.raises(LabelAreaTooSmall):
        LabelArea(512)


# ---------------------------------------------------------------------------
# Corruption handling
# ---------------------------------------------------------------------------

def test_corrupt_current_index_checksum_falls_back_to_other():
    area = LabelArea(bytearray(4 * KiB))
    area.init()
    area.write_label(_ns(0))
    before_second = area.labels()
    area.write_label(_ns(1))
    cur = area.current()
    assert len(area.labels()) == 2
    area.data[cur * 256 + 0x40] ^= 0x01                  # break the checksum
    assert area.current() == 1 - cur
    assert area.labels() == before_second


def test_corrupt_stale_index_keeps_current():
    area = LabelArea(bytearray(4 * KiB))
    area.init()
    area.write_label(_ns(0))
    cur = area.current()
    area.data[(1 - cur) * 256 + 0x60] ^= 0xFF            # inside the stale bitmap
    assert area.current() == cur and len(area.labels()) == 1


def test_label_with_mismatched_slot_field_ignored_label_c_slot_valid():
    area = LabelArea(bytearray(4 * KiB))
    area.init()
    slot = area.write_label(_ns(0))
    area.write_label(_ns(1))
    off = area.slot_offset(slot)
    moved = replace(NamespaceLabel.decode(area.raw_slot(slot)), slot=5).encode()
    area.data[off:off + 256] = moved                     # good checksum, wrong slot
    assert checksum_ok(moved, 0xF8) and not slot_valid(moved, slot)
    assert [s for s, _ in area.labels()] == [1]
    assert area.active_slots() == [0, 1]                 # still allocated in the bitmap


def test_label_with_bad_checksum_ignored():
    area = LabelArea(bytearray(4 * KiB))
    area.init()
    area.write_label(RegionLabel(uuid=uuid.UUID(int=3)))
    area.write_label(_ns(1))
    area.data[area.slot_offset(0) + 0x30] ^= 0x10         # region rawsize bit flip
    area.data[area.slot_offset(1) + 0x20] ^= 0x01         # namespace name byte
    assert area.labels() == []
    assert area.nfree() == 12


def test_writer_exception_models_power_loss():
    area = LabelArea(bytearray(4 * KiB))
    area.init()
    area.write_label(_ns(0))
    before = area.labels()
    calls = []

    def dying_writer(off, data):
        calls.append(off)
        if len(calls) == 2:                             # die on the index write
            raise RuntimeError("power lost")

    area.writer = dying_writer
    with pytest.raises(RuntimeError):
        area.write_label(_ns(1))
    area.writer = None
    assert area.labels() == before                       # label written, index not


# ---------------------------------------------------------------------------
# Crash consistency: every prefix of the write stream (and every torn write)
# decodes to the state before or after the operation
# ---------------------------------------------------------------------------

UUIDS = [uuid.UUID(int=0x1000 + i) for i in range(4)]

FORMATS = {
    "cxl-2.1": dict(cxl=True, version=LSA_VERSION_2_1, label_size=256),
    "cxl-1.2": dict(cxl=True, version=LSA_VERSION_1_2, label_size=256),
    "efi-1.2": dict(cxl=False, version=LSA_VERSION_1_2, label_size=256),
    "efi-1.1": dict(cxl=False, version=LSA_VERSION_1_1, label_size=128),
}

ops = st.lists(st.tuples(
    st.sampled_from(["ns", "ns-replace", "region", "delete", "init", "init-ndctl"]),
    st.integers(0, len(UUIDS) - 1),
    st.integers(0, 15)), min_size=1, max_size=10)


def _state(img: bytes, fmt: dict):
    area = LabelArea(bytearray(img), **fmt)
    return area.is_initialized(), area.labels()


def _make_label(kind: str, n: int, extra: int, cxl: bool):
    if not cxl:
        return EfiNamespaceLabel(uuid=UUIDS[n], nlabel=1, position=extra,
                                 dpa=extra << 12, rawsize=1 << 12)
    if kind == "region":
        return RegionLabel(uuid=UUIDS[n], nlabel=2, position=extra % 2, hpa=extra << 28)
    return NamespaceLabel(uuid=UUIDS[n], position=extra, dpa=extra << 28, rawsize=1 << 28)


def _apply(area: LabelArea, kind: str, n: int, extra: int) -> None:
    """Run one operation and check its visible effect (so the crash property
    cannot be satisfied by an update that silently does nothing)."""
    same_uuid = lambda lab: lab.uuid == UUIDS[n]     # noqa: E731
    if kind in ("init", "init-ndctl"):
        area.init(style="ndctl" if kind == "init-ndctl" else "kernel")
        assert area.is_initialized() and area.labels() == []
        assert area.nfree() == area.nslot
    elif not area.is_initialized():
        return
    elif kind == "delete":
        area.delete_labels(same_uuid)
        assert not [lab for _, lab in area.labels() if same_uuid(lab)]
    else:
        others = [(s, lab) for s, lab in area.labels() if not same_uuid(lab)]
        label = _make_label(kind, n, extra, area.cxl)
        try:
            slot = area.write_label(label, reap=same_uuid if kind == "ns-replace" else None)
        except LabelAreaFull:
            assert area.nfree() == 0
            return
        got = dict(area.labels())
        assert got[slot] == replace(label, slot=slot, checksum=got[slot].checksum)
        assert all(got.get(s) == lab for s, lab in others)
        if kind == "ns-replace":
            assert [s for s, lab in got.items() if same_uuid(lab)] == [slot]


@pytest.mark.parametrize("fmt_name", list(FORMATS))
@settings(max_examples=75, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=ops, pre_init=st.booleans())
def test_crash_after_any_write_prefix_is_before_or_after(fmt_name, ops, pre_init):
    fmt = FORMATS[fmt_name]
    area = LabelArea(bytearray(2 * KiB), **fmt)      # few slots: exercises "full"
    if pre_init:
        area.init()
    for kind, n, extra in ops:
        before_img = bytes(area.data)
        before = _state(before_img, fmt)
        writes: list[tuple[int, bytes]] = []
        area.writer = lambda o, d: writes.append((o, bytes(d)))
        _apply(area, kind, n, extra)
        area.writer = None
        after = _state(bytes(area.data), fmt)

        img = bytearray(before_img)
        for k, (off, data) in enumerate(writes):
            # torn write k: only a prefix of its bytes reached the media
            for cut in {1, 0x14, 0x18, 0x40, 0x48, 0x80, len(data) - 1}:
                if 0 < cut < len(data):
                    torn = bytearray(img)
                    torn[off:off + cut] = data[:cut]
                    assert _state(bytes(torn), fmt) in (before, after), (kind, k, cut)
            img[off:off + len(data)] = data
            got = _state(bytes(img), fmt)
            assert got in (before, after), (kind, k)
            # never two valid blocks that pick a block other than one of the states'
            if got[0]:
                assert current_index(img, fmt["label_size"]) >= 0
        assert bytes(img) == bytes(area.data)        # the writes are the whole change
