"""``ndctl list`` (ndctl/list.c).

Selection rules: without -B/-D/-R/-N the -b/-r/-d filters turn on the
matching object kinds, else namespaces are listed; -v adds media errors,
namespaces and device-dax details, -vv adds buses, dimms and regions, -vvv
adds idle devices, firmware, health and capabilities.  Disabled regions and
dimms, and namespaces that are not active, are hidden unless -i (or -c with
a size).  Output: the bus array when buses are listed; otherwise a
``{"dimms","regions","namespaces"}`` object when more than one kind was
collected, else the single array (util_display_json_array: a lone object
is printed bare with -u).
"""

from __future__ import annotations

import errno

from cxlemu.tools.common.command import CommandContext
from cxlemu.tools.common.jsonc import dumps
from cxlemu.tools.common.parse_options import (OPT_BOOLEAN, OPT_END, OPT_INCR, OPT_STRING, error_text,
                                               parse_options, usage_with_options)
from cxlemu.tools.common.util_json import (UTIL_JSON_CAPABILITIES, UTIL_JSON_CONFIGURED, UTIL_JSON_DAX,
                                           UTIL_JSON_DAX_DEVS, UTIL_JSON_FIRMWARE, UTIL_JSON_HUMAN,
                                           UTIL_JSON_IDLE, UTIL_JSON_MEDIA_ERRORS, UTIL_JSON_VERBOSE)
from cxlemu.tools.common.jsonc import display_json
from cxlemu.tools.libndctl.filter import FilterCallbacks, FilterParams, dimm_filter, filter_walk
from cxlemu.tools.libndctl.json import bus_to_json, dimm_to_json, namespace_to_json, region_to_json

from .common import make_ctx

USAGE = ["ndctl list [<options>]"]
OPTIONS = [
    OPT_STRING("b", "bus", "bus", "bus-id", "filter by bus"),
    OPT_STRING("r", "region", "region", "region-id", "filter by region"),
    OPT_STRING("d", "dimm", "dimm", "dimm-id", "filter by dimm"),
    OPT_STRING("n", "namespace", "namespace", "namespace-id", "filter by namespace id"),
    OPT_STRING("m", "mode", "mode", "namespace-mode", "filter by namespace mode"),
    OPT_STRING("t", "type", "type", "region-type", "filter by region-type"),
    OPT_STRING("U", "numa-node", "numa_node", "numa node", "filter by numa node"),
    OPT_BOOLEAN("B", "buses", "buses", "include bus info"),
    OPT_BOOLEAN("D", "dimms", "dimms", "include dimm info"),
    OPT_BOOLEAN("F", "firmware", "firmware", "include firmware info"),
    OPT_BOOLEAN("H", "health", "health", "include dimm health"),
    OPT_BOOLEAN("R", "regions", "regions", "include region info"),
    OPT_BOOLEAN("N", "namespaces", "namespaces", "include namespace info (default)"),
    OPT_BOOLEAN("X", "device-dax", "dax", "include device-dax info"),
    OPT_BOOLEAN("C", "capabilities", "capabilities", "include region capability info"),
    OPT_BOOLEAN("i", "idle", "idle", "include idle devices"),
    OPT_BOOLEAN("c", "configured", "configured", "include configured namespaces, disabled or not"),
    OPT_BOOLEAN("M", "media-errors", "media_errors", "include media errors"),
    OPT_BOOLEAN("u", "human", "human", "use human friendly number formats "),
    OPT_INCR("v", "verbose", "verbose", "increase output detail"),
    OPT_END(),
]


def cmd_list(argv: list[str], ctx: CommandContext) -> int:
    parsed = parse_options(argv, OPTIONS, USAGE)
    o = parsed.values
    if parsed.args:
        usage_with_options(USAGE, OPTIONS, "".join(error_text(f'unknown parameter "{a}"\n')
                                                    for a in parsed.args))
    lint = bool(ctx.env.get("NDCTL_LIST_LINT"))
    p = FilterParams(bus=o["bus"], region=o["region"], dimm=o["dimm"], namespace=o["namespace"],
                     mode=o["mode"], type=o["type"], numa_node=o["numa_node"])

    def nflags() -> int:
        return int(o["buses"]) + int(o["dimms"]) + int(o["regions"]) + int(o["namespaces"])

    if nflags() == 0:
        o["buses"], o["regions"], o["dimms"] = bool(p.bus), bool(p.region), bool(p.dimm)
        if o["dax"] and not p.mode:
            p.mode = "dax"
    v = o["verbose"]
    if v >= 3:
        o["idle"] = o["firmware"] = o["health"] = o["capabilities"] = True
    if v >= 2:
        if not lint:
            o["dimms"] = o["buses"] = o["regions"] = True
        elif nflags() == 0:
            o["dimms"] = o["buses"] = o["regions"] = o["namespaces"] = True
    if v >= 1:
        o["media_errors"] = True
        if not lint:
            o["namespaces"] = True
        o["dax"] = True
    if nflags() == 0:
        o["namespaces"] = True

    flags = 0
    for key, bit in (("idle", UTIL_JSON_IDLE), ("configured", UTIL_JSON_CONFIGURED),
                     ("media_errors", UTIL_JSON_MEDIA_ERRORS), ("human", UTIL_JSON_HUMAN),
                     ("capabilities", UTIL_JSON_CAPABILITIES), ("firmware", UTIL_JSON_FIRMWARE)):
        if o[key]:
            flags |= bit
    if o["dax"]:
        flags |= UTIL_JSON_DAX | UTIL_JSON_DAX_DEVS
    if v:
        flags |= UTIL_JSON_VERBOSE

    nd = make_ctx(ctx)
    state: dict = {"jbuses": None, "jbus": None, "jdimms": None, "jregions": None, "jregion": None,
                   "jnamespaces": None}
    show_all = o["configured"] or o["idle"]

    def array(key: str, name: str, container: dict | None) -> list:
        """``state[key]``, created on first use and then listed as ``name``
        in ``container`` (when there is one)."""
        if state[key] is None:
            state[key] = []
            if container is not None:
                container[name] = state[key]
        return state[key]

    def f_bus(bus) -> bool:
        if state["jbuses"] is not None:
            state["jdimms"] = state["jregion"] = state["jregions"] = state["jnamespaces"] = None
        if not o["buses"]:
            return True
        if state["jbuses"] is None:
            state["jbuses"] = []
        state["jbus"] = bus_to_json(bus, flags)
        state["jbuses"].append(state["jbus"])
        return True

    def f_dimm(dimm) -> None:
        if not show_all and not dimm.is_enabled():
            return
        array("jdimms", "dimms", state["jbus"]).append(dimm_to_json(dimm, flags))

    def f_region(region) -> bool:
        if not o["regions"]:
            return True
        if not show_all and not region.is_enabled():
            return True
        jregions = array("jregions", "regions", state["jbus"])
        jr = region_to_json(region, flags, dimm_filter=lambda d: dimm_filter(d, p.dimm),
                            list_dimms=bool(o["dimms"]), show_all_dimms=show_all)
        state["jregion"] = jr
        state["jnamespaces"] = None
        jregions.append(jr)
        return True

    def f_namespace(ns) -> None:
        size = ns.size
        if ns.is_active() or o["idle"] or (o["configured"] and 0 < size < (1 << 64) - 1):
            pass
        else:
            return
        jnamespaces = array("jnamespaces", "namespaces",
                            state["jregion"] if state["jregion"] is not None else state["jbus"])
        j = namespace_to_json(ns, flags)
        if j is not None:
            jnamespaces.append(j)

    def error(msg: str) -> None:
        ctx.stderr.write(error_text(msg))

    cb = FilterCallbacks(f_bus, f_dimm if o["dimms"] else None, f_region,
                         f_namespace if o["namespaces"] else None)
    rc = filter_walk(nd, cb, p, error)
    if rc:
        return rc
    jb, jd, jr, jn = state["jbuses"], state["jdimms"], state["jregions"], state["jnamespaces"]
    if jb is not None:
        out, err = display_json(jb, flags)
    elif (jd is not None) + (jr is not None) + (jn is not None) > 1:
        plat: dict = {}
        if jd is not None:
            plat["dimms"] = jd
        if jr is not None:
            plat["regions"] = jr
        if jn is not None and jr is None:
            plat["namespaces"] = jn
        out, err = dumps(plat) + "\n", ""
    elif jd is not None:
        out, err = display_json(jd, flags)
    elif jr is not None:
        out, err = display_json(jr, flags)
    elif jn is not None:
        out, err = display_json(jn, flags)
    else:
        out, err = "", ""
    ctx.stdout.write(out)
    ctx.stderr.write(err)
    return 0


__all__ = ["cmd_list", "errno"]
