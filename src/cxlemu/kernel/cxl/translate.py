"""Region-level HPA <-> DPA translation, scalar and vectorised.

Models (paraphrased, not copied) the kernel's arithmetic:

* ``drivers/cxl/core/region.c``: DPA offset -> HPA offset (``cxl_dpa_to_hpa``
  in <= 6.18, ``cxl_calculate_hpa_offset`` later), HPA offset -> DPA offset
  and -> position (``cxl_calculate_dpa_offset`` / ``cxl_calculate_position``,
  CXL r3.2 8.2.4.20.13), the "not in region" and modulo-only "not in expected
  chunk" checks.
* ``drivers/cxl/acpi.c`` ``cxl_xor_hpa_to_spa``: XOR interleave arithmetic
  (CXL r3.1 Table 9-22 XORALLBITS).
* ``tools/testing/cxl/test/cxl_translate.c``: parameter validation table and
  the number of xormaps used per host-bridge ways.

Notation: ``L = eig + 8 = log2(granularity)``.  For every legal ways ``W``:
``hpa_offset = ((dpa_offset >> L) * W + pos) * G + dpa_offset % G``.

Vectorised forms operate on ``numpy.uint64`` arrays with no per-element Python
loop and are bit-identical to the scalar forms.
"""

from __future__ import annotations

import errno
import operator
from typing import Literal, Sequence

from cxlemu.util.lazy import lazy_module

np = lazy_module("numpy")  # imported on first use: only the data path pays for numpy

from cxlemu.kernel.cxl.interleave import (
    InterleaveError,
    eig_to_granularity,
    eiw_to_ways,
    genmask,
    granularity_to_eig,
    validate_region_ways,
    ways_to_eiw,
)
from cxlemu.util.lazydc import dataclass

__all__ = [
    "U64_MAX",
    "TranslateError",
    "validate_translation_params",
    "calculate_hpa_offset",
    "calculate_dpa_offset",
    "calculate_position",
    "dpa_to_hpa_offset",
    "hpa_offset_to_dpa_offset",
    "hpa_offset_to_position",
    "hpa_in_expected_chunk",
    "xor_transform",
    "xormaps_needed",
    "RegionGeometry",
    "to_dpa_array",
    "to_hpa_array",
    "popcount_u64",
]

U64_MAX = (1 << 64) - 1
# The kernel keeps only DPA offset bits 51:L when rebuilding an HPA offset
# (GENMASK_ULL(51, eig + 8)); higher DPA bits are silently dropped.
_DPA_TOP_BIT = 51

Arithmetic = Literal["modulo", "xor"]


class TranslateError(ValueError):
    """A translation the kernel refuses (it returns all-ones / an error).

    ``.errno`` is EINVAL for bad parameters (ways/granularity/position) and
    ENXIO for an address outside the region or in the wrong chunk.
    """

    def __init__(self, err: int, msg: str) -> None:
        super().__init__(msg)
        self.errno = err


def _u64(value: object, what: str) -> int:
    if isinstance(value, bool):
        raise TranslateError(errno.EINVAL, f"{what}: not an integer: {value!r}")
    try:
        v = operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise TranslateError(errno.EINVAL, f"{what}: not an integer: {value!r}") from None
    if not 0 <= v <= U64_MAX:
        raise TranslateError(errno.EINVAL, f"{what}: {v:#x} is not a 64-bit unsigned value")
    return v


# --- encoded-parameter level (region.c / cxl_translate.c) -------------------


def validate_translation_params(eiw: int, eig: int, pos: int) -> int:
    """Check encoded ways, encoded granularity and position; return the ways.

    Valid: eiw in {0..4, 8..10}, eig in 0..6, 0 <= pos < ways.  Everything else
    is rejected, matching the invalid-parameter table in cxl_translate.c.
    """
    try:
        ways = eiw_to_ways(eiw)
    except InterleaveError as e:
        raise TranslateError(errno.EINVAL, str(e)) from None
    try:
        eig_to_granularity(eig)
    except InterleaveError as e:
        raise TranslateError(errno.EINVAL, str(e)) from None
    p = operator.index(pos)
    if p < 0 or p >= ways:
        raise TranslateError(errno.EINVAL, f"position {p} out of range for {ways} ways")
    return ways


def _check_encoded(eiw: int, eig: int) -> int:
    return validate_translation_params(eiw, eig, 0)


def calculate_hpa_offset(dpa_offset: int, pos: int, eiw: int, eig: int) -> int:
    """DPA offset + position -> HPA offset (before any XOR), encoded params."""
    validate_translation_params(eiw, eig, pos)
    d = _u64(dpa_offset, "dpa_offset")
    lg = eig + 8
    low = d & genmask(lg - 1, 0)
    upper = d & genmask(_DPA_TOP_BIT, lg)
    if eiw < 8:
        # Spread the upper DPA bits apart by eiw bits and drop the position in.
        hpa = (upper << eiw) | (pos << lg)
    else:
        # x3/x6/x12: chunk index * ways + pos, shifted back up by L.
        chunk = upper >> lg
        hpa = (((chunk * 3) << (eiw - 8)) + pos) << lg
    return (hpa | low) & U64_MAX


def calculate_dpa_offset(hpa_offset: int, eiw: int, eig: int) -> int:
    """HPA offset (after undoing XOR) -> DPA offset, encoded params."""
    _check_encoded(eiw, eig)
    h = _u64(hpa_offset, "hpa_offset")
    lg = eig + 8
    low = h & genmask(lg - 1, 0)
    if eiw < 8:
        return ((h & ~genmask(lg + eiw - 1, 0)) >> eiw) | low
    # (h >> (L + eiw - 8)) // 3 == (h >> L) // ways for ways = 3 << (eiw - 8)
    return (((h >> (eig + eiw)) // 3) << lg) | low


def calculate_position(hpa_offset: int, eiw: int, eig: int) -> int:
    """HPA offset (after undoing XOR) -> interleave position, encoded params."""
    ways = _check_encoded(eiw, eig)
    h = _u64(hpa_offset, "hpa_offset")
    lg = eig + 8
    if eiw == 0:
        return 0
    if eiw < 8:
        return (h >> lg) & (ways - 1)
    return (h >> lg) % ways


# --- ways/granularity level ---------------------------------------------------


def _encode(ways: int, gran: int) -> tuple[int, int]:
    try:
        return ways_to_eiw(ways), granularity_to_eig(gran)
    except InterleaveError as e:
        raise TranslateError(errno.EINVAL, str(e)) from None


def dpa_to_hpa_offset(dpa_offset: int, pos: int, ways: int, gran: int) -> int:
    """Region HPA offset of ``dpa_offset`` on the device at ``pos``."""
    eiw, eig = _encode(ways, gran)
    return calculate_hpa_offset(dpa_offset, pos, eiw, eig)


def hpa_offset_to_dpa_offset(hpa_offset: int, ways: int, gran: int) -> int:
    """DPA offset that backs a region HPA offset (modulo arithmetic)."""
    eiw, eig = _encode(ways, gran)
    return calculate_dpa_offset(hpa_offset, eiw, eig)


def hpa_offset_to_position(hpa_offset: int, ways: int, gran: int) -> int:
    """Interleave position that backs a region HPA offset (modulo arithmetic)."""
    eiw, eig = _encode(ways, gran)
    return calculate_position(hpa_offset, eiw, eig)


def hpa_in_expected_chunk(hpa_offset: int, pos: int, ways: int, gran: int) -> bool:
    """region.c ``cxl_is_hpa_in_chunk``: does the offset fall in ``pos``'s
    granule of its ``gran * ways`` stripe?"""
    r = hpa_offset % (gran * ways)
    return pos * gran <= r < (pos + 1) * gran


# --- XOR arithmetic (acpi.c cxl_xor_hpa_to_spa) ------------------------------


def xormaps_needed(hb_ways: int) -> int:
    """Number of CXIMS xormaps a root decoder with ``hb_ways`` uses.

    log2(ways) for 2/4/8/16, log2(ways/3) for 6/12, none for 1/3
    (acpi.c ``cxl_parse_cxims``; cxl_translate.c ``hbiw_to_nr_maps``).
    """
    eiw = ways_to_eiw(hb_ways)
    return eiw if eiw < 8 else eiw - 8


def xor_transform(hpa: int, xormaps: Sequence[int], hb_ways: int | None = None) -> int:
    """Apply the CXL XOR interleave transform to ``hpa``.

    For each map in order (zero maps are skipped): the map's lowest set bit is
    replaced by the parity of ``hpa & map``.  When every map's lowest bit
    appears in no other map, each step is an involution and the steps
    commute, so the transform is its own inverse (the kernel relies on this,
    using the same function in both directions).

    ``hb_ways`` of 1 or 3 makes it a no-op, as in the kernel.
    """
    h = _u64(hpa, "hpa")
    if hb_ways is not None and hb_ways in (1, 3):
        return h
    for m in xormaps:
        m = _u64(m, "xormap")
        if m == 0:
            continue
        bit = m & -m
        parity = (h & m).bit_count() & 1
        h = (h & ~bit) | (bit if parity else 0)
    return h


# --- region geometry -----------------------------------------------------------


@dataclass(frozen=True)
class RegionGeometry:
    """Everything needed to translate addresses of one committed region.

    ``start``/``size``: the region's HPA resource.  ``ways``/``granularity``:
    region interleave.  ``arithmetic``: the root decoder's (CFMWS) interleave
    arithmetic.  ``xormaps``: the CXIMS maps of the root decoder (only the
    first ``xormaps_needed(hb_ways)`` are used, as acpi.c keeps only those).
    ``hb_ways``: the root decoder's ways; XOR is a no-op for 1 and 3.

    Design choice: XOR is applied to the **absolute** HPA, as kernels up to
    6.18 do in ``cxl_dpa_to_hpa`` (the root decoder's hpa_to_spa callback is
    called on ``region start + hpa_offset``).  The 6.19 cxl_translate test
    applies it to the offset; both agree whenever the region start has no
    bit set inside any xormap.
    """

    start: int
    size: int
    ways: int
    granularity: int
    arithmetic: Arithmetic = "modulo"
    xormaps: tuple[int, ...] = ()
    hb_ways: int = 1

    def __post_init__(self) -> None:
        _u64(self.start, "region start")
        if self.size <= 0 or self.start + self.size - 1 > U64_MAX:
            raise TranslateError(errno.EINVAL, f"invalid region size {self.size:#x}")
        eiw, eig = _encode(self.ways, self.granularity)
        if self.size % (self.ways * self.granularity):
            raise TranslateError(
                errno.EINVAL,
                f"region size {self.size:#x} is not a multiple of ways * granularity",
            )
        if self.arithmetic not in ("modulo", "xor"):
            raise TranslateError(errno.EINVAL, f"unknown interleave arithmetic {self.arithmetic!r}")
        object.__setattr__(self, "xormaps", tuple(int(m) for m in self.xormaps))
        try:
            need = xormaps_needed(self.hb_ways)
        except InterleaveError as e:
            raise TranslateError(errno.EINVAL, f"host-bridge ways: {e}") from None
        if self.arithmetic == "xor":
            try:
                validate_region_ways(self.ways, self.hb_ways)
            except InterleaveError as e:
                raise TranslateError(errno.EINVAL, str(e)) from None
            if len(self.xormaps) < need:
                # acpi.c cxl_parse_cxims: too few maps for the window -> -ENXIO
                raise TranslateError(
                    errno.ENXIO, f"CXIMS nr_xormaps[{len(self.xormaps)}] expected[{need}]"
                )
            for m in self.xormaps:
                _u64(m, "xormap")

    # -- derived ------------------------------------------------------------

    @property
    def eiw(self) -> int:
        return ways_to_eiw(self.ways)

    @property
    def eig(self) -> int:
        return granularity_to_eig(self.granularity)

    @property
    def end(self) -> int:
        """Last byte of the region (inclusive), like a kernel resource end."""
        return self.start + self.size - 1

    @property
    def dpa_size(self) -> int:
        """Bytes each member device contributes (size / ways)."""
        return self.size // self.ways

    @property
    def active_xormaps(self) -> tuple[int, ...]:
        """Maps actually applied (empty for modulo or hb_ways 1/3)."""
        if self.arithmetic != "xor":
            return ()
        return self.xormaps[: xormaps_needed(self.hb_ways)]

    def contains(self, hpa: int) -> bool:
        return self.start <= hpa <= self.end

    # -- scalar translation ---------------------------------------------------

    def to_hpa(self, pos: int, dpa_offset: int) -> int:
        """Device ``pos``'s ``dpa_offset`` -> absolute HPA (region.c
        ``cxl_dpa_to_hpa`` checks: outside region, modulo chunk)."""
        p = operator.index(pos)
        if not 0 <= p < self.ways:
            raise TranslateError(errno.EINVAL, f"position {p} out of range for {self.ways} ways")
        off = dpa_to_hpa_offset(dpa_offset, p, self.ways, self.granularity)
        hpa = (self.start + off) & U64_MAX
        maps = self.active_xormaps
        if maps:
            # XOR on the absolute address, as kernels <= 6.18 (class docstring)
            hpa = xor_transform(hpa, maps)
        if not self.contains(hpa):
            raise TranslateError(errno.ENXIO, f"hpa {hpa:#x} not in region")
        if self.arithmetic == "modulo" and not hpa_in_expected_chunk(
            hpa - self.start, p, self.ways, self.granularity
        ):
            raise TranslateError(errno.ENXIO, f"hpa {hpa:#x} not in expected chunk")
        return hpa

    def to_dpa(self, hpa: int) -> tuple[int, int]:
        """Absolute HPA -> ``(pos, dpa_offset)``."""
        h = _u64(hpa, "hpa")
        if not self.contains(h):
            raise TranslateError(errno.ENXIO, f"hpa {h:#x} not in region")
        maps = self.active_xormaps
        if maps:
            # the transform is an involution: undo it on the absolute address
            h = xor_transform(h, maps)
            if not self.contains(h):
                raise TranslateError(errno.ENXIO, f"hpa {hpa:#x} decodes outside the region")
        off = h - self.start
        return (
            hpa_offset_to_position(off, self.ways, self.granularity),
            hpa_offset_to_dpa_offset(off, self.ways, self.granularity),
        )


# --- vectorised data path ------------------------------------------------------


def _popcount_swar(x: np.ndarray) -> np.ndarray:
    """Bit count of each uint64 without a Python loop (fallback for numpy<2)."""
    x = x.astype(np.uint64, copy=True)
    x -= (x >> np.uint64(1)) & np.uint64(0x5555555555555555)
    x = (x & np.uint64(0x3333333333333333)) + ((x >> np.uint64(2)) & np.uint64(0x3333333333333333))
    x = (x + (x >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    return (x * np.uint64(0x0101010101010101)) >> np.uint64(56)


def popcount_u64(x: np.ndarray) -> np.ndarray:
    """Per-element population count of a uint64 array (as uint64)."""
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(x).astype(np.uint64)
    return _popcount_swar(x)  # pragma: no cover - numpy < 2


def _xor_array(h: np.ndarray, maps: Sequence[int]) -> np.ndarray:
    # One numpy pass per map (at most 4 maps); never per element.
    for m in maps:
        if m == 0:
            continue
        bit = m & -m
        m64 = np.uint64(m)
        parity = popcount_u64(h & m64) & np.uint64(1)
        h = (h & np.uint64(~bit & U64_MAX)) | (parity << np.uint64(bit.bit_length() - 1))
    return h


def _as_u64_array(values: object, what: str) -> np.ndarray:
    a = np.asarray(values)
    if a.dtype == np.uint64:
        return a
    if a.dtype.kind == "u":
        return a.astype(np.uint64)
    if a.dtype.kind == "i":
        if a.size and a.min() < 0:
            raise TranslateError(errno.EINVAL, f"{what}: negative value")
        return a.astype(np.uint64)
    if a.dtype == object:
        # Only reached for Python ints numpy could not type (e.g. >= 2**64,
        # or a mix of negatives and values >= 2**63): validate, never wrap.
        return np.array([_u64(v, what) for v in a.ravel()], dtype=np.uint64).reshape(a.shape)
    raise TranslateError(errno.EINVAL, f"{what}: unsupported dtype {a.dtype}")


def _first_bad(mask_ok: np.ndarray, values: np.ndarray) -> int:
    idx = int(np.argmin(mask_ok.ravel()))
    return int(values.ravel()[idx])


def to_dpa_array(geom: RegionGeometry, hpa: object) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised :meth:`RegionGeometry.to_dpa`.

    Returns ``(pos: int64 array, dpa_offset: uint64 array)`` shaped like
    ``hpa``.  Raises :class:`TranslateError` if any address is outside the
    region (naming the first one).
    """
    h = _as_u64_array(hpa, "hpa")
    start = np.uint64(geom.start)
    last = np.uint64(geom.size - 1)
    ok = (h >= start) & ((h - start) <= last)
    if not ok.all():
        raise TranslateError(errno.ENXIO, f"hpa {_first_bad(ok, h):#x} not in region")
    maps = geom.active_xormaps
    if maps:
        h = _xor_array(h, maps)
        ok = (h >= start) & ((h - start) <= last)
        if not ok.all():
            raise TranslateError(errno.ENXIO, "hpa decodes outside the region")
    off = h - start
    eiw, eig = geom.eiw, geom.eig
    lg = np.uint64(eig + 8)
    low = off & np.uint64(genmask(eig + 7, 0))
    if eiw < 8:
        pos = (off >> lg) & np.uint64(geom.ways - 1)
        dpa = ((off & np.uint64(~genmask(eig + 8 + eiw - 1, 0) & U64_MAX)) >> np.uint64(eiw)) | low
    else:
        pos = (off >> lg) % np.uint64(geom.ways)
        dpa = (((off >> np.uint64(eig + eiw)) // np.uint64(3)) << lg) | low
    return pos.astype(np.int64), dpa


def to_hpa_array(geom: RegionGeometry, pos: object, dpa_offset: object) -> np.ndarray:
    """Vectorised :meth:`RegionGeometry.to_hpa` (``pos`` and ``dpa_offset``
    broadcast together).  Returns a uint64 array; raises
    :class:`TranslateError` if any element is rejected."""
    p_raw = np.asarray(pos)
    if p_raw.dtype.kind not in "iu":
        raise TranslateError(errno.EINVAL, f"pos: unsupported dtype {p_raw.dtype}")
    p_ok = (p_raw >= 0) & (p_raw < geom.ways)
    if not p_ok.all():
        raise TranslateError(
            errno.EINVAL,
            f"position {_first_bad(p_ok, p_raw)} out of range for {geom.ways} ways",
        )
    d = _as_u64_array(dpa_offset, "dpa_offset")
    p, d = np.broadcast_arrays(p_raw.astype(np.uint64), d)
    eiw, eig = geom.eiw, geom.eig
    lg = np.uint64(eig + 8)
    low = d & np.uint64(genmask(eig + 7, 0))
    upper = d & np.uint64(genmask(_DPA_TOP_BIT, eig + 8))
    if eiw < 8:
        off = (upper << np.uint64(eiw)) | (p << lg)
    else:
        chunk = upper >> lg
        off = (((chunk * np.uint64(3)) << np.uint64(eiw - 8)) + p) << lg
    off = off | low
    hpa = off + np.uint64(geom.start)  # wraps modulo 2**64 like u64 math
    maps = geom.active_xormaps
    if maps:
        hpa = _xor_array(hpa, maps)
    start = np.uint64(geom.start)
    ok = (hpa >= start) & ((hpa - start) <= np.uint64(geom.size - 1))
    if not ok.all():
        raise TranslateError(errno.ENXIO, f"hpa {_first_bad(ok, hpa):#x} not in region")
    if geom.arithmetic == "modulo":
        stripe = np.uint64(geom.granularity * geom.ways)
        g = np.uint64(geom.granularity)
        r = (hpa - start) % stripe
        ok = (r >= p * g) & (r < (p + np.uint64(1)) * g)
        if not ok.all():
            raise TranslateError(
                errno.ENXIO, f"hpa {_first_bad(ok, hpa):#x} not in expected chunk"
            )
    return np.ascontiguousarray(hpa)
