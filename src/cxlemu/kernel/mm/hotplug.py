"""Memory hotplug: adding, onlining, offlining and removing memory blocks
(mm/memory_hotplug.c, drivers/base/memory.c, kernel/resource.c).

* ``add_memory_driver_managed()``: the resource name must be "System RAM (...)"
  (-EINVAL); start and size must be memory-block aligned (-EINVAL, "Block
  size [...] unaligned hotplug range"); the "System RAM (kmem)" resource is
  requested busy below whatever non-busy resource covers it (-EEXIST when it
  conflicts); the memmap (64 bytes per page) is allocated on the target node
  or the nearest one with kernel memory (-ENOMEM); the node is brought
  online and registered if it was not; blocks are created offline and then
  onlined with ``auto_online_blocks`` unless it is "offline".
* ``online_pages()``: zone from zones.zone_for_pfn_range, the zone span
  grows, present pages and the memory group's kernel/movable counts are
  updated; a node getting its first memory notifies MEM_ONLINE (memory
  tiers, CXL node performance).
* ``offline_pages()``: a block that spans zones (-EINVAL), has holes ("memory
  holes", -EINVAL), holds unmovable pages ("failure to isolate range",
  -EBUSY) or whose movable pages cannot be migrated (the kernel retries
  until a signal arrives: "signal backoff", -EINTR) is left exactly as it
  was; otherwise its pages are migrated to other nodes and it goes offline.
* ``remove_memory()``: -EBUSY if any block is online ("removing memory
  fails, because memory [...] is onlined"); then blocks, memmap and the
  resource go, and the node goes offline if nothing is left on it.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from cxlemu.kernel.base.device import Ida, KernelError
from cxlemu.kernel.mm.alloc import memmap_pages
from cxlemu.kernel.mm.memory import MemoryBlock
from cxlemu.kernel.mm.zones import (MMOP_OFFLINE, MMOP_ONLINE, PAGE_SHIFT, ZONE_MOVABLE, MemoryGroup,
                                    valid_zones, zone_for_pfn_range)
from cxlemu.kernel.resource import Resource, request_resource

if TYPE_CHECKING:
    from cxlemu.kernel.mm.subsys import Mm


def request_mem_region(root: Resource, start: int, end: int, name: str, busy: bool) -> Resource | None:
    """kernel/resource.c __request_region(): descend into the non-busy
    resource that contains the range; any other overlap is a conflict."""
    parent = root
    while True:
        hits = [c for c in parent.children if c.overlaps(start, end)]
        if not hits:
            res = Resource(start, end, name, busy=busy)
            request_resource(parent, res)
            return res
        if len(hits) == 1 and hits[0].contains(start, end) and not hits[0].busy:
            parent = hits[0]
            continue
        return None


class Hotplug:
    def __init__(self, mm: "Mm"):
        self.mm = mm
        self.groups: dict[int, MemoryGroup] = {}
        self.group_ida = Ida()
        self.memmaps: dict[tuple[int, int], int] = {}          # (start, size) -> allocation id
        self.resources: dict[tuple[int, int], Resource] = {}   # (start, size) -> System RAM resource

    @property
    def kernel(self):
        return self.mm.kernel

    # ---- memory groups (drivers/base/memory.c) -------------------------------------------
    def register_static_group(self, nid: int, max_pages: int) -> int:
        """memory_group_register_static()."""
        if max_pages <= 0:
            raise KernelError(errno.EINVAL)
        gid = self.group_ida.alloc()
        self.groups[gid] = MemoryGroup(gid, nid, max_pages)
        return gid

    def unregister_group(self, gid: int) -> None:
        if any(b.group == gid for b in self.mm.blocks.values()):
            raise KernelError(errno.EBUSY)
        self.groups.pop(gid, None)
        self.group_ida.free(gid)

    # ---- add / remove ------------------------------------------------------------------------
    def add_memory_driver_managed(self, gid: int, start: int, size: int, name: str) -> Resource:
        mm = self.mm
        if not name.startswith("System RAM (") or not name.endswith(")"):
            raise KernelError(errno.EINVAL, f"invalid resource name {name!r}")
        bs = mm.block_size
        if not size or start % bs or size % bs:
            raise KernelError(errno.EINVAL, f"Block size [{bs:#x}] unaligned hotplug range: "
                                            f"start {start:#x}, size {size:#x}")
        group = self.groups.get(gid)
        if group is None:
            raise KernelError(errno.EINVAL, f"no memory group {gid}")
        nid = group.nid
        first, count = start // bs, size // bs
        if any((first + i) in mm.blocks for i in range(count)):
            raise KernelError(errno.EEXIST, f"memory blocks exist in [{start:#x}-{start + size - 1:#x}]")
        res = request_mem_region(self.kernel.iomem, start, start + size - 1, name, busy=True)
        if res is None:
            raise KernelError(errno.EEXIST, f"Unable to reserve System RAM region: "
                                            f"{start:016x}->{start + size:016x}")
        try:
            memmap = mm.pages.alloc("memmap", memmap_pages(size >> PAGE_SHIFT), nid,
                                    f"memmap {start:#x}-{start + size - 1:#x}")
        except KernelError:
            from cxlemu.kernel.resource import release_resource
            release_resource(res)
            raise KernelError(errno.ENOMEM, f"no memory for the memmap of {size >> 20} MiB") from None
        mm.register_sysfs()
        new_node = mm.numa.set_online(nid)
        for i in range(count):
            blk = MemoryBlock(mm, first + i, nid, early=False)
            blk.group = gid
            mm.add_block(blk)
        if new_node:
            mm.numa.register_node(nid)
        self.memmaps[(start, size)] = memmap.id
        self.resources[(start, size)] = res
        self.kernel.log(f"cxlemu: memory hot-add: [mem {start:#018x}-{start + size - 1:#018x}] node {nid} "
                        f"({count} blocks, {name})")
        if mm.default_online_type != MMOP_OFFLINE:
            for i in range(count):           # walk_memory_blocks(online_memory_block) stops at an error
                blk = mm.blocks[first + i]
                try:
                    self.device_online(blk, mm.default_online_type)
                except KernelError:
                    break
        return res

    def remove_memory(self, start: int, size: int) -> None:
        mm = self.mm
        bs = mm.block_size
        blocks = [mm.blocks[i] for i in range(start // bs, (start + size) // bs) if i in mm.blocks]
        for blk in blocks:
            if blk.online:
                self.kernel.log(f"removing memory fails, because memory [{blk.start:#018x}-{blk.end:#018x}] "
                                f"is onlined")
                raise KernelError(errno.EBUSY, f"{blk.name} is online")
        nids = {b.nid for b in blocks}
        for blk in blocks:
            mm.remove_block(blk)
        mm.failure.forget_range(start >> PAGE_SHIFT, size >> PAGE_SHIFT)
        aid = self.memmaps.pop((start, size), None)
        if aid is not None:
            mm.pages.free(aid)
        res = self.resources.pop((start, size), None)
        if res is not None:
            from cxlemu.kernel.resource import release_resource
            release_resource(res)
        for nid in nids:
            self.try_offline_node(nid)

    def try_offline_node(self, nid: int) -> None:
        mm = self.mm
        node = mm.numa.nodes[nid]
        if any(not z.empty for z in node.zones.zones):
            return
        if any(b.nid == nid for b in mm.blocks.values()):
            return
        if node.cpus:
            return
        mm.numa.unregister_node(nid)

    # ---- online / offline (device core + memory.c) -------------------------------------------
    def device_online(self, blk: MemoryBlock, online_type: int) -> int:
        """device_online(): 1 if already online."""
        if blk.online:
            return 1
        self.online_block(blk, online_type if online_type != MMOP_OFFLINE else MMOP_ONLINE)
        return 0

    def device_offline(self, blk: MemoryBlock) -> int:
        if not blk.online:
            return 1
        self.offline_block(blk)
        return 0

    def _zone_for(self, blk: MemoryBlock, online_type: int) -> int:
        mm = self.mm
        node = mm.numa.nodes[blk.nid]
        group = self.groups.get(blk.group) if blk.group is not None else None
        return zone_for_pfn_range(online_type, mm.policy, mm.all_zonesets(), node.zones, group,
                                  blk.start_pfn, blk.nr_pages)

    def valid_zones(self, blk: MemoryBlock) -> str:
        mm = self.mm
        node = mm.numa.nodes[blk.nid]
        group = self.groups.get(blk.group) if blk.group is not None else None
        names = valid_zones(mm.policy, mm.all_zonesets(), node.zones, group, blk.start_pfn, blk.nr_pages)
        from cxlemu.kernel.mm.exmem import EXMEM_NAME, exmem_mode
        return names.replace("Movable", EXMEM_NAME) if exmem_mode(mm.kernel) else names

    def online_block(self, blk: MemoryBlock, online_type: int) -> None:
        """memory_block_online() + online_pages()."""
        mm = self.mm
        node = mm.numa.nodes[blk.nid]
        zidx = self._zone_for(blk, online_type)
        had_memory = node.has_memory
        z = node.zones[zidx]
        z.grow(blk.start_pfn, blk.nr_pages)
        z.present += blk.present
        if blk.early:
            z.present_early += blk.present
        group = self.groups.get(blk.group) if blk.group is not None else None
        if group is not None:
            if zidx == ZONE_MOVABLE:
                group.present_movable_pages += blk.present
            else:
                group.present_kernel_pages += blk.present
        blk.zone = zidx
        blk.state = "online"
        mm.index_block(blk)
        if not had_memory:
            mm.node_memory_online(blk.nid)
        mm.vm_layout_changed()

    def offline_block(self, blk: MemoryBlock) -> None:
        """memory_block_offline() + offline_pages(); nothing changes on failure."""
        mm = self.mm
        if blk.zone is None:
            raise KernelError(errno.EINVAL, f"{blk.name}: spans several zones")
        reason = None
        if blk.present != blk.nr_pages:
            err, reason = errno.EINVAL, "memory holes"
        elif blk.reserved or blk.kernel:
            # HWPoison pages (blk.hwpoison) never block offlining: they are skipped
            # (scan_movable_pages / test_pages_isolated treat them as isolated)
            err, reason = errno.EBUSY, "failure to isolate range"
        else:
            # pages of processes (kernel/mm/frames.py): pinned ones block, the rest migrate
            fail = mm.offline_migrate_frames(blk)
            if fail is not None:
                err, reason = fail
            elif blk.user and not mm.pages.migrate_out(blk):
                err, reason = errno.EINTR, "signal backoff"
        if reason is not None:
            msg = (f"memory offlining [mem {blk.start:#010x}-{blk.end:#010x}] failed due to {reason}")
            self.kernel.log(msg)
            raise KernelError(err, msg)
        node = mm.numa.nodes[blk.nid]
        zidx = blk.zone
        z = node.zones[zidx]
        z.present -= blk.present
        if blk.early:
            z.present_early -= blk.present
        group = self.groups.get(blk.group) if blk.group is not None else None
        if group is not None:
            if zidx == ZONE_MOVABLE:
                group.present_movable_pages -= blk.present
            else:
                group.present_kernel_pages -= blk.present
        mm.unindex_block(blk)
        blk.state = "offline"
        blk.zone = None
        mm.shrink_zone_span(blk.nid, zidx, blk.start_pfn, blk.start_pfn + blk.nr_pages)
        if not node.has_memory:
            mm.node_memory_offline(blk.nid)
        mm.vm_layout_changed()
