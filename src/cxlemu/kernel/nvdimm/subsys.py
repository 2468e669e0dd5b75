"""The nvdimm subsystem as cxlemu models it: the CXL nvdimm bridge and, on
top of it, libnvdimm's bus, dimms, regions and namespaces."""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from cxlemu.kernel.base.device import ClassDriver, KernelError, device_add, device_del
from cxlemu.kernel.nvdimm.cxl_pmem import CxlNvdimm, CxlPmemRegion, NvdimmBridge

if TYPE_CHECKING:
    from cxlemu.kernel.cxl.memdev import CxlMemdev
    from cxlemu.kernel.cxl.port import CxlPort
    from cxlemu.kernel.cxl.region import CxlRegion
    from cxlemu.kernel.kernel import Kernel


class Nvdimm:
    def __init__(self, kernel: "Kernel"):
        self.kernel = kernel
        self.bridge: NvdimmBridge | None = None
        bus = kernel.cxl.bus
        for drv in (
            ClassDriver("cxl_nvdimm_bridge", bus, NvdimmBridge, self._bridge_probe, self._bridge_remove),
            ClassDriver("cxl_nvdimm", bus, CxlNvdimm, self._nvdimm_probe, self._nvdimm_remove),
            ClassDriver("cxl_pmem_region", bus, CxlPmemRegion, self._pmem_region_probe,
                          self._pmem_region_remove),
        ):
            bus.register_driver(drv)

    # ---- bridge -------------------------------------------------------------------
    def add_bridge(self, root: "CxlPort") -> None:
        br = NvdimmBridge(f"nvdimm-bridge{self.kernel.cxl.bridge_ida.alloc()}", root, self.kernel.cxl.bus)
        self.bridge = br
        device_add(br)

    def _bridge_probe(self, br) -> None:
        self.on_bridge_probe(br)

    def _bridge_remove(self, br) -> None:
        self.on_bridge_remove(br)

    # hooks for the libnvdimm model (issue: persistent memory)
    def on_bridge_probe(self, br) -> None:
        pass

    def on_bridge_remove(self, br) -> None:
        pass

    # ---- per-memdev cxl_nvdimm ----------------------------------------------------------
    def add_cxl_nvdimm(self, md: "CxlMemdev") -> None:
        nv = CxlNvdimm(f"pmem{md.id}", md)
        device_add(nv)

    def remove_cxl_nvdimm(self, md: "CxlMemdev") -> None:
        for c in list(md.children):
            if isinstance(c, CxlNvdimm):
                device_del(c)

    def cxl_nvdimm_of(self, md: "CxlMemdev") -> CxlNvdimm | None:
        return next((c for c in md.children if isinstance(c, CxlNvdimm)), None)

    def nvdimm_active(self, md: "CxlMemdev") -> bool:
        nv = self.cxl_nvdimm_of(md)
        return nv is not None and nv.driver is not None

    def _nvdimm_probe(self, nv) -> None:
        if self.bridge is None or self.bridge.driver is None:
            raise KernelError(errno.ENXIO, f"{nv.name}: no active nvdimm bridge")

    def _nvdimm_remove(self, nv) -> None:
        pass

    # ---- pmem regions ---------------------------------------------------------------------
    def add_pmem_region(self, r: "CxlRegion") -> None:
        if self.bridge is None:
            raise KernelError(errno.ENODEV, f"{r.name}: no nvdimm bridge")
        pr = CxlPmemRegion(r)
        device_add(pr)

    def remove_pmem_region(self, r: "CxlRegion") -> None:
        for c in list(r.children):
            if isinstance(c, CxlPmemRegion):
                device_del(c)

    def _pmem_region_probe(self, pr) -> None:
        pass

    def _pmem_region_remove(self, pr) -> None:
        pass
