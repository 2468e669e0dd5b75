"""Tests for cxlemu.tools.common.jsonc (json-c 0.16 serialisation and
util/json.c util_display_json_array)."""

from __future__ import annotations

import ctypes
import ctypes.util
import math
import shutil
import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cxlemu.tools.common import jsonc
from cxlemu.tools.common.jsonc import (
    JSON_C_TO_STRING_NOSLASHESCAPE, JSON_C_TO_STRING_NOZERO,
    JSON_C_TO_STRING_PLAIN, JSON_C_TO_STRING_PRETTY,
    JSON_C_TO_STRING_PRETTY_TAB, JSON_C_TO_STRING_SPACED, RawJSON, as_int64,
    as_uint64, display_json, dumps, escape_str,
)
from cxlemu.tools.common.util_json import (
    UTIL_JSON_HUMAN, json_object_hex, json_object_size,
)

# ---------------------------------------------------------------------------
# known vectors
# ---------------------------------------------------------------------------


def test_empty_containers_pretty():
    assert dumps([]) == "[\n]"
    assert dumps({}) == "{\n}"
    assert dumps({"a": [], "b": {}}) == '{\n  "a":[\n  ],\n  "b":{\n  }\n}'


def test_plain_and_spaced_forms():
    obj = {"a": 1, "b": [True, None], "c": {}}
    assert dumps(obj, JSON_C_TO_STRING_PLAIN) == '{"a":1,"b":[true,null],"c":{}}'
    assert dumps(obj, JSON_C_TO_STRING_SPACED) == '{ "a": 1, "b": [ true, null ], "c": { } }'
    assert dumps([], JSON_C_TO_STRING_SPACED) == "[ ]"
    assert dumps({"a": [1]}, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED) == \
        '{\n  "a": [\n    1\n  ]\n}'
    assert dumps({"a": [1]}, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_PRETTY_TAB) == \
        '{\n\t"a":[\n\t\t1\n\t]\n}'


def test_string_escapes():
    assert escape_str('/dev/dax0.0') == "\\/dev\\/dax0.0"
    assert escape_str('/x', JSON_C_TO_STRING_NOSLASHESCAPE) == "/x"
    assert escape_str('a"b\\c\b\f\n\r\t') == 'a\\"b\\\\c\\b\\f\\n\\r\\t'
    assert escape_str("\x00\x01\x1f\x7f") == "\\u0000\\u0001\\u001f\x7f"
    assert escape_str("é€") == "é€"  # non-ASCII is written raw (UTF-8)
    assert dumps({"path": "/dev/dax0.0"}, 0) == '{"path":"\\/dev\\/dax0.0"}'
    assert dumps({"k/\n": 1}, 0) == '{"k\\/\\n":1}'


def test_integers_and_doubles():
    assert dumps([0, -1, (1 << 64) - 1, -(1 << 63)], 0) == \
        "[0,-1,18446744073709551615,-9223372036854775808]"
    with pytest.raises(ValueError):
        dumps(1 << 64)
    with pytest.raises(ValueError):
        dumps(-(1 << 63) - 1)
    assert as_int64((1 << 64) - 1) == -1 and as_int64(5) == 5
    assert as_uint64(-1) == (1 << 64) - 1
    cases = {1.0: "1.0", 0.1: "0.10000000000000001", 1e20: "1e+20", -0.0: "-0.0",
             25.0625: "25.0625", 1e-7: "9.9999999999999995e-08",
             math.inf: "Infinity", -math.inf: "-Infinity", math.nan: "NaN"}
    for value, text in cases.items():
        assert dumps(value, 0) == text
    assert dumps(2.5, JSON_C_TO_STRING_NOZERO) == "2.5"
    assert dumps(0.1, JSON_C_TO_STRING_NOZERO) == "0.10000000000000001"


def test_bool_is_not_int_and_custom_serializers():
    assert dumps([True, False, None], 0) == "[true,false,null]"
    assert dumps({"x": RawJSON('"0x10"')}, 0) == '{"x":"0x10"}'
    assert RawJSON("1") == RawJSON("1") and RawJSON("1") != RawJSON("2")
    assert dumps((1, 2), 0) == "[1,2]"
    with pytest.raises(TypeError):
        dumps({1: 2})
    with pytest.raises(TypeError):
        dumps(object())


def test_cxl_list_man_page_example_BMu():
    # Documentation/cxl/cxl-list.txt, example for "cxl list -BMu" (human
    # size and human hex serial 0 -> "0")
    h = UTIL_JSON_HUMAN
    top = [
        {"anon memdevs": [{"memdev": "mem0",
                           "pmem_size": json_object_size(268435456, h),
                           "serial": json_object_hex(0, h)}]},
        {"buses": [{"bus": "root0", "provider": "ACPI.CXL"}]},
    ]
    expected = """\
[
  {
    "anon memdevs":[
      {
        "memdev":"mem0",
        "pmem_size":"256.00 MiB (268.44 MB)",
        "serial":"0"
      }
    ]
  },
  {
    "buses":[
      {
        "bus":"root0",
        "provider":"ACPI.CXL"
      }
    ]
  }
]
"""
    assert display_json(top, h) == (expected, "")


def test_cxl_list_man_page_example_BTu_unwraps_single_object():
    # Documentation/cxl/cxl-list.txt, "cxl list -BTu -b ACPI.CXL"
    h = UTIL_JSON_HUMAN
    top = [{"bus": "root0", "provider": "ACPI.CXL", "nr_dports": 1,
            "dports": [{"dport": "ACPI0016:00", "alias": "pci0000:34",
                        "id": json_object_hex(0, h)}]}]
    out, err = display_json(top, h)
    assert err == ""
    assert out == """\
{
  "bus":"root0",
  "provider":"ACPI.CXL",
  "nr_dports":1,
  "dports":[
    {
      "dport":"ACPI0016:00",
      "alias":"pci0000:34",
      "id":"0"
    }
  ]
}
"""


# captured with: cxl list; echo $?   (no CXL devices) -> exit 0
CXL_LIST_EMPTY_STDOUT = "[\n]\n"
CXL_LIST_EMPTY_STDERR = "  Warning: no matching devices found\n\n"


def test_display_json_cases():
    assert display_json([]) == (CXL_LIST_EMPTY_STDOUT, CXL_LIST_EMPTY_STDERR)
    # captured with: cxl list -u  -> nothing at all, exit 0
    assert display_json([], UTIL_JSON_HUMAN) == ("", "")
    assert display_json([{"a": 1}]) == ('[\n  {\n    "a":1\n  }\n]\n', "")
    assert display_json([{"a": 1}], UTIL_JSON_HUMAN) == ('{\n  "a":1\n}\n', "")
    assert display_json([1, 2], UTIL_JSON_HUMAN) == ("[\n  1,\n  2\n]\n", "")
    assert jsonc._UTIL_JSON_HUMAN == UTIL_JSON_HUMAN


@pytest.mark.conformance
@pytest.mark.parametrize("argv,flags", [(["cxl", "list"], 0), (["cxl", "list", "-u"], 16),
                                        (["daxctl", "list", "-u"], 16)])
def test_display_json_matches_real_empty_listing(argv, flags):
    if shutil.which(argv[0]) is None:
        pytest.skip(f"{argv[0]} not installed")
    real = subprocess.run(argv, capture_output=True, text=True, timeout=20)
    if real.stdout not in ("", "[\n]\n"):
        pytest.skip("this machine has devices to list")
    assert real.returncode == 0
    assert display_json([], flags) == (real.stdout, real.stderr)


# ---------------------------------------------------------------------------
# conformance: libjson-c (0.16 here) through ctypes as the oracle
# ---------------------------------------------------------------------------


def _libjsonc():
    name = ctypes.util.find_library("json-c") or "libjson-c.so.5"
    try:
        lib = ctypes.CDLL(name)
    except OSError:
        pytest.skip("libjson-c not available")
    vp = ctypes.c_void_p
    for fn, res, args in [
        ("json_object_new_object", vp, []),
        ("json_object_new_array", vp, []),
        ("json_object_new_string_len", vp, [ctypes.c_char_p, ctypes.c_int]),
        ("json_object_new_int64", vp, [ctypes.c_int64]),
        ("json_object_new_uint64", vp, [ctypes.c_uint64]),
        ("json_object_new_double", vp, [ctypes.c_double]),
        ("json_object_new_boolean", vp, [ctypes.c_int]),
        ("json_object_object_add", ctypes.c_int, [vp, ctypes.c_char_p, vp]),
        ("json_object_array_add", ctypes.c_int, [vp, vp]),
        ("json_object_to_json_string_ext", ctypes.c_char_p, [vp, ctypes.c_int]),
        ("json_object_put", ctypes.c_int, [vp]),
        ("json_c_version", ctypes.c_char_p, []),
    ]:
        f = getattr(lib, fn)
        f.restype, f.argtypes = res, args
    return lib


def _build(lib, obj):
    if obj is None:
        return None
    if obj is True or obj is False:
        return lib.json_object_new_boolean(int(obj))
    if isinstance(obj, int):
        if obj < 0:
            return lib.json_object_new_int64(obj)
        return lib.json_object_new_uint64(obj) if obj >= 1 << 63 else lib.json_object_new_int64(obj)
    if isinstance(obj, float):
        return lib.json_object_new_double(obj)
    if isinstance(obj, str):
        raw = obj.encode("utf-8")
        return lib.json_object_new_string_len(raw, len(raw))
    if isinstance(obj, list):
        arr = lib.json_object_new_array()
        for v in obj:
            lib.json_object_array_add(arr, _build(lib, v))
        return arr
    o = lib.json_object_new_object()
    for k, v in obj.items():
        lib.json_object_object_add(o, k.encode("utf-8"), _build(lib, v))
    return o


_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)
_key = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",),
                             exclude_characters="\x00"), max_size=8)
_scalar = st.one_of(
    st.none(), st.booleans(), _text,
    st.integers(min_value=-(1 << 63), max_value=(1 << 64) - 1),
    st.floats(allow_nan=True, allow_infinity=True),
)
_tree = st.recursive(
    _scalar,
    lambda kids: st.one_of(st.lists(kids, max_size=4),
                           st.dictionaries(_key, kids, max_size=4)),
    max_leaves=20,
)
_FLAGS = [JSON_C_TO_STRING_PLAIN, JSON_C_TO_STRING_SPACED, JSON_C_TO_STRING_PRETTY,
          JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED,
          JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_PRETTY_TAB,
          JSON_C_TO_STRING_NOSLASHESCAPE, JSON_C_TO_STRING_NOZERO]


@pytest.mark.conformance
@settings(max_examples=250, deadline=None)
@given(tree=_tree, flags=st.sampled_from(_FLAGS))
def test_dumps_matches_libjsonc(tree, flags):
    lib = _libjsonc()
    jobj = _build(lib, tree)
    try:
        expected = (lib.json_object_to_json_string_ext(jobj, flags) or b"null").decode("utf-8")
    finally:
        lib.json_object_put(jobj)
    assert dumps(tree, flags) == expected


@pytest.mark.conformance
def test_installed_libjsonc_is_016():
    assert _libjsonc().json_c_version() == b"0.16"


_deep_tree = st.recursive(
    st.one_of(_scalar, st.builds(RawJSON, st.sampled_from(["{}", "1", '"raw"']))),
    lambda kids: st.one_of(st.lists(kids, max_size=4), st.tuples(kids, kids),
                           st.dictionaries(_key, kids, max_size=4)),
    max_leaves=60,
)


@settings(max_examples=300, deadline=None)
@given(tree=_deep_tree)
def test_pretty_fast_path_prints_what_the_generic_serialiser_prints(tree):
    """``dumps(x, PRETTY)`` lays dicts, lists, str and int out inline; the
    text must be the generic serialiser's, at every depth."""
    from cxlemu.tools.common.jsonc import _emit
    out: list[str] = []
    _emit(tree, 0, JSON_C_TO_STRING_PRETTY, out)
    assert dumps(tree, JSON_C_TO_STRING_PRETTY) == "".join(out)


def test_pretty_fast_path_refuses_what_the_generic_serialiser_refuses():
    with pytest.raises(TypeError):
        dumps({1: 2}, JSON_C_TO_STRING_PRETTY)
    with pytest.raises(ValueError):
        dumps([1 << 64], JSON_C_TO_STRING_PRETTY)
