"""The /sys/bus/nd ABI of CXL pmem regions (Documentation/ABI/testing/
sysfs-bus-nvdimm, drivers/nvdimm/*): attribute formats, driver binding and
namespace configuration through sysfs the way libndctl does it."""

import errno
import uuid

import pytest

from pmem_support import MiB, backend, fabric, pmem_region, lsa
from cxlemu.hw import lsa as lbl

D = "/sys/bus/nd/devices/"


def rd(b, path):
    return b.read(D + path)


def wr(b, path, val):
    b.write(D + path, val + "\n")


@pytest.fixture
def b(tmp_path):
    b = backend(tmp_path)
    pmem_region(b)
    return b


def test_devices_and_drivers(b):
    assert sorted(b.listdir(D)) == ["btt0.0", "dax0.0", "namespace0.0", "ndbus0", "nmem0", "pfn0.0",
                                    "region0"]
    assert rd(b, "ndbus0/provider") == "CXL\n"
    assert rd(b, "ndbus0/uevent") == "DRIVER=nd_bus\nMODALIAS=nd:t0\n"
    for dev, drv in [("nmem0", "nvdimm"), ("region0", "nd_region")]:
        assert b.vfs.readlink(D + dev + "/driver").endswith("/drivers/" + drv)
    for seed in ("namespace0.0", "pfn0.0", "dax0.0", "btt0.0"):
        assert "driver" not in b.listdir(D + seed)
    assert "ndctl0" in b.listdir("/sys/class/nd")
    assert b.vfs.readlink(D + "ndbus0").endswith("/root0/nvdimm-bridge0/ndbus0")


def test_nmem_attributes(b):
    assert rd(b, "nmem0/commands") == "get_size get_data set_data \n"
    assert rd(b, "nmem0/flags") == "label \n"
    assert rd(b, "nmem0/state") == "active\n"
    assert rd(b, "nmem0/cxl/provider") == "pmem0\n"
    assert rd(b, "nmem0/cxl/id") == "0\n"               # biscuitos-b: serial 0
    assert rd(b, "nmem0/dev") == "63:0\n"
    assert int(rd(b, "nmem0/available_slots")) > 0


def test_region_attributes(b):
    expect = {"size": "536870912\n", "align": "0x1000000\n", "nstype": "5\n", "mappings": "1\n",
              "mapping0": "nmem0,0,536870912,0\n", "set_cookie": "0x0\n", "deep_flush": "0\n",
              "read_only": "0\n", "persistence_domain": "memory_controller\n", "init_namespaces": "1/1\n",
              "namespace_seed": "namespace0.0\n", "pfn_seed": "pfn0.0\n", "dax_seed": "dax0.0\n",
              "btt_seed": "btt0.0\n", "available_size": "536870912\n",
              "max_available_extent": "536870912\n", "devtype": "nd_pmem\n", "modalias": "nd:t2\n"}
    for attr, val in expect.items():
        assert rd(b, f"region0/{attr}") == val, attr
    # region0's resource is the CXL region's HPA start
    assert rd(b, "region0/resource") == b.read("/sys/bus/cxl/devices/region0/resource")


def test_seed_attributes(b):
    assert rd(b, "namespace0.0/size") == "0\n"
    assert rd(b, "namespace0.0/mode") == "raw\n"
    assert rd(b, "namespace0.0/uuid") == "\n"
    assert rd(b, "namespace0.0/sector_size") == "512 4096 \n"
    with pytest.raises(OSError) as e:
        rd(b, "namespace0.0/resource")
    assert e.value.errno == errno.ENXIO
    assert rd(b, "dax0.0/supported_alignments") == "4096 2097152 1073741824 \n"
    assert rd(b, "dax0.0/align") == "2097152\n"
    assert rd(b, "dax0.0/mode") == "none\n"
    assert rd(b, "dax0.0/modalias") == "nd:t7\n"
    assert rd(b, "pfn0.0/modalias") == "nd:t5\n"
    assert rd(b, "btt0.0/sector_size") == "512 520 528 4096 4104 4160 4224 \n"


def _configure(b, ns="namespace0.0", size=64 * MiB, u=None):
    u = u or str(uuid.uuid4())
    wr(b, f"{ns}/uuid", u)
    wr(b, f"{ns}/alt_name", "seed")
    wr(b, f"{ns}/size", str(size))
    return u


def test_configure_namespace_writes_labels_and_advances_seed(b):
    u = _configure(b)
    assert rd(b, "namespace0.0/uuid") == u + "\n"
    assert rd(b, "namespace0.0/alt_name") == "seed\n"
    assert rd(b, "namespace0.0/size") == str(64 * MiB) + "\n"
    assert rd(b, "namespace0.0/dpa_extents") == "1\n"
    assert rd(b, "region0/available_size") == str(448 * MiB) + "\n"
    area = lbl.LabelArea(lsa(b), label_size=256, cxl=True)
    labels = [x for _, x in area.labels() if isinstance(x, lbl.NamespaceLabel)]
    assert [(str(x.uuid), x.name, x.rawsize, x.dpa) for x in labels] == [(u, "seed", 64 * MiB, 0)]
    wr(b, "namespace0.0/sector_size", "4096")
    b.write("/sys/bus/nd/drivers/nd_pmem/bind", "namespace0.0")
    assert rd(b, "namespace0.0/mode") == "raw\n"
    assert rd(b, "region0/namespace_seed") == "namespace0.1\n"
    assert "namespace0.1" in b.listdir(D)


@pytest.mark.parametrize("val", ["not-a-uuid", "", "12345678-1234-1234-1234-12345678901"])
def test_bad_uuid_is_einval(b, val):
    with pytest.raises(OSError) as e:
        wr(b, "namespace0.0/uuid", val)
    assert e.value.errno == errno.EINVAL
    assert rd(b, "namespace0.0/uuid") == "\n"


def test_size_rules(b):
    wr(b, "namespace0.0/uuid", str(uuid.uuid4()))
    before = bytes(lsa(b))
    with pytest.raises(OSError) as e:
        wr(b, "namespace0.0/size", str(1024 * MiB))
    assert e.value.errno == errno.ENOSPC
    with pytest.raises(OSError) as e:
        wr(b, "namespace0.0/size", str(MiB))              # not a multiple of the region align
    assert e.value.errno == errno.EINVAL
    assert bytes(lsa(b)) == before
    assert rd(b, "namespace0.0/size") == "0\n"


def test_size_needs_uuid(b):
    with pytest.raises(OSError) as e:
        wr(b, "namespace0.0/size", str(64 * MiB))
    assert e.value.errno == errno.ENXIO


def test_duplicate_uuid_is_einval(b):
    u = _configure(b)
    b.write("/sys/bus/nd/drivers/nd_pmem/bind", "namespace0.0")
    with pytest.raises(OSError) as e:
        wr(b, "namespace0.1/uuid", u)
    assert e.value.errno == errno.EINVAL


def test_size_zero_deletes_labels(b):
    _configure(b)
    wr(b, "namespace0.0/size", "0")
    area = lbl.LabelArea(lsa(b), label_size=256, cxl=True)
    assert [x for _, x in area.labels() if isinstance(x, lbl.NamespaceLabel)] == []
    assert rd(b, "region0/available_size") == "536870912\n"


def test_lsa_ioctl_refused_while_bound(b):
    nm = b.kernel.nvdimm.nvdimm_of(b.kernel.cxl.memdevs[0])
    assert nm.ioctl_config_size()[0] == len(lsa(b))
    with pytest.raises(OSError) as e:
        nm.ioctl_set_config_data(0, b"x")
    assert e.value.errno == errno.EBUSY


def test_two_way_mappings_and_cookie(tmp_path):
    b = backend(tmp_path, fabric(2))
    pmem_region(b)
    assert rd(b, "region0/mappings") == "2\n"
    assert rd(b, "region0/mapping0") == "nmem0,0,536870912,0\n"
    assert rd(b, "region0/mapping1") == "nmem1,0,536870912,1\n"
    assert rd(b, "region0/set_cookie") != "0x0\n"
    u = _configure(b, size=64 * MiB)
    for md in ("mem0", "mem1"):
        area = lbl.LabelArea(lsa(b, md), label_size=256, cxl=True)
        labels = [x for _, x in area.labels() if isinstance(x, lbl.NamespaceLabel)]
        assert [(str(x.uuid), x.rawsize, x.position) for x in labels] == \
            [(u, 32 * MiB, int(md[-1]))]
