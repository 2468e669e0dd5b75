"""Performance coordinates: CDAT + HMAT -> region and node access attributes
(drivers/cxl/core/cdat.c, drivers/acpi/numa/hmat.c)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cxlemu.kernel.cxl.region import CxlRegion
    from cxlemu.kernel.kernel import Kernel


class Perf:
    def __init__(self, kernel: "Kernel"):
        self.kernel = kernel

    def region_coordinates(self, r: "CxlRegion") -> None:
        pass
