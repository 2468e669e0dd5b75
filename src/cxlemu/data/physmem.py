"""Physical memory as the kernel model touches it: reads and flushed writes
at host physical addresses, routed by the emulated hardware to the media.

The kernel model never imports the data path; whoever attaches media to a
kernel (the machine, a test) gives it a :class:`PhysicalMemory` through
:func:`attach`, and kernel code (nvdimm_read_bytes / nvdimm_write_bytes of
nd_pmem, info blocks, labels-in-namespace ...) calls ``kernel.physmem``.
Kernel writes are flushed writes (memcpy_flushcache + wmb_pmem): they clean
the CPU-cache lines they cover, so a power failure cannot take them back.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cxlemu.data.media import MediaStore


class PhysicalMemory:
    def __init__(self, kernel, media: "MediaStore"):
        self.kernel, self.media = kernel, media

    def space(self):
        from cxlemu.data.datapath import HpaSpace
        return HpaSpace(self.kernel.platform, self.media)

    def read(self, hpa: int, n: int) -> bytes:
        return self.space().read(hpa, n)

    def kernel_write(self, hpa: int, data: bytes) -> None:
        from cxlemu.data import dax_mapping
        space = self.space()
        space.write(hpa, data)
        dax_mapping.note_kernel_write(self.kernel, space, hpa, len(data))


def attach(kernel, media: "MediaStore") -> None:
    """Give ``kernel`` its media (device-side accesses: mailbox, poison) and
    its physical memory (CPU-side accesses)."""
    kernel.media_store = media
    kernel.physmem = PhysicalMemory(kernel, media)
