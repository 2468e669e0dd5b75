"""``daxctl list`` (daxctl/list.c)."""

from __future__ import annotations

import errno

from cxlemu.tools.common.command import CommandContext
from cxlemu.tools.common.jsonc import display_json
from cxlemu.tools.common.parse_options import (OPT_BOOLEAN, OPT_END, OPT_STRING, UsageError, error_text,
                                               parse_options, usage_with_options_text)
from cxlemu.tools.common.util_json import (UTIL_JSON_DAX_DEVS, UTIL_JSON_DAX_MAPPINGS, UTIL_JSON_HUMAN,
                                           UTIL_JSON_IDLE)
from cxlemu.tools.daxctl.daxjson import devs_to_list, region_filter, region_to_json
from cxlemu.tools.libdaxctl.lib import new_ctx

USAGE = ["daxctl list [<options>]"]
OPTIONS = [
    OPT_STRING("r", "region", "region", "region-id", "filter by region"),
    OPT_STRING("d", "dev", "dev", "dev-id", "filter by dax device instance name"),
    OPT_BOOLEAN("D", "devices", "devs", "include dax device info"),
    OPT_BOOLEAN("R", "regions", "regions", "include dax region info"),
    OPT_BOOLEAN("M", "mappings", "mappings", "include dax mappings info"),
    OPT_BOOLEAN("i", "idle", "idle", "include idle devices"),
    OPT_BOOLEAN("u", "human", "human", "use human friendly number formats "),
    OPT_END(),
]


def cmd_list(argv: list[str], ctx: CommandContext) -> int:
    vals, args = parse_options(argv, OPTIONS, USAGE)
    if args:
        raise UsageError("".join(error_text(f"unknown parameter \"{a}\"\n") for a in args)
                         + usage_with_options_text(USAGE, OPTIONS))
    if not vals["regions"] and not vals["devs"]:
        vals["regions"] = bool(vals["region"])
        vals["devs"] = bool(vals["dev"])
    if not vals["regions"] and not vals["devs"]:
        vals["devs"] = True
    flags = 0
    if vals["devs"]:
        flags |= UTIL_JSON_DAX_DEVS
    if vals["mappings"]:
        flags |= UTIL_JSON_DAX_MAPPINGS
    if vals["idle"]:
        flags |= UTIL_JSON_IDLE
    if vals["human"]:
        flags |= UTIL_JSON_HUMAN
    dctx = new_ctx(ctx.backend, dict(ctx.env), ctx.stderr)
    jregions: list | None = None
    jdevs: list | None = None
    failed = False
    for region in dctx.regions():
        if not region_filter(region, vals["region"]):
            continue
        if vals["regions"]:
            if jregions is None:
                jregions = []
            jr = region_to_json(region, vals["dev"], flags)
            if jr is None:
                failed = True
                ctx.stderr.write("daxctl-81:cmd_list:118: \n")
                continue
            jregions.append(jr)
        elif vals["devs"]:
            jdevs = devs_to_list(region, jdevs, vals["dev"], flags)
    target = jregions if jregions is not None else jdevs
    if target is not None:
        out, err = display_json(target, flags)
        ctx.stdout.write(out)
        ctx.stderr.write(err)
    return -errno.ENOMEM if failed else 0
