"""``cxl list`` filters (cxl/filter.c v81); the walk is in walk.py.

Filter strings: one identifier, a space separated list (when the string
holds a space) or a comma separated list; identifiers of one option are
OR'ed, options are AND'ed.  Numeric identifiers are parsed with C
``sscanf("%d")``, so a host name such as ``0000:35:00.0`` also matches id 0
(kept: it is what the real tool does).

The walk (walk.py :func:`filter_walk`) reproduces ``cxl_filter_walk()`` control
flow statement by statement, including its ``goto walk_children`` paths
(an object that fails a filter still has its children walked; an idle
port is skipped with its whole subtree) and the container logic: children
nest under the nearest emitted ancestor as ``"<kind>:<parent>"`` arrays,
and the nine top-level arrays are spliced into the result, wrapped in
``{"<name>": [...]}`` objects only when more than one is non-empty.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import field

from cxlemu.tools.common.log import Log
from cxlemu.tools.common.parse_options import strtoull
from cxlemu.tools.common.util_json import (UTIL_JSON_ALERT_CONFIG, UTIL_JSON_DAX, UTIL_JSON_DAX_DEVS,
                                           UTIL_JSON_FIRMWARE, UTIL_JSON_HEALTH, UTIL_JSON_HUMAN,
                                           UTIL_JSON_EXTENTS, UTIL_JSON_IDLE, UTIL_JSON_MEDIA_ERRORS,
                                           UTIL_JSON_PARTITION,
                                           UTIL_JSON_TARGETS)
from cxlemu.tools.libcxl import Bus, CxlContext, Decoder, Dport, Endpoint, Memdev, Port, Region, Target
from cxlemu.tools.libcxl.cnum import c_tokens, sscanf_int, sscanf_int_pair
from cxlemu.util.lazydc import dataclass

__all__ = ["FilterParams", "PF_SINGLE", "PF_ANCESTRY", "filter_has", "filter_to_flags",
           "memdev_filter", "port_filter", "bus_filter", "endpoint_filter",
           "decoder_filter", "region_filter"]

PF_SINGLE = 0
PF_ANCESTRY = 1


@dataclass
class FilterParams:
    """``struct cxl_filter_params``."""

    memdev_filter: str | None = None
    serial_filter: str | None = None
    bus_filter: str | None = None
    port_filter: str | None = None
    endpoint_filter: str | None = None
    decoder_filter: str | None = None
    region_filter: str | None = None
    single: bool = False
    endpoints: bool = False
    decoders: bool = False
    regions: bool = False
    targets: bool = False
    memdevs: bool = False
    ports: bool = False
    buses: bool = False
    idle: bool = False
    human: bool = False
    health: bool = False
    partition: bool = False
    fw: bool = False
    alert_config: bool = False
    dax: bool = False
    media_errors: bool = False
    extents: bool = False           # -N (ndctl DCD series)
    verbose: int = 0
    log: Log = field(default_factory=lambda: Log("cxl list"))


def filter_to_flags(p: FilterParams) -> int:
    """``cxl_filter_to_flags()``."""
    flags = 0
    for on, bit in ((p.idle, UTIL_JSON_IDLE), (p.human, UTIL_JSON_HUMAN),
                    (p.health, UTIL_JSON_HEALTH), (p.targets, UTIL_JSON_TARGETS),
                    (p.partition, UTIL_JSON_PARTITION), (p.fw, UTIL_JSON_FIRMWARE),
                    (p.alert_config, UTIL_JSON_ALERT_CONFIG),
                    (p.dax, UTIL_JSON_DAX | UTIL_JSON_DAX_DEVS),
                    (p.media_errors, UTIL_JSON_MEDIA_ERRORS),
                    (p.extents, UTIL_JSON_EXTENTS)):
        if on:
            flags |= int(bit)
    return flags


def _sep(text: str) -> str:
    """``which_sep()``."""
    if " " in text:
        return " "
    if "," in text:
        return ","
    return " "


def _args(text: str) -> list[str]:
    return c_tokens(text, _sep(text))


def filter_has(filt: str | None, needle: str | None) -> bool:
    """``cxl_filter_has()``: some identifier contains ``needle``."""
    if needle is None:
        return True
    if filt is None:
        return False
    return any(needle in a for a in _args(filt))


def _id_is(arg: str, prefix: str, obj_id: int) -> bool:
    """``(sscanf(arg, "%d") == 1 || sscanf(arg, "<prefix>%d") == 1) && id == obj_id``."""
    v = sscanf_int(arg)
    if v is None:
        v = sscanf_int(arg, prefix)
    return v is not None and v == obj_id


# ---------------------------------------------------------------------------
# single-object filters
# ---------------------------------------------------------------------------

def _names(ident: str | None, prefix: str, obj_id: int, *names: str | None) -> bool:
    """Some identifier of ``ident`` is "all", the object's id (``N`` or
    ``<prefix>N``) or one of ``names`` (no ``ident``: everything matches)."""
    if ident is None:
        return True
    return any(arg == "all" or _id_is(arg, prefix, obj_id) or arg in names for arg in _args(ident))


def _port_kind(arg: str, port: Port) -> bool:
    """The keywords port and decoder filters share: all, root, switch, endpoint."""
    return (arg == "all" or (arg == "root" and port.is_root()) or (arg == "switch" and port.is_switch())
            or (arg == "endpoint" and port.is_endpoint()))


def _any_memdev(ctx: CxlContext, ident: str | None, serial: str | None, pred) -> bool:
    """The ``*_filter_by_memdev()`` loop: no memdev filter passes; else some
    memdev that passes :func:`memdev_filter` satisfies ``pred(md)``."""
    if ident is None and serial is None:
        return True
    return any(memdev_filter(md, ident, serial) and pred(md) for md in ctx.memdevs())


def _self_and_endpoints(port: Port) -> Iterator[Port]:
    """The port, then every endpoint below it, depth first."""
    yield port
    for ep in port.endpoints():
        yield from _self_and_endpoints(ep)


def _self_or_endpoints(port: Port, test) -> bool:
    """``test(port)``, else the same on every endpoint below, depth first."""
    return any(test(p) for p in _self_and_endpoints(port))


def _bus_ports(bus: Bus) -> Iterator[Port]:
    """The bus and its endpoints, then each port below it
    (``cxl_port_foreach_all``) and its endpoints."""
    yield from _self_and_endpoints(bus)
    for p in bus.iter_all():
        yield from _self_and_endpoints(p)


def _bus_or_ports(bus: Bus, test) -> bool:
    return any(test(p) for p in _bus_ports(bus))


def _kept(ctx: CxlContext, key: tuple, compute):
    """``compute()``, kept on the context under ``key`` until the library
    next writes to sysfs.  A per-memdev filter that walks every port's
    decoders asks the same question for each of thousands of memdevs."""
    hit = ctx.memo.get(key)
    if hit is None or hit[0] != ctx.io.writes:
        hit = ctx.memo[key] = (ctx.io.writes, compute())
    return hit[1]


def endpoint_filter(ep: Endpoint, ident: str | None) -> bool:
    return _names(ident, "endpoint", ep.id, ep.devname, ep.host)


def _port_filter_one(port: Port, ident: str | None) -> bool:
    if ident is None:
        return True
    return any(_port_kind(arg, port) or _id_is(arg, "port", port.id) or arg in (port.devname, port.host)
               for arg in _args(ident))


def port_filter(port: Port, ident: str | None, mode: int) -> bool:
    """``util_cxl_port_filter()``: the port, or (ANCESTRY) any ancestor."""
    it: Port | None = port
    while it is not None:
        if _port_filter_one(it, ident):
            return True
        if mode == PF_SINGLE:
            return False
        it = it.parent
    return False


def endpoint_filter_by_port(ep: Endpoint, ident: str | None, mode: int) -> bool:
    if port_filter(ep, ident, PF_SINGLE):
        return True
    if ep.parent is None:
        return False
    return port_filter(ep.parent, ident, mode)


def decoder_filter_by_port(dec: Decoder, ident: str | None, mode: int) -> bool:
    return port_filter(dec.port, ident, mode)


def bus_filter(bus: Bus, ident: str | None) -> bool:
    return _names(ident, "root", bus.id, bus.devname, bus.provider)


def port_filter_by_bus(port: Port, ident: str | None) -> bool:
    if ident is None:
        return True
    if port.is_root():
        return bus_filter(port, ident)  # type: ignore[arg-type]
    return any(bus_filter(bus, ident) and bus is port.bus for bus in port.ctx.buses())


def memdev_filter_by_bus(md: Memdev, ident: str | None) -> bool:
    if ident is None:
        return True
    return any(bus_filter(bus, ident) and bus is md.bus for bus in md.ctx.buses())


def decoder_filter_by_bus(dec: Decoder, ident: str | None) -> bool:
    return port_filter_by_bus(dec.port, ident)


def memdev_serial_filter(md: Memdev, serials: str | None) -> bool:
    if serials is None:
        return True
    for arg in _args(serials):
        val, end = strtoull(arg, 0)
        if not arg or end != len(arg):
            continue
        if md.serial == val:
            return True
    return False


def memdev_filter(md: Memdev, ident: str | None, serials: str | None) -> bool:
    """``util_cxl_memdev_filter()``."""
    if not _names(ident, "mem", md.id, md.devname, md.host):
        return False
    return memdev_serial_filter(md, serials)


def bus_filter_by_memdev(bus: Bus, ident: str | None, serial: str | None) -> bool:
    return _any_memdev(bus.ctx, ident, serial, lambda md: md.bus is bus)


def endpoint_filter_by_memdev(ep: Endpoint, ident: str | None, serial: str | None) -> bool:
    return _any_memdev(ep.ctx, ident, serial, lambda md: md.endpoint is ep)


def port_filter_by_memdev(port: Port, ident: str | None, serial: str | None) -> bool:
    return _any_memdev(port.ctx, ident, serial, port.hosts_memdev)


def decoder_filter(dec: Decoder, ident: str | None) -> bool:
    """``util_cxl_decoder_filter()``."""
    if ident is None:
        return True
    port = dec.port
    for arg in _args(ident):
        if _port_kind(arg, port):
            return True
        pair = sscanf_int_pair(arg)
        if pair is None:
            pair = sscanf_int_pair(arg, "decoder")
        if pair is not None and pair == (port.id, dec.id):
            return True
        if arg == dec.devname:
            return True
    return False


def decoder_filter_by_memdev(dec: Decoder, ident: str | None, serial: str | None) -> bool:
    def maps(md: Memdev) -> bool:
        if dec.target_by_memdev(md) is not None:
            return True
        ep = dec.port.to_endpoint()
        return ep is not None and ep.memdev is md
    return _any_memdev(dec.ctx, ident, serial, maps)


def target_filter_by_memdev(t: Target, ident: str | None, serial: str | None) -> bool:
    return _any_memdev(t.decoder.ctx, ident, serial, t.maps_memdev)


def dport_filter_by_memdev(d: Dport, ident: str | None, serial: str | None) -> bool:
    return _any_memdev(d.port.ctx, ident, serial, d.maps_memdev)


def memdev_filter_by_decoder(md: Memdev, ident: str | None) -> bool:
    """``util_cxl_memdev_filter_by_decoder()``: some decoder that passes
    :func:`decoder_filter`, on any port of any bus, targets ``md``."""
    if ident is None:
        return True
    ctx = md.ctx

    decoders = _kept(ctx, ("decoders", ident), lambda: [
        dec for bus in ctx.buses() for port in _bus_ports(bus) for dec in port.decoders()
        if decoder_filter(dec, ident)])
    return any(dec.target_by_memdev(md) is not None for dec in decoders)


def _routes_memdev(md: Memdev, ident: str | None):
    """A port matching ``ident`` (PF_SINGLE) with a dport leading to ``md``."""
    return lambda port: port_filter(port, ident, PF_SINGLE) and port.get_dport_by_memdev(md) is not None


def memdev_filter_by_port(md: Memdev, bus_ident: str | None, port_ident: str | None) -> bool:
    if bus_ident is None and port_ident is None:
        return True
    for bus in md.ctx.buses():
        if bus_filter(bus, bus_ident) and _self_or_endpoints(bus, _routes_memdev(md, bus.devname)):
            return True
        if _bus_or_ports(bus, _routes_memdev(md, port_ident)):
            return True
    return False


def region_filter(region: Region, ident: str | None) -> bool:
    return _names(ident, "region", region.id, region.devname)


def region_filter_by_bus(region: Region, ident: str | None) -> bool:
    return decoder_filter_by_bus(region.decoder, ident)


def region_filter_by_port(region: Region, ident: str | None) -> bool:
    return port_filter(region.decoder.port, ident, PF_ANCESTRY)


def region_filter_by_decoder(region: Region, ident: str | None) -> bool:
    return decoder_filter(region.decoder, ident)


def decoder_filter_by_region(dec: Decoder, ident: str | None) -> bool:
    if ident is None:
        return True
    if any(region_filter(r, ident) for r in dec.regions()):
        return True
    region = dec.region
    if region is None:
        return False
    return region_filter(region, ident)
