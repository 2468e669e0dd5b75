"""The dax bus: dax regions, dev_dax devices and their drivers (drivers/dax/bus.c).

A *dax region* is not a device: it is the ``dax_region/`` attribute group of
its host device (a ``cxl_dax_region`` or an nd_dax) and a private resource
tree its devices' ranges are allocated from.  Regions are *static* (pmem:
one device of fixed size, no create/delete/seed/available_size, ``size`` and
``align`` read-only, no ``mapping``) or *dynamic* (CXL, hmem: devices are
created, resized and deleted from user space).

dax_region/ (bus.c dax_region_attributes): ``id`` (%d), ``size`` (%llu),
``align`` (%u, 0400), ``available_size`` (%llu), ``seed`` and ``create``
(device name or empty line), ``create`` store (kstrtoint, only 1: -EINVAL;
no room: -ENOSPC), ``delete`` store (exact device name: -ENXIO if unknown,
-EBUSY if bound, sized or the region's device 0).

daxR.N (dev_dax_attributes): ``size`` (%llu; store: kstrtoull, -EINVAL unless
a multiple of max(align, 2 MiB), -ENXIO without a region driver, -EBUSY when
bound, -ENOSPC beyond the free space; shrinks from the last range, grows by
extending the last range or adding ranges first-fit), ``align`` (%d; store:
kstrtoul failure -ENXIO, only 4K/2M/1G -EINVAL, -EBUSY when bound, -EINVAL
if a range is not aligned), ``mapping`` (store "start-end" in hex: adds a
range; -ENXIO if misaligned, -ENOMEM if taken), ``resource`` (%#llx, 0400),
``target_node``, ``numa_node``, ``memmap_on_memory`` (%d; store kstrtobool,
-EOPNOTSUPP for 1 without memory_hotplug.memmap_on_memory, -EBUSY when
changed under kmem), ``modalias`` ("dax:t0*"), ``mappingK/{start,end,
page_offset}`` (0400).

Matching (bus.c dax_bus_match): a driver matches a device named in its
``new_id`` list, or by type: regions flagged for kmem (IORESOURCE_DAX_KMEM,
CXL ram) match ``kmem``, the others ``device_dax``.  Probing a device of
size 0 or without an id fails with -ENXIO; after a dynamic region's seed
probes, the region has no seed until the next ``create``.
"""

from __future__ import annotations

import errno
import re
from typing import TYPE_CHECKING, Any

from cxlemu.kernel.base.device import (AttrGroup, AttrSpec, Device, Driver, Ida, KernelError, RO, WO, driver_probe,
                                       kstr, kstrip, kstrtoull)
from cxlemu.kernel.resource import Resource, request_resource

if TYPE_CHECKING:
    from cxlemu.kernel.dax.subsys import Dax

DAX_MAJOR = 61          # local/experimental major, see docs/fidelity.md
PAGE_SIZE = 4096
PMD_SIZE = 2 << 20
PUD_SIZE = 1 << 30
SUBSECTION_SIZE = 2 << 20          # memremap_compat_align() on x86-64
DAXDRV_KMEM_TYPE, DAXDRV_DEVICE_TYPE = "kmem", "device"
DAX_MODALIAS = "dax:t0*"


def dax_align_valid(align: int) -> bool:
    """bus.c dax_align_valid(): PAGE_SIZE, PMD_SIZE, PUD_SIZE on x86-64."""
    return align in (PAGE_SIZE, PMD_SIZE, PUD_SIZE)


def _kstrtoint(buf: bytes) -> int:
    s = kstr(buf)
    if s.endswith("\n"):
        s = s[:-1]
    try:
        v = int(s, 0) if not re.fullmatch(r"0\d+", s) else int(s, 8)
    except ValueError:
        raise KernelError(errno.EINVAL) from None
    if not -(1 << 31) <= v < (1 << 31):
        raise KernelError(errno.ERANGE)
    return v


class DaxRegion:
    """struct dax_region."""

    def __init__(self, dax: "Dax", host: Device, region_id: int, start: int, size: int, align: int,
                 target_node: int, static: bool, kmem: bool):
        self.dax = dax
        self.host = host
        self.id = region_id
        self.res = Resource(start, start + size - 1, host.name)
        self.align = align
        self.target_node = target_node
        self.static = static
        self.kmem = kmem
        self.seed: DevDax | None = None
        self.youngest: DevDax | None = None
        self.ida = Ida()
        self.devices: list[DevDax] = []

    # ---- geometry -----------------------------------------------------------------------
    @property
    def start(self) -> int:
        return self.res.start

    @property
    def size(self) -> int:
        return self.res.size

    dc = False              # a DC (sparse) region: capacity only through extents

    def available_size(self) -> int:
        if self.dc:
            return 0
        return self.res.size - sum(c.size for c in self.res.children)

    @property
    def enabled(self) -> bool:
        """dax_region->dev->driver: the host is bound."""
        return self.host.driver is not None or not self.host.bus

    # ---- the host's dax_region/ group ---------------------------------------------------------
    GROUP = AttrGroup("dax_region", (
        AttrSpec("available_size", 0o444, show="dax_region_available_size_show", visible="dax_region_visible"),
        AttrSpec("size", 0o444, show="dax_region_size_show"),
        AttrSpec("align", 0o400, show="dax_region_align_show"),
        AttrSpec("create", 0o644, show="dax_region_create_show", store="dax_region_create_store",
                 visible="dax_region_visible"),
        AttrSpec("seed", 0o444, show="dax_region_seed_show", visible="dax_region_visible"),
        AttrSpec("delete", 0o200, store="dax_region_delete_store", visible="dax_region_visible"),
        AttrSpec("id", 0o444, show="dax_region_id_show"),
    ))
    HOST_METHODS = ("available_size_show", "size_show", "align_show", "create_show", "create_store",
                    "seed_show", "delete_store", "id_show", "visible")

    def attach_to_host(self) -> None:
        """Add the dax_region/ group to the host (alloc_dax_region's sysfs_create_groups)."""
        h = self.host
        h.attr_groups = self.host_attr_groups          # type: ignore[method-assign]
        for m in self.HOST_METHODS:
            setattr(h, f"dax_region_{m}", getattr(self, m))
        h.dax_region = self                              # type: ignore[attr-defined]

    def detach_from_host(self) -> None:
        h = self.host
        for m in ("attr_groups", "dax_region", *(f"dax_region_{m}" for m in self.HOST_METHODS)):
            h.__dict__.pop(m, None)

    def host_attr_groups(self) -> tuple[AttrGroup, ...]:
        return type(self.host).attr_groups(self.host) + (self.GROUP,)

    def visible(self, name: str) -> bool:
        return not self.static

    def id_show(self) -> str:
        return f"{self.id}\n"

    def size_show(self) -> str:
        return f"{self.size}\n"

    def align_show(self) -> str:
        return f"{self.align}\n"

    def available_size_show(self) -> str:
        return f"{self.available_size()}\n"

    def seed_show(self) -> str:
        if self.static:
            raise KernelError(errno.EINVAL)
        return f"{self.seed.name if self.seed else ''}\n"

    def create_show(self) -> str:
        if self.static:
            raise KernelError(errno.EINVAL)
        return f"{self.youngest.name if self.youngest else ''}\n"

    def create_store(self, buf: bytes) -> None:
        if self.static:
            raise KernelError(errno.EINVAL)
        if _kstrtoint(buf) != 1:
            raise KernelError(errno.EINVAL)
        if self.available_size() == 0:
            raise KernelError(errno.ENOSPC, f"{self.host.name}: no space left in the dax region")
        dev = self.dax.create_dev_dax(self, 0)
        if self.seed is None:
            self.seed = dev
        self.youngest = dev

    def delete_store(self, buf: bytes) -> None:
        if self.static:
            raise KernelError(errno.EINVAL)
        name = kstr(buf)
        victim = next((d for d in self.devices if d.name == name), None)
        if victim is None:
            raise KernelError(errno.ENXIO, f"{self.host.name}: no device {name!r}")
        if victim.driver is not None or victim.size:
            raise KernelError(errno.EBUSY, f"{name}: bound or not empty")
        if victim.id <= 0:
            raise KernelError(errno.EBUSY, f"{name}: device 0 of a region is kept")
        if self.seed is victim:
            self.seed = None
        if self.youngest is victim:
            self.youngest = None
        self.dax.unregister_dev_dax(victim)


class DaxMapping(Device):
    """daxR.N/mappingK (bus.c dax_mapping_attributes)."""

    ATTR_GROUPS = (AttrGroup(None, (AttrSpec("start", 0o400), AttrSpec("end", 0o400),
                                    AttrSpec("page_offset", 0o400))),)

    def __init__(self, dev: "DevDax", mapping_id: int):
        super().__init__(f"mapping{mapping_id}", dev, None)
        self.dev = dev
        self.id = mapping_id

    def _range(self) -> "DaxRange":
        r = next((x for x in self.dev.ranges if x.mapping is self), None)
        if r is None:
            raise KernelError(errno.ENXIO)
        return r

    def start_show(self) -> str:
        return f"{self._range().start:#x}\n"

    def end_show(self) -> str:
        return f"{self._range().end:#x}\n"

    def page_offset_show(self) -> str:
        return f"{self._range().pgoff:#x}\n"


class DaxRange:
    """struct dev_dax_range: one physical range of a device (end inclusive)."""

    def __init__(self, start: int, end: int, pgoff: int, res: Resource):
        self.start, self.end, self.pgoff, self.res = start, end, pgoff, res
        self.mapping: DaxMapping | None = None

    @property
    def size(self) -> int:
        return self.end - self.start + 1


class DevDax(Device):
    """daxR.N on the dax bus, with /dev/daxR.N."""

    ATTR_GROUPS = (AttrGroup(None, (
        RO("modalias"), AttrSpec("size", 0o644, visible="rw_visible"),
        WO("mapping", visible="mapping_visible"), RO("target_node", visible="target_node_visible"),
        AttrSpec("align", 0o644, visible="rw_visible"), AttrSpec("resource", 0o400), RO("numa_node"),
        AttrSpec("memmap_on_memory", 0o644, visible="memmap_visible"),
        RO("uuid", visible="uuid_visible"),
    )),)

    uuid = ""               # DC devices: the tag of their allocation (DCD series)

    def uuid_visible(self, _n: str) -> bool:
        return self.region.dc

    def uuid_show(self) -> str:
        return f"{self.uuid or '00000000-0000-0000-0000-000000000000'}\n"

    def __init__(self, region: DaxRegion, dev_id: int, minor: int):
        super().__init__(f"dax{region.id}.{dev_id}", region.host, region.dax.bus)
        self.region = region
        self.id = dev_id
        self.ranges: list[DaxRange] = []
        self.align = region.align
        self.target_node = region.target_node
        self.memmap_on_memory = False
        self.mapping_ida = Ida()
        self.devt = (DAX_MAJOR, minor)
        self.devnode = self.name
        self.driver_data: Any = None

    # ---- geometry ---------------------------------------------------------------------------
    @property
    def size(self) -> int:
        return sum(r.size for r in self.ranges)

    @property
    def resource(self) -> int:
        return self.ranges[0].start if self.ranges else self.region.start

    def modalias(self) -> str | None:
        return DAX_MODALIAS

    # ---- visibility (dev_dax_visible) -------------------------------------------------------------
    def rw_visible(self, _n: str) -> int:
        return 0o444 if self.region.static else 0o644

    def mapping_visible(self, _n: str) -> bool:
        return not self.region.static

    def target_node_visible(self, _n: str) -> bool:
        return self.target_node >= 0

    def memmap_visible(self, _n: str) -> bool:
        return self.region.dax.kernel.has("dax_memmap_on_memory")

    # ---- attributes ----------------------------------------------------------------------------
    def modalias_show(self) -> str:
        return f"{DAX_MODALIAS}\n"

    def size_show(self) -> str:
        return f"{self.size}\n"

    def size_store(self, buf: bytes) -> None:
        val = kstrtoull(buf, 0)
        if not self.alloc_is_aligned(val):
            raise KernelError(errno.EINVAL, f"{self.name}: size_store: size: {val} misaligned")
        if not self.region.enabled:
            raise KernelError(errno.ENXIO)
        self.region.dax.resize(self, val)

    def mapping_store(self, buf: bytes) -> None:
        s = kstr(buf)
        if "-" not in s:
            raise KernelError(errno.EINVAL)
        a, b = s.split("-", 1)
        start, end = kstrtoull(a.encode(), 16), kstrtoull(b.encode(), 16)
        if not self.region.enabled:
            raise KernelError(errno.ENXIO)
        size = end - start + 1
        if size <= 0 or not self.alloc_is_aligned(size):
            raise KernelError(errno.ENXIO, f"{self.name}: mapping {start:#x}-{end:#x} misaligned")
        self.region.dax.alloc_range(self, start, size)

    def target_node_show(self) -> str:
        return f"{self.target_node}\n"

    def align_show(self) -> str:
        return f"{self.align}\n"

    def align_store(self, buf: bytes) -> None:
        try:
            val = kstrtoull(buf, 0)
        except KernelError:
            raise KernelError(errno.ENXIO) from None
        if not dax_align_valid(val):
            raise KernelError(errno.EINVAL)
        if not self.region.enabled:
            raise KernelError(errno.ENXIO)
        if self.driver is not None:
            raise KernelError(errno.EBUSY)
        save = self.align
        self.align = val
        if not all(self.alloc_is_aligned(r.size) for r in self.ranges):
            self.align = save
            raise KernelError(errno.EINVAL, f"{self.name}: align {val} invalid for a range")

    def resource_show(self) -> str:
        return f"{self.resource:#x}\n"

    def numa_node_show(self) -> str:
        d: Device | None = self
        while d is not None:
            if d.numa_node_id is not None:
                return f"{d.numa_node_id}\n"
            d = d.parent
        return "-1\n"

    def memmap_on_memory_show(self) -> str:
        return f"{int(self.memmap_on_memory)}\n"

    def memmap_on_memory_store(self, buf: bytes) -> None:
        from cxlemu.kernel.base.device import kstrtobool
        val = kstrtobool(buf)
        if val and not self.region.dax.memmap_on_memory_supported():
            raise KernelError(errno.EOPNOTSUPP, f"{self.name}: memmap_on_memory is not available")
        if val != self.memmap_on_memory and isinstance(self.driver, DaxDriver) and \
                self.driver.type == DAXDRV_KMEM_TYPE:
            raise KernelError(errno.EBUSY)
        self.memmap_on_memory = val

    def alloc_is_aligned(self, size: int) -> bool:
        return size % max(self.align, SUBSECTION_SIZE) == 0


class DaxDriver(Driver):
    """struct dax_device_driver: an id list plus a type."""

    def __init__(self, name: str, dax: "Dax", drv_type: str):
        super().__init__(name, dax.bus)
        self.dax = dax
        self.type = drv_type
        self.ids: list[str] = []
        self.extra_attrs = {"new_id": (None, self.new_id_store, 0o200),
                            "remove_id": (None, self.remove_id_store, 0o200)}

    def match(self, dev: Device) -> bool:
        if not isinstance(dev, DevDax):
            return False
        if dev.name in self.ids:
            return True
        if not self.dax.kernel.has("dax_match_type"):
            return self.type == DAXDRV_DEVICE_TYPE          # device_dax had match_always
        want = DAXDRV_KMEM_TYPE if dev.region.kmem else DAXDRV_DEVICE_TYPE
        return self.type == want

    def probe(self, dev: Device) -> None:
        """dax_bus_probe()."""
        assert isinstance(dev, DevDax)
        if dev.size == 0 or dev.id < 0:
            raise KernelError(errno.ENXIO, f"{dev.name}: empty device")
        self.dax.driver_probe(self, dev)
        region = dev.region
        if not region.static and region.seed is dev:
            region.seed = None

    def remove(self, dev: Device) -> None:
        assert isinstance(dev, DevDax)
        self.dax.driver_remove(self, dev)

    def _id_store(self, buf: bytes, add: bool) -> None:
        """bus.c do_id_store()."""
        s = kstr(buf)
        m = re.match(r"dax(-?\d+)\.(-?\d+)", s)
        if not m or kstrip(buf) != f"dax{int(m.group(1))}.{int(m.group(2))}":
            raise KernelError(errno.EINVAL)
        name = kstrip(buf)
        if add:
            if name not in self.ids:
                self.ids.append(name)
            for d in list(self.bus.devices.values()):     # driver_attach(): probe errors ignored
                if d.driver is None and self.match(d):
                    try:
                        driver_probe(self, d)
                    except KernelError:
                        pass
        elif name in self.ids:
            self.ids.remove(name)

    def new_id_store(self, buf: bytes) -> None:
        self._id_store(buf, True)

    def remove_id_store(self, buf: bytes) -> None:
        self._id_store(buf, False)


def new_resource(parent: Resource, start: int, size: int, name: str) -> Resource | None:
    """__request_region() in a dax region's private tree (no nesting)."""
    res = Resource(start, start + size - 1, name)
    try:
        request_resource(parent, res)
    except KernelError:
        return None
    return res


__all__ = ["DAX_MAJOR", "DaxRegion", "DevDax", "DaxMapping", "DaxRange", "DaxDriver", "dax_align_valid",
           "new_resource"]
