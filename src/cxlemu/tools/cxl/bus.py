"""``cxl disable-bus`` (cxl/bus.c, ndctl v81).

* arguments must look like ``rootN`` or ``N`` (C ``sscanf``) or be ``all``
  (which replaces the list); others log ``'%s' is not a valid bus
  identifer`` [sic], and when none is valid the usage is printed (129);
* each argument picks the first bus matching it (name, id, provider);
  an unmatched one is only a debug message;
* a bus with enabled memdevs (memdevs whose endpoint's bus is this one)
  is refused without ``-f``: ``%s hosts %d memdev%s which %s part of an
  active region`` / ``See 'cxl list -M -b %s' to see impacted device%s``;
* the bus is disabled by unbinding its uport (``ACPI0017:00`` from
  ``cxl_acpi``) through ``<uport>/driver/unbind``, then ``/sys/bus/cxl/flush``;
* summary ``disabled %d bus%s`` with the C plural rule (``s`` above 1,
  so "2 buss"); the log owner is "cxl bus" but its environment variable
  is ``CXL_PORT_LOG`` as in the C code.
"""

from __future__ import annotations

from cxlemu.tools.common.command import CommandContext
from cxlemu.tools.common.log import Log
from cxlemu.tools.common.parse_options import OPT_BOOLEAN, OPT_END, parse_options, usage_with_options
from cxlemu.tools.libcxl import Bus, CxlContext
from cxlemu.tools.libcxl.cnum import sscanf_int

from .action import finish, rc_of, refuse_active_memdevs, set_debug
from .filter import bus_filter

__all__ = ["cmd_disable_bus", "DISABLE_OPTIONS"]

DISABLE_OPTIONS = [
    OPT_BOOLEAN(None, "debug", "debug", "turn on debug"),
    OPT_BOOLEAN("f", "force", "force", "DANGEROUS: override active memdev safety checks"),
    OPT_END(),
]
USAGE = "cxl disable-bus <bus0> [<bus1>..<busN>] [<options>]"


def _action_disable(bus: Bus, bl: Log, opts: dict) -> int:
    devname = bus.devname
    active = sum(1 for md in bus.ctx.memdevs() if md.bus is bus)
    if active and not opts.get("force"):
        return refuse_active_memdevs(bl, devname, active, "-b")
    return rc_of(bus.disable_invalidate)


def cmd_disable_bus(argv: list[str], ctx: CommandContext) -> int:
    """``cxl disable-bus <bus0> [<bus1>..<busN>] [<options>]``."""
    bl = Log.init("cxl bus", "CXL_PORT_LOG", ctx.env, stream=ctx.stderr)
    lib = CxlContext(ctx.backend, ctx.env, ctx.stderr)
    parsed = parse_options(argv, DISABLE_OPTIONS, [USAGE], stderr=ctx.stderr)
    o, args = parsed.values, list(parsed.args)
    if not args:
        usage_with_options([USAGE], DISABLE_OPTIONS)
    err = 0
    for a in args:
        if a == "all":
            args = ["all"]
            break
        if sscanf_int(a, "root") is not None or sscanf_int(a) is not None:
            continue
        bl.err("bus_action", f"'{a}' is not a valid bus identifer")
        err += 1
    if err == len(args):
        usage_with_options([USAGE], DISABLE_OPTIONS)
    set_debug(lib, bl, bool(o.get("debug")))
    count = err = 0
    for a in args:
        bus = next((b for b in lib.buses() if bus_filter(b, a)), None)
        if bus is None:
            bl.dbg("bus_action", f"bus: {a} not found")
            continue
        bl.dbg("bus_action", f"run action on bus: {bus.devname}")
        rc = _action_disable(bus, bl, o)
        if rc == 0:
            count += 1
        elif not err:
            err = rc
    return finish(count if count > 0 else err, bl, "cmd_disable_bus", lambda n, s: f"disabled {n} bus{s}")
