"""Names and numbering follow Linux (drivers/cxl/acpi.c, core/port.c,
core/memdev.c), including what the seed shows for BiscuitOS topology B."""

from __future__ import annotations

from cxltest_support import boot, r


def realname(b, path):
    return b.realpath(path).rsplit("/", 1)[1]


def test_biscuitos_b_names_match_the_seed():
    b = boot("biscuitos-b")
    devs = set(b.listdir("/sys/bus/cxl/devices"))
    assert {"root0", "port1", "port2", "endpoint3", "mem0", "decoder0.0", "decoder1.0", "decoder2.0",
            "decoder3.0", "nvdimm-bridge0", "pmem0"} <= devs
    assert realname(b, "/sys/bus/cxl/devices/port1/uport") == "pci0000:0c"
    assert realname(b, "/sys/bus/cxl/devices/port2/uport") == "0000:0d:00.0"        # switch upstream port
    assert realname(b, "/sys/bus/cxl/devices/endpoint3/parent_dport") == "0000:0e:00.0"
    mem = b.realpath("/sys/bus/cxl/devices/mem0")
    assert mem.split("/")[-2] == "0000:0f:00.0"                                       # memdev host
    assert realname(b, "/sys/bus/cxl/devices/root0/dport0") == "pci0000:0c"
    assert realname(b, "/sys/bus/cxl/devices/root0/dport0/firmware_node") == "ACPI0016:00"
    assert realname(b, "/sys/bus/cxl/devices/root0/uport") == "ACPI0017:00"
    assert b.chardev("/dev/cxl/mem0") == (60, 0)


def test_biscuitos_a_endpoint_directly_below_host_bridge():
    b = boot("biscuitos-a")
    assert realname(b, "/sys/bus/cxl/devices/endpoint2/parent_dport") == "0000:0c:00.0"
    assert b.realpath("/sys/bus/cxl/devices/mem0").split("/")[-2] == "0000:0d:00.0"


def test_biscuitos_c_pci_buses_depth_first():
    b = boot("biscuitos-c")
    hosts = sorted(b.realpath(f"/sys/bus/cxl/devices/mem{i}").split("/")[-2] for i in range(8))
    assert hosts == ["0000:11:00.0", "0000:12:00.0", "0000:13:00.0", "0000:14:00.0",
                     "0000:17:00.0", "0000:18:00.0", "0000:19:00.0", "0000:1a:00.0"]


def test_cxl_test_platform_device_names_and_dport_ids():
    b = boot("cxl-test")
    assert realname(b, "/sys/bus/cxl/devices/root0/uport") == "cxl_acpi.0"
    assert sorted(n for n in b.listdir("/sys/bus/cxl/devices/root0") if n.startswith("dport")) == \
        ["dport0", "dport1", "dport2", "dport3"]
    assert realname(b, "/sys/bus/cxl/devices/root0/dport0/physical_node") == "cxl_host_bridge.0"
    assert r(b, "decoder1.0/target_list") in ("0", "0,2")
    assert b.realpath("/sys/bus/cxl/devices/mem4").split("/")[-2] == "cxl_mem.4"
    # HB ports first (acpi.c add_host_bridge_uport), then switch ports/endpoints in memdev order
    assert realname(b, "/sys/bus/cxl/devices/port1/uport") == "cxl_host_bridge.0"
    assert realname(b, "/sys/bus/cxl/devices/port4/uport") == "cxl_switch_uport.0"
    assert realname(b, "/sys/bus/cxl/devices/endpoint5/uport") == "mem0"
    assert b.exists("/sys/bus/cxl/devices/endpoint19")   # the RCD endpoint, below root0
    assert realname(b, "/sys/bus/cxl/devices/endpoint19/parent_dport") == "cxl_host_bridge.3"


def test_one_root_decoder_per_cfmws_and_decoder_counts():
    b = boot("cxl-test")
    roots = sorted(n for n in b.listdir("/sys/bus/cxl/devices/root0") if n.startswith("decoder0."))
    assert roots == [f"decoder0.{i}" for i in range(6)]
    assert len([n for n in b.listdir("/sys/bus/cxl/devices/port1") if n.startswith("decoder1.")]) == 8
    assert r(b, "decoder0.1/target_list") == "0,1"
    assert r(b, "decoder0.1/interleave_granularity") == "4096"
    assert r(b, "decoder0.0/interleave_granularity") == "256"
    assert r(b, "decoder0.0/qos_class") == "42"


def test_attribute_formats():
    b = boot("cxl-test")
    assert r(b, "mem0/serial") == "0x0"
    assert r(b, "mem3/serial") == "0x3"
    assert r(b, "mem0/ram/size") == "0x40000000"
    assert r(b, "mem0/pmem/size") == "0x40000000"
    assert r(b, "mem0/label_storage_size") == "131072"
    assert r(b, "mem0/firmware_version") == "mock fw v1 "
    assert r(b, "decoder5.1/dpa_size") == "0x0000000000000000"
    assert r(b, "decoder5.1/dpa_resource") == "0xffffffffffffffff"
    assert r(b, "decoder5.0/mode") == "ram"
    assert r(b, "decoder0.2/cap_pmem") == "1" and r(b, "decoder0.2/cap_ram") == "0"
    assert r(b, "root0/devtype") == "cxl_port" and r(b, "root0/modalias") == "cxl:t4"
    assert r(b, "port1/modalias") == "cxl:t3"
    assert r(b, "decoder0.0/devtype") == "cxl_decoder_root"
    assert "DRIVER=cxl_port" in r(b, "port1/uevent")
    assert not b.exists("/sys/bus/cxl/devices/root0/driver")


def test_readdir_is_kernfs_hash_order():
    from cxlemu.util.kernfs_hash import kernfs_order
    b = boot("cxl-test")
    names = b.listdir("/sys/bus/cxl/devices")
    assert names == kernfs_order(names)
    # Documentation/driver-api/cxl example: root dports 0,4,1,5 after libcxl's reversal
    assert kernfs_order(["dport0", "dport1", "dport4", "dport5"])[::-1] == ["dport0", "dport4", "dport1", "dport5"]


def test_iomem_has_windows_ram_and_soft_reserved():
    b = boot("cxl-test")
    iomem = b.read("/proc/iomem")
    assert "f010000000-f04fffffff : CXL Window 0\n" in iomem
    assert "  f010000000-f02fffffff : region0\n" in iomem
    assert "    f010000000-f02fffffff : Soft Reserved\n" in iomem
    assert ": System RAM\n" in iomem


def test_large_fabric_boots_quickly():
    import time
    t0 = time.process_time()        # CPU time: the figure must not depend on the machine's load
    b = boot("large-fabric")
    dt = time.process_time() - t0
    assert len(b.kernel.cxl.memdevs) == 1024
    assert dt < 5.0


def test_dc_capability_is_asked_once_per_new_memdev():
    """The DCD series' create_dynamic_ram_1_region appears only when some
    memdev has Dynamic Capacity; the answer is kept (every root decoder asks,
    which was quadratic in memdevs) and follows memdevs added later."""
    from types import SimpleNamespace
    b = boot("biscuitos-c")
    core = b.kernel.cxl
    assert "create_dynamic_ram_1_region" not in b.listdir("/sys/bus/cxl/devices/decoder0.0")
    assert core.dc_capable() is False and core._dc_scan == (len(core.memdevs), False)
    core.memdevs.append(SimpleNamespace(hw=SimpleNamespace(dc_size=1 << 30)))     # a later DC memdev
    try:
        assert core.dc_capable() is True
    finally:
        core.memdevs.pop()
