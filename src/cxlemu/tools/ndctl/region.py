"""ndctl enable-region / disable-region (ndctl/region.c).

One region argument (id, name or "all"); -b/--bus and -t/--type filters.
Disabling first disables every namespace of the region the safe way
(a device-dax instance with online system-ram stops it), then unbinds the
region.  Summaries go to stderr: ``enabled 1 region``, ``disabled 0 regions``.
"""

from __future__ import annotations

from cxlemu.tools.common.command import CommandContext
from cxlemu.tools.common.parse_options import (OPT_END, OPT_STRING, error_text, parse_options,
                                               usage_with_options)
from cxlemu.tools.libndctl.filter import bus_filter, region_filter

from .common import make_ctx, strerror


def _options() -> list:
    return [
        OPT_STRING("b", "bus", "bus", "bus-id", "<region> must be on a bus with an id/provider of <bus-id>"),
        OPT_STRING("t", "type", "type", "region-type", "<region> must be of the specified type"),
        OPT_END(),
    ]


def _parse(argv: list[str], usage: str) -> tuple[str, dict]:
    opts = _options()
    u = [usage]
    parsed = parse_options(argv, opts, u)
    args = parsed.args
    msgs = ""
    if not args:
        msgs += error_text('specify a specific region id to act on, or "all"\n')
    for a in args[1:]:
        msgs += error_text(f'unknown extra parameter "{a}"\n')
    if len(args) != 1:
        usage_with_options(u, opts, msgs)
    t = parsed.values["type"]
    if t and t not in ("pmem", "blk"):
        usage_with_options(u, opts, error_text(f"unknown region type '{t}', should be 'pmem' or 'blk'\n"))
    return args[0], parsed.values


def _do(ctx: CommandContext, region_arg: str, vals: dict, enable: bool) -> int:
    nd = make_ctx(ctx)
    success = 0
    for bus in nd.buses():
        if not bus_filter(bus, vals["bus"]):
            continue
        for region in bus.regions():
            if vals["type"] and vals["type"] != region.type_name:
                continue
            if not region_filter(region, region_arg):
                continue
            if enable:
                rc = region.enable()
            else:
                rc = 0
                for ns in region.namespaces():
                    rc = ns.disable_safe()
                    if rc:
                        break
                if rc == 0:
                    rc = region.disable()
            if rc == 0:
                success += 1
    return success


def _report(ctx: CommandContext, n: int, verb: str) -> int:
    if n < 0:
        ctx.stderr.write(f"error {verb[:-1]}ing regions: {strerror(n)}\n")
        return n
    if n == 0:
        ctx.stderr.write(f"{verb} 0 regions\n")
        return 0
    ctx.stderr.write(f"{verb} {n} region{'s' if n > 1 else ''}\n")
    return 0


def cmd_enable_region(argv: list[str], ctx: CommandContext) -> int:
    region, vals = _parse(argv, "ndctl enable-region <region> [<options>]")
    return _report(ctx, _do(ctx, region, vals, True), "enabled")


def cmd_disable_region(argv: list[str], ctx: CommandContext) -> int:
    region, vals = _parse(argv, "ndctl disable-region <region> [<options>]")
    return _report(ctx, _do(ctx, region, vals, False), "disabled")
