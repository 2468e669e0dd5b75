"""The seeds' RAS flows end to end, through the ``cxlemu`` CLI and the
machine's tools, on machines that persist between commands:

* seed 001 (persistent memory, biscuitos-b): pmem region, devdax namespace,
  poison injected through ``cxl inject-media-poison`` and debugfs, listed by
  memdev and region (DPA, HPA offset, source), shown as bad blocks by
  ``ndctl list --media-errors``, consumed through the dax mapping (machine
  check, HardwareCorrupted), cleared with ``ndctl clear-errors`` and ``cxl
  clear-media-poison``, and everything watched by ``cxl monitor``;
* seed 003 (the real system's BIOS-committed RAM region onlined as System
  RAM): a media error under a task's pages, the task touches them,
  memory_failure kills it (SIGBUS), HardwareCorrupted and the node's
  memory_failure counters go up, offlining skips the page, and the poison
  is cleared again.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from cxlemu.cli.main import main
from cxlemu.machine.store import Store


def ex(capsys, name, *argv):
    rc = main(["exec", name, "--", *argv])
    o = capsys.readouterr()
    return rc, o.out, o.err


def js(out):
    return json.loads(out) if out.strip() else []


def hwc(capsys, name) -> int:
    rc, out, _ = ex(capsys, name, "cat", "/proc/meminfo")
    return int(next(x for x in out.splitlines() if x.startswith("HardwareCorrupted")).split()[1])


def test_seed_001_pmem_flow(capsys):
    name = "box"
    assert main(["create", name, "-t", "biscuitos-b"]) == 0
    capsys.readouterr()
    ex(capsys, name, "cxl", "monitor")                                 # start watching
    rc, out, err = ex(capsys, name, "cxl", "create-region", "-m", "mem0", "-d", "decoder0.0", "-t", "pmem")
    assert rc == 0, err
    region = js(out)["region"]
    rc, out, err = ex(capsys, name, "ndctl", "create-namespace", "--mode=devdax", "-s", "64M")
    assert rc == 0, err
    chardev = js(out)["daxregion"]["devices"][0]["chardev"]
    # place the poison inside the dax device's data
    with Store().open(name) as m:
        from cxlemu.data.dax_mapping import DaxDevice
        d = DaxDevice.open(m.backend(), chardev)
        space = m.backend().hpa_space()
        hw, dpa = space.locate(d.hpa_of(0x3000)[0])
        region_start = int(m.backend().read(f"/sys/bus/cxl/devices/{region}/resource"), 0)
        hpa = d.hpa_of(0x3000)[0]
    rc, out, err = ex(capsys, name, "cxl", "inject-media-poison", "mem0", "-a", hex(dpa))
    assert (rc, out) == (0, f"poison inject at mem0:{dpa:#x}\n")
    rc, out, _ = ex(capsys, name, "cxl", "list", "-L", "-m", "mem0")
    assert js(out)[0]["media_errors"] == [{"offset": dpa, "length": 64, "source": "Injected"}]
    rc, out, _ = ex(capsys, name, "cxl", "list", "-L", "-r", region)
    assert js(out)[0]["media_errors"] == [{"offset": hpa - region_start, "length": 64, "source": "Injected"}]
    rc, out, _ = ex(capsys, name, "ndctl", "list", "--media-errors")
    ns = js(out)[0]
    assert ns["badblock_count"] == 1 and ns["badblocks"] == [{"offset": 0x3000 // 512, "length": 1}]
    # a program loads the poisoned line through its mapping: a machine check
    from cxlemu.data.dax_mapping import MachineCheck
    from cxlemu.machine.dax import open_dax
    with open_dax(name, chardev, length=2 << 20) as mp:
        assert mp.load(0, 16) == bytes(16)
        with pytest.raises(MachineCheck) as e:
            mp.load(0x3000 - 8, 64)
        assert (e.value.offset, e.value.hpa, e.value.dpa) == (0x3000, hpa, dpa)
    assert hwc(capsys, name) == 4
    rc, out, err = ex(capsys, name, "dd", f"if=/dev/{chardev}", "of=/dev/null", "bs=4096", "count=4")
    assert rc == 1 and "Input/output error" in err
    # clear through libnvdimm (extension) and check everything is clean again
    rc, out, err = ex(capsys, name, "ndctl", "clear-errors", "namespace0.0")
    assert rc == 0 and "cleared 1 namespace" in err, err
    rc, out, _ = ex(capsys, name, "cxl", "list", "-L", "-m", "mem0")
    assert "media_errors" not in js(out)[0]
    rc, out, err = ex(capsys, name, "dd", f"if=/dev/{chardev}", "of=/dev/null", "bs=4096", "count=4")
    assert rc == 0, err
    # the monitor saw the inject, the poison-creation event, the listings and the clear
    rc, out, err = ex(capsys, name, "cxl", "monitor")
    ev = [json.loads(x) for x in err.splitlines()]
    kinds = [(e["event"], e.get("trace_type")) for e in ev]
    assert ("cxl_poison", 1) in kinds and ("cxl_poison", 0) in kinds and ("cxl_general_media", None) in kinds
    # hardware side: a media error on its own, reported and shown
    assert main(["fault", name, "mem0", "--media-error", hex(dpa + 0x1000)]) == 0
    capsys.readouterr()
    rc, out, _ = ex(capsys, name, "cxl", "list", "-L", "-m", "mem0")
    assert js(out)[0]["media_errors"] == [{"offset": dpa + 0x1000, "length": 64, "source": "Internal"}]
    rc, out, err = ex(capsys, name, "cxl", "clear-media-poison", "mem0", "-a", hex(dpa + 0x1000))
    assert rc == 0
    rc, out, err = ex(capsys, name, "cxl", "monitor")
    assert [json.loads(x)["event"] for x in err.splitlines()][0] == "cxl_general_media"


def test_seed_003_system_ram_flow(capsys):
    name = "s3"
    assert main(["create", name, "-t", "seed-003-window"]) == 0
    capsys.readouterr()
    rc, out, err = ex(capsys, name, "daxctl", "online-memory", "dax0.0")
    assert rc == 0, err
    with Store().open(name) as m:
        k = m.kernel
        mm = k.mm
        node = next(b.nid for b in mm.blocks.values() if not b.early and b.online)
        a = mm.pages.alloc("user", 4096, node, "kv")                  # a task's 16 MiB on the CXL node
        k.dirty = True
        pfns = mm.failure.alloc_pages(a.id)
        space = m.backend().hpa_space()
        victim = int(pfns[1000]) << 12
        hw, dpa = space.locate(victim + 0x40)
        aid = a.id
    assert main(["fault", name, "mem0", "--media-error", hex(dpa)]) == 0
    capsys.readouterr()
    rc, out, _ = ex(capsys, name, "cxl", "list", "-L", "-r", "region0")
    me = js(out)[0]["media_errors"]
    assert me == [{"offset": victim + 0x40 - 0xC050000000, "length": 64, "source": "Internal"}]
    # the task reads its memory: the poisoned line raises an MCE -> memory_failure
    from cxlemu.data.ras import cpu_access
    from cxlemu.kernel.mm.memory_failure import BUS_MCEERR_AR, Mapper
    with Store().open(name) as m:
        k = m.kernel
        space = m.backend().hpa_space()
        lines = (pfns.astype(np.uint64)[:, None] << np.uint64(12)) + np.arange(0, 4096, 64, dtype=np.uint64)
        outs = cpu_access(k, space, lines.reshape(-1), Mapper(0, "kv", owner=aid))
        assert len(outs) == 1 and outs[0].type_name == "dirty LRU page"
        assert [(x.comm, x.si_code) for x in outs[0].kills] == [("kv", BUS_MCEERR_AR)]
        assert aid not in k.mm.pages.allocs                          # the task is gone, its memory freed
    assert hwc(capsys, name) == 4
    rc, out, _ = ex(capsys, name, "cat", f"/sys/devices/system/node/node{node}/memory_failure/recovered")
    assert out == "1\n"
    rc, out, _ = ex(capsys, name, "cat", "/sys/kernel/tracing/available_events")
    assert "ras:memory_failure_event" in out
    assert main(["dmesg", name]) == 0
    log = capsys.readouterr().out
    assert f"Memory failure: {victim >> 12:#x}: Sending SIGBUS to kv:0" in log
    assert f"Memory failure: {victim >> 12:#x}: recovery action for dirty LRU page: Recovered" in log
    # the block holding the page can still go offline (HWPoison pages are skipped)
    with Store().open(name) as m:
        bs = m.kernel.mm.block_size
        mem = f"memory{victim // bs}"
    rc, out, err = ex(capsys, name, "cat", f"/sys/devices/system/memory/{mem}/state")
    assert out == "online\n"
    with Store().open(name) as m:
        m.backend().write(f"/sys/devices/system/memory/{mem}/state", "offline")
        assert m.kernel.mm.blocks[victim // bs].state == "offline"
    # the device still lists the error until it is cleared
    rc, out, err = ex(capsys, name, "cxl", "clear-media-poison", "mem0", "-a", hex(dpa))
    assert rc == 0
    rc, out, _ = ex(capsys, name, "cxl", "list", "-L", "-r", "region0")
    assert "media_errors" not in js(out)[0]
