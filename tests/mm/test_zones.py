"""Zone choice when onlining (mm/memory_hotplug.c zone_for_pfn_range,
default_zone_for_pfn, auto_movable_zone_for_pfn) and valid_zones
(drivers/base/memory.c valid_zones_show)."""

from __future__ import annotations

from cxlemu.kernel.mm.zones import (MMOP_ONLINE, MMOP_ONLINE_KERNEL, MMOP_ONLINE_MOVABLE, ZONE_MOVABLE,
                                    ZONE_NORMAL, MemoryGroup, Policy, ZoneSet, online_type_from_str,
                                    valid_zones, zone_for_pfn_range)

from .support import GiB, MiB, boot_text, daxctl, ram_region, topo

P = 1 << 18          # pages of 1 GiB
NR = 1 << 15         # pages of a 128 MiB block


def early(zs: ZoneSet, pages: int) -> ZoneSet:
    z = zs[ZONE_NORMAL]
    z.start, z.end, z.present, z.present_early = 4 * P, 4 * P + pages, pages, pages
    return zs


def test_online_type_from_str_is_sysfs_streq():
    assert online_type_from_str("online_movable\n") == MMOP_ONLINE_MOVABLE
    assert online_type_from_str("online") == MMOP_ONLINE
    assert online_type_from_str("Online") == -1 and online_type_from_str("online \n") == -1


def test_default_zone_for_pfn_contig_zones_empty_node_goes_normal():
    zs = ZoneSet()
    assert zone_for_pfn_range(MMOP_ONLINE, Policy(), [zs], zs, None, 1000 * P, NR) == ZONE_NORMAL


def test_default_zone_for_pfn_movable_node_goes_movable():
    zs = ZoneSet()
    assert zone_for_pfn_range(MMOP_ONLINE, Policy(movable_node=True), [zs], zs, None, 1000 * P, NR) == ZONE_MOVABLE


def test_default_zone_for_pfn_inherits_the_zone_whose_span_intersects():
    zs = ZoneSet()
    zs[ZONE_MOVABLE].grow(1000 * P, NR)
    zs[ZONE_MOVABLE].grow(1000 * P + 4 * NR, NR)
    # a block between two Movable blocks lies inside Movable's span
    assert zone_for_pfn_range(MMOP_ONLINE, Policy(), [zs], zs, None, 1000 * P + 2 * NR, NR) == ZONE_MOVABLE
    # beyond the span: no zone intersects -> the kernel zone
    assert zone_for_pfn_range(MMOP_ONLINE, Policy(), [zs], zs, None, 1000 * P + 8 * NR, NR) == ZONE_NORMAL
    assert zone_for_pfn_range(MMOP_ONLINE_KERNEL, Policy(), [zs], zs, None, 1000 * P + 2 * NR, NR) == ZONE_NORMAL
    assert zone_for_pfn_range(MMOP_ONLINE_MOVABLE, Policy(), [zs], zs, None, 0, NR) == ZONE_MOVABLE


def test_auto_movable_ratio_checked_system_wide_and_per_node():
    dram, cxl = early(ZoneSet(), 4 * P), ZoneSet()
    pol = Policy("auto-movable", 301, True)
    g = MemoryGroup(0, 2, max_pages=P)
    # numa aware: the CXL node has no early kernel memory -> Normal
    assert zone_for_pfn_range(MMOP_ONLINE, pol, [dram, cxl], cxl, g, 1000 * P, NR) == ZONE_NORMAL
    pol2 = Policy("auto-movable", 301, False)
    assert zone_for_pfn_range(MMOP_ONLINE, pol2, [dram, cxl], cxl, g, 1000 * P, NR) == ZONE_MOVABLE
    # the whole static group must fit: 4 GiB early x 301% = 12.04 GiB
    big = MemoryGroup(1, 2, max_pages=13 * P)
    assert zone_for_pfn_range(MMOP_ONLINE, pol2, [dram, cxl], cxl, big, 1000 * P, NR) == ZONE_NORMAL
    fits = MemoryGroup(2, 2, max_pages=12 * P)
    assert zone_for_pfn_range(MMOP_ONLINE, pol2, [dram, cxl], cxl, fits, 1000 * P, NR) == ZONE_MOVABLE


def test_auto_movable_static_group_with_kernel_pages_stays_kernel():
    dram, cxl = early(ZoneSet(), 4 * P), ZoneSet()
    g = MemoryGroup(0, 2, max_pages=P, present_kernel_pages=NR)
    assert zone_for_pfn_range(MMOP_ONLINE, Policy("auto-movable", 301, False), [dram, cxl], cxl, g,
                              1000 * P, NR) == ZONE_NORMAL


def test_auto_movable_ratio_zero_is_always_kernel():
    dram, cxl = early(ZoneSet(), 4 * P), ZoneSet()
    assert zone_for_pfn_range(MMOP_ONLINE, Policy("auto-movable", 0, False), [dram, cxl], cxl, None,
                              1000 * P, NR) == ZONE_NORMAL


def test_valid_zones_show_offline_lists_default_then_the_other():
    zs = ZoneSet()
    assert valid_zones(Policy(), [zs], zs, None, 1000 * P, NR) == "Normal Movable"
    assert valid_zones(Policy(movable_node=True), [zs], zs, None, 1000 * P, NR) == "Movable Normal"


def _zones_of(b, dev):
    from .support import blocks_of
    return sorted({b.read(f"/sys/devices/system/memory/{x.name}/valid_zones").strip() for x in blocks_of(b, dev)})


def test_memhp_default_state_online_auto_onlines_into_normal_with_contig_zones():
    b = boot_text(topo(memhp="online"))
    dev = ram_region(b, 512 * MiB)
    assert b.read("/sys/devices/system/memory/auto_online_blocks") == "online\n"
    assert _zones_of(b, dev) == ["Normal"]
    assert "BOOT_IMAGE" in b.read("/proc/cmdline") and "memhp_default_state=online" in b.read("/proc/cmdline")


def test_memhp_default_state_online_movable_auto_onlines_into_movable():
    b = boot_text(topo(memhp="online_movable"))
    dev = ram_region(b, 512 * MiB)
    assert _zones_of(b, dev) == ["Movable"]


def test_auto_movable_policy_numa_aware_keeps_a_cpuless_node_normal():
    b = boot_text(topo(memhp="online", policy="auto-movable"))
    assert _zones_of(b, ram_region(b, 512 * MiB)) == ["Normal"]
    b = boot_text(topo(memhp="online", policy="auto-movable", numa_aware=False))
    assert _zones_of(b, ram_region(b, 512 * MiB)) == ["Movable"]


def test_auto_movable_ratio_limits_movable_system_wide():
    # 1 node of 1 GiB DRAM: 301% allows ~3 GiB movable, a 4 GiB device does not fit
    b = boot_text(topo(memhp="online", policy="auto-movable", numa_aware=False, nodes=1, dram="1G",
                       dev_size="4G", devices=1, window="8G"))
    assert _zones_of(b, ram_region(b, 4 * GiB)) == ["Normal"]


def test_valid_zones_of_offline_cxl_block_and_daxctl_zone_choice():
    b = boot_text(topo())
    dev = ram_region(b, 512 * MiB)
    assert _zones_of(b, dev) == ["Normal Movable"]
    assert daxctl(b, "online-memory", "--no-movable", dev).rc == 0
    assert _zones_of(b, dev) == ["Normal"]
