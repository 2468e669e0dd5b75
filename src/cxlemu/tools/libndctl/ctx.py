"""libndctl objects over sysfs (ndctl/lib/libndctl.c, daxctl/lib/libdaxctl.c).

What is reproduced, with the rule each follows:

* discovery: buses from ``/sys/class/nd/ndctl*`` (``<ctl>/dev``,
  ``<ctl>/device/commands``, ``<ctl>/device/provider`` are required), the
  bus device path is ``realpath(/sys/dev/char/M:m/device)``; dimms
  (``nmem%d``), regions (``region%d``), namespaces (``namespace<R>.%d``),
  btts, pfns and daxes (``btt<R>.%d`` ...) are scanned in the bus/region
  directory.  libndctl pushes every object at the *head* of its list
  (ccan ``list_add``), so iteration is the reverse of readdir order.
* a device is enabled when its ``driver`` entry is a symlink;
  ``bind`` writes the name to every ``/sys/bus/nd/drivers/*/bind`` until one
  accepts it; ``unbind`` writes it to ``<dev>/driver/unbind``.
* attribute reads strip one newline; numbers use the C conversions.
* ``has_cxl``: libndctl's is_subsys_cxl() returns -errno when
  ``realpath(<ctl>/device/../subsys)`` fails and otherwise compares the
  *unresolved* path with "/sys/bus/cxl"; as no ``subsys`` entry exists, the
  error counts as true, so every bus without NFIT or an OF node is "CXL"
  and its dimms show ``id`` (``<nmem>/cxl/id``).
"""

from __future__ import annotations

import errno
from typing import Any, Callable, Iterator

from cxlemu.tools.common.log import Log
from cxlemu.tools.libcxl.cnum import c_strtoull, sscanf_int
from cxlemu.tools.libcxl.sysfs import SysfsIO
from cxlemu.tools.libdaxctl.lib import DaxctlCtx
from .base import BUS_CMDS, DIMM_CMDS, UINT_MAX, NdObject, devname, parse_commands
from .region import NdRegion


class NdctlCtx:
    """struct ndctl_ctx: ``NDCTL_LOG`` sets the log priority; ``dax_log``
    is the log of the libdaxctl context it keeps for device-dax regions."""

    def __init__(self, backend: Any, log: Log, dax_log: Log):
        self.backend = backend
        self.log = log
        self.io = SysfsIO(backend, log)
        self.daxctl = DaxctlCtx(backend, dax_log)
        self._buses: list[NdBus] | None = None

    # ---- sysfs helpers ----------------------------------------------------------------
    def read(self, path: str) -> str | None:
        return self.io.read_attr(path)

    def read_num(self, path: str, default: int, conv: Callable[[str], int] = c_strtoull) -> int:
        """An optional numeric attribute: ``conv(value)``, or ``default``."""
        v = self.read(path)
        return default if v is None else conv(v)

    def write(self, path: str, text: str) -> None:
        self.io.write_attr(path, text)

    def generation(self) -> tuple[int, int]:
        """Moves with every sysfs write this library (or its daxctl context)
        makes: lists read from sysfs are good while it stays."""
        return self.io.writes, self.daxctl.writes

    def scan(self, base: str, prefix: str) -> list[tuple[int, str]]:
        names = self.io.listdir(base) or []
        out = []
        for name in names:
            i = sscanf_int(name, prefix)
            if i is not None:
                out.append((i, f"{base}/{name}"))
        return list(reversed(out))          # list_add(): newest first

    def is_enabled(self, devpath: str) -> bool:
        return self.io.is_link(f"{devpath}/driver")

    def bind(self, name: str) -> int:
        try:
            self.io.bind(name, "nd")
            return 0
        except OSError:
            return -errno.ENXIO

    def unbind(self, devpath: str) -> int:
        try:
            self.io.unbind(devpath)
            return 0
        except OSError as e:
            return -(e.errno or errno.EIO)

    def invalidate(self) -> None:
        self._buses = None
        self.io.forget()

    # ---- buses -----------------------------------------------------------------------
    def buses(self) -> list["NdBus"]:
        if self._buses is None:
            out = []
            for i, ctl in self.scan("/sys/class/nd", "ndctl"):
                b = NdBus.load(self, i, ctl)
                if b is None:
                    self.log.err("__sysfs_device_parse", f"ndctl{i}: add_dev() failed")
                    continue
                if not any(x.provider == b.provider and x.devname == b.devname for x in out):
                    out.append(b)
            self._buses = out
        return self._buses

    def dimms(self) -> Iterator["NdDimm"]:
        for b in self.buses():
            yield from b.dimms()

    def regions(self) -> Iterator["NdRegion"]:
        for b in self.buses():
            yield from b.regions()


class NdBus:
    def __init__(self, ctx: NdctlCtx, bus_id: int, path: str, provider: str, major: int, minor: int,
                 cmd_mask: int):
        self.ctx = ctx
        self.id = bus_id
        self.path = path
        self.provider = provider
        self.major, self.minor = major, minor
        self.cmd_mask = cmd_mask
        self.has_nfit = False
        self.has_of_node = False
        self.has_cxl = False
        self._dimms: list[NdDimm] | None = None
        self._regions: list[NdRegion] | None = None

    @classmethod
    def load(cls, ctx: NdctlCtx, bus_id: int, ctl: str) -> "NdBus | None":
        dev = ctx.read(f"{ctl}/dev")
        if dev is None or ":" not in dev:
            return None
        try:
            major, minor = (int(x) for x in dev.split(":")[:2])
        except ValueError:
            return None
        commands = ctx.read(f"{ctl}/device/commands")
        if commands is None:
            return None
        provider = ctx.read(f"{ctl}/device/provider")
        if provider is None:
            return None
        path = ctx.io.realpath(f"/sys/dev/char/{major}:{minor}/device")
        if path is None:
            return None
        b = cls(ctx, bus_id, path, provider, major, minor, parse_commands(commands, BUS_CMDS))
        b.has_nfit = ctx.read(f"{ctl}/device/nfit/revision") is not None
        b.has_of_node = ctx.read(f"{ctl}/device/of_node/compatible") is not None
        b.has_cxl = ctx.io.realpath(f"{ctl}/device/../subsys") is None
        return b

    @property
    def devname(self) -> str:
        return devname(self.path)

    def dimms(self) -> list["NdDimm"]:
        if self._dimms is None:
            self._dimms = [d for d in (NdDimm.load(self, i, p) for i, p in self.ctx.scan(self.path, "nmem"))
                           if d is not None]
        return self._dimms

    def regions(self) -> list["NdRegion"]:
        if self._regions is None:
            self._regions = [r for r in (NdRegion.load(self, i, p)
                                         for i, p in self.ctx.scan(self.path, "region")) if r is not None]
        return self._regions

    def dimm_by_id(self, dimm_id: int) -> "NdDimm | None":
        return next((d for d in self.dimms() if d.id == dimm_id), None)

    def scrub_state(self) -> int:
        return -errno.EOPNOTSUPP if not self.has_nfit else 0


class NdDimm(NdObject):
    kind = "dimm"

    def __init__(self, bus: NdBus, dimm_id: int, path: str):
        self.bus = bus
        self.ctx = bus.ctx
        self.id = dimm_id
        self.path = path
        self.major = self.minor = 0
        self.cmd_mask = 0
        self.unique_id: str | None = None
        self.handle = UINT_MAX
        self.phys_id = 0xFFFF
        self.locked = self.aliased = 0
        self.flags = 0

    @classmethod
    def load(cls, bus: NdBus, dimm_id: int, path: str) -> "NdDimm | None":
        ctx = bus.ctx
        d = cls(bus, dimm_id, path)
        dev = ctx.read(f"{path}/dev")
        if dev is None or ":" not in dev:
            return None
        d.major, d.minor = (int(x) for x in dev.split(":")[:2])
        commands = ctx.read(f"{path}/commands")
        if commands is None:
            return None
        d.cmd_mask = parse_commands(commands, DIMM_CMDS)
        if ctx.read(f"{path}/modalias") is None:
            return None
        flags = ctx.read(f"{path}/flags")
        if flags is None:
            d.locked = d.aliased = -1
        else:
            toks = flags.split(" ")[:-1]
            d.locked = int("lock" in toks)
            d.aliased = int("alias" in toks)
        if not bus.has_nfit and not bus.has_of_node and bus.has_cxl:
            d.unique_id = ctx.read(f"{path}/cxl/id")
        return d

    def is_active(self) -> int:
        s = self.ctx.read(f"{self.path}/state")
        if s is None:
            return -errno.ENXIO
        return int(s == "active")

    def is_cmd_supported(self, cmd: int) -> bool:
        return bool(self.cmd_mask & (1 << cmd))

    def security(self) -> str | None:
        s = self.ctx.read(f"{self.path}/security")
        return s if s in ("disabled", "unlocked", "locked", "frozen", "overwrite") else None

    def security_frozen(self) -> bool:
        if self.security() == "frozen":
            return True
        f = self.ctx.read(f"{self.path}/frozen")
        return bool(f and c_strtoull(f))
