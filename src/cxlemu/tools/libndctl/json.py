"""ndctl's JSON builders (ndctl/json.c; the ``daxregion`` of a devdax
namespace is daxctl's builder, :mod:`cxlemu.tools.daxctl.daxjson`): key order and the
conditions under which a key appears follow the C code exactly.

* bus: provider, dev (+scrub_state only for NFIT buses);
* dimm: dev, [id], [handle], [phys_id], [state:"disabled"], [flag_*],
  [security], [security_frozen];
* region: dev, size, [align], available_size, [max_available_extent], type,
  [numa_node, target_node with -v], [iset_id], [mappings], [state],
  [badblock_count], [badblocks], [capabilities], persistence_domain;
* namespace: dev, mode, [map], [size], [uuid], [raw_uuid with -v],
  [daxregion | chardev], [sector_size], [align], [blockdev], [state],
  [name], [numa_node, target_node with -v], [badblock_count], [badblocks];
* mapping: dimm, offset, length, [position].
"""

from __future__ import annotations

from typing import Any

from cxlemu.tools.common.util_json import (UTIL_JSON_CAPABILITIES, UTIL_JSON_DAX, UTIL_JSON_HUMAN,
                                           UTIL_JSON_MEDIA_ERRORS, UTIL_JSON_VERBOSE, json_object_hex,
                                           json_object_size)
from cxlemu.tools.daxctl import daxjson

from . import (NS_MODE_DEVDAX, NS_MODE_FSDAX, NS_MODE_RAW, NS_MODE_SECTOR, NULL_UUID, PERSISTENCE_CPU_CACHE,
               PERSISTENCE_MEM_CTRL, PERSISTENCE_NONE, PFN_LOC_PMEM, PFN_LOC_RAM, UINT_MAX, ULLONG_MAX,
               ULONG_MAX, NdBus, NdDimm, NdMapping, NdNamespace, NdRegion,
               ND_DEVICE_NAMESPACE_IO, ND_DEVICE_REGION_PMEM)

Json = dict[str, Any]
LOCATIONS = {0: "none", PFN_LOC_RAM: "mem", PFN_LOC_PMEM: "dev"}


def bus_to_json(bus: NdBus, flags: int) -> Json:
    j: Json = {"provider": bus.provider, "dev": bus.devname}
    if bus.scrub_state() < 0:
        return j
    j["scrub_state"] = "idle"
    return j


def dimm_to_json(dimm: NdDimm, flags: int) -> Json:
    j: Json = {"dev": dimm.devname}
    if dimm.unique_id:
        j["id"] = dimm.unique_id
    if dimm.handle < UINT_MAX:
        j["handle"] = json_object_hex(dimm.handle, flags)
    if dimm.phys_id < 0xFFFF:
        j["phys_id"] = json_object_hex(dimm.phys_id, flags)
    if not dimm.is_enabled():
        j["state"] = "disabled"
    sec = dimm.security()
    if sec:
        j["security"] = sec
    if dimm.security_frozen():
        j["security_frozen"] = True
    return j


def mapping_to_json(m: NdMapping, flags: int) -> Json:
    j: Json = {"dimm": m.dimm.devname, "offset": json_object_hex(m.offset, flags),
               "length": json_object_hex(m.length, flags)}
    if m.position >= 0:
        j["position"] = m.position
    return j


def region_capabilities_to_json(region: NdRegion) -> list | None:
    btt, pfn, dax = region.btt_seed(), region.pfn_seed(), region.dax_seed()
    if not btt and not pfn and not dax:
        return None
    caps = []
    if btt:
        caps.append({"mode": "sector", "sector_sizes": list(btt.lbasize)})
    if pfn:
        caps.append({"mode": "fsdax", "alignments": list(pfn.alignments)})
    if dax:
        caps.append({"mode": "devdax", "alignments": list(dax.alignments)})
    return caps


def region_badblocks(region: NdRegion, flags: int) -> tuple[int, list | None]:
    count = 0
    arr: list = []
    for off, length in region.badblocks():
        count += length
        if flags & UTIL_JSON_MEDIA_ERRORS:
            arr.append({"offset": off, "length": length})
    return count, (arr if count else None)


def namespace_badblocks(ns: NdNamespace) -> list[tuple[int, int]]:
    """ndctl_namespace_badblock_foreach(): /sys/block/<bdev>/badblocks of a raw
    or fsdax namespace's block device (none for btt/dax, or without one)."""
    if ns.btt() or ns.dax():
        return []
    pfn = ns.pfn()
    bdev = pfn.block_device() if pfn else ns.block_device()
    if not bdev:
        return []
    try:
        text = ns.ctx.io.backend.read(f"/sys/block/{bdev}/badblocks")
    except OSError:
        return []
    out = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0].isdigit() and parts[1].isdigit():
            out.append((int(parts[0]), int(parts[1])))
    return out


def _ns_badblocks_json(ns: NdNamespace, flags: int) -> tuple[int, list | None]:
    """util_namespace_badblocks_to_json()."""
    if not flags & UTIL_JSON_MEDIA_ERRORS:
        return 0, None
    count, arr = 0, []
    for off, length in namespace_badblocks(ns):
        count += length
        arr.append({"offset": off, "length": length})
    return count, (arr if count else None)


def dev_badblocks(region: NdRegion, dev_begin: int, dev_size: int) -> list[tuple[int, int]]:
    """dev_badblocks_to_json(): region bad blocks clipped to [dev_begin, dev_begin+dev_size),
    as (sector offset from dev_begin, sectors)."""
    region_begin = region.resource()
    if region_begin == ULLONG_MAX:
        return []
    dev_end = dev_begin + dev_size - 1
    out = []
    for off, length in region.badblocks():
        bb_begin = region_begin + (off << 9)
        bb_end = bb_begin + (length << 9) - 1
        if bb_end <= dev_begin or bb_begin >= dev_end:
            continue
        begin, end = max(bb_begin, dev_begin), min(bb_end, dev_end)
        out.append(((begin - dev_begin) >> 9, (end - begin + 1) >> 9))
    return out


def _dev_badblocks_json(region: NdRegion, begin: int, size: int, flags: int) -> tuple[int, list | None]:
    if begin == ULLONG_MAX or size == ULLONG_MAX:
        return 0, None
    bbs = dev_badblocks(region, begin, size)
    count = sum(n for _, n in bbs)
    arr = [{"offset": o, "length": n} for o, n in bbs] if flags & UTIL_JSON_MEDIA_ERRORS else []
    return count, (arr if count and flags & UTIL_JSON_MEDIA_ERRORS else None)


def namespace_badblocks_json(ns: NdNamespace, flags: int) -> tuple[int, list | None]:
    """The badblock part of util_namespace_to_json(): by personality."""
    pfn, dax, btt = ns.pfn(), ns.dax(), ns.btt()
    if pfn:
        if pfn.resource == ULLONG_MAX:
            return _ns_badblocks_json(ns, flags)
        return _dev_badblocks_json(ns.region, pfn.resource, pfn.size, flags)
    if dax:
        return _dev_badblocks_json(ns.region, dax.resource, dax.size, flags)
    if btt:
        count, _ = _dev_badblocks_json(ns.region, ns.resource, ns.size, 0)
        return count, None
    count, bbs = region_badblocks(ns.region, flags)
    if bbs is None:
        if not flags & UTIL_JSON_MEDIA_ERRORS:
            return count, None
        return _ns_badblocks_json(ns, flags)
    return count, bbs


def region_to_json(region: NdRegion, flags: int, dimm_filter=None, list_dimms: bool = False,
                   show_all_dimms: bool = False) -> Json:
    j: Json = {"dev": region.devname, "size": json_object_size(region.size, flags)}
    if region.align < ULONG_MAX:
        j["align"] = json_object_size(region.align, flags)
    j["available_size"] = json_object_size(region.available_size(), flags)
    extent = region.max_available_extent()
    if extent != ULLONG_MAX:
        j["max_available_extent"] = json_object_size(extent, flags)
    j["type"] = "pmem" if region.type == ND_DEVICE_REGION_PMEM else "blk"
    if region.numa_node >= 0 and flags & UTIL_JSON_VERBOSE:
        j["numa_node"] = region.numa_node
    if region.target_node >= 0 and flags & UTIL_JSON_VERBOSE:
        j["target_node"] = region.target_node
    if region.interleave_set():
        j["iset_id"] = json_object_hex(region.cookie, flags)
    if list_dimms:
        maps = []
        for m in region.mappings():
            if dimm_filter is not None and not dimm_filter(m.dimm):
                continue
            if not show_all_dimms and not m.dimm.is_enabled():
                continue
            maps.append(mapping_to_json(m, flags))
        if maps:
            j["mappings"] = maps
    if not region.is_enabled():
        j["state"] = "disabled"
    count, bbs = region_badblocks(region, flags)
    if count:
        j["badblock_count"] = count
    if flags & UTIL_JSON_MEDIA_ERRORS and bbs:
        j["badblocks"] = bbs
    if flags & UTIL_JSON_CAPABILITIES:
        caps = region_capabilities_to_json(region)
        if caps:
            j["capabilities"] = caps
    pd = region.persistence_domain
    j["persistence_domain"] = {PERSISTENCE_CPU_CACHE: "cpu_cache", PERSISTENCE_MEM_CTRL: "memory_controller",
                               PERSISTENCE_NONE: "none"}.get(pd, "unknown")
    return j


def namespace_to_json(ns: NdNamespace, flags: int) -> Json | None:
    j: Json = {"dev": ns.devname}
    btt, dax, pfn = ns.btt(), ns.dax(), ns.pfn()
    mode = ns.mode()
    size = ULLONG_MAX
    loc = 0
    mode_name = None
    if mode == NS_MODE_FSDAX:
        if pfn:
            size, loc = pfn.size, pfn.loc
        else:
            size, loc = ns.size, PFN_LOC_RAM
        mode_name = "fsdax"
    elif mode == NS_MODE_DEVDAX:
        if not dax:
            return None
        size, loc, mode_name = dax.size, dax.loc, "devdax"
    elif mode == NS_MODE_SECTOR:
        if not btt:
            return None
        size, mode_name = btt.size, "sector"
    elif mode == NS_MODE_RAW:
        size, mode_name = ns.size, "raw"
    if mode_name:
        j["mode"] = mode_name
    if mode not in (NS_MODE_SECTOR, NS_MODE_RAW):
        j["map"] = LOCATIONS.get(loc, "none")
    if size < ULLONG_MAX:
        j["size"] = json_object_size(size, flags)
    align = 0
    bdev = ""
    sector_size = UINT_MAX

    def raw_uuid() -> None:
        if flags & UTIL_JSON_VERBOSE and ns.uuid != NULL_UUID:
            j["raw_uuid"] = str(ns.uuid)

    if btt:
        j["uuid"] = str(btt.uuid)
        raw_uuid()
        bdev = btt.block_device()
    elif pfn:
        align = pfn.align
        j["uuid"] = str(pfn.uuid)
        raw_uuid()
        bdev = pfn.block_device()
    elif dax:
        dregion = dax.daxctl_region()
        align = dax.align
        j["uuid"] = str(dax.uuid)
        raw_uuid()
        if flags & UTIL_JSON_DAX and dregion is not None:
            j["daxregion"] = daxjson.region_to_json(dregion, None, flags)
        elif dregion is not None:
            devs = dregion.devices()
            if devs:
                j["chardev"] = devs[0].devname
    elif ns.type != ND_DEVICE_NAMESPACE_IO:
        j["uuid"] = str(ns.uuid)
        bdev = ns.block_device()
    else:
        bdev = ns.block_device()
    if btt:
        sector_size = btt.sector_size
    elif not dax:
        sector_size = ns.sector_size
        if not sector_size or sector_size == UINT_MAX:
            sector_size = 512
    if sector_size < UINT_MAX:
        j["sector_size"] = sector_size
    if align:
        j["align"] = align
    if bdev:
        j["blockdev"] = bdev
    if not ns.is_active():
        j["state"] = "disabled"
    if ns.alt_name:
        j["name"] = ns.alt_name
    if ns.numa_node >= 0 and flags & UTIL_JSON_VERBOSE:
        j["numa_node"] = ns.numa_node
    if ns.target_node >= 0 and flags & UTIL_JSON_VERBOSE:
        j["target_node"] = ns.target_node
    count, bbs = namespace_badblocks_json(ns, flags)
    if count:
        j["badblock_count"] = count
    if flags & UTIL_JSON_MEDIA_ERRORS and bbs:
        j["badblocks"] = bbs
    return j


__all__ = ["bus_to_json", "dimm_to_json", "mapping_to_json", "region_to_json", "namespace_to_json",
           "region_capabilities_to_json", "UTIL_JSON_HUMAN"]
