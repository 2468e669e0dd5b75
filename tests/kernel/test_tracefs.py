"""tracefs of the kernel model (kernel/trace, sysfs/tracefs.py): layout,
instances, enable switches, binary pages, text readers, overwrite."""

from __future__ import annotations

import errno

import pytest

from cxlemu.kernel.trace import ring
from cxlemu.kernel.trace.catalog import registry
from cxlemu.tools.common import tracefs as T
from cxltest_support import boot

TR = "/sys/kernel/tracing"


@pytest.fixture(scope="module")
def b():
    return boot("biscuitos-b")


def err(fn, *a) -> int:
    with pytest.raises(OSError) as e:
        fn(*a)
    return e.value.errno


def test_layout_libtracefs_needs(b):
    top = set(b.listdir(TR))
    assert {"events", "instances", "per_cpu", "tracing_on", "trace", "trace_pipe", "buffer_size_kb",
            "trace_clock", "set_event", "available_events", "saved_cmdlines"} <= top
    assert b.read(f"{TR}/events/header_page") == ring.HEADER_PAGE
    assert "type_len    :    5 bits" in b.read(f"{TR}/events/header_event")
    assert set(b.listdir(f"{TR}/events/cxl")) >= {"enable", "filter", "cxl_poison", "cxl_general_media",
                                                  "cxl_dram", "cxl_memory_module", "cxl_overflow"}
    assert b.read(f"{TR}/events/ras/memory_failure_event/id").strip().isdigit()
    assert sorted(b.listdir(f"{TR}/per_cpu")) == ["cpu0", "cpu1"]         # topology B: 2 CPUs
    assert b.read(f"{TR}/trace_clock").startswith("[local]")
    assert "cxl:cxl_poison\n" in b.read(f"{TR}/available_events")


def test_instances_mkdir_rmdir_and_errors(b):
    b.mkdir(f"{TR}/instances/a")
    assert "a" in b.listdir(f"{TR}/instances")
    assert err(b.mkdir, f"{TR}/instances/a") == errno.EEXIST
    assert err(b.mkdir, "/sys/bus/cxl/devices/foo") == errno.EPERM
    assert b.read(f"{TR}/instances/a/tracing_on") == "1\n"
    assert "instances" not in b.listdir(f"{TR}/instances/a")
    b.rmdir(f"{TR}/instances/a")
    assert err(b.rmdir, f"{TR}/instances/a") == errno.ENOENT


def test_enable_states_and_bad_writes(b):
    b.mkdir(f"{TR}/instances/e")
    base = f"{TR}/instances/e/events"
    assert b.read(f"{base}/cxl/enable") == "0\n"
    b.write(f"{base}/cxl/cxl_poison/enable", "1")
    assert b.read(f"{base}/cxl/enable") == "X\n" and b.read(f"{base}/enable") == "X\n"
    b.write(f"{base}/cxl/enable", "1")
    assert b.read(f"{base}/cxl/enable") == "1\n" and b.read(f"{base}/cxl/cxl_dram/enable") == "1\n"
    assert err(b.write, f"{base}/cxl/enable", "2") == errno.EINVAL
    b.write(f"{TR}/instances/e/set_event", "ras:memory_failure_event")
    assert b.read(f"{TR}/instances/e/set_event") == "ras:memory_failure_event\n"
    assert err(b.write, f"{TR}/instances/e/set_event", "nosuch:event") == errno.EINVAL
    assert err(b.write, f"{TR}/instances/e/tracing_on", "x") == errno.EINVAL
    b.rmdir(f"{TR}/instances/e")


def _poison(b, dpa):
    b.write("/sys/kernel/debug/cxl/mem0/inject_poison", hex(dpa))


def test_records_only_where_enabled_and_on(b):
    for n in ("on", "off", "other"):
        b.mkdir(f"{TR}/instances/{n}")
    b.write(f"{TR}/instances/on/events/cxl/cxl_poison/enable", "1")
    b.write(f"{TR}/instances/off/events/cxl/cxl_poison/enable", "1")
    b.write(f"{TR}/instances/off/tracing_on", "0")
    _poison(b, 0x4000)
    assert "trace_type=Inject" in b.read(f"{TR}/instances/on/trace")
    assert "cxl_poison" not in b.read(f"{TR}/instances/off/trace")
    assert "cxl_poison" not in b.read(f"{TR}/instances/other/trace")
    assert "cxl_poison" not in b.read(f"{TR}/trace")          # the top instance has nothing enabled
    # the raw page decodes (our own parser and the tools' independent one agree)
    raw = b.read_stream(f"{TR}/instances/on/per_cpu/cpu0/trace_pipe_raw")
    assert len(raw) == ring.PAGE_SIZE
    recs = ring.parse_page(raw)
    ev = registry().get("cxl", "cxl_poison")
    assert [ev.decode(p)["dpa"] for _, p in recs] == [0x4000]
    tool = T.parse_page(raw, T.parse_header_page(ring.HEADER_PAGE), 0)
    assert [r.data for r in tool] == [p for _, p in recs]
    # consumed: nothing left
    assert b.read_stream(f"{TR}/instances/on/per_cpu/cpu0/trace_pipe_raw") == b""
    assert "cxl_poison" not in b.read(f"{TR}/instances/on/trace")
    for n in ("on", "off", "other"):
        b.rmdir(f"{TR}/instances/{n}")


def test_trace_pipe_consumes_and_trace_write_clears(b):
    b.mkdir(f"{TR}/instances/p")
    b.write(f"{TR}/instances/p/events/cxl/enable", "1")
    _poison(b, 0x5000)
    _poison(b, 0x5040)
    assert b.read(f"{TR}/instances/p/trace").count("cxl_poison:") == 2
    b.write(f"{TR}/instances/p/trace", "")
    assert "cxl_poison:" not in b.read(f"{TR}/instances/p/trace")
    _poison(b, 0x5080)
    assert b.vfs.readable(f"{TR}/instances/p/trace_pipe")
    assert b.read(f"{TR}/instances/p/trace_pipe").count("cxl_poison:") == 1
    assert b.read(f"{TR}/instances/p/trace_pipe") == ""
    assert not b.vfs.readable(f"{TR}/instances/p/trace_pipe")
    b.rmdir(f"{TR}/instances/p")


def test_overwrite_keeps_the_newest_and_marks_missed_events(b):
    b.mkdir(f"{TR}/instances/small")
    b.write(f"{TR}/instances/small/buffer_size_kb", "1")
    b.write(f"{TR}/instances/small/events/cxl/cxl_poison/enable", "1")
    for i in range(40):
        _poison(b, 0x10000 + 64 * i)
    raw = b.read_stream(f"{TR}/instances/small/per_cpu/cpu0/trace_pipe_raw")
    recs = T.parse_page(raw, T.parse_header_page(ring.HEADER_PAGE), 0)
    assert recs[0].missed and len(recs) < 40
    ev = registry().get("cxl", "cxl_poison")
    assert ev.decode(recs[-1].data)["dpa"] == 0x10000 + 64 * 39
    assert "overrun:" in b.read(f"{TR}/instances/small/per_cpu/cpu0/stats")
    b.rmdir(f"{TR}/instances/small")


def test_time_extend_for_large_deltas(b):
    recs = [(5, b"a" * 8), (5 + (1 << 30), b"b" * 8), (5 + (1 << 30) + 3, b"c" * 200)]
    page, used = ring.build_page(recs, False)
    assert used == 3
    assert ring.parse_page(page) == [(5, b"a" * 8), (5 + (1 << 30), b"b" * 8), (5 + (1 << 30) + 3, b"c" * 200)]
    got = T.parse_page(page, T.parse_header_page(ring.HEADER_PAGE), 1)
    assert [(r.ts, r.data) for r in got] == [(5, b"a" * 8), (5 + (1 << 30), b"b" * 8),
                                              (5 + (1 << 30) + 3, b"c" * 200)]


def test_render_does_not_consume(tmp_path, b):
    from cxlemu.sysfs.backend import render
    b.mkdir(f"{TR}/instances/r")
    b.write(f"{TR}/instances/r/events/cxl/enable", "1")
    _poison(b, 0x6000)
    render(b, str(tmp_path), tops=("/sys/kernel/tracing",), skip=())
    assert not (tmp_path / "sys/kernel/debug").exists()
    assert (tmp_path / "sys/kernel/tracing/instances/r/per_cpu/cpu0/trace_pipe_raw").read_bytes() == b""
    assert "cxl_poison" in b.read(f"{TR}/instances/r/trace")
    b.rmdir(f"{TR}/instances/r")
