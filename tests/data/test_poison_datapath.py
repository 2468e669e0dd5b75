"""Poison on the data path and in the reports, for every interleave the
region engine builds (modulo and XOR): every HPA ``cxl list -L -r`` reports
translates back, through the hardware's routing, to the injected DPA; a
read of that line fails (EIO), never returns the bytes under the poison;
a batch of lines is checked in one pass; a link that is down reads as
all-ones."""

from __future__ import annotations

import errno
import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from cxlemu.data.datapath import HpaSpace, PoisonError
from cxlemu.data.media import MediaStore
from cxlemu.hw import faults as F
from cxltest_support import boot_text, create_region, cxl, fabric_toml, run, xormaps_for

from test_placement import SHAPES, position_order


def build(tmp_path, ways, R, rps, sw, arith):
    gran = 256 if ways > 8 else 1024
    maps = xormaps_for(R, gran) if arith == "xor" else ()
    b = boot_text(fabric_toml(R, rps, sw, gran=gran, arithmetic=arith, xormaps=maps))
    k = b.kernel
    order = position_order(ways, R, rps, sw)
    made = create_region(b, "decoder0.0", [f"mem{i}" for i in order], gran=gran)
    region = next(x for x in k.cxl.regions.all() if x.name == made.name)
    return b, region, HpaSpace(k.platform, MediaStore(tmp_path))


@pytest.mark.parametrize("arith", ["modulo", "xor"])
@pytest.mark.parametrize("ways,R,rps,sw", SHAPES)
def test_reported_hpa_translates_back_to_the_injected_dpa(tmp_path, ways, R, rps, sw, arith):
    b, region, hs = build(tmp_path, ways, R, rps, sw, arith)
    k = b.kernel
    rng = np.random.default_rng(ways * 31 + len(arith))
    members = [t for t in region.targets[:ways]]
    injected = {}
    for t in rng.choice(members, size=min(3, ways), replace=False):
        dpa = int(t.dpa_start + rng.integers(0, t.dpa_len // 64) * 64)
        b.write(f"/sys/kernel/debug/cxl/{t.memdev.name}/inject_poison", hex(dpa))
        injected[(t.memdev.hw.name, dpa)] = t
    rc, out, err = cxl(b, "list", "-L", "-r", region.name)
    assert rc == 0, err
    errors = json.loads(out)[0]["media_errors"]
    assert len(errors) == len(injected)
    seen = set()
    for e in errors:
        assert e["length"] == 64 and e["source"] == "Injected"
        hpa = region.res.start + e["offset"]
        hw, dpa = hs.locate(hpa)                              # the hardware's routing, not the kernel's math
        seen.add((hw.name, dpa))
        with pytest.raises(PoisonError) as ex:
            hs.read(hpa - 8, 64)                              # straddles the poisoned line
        assert ex.value.errno == errno.EIO and (ex.value.hpa, ex.value.device, ex.value.dpa) == (hpa, hw.name, dpa)
    assert seen == set(injected)
    # by memdev the offsets are the DPAs themselves
    for (name, dpa), t in injected.items():
        rc, out, _ = cxl(b, "list", "-L", "-m", t.memdev.name)
        assert dpa in [x["offset"] for x in json.loads(out)[0]["media_errors"]]
    del k


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(SHAPES), st.sampled_from(["modulo", "xor"]), st.data())
def test_gather_checked_flags_exactly_the_poisoned_lines(tmp_path, shape, arith, data):
    ways, R, rps, sw = shape
    b, region, hs = build(tmp_path, ways, R, rps, sw, arith)
    n = 4096
    lines = (region.res.start + np.arange(n, dtype=np.uint64) * np.uint64(64))
    hs.write(int(lines[0]), np.full(n * 64, 0xAB, dtype=np.uint8))
    picks = data.draw(st.lists(st.integers(0, n - 1), max_size=6, unique=True))
    for i in picks:
        hw, dpa = hs.locate(int(lines[i]))
        F.media_error(hw, dpa, 64)
    out, bad = hs.gather_checked(lines, 64)
    assert sorted(np.flatnonzero(bad).tolist()) == sorted(picks)
    assert np.all(out[bad] == 0) and np.all(out[~bad] == 0xAB)        # never the bytes under poison
    if picks:
        with pytest.raises(PoisonError):
            hs.gather(lines, 64)
        with pytest.raises(PoisonError):
            hs.read(int(lines[0]), n * 64)


def test_writes_land_but_the_line_stays_poisoned_until_cleared(tmp_path):
    b, region, hs = build(tmp_path, 2, 2, 1, 0, "modulo")
    b.kernel.media_store = hs.media           # what a machine attaches: Clear Poison writes the media
    hpa = region.res.start + 0x4000
    hw, dpa = hs.locate(hpa)
    F.media_error(hw, dpa, 64)
    hs.write(hpa, b"x" * 64)
    with pytest.raises(PoisonError):
        hs.read(hpa, 64)
    md = next(m for m in b.kernel.cxl.memdevs if m.hw is hw)
    b.write(f"/sys/kernel/debug/cxl/{md.name}/clear_poison", hex(dpa))
    assert hs.read(hpa, 64) == bytes(64)                           # Clear Poison wrote zeros


def test_link_down_reads_all_ones_and_drops_writes(tmp_path):
    b, region, hs = build(tmp_path, 2, 2, 1, 0, "modulo")
    base = region.res.start
    hs.write(base, np.arange(4096, dtype=np.uint8) % 251)
    dead = b.kernel.cxl.memdevs[0].hw
    F.link_down(dead)
    got = np.frombuffer(hs.read(base, 4096), dtype=np.uint8)
    routed = np.array([hs.locate(base + i)[0] is dead for i in range(0, 4096, 1024)])
    chunks = got.reshape(4, 1024)
    assert np.all(chunks[routed] == 0xFF) and not np.any(np.all(chunks[~routed] == 0xFF, axis=1))
    hs.write(base, bytes(4096))
    F.link_up(dead)


def test_dd_of_dev_mem_gets_eio(tmp_path):
    from cxlemu.sysfs.backend import EmulatorBackend
    b, region, hs = build(tmp_path, 1, 1, 1, 0, "modulo")

    class M:      # the part of a Machine EmulatorBackend.hpa_space needs
        media = hs.media
    eb = EmulatorBackend(b.kernel, M())
    hw, dpa = hs.locate(region.res.start + 8192)
    F.media_error(hw, dpa, 64)
    rc, out, err = run(eb, "dd", "if=/dev/mem", "of=/dev/null", "bs=4096", "count=4",
                       f"skip={region.res.start // 4096}")
    assert rc == 1 and "dd: error reading '/dev/mem': Input/output error" in err


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(SHAPES), st.sampled_from(["modulo", "xor"]), st.data())
def test_kernel_poisoned_pages_match_the_hardware_routing(tmp_path, shape, arith, data):
    """The pages the workload engine treats as poisoned (the kernel's reverse
    translation of every device's poison) are exactly the pages in which the
    data path, routing forwards, finds a poisoned line."""
    ways, R, rps, sw = shape
    b, region, hs = build(tmp_path, ways, R, rps, sw, arith)
    mf = b.kernel.mm.failure
    assert mf.media_poisoned_pfns().size == 0
    npages = 64
    lines = region.res.start + np.arange(npages * 64, dtype=np.uint64) * np.uint64(64)
    picks = data.draw(st.lists(st.integers(0, lines.size - 1), max_size=5, unique=True))
    lengths = data.draw(st.lists(st.sampled_from([64, 128, 4096, 8192]), min_size=len(picks),
                                 max_size=len(picks)))
    for i, n in zip(picks, lengths):
        hw, dpa = hs.locate(int(lines[i]))
        F.media_error(hw, dpa, n)               # may run past a granule: other HPA pages
    routed = hs.poisoned(lines, 64).reshape(npages, 64).any(axis=1)
    expect = set((int(region.res.start) >> 12) + np.flatnonzero(routed))
    got = set(mf.media_poisoned_pfns().tolist())
    inside = {p for p in got if region.res.start >> 12 <= p < (region.res.start >> 12) + npages}
    assert inside == expect
    # every page found anywhere holds a poisoned line (forward check of the whole set)
    for p in got:
        page_lines = np.uint64(p << 12) + np.arange(64, dtype=np.uint64) * np.uint64(64)
        assert hs.poisoned(page_lines, 64).any()
    assert mf.consumes_poison(np.array(sorted(expect) + [0], np.int64)).tolist() == [True] * len(expect) + [False]
    # a clear (Clear Poison over the whole device) drops the pages
    for md in b.kernel.cxl.memdevs:
        md.hw.poison.clear(0, md.hw.total_capacity, 0)
    assert mf.media_poisoned_pfns().size == 0
