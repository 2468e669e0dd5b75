"""machine/fsck.py: clean on every preset and after real operations, and it
finds each kind of damage."""

from __future__ import annotations

import io

import pytest

from cxlemu.kernel.resource import Resource
from cxlemu.machine.fsck import check
from cxlemu.tools.runner import run_tool
from cxltest_support import boot


def _made():
    b = boot("cxl-test")
    for args in (["cxl", "create-region", "-d", "decoder0.1", "-m", "mem0", "mem1", "-w", "2", "-g", "4096", "-t",
                  "ram", "-s", "512M"],
                 ["daxctl", "reconfigure-device", "--mode=system-ram", "dax1.0"],
                 ["cxl", "reserve-dpa", "-t", "pmem", "-s", "256M", "mem3"]):
        assert run_tool(args[0], args[1:], b, stdout=io.StringIO(), stderr=io.StringIO()) == 0
    return b


@pytest.mark.parametrize("preset", ["biscuitos-a", "biscuitos-b", "biscuitos-c", "cxl-test", "cxl-test-xor",
                                    "seed-003-window"])
def test_presets_are_clean(preset):
    assert check(boot(preset).kernel) == []


def test_operations_leave_it_clean():
    assert check(_made().kernel) == []


def _region(k):
    return next(r for r in k.cxl.regions.all() if r.name == "region1")


def test_finds_a_decoder_the_hardware_does_not_commit():
    b = _made()
    t = _region(b.kernel).targets[0]
    t.port.hdm.decoders[t.hw_index].committed = False
    assert any("hardware says not committed" in p for p in check(b.kernel))


def test_finds_a_region_missing_a_target():
    b = _made()
    r = _region(b.kernel)
    r.targets[1] = None
    probs = check(b.kernel)
    assert any("1 of 2 targets" in p for p in probs)
    assert any("not one of its targets" in p for p in probs)


def test_finds_overlapping_dpa_and_iomem():
    b = _made()
    k = b.kernel
    md = next(m for m in k.cxl.memdevs if m.name == "mem3")
    d0 = next(d for d in md.endpoint.decoders if d.dpa_start is not None)
    d1 = next(d for d in md.endpoint.decoders if d.dpa_start is None)
    d1.mode, d1.dpa_start, d1.dpa_len = d0.mode, d0.dpa_start, d0.dpa_len
    k.iomem.children.append(Resource(k.iomem.children[0].start, k.iomem.children[0].end, "bogus", parent=k.iomem))
    probs = check(k)
    assert any("DPA ranges overlap" in p for p in probs)
    assert any("overlaps or precedes" in p for p in probs)


def test_finds_online_memory_outside_system_ram_and_broken_links():
    b = _made()
    k = b.kernel
    bs = k.mm.block_size
    res, blk = next((r, x) for _, r in k.iomem.walk() if r.name.startswith("System RAM (kmem)")
                    for x in k.mm.blocks.values() if x.state == "online" and r.start <= x.id * bs <= r.end)
    res.name = "Reserved"
    dev = next(iter(k.buses["cxl"].devices.values()))
    dev.registered = False
    probs = check(k)
    assert any(f"memory{blk.id}: online but not inside System RAM" in p for p in probs)
    assert any("not registered" in p for p in probs)
