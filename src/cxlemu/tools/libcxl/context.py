"""The library context (``struct cxl_ctx``): logging, the backend, and the
top-level lists (buses from ``/sys/bus/cxl/devices/root%d``, memdevs from
``/sys/bus/cxl/devices/mem%d``), each discovered on first use.

Lists built by libcxl with ``list_add()`` (head insertion) come out in
reverse readdir order; that is what :meth:`CxlContext.scan_into` does (or
a stable sort when a key is given, for ``list_add_sorted()``).  Before
every directory scan libcxl writes "1\\n" to ``/sys/bus/cxl/flush``
(``cxl_wait_probe()``); so does this context.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, TextIO

from cxlemu.tools.common.log import Log
from cxlemu.tools.libdaxctl.lib import DaxctlCtx

from .memdev import Memdev
from .device import IdList, devname_of, same_id
from .port import Bus, Port, PortType
from .sysfs import SysfsIO

__all__ = ["CxlContext"]


class CxlContext:
    """``cxl_new()``: a view of one backend's CXL topology."""

    def __init__(self, backend: Any, env: Mapping[str, str] | None = None,
                 stderr: TextIO | None = None):
        self.backend = backend
        self.log = Log.init("libcxl", "CXL_LOG", env, stream=stderr)
        self.io = SysfsIO(backend, self.log)
        # the libdaxctl context libcxl keeps for cxl_region_get_daxctl_region()
        self.dax = DaxctlCtx(backend, Log.init("libdaxctl", "DAXCTL_LOG", env, stream=stderr))
        self._memdev_list: list[Memdev] | None = None
        self._memdev_by_name: dict[str, Memdev] | None = None
        self._bus_list: list[Bus] | None = None
        # results of the command's filters that walk the whole topology, kept per question
        # until the library next writes (tools/cxl/filter.py _kept)
        self.memo: dict[tuple, tuple[int, Any]] = {}

    # ---- logging ---------------------------------------------------------------
    def set_log_priority(self, priority: int) -> None:
        """``cxl_set_log_priority()``."""
        self.log.priority = priority

    # ---- generic scan -------------------------------------------------------------
    def scan_into(self, out: list, base: str, prefix: str,
                  add: Callable[[int, str], Any],
                  sort_key: Callable[[Any], Any] | None = None) -> None:
        """``device_parse(ctx, base, prefix, parent, add)``: flush, scan,
        call ``add(id, path)`` per matching entry and insert what it returns
        (head insertion, or stable sorted insertion by ``sort_key``).  An
        ``add`` returning an object already in ``out`` (a duplicate id)
        inserts nothing; one returning None logs ``add_dev() failed``."""
        self.io.flush()
        for e in self.io.scan(base, prefix):
            obj = add(e.id, e.path)
            if obj is None:
                self.log.err("__sysfs_device_parse", f"{prefix}{e.id}: add_dev() failed")
                continue
            self.log.dbg("__sysfs_device_parse", f"{prefix}{e.id}: processed")
            if out.has(obj) if isinstance(out, IdList) else any(o is obj for o in out):
                continue
            if sort_key is None:
                out.insert(0, obj)
            else:
                key = sort_key(obj)
                pos = len(out)
                for k, o in enumerate(out):
                    if key < sort_key(o):
                        pos = k
                        break
                out.insert(pos, obj)

    # ---- top-level lists ----------------------------------------------------------
    def memdevs(self) -> list[Memdev]:
        """``cxl_memdev_foreach()``."""
        if self._memdev_list is None:
            self._memdev_list = IdList()
            self.scan_into(self._memdev_list, "/sys/bus/cxl/devices", "mem",
                           lambda i, base: Memdev.add(self, i, base))
        return self._memdev_list

    def memdev_by_devname(self, name: str) -> Memdev | None:
        """The first memdev (list order) named ``name``."""
        if self._memdev_by_name is None:
            index: dict[str, Memdev] = {}
            for md in self.memdevs():
                index.setdefault(md.devname, md)
            self._memdev_by_name = index
        return self._memdev_by_name.get(name)

    def buses(self) -> list[Bus]:
        """``cxl_bus_foreach()``."""
        if self._bus_list is None:
            self._bus_list = IdList()
            self.scan_into(self._bus_list, "/sys/bus/cxl/devices", "root", self._add_bus)
        return self._bus_list

    def _add_bus(self, bus_id: int, base: str) -> Bus | None:
        self.log.dbg("add_cxl_bus", f"{devname_of(base)}: base: '{base}'")
        bus = Bus._init(self, None, PortType.ROOT, bus_id, base)
        if bus is None:
            return None
        assert isinstance(bus, Bus)
        return same_id(self._bus_list, bus)

    # ---- lookups ------------------------------------------------------------------
    def decoder_by_name(self, name: str):
        """``cxl_decoder_get_by_name()``: root decoders (and RCH endpoint
        decoders), then every switch port's and its endpoints' decoders."""
        for bus in self.buses():
            dec = bus.find_decoder(name)
            if dec is not None:
                return dec
            for port in bus.iter_all():
                dec = port.find_decoder(name)
                if dec is not None:
                    return dec
        return None

    # ---- invalidation (after unbinds) -------------------------------------------------
    def bus_invalidate(self, bus: Port) -> None:
        """``bus_invalidate()``: forget every memdev-endpoint association and
        every port below ``bus``, then flush."""
        for md in self.memdevs():
            md._endpoint = None
        bus._ports = None
        self.io.forget()
        self.io.flush()

    def drop_bus(self, bus: Bus) -> None:
        if self._bus_list is not None:
            self._bus_list[:] = [b for b in self._bus_list if b is not bus]
