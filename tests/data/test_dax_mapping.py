"""Device-DAX mappings: mmap rules of drivers/dax/device.c, loads and stores
that land on the media at the translated DPA, interleaved layouts (per
granule, per device extent, XOR), the CPU-cache model (store trap, flush,
power loss, reboot) against a byte-level model, and dd's DaxFile."""

import errno
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "nvdimm"))

from pmem_support import MiB, backend, fabric, ndctl, pmem_region  # noqa: E402
from cxltest_support import fabric_toml, xormaps_for  # noqa: E402
from cxlemu.data import cpucache  # noqa: E402
from cxlemu.data import dax_mapping as dm  # noqa: E402

TRAP = cpucache.trap_lib()
MODES = [pytest.param(True, id="trap", marks=pytest.mark.skipif(TRAP is None, reason="no compiled store trap")),
         pytest.param(False, id="eager")]


def devdax(tmp_path, text=None, size="64M", gran=4096):
    b = backend(tmp_path, text)
    pmem_region(b, gran=gran)
    rc, _, err = ndctl(b, "create-namespace", "-m", "devdax", "-s", size)
    assert rc == 0, err
    return b


def power_fail(b):
    cpucache.on_reset(b.machine, power_loss=True)


def reboot(b):
    cpucache.on_reset(b.machine, power_loss=False)


def dirty_bytes(b):
    return sum(n for runs in cpucache.dirty_report(b.machine).values() for _s, n in runs)


def mmap(b, length, offset=0, trap=True, **kw):
    d = dm.DaxDevice.open(b, "dax0.0")
    d.check_mmap(length, offset)
    return dm.DaxMapping(d.layout(offset, length), dev=d, trap=None if trap is False else True, **kw)


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


@pytest.mark.parametrize("trap", MODES)
def test_stores_are_stores_to_the_media(b, trap):
    """No private copy: a store is on the media file at once, before any
    flush or unmap, at DPA = the mapping's HPA translated."""
    d = dm.DaxDevice.open(b, "dax0.0")
    hw = b.kernel.cxl.memdevs[0].hw
    hpa = d.ranges[0].hpa
    media = b.machine.media.array(hw)
    with mmap(b, 4 * MiB, 2 * MiB, trap) as mp:
        assert mp.mode == "direct" and isinstance(mp.array, np.ndarray)
        mp.buffer[0:5] = b"hello"
        arr = np.frombuffer(mp.buffer, dtype=np.uint32)
        arr[1024] = 0xDEADBEEF
        # 1-way region over DPA 0: DPA = HPA - region start; the 64 MiB
        # namespace's data starts 2 MiB in (8K + 64 * 16382 struct pages)
        region_hpa = int(b.read("/sys/bus/cxl/devices/region0/resource"), 0)
        assert hpa - region_hpa == 2 * MiB
        off = hpa - region_hpa + 2 * MiB
        assert bytes(media[off:off + 5]) == b"hello"              # before persist or close
        assert bytes(media[off + 4096:off + 4100]) == (0xDEADBEEF).to_bytes(4, "little")
        media[off + 100] = 42                                     # and the other way round
        assert mp.array[100] == 42
        del arr


@pytest.mark.parametrize("trap", MODES)
def test_unflushed_stores_are_visible_and_dirty(b, trap):
    with mmap(b, 2 * MiB, trap=trap) as mp:
        mp.array[:] = 7
        mp.persist(0, 64)
        assert dirty_bytes(b) == 2 * MiB - 64
    assert dirty_bytes(b) == 2 * MiB - 64
    with mmap(b, 2 * MiB, trap=trap) as mp:
        assert (mp.array == 7).all()
    f = dm.DaxFile.open(b, "/dev/dax0.0", write=False)
    assert f.pread(16, 0) == bytes([7]) * 16
    power_fail(b)                                         # no eADR: unflushed lines are lost
    assert dirty_bytes(b) == 0
    with mmap(b, 2 * MiB, trap=trap) as mp:
        assert (mp.array[:64] == 7).all() and (mp.array[64:] == 0).all()


def test_reboot_writes_back(b):
    with mmap(b, 2 * MiB) as mp:
        mp.array[:4096] = 3
    reboot(b)
    assert dirty_bytes(b) == 0
    power_fail(b)
    with mmap(b, 2 * MiB) as mp:
        assert (mp.array[:4096] == 3).all()


def test_flush_cleans_lines_dirtied_by_others(b):
    with mmap(b, 2 * MiB) as mp:
        mp.array[:4096] = 1
    with mmap(b, 2 * MiB) as mp:
        mp.flush()                                          # clwb cleans whoever dirtied the line
    assert dirty_bytes(b) == 0
    power_fail(b)
    with mmap(b, 2 * MiB) as mp:
        assert (mp.array[:4096] == 1).all()


def test_closed_mapping(b):
    mp = mmap(b, 2 * MiB)
    mp.close()
    with pytest.raises(ValueError):
        mp.persist(0, 1)
    with pytest.raises(ValueError):
        mp.array
    mp.close()


def test_stale_view_after_close_does_not_crash(b):
    mp = mmap(b, 2 * MiB)
    view = mp.array[:4096]
    mp.array[:10] = 5
    mp.close()
    assert int(view.sum()) == 0          # readable zeros, not a hole
    view[:] = 1                          # and writes go nowhere
    with mmap(b, 2 * MiB) as again:
        assert (again.array[:10] == 5).all()


def test_persist_outside_mapping(b):
    with mmap(b, 2 * MiB) as mp:
        with pytest.raises(OSError) as e:
            mp.persist(2 * MiB - 1, 2)
        assert e.value.errno == errno.EFAULT


@pytest.mark.skipif(TRAP is None, reason="no compiled store trap")
def test_trap_flush_and_close_copy_nothing(b):
    """The store trap saves undo data once per page per flush interval;
    persist and close copy no data."""
    with mmap(b, 8 * MiB) as mp:
        f0, c0 = TRAP.stat(0), TRAP.stat(1)
        mp.array[:] = 9                                    # 4 trap units of 2 MiB
        f1, c1 = TRAP.stat(0), TRAP.stat(1)
        assert f1 - f0 == 4 and c1 - c0 == 8 * MiB
        mp.array[:] = 10                                   # pages writable now: no trap
        assert (TRAP.stat(0), TRAP.stat(1)) == (f1, c1)
        mp.persist(4096, 100)                              # 2 lines clean, one page protected again
        assert TRAP.stat(1) == c1
        mp.array[4096:4096 + 100] = 11
        assert TRAP.stat(0) == f1 + 1 and TRAP.stat(1) == c1 + 128   # only the 2 clean lines
    assert TRAP.stat(1) == c1 + 128                        # close copied nothing


def test_mapping_holds_no_machine_lock(tmp_path):
    from cxlemu.machine.store import Store
    from pmem_support import topo
    st_ = Store()
    st_.create("pm", topo())
    with st_.open("pm") as m:
        b = m.backend()
        pmem_region(b)
        assert ndctl(b, "create-namespace", "-m", "devdax")[0] == 0
    from cxlemu.machine.dax import open_dax
    with open_dax("pm", store=st_, length=2 * MiB) as mp:
        mp.array[:3] = 1
        done = []

        def other_command():
            with st_.open("pm", write=False) as m2:
                done.append(m2.name == "pm")
        t = threading.Thread(target=other_command)
        t.start()
        t.join(10)
        assert done == [True]                               # another command got the machine


# ---- interleaved regions ---------------------------------------------------------------------

def check_layout(b, mp, data):
    """Every byte of ``data`` (stored at mapping offset 0) is on the device
    and DPA the data path's router says."""
    space = b.hpa_space()
    d = dm.DaxDevice.open(b, "dax0.0")
    hpa = d.ranges[0].hpa
    ext = space.extents(hpa, data.size)
    for off, n, di, dpa in ext.tolist():
        media = b.machine.media.array(space.p.devices[di])
        assert np.array_equal(media[dpa:dpa + n], data[off:off + n]), (off, n, di, dpa)
    return ext


@pytest.mark.parametrize("trap", MODES)
def test_two_way_interleave_granules(tmp_path, trap, monkeypatch):
    monkeypatch.setattr(dm, "MAX_PIECES", 1024)
    b = devdax(tmp_path, fabric(2), size="128M")
    data = np.random.default_rng(5).integers(0, 256, 4 * MiB, dtype=np.uint8)
    with mmap(b, 4 * MiB, trap=trap) as mp:
        assert mp.mode == "granules" and isinstance(mp.array, np.ndarray)
        mp.array[:] = data
        ext = check_layout(b, mp, data)                    # on the media before any flush
        assert set(ext[:, 2].tolist()) == {0, 1} and (ext[:, 1] == 4096).all()
        m0, m1 = (b.machine.media.array(m.hw) for m in b.kernel.cxl.memdevs)
        region_hpa = int(b.read("/sys/bus/cxl/devices/region0/resource"), 0)
        rel = dm.DaxDevice.open(b, "dax0.0").ranges[0].hpa - region_hpa
        assert rel % (2 * 4096) == 0                       # chunk i is on device i % 2
        for i in range(8):
            dev = m0 if i % 2 == 0 else m1
            dpa = rel // 2 + (i // 2) * 4096
            assert bytes(dev[dpa:dpa + 4096]) == data[i * 4096:(i + 1) * 4096].tobytes()
        mp.persist(0, 8192)
    power_fail(b)
    with mmap(b, 4 * MiB, trap=trap) as mp:
        assert np.array_equal(mp.array[:8192], data[:8192]) and not mp.array[8192:].any()


@pytest.mark.parametrize("trap", MODES)
def test_four_way_sub_page_granule_extents(tmp_path, trap):
    """256-byte granules: each device's extent is mapped once; ``array``
    keeps 1-D HPA order and ``rows`` is the (rows, ways, granule) view."""
    b = devdax(tmp_path, fabric(4), size="128M", gran=256)
    rng = np.random.default_rng(9)
    data = rng.integers(0, 256, 2 * MiB, dtype=np.uint8)
    with mmap(b, 2 * MiB, trap=trap) as mp:
        assert mp.mode == "extents" and isinstance(mp.array, dm.HpaOrderArray)
        mp.array[:] = data
        check_layout(b, mp, data)
        assert np.array_equal(mp.array[:], data)
        assert np.array_equal(np.asarray(mp.array), data)
        assert mp.rows is not None and mp.rows.shape == (2 * MiB // 1024, 4, 256)
        assert np.array_equal(mp.rows.reshape(-1), data)  # the strided view is the same memory
        mp.rows[0, 1, :] = 0xAB                              # stores through the view land too
        assert (mp.array[256:512] == 0xAB).all()
        data[256:512] = 0xAB
        # unaligned slices and single bytes
        mp.array[1000:1300] = np.arange(300, dtype=np.uint8)
        data[1000:1300] = np.arange(300, dtype=np.uint8)
        assert np.array_equal(mp.array[900:1400], data[900:1400])
        assert mp.array[1001] == 1 and mp.array[-1] == data[-1]
        mp.array[5] = 77
        data[5] = 77
        mp.buffer[10:13] = b"abc"
        data[10:13] = np.frombuffer(b"abc", np.uint8)
        assert bytes(mp.buffer[10:13]) == b"abc"
        check_layout(b, mp, data)
        mp.persist(0, 4096)
    power_fail(b)
    with mmap(b, 2 * MiB, trap=trap) as mp:
        got = mp.array[:]
        assert np.array_equal(got[:4096], data[:4096]) and not got[4096:].any()


@pytest.mark.parametrize("trap", MODES)
def test_xor_interleave(tmp_path, trap):
    """XOR arithmetic across host bridges: every row has its own device
    order; loads and stores still follow the router byte for byte."""
    gran = 4096
    text = fabric_toml(4, 1, gran=gran, mode="pmem", arithmetic="xor", xormaps=xormaps_for(4, gran))
    b = devdax(tmp_path, text, size="128M", gran=gran)
    data = np.random.default_rng(3).integers(0, 256, 4 * MiB, dtype=np.uint8)
    with mmap(b, 4 * MiB, trap=trap) as mp:
        mp.array[:] = data
        ext = check_layout(b, mp, data)
        order = np.repeat(ext[:, 2], ext[:, 1] // gran).reshape(-1, 4)
        assert (np.sort(order, axis=1) == np.arange(4)).all()     # each row: every device once
        assert len({tuple(r) for r in order.tolist()}) > 1      # the order changes from row to row
        assert np.array_equal(mp.array[:], data)


def test_large_interleaved_mapping_uses_extents(tmp_path):
    b = devdax(tmp_path, fabric(2), size="128M")
    with mmap(b, 2 * MiB) as mp:
        assert mp.mode == "granules"                       # 512 pieces: one per 4 KiB granule
    data = np.random.default_rng(1).integers(0, 256, 4 * MiB, dtype=np.uint8)
    with mmap(b, 4 * MiB) as mp:                            # 1024 pieces: one extent per device
        assert mp.mode == "extents" and mp.rows is not None and mp.rows.shape == (512, 2, 4096)
        mp.array[:] = data
        check_layout(b, mp, data)


# ---- dd -----------------------------------------------------------------------------------------

def test_daxfile_writes_are_cached_stores(b):
    f = dm.DaxFile.open(b, "/dev/dax0.0", write=True)
    assert f.pwrite(b"x" * 100, 4096) == 100
    f.close()
    g = dm.DaxFile.open(b, "/dev/dax0.0", write=False)
    assert g.pread(100, 4096) == b"x" * 100
    assert dirty_bytes(b) == 128
    power_fail(b)
    assert g.pread(100, 4096) == bytes(100)
    with pytest.raises(OSError) as e:
        f.pwrite(b"y", 62 * MiB)
    assert e.value.errno == errno.ENOSPC


def test_kernel_writes_are_flushed(b):
    """nvdimm_write_bytes-style writes leave their lines clean."""
    with mmap(b, 2 * MiB) as mp:
        mp.array[:8192] = 4
    d = dm.DaxDevice.open(b, "dax0.0")
    space = b.hpa_space()
    space.write(d.ranges[0].hpa, bytes(4096))
    dm.note_kernel_write(b.kernel, space, d.ranges[0].hpa, 4096)
    assert dirty_bytes(b) == 4096


# ---- the CPU-cache model against a byte-level model ----------------------------------------------

SIZE = 2 * MiB
op = st.one_of(
    st.tuples(st.just("store"), st.integers(0, SIZE - 1), st.integers(1, 20000), st.integers(0, 255)),
    st.tuples(st.just("persist"), st.integers(0, SIZE - 1), st.integers(1, 20000)),
    st.tuples(st.just("remap")),
    st.tuples(st.just("power_fail")),
    st.tuples(st.just("reboot")),
)


class Model:
    def __init__(self, size):
        self.cur = np.zeros(size, np.uint8)
        self.durable = np.zeros(size, np.uint8)
        self.dirty = np.zeros(size // 64, bool)

    def store(self, a, n, v):
        self.cur[a:a + n] = v
        self.dirty[a // 64:-(-(a + n) // 64)] = True

    def persist(self, a, n):
        lo, hi = a // 64, -(-(a + n) // 64)
        self.durable[lo * 64:hi * 64] = self.cur[lo * 64:hi * 64]
        self.dirty[lo:hi] = False

    def power_fail(self):
        mask = np.repeat(self.dirty, 64)
        self.cur[mask] = self.durable[mask]
        self.durable[:] = self.cur
        self.dirty[:] = False

    def reboot(self):
        self.durable[:] = self.cur
        self.dirty[:] = False


@pytest.fixture(scope="module")
def machines(tmp_path_factory):
    return {"1way": devdax(tmp_path_factory.mktemp("one")),
            "4way-256": devdax(tmp_path_factory.mktemp("four"), fabric(4), size="128M", gran=256)}


@pytest.mark.parametrize("trap", MODES)
@pytest.mark.parametrize("kind", ["1way", "4way-256"])
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(op, max_size=14))
def test_cache_model_matches_bytes(machines, kind, trap, ops):
    b = machines[kind]
    with mmap(b, SIZE, trap=trap) as mp:        # start from a known, durable state
        mp.array[:] = 0
        mp.flush()
    model = Model(SIZE)
    mp = mmap(b, SIZE, trap=trap)
    try:
        for o in ops:
            if o[0] == "store":
                _, a, n, v = o
                n = min(n, SIZE - a)
                mp.array[a:a + n] = v
                model.store(a, n, v)
            elif o[0] == "persist":
                _, a, n = o
                n = min(n, SIZE - a)
                mp.persist(a, n)
                model.persist(a, n)
            else:
                mp.close()
                if o[0] == "power_fail":
                    power_fail(b)
                    model.power_fail()
                elif o[0] == "reboot":
                    reboot(b)
                    model.reboot()
                mp = mmap(b, SIZE, trap=trap)
            assert np.array_equal(mp.array[:], model.cur)
        mp.close()
        power_fail(b)
        model.power_fail()
        mp = mmap(b, SIZE, trap=trap)
        assert np.array_equal(mp.array[:], model.cur)
    finally:
        mp.close()


# ---- the on-disk format ----------------------------------------------------------------------------

@given(st.integers(1, 1 << 30).map(lambda x: x * 4096), st.text("abcdefghij.-_0123456789", min_size=1, max_size=63))
def test_header_round_trip(capacity, name):
    h = cpucache.Header(capacity, name)
    raw = h.pack()
    assert len(raw) == 4096 and cpucache.Header.unpack(raw) == h


@given(st.binary(max_size=200))
def test_header_never_a_traceback(raw):
    try:
        cpucache.Header.unpack(raw)
    except cpucache.CacheFormatError:
        pass


@given(st.binary(min_size=112, max_size=112), st.integers(0, 111))
def test_header_flipped_bytes(raw, i):
    good = bytearray(cpucache.Header(1 << 20, "x.media").pack()[:112])
    good[i] ^= raw[i] | 1
    try:
        h = cpucache.Header.unpack(bytes(good))
    except cpucache.CacheFormatError:
        return
    assert h.capacity % 4096 == 0 and h.media


def test_legacy_pickle_journal_is_never_loaded(b, tmp_path):
    import pickle
    (tmp_path / "cpu_cache").write_bytes(pickle.dumps({"x": [(0, b"")]}))
    power_fail(b)                                    # removed, not unpickled
    assert not (tmp_path / "cpu_cache").exists()
    with mmap(b, 2 * MiB) as mp:
        mp.array[:1] = 1
    assert (tmp_path / "cpu_cache").is_dir()


def test_corrupt_state_file_is_refused(b, tmp_path):
    with mmap(b, 2 * MiB) as mp:
        mp.array[:1] = 1
    (lines,) = (tmp_path / "cpu_cache").glob("*.lines")
    raw = bytearray(lines.read_bytes()[:4096])
    raw[0] ^= 0xFF
    with open(lines, "r+b") as f:
        f.write(raw)
    with pytest.raises(cpucache.CacheFormatError):
        cpucache.DeviceCache(tmp_path / "cpu_cache", lines.name[:-6], b.kernel.cxl.memdevs[0].hw.total_capacity)
