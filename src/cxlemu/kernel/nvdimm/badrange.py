"""Bad blocks of CXL persistent memory as libnvdimm shows them
(drivers/nvdimm/badrange.c, region_devs.c ``badblocks``, nd_pmem's
``badblocks``; the bus-level Address Range Scrub / Clear Error commands
ndctl uses, ``ND_CMD_ARS_CAP`` / ``ND_CMD_CLEAR_ERROR``).

On NVDIMM (NFIT) platforms the bus provider fills the bus's *badrange*
list from ARS at region creation and from machine checks, and regions show
it as 512-byte sectors.  Mainline CXL does not feed its poison lists into
libnvdimm; cxlemu does, as an extension on by default
(``boot.cxl_pmem_badblocks``): a CXL pmem region's bad blocks are the
listed poison of its member devices, translated DPA -> HPA with the
region's interleave (modulo or XOR), recomputed from the devices on every
read; the CXL nvdimm bus answers the ARS Capabilities and Clear Error
ioctls (Clear Poison on exactly the poisoned lines of the range) so that
``ndctl clear-errors`` works.  docs/fidelity.md says so.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from cxlemu.hw.mailbox.opcodes import Opcode
from cxlemu.kernel.base.device import KernelError
from cxlemu.util.lazy import lazy_module

np = lazy_module("numpy")
P = lazy_module("cxlemu.hw.mailbox.payloads")

if TYPE_CHECKING:
    from cxlemu.kernel.kernel import Kernel

SECTOR = 512
CLEAR_ERR_UNIT = 64


def enabled(k: "Kernel") -> bool:
    return bool(getattr(k.platform.topology.boot, "cxl_pmem_badblocks", True))


def _members(k: "Kernel", cr) -> list:
    return [t for t in cr.targets[:cr.nr_targets] if t is not None and t.dpa_start is not None]


def region_poison_hpa(k: "Kernel", cr) -> list[tuple[int, int]]:
    """(hpa, length) of every listed poisoned range of a CXL region's members,
    split at interleave granules, sorted and merged."""
    if cr is None or cr.res is None:
        return []
    geom = k.cxl.regions.geometry(cr)
    g = cr.interleave_granularity if cr.interleave_ways > 1 else None
    out: list[tuple[int, int]] = []
    for t in _members(k, cr):
        hw = t.memdev.hw
        lo, hi = t.dpa_start, t.dpa_start + t.dpa_len
        for rec in hw.poison.in_range(lo, hi, listed_only=True):
            s, e = max(lo, rec.dpa), min(hi, rec.dpa + rec.length)
            pos = s
            while pos < e:
                off = pos - t.dpa_start
                step = e - pos if g is None else min(e - pos, g - off % g)
                out.append((geom.to_hpa(t.pos, off), step))
                pos += step
    out.sort()
    merged: list[tuple[int, int]] = []
    for h, n in out:
        if merged and h <= merged[-1][0] + merged[-1][1]:
            ph, pn = merged[-1]
            merged[-1] = (ph, max(pn, h + n - ph))
        else:
            merged.append((h, n))
    return merged


def region_badblocks(k: "Kernel", nd_region) -> list[tuple[int, int]]:
    """(first sector, sector count) relative to the region start."""
    if not enabled(k):
        return []
    base = nd_region.ndr_start
    out: list[tuple[int, int]] = []
    for h, n in region_poison_hpa(k, nd_region.cxl_region):
        s0, s1 = (h - base) // SECTOR, -(-(h + n - base) // SECTOR)
        if out and s0 <= out[-1][0] + out[-1][1]:
            a, c = out[-1]
            out[-1] = (a, max(c, s1 - a))
        else:
            out.append((s0, s1 - s0))
    return out


def badblocks_text(entries: list[tuple[int, int]]) -> str:
    """badblocks_show(): "%llu %d\\n" per range."""
    return "".join(f"{s} {n}\n" for s, n in entries)


# ---- bus commands -----------------------------------------------------------------------------

def _region_at(k: "Kernel", bus, hpa: int):
    for r in k.nvdimm.regions() if hasattr(k.nvdimm, "regions") else []:
        if r.parent is bus and r.ndr_start <= hpa < r.ndr_start + r.ndr_size:
            return r
    return None


def ars_cap(k: "Kernel", bus, addr: int, length: int) -> tuple[int, int, int, int, int]:
    """ND_CMD_ARS_CAP: (status, max_ars_out, clear_err_unit, address, length)."""
    if not enabled(k):
        raise KernelError(errno.ENOTTY)
    if length <= 0 or _region_at(k, bus, addr) is None:
        return (1, 0, 0, addr, length)            # ND_ARS_STATUS: invalid range
    return (0, 4096, CLEAR_ERR_UNIT, addr, length)


def clear_error(k: "Kernel", bus, addr: int, length: int) -> int:
    """ND_CMD_CLEAR_ERROR: Clear Poison on the poisoned lines of [addr, addr+length);
    returns the bytes cleared (the whole range when every line could be handled)."""
    if not enabled(k):
        raise KernelError(errno.ENOTTY)
    if addr % CLEAR_ERR_UNIT or length % CLEAR_ERR_UNIT or length <= 0:
        raise KernelError(errno.EINVAL)
    r = _region_at(k, bus, addr)
    if r is None or addr + length > r.ndr_start + r.ndr_size:
        raise KernelError(errno.ENXIO)
    cr = r.cxl_region
    geom = k.cxl.regions.geometry(cr)
    from cxlemu.kernel.cxl.translate import to_dpa_array
    hpas = np.arange(addr, addr + length, CLEAR_ERR_UNIT, dtype=np.uint64)
    pos, dpa_off = to_dpa_array(geom, hpas)
    members = {t.pos: t for t in _members(k, cr)}
    for p in np.unique(pos).tolist():
        t = members.get(int(p))
        if t is None:
            continue
        md = t.memdev
        dpas = dpa_off[pos == p].astype(np.int64) + t.dpa_start
        bad = dpas[md.hw.poison.mask(dpas, CLEAR_ERR_UNIT)]
        for dpa in bad.tolist():            # only lines that are poisoned: others keep their data
            rc, _ = k.cxl.mailbox.internal(md, Opcode.CLEAR_POISON, P.ClearPoisonInput(int(dpa)).encode())
            if rc:
                raise KernelError(errno.EIO)
    k.dirty = True
    return length
