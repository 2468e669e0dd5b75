"""Device-DAX mappings: mmap rules of drivers/dax/device.c, loads and stores
at the translated DPA, the CPU-cache journal, and dd's DaxFile."""

import errno
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "nvdimm"))

from pmem_support import MiB, backend, fabric, ndctl, pmem_region  # noqa: E402
from cxlemu.data import dax_mapping as dm  # noqa: E402


def devdax(tmp_path, text=None, size="64M"):
    b = backend(tmp_path, text)
    pmem_region(b)
    rc, _, err = ndctl(b, "create-namespace", "-m", "devdax", "-s", size)
    assert rc == 0, err
    return b


@pytest.fixture
def b(tmp_path):
    return devdax(tmp_path)


def test_mmap_rules(b):
    d = dm.DaxDevice.open(b, "/dev/dax0.0")
    assert (d.name, d.size, d.align) == ("dax0.0", 62 * MiB, 2 * MiB)
    for kw in ({"length": MiB}, {"length": 2 * MiB, "offset": MiB}, {"length": 2 * MiB, "offset": 4096}):
        with pytest.raises(OSError) as e:
            d.mmap(**kw)
        assert e.value.errno == errno.EINVAL
    with pytest.raises(OSError) as e:
        d.mmap(2 * MiB, shared=False)
    assert e.value.errno == errno.EINVAL
    with pytest.raises(OSError) as e:
        d.mmap(64 * MiB)
    assert e.value.errno == errno.ENXIO
    with pytest.raises(OSError) as e:
        dm.DaxDevice.open(b, "/dev/dax9.9")
    assert e.value.errno == errno.ENOENT


def test_stores_reach_media_at_translated_dpa(b):
    d = dm.DaxDevice.open(b, "dax0.0")
    hw = b.kernel.cxl.memdevs[0].hw
    hpa = d.ranges[0].hpa
    with d.mmap(4 * MiB, 2 * MiB) as mp:
        mp.buffer[0:5] = b"hello"
        arr = np.frombuffer(mp.buffer, dtype=np.uint32)
        arr[1024] = 0xDEADBEEF
        mp.persist(0, 8192)
    media = b.machine.media.array(hw)
    # 1-way region over DPA 0: DPA = HPA - region start; the 64 MiB namespace's
    # data starts 2 MiB in (8K + 64 * 16382 struct pages, 2 MiB aligned)
    region_hpa = int(b.read("/sys/bus/cxl/devices/region0/resource"), 0)
    assert hpa - region_hpa == 2 * MiB
    off = hpa - region_hpa + 2 * MiB               # the mapping's offset
    assert bytes(media[off:off + 5]) == b"hello"
    assert bytes(media[off + 4096:off + 4100]) == (0xDEADBEEF).to_bytes(4, "little")


def test_unflushed_stores_are_visible_and_journalled(b, tmp_path):
    d = dm.DaxDevice.open(b, "dax0.0")
    with d.mmap(2 * MiB) as mp:
        mp.array[:] = 7
        mp.persist(0, 64)
    j = dm.CpuCacheJournal.load(tmp_path / dm.JOURNAL_NAME)
    assert j.dirty_bytes() == 2 * MiB - 64
    with d.mmap(2 * MiB) as mp:
        assert (mp.array == 7).all()
    f = dm.DaxFile.open(b, "/dev/dax0.0", write=False)
    assert f.pread(16, 0) == bytes([7]) * 16
    dm.drop_journal(b.machine)                              # power loss without eADR
    with d.mmap(2 * MiB) as mp:
        assert (mp.array[:64] == 7).all() and (mp.array[64:] == 0).all()


def test_flush_cleans_lines_dirtied_by_others(b, tmp_path):
    d = dm.DaxDevice.open(b, "dax0.0")
    with d.mmap(2 * MiB) as mp:
        mp.array[:4096] = 1
    with d.mmap(2 * MiB) as mp:
        mp.flush()                                          # clwb cleans whoever dirtied the line
    assert not (tmp_path / dm.JOURNAL_NAME).exists()
    dm.drop_journal(b.machine)
    with d.mmap(2 * MiB) as mp:
        assert (mp.array[:4096] == 1).all()


def test_closed_mapping(b):
    mp = dm.DaxDevice.open(b, "dax0.0").mmap(2 * MiB)
    mp.close()
    with pytest.raises(ValueError):
        mp.persist(0, 1)
    mp.close()


def test_persist_outside_mapping(b):
    with dm.DaxDevice.open(b, "dax0.0").mmap(2 * MiB) as mp:
        with pytest.raises(OSError) as e:
            mp.persist(2 * MiB - 1, 2)
        assert e.value.errno == errno.EFAULT


def test_two_way_interleave_uses_both_devices(tmp_path):
    b = devdax(tmp_path, fabric(2), size="128M")
    d = dm.DaxDevice.open(b, "dax0.0")
    data = np.random.default_rng(5).integers(0, 256, 4 * MiB, dtype=np.uint8)
    with d.mmap(4 * MiB) as mp:
        assert mp._direct is None                           # interleaved: buffer path
        mp.array[:] = data
        mp.flush()
    f = dm.DaxFile.open(b, "/dev/dax0.0", write=False)
    assert f.pread(4 * MiB, 0) == data.tobytes()
    m0, m1 = (b.machine.media.array(m.hw) for m in b.kernel.cxl.memdevs)
    gran = 4096
    # the dax range starts on an interleave boundary; chunk i is on device i % 2
    region_hpa = int(b.read("/sys/bus/cxl/devices/region0/resource"), 0)
    rel = d.ranges[0].hpa - region_hpa
    assert rel % (2 * gran) == 0
    for i in range(8):
        dev = m0 if i % 2 == 0 else m1
        dpa = (rel // 2) + (i // 2) * gran
        assert bytes(dev[dpa:dpa + gran]) == data[i * gran:(i + 1) * gran].tobytes()


def test_daxfile_writes_are_cached_stores(b):
    f = dm.DaxFile.open(b, "/dev/dax0.0", write=True)
    assert f.pwrite(b"x" * 100, 4096) == 100
    f.close()
    g = dm.DaxFile.open(b, "/dev/dax0.0", write=False)
    assert g.pread(100, 4096) == b"x" * 100
    dm.drop_journal(b.machine)
    assert g.pread(100, 4096) == bytes(100)
    with pytest.raises(OSError) as e:
        f.pwrite(b"y", 62 * MiB)
    assert e.value.errno == errno.ENOSPC


# ---- the journal as an undo log, against a byte-level model -------------------------------------

@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 40), st.integers(1, 12)), max_size=25))
def test_journal_model(tmp_path_factory, ops):
    j = dm.CpuCacheJournal(tmp_path_factory.mktemp("j") / "cpu_cache")
    media = np.arange(64 * 64, dtype=np.uint32).astype(np.uint8)
    model: dict[int, int] = {}                  # byte address -> value when last durable
    for dirty, line, n in ops:
        lo, hi = line * 64, min(64 * 64, (line + n) * 64)
        if dirty:
            old = media[lo:hi].tobytes()
            j.add_dirty("f", lo, old)
            for a in range(lo, hi):
                model.setdefault(a, media[a])
            media[lo:hi] += 1                   # the store
        else:
            j.clean("f", lo, hi - lo)
            for a in range(lo, hi):
                model.pop(a, None)
    exts = j.extents.get("f", [])
    assert all(s + len(x) <= t for (s, x), (t, _) in zip(exts, exts[1:]))
    got = {s + i: v for s, x in exts for i, v in enumerate(x)}
    assert got == model
    assert j.dirty_bytes() == len(model)
    j.save()
    assert dm.CpuCacheJournal.load(j.path).extents == ({"f": exts} if exts else {})


@pytest.mark.parametrize("populate", [False, True])
def test_dirty_detection_lazy_or_populated(b, tmp_path, populate):
    d = dm.DaxDevice.open(b, "dax0.0")
    with d.mmap(4 * MiB, populate=populate) as mp:
        mp.array[70:75] = 9                       # line 1
        mp.array[3 * MiB + 640] = 1               # one line on another page
    j = dm.CpuCacheJournal.load(tmp_path / dm.JOURNAL_NAME)
    assert j.dirty_bytes() == 2 * dm.CACHE_LINE


def test_diff_lines_matches_bytewise():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (1 << 22) + 4096, dtype=np.uint8)
    b = a.copy()
    idx = rng.choice(a.size, 50, replace=False)
    b[idx] ^= 1
    expect = np.zeros(a.size // 64, bool)
    expect[idx // 64] = True
    assert np.array_equal(dm.diff_lines(a, b), expect)
