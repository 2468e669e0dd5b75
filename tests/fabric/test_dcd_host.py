"""The host side of Dynamic Capacity (the Linux DCD series v11 rules) on
rack hosts: dynamic_ram_1, the DC region, tag groups as DAX devices, the
More chain and its 20 s timeout, the 100-extent limit, release with
offlining, recovery at probe, shared media, the device's access check."""

from __future__ import annotations

import io

import numpy as np
import pytest

from cxlemu.data.datapath import HpaSpace
from cxlemu.fabric import rack
from cxlemu.hw.mailbox import dcd_payloads as D
from cxlemu.kernel.cxl import dcd
from cxlemu.machine.store import Store
from cxlemu.tools.runner import run_tool

from .rackutil import G, fm_add, make_rack, tag

M256 = 256 << 20


def host(name="r/host0"):
    return Store().open(name)


def tool(m, *argv) -> tuple[int, str]:
    out = io.StringIO()
    rc = run_tool(argv[0], list(argv[1:]), m.backend(), stdout=out, stderr=out, isatty=False)
    return rc, out.getvalue()


def dev():
    return rack.appliance_store("r", "pool0").read()


@pytest.fixture
def r():
    make_rack("r")
    return "r"


def test_memdev_partition_region_and_empty_dax_region(r):
    with host() as m:
        b = m.backend()
        assert b.read("/sys/bus/cxl/devices/mem0/dynamic_ram_1/size").strip() == hex(8 * G)
        assert b.read("/sys/bus/cxl/devices/mem0/ram/size").strip() == "0x0"
        assert b.read("/sys/bus/cxl/devices/region0/mode").strip() == "dynamic_ram_1"
        assert b.read("/sys/bus/cxl/devices/decoder0.0/create_dynamic_ram_1_region").startswith("region")
        assert b.read("/sys/bus/dax/devices/dax0.0/size").strip() == "0"       # the seed
        assert b.read("/sys/bus/cxl/devices/dax_region0/dax_region/available_size").strip() == "0"
        rc, out = tool(m, "cxl", "list", "-M")
        assert rc == 0 and '"dynamic_ram_1_size":8589934592' in out.replace(" ", "")
        assert "region0" in b.read("/proc/iomem")


def test_add_surfaces_one_dax_device_per_tag(r):
    fm_add("r", 0, 2 * G, "db", policy=D.SelectionPolicy.PRESCRIPTIVE,
           exts=(D.DcExtent(0, G), D.DcExtent(4 * G, G)))
    with host() as m:
        al = dcd.allocations(m.kernel)
        assert len(al) == 1 and al[0]["dax"] == "dax0.1" and al[0]["bytes"] == 2 * G
        b = m.backend()
        assert b.read("/sys/bus/dax/devices/dax0.1/uuid").strip() == str(tag("db"))
        assert b.read("/sys/bus/dax/devices/dax0.1/size").strip() == str(2 * G)
        assert sorted(b.listdir("/sys/bus/dax/devices/dax0.1/")).count("mapping0") == 1
        ext = sorted(x for x in b.listdir("/sys/bus/cxl/devices/dax_region0") if x.startswith("extent"))
        assert len(ext) == 2
        assert b.read(f"/sys/bus/cxl/devices/dax_region0/{ext[1]}/offset").strip() == hex(4 * G)
        assert b.read(f"/sys/bus/cxl/devices/dax_region0/{ext[1]}/uuid").strip() == str(tag("db"))
        rc, out = tool(m, "cxl", "list", "-N")
        js = __import__("json").loads(out)
        region = next(x for x in js if "regions" in x)["regions"][0]
        assert region["extents"] == [{"offset": 0, "length": G, "uuid": str(tag("db"))},
                                     {"offset": 4 * G, "length": G, "uuid": str(tag("db"))}]
        iomem = b.read("/proc/iomem")
        assert iomem.count("dax0.1") == 2                       # a sibling resource per chunk
    assert dev().access_ranges(0) == [(0, G), (4 * G, 5 * G)]


def test_more_chain_surfaces_only_when_closed_and_times_out(r):
    st = rack.appliance_store("r", "pool0")
    t = tag("chain")
    with st.transaction() as d:
        fm_exts = d.initiate_add(D.FmInitiateDcAdd(0, 0, 0, G, t.bytes))
        # keep only the first record, with More set: the chain stays open
        h = d.heads[0]
        rec = D.DcEventRecord.decode(bytes.fromhex(h.events[0]["record"]))
        h.events[0]["record"] = D.DcEventRecord(rec.event_type, rec.extent, rec.handle, rec.timestamp, 0, 0,
                                                more=True).encode().hex()
    with host() as m:
        assert dcd.allocations(m.kernel) == []                       # staged, not surfaced
        s = dcd.memdev_state(m.kernel, m.kernel.cxl.memdevs[0])
        assert len(s.pending) == 1
        m.kernel.clock_ns += 21 * 10**9                              # 20 s later (simulated)
        m.kernel.dirty = True
    with host() as m:
        assert dcd.allocations(m.kernel) == []
        assert any("timed out" in x for x in m.kernel.dmesg)
    assert dev().extents == [] and dev().free_bytes() == 8 * G       # empty response: back to the pool
    del fm_exts


def test_at_most_100_pending_extents():
    make_rack("big", hosts=1, cap="32G")
    t = tag("many")
    with rack.appliance_store("big", "pool0").transaction() as d:
        h = d.heads[0]
        for i in range(105):             # a misbehaving device: 105 records in one open chain
            e = D.DcExtent(i * M256, M256, t.bytes, i)
            h.events.append({"handle": i + 1, "record": D.DcEventRecord(0, e, i + 1, more=True).encode().hex()})
    with host("big/host0") as m:
        s = dcd.memdev_state(m.kernel, m.kernel.cxl.memdevs[0])
        assert len(s.pending) == 100
        assert sum("more than 100 pending" in x for x in m.kernel.dmesg) == 5


def test_untrusted_extents_and_duplicate_tags_are_rejected(r):
    fm_add("r", 0, G, "a")
    with host():
        pass
    st = rack.appliance_store("r", "pool0")
    with st.transaction() as d:        # a second allocation with the same tag on the same host
        h = d.heads[0]
        e = D.DcExtent(6 * G, G, tag("a").bytes, 0)
        h.events.append({"handle": 50, "record": D.DcEventRecord(0, e, 50).encode().hex()})
        bad = D.DcExtent(9 * G, G, tag("b").bytes, 0)                  # outside the partition
        h.events.append({"handle": 51, "record": D.DcEventRecord(0, bad, 51).encode().hex()})
    with host() as m:
        log = "\n".join(m.kernel.dmesg)
        assert "tag already in use" in log and "outside the DC partition" in log
        assert len(dcd.allocations(m.kernel)) == 1


def test_release_offlines_system_ram_and_refuses_on_kernel_pages(r):
    fm_add("r", 0, G, "db")
    with host() as m:
        assert tool(m, "daxctl", "reconfigure-device", "--mode=system-ram", "--no-movable", "dax0.1")[0] == 0
        a = m.kernel.mm.pages.alloc("kernel", (512 << 20) >> 12, nid=1, label="pinned")
        assert any(blk.kernel for blk in m.kernel.mm.blocks.values() if blk.nid == 1)
        m.kernel.dirty = True
        aid = a.id
    st = rack.appliance_store("r", "pool0")
    with st.transaction() as d:
        d.initiate_release(D.FmInitiateDcRelease(0, 0, 0, G, tag("db").bytes))
    with host() as m:
        assert any("refused" in x for x in m.kernel.dmesg)
        assert len(dcd.allocations(m.kernel)) == 1
        assert m.kernel.dax.find("dax0.1").driver.name == "kmem"       # still System RAM
        m.kernel.mm.pages.free(aid)
        m.kernel.dirty = True
    assert dev().access_ranges(0) == [(0, G)]
    with st.transaction() as d:
        d.cancel_release(0, str(tag("db")))
        d.initiate_release(D.FmInitiateDcRelease(0, 0, 0, G, tag("db").bytes))
    with host() as m:
        assert dcd.allocations(m.kernel) == []
        assert m.kernel.dax.find("dax0.1") is None
        assert "System RAM (kmem)" not in m.backend().read("/proc/iomem")
    assert dev().extents == [] and dev().scrubbed_bytes == G


def test_reboot_rereads_accepted_extents_without_a_new_response(r):
    fm_add("r", 0, G, "keep")
    with host() as m:
        pass
    gen = dev().heads[0].generation
    with host() as m:
        m.reboot()
        m.kernel.dirty = True
    with host() as m:
        al = dcd.allocations(m.kernel)
        assert [a["tag"] for a in al] == [str(tag("keep"))]
    assert dev().heads[0].generation == gen                  # no re-acknowledgement


def test_shared_extent_same_bytes_through_each_hosts_hpa_and_access_check(r):
    t = tag("kv")
    fm_add("r", 0, G, "kv", shared=True)
    with host("r/host0") as m:
        hpa0 = dcd.allocations(m.kernel)[0]["hpa"]
        HpaSpace(m.platform, m.media).write(hpa0 + 4096, b"written by host0")
    with rack.appliance_store("r", "pool0").transaction() as d:
        d.initiate_add(D.FmInitiateDcAdd(1, D.SelectionPolicy.ENABLE_SHARED_ACCESS, 0, G, t.bytes), shared=True)
    with host("r/host1") as m:
        hpa1 = dcd.allocations(m.kernel)[0]["hpa"]
        space = HpaSpace(m.platform, m.media)
        assert space.read(hpa1 + 4096, 16) == b"written by host0"
        lines = space.gather(np.array([hpa1 + 4096, hpa1 + 2 * G - 64], dtype=np.uint64))
        assert bytes(lines[0][:16]) == b"written by host0"
        assert (lines[1] == 0xFF).all()                      # outside what host1 accepted
        space.write(hpa1 + G + 4096, b"stray write")        # dropped, counted
    assert dev().heads[1].denied_reads == 1 and dev().heads[1].denied_writes == 1
    with rack.appliance_store("r", "pool0").transaction() as d:      # forced release from host0
        d.initiate_release(D.FmInitiateDcRelease(0, D.RELEASE_FORCED, 0, G, t.bytes))
    with host("r/host0") as m:
        assert HpaSpace(m.platform, m.media).read(hpa0 + 4096, 4) == b"\xff" * 4
        assert any("forced release" in x for x in m.kernel.dmesg)


def test_no_coherence_between_hosts_unflushed_stores_are_not_seen(r):
    """What a host must flush: a store still in host0's CPU cache is not seen
    by host1; after persist() (clwb + sfence) it is; a power failure of host0
    loses what it never flushed, from the shared media too."""
    from cxlemu.data import dax_mapping as dm
    t = tag("kv")
    fm_add("r", 0, G, "kv", shared=True)
    with host("r/host0"):
        pass
    with rack.appliance_store("r", "pool0").transaction() as d:
        d.initiate_add(D.FmInitiateDcAdd(1, D.SelectionPolicy.ENABLE_SHARED_ACCESS, 0, G, t.bytes), shared=True)
    with host("r/host1") as m:
        hpa1 = dcd.allocations(m.kernel)[0]["hpa"]
    with host("r/host0") as m:
        with dm.DaxDevice.open(m.backend(), "dax0.1").mmap(2 << 20) as mp:
            mp.array[0:6] = np.frombuffer(b"dirty!", dtype=np.uint8)        # no flush
            mp.array[4096:4102] = np.frombuffer(b"clean!", dtype=np.uint8)
            mp.persist(4096, 64)                                            # clwb + sfence
    with host("r/host1") as m:
        sp = HpaSpace(m.platform, m.media)
        assert sp.read(hpa1, 6) == bytes(6)                   # still in host0's cache
        assert sp.read(hpa1 + 4096, 6) == b"clean!"           # written back: visible
        lines = sp.gather(np.array([hpa1, hpa1 + 4096], dtype=np.uint64))
        assert bytes(lines[0][:6]) == bytes(6) and bytes(lines[1][:6]) == b"clean!"
    with host("r/host0") as m:
        assert HpaSpace(m.platform, m.media).read(dcd.allocations(m.kernel)[0]["hpa"], 6) == b"dirty!"
        m.reboot(power_loss=True)                              # host0 loses its caches
        m.kernel.dirty = True
    with host("r/host1") as m:
        sp = HpaSpace(m.platform, m.media)
        assert sp.read(hpa1, 6) == bytes(6) and sp.read(hpa1 + 4096, 6) == b"clean!"
