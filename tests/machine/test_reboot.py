"""Reboot semantics: decoders reset unless firmware re-commits them; media
persistence follows the partition (hw/platform.py reset, machine/store.py)."""

from __future__ import annotations

import numpy as np

from cxlemu.data.datapath import HpaSpace
from cxlemu.machine.store import Store
from cxltest_support import create_region, fabric_toml


def _topo(keep: bool) -> str:
    t = fabric_toml(1, 1, 0, gran=4096, mode="pmem", dev_size="512M", hb_decoders=4)
    return t.replace("[boot]\n", f"[boot]\nfirmware_keeps_decoders = {'true' if keep else 'false'}\n")


def _make(keep: bool):
    st = Store()
    st.create("m", _topo(keep))
    with st.open("m") as m:
        b = m.backend()
        made = create_region(b, "decoder0.0", ["mem0"], mode="pmem", gran=4096, size=512 << 20)
        region = m.kernel.cxl.regions.all()[0]
        HpaSpace(m.platform, m.media).write(region.res.start, b"persistent!" * 100)
        start = region.res.start
    return st, made.name, start


def test_reboot_resets_decoders_by_default():
    st, name, start = _make(keep=False)
    with st.open("m") as m:
        m.reboot()
        assert m.kernel.cxl.regions.all() == []
        hw = m.platform.devices[0]
        assert not hw.hdm.committed_decoders()
        # the bytes are still on the persistent media, at DPA 0
        assert bytes(m.media.array(hw)[:11]) == b"persistent!"


def test_firmware_keeps_decoders_reassembles_the_region():
    st, name, start = _make(keep=True)
    with st.open("m") as m:
        m.reboot()
        regions = m.kernel.cxl.regions.all()
        assert len(regions) == 1
        r = regions[0]
        assert r.auto and r.state == 4 and r.res.start == start
        assert HpaSpace(m.platform, m.media).read(start, 11) == b"persistent!"


def test_power_fail_loses_volatile_media(tmp_path):
    st = Store()
    st.create("v", fabric_toml(1, 1, 0, gran=4096, dev_size="256M", hb_decoders=4).replace(
        "[boot]\n", "[boot]\nfirmware_keeps_decoders = true\n"))
    with st.open("v") as m:
        create_region(m.backend(), "decoder0.0", ["mem0"], mode="ram", gran=4096)
        r = m.kernel.cxl.regions.all()[0]
        HpaSpace(m.platform, m.media).write(r.res.start, np.full(8192, 7, dtype=np.uint8))
    with st.open("v") as m:
        m.reboot(power_loss=True)
        r = m.kernel.cxl.regions.all()[0]
        assert not np.frombuffer(HpaSpace(m.platform, m.media).read(r.res.start, 8192), dtype=np.uint8).any()


def test_pass_through_host_bridge_blocks_auto_assembly():
    """region.c find_pos_and_ways(): a pass-through decoder has no HPA range, so a
    firmware-committed region below one cannot be auto-assembled (as on Linux)."""
    st, name, start = _make_pt()
    with st.open("m") as m:
        m.reboot()
        assert m.kernel.cxl.regions.all() == [] or m.kernel.cxl.regions.all()[0].state < 4
        assert any("failed to find decoder mapping" in x for x in m.kernel.dmesg)


def _make_pt():
    st = Store()
    st.create("m", fabric_toml(1, 1, 0, gran=4096, mode="pmem", dev_size="512M").replace(
        "[boot]\n", "[boot]\nfirmware_keeps_decoders = true\n"))
    with st.open("m") as m:
        create_region(m.backend(), "decoder0.0", ["mem0"], mode="pmem", gran=4096, size=512 << 20)
        start = m.kernel.cxl.regions.all()[0].res.start
    return st, "region0", start
