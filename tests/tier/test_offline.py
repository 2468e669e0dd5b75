"""Memory hotplug meets processes: pinned pages block offlining (EBUSY,
nothing changes), unpinned ones migrate to the other node, or the offline
fails when they do not fit; FOLL_LONGTERM pins leave ZONE_MOVABLE first."""

from __future__ import annotations

import errno
import sys
from pathlib import Path

import numpy as np
import pytest

from cxlemu.kernel.mm import mempolicy as mp
from cxlemu.kernel.mm.frames import PG_PINNED
from cxlemu.kernel.mm.zones import ZONE_MOVABLE, ZONE_NORMAL
from cxlemu.kernel.syscalls import Process

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from cxltest_support import boot_text  # noqa: E402
from mm.support import block_state, blocks_of, daxctl, ram_region, topo  # noqa: E402

M = "/sys/devices/system/memory/"


def machine(online: str = "online_kernel", dram: str = "2G", dev: str = "1G"):
    """node 0 DRAM, CXL memory onlined as node 1 (ZONE_NORMAL by default: pins stay there)."""
    b = boot_text(topo(nodes=1, dram=dram, dev_size=dev, devices=1, window="4G"))
    d = ram_region(b, int(dev[:-1]) << 30)
    r = daxctl(b, "reconfigure-device", "--mode=system-ram", "--no-online", dev_arg := d)
    assert r.rc == 0, r.err
    for blk in blocks_of(b, dev_arg):
        b.write(M + blk.name + "/state", online)
    return b, d


def fill_node1(b, size: int, pin: bool):
    k = b.kernel
    p = Process.new(k, "rdma")
    p.set_mempolicy(mp.MPOL_BIND, (1,))
    addr = p.mmap(size, "mr")
    if pin:
        assert p.pin(addr, size) == size // 4096
    else:
        v = p.task.mm.vmas[0]
        p.task.access(np.arange(v.start, v.end), None)
    return p, addr


def node1_blocks(b, dev):
    return [blk for blk in blocks_of(b, dev)]


def test_pinned_pages_block_offline_and_nothing_changes():
    b, dev = machine()
    k = b.kernel
    p, addr = fill_node1(b, 64 << 20, pin=True)
    vm = k.mm.vm
    frames = p.task.mm.pt[p.task.mm.vmas[0].start:p.task.mm.vmas[0].end].astype(np.int64)
    assert set(vm.frames.node[frames].tolist()) == {1}
    assert set(vm.frames.zone[frames].tolist()) == {ZONE_NORMAL}       # pins may stay in ZONE_NORMAL
    assert np.all(vm.frames.flags[frames] & PG_PINNED)
    held = sorted({int(vm.frames.pfn(f) // k.mm.pages_per_block) for f in frames[:1]})
    blk = k.mm.blocks[held[0]]
    before = block_state(b)
    pt_before = p.task.mm.pt.copy()
    with pytest.raises(OSError) as e:
        b.write(M + blk.name + "/state", "offline")
    assert e.value.errno == errno.EBUSY
    assert "failed due to failure to isolate range" in k.dmesg[-2] or \
        any("failure to isolate range" in line for line in k.dmesg[-3:])
    assert block_state(b) == before                                     # nothing changed
    assert np.array_equal(p.task.mm.pt, pt_before)
    # unpin: the offline migrates the pages to DRAM
    assert p.unpin(addr, 64 << 20) == 16384
    b.write(M + blk.name + "/state", "offline")
    assert b.read(M + blk.name + "/state") == "offline\n"
    frames = p.task.mm.pt[p.task.mm.vmas[0].start:p.task.mm.vmas[0].end].astype(np.int64)
    assert 0 in set(vm.frames.node[frames].tolist())
    assert vm.vmstat.events["pgmigrate_success"] > 0
    p.exit()


def test_offline_fails_when_the_pages_do_not_fit_elsewhere():
    b, dev = machine(dram="1G", dev="1G")
    k = b.kernel
    p, addr = fill_node1(b, 900 << 20, pin=False)
    blocks = [x for x in blocks_of(b, dev) if x.user]
    # make DRAM unable to take them: a big unmovable kernel allocation
    k.mm.pages.alloc("kernel", k.mm.node_stats(0)["free"] - 1000, 0)
    before = block_state(b)
    with pytest.raises(OSError) as e:
        b.write(M + blocks[0].name + "/state", "offline")
    assert e.value.errno == errno.EINTR                                  # "signal backoff", as the kernel retries
    assert block_state(b) == before
    p.exit()


def test_longterm_pin_migrates_out_of_zone_movable_first():
    """mm/gup.c check_and_migrate_movable_folios(): the seed's point that
    pinned user pages do not stay in ZONE_MOVABLE."""
    b, dev = machine(online="online_movable")
    k = b.kernel
    vm = k.mm.vm
    p = Process.new(k, "rdma")
    p.set_mempolicy(mp.MPOL_BIND, (1,))
    addr = p.mmap(16 << 20, "mr")
    v = p.task.mm.vmas[0]
    p.task.access(np.arange(v.start, v.end), None)
    fr = p.task.mm.pt[v.start:v.end].astype(np.int64)
    assert set(vm.frames.zone[fr].tolist()) == {ZONE_MOVABLE}
    p.pin(addr, 16 << 20)
    fr = p.task.mm.pt[v.start:v.end].astype(np.int64)
    assert ZONE_MOVABLE not in set(vm.frames.zone[fr].tolist())
    assert set(vm.frames.node[fr].tolist()) == {0}
    # and the CXL memory can go: every block offlines
    for blk in blocks_of(b, dev):
        if blk.online:
            b.write(M + blk.name + "/state", "offline")
    assert k.mm.node_stats(1)["managed"] == 0
    p.exit()
