"""An in-process kernfs: the machine's /sys, /proc and /dev as a filesystem.

Directories are computed on demand from the kernel model (nothing is
materialised), so the view is always current and costs nothing until read.
Semantics follow kernfs/sysfs:

* readdir returns entries in kernfs hash order (see util/kernfs_hash.py);
* reading an attribute calls its ``show``; writing calls ``store`` with the
  raw bytes (libcxl writes ``strlen+1`` bytes, so a trailing NUL arrives);
  an attribute without ``store`` refuses writes with EACCES, without ``show``
  refuses reads with EACCES;
* symlinks are absolute inside the model and read back relative, like
  sysfs links (``../../../devices/...``); path walks follow them.
"""

from __future__ import annotations

import errno
import posixpath
from typing import TYPE_CHECKING

from cxlemu.kernel.base.device import (AttrGroup, AttrSpec, Bus, Device, Driver, KernelError, bind_store, ignore_write,
                                       unbind_store)
from cxlemu.kernel.base.kernfs import FuncFile, StaticDir, VDir, VFile, VLink, VNode
from cxlemu.kernel.module import loaded_modules, module_of
from cxlemu.util.kernfs_hash import kernfs_order

if TYPE_CHECKING:
    from cxlemu.kernel.kernel import Kernel


def _err(code: int, path: str) -> OSError:
    return OSError(code, errno.errorcode.get(code, str(code)) if code else "", path)


def kernfs_target_path(link_dir: str, target: str) -> str:
    """kernfs_get_target_path(): climb from the link's directory to the first
    ancestor of the target's *parent*, then down to the target (a link to an
    ancestor reads "../../../node0", not "../..")."""
    tparent = posixpath.dirname(target)
    base, up = link_dir, 0
    while base != "/" and tparent != base and not tparent.startswith(base + "/"):
        base = posixpath.dirname(base)
        up += 1
    rest = target[len(base):].lstrip("/") if base != "/" else target.lstrip("/")
    return "../" * up + rest


class AttrFile(VFile):
    def __init__(self, dev: object, spec: AttrSpec, mode: int):
        self.dev, self.spec, self.mode = dev, spec, mode

    def read(self) -> bytes:
        fn = self.spec.show_fn(self.dev)
        if fn is None:
            raise KernelError(errno.EACCES)
        v = fn()
        return v.encode() if isinstance(v, str) else v

    def write(self, data: bytes) -> None:
        fn = self.spec.store_fn(self.dev)
        if fn is None:
            raise KernelError(errno.EACCES)
        fn(data)

    @property
    def pure(self) -> bool:
        return getattr(self.spec.store_fn(self.dev), "sysfs_pure", False)


class CharDevNode(VFile):
    """A /dev character device node (only stat and open are meaningful)."""
    kind = "chr"
    mode = 0o600

    def __init__(self, dev: Device):
        self.dev = dev


class DevLink(VLink):
    """A link to a device: the target path is computed when it is read, so
    that listing a directory of many links (a bus, a driver) costs no paths."""

    def __init__(self, dev: Device):
        self.dev = dev

    @property
    def target(self) -> str:  # type: ignore[override]
        return self.dev.sysfs_path


def tree_node(obj) -> VNode:
    """A kernel knob tree (nested dicts of ``(show, store, mode)``) as VNodes."""
    if isinstance(obj, dict):
        return StaticDir(lambda: {n: tree_node(v) for n, v in obj.items()})
    if callable(obj):           # a directory computed when it is read (DAMON's numbered directories)
        return StaticDir(lambda: {n: tree_node(v) for n, v in obj().items()})
    show, store, mode = obj
    f = FuncFile(show, store, mode)
    f.quiet = True       # a knob's store refuses with an errno and no log line (proc_dointvec, kstrto*)
    return f


def tree_dir(fn: Callable[[], dict]) -> VDir:
    """A directory whose knob tree is computed when it is read."""
    return StaticDir(lambda: {n: tree_node(v) for n, v in fn().items()})


def dev_link(target: "Device | str") -> VLink:
    return DevLink(target) if isinstance(target, Device) else VLink(target)


class GroupDir(VDir):
    def __init__(self, dev: Device, group: AttrGroup):
        self.dev, self.group = dev, group

    def entries(self) -> dict[str, VNode]:
        out: dict[str, VNode] = {}
        for a in self.group.attrs:
            mode = a.effective_mode(self.dev)
            if mode:
                out[a.name] = AttrFile(self.dev, a, mode)
        return out

    def lookup(self, name: str) -> VNode | None:
        for a in reversed(self.group.attrs):
            if a.name == name:
                mode = a.effective_mode(self.dev)
                return AttrFile(self.dev, a, mode) if mode else None
        return None


class DeviceDir(VDir):
    def __init__(self, dev: Device):
        self.dev = dev

    def entries(self) -> dict[str, VNode]:
        dev = self.dev
        out: dict[str, VNode] = {}
        for g in dev.attr_groups():
            if not g.is_visible(dev):
                continue
            if g.name is None:
                for a in g.attrs:
                    mode = a.effective_mode(dev)
                    if mode:
                        out[a.name] = AttrFile(dev, a, mode)
            else:
                out[g.name] = GroupDir(dev, g)
        out["uevent"] = FuncFile(dev.uevent_show, ignore_write, 0o644)
        if dev.devt:
            out["dev"] = FuncFile(lambda: f"{dev.devt[0]}:{dev.devt[1]}\n")
        if dev.bus is not None:
            out["subsystem"] = VLink(f"/sys/bus/{dev.bus.name}")
        if dev.driver is not None and dev.bus is not None:
            out["driver"] = VLink(f"/sys/bus/{dev.bus.name}/drivers/{dev.driver.name}")
        for name, target in dev.sysfs_links().items():
            out[name] = dev_link(target)
        for c in dev.children:
            out[c.name] = DeviceDir(c)
        return out

    def lookup(self, name: str) -> VNode | None:
        """One entry without building the listing: the same answer as
        ``entries().get(name)`` (later entries shadow earlier ones there, so
        they are tried first here: children, links, driver, subsystem, dev,
        uevent, then the attribute groups from the last)."""
        dev = self.dev
        for c in dev.children:
            if c.name == name:
                return DeviceDir(c)
        link = getattr(dev, "sysfs_lookup_link", None)
        if link is not None:          # directories with many links (node -> memoryN)
            target = link(name)
            if target is not None:
                return dev_link(target)
            return self.entries().get(name)
        target = dev.sysfs_links().get(name)
        if target is not None:
            return dev_link(target)
        if name in ("driver", "subsystem", "dev", "uevent"):
            return self.entries().get(name)
        for g in reversed(dev.attr_groups()):
            if g.name is None:
                for a in reversed(g.attrs):
                    if a.name == name:
                        if not g.is_visible(dev):
                            break
                        mode = a.effective_mode(dev)
                        if mode:
                            return AttrFile(dev, a, mode)
                        break
            elif g.name == name and g.is_visible(dev):
                return GroupDir(dev, g)
        return None


class DriverDir(VDir):
    def __init__(self, drv: Driver):
        self.drv = drv

    def entries(self) -> dict[str, VNode]:
        drv = self.drv
        out: dict[str, VNode] = {"uevent": FuncFile(None, ignore_write)}
        if not drv.suppress_bind_attrs:
            out["bind"] = FuncFile(None, lambda b: bind_store(drv, b))
            out["unbind"] = FuncFile(None, lambda b: unbind_store(drv, b))
        for name, (show, store, mode) in drv.extra_attrs.items():
            out[name] = FuncFile(show, store, mode)
        mod = module_of(drv.bus.name, drv.name)
        if mod is not None:
            out["module"] = VLink(f"/sys/module/{mod}")
        for d in drv.bound_devices():
            out[d.name] = DevLink(d)
        return out

    def lookup(self, name: str) -> VNode | None:
        d = self.drv.bus.devices.get(name)
        if d is not None and d.driver is self.drv:
            return DevLink(d)
        if name in ("uevent", "bind", "unbind", "module") or name in self.drv.extra_attrs:
            return self.entries().get(name)
        return None


class BusDir(VDir):
    def __init__(self, bus: Bus):
        self.bus = bus

    def entries(self) -> dict[str, VNode]:
        bus = self.bus
        out: dict[str, VNode] = {
            "devices": StaticDir(lambda: {n: DevLink(d) for n, d in bus.devices.items()},
                                 lambda n: DevLink(bus.devices[n]) if n in bus.devices else None),
            "drivers": StaticDir(lambda: {n: DriverDir(d) for n, d in bus.drivers.items()}),
            "drivers_autoprobe": FuncFile(lambda: "1\n" if bus.autoprobe else "0\n", ignore_write, 0o644),
            "drivers_probe": FuncFile(None, ignore_write),
            "uevent": FuncFile(None, ignore_write),
        }
        for name, (show, store, mode) in bus.attrs.items():
            out[name] = FuncFile(show, store, mode)
        return out


class Vfs:
    """Path-level access to the kernel model: what the tools' backend calls."""

    MAX_LINKS = 40

    def __init__(self, kernel: "Kernel"):
        self.kernel = kernel
        self.root = StaticDir(self._root_entries, self._root_lookup)
        self._sys = StaticDir(self._sys_entries, self._sys_lookup)
        # canonical path of a device directory -> the device (see _cached_dir)
        self._dirs: dict[str, Device] = {}
        self._devindex = _DevIndex(kernel)

    # ---- tree ------------------------------------------------------------------
    def _root_lookup(self, name: str) -> VNode | None:
        if name == "sys":
            return self._sys
        return self._root_entries().get(name)

    def _sys_lookup(self, name: str) -> VNode | None:
        if name == "devices":
            return DeviceDir(self.kernel.root)
        if name == "bus":
            buses = self.kernel.buses
            return StaticDir(lambda: {n: BusDir(b) for n, b in buses.items()},
                             lambda n: BusDir(buses[n]) if n in buses else None)
        return self._sys_entries().get(name)

    def _root_entries(self) -> dict[str, VNode]:
        k = self.kernel
        return {
            "sys": self._sys,
            "proc": StaticDir(self._proc_entries),
            "dev": _DevTreeDir(k, "", self._devindex),
        }

    def _proc_entries(self) -> dict[str, VNode]:
        k = self.kernel
        out: dict[str, VNode] = {n: FuncFile(fn) for n, fn in k.proc_files().items()}
        tree = getattr(k, "proc_tree", None)
        if tree is not None:
            for name, sub in tree().items():
                out[name] = tree_node(sub)
        return out

    def _sys_entries(self) -> dict[str, VNode]:
        k = self.kernel
        return {
            "devices": DeviceDir(k.root),
            "bus": StaticDir(lambda: {n: BusDir(b) for n, b in k.buses.items()}),
            "dev": StaticDir(lambda: {
                "char": StaticDir(lambda: {f"{d.devt[0]}:{d.devt[1]}": VLink(d.sysfs_path)
                                           for d in k.char_devices()}),
                "block": StaticDir(dict)}),
            "class": StaticDir(lambda: {n: StaticDir(lambda devs=devs: {d.name: VLink(d.sysfs_path) for d in devs()})
                                        for n, devs in k.classes().items()}),
            "firmware": StaticDir(lambda: {"acpi": StaticDir(lambda: {"tables": StaticDir(
                lambda: {n: FuncFile(lambda b=b: b, mode=0o400) for n, b in k.acpi_tables.items()})})}),
            "kernel": self._kernel_dir(),
            "module": StaticDir(lambda: _module_entries(k)),
        }

    def _kernel_dir(self) -> VDir:
        """/sys/kernel: the kernel's own entries plus tracing (tracefs) and debug (debugfs)."""
        k = self.kernel
        from cxlemu.sysfs.tracefs import debugfs_dir, tracefs_dir
        base = tree_dir(lambda: k.ktree("/sys/kernel"))

        def entries() -> dict[str, VNode]:
            out = dict(base.entries())
            out["tracing"] = tracefs_dir(k)
            dbg, knobs = debugfs_dir(k), out.get("debug")     # debugfs: cxl/ (RAS) + the knobs' sched/, zswap/
            out["debug"] = dbg if knobs is None else StaticDir(
                lambda: {**knobs.entries(), **dbg.entries()},
                lambda n: dbg.lookup(n) or knobs.lookup(n))
            return out
        return StaticDir(entries)

    # ---- path walking --------------------------------------------------------------
    #
    # A walk starts from the deepest cached device directory on the path (at
    # most three tries: the directory itself, its parent, its grandparent), so
    # reading attribute after attribute of a device deep in a fabric costs a
    # dict lookup, not a walk from "/" through every switch.  The cache maps
    # the *canonical* path of a device directory (no symlink on the way) to
    # the device, and an entry is used only while the device is registered
    # and its sysfs path is still that path: devices that go away, or come
    # back elsewhere, are walked to again.  Symlinks (/sys/bus/*/devices/*,
    # driver, dportN ...) are always resolved afresh; their targets, being
    # canonical, then hit the cache.

    def _cached_dir(self, parts: list[str]) -> tuple[VNode, str, int] | None:
        n = len(parts)
        for j in range(n, max(n - 3, 0), -1):
            key = "/" + "/".join(parts[:j])
            dev = self._dirs.get(key)
            if dev is not None:
                if dev.registered and dev.sysfs_path == key:
                    return DeviceDir(dev), key, j
                del self._dirs[key]
        return None

    def _walk(self, path: str, follow_last: bool) -> tuple[VNode, str]:
        if not path.startswith("/"):
            raise _err(errno.EINVAL, path)
        node: VNode = self.root
        cur = "/"
        parts = [p for p in path.split("/") if p and p != "."]
        links = 0
        i = 0
        dirs = self._dirs
        if ".." not in parts:
            hit = self._cached_dir(parts)
            if hit is not None:
                node, cur, i = hit
        while i < len(parts):
            name = parts[i]
            if name == "..":
                cur = posixpath.dirname(cur.rstrip("/")) or "/"
                node, cur = self._walk(cur, True)
                i += 1
                continue
            if not isinstance(node, VDir):
                raise _err(errno.ENOTDIR, path)
            child = node.lookup(name)
            if child is None:
                raise _err(errno.ENOENT, path)
            nxt = cur + "/" + name if cur != "/" else "/" + name
            last = i == len(parts) - 1
            if isinstance(child, VLink) and (not last or follow_last):
                links += 1
                if links > self.MAX_LINKS:
                    raise _err(errno.ELOOP, path)
                target = child.target
                if not target.startswith("/"):
                    target = posixpath.normpath(posixpath.join(cur, target))
                rest = parts[i + 1:]
                parts = [p for p in target.split("/") if p] + rest
                node, cur, i = self.root, "/", 0
                if ".." not in parts:
                    hit = self._cached_dir(parts)
                    if hit is not None:
                        node, cur, i = hit
                continue
            node, cur = child, nxt
            if isinstance(child, DeviceDir) and child.dev.registered:
                dirs[cur] = child.dev
            i += 1
        return node, cur

    def resolve(self, path: str, follow_last: bool = True) -> VNode:
        return self._walk(path, follow_last)[0]

    def realpath(self, path: str) -> str:
        return self._walk(path, True)[1]

    def exists(self, path: str) -> bool:
        try:
            self._walk(path, True)
            return True
        except OSError:
            return False

    def lexists(self, path: str) -> bool:
        try:
            self._walk(path, False)
            return True
        except OSError:
            return False

    def isdir(self, path: str) -> bool:
        try:
            return isinstance(self.resolve(path), VDir)
        except OSError:
            return False

    def islink(self, path: str) -> bool:
        try:
            return isinstance(self.resolve(path, follow_last=False), VLink)
        except OSError:
            return False

    def listdir(self, path: str) -> list[str]:
        node = self.resolve(path)
        if not isinstance(node, VDir):
            raise _err(errno.ENOTDIR, path)
        return kernfs_order(node.entries().keys())

    def readlink(self, path: str) -> str:
        node, cur = self._walk(path, False)
        if not isinstance(node, VLink):
            raise _err(errno.EINVAL, path)
        return kernfs_target_path(posixpath.dirname(cur), node.target)

    def read(self, path: str) -> bytes:
        node = self.resolve(path)
        if isinstance(node, VDir):
            raise _err(errno.EISDIR, path)
        if isinstance(node, CharDevNode):
            raise _err(errno.EINVAL, path)
        assert isinstance(node, VFile)
        try:
            return node.read()
        except KernelError as e:
            raise _err(e.errno, path) from None

    def write(self, path: str, data: bytes) -> int:
        node = self.resolve(path)
        if isinstance(node, VDir):
            raise _err(errno.EISDIR, path)
        assert isinstance(node, VFile)
        if not node.mode & 0o222:
            raise _err(errno.EACCES, path)
        try:
            node.write(data)
        except KernelError as e:
            if node.quiet:
                # knobs (sysctl's proc_dointvec_minmax, the mm/damon sysfs stores) refuse
                # silently, changing nothing: no log line, nothing to save
                raise _err(e.errno, path) from None
            self.kernel.log(f"write {path}: {e.log}" if e.log else f"write {path}: -{errno.errorcode.get(e.errno, e.errno)}")
            # a refused store can still change the model (a failed probe that
            # registered a claim device, the log): it must be saved and seen
            self.kernel.dirty = True
            raise _err(e.errno, path) from None
        if not getattr(node, "pure", False):
            self.kernel.dirty = True
        return len(data)

    def mkdir(self, path: str) -> None:
        parent, name = posixpath.split(path.rstrip("/"))
        node = self.resolve(parent or "/")
        if not isinstance(node, VDir):
            raise _err(errno.ENOTDIR, path)
        if node.lookup(name) is not None:
            raise _err(errno.EEXIST, path)
        try:
            node.mkdir(name)
        except KernelError as e:
            raise _err(e.errno, path) from None
        self.kernel.dirty = True

    def rmdir(self, path: str) -> None:
        parent, name = posixpath.split(path.rstrip("/"))
        node = self.resolve(parent or "/")
        if not isinstance(node, VDir):
            raise _err(errno.ENOTDIR, path)
        if node.lookup(name) is None:
            raise _err(errno.ENOENT, path)
        try:
            node.rmdir(name)
        except KernelError as e:
            raise _err(e.errno, path) from None
        self.kernel.dirty = True

    def readable(self, path: str) -> bool:
        """poll(2) POLLIN for ``path`` (stream files: data is waiting)."""
        node = self.resolve(path)
        return isinstance(node, VFile) and node.readable()

    def is_stream(self, path: str) -> bool:
        try:
            node = self.resolve(path)
        except OSError:
            return False
        return isinstance(node, VFile) and node.stream

    def mode(self, path: str) -> int:
        node = self.resolve(path, follow_last=False)
        if isinstance(node, VDir):
            return 0o040755
        if isinstance(node, VLink):
            return 0o120777
        if isinstance(node, CharDevNode):
            return 0o020600
        assert isinstance(node, VFile)
        return 0o100000 | node.mode

    def chardev(self, path: str) -> Device | None:
        try:
            node = self.resolve(path)
        except OSError:
            return None
        return node.dev if isinstance(node, CharDevNode) else None


class _DevTreeDir(VDir):
    """A directory of /dev (``prefix`` "" is /dev itself) computed from the
    kernel's device nodes; a lookup does not build the whole listing."""

    def __init__(self, kernel: "Kernel", prefix: str = "", index: "_DevIndex | None" = None):
        self.kernel, self.prefix = kernel, prefix
        self.index = index if index is not None else _DevIndex(kernel)

    def _nodes(self) -> list[tuple[str, Device]]:
        return [(d.devnode, d) for d in self.kernel.char_devices() if d.devnode]

    def entries(self) -> dict[str, VNode]:
        pre = self.prefix + "/" if self.prefix else ""
        out: dict[str, VNode] = {}
        for node, d in self._nodes():
            if not node.startswith(pre):
                continue
            head, sep, _ = node[len(pre):].partition("/")
            if sep:
                out.setdefault(head, _DevTreeDir(self.kernel, pre + head, self.index))
            else:
                out[head] = CharDevNode(d)
        return out

    def lookup(self, name: str) -> VNode | None:
        full = f"{self.prefix}/{name}" if self.prefix else name
        d = self.index.node(full)
        if d is not None:
            return CharDevNode(d)
        if self.index.is_dir(full):
            return _DevTreeDir(self.kernel, full, self.index)
        return None


class _DevIndex:
    """devnode -> device and the directories of /dev, built from the
    kernel's char devices once and rebuilt when that list changes (a device
    added or removed); a hit is checked against the device (still
    registered, same node), so a lookup never answers from stale data and
    costs O(1) instead of a scan of every char device."""

    def __init__(self, kernel: "Kernel"):
        self.kernel = kernel
        self.stamp: tuple[int, int] | None = None
        self.nodes: dict[str, Device] = {}
        self.dirs: dict[str, list[Device]] = {}

    def _fresh(self) -> None:
        devs = self.kernel.chrdevs
        stamp = (len(devs), id(devs[-1]) if devs else 0)
        if stamp == self.stamp:
            return
        self.nodes, self.dirs = {}, {}
        for d in devs:
            node = d.devnode
            if not node:
                continue
            self.nodes.setdefault(node, d)
            head, sep, _ = node.rpartition("/")
            while sep:
                self.dirs.setdefault(head, []).append(d)
                head, sep, _ = head.rpartition("/")
        self.stamp = stamp

    @staticmethod
    def _live(d: Device, node: str) -> bool:
        return d.registered and bool(d.devt) and d.devnode == node

    def node(self, full: str) -> Device | None:
        self._fresh()
        d = self.nodes.get(full)
        if d is None:
            return None
        if self._live(d, full):
            return d
        # the indexed device went away: another one may have the node now
        return next((x for x in self.kernel.char_devices() if x.devnode == full), None)

    def is_dir(self, full: str) -> bool:
        self._fresh()
        pre = full + "/"
        return any(d.registered and d.devt and d.devnode and d.devnode.startswith(pre)
                   for d in self.dirs.get(full, ()))


def _module_entries(k: "Kernel") -> dict[str, VNode]:
    """/sys/module: each loaded module (its drivers), then the modules whose
    parameters the kernel model offers (zswap, damon_reclaim ...)."""
    out: dict[str, VNode] = {m: _module_dir(m, drvs) for m, drvs in loaded_modules(k.buses).items()}
    for name, sub in k.ktree("/sys/module").items():
        out.setdefault(name, tree_node(sub))
    return out


def _module_dir(name: str, drivers: list[tuple[str, str]]) -> StaticDir:
    """/sys/module/<name> of a loaded module (kernel/module/sysfs.c): what
    libkmod reads to decide a module is already there."""
    return StaticDir(lambda: {
        "initstate": FuncFile(lambda: "live\n"),
        "refcnt": FuncFile(lambda: f"{len(drivers)}\n"),
        "taint": FuncFile(lambda: "\n"),
        "uevent": FuncFile(None, lambda b: None),
        "holders": StaticDir(dict),
        "parameters": StaticDir(dict),
        "drivers": StaticDir(lambda: {f"{b}:{d}": VLink(f"/sys/bus/{b}/drivers/{d}") for b, d in drivers}),
    })


class _MutableDir(VDir):
    def __init__(self) -> None:
        self.items: dict[str, VNode] = {}

    def entries(self) -> dict[str, VNode]:
        return self.items
