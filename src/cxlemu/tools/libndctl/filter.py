"""ndctl/filter.c: device filters and the bus/dimm/region/namespace walk.

Quirks kept: the numeric form of an identifier is parsed from the *whole*
identifier string, not the current token (``strtoul(ident, ...)``), and
"all" matches everything.  Modes: memory|fsdax, sector|safe, dax|devdax,
raw (case-insensitive).
"""

from __future__ import annotations

import errno
from typing import Callable

from . import (NS_MODE_DEVDAX, NS_MODE_FSDAX, NS_MODE_RAW, NS_MODE_SECTOR, NS_MODE_UNKNOWN, NdBus, NdDimm,

               NdNamespace, NdRegion, ND_DEVICE_REGION_BLK, ND_DEVICE_REGION_PMEM)
from cxlemu.util.lazydc import dataclass

MODE_NAMES = {NS_MODE_FSDAX: "fsdax", NS_MODE_DEVDAX: "devdax", NS_MODE_RAW: "raw", NS_MODE_SECTOR: "sector",
              NS_MODE_UNKNOWN: "unknown"}


def nsmode(mode: str | None) -> int:
    if not mode:
        return NS_MODE_UNKNOWN
    return {"memory": NS_MODE_FSDAX, "fsdax": NS_MODE_FSDAX, "sector": NS_MODE_SECTOR, "safe": NS_MODE_SECTOR,
            "dax": NS_MODE_DEVDAX, "devdax": NS_MODE_DEVDAX, "raw": NS_MODE_RAW}.get(mode.lower(),
                                                                                  NS_MODE_UNKNOWN)


def _whole_number(ident: str) -> int | None:
    """strtoul(ident, &end, 0) with 'end == ident || end[0]' -> None."""
    s = ident.strip(" \t\n")
    try:
        if s.lower().startswith("0x"):
            return int(s[2:], 16)
        if s.startswith("0") and len(s) > 1:
            return int(s[1:], 8)
        return int(s, 10)
    except ValueError:
        return None


def _tokens(ident: str) -> list[str]:
    return [t for t in ident.split(" ") if t]


def _id_or_name(ident: str | None, obj_id: int, *names: str) -> bool:
    """The bus/region/dimm filter: a token "all", or the whole identifier's
    number equal to ``obj_id``, or (when it is not a number) a token equal
    to one of ``names``."""
    if not ident:
        return True
    num = _whole_number(ident)
    for name in _tokens(ident):
        if name == "all":
            return True
        if num is not None and num == obj_id:
            return True
        if num is None and name in names:
            return True
    return False


def bus_filter(bus: NdBus, ident: str | None) -> bool:
    return _id_or_name(ident, bus.id, bus.provider, bus.devname)


def region_filter(region: NdRegion, ident: str | None) -> bool:
    return _id_or_name(ident, region.id, region.devname)


def dimm_filter(dimm: NdDimm, ident: str | None) -> bool:
    return _id_or_name(ident, dimm.id, dimm.devname)


def namespace_filter(ns: NdNamespace, ident: str | None) -> bool:
    if not ident:
        return True
    for name in _tokens(ident):
        if name == "all" or name == ns.devname:
            return True
        parts = name.split(".")
        if len(parts) == 2 and all(p.lstrip("+-").isdigit() for p in parts):
            if int(parts[0]) == ns.region.id and int(parts[1]) == ns.id:
                return True
    return False


def region_filter_by_dimm(region: NdRegion, ident: str | None) -> bool:
    if not ident or ident == "all":
        return True
    return any(dimm_filter(d, ident) for d in region.dimms())


def region_filter_by_namespace(region: NdRegion, ident: str | None) -> bool:
    if not ident or ident == "all":
        return True
    return any(namespace_filter(n, ident) for n in region.namespaces())


@dataclass
class FilterParams:
    bus: str | None = None
    region: str | None = None
    dimm: str | None = None
    namespace: str | None = None
    mode: str | None = None
    type: str | None = None
    numa_node: str | None = None


@dataclass
class FilterCallbacks:
    filter_bus: Callable[[NdBus], bool]
    filter_dimm: Callable[[NdDimm], None] | None
    filter_region: Callable[[NdRegion], bool]
    filter_namespace: Callable[[NdNamespace], None] | None


def filter_walk(ctx, cb: FilterCallbacks, p: FilterParams, error: Callable[[str], None]) -> int:
    """ndctl_filter_walk()."""
    rtype = 0
    if p.type and p.type not in ("pmem", "blk"):
        error(f'unknown type "{p.type}" must be "pmem" or "blk"\n')
        return -errno.EINVAL
    if p.type:
        rtype = ND_DEVICE_REGION_PMEM if p.type == "pmem" else ND_DEVICE_REGION_BLK
    if p.mode and nsmode(p.mode) == NS_MODE_UNKNOWN:
        error(f"invalid mode: '{p.mode}'\n")
        return -errno.EINVAL
    numa = -1
    if p.numa_node and p.numa_node != "all":
        if not ctx.io.exists("/sys/devices/system/node"):
            error("This system does not support NUMA")
            return -errno.EINVAL
        try:
            numa = int(p.numa_node, 0)
        except ValueError:
            error(f"invalid numa_node: '{p.numa_node}'\n")
            return -errno.EINVAL
    for bus in ctx.buses():
        if not bus_filter(bus, p.bus):
            continue
        if p.dimm and p.dimm != "all" and not any(dimm_filter(d, p.dimm) for d in bus.dimms()):
            continue
        if p.region and p.region != "all" and not any(region_filter(r, p.region) for r in bus.regions()):
            continue
        if p.namespace and p.namespace != "all" and not any(
                namespace_filter(n, p.namespace) for r in bus.regions() for n in r.namespaces()):
            continue
        if not cb.filter_bus(bus):
            continue
        if cb.filter_dimm is not None:
            for d in bus.dimms():
                if not dimm_filter(d, p.dimm):
                    continue
                if p.region and p.region != "all" and not any(
                        region_filter(r, p.region) and d in r.dimms() for r in bus.regions()):
                    continue
                if p.namespace and p.namespace != "all" and not any(
                        namespace_filter(n, p.namespace) and d in r.dimms()
                        for r in bus.regions() for n in r.namespaces()):
                    continue
                if numa != -1 and not any(d in r.dimms() and r.numa_node == numa for r in bus.regions()):
                    continue
                cb.filter_dimm(d)
        for region in bus.regions():
            if not region_filter(region, p.region) or not region_filter_by_dimm(region, p.dimm) \
                    or not region_filter_by_namespace(region, p.namespace):
                continue
            if numa != -1 and region.has_numa() and region.numa_node != numa:
                continue
            if rtype and region.type != rtype:
                continue
            if not cb.filter_region(region):
                continue
            if cb.filter_namespace is None:
                continue
            for ns in region.namespaces():
                if not namespace_filter(ns, p.namespace):
                    continue
                if p.mode and nsmode(p.mode) != ns.mode():
                    continue
                if numa != -1 and ns.numa_node != numa:
                    continue
                cb.filter_namespace(ns)
    return 0
