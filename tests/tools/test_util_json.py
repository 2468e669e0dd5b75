"""Tests for cxlemu.tools.common.util_json (util/json.[ch], util/size.c)."""

from __future__ import annotations

import re
from fractions import Fraction
from math import floor

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cxlemu.tools.common.jsonc import dumps
from cxlemu.tools.common.util_json import (
    SZ_1G, SZ_1K, SZ_1M, SZ_1T, ULLONG_MAX, UTIL_JSON_ALERT_CONFIG,
    UTIL_JSON_DAX, UTIL_JSON_DAX_DEVS, UTIL_JSON_DAX_MAPPINGS,
    UTIL_JSON_FIRMWARE, UTIL_JSON_HEALTH, UTIL_JSON_HUMAN, UTIL_JSON_IDLE,
    UTIL_JSON_MEDIA_ERRORS, UTIL_JSON_PARTITION, UTIL_JSON_TARGETS,
    UTIL_JSON_VERBOSE, HumanHex, HumanSize, UtilJsonFlags, hex_text,
    human_size_json, human_size_text, json_object_hex, json_object_size,
    parse_size64, parse_size64_units,
)

U64 = (1 << 64) - 1


def test_flag_values_util_json_h():
    assert [int(f) for f in (UTIL_JSON_IDLE, UTIL_JSON_MEDIA_ERRORS, UTIL_JSON_DAX,
                             UTIL_JSON_DAX_DEVS, UTIL_JSON_HUMAN, UTIL_JSON_VERBOSE)] == \
        [1, 2, 4, 8, 16, 32]
    assert UtilJsonFlags.CAPABILITIES == 64 and UtilJsonFlags.CONFIGURED == 128
    assert (UTIL_JSON_FIRMWARE, UTIL_JSON_DAX_MAPPINGS, UTIL_JSON_HEALTH,
            UTIL_JSON_TARGETS, UTIL_JSON_PARTITION, UTIL_JSON_ALERT_CONFIG) == \
        (1 << 8, 1 << 9, 1 << 10, 1 << 11, 1 << 12, 1 << 13)


# ---------------------------------------------------------------------------
# display_size
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("size,text", [
    (0, "0"),
    (4096, "4096"),
    (5000 * SZ_1K - 1, "5119999"),                       # last raw value
    (5000 * SZ_1K, '"4.88 MiB (5.12 MB)"'),             # first human value
    (256 * SZ_1M, '"256.00 MiB (268.44 MB)"'),          # cxl-list man page
    (SZ_1G, '"1024.00 MiB (1073.74 MB)"'),
    (2 * SZ_1G - 1, '"2048.00 MiB (2147.48 MB)"'),
    (2 * SZ_1G, '"2.00 GiB (2.15 GB)"'),
    (4 * SZ_1G, '"4.00 GiB (4.29 GB)"'),
    (2 * SZ_1T - 1, '"2048.00 GiB (2199.02 GB)"'),
    (2 * SZ_1T, '"2.00 TiB (2.20 TB)"'),
    (3 * SZ_1T + 5 * SZ_1G, '"3.00 TiB (3.30 TB)"'),
    # the C code computes bytes * 200 in 64-bit unsigned: wraps at 1 EiB
    (1 << 60, '"41943.04 TiB (1152921.50 TB)"'),
])
def test_display_size_vectors(size, text):
    assert human_size_json(size) == text
    assert dumps(json_object_size(size, UTIL_JSON_HUMAN)) == text
    assert dumps(json_object_size(size, True)) == text


def test_size_and_hex_plain_forms():
    assert json_object_size(4096, 0) == 4096 and type(json_object_size(4096)) is int
    # util_json_object_size() makes an int64 object
    assert dumps(json_object_size(1 << 63, 0)) == "-9223372036854775808"
    assert dumps(json_object_size(U64, False)) == "-1"
    # util_json_object_hex() makes a uint64 object
    assert dumps(json_object_hex(U64, 0)) == "18446744073709551615"
    assert isinstance(json_object_size(1, UTIL_JSON_HUMAN | UTIL_JSON_VERBOSE), HumanSize)
    assert not isinstance(json_object_size(1, UTIL_JSON_VERBOSE), HumanSize)


def test_hex_human_forms():
    assert dumps(json_object_hex(0, UTIL_JSON_HUMAN)) == '"0"'
    assert dumps(json_object_hex(255, UTIL_JSON_HUMAN)) == '"0xff"'
    assert dumps(json_object_hex(0x3F0000000, True)) == '"0x3f0000000"'
    assert dumps(json_object_hex(U64, UTIL_JSON_HUMAN)) == '"0xffffffffffffffff"'
    # v76.1 read the value back with json_object_get_int64(): clamps
    assert dumps(json_object_hex(U64, UTIL_JSON_HUMAN, compat_v76=True)) == \
        '"0x7fffffffffffffff"'
    assert hex_text(0) == "0" and hex_text(16) == "0x10"
    h = json_object_hex(0x10, True)
    assert isinstance(h, HumanHex) and h == 16 and h + 1 == 17 and repr(h) == "HumanHex(0x10)"


def _round_half_up(num: int, den: int) -> int:
    return floor(Fraction(num, den) + Fraction(1, 2))


_HUMAN_RE = re.compile(r'^"(\d+)\.(\d\d) (MiB|GiB|TiB) \((\d+)\.(\d\d) (MB|GB|TB)\)"$')


@settings(max_examples=400, deadline=None)
@given(st.integers(min_value=5000 * SZ_1K, max_value=U64 // 200))
def test_display_size_property_rounding(size):
    # without 64-bit wrap, the centi values are round-half-up of the exact
    # ratio; the unit pair depends on the 2 GiB / 2 TiB thresholds only
    m = _HUMAN_RE.match(human_size_json(size))
    assert m, human_size_json(size)
    iec_c = int(m.group(1)) * 100 + int(m.group(2))
    dec_c = int(m.group(4)) * 100 + int(m.group(5))
    if size < 2 * SZ_1G:
        units, unit, dec = ("MiB", "MB"), SZ_1M, 10**4
    elif size < 2 * SZ_1T:
        units, unit, dec = ("GiB", "GB"), SZ_1G, 10**7
    else:
        units, unit, dec = ("TiB", "TB"), SZ_1T, 10**10
    assert (m.group(3), m.group(6)) == units
    assert iec_c == _round_half_up(100 * size, unit)
    assert dec_c == _round_half_up(size, dec)
    assert human_size_text(size) == human_size_json(size)[1:-1]


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=5000 * SZ_1K - 1))
def test_display_size_property_raw_below_threshold(size):
    assert human_size_json(size) == str(size) == human_size_text(size)


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=U64))
def test_hex_property_matches_c_format(val):
    assert hex_text(val) == ("0" if val == 0 else "0x" + format(val, "x"))
    assert int(hex_text(val), 16) == val


# ---------------------------------------------------------------------------
# parse_size64 (util/size.c)
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("text,value", [
    ("256M", 256 * SZ_1M), ("256m", 256 * SZ_1M), ("1g", SZ_1G), ("2T", 2 * SZ_1T),
    ("4096", 4096), ("4k", 4 * SZ_1K), ("0x10k", 16 * SZ_1K), ("0X1f", 31),
    ("010", 8), ("  7", 7), ("+5m", 5 * SZ_1M),
    # quirks of strtoull + suffix handling
    ("", 0), ("k", 0), ("-2", U64 - 1), ("0", 0),
    # garbage -> ULLONG_MAX ("Invalid size")
    ("-1", ULLONG_MAX), ("08", ULLONG_MAX), ("1kb", ULLONG_MAX), ("1 ", ULLONG_MAX),
    ("1p", ULLONG_MAX), ("abc", ULLONG_MAX), ("0x", ULLONG_MAX), ("1.5G", ULLONG_MAX),
    ("99999999999999999999", ULLONG_MAX), ("16777216T", ULLONG_MAX),
    ("18014398509481984K", ULLONG_MAX), ("1\u212a", ULLONG_MAX),
    # a wrap the "val < check" test does not catch: (2**54 + 2**53) KiB
    (str((1 << 54) + (1 << 53)) + "K", 1 << 63),
])
def test_parse_size64_vectors(text, value):
    assert parse_size64(text) == value


def test_parse_size64_units_and_none():
    assert parse_size64(None) == 0
    assert parse_size64_units("3G") == (3 * SZ_1G, SZ_1G)
    assert parse_size64_units("3") == (3, 1)
    assert parse_size64_units("1x")[0] == ULLONG_MAX


_SUFFIXES = {"": 1, "k": SZ_1K, "K": SZ_1K, "m": SZ_1M, "M": SZ_1M,
             "g": SZ_1G, "G": SZ_1G, "t": SZ_1T, "T": SZ_1T}


@settings(max_examples=300, deadline=None)
@given(n=st.integers(min_value=0, max_value=(1 << 64) - 2),
       suffix=st.sampled_from(sorted(_SUFFIXES)),
       form=st.sampled_from(["dec", "hex", "oct"]))
def test_parse_size64_property_round_trip(n, suffix, form):
    text = {"dec": str(n), "hex": hex(n), "oct": "0" + format(n, "o")}[form] + suffix
    mult = _SUFFIXES[suffix]
    expected = n * mult
    if expected > U64:
        # wrapped products smaller than n are rejected, others wrap
        wrapped = expected & U64
        expected = ULLONG_MAX if wrapped < n else wrapped
    assert parse_size64(text) == expected
    if n * mult <= U64:
        assert parse_size64(text) == n * mult


@settings(max_examples=200, deadline=None)
@given(n=st.integers(min_value=0, max_value=1 << 40),
       junk=st.text(alphabet="abcdefhijlnopqrsuvwyzABZ .,-_/", min_size=1, max_size=4))
def test_parse_size64_property_trailing_garbage(n, junk):
    assert parse_size64(f"{n}{junk}") == ULLONG_MAX
    assert parse_size64(f"{n}K{junk}") == ULLONG_MAX
