"""The device-dax view ndctl embeds for an nd dax device
(daxctl/lib/libdaxctl.c: the dax region and its devices)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cxlemu.tools.libcxl.cnum import c_strtol_s32, c_strtoull
from .base import ULLONG_MAX, ULONG_MAX, devname

if TYPE_CHECKING:
    from .ctx import NdctlCtx


class DaxRegion:
    def __init__(self, ctx: NdctlCtx, region_id: int, path: str):
        self.ctx = ctx
        self.id = region_id
        self.path = path
        self.size = ULLONG_MAX
        self.align = ULONG_MAX

    @classmethod
    def load(cls, ctx: NdctlCtx, region_id: int, path: str) -> "DaxRegion":
        r = cls(ctx, region_id, path)
        v = ctx.read(f"{path}/dax_region/size")
        if v is not None:
            r.size = c_strtoull(v)
        v = ctx.read(f"{path}/dax_region/align")
        if v is not None:
            r.align = c_strtoull(v)
        return r

    def available_size(self) -> int:
        v = self.ctx.read(f"{self.path}/dax_region/available_size")
        if not v:
            return 0
        try:
            return int(v, 0)
        except ValueError:
            return 0

    def devices(self) -> list["DaxDev"]:
        out = []
        for base in (self.path, f"{self.path}/dax"):
            for i, p in self.ctx.scan(base, f"dax{self.id}."):
                d = DaxDev.load(self, i, p)
                if d is not None and not any(x.id == d.id for x in out):
                    out.append(d)
        return out


class DaxDev:
    def __init__(self, region: DaxRegion, dev_id: int, path: str):
        self.region = region
        self.ctx = region.ctx
        self.id = dev_id
        self.path = path
        self.size = 0
        self.align = 0
        self.target_node = -1
        self.resource = 0

    @classmethod
    def load(cls, region: DaxRegion, dev_id: int, path: str) -> "DaxDev | None":
        ctx = region.ctx
        d = cls(region, dev_id, path)
        if ctx.io.chardev(f"/dev/{d.devname}") is None:
            return None
        v = ctx.read(f"{path}/resource")
        d.resource = c_strtoull(v) if v is not None else 0
        v = ctx.read(f"{path}/size")
        if v is None:
            return None
        d.size = c_strtoull(v)
        v = ctx.read(f"{path}/align")
        d.align = c_strtoull(v) if v is not None else 0
        v = ctx.read(f"{path}/target_node")
        d.target_node = c_strtol_s32(v) if v is not None else -1
        return d

    @property
    def devname(self) -> str:
        return devname(self.path)

    def is_enabled(self) -> bool:
        return self.ctx.is_enabled(self.path)

    def mode(self) -> str:
        try:
            drv = self.ctx.io.backend.readlink(f"{self.path}/driver")
        except OSError:
            return "devdax"
        return "system-ram" if drv.rsplit("/", 1)[-1] == "kmem" else "devdax"
