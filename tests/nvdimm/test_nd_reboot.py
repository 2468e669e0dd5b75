"""Issue 4 end to end on stored machines: the seed's walkthrough, data and
namespace surviving a reboot, power failure with and without eADR, the
kernel 6.1 profile, region-label assembly and kill -9 during create."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pmem_support import MiB, ndctl, pmem_region, topo
from cxlemu.data.dax_mapping import CACHE_LINE
from cxlemu.machine.dax import open_dax
from cxlemu.kernel.nvdimm import label as lbl
from cxlemu.machine.store import Store

REGION_UUID = "9a9b1c1d-0000-4000-8000-00000000cafe"


def make(name="pm", **boot):
    st = Store()
    st.create(name, topo(**boot))
    return st


def walkthrough(st, name="pm"):
    """cxl create-region (raw sysfs), ndctl destroy --force all, enable-region,
    create-namespace --mode=dax -f: the seed's commands."""
    with st.open(name) as m:
        b = m.backend()
        pmem_region(b, uuid=REGION_UUID)
        assert ndctl(b, "destroy-namespace", "--force", "all")[0] == 0
        assert ndctl(b, "enable-region", "region0")[0] == 0
        rc, out, err = ndctl(b, "create-namespace", "--mode=dax", "-f")
        assert rc == 0, err
        return json.loads(out)


def recreate_region(st, name="pm"):
    with st.open(name) as m:
        b = m.backend()
        pmem_region(b, uuid=REGION_UUID)
        rc, out, err = ndctl(b, "list", "-N", "-v")
        return json.loads(out) if out else [], m.kernel.dmesg[:]


def pattern(n, seed):
    return np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8)


def test_walkthrough_data_and_namespace_survive_reboot():
    st = make()
    ns = walkthrough(st)
    assert ns["size"] == 502 * MiB and ns["daxregion"]["devices"][0]["chardev"] == "dax0.0"
    data = pattern(4 * MiB, 1)
    with open_dax("pm", "/dev/dax0.0", store=st) as mp:
        assert len(mp) == 502 * MiB
        mp.array[:data.size] = data
        mp.array[100 * MiB:100 * MiB + 13] = np.frombuffer(b"Hello, CXL!\n\0", np.uint8)
        mp.persist(0, data.size)
        # unflushed stores are visible to later readers before any reset
    with open_dax("pm", "dax0.0", store=st) as mp:
        assert bytes(mp.buffer[100 * MiB:100 * MiB + 11]) == b"Hello, CXL!"
    with st.open("pm") as m:
        m.reboot()
        assert not m.kernel.cxl.regions.all()          # decoders reset, region gone
        b = m.backend()
        assert not b.exists("/dev/dax0.0")
    (found,), _ = recreate_region(st)
    assert (found["dev"], found["mode"], found["uuid"], found["raw_uuid"]) == \
        ("namespace0.0", "devdax", ns["uuid"], found["raw_uuid"])
    assert found["daxregion"]["devices"][0]["chardev"] == "dax0.0"
    with open_dax("pm", store=st) as mp:
        assert np.array_equal(mp.array[:data.size], data)
        # an orderly reboot wrote the unflushed line back
        assert bytes(mp.buffer[100 * MiB:100 * MiB + 11]) == b"Hello, CXL!"


@pytest.mark.parametrize("eadr", [False, True])
def test_power_failure_loses_exactly_the_unflushed_lines(eadr):
    st = make(persistent_cpu_caches=eadr)
    walkthrough(st)
    n = 1 * MiB
    old = pattern(n, 2)
    with open_dax("pm", store=st) as mp:
        mp.array[:n] = old
        mp.flush()
    new = pattern(n, 3)
    flushed = [(0, 4096), (8192, 100), (70000, 1)]        # persist() ranges, any alignment
    with open_dax("pm", store=st) as mp:
        mp.array[:n] = new
        for off, length in flushed:
            mp.persist(off, length)
    with st.open("pm") as m:
        m.reboot(power_loss=True)
    recreate_region(st)
    expect = old.copy()
    for off, length in flushed:                            # whole cache lines are written back
        lo = off - off % CACHE_LINE
        hi = -(-(off + length) // CACHE_LINE) * CACHE_LINE
        expect[lo:hi] = new[lo:hi]
    with open_dax("pm", store=st) as mp:
        got = mp.array[:n].copy()
    assert np.array_equal(got, new if eadr else expect)
    if not eadr:
        assert not np.array_equal(got, new)


def test_power_failure_keeps_namespace_and_info_block():
    """Labels and the devdax info block are written by the kernel with
    flushes: a power failure right after create-namespace keeps the mode."""
    st = make()
    ns = walkthrough(st)
    with st.open("pm") as m:
        m.reboot(power_loss=True)
    (found,), _ = recreate_region(st)
    assert (found["mode"], found["uuid"], found["size"]) == ("devdax", ns["uuid"], 502 * MiB)


def test_kernel_61_refuses_the_region_after_reboot():
    st = make(kernel="6.1")
    walkthrough(st)
    with st.open("pm") as m:
        m.reboot()
    found, dmesg = recreate_region(st)
    assert found == []
    assert any("region0: invalid interleave-set-cookie" in line for line in dmesg)
    with st.open("pm") as m:
        b = m.backend()
        assert "driver" not in b.listdir("/sys/bus/nd/devices/region0")
        rc, out, _ = ndctl(b, "list", "-Ri")
        assert json.loads(out)[0]["state"] == "disabled"


def test_region_label_assembly_at_boot():
    st = make(assemble_from_region_labels=True)
    ns = walkthrough(st)
    with st.open("pm") as m:
        labels = [x for _, x in lbl.LabelArea(bytearray(m.kernel.cxl.memdevs[0].hw.lsa),
                                              label_size=256, cxl=True).labels()]
        assert any(isinstance(x, lbl.RegionLabel) for x in labels)
        m.reboot()
        b = m.backend()
        rc, out, _ = ndctl(b, "list", "-N")
        (found,) = json.loads(out)
        assert (found["mode"], found["uuid"]) == ("devdax", ns["uuid"])
        assert b.exists("/dev/dax0.0")


def _cxlemu(*argv, env=None):
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "cxlemu", *argv], capture_output=True, text=True,
                          env=e, timeout=60)


@pytest.mark.parametrize("after", [3, 6])
def test_kill_9_during_create_namespace(after):
    """SIGKILL after N label writes: nothing of the command is stored (the
    machine state is written at the end of a command), the LSA has one
    current index, and the machine keeps working."""
    st = make()
    with st.open("pm") as m:
        pmem_region(m.backend(), uuid=REGION_UUID)
    p = _cxlemu("exec", "pm", "--", "ndctl", "create-namespace", "-m", "devdax",
                env={"CXLEMU_FAULT_AFTER_LSA_WRITES": str(after)})
    assert p.returncode == -9, p.stderr
    with st.open("pm") as m:
        raw = bytes(m.kernel.cxl.memdevs[0].hw.lsa)
        valid = [lbl.validate_index(raw, i, 256) for i in (0, 1)]
        if all(valid):
            area = lbl.LabelArea(bytearray(raw), label_size=256, cxl=True)
            assert area.index_block(0).seq != area.index_block(1).seq
        rc, out, err = ndctl(m.backend(), "create-namespace", "-m", "devdax")
        assert rc == 0, err
