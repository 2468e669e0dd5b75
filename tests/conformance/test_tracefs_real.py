"""The model's tracefs read by the real libraries and tools:

* Debian's libtraceevent (through ctypes) parses every event ``format``
  file and ``header_page``, decodes the model's raw ring-buffer pages with
  its kbuffer, and prints each record with the event's ``print fmt`` --
  which must match what the model's own ``trace`` file prints;
* Debian's ``cxl monitor`` (ndctl 76.1, libtracefs 1.6) runs in a private
  mount namespace on a rendered tree whose ``tracing`` directory stands in
  for tracefs, and prints the same events as cxlemu's ``cxl monitor``
  (modulo the documented v76.1 difference: static char/u8 arrays are
  strings there, arrays of numbers in v81).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import shutil
import subprocess

import pytest

from cxlemu.hw import faults as F
from cxlemu.hw import health as H
from cxlemu.hw.mailbox import events as E
import uuid
from cxlemu.kernel.trace import ring
from cxlemu.kernel.trace.catalog import registry
from cxlemu.sysfs.backend import render
from cxltest_support import boot, create_region, boot_text, cxl, fabric_toml, require_real_tools

TR = "/sys/kernel/tracing"


def _lib():
    name = ctypes.util.find_library("traceevent")
    if not name:
        pytest.skip("libtraceevent is not installed (apt-get install libtraceevent1)")
    lib = ctypes.CDLL(name)
    lib.tep_alloc.restype = ctypes.c_void_p
    lib.tep_parse_event.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
    lib.tep_parse_header_page.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_int]
    lib.tep_set_long_size.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.kbuffer_alloc.restype = ctypes.c_void_p
    lib.kbuffer_load_subbuffer.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    for fn in ("kbuffer_read_event", "kbuffer_next_event"):
        getattr(lib, fn).restype = ctypes.c_void_p
        getattr(lib, fn).argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_ulonglong)]
    lib.kbuffer_event_size.argtypes = [ctypes.c_void_p]
    lib.trace_seq_init.argtypes = [ctypes.c_void_p]
    lib.tep_print_event.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_char_p,
                                    ctypes.c_char_p]
    return lib


class Rec(ctypes.Structure):        # struct tep_record (libtraceevent 1.x)
    _fields_ = [("ts", ctypes.c_ulonglong), ("offset", ctypes.c_ulonglong), ("missed_events", ctypes.c_longlong),
                ("record_size", ctypes.c_int), ("size", ctypes.c_int), ("data", ctypes.c_void_p),
                ("cpu", ctypes.c_int), ("ref_count", ctypes.c_int), ("locked", ctypes.c_int),
                ("priv", ctypes.c_void_p)]


class Seq(ctypes.Structure):        # struct trace_seq
    _fields_ = [("buffer", ctypes.c_char_p), ("buffer_size", ctypes.c_uint), ("len", ctypes.c_uint),
                ("readpos", ctypes.c_uint), ("state", ctypes.c_int)]


def every_event(b):
    """A machine state that produced one record of each cxl event type and a memory failure."""
    k = b.kernel
    create_region(b, "decoder0.0", ["mem0", "mem1"], gran=256)
    b.mkdir(f"{TR}/instances/all")
    b.write(f"{TR}/instances/all/events/enable", "1")
    md = k.cxl.memdevs[1]
    b.write(f"/sys/kernel/debug/cxl/{md.name}/inject_poison", "0x40")
    b.write(f"/sys/bus/cxl/devices/{md.name}/trigger_poison_list", "1")
    F.media_error(md.hw, 0x1000, 64, dram=True)
    F.media_error(md.hw, 0x2000, 64)
    H.apply(md.hw, {"temperature": 90, "maintenance_needed": True}, 0)
    k.cxl.events.service(md)
    # a record of a type the kernel does not know: cxl_generic_event
    k.cxl.events.trace_record(md, 1, E.EventRecord(E.EventRecordHeader(uuid.UUID(int=7), severity=1, handle=9)))
    k.mm.failure.memory_failure(1)
    return b


def test_libtraceevent_parses_formats_pages_and_prints_like_the_model():
    lib = _lib()
    b = every_event(boot_text(fabric_toml(2)))
    tep = lib.tep_alloc()
    hp = b.read(f"{TR}/events/header_page").encode()
    assert lib.tep_parse_header_page(tep, hp, len(hp), 8) == 0
    lib.tep_set_long_size(tep, 8)
    for ev in registry().by_id.values():
        fmt = b.read(f"{TR}/events/{ev.system}/{ev.name}/format").encode()
        assert lib.tep_parse_event(tep, fmt, len(fmt), ev.system.encode()) == 0, ev.name
    ours = [line.split(": ", 2)[2].rstrip("\n") for line in b.read(f"{TR}/instances/all/trace").splitlines()
            if not line.startswith("#")]
    names = [line.split(": ")[1] for line in b.read(f"{TR}/instances/all/trace").splitlines()
             if not line.startswith("#")]
    assert set(names) >= {"cxl_poison", "cxl_general_media", "cxl_dram", "cxl_memory_module",
                          "cxl_generic_event", "memory_failure_event"}
    theirs = []
    for cpu in range(len(b.listdir(f"{TR}/instances/all/per_cpu"))):
        while True:
            page = b.read_stream(f"{TR}/instances/all/per_cpu/cpu{cpu}/trace_pipe_raw")
            if not page:
                break
            kb = lib.kbuffer_alloc(1, 1)            # 8-byte longs, little endian
            buf = ctypes.create_string_buffer(page, len(page))
            assert lib.kbuffer_load_subbuffer(kb, buf) == 0
            ts = ctypes.c_ulonglong()
            p = lib.kbuffer_read_event(kb, ctypes.byref(ts))
            while p:
                r = Rec(ts=ts.value, size=lib.kbuffer_event_size(kb), data=p, cpu=cpu, ref_count=1)
                s = Seq()
                lib.trace_seq_init(ctypes.byref(s))
                lib.tep_print_event(tep, ctypes.byref(s), ctypes.byref(r), b"%s", b"INFO")
                theirs.append(ctypes.string_at(s.buffer, s.len).decode())
                p = lib.kbuffer_next_event(kb, ctypes.byref(ts))
    assert len(theirs) == len(ours)
    # the simple events print identically through the kernel-style print fmt
    for t, o, n in zip(theirs, ours, names):
        if n in ("cxl_poison", "cxl_overflow", "memory_failure_event"):
            assert t == o, n
        else:
            assert t.split(" : ")[0] == o.split(" : ")[0], n      # the common header part


def _tracefs_mount_works() -> str | None:
    probe = subprocess.run(["unshare", "-m", "bash", "-c", "mount -t tracefs nodev /sys/kernel/tracing"],
                           capture_output=True, text=True)
    return None if probe.returncode == 0 else f"cannot mount tracefs here: {probe.stderr.strip()}"


NS_SCRIPT = r'''
set -e
R=$0
mount --bind "$R/sys" /sys
mount -t tracefs nodev /sys/kernel/tracing            # so /proc/mounts names a tracefs ...
mount --bind "$R/sys/kernel/tracing" /sys/kernel/tracing   # ... whose contents are the model's
P=/sys/kernel/tracing/instances/cxl_monitor/trace_pipe
( sleep 0.3; exec 3<>"$P"; echo x >&3; sleep 3 ) &
timeout -s INT 1.2 "$@" || true
'''


def _v76(obj: dict) -> dict:
    """v76.1 prints static char/u8 arrays as strings (up to the first NUL), v81 as number arrays."""
    out = {}
    for k, v in obj.items():
        if isinstance(v, list):
            raw = bytes(x & 0xFF for x in v)
            v = raw.split(b"\0", 1)[0].decode(errors="replace")
        out[k] = v
    return out


def test_real_cxl_monitor_reads_the_model(tmp_path):
    require_real_tools("cxl")
    why = _tracefs_mount_works()
    if why:
        pytest.skip(why)
    b = boot("biscuitos-b")
    assert cxl(b, "monitor")[0] == 0                       # creates the instance, enables cxl events
    cxl(b, "inject-media-poison", "mem0", "-a", "0x1000")
    F.media_error(b.kernel.cxl.memdevs[0].hw, 0x8000, 64)
    b.kernel.cxl.events.service(b.kernel.cxl.memdevs[0])
    R = str(tmp_path / "tree")
    render(b, R)
    render(b, R, tops=(TR,), skip=())                     # tracefs is its own filesystem: asked for explicitly
    inst = f"{TR}/instances/cxl_monitor"
    ncpu = os.cpu_count() or 1
    for cpu in range(max(ncpu, len(b.listdir(f"{inst}/per_cpu")))):
        dst = f"{R}{inst}/per_cpu/cpu{cpu}"
        os.makedirs(dst, exist_ok=True)
        page = b.read_stream(f"{inst}/per_cpu/cpu{cpu}/trace_pipe_raw") if b.exists(f"{inst}/per_cpu/cpu{cpu}") \
            else b""
        with open(f"{dst}/trace_pipe_raw", "wb") as f:
            f.write(page)
    os.unlink(f"{R}{inst}/trace_pipe")
    os.mkfifo(f"{R}{inst}/trace_pipe")                   # epoll needs a pollable file
    r = subprocess.run(["unshare", "-m", "bash", "-c", NS_SCRIPT, R, "cxl", "monitor"],
                       capture_output=True, text=True, timeout=60)
    real = []
    for line in r.stderr.splitlines():
        if line.startswith("{"):
            obj = json.loads(line)
            if obj not in real:
                real.append(obj)      # the rendered files are not consumed: the real tool rereads them
    assert real, r.stderr[:2000]
    # ours, on an identical state
    b2 = boot("biscuitos-b")
    cxl(b2, "monitor")
    cxl(b2, "inject-media-poison", "mem0", "-a", "0x1000")
    F.media_error(b2.kernel.cxl.memdevs[0].hw, 0x8000, 64)
    b2.kernel.cxl.events.service(b2.kernel.cxl.memdevs[0])
    ours = [json.loads(x) for x in cxl(b2, "monitor")[2].splitlines()]
    assert [_v76(o) for o in ours] == real
    shutil.rmtree(R, ignore_errors=True)


def test_raw_pages_are_whole_pages():
    b = boot("biscuitos-b")
    b.mkdir(f"{TR}/instances/p")
    b.write(f"{TR}/instances/p/events/cxl/enable", "1")
    for i in range(100):
        b.write("/sys/kernel/debug/cxl/mem0/inject_poison", hex(i * 64))
    pages = []
    while True:
        p = b.read_stream(f"{TR}/instances/p/per_cpu/cpu0/trace_pipe_raw")
        if not p:
            break
        pages.append(p)
    assert len(pages) > 1 and all(len(p) == ring.PAGE_SIZE for p in pages)
    assert sum(len(ring.parse_page(p)) for p in pages) == 100 + 100      # inject traces + poison-creation events
