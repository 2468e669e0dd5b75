"""The CXL side of device-dax: ``dax_regionN`` (struct cxl_dax_region) under a
ram region on the cxl bus, and the ``cxl_dax_region`` driver
(drivers/cxl/core/region.c devm_cxl_add_dax_region, drivers/dax/cxl.c).

The driver has no bind/unbind files (suppress_bind_attrs).  Its probe makes a
dynamic dax region flagged for kmem (IORESOURCE_DAX_KMEM), aligned to 2 MiB
(PMD_SIZE), on the window's node (phys_to_target_node, else
memory_add_physaddr_to_nid), and one device ``daxN.0`` spanning the region
with memmap_on_memory set; that device matches ``kmem`` and is bound to it,
so CXL ram becomes System RAM by default (onlined or not according to
auto_online_blocks); ``daxctl reconfigure-device -m devdax`` moves it to
device_dax, as ndctl's cxl-destroy-region.sh does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cxlemu.kernel.base.device import AttrGroup
from cxlemu.kernel.cxl.port import BASE_ATTRS, CXL_DEVICE_DAX_REGION, CxlDevice

if TYPE_CHECKING:
    from cxlemu.kernel.cxl.region import CxlRegion


class CxlDaxRegion(CxlDevice):
    devtype = "cxl_dax_region"
    cxl_id = CXL_DEVICE_DAX_REGION
    ATTR_GROUPS = (AttrGroup(None, BASE_ATTRS),)

    def __init__(self, region: "CxlRegion"):
        super().__init__(f"dax_region{region.id}", region, region.mgr.core.bus)
        self.region = region
        self.hpa_start = region.res.start if region.res is not None else 0
        self.hpa_size = region.size
