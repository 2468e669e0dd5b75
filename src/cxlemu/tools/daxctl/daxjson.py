"""daxctl JSON objects and filters (daxctl/json.c, daxctl/filter.c).

The one builder of device-dax JSON: ``daxctl list``, the ``daxregion`` of
``ndctl list`` namespaces and of ``cxl list -X`` regions all come from
:func:`region_to_json` / :func:`dev_to_json` over libdaxctl objects, as the
real ndctl and cxl link daxctl/json.c.

Key order and presence:

* device: ``chardev``, ``size``, [``target_node`` if >= 0], [``align`` if > 0],
  ``mode`` ("system-ram" when bound to kmem, else "devdax"); in system-ram
  mode with a resource: ``online_memblocks``, ``total_memblocks``,
  [``movable`` unless a block is offline]; [``state``: "disabled"] when not
  bound; with -M: [``mappings``: page_offset, start, end, size].
* region: [``path`` (without the /sys/devices prefix) unless embedded],
  ``id``, [``size`` unless unknown], [``available_size`` if non-zero],
  [``align`` (plain u64) unless unknown], [``devices``].
* devices of size 0 are listed only with -i.
"""

from __future__ import annotations

import re
from typing import Any

from cxlemu.tools.common.parse_options import ULLONG_MAX
from cxlemu.tools.common.util_json import (UTIL_JSON_CONFIGURED, UTIL_JSON_DAX, UTIL_JSON_DAX_DEVS,
                                           UTIL_JSON_DAX_MAPPINGS, UTIL_JSON_IDLE, json_object_hex,
                                           json_object_size)
from cxlemu.tools.libdaxctl.lib import DaxctlDev, DaxctlMapping, DaxctlRegion


def _sscanf_int(s: str, pattern: str) -> list[int] | None:
    m = re.match(pattern, s)
    return [int(g) for g in m.groups()] if m else None


def dev_filter(dev: DaxctlDev, ident: str | None) -> bool:
    """util_daxctl_dev_filter()."""
    if not ident or ident == "all":
        return True
    if ident == dev.devname:
        return True
    ids = _sscanf_int(ident, r"\s*([+-]?\d+)\.([+-]?\d+)")
    return bool(ids and dev.region.id == ids[0] and dev.id == ids[1])


def region_filter(region: DaxctlRegion, ident: str | None) -> bool:
    """util_daxctl_region_filter()."""
    if not ident or ident == "all":
        return True
    ids = _sscanf_int(ident, r"\s*([+-]?\d+)") or _sscanf_int(ident, r"region([+-]?\d+)")
    return bool(ids and region.id == ids[0])


def mapping_to_json(m: DaxctlMapping, flags: int) -> dict[str, Any]:
    return {"page_offset": json_object_hex(m.pgoff, flags), "start": json_object_hex(m.start, flags),
            "end": json_object_hex(m.end, flags), "size": json_object_size(m.size, flags)}


def dev_to_json(dev: DaxctlDev, flags: int) -> dict[str, Any]:
    """util_daxctl_dev_to_json()."""
    mem = dev.memory()
    j: dict[str, Any] = {"chardev": dev.devname, "size": json_object_size(dev.size, flags)}
    if dev.target_node >= 0:
        j["target_node"] = dev.target_node
    align = dev.align & 0xFFFFFFFF
    align = align - (1 << 32) if align & 0x80000000 else align     # int align = daxctl_dev_get_align()
    if align > 0:
        j["align"] = json_object_size(dev.align, flags)
    j["mode"] = "system-ram" if mem else "devdax"
    if mem and dev.resource != 0:
        num_sections = mem.num_sections()
        num_online = mem.is_online()
        j["online_memblocks"] = num_online
        j["total_memblocks"] = num_sections
        movable = mem.is_movable()
        if movable in (0, 1):
            j["movable"] = bool(movable)
    if not dev.is_enabled():
        j["state"] = "disabled"
    if not flags & UTIL_JSON_DAX_MAPPINGS:
        return j
    maps = dev.mappings()
    if maps:
        j["mappings"] = [mapping_to_json(m, flags) for m in maps]
    return j


def devs_to_list(region: DaxctlRegion, jdevs: list | None, ident: str | None, flags: int) -> list | None:
    """util_daxctl_devs_to_list()."""
    for dev in region.devices():
        if not dev_filter(dev, ident):
            continue
        if not flags & (UTIL_JSON_IDLE | UTIL_JSON_CONFIGURED) and not dev.size:
            continue
        if jdevs is None:
            jdevs = []
        jdevs.append(dev_to_json(dev, flags))
    return jdevs


def region_to_json(region: DaxctlRegion, ident: str | None, flags: int) -> dict[str, Any] | None:
    """util_daxctl_region_to_json()."""
    j: dict[str, Any] = {}
    if not flags & UTIL_JSON_DAX:
        if not region.path.startswith("/sys/devices"):
            return None
        j["path"] = region.path[len("/sys/devices"):]
    j["id"] = region.id
    if region.size < ULLONG_MAX:
        j["size"] = json_object_size(region.size, flags)
    avail = region.available_size()
    if avail:
        j["available_size"] = json_object_size(avail, flags)
    if region.align < ULLONG_MAX:
        j["align"] = region.align
    if not flags & UTIL_JSON_DAX_DEVS:
        return j
    devs = devs_to_list(region, None, ident, flags)
    if devs is not None:
        j["devices"] = devs
    return j
