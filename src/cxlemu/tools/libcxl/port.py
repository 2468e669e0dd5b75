"""CXL ports as libcxl models them (cxl/lib/libcxl.c ``cxl_port_init``,
``add_cxl_bus``, ``add_cxl_port``, ``add_cxl_endpoint``, ``add_cxl_dport``).

One class, :class:`Port`, carries the three kinds (root = a bus, switch,
endpoint); :class:`Bus` and :class:`Endpoint` add what is specific to them,
so ``bus.port is bus`` and ``endpoint.port is endpoint`` (libcxl embeds the
port in both structures).

Rules kept from libcxl:

* a port is dropped (``add_dev() failed``) when ``uport`` does not
  realpath; ``parent_dport`` (depth > 1), ``modalias`` and
  ``decoders_committed`` are optional;
* children are discovered on first use by scanning the port directory
  for ``port%d``, ``endpoint%d``, ``dport%d`` and ``decoder<id>.%d``;
  ports, endpoints and dports are head-inserted (reverse readdir order),
  decoders kept sorted by id (stable over readdir order);
* "enabled" means ``<port>/driver`` is a symlink; it is re-checked on
  every call, never cached;
* ``cxl_port_get_bus()`` returns None for a disabled port (so for root
  ports, which have no driver, only ``to_bus()`` works);
* memdev-to-dport matching is a substring test of the memdev's host path
  against the dport's physical node path (else its own path).
"""

from __future__ import annotations

import enum
import errno
from typing import TYPE_CHECKING, Iterator

from .cnum import c_strtoull, to_s32
from .device import IdList, SysfsDevice, devname_of, same_id
from .dport import DportLink

if TYPE_CHECKING:
    from .context import CxlContext
    from .decoder import Decoder
    from .memdev import Memdev

__all__ = ["PortType", "Port", "Bus", "Endpoint", "Dport", "DportLink", "devname_of"]


class PortType(enum.IntEnum):
    ROOT = 0
    SWITCH = 1
    ENDPOINT = 2


class Dport(DportLink):
    """A downstream port link ``<port>/dport<id>``."""

    def __init__(self, port: "Port", dport_id: int, dev_path: str,
                 phys_path: str | None, fw_path: str | None):
        self.port = port
        self.id = dport_id
        self.dev_path = dev_path
        self.phys_path = phys_path
        self.fw_path = fw_path

    def __repr__(self) -> str:
        return f"<Dport {self.devname} id={self.id} of {self.port.devname}>"


class Port(SysfsDevice):
    """A ``struct cxl_port`` (root, switch or endpoint)."""

    def __init__(self, ctx: "CxlContext", parent: "Port | None", ptype: PortType,
                 port_id: int, dev_path: str, uport: str):
        self.ctx = ctx
        self.parent = parent
        self.type = ptype
        self.id = port_id
        self.depth = parent.depth + 1 if parent is not None else 0
        self.dev_path = dev_path
        self.uport = uport                          # realpath of <port>/uport
        self.parent_dport_path: str | None = None   # realpath of parent_dport
        self.modalias: str | None = None
        self.decoders_committed = 0
        self._parent_dport: Dport | None = None
        self._ports: list[Port] | None = None
        self._endpoints: list[Endpoint] | None = None
        self._decoders: list[Decoder] | None = None
        self._dports: list[Dport] | None = None
        self._bus: Bus | None = None

    # ---- construction (cxl_port_init) --------------------------------------
    @classmethod
    def _init(cls, ctx: "CxlContext", parent: "Port | None", ptype: PortType,
              port_id: int, base: str) -> "Port | None":
        io = ctx.io
        uport = io.realpath(f"{base}/uport")
        if uport is None:
            return None
        port = cls(ctx, parent, ptype, port_id, base, uport)
        if port.depth > 1:
            port.parent_dport_path = io.realpath(f"{base}/parent_dport")
        rd = io.reader(base)
        port.modalias = rd("modalias")
        committed = rd("decoders_committed")
        if committed is not None:
            port.decoders_committed = to_s32(c_strtoull(committed))
        return port

    # ---- identity -------------------------------------------------------------
    @property
    def host(self) -> str:
        """``cxl_port_get_host()``: basename of realpath(uport)."""
        return devname_of(self.uport)

    @property
    def port(self) -> "Port":
        return self

    def is_root(self) -> bool:
        return self.type == PortType.ROOT

    def is_switch(self) -> bool:
        return self.type == PortType.SWITCH

    def is_endpoint(self) -> bool:
        return self.type == PortType.ENDPOINT

    def to_bus(self) -> "Bus | None":
        return self if isinstance(self, Bus) else None

    def to_endpoint(self) -> "Endpoint | None":
        return self if isinstance(self, Endpoint) else None

    @property
    def bus(self) -> "Bus | None":
        """``cxl_port_get_bus()``: None while this port is disabled."""
        if not self.is_enabled():
            return None
        if self._bus is not None:
            return self._bus
        top: Port = self
        while top.parent is not None:
            top = top.parent
        self._bus = top if isinstance(top, Bus) else None
        return self._bus

    # ---- children -------------------------------------------------------------
    def _children(self, attr: str, prefix: str, add, sort_key=None) -> list:
        """The child list kept in ``attr``, scanned on first use (the list is
        in place while scanning, so ``add`` sees the entries added so far)."""
        out = getattr(self, attr)
        if out is None:
            out = IdList()
            setattr(self, attr, out)
            self.ctx.scan_into(out, self.dev_path, prefix, add, sort_key=sort_key)
        return out

    def child_ports(self) -> list["Port"]:
        """``cxl_port_foreach()``: switch ports directly below."""
        return self._children("_ports", "port", self._add_port)

    def endpoints(self) -> list["Endpoint"]:
        """``cxl_endpoint_foreach()``: endpoints directly below."""
        return self._children("_endpoints", "endpoint", self._add_endpoint)

    def dports(self) -> list[Dport]:
        """``cxl_dport_foreach()``."""
        return self._children("_dports", "dport", self._add_dport)

    @property
    def nr_dports(self) -> int:
        return len(self.dports())

    def decoders(self) -> list["Decoder"]:
        """``cxl_decoder_foreach()``: sorted by decoder id."""
        from .decoder import Decoder
        links: dict = {}       # dport links resolved for this scan's target lists
        return self._children("_decoders", f"decoder{self.id}.",
                              lambda i, base: Decoder.add(self, i, base, links), sort_key=lambda d: d.id)

    def iter_all(self) -> Iterator["Port"]:
        """``cxl_port_foreach_all(self, port)``: every switch port below, in
        pre-order (``cxl_port_get_next_all()``)."""
        for child in self.child_ports():
            yield child
            yield from child.iter_all()

    def _add_port(self, port_id: int, base: str) -> "Port | None":
        self.ctx.log.dbg("add_cxl_port", f"{devname_of(base)}: base: '{base}'")
        port = Port._init(self.ctx, self, PortType.SWITCH, port_id, base)
        if port is None:
            return None
        return same_id(self._ports, port)

    def _add_endpoint(self, ep_id: int, base: str) -> "Endpoint | None":
        self.ctx.log.dbg("add_cxl_endpoint", f"{devname_of(base)}: base: '{base}'")
        ep = Endpoint._init(self.ctx, self, PortType.ENDPOINT, ep_id, base)
        if ep is None:
            return None
        assert isinstance(ep, Endpoint)
        return same_id(self._endpoints, ep)

    def _add_dport(self, dport_id: int, base: str) -> Dport | None:
        io = self.ctx.io
        self.ctx.log.dbg("add_cxl_dport", f"{devname_of(base)}: base: '{base}'")
        dev_path = io.realpath(base)
        if dev_path is None:
            return None
        phys = io.realpath(f"{base}/physical_node")
        fw = io.realpath(f"{base}/firmware_node")
        if phys is None and fw is not None:
            phys = dev_path
        return same_id(self._dports, Dport(self, dport_id, dev_path, phys, fw))

    # ---- relations ------------------------------------------------------------
    @property
    def parent_dport(self) -> Dport | None:
        """``cxl_port_get_parent_dport()``: the parent's dport whose name is
        the basename of realpath(parent_dport)."""
        if self._parent_dport is not None:
            return self._parent_dport
        if not self.parent_dport_path or self.parent is None:
            return None
        name = devname_of(self.parent_dport_path)
        for dport in self.parent.dports():
            if dport.devname == name:
                self._parent_dport = dport
                return dport
        return None

    def hosts_memdev(self, memdev: "Memdev") -> bool:
        """``cxl_port_hosts_memdev()``: the memdev's endpoint is below (or is)
        this port."""
        ep = memdev.endpoint
        it: Port | None = ep
        while it is not None and it is not self:
            it = it.parent
        return it is not None

    def get_dport_by_memdev(self, memdev: "Memdev") -> Dport | None:
        for dport in self.dports():
            if dport.maps_memdev(memdev):
                return dport
        return None

    def find_decoder(self, name: str) -> "Decoder | None":
        """``cxl_port_find_decoder()``: this port's decoders, then those of
        the endpoints directly below."""
        for d in self.decoders():
            if d.devname == name:
                return d
        for ep in self.endpoints():
            for d in ep.decoders():
                if d.devname == name:
                    return d
        return None

    # ---- enable / disable (util_bind / util_unbind) ---------------------------------
    def enable(self) -> None:
        """``cxl_port_enable()``; raises ``OSError(ENXIO)`` on failure."""
        if self.is_enabled():
            return
        self._bind_checked("cxl_port_enable")
        self.ctx.log.dbg("cxl_port_enable", f"{self.devname}: enabled")

    def disable_invalidate(self) -> None:
        """``cxl_port_disable_invalidate()``: unbind, then forget every port
        of the bus (they may have been torn down)."""
        bus = self.bus
        if self.is_root():
            self.ctx.log.err("cxl_port_disable_invalidate",
                             f"{self.devname}: can not be disabled through this interface")
            raise OSError(errno.EINVAL, "root port", self.devname)
        if bus is None:
            self.ctx.log.err("cxl_port_disable_invalidate", f"{self.devname}: failed to invalidate")
            raise OSError(errno.ENXIO, "failed to invalidate", self.devname)
        self._unbind_checked("cxl_port_disable_invalidate")
        self.ctx.log.dbg("cxl_port_disable_invalidate", f"{self.devname}: disabled")
        self.ctx.bus_invalidate(bus)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.devname} depth={self.depth}>"


class Bus(Port):
    """A CXL root (``rootN``): ``struct cxl_bus``."""

    @property
    def provider(self) -> str:
        """``cxl_bus_get_provider()``."""
        name = devname_of(self.uport)
        if name == "ACPI0017:00":
            return "ACPI.CXL"
        if name == "cxl_acpi.0":
            return "cxl_test"
        return name

    def disable_invalidate(self) -> None:
        """``cxl_bus_disable_invalidate()``: unbind the uport (for example
        ``ACPI0017:00`` from cxl_acpi), drop the bus, flush."""
        self.ctx.io.unbind(self.uport)
        self.ctx.drop_bus(self)
        self.ctx.io.flush()


class Endpoint(Port):
    """An endpoint port (``endpointN``)."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self._memdev: Memdev | None = None

    @property
    def memdev(self) -> "Memdev | None":
        """``cxl_endpoint_get_memdev()``: the memdev named like this
        endpoint's host; None while the endpoint is disabled (unless the
        association was made earlier)."""
        if self._memdev is not None:
            return self._memdev
        if not self.is_enabled():
            return None
        md = self.ctx.memdev_by_devname(self.host)
        if md is None:
            return None
        if md._endpoint is not None and md._endpoint is not self:
            self.ctx.log.err("cxl_endpoint_get_memdev",
                             f"{md.devname} assigned to {md._endpoint.devname} not {self.devname}")
        self._memdev = md
        md._endpoint = self
        return md
