"""Size parsing and formatting shared by topology files and the cxlemu CLI.

Binary suffixes only (K = KiB ...), as the kernel and the cxl tools use them.
"""

from __future__ import annotations

import re

KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30
TiB = 1 << 40
SZ_256M = 256 * MiB

_SUFFIX = {"": 1, "k": KiB, "m": MiB, "g": GiB, "t": TiB, "p": 1 << 50}
_SIZE_RE = re.compile(r"^\s*(0[xX][0-9a-fA-F]+|\d+)\s*([kKmMgGtTpP]?)(i?[bB])?\s*$")


def parse_size(value: int | str) -> int:
    """Parse ``4096``, ``"512M"``, ``"2GiB"``, ``"0x1000"`` into bytes.

    Raises ValueError with a message naming the bad text.
    """
    if isinstance(value, bool):
        raise ValueError(f"not a size: {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"size must not be negative: {value}")
        return value
    m = _SIZE_RE.match(str(value))
    if not m:
        raise ValueError(f"not a size: {value!r} (use bytes or a K/M/G/T suffix)")
    number = int(m.group(1), 0)
    return number * _SUFFIX[m.group(2).lower()]


def format_size(n: int) -> str:
    """Shortest exact binary form: 536870912 -> '512M', 1536 -> '1536'."""
    for suffix, mult in (("T", TiB), ("G", GiB), ("M", MiB), ("K", KiB)):
        if n and n % mult == 0:
            return f"{n // mult}{suffix}"
    return str(n)


def human_size(n: int) -> str:
    """Readable approximate size for messages: '1.50 GiB'."""
    for suffix, mult in (("TiB", TiB), ("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if n >= mult:
            return f"{n / mult:.2f} {suffix}"
    return f"{n} B"


def align_up(x: int, a: int) -> int:
    return (x + a - 1) // a * a


def align_down(x: int, a: int) -> int:
    return x // a * a


def is_pow2(x: int) -> bool:
    return x > 0 and (x & (x - 1)) == 0
