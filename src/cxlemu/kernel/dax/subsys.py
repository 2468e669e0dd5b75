"""Device DAX (drivers/dax): dax regions, dax devices, device_dax and kmem."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cxlemu.kernel.cxl.region import CxlRegion
    from cxlemu.kernel.kernel import Kernel


class Dax:
    def __init__(self, kernel: "Kernel"):
        self.kernel = kernel

    def add_cxl_dax_region(self, r: "CxlRegion") -> None:
        pass

    def remove_cxl_dax_region(self, r: "CxlRegion") -> None:
        pass
