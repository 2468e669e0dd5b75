"""Device DAX (drivers/dax): the dax bus, its ``device_dax`` and ``kmem``
drivers, dax regions and devices, and the CXL glue.

API for the subsystems that own dax regions (CXL ram regions here, nvdimm
namespaces in devdax mode)::

    region = kernel.dax.alloc_dax_region(host, region_id, start, size, align,
                                         target_node, static, kmem=False)
        # host: the Device that owns the region (a cxl_dax_region, an nd_dax).
        # It gets the dax_region/ attribute group; its dax devices are its
        # children.  start/size must be multiples of align (else -ENOMEM, as
        # alloc_dax_region() returning NULL); a host holds one region (-EBUSY).
        # static=True: pmem-style region (fixed devices, no create/delete/seed);
        # kmem=True: IORESOURCE_DAX_KMEM, its devices default to the kmem driver.
    dev = kernel.dax.create_dev_dax(region, size=None, dev_id=None,
                                    memmap_on_memory=False)
        # daxR.N: static regions take dev_id (default 0) and size (default the
        # whole region); dynamic regions allocate N and take size (default the
        # free space; 0 makes an empty seed).  Registered with /dev/daxR.N
        # (major DAX_MAJOR) and probed: device_dax for static regions and
        # dynamic ones without kmem, kmem for kmem regions.
    kernel.dax.free_dax_region(region)
        # unregisters its devices (unbinding their drivers) and removes the
        # dax_region/ group from the host.

A DevDax exposes ``region``, ``id``, ``size``, ``resource`` and ``ranges`` (each
``start``, ``end`` inclusive, ``pgoff`` in pages); ``dev.driver.name`` is
"device_dax" or "kmem" when bound.  ``kernel.dax.devices()`` lists them.

device_dax probe (drivers/dax/device.c dev_dax_probe): a static device may
have one range only (-EINVAL); each range is requested busy in iomem as
"daxR.N" (-EBUSY on conflict: "mappingK: ... could not reserve range");
dynamic devices get their memmap allocated from kernel memory (ZONE_DEVICE
struct pages, -ENOMEM).  kmem: see kmem.py.  CXL: see cxl.py.
"""

from __future__ import annotations

import errno
from dataclasses import field
from typing import TYPE_CHECKING

from cxlemu.kernel.base.device import Bus, ClassDriver, Device, Ida, KernelError, device_add, device_del
from cxlemu.kernel.dax.bus import (DAXDRV_DEVICE_TYPE, DAXDRV_KMEM_TYPE, PMD_SIZE, DaxDriver, DaxMapping, DaxRange,
                                   DaxRegion, DevDax, new_resource)
from cxlemu.kernel.cxl.port import MODE_DC
from cxlemu.kernel.dax.cxl import CxlDaxRegion
from cxlemu.kernel.dax.kmem import Kmem
from cxlemu.kernel.resource import Resource, release_resource
from cxlemu.util.lazydc import dataclass

if TYPE_CHECKING:
    from cxlemu.kernel.cxl.region import CxlRegion
    from cxlemu.kernel.kernel import Kernel


@dataclass
class DevdaxData:
    """What a device-dax instance holds: its ranges and the memmap allocation."""
    res: list[Resource] = field(default_factory=list)
    memmap: int | None = None         # allocation id of the ZONE_DEVICE memmap


class Dax:
    def __init__(self, kernel: "Kernel"):
        self.kernel = kernel
        self.bus = Bus("dax")
        kernel.buses["dax"] = self.bus
        self.minor_ida = Ida()
        self.regions: list[DaxRegion] = []
        self.leaked: list[tuple[int, int]] = []      # ranges kmem could not hot-remove
        self.kmem = Kmem(self)
        self.memmap_on_memory_param = False         # memory_hotplug.memmap_on_memory
        self.bus.register_driver(DaxDriver("device_dax", self, DAXDRV_DEVICE_TYPE))
        self.bus.register_driver(DaxDriver("kmem", self, DAXDRV_KMEM_TYPE))
        cxl_bus = kernel.cxl.bus
        cxl_bus.register_driver(ClassDriver("cxl_dax_region", cxl_bus, CxlDaxRegion, self._cxl_probe,
                                            self._cxl_remove, suppress_bind_attrs=True))

    # ---- queries ------------------------------------------------------------------------------
    def devices(self) -> list[DevDax]:
        return [d for r in self.regions for d in r.devices]

    def find(self, name: str) -> DevDax | None:
        return next((d for d in self.devices() if d.name == name), None)

    def memmap_on_memory_supported(self) -> bool:
        return self.memmap_on_memory_param

    # ---- regions (alloc_dax_region / dax_region_unregister) ------------------------------------
    def alloc_dax_region(self, host: Device, region_id: int, start: int, size: int, align: int,
                         target_node: int, static: bool, kmem: bool = False) -> DaxRegion:
        if host.__dict__.get("dax_region") is not None:
            raise KernelError(errno.EBUSY, f"{host.name}: dax core failed to setup private data")
        if size <= 0 or start % align or size % align:
            raise KernelError(errno.ENOMEM, f"{host.name}: dax region {start:#x}+{size:#x} not {align:#x} aligned")
        region = DaxRegion(self, host, region_id, start, size, align, target_node, static, kmem)
        region.attach_to_host()
        self.regions.append(region)
        return region

    def free_dax_region(self, region: DaxRegion) -> None:
        for dev in list(reversed(region.devices)):
            self.unregister_dev_dax(dev)
        region.detach_from_host()
        if region in self.regions:
            self.regions.remove(region)

    # ---- devices (devm_create_dev_dax / unregister_dev_dax) ----------------------------------------
    def create_dev_dax(self, region: DaxRegion, size: int | None = None, dev_id: int | None = None,
                       memmap_on_memory: bool = False) -> DevDax:
        if region.static:
            dev_id = 0 if dev_id is None else dev_id
            if dev_id < 0:
                raise KernelError(errno.EINVAL, "dynamic id specified to static region")
            if size is None:
                size = region.size
        else:
            if dev_id is not None:
                raise KernelError(errno.EINVAL, "static id specified to dynamic region")
            dev_id = region.ida.alloc()
            if size is None:
                size = region.available_size()
        minor = self.minor_ida.alloc()
        dev = DevDax(region, dev_id, minor)
        dev.memmap_on_memory = memmap_on_memory
        try:
            if size:
                self.alloc_range(dev, region.start, size)
        except KernelError:
            self.minor_ida.free(minor)
            if not region.static:
                region.ida.free(dev_id)
            raise
        region.devices.append(dev)
        self.kernel.register_chrdev(dev)
        device_add(dev, probe=False)
        for r in dev.ranges:
            self._add_mapping(dev, r)
        from cxlemu.kernel.base.device import device_attach
        device_attach(dev)
        return dev

    def create_dev_dax_ranges(self, region: DaxRegion, ranges: list[tuple[int, int]], uuid: str = "") -> DevDax:
        """A DC tag group's DAX device (DCD series: one device per tagged
        allocation, one range per extent in sequence order), all or nothing."""
        dev_id = region.ida.alloc()
        minor = self.minor_ida.alloc()
        dev = DevDax(region, dev_id, minor)
        dev.uuid = uuid
        try:
            for start, size in ranges:
                self.alloc_range(dev, start, size)
        except KernelError:
            while dev.ranges:
                self._trim_last(dev)
            self.minor_ida.free(minor)
            region.ida.free(dev_id)
            raise
        region.devices.append(dev)
        self.kernel.register_chrdev(dev)
        device_add(dev, probe=False)
        for r in dev.ranges:
            self._add_mapping(dev, r)
        from cxlemu.kernel.base.device import device_attach
        device_attach(dev)
        return dev

    def unregister_dev_dax(self, dev: DevDax) -> None:
        if dev.registered:
            device_del(dev)         # unbinds the driver, removes mappingN
        while dev.ranges:
            self._trim_last(dev)
        region = dev.region
        if dev in region.devices:
            region.devices.remove(dev)
        if not region.static and dev.id >= 0:
            region.ida.free(dev.id)
        if dev.devt is not None:
            self.minor_ida.free(dev.devt[1])
        if dev in self.kernel.chrdevs:
            self.kernel.chrdevs.remove(dev)
        if region.seed is dev:
            region.seed = None
        if region.youngest is dev:
            region.youngest = None

    # ---- ranges (alloc_dev_dax_range, dev_dax_resize, dev_dax_shrink) ----------------------------
    def _add_mapping(self, dev: DevDax, r: DaxRange) -> None:
        m = DaxMapping(dev, dev.mapping_ida.alloc())
        r.mapping = m
        device_add(m)

    def alloc_range(self, dev: DevDax, start: int, size: int) -> None:
        if not size:
            return
        region = dev.region
        res = new_resource(region.res, start, size, dev.name)
        if res is None:
            raise KernelError(errno.ENOMEM, f"{dev.name}: {start:#x}+{size:#x} not free in {region.host.name}")
        pgoff = sum(r.size for r in dev.ranges) >> 12
        r = DaxRange(res.start, res.end, pgoff, res)
        dev.ranges.append(r)
        self.kernel.log(f"{dev.name}: alloc range[{len(dev.ranges) - 1}]: {res.start:#x}:{res.end:#x}")
        if dev.registered:
            self._add_mapping(dev, r)

    def _trim_last(self, dev: DevDax) -> None:
        r = dev.ranges.pop()
        if r.mapping is not None:
            if r.mapping.registered:
                device_del(r.mapping)
            dev.mapping_ida.free(r.mapping.id)
            r.mapping = None
        release_resource(r.res)

    @staticmethod
    def _adjust_ok(dev: DevDax, res: Resource) -> bool:
        if not dev.ranges or res.name != dev.name:
            return False
        last = dev.ranges[-1]
        if (last.start, last.end) != (res.start, res.end):
            return False
        return all(r.pgoff <= last.pgoff for r in dev.ranges[:-1])

    @staticmethod
    def _adjust(dev: DevDax, res: Resource, size: int) -> None:
        parent = res.parent
        new_end = res.start + size - 1
        if parent is not None and any(c is not res and c.overlaps(res.start, new_end) for c in parent.children):
            raise KernelError(errno.EBUSY)
        res.end = new_end
        dev.ranges[-1].end = new_end

    def resize(self, dev: DevDax, size: int) -> None:
        region = dev.region
        if dev.driver is not None:
            raise KernelError(errno.EBUSY, f"{dev.name}: resize of a bound device")
        cur = dev.size
        if size == cur:
            return
        if size > cur and size - cur > region.available_size():
            raise KernelError(errno.ENOSPC, f"{dev.name}: {size - cur:#x} more bytes do not fit")
        if size < cur:
            self._shrink(dev, size)
            return
        to_alloc = size - cur
        if not dev.alloc_is_aligned(to_alloc):
            raise KernelError(errno.ENXIO, f"{dev.name}: resize of {to_alloc:#x} misaligned")
        rres = region.res
        while to_alloc:
            kids = sorted(rres.children, key=lambda c: c.start)
            if not kids:
                self.alloc_range(dev, rres.start, to_alloc)
                return
            done, alloc = False, 0
            for i, res in enumerate(kids):
                nxt = kids[i + 1] if i + 1 < len(kids) else None
                if i == 0 and res.start > rres.start:
                    alloc = min(res.start - rres.start, to_alloc)
                    self.alloc_range(dev, rres.start, alloc)
                    done = True
                    break
                alloc = 0
                if nxt is not None and nxt.start > res.end + 1:
                    alloc = min(nxt.start - (res.end + 1), to_alloc)
                if not alloc and nxt is None and res.end < rres.end:
                    alloc = min(rres.end - res.end, to_alloc)
                if not alloc:
                    continue
                if self._adjust_ok(dev, res):
                    self._adjust(dev, res, res.size + alloc)
                else:
                    self.alloc_range(dev, res.end + 1, alloc)
                done = True
                break
            if not done:
                raise KernelError(errno.ENOSPC)
            to_alloc -= alloc

    def _shrink(self, dev: DevDax, size: int) -> None:
        to_shrink = dev.size - size
        for i in range(len(dev.ranges) - 1, -1, -1):
            r = dev.ranges[i]
            shrink = min(to_shrink, r.size)
            if shrink >= r.size:
                self._trim_last(dev)
                to_shrink -= shrink
                if not to_shrink:
                    break
                continue
            if i != len(dev.ranges) - 1:
                raise KernelError(errno.ENXIO, f"{dev.name}: failed to find matching resource")
            self._adjust(dev, r.res, r.size - shrink)
            return

    # ---- drivers -------------------------------------------------------------------------------------
    def driver_probe(self, drv: DaxDriver, dev: DevDax) -> None:
        if drv.type == DAXDRV_KMEM_TYPE:
            self.kmem.probe(dev)
        else:
            self._devdax_probe(dev)

    def driver_remove(self, drv: DaxDriver, dev: DevDax) -> None:
        if drv.type == DAXDRV_KMEM_TYPE:
            self.kmem.remove(dev)
        else:
            self._devdax_remove(dev)

    def _devdax_probe(self, dev: DevDax) -> None:
        from cxlemu.kernel.mm.alloc import memmap_pages
        from cxlemu.kernel.mm.hotplug import request_mem_region
        k = self.kernel
        if dev.region.static and len(dev.ranges) > 1:
            raise KernelError(errno.EINVAL, f"{dev.name}: static pgmap / multi-range device conflict")
        data = DevdaxData()
        for i, r in enumerate(dev.ranges):
            res = request_mem_region(k.iomem, r.start, r.end, dev.name, busy=True)
            if res is None:
                for x in data.res:
                    release_resource(x)
                k.log(f"{dev.name}: mapping{i}: {r.start:#x}-{r.end:#x} could not reserve range")
                raise KernelError(errno.EBUSY, f"{dev.name}: mapping{i}: could not reserve range")
            data.res.append(res)
        if not dev.region.static:
            try:
                data.memmap = k.mm.pages.alloc("memmap", memmap_pages(dev.size >> 12), dev.target_node,
                                               f"memmap {dev.name}").id
            except KernelError:
                for x in data.res:
                    release_resource(x)
                raise KernelError(errno.ENOMEM, f"{dev.name}: no memory for the device memmap") from None
        dev.driver_data = data

    def _devdax_remove(self, dev: DevDax) -> None:
        data = dev.driver_data
        if not isinstance(data, DevdaxData):
            return
        for x in data.res:
            release_resource(x)
        if data.memmap is not None:
            try:
                self.kernel.mm.pages.free(data.memmap)
            except KernelError:
                pass
        dev.driver_data = None

    # ---- CXL (drivers/dax/cxl.c, core/region.c devm_cxl_add_dax_region) -------------------------------
    def add_cxl_dax_region(self, r: "CxlRegion") -> None:
        if r.res is None or not self.kernel.has("cxl_dax_region"):
            return
        dev = CxlDaxRegion(r)
        device_add(dev)

    def remove_cxl_dax_region(self, r: "CxlRegion") -> None:
        for c in list(r.children):
            if isinstance(c, CxlDaxRegion) and c.registered:
                device_del(c)

    def _cxl_probe(self, dev: CxlDaxRegion) -> None:
        mm = self.kernel.mm
        nid = mm.region_node(dev.hpa_start)
        if nid < 0:                              # memory_add_physaddr_to_nid(): the first node
            nid = min(mm.numa.nodes, default=0)
        if dev.region.mode == MODE_DC:
            # DCD series: a sparse dax region; capacity arrives as extents
            # (kernel/cxl/dcd.py), each tag group one device, devdax by default
            region = self.alloc_dax_region(dev, dev.region.id, dev.hpa_start, dev.hpa_size, PMD_SIZE, nid,
                                           static=False, kmem=False)
            region.dc = True
            region.seed = self.create_dev_dax(region, size=0)     # daxR.0, the empty seed
            from cxlemu.kernel.cxl import dcd
            dcd.dax_probe(self.kernel, region)
            return
        region = self.alloc_dax_region(dev, dev.region.id, dev.hpa_start, dev.hpa_size, PMD_SIZE, nid,
                                       static=False, kmem=True)
        self.create_dev_dax(region, dev.hpa_size, memmap_on_memory=True)

    def _cxl_remove(self, dev: CxlDaxRegion) -> None:
        region = dev.__dict__.get("dax_region")
        if region is not None:
            self.free_dax_region(region)
