"""Interleave encodings and capability rules (drivers/cxl/cxl.h, hdm.c, region.c)."""

from __future__ import annotations

import errno

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cxlemu.kernel.cxl.interleave import (
    CXL_DECODER_MAX_ENCODED_IG,
    CXL_DECODER_MIN_GRANULARITY,
    VALID_GRANULARITIES,
    VALID_WAYS,
    HdmCapability,
    InterleaveError,
    calc_interleave_pos,
    check_interleave_cap,
    check_last_peer,
    eig_to_granularity,
    eiw_to_ways,
    granularity_to_eig,
    interleave_address_bits,
    interleave_distance,
    port_decoder_params,
    validate_region_granularity,
    validate_region_ways,
    ways_to_eiw,
)

WAYS_TABLE = [(1, 0), (2, 1), (4, 2), (8, 3), (16, 4), (3, 8), (6, 9), (12, 10)]
GRAN_TABLE = [(256, 0), (512, 1), (1024, 2), (2048, 3), (4096, 4), (8192, 5), (16384, 6)]


def _raises(err: int):
    class _Ctx:
        def __enter__(self):
            self._cm = pytest.raises(InterleaveError)
            self.info = self._cm.__enter__()
            return self.info

        def __exit__(self, *exc):
            r = self._cm.__exit__(*exc)
            assert self.info.value.errno == err, (self.info.value.errno, str(self.info.value))
            return r

    return _Ctx()


# --- constants ---------------------------------------------------------------


def test_constants_cxl_h():
    assert CXL_DECODER_MIN_GRANULARITY == 256
    assert CXL_DECODER_MAX_ENCODED_IG == 6
    assert VALID_WAYS == (1, 2, 3, 4, 6, 8, 12, 16)
    assert VALID_GRANULARITIES == (256, 512, 1024, 2048, 4096, 8192, 16384)


def test_interleave_error_is_value_error_with_errno():
    e = InterleaveError(errno.EINVAL, "x")
    assert isinstance(e, ValueError)
    assert e.errno == errno.EINVAL
    assert str(e) == "x"


# --- encoding tables (cxl.h) -----------------------------------------------------


@pytest.mark.parametrize("ways,eiw", WAYS_TABLE)
def test_ways_to_eiw_table_cxl_h(ways, eiw):
    assert ways_to_eiw(ways) == eiw
    assert eiw_to_ways(eiw) == ways


@pytest.mark.parametrize("gran,eig", GRAN_TABLE)
def test_granularity_to_eig_table_cxl_h(gran, eig):
    assert granularity_to_eig(gran) == eig
    assert eig_to_granularity(eig) == gran


@pytest.mark.parametrize("ways", [0, 5, 7, 9, 10, 11, 13, 14, 15, 17, 18, 24, 32, 48, -1, -3])
def test_ways_to_eiw_rejects_invalid_cxl_h(ways):
    with _raises(errno.EINVAL):
        ways_to_eiw(ways)


@pytest.mark.parametrize("gran", [0, 1, 128, 255, 257, 300, 768, 1000, 3 * 256, 12288, 32768, 65536, -256])
def test_granularity_to_eig_rejects_invalid_cxl_h(gran):
    with _raises(errno.EINVAL):
        granularity_to_eig(gran)


@pytest.mark.parametrize("eiw", [5, 6, 7, 11, 12, 13, 14, 15, 16, 0xFF, -1])
def test_eiw_to_ways_rejects_invalid_cxl_h(eiw):
    with _raises(errno.EINVAL):
        eiw_to_ways(eiw)


@pytest.mark.parametrize("eig", [7, 8, 15, 0x10, 0xFFFF, -1])
def test_eig_to_granularity_rejects_invalid_cxl_h(eig):
    with _raises(errno.EINVAL):
        eig_to_granularity(eig)


@pytest.mark.parametrize("bad", [None, "4", 2.0, True])
def test_encoders_reject_non_integers_cxl_h(bad):
    for fn in (ways_to_eiw, eiw_to_ways, granularity_to_eig, eig_to_granularity):
        with _raises(errno.EINVAL):
            fn(bad)


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=-64, max_value=1 << 20))
def test_ways_round_trip_property_cxl_h(w):
    try:
        eiw = ways_to_eiw(w)
    except InterleaveError as e:
        assert e.errno == errno.EINVAL
        assert w not in VALID_WAYS
        return
    assert w in VALID_WAYS
    assert eiw_to_ways(eiw) == w


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=-1, max_value=1 << 20))
def test_granularity_round_trip_property_cxl_h(g):
    try:
        eig = granularity_to_eig(g)
    except InterleaveError as e:
        assert e.errno == errno.EINVAL
        assert g not in VALID_GRANULARITIES
        return
    assert g in VALID_GRANULARITIES
    assert eig_to_granularity(eig) == g


@settings(max_examples=100, deadline=None)
@given(st.integers(min_value=-4, max_value=300))
def test_encoded_round_trip_property_cxl_h(e):
    # eiw decode -> encode and eig decode -> encode are identities on their domains
    if e in (0, 1, 2, 3, 4, 8, 9, 10):
        assert ways_to_eiw(eiw_to_ways(e)) == e
    else:
        with _raises(errno.EINVAL):
            eiw_to_ways(e)
    if 0 <= e <= 6:
        assert granularity_to_eig(eig_to_granularity(e)) == e
    else:
        with _raises(errno.EINVAL):
            eig_to_granularity(e)


# --- HDM capability (hdm.c parse_hdm_decoder_caps) --------------------------------


def _bits(mask: int, upto: int = 20) -> set[int]:
    return {i for i in range(upto) if mask >> i & 1}


def test_hdm_capability_masks_hdm_c():
    base = HdmCapability(False, False, False, False)
    assert _bits(base.iw_cap_mask) == {1, 2, 4, 8}
    assert base.interleave_mask == 0
    c = HdmCapability(iw_3_6_12=True, iw_16=False, a11to8=True, a14to12=False)
    assert _bits(c.iw_cap_mask) == {1, 2, 3, 4, 6, 8, 12}
    assert c.interleave_mask == 0xF00
    c = HdmCapability(iw_3_6_12=False, iw_16=True, a11to8=False, a14to12=True)
    assert _bits(c.iw_cap_mask) == {1, 2, 4, 8, 16}
    assert c.interleave_mask == 0x7000
    full = HdmCapability(True, True, True, True)
    assert _bits(full.iw_cap_mask) == {1, 2, 3, 4, 6, 8, 12, 16}
    assert full.interleave_mask == 0x7F00


def test_hdm_capability_all_is_passthrough_hdm_c():
    assert HdmCapability.ALL.iw_cap_mask == (1 << 64) - 1
    assert HdmCapability.ALL.interleave_mask == 0xFFFFFFFF
    # x16 at 16K needs address bits 14..17, only a pass-through/mock allows it
    check_interleave_cap(HdmCapability.ALL, 16, 16384)
    with _raises(errno.ENXIO):
        check_interleave_cap(HdmCapability(True, True, True, True), 16, 16384)


@pytest.mark.parametrize("reg", [0, 0x100, 0x200, 0x800, 0x1000, 0x1B00, 0x1BFF, 0x0A5])
def test_hdm_capability_register_round_trip_cxl_h(reg):
    cap = HdmCapability.from_register(reg)
    assert cap.to_register_bits() == reg & 0x1B00
    assert cap.a11to8 == bool(reg & (1 << 8))
    assert cap.a14to12 == bool(reg & (1 << 9))
    assert cap.iw_3_6_12 == bool(reg & (1 << 11))
    assert cap.iw_16 == bool(reg & (1 << 12))


# --- check_interleave_cap (region.c, §1.9) ----------------------------------------

A11TO8_16WAY = HdmCapability(iw_3_6_12=False, iw_16=True, a11to8=True, a14to12=False)


def test_check_interleave_cap_x8_at_1k_rejected_with_a11to8_only_region_c():
    # needs bits 10..12, bit 12 is outside 11:8
    assert interleave_address_bits(8, 1024) == 0x1C00
    with _raises(errno.ENXIO):
        check_interleave_cap(A11TO8_16WAY, 8, 1024)


def test_check_interleave_cap_x4_at_4k_rejected_with_a11to8_only_region_c():
    assert interleave_address_bits(4, 4096) == 0x3000
    with _raises(errno.ENXIO):
        check_interleave_cap(A11TO8_16WAY, 4, 4096)


def test_check_interleave_cap_x16_at_256_accepted_when_16way_region_c():
    assert interleave_address_bits(16, 256) == 0xF00
    check_interleave_cap(A11TO8_16WAY, 16, 256)
    with _raises(errno.ENXIO):
        check_interleave_cap(HdmCapability(False, False, True, False), 16, 256)


def test_check_interleave_cap_x3_x6_x12_region_c():
    no36 = HdmCapability(False, False, True, True)
    for w in (3, 6, 12):
        with _raises(errno.ENXIO):
            check_interleave_cap(no36, w, 256)
    c = HdmCapability(True, False, True, False)
    # x3 uses no address bits at all: any granularity passes
    check_interleave_cap(c, 3, 16384)
    check_interleave_cap(HdmCapability(True, False, False, False), 3, 256)
    # x6 at 256 uses bit 8 only, x12 bits 8..9
    assert interleave_address_bits(6, 256) == 0x100
    assert interleave_address_bits(12, 256) == 0x300
    check_interleave_cap(c, 6, 256)
    check_interleave_cap(c, 12, 256)
    # x12 at 8K uses bits 13..14 -> needs A14to12
    assert interleave_address_bits(12, 8192) == 0x6000
    with _raises(errno.ENXIO):
        check_interleave_cap(c, 12, 8192)
    check_interleave_cap(HdmCapability(True, False, False, True), 12, 8192)


def test_check_interleave_cap_x1_needs_no_bits_region_c():
    check_interleave_cap(HdmCapability(False, False, False, False), 1, 16384)


def test_check_interleave_cap_unencodable_ways_is_einval_region_c():
    with _raises(errno.EINVAL):
        check_interleave_cap(HdmCapability.ALL, 5, 256)


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(VALID_WAYS),
    st.sampled_from(VALID_GRANULARITIES),
    st.booleans(),
    st.booleans(),
    st.booleans(),
    st.booleans(),
)
def test_check_interleave_cap_matches_independent_model_region_c(w, g, i3, i16, a118, a1412):
    cap = HdmCapability(i3, i16, a118, a1412)
    # independent model: the power-of-two part of w selects log2 bits starting at log2(g)
    pow2 = w if w & (w - 1) == 0 else w // 3
    nbits = pow2.bit_length() - 1
    lg = g.bit_length() - 1
    needed = set(range(lg, lg + nbits))
    have = (set(range(8, 12)) if a118 else set()) | (set(range(12, 15)) if a1412 else set())
    ways_ok = w in (1, 2, 4, 8) or (w in (3, 6, 12) and i3) or (w == 16 and i16)
    expect_ok = ways_ok and needed <= have
    try:
        check_interleave_cap(cap, w, g)
        ok = True
    except InterleaveError as e:
        assert e.errno == errno.ENXIO
        ok = False
    assert ok == expect_ok


# --- region rules relative to the root decoder (region.c, §1.3) --------------------


@pytest.mark.parametrize(
    "root,allowed",
    [
        (1, {1, 2, 4, 8, 16}),
        (2, {2, 4, 8, 16}),
        (3, {3, 6, 12}),
        (4, {4, 8, 16}),
        (6, {6, 12}),
        (8, {8, 16}),
        (12, {12}),
        (16, {16}),
    ],
)
def test_validate_region_ways_region_c(root, allowed):
    for w in range(0, 20):
        if w in allowed:
            validate_region_ways(w, root)
        else:
            with _raises(errno.EINVAL):
                validate_region_ways(w, root)


def test_validate_region_granularity_region_c():
    # x1 window: any encodable granularity
    for g in VALID_GRANULARITIES:
        validate_region_granularity(g, 1, 256)
    with _raises(errno.EINVAL):
        validate_region_granularity(128, 1, 256)
    # interleaved window: must equal HBIG exactly
    validate_region_granularity(4096, 2, 4096)
    for g in VALID_GRANULARITIES:
        if g != 4096:
            with _raises(errno.EINVAL):
                validate_region_granularity(g, 2, 4096)
    with _raises(errno.EINVAL):
        validate_region_granularity(3000, 4, 4096)


# --- switch / host bridge programming (region.c, §1.6) --------------------------


def test_port_decoder_params_worked_example_1_6_1_region_c():
    # root x2 HBIG 4K, region x8 @4K; HB uses 2 root ports, each a 2-way switch
    hb = port_decoder_params(2, 4096, 2, parent_is_root=True)
    assert hb == (2, 8192)
    sw = port_decoder_params(*hb, 2, parent_is_root=False)
    assert sw == (2, 16384)
    # root x4 HBIG 4K, region x16: HB ig 16K, switch ig would be 32K
    hb = port_decoder_params(4, 4096, 2, parent_is_root=True)
    assert hb == (2, 16384)
    with _raises(errno.EINVAL) as info:
        port_decoder_params(*hb, 2, parent_is_root=False)
    assert "invalid granularity calculation" in str(info.value)
    # root x8 HBIG 4K: HB ig 32K
    with _raises(errno.EINVAL):
        port_decoder_params(8, 4096, 2, parent_is_root=True)


def test_port_decoder_params_x3_root_uses_power_of_two_part_region_c():
    assert port_decoder_params(3, 256, 2, parent_is_root=True) == (2, 256)
    assert port_decoder_params(6, 256, 2, parent_is_root=True) == (2, 512)
    assert port_decoder_params(12, 1024, 1, parent_is_root=True) == (1, 4096)
    # the /3 only happens for the root: below it 256 * 3 is no granularity
    with _raises(errno.EINVAL) as info:
        port_decoder_params(3, 256, 1, parent_is_root=False)
    assert "invalid granularity calculation" in str(info.value)


@pytest.mark.parametrize("n", [0, 3, 5, 6, 7, 12])
def test_port_decoder_params_invalid_target_count_region_c(n):
    with _raises(errno.EINVAL) as info:
        port_decoder_params(2, 256, n, parent_is_root=True)
    assert "invalid target count" in str(info.value)


def test_port_decoder_params_overflow_targets_region_c():
    with _raises(errno.ENXIO):
        port_decoder_params(1, 256, 16, parent_is_root=True)
    assert port_decoder_params(1, 256, 8, parent_is_root=True) == (8, 256)
    with _raises(errno.ENXIO):
        port_decoder_params(1, 256, 4, parent_is_root=True, decoder_targets=2)
    assert port_decoder_params(1, 256, 2, parent_is_root=True, decoder_targets=2) == (2, 256)
    with _raises(errno.EINVAL):
        port_decoder_params(1, 256, 32, parent_is_root=True)


def test_port_decoder_params_invalid_parent_region_c():
    with _raises(errno.EINVAL):
        port_decoder_params(2, 300, 2, parent_is_root=False)
    with _raises(errno.EINVAL):
        port_decoder_params(5, 256, 2, parent_is_root=False)


def test_interleave_distance_and_check_last_peer_region_c():
    # root x2 -> HB x2 (root ports) -> switch x2 -> endpoints (8 ways).
    # At the HB, endpoints reusing RP0 are positions 0 and 4.
    d_hb = interleave_distance([2], 2)
    assert d_hb == 4
    d_sw = interleave_distance([2, 2], 2)
    assert d_sw == 8
    rp_of = {0: "rp0", 2: "rp1", 4: "rp0", 6: "rp1"}
    check_last_peer(4, d_hb, "rp0", rp_of.__getitem__)
    check_last_peer(6, d_hb, "rp1", rp_of.__getitem__)
    with _raises(errno.ENXIO) as info:
        check_last_peer(2, d_hb, "rp0", rp_of.__getitem__)
    assert "cannot host" in str(info.value)
    with _raises(errno.ENXIO) as info:
        check_last_peer(6, d_hb, "rp0", rp_of.__getitem__)
    assert "mismatched peer" in str(info.value)


def test_calc_interleave_pos_example_region_c():
    # root x2 [HB0, HB1], each HB x2 [RP0, RP1], one memdev per RP
    def pos(hb, rp):
        return calc_interleave_pos([(rp, 2), (hb, 2)])

    assert pos(0, 0) == 0
    assert pos(1, 0) == 1
    assert pos(0, 1) == 2
    assert pos(1, 1) == 3
    with _raises(errno.ENXIO):
        calc_interleave_pos([(2, 2)])
