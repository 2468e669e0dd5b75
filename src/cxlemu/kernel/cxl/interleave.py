"""CXL interleave encodings and the kernel's interleave capability rules.

Pure functions only.  Every rule names the kernel file it models; the code is
written from the rules (see ``/work/shared/reference/kernel-cxl-internals.md``
§1.1, §1.3, §1.6, §1.9), not copied from the kernel.

* Encodings (``drivers/cxl/cxl.h``): ways <-> eiw, granularity <-> eig.
* HDM decoder capability masks (``drivers/cxl/core/hdm.c``
  ``parse_hdm_decoder_caps`` and the pass-through decoder set-up).
* ``check_interleave_cap`` (``drivers/cxl/core/region.c``).
* Region ways/granularity relative to the root decoder
  (``drivers/cxl/core/region.c`` ``interleave_ways_store`` /
  ``interleave_granularity_store``).
* Switch / host-bridge decoder programming (``drivers/cxl/core/region.c``
  ``cxl_port_setup_targets``, ``check_last_peer``, ``cxl_calc_interleave_pos``).

Errors are raised as :class:`InterleaveError` carrying the errno the kernel
would return, so sysfs emulation can turn them into ``-errno`` directly.
"""

from __future__ import annotations

import errno
import operator
from typing import Callable, ClassVar, Hashable, Iterable, Sequence

from cxlemu.util.lazydc import dataclass

__all__ = [
    "CXL_DECODER_MIN_GRANULARITY",
    "CXL_DECODER_MAX_GRANULARITY",
    "CXL_DECODER_MAX_ENCODED_IG",
    "CXL_DECODER_MAX_INTERLEAVE",
    "CXL_SWITCH_DECODER_MAX_TARGETS",
    "VALID_WAYS",
    "VALID_GRANULARITIES",
    "VALID_EIW",
    "VALID_EIG",
    "InterleaveError",
    "is_power_of_2",
    "granularity_to_eig",
    "eig_to_granularity",
    "ways_to_eiw",
    "eiw_to_ways",
    "HdmCapability",
    "genmask",
    "interleave_address_bits",
    "check_interleave_cap",
    "validate_region_ways",
    "validate_region_granularity",
    "port_decoder_params",
    "interleave_distance",
    "check_last_peer",
    "calc_interleave_pos",
]

# --- constants (drivers/cxl/cxl.h) -----------------------------------------

CXL_DECODER_MIN_GRANULARITY = 256
CXL_DECODER_MAX_ENCODED_IG = 6
CXL_DECODER_MAX_GRANULARITY = CXL_DECODER_MIN_GRANULARITY << CXL_DECODER_MAX_ENCODED_IG  # 16 KiB
CXL_DECODER_MAX_INTERLEAVE = 16
# Switch and host-bridge decoders hold at most 8 targets (region.c
# cxl_port_setup_targets rejects iw > 8 with -ENXIO).
CXL_SWITCH_DECODER_MAX_TARGETS = 8

VALID_WAYS: tuple[int, ...] = (1, 2, 3, 4, 6, 8, 12, 16)
VALID_GRANULARITIES: tuple[int, ...] = tuple(
    CXL_DECODER_MIN_GRANULARITY << eig for eig in range(CXL_DECODER_MAX_ENCODED_IG + 1)
)  # 256 .. 16384
VALID_EIW: tuple[int, ...] = (0, 1, 2, 3, 4, 8, 9, 10)
VALID_EIG: tuple[int, ...] = tuple(range(CXL_DECODER_MAX_ENCODED_IG + 1))


class InterleaveError(ValueError):
    """An interleave parameter the kernel rejects; ``.errno`` is the errno."""

    def __init__(self, err: int, msg: str) -> None:
        super().__init__(msg)
        self.errno = err

    def __repr__(self) -> str:  # pragma: no cover - cosmetic
        return f"InterleaveError({errno.errorcode.get(self.errno, self.errno)}, {str(self)!r})"


def _as_int(value: object, what: str, err: int = errno.EINVAL) -> int:
    """Coerce ints (and numpy ints) to int; anything else is -EINVAL."""
    if isinstance(value, bool):
        raise InterleaveError(err, f"{what}: not an integer: {value!r}")
    try:
        return operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise InterleaveError(err, f"{what}: not an integer: {value!r}") from None


def is_power_of_2(n: int) -> bool:
    """Same meaning as the kernel helper: n > 0 and a single bit set."""
    return n > 0 and (n & (n - 1)) == 0


# --- encodings (drivers/cxl/cxl.h) -----------------------------------------


def granularity_to_eig(granularity: int) -> int:
    """256..16384 and a power of two -> log2(g) - 8; else -EINVAL (cxl.h)."""
    g = _as_int(granularity, "granularity")
    if (
        g > CXL_DECODER_MAX_GRANULARITY
        or g < CXL_DECODER_MIN_GRANULARITY
        or not is_power_of_2(g)
    ):
        raise InterleaveError(errno.EINVAL, f"invalid interleave granularity: {g}")
    return g.bit_length() - 1 - 8


def eig_to_granularity(eig: int) -> int:
    """eig 0..6 -> 256 << eig; anything larger (or negative) is -EINVAL (cxl.h)."""
    e = _as_int(eig, "eig")
    if e < 0 or e > CXL_DECODER_MAX_ENCODED_IG:
        raise InterleaveError(errno.EINVAL, f"invalid encoded interleave granularity: {e}")
    return CXL_DECODER_MIN_GRANULARITY << e


def ways_to_eiw(ways: int) -> int:
    """1,2,4,8,16 -> 0..4; 3,6,12 -> 8..10; anything else -EINVAL (cxl.h)."""
    w = _as_int(ways, "ways")
    if w < 0 or w > CXL_DECODER_MAX_INTERLEAVE:
        raise InterleaveError(errno.EINVAL, f"invalid interleave ways: {w}")
    if is_power_of_2(w):
        return w.bit_length() - 1
    # Non power of two: only 3 x 2^k is encodable (w == 0 falls out here too).
    if w % 3 == 0 and is_power_of_2(w // 3):
        return (w // 3).bit_length() - 1 + 8
    raise InterleaveError(errno.EINVAL, f"invalid interleave ways: {w}")


def eiw_to_ways(eiw: int) -> int:
    """eiw 0..4 -> 1 << eiw; 8..10 -> 3 << (eiw - 8); else -EINVAL (cxl.h)."""
    e = _as_int(eiw, "eiw")
    if 0 <= e <= 4:
        return 1 << e
    if 8 <= e <= 10:
        return 3 << (e - 8)
    raise InterleaveError(errno.EINVAL, f"invalid encoded interleave ways: {e}")


# --- HDM decoder capability (drivers/cxl/core/hdm.c, cxl.h) ----------------

# Bits of the HDM Decoder Capability register (CXL r3.x 8.2.4.20.1; the
# kernel names them CXL_HDM_DECODER_INTERLEAVE_* in cxl.h).
HDM_CAP_INTERLEAVE_11_8 = 1 << 8
HDM_CAP_INTERLEAVE_14_12 = 1 << 9
HDM_CAP_INTERLEAVE_3_6_12_WAY = 1 << 11
HDM_CAP_INTERLEAVE_16_WAY = 1 << 12


def genmask(high: int, low: int) -> int:
    """Bits low..high inclusive set (empty when high < low)."""
    if high < low:
        return 0
    return ((1 << (high - low + 1)) - 1) << low


@dataclass(frozen=True)
class HdmCapability:
    """Interleave capabilities of one port's HDM decoders.

    ``iw_cap_mask`` has bit *w* set for every supported way count *w*; x1, x2,
    x4 and x8 are always supported, 3/6/12 and 16 depend on capability bits.
    ``interleave_mask`` holds the HPA bits the decoder can use to pick a
    target: 11:8 with ``a11to8``, 14:12 with ``a14to12``.

    ``passthrough`` models single-dport host bridges without HDM registers and
    cxl_test mocks: every bit of both masks is set, so nothing is refused.
    """

    iw_3_6_12: bool
    iw_16: bool
    a11to8: bool
    a14to12: bool
    passthrough: bool = False

    ALL: ClassVar["HdmCapability"]

    @property
    def iw_cap_mask(self) -> int:
        if self.passthrough:
            return (1 << 64) - 1  # ~0UL
        mask = (1 << 1) | (1 << 2) | (1 << 4) | (1 << 8)
        if self.iw_3_6_12:
            mask |= (1 << 3) | (1 << 6) | (1 << 12)
        if self.iw_16:
            mask |= 1 << 16
        return mask

    @property
    def interleave_mask(self) -> int:
        if self.passthrough:
            return (1 << 32) - 1  # ~0U
        mask = 0
        if self.a11to8:
            mask |= genmask(11, 8)
        if self.a14to12:
            mask |= genmask(14, 12)
        return mask

    def supports_ways(self, ways: int) -> bool:
        return 0 <= ways < 64 and bool(self.iw_cap_mask >> ways & 1)

    @classmethod
    def from_register(cls, hdm_cap: int) -> "HdmCapability":
        """Decode the HDM Decoder Capability register value."""
        return cls(
            iw_3_6_12=bool(hdm_cap & HDM_CAP_INTERLEAVE_3_6_12_WAY),
            iw_16=bool(hdm_cap & HDM_CAP_INTERLEAVE_16_WAY),
            a11to8=bool(hdm_cap & HDM_CAP_INTERLEAVE_11_8),
            a14to12=bool(hdm_cap & HDM_CAP_INTERLEAVE_14_12),
        )

    def to_register_bits(self) -> int:
        """The capability-register bits this object represents (inverse of
        :meth:`from_register` for the four interleave fields)."""
        return (
            (HDM_CAP_INTERLEAVE_11_8 if self.a11to8 else 0)
            | (HDM_CAP_INTERLEAVE_14_12 if self.a14to12 else 0)
            | (HDM_CAP_INTERLEAVE_3_6_12_WAY if self.iw_3_6_12 else 0)
            | (HDM_CAP_INTERLEAVE_16_WAY if self.iw_16 else 0)
        )


HdmCapability.ALL = HdmCapability(True, True, True, True, passthrough=True)


def interleave_address_bits(ways: int, granularity: int) -> int:
    """Mask of HPA bits a decoder with this ways/granularity selects on.

    From the CXL decode rules (r3.1 8.2.4.20.13) as used by region.c
    ``check_interleave_cap``: none for x1 and x3; bits [eig+8, eig+eiw+7] for
    power-of-two ways; bits [eig+8, eig+eiw-1] for x6 / x12 (the factor 3 uses
    a modulo on the upper bits, not a bit field).
    """
    eiw = ways_to_eiw(ways)
    if eiw in (0, 8):
        return 0
    eig = granularity_to_eig(granularity)
    low = eig + 8
    high = eiw + eig - 1 if eiw > 8 else eiw + eig + 7
    return genmask(high, low)


def check_interleave_cap(cap: HdmCapability, ways: int, granularity: int) -> None:
    """region.c ``check_interleave_cap``: -ENXIO when the decoder can't do it.

    The kernel only calls this with ways/granularity that already encode; an
    unencodable value here raises -EINVAL from the encoder.
    """
    w = _as_int(ways, "ways")
    if not cap.supports_ways(w):
        raise InterleaveError(errno.ENXIO, f"iw: {w} ig: {granularity} is not supported")
    needed = interleave_address_bits(w, granularity)
    if needed & ~cap.interleave_mask:
        raise InterleaveError(errno.ENXIO, f"iw: {w} ig: {granularity} is not supported")


# --- region parameters relative to the root decoder (region.c) -------------


def validate_region_ways(ways: int, root_ways: int) -> None:
    """region.c ``interleave_ways_store`` rules.

    ways must encode, be a multiple of the root (host-bridge) ways and the
    quotient must be a power of two; otherwise -EINVAL.
    """
    w = _as_int(ways, "ways")
    ways_to_eiw(w)
    rw = _as_int(root_ways, "root ways")
    ways_to_eiw(rw)
    if w % rw or not is_power_of_2(w // rw):
        raise InterleaveError(errno.EINVAL, f"invalid interleave: {w}")


def validate_region_granularity(granularity: int, root_ways: int, root_granularity: int) -> None:
    """region.c ``interleave_granularity_store`` rules.

    Granularity must encode; under an interleaved root (root ways > 1) it must
    equal the root granularity exactly; otherwise -EINVAL.
    """
    g = _as_int(granularity, "granularity")
    granularity_to_eig(g)
    if _as_int(root_ways, "root ways") > 1 and g != root_granularity:
        raise InterleaveError(
            errno.EINVAL,
            f"granularity {g} must match the root decoder granularity {root_granularity}",
        )


# --- switch / host-bridge decoder programming (region.c) -------------------


def port_decoder_params(
    parent_iw: int,
    parent_ig: int,
    nr_targets: int,
    parent_is_root: bool,
    decoder_targets: int | None = None,
) -> tuple[int, int]:
    """Ways and granularity region.c ``cxl_port_setup_targets`` programs into a
    switch or host-bridge decoder.

    ``parent_iw``/``parent_ig``: for a port whose parent is the root, pass the
    root decoder's ways (HBIW) and the *region* granularity; otherwise the
    parent decoder's programmed values.  ``nr_targets`` is the number of
    distinct downstream ports this region uses at this port;
    ``decoder_targets`` the decoder's own target-list size (optional).

    Checks, in the kernel's order: target count a power of two (-EINVAL
    "invalid target count"); parent granularity and ways encode (-EINVAL);
    port ways encode (-EINVAL); ``ig = parent_ig * parent_iw`` encodes
    (-EINVAL "invalid granularity calculation"); ``iw`` at most 8 and at most
    the decoder's target count (-ENXIO).
    """
    n = _as_int(nr_targets, "nr_targets")
    if not is_power_of_2(n):
        raise InterleaveError(errno.EINVAL, f"invalid target count {n}")
    piw = _as_int(parent_iw, "parent ways")
    pig = _as_int(parent_ig, "parent granularity")
    if parent_is_root and not is_power_of_2(piw):
        # x3/x6/x12 roots: route the power-of-two part only.
        piw //= 3
    try:
        granularity_to_eig(pig)
    except InterleaveError:
        raise InterleaveError(errno.EINVAL, f"invalid parent granularity: {pig}") from None
    try:
        ways_to_eiw(piw)
    except InterleaveError:
        raise InterleaveError(errno.EINVAL, f"invalid parent interleave: {piw}") from None
    iw = n
    try:
        ways_to_eiw(iw)
    except InterleaveError:
        raise InterleaveError(errno.EINVAL, f"invalid port interleave: {iw}") from None
    try:
        ig = eig_to_granularity(granularity_to_eig(pig * piw))
    except InterleaveError:
        raise InterleaveError(
            errno.EINVAL, f"invalid granularity calculation ({pig} * {piw})"
        ) from None
    limit = CXL_SWITCH_DECODER_MAX_TARGETS if decoder_targets is None else min(
        CXL_SWITCH_DECODER_MAX_TARGETS, decoder_targets
    )
    if iw > limit:
        raise InterleaveError(errno.ENXIO, f"ways: {iw} overflows targets: {limit}")
    return iw, ig


def interleave_distance(nr_targets_to_root: Iterable[int], root_ways: int) -> int:
    """region.c "distance" between peer downstream ports of one port.

    ``nr_targets_to_root``: the region's target count at this port and at every
    ancestor port below the root (in any order); multiplied by the root
    decoder's ways.
    """
    d = _as_int(root_ways, "root ways")
    for n in nr_targets_to_root:
        d *= _as_int(n, "nr_targets")
    return d


def check_last_peer(
    pos: int,
    distance: int,
    dport: Hashable,
    dport_at_position: Callable[[int], Hashable],
) -> None:
    """region.c ``check_last_peer``: an endpoint at ``pos`` that reuses a dport
    already in this port's target list needs ``pos >= distance`` and the
    endpoint at ``pos - distance`` must route through the same dport
    (``dport_at_position`` answers which dport that endpoint uses here).
    Both failures are -ENXIO.
    """
    if pos < distance:
        raise InterleaveError(errno.ENXIO, f"cannot host position {pos} (distance {distance})")
    peer = dport_at_position(pos - distance)
    if peer != dport:
        raise InterleaveError(
            errno.ENXIO, f"pos {pos} mismatched peer at pos {pos - distance}"
        )


def calc_interleave_pos(levels: Sequence[tuple[int, int]]) -> int:
    """region.c ``cxl_calc_interleave_pos`` arithmetic.

    ``levels`` lists, from the endpoint's parent port up to the root decoder,
    ``(parent_pos, parent_ways)``: the index of the port's parent dport in the
    matching decoder's target list, and that decoder's ways.  Each step does
    ``pos = pos * parent_ways + parent_pos`` starting from 0.
    """
    pos = 0
    for parent_pos, parent_ways in levels:
        if not 0 <= parent_pos < parent_ways:
            raise InterleaveError(errno.ENXIO, f"dport index {parent_pos} not in 0..{parent_ways - 1}")
        pos = pos * parent_ways + parent_pos
    return pos
