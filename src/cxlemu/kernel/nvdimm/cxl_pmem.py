"""The CXL side of the nvdimm bridge (drivers/cxl/pmem.c, drivers/cxl/core/pmem.c):
``nvdimm-bridgeN`` under the CXL root, ``pmemN`` (cxl_nvdimm) under each memdev
with persistent capacity, and ``pmem_regionN`` under committed pmem regions.
The libnvdimm side (ndbus, nmem, region, namespaces) hangs off these.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cxlemu.kernel.base.device import AttrGroup, Device, device_add, device_del
from cxlemu.kernel.cxl.port import (BASE_ATTRS, CXL_DEVICE_NVDIMM, CXL_DEVICE_NVDIMM_BRIDGE,
                                    CXL_DEVICE_PMEM_REGION, CxlDevice)

if TYPE_CHECKING:
    from cxlemu.kernel.cxl.memdev import CxlMemdev
    from cxlemu.kernel.cxl.port import CxlPort
    from cxlemu.kernel.cxl.region import CxlRegion
    from cxlemu.kernel.kernel import Kernel


class NvdimmBridge(CxlDevice):
    devtype = "cxl_nvdimm_bridge"
    cxl_id = CXL_DEVICE_NVDIMM_BRIDGE
    ATTR_GROUPS = (AttrGroup(None, BASE_ATTRS),)
    nvdimm_bus = None          # the ndbusN registered while bound


class CxlNvdimm(CxlDevice):
    devtype = "cxl_nvdimm"
    cxl_id = CXL_DEVICE_NVDIMM
    ATTR_GROUPS = (AttrGroup(None, BASE_ATTRS),)

    def __init__(self, name: str, md: "CxlMemdev"):
        super().__init__(name, md, md.core.bus)
        self.memdev = md
        self.nvdimm = None     # nmemN while bound


class CxlPmemRegion(CxlDevice):
    devtype = "cxl_pmem_region"
    cxl_id = CXL_DEVICE_PMEM_REGION
    ATTR_GROUPS = (AttrGroup(None, BASE_ATTRS),)

    def __init__(self, region: "CxlRegion"):
        super().__init__(f"pmem_region{region.id}", region, region.mgr.core.bus)
        self.region = region
        self.nd_region = None  # nd regionN while bound
