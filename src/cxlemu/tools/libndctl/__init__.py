"""A sysfs-backed libndctl: the objects ndctl works with (buses, dimms,
regions, mappings, namespaces, btt/pfn/dax devices), read from the same
paths ndctl/lib/libndctl.c reads; the device-dax region of a dax device
comes from :mod:`cxlemu.tools.libdaxctl`, as libndctl gets it from libdaxctl.

Modules: ``base`` (enums, parsing helpers, the common object behaviour),
``ctx`` (context, buses, dimms), ``region``, ``namespace``, ``claim``
(btt/pfn/dax), ``filter`` and ``json`` (util/filter.c, ndctl/json.c)."""

from .base import (BUS_CMDS, DIMM_CMDS, ENFORCE_NAMES, ND_DEVICE_NAMESPACE_BLK, ND_DEVICE_NAMESPACE_IO,
                   ND_DEVICE_NAMESPACE_PMEM, ND_DEVICE_REGION_BLK, ND_DEVICE_REGION_PMEM,
                   ND_MIN_NAMESPACE_SIZE, NS_MODE_DEVDAX, NS_MODE_FSDAX, NS_MODE_RAW, NS_MODE_SECTOR,
                   NS_MODE_UNKNOWN, NULL_UUID, NUMA_NO_ATTR, NUMA_NO_NODE, PERSISTENCE_CPU_CACHE,
                   PERSISTENCE_MEM_CTRL, PERSISTENCE_NONE, PERSISTENCE_UNKNOWN, PFN_LOC_NONE, PFN_LOC_PMEM,
                   PFN_LOC_RAM, UINT_MAX, ULLONG_MAX, ULONG_MAX)
from .claim import NdBtt, NdDax, NdPfn
from .ctx import NdBus, NdctlCtx, NdDimm
from .namespace import NdNamespace
from .region import NdMapping, NdRegion

__all__ = ["NdctlCtx", "NdBus", "NdDimm", "NdRegion", "NdMapping", "NdNamespace", "NdBtt", "NdPfn",
           "NdDax", "BUS_CMDS", "DIMM_CMDS", "ENFORCE_NAMES",
           "ND_DEVICE_NAMESPACE_BLK", "ND_DEVICE_NAMESPACE_IO", "ND_DEVICE_NAMESPACE_PMEM",
           "ND_DEVICE_REGION_BLK", "ND_DEVICE_REGION_PMEM", "ND_MIN_NAMESPACE_SIZE", "NS_MODE_FSDAX",
           "NS_MODE_DEVDAX", "NS_MODE_RAW", "NS_MODE_SECTOR", "NS_MODE_UNKNOWN", "NULL_UUID",
           "NUMA_NO_ATTR", "NUMA_NO_NODE", "PERSISTENCE_CPU_CACHE", "PERSISTENCE_MEM_CTRL",
           "PERSISTENCE_NONE", "PERSISTENCE_UNKNOWN", "PFN_LOC_NONE", "PFN_LOC_RAM", "PFN_LOC_PMEM",
           "UINT_MAX", "ULLONG_MAX", "ULONG_MAX"]
