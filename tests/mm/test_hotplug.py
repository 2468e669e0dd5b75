"""Memory blocks and hotplug (drivers/base/memory.c state_store /
memory_block_online / memory_block_offline, mm/memory_hotplug.c
offline_pages / remove_memory / add_memory_driver_managed,
drivers/dax/kmem.c, kernel/resource.c), /proc/iomem and /proc/meminfo."""

from __future__ import annotations

import errno

import pytest

from .support import MiB, block_state, blocks_of, boot, boot_text, daxctl, ram_region, topo

M = "/sys/devices/system/memory/"


def write(b, path, value):
    b.write(path, value + "\0")


def err_of(b, path, value) -> int:
    with pytest.raises(OSError) as e:
        write(b, path, value)
    return e.value.errno


@pytest.fixture
def machine():
    b = boot_text(topo())
    dev = ram_region(b, 512 * MiB)
    return b, dev, [x.name for x in blocks_of(b, dev)]


def test_memory_root_attributes():
    b = boot_text(topo())
    assert b.read(M + "block_size_bytes") == "8000000\n"
    assert b.read(M + "auto_online_blocks") == "offline\n"
    write(b, M + "auto_online_blocks", "online_movable")
    assert b.read(M + "auto_online_blocks") == "online_movable\n"
    assert err_of(b, M + "auto_online_blocks", "movable") == errno.EINVAL
    assert sorted(b.listdir(M))[:4] == ["auto_online_blocks", "block_size_bytes", "hard_offline_page", "memory0"]
    assert "soft_offline_page" in b.listdir(M)


def test_memory_block_attributes_formats(machine):
    b, dev, blks = machine
    p = M + blks[0] + "/"
    assert b.read(p + "phys_index") == f"{int(blks[0][6:]):08x}\n"
    assert b.read(p + "state") == "offline\n" and b.read(p + "online") == "0\n"
    assert b.read(p + "phys_device") == "0\n" and b.read(p + "removable") == "1\n"
    assert b.read(p + "valid_zones") == "Normal Movable\n"
    assert sorted(b.listdir(p)) == ["node2", "online", "phys_device", "phys_index", "removable", "state",
                                    "subsystem", "uevent", "valid_zones"]
    assert b.realpath(p + "subsystem") == "/sys/bus/memory"
    assert b.realpath("/sys/bus/memory/devices/" + blks[0]) == M + blks[0]


def test_state_store_online_types_and_einval_when_already_in_state(machine):
    b, dev, blks = machine
    p0, p1, p2 = (M + x + "/state" for x in blks[:3])
    write(b, p0, "online_movable")
    assert b.read(M + blks[0] + "/valid_zones") == "Movable\n" and b.read(p0) == "online\n"
    assert err_of(b, p0, "online") == errno.EINVAL            # already online: device_online() == 1
    assert err_of(b, p0, "online_kernel") == errno.EINVAL
    write(b, p1, "online_kernel")
    assert b.read(M + blks[1] + "/valid_zones") == "Normal\n"
    assert err_of(b, p2, "offline") == errno.EINVAL           # already offline
    assert err_of(b, p2, "bogus") == errno.EINVAL
    write(b, p0, "offline")
    assert b.read(p0) == "offline\n"


def test_online_attribute_is_the_device_core_one(machine):
    b, dev, blks = machine
    p = M + blks[0] + "/online"
    write(b, p, "1")
    assert b.read(p) == "1\n"
    write(b, p, "1")                                         # already online: not an error here
    assert b.read(M + blks[0] + "/valid_zones") == "Normal\n"  # plain "online": contig-zones -> Normal
    write(b, p, "0")
    assert b.read(p) == "0\n"
    assert err_of(b, p, "x") == errno.EINVAL


def test_boot_block_spanning_zones_reads_none_and_cannot_be_offlined():
    b = boot_text(topo())
    assert b.read(M + "memory0/valid_zones") == "none\n"
    assert b.read(M + "memory1/valid_zones") == "DMA32\n"
    assert err_of(b, M + "memory0/state", "offline") == errno.EINVAL
    assert b.read(M + "memory0/state") == "online\n"


def test_offline_pages_fails_ebusy_on_unmovable_pages_and_changes_nothing(machine):
    b, dev, blks = machine
    assert daxctl(b, "online-memory", "--no-movable", dev).rc == 0
    mm = b.kernel.mm
    a = mm.pages.alloc("kernel", (64 * MiB) >> 12, 2)
    assert {mm.blocks[i].nid for i in a.pieces} == {2}
    victim = mm.blocks[min(a.pieces)]
    before = block_state(b)
    assert err_of(b, M + victim.name + "/state", "offline") == errno.EBUSY
    assert block_state(b) == before
    assert f"memory offlining [mem {victim.start:#010x}-{victim.end:#010x}] failed due to failure to isolate range" \
        in b.kernel.dmesg


def test_kernel_allocations_never_land_in_zone_movable(machine):
    b, dev, blks = machine
    assert daxctl(b, "online-memory", dev).rc == 0            # Movable
    mm = b.kernel.mm
    a = mm.pages.alloc("kernel", (64 * MiB) >> 12, 2)
    assert {mm.blocks[i].nid for i in a.pieces} == {0}        # node 2 is all Movable: falls back
    u = mm.pages.alloc("user", (64 * MiB) >> 12, 2)
    assert {mm.blocks[i].nid for i in u.pieces} == {2}


def test_offline_migrates_movable_pages_to_other_nodes(machine):
    b, dev, blks = machine
    assert daxctl(b, "online-memory", dev).rc == 0
    mm = b.kernel.mm
    u = mm.pages.alloc("user", (300 * MiB) >> 12, 2)
    assert sum(u.pieces.values()) == (300 * MiB) >> 12
    res = daxctl(b, "offline-memory", dev)
    assert res.rc == 0, res.err
    assert {mm.blocks[i].nid for i in u.pieces} == {0}
    assert sum(u.pieces.values()) == (300 * MiB) >> 12
    assert all(mm.blocks[x].user == 0 for x in (int(n[6:]) for n in blks))


def test_offline_without_room_to_migrate_is_interrupted_and_changes_nothing():
    b = boot_text(topo(nodes=1, dram="1G"))
    dev = ram_region(b, 512 * MiB)
    assert daxctl(b, "online-memory", dev).rc == 0
    mm = b.kernel.mm
    free0 = mm.node_stats(0)["free"]
    mm.pages.alloc("user", free0, 0)                           # fill node 0
    u = mm.pages.alloc("user", (128 * MiB) >> 12, 1)
    victim = mm.blocks[min(u.pieces)]
    before = block_state(b)
    assert err_of(b, M + victim.name + "/state", "offline") == errno.EINTR
    assert block_state(b) == before
    assert any(line.endswith("failed due to signal backoff") for line in b.kernel.dmesg)


def test_iomem_follows_every_transition():
    b = boot("seed-003-window")
    io = b.read("/proc/iomem")
    assert ("c050000000-fcefffffff : CXL Window 0\n"
            "  c050000000-fcefffffff : region0\n"
            "    c050000000-fcefffffff : Soft Reserved\n"
            "      c080000000-fc7fffffff : dax0.0\n"
            "        c080000000-fc7fffffff : System RAM (kmem)\n") in io
    assert daxctl(b, "reconfigure-device", "-m", "devdax", "dax0.0").rc == 0
    assert ("    c050000000-fcefffffff : Soft Reserved\n"
            "      c050000000-fcefffffff : dax0.0\n") in b.read("/proc/iomem")
    assert "System RAM (kmem)" not in b.read("/proc/iomem")
    assert daxctl(b, "reconfigure-device", "-m", "system-ram", "dax0.0").rc == 0
    assert "        c080000000-fc7fffffff : System RAM (kmem)\n" in b.read("/proc/iomem")


def test_iomem_user_region_then_teardown():
    b = boot_text(topo())
    base = b.read("/proc/iomem")
    dev = ram_region(b, 256 * MiB)
    start = b.kernel.dax.find(dev).ranges[0].start
    end = start + 256 * MiB - 1
    io = b.read("/proc/iomem")
    assert (f"  {start:x}-{end:x} : region0\n    {start:x}-{end:x} : {dev}\n"
            f"      {start:x}-{end:x} : System RAM (kmem)\n") in io
    b.write(f"/sys/bus/cxl/devices/region0/driver/unbind", "region0\0")
    assert b.read("/proc/iomem").count(dev) == 0 and "region0" in b.read("/proc/iomem")
    b.write("/sys/bus/cxl/devices/region0/commit", "0\n")
    b.write("/sys/bus/cxl/devices/region0/target0", "\n")
    b.write("/sys/bus/cxl/devices/decoder0.0/delete_region", "region0\0")
    assert b.read("/proc/iomem") == base


def test_kmem_remove_with_online_memory_cannot_be_hotremoved_until_next_reboot():
    b = boot_text(topo())
    dev = ram_region(b, 256 * MiB)
    assert daxctl(b, "online-memory", dev).rc == 0
    d = b.kernel.dax.find(dev)
    b.write(f"/sys/bus/dax/drivers/kmem/unbind", dev + "\0")
    assert d.driver is None
    start, end = d.ranges[0].start, d.ranges[0].end
    assert f"{dev}: mapping0: {start:#x}-{end:#x} cannot be hotremoved until the next reboot" in b.kernel.dmesg
    io = b.read("/proc/iomem")
    assert f"{start:x}-{end:x} : System RAM (kmem)" in io
    assert b.read("/sys/devices/system/node/has_memory") == "0-2\n"
    # device_dax cannot claim the range now
    b.write("/sys/bus/dax/drivers/device_dax/new_id", dev + "\0")
    assert d.driver is None


def test_proc_meminfo_format_and_totals_follow_onlining(machine):
    b, dev, blks = machine
    text = b.read("/proc/meminfo")
    lines = text.splitlines()
    assert lines[0].startswith("MemTotal:") and len(lines[0]) == len("MemTotal:       24684092 kB")
    assert "HardwareCorrupted:     0 kB" in lines and "Hugepagesize:       2048 kB" in lines
    total0 = int(lines[0].split()[1])
    assert daxctl(b, "online-memory", dev).rc == 0
    total1 = int(b.read("/proc/meminfo").split()[1])
    assert total1 - total0 == 512 * 1024
    assert "Node 0, zone   Normal" in b.read("/proc/zoneinfo")


def test_memmap_of_hot_added_memory_is_kernel_memory_on_the_nearest_node(machine):
    b, dev, blks = machine
    mm = b.kernel.mm
    mm_alloc = [a for a in mm.pages.allocs.values() if a.kind == "memmap" and "memmap 0x" in a.label]
    assert len(mm_alloc) == 1 and mm_alloc[0].pages == (512 * MiB) // 64 // 4096
    assert {mm.blocks[i].nid for i in mm_alloc[0].pieces} == {0}
