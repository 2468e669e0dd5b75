"""libndctl namespaces (ndctl/lib/libndctl.c add_namespace, ndctl_namespace_*
accessors and setters, enable/disable, mode)."""

from __future__ import annotations

import errno
import uuid as uuidlib
from typing import TYPE_CHECKING

from cxlemu.tools.libcxl.cnum import c_strtol_s32, c_strtoull
from .base import (
    ENFORCE_NAMES, ND_DEVICE_NAMESPACE_BLK, ND_DEVICE_NAMESPACE_IO, ND_DEVICE_NAMESPACE_PMEM,
    ND_MIN_NAMESPACE_SIZE, NS_MODE_DEVDAX, NS_MODE_FSDAX, NS_MODE_RAW, NS_MODE_SECTOR,
    NS_MODE_UNKNOWN, NULL_UUID, UINT_MAX, ULLONG_MAX, NdRegionChild, parse_lbasize, read_uuid)

if TYPE_CHECKING:
    from .claim import NdBtt, NdDax, NdPfn
    from .region import NdRegion
    from .ctx import NdBus


class NdNamespace(NdRegionChild):
    kind = "namespace"

    def __init__(self, region: NdRegion, ns_id: int, path: str):
        super().__init__(region, ns_id, path)
        self.type = 0
        self.size = 0
        self.resource = ULLONG_MAX
        self.raw_mode = 0
        self.numa_node = -1
        self.target_node = -1
        self.enforce_mode = NS_MODE_FSDAX
        self.lbasize: list[int] = []
        self.lbasize_select = -1
        self.alt_name: str | None = None
        self.uuid: uuidlib.UUID = NULL_UUID

    @classmethod
    def load(cls, region: NdRegion, ns_id: int, path: str) -> "NdNamespace | None":
        ctx = region.ctx
        ns = cls(region, ns_id, path)
        v = ctx.read(f"{path}/nstype")
        if v is None:
            return None
        ns.type = c_strtoull(v)
        v = ctx.read(f"{path}/size")
        if v is None:
            return None
        ns.size = c_strtoull(v)
        ns.resource = ctx.read_num(f"{path}/resource", ULLONG_MAX)
        v = ctx.read(f"{path}/force_raw")
        if v is None:
            return None
        ns.raw_mode = c_strtoull(v)
        ns.numa_node = ctx.read_num(f"{path}/numa_node", -1, c_strtol_s32)
        ns.target_node = ctx.read_num(f"{path}/target_node", -1, c_strtol_s32)
        v = ctx.read(f"{path}/holder_class")
        if v is not None:
            ns.enforce_mode = next((k for k, n in ENFORCE_NAMES.items() if n == v), NS_MODE_UNKNOWN)
        if ns.type in (ND_DEVICE_NAMESPACE_BLK, ND_DEVICE_NAMESPACE_PMEM):
            v = ctx.read(f"{path}/sector_size")
            parsed = parse_lbasize(v if v is not None else "")
            if parsed is not None:
                ns.lbasize, ns.lbasize_select = parsed
            v = ctx.read(f"{path}/alt_name")
            if v is None:
                return None
            ns.alt_name = v
            u = read_uuid(ctx, f"{path}/uuid")
            if u is None:
                return None
            ns.uuid = u
        if ctx.read(f"{path}/modalias") is None:
            return None
        return ns

    @property
    def bus(self) -> NdBus:
        return self.region.bus

    def holder(self) -> str | None:
        return self.ctx.read(f"{self.path}/holder")

    def btt(self) -> "NdBtt | None":
        h = self.holder()
        return next((x for x in self.region.btts() if x.devname == h), None) if h else None

    def pfn(self) -> "NdPfn | None":
        h = self.holder()
        return next((x for x in self.region.pfns() if x.devname == h), None) if h else None

    def dax(self) -> "NdDax | None":
        h = self.holder()
        return next((x for x in self.region.daxs() if x.devname == h), None) if h else None

    def mode(self) -> int:
        v = self.ctx.read(f"{self.path}/mode")
        return {"memory": NS_MODE_FSDAX, "dax": NS_MODE_DEVDAX, "raw": NS_MODE_RAW,
                "safe": NS_MODE_SECTOR}.get(v or "", -errno.ENXIO)

    @property
    def sector_size(self) -> int:
        if not self.lbasize:
            return 0
        if self.lbasize_select < 0 or self.lbasize_select > len(self.lbasize):
            return UINT_MAX
        return self.lbasize[self.lbasize_select]

    def is_active(self) -> bool:
        btt, pfn, dax = self.btt(), self.pfn(), self.dax()
        return bool((btt and btt.is_enabled()) or (pfn and pfn.is_enabled()) or (dax and dax.is_enabled())
                    or (not btt and not pfn and not dax and self.is_enabled()))

    def is_configured(self) -> bool:
        if self.type == ND_DEVICE_NAMESPACE_IO:
            return True
        return self.size >= ND_MIN_NAMESPACE_SIZE and self.uuid != NULL_UUID

    def is_configuration_idle(self) -> bool:
        if self.is_active():
            return False
        if self.is_configured():
            return self.type == ND_DEVICE_NAMESPACE_IO
        return True

    # ---- writes -------------------------------------------------------------------------
    def set_uuid(self, u: uuidlib.UUID) -> int:
        rc = self._w("uuid", str(u))
        if rc == 0:
            self.uuid = u
        return rc

    def set_alt_name(self, name: str) -> int:
        if self.alt_name is None:
            return 0
        if len(name.encode()) >= 64:
            return -errno.EINVAL
        rc = self._w("alt_name", name)
        if rc == 0:
            self.alt_name = name
        return rc

    def _set_size(self, size: int) -> int:
        rc = self._w("size", f"{size:#x}\n" if size else "0\n")
        if rc < 0:
            return rc
        self.size = size
        self.resource = self.ctx.read_num(f"{self.path}/resource", ULLONG_MAX)
        return 0

    def set_size(self, size: int) -> int:
        if size == 0:
            return -errno.EINVAL
        if self.is_enabled():
            return -errno.EBUSY
        if self.type not in (ND_DEVICE_NAMESPACE_PMEM, ND_DEVICE_NAMESPACE_BLK):
            return -errno.ENXIO
        return self._set_size(size)

    def set_sector_size(self, size: int) -> int:
        if size not in self.lbasize:
            self.ctx.log.err("ndctl_namespace_set_sector_size", f"{self.devname}: unsupported sector size {size}")
            return -errno.EOPNOTSUPP
        rc = self._w("sector_size", f"{size}\n")
        if rc == 0:
            self.lbasize_select = self.lbasize.index(size)
        return rc

    def set_enforce_mode(self, mode: int) -> int:
        if mode < 0 or mode >= NS_MODE_UNKNOWN:
            return -errno.EINVAL
        rc = self._w("holder_class", ENFORCE_NAMES[mode])
        if rc >= 0:
            self.enforce_mode = mode
        return rc

    def set_raw_mode(self, raw: bool) -> int:
        return self._w("force_raw", "1\n" if raw else "0\n")

    def enable(self) -> int:
        """ndctl_namespace_enable(): 0 enabled, 1 enabled through a claim."""
        if self.is_enabled():
            return 0
        rc = self.ctx.bind(self.devname)
        if not self.is_enabled():
            for x in (self.btt(), self.pfn(), self.dax()):
                if x is not None and x.is_enabled():
                    self.ctx.log.dbg("ndctl_namespace_enable", f"{self.devname}: enabled via {x.devname}")
                    return 1
            self.ctx.log.err("ndctl_namespace_enable", f"{self.devname}: failed to enable")
            return rc if rc else -errno.ENXIO
        return 0

    def disable_invalidate(self) -> int:
        rc = 0
        for x in (self.btt(), self.pfn(), self.dax()):
            if x is not None:
                rc = x.delete()
        if rc:
            return rc
        return self.disable()

    def disable_safe(self) -> int:
        """ndctl_namespace_disable_safe(): refuses a device-dax instance with
        online system-ram; block devices are always closable here."""
        dax = self.dax()
        if dax is not None and dax.is_enabled():
            dr = dax.daxctl_region()
            if dr is not None and any(d.is_system_ram_capable() for d in dr.devices()):
                self.ctx.log.dbg("ndctl_namespace_disable_safe",
                                 f"{self.devname}: active as system-ram, refusing to disable")
                return -errno.EBUSY
        self.disable_invalidate()
        return 0

    def delete(self) -> int:
        if not self.is_valid():
            return 0
        if self.is_enabled():
            return -errno.EBUSY
        if self.type not in (ND_DEVICE_NAMESPACE_PMEM, ND_DEVICE_NAMESPACE_BLK):
            return 0
        rc = self._set_size(0)
        if rc and rc != -errno.ENXIO:
            return rc
        return 0
