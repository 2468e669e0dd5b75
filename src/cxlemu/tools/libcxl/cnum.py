"""C conversions as libcxl applies them to sysfs text (pure functions).

libcxl stores every attribute in a C field of a fixed width, so the value a
tool prints is the C conversion *and* the truncation to that field:

* ``strtoull(buf, NULL, 0)`` into ``u64`` fields (sizes, resources, serial);
* ``strtoul(buf, NULL, 0)`` into ``unsigned int`` fields (ways,
  granularity): the 64-bit result is truncated to 32 bits;
* ``strtol(buf, NULL, 0)`` into ``int`` (numa_node) and ``atoi()`` (the
  ``qos_class`` attributes): truncated to a signed 32-bit int;
* ``sscanf(name, "<prefix>%d", &id)`` decides which directory entries are
  devices (util/sysfs.c ``__sysfs_device_parse``) and what their id is.

Every function here returns what the C expression evaluates to.
"""

from __future__ import annotations

import re

from cxlemu.tools.common.parse_options import strtol, strtoull

__all__ = [
    "U64_MAX", "U32_MAX", "to_u64", "to_u32", "to_s32",
    "c_strtoull", "c_strtoul_u32", "c_strtol_s32", "c_atoi",
    "sscanf_int", "sscanf_int_pair", "c_tokens",
]

U64_MAX = (1 << 64) - 1
U32_MAX = (1 << 32) - 1
_C_SPACE = " \t\n\v\f\r"


def to_u64(v: int) -> int:
    return v & U64_MAX


def to_u32(v: int) -> int:
    return v & U32_MAX


def to_s32(v: int) -> int:
    v &= U32_MAX
    return v - (1 << 32) if v & 0x80000000 else v


#: what sysfs numbers look like: a decimal without a leading zero, or 0x and hex digits
_PLAIN_NUMBER = re.compile(r"0|[1-9][0-9]*|0[xX][0-9a-fA-F]+")


def c_strtoull(text: str) -> int:
    """``strtoull(text, NULL, 0)``: 0 when no digits, ULLONG_MAX on overflow."""
    if _PLAIN_NUMBER.fullmatch(text):         # the common case, without the general scanner
        v = int(text, 0)
        return v if v <= U64_MAX else U64_MAX
    return strtoull(text, 0)[0]


def c_strtoul_u32(text: str) -> int:
    """``unsigned int x = strtoul(text, NULL, 0)`` (64-bit long)."""
    return to_u32(c_strtoull(text))


def c_strtol_s32(text: str) -> int:
    """``int x = strtol(text, NULL, 0)``."""
    return to_s32(strtol(text, 0)[0])


def c_atoi(text: str) -> int:
    """``atoi(text)``: base 10, leading blanks and a sign allowed."""
    return to_s32(strtol(text, 10)[0])


def _scan_d(s: str, i: int) -> tuple[int, int] | None:
    """The ``%d`` conversion at ``s[i:]``: (value, end) or None."""
    while i < len(s) and s[i] in _C_SPACE:
        i += 1
    j = i
    if j < len(s) and s[j] in "+-":
        j += 1
    k = j
    while k < len(s) and "0" <= s[k] <= "9":
        k += 1
    if k == j:
        return None
    return to_s32(int(s[i:k])), k


def sscanf_int(name: str, prefix: str = "") -> int | None:
    """``sscanf(name, "<prefix>%d", &v) == 1 ? v : None``.

    Trailing text after the number is ignored, as in C (``"mem5x"`` -> 5).
    The literal prefix must match exactly (no white space skipping, since
    device-name prefixes contain none).
    """
    if not name.startswith(prefix):
        return None
    r = _scan_d(name, len(prefix))
    return None if r is None else r[0]


def sscanf_int_pair(name: str, prefix: str = "") -> tuple[int, int] | None:
    """``sscanf(name, "<prefix>%d.%d", &a, &b) == 2 ? (a, b) : None``."""
    if not name.startswith(prefix):
        return None
    first = _scan_d(name, len(prefix))
    if first is None or first[1] >= len(name) or name[first[1]] != ".":
        return None
    second = _scan_d(name, first[1] + 1)
    if second is None:
        return None
    return first[0], second[0]


def c_tokens(text: str, seps: str) -> list[str]:
    """``strtok_r()`` over ``text`` with the delimiter set ``seps``: empty
    tokens never appear."""
    out: list[str] = []
    cur: list[str] = []
    for ch in text:
        if ch in seps:
            if cur:
                out.append("".join(cur))
                cur = []
        else:
            cur.append(ch)
    if cur:
        out.append("".join(cur))
    return out
