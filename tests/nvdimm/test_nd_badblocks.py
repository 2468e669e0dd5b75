"""CXL poison as libnvdimm bad blocks (kernel/nvdimm/badrange.py, a cxlemu
extension): region and namespace ``badblocks`` in ``ndctl list
--media-errors`` (offsets in 512-byte sectors relative to the region, or to
the dax/pfn data area), ``ndctl clear-errors`` clearing exactly the
poisoned lines, and the extension switched off."""

from __future__ import annotations

import json

import pytest

from cxlemu.hw import faults as F
from pmem_support import backend, fabric, ndctl, pmem_region


def nd_list(b, *args):
    rc, out, err = ndctl(b, "list", *args)
    assert rc == 0, err
    return json.loads(out) if out.strip() else []


def devdax(tmp_path, text=None):
    b = backend(tmp_path, text)
    pmem_region(b)
    rc, _, err = ndctl(b, "create-namespace", "-m", "devdax", "-s", "64M")
    assert rc == 0, err
    return b


def poison_at_region_offset(b, off: int, length: int = 64):
    """A media error at region offset ``off`` (through the hardware's routing)."""
    from cxlemu.data.datapath import HpaSpace
    region = next(iter(b.kernel.cxl.regions.all()))
    hs = HpaSpace(b.kernel.platform, b.kernel.media_store)
    hw, dpa = hs.locate(region.res.start + off)
    F.media_error(hw, dpa, length)
    return hw, dpa


def test_region_and_devdax_badblocks(tmp_path):
    b = devdax(tmp_path)
    region = next(iter(b.kernel.cxl.regions.all()))
    dax = b.kernel.dax.find("dax0.0")
    dax_off = dax.ranges[0].start - region.res.start
    poison_at_region_offset(b, dax_off + 8192)               # inside the dax data
    poison_at_region_offset(b, 0x100)                          # in the namespace metadata, before the data
    r = nd_list(b, "-R", "--media-errors")[0]
    assert r["badblock_count"] == 2
    assert r["badblocks"] == [{"offset": 0, "length": 1}, {"offset": (dax_off + 8192) // 512, "length": 1}]
    assert b.read("/sys/bus/nd/devices/region0/badblocks") == f"0 1\n{(dax_off + 8192) // 512} 1\n"
    ns = nd_list(b, "--media-errors")[0]
    assert ns["badblock_count"] == 1 and ns["badblocks"] == [{"offset": 16, "length": 1}]
    assert "badblocks" not in nd_list(b)[0] and nd_list(b)[0]["badblock_count"] == 1


def test_interleaved_region_badblocks_follow_the_interleave(tmp_path):
    b = backend(tmp_path, fabric(2))
    pmem_region(b, gran=4096)
    hw, dpa = poison_at_region_offset(b, 3 * 4096 + 512, 1024)  # granule 3 (the second device)
    r = nd_list(b, "-R", "--media-errors")[0]
    assert r["badblocks"] == [{"offset": (3 * 4096 + 512) // 512, "length": 2}]
    assert hw is b.kernel.cxl.memdevs[1].hw or hw is b.kernel.cxl.memdevs[0].hw


def test_clear_errors_clears_only_the_poisoned_lines(tmp_path):
    from cxlemu.data.datapath import HpaSpace
    b = devdax(tmp_path)
    region = next(iter(b.kernel.cxl.regions.all()))
    dax = b.kernel.dax.find("dax0.0")
    hs = HpaSpace(b.kernel.platform, b.kernel.media_store)
    hpa = dax.ranges[0].start + 4096
    hs.write(hpa - 64, b"k" * 64)                                # the neighbour line in the same sector
    poison_at_region_offset(b, hpa - region.res.start)
    assert nd_list(b, "--media-errors")[0]["badblock_count"] == 1
    rc, out, err = ndctl(b, "clear-errors", "namespace0.0")
    assert rc == 0 and err.endswith("cleared 1 namespace\n"), err
    j = json.loads(out)
    assert j["dev"] == "namespace0.0" and "badblocks" not in j
    assert not len(b.kernel.cxl.memdevs[0].hw.poison)
    assert hs.read(hpa - 64, 64) == b"k" * 64                    # not poisoned: left alone
    assert hs.read(hpa, 64) == bytes(64)
    assert nd_list(b, "-N")[0].get("state") is None               # re-enabled


def test_clear_errors_usage_and_scrub(tmp_path):
    b = devdax(tmp_path)
    rc, _, err = ndctl(b, "clear-errors")
    assert rc == 129 and 'specify a namespace to clear errors for, or "all"' in err
    rc, _, err = ndctl(b, "clear-errors", "--scrub", "namespace0.0")
    assert rc == (-95) & 0xFF                                   # -EOPNOTSUPP
    assert "Unable to start scrub: Operation not supported" in err and "cleared 0 namespaces" in err


def test_extension_off_shows_no_badblocks_and_cannot_clear(tmp_path):
    from cxlemu.topology.presets import text
    t = text("biscuitos-b").replace("[boot]", "[boot]\ncxl_pmem_badblocks = false")
    b = devdax(tmp_path, t)
    poison_at_region_offset(b, 0x400000)
    assert "badblock_count" not in nd_list(b, "-R", "--media-errors")[0]
    assert b.read("/sys/bus/nd/devices/ndbus0/commands") == "\n"
    rc, _, err = ndctl(b, "clear-errors", "namespace0.0")
    assert "cleared 1 namespace" in err                          # nothing to clear: nothing asked of the bus


@pytest.mark.parametrize("mode", ["fsdax", "raw"])
def test_other_modes_report_region_relative_or_device_relative(tmp_path, mode):
    b = backend(tmp_path)
    pmem_region(b)
    rc, _, err = ndctl(b, "create-namespace", "-m", mode, "-s", "64M")
    assert rc == 0, err
    poison_at_region_offset(b, 0x300000)
    ns = nd_list(b, "--media-errors")[0]
    if mode == "raw":
        assert ns["badblocks"] == [{"offset": 0x300000 // 512, "length": 1}]
    else:
        assert ns["badblock_count"] == 1
