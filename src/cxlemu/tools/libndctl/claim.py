"""libndctl btt, pfn and dax devices: the claims on a namespace
(ndctl/lib/libndctl.c add_btt/add_pfn/add_dax and their setters)."""

from __future__ import annotations

import errno
import uuid as uuidlib
from typing import TYPE_CHECKING

from cxlemu.tools.libdaxctl.lib import DaxctlRegion
from .base import (
    NULL_UUID, PFN_LOC_NONE, PFN_LOC_PMEM, PFN_LOC_RAM, SZ_2M, SZ_4K, UINT_MAX, ULLONG_MAX, NdRegionChild,
    parse_lbasize, read_uuid)

if TYPE_CHECKING:
    from .namespace import NdNamespace
    from .region import NdRegion


class _NdClaim(NdRegionChild):
    """What btt and pfn/dax devices share: ``modalias`` and ``uuid`` are
    required, ``namespace`` names the claimed namespace (written empty to
    release it)."""

    def __init__(self, region: NdRegion, dev_id: int, path: str):
        super().__init__(region, dev_id, path)
        self.uuid = NULL_UUID
        self.size = ULLONG_MAX

    @classmethod
    def load(cls, region: NdRegion, dev_id: int, path: str):
        """add_btt() / add_pfn() / add_dax(): None when an attribute the
        device needs is missing or malformed."""
        ctx = region.ctx
        x = cls(region, dev_id, path)
        if ctx.read(f"{path}/modalias") is None:
            return None
        u = read_uuid(ctx, f"{path}/uuid")
        if u is None:
            return None
        x.uuid = u
        return x if x._load_attrs() else None

    def _load_attrs(self) -> bool:
        """The attributes after ``uuid``; False drops the device."""
        raise NotImplementedError

    def namespace(self) -> NdNamespace | None:
        v = self.ctx.read(f"{self.path}/namespace")
        return next((n for n in self.region.namespaces() if n.devname == v), None) if v else None

    def set_namespace(self, ns: NdNamespace | None) -> int:
        return self._w("namespace", ns.devname if ns else "\n")

    def delete(self) -> int:
        if not self.is_valid():
            return 0
        if self.is_enabled():
            self.ctx.unbind(self.path)
        return self.set_namespace(None)


class NdPfn(_NdClaim):
    kind = "pfn"

    def __init__(self, region: NdRegion, dev_id: int, path: str):
        super().__init__(region, dev_id, path)
        self.loc = PFN_LOC_NONE
        self.align = 0
        self.resource = ULLONG_MAX
        self.alignments: list[int] = []

    def _load_attrs(self) -> bool:
        ctx, path = self.ctx, self.path
        v = ctx.read(f"{path}/mode")
        locs = {"none": PFN_LOC_NONE, "ram": PFN_LOC_RAM, "pmem": PFN_LOC_PMEM}
        if v not in locs:
            return False
        self.loc = locs[v]
        self.align = ctx.read_num(f"{path}/align", 0)
        self.resource = ctx.read_num(f"{path}/resource", ULLONG_MAX)
        self.size = ctx.read_num(f"{path}/size", ULLONG_MAX)
        v = ctx.read(f"{path}/supported_alignments")
        if v is None:
            v = f"{SZ_4K} {SZ_2M}"
        parsed = parse_lbasize(v)
        if parsed is None:
            return False
        self.alignments = parsed[0]
        return True

    def has_align(self) -> bool:
        return self.ctx.io.exists(f"{self.path}/align")

    def set_uuid(self, u: uuidlib.UUID) -> int:
        rc = self._w("uuid", str(u))
        if rc == 0:
            self.uuid = u
        return rc

    def set_location(self, loc: int) -> int:
        names = {PFN_LOC_NONE: "none", PFN_LOC_RAM: "ram", PFN_LOC_PMEM: "pmem"}
        if loc not in names:
            return -errno.EINVAL
        rc = self._w("mode", names[loc])
        if rc == 0:
            self.loc = loc
        return rc

    def set_align(self, align: int) -> int:
        rc = self._w("align", f"{align}\n")
        if rc == 0:
            self.align = align
        return rc

    def delete(self) -> int:
        rc = super().delete()
        if rc:
            self.ctx.log.dbg(f"ndctl_{self.kind}_delete", f"{self.devname}: failed to clear namespace: {rc}")
        return rc


class NdDax(NdPfn):
    kind = "dax"

    def daxctl_region(self) -> DaxctlRegion:
        """ndctl_dax_get_daxctl_region(): the device-dax region below this
        device, read afresh on every call (libndctl objects are not cached)."""
        return DaxctlRegion(self.ctx.daxctl, self.region.id, self.path)


class NdBtt(_NdClaim):
    kind = "btt"

    def __init__(self, region: NdRegion, dev_id: int, path: str):
        super().__init__(region, dev_id, path)
        self.lbasize: list[int] = []
        self.lbasize_select = -1

    def _load_attrs(self) -> bool:
        ctx, path = self.ctx, self.path
        v = ctx.read(f"{path}/sector_size")
        if v is None:
            return False
        parsed = parse_lbasize(v)
        if parsed is None:
            return False
        self.lbasize, self.lbasize_select = parsed
        self.size = ctx.read_num(f"{path}/size", ULLONG_MAX)
        return True

    @property
    def sector_size(self) -> int:
        if self.lbasize_select < 0:
            return UINT_MAX
        return self.lbasize[self.lbasize_select]

    def set_uuid(self, u: uuidlib.UUID) -> int:
        return self._w("uuid", str(u))

    def set_sector_size(self, size: int) -> int:
        return self._w("sector_size", f"{size}\n")
