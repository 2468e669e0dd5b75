"""The dax bus (drivers/dax/bus.c), device_dax (drivers/dax/device.c),
kmem (drivers/dax/kmem.c) and the CXL glue (drivers/dax/cxl.c,
drivers/cxl/core/region.c devm_cxl_add_dax_region)."""

from __future__ import annotations

import errno
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mm.support import MiB, boot, boot_text, daxctl, ram_region, topo  # noqa: E402

from cxlemu.kernel.base.device import KernelError, PlainDir, device_add  # noqa: E402
from cxlemu.kernel.dax.bus import DAX_MAJOR  # noqa: E402

DEV = "/sys/bus/dax/devices/"
DRV = "/sys/bus/dax/drivers/"


def w(b, path, value):
    b.write(path, value + "\0")


def err_of(b, path, value) -> int:
    with pytest.raises(OSError) as e:
        w(b, path, value)
    return e.value.errno


@pytest.fixture
def devdax():
    """A 1 GiB CXL ram region whose dax0.0 was moved to device_dax and shrunk to 256 MiB."""
    b = boot_text(topo(dev_size="1G"))
    dev = ram_region(b, 1024 * MiB)
    assert daxctl(b, "reconfigure-device", "-m", "devdax", dev).rc == 0
    w(b, DEV + dev + "/driver/unbind", dev)
    w(b, DEV + dev + "/size", hex(256 * MiB))
    region = b.realpath(DEV + dev + "/..")
    return b, dev, region


def test_cxl_ram_region_gets_a_dax_region_and_dax0_0_bound_to_kmem():
    b = boot("cxl-test")
    p = b.realpath(DEV + "dax0.0")
    assert p == "/sys/devices/platform/cxl_acpi.0/root0/decoder0.0/region0/dax_region0/dax0.0"
    assert b.readlink(DEV + "dax0.0/driver").endswith("/bus/dax/drivers/kmem")
    host = "/sys/bus/cxl/devices/dax_region0/"
    assert b.read(host + "devtype") == "cxl_dax_region\n" and b.read(host + "modalias") == "cxl:t8\n"
    assert b.readlink(host + "driver").endswith("/bus/cxl/drivers/cxl_dax_region")
    assert sorted(b.listdir("/sys/bus/cxl/drivers/cxl_dax_region")) == ["dax_region0", "module", "uevent"]
    assert b.readlink("/sys/bus/cxl/drivers/cxl_dax_region/module") == "../../../../module/dax_cxl"


def test_dax_region_attributes():
    b = boot("cxl-test")
    g = "/sys/bus/cxl/devices/dax_region0/dax_region/"
    assert sorted(b.listdir(g)) == ["align", "available_size", "create", "delete", "id", "seed", "size"]
    vals = {a: b.read(g + a) for a in ("id", "size", "align", "available_size", "seed", "create")}
    assert vals == {"id": "0\n", "size": "536870912\n", "align": "2097152\n", "available_size": "0\n",
                    "seed": "\n", "create": "\n"}
    assert b.vfs.mode(g + "align") & 0o777 == 0o400 and b.vfs.mode(g + "delete") & 0o777 == 0o200


def test_dev_dax_attributes_and_char_device():
    b = boot("cxl-test")
    d = DEV + "dax0.0/"
    assert sorted(b.listdir(d)) == ["align", "dev", "driver", "mapping", "mapping0", "memmap_on_memory",
                                    "modalias", "numa_node", "resource", "size", "subsystem", "target_node",
                                    "uevent"]
    assert b.read(d + "modalias") == "dax:t0*\n" and b.read(d + "numa_node") == "-1\n"
    assert b.read(d + "memmap_on_memory") == "1\n"           # drivers/dax/cxl.c sets it
    assert b.read(d + "dev") == f"{DAX_MAJOR}:0\n"
    assert b.chardev("/dev/dax0.0") == (DAX_MAJOR, 0)
    assert b.realpath(f"/sys/dev/char/{DAX_MAJOR}:0/subsystem") == "/sys/bus/dax"
    assert "MODALIAS=dax:t0*" in b.read(d + "uevent") and "DRIVER=kmem" in b.read(d + "uevent")
    assert b.vfs.mode(d + "resource") & 0o777 == 0o400 and b.vfs.mode(d + "mapping") & 0o777 == 0o200


def test_cxl_dax_region_driver_suppresses_bind_attrs():
    b = boot("cxl-test")
    assert not b.exists("/sys/bus/cxl/drivers/cxl_dax_region/bind")
    assert sorted(b.listdir(DRV + "kmem")) == ["bind", "dax0.0", "module", "new_id", "remove_id", "uevent",
                                               "unbind"]
    # the driver's module, loaded (what libkmod checks before inserting it)
    assert b.read("/sys/module/kmem/initstate") == "live\n"
    assert b.readlink("/sys/module/kmem/drivers/dax:kmem") == "../../../bus/dax/drivers/kmem"


def test_create_store_makes_a_seed_and_enforces_space(devdax):
    b, dev, region = devdax
    g = region + "/dax_region/"
    assert b.read(g + "available_size") == str(768 * MiB) + "\n"
    assert err_of(b, g + "create", "2") == errno.EINVAL
    w(b, g + "create", "1")
    assert b.read(g + "seed") == "dax0.1\n" and b.read(g + "create") == "dax0.1\n"
    assert b.read(DEV + "dax0.1/size") == "0\n" and b.read(DEV + "dax0.1/resource") == b.read(DEV + dev + "/resource")
    w(b, DEV + "dax0.1/size", hex(768 * MiB))
    assert b.read(g + "available_size") == "0\n"
    assert err_of(b, g + "create", "1") == errno.ENOSPC


def test_size_store_rules(devdax):
    b, dev, region = devdax
    g = region + "/dax_region/"
    w(b, g + "create", "1")
    p = DEV + "dax0.1/size"
    assert err_of(b, p, hex(3 * MiB)) == errno.EINVAL                 # not a multiple of max(align, 2M)
    assert err_of(b, p, hex(1024 * MiB)) == errno.ENOSPC
    w(b, p, hex(512 * MiB))
    assert b.read(p) == str(512 * MiB) + "\n"
    w(b, p, hex(256 * MiB))                                            # shrink from the end
    assert b.read(DEV + "dax0.1/mapping0/end") == hex(int(b.read(DEV + "dax0.1/mapping0/start"), 0)
                                                      + 256 * MiB - 1) + "\n"
    w(b, DRV + "device_dax/new_id", "dax0.1")                          # new_id binds (driver_attach)
    assert b.readlink(DEV + "dax0.1/driver").endswith("device_dax")
    assert err_of(b, p, hex(512 * MiB)) == errno.EBUSY


def test_size_grows_into_holes_with_multiple_ranges(devdax):
    b, dev, region = devdax
    g = region + "/dax_region/"
    w(b, g + "create", "1")
    w(b, DEV + "dax0.1/size", hex(256 * MiB))       # [256M, 512M)
    w(b, DEV + dev + "/size", "0")                   # free [0, 256M)
    # dev_dax_resize(): the hole at the start of the region first (a new range), then after the
    # last resource -- not an extension, since the last range is no longer the one it follows
    w(b, DEV + "dax0.1/size", hex(768 * MiB))
    maps = sorted((int(b.read(DEV + f"dax0.1/mapping{i}/page_offset"), 0),
                   int(b.read(DEV + f"dax0.1/mapping{i}/start"), 0)) for i in range(3))
    start = b.kernel.dax.find("dax0.1").region.start
    assert maps == [(0, start + 256 * MiB), (65536, start), (131072, start + 512 * MiB)]
    assert not b.exists(DEV + "dax0.1/mapping3")
    w(b, DEV + "dax0.1/size", hex(640 * MiB))       # shrink: trims the last range
    assert b.read(DEV + "dax0.1/mapping2/end") == hex(start + 640 * MiB - 1) + "\n"


def test_mapping_store(devdax):
    b, dev, region = devdax
    g = region + "/dax_region/"
    w(b, g + "create", "1")
    start = b.kernel.dax.find("dax0.1").region.start
    p = DEV + "dax0.1/mapping"
    assert err_of(b, p, f"{start:#x}-{start + MiB - 1:#x}") == errno.ENXIO      # misaligned
    assert err_of(b, p, f"{start:#x}-{start + 2 * MiB - 1:#x}") == errno.ENOMEM  # owned by dax1.0
    w(b, p, f"{start + 512 * MiB:#x}-{start + 514 * MiB - 1:#x}\n")
    assert b.read(DEV + "dax0.1/size") == str(2 * MiB) + "\n"
    assert b.read(DEV + "dax0.1/mapping0/page_offset") == "0x0\n"
    assert err_of(b, p, "nonsense") == errno.EINVAL


def test_delete_store_rules(devdax):
    b, dev, region = devdax
    g = region + "/dax_region/"
    w(b, g + "create", "1")
    assert err_of(b, g + "delete", "dax0.7") == errno.ENXIO
    assert err_of(b, g + "delete", dev) == errno.EBUSY                 # device 0 is kept
    w(b, DEV + "dax0.1/size", hex(2 * MiB))
    assert err_of(b, g + "delete", "dax0.1") == errno.EBUSY            # not empty
    w(b, DEV + "dax0.1/size", "0")
    w(b, g + "delete", "dax0.1")
    assert not b.exists(DEV + "dax0.1") and not b.exists("/dev/dax0.1")
    assert b.read(g + "seed") == "\n"


def test_align_store_rules(devdax):
    b, dev, region = devdax
    p = DEV + dev + "/align"
    assert err_of(b, p, "junk") == errno.ENXIO                         # kstrtoul failure
    assert err_of(b, p, hex(64 * 1024)) == errno.EINVAL
    assert err_of(b, p, hex(1 << 30)) == errno.EINVAL                  # 256M range not 1G aligned
    w(b, p, hex(4096))
    assert b.read(p) == "4096\n"
    w(b, DRV + "device_dax/bind", dev)
    assert err_of(b, p, hex(2 * MiB)) == errno.EBUSY


def test_bind_zero_sized_device_is_enxio(devdax):
    b, dev, region = devdax
    w(b, region + "/dax_region/create", "1")
    w(b, DRV + "device_dax/new_id", "dax0.1")
    assert b.kernel.dax.find("dax0.1").driver is None
    assert err_of(b, DRV + "device_dax/bind", "dax0.1") == errno.ENXIO


def test_new_id_remove_id_validation(devdax):
    b, dev, region = devdax
    assert err_of(b, DRV + "kmem/new_id", "dax0") == errno.EINVAL
    assert err_of(b, DRV + "kmem/new_id", "dax00.0") == errno.EINVAL
    w(b, DRV + "kmem/remove_id", "dax0.5")                             # nothing to remove: fine


def test_memmap_on_memory_store():
    b = boot("cxl-test")
    p = DEV + "dax0.0/memmap_on_memory"
    assert err_of(b, p, "1") == errno.EOPNOTSUPP          # memory_hotplug.memmap_on_memory is off
    assert err_of(b, p, "0") == errno.EBUSY               # changing it under kmem
    assert err_of(b, p, "x") == errno.EINVAL


def test_devdax_probe_requests_the_range_busy_in_iomem(devdax):
    b, dev, region = devdax
    w(b, DRV + "device_dax/bind", dev)
    d = b.kernel.dax.find(dev)
    r = d.ranges[0]
    assert f"{r.start:x}-{r.end:x} : {dev}\n" in b.read("/proc/iomem")
    assert any(a.label == f"memmap {dev}" for a in b.kernel.mm.pages.allocs.values())


def test_static_region_api_for_pmem_hosts():
    b = boot("cxl-test")
    k = b.kernel
    host = PlainDir("dax7.0", k.sysdirs["platform"])
    device_add(host)
    start = 0x4000000000
    region = k.dax.alloc_dax_region(host, 7, start, 1 << 30, 2 * MiB, 0, static=True)
    with pytest.raises(KernelError) as e:
        k.dax.alloc_dax_region(host, 7, start, 1 << 30, 2 * MiB, 0, static=True)
    assert e.value.errno == errno.EBUSY
    with pytest.raises(KernelError) as e:
        k.dax.alloc_dax_region(PlainDir("x", None), 8, start + MiB, 1 << 30, 2 * MiB, 0, static=True)
    assert e.value.errno == errno.ENOMEM
    dev = k.dax.create_dev_dax(region)
    assert dev.name == "dax7.0" and dev.size == 1 << 30 and dev.driver.name == "device_dax"
    g = "/sys/devices/platform/dax7.0/dax_region/"
    assert sorted(b.listdir(g)) == ["align", "id", "size"]
    d = "/sys/devices/platform/dax7.0/dax7.0/"
    assert not b.exists(d + "mapping") and b.vfs.mode(d + "size") & 0o777 == 0o444
    assert b.vfs.mode(d + "align") & 0o777 == 0o444
    assert b.read(d + "target_node") == "0\n"
    res = daxctl(b, "list", "-r", "7", "-R")
    assert '"path":"\\/platform\\/dax7.0"' in res.out and '"id":7' in res.out
    k.dax.free_dax_region(region)
    assert not b.exists(d) and not b.exists("/sys/devices/platform/dax7.0/dax_region")
    assert b.chardev("/dev/dax7.0") is None


def test_unbinding_the_region_tears_down_the_dax_devices():
    b = boot_text(topo())
    dev = ram_region(b)
    w(b, "/sys/bus/cxl/devices/region0/driver/unbind", "region0")
    assert not b.exists(DEV + dev) and not b.exists("/sys/bus/cxl/devices/dax_region0")
    assert b.kernel.dax.regions == [] and b.kernel.chrdevs.count(None) == 0
    w(b, "/sys/bus/cxl/drivers/cxl_region/bind", "region0")
    assert b.readlink(DEV + dev + "/driver").endswith("kmem")
