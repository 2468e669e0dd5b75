"""The read side of libdaxctl that ``cxl list -X`` needs: a DAX region found
below a CXL region (``<region>/dax_region<id>``), its devices and, for
devices in system-ram mode, their memory blocks (daxctl/lib/libdaxctl.c
``add_dax_region``, ``add_dax_dev``, ``daxctl_dev_get_memory``,
``daxctl_memory_op``).

Rules kept:

* region ``size``/``align`` come from ``dax_region/{size,align}`` (missing:
  ULLONG_MAX / ULONG_MAX, i.e. not printed); ``available_size`` is read
  live and only a fully numeric value counts;
* devices are ``dax<region>.<n>`` entries of ``<dax_region>/dax`` (class
  model) then of ``<dax_region>`` (bus model), head-inserted, deduplicated
  by id; a device needs ``/dev/daxX.Y`` (stat) and a readable ``size``;
  ``resource`` falls back to ``/proc/iomem``;
* the "dax bus" device model is detected through
  ``/sys/dev/char/<major>:<minor>/subsystem`` resolving to ``/sys/bus/dax``;
  without it a device counts as enabled and never as system-ram;
* system-ram = bound to ``kmem``; its blocks are the ``memoryN`` entries
  of ``/sys/devices/system/node/node<target_node>`` whose
  ``phys_index * block_size`` falls in the device range.
"""

from __future__ import annotations

from cxlemu.tools.common.log import Log

from .cnum import U64_MAX, c_strtol_s32, c_strtoull
from .port import devname_of
from .sysfs import SysfsIO, strerror


__all__ = ["DaxContext", "DaxRegion", "DaxDev", "DaxMemory", "ZONE_MOVABLE", "ZONE_NORMAL"]

ZONE_UNKNOWN, ZONE_MOVABLE, ZONE_NORMAL = 0, 1, 2
_ZONES = {"Movable": ZONE_MOVABLE, "Normal": ZONE_NORMAL}
ULONG_MAX = U64_MAX


class DaxContext:
    """``struct daxctl_ctx`` (owner ``libdaxctl``, env ``DAXCTL_LOG``)."""

    def __init__(self, backend, env=None, stream=None):
        self.log = Log.init("libdaxctl", "DAXCTL_LOG", env, stream=stream)
        self.io = SysfsIO(backend, self.log)
        self._regions: dict[str, DaxRegion] = {}

    def region(self, region_id: int, path: str) -> "DaxRegion":
        """``daxctl_new_region()`` (deduplicated by path)."""
        if path not in self._regions:
            self._regions[path] = DaxRegion.add(self, region_id, path)
        return self._regions[path]


class DaxRegion:
    def __init__(self, ctx: DaxContext, region_id: int, path: str):
        self.ctx = ctx
        self.id = region_id
        self.path = path
        self.size = U64_MAX
        self.align = ULONG_MAX
        self._devices: list[DaxDev] | None = None

    @classmethod
    def add(cls, ctx: DaxContext, region_id: int, path: str) -> "DaxRegion":
        r = cls(ctx, region_id, path)
        v = ctx.io.read_attr(f"{path}/dax_region/size")
        if v is not None:
            r.size = c_strtoull(v)
        v = ctx.io.read_attr(f"{path}/dax_region/align")
        if v is not None:
            r.align = c_strtoull(v)
        return r

    @property
    def devname(self) -> str:
        return devname_of(self.path)

    def available_size(self) -> int:
        v = self.ctx.io.read_attr(f"{self.path}/dax_region/available_size")
        if not v:
            return 0
        from cxlemu.tools.common.parse_options import strtoull
        val, end = strtoull(v, 0)
        return val if end == len(v) else 0

    def devices(self) -> list["DaxDev"]:
        if self._devices is None:
            self._devices = []
            for base in (f"{self.path}/dax", self.path):
                for e in self.ctx.io.scan(base, f"dax{self.id}."):
                    dev = DaxDev.add(self, e.id, e.path)
                    if dev is None:
                        self.ctx.log.err("__sysfs_device_parse", f"dax{self.id}.{e.id}: add_dev() failed")
                    elif dev not in self._devices:
                        self._devices.insert(0, dev)
        return self._devices


class DaxDev:
    def __init__(self, region: DaxRegion, dev_id: int, path: str, major: int, minor: int):
        self.region = region
        self.ctx = region.ctx
        self.id = dev_id
        self.path = path
        self.major, self.minor = major, minor
        self.resource = 0
        self.size = 0
        self.align = 0
        self.target_node = -1
        self._mem: DaxMemory | None = None
        self._mem_checked = False

    @classmethod
    def add(cls, region: DaxRegion, dev_id: int, path: str) -> "DaxDev | None":
        io = region.ctx.io
        devname = devname_of(path)
        node = io.chardev(f"/dev/{devname}")
        if node is None:
            return None
        d = cls(region, dev_id, path, *node)
        v = io.read_attr(f"{path}/resource")
        d.resource = c_strtoull(v) if v is not None else _iomem_resource(region.ctx, devname)
        v = io.read_attr(f"{path}/size")
        if v is None:
            return None
        d.size = c_strtoull(v)
        v = io.read_attr(f"{path}/align")
        d.align = c_strtoull(v) if v is not None else 0
        v = io.read_attr(f"{path}/target_node")
        d.target_node = c_strtol_s32(v) if v is not None else -1
        for dup in region._devices or ():
            if dup.id == d.id:
                return dup
        return d

    @property
    def devname(self) -> str:
        return devname_of(self.path)

    def _dax_bus_model(self) -> bool:
        """``device_model_is_dax_bus()``."""
        io, log = self.ctx.io, self.ctx.log
        node = io.chardev(f"/dev/{self.devname}")
        if node is None:
            log.err("device_model_is_dax_bus",
                    f"{self.devname}: stat for /dev/{self.devname} failed: No such file or directory")
            return False
        sub = io.realpath(f"/sys/dev/char/{node[0]}:{node[1]}/subsystem")
        if sub is None:
            log.err("device_model_is_dax_bus",
                    f"{self.devname}:  unable to determine subsys: No such file or directory")
            return False
        return sub == "/sys/bus/dax"

    def is_enabled(self) -> bool:
        if not self._dax_bus_model():
            return True
        return self.ctx.io.is_link(f"{self.path}/driver")

    def is_system_ram_capable(self) -> bool:
        if not self._dax_bus_model() or not self.is_enabled():
            return False
        drv = self.ctx.io.realpath(f"{self.path}/driver")
        return drv is not None and devname_of(drv) == "kmem"

    @property
    def memory(self) -> "DaxMemory | None":
        """``daxctl_dev_get_memory()``: only for system-ram devices."""
        if self._mem is None:
            if not self.is_system_ram_capable():
                return None
            self._mem = DaxMemory(self)
        return self._mem


class DaxMemory:
    def __init__(self, dev: DaxDev):
        self.dev = dev
        io = dev.ctx.io
        self.block_size = 0
        v = io.read_attr("/sys/devices/system/memory/block_size_bytes")
        if v is not None:
            self.block_size = c_strtoull("0x" + v) if v and not v.lower().startswith("0x") else c_strtoull(v)
            if self.block_size in (0, U64_MAX):
                dev.ctx.log.err("daxctl_dev_alloc_mem",
                                f"{dev.devname}: Unable to determine memblock size: Success")
                self.block_size = 0
        self.node_path = (f"/sys/devices/system/node/node{dev.target_node}"
                          if dev.target_node >= 0 else None)

    def _blocks(self) -> list[str] | int:
        """Memory blocks of the node that fall in the device (readdir order),
        or the negative errno that aborts the walk (``daxctl_memory_op``)."""
        io, log, dev = self.dev.ctx.io, self.dev.ctx.log, self.dev
        if self.node_path is None:
            log.err("daxctl_memory_op", f"{dev.devname}: Failed to get node_path")
            return -6
        names = io.listdir(self.node_path)
        if names is None:
            return -io.last_errno
        out = []
        for name in names:
            if not name.startswith("memory") or name.startswith("memory_"):
                continue
            v = io.read_attr(f"/sys/devices/system/memory/{name}/phys_index")
            if v is None:
                log.err("memblock_in_dev", f"{dev.devname}: {name}: Unable to determine "
                                           f"phys_index: {strerror(io.last_errno)}")
                return -io.last_errno
            index = c_strtoull("0x" + v) if not v.lower().startswith("0x") else c_strtoull(v)
            if not dev.resource:
                log.err("memblock_in_dev", f"{dev.devname}: Unable to determine resource")
                return -13
            if not self.block_size:
                log.err("memblock_in_dev", f"{dev.devname}: Unable to determine memory block size")
                return -6
            addr = index * self.block_size
            if dev.resource <= addr <= dev.resource + dev.size - 1:
                out.append(name)
        return out

    def _state(self, block: str) -> str | None:
        io = self.dev.ctx.io
        v = io.read_attr(f"{self.node_path}/{block}/state")
        if v is None:
            self.dev.ctx.log.err("memblock_is_online",
                                 f"{self.dev.devname}: Failed to read {self.node_path}/{block}/state: "
                                 f"{strerror(io.last_errno)}")
        return v

    def num_sections(self) -> int:
        blocks = self._blocks()
        return blocks if isinstance(blocks, int) else len(blocks)

    def num_online(self) -> int:
        blocks = self._blocks()
        if isinstance(blocks, int):
            return blocks
        n = 0
        for b in blocks:
            st = self._state(b)
            if st is None:
                return -self.dev.ctx.io.last_errno
            n += st.startswith("online")
        return n

    def offline(self) -> int:
        """``daxctl_memory_offline()``: write "offline" to the ``state`` of
        every online block of the device.  Returns the number of blocks
        offlined, or a negative errno (an unreadable state, a block whose
        ``removable`` reads 0: -EOPNOTSUPP, a refused write)."""
        blocks = self._blocks()
        if isinstance(blocks, int):
            return blocks
        io, log, dev = self.dev.ctx.io, self.dev.ctx.log, self.dev
        count = 0
        for b in blocks:
            st = self._state(b)
            if st is None:
                return -io.last_errno
            if not st.startswith("online"):
                continue                      # already offline: nothing to do
            path = f"{self.node_path}/{b}/removable"
            v = io.read_attr(path)
            if v is None:
                code = io.last_errno
                log.err("memblock_is_removable", f"{dev.devname}: Failed to read {path}: {strerror(code)}")
                return -code
            if c_strtoull(v) == 0:
                log.err("offline_one_memblock", f"{dev.devname}: {b} is unremovable")
                return -95  # -EOPNOTSUPP
            path = f"{self.node_path}/{b}/state"
            try:
                io.write_attr(path, "offline", quiet=True)
            except OSError as e:
                again = self._state(b)
                if again is not None and not again.startswith("online"):
                    continue                  # raced to offline
                log.err("offline_one_memblock",
                        f"{dev.devname}: Failed to offline {path}: {strerror(e.errno or 0)}")
                return -(e.errno or 5)
            count += 1
        return count

    def is_movable(self) -> int:
        """1 movable, 0 not, negative when unknown (an offline block, a read
        error): ``daxctl_memory_is_movable()``."""
        blocks = self._blocks()
        if isinstance(blocks, int):
            return blocks
        zone = ZONE_UNKNOWN
        inconsistent = False
        io = self.dev.ctx.io
        for b in blocks:
            st = self._state(b)
            if st is None:
                return -io.last_errno
            if not st.startswith("online"):
                return -6  # -ENXIO
            v = io.read_attr(f"{self.node_path}/{b}/valid_zones")
            if v is None:
                return -io.last_errno
            cur = _ZONES.get(v, ZONE_UNKNOWN)
            if zone and zone != cur:
                inconsistent = True
            elif not zone:
                zone = cur
        if inconsistent:
            zone = ZONE_UNKNOWN
        return 1 if zone == ZONE_MOVABLE else 0


def _iomem_resource(ctx: DaxContext, devname: str) -> int:
    """``iomem_get_dev_resource()``: start of the /proc/iomem line named
    ``devname``, else 0."""
    try:
        text = ctx.io.backend.read("/proc/iomem")
    except OSError as e:
        ctx.log.err("__iomem_get_dev_resource", f"{devname}: open /proc/iomem: {strerror(e.errno or 0)}")
        return 0
    for line in text.splitlines():
        rng, sep, name = line.strip().partition(" : ")
        if sep and name == devname:
            return c_strtoull("0x" + rng.split("-", 1)[0])
    return 0
