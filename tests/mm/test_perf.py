"""The performance model's first piece (drivers/cxl/core/cdat.c,
drivers/cxl/core/pci.c cxl_pci_get_latency, drivers/cxl/core/region.c
cxl_region_perf_data_calculate / cxl_region_shared_upstream_bandwidth_update
/ cxl_region_perf_attrs_callback, drivers/acpi/numa/hmat.c)."""

from __future__ import annotations

from cxlemu.kernel.perf import device_cdat_coord, link_bandwidth, link_latency_ps, pcie_lane_mbps

from .support import MiB, boot, boot_text, create_region, daxctl, ram_region, topo

CDAT = "{ read_latency = 200, write_latency = 300, read_bandwidth = 40000, write_bandwidth = 30000 }"


def test_link_figures_pcie5_x16():
    assert pcie_lane_mbps(32) == 31507                # PCIE_SPEED2MBS_ENC: 32000 * 128 / 130
    assert link_bandwidth(32, 16) == 63014
    assert link_latency_ps(32) == 17000               # 68-byte flit at 4000 MB/s
    assert link_latency_ps(64) == 32000               # 256-byte flit at 8000 MB/s


def test_device_cdat_round_trip_through_dslbis():
    b = boot_text(topo(cdat=CDAT))
    hw = b.kernel.cxl.memdevs[0].hw
    c = device_cdat_coord(hw)
    assert (c.read_latency, c.write_latency, c.read_bandwidth, c.write_bandwidth) == (200000, 300000, 40000, 30000)


def test_region_coordinates_one_device_below_a_root_port():
    b = boot_text(topo(cdat=CDAT))
    ram_region(b)
    R = "/sys/bus/cxl/devices/region0/"
    for acc in ("access0", "access1"):
        assert b.read(R + f"{acc}/read_latency") == "217\n"       # 200 ns + one 17 ns link
        assert b.read(R + f"{acc}/write_latency") == "317\n"
        assert b.read(R + f"{acc}/read_bandwidth") == "40000\n"
        assert b.read(R + f"{acc}/write_bandwidth") == "30000\n"


SWITCHED = """
[machine]
name = "switched"
[boot]
kernel = "6.9"
hypervisor = true
region_invalidation_test = true
[[numa]]
node = 0
cpus = 2
memory = "4G"
[[host_bridge]]
id = "hb0"
uid = 0
[[host_bridge]]
id = "hb1"
uid = 1
[[switch]]
id = "sw0"
parent = "hb0"
downstream_ports = 2
[[switch]]
id = "sw1"
parent = "hb1"
downstream_ports = 2
""" + "".join(f"""
[[device]]
id = "d{i}"
parent = "sw{i // 2}"
volatile = "1G"
cdat = {{ read_latency = {250 + 50 * i}, write_latency = 250, read_bandwidth = 40000, write_bandwidth = 40000 }}
""" for i in range(4)) + """
[[window]]
size = "4G"
targets = ["hb0"]
restrictions = ["type3", "volatile"]
[[window]]
size = "8G"
targets = ["hb0", "hb1"]
granularity = 4096
restrictions = ["type3", "volatile"]
"""


def _devs(b):
    return {md.hw.topo.id: md.name for md in b.kernel.cxl.memdevs}


def test_region_bandwidth_is_capped_by_the_shared_switch_link():
    b = boot_text(SWITCHED)
    d = _devs(b)
    made = create_region(b, "decoder0.0", [d["d0"], d["d1"]], gran=4096, size=512 * MiB)
    R = f"/sys/bus/cxl/devices/{made.name}/access1/"
    assert b.read(R + "read_bandwidth") == "63014\n"          # 2 x 40000 through one x16 upstream link
    assert b.read(R + "read_latency") == "334\n"              # worst member: 300 ns + 2 links


def test_region_bandwidth_sums_over_host_bridges():
    b = boot_text(SWITCHED)
    d = _devs(b)
    made = create_region(b, "decoder0.1", [d["d0"], d["d2"]], gran=4096, size=512 * MiB)
    R = f"/sys/bus/cxl/devices/{made.name}/access1/"
    assert b.read(R + "read_bandwidth") == "80000\n"
    assert b.read(R + "read_latency") == "384\n"              # d2: 350 ns + 2 x 17 ns


def test_cxl_node_gets_region_coordinates_on_first_memory_and_loses_them_with_the_node():
    b = boot_text(topo(cdat=CDAT))
    dev = ram_region(b)
    N = "/sys/devices/system/node/node2/"
    assert not b.exists(N + "access0")                         # no memory online yet
    assert daxctl(b, "online-memory", dev).rc == 0
    assert b.read(N + "access0/initiators/read_latency") == "217\n"
    assert b.read(N + "access1/initiators/write_bandwidth") == "30000\n"
    assert [x for x in b.listdir(N + "access1/initiators") if x.startswith("node")] == []
    assert daxctl(b, "offline-memory", dev).rc == 0
    assert b.read(N + "access0/initiators/read_latency") == "217\n"   # the node keeps them while it exists


def test_dram_node_access_attributes_from_hmat():
    b = boot("cxl-test")
    N = "/sys/devices/system/node/"
    assert b.read(N + "node0/access0/initiators/read_latency") == "80\n"
    assert b.read(N + "node0/access1/initiators/read_bandwidth") == "20000\n"
    assert b.readlink(N + "node0/access0/initiators/node0") == "../../../node0"
    assert b.readlink(N + "node1/access1/targets/node1") == "../../../node1"


def test_rcd_region_has_no_coordinates():
    b = boot("cxl-test")
    assert b.exists("/sys/bus/cxl/devices/region0/access0/read_latency")     # the auto region (VH devices)
    rcd = next(md.name for md in b.kernel.cxl.memdevs if md.hw.topo.rcd)
    root = next(rd.name for rd in b.kernel.cxl.root_decoders() if rd.cap_ram and rd.targets[0].rch)
    made = create_region(b, root, [rcd], size=256 * MiB)
    assert b.read(f"/sys/bus/cxl/devices/{made.name}/commit") == "1\n"
    assert not b.exists(f"/sys/bus/cxl/devices/{made.name}/access0")


def test_no_region_coordinates_before_6_9():
    b = boot_text(topo(kernel="6.8", cdat=CDAT))
    ram_region(b)
    assert not b.exists("/sys/bus/cxl/devices/region0/access0")
