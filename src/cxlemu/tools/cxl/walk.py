"""``cxl_filter_walk()`` (cxl/filter.c v81): the JSON array ``cxl list``
prints, built from the filters (filter.py) and the JSON builders (json.py);
see filter.py for the control flow it reproduces."""

from __future__ import annotations

from typing import Any, TextIO

from cxlemu.tools.libcxl import CxlContext, Decoder, Port
from cxlemu.util.lazydc import dataclass

from . import json as cj
from .filter import (FilterParams, PF_ANCESTRY, PF_SINGLE, bus_filter, bus_filter_by_memdev, decoder_filter,
                      decoder_filter_by_bus, decoder_filter_by_memdev, decoder_filter_by_port,
                      decoder_filter_by_region, endpoint_filter, endpoint_filter_by_memdev,
                      endpoint_filter_by_port, filter_to_flags, memdev_filter,
                      memdev_filter_by_decoder, memdev_filter_by_port, port_filter,
                      port_filter_by_bus, port_filter_by_memdev, region_filter,
                      region_filter_by_bus, region_filter_by_decoder, region_filter_by_port)

# ---------------------------------------------------------------------------
# the walk
# ---------------------------------------------------------------------------

def _pf_mode(p: FilterParams) -> int:
    return PF_SINGLE if p.single else PF_ANCESTRY


def _pick(child: list | None, container: list | None) -> list | None:
    return child if child is not None else container


def _cond_add(jobj: dict | None, key: str, suffix: str, arr: list | None) -> None:
    """``cond_add_put_array_suffix()``."""
    if jobj is not None and arr:
        jobj[f"{key}:{suffix}"] = arr


@dataclass
class _Walk:
    """The state of one ``cxl_filter_walk()``: filters, JSON flags and the error stream."""
    p: FilterParams
    flags: int
    stderr: TextIO

    def regions(self, dec: Decoder, jregions: list) -> None:
        p = self.p
        for region in dec.regions():
            if not region_filter(region, p.region_filter):
                continue
            if not region_filter_by_bus(region, p.bus_filter):
                continue
            if not region_filter_by_port(region, p.port_filter):
                continue
            if not region_filter_by_decoder(region, p.decoder_filter):
                continue
            if not p.idle and not region.is_enabled():
                continue
            jregions.append(cj.region_to_json(region, self.flags, self.stderr))

    def decoders(self, port: Port, jdecoders: list, jregions: list | None) -> None:
        p = self.p
        for dec in port.decoders():
            devname = dec.devname
            jchildregions: list | None = None
            jdecoder: dict | None = None
            if (p.decoders and decoder_filter(dec, p.decoder_filter)
                    and decoder_filter_by_bus(dec, p.bus_filter)
                    and decoder_filter_by_port(dec, p.port_filter, _pf_mode(p))
                    and decoder_filter_by_memdev(dec, p.memdev_filter, p.serial_filter)
                    and decoder_filter_by_region(dec, p.region_filter)):
                if not p.idle and dec.size == 0:
                    continue
                jdecoder = cj.decoder_to_json(dec, self.flags)
                cj.targets_append_json(jdecoder, dec, p.memdev_filter, p.serial_filter, self.flags)
                if p.regions:
                    jchildregions = []
                jdecoders.append(jdecoder)
            # walk_children:
            if not p.regions:
                continue
            if not port.is_root():
                continue
            target = _pick(jchildregions, jregions)
            assert target is not None
            self.regions(dec, target)
            _cond_add(jdecoder, "regions", devname, jchildregions)

    def endpoints(self, port: Port, jeps: list, jdevs: list, jdecoders: list) -> None:
        p = self.p
        for ep in port.endpoints():
            devname = ep.devname
            jchilddecoders: list | None = None
            jendpoint: dict | None = None
            if not endpoint_filter(ep, p.endpoint_filter):
                continue
            if not port_filter_by_bus(ep, p.bus_filter):
                continue
            if not endpoint_filter_by_port(ep, p.port_filter, _pf_mode(p)):
                continue
            if not endpoint_filter_by_memdev(ep, p.memdev_filter, p.serial_filter):
                continue
            if not p.idle and not ep.is_enabled():
                continue
            if p.endpoints:
                jendpoint = cj.endpoint_to_json(ep, self.flags)
                jeps.append(jendpoint)
            if p.memdevs:
                md = ep.memdev
                if md is None:
                    continue
                if not memdev_filter(md, p.memdev_filter, p.serial_filter):
                    continue
                if not memdev_filter_by_decoder(md, p.decoder_filter):
                    continue
                if not memdev_filter_by_port(md, p.bus_filter, p.port_filter):
                    continue
                if not p.idle and not md.is_enabled():
                    continue
                jobj = cj.memdev_to_json(md, self.flags, self.stderr)
                if p.endpoints:
                    assert jendpoint is not None
                    jendpoint["memdev"] = jobj
                else:
                    jdevs.append(jobj)
            if p.decoders and p.endpoints:
                jchilddecoders = []
            if not p.decoders:
                continue
            target = _pick(jchilddecoders, jdecoders)
            assert target is not None
            self.decoders(ep, target, None)
            _cond_add(jendpoint, "decoders", devname, jchilddecoders)

    def child_ports(self, parent: Port, jports: list, jportdecoders: list,
                    jeps: list, jepdecoders: list, jdevs: list) -> None:
        p = self.p
        for port in parent.child_ports():
            devname = port.devname
            jport: dict | None = None
            jchilddevs = jchildports = jchildeps = jchilddecoders = None
            if not port_filter_by_memdev(port, p.memdev_filter, p.serial_filter):
                continue
            if (port_filter(port, p.port_filter, _pf_mode(p))
                    and port_filter_by_bus(port, p.bus_filter)):
                if not p.idle and not port.is_enabled():
                    continue
                if p.ports:
                    jport = cj.port_to_json(port, self.flags)
                    cj.dports_append_json(jport, port, p.memdev_filter, p.serial_filter, self.flags)
                    jports.append(jport)
                    jchildports = []
                    if p.memdevs:
                        jchilddevs = []
                    if p.endpoints:
                        jchildeps = []
                    if p.decoders:
                        jchilddecoders = []
            # walk_children:
            if p.endpoints or p.memdevs or p.decoders:
                self.endpoints(port, _pick(jchildeps, jeps), _pick(jchilddevs, jdevs),
                               _pick(jchilddecoders, jepdecoders))
            self.decoders(port, _pick(jchilddecoders, jportdecoders), None)
            self.child_ports(port, _pick(jchildports, jports), _pick(jchilddecoders, jportdecoders),
                             _pick(jchildeps, jeps), _pick(jchilddecoders, jepdecoders),
                             _pick(jchilddevs, jdevs))
            _cond_add(jport, "ports", devname, jchildports)
            _cond_add(jport, "endpoints", devname, jchildeps)
            _cond_add(jport, "decoders", devname, jchilddecoders)
            _cond_add(jport, "memdevs", devname, jchilddevs)


_CONTAINERS = ("anon memdevs", "buses", "ports", "endpoints", "memdevs", "root decoders",
               "port decoders", "endpoint decoders", "regions")


def filter_walk(ctx: CxlContext, p: FilterParams, stderr: TextIO) -> list:
    """``cxl_filter_walk()``: the JSON array ``cxl list`` prints."""
    flags = filter_to_flags(p)
    w = _Walk(p, flags, stderr)
    log = p.log
    top: dict[str, list] = {name: [] for name in _CONTAINERS}
    janondevs, jbuses, jports = top["anon memdevs"], top["buses"], top["ports"]
    jeps, jdevs, jbusdecoders = top["endpoints"], top["memdevs"], top["root decoders"]
    jportdecoders, jepdecoders, jregions = top["port decoders"], top["endpoint decoders"], top["regions"]

    log.dbg("cxl_filter_walk", "walk memdevs")
    for md in ctx.memdevs():
        if not memdev_filter(md, p.memdev_filter, p.serial_filter):
            continue
        if md.is_enabled():
            continue
        if not p.idle:
            continue
        if p.memdevs:
            janondevs.append(cj.memdev_to_json(md, flags, stderr))

    log.dbg("cxl_filter_walk", "walk buses")
    for bus in ctx.buses():
        jbus: dict | None = None
        jchilddecoders = jchildports = jchilddevs = jchildeps = jchildregions = None
        devname = bus.devname
        if not bus_filter_by_memdev(bus, p.memdev_filter, p.serial_filter):
            continue
        if (bus_filter(bus, p.bus_filter) and port_filter(bus, p.port_filter, _pf_mode(p))
                and p.buses):
            jbus = cj.bus_to_json(bus, flags)
            cj.dports_append_json(jbus, bus, p.memdev_filter, p.serial_filter, flags)
            jbuses.append(jbus)
            if p.ports:
                jchildports = []
            if p.endpoints:
                jchildeps = []
            if p.memdevs:
                jchilddevs = []
            if p.decoders:
                jchilddecoders = []
            if p.regions:
                jchildregions = []
        # walk_children:
        log.dbg("cxl_filter_walk", "walk decoders")
        w.decoders(bus, _pick(jchilddecoders, jbusdecoders), _pick(jchildregions, jregions))
        log.dbg("cxl_filter_walk", "walk rch endpoints")
        if p.endpoints or p.memdevs or p.decoders:
            w.endpoints(bus, _pick(jchildeps, jeps), _pick(jchilddevs, jdevs),
                        _pick(jchilddecoders, jepdecoders))
        log.dbg("cxl_filter_walk", "walk ports")
        w.child_ports(bus, _pick(jchildports, jports), _pick(jchilddecoders, jportdecoders),
                      _pick(jchildeps, jeps), _pick(jchilddecoders, jepdecoders),
                      _pick(jchilddevs, jdevs))
        _cond_add(jbus, "ports", devname, jchildports)
        _cond_add(jbus, "endpoints", devname, jchildeps)
        _cond_add(jbus, "decoders", devname, jchilddecoders)
        _cond_add(jbus, "regions", devname, jchildregions)
        _cond_add(jbus, "memdevs", devname, jchilddevs)

    nonempty = sum(1 for name in _CONTAINERS if top[name])
    platform: list[Any] = []
    for name in _CONTAINERS:
        arr = top[name]
        if not arr:
            continue
        if nonempty > 1:
            platform.append({name: arr})
        else:
            platform.extend(arr)
    return platform
