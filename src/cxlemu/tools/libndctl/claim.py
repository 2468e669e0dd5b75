"""libndctl btt, pfn and dax devices: the claims on a namespace
(ndctl/lib/libndctl.c add_btt/add_pfn/add_dax and their setters)."""

from __future__ import annotations

import errno
import uuid as uuidlib
from typing import TYPE_CHECKING

from cxlemu.tools.libcxl.cnum import c_strtoull
from .base import (
    NULL_UUID, PFN_LOC_NONE, PFN_LOC_PMEM, PFN_LOC_RAM, SZ_2M, SZ_4K, UINT_MAX, ULLONG_MAX,
    block_device, devname, parse_lbasize, parse_uuid)
from .daxdev import DaxRegion

if TYPE_CHECKING:
    from .namespace import NdNamespace
    from .region import NdRegion


class NdPfn:
    kind = "pfn"

    def __init__(self, region: NdRegion, dev_id: int, path: str):
        self.region = region
        self.ctx = region.ctx
        self.id = dev_id
        self.path = path
        self.uuid = NULL_UUID
        self.loc = PFN_LOC_NONE
        self.align = 0
        self.resource = ULLONG_MAX
        self.size = ULLONG_MAX
        self.alignments: list[int] = []
        self.generation = region.generation

    @classmethod
    def load(cls, region: NdRegion, dev_id: int, path: str):
        ctx = region.ctx
        x = cls(region, dev_id, path)
        if ctx.read(f"{path}/modalias") is None:
            return None
        v = ctx.read(f"{path}/uuid")
        if v is None:
            return None
        if v:
            u = parse_uuid(v)
            if u is None:
                return None
            x.uuid = u
        v = ctx.read(f"{path}/mode")
        locs = {"none": PFN_LOC_NONE, "ram": PFN_LOC_RAM, "pmem": PFN_LOC_PMEM}
        if v not in locs:
            return None
        x.loc = locs[v]
        v = ctx.read(f"{path}/align")
        x.align = c_strtoull(v) if v is not None else 0
        v = ctx.read(f"{path}/resource")
        x.resource = ULLONG_MAX if v is None else c_strtoull(v)
        v = ctx.read(f"{path}/size")
        x.size = ULLONG_MAX if v is None else c_strtoull(v)
        v = ctx.read(f"{path}/supported_alignments")
        if v is None:
            v = f"{SZ_4K} {SZ_2M}"
        parsed = parse_lbasize(v)
        if parsed is None:
            return None
        x.alignments = parsed[0]
        return x

    @property
    def devname(self) -> str:
        return devname(self.path)

    def is_valid(self) -> bool:
        return self.generation == self.region.generation

    def is_enabled(self) -> bool:
        return self.ctx.is_enabled(self.path)

    def namespace(self) -> NdNamespace | None:
        v = self.ctx.read(f"{self.path}/namespace")
        return next((n for n in self.region.namespaces() if n.devname == v), None) if v else None

    def has_align(self) -> bool:
        return self.ctx.io.exists(f"{self.path}/align")

    def block_device(self) -> str:
        return block_device(self.ctx, self.path)

    def _w(self, attr: str, text: str) -> int:
        try:
            self.ctx.write(f"{self.path}/{attr}", text)
            return 0
        except OSError as e:
            return -(e.errno or errno.EIO)

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

    def set_namespace(self, ns: NdNamespace | None) -> int:
        return self._w("namespace", ns.devname if ns else "\n")

    def enable(self) -> int:
        if self.is_enabled():
            return 0
        self.ctx.bind(self.devname)
        if not self.is_enabled():
            self.ctx.log.err(f"ndctl_{self.kind}_enable", f"{self.devname}: failed to enable")
            return -errno.ENXIO
        return 0

    def delete(self) -> int:
        if not self.is_valid():
            return 0
        self.ctx.unbind(self.path) if self.is_enabled() else None
        rc = self.set_namespace(None)
        if rc:
            self.ctx.log.dbg(f"ndctl_{self.kind}_delete", f"{self.devname}: failed to clear namespace: {rc}")
        return rc


class NdDax(NdPfn):
    kind = "dax"

    def daxctl_region(self) -> "DaxRegion | None":
        return DaxRegion.load(self.ctx, self.region.id, self.path)


class NdBtt:
    kind = "btt"

    def __init__(self, region: NdRegion, dev_id: int, path: str):
        self.region = region
        self.ctx = region.ctx
        self.id = dev_id
        self.path = path
        self.uuid = NULL_UUID
        self.lbasize: list[int] = []
        self.lbasize_select = -1
        self.size = ULLONG_MAX
        self.generation = region.generation

    @classmethod
    def load(cls, region: NdRegion, dev_id: int, path: str):
        ctx = region.ctx
        x = cls(region, dev_id, path)
        if ctx.read(f"{path}/modalias") is None:
            return None
        v = ctx.read(f"{path}/uuid")
        if v is None:
            return None
        if v:
            u = parse_uuid(v)
            if u is None:
                return None
            x.uuid = u
        v = ctx.read(f"{path}/sector_size")
        if v is None:
            return None
        parsed = parse_lbasize(v)
        if parsed is None:
            return None
        x.lbasize, x.lbasize_select = parsed
        v = ctx.read(f"{path}/size")
        x.size = ULLONG_MAX if v is None else c_strtoull(v)
        return x

    @property
    def devname(self) -> str:
        return devname(self.path)

    @property
    def sector_size(self) -> int:
        if self.lbasize_select < 0:
            return UINT_MAX
        return self.lbasize[self.lbasize_select]

    def is_valid(self) -> bool:
        return self.generation == self.region.generation

    def is_enabled(self) -> bool:
        return self.ctx.is_enabled(self.path)

    def namespace(self) -> NdNamespace | None:
        v = self.ctx.read(f"{self.path}/namespace")
        return next((n for n in self.region.namespaces() if n.devname == v), None) if v else None

    def block_device(self) -> str:
        return block_device(self.ctx, self.path)

    def _w(self, attr: str, text: str) -> int:
        try:
            self.ctx.write(f"{self.path}/{attr}", text)
            return 0
        except OSError as e:
            return -(e.errno or errno.EIO)

    def set_uuid(self, u: uuidlib.UUID) -> int:
        return self._w("uuid", str(u))

    def set_sector_size(self, size: int) -> int:
        return self._w("sector_size", f"{size}\n")

    def set_namespace(self, ns: NdNamespace | None) -> int:
        return self._w("namespace", ns.devname if ns else "\n")

    def enable(self) -> int:
        if self.is_enabled():
            return 0
        self.ctx.bind(self.devname)
        if not self.is_enabled():
            self.ctx.log.err("ndctl_btt_enable", f"{self.devname}: failed to enable")
            return -errno.ENXIO
        return 0

    def delete(self) -> int:
        if not self.is_valid():
            return 0
        if self.is_enabled():
            self.ctx.unbind(self.path)
        return self.set_namespace(None)
