"""Zones and the choice of zone when a memory block is onlined
(mm/memory_hotplug.c ``zone_for_pfn_range()`` and friends).

x86-64 zones: DMA below 16 MiB, DMA32 below 4 GiB, Normal above, and
Movable (only what is onlined into it).  A zone's *span* is the smallest pfn
range covering its pages; it grows when a block is onlined into it and
shrinks from its ends when a block is offlined (``shrink_zone_span``).

Rules (each function names its kernel counterpart):

* ``online_kernel``: the first kernel zone whose span intersects the range,
  else Normal (``default_kernel_zone_for_pfn``).
* ``online_movable``: Movable.
* ``online`` with ``contig-zones``: if the range intersects exactly one of
  {kernel zone, Movable} use it, else Movable with ``movable_node``, else the
  kernel zone (``default_zone_for_pfn``).
* ``online`` with ``auto-movable``: Movable if the ratio allows the whole
  remaining memory group (static groups are all-or-nothing; any kernel page
  in the group forces the kernel zone), checked system-wide and, with
  ``auto_movable_numa_aware``, on the node (``auto_movable_zone_for_pfn``,
  ``auto_movable_can_online_movable``).
"""

from __future__ import annotations

from dataclasses import field

from cxlemu.util.lazydc import dataclass

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT
ZONE_DMA, ZONE_DMA32, ZONE_NORMAL, ZONE_MOVABLE = range(4)
ZONE_NAMES = ("DMA", "DMA32", "Normal", "Movable")
KERNEL_ZONES = (ZONE_DMA, ZONE_DMA32, ZONE_NORMAL)
DMA_END_PFN = (16 << 20) >> PAGE_SHIFT
DMA32_END_PFN = (4 << 30) >> PAGE_SHIFT

# enum mmop (include/linux/memory_hotplug.h) and their sysfs spellings
MMOP_OFFLINE, MMOP_ONLINE, MMOP_ONLINE_KERNEL, MMOP_ONLINE_MOVABLE = range(4)
ONLINE_TYPE_STR = ("offline", "online", "online_kernel", "online_movable")


def online_type_from_str(s: str) -> int:
    """mhp_online_type_from_str(): sysfs_streq against the four names, else -1."""
    if s.endswith("\n"):
        s = s[:-1]
    return ONLINE_TYPE_STR.index(s) if s in ONLINE_TYPE_STR else -1


def boot_zone_of_pfn(pfn: int) -> int:
    """Which kernel zone a boot page lands in (zone_sizes_init on x86-64)."""
    if pfn < DMA_END_PFN:
        return ZONE_DMA
    if pfn < DMA32_END_PFN:
        return ZONE_DMA32
    return ZONE_NORMAL


def split_by_boot_zone(start_pfn: int, end_pfn: int) -> list[tuple[int, int, int]]:
    """[(zone, start, end)] pieces of a boot pfn range (end exclusive)."""
    out = []
    for z, lo, hi in ((ZONE_DMA, 0, DMA_END_PFN), (ZONE_DMA32, DMA_END_PFN, DMA32_END_PFN),
                      (ZONE_NORMAL, DMA32_END_PFN, 1 << 62)):
        s, e = max(start_pfn, lo), min(end_pfn, hi)
        if s < e:
            out.append((z, s, e))
    return out


@dataclass
class Zone:
    """A ``struct zone`` of a node: span, present and managed pages."""
    idx: int
    start: int = 0            # span, pfns, end exclusive; start == end: empty
    end: int = 0
    present: int = 0          # present pages
    present_early: int = 0    # present pages from boot (early sections)

    @property
    def name(self) -> str:
        return ZONE_NAMES[self.idx]

    @property
    def empty(self) -> bool:
        return self.end <= self.start

    def intersects(self, start_pfn: int, nr: int) -> bool:
        """zone_intersects()."""
        if self.empty:
            return False
        return not (start_pfn >= self.end or start_pfn + nr <= self.start)

    def grow(self, start_pfn: int, nr: int) -> None:
        """resize_zone_range()."""
        if self.empty:
            self.start, self.end = start_pfn, start_pfn + nr
        else:
            self.start = min(self.start, start_pfn)
            self.end = max(self.end, start_pfn + nr)


@dataclass
class MemoryGroup:
    """struct memory_group (static: one per dax device / DIMM)."""
    id: int
    nid: int
    max_pages: int
    present_kernel_pages: int = 0
    present_movable_pages: int = 0
    is_dynamic: bool = False


@dataclass
class Policy:
    """The memory hotplug online policy (mm/memory_hotplug.c module parameters)."""
    online_policy: str = "contig-zones"      # memory_hotplug.online_policy
    auto_movable_ratio: int = 301            # memory_hotplug.auto_movable_ratio (%)
    auto_movable_numa_aware: bool = True
    movable_node: bool = False


@dataclass
class ZoneSet:
    """The zones of one node."""
    zones: list[Zone] = field(default_factory=lambda: [Zone(i) for i in range(4)])

    def __getitem__(self, i: int) -> Zone:
        return self.zones[i]


def default_kernel_zone_for_pfn(zs: ZoneSet, start_pfn: int, nr: int) -> int:
    for z in KERNEL_ZONES:
        if zs[z].intersects(start_pfn, nr):
            return z
    return ZONE_NORMAL


def default_zone_for_pfn(zs: ZoneSet, start_pfn: int, nr: int, movable_node: bool) -> int:
    kernel = default_kernel_zone_for_pfn(zs, start_pfn, nr)
    in_kernel = zs[kernel].intersects(start_pfn, nr)
    in_movable = zs[ZONE_MOVABLE].intersects(start_pfn, nr)
    if in_kernel ^ in_movable:
        return kernel if in_kernel else ZONE_MOVABLE
    return ZONE_MOVABLE if movable_node else kernel


def auto_movable_stats(zonesets: list[ZoneSet]) -> tuple[int, int]:
    """(kernel_early_pages, movable_pages) over populated zones (no CMA)."""
    early = movable = 0
    for zs in zonesets:
        for z in zs.zones:
            if not z.present:
                continue
            if z.idx == ZONE_MOVABLE:
                movable += z.present
            else:
                early += z.present_early
    return early, movable


def auto_movable_can_online_movable(zonesets: list[ZoneSet], ratio: int, nr_pages: int) -> bool:
    """auto_movable_can_online_movable() (no dynamic groups in cxlemu)."""
    early, movable = auto_movable_stats(zonesets)
    return movable + nr_pages <= ratio * early // 100


def auto_movable_zone_for_pfn(all_zones: list[ZoneSet], node_zones: ZoneSet, policy: Policy,
                              group: MemoryGroup | None, start_pfn: int, nr: int) -> int:
    if not policy.auto_movable_ratio:
        return default_kernel_zone_for_pfn(node_zones, start_pfn, nr)
    online = 0
    if group is not None and not group.is_dynamic:
        max_pages = group.max_pages
        online = group.present_movable_pages
        if group.present_kernel_pages:
            return default_kernel_zone_for_pfn(node_zones, start_pfn, nr)
    else:
        max_pages = nr
    want = max_pages - online
    if not auto_movable_can_online_movable(all_zones, policy.auto_movable_ratio, want):
        return default_kernel_zone_for_pfn(node_zones, start_pfn, nr)
    if policy.auto_movable_numa_aware and \
            not auto_movable_can_online_movable([node_zones], policy.auto_movable_ratio, want):
        return default_kernel_zone_for_pfn(node_zones, start_pfn, nr)
    return ZONE_MOVABLE


def zone_for_pfn_range(online_type: int, policy: Policy, all_zones: list[ZoneSet], node_zones: ZoneSet,
                       group: MemoryGroup | None, start_pfn: int, nr: int) -> int:
    """mm/memory_hotplug.c zone_for_pfn_range()."""
    if online_type == MMOP_ONLINE_KERNEL:
        return default_kernel_zone_for_pfn(node_zones, start_pfn, nr)
    if online_type == MMOP_ONLINE_MOVABLE:
        return ZONE_MOVABLE
    if policy.online_policy == "auto-movable":
        return auto_movable_zone_for_pfn(all_zones, node_zones, policy, group, start_pfn, nr)
    return default_zone_for_pfn(node_zones, start_pfn, nr, policy.movable_node)


def valid_zones(policy: Policy, all_zones: list[ZoneSet], node_zones: ZoneSet, group: MemoryGroup | None,
                start_pfn: int, nr: int) -> str:
    """drivers/base/memory.c valid_zones_show() for an offline block: the zone
    plain "online" picks, then the kernel / movable choices if different."""
    default = zone_for_pfn_range(MMOP_ONLINE, policy, all_zones, node_zones, group, start_pfn, nr)
    names = [ZONE_NAMES[default]]
    for t in (MMOP_ONLINE_KERNEL, MMOP_ONLINE_MOVABLE):
        z = zone_for_pfn_range(t, policy, all_zones, node_zones, group, start_pfn, nr)
        if z != default:
            names.append(ZONE_NAMES[z])
    return " ".join(names)
