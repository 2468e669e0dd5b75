"""ndctl's util/json.[ch] and util/size.c helpers: listing flags, size and
hex JSON values (plain and ``-u``/human forms) and ``parse_size64``.

Size formatting (util/json.c ``display_size``, adapted by ndctl from
mdadm's ``human_size_brief``), for a byte count ``b`` (unsigned 64-bit):

* ``b < 5000 KiB`` (5,120,000): a bare JSON integer, even with ``-u``;
* ``b < 2 GiB``: ``"X.XX MiB (Y.YY MB)"``;
* ``b < 2 TiB``: ``"X.XX GiB (Y.YY GB)"``;
* otherwise ``"X.XX TiB (Y.YY TB)"``.

The binary value is computed in centi-units as
``((b * 200) mod 2**64 // unit + 1) // 2`` (the C multiplication is done
in unsigned 64-bit and may wrap above ~83 PiB), the decimal one as
``(b // (10**k / 200) + 1) // 2``: both round half up on the centi digit.

Plain (non-human) sizes are json-c int64 objects, so values >= 2**63 print
as negative numbers; hex values are uint64 objects and print unsigned.
Human hex values print as ``"%#llx"``: ``0`` -> ``"0"``, 255 -> ``"0xff"``.
v76.1 read the hex value back with ``json_object_get_int64()`` which clamps
at ``INT64_MAX``; v81 uses ``json_object_get_uint64()``.  Pass
``compat_v76=True`` to get the old clamping.
"""

from __future__ import annotations

import enum

from .jsonc import as_int64, as_uint64
from .parse_options import ULLONG_MAX, strtoull

__all__ = [
    "UtilJsonFlags", "UTIL_JSON_IDLE", "UTIL_JSON_MEDIA_ERRORS",
    "UTIL_JSON_DAX", "UTIL_JSON_DAX_DEVS", "UTIL_JSON_EXTENTS", "UTIL_JSON_HUMAN",
    "UTIL_JSON_VERBOSE", "UTIL_JSON_CAPABILITIES", "UTIL_JSON_CONFIGURED",
    "UTIL_JSON_FIRMWARE", "UTIL_JSON_DAX_MAPPINGS", "UTIL_JSON_HEALTH",
    "UTIL_JSON_TARGETS", "UTIL_JSON_PARTITION", "UTIL_JSON_ALERT_CONFIG",
    "SZ_1K", "SZ_1M", "SZ_1G", "SZ_1T", "ULLONG_MAX",
    "HumanSize", "HumanHex", "json_object_size", "json_object_hex",
    "human_size_json", "human_size_text", "hex_text",
    "parse_size64", "parse_size64_units",
]


class UtilJsonFlags(enum.IntFlag):
    """``enum util_json_flags`` (util/json.h, identical in v76.1 and v81)."""

    IDLE = 1 << 0
    MEDIA_ERRORS = 1 << 1
    DAX = 1 << 2
    DAX_DEVS = 1 << 3
    HUMAN = 1 << 4
    VERBOSE = 1 << 5
    CAPABILITIES = 1 << 6
    CONFIGURED = 1 << 7
    FIRMWARE = 1 << 8
    DAX_MAPPINGS = 1 << 9
    HEALTH = 1 << 10
    TARGETS = 1 << 11
    PARTITION = 1 << 12
    ALERT_CONFIG = 1 << 13
    EXTENTS = 1 << 14          # ndctl's DCD series: cxl list -N


# plain ints, as the C macros are: ``flags & UTIL_JSON_X`` on an int mask is then
# an int operation (an IntFlag operand makes every test build an enum member)
UTIL_JSON_IDLE = int(UtilJsonFlags.IDLE)
UTIL_JSON_MEDIA_ERRORS = int(UtilJsonFlags.MEDIA_ERRORS)
UTIL_JSON_DAX = int(UtilJsonFlags.DAX)
UTIL_JSON_EXTENTS = int(UtilJsonFlags.EXTENTS)
UTIL_JSON_DAX_DEVS = int(UtilJsonFlags.DAX_DEVS)
UTIL_JSON_HUMAN = int(UtilJsonFlags.HUMAN)
UTIL_JSON_VERBOSE = int(UtilJsonFlags.VERBOSE)
UTIL_JSON_CAPABILITIES = int(UtilJsonFlags.CAPABILITIES)
UTIL_JSON_CONFIGURED = int(UtilJsonFlags.CONFIGURED)
UTIL_JSON_FIRMWARE = int(UtilJsonFlags.FIRMWARE)
UTIL_JSON_DAX_MAPPINGS = int(UtilJsonFlags.DAX_MAPPINGS)
UTIL_JSON_HEALTH = int(UtilJsonFlags.HEALTH)
UTIL_JSON_TARGETS = int(UtilJsonFlags.TARGETS)
UTIL_JSON_PARTITION = int(UtilJsonFlags.PARTITION)
UTIL_JSON_ALERT_CONFIG = int(UtilJsonFlags.ALERT_CONFIG)

SZ_1K = 1 << 10
SZ_1M = 1 << 20
SZ_1G = 1 << 30
SZ_1T = 1 << 40

_RAW_LIMIT = 5000 * SZ_1K
_SUFFIX = {"k": SZ_1K, "K": SZ_1K, "m": SZ_1M, "M": SZ_1M,
           "g": SZ_1G, "G": SZ_1G, "t": SZ_1T, "T": SZ_1T}
_U64 = (1 << 64) - 1


def _centi(num: int) -> str:
    """Render centi-units ``num`` as ``N.NN``."""
    return f"{num // 100}.{num % 100:02d}"


def human_size_text(size: int) -> str:
    """The human text of a size, without JSON quotes.

    Below 5000 KiB this is the plain decimal number.
    """
    b = size & _U64
    if b < _RAW_LIMIT:
        return str(as_int64(b))  # "%lld"
    wide = (b * 200) & _U64
    if b < 2 * SZ_1G:
        iec = _centi((wide // SZ_1M + 1) // 2) + " MiB"
        jedec = _centi((b // 5000 + 1) // 2) + " MB"
    elif b < 2 * SZ_1T:
        iec = _centi((wide // SZ_1G + 1) // 2) + " GiB"
        jedec = _centi((b // 5_000_000 + 1) // 2) + " GB"
    else:
        iec = _centi((wide // SZ_1T + 1) // 2) + " TiB"
        jedec = _centi((b // 5_000_000_000 + 1) // 2) + " TB"
    return f"{iec} ({jedec})"


def human_size_json(size: int) -> str:
    """The JSON token ``display_size`` emits: a bare integer below
    5000 KiB, otherwise the quoted human string."""
    b = size & _U64
    if b < _RAW_LIMIT:
        return str(as_int64(b))
    return f'"{human_size_text(b)}"'


def hex_text(val: int) -> str:
    """C ``%#llx`` of an unsigned 64-bit value: ``0`` -> ``"0"``."""
    v = val & _U64
    return f"{v:#x}" if v else "0"


class HumanSize(int):
    """A size that serialises with ``display_size`` (``-u``)."""

    def __jsonc__(self, level: int, flags: int) -> str:
        return human_size_json(int(self))

    def __repr__(self) -> str:
        return f"HumanSize({int(self)})"


class HumanHex(int):
    """A number that serialises as ``"%#llx"`` (``-u``)."""

    compat_v76: bool = False

    def __jsonc__(self, level: int, flags: int) -> str:
        v = int(self) & _U64
        if self.compat_v76:
            v = min(v, (1 << 63) - 1)  # json_object_get_int64() clamp
        return f'"{hex_text(v)}"'

    def __repr__(self) -> str:
        return f"HumanHex({int(self):#x})"


class _HumanHexV76(HumanHex):
    compat_v76 = True


def _is_human(flags: int | bool) -> bool:
    if isinstance(flags, bool):
        return flags
    return bool(flags & UTIL_JSON_HUMAN)


def json_object_size(size: int, flags: int | bool = 0) -> int:
    """``util_json_object_size(size, flags)``.

    ``flags`` is a :class:`UtilJsonFlags` mask, or a bool meaning "human".
    Returns a plain int (the int64 view of ``size``) or a :class:`HumanSize`.
    """
    if _is_human(flags):
        return HumanSize(size & _U64)
    return as_int64(size)


def json_object_hex(val: int, flags: int | bool = 0, *, compat_v76: bool = False) -> int:
    """``util_json_object_hex(val, flags)``: uint64, ``"%#llx"`` when human."""
    if _is_human(flags):
        cls = _HumanHexV76 if compat_v76 else HumanHex
        return cls(val & _U64)
    return as_uint64(val)


def parse_size64_units(text: str | None) -> tuple[int, int]:
    """util/size.c ``__parse_size64``: returns ``(value, units)``.

    The number is read with ``strtoull(text, base 0)`` (decimal, ``0x`` hex,
    leading-``0`` octal, optional sign and leading blanks), then one
    optional suffix k/K, m/M, g/G or t/T multiplies it (mod 2**64).  Any
    trailing text, a ``strtoull`` result of ``ULLONG_MAX`` or a product
    smaller than the number gives ``ULLONG_MAX`` (callers print
    "Invalid size").  Quirks kept: ``""`` and ``"k"`` parse as 0, ``"-2"``
    as 2**64-2.  ``None`` gives ``(0, 0)`` as ``parse_size64(NULL)`` does.
    """
    if text is None:
        return 0, 0
    val, end = strtoull(text, 0)
    if val == ULLONG_MAX:
        return ULLONG_MAX, 0
    check = val
    units = 1
    mult = _SUFFIX.get(text[end:end + 1])
    if mult is not None:
        units = mult
        val = (val * mult) & _U64
        end += 1
    if val < check or end != len(text):
        val = ULLONG_MAX
    return val, units


def parse_size64(text: str | None) -> int:
    """util/size.c ``parse_size64``; ``ULLONG_MAX`` means invalid."""
    return parse_size64_units(text)[0]
