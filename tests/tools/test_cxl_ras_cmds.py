"""cxl's RAS commands on the emulator: ndctl's test/cxl-poison.sh flow
(by memdev and by region, on cxl_test), ``cxl list -L`` shapes,
``inject-media-poison`` / ``clear-media-poison``, and ``cxl monitor``."""

from __future__ import annotations

import json

import pytest

from cxlemu.hw import faults as F
from cxltest_support import boot, cxl


def jq(out: str):
    return json.loads(out) if out.strip() else []


def nr_media_errors(b, *list_by: str) -> int:
    rc, out, err = cxl(b, "list", *list_by, "--media-errors")
    assert rc == 0, err
    errs = [x.get("media_errors") for x in jq(out)]
    errs = [e for e in errs if e]
    return len(errs[0]) if errs else 0


@pytest.fixture
def ct():
    b = boot("cxl-test")
    b.write("/sys/kernel/tracing/events/cxl/cxl_poison/enable", "1")     # as the script does
    return b


def test_cxl_poison_sh_by_memdev(ct):
    mems = [m["memdev"] for m in jq(cxl(ct, "list", "-b", "cxl_test", "-M")[1])
            if m.get("pmem_size") and m.get("ram_size")]
    memdev = mems[0]
    for a in ("0x40000000", "0x40001000", "0x600", "0x0"):
        ct.write(f"/sys/kernel/debug/cxl/{memdev}/inject_poison", a)
    assert nr_media_errors(ct, "-m", memdev) == 4
    for a in ("0x40000000", "0x40001000", "0x600", "0x0"):
        ct.write(f"/sys/kernel/debug/cxl/{memdev}/clear_poison", a)
    assert nr_media_errors(ct, "-m", memdev) == 0
    # the top-level instance the script enabled saw every inject and clear
    trace = ct.read("/sys/kernel/tracing/trace")
    assert trace.count("trace_type=Inject") == 4 and trace.count("trace_type=Clear") == 4


def test_cxl_poison_sh_by_region(ct):
    decs = [d for d in jq(cxl(ct, "list", "-b", "cxl_test", "-D", "-d", "root")[1])
            if d.get("pmem_capable") and d.get("nr_targets") == 2]
    decoder = decs[0]["decoder"]
    targets = jq(cxl(ct, "list", "-T", "-d", decoder)[1])[0]["targets"]
    port = {t["position"]: t["target"] for t in targets}
    mem0 = jq(cxl(ct, "list", "-M", "-p", port[0])[1])[0]["memdev"]
    mem1 = jq(cxl(ct, "list", "-M", "-p", port[1])[1])[0]["memdev"]
    rc, out, err = cxl(ct, "create-region", "-d", decoder, "-m", mem0, mem1)
    assert rc == 0, err
    region = jq(out)["region"]
    for m in (mem0, mem1):
        ct.write(f"/sys/kernel/debug/cxl/{m}/inject_poison", "0x40000000")
    assert nr_media_errors(ct, "-r", region) == 2
    rc, out, _ = cxl(ct, "list", "-r", region, "--media-errors", "-u")
    errs = jq(out)[0]["media_errors"] if isinstance(jq(out), list) else jq(out)["media_errors"]
    # one 64-byte line per device at the same DPA: region offsets 0 and one granule (%#llx prints 0 as "0")
    assert sorted(e["offset"] for e in errs) == ["0", "0x1000"] and all(e["source"] == "Injected" for e in errs)
    for m in (mem0, mem1):
        ct.write(f"/sys/kernel/debug/cxl/{m}/clear_poison", "0x40000000")
    assert nr_media_errors(ct, "-r", region) == 0


def test_media_errors_flags_and_sources():
    b = boot("biscuitos-b")
    hw = b.kernel.cxl.memdevs[0].hw
    hw.poison.max_records = 2
    F.media_error(hw, 0, 64, source=1)
    F.media_error(hw, 4096, 128, source=7)
    F.media_error(hw, 8192, 64)                   # overflows
    errs = jq(cxl(b, "list", "-L", "-m", "mem0")[1])[0]["media_errors"]
    assert [(e["offset"], e["length"], e["source"]) for e in errs] == [(0, 64, "External"),
                                                                        (4096, 128, "Vendor Specific")]
    assert all(e["flags"] == "Overflow," and e["overflow_t"] == hw.poison.overflow_ts for e in errs)


def test_list_without_tracefs_prints_the_libtracefs_error(tmp_path):
    from cxlemu.sysfs.backend import DirectoryBackend, render
    b = boot("biscuitos-b")
    render(b, str(tmp_path), tops=("/sys/bus", "/sys/devices", "/dev"))
    rc, out, err = cxl(DirectoryBackend(str(tmp_path)), "list", "-L")
    assert "tracefs_instance_create() failed" in err and "media_errors" not in out


def test_inject_and_clear_commands():
    b = boot("biscuitos-b")
    assert cxl(b, "inject-media-poison", "mem0", "-a", "0x1000") == (0, "poison inject at mem0:0x1000\n", "")
    assert cxl(b, "inject-media-poison", "0", "--address", "8192")[1] == "poison inject at mem0:0x2000\n"
    errs = jq(cxl(b, "list", "-L", "-m", "mem0")[1])[0]["media_errors"]
    assert [e["offset"] for e in errs] == [0x1000, 0x2000]
    assert cxl(b, "clear-media-poison", "mem0", "-a", "0x1000") == (0, "poison cleared at mem0:0x1000\n", "")
    rc, out, err = cxl(b, "inject-media-poison", "mem0", "-a", "0x1001")
    assert rc and out == "" and "Invalid argument" in err
    rc, out, err = cxl(b, "inject-media-poison", "mem0", "-a", "zz")
    assert rc and "invalid address 'zz'" in err
    rc, _, err = cxl(b, "inject-media-poison", "mem0")
    assert rc == 129 and "usage: cxl inject-media-poison" in err
    rc, _, err = cxl(b, "inject-media-poison", "mem7", "-a", "0")
    assert rc and "no memdev matches mem7" in err
    assert [r.dpa for r in b.kernel.cxl.memdevs[0].hw.poison.records()] == [0x2000]      # nothing else changed


def test_inject_on_a_device_without_the_capability():
    from cxlemu.topology.presets import text
    from cxltest_support import boot_text
    b = boot_text(text("biscuitos-b").replace('persistent = "512M"', 'persistent = "512M"\npoison_inject = false'))
    rc, out, err = cxl(b, "inject-media-poison", "mem0", "-a", "0x1000")
    assert rc and "not supported" in err and not len(b.kernel.cxl.memdevs[0].hw.poison)


def test_monitor_prints_events_recorded_since_its_instance_exists():
    b = boot("biscuitos-b")
    assert cxl(b, "monitor") == (0, "", "")                  # creates "cxl_monitor"; nothing yet
    cxl(b, "inject-media-poison", "mem0", "-a", "0x1000")
    rc, out, err = cxl(b, "monitor")
    lines = [json.loads(x) for x in err.splitlines()]          # NOTICE goes to stderr with the standard log
    assert rc == 0 and out == ""
    assert [(x["system"], x["event"], x["dpa"]) for x in lines] == \
        [("cxl", "cxl_poison", 0x1000), ("cxl", "cxl_general_media", 0x1000)]
    assert lines[0]["trace_type"] == 1                          # Inject
    assert lines[1]["log"] == 0 and lines[1]["transaction_type"] == 4   # the device's poison-creation event
    assert list(lines[0])[:3] == ["system", "event", "timestamp"]
    assert cxl(b, "monitor")[2] == ""                          # consumed
    F.media_error(b.kernel.cxl.memdevs[0].hw, 0x3000, 64)
    b.kernel.cxl.events.service(b.kernel.cxl.memdevs[0])
    rc, out, err = cxl(b, "monitor", "-u")
    assert '"event":"cxl_general_media"' in err.replace(": ", ":") and "\n  " in err


def test_monitor_log_file_and_options(tmp_path):
    b = boot("biscuitos-b")
    log = tmp_path / "mon.log"
    cxl(b, "monitor", "-l", str(log))
    cxl(b, "inject-media-poison", "mem0", "-a", "0x40")
    assert cxl(b, "monitor", "-l", str(log))[0] == 0
    assert '"event":"cxl_poison"' in log.read_text()
    rc, _, err = cxl(b, "monitor", "--daemon", "-l", "rel.log")
    assert rc == 234 and "relative path or 'standard' are not compatible with daemon mode" in err
    rc, _, err = cxl(b, "monitor", "--daemon", "-l", "standard")
    assert rc == 234
    rc, _, err = cxl(b, "monitor", "bogus")
    assert rc == 129 and 'unknown parameter "bogus"' in err
    rc, _, _ = cxl(b, "monitor", "--daemon", "-l", str(tmp_path / "d.log"))
    assert rc == 0 and "cxl monitor daemon started." in (tmp_path / "d.log").read_text()
