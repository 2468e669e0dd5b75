"""/sys/devices/system/memory: the memory subsystem root and memory block
devices (drivers/base/memory.c).

Attribute formats (memory.c):

* ``block_size_bytes``: ``%lx`` (hex, no 0x); ``auto_online_blocks``: one of
  offline, online, online_kernel, online_movable (RW, -EINVAL otherwise);
* ``memoryN/phys_index``: ``%08lx``; ``state``: online / offline /
  going-offline, writes online, online_kernel, online_movable, offline, with
  -EINVAL for anything else and for a block already in the requested state
  (device_online/offline return 1, state_store turns it into -EINVAL);
* ``online``: 1/0, the device-core attribute: writing the current state
  succeeds (device_online/offline returning 1 is not an error there);
* ``phys_device``: 0; ``removable``: 1 (CONFIG_MEMORY_HOTREMOVE);
* ``valid_zones``: the zone of an online block (``none`` when it spans
  zones), else the choices (zones.valid_zones); ``nodeN`` symlink.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from cxlemu.kernel.base.device import AttrGroup, Device, KernelError, RO, RW, WO, kstr, kstrtobool, kstrtoull
from cxlemu.kernel.mm.zones import MMOP_OFFLINE, ONLINE_TYPE_STR, PAGE_SHIFT, ZONE_NAMES, online_type_from_str

if TYPE_CHECKING:
    from cxlemu.kernel.mm.subsys import Mm


class MemoryRoot(Device):
    """/sys/devices/system/memory (the subsystem's root device)."""

    ATTR_GROUPS = (AttrGroup(None, (RO("block_size_bytes"), RW("auto_online_blocks"),
                                    # CONFIG_MEMORY_FAILURE: memory_failure / soft_offline_page on a physical address
                                    WO("hard_offline_page"), WO("soft_offline_page"))),)

    def __init__(self, mm: "Mm", parent: Device):
        super().__init__("memory", parent, None)
        self.mm = mm

    def block_size_bytes_show(self) -> str:
        return f"{self.mm.block_size:x}\n"

    def auto_online_blocks_show(self) -> str:
        return f"{ONLINE_TYPE_STR[self.mm.default_online_type]}\n"

    def hard_offline_page_store(self, buf: bytes) -> None:
        self.mm.failure.hard_offline_page(kstrtoull(buf, 0))

    def soft_offline_page_store(self, buf: bytes) -> None:
        self.mm.failure.soft_offline_page(kstrtoull(buf, 0))

    def auto_online_blocks_store(self, buf: bytes) -> None:
        t = online_type_from_str(kstr(buf))
        if t < 0:
            raise KernelError(errno.EINVAL)
        self.mm.default_online_type = t


class MemoryBlock(Device):
    """memoryN: one hot(un)pluggable unit of ``block_size`` bytes."""

    ATTR_GROUPS = (AttrGroup(None, (RO("phys_index"), RW("state"), RO("phys_device"), RW("online"),
                                    RO("valid_zones"), RO("removable"))),)

    def __init__(self, mm: "Mm", block_id: int, nid: int, early: bool):
        super().__init__(f"memory{block_id}", mm.mem_root, mm.bus)
        self.mm = mm
        self.id = block_id
        self.nid = nid
        self.early = early                 # boot memory (early sections)
        self.state = "offline"
        self.zone: int | None = None       # mem->zone: set while online (None: spans zones)
        self.group: int | None = None      # memory group id
        self.online_type = MMOP_OFFLINE
        self.present = mm.pages_per_block  # present pages (boot blocks may have holes)
        self.reserved = 0                  # memblock-reserved, never managed
        self.kernel = 0                    # unmovable allocations (pages)
        self.user = 0                      # movable allocations (pages)
        self.hwpoison = 0                  # pages retired by memory_failure (never free again)

    # ---- geometry ------------------------------------------------------------------
    @property
    def start_pfn(self) -> int:
        return self.id * self.mm.pages_per_block

    @property
    def nr_pages(self) -> int:
        return self.mm.pages_per_block

    @property
    def start(self) -> int:
        return self.start_pfn << PAGE_SHIFT

    @property
    def end(self) -> int:
        """Inclusive end address."""
        return ((self.start_pfn + self.nr_pages) << PAGE_SHIFT) - 1

    @property
    def online(self) -> bool:
        return self.state == "online"

    @property
    def managed(self) -> int:
        return self.present - self.reserved if self.online else 0

    @property
    def free(self) -> int:
        return self.managed - self.kernel - self.user - self.hwpoison if self.online else 0

    # ---- sysfs ------------------------------------------------------------------------
    def sysfs_links(self) -> dict:
        node = self.mm.numa.node_device(self.nid)
        return {f"node{self.nid}": node} if node is not None else {}

    def phys_index_show(self) -> str:
        return f"{self.id:08x}\n"

    def state_show(self) -> str:
        return f"{self.state}\n"

    def state_store(self, buf: bytes) -> None:
        t = online_type_from_str(kstr(buf))
        if t < 0:
            raise KernelError(errno.EINVAL, f"{self.name}: invalid state {kstr(buf)!r}")
        ret = self.mm.hotplug.device_online(self, t) if t != MMOP_OFFLINE else self.mm.hotplug.device_offline(self)
        if ret:
            raise KernelError(errno.EINVAL, f"{self.name}: already {'offline' if t == MMOP_OFFLINE else 'online'}")

    def phys_device_show(self) -> str:
        return "0\n"

    def online_show(self) -> str:
        return f"{int(self.online)}\n"

    def online_store(self, buf: bytes) -> None:
        if kstrtobool(buf):
            self.mm.hotplug.device_online(self, MMOP_OFFLINE)
        else:
            self.mm.hotplug.device_offline(self)

    def valid_zones_show(self) -> str:
        if self.online:
            from cxlemu.kernel.mm.exmem import zone_name
            return f"{zone_name(self.mm.kernel, self.zone) if self.zone is not None else 'none'}\n"
        return f"{self.mm.hotplug.valid_zones(self)}\n"

    def removable_show(self) -> str:
        return "1\n"
