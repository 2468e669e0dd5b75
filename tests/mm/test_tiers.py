"""Memory tiers (mm/memory-tiers.c mt_perf_to_adistance,
mt_set_default_dram_perf, establish_demotion_targets; drivers/dax/kmem.c
MEMTIER_DEFAULT_DAX_ADISTANCE)."""

from __future__ import annotations

import errno

import pytest

from cxlemu.kernel.mm.numa import default_distance
from cxlemu.kernel.mm.tiers import (MEMTIER_ADISTANCE_DRAM, MEMTIER_DEFAULT_DAX_ADISTANCE, AdistError, Perf,
                                    establish_demotion_targets, perf_mismatch, perf_to_adistance, tier_id)

from .support import boot, boot_text, daxctl, ram_region, topo

DRAM = Perf(80, 80, 20000, 20000)


def test_memtier_constants():
    assert MEMTIER_ADISTANCE_DRAM == 576 and MEMTIER_DEFAULT_DAX_ADISTANCE == 2880
    assert tier_id(576) == 4 and tier_id(2880) == 22 and tier_id(639) == 4 and tier_id(640) == 5


def test_mt_perf_to_adistance_vectors():
    assert perf_to_adistance(DRAM, DRAM) == 576
    assert perf_to_adistance(Perf(160, 160, 20000, 20000), DRAM) == 1152
    assert perf_to_adistance(Perf(534, 534, 2000, 2000), DRAM) == 38440
    # left-to-right integer arithmetic: 576*301/160 = 1083 (truncated) before * 40000 / 39999
    assert perf_to_adistance(Perf(150, 151, 20000, 19999), DRAM) == 1083 * 40000 // 39999


def test_mt_perf_to_adistance_errors():
    with pytest.raises(AdistError) as e:
        perf_to_adistance(Perf(0, 0, 1, 1), DRAM)
    assert e.value.errno == errno.EINVAL
    with pytest.raises(AdistError) as e:
        perf_to_adistance(DRAM, None)
    assert e.value.errno == errno.ENOENT
    with pytest.raises(AdistError) as e:
        perf_to_adistance(DRAM, DRAM, dram_error=True)
    assert e.value.errno == errno.EIO


def test_mt_set_default_dram_perf_ten_percent_rule():
    assert not perf_mismatch(Perf(88, 80, 20000, 20000), DRAM)
    assert perf_mismatch(Perf(89, 80, 20000, 20000), DRAM)
    assert perf_mismatch(Perf(80, 80, 17999, 20000), DRAM)


def test_establish_demotion_targets_next_tier_nearest_and_lower_fallback():
    def dist(a, b):
        table = {(0, 2): 20, (0, 3): 30, (1, 2): 30, (1, 3): 20}
        return 10 if a == b else table.get((a, b), table.get((b, a), 40))
    d = establish_demotion_targets({512: [0, 1], 2816: [2, 3], 3200: [4]}, [0, 1, 2, 3, 4], {0, 1}, dist)
    assert d.preferred == {0: [2], 1: [3], 2: [4], 3: [4], 4: []}
    assert d.fallback[0] == [2, 3, 4] and d.fallback[2] == [4] and d.fallback[4] == []
    assert d.top_tier_adistance == 512 + 127
    ties = establish_demotion_targets({512: [0], 2816: [1, 2]}, [0, 1, 2], {0}, default_distance)
    assert ties.preferred[0] == [1, 2]


def test_boot_dram_nodes_in_tier_4_and_cxl_node_tier_from_cdat():
    b = boot("cxl-test")
    T = "/sys/devices/virtual/memory_tiering/"
    assert sorted(x for x in b.listdir(T) if x.startswith("memory_tier")) == ["memory_tier4"]
    assert b.read(T + "memory_tier4/nodelist") == "0-1\n"
    assert daxctl(b, "online-memory", "dax0.0").rc == 0
    # region: 500 ns CDAT + two 17 ns links, 2 x 1000 MB/s -> 576*1068/160*40000/4000 = 38440
    assert b.read(T + "memory_tier300/nodelist") == "2\n"
    assert b.realpath(T + "memory_tier300/subsystem") == "/sys/bus/memory_tiering"
    assert "Demotion targets for Node 0: preferred: 2, fallback: 2" in b.kernel.dmesg
    assert "Demotion targets for Node 2: null" in b.kernel.dmesg
    assert daxctl(b, "offline-memory", "dax0.0").rc == 0
    assert not b.exists(T + "memory_tier300")


def test_kmem_default_adistance_2880_when_dram_performance_mismatches():
    b = boot_text(topo(node_perf=[(80, 20000), (120, 20000)]))
    assert any("mismatches that of the reference DRAM node 0" in x for x in b.kernel.dmesg)
    dev = ram_region(b)
    assert daxctl(b, "online-memory", dev).rc == 0
    T = "/sys/devices/virtual/memory_tiering/"
    assert b.read(T + "memory_tier22/nodelist") == "2\n"
    assert b.read(T + "memory_tier4/nodelist") == "0-1\n"


def test_kmem_default_adistance_before_the_notifier_chain():
    b = boot_text(topo(kernel="6.5"))
    dev = ram_region(b)
    assert daxctl(b, "online-memory", dev).rc == 0
    assert b.read("/sys/devices/virtual/memory_tiering/memory_tier22/nodelist") == "2\n"


def test_demotion_enabled_is_rw_and_defaults_false():
    b = boot_text(topo())
    p = "/sys/kernel/mm/numa/demotion_enabled"
    assert b.read(p) == "false\n"
    b.write(p, "1\n")
    assert b.read(p) == "true\n"
    b.write(p, "n\n")
    assert b.read(p) == "false\n"
    with pytest.raises(OSError):
        b.write(p, "maybe\n")
