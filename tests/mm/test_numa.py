"""NUMA nodes from SRAT and CFMWS (drivers/acpi/numa/srat.c acpi_numa_init,
acpi_parse_cfmws; mm/numa_memblks.c numa_fill_memblks) and the node sysfs
ABI (drivers/base/node.c)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from cxlemu.kernel.mm.numa import Memblk, bitmap_hex, nodelist, numa_fill_memblks, parse_numa

from .support import GiB, boot, boot_text, daxctl, ram_region, topo


def test_numa_fill_memblks_stretches_a_partial_description_over_the_window():
    blks = [Memblk(5 * GiB, 6 * GiB, 1)]
    assert numa_fill_memblks(blks, 4 * GiB, 8 * GiB)
    assert (blks[0].start, blks[0].end) == (4 * GiB, 8 * GiB)


def test_numa_fill_memblks_fills_gaps_by_moving_the_later_start():
    a, b = Memblk(4 * GiB + GiB // 2, 5 * GiB, 1), Memblk(6 * GiB, 6 * GiB + GiB // 2, 2)
    blks = [b, a]
    assert numa_fill_memblks(blks, 4 * GiB, 8 * GiB)
    assert (a.start, a.end) == (4 * GiB, 5 * GiB)
    assert (b.start, b.end) == (5 * GiB, 8 * GiB)


def test_numa_fill_memblks_no_overlap_is_no_memblk():
    blks = [Memblk(0, GiB, 0)]
    assert not numa_fill_memblks(blks, 4 * GiB, 8 * GiB)
    assert (blks[0].start, blks[0].end) == (0, GiB)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 60), st.integers(1, 8)), min_size=1, max_size=5))
def test_numa_fill_memblks_covers_the_window_without_gaps(spans):
    blks = [Memblk(s * GiB, (s + n) * GiB, i) for i, (s, n) in enumerate(spans)]
    start, end = 10 * GiB, 30 * GiB
    hit = numa_fill_memblks(blks, start, end)
    if hit:
        covered = sorted((b.start, b.end) for b in blks if b.start < end and start < b.end)
        assert covered[0][0] <= start and max(e for _, e in covered) >= end
        reach = covered[0][1]
        for s, e in covered[1:]:
            assert s <= reach
            reach = max(reach, e)


def test_acpi_parse_cfmws_one_node_per_srat_less_window_from_max_pxm_plus_one():
    lay = parse_numa([(0, 0), (0, 1), (3, 2)], [(0, 0, 2 * GiB, False), (3, 4 * GiB, 2 * GiB, False)],
                     [(64 * GiB, 4 * GiB), (68 * GiB, 4 * GiB)])
    assert lay.pxm_to_node == {0: 0, 3: 1, 4: 2, 5: 3}
    assert lay.window_nodes == {0: 2, 1: 3} and lay.fake_nodes == {2, 3}
    assert lay.phys_to_target_node(70 * GiB) == 3
    assert lay.backed_by_real_pxm(1) and not lay.backed_by_real_pxm(2)


def test_acpi_parse_cfmws_described_window_makes_no_node():
    lay = parse_numa([(0, 0)], [(0, 0, 2 * GiB, False), (0, 64 * GiB, GiB, True)], [(64 * GiB, 4 * GiB)])
    assert lay.possible == [0] and lay.window_nodes == {0: 0}
    assert lay.phys_to_target_node(67 * GiB) == 0           # stretched over the whole window


def test_acpi_parse_cfmws_too_many_proximity_domains():
    lay = parse_numa([(0, 0)], [(0, 0, GiB, False)], [(64 * GiB, GiB), (65 * GiB, GiB)], max_nodes=2)
    assert lay.possible == [0, 1]
    assert lay.log == ["ACPI NUMA: Too many proximity domains while processing CFMWS."]


def test_nodelist_and_bitmap_formats():
    assert nodelist([0, 1, 2, 5, 7, 8]) == "0-2,5,7-8" and nodelist([]) == ""
    assert bitmap_hex([0, 1], 2) == "3" and bitmap_hex([], 4) == "0"
    assert bitmap_hex(range(64), 64) == "ffffffff,ffffffff"
    assert bitmap_hex([33], 40) == "02,00000000"


def test_cxl_test_nodes_possible_online_and_states():
    b = boot("cxl-test")
    N = "/sys/devices/system/node/"
    assert b.read(N + "possible") == "0-7\n"          # 2 DRAM nodes + one per CFMWS (6)
    assert b.read(N + "online") == "0-2\n"            # node 2 came online with the auto region's hot-add
    assert b.read(N + "has_memory") == "0-1\n"        # its blocks are offline (memhp_default_state=offline)
    assert b.read(N + "has_normal_memory") == "0-1\n"
    assert b.read(N + "has_cpu") == "0-1\n"
    assert b.read(N + "has_generic_initiator") == "\n"
    assert b.read(N + "node1/cpulist") == "2-3\n" and b.read(N + "node1/cpumap") == "c\n"
    assert b.read(N + "node2/cpumap") == "0\n" and b.read(N + "node2/cpulist") == "\n"
    assert b.read(N + "node0/distance") == "10 20 20\n"
    assert b.read(N + "node2/distance") == "20 20 10\n"
    assert b.realpath(N + "node2/subsystem") == "/sys/bus/node"
    assert sorted(x for x in b.listdir(N + "node2") if x.startswith("memory") and x[6:].isdigit()) == \
        ["memory7682", "memory7683", "memory7684", "memory7685"]
    assert "memory_failure" in b.listdir(N + "node2")       # per-node memory-failure statistics (6.6+)
    assert b.realpath(N + "node2/memory7683") == "/sys/devices/system/memory/memory7683"
    assert b.readlink("/sys/devices/system/memory/memory7683/node2") == "../../node/node2"


def test_node_read_distance_skips_the_space_only_before_node_0():
    b = boot_text(topo(nodes=1))
    from cxlemu.kernel.mm.numa import default_distance
    assert default_distance(1, 1) == 10
    assert b.read("/sys/devices/system/node/node0/distance") == "10\n"


def test_region_node_is_the_window_node_and_srat_described_windows_reuse_it():
    b = boot_text(topo(window_node=1))
    dev = ram_region(b)
    assert b.read(f"/sys/bus/dax/devices/{dev}/target_node") == "1\n"
    assert b.read("/sys/devices/system/node/possible") == "0-1\n"
    b2 = boot_text(topo())
    dev2 = ram_region(b2)
    assert b2.read(f"/sys/bus/dax/devices/{dev2}/target_node") == "2\n"
    assert b2.read("/sys/devices/system/node/possible") == "0-2\n"


def test_cxl_node_device_comes_and_goes_with_hot_add_and_remove():
    b = boot_text(topo())
    assert b.read("/sys/devices/system/node/online") == "0-1\n"
    assert not b.exists("/sys/devices/system/node/node2")
    dev = ram_region(b)
    assert b.read("/sys/devices/system/node/online") == "0-2\n"
    assert b.exists("/sys/devices/system/node/node2/meminfo")
    res = daxctl(b, "reconfigure-device", "-m", "devdax", dev)
    assert res.rc == 0, res.err
    assert b.read("/sys/devices/system/node/online") == "0-1\n"
    assert not b.exists("/sys/devices/system/node/node2")


def test_node_meminfo_format_follows_onlining():
    b = boot_text(topo())
    dev = ram_region(b, 512 << 20)
    text = b.read("/sys/devices/system/node/node2/meminfo")
    assert text.startswith("Node 2 MemTotal:              0 kB\nNode 2 MemFree:               0 kB\n")
    assert daxctl(b, "online-memory", dev).rc == 0
    text = b.read("/sys/devices/system/node/node2/meminfo")
    assert text.startswith("Node 2 MemTotal:         524288 kB\nNode 2 MemFree:          524288 kB\n"
                           "Node 2 MemUsed:               0 kB\n")
    assert text.endswith("Node 2 HugePages_Total:     0\nNode 2 HugePages_Free:      0\n"
                         "Node 2 HugePages_Surp:      0\n")
    assert b.read("/sys/devices/system/node/has_memory") == "0-2\n"
    assert b.read("/sys/devices/system/node/has_normal_memory") == "0-1\n"    # movable only
