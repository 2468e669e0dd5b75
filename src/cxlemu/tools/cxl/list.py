"""``cxl list`` (cxl/list.c, v81).

Option handling reproduced:

* unknown positional arguments: ``unknown parameter "<x>"`` for each, then
  the usage, exit 129;
* ``-S`` without ``-p``: ``-S/--single expects a port filter: -p/--port=``,
  usage, exit 129;
* no object flag (-M -B -P -E -D -R): each filter turns on its own object
  type and ``single`` is forced on; still none: ``-R -M``;
* ``-v`` sets -B -P -E -D -T -R, ``-vv`` adds -i, ``-vvv`` (or more) adds
  -H -I -F -A -X -L;
* ``-p`` holding "root" (substring) with -P adds -B, "endpoint" adds -E;
* output through ``util_display_json_array()``: ``-u`` with exactly one
  object prints it bare; no object prints ``[``/``]`` plus a warning, or
  nothing at all with ``-u``.  The exit status is 0.
"""

from __future__ import annotations

import dataclasses

from cxlemu.tools.common.command import CommandContext
from cxlemu.tools.common.jsonc import display_json
from cxlemu.tools.common.log import LOG_DEBUG, Log
from cxlemu.tools.common.parse_options import (PARSE_OPT_HIDDEN, OPT_BOOLEAN, OPT_END, OPT_INCR, OPT_STRING,
                                               error_text, parse_options, usage_with_options)
from cxlemu.tools.libcxl import CxlContext

from .filter import FilterParams, filter_has, filter_to_flags, filter_walk

__all__ = ["cmd_list", "LIST_OPTIONS", "LIST_USAGE", "params_from_args"]

LIST_USAGE = ["cxl list [<options>]"]

LIST_OPTIONS = [
    OPT_STRING("m", "memdev", "memdev_filter", "memory device name(s)",
               "filter by CXL memory device name(s)"),
    OPT_STRING("s", "serial", "serial_filter", "memory device serial(s)",
               "filter by CXL memory device serial number(s)"),
    OPT_BOOLEAN("M", "memdevs", "memdevs", "include CXL memory device info"),
    OPT_STRING("b", "bus", "bus_filter", "bus device name", "filter by CXL bus device name(s)"),
    OPT_BOOLEAN("B", "buses", "buses", "include CXL bus info"),
    OPT_STRING("p", "port", "port_filter", "port device name", "filter by CXL port device name(s)"),
    OPT_BOOLEAN("P", "ports", "ports", "include CXL port info"),
    OPT_BOOLEAN("S", "single", "single", "skip listing descendant objects"),
    OPT_STRING("e", "endpoint", "endpoint_filter", "endpoint device name",
               "filter by CXL endpoint device name(s)"),
    OPT_BOOLEAN("E", "endpoints", "endpoints", "include CXL endpoint info"),
    OPT_STRING("d", "decoder", "decoder_filter", "decoder device name",
               "filter by CXL decoder device name(s) / class"),
    OPT_BOOLEAN("D", "decoders", "decoders", "include CXL decoder info"),
    OPT_BOOLEAN("T", "targets", "targets",
                "include CXL target data with decoders, ports, or regions"),
    OPT_STRING("r", "region", "region_filter", "region name", "filter by CXL region name(s)"),
    OPT_BOOLEAN("R", "regions", "regions", "include CXL regions"),
    OPT_BOOLEAN("X", "dax", "dax", "include CXL DAX region enumeration"),
    OPT_BOOLEAN("i", "idle", "idle", "include disabled devices"),
    OPT_BOOLEAN("u", "human", "human", "use human friendly number formats"),
    OPT_BOOLEAN("H", "health", "health", "include memory device health information"),
    OPT_BOOLEAN("I", "partition", "partition", "include memory device partition information"),
    OPT_BOOLEAN("F", "firmware", "fw", "include memory device firmware information"),
    OPT_BOOLEAN("A", "alert-config", "alert_config", "include alert configuration information"),
    OPT_BOOLEAN("L", "media-errors", "media_errors", "include media-error information "),
    # ndctl's DCD series (not in v76.1/v81): hidden from the usage text, which must match v76.1's
    dataclasses.replace(OPT_BOOLEAN("N", "extents", "extents", "include dynamic capacity extents of regions"),
                        flags=PARSE_OPT_HIDDEN),
    OPT_INCR("v", "verbose", "verbose", "increase output detail"),
    OPT_BOOLEAN(None, "debug", "debug", "debug list walk"),
    OPT_END(),
]

_FILTERS = ("memdev_filter", "serial_filter", "bus_filter", "port_filter",
            "endpoint_filter", "decoder_filter", "region_filter")
_BOOLS = ("single", "endpoints", "decoders", "regions", "targets", "memdevs", "ports",
          "buses", "idle", "human", "health", "partition", "fw", "alert_config", "dax",
          "media_errors", "extents")


def _num_list_flags(p: FilterParams) -> int:
    return sum(bool(x) for x in (p.memdevs, p.buses, p.ports, p.endpoints, p.decoders, p.regions))


def params_from_args(values: dict) -> FilterParams:
    """Apply cmd_list()'s implicit-flag rules to parsed option values."""
    p = FilterParams(**{k: values.get(k) for k in _FILTERS},
                     **{k: bool(values.get(k)) for k in _BOOLS},
                     verbose=int(values.get("verbose") or 0))
    if _num_list_flags(p) == 0:
        if p.memdev_filter is not None or p.serial_filter is not None:
            p.memdevs = True
        if p.bus_filter is not None:
            p.buses = True
        if p.port_filter is not None:
            p.ports = True
        if p.endpoint_filter is not None:
            p.endpoints = True
        if p.decoder_filter is not None:
            p.decoders = True
        p.single = True
        if p.region_filter is not None:
            p.regions = True
    if _num_list_flags(p) == 0:
        p.regions = True
        p.memdevs = True
    v = p.verbose
    if v >= 3 or v < 0:  # the C switch: "default:" falls into case 3
        p.health = p.partition = p.fw = p.alert_config = p.dax = p.media_errors = True
    if v >= 2 or v < 0:
        p.idle = True
    if v >= 1 or v < 0:
        p.buses = p.ports = p.endpoints = p.decoders = p.targets = p.regions = True
    return p


def cmd_list(argv: list[str], ctx: CommandContext) -> int:
    parsed = parse_options(argv, LIST_OPTIONS, LIST_USAGE, stderr=ctx.stderr)
    if parsed.args:
        usage_with_options(LIST_USAGE, LIST_OPTIONS,
                           "".join(error_text(f'unknown parameter "{a}"\n') for a in parsed.args))
    values = parsed.values
    if values.get("single") and values.get("port_filter") is None:
        usage_with_options(LIST_USAGE, LIST_OPTIONS,
                           error_text("-S/--single expects a port filter: -p/--port=\n"))
    p = params_from_args(values)
    p.log = Log.init("cxl list", "CXL_LIST_LOG", ctx.env, stream=ctx.stderr)
    lib = CxlContext(ctx.backend, ctx.env, ctx.stderr)
    if values.get("debug"):
        lib.set_log_priority(LOG_DEBUG)
        p.log.priority = LOG_DEBUG
    if filter_has(p.port_filter, "root") and p.ports:
        p.buses = True
    if filter_has(p.port_filter, "endpoint") and p.ports:
        p.endpoints = True
    p.log.dbg("cmd_list", "walk topology")
    topology = filter_walk(lib, p, ctx.stderr)
    out, err = display_json(topology, filter_to_flags(p))
    ctx.stdout.write(out)
    ctx.stderr.write(err)
    return 0
