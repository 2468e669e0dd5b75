"""Region HPA <-> DPA translation (drivers/cxl/core/region.c, drivers/cxl/acpi.c,
tools/testing/cxl/test/cxl_translate.c), scalar and vectorised."""

from __future__ import annotations

import errno
import itertools

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from cxlemu.kernel.cxl.interleave import VALID_GRANULARITIES, VALID_WAYS, InterleaveError
from cxlemu.kernel.cxl.translate import (
    U64_MAX,
    RegionGeometry,
    TranslateError,
    _popcount_swar,
    _xor_array,
    calculate_dpa_offset,
    calculate_hpa_offset,
    calculate_position,
    dpa_to_hpa_offset,
    hpa_in_expected_chunk,
    hpa_offset_to_dpa_offset,
    hpa_offset_to_position,
    popcount_u64,
    to_dpa_array,
    to_hpa_array,
    validate_translation_params,
    xor_transform,
    xormaps_needed,
)

SZ_256M = 256 << 20
# The xormaps the cxl_translate.c test module uses for its XOR vectors.
CXL_TRANSLATE_XORMAPS = (0x2020900, 0x4041200, 0x1010400, 0x800)


def assert_terr(err: int, fn, *args, **kw):
    with pytest.raises(TranslateError) as info:
        fn(*args, **kw)
    assert info.value.errno == err, str(info.value)
    return info.value


# --- worked vectors (§1.12) -----------------------------------------------------

WORKED = [
    # dpa_offset, pos, ways, eiw, gran, eig, hpa_offset
    (0x100, 1, 2, 1, 256, 0, 0x300),
    (0x100, 2, 3, 8, 256, 0, 0x500),
    (0x1234, 4, 6, 9, 512, 1, 0x7434),
    (0x40000008, 3, 4, 2, 4096, 4, 0x100003008),
    (0x10000000, 11, 12, 10, 256, 0, 0xC0000B00),
    (0x12345, 7, 8, 3, 1024, 2, 0x91F45),
]


@pytest.mark.parametrize("dpa,pos,ways,eiw,gran,eig,hpa", WORKED)
def test_worked_vectors_region_c(dpa, pos, ways, eiw, gran, eig, hpa):
    assert dpa_to_hpa_offset(dpa, pos, ways, gran) == hpa
    assert calculate_hpa_offset(dpa, pos, eiw, eig) == hpa
    assert hpa_offset_to_dpa_offset(hpa, ways, gran) == dpa
    assert hpa_offset_to_position(hpa, ways, gran) == pos
    assert calculate_dpa_offset(hpa, eiw, eig) == dpa
    assert calculate_position(hpa, eiw, eig) == pos
    # and the closed form chunk * W + pos
    assert hpa == ((dpa // gran) * ways + pos) * gran + dpa % gran


@pytest.mark.parametrize("dpa,pos,ways,eiw,gran,eig,hpa", WORKED)
def test_worked_vectors_through_region_geometry_region_c(dpa, pos, ways, eiw, gran, eig, hpa):
    start = 0x40_0000_0000
    size = ways * SZ_256M * 8
    geom = RegionGeometry(start=start, size=size, ways=ways, granularity=gran)
    assert geom.to_hpa(pos, dpa) == start + hpa
    assert geom.to_dpa(start + hpa) == (pos, dpa)
    p, d = to_dpa_array(geom, np.array([start + hpa], dtype=np.uint64))
    assert (int(p[0]), int(d[0])) == (pos, dpa)
    assert int(to_hpa_array(geom, np.array([pos]), np.array([dpa], dtype=np.uint64))[0]) == start + hpa


# --- XOR vectors (§1.12, acpi.c cxl_xor_hpa_to_spa) -------------------------------


@pytest.mark.parametrize(
    "pos,modulo,xor", [(0, 0x800, 0x900), (1, 0x900, 0x800), (2, 0xA00, 0xB00), (3, 0xB00, 0xA00)]
)
def test_xor_vectors_x4_acpi_c(pos, modulo, xor):
    maps = (0x2020900, 0x4041200)
    off = dpa_to_hpa_offset(0x200, pos, 4, 256)
    assert off == modulo
    assert xor_transform(off, maps) == xor
    # self-inverse: undo gives the modulo offset back, which decodes to (pos, dpa)
    back = xor_transform(xor, maps)
    assert back == modulo
    assert hpa_offset_to_position(back, 4, 256) == pos
    assert hpa_offset_to_dpa_offset(back, 4, 256) == 0x200
    # region level (start has no bit inside the maps, so absolute == offset)
    start = 0x1_0000_0000
    geom = RegionGeometry(start, 4 * SZ_256M, 4, 256, "xor", maps, hb_ways=4)
    assert geom.to_hpa(pos, 0x200) == start + xor
    assert geom.to_dpa(start + xor) == (pos, 0x200)


@pytest.mark.parametrize("pos,expect", [(0, 0x4100), (1, 0x4000)])
def test_xor_vectors_x2_cxl_test_cxims_acpi_c(pos, expect):
    maps = (0x404100,)
    assert xor_transform(dpa_to_hpa_offset(0x2000, pos, 2, 256), maps) == expect
    start = 0x1_0000_0000
    geom = RegionGeometry(start, 2 * SZ_256M, 2, 256, "xor", maps, hb_ways=2)
    assert geom.to_hpa(pos, 0x2000) == start + expect
    assert geom.to_dpa(start + expect) == (pos, 0x2000)
    p, d = to_dpa_array(geom, np.array([start + expect], dtype=np.uint64))
    assert (int(p[0]), int(d[0])) == (pos, 0x2000)


def test_xor_applies_to_absolute_hpa_le_6_18_region_c():
    # A map that includes a bit of the region base (bit 28) shows the choice:
    # with the absolute-address transform, offset 0 of pos 0 is not at start.
    maps = (0x1000_0100,)  # lowest bit 8, also bit 28
    start = 0x1000_0000  # bit 28 set
    geom = RegionGeometry(start, 2 * SZ_256M, 2, 256, "xor", maps, hb_ways=2)
    assert geom.to_hpa(0, 0) == start + 0x100
    assert geom.to_hpa(1, 0) == start
    assert geom.to_dpa(start) == (1, 0)
    # offset-based XOR (6.19 test-module style) would have put pos 0 at start
    assert xor_transform(dpa_to_hpa_offset(0, 0, 2, 256), maps) == 0


def test_xor_transform_skips_zero_maps_acpi_c():
    assert xor_transform(0x800, (0, 0x2020900, 0)) == 0x900
    assert xor_transform(0x800, ()) == 0x800
    assert xor_transform(0x800, (0,)) == 0x800


@pytest.mark.parametrize("hb", [1, 3])
def test_xor_transform_noop_for_hb_ways_1_and_3_acpi_c(hb):
    assert xor_transform(0x800, (0x2020900,), hb_ways=hb) == 0x800
    assert xor_transform(0x800, (0x2020900,), hb_ways=2) == 0x900


@pytest.mark.parametrize(
    "hb,n", [(1, 0), (2, 1), (3, 0), (4, 2), (6, 1), (8, 3), (12, 2), (16, 4)]
)
def test_xormaps_needed_cxl_translate_c(hb, n):
    assert xormaps_needed(hb) == n


@pytest.mark.parametrize("hb", [0, 5, 7, 32])
def test_xormaps_needed_rejects_invalid_ways_acpi_c(hb):
    with pytest.raises(InterleaveError):
        xormaps_needed(hb)


@pytest.mark.parametrize("hb", [2, 4, 8, 16, 6, 12])
def test_cxl_translate_c_xormap_set_round_trips(hb):
    maps = CXL_TRANSLATE_XORMAPS[: xormaps_needed(hb)]
    for ways in [w for w in VALID_WAYS if w % hb == 0 and ((w // hb) & (w // hb - 1)) == 0]:
        for pos in range(ways):
            for dpa in (0, 0x200, 0x12345, 0x40000008):
                h = xor_transform(dpa_to_hpa_offset(dpa, pos, ways, 256), maps)
                back = xor_transform(h, maps)
                assert hpa_offset_to_dpa_offset(back, ways, 256) == dpa
                assert hpa_offset_to_position(back, ways, 256) == pos


# --- cxl_translate.c invalid-parameter table -----------------------------------------

PARAM_TESTS = [
    (0x0, 0, 0, True), (0x0, 3, 0, True), (0x0, 6, 0, True),
    (0x1, 0, 0, True), (0x1, 3, 1, True), (0x1, 6, 1, True),
    (0x2, 0, 0, True), (0x2, 3, 3, True), (0x2, 6, 3, True),
    (0x3, 0, 0, True), (0x3, 3, 7, True), (0x3, 6, 7, True),
    (0x4, 0, 0, True), (0x4, 3, 15, True), (0x4, 6, 15, True),
    (0x8, 0, 0, True), (0x8, 3, 2, True), (0x8, 6, 2, True),
    (0x9, 0, 0, True), (0x9, 3, 5, True), (0x9, 6, 5, True),
    (0xA, 0, 0, True), (0xA, 3, 11, True), (0xA, 6, 11, True),
    (0x5, 0, 0, False), (0x7, 0, 0, False), (0xB, 0, 0, False), (0xFF, 0, 0, False),
    (0x1, 7, 0, False), (0x2, 0x10, 0, False), (0x3, 0xFFFF, 0, False),
    (0x1, 0, -1, False),
    (0x1, 0, 2, False), (0x2, 0, 4, False), (0x3, 0, 8, False), (0x4, 0, 16, False),
    (0x8, 0, 3, False), (0x9, 0, 6, False), (0xA, 0, 12, False),
]


@pytest.mark.parametrize("eiw,eig,pos,valid", PARAM_TESTS)
def test_validate_translation_params_table_cxl_translate_c(eiw, eig, pos, valid):
    if valid:
        validate_translation_params(eiw, eig, pos)
        h = calculate_hpa_offset(0x1000, pos, eiw, eig)
        assert calculate_position(h, eiw, eig) == pos
        assert calculate_dpa_offset(h, eiw, eig) == 0x1000
    else:
        assert_terr(errno.EINVAL, validate_translation_params, eiw, eig, pos)
        assert_terr(errno.EINVAL, calculate_hpa_offset, 0x1000, pos, eiw, eig)
        if pos == 0:
            # bad eiw/eig also rejected on the HPA->DPA side
            assert_terr(errno.EINVAL, calculate_dpa_offset, 0x1000, eiw, eig)
            assert_terr(errno.EINVAL, calculate_position, 0x1000, eiw, eig)


@pytest.mark.parametrize("ways", VALID_WAYS)
def test_dpa_to_hpa_offset_rejects_pos_out_of_range_cxl_translate_c(ways):
    assert_terr(errno.EINVAL, dpa_to_hpa_offset, 0, -1, ways, 256)
    assert_terr(errno.EINVAL, dpa_to_hpa_offset, 0, ways, ways, 256)
    dpa_to_hpa_offset(0, ways - 1, ways, 256)


@pytest.mark.parametrize("ways,gran", [(5, 256), (0, 256), (2, 128), (2, 32768), (2, 300)])
def test_ways_level_functions_reject_bad_params_cxl_h(ways, gran):
    assert_terr(errno.EINVAL, dpa_to_hpa_offset, 0, 0, ways, gran)
    assert_terr(errno.EINVAL, hpa_offset_to_dpa_offset, 0, ways, gran)
    assert_terr(errno.EINVAL, hpa_offset_to_position, 0, ways, gran)


def test_dpa_bits_above_51_are_dropped_region_c():
    # GENMASK_ULL(51, eig + 8) keeps only DPA bits 51..L when rebuilding the HPA
    # upper 0x100 << 1 | pos 1 << 8 | low 0xFF
    assert calculate_hpa_offset((1 << 52) | 0x1FF, 1, 1, 0) == 0x3FF
    assert dpa_to_hpa_offset((1 << 52) | 0x300, 0, 2, 256) == 0x600
    assert dpa_to_hpa_offset((1 << 60) | 0x300, 1, 3, 256) == (3 * 3 + 1) * 256
    assert_terr(errno.EINVAL, dpa_to_hpa_offset, -1, 0, 2, 256)
    assert_terr(errno.EINVAL, dpa_to_hpa_offset, 1 << 64, 0, 2, 256)


def test_hpa_in_expected_chunk_region_c():
    assert hpa_in_expected_chunk(0x100, 1, 2, 256)
    assert not hpa_in_expected_chunk(0x100, 0, 2, 256)
    assert hpa_in_expected_chunk(0x2FF, 2, 3, 256)
    assert not hpa_in_expected_chunk(0x300, 2, 3, 256)
    assert hpa_in_expected_chunk(0x300, 0, 3, 256)


# --- RegionGeometry checks -----------------------------------------------------------


def test_region_geometry_rejects_outside_region_region_c():
    start = 0x1_0000_0000
    g = RegionGeometry(start, 2 * SZ_256M, 2, 4096)
    assert g.end == start + 2 * SZ_256M - 1
    assert g.dpa_size == SZ_256M
    assert_terr(errno.ENXIO, g.to_dpa, start - 1)
    assert_terr(errno.ENXIO, g.to_dpa, start + 2 * SZ_256M)
    assert g.to_dpa(start + 2 * SZ_256M - 1) == (1, SZ_256M - 1)
    assert g.to_hpa(1, SZ_256M - 1) == start + 2 * SZ_256M - 1
    e = assert_terr(errno.ENXIO, g.to_hpa, 0, SZ_256M)
    assert "not in region" in str(e)
    assert_terr(errno.EINVAL, g.to_hpa, 2, 0)
    assert_terr(errno.EINVAL, g.to_hpa, -1, 0)
    assert_terr(errno.EINVAL, g.to_dpa, -5)


@pytest.mark.parametrize(
    "kw",
    [
        dict(ways=5),
        dict(granularity=128),
        dict(size=0),
        dict(size=SZ_256M * 2 + 256),
        dict(arithmetic="mod"),
        dict(arithmetic="xor", hb_ways=2, xormaps=()),
        dict(arithmetic="xor", hb_ways=4, xormaps=(0x100,)),
        dict(arithmetic="xor", hb_ways=8, xormaps=(0x100, 0x200, 0x400)),  # ways 2 under x8
        dict(hb_ways=5),
        dict(start=-1),
        dict(start=U64_MAX, size=SZ_256M * 2),
    ],
)
def test_region_geometry_constructor_validation(kw):
    base = dict(start=0x1_0000_0000, size=SZ_256M * 2, ways=2, granularity=256)
    base.update(kw)
    with pytest.raises(TranslateError):
        RegionGeometry(**base)


def test_region_geometry_uses_only_needed_xormaps_acpi_c():
    # acpi.c copies only log2(hbiw) maps; extra (even nonsense) maps are ignored
    g = RegionGeometry(0, 2 * SZ_256M, 2, 256, "xor", (0x404100, 0x1, 0xFFFF), hb_ways=2)
    assert g.active_xormaps == (0x404100,)
    assert g.to_hpa(0, 0x2000) == 0x4100
    g = RegionGeometry(0, 3 * SZ_256M, 3, 256, "xor", (0x404100,), hb_ways=3)
    assert g.active_xormaps == ()
    assert RegionGeometry(0, 2 * SZ_256M, 2, 256, "modulo", (0x404100,), hb_ways=2).active_xormaps == ()


# --- exhaustive: every ways x granularity x arithmetic, every granule ---------------


def _hb_options(ways: int) -> list[int]:
    out = []
    for hb in (2, 4, 8, 16, 6, 12):
        q, r = divmod(ways, hb)
        if r == 0 and q & (q - 1) == 0 and q > 0:
            out.append(hb)
    return out


def _variants(ways: int, gran: int):
    """(arithmetic, hb_ways, xormaps) variants for a region of this shape."""
    yield ("modulo", 1, ())
    # no-op XOR windows (x1 / x3 roots)
    if ways in (1, 2, 4, 8, 16):
        yield ("xor", 1, ())
    if ways in (3, 6, 12):
        yield ("xor", 3, ())
    shift = gran.bit_length() - 1 - 8
    for hb in _hb_options(ways):
        n = xormaps_needed(hb)
        yield ("xor", hb, tuple(m << shift for m in CXL_TRANSLATE_XORMAPS[:n]))


EXHAUSTIVE = [
    (w, g, a, hb, maps)
    for w, g in itertools.product(VALID_WAYS, VALID_GRANULARITIES)
    for a, hb, maps in _variants(w, g)
]


def test_exhaustive_cases_cover_every_ways_granularity_and_hb():
    combos = {(w, g) for w, g, *_ in EXHAUSTIVE}
    assert combos == set(itertools.product(VALID_WAYS, VALID_GRANULARITIES))
    hbs = {hb for *_, hb, maps in EXHAUSTIVE if maps}
    assert hbs == {2, 4, 6, 8, 12, 16}


@pytest.mark.parametrize("ways,gran,arith,hb,maps", EXHAUSTIVE)
def test_every_granule_maps_bijectively(ways, gran, arith, hb, maps):
    k = 8  # granules per device
    start = 0x2_3000_0000  # 256 MiB aligned, bits 28, 29, 33 set
    geom = RegionGeometry(start, ways * gran * k, ways, gran, arith, maps, hb_ways=hb)
    rng = np.random.default_rng(ways * 100003 + gran)
    n = ways * k
    intra = rng.integers(0, gran, size=n, dtype=np.uint64)
    hpa = np.uint64(start) + np.arange(n, dtype=np.uint64) * np.uint64(gran) + intra
    pos, dpa = to_dpa_array(geom, hpa)
    assert pos.min() >= 0 and pos.max() < ways
    assert dpa.max() < geom.dpa_size
    # low bits survive both modulo and XOR decode
    assert np.array_equal(dpa % np.uint64(gran), intra)
    # bijection: (pos, granule) pairs unique and each device gets 0..k-1 once
    keys = pos.astype(np.uint64) * np.uint64(k) + dpa // np.uint64(gran)
    assert np.array_equal(np.sort(keys), np.arange(n, dtype=np.uint64))
    # back again, vectorised and scalar
    assert np.array_equal(to_hpa_array(geom, pos, dpa), hpa)
    for h, p, d in zip(hpa.tolist(), pos.tolist(), dpa.tolist()):
        assert geom.to_dpa(h) == (p, d)
        assert geom.to_hpa(p, d) == h
    # whole region swept by to_hpa over every (pos, granule)
    pp, cc = np.meshgrid(np.arange(ways), np.arange(k), indexing="ij")
    all_hpa = to_hpa_array(geom, pp.ravel(), cc.ravel().astype(np.uint64) * np.uint64(gran))
    assert np.array_equal(
        np.sort(all_hpa), np.uint64(start) + np.arange(n, dtype=np.uint64) * np.uint64(gran)
    )
    if arith == "modulo" or hb in (1, 3):
        # plain modulo placement: pos p owns granule p of every stripe
        assert np.array_equal(pos, np.arange(n) % ways)


# --- hypothesis: random geometries over all legal parameters --------------------------


@st.composite
def xormap_sets(draw, lg: int, hb: int):
    n = xormaps_needed(hb)
    lows = draw(st.permutations(list(range(lg, lg + n))))
    field = (1 << (lg + n)) - 1
    maps = []
    for low in lows:
        extra = draw(st.integers(0, (1 << 52) - 1)) & ~field
        maps.append((1 << low) | extra)
    # trailing maps beyond the needed count must be ignored
    maps += draw(st.lists(st.integers(0, U64_MAX), max_size=2))
    return tuple(maps)


def _arith_options(ways: int) -> list[tuple[str, int]]:
    opts = [("modulo", 1)]
    opts += [("xor", hb) for hb in _hb_options(ways)]
    opts += [("xor", 1 if ways & (ways - 1) == 0 else 3)]  # XOR window that is a no-op
    return opts


@st.composite
def geometries(draw, ways=None, gran=None, arith=None, hb=None):
    if ways is None:
        ways = draw(st.sampled_from(VALID_WAYS))
    if gran is None:
        gran = draw(st.sampled_from(VALID_GRANULARITIES))
    if arith is None:
        arith, hb = draw(st.sampled_from(_arith_options(ways)))
    lg = gran.bit_length() - 1
    maps = draw(xormap_sets(lg, hb)) if arith == "xor" and hb not in (1, 3) else ()
    start = draw(st.integers(0, (1 << 22) - 1)) * SZ_256M
    size = ways * SZ_256M * draw(st.integers(1, 64))
    return RegionGeometry(start, size, ways, gran, arith, maps, hb_ways=hb)


def _check_round_trips(geom: RegionGeometry, data, n: int) -> None:
    pos = np.array(data.draw(st.lists(st.integers(0, geom.ways - 1), min_size=n, max_size=n)))
    dpa = np.array(
        data.draw(st.lists(st.integers(0, geom.dpa_size - 1), min_size=n, max_size=n)),
        dtype=np.uint64,
    )
    # dpa -> hpa -> dpa
    hpa = to_hpa_array(geom, pos, dpa)
    p2, d2 = to_dpa_array(geom, hpa)
    assert np.array_equal(p2, pos) and np.array_equal(d2, dpa)
    for p, d, h in zip(pos.tolist(), dpa.tolist(), hpa.tolist()):
        assert geom.to_hpa(p, d) == h
        assert geom.to_dpa(h) == (p, d)
    # hpa -> (pos, dpa) -> hpa
    hs = np.array(
        data.draw(st.lists(st.integers(geom.start, geom.end), min_size=n, max_size=n)),
        dtype=np.uint64,
    )
    p3, d3 = to_dpa_array(geom, hs)
    assert np.array_equal(to_hpa_array(geom, p3, d3), hs)
    for h, p, d in zip(hs.tolist(), p3.tolist(), d3.tolist()):
        assert geom.to_dpa(h) == (p, d)
        assert geom.to_hpa(p, d) == h
        assert 0 <= d < geom.dpa_size


EVERY_SHAPE = [
    (w, g, a, hb)
    for w, g in itertools.product(VALID_WAYS, VALID_GRANULARITIES)
    for a, hb in _arith_options(w)
]


@pytest.mark.parametrize("ways,gran,arith,hb", EVERY_SHAPE)
@settings(max_examples=4, deadline=None)
@given(data=st.data())
def test_round_trips_every_shape_random_maps(ways, gran, arith, hb, data):
    geom = data.draw(geometries(ways, gran, arith, hb))
    _check_round_trips(geom, data, 8)


@settings(max_examples=120, deadline=None)
@given(geometries(), st.data())
def test_round_trips_random_geometry_scalar_and_vector(geom, data):
    _check_round_trips(geom, data, 24)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from((0, 1, 2, 3, 4, 8, 9, 10)),
    st.sampled_from(range(7)),
    st.integers(0, (1 << 52) - 1),
    st.data(),
)
def test_offset_round_trip_all_eiw_eig_cxl_translate_c(eiw, eig, dpa, data):
    ways = (1 << eiw) if eiw < 8 else 3 << (eiw - 8)
    pos = data.draw(st.integers(0, ways - 1))
    h = calculate_hpa_offset(dpa, pos, eiw, eig)
    assert calculate_dpa_offset(h, eiw, eig) == dpa
    assert calculate_position(h, eiw, eig) == pos
    g = 256 << eig
    assert h == ((dpa // g) * ways + pos) * g + dpa % g


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from((0, 1, 2, 3, 4, 8, 9, 10)),
    st.sampled_from(range(7)),
    st.integers(0, (1 << 56) - 1),
)
def test_hpa_offset_decode_then_encode_cxl_translate_c(eiw, eig, h):
    # every HPA offset whose DPA fits in 52 bits re-encodes to itself
    ways = (1 << eiw) if eiw < 8 else 3 << (eiw - 8)
    d = calculate_dpa_offset(h, eiw, eig)
    p = calculate_position(h, eiw, eig)
    assume(d < (1 << 52))
    assert 0 <= p < ways
    assert calculate_hpa_offset(d, p, eiw, eig) == h


@st.composite
def commuting_maps(draw):
    n = draw(st.integers(1, 4))
    lows = draw(st.lists(st.integers(0, 60), min_size=n, max_size=n, unique=True))
    forbidden = 0
    for b in lows:
        forbidden |= 1 << b
    maps = []
    for b in lows:
        extra = draw(st.integers(0, U64_MAX)) & ~forbidden & ~((1 << (b + 1)) - 1)
        maps.append((1 << b) | extra)
    return maps


@settings(max_examples=300, deadline=None)
@given(commuting_maps(), st.integers(0, U64_MAX))
def test_xor_transform_is_self_inverse_acpi_c(maps, hpa):
    once = xor_transform(hpa, maps)
    assert xor_transform(once, maps) == hpa
    # only the maps' lowest bits may change
    low_bits = 0
    for m in maps:
        low_bits |= m & -m
    assert (once ^ hpa) & ~low_bits == 0
    # the vectorised transform agrees bit for bit
    assert int(_xor_array(np.array([hpa], dtype=np.uint64), maps)[0]) == once


# --- vectorised specifics -------------------------------------------------------------


def test_vector_errors_match_scalar():
    start = 0x1_0000_0000
    g = RegionGeometry(start, 4 * SZ_256M, 4, 256)
    with pytest.raises(TranslateError) as info:
        to_dpa_array(g, np.array([start, start - 1], dtype=np.uint64))
    assert info.value.errno == errno.ENXIO and hex(start - 1) in str(info.value)
    with pytest.raises(TranslateError) as info:
        to_dpa_array(g, np.array([start + 4 * SZ_256M], dtype=np.uint64))
    assert info.value.errno == errno.ENXIO
    with pytest.raises(TranslateError) as info:
        to_hpa_array(g, np.array([0, 4]), np.array([0, 0], dtype=np.uint64))
    assert info.value.errno == errno.EINVAL
    with pytest.raises(TranslateError) as info:
        to_hpa_array(g, np.array([0]), np.array([SZ_256M], dtype=np.uint64))
    assert info.value.errno == errno.ENXIO
    with pytest.raises(TranslateError):
        to_dpa_array(g, np.array([-1, 5]))
    with pytest.raises(TranslateError):
        to_dpa_array(g, np.array([1.5]))
    with pytest.raises(TranslateError):
        to_hpa_array(g, np.array([0.0]), np.array([0], dtype=np.uint64))


def test_vector_accepts_signed_and_broadcasts():
    start = 0x1_0000_0000
    g = RegionGeometry(start, 3 * SZ_256M, 3, 512)
    hpa = to_hpa_array(g, 2, np.arange(0, 4096, 512, dtype=np.int64))
    assert hpa.dtype == np.uint64
    assert hpa.tolist() == [g.to_hpa(2, d) for d in range(0, 4096, 512)]
    pos, dpa = to_dpa_array(g, [start, start + 512, start + 1024, start + 1536])
    assert pos.tolist() == [0, 1, 2, 0]
    assert dpa.tolist() == [0, 0, 0, 512]
    assert pos.dtype == np.int64 and dpa.dtype == np.uint64


def test_vector_shape_is_preserved():
    g = RegionGeometry(0, 2 * SZ_256M, 2, 256)
    h = np.arange(12, dtype=np.uint64).reshape(3, 4) * np.uint64(0x180)
    pos, dpa = to_dpa_array(g, h)
    assert pos.shape == (3, 4) and dpa.shape == (3, 4)
    assert np.array_equal(to_hpa_array(g, pos, dpa), h)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(0, U64_MAX), min_size=1, max_size=64))
def test_popcount_paths_agree(vals):
    a = np.array(vals, dtype=np.uint64)
    expect = [v.bit_count() for v in vals]
    assert popcount_u64(a).tolist() == expect
    assert _popcount_swar(a).tolist() == expect


def test_vector_path_has_no_per_element_python_loop():
    # a million addresses decode in well under a second only if vectorised
    import time

    g = RegionGeometry(0x10_0000_0000, 16 * SZ_256M, 16, 256, "xor", CXL_TRANSLATE_XORMAPS, hb_ways=16)
    h = np.uint64(g.start) + np.arange(1_000_000, dtype=np.uint64) * np.uint64(4099)
    t = time.perf_counter()
    pos, dpa = to_dpa_array(g, h)
    back = to_hpa_array(g, pos, dpa)
    assert time.perf_counter() - t < 2.0
    assert np.array_equal(back, h)
