"""cxlemu.tools.libcxl: C conversions, sysfs access rules, discovery order,
setters' exact write bytes and errno propagation (cxl/lib/libcxl.c and
util/sysfs.c of ndctl v81, contract §1.4, §2.1, §5)."""

from __future__ import annotations

import errno
import io
import os
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cxltest_support import boot
from cxlemu.sysfs.backend import DirectoryBackend, render
from cxlemu.tools.common.log import Log
from cxlemu.tools.libcxl import CxlContext, DecodeState, DecoderMode, Port
from cxlemu.tools.libcxl.cnum import (c_atoi, c_strtol_s32, c_strtoul_u32, c_tokens, sscanf_int,
                                      sscanf_int_pair, to_s32)
from cxlemu.tools.libcxl.decoder import max_available_extent
from cxlemu.tools.libcxl.sysfs import SysfsIO

U64 = (1 << 64) - 1


# ---------------------------------------------------------------------------
# cnum: C conversions
# ---------------------------------------------------------------------------

@settings(max_examples=200, deadline=None)
@given(st.sampled_from(["", "mem", "root", "decoder3.", "region"]),
       st.integers(min_value=-(1 << 31), max_value=(1 << 31) - 1),
       st.text(alphabet="abc.:_x", max_size=4))
def test_sscanf_int_reads_prefix_number_ignores_tail(prefix, n, tail):
    assert sscanf_int(f"{prefix}{n}{tail}", prefix) == n


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="ab ,", max_size=20), st.sampled_from([" ", ","]))
def test_c_tokens_is_split_without_empty_tokens(text, sep):
    assert c_tokens(text, sep) == [t for t in text.split(sep) if t]


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.text(alphabet="0123456789abcdefxX_ +-\t\n", max_size=24),
                 st.integers(0, 1 << 70).map(str), st.integers(0, 1 << 70).map(hex),
                 st.text(max_size=8)))
def test_c_strtoull_fast_path_is_strtoull(text):
    """The fast path for plain sysfs numbers gives what the general glibc
    strtoull(text, NULL, 0) model gives, for any text."""
    from cxlemu.tools.common.parse_options import strtoull
    from cxlemu.tools.libcxl.cnum import c_strtoull
    assert c_strtoull(text) == strtoull(text, 0)[0]
    assert c_strtoul_u32(text) == strtoull(text, 0)[0] & 0xFFFFFFFF


def test_c_strtoull_vectors():
    from cxlemu.tools.libcxl.cnum import c_strtoull
    assert c_strtoull("0x10") == 16 and c_strtoull("010") == 8 and c_strtoull("1_0") == 1
    assert c_strtoull(str(1 << 64)) == U64 and c_strtoull("0x") == 0 and c_strtoull("٣") == 0


def test_sscanf_int_vectors_util_sysfs_device_parse():
    assert sscanf_int("mem5", "mem") == 5
    assert sscanf_int("memory", "mem") is None
    assert sscanf_int("xmem1", "mem") is None
    assert sscanf_int("mem01", "mem") == 1
    # "%d" accepts a host name's leading digits: 0000:35:00.0 is id 0
    assert sscanf_int("0000:35:00.0") == 0
    assert sscanf_int("cxl_mem.5") is None
    assert sscanf_int("decoder10.0", "decoder1.") is None
    assert sscanf_int_pair("decoder3.1", "decoder") == (3, 1)
    assert sscanf_int_pair("3.1") == (3, 1)
    assert sscanf_int_pair("3") is None


def test_c_integer_truncations():
    assert c_strtoul_u32("0x100000001") == 1          # unsigned int field
    assert c_strtol_s32("0xffffffff") == -1             # int field
    assert c_atoi("42abc") == 42 and c_atoi("x") == 0
    assert to_s32(1 << 31) == -(1 << 31)


# ---------------------------------------------------------------------------
# max_available_extent (cxl_decoder_calc_max_available_extent)
# ---------------------------------------------------------------------------

class _R:
    def __init__(self, start, size, state=DecodeState.COMMIT):
        self.start, self.size, self.decode_state = start, size, state

    def is_configured(self):
        return bool(self.size) and self.decode_state != DecodeState.RESET


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 15), st.integers(1, 4), st.booleans()), max_size=5))
def test_max_available_extent_is_largest_gap(spec):
    unit = 256 << 20
    start, size = 0x10_0000_0000, 32 * unit
    used = [False] * 32
    regions = []
    for slot, length, committed in sorted(spec):
        if slot + length > 32 or any(used[slot:slot + length]):
            continue
        if committed:
            used[slot:slot + length] = [True] * length
        regions.append(_R(start + slot * unit, length * unit,
                          DecodeState.COMMIT if committed else DecodeState.RESET))
    best = run = 0
    for u in used:
        run = 0 if u else run + 1
        best = max(best, run)
    assert max_available_extent(start, size, regions) == best * unit


def test_max_available_extent_unknown_start():
    assert max_available_extent(U64, 1 << 30, []) == U64


# ---------------------------------------------------------------------------
# SysfsIO on a real directory tree
# ---------------------------------------------------------------------------

def _io(tmp_path) -> SysfsIO:
    return SysfsIO(DirectoryBackend(str(tmp_path)), Log("libcxl"))


def _put(tmp_path, rel: str, data: bytes) -> None:
    p = tmp_path / rel.lstrip("/")
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)


def test_read_attr_strips_one_newline_and_stops_at_nul(tmp_path):
    io_ = _io(tmp_path)
    _put(tmp_path, "/sys/a", b"abc\n")
    _put(tmp_path, "/sys/b", b"abc\n\n")
    _put(tmp_path, "/sys/c", b"ab\0cd\n")
    _put(tmp_path, "/sys/d", b"x" * 1023)
    _put(tmp_path, "/sys/e", b"x" * 1024)
    assert io_.read_attr("/sys/a") == "abc"
    assert io_.read_attr("/sys/b") == "abc\n"
    assert io_.read_attr("/sys/c") == "ab"
    assert io_.read_attr("/sys/d") == "x" * 1023
    assert io_.read_attr("/sys/e") == ""           # n >= SYSFS_ATTR_SIZE
    assert io_.read_attr("/sys/missing") is None
    assert io_.last_errno == errno.ENOENT


def test_reader_reads_what_read_attr_reads(tmp_path):
    """``SysfsIO.reader(base)`` resolves ``base`` once; each value, errno and
    the over-long case are read_attr's, through /sys/bus/X/devices links too."""
    for name, data in (("a", b"abc\n"), ("b", b"abc\n\n"), ("c", b"ab\0cd\n"), ("d", b"x" * 1023),
                       ("e", b"x" * 1024), ("f", b""), ("g", b"\n"), ("h", b"\xff\n")):
        _put(tmp_path, f"/sys/devices/root0/dev7/{name}", data)
    (tmp_path / "sys/bus/cxl/devices").mkdir(parents=True)
    os.symlink("../../../devices/root0/dev7", tmp_path / "sys/bus/cxl/devices/dev7")
    for base in ("/sys/devices/root0/dev7", "/sys/bus/cxl/devices/dev7"):
        io_ = _io(tmp_path)
        rd = io_.reader(base)
        for name in "abcdefgh" + "z":
            want = io_.read_attr(f"{base}/{name}")
            want_errno = io_.last_errno
            io_.last_errno = -1
            assert (rd(name), io_.last_errno) == (want, want_errno), (base, name)
    assert rd("z") is None and io_.last_errno == errno.ENOENT


def test_realpath_is_strict_through_directory_backend(tmp_path):
    """realpath(3): None unless every component exists (a dangling link, a
    file used as a directory, a missing leaf); links resolved inside the root."""
    io_ = _io(tmp_path)
    (tmp_path / "sys/devices/port1/dport0").mkdir(parents=True)
    _put(tmp_path, "/sys/devices/port1/attr", b"1\n")
    os.symlink("devices/port1", tmp_path / "sys/link")
    os.symlink("nowhere", tmp_path / "sys/devices/port1/dangling")
    assert io_.realpath("/sys/link/dport0") == "/sys/devices/port1/dport0"
    assert io_.realpath("/sys/link") == "/sys/devices/port1"
    assert io_.realpath("/sys/link/dport0/physical_node") is None
    assert io_.realpath("/sys/devices/port1/dangling") is None
    assert io_.realpath("/sys/devices/port1/attr/x") is None
    assert io_.realpath("/sys/nothing/at/all") is None
    assert DirectoryBackend(str(tmp_path)).realpath_strict("/sys/link/attr") == "/sys/devices/port1/attr"


def test_write_attr_sends_trailing_nul_util_sysfs_write_attr(tmp_path):
    io_ = _io(tmp_path)
    _put(tmp_path, "/sys/size", b"")
    io_.write_attr("/sys/size", "0x10000000\n")
    assert (tmp_path / "sys/size").read_bytes() == b"0x10000000\n\0"
    with pytest.raises(OSError) as e:
        io_.write_attr("/sys/nodir/x", "1")
    assert e.value.errno == errno.ENOENT


def test_realpath_and_scan(tmp_path):
    io_ = _io(tmp_path)
    for name in ("mem0", "mem12", "memory", "xmem3", "mem5x"):
        (tmp_path / "sys/devs" / name).mkdir(parents=True)
    os.symlink("mem0", tmp_path / "sys/devs/link0")
    os.symlink("nothere", tmp_path / "sys/devs/dangling")
    ids = sorted((e.id, e.name) for e in io_.scan("/sys/devs", "mem"))
    assert ids == [(0, "mem0"), (5, "mem5x"), (12, "mem12")]
    assert io_.realpath("/sys/devs/link0") == "/sys/devs/mem0"
    assert io_.realpath("/sys/devs/dangling") is None
    assert io_.is_link("/sys/devs/link0") and not io_.is_link("/sys/devs/mem0")


# ---------------------------------------------------------------------------
# discovery on the emulator
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cxltest():
    return boot("cxl-test")


def _ctx(b) -> CxlContext:
    return CxlContext(b, {}, io.StringIO())


def test_lists_are_reverse_readdir_and_decoders_sorted(cxltest):
    ctx = _ctx(cxltest)
    names = cxltest.listdir("/sys/bus/cxl/devices")
    mems = [n for n in names if sscanf_int(n, "mem") is not None]
    assert [m.devname for m in ctx.memdevs()] == list(reversed(mems))
    root = ctx.buses()[0]
    dports = [n for n in cxltest.listdir("/sys/bus/cxl/devices/root0") if n.startswith("dport")]
    assert [f"dport{d.id}" for d in root.dports()] == list(reversed(dports))
    for port in [root, *root.iter_all()]:
        ids = [d.id for d in port.decoders()]
        assert ids == sorted(ids) and ids
        for d in port.decoders():
            pos = [t.position for t in d.targets]
            assert pos == sorted(pos, reverse=True)
            assert d.nr_targets == len(pos)


def test_cxl_test_topology_names(cxltest):
    ctx = _ctx(cxltest)
    root = ctx.buses()[0]
    assert root.devname == "root0" and root.provider == "cxl_test" and root.depth == 0
    hosts = sorted(p.host for p in root.child_ports())
    assert hosts == ["cxl_host_bridge.0", "cxl_host_bridge.1", "cxl_host_bridge.2"]
    md = ctx.memdev_by_devname("mem0")
    assert md.host == "cxl_mem.0" and md.serial == 0
    assert md.pmem_size == md.ram_size == 1 << 30 and md.ram_qos_class == 42
    ep = md.endpoint
    assert ep is not None and ep.host == "mem0" and ep.depth == 3
    assert ep.parent_dport is not None and ep.parent_dport.devname == "cxl_switch_dport.0"
    assert ep.bus is root and ep.memdev is md
    # RCH memdev: an endpoint directly below the root
    rch = [e.host for e in root.endpoints()]
    assert rch == ["mem10"]


def test_auto_region_mappings_reverse_position(cxltest):
    ctx = _ctx(cxltest)
    dec = ctx.decoder_by_name("decoder0.0")
    (region,) = dec.regions()
    assert region.devname == "region0" and region.mode == DecoderMode.RAM
    assert region.decode_is_committed() and region.is_enabled()
    got = [(m.position, m.decoder.devname, m.memdev.devname) for m in region.mappings()]
    assert got == [(1, "decoder12.0", "mem4"), (0, "decoder5.0", "mem0")]
    assert dec.max_available_extent == dec.size - region.size
    sw = ctx.decoder_by_name("decoder5.0")
    assert sw.region is region and sw.memdev.devname == "mem0"


# ---------------------------------------------------------------------------
# setters: exact bytes (contract §2.1) and errno propagation
# ---------------------------------------------------------------------------

class Recorder:
    """Delegates to a backend and records every write."""

    def __init__(self, backend):
        self._b = backend
        self.writes: list[tuple[str, bytes]] = []

    def __getattr__(self, name):
        return getattr(self._b, name)

    def write(self, path, data):
        self.writes.append((path, bytes(data)))
        return self._b.write(path, data)

    def leaf_writes(self):
        return [(p.rsplit("/", 1)[-1], d) for p, d in self.writes if not p.endswith("/flush")]


def test_region_create_program_commit_destroy_write_formats():
    rec = Recorder(boot("cxl-test"))
    ctx = _ctx(rec)
    dec = ctx.decoder_by_name("decoder0.4")          # pmem x1 -> cxl_host_bridge.2
    region = dec.create_pmem_region()
    assert region is not None
    name = region.devname
    region.set_interleave_granularity(dec.interleave_granularity)
    region.set_interleave_ways(1)
    region.set_uuid(uuid.UUID("12345678-1234-5678-1234-567812345678"))
    region.set_size(256 << 20)
    md = ctx.memdev_by_devname("mem8")
    edec = next(d for d in md.endpoint.decoders() if d.size == 0)
    edec.set_dpa_size(0)
    edec.set_mode(DecoderMode.PMEM)
    edec.set_dpa_size(256 << 20)
    region.set_target(0, edec)
    region.decode_commit()
    region.enable()
    assert region.is_enabled()
    assert region.start == 0xF190000000
    writes = rec.leaf_writes()
    assert writes[:10] == [
        ("create_pmem_region", f"{name}\0".encode()),
        ("interleave_granularity", b"256\n\0"),
        ("interleave_ways", b"1\n\0"),
        ("uuid", b"12345678-1234-5678-1234-567812345678\0"),
        ("size", b"0x10000000\n\0"),
        ("dpa_size", b"0\n\0"),                  # "%#llx" of 0 is "0"
        ("mode", b"pmem\0"),
        ("dpa_size", b"0x10000000\n\0"),
        ("target0", edec.devname.encode() + b"\0"),
        ("commit", b"1\n\0"),
    ]
    binds = [(p, d) for p, d in rec.writes if p.startswith("/sys/bus/cxl/drivers/")]
    assert binds[-1] == ("/sys/bus/cxl/drivers/cxl_region/bind", f"{name}\0".encode())
    # tear down like destroy-region
    rec.writes.clear()
    region.disable()
    region.decode_reset()
    region.clear_target(0)
    edec.set_dpa_size(0)
    region.delete()
    assert rec.leaf_writes() == [("unbind", f"{name}\0".encode()), ("commit", b"0\n\0"),
                                 ("target0", b"\0"), ("dpa_size", b"0\n\0"),
                                 ("delete_region", f"{name}\0".encode())]
    assert [r.devname for r in dec.regions()] == []


def test_setter_errors_propagate_as_oserror_errno():
    b = boot("cxl-test")
    ctx = _ctx(b)
    dec = ctx.decoder_by_name("decoder0.4")
    region = dec.create_pmem_region()
    with pytest.raises(OSError) as e:
        region.set_interleave_ways(5)               # not a CXL ways encoding
    assert e.value.errno == errno.EINVAL
    with pytest.raises(OSError) as e:
        region.set_size(0)                          # libcxl refuses size 0 itself
    assert e.value.errno == errno.EINVAL
    with pytest.raises(OSError) as e:
        region.decode_commit()                      # nothing configured
    assert e.value.errno == errno.ENXIO
    root_dec = ctx.decoder_by_name("decoder0.0")
    with pytest.raises(OSError) as e:
        root_dec.set_dpa_size(0)                    # not an endpoint decoder
    assert e.value.errno == errno.EINVAL


def test_memdev_disable_enable_invalidates_endpoint():
    b = boot("cxl-test")
    ctx = _ctx(b)
    md = ctx.memdev_by_devname("mem2")
    assert md.endpoint is not None
    md.disable_invalidate()
    assert not md.is_enabled() and md.endpoint is None and md.bus is None
    assert b.read("/sys/bus/cxl/devices/mem2/serial").strip() == "0x2"
    md.enable()
    assert md.is_enabled() and md.endpoint.host == "mem2"


def test_port_disable_refuses_root_and_unbinds_switch():
    b = boot("cxl-test")
    ctx = _ctx(b)
    root = ctx.buses()[0]
    with pytest.raises(OSError) as e:
        Port.disable_invalidate(root)                # cxl_port_disable_invalidate() on a root
    assert e.value.errno == errno.EINVAL
    # a host-bridge port stays registered when unbound and can be bound again
    port = next(p for p in root.iter_all() if p.host == "cxl_host_bridge.1")
    port.disable_invalidate()
    assert not port.is_enabled()
    port.enable()
    assert port.is_enabled()
    # a switch port loses its endpoints and is then deleted (core/port.c cxl_detach_ep)
    sw = next(p for p in _ctx(b).buses()[0].iter_all() if p.host == "cxl_switch_uport.2")
    sw.disable_invalidate()
    assert not b.exists(f"/sys/bus/cxl/devices/{sw.devname}")


# ---------------------------------------------------------------------------
# mailbox path
# ---------------------------------------------------------------------------

def test_mailbox_on_emulator(cxltest):
    ctx = _ctx(cxltest)
    md = ctx.memdev_by_devname("mem0")
    ident = md.mailbox.identify()
    assert ident.total_capacity == 2 << 30 and ident.partition_align == 256 << 20
    health = md.mailbox.health_info()
    assert health.media_status == 0
    part = md.mailbox.partition_info()
    assert part.active_volatile == 1 << 30 and part.active_persistent == 1 << 30


def test_mailbox_on_rendered_tree_logs_like_libcxl(tmp_path, cxltest):
    render(cxltest, str(tmp_path))
    err = io.StringIO()
    ctx = CxlContext(DirectoryBackend(str(tmp_path)), {}, err)
    md = ctx.memdev_by_devname("mem0")
    assert md.mailbox.identify() is None
    assert err.getvalue() == (
        "libcxl: do_cmd: failed to validate /dev/cxl/mem0 as a CXL memdev node\n"
        "libcxl: alloc_do_query: mem0: query commands failed: No such device or address\n"
        "libcxl: cxl_cmd_new_generic: mem0: query returned: No such device or address\n")
