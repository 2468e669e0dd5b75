"""cxl_acpi's acceptance rules for the CEDT (drivers/cxl/acpi.c): which
CFMWS windows become root decoders, which CHBS a host bridge uses, which
CXIMS XOR maps a window gets, and what the driver logs when it skips one.

The table codec is ``cxlemu.hw.acpi.cedt`` (the firmware's side); these are
the kernel's decisions about what it reads, pure functions returning a
:class:`CedtError` (or ``None``) so ``cxl_acpi_probe`` (kernel/cxl/core.py)
applies them in the kernel's order.
"""

from __future__ import annotations

import errno as _errno
from collections.abc import Iterable

from cxlemu.hw.acpi.cedt import (CFMWS_ARITHMETIC_MODULO, CFMWS_ARITHMETIC_XOR, CFMWS_FIXED_SIZE,
                                 CHBS_LENGTH_CXL11, CHBS_LENGTH_CXL20, CHBS_VERSION_CXL11,
                                 CHBS_VERSION_CXL20, SZ_256M, CedtSubtable, Cfmws, Chbs, Cxims)
from cxlemu.hw.acpi.table import c_hex
from cxlemu.kernel.cxl.interleave import eig_to_granularity, eiw_to_ways
from cxlemu.util.lazydc import dataclass


@dataclass(frozen=True)
class CedtError:
    """A kernel acceptance failure: positive ``errno`` and the message the kernel logs.

    ``handler_errno`` is set when an inner CEDT-walk handler failed with a
    different errno that the table walker converted (e.g. -ENXIO from the
    CXIMS handler surfaces as -EINVAL).
    """

    errno: int
    message: str
    handler_errno: int | None = None

    def __str__(self) -> str:
        return f"{self.message} ({-self.errno})"


# --------------------------------------------------------------------------
# encode
# --------------------------------------------------------------------------


def validate_cfmws(c: Cfmws) -> CedtError | None:
    """Checks a CFMWS the way ``cxl_acpi_cfmws_verify`` + ``__cxl_parse_cfmws`` do.

    Order and messages follow drivers/cxl/acpi.c: arithmetic, base alignment,
    size alignment, ENIW, header length; then the HBIG decode that
    ``__cxl_parse_cfmws`` performs (it fails silently in the kernel, the
    message here is ours). All failures are -EINVAL.
    """
    if c.interleave_arithmetic not in (CFMWS_ARITHMETIC_MODULO, CFMWS_ARITHMETIC_XOR):
        return CedtError(_errno.EINVAL, f"CFMWS Unknown Interleave Arithmetic: {c.interleave_arithmetic}")
    if c.base_hpa % SZ_256M:
        return CedtError(_errno.EINVAL, "CFMWS Base HPA not 256MB aligned")
    if c.window_size % SZ_256M:
        return CedtError(_errno.EINVAL, "CFMWS Window Size not 256MB aligned")
    try:
        ways = eiw_to_ways(c.eniw)
    except ValueError:
        return CedtError(_errno.EINVAL, f"CFMWS Interleave Ways ({c.eniw}) invalid")
    expected = CFMWS_FIXED_SIZE + 4 * ways
    if c.header_length < expected:
        return CedtError(_errno.EINVAL, f"CFMWS length {c.header_length} less than expected {expected}")
    try:
        eig_to_granularity(c.hbig)
    except ValueError:
        return CedtError(
            _errno.EINVAL, f"CFMWS Host Bridge Interleave Granularity ({c.hbig}) invalid"
        )
    return None


def chbs_is_usable(c: Chbs) -> bool:
    """Whether ``cxl_get_chbs_iter`` (acpi.c) considers this CHBS at all.

    A CXL 1.1 entry must describe 0x2000 bytes, a CXL 2.0 entry 0x10000
    bytes, and the base must be non-zero. Like the kernel, entries with any
    other ``cxl_version`` are not length-checked.
    """
    if c.cxl_version == CHBS_VERSION_CXL11 and c.length != CHBS_LENGTH_CXL11:
        return False
    if c.cxl_version == CHBS_VERSION_CXL20 and c.length != CHBS_LENGTH_CXL20:
        return False
    return c.base != 0


@dataclass(frozen=True)
class ChbsMatch:
    """Result of :func:`find_chbs`: the winning entry and how many version switches were seen."""

    chbs: Chbs | None
    nr_versions: int

    @property
    def mixed(self) -> bool:
        """The kernel then logs "Unsupported platform config, mixed Virtual Host and
        Restricted CXL Host hierarchy."."""
        return self.nr_versions > 1


def find_chbs(cedt: Iterable[CedtSubtable], uid: int) -> ChbsMatch:
    """CHBS lookup for host bridge ``uid`` as ``cxl_get_chbs`` does.

    Unusable entries are ignored; every change of ``cxl_version`` between
    consecutive usable entries counts as one more version; the *first*
    usable entry whose UID matches wins.
    """
    found: Chbs | None = None
    nr_versions = 0
    saved: int | None = None
    for sub in cedt:
        if not isinstance(sub, Chbs) or not chbs_is_usable(sub):
            continue
        if saved != sub.cxl_version:
            saved = sub.cxl_version
            nr_versions += 1
        if found is None and sub.uid == uid:
            found = sub
    return ChbsMatch(found, nr_versions)


def cxims_for_window(cedt: Iterable[CedtSubtable], cfmws: Cfmws) -> tuple[int, ...] | CedtError:
    """The XOR maps the kernel attaches to ``cfmws`` (acpi.c ``cxl_parse_cxims``).

    Modulo windows and XOR windows of 1 or 3 ways need no maps → ``()``.
    Otherwise the needed count is log2(ways) (2/4/8/16) or log2(ways/3)
    (6/12). Every CXIMS is visited in table order:

    * an HBIG that is not encodable makes the handler fail (-EINVAL);
    * a CXIMS whose granularity differs from the window's is skipped;
    * a matching CXIMS with too few maps makes the handler fail with -ENXIO
      ("CXIMS nr_xormaps[%d] expected[%d]", a dev_dbg);
    * otherwise its first N maps are taken (a later match replaces them).

    Any handler failure aborts the CEDT walk, which the table walker reports
    as -EINVAL (``lib/fw_table.c``), so the window fails with -EINVAL;
    ``handler_errno`` keeps the handler's own errno. No match at all →
    -EINVAL "No CXIMS for HBIG %u".
    """
    if cfmws.interleave_arithmetic != CFMWS_ARITHMETIC_XOR:
        return ()
    try:
        ways = eiw_to_ways(cfmws.eniw)
    except ValueError:
        return CedtError(_errno.EINVAL, f"CFMWS Interleave Ways ({cfmws.eniw}) invalid")
    if ways in (1, 3):
        return ()
    try:
        ig = eig_to_granularity(cfmws.hbig)
    except ValueError:
        return CedtError(_errno.EINVAL, f"CFMWS Host Bridge Interleave Granularity ({cfmws.hbig}) invalid")
    nr_maps = (ways.bit_length() - 1) if ways & (ways - 1) == 0 else ((ways // 3).bit_length() - 1)

    chosen: tuple[int, ...] | None = None
    for sub in cedt:
        if not isinstance(sub, Cxims):
            continue
        try:
            hbig = eig_to_granularity(sub.hbig)
        except ValueError:
            return CedtError(
                _errno.EINVAL,
                f"CXIMS HBIG ({sub.hbig}) invalid",
                handler_errno=_errno.EINVAL,
            )
        if hbig != ig:
            continue
        if len(sub.xormaps) < nr_maps:
            return CedtError(
                _errno.EINVAL,
                f"CXIMS nr_xormaps[{len(sub.xormaps)}] expected[{nr_maps}]",
                handler_errno=_errno.ENXIO,
            )
        chosen = tuple(sub.xormaps[:nr_maps])
    if chosen is None:
        return CedtError(_errno.EINVAL, f"No CXIMS for HBIG {ig}")
    return chosen


def check_window(cedt: Iterable[CedtSubtable], cfmws: Cfmws) -> CedtError | None:
    """All table-level checks ``__cxl_parse_cfmws`` applies to one window (validate, then CXIMS)."""
    err = validate_cfmws(cfmws)
    if err is not None:
        return err
    maps = cxims_for_window(cedt, cfmws)
    return maps if isinstance(maps, CedtError) else None


def failed_window_message(cfmws: Cfmws, err: CedtError) -> str:
    """The dev_err acpi.c logs when a window is skipped (the driver keeps loading)."""
    return (
        f"Failed to add decode range: [{c_hex(cfmws.base_hpa)} - "
        f"{c_hex((cfmws.base_hpa + cfmws.window_size - 1) & (2**64 - 1))}] ({-err.errno})"
    )


def root_decoder_granularity(c: Cfmws) -> int:
    """Granularity the kernel gives a window's root decoder: 256 for x1
    windows, else the HBIG granularity (acpi.c __cxl_parse_cfmws)."""
    return 256 if eiw_to_ways(c.eniw) == 1 else eig_to_granularity(c.hbig)
