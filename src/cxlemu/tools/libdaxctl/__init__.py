"""A sysfs-backed libdaxctl (ndctl daxctl/lib/libdaxctl.c): regions, devices,
mappings and memory, read and written only through a backend's paths."""

from cxlemu.tools.libdaxctl.lib import (DaxctlCtx, DaxctlDev, DaxctlMapping, DaxctlMemory, DaxctlRegion,
                                        MEM_ZONE_MOVABLE, MEM_ZONE_NORMAL, MEM_ZONE_UNKNOWN)

__all__ = ["DaxctlCtx", "DaxctlRegion", "DaxctlDev", "DaxctlMapping", "DaxctlMemory",
           "MEM_ZONE_MOVABLE", "MEM_ZONE_NORMAL", "MEM_ZONE_UNKNOWN"]
