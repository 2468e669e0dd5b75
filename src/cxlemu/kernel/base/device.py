"""The driver core: devices, buses, drivers, sysfs attributes (drivers/base).

Kernel objects subclass :class:`Device` and declare their sysfs attributes as
class-level :class:`AttrGroup` tuples, the way drivers declare
``struct attribute_group`` with ``is_visible`` callbacks.  Attribute handlers
are methods: ``show(dev) -> str`` and ``store(dev, buf: bytes) -> None``;
they raise :class:`KernelError` carrying an errno, which the VFS returns to the
writer like a failed ``write(2)``.

Binding follows drivers/base/dd.c: a device with a driver has a ``driver``
symlink; ``bind`` on a driver that does not match returns -ENODEV, a device
that already has a driver -EBUSY, and a failing probe returns the probe's
errno.
"""

from __future__ import annotations

import errno
from dataclasses import field
from typing import Any, Callable, ClassVar, Iterator

from cxlemu.util.lazydc import dataclass

ShowFn = Callable[[Any], str]
StoreFn = Callable[[Any, bytes], None]
VisibleFn = Callable[[Any], "bool | int"]


class KernelError(OSError):
    """An errno returned by a kernel operation (positive errno value).

    ``log`` is what the kernel would print (dev_dbg/dev_err) on the way.
    """

    def __init__(self, err: int, log: str = ""):
        super().__init__(err, log or errno.errorcode.get(err, str(err)))
        self.log = log


def kstr(buf: bytes) -> str:
    """A sysfs store buffer as C code sees it: up to the first NUL."""
    return buf.split(b"\0", 1)[0].decode(errors="replace")


def kstrip(buf: bytes) -> str:
    """sysfs_streq-style value: NUL-terminated, one trailing newline dropped."""
    s = kstr(buf)
    return s[:-1] if s.endswith("\n") else s


def kstrtobool(buf: bytes) -> bool:
    s = kstrip(buf).strip()
    if not s:
        raise KernelError(errno.EINVAL)
    c = s[0].lower()
    # lib/kstrtox.c: y/t/e/1 (yes, true, enable), n/f/d/0, on/off
    if c in "yte1":
        return True
    if c in "nfd0":
        return False
    if s.lower() in ("on",):
        return True
    if s.lower() in ("off",):
        return False
    raise KernelError(errno.EINVAL)


def kstrtoull(buf: bytes, base: int = 0) -> int:
    """kstrtoull: one trailing newline allowed, base 0 auto-detects 0x/0."""
    s = kstr(buf)
    if s.endswith("\n"):
        s = s[:-1]
    if not s or s != s.strip():
        raise KernelError(errno.EINVAL)
    try:
        if base == 0:
            if s.lower().startswith("0x"):
                v = int(s[2:], 16)
            elif s.startswith("0") and len(s) > 1:
                v = int(s[1:], 8)
            else:
                v = int(s, 10)
        else:
            if base == 16 and s.lower().startswith("0x"):
                s = s[2:]
            v = int(s, base)
    except ValueError:
        raise KernelError(errno.EINVAL) from None
    if v < 0:
        raise KernelError(errno.EINVAL)
    if v >= 1 << 64:
        raise KernelError(errno.ERANGE)
    return v


@dataclass(frozen=True)
class AttrSpec:
    """A sysfs attribute of a device: name, mode and the methods that show/store it."""
    name: str
    mode: int
    show: str | None = None      # method name on the device (default "<name>_show")
    store: str | None = None     # method name (default "<name>_store")
    visible: str | None = None   # method name returning mode (0 = hidden) or bool

    def show_fn(self, dev: Any) -> ShowFn | None:
        if not self.mode & 0o444:
            return None
        return getattr(dev, self.show or f"{self.name}_show")

    def store_fn(self, dev: Any) -> StoreFn | None:
        if not self.mode & 0o222:
            return None
        return getattr(dev, self.store or f"{self.name}_store")

    def effective_mode(self, dev: Any) -> int:
        if self.visible is None:
            return self.mode
        v = getattr(dev, self.visible)(self.name)
        if v is True:
            return self.mode
        return int(v or 0)


def pure_action(fn: Any) -> Any:
    """Mark a sysfs store function as changing nothing that persists (a flush,
    a trigger whose effect is over when the write returns): writing it does
    not dirty the machine, so a read-only tool (``cxl list`` writes
    /sys/bus/cxl/flush) never makes the machine rewrite its state."""
    fn.sysfs_pure = True
    return fn


@pure_action
def ignore_write(buf: bytes) -> None:
    """A store that accepts anything and does nothing (uevent, drivers_probe)."""


def RO(name: str, **kw: Any) -> AttrSpec:
    return AttrSpec(name, 0o444, **kw)


def RW(name: str, **kw: Any) -> AttrSpec:
    return AttrSpec(name, 0o644, **kw)


def WO(name: str, **kw: Any) -> AttrSpec:
    return AttrSpec(name, 0o200, **kw)


def ADMIN_RO(name: str, **kw: Any) -> AttrSpec:
    return AttrSpec(name, 0o400, **kw)


@dataclass(frozen=True)
class AttrGroup:
    """A ``struct attribute_group``: attributes in an optional subdirectory, maybe hidden."""
    name: str | None
    attrs: tuple[AttrSpec, ...]
    visible: str | None = None   # method name(group name) -> bool: whole group hidden

    def is_visible(self, dev: Any) -> bool:
        return self.visible is None or bool(getattr(dev, self.visible)(self.name))


class Device:
    """struct device: a directory under /sys/devices."""

    ATTR_GROUPS: ClassVar[tuple[AttrGroup, ...]] = ()
    devtype: ClassVar[str | None] = None

    def __init__(self, name: str, parent: "Device | None" = None, bus: "Bus | None" = None):
        self.name = name
        self.parent = parent
        self.bus = bus
        self.driver: Driver | None = None
        self.children: list[Device] = []
        self.links: dict[str, "Device | str"] = {}   # extra symlinks (firmware_node, ...)
        self.devt: tuple[int, int] | None = None
        self.devnode: str | None = None                # e.g. "cxl/mem0" for /dev/cxl/mem0
        self.registered = False
        self.numa_node_id: int | None = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"

    # ---- sysfs ---------------------------------------------------------------
    @property
    def sysfs_path(self) -> str:
        parts = []
        d: Device | None = self
        while d is not None and d.name:
            parts.append(d.name)
            d = d.parent
        return "/sys/devices/" + "/".join(reversed(parts)) if parts else "/sys/devices"

    def attr_groups(self) -> tuple[AttrGroup, ...]:
        return self.ATTR_GROUPS

    def sysfs_links(self) -> dict[str, "Device | str"]:
        """Symlinks in this device's directory (besides driver/subsystem)."""
        return self.links

    def modalias(self) -> str | None:
        return None

    def uevent_show(self) -> str:
        lines = []
        if self.devt:
            lines += [f"MAJOR={self.devt[0]}", f"MINOR={self.devt[1]}"]
            if self.devnode:
                lines.append(f"DEVNAME={self.devnode}")
        if self.devtype:
            lines.append(f"DEVTYPE={self.devtype}")
        if self.driver:
            lines.append(f"DRIVER={self.driver.name}")
        if self.modalias():
            lines.append(f"MODALIAS={self.modalias()}")
        return "".join(line + "\n" for line in lines)

    def ancestors(self) -> Iterator["Device"]:
        d = self.parent
        while d is not None:
            yield d
            d = d.parent

    @property
    def enabled(self) -> bool:
        return self.driver is not None


class PlainDir(Device):
    """A kobject directory with no attributes (/sys/devices/system, virtual, ...)."""


class Driver:
    """struct device_driver."""

    suppress_bind_attrs: ClassVar[bool] = False

    def __init__(self, name: str, bus: "Bus"):
        self.name = name
        self.bus = bus
        self.extra_attrs: dict[str, tuple[ShowFn | None, StoreFn | None, int]] = {}

    def match(self, dev: Device) -> bool:  # pragma: no cover - overridden
        return False

    def probe(self, dev: Device) -> None:
        pass

    def remove(self, dev: Device) -> None:
        pass

    def bound_devices(self) -> list[Device]:
        return [d for d in self.bus.devices.values() if d.driver is self]


class ClassDriver(Driver):
    """A driver that binds devices of a class (optionally filtered by a
    predicate); probe/remove are bound methods so the driver pickles."""

    def __init__(self, name: str, bus: "Bus", cls: type, probe=None, remove=None, predicate=None,
                 suppress_bind_attrs: bool = False):
        super().__init__(name, bus)
        self.cls, self._probe, self._remove, self._pred = cls, probe, remove, predicate
        self.suppress_bind_attrs = suppress_bind_attrs

    def match(self, dev: Device) -> bool:
        return isinstance(dev, self.cls) and (self._pred is None or bool(self._pred(dev)))

    def probe(self, dev: Device) -> None:
        if self._probe is not None:
            self._probe(dev)

    def remove(self, dev: Device) -> None:
        if self._remove is not None:
            self._remove(dev)


class Bus:
    """struct bus_type with its registered devices and drivers."""

    def __init__(self, name: str, autoprobe: bool = True):
        self.name = name
        self.devices: dict[str, Device] = {}
        self.drivers: dict[str, Driver] = {}
        self.autoprobe = autoprobe
        self.attrs: dict[str, tuple[ShowFn | None, StoreFn | None, int]] = {}

    def register_driver(self, drv: Driver) -> None:
        self.drivers[drv.name] = drv

    def find(self, name: str) -> Device | None:
        return self.devices.get(name)


# ----------------------------------------------------------------------------
# core operations (drivers/base/core.c, dd.c)
# ----------------------------------------------------------------------------

def device_add(dev: Device, probe: bool = True) -> None:
    if dev.parent is not None:
        dev.parent.children.append(dev)
    if dev.bus is not None:
        if dev.name in dev.bus.devices:
            raise KernelError(errno.EEXIST, f"duplicate device name {dev.name}")
        dev.bus.devices[dev.name] = dev
    dev.registered = True
    if probe and dev.bus is not None and dev.bus.autoprobe:
        device_attach(dev)


def device_attach(dev: Device) -> bool:
    """Try each driver of the bus in registration order (bus_probe_device)."""
    assert dev.bus is not None
    if dev.driver is not None:
        return True
    for drv in list(dev.bus.drivers.values()):
        if drv.match(dev):
            try:
                driver_probe(drv, dev)
                return True
            except KernelError:
                continue
    return False


def driver_probe(drv: Driver, dev: Device) -> None:
    if dev.driver is not None:
        raise KernelError(errno.EBUSY)
    dev.driver = drv
    try:
        drv.probe(dev)
    except BaseException:
        dev.driver = None
        raise


def device_release_driver(dev: Device) -> None:
    drv = dev.driver
    if drv is None:
        return
    drv.remove(dev)
    dev.driver = None


def device_del(dev: Device) -> None:
    """Unregister: children first (as devm teardown would), then the device."""
    for child in list(dev.children):
        device_del(child)
    device_release_driver(dev)
    if dev.parent is not None and dev in dev.parent.children:
        dev.parent.children.remove(dev)
    if dev.bus is not None and dev.bus.devices.get(dev.name) is dev:
        del dev.bus.devices[dev.name]
    dev.registered = False


def bind_store(drv: Driver, buf: bytes) -> None:
    """/sys/bus/<bus>/drivers/<drv>/bind (drivers/base/bus.c bind_store)."""
    name = kstrip(buf)
    dev = drv.bus.devices.get(name)
    if dev is None or not drv.match(dev):
        raise KernelError(errno.ENODEV)
    driver_probe(drv, dev)


def unbind_store(drv: Driver, buf: bytes) -> None:
    name = kstrip(buf)
    dev = drv.bus.devices.get(name)
    if dev is None or dev.driver is not drv:
        raise KernelError(errno.ENODEV)
    device_release_driver(dev)


def sysfs_attr(dev: Device, name: str) -> AttrSpec | None:
    """The visible attribute ``name`` ("attr" or "group/attr") of ``dev``;
    later groups shadow earlier ones, as in the sysfs directory."""
    group, _, attr = name.rpartition("/")
    for g in reversed(dev.attr_groups()):
        if (g.name or "") != group or not g.is_visible(dev):
            continue
        for a in reversed(g.attrs):
            if a.name == attr:
                return a if a.effective_mode(dev) else None
    return None


def sysfs_store(dev: Device, name: str, buf: bytes) -> None:
    """A store to ``<dev>/<name>`` from inside the kernel, with the errno a
    write(2) of the same bytes would get (ENOENT: no such attribute)."""
    a = sysfs_attr(dev, name)
    if a is None:
        raise KernelError(errno.ENOENT, f"{dev.name}/{name}: no such attribute")
    fn = a.store_fn(dev)
    if fn is None:
        raise KernelError(errno.EACCES)
    fn(buf)


def sysfs_show(dev: Device, name: str) -> str:
    a = sysfs_attr(dev, name)
    if a is None:
        raise KernelError(errno.ENOENT, f"{dev.name}/{name}: no such attribute")
    fn = a.show_fn(dev)
    if fn is None:
        raise KernelError(errno.EACCES)
    v = fn()
    return v.decode() if isinstance(v, bytes) else v


@dataclass
class Ida:
    """include/linux/idr.h ida: lowest free id.

    ``low`` keeps every id below it in use, so that allocating N ids in a row
    costs O(N), not O(N^2) (the kernel's ida is a radix tree of bitmaps)."""
    used: set[int] = field(default_factory=set)
    low: int = 0

    def alloc(self, start: int = 0) -> int:
        from_low = start <= self.low
        i = self.low if from_low else start
        while i in self.used:
            i += 1
        self.used.add(i)
        if from_low:            # every id in [low, i] is now in use
            self.low = i + 1
            while self.low in self.used:
                self.low += 1
        return i

    def free(self, i: int) -> None:
        self.used.discard(i)
        if i < self.low:
            self.low = i
