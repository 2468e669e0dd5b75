"""dax/kmem: a dax device as System RAM (drivers/dax/kmem.c).

probe: target node < 0 -> -EINVAL "rejecting DAX region with invalid node";
each range is block-aligned (blocksize.kmem_range) and a range left empty is
skipped ("mappingK: ... too small after alignment"); nothing left -> -EINVAL
"rejecting DAX region without any memory after alignment".  The node's
memory type comes from mt_calc_adistance (default 2880); a static memory
group of the aligned size is registered; each range is requested as
"daxR.N" and hot-added as "System RAM (kmem)" (a failure after a range
succeeded only skips that range; on the first range it unwinds).
cxlemu also logs how much the alignment cost ("cxlemu: ... stranded").

remove: each range is hot-removed; one still online cannot be ("mappingK:
... cannot be hotremoved until the next reboot") and keeps its resources
and blocks; the memory group and node memory type go only if all did.
"""

from __future__ import annotations

import errno
from dataclasses import field
from typing import TYPE_CHECKING

from cxlemu.kernel.base.device import KernelError
from cxlemu.kernel.mm.tiers import MEMTIER_DEFAULT_DAX_ADISTANCE
from cxlemu.kernel.resource import Resource, release_resource
from cxlemu.util.lazy import lazy_module
from cxlemu.util.lazydc import dataclass
from cxlemu.util.units import human_size

blocksize = lazy_module("cxlemu.kernel.mm.blocksize")   # when a dax device is onlined

if TYPE_CHECKING:
    from cxlemu.kernel.dax.bus import DevDax
    from cxlemu.kernel.dax.subsys import Dax

KMEM_NAME = "System RAM (kmem)"


@dataclass
class KmemData:
    """struct dax_kmem_data."""
    mgid: int
    res: list[Resource | None] = field(default_factory=list)
    added: int = 0            # bytes hot-added
    lost: int = 0             # bytes stranded by block alignment


class Kmem:
    def __init__(self, dax: "Dax"):
        self.dax = dax

    @property
    def kernel(self):
        return self.dax.kernel

    def probe(self, dev: "DevDax") -> None:
        k = self.kernel
        mm = k.mm
        nid = dev.target_node
        if nid < 0:
            k.log(f"{dev.name}: rejecting DAX region with invalid node: {nid}")
            raise KernelError(errno.EINVAL, f"{dev.name}: rejecting DAX region with invalid node: {nid}")
        adist = mm.tiers.calc_adistance(nid, MEMTIER_DEFAULT_DAX_ADISTANCE)
        bs = mm.block_size
        ranges = [blocksize.kmem_range(r.start, r.end, bs) for r in dev.ranges]
        total = 0
        for i, kr in enumerate(ranges):
            if not kr.usable:
                k.log(f"{dev.name}: mapping{i}: {kr.start:#x}-{kr.end:#x} too small after alignment")
                continue
            total += kr.added
        if not total:
            k.log(f"{dev.name}: rejecting DAX region without any memory after alignment")
            raise KernelError(errno.EINVAL, f"{dev.name}: rejecting DAX region without any memory after alignment")
        mm.tiers.init_node_memory_type(nid, adist)
        data = KmemData(mgid=mm.hotplug.register_static_group(nid, total >> 12), res=[None] * len(ranges))
        mapped = 0
        from cxlemu.kernel.mm.hotplug import request_mem_region
        for i, kr in enumerate(ranges):
            if not kr.usable:
                continue
            res = request_mem_region(k.iomem, kr.aligned_start, kr.aligned_end, dev.name, busy=False)
            if res is None:
                k.log(f"{dev.name}: mapping{i}: {kr.aligned_start:#x}-{kr.aligned_end:#x} could not reserve region")
                if mapped:
                    continue
                self._unwind(data)
                raise KernelError(errno.EBUSY, f"{dev.name}: mapping{i}: could not reserve region")
            data.res[i] = res
            try:
                mm.hotplug.add_memory_driver_managed(data.mgid, kr.aligned_start, kr.added, KMEM_NAME)
            except KernelError as e:
                k.log(f"{dev.name}: mapping{i}: {kr.aligned_start:#x}-{kr.aligned_end:#x} memory add failed")
                release_resource(res)
                data.res[i] = None
                if mapped:
                    continue
                self._unwind(data)
                raise KernelError(e.errno, e.log) from None
            mapped += 1
        data.added = sum(kr.added for kr in ranges)
        data.lost = sum(kr.lost for kr in ranges)
        if data.lost:
            k.log(f"{dev.name}: cxlemu: {human_size(data.lost)} ({data.lost:#x} bytes) of {human_size(dev.size)} "
                  f"stranded by {human_size(bs)} memory block alignment")
        dev.driver_data = data

    def _unwind(self, data: KmemData) -> None:
        for res in data.res:
            if res is not None:
                release_resource(res)
        try:
            self.kernel.mm.hotplug.unregister_group(data.mgid)
        except KernelError:
            pass

    def remove(self, dev: "DevDax") -> None:
        k = self.kernel
        mm = k.mm
        data: KmemData | None = dev.driver_data
        if data is None:
            return
        success = 0
        bs = mm.block_size
        for i, r in enumerate(dev.ranges):
            kr = blocksize.kmem_range(r.start, r.end, bs)
            if not kr.usable:
                continue
            try:
                mm.hotplug.remove_memory(kr.aligned_start, kr.added)
            except KernelError:
                k.log(f"{dev.name}: mapping{i}: {kr.aligned_start:#x}-{kr.aligned_end:#x} cannot be hotremoved "
                      f"until the next reboot")
                self.dax.leaked.append((kr.aligned_start, kr.added))
                continue
            res = data.res[i] if i < len(data.res) else None
            if res is not None:
                release_resource(res)
                data.res[i] = None
            success += 1
        if success >= len(dev.ranges):
            try:
                mm.hotplug.unregister_group(data.mgid)
            except KernelError:
                pass
            mm.tiers.clear_node_memory_type(dev.target_node)
        dev.driver_data = None
