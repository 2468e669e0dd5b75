"""Memory management: NUMA nodes, memory blocks and hotplug (mm/, drivers/base/memory.c,
drivers/base/node.c).  Boot-time state comes from SRAT and the e820 map."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cxlemu.kernel.kernel import Kernel


class Mm:
    def __init__(self, kernel: "Kernel"):
        self.kernel = kernel

    def boot(self) -> None:
        pass

    def range_is_system_ram(self, start: int, end: int) -> bool:
        for _, r in self.kernel.iomem.walk():
            if r.name.startswith("System RAM") and r.overlaps(start, end):
                return True
        return False

    def proc_files(self) -> dict:
        return {}

    def sysfs_kernel_entries(self) -> dict:
        return {}
