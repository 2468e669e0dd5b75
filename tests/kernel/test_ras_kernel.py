"""The kernel side of RAS: debugfs inject/clear (validation and errno),
trigger_poison_list with regions and HPAs, event-record delivery (MSI,
no interrupts, firmware first before/after 6.9), link down/up."""

from __future__ import annotations

import errno

import pytest

from cxlemu.hw import faults as F
from cxlemu.hw import health as H
from cxlemu.hw.mailbox import events as E
from cxlemu.kernel.trace.catalog import registry
from cxlemu.tools.common import tracefs as T
from cxltest_support import boot_text, create_region, fabric_toml

DBG = "/sys/kernel/debug/cxl"
TR = "/sys/kernel/tracing"


def machine(**kw) -> object:
    extra_dev = kw.pop("dev", "")
    extra_boot = kw.pop("boot", "")
    text = fabric_toml(2, **kw)
    if extra_dev:
        text = text.replace("lsa = 0", "lsa = 0\n" + extra_dev)
    if extra_boot:
        text = text.replace('hypervisor = false', 'hypervisor = false\n' + extra_boot)
    return boot_text(text)


def errno_of(fn, *a) -> int:
    with pytest.raises(OSError) as e:
        fn(*a)
    return e.value.errno


def events(b, name="t") -> list[dict]:
    """Every event recorded in instance ``name`` (decoded with the tools' parser)."""
    tfs = T.Tracefs.find(b)
    inst = tfs.instance_create(name)
    out = []
    tfs.iterate_raw_events(inst, lambda ev, rec: out.append(T.record_to_json(ev, rec)))
    return out


def watch(b, name="t", system="cxl"):
    b.mkdir(f"{TR}/instances/{name}")
    b.write(f"{TR}/instances/{name}/events/{system}/enable", "1")


@pytest.mark.parametrize("dpa,why", [("0x1001", "aligned"), ("0x20000000", "resource"), ("-1", None),
                                     ("zz", None), ("", None)])
def test_debugfs_inject_validation(dpa, why):
    b = machine()
    k = b.kernel
    before = len(k.cxl.memdevs[0].hw.poison)
    assert errno_of(b.write, f"{DBG}/mem0/inject_poison", dpa) == errno.EINVAL
    assert len(k.cxl.memdevs[0].hw.poison) == before            # nothing changed
    if why:
        assert why in k.dmesg[-1]


def test_inject_limit_is_enxio_and_clear_of_clean_line_succeeds():
    b = machine(dev="inject_poison_limit = 2")
    for a in ("0x0", "0x40"):
        b.write(f"{DBG}/mem0/inject_poison", a)
    assert errno_of(b.write, f"{DBG}/mem0/inject_poison", "0x80") == errno.ENXIO
    b.write(f"{DBG}/mem0/clear_poison", "0x1000")              # not poisoned: not an error (spec, QEMU)
    assert [r.dpa for r in b.kernel.cxl.memdevs[0].hw.poison.records()] == [0, 0x40]


def test_unsupported_device_has_no_debugfs_files():
    b = machine(dev="poison_inject = false")
    assert b.listdir(f"{DBG}/mem0") == ["dpamem"]
    assert errno_of(b.write, f"{DBG}/mem0/inject_poison", "0x0") == errno.ENOENT
    assert b.exists("/sys/bus/cxl/devices/mem0/trigger_poison_list")          # listing still works


def test_trigger_list_reports_region_and_hpa_and_inject_records():
    b = machine()
    k = b.kernel
    made = create_region(b, "decoder0.0", ["mem0", "mem1"], gran=256)
    region = next(r for r in k.cxl.regions.all() if r.name == made.name)
    watch(b)
    b.write(f"{DBG}/mem1/inject_poison", "0x2040")
    b.write("/sys/bus/cxl/devices/mem1/trigger_poison_list", "1")
    evs = [e for e in events(b) if e["event"] == "cxl_poison"]
    inject, listed = evs
    assert (inject["trace_type"], listed["trace_type"]) == (1, 0)
    assert inject["source"] == 0 and listed["source"] == 3           # the inject record carries no source
    for e in evs:
        assert e["region"] == region.name and e["dpa"] == 0x2040 and e["dpa_length"] == 64
        hpa = e["hpa"]
        assert region.res.start <= hpa < region.res.start + region.res.size
        assert k.cxl.regions.geometry(region).to_dpa(hpa) == (1, 0x2040)
    assert any("poison inject dpa:0x2040 region: region0" in m for m in k.dmesg)


def test_list_outside_regions_has_all_ones_hpa_and_max_errors_stops():
    b = machine(dev="poison_max_records = 3")
    watch(b)
    hw = b.kernel.cxl.memdevs[0].hw
    for i in range(5):
        F.media_error(hw, i * 4096, 64)                          # 3 listed, then overflow
    b.write("/sys/bus/cxl/devices/mem0/trigger_poison_list", "1")
    lst = [e for e in events(b) if e["event"] == "cxl_poison" and e["trace_type"] == 0]
    assert [e["dpa"] for e in lst] == [0, 4096, 8192]
    assert all(e["hpa"] == (1 << 64) - 1 and e["region"] == "" for e in lst)
    assert all(e["flags"] == 2 and e["overflow_ts"] == hw.poison.overflow_ts for e in lst)


def test_msi_delivery_traces_and_clears_the_device_logs():
    b = machine()
    k = b.kernel
    md = k.cxl.memdevs[0]
    assert md.event_mode == "msi"
    watch(b)
    F.media_error(md.hw, 0x3000, 128, dram=True)
    H.apply(md.hw, {"temperature": 105}, 0)
    k.cxl.events.service(md)
    evs = events(b)
    names = [e["event"] for e in evs]
    assert names == ["cxl_dram", "cxl_memory_module"]            # Failure log first
    assert evs[0]["dpa"] == 0x3000 and evs[0]["descriptor"] == E.MediaDescriptor.UNCORRECTABLE
    assert evs[1]["device_temp"] == 105 and evs[1]["event_type"] == E.ModuleEventType.TEMPERATURE_CHANGE
    assert md.hw.events.status == 0                              # the driver cleared them


def test_overflowed_log_traces_cxl_overflow():
    b = machine(dev="event_log_size = 2")
    k = b.kernel
    md = k.cxl.memdevs[0]
    watch(b)
    md.hw.events.logs[E.EventLog.FAIL].setting = 0              # hold the interrupt back
    for i in range(4):
        F.media_error(md.hw, i * 64, 64)
    md.hw.events.logs[E.EventLog.FAIL].setting = 1
    md.hw.events.pending |= 1 << E.EventLog.FAIL
    k.cxl.events.service(md)
    ev = [e for e in events(b) if e["event"] == "cxl_overflow"]
    assert len(ev) == 1 and ev[0]["count"] == 2 and ev[0]["log"] == E.EventLog.FAIL


def test_no_interrupts_leaves_records_in_the_device():
    b = machine(dev="event_irq = false")
    k = b.kernel
    md = k.cxl.memdevs[0]
    assert md.event_mode == "none"
    assert any("No interrupt support, disable event processing." in m for m in k.dmesg)
    watch(b)
    F.media_error(md.hw, 0, 64)
    k.cxl.events.service(md)
    assert events(b) == [] and md.hw.events.status == 1 << E.EventLog.FAIL


@pytest.mark.parametrize("kernel,traced", [("6.9", True), ("6.8", False)])
def test_firmware_first_cper_since_6_9(kernel, traced):
    b = machine(kernel=kernel, boot="cxl_error_native = false")
    k = b.kernel
    md = k.cxl.memdevs[0]
    assert md.event_mode == "fw"
    watch(b)
    F.media_error(md.hw, 0x40, 64)
    k.cxl.events.service(md)
    assert md.hw.events.status == 0                              # the firmware consumed the log
    got = [e["event"] for e in events(b)]
    assert got == (["cxl_general_media"] if traced else [])


def test_link_down_tears_down_and_link_up_reprobes():
    b = machine()
    k = b.kernel
    create_region(b, "decoder0.0", ["mem0", "mem1"], gran=256)
    md = k.cxl.memdevs[0]
    F.link_down(md.hw)
    k.cxl.link_down(md)
    assert md.driver is None and md.endpoint is None
    assert any("frozen state error detected, disable CXL.mem" in m for m in k.dmesg)
    assert errno_of(b.write, "/sys/bus/cxl/devices/mem0/trigger_poison_list", "1") in (errno.EINVAL, errno.ETIMEDOUT,
                                                                                        errno.ENOENT)
    F.link_up(md.hw)
    k.cxl.link_up(md)
    assert md.driver is not None and md.endpoint is not None
    assert all(not r.committed for r in md.hw.hdm.decoders)       # the hot reset cleared the decoders


def test_every_event_format_parses_in_the_tools_parser():
    b = machine()
    for ev in registry().by_id.values():
        fmt = T.parse_format(ev.system, b.read(f"{TR}/events/{ev.system}/{ev.name}/format"))
        assert (fmt.name, fmt.id) == (ev.name, ev.id)
        assert [f.name for f in fmt.fields] == [f.name for f in ev.fields]
        assert [f.offset for f in fmt.fields] == [f.offset for f in ev.fields]
