"""memory_failure() on the page model (kernel/mm/memory_failure.py): the
outcome per page kind, counters (HardwareCorrupted, per-node stats), the
trace event, offlining that skips HWPoison pages, removal that forgets them,
hard_offline_page / soft_offline_page, and a page-state provider."""

from __future__ import annotations

import errno

import pytest

from cxlemu.kernel.mm import memory_failure as MF
from cxlemu.kernel.mm.memory_failure import Mapper, PageInfo

from .support import GiB, MiB, boot_text, daxctl, ram_region, topo

M = "/sys/devices/system/memory/"


def online_cxl(size=512 * MiB):
    b = boot_text(topo())
    dev = ram_region(b, size)
    assert daxctl(b, "online-memory", dev).rc == 0          # ZONE_MOVABLE
    d = b.kernel.dax.find(dev)
    return b, d.ranges[0].start, d.ranges[0].end


def hwc(b) -> int:
    line = next(x for x in b.read("/proc/meminfo").splitlines() if x.startswith("HardwareCorrupted:"))
    return int(line.split()[1])


def free_kb(b) -> int:
    return int(next(x for x in b.read("/proc/meminfo").splitlines() if x.startswith("MemFree:")).split()[1])


def test_free_page_is_taken_off_the_free_lists():
    b, start, _ = online_cxl()
    mf = b.kernel.mm.failure
    before = free_kb(b)
    out = mf.memory_failure((start >> 12) + 5)
    assert (out.ret, out.type_name, MF.RESULT_NAMES[out.result]) == (0, "free buddy page", "Recovered")
    assert hwc(b) == 4 and free_kb(b) == before - 4
    assert any("recovery action for free buddy page: Recovered" in m for m in b.kernel.dmesg)
    nid = b.kernel.mm.blocks[(start >> 12) // b.kernel.mm.pages_per_block].nid
    assert b.read(f"/sys/devices/system/node/node{nid}/memory_failure/total") == "1\n"
    assert b.read(f"/sys/devices/system/node/node{nid}/memory_failure/recovered") == "1\n"
    again = mf.memory_failure((start >> 12) + 5, MF.MF_ACTION_REQUIRED, Mapper(42, "app"))
    assert again.ret == -MF.EHWPOISON and [k.si_code for k in again.kills] == [MF.BUS_MCEERR_AR]
    assert hwc(b) == 4


def test_user_page_kills_its_owner_and_is_isolated():
    b, start, _ = online_cxl()
    mm = b.kernel.mm
    nid = mm.blocks[(start >> 12) // mm.pages_per_block].nid
    a = mm.pages.alloc("user", 1000, nid, "kvstore")
    bid, n = next(iter(a.pieces.items()))
    blk = mm.blocks[bid]
    pfn = blk.start_pfn + blk.reserved + blk.kernel + 3
    out = mm.failure.memory_failure(pfn, MF.MF_ACTION_REQUIRED)
    assert out.type_name == "dirty LRU page" and out.ret == 0
    assert [(k.comm, k.si_code) for k in out.kills] == [("kvstore", MF.BUS_MCEERR_AO)]
    assert a.id not in mm.pages.allocs and blk.user == 0 and blk.hwpoison == 1
    assert "Sending SIGBUS to kvstore" in "\n".join(b.kernel.dmesg)


def test_kernel_pages_are_ignored_and_ebusy():
    b, start, _ = online_cxl()
    mm = b.kernel.mm
    boot_blk = next(x for x in mm.blocks.values() if x.early and x.reserved)
    out = mm.failure.memory_failure(boot_blk.start_pfn)
    assert out.type_name == "reserved kernel page" and out.ret == -errno.EBUSY
    k = mm.pages.alloc("kernel", 10, 0, "slab")
    blk = mm.blocks[next(iter(k.pieces))]
    out = mm.failure.memory_failure(blk.start_pfn + blk.reserved)
    assert out.type_name == "kernel slab page" and out.ret == -errno.EBUSY
    assert hwc(b) == 8                    # counted either way


def test_outside_kernel_control():
    b, start, end = online_cxl()
    out = b.kernel.mm.failure.memory_failure((end + 1 + 64 * GiB) >> 12)
    assert out.ret == -errno.ENXIO and hwc(b) == 0


def test_offline_skips_hwpoison_and_remove_forgets_it():
    b, start, end = online_cxl()
    mm = b.kernel.mm
    mm.failure.memory_failure((start >> 12) + 1)
    blk = mm.blocks[(start >> 12) // mm.pages_per_block]
    b.write(M + f"{blk.name}/state", "offline")                # not blocked by the HWPoison page
    assert blk.state == "offline"
    assert hwc(b) == 4
    mm.hotplug.device_online(blk, 0)
    # removal of the whole range forgets the marks
    dev = next(d for d in b.kernel.dax.devices() if d.ranges and d.ranges[0].start == start)
    assert daxctl(b, "offline-memory", dev.name).rc == 0
    assert daxctl(b, "reconfigure-device", "-m", "devdax", "-f", dev.name).rc == 0
    assert hwc(b) == 0 and not mm.failure.is_poisoned((start >> 12) + 1)


def test_hard_and_soft_offline_page_sysfs():
    b, start, _ = online_cxl()
    b.write(M + "hard_offline_page", hex(start + 0x3000))
    assert b.kernel.mm.failure.is_poisoned((start >> 12) + 3)
    with pytest.raises(OSError) as e:
        b.write(M + "soft_offline_page", hex(64 * GiB * 8))
    assert e.value.errno == errno.EIO
    b.write(M + "soft_offline_page", hex(start + 0x8000))
    assert b.kernel.mm.failure.is_poisoned((start >> 12) + 8) and hwc(b) == 8
    assert "ras:memory_failure_event" in b.read("/sys/kernel/tracing/available_events")


class Provider:
    """A stand-in for the workload engine: page 7 of the range is a clean file
    page, page 9 anonymous memory of two processes."""

    def __init__(self, base):
        self.base, self.isolated = base, []

    def hwpoison_page_info(self, pfn):
        if pfn == self.base + 7:
            return PageInfo("file", dirty=False, mappers=(Mapper(10, "reader", 0x7000),))
        if pfn == self.base + 9:
            return PageInfo("anon", mappers=(Mapper(11, "db", 0x9000), Mapper(12, "db-child", 0x9000)))
        return None

    def hwpoison_isolate(self, pfn, info, kills):
        self.isolated.append((pfn, info.kind, [k.pid for k in kills]))


def test_provider_clean_page_cache_is_dropped_without_kills():
    b, start, _ = online_cxl()
    mf = b.kernel.mm.failure
    p = Provider(start >> 12)
    mf.provider = p
    out = mf.memory_failure(p.base + 7, MF.MF_ACTION_REQUIRED, Mapper(10, "reader"))
    assert out.type_name == "clean LRU page" and out.kills == ()
    out = mf.memory_failure(p.base + 9, MF.MF_ACTION_REQUIRED, Mapper(11, "db"))
    assert [(k.pid, k.si_code) for k in out.kills] == [(11, MF.BUS_MCEERR_AR), (12, MF.BUS_MCEERR_AO)]
    assert "SIGBUS (BUS_MCEERR_AR) at 0x9000" in out.kills[0].reason
    assert p.isolated == [(p.base + 7, "file", []), (p.base + 9, "anon", [11, 12])]
    # a pfn the provider does not know falls back to the allocation model
    assert mf.memory_failure(p.base + 100).type_name == "free buddy page"
