"""``cxl disable-port`` and ``cxl enable-port`` (cxl/port.c, ndctl v81).

* arguments name switch ports (or, with ``-e``, endpoints) by name, id or
  host; each is looked up with ``CXL_PF_SINGLE`` among every port below the
  root (``cxl_port_foreach_all``), so a root port is never found.  An
  unknown one is a notice (``port: %s not found`` / ``endpoint: %s not
  found``) and is not counted;
* ``all`` keeps only the first argument (``argc = 1``); ``all`` itself then
  matches the first port of the walk;
* disable: an already disabled port counts as done.  Enabled memdevs below
  one of the port's dports (plus, with ``-e``, the endpoint's own memdev)
  make it refuse without ``-f``: ``%s hosts %d memdev%s which %s part of an
  active region`` and ``See 'cxl list -M -p %s' to see impacted
  device%s`` (EBUSY).  Then ``<port>/driver/unbind`` and a flush;
* enable: bind through the cxl drivers; with ``-m`` also bind every memdev
  below one of its dports (errors ignored);
* summary ``disabled|enabled %d port%s`` (plural above 1), exit 1 only
  when nothing succeeded and something failed.
"""

from __future__ import annotations

from cxlemu.tools.common.command import CommandContext
from cxlemu.tools.common.log import Log
from cxlemu.tools.common.parse_options import OPT_BOOLEAN, OPT_END, parse_options, usage_with_options
from cxlemu.tools.libcxl import CxlContext, Endpoint, Port

from .action import finish, rc_of, refuse_active_memdevs, set_debug
from .filter import PF_SINGLE, endpoint_filter, port_filter

__all__ = ["cmd_disable_port", "cmd_enable_port", "DISABLE_OPTIONS", "ENABLE_OPTIONS"]


def _base() -> list:
    return [OPT_BOOLEAN(None, "debug", "debug", "turn on debug"),
            OPT_BOOLEAN("e", "endpoint", "endpoint", "target endpoints instead of switch ports")]


DISABLE_OPTIONS = _base() + [
    OPT_BOOLEAN("f", "force", "force", "DANGEROUS: override active memdev safety checks"), OPT_END()]
ENABLE_OPTIONS = _base() + [
    OPT_BOOLEAN("m", "enable-memdevs", "memdevs", "enable downstream memdev(s)"), OPT_END()]


def _find_port(lib: CxlContext, ident: str) -> Port | None:
    for bus in lib.buses():
        for port in bus.iter_all():
            if port_filter(port, ident, PF_SINGLE):
                return port
    return None


def _find_endpoint(lib: CxlContext, ident: str) -> Endpoint | None:
    for bus in lib.buses():
        for port in bus.iter_all():
            for ep in port.endpoints():
                if endpoint_filter(ep, ident):
                    return ep
    return None


def _action_disable(port: Port, pl: Log, opts: dict) -> int:
    devname = port.devname
    if not port.is_enabled():
        pl.dbg("action_disable", f"{devname} already disabled")
        return 0
    active = 0
    if opts.get("endpoint") and isinstance(port, Endpoint) and port.memdev is not None:
        active += 1
    for md in port.ctx.memdevs():
        if port.get_dport_by_memdev(md) is None:
            continue
        if md.is_enabled():
            active += 1
    if active and not opts.get("force"):
        return refuse_active_memdevs(pl, devname, active, "-p")
    return rc_of(port.disable_invalidate)


def _action_enable(port: Port, pl: Log, opts: dict) -> int:
    rc = rc_of(port.enable)
    if rc:
        return rc
    if not opts.get("memdevs"):
        return 0
    for md in port.ctx.memdevs():
        if port.get_dport_by_memdev(md) is not None:
            try:
                md.enable()
            except OSError:
                pass
    return 0


def _port_action(argv: list[str], ctx: CommandContext, action, options: list,
                 usage: str) -> tuple[int, Log]:
    pl = Log.init("cxl port", "CXL_PORT_LOG", ctx.env, stream=ctx.stderr)
    lib = CxlContext(ctx.backend, ctx.env, ctx.stderr)
    parsed = parse_options(argv, options, [usage], stderr=ctx.stderr)
    o, args = parsed.values, list(parsed.args)
    if not args:
        usage_with_options([usage], options)
    if "all" in args:
        args = args[:1]
    set_debug(lib, pl, bool(o.get("debug")))
    count = err = 0
    for a in args:
        if o.get("endpoint"):
            ep = _find_endpoint(lib, a)
            if ep is None:
                pl.notice("port_action", f"endpoint: {a} not found")
                continue
            port: Port = ep
        else:
            found = _find_port(lib, a)
            if found is None:
                pl.notice("port_action", f"port: {a} not found")
                continue
            port = found
        pl.dbg("port_action", f"run action on port: {port.devname}")
        rc = action(port, pl, o)
        if rc == 0:
            count += 1
        elif not err:
            err = rc
    return (count if count > 0 else err), pl


def cmd_disable_port(argv: list[str], ctx: CommandContext) -> int:
    """``cxl disable-port <port0> [<port1>..<portN>] [<options>]``."""
    count, pl = _port_action(argv, ctx, _action_disable, DISABLE_OPTIONS,
                             "cxl disable-port <port0> [<port1>..<portN>] [<options>]")
    return finish(count, pl, "cmd_disable_port", lambda n, s: f"disabled {n} port{s}")


def cmd_enable_port(argv: list[str], ctx: CommandContext) -> int:
    """``cxl enable-port <port0> [<port1>..<portN>] [<options>]``."""
    count, pl = _port_action(argv, ctx, _action_enable, ENABLE_OPTIONS,
                             "cxl enable-port <port0> [<port1>..<portN>] [<options>]")
    return finish(count, pl, "cmd_enable_port", lambda n, s: f"enabled {n} port{s}")
