"""libdaxctl over a backend (daxctl/lib/libdaxctl.c, libdaxctl-private.h, util/sysfs.c).

Discovery and access patterns follow the C library, because they are
observable:

* regions are found by reading ``/sys/bus/dax/devices`` (then
  ``/sys/class/dax``): each ``daxR.N`` entry's realpath minus its last
  component is the region directory; devices are the ``daxR.N`` entries of
  that directory; mappings are read ``mapping0``, ``mapping1``... until one
  is missing.  Every list is built with ccan ``list_add`` (insert at the
  head), so iteration order is the *reverse* of discovery order.
* attributes are read with one trailing newline stripped and written as
  the string plus its NUL terminator; numbers are parsed with strtoull(…, 0)
  (block size and phys_index base 16).
* a device is "enabled" when ``driver`` is a symlink, and uses the dax-bus
  model when ``/sys/dev/char/<maj>:<min>/subsystem`` resolves to
  ``/sys/bus/dax``; it is in system-ram mode when its driver's basename is
  ``kmem``.
* memory operations walk ``/sys/devices/system/node/node<target_node>`` in
  readdir order, keep the ``memoryN`` entries (not ``memory_*``) whose
  ``phys_index * block_size`` lies inside the device, and read/write each
  block's ``state``, ``removable`` and ``valid_zones`` through the node
  directory.
"""

from __future__ import annotations

import errno
import os
import posixpath
import re
from typing import Any

from cxlemu.tools.common.log import LOG_DEBUG, LOG_ERR, Log
from cxlemu.tools.common.parse_options import ULLONG_MAX, strtoull

ULONG_MAX = ULLONG_MAX
DAX_SUBSYSTEMS = ("/sys/class/dax", "/sys/bus/dax/devices")     # DAX_CLASS, DAX_BUS (array order)
DAX_MODULES = ("device_dax", "kmem")
DAXCTL_DEV_MODE_DEVDAX, DAXCTL_DEV_MODE_RAM = 0, 1
MEM_ZONE_UNKNOWN, MEM_ZONE_MOVABLE, MEM_ZONE_NORMAL = 1, 2, 3
ZONE_STRINGS = {MEM_ZONE_UNKNOWN: "mixed", MEM_ZONE_NORMAL: "Normal", MEM_ZONE_MOVABLE: "Movable"}
STATE_STRINGS = {MEM_ZONE_NORMAL: "online", MEM_ZONE_MOVABLE: "online_movable"}
MEM_SET_OFFLINE, MEM_SET_ONLINE, MEM_SET_ONLINE_NO_MOVABLE, MEM_IS_ONLINE, MEM_COUNT, MEM_GET_ZONE = range(6)
MEM_ST_ZONE_INCONSISTENT = 1
MEMORY_BASE = "/sys/devices/system/memory/"
NODE_BASE = "/sys/devices/system/node/node"


def strerror(err: int) -> str:
    return os.strerror(abs(err))


def _num(buf: str, base: int = 0) -> int:
    v, end = strtoull(buf, base)
    return v


class DaxctlCtx:
    """struct daxctl_ctx."""

    def __init__(self, backend: Any, log: Log):
        self.backend = backend
        self.log = log
        self._regions: list[DaxctlRegion] = []
        self._regions_init = False
        self.writes = 0           # sysfs writes made through this context (SysfsIO.writes)

    # ---- util/sysfs.c -----------------------------------------------------------------------
    def read_attr(self, path: str) -> tuple[int, str]:
        """__sysfs_read_attr(): (0, value) or (-errno, "")."""
        try:
            data = self.backend.read_bytes(path)
        except OSError as e:
            self.log.dbg("__sysfs_read_attr", f"failed to open {path}: {strerror(e.errno or errno.EIO)}")
            return -(e.errno or errno.EIO), ""
        if len(data) >= 1024:
            self.log.dbg("__sysfs_read_attr", f"failed to read {path}: {strerror(errno.EFBIG)}")
            return -errno.EFBIG, ""
        s = data.decode(errors="replace")
        if s.endswith("\n"):
            s = s[:-1]
        return 0, s

    def write_attr(self, path: str, value: str, quiet: bool = False) -> int:
        """__sysfs_write_attr(): the string and its NUL; 0 or -errno."""
        self.writes += 1
        try:
            self.backend.write(path, value + "\0")
        except OSError as e:
            err = e.errno or errno.EIO
            if not quiet:
                self.log.dbg("write_attr", f"failed to write {value} to {path}: {strerror(err)}")
            return -err
        return 0

    def listdir(self, path: str) -> list[str] | None:
        try:
            return self.backend.listdir(path)
        except OSError:
            return None

    def realpath(self, path: str) -> str | None:
        try:
            if not self.backend.exists(path):
                return None
            return self.backend.realpath(path)
        except OSError:
            return None

    # ---- regions ------------------------------------------------------------------------------
    def regions(self) -> list["DaxctlRegion"]:
        """daxctl_region_foreach(): dax_regions_init() once."""
        if not self._regions_init:
            self._regions_init = True
            for subsys, base in enumerate(DAX_SUBSYSTEMS):
                names = self.listdir(base)
                if names is None:
                    self.log.dbg("__dax_regions_init", f"no dax regions found via: {base}")
                    continue
                for name in names:
                    m = re.match(r"dax(-?\d+)\.(-?\d+)", name)
                    if not m:
                        continue
                    real = self.realpath(f"{base}/{name}")
                    if real is None:
                        self.log.err("__dax_regions_init", "dax region path allocation failure")
                        continue
                    path = posixpath.dirname(real)
                    if subsys == 0:
                        path = posixpath.dirname(path)
                    self._add_region(int(m.group(1)), path)
        return list(self._regions)

    def new_region(self, region_id: int, path: str) -> "DaxctlRegion":
        """daxctl_new_region(): the region at ``path`` (a region a library
        client found, e.g. ``<cxl region>/dax_region<id>``), deduplicated by
        path."""
        return self._add_region(region_id, path)

    def _add_region(self, region_id: int, path: str) -> "DaxctlRegion":
        self.log.dbg("add_dax_region", f"add_dax_region: '{path}'")
        for r in self._regions:
            if r.path == path:
                return r
        r = DaxctlRegion(self, region_id, path)
        self._regions.insert(0, r)
        return r


class DaxctlRegion:
    """struct daxctl_region."""

    def __init__(self, ctx: DaxctlCtx, region_id: int, path: str):
        self.ctx = ctx
        self.id = region_id
        self.path = path
        self.devname = posixpath.basename(path)
        self.size = ULLONG_MAX
        self.align = ULONG_MAX
        rc, buf = ctx.read_attr(f"{path}/dax_region/size")
        if rc == 0:
            self.size = _num(buf)
        rc, buf = ctx.read_attr(f"{path}/dax_region/align")
        if rc == 0:
            self.align = _num(buf)
        self._devices: list[DaxctlDev] = []
        self.devices_init = False

    def devices(self) -> list["DaxctlDev"]:
        self._devices_init()
        return list(self._devices)

    def _devices_init(self) -> None:
        """dax_devices_init(): class layout (<region>/dax) then bus layout."""
        if self.devices_init:
            return
        self.devices_init = True
        ctx = self.ctx
        prefix = f"dax{self.id}."
        for subsys in (0, 1):
            base = f"{self.path}/dax" if subsys == 0 else self.path
            ctx.log.dbg("__sysfs_device_parse", f"base: '{base}' dev: '{prefix}'")
            names = ctx.listdir(base)
            if names is None:
                ctx.log.dbg("__sysfs_device_parse", f"no \"{prefix}\" devices found")
                continue
            for name in names:
                m = re.match(rf"dax{self.id}\.(-?\d+)", name)
                if not m:
                    continue
                dev = self._add_dev(int(m.group(1)), f"{base}/{name}")
                if dev is None:
                    ctx.log.err("__sysfs_device_parse", f"{prefix}{int(m.group(1))}: add_dev() failed")
                else:
                    ctx.log.dbg("__sysfs_device_parse", f"{prefix}{int(m.group(1))}: processed")

    def _add_dev(self, dev_id: int, path: str) -> "DaxctlDev | None":
        """add_dax_dev()."""
        ctx = self.ctx
        ctx.log.dbg("add_dax_dev", f"add_dax_dev: base: '{path}'")
        devname = posixpath.basename(path)
        devt = ctx.backend.chardev(f"/dev/{devname}")
        if devt is None:
            return None
        rc, buf = ctx.read_attr(f"{path}/size")
        if rc < 0:
            return None
        dev = DaxctlDev(self, dev_id, path, devt)
        dev.size = _num(buf)
        rc, rbuf = ctx.read_attr(f"{path}/resource")
        dev.resource = _num(rbuf) if rc == 0 else self._iomem_resource(path)
        rc, abuf = ctx.read_attr(f"{path}/align")
        dev.align = _num(abuf) if rc == 0 else 0
        rc, tbuf = ctx.read_attr(f"{path}/target_node")
        if rc == 0:
            v = _num(tbuf)
            dev.target_node = v - (1 << 64) if v >= 1 << 63 else v
        for d in self._devices:
            if d.id == dev.id:
                return d
        self._devices.insert(0, dev)
        return dev

    def _iomem_resource(self, path: str) -> int:
        """iomem_get_dev_resource(): the start of the iomem entry named after the device."""
        name = posixpath.basename(path)
        rc, text = self.ctx.read_attr("/proc/iomem")
        for line in text.splitlines():
            m = re.match(r"\s*([0-9a-f]+)-([0-9a-f]+) : (.*)$", line)
            if m and m.group(3) == name:
                return int(m.group(1), 16)
        return 0

    @property
    def attr_base(self) -> str:
        return f"{self.path}/dax_region"

    def available_size(self) -> int:
        rc, buf = self.ctx.read_attr(f"{self.attr_base}/available_size")
        if rc < 0:
            return 0
        v, end = strtoull(buf, 0)
        return v if buf and end == len(buf) else 0

    def create_dev(self) -> int:
        return self.ctx.write_attr(f"{self.attr_base}/create", "1")

    def destroy_dev(self, dev: "DaxctlDev") -> int:
        return self.ctx.write_attr(f"{self.attr_base}/delete", dev.devname)

    def dev_seed(self) -> "DaxctlDev | None":
        rc, buf = self.ctx.read_attr(f"{self.attr_base}/seed")
        if rc < 0:
            return None
        return next((d for d in self.devices() if d.devname == buf), None)

    def rescan(self) -> None:
        self.devices_init = False
        self._devices_init()


class DaxctlMapping:
    def __init__(self, dev: "DaxctlDev", start: int, end: int, pgoff: int):
        self.dev, self.start, self.end, self.pgoff = dev, start, end, pgoff

    @property
    def size(self) -> int:
        return self.end - self.start + 1


class DaxctlDev:
    """struct daxctl_dev."""

    def __init__(self, region: DaxctlRegion, dev_id: int, path: str, devt: tuple[int, int]):
        self.region = region
        self.ctx = region.ctx
        self.id = dev_id
        self.path = path
        self.major, self.minor = devt
        self.resource = 0
        self.size = 0
        self.align = 0
        self.target_node = -1
        self._mappings: list[DaxctlMapping] | None = None
        self._mem: DaxctlMemory | None = None

    @property
    def devname(self) -> str:
        return posixpath.basename(self.path)

    # ---- model / state ---------------------------------------------------------------------------
    def model_is_dax_bus(self) -> bool:
        """device_model_is_dax_bus()."""
        ctx = self.ctx
        devt = ctx.backend.chardev(f"/dev/{self.devname}")
        if devt is None:
            ctx.log.err("device_model_is_dax_bus", f"{self.devname}: stat for /dev/{self.devname} failed: "
                                                   f"{strerror(errno.ENOENT)}")
            return False
        resolved = ctx.realpath(f"/sys/dev/char/{devt[0]}:{devt[1]}/subsystem")
        if resolved is None:
            ctx.log.err("device_model_is_dax_bus", f"{self.devname}:  unable to determine subsys: "
                                                   f"{strerror(errno.ENOENT)}")
            return False
        return resolved == "/sys/bus/dax"

    def is_enabled(self) -> bool:
        if not self.model_is_dax_bus():
            return True
        return self.ctx.backend.islink(f"{self.path}/driver")

    def is_system_ram_capable(self) -> bool:
        if not self.model_is_dax_bus() or not self.is_enabled():
            return False
        real = self.ctx.realpath(f"{self.path}/driver")
        return real is not None and posixpath.basename(real) == DAX_MODULES[DAXCTL_DEV_MODE_RAM]

    def memory(self) -> "DaxctlMemory | None":
        """daxctl_dev_get_memory()."""
        if self._mem is not None:
            return self._mem
        if not self.is_system_ram_capable():
            return None
        mem = DaxctlMemory(self)
        rc, buf = self.ctx.read_attr("/sys/devices/system/memory/block_size_bytes")
        if rc == 0:
            mem.block_size = _num(buf, 16)
            if mem.block_size in (0, ULONG_MAX):
                self.ctx.log.err("daxctl_dev_alloc_mem", f"{self.devname}: Unable to determine memblock size: "
                                                         f"{strerror(errno.EINVAL)}")
                mem.block_size = 0
        if self.target_node >= 0:
            mem.node_path = f"{NODE_BASE}{self.target_node}"
        self._mem = mem
        return mem

    def mappings(self) -> list[DaxctlMapping]:
        """mappings_init(): mapping0, mapping1, ... until one is missing (list_add: reversed)."""
        if self._mappings is None:
            self._mappings = []
            i = 0
            while True:
                vals = []
                for attr in ("start", "end", "page_offset"):
                    rc, buf = self.ctx.read_attr(f"{self.path}/mapping{i}/{attr}")
                    if rc < 0:
                        break
                    vals.append(_num(buf))
                if len(vals) != 3:
                    break
                self._mappings.insert(0, DaxctlMapping(self, vals[0], vals[1], vals[2]))
                i += 1
        return list(self._mappings)

    # ---- writes -------------------------------------------------------------------------------------
    def set_size(self, size: int) -> int:
        if self.ctx.write_attr(f"{self.path}/size", f"{size:#x}\n" if size else "0\n") < 0:
            self.ctx.log.err("daxctl_dev_set_size", f"{self.devname}: failed to set size")
            return -errno.ENXIO
        self.size = size
        return 0

    def set_align(self, align: int) -> int:
        if self.ctx.write_attr(f"{self.path}/align", f"{align:#x}\n" if align else "0\n") < 0:
            self.ctx.log.err("daxctl_dev_set_align", f"{self.devname}: failed to set align")
            return -errno.ENXIO
        self.align = align
        return 0

    def set_mapping(self, start: int, end: int) -> int:
        s = f"{start:#x}" if start else "0"
        e = f"{end:#x}" if end else "0"
        if self.ctx.write_attr(f"{self.path}/mapping", f"{s}-{e}\n") < 0:
            self.ctx.log.err("daxctl_dev_set_mapping", f"{self.devname}: failed to set mapping")
            return -errno.ENXIO
        self.size += end - start + 1
        return 0

    def _bind(self, mod_name: str) -> int:
        """daxctl_bind(): new_id then bind on the driver named ``mod_name``."""
        ctx = self.ctx
        names = ctx.listdir("/sys/bus/dax/drivers")
        if names is None:
            ctx.log.err("daxctl_bind", f"{self.devname}: opendir(\"/sys/bus/dax/drivers\") failed")
            return -errno.ENXIO
        rc = 0
        for name in names:
            if name.startswith(".") or name != mod_name:
                continue
            ctx.write_attr(f"/sys/bus/dax/drivers/{name}/new_id", self.devname, quiet=True)
            rc = ctx.write_attr(f"/sys/bus/dax/drivers/{name}/bind", self.devname, quiet=True)
            break
        if rc:
            ctx.log.dbg("daxctl_bind", f"{self.devname}: bind failed")
        return rc

    def _unbind(self) -> int:
        rc = self.ctx.write_attr(f"{self.path}/driver/remove_id", self.devname)
        if rc:
            return rc
        return self.ctx.write_attr(f"{self.path}/driver/unbind", self.devname)

    def enable(self, mode: int) -> int:
        """daxctl_dev_enable()."""
        ctx = self.ctx
        if not self.model_is_dax_bus():
            ctx.log.err("daxctl_dev_enable", f"{self.devname}: error: device model is dax-class")
            ctx.log.err("daxctl_dev_enable", f"{self.devname}: see man daxctl-migrate-device-model")
            return -errno.EOPNOTSUPP
        if self.is_enabled():
            return 0
        mod = DAX_MODULES[mode]
        ctx.log.dbg("daxctl_insert_kmod_for_mode", f"{self.devname} inserting module: {mod}")
        rc = self._bind(mod)
        if not self.is_enabled():
            ctx.log.err("daxctl_dev_enable", f"{self.devname}: failed to enable")
            return rc if rc else -errno.ENXIO
        self.region.rescan()
        ctx.log.dbg("daxctl_dev_enable", f"{self.devname}: enabled")
        return 0

    def enable_devdax(self) -> int:
        return self.enable(DAXCTL_DEV_MODE_DEVDAX)

    def enable_ram(self) -> int:
        return self.enable(DAXCTL_DEV_MODE_RAM)

    def disable(self) -> int:
        """daxctl_dev_disable()."""
        ctx = self.ctx
        if not self.model_is_dax_bus():
            ctx.log.err("daxctl_dev_disable", f"{self.devname}: error: device model is dax-class")
            ctx.log.err("daxctl_dev_disable", f"{self.devname}: see man daxctl-migrate-device-model")
            return -errno.EOPNOTSUPP
        if not self.is_enabled():
            return 0
        self._mem = None
        self._unbind()
        if self.is_enabled():
            ctx.log.err("daxctl_dev_disable", f"{self.devname}: failed to disable")
            return -errno.EBUSY
        ctx.log.dbg("daxctl_dev_disable", f"{self.devname}: disabled")
        return 0

    def will_auto_online_memory(self) -> bool:
        rc, buf = self.ctx.read_attr("/sys/devices/system/memory/auto_online_blocks")
        if rc != 0:
            self.ctx.log.err("daxctl_dev_will_auto_online_memory",
                             f"{self.devname}: Unable to determine auto-online policy: {strerror(-rc)}")
        return buf.startswith("online")

    def has_online_memory(self) -> int:
        mem = self.memory()
        return mem.is_online() if mem else 0


class DaxctlMemory:
    """struct daxctl_memory: the memory blocks of a system-ram device."""

    def __init__(self, dev: DaxctlDev):
        self.dev = dev
        self.ctx = dev.ctx
        self.block_size = 0
        self.node_path: str | None = None
        self.zone = 0

    def _err(self, fn: str, msg: str) -> None:
        self.ctx.log.err(fn, f"{self.dev.devname}: {msg}")

    def _block_attr(self, block: str, attr: str, fn: str) -> tuple[int, str]:
        """Read memoryN/<attr> below the node; (negative errno, "") on failure."""
        if self.node_path is None:
            return -errno.ENXIO, ""
        path = f"{self.node_path}/{block}/{attr}"
        rc, buf = self.ctx.read_attr(path)
        if rc:
            self._err(fn, f"Failed to read {path}: {strerror(-rc)}")
        return rc, buf

    def _is_online(self, block: str) -> int:
        """memblock_is_online()."""
        rc, buf = self._block_attr(block, "state", "memblock_is_online")
        return rc if rc else (1 if buf.startswith("online") else 0)

    def _is_removable(self, block: str) -> int:
        rc, buf = self._block_attr(block, "removable", "memblock_is_removable")
        return rc if rc else (-errno.EOPNOTSUPP if _num(buf) == 0 else 0)

    def _online_one(self, block: str, zone: int) -> int:
        if self.node_path is None:
            return -errno.ENXIO
        path = f"{self.node_path}/{block}/state"
        rc = self._is_online(block)
        if rc:
            return rc
        if zone in STATE_STRINGS:
            rc = self.ctx.write_attr(path, STATE_STRINGS[zone], quiet=True)
        else:
            rc = -errno.EINVAL
        if rc and self._is_online(block) == 1:
            return 0
        return rc

    def _offline_one(self, block: str) -> int:
        rc = self._is_online(block)
        if rc < 0:
            return rc
        if not rc:
            return 1
        rc = self._is_removable(block)
        if rc:
            if rc == -errno.EOPNOTSUPP:
                self._err("offline_one_memblock", f"{block} is unremovable")
            return rc
        assert self.node_path is not None
        path = f"{self.node_path}/{block}/state"
        rc = self.ctx.write_attr(path, "offline", quiet=True)
        if rc:
            if not self._is_online(block):
                return 1
            self._err("offline_one_memblock", f"Failed to offline {path}: {strerror(-rc)}")
        return rc

    def _find_zone(self, block: str, status: list[int]) -> int:
        rc = self._is_online(block)
        if rc < 0:
            return rc
        if rc == 0:
            return -errno.ENXIO
        assert self.node_path is not None
        path = f"{self.node_path}/{block}/valid_zones"
        rc, buf = self.ctx.read_attr(path)
        if rc:
            self._err("memblock_find_zone", f"Failed to read {path}: {strerror(-rc)}")
            return rc
        cur = MEM_ZONE_MOVABLE if buf == "Movable" else MEM_ZONE_NORMAL if buf == "Normal" else MEM_ZONE_UNKNOWN
        if self.zone:
            if self.zone != cur:
                status[0] |= MEM_ST_ZONE_INCONSISTENT
        else:
            self.zone = cur
        return 0

    def _in_dev(self, block: str) -> int:
        """memblock_in_dev(): phys_index * block_size inside the device."""
        path = f"{MEMORY_BASE}{block}/phys_index"
        rc, buf = self.ctx.read_attr(path)
        if rc:
            self._err("memblock_in_dev", f"{block}: Unable to determine phys_index: {strerror(-rc)}")
            return rc
        phys_index = _num(buf, 16)
        dev = self.dev
        if not dev.resource:
            self._err("memblock_in_dev", "Unable to determine resource")
            return -errno.EACCES
        if not self.block_size:
            self._err("memblock_in_dev", "Unable to determine memory block size")
            return -errno.ENXIO
        start, end = dev.resource, dev.resource + dev.size - 1
        res = phys_index * self.block_size
        return 1 if start <= res <= end else 0

    def op(self, op: int) -> int:
        """daxctl_memory_op(): count of blocks for which the op returned 0, or -errno."""
        if self.node_path is None:
            self._err("daxctl_memory_op", "Failed to get node_path")
            return -errno.ENXIO
        names = self.ctx.listdir(self.node_path)
        if names is None:
            return -errno.ENOENT
        count = 0
        status = [0]
        for name in names:
            if not name.startswith("memory") or name.startswith("memory_"):
                continue
            rc = self._in_dev(name)
            if rc < 0:
                return rc
            if rc == 0:
                continue
            if op == MEM_SET_ONLINE:
                rc = self._online_one(name, MEM_ZONE_MOVABLE)
            elif op == MEM_SET_ONLINE_NO_MOVABLE:
                rc = self._online_one(name, MEM_ZONE_NORMAL)
            elif op == MEM_SET_OFFLINE:
                rc = self._offline_one(name)
            elif op == MEM_IS_ONLINE:
                rc = self._is_online(name)
                if rc < 0:
                    return rc
                rc = int(not rc)
            elif op == MEM_COUNT:
                rc = 0
            elif op == MEM_GET_ZONE:
                rc = self._find_zone(name, status)
            if rc < 0:
                return rc
            if rc == 0:
                count += 1
        if status[0] & MEM_ST_ZONE_INCONSISTENT:
            self.zone = MEM_ZONE_UNKNOWN
        return count

    def _online_with_zone(self, zone: int) -> int:
        rc = self.op(MEM_SET_ONLINE if zone == MEM_ZONE_MOVABLE else MEM_SET_ONLINE_NO_MOVABLE)
        if rc:
            return rc
        self.zone = 0
        rc = self.op(MEM_GET_ZONE)
        if rc < 0:
            return rc
        if self.zone != zone:
            self._err("daxctl_memory_online_with_zone", "\n  WARNING: detected a race while onlining memory\n"
                      "  See 'man daxctl-reconfigure-device' for more details")
            return -errno.EBUSY
        return rc

    def online(self) -> int:
        return self._online_with_zone(MEM_ZONE_MOVABLE)

    def online_no_movable(self) -> int:
        return self._online_with_zone(MEM_ZONE_NORMAL)

    def offline(self) -> int:
        return self.op(MEM_SET_OFFLINE)

    def is_online(self) -> int:
        return self.op(MEM_IS_ONLINE)

    def num_sections(self) -> int:
        return self.op(MEM_COUNT)

    def is_movable(self) -> int:
        self.zone = 0
        rc = self.op(MEM_GET_ZONE)
        if rc < 0:
            return rc
        return 1 if self.zone == MEM_ZONE_MOVABLE else 0


def new_ctx(backend: Any, env: dict, stream) -> DaxctlCtx:
    """daxctl_new(): the libdaxctl log context (LOG_ERR unless DAXCTL_LOG)."""
    log = Log.init("libdaxctl", "DAXCTL_LOG", env, stream=stream)
    ctx = DaxctlCtx(backend, log)
    log.dbg("daxctl_new", f"log_priority={log.priority}")
    return ctx


__all__ = ["DaxctlCtx", "DaxctlRegion", "DaxctlDev", "DaxctlMapping", "DaxctlMemory", "new_ctx",
           "LOG_DEBUG", "LOG_ERR"]
