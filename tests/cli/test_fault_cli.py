"""``cxlemu fault`` end to end: media errors, corrected errors, health
changes with their alerts, link down/up -- and malformed or impossible
specs, which get a message and change nothing (the state file is
byte-identical)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from cxlemu.cli.main import main
from cxlemu.machine.store import Store


@pytest.fixture
def box(capsys):
    assert main(["create", "box", "-t", "biscuitos-b"]) == 0
    capsys.readouterr()
    return "box"


def state(name="box") -> bytes:
    from cxlemu.machine.paths import STATE_FILE
    return (Store().path(name) / STATE_FILE).read_bytes()


def ex(capsys, *argv):
    rc = main(["exec", "box", "--", *argv])
    o = capsys.readouterr()
    return rc, o.out, o.err


def test_media_error_lists_and_monitors(box, capsys):
    ex(capsys, "cxl", "monitor")
    assert main(["fault", box, "mem0", "--media-error", "0x2000", "--len", "128"]) == 0
    out = capsys.readouterr().out
    assert "media error at DPA 0x2000 (128 bytes, internal)" in out and "Failure log" in out
    rc, o, e = ex(capsys, "cxl", "list", "-L", "-m", "mem0")
    errs = json.loads(o)[0]["media_errors"]
    assert errs == [{"offset": 0x2000, "length": 128, "source": "Internal"}]
    rc, o, e = ex(capsys, "cxl", "monitor")
    ev = [json.loads(x) for x in e.splitlines()]
    # the fault's event, then the List record `cxl list -L` caused: every instance with
    # the event enabled records it, as on Linux
    assert [x["event"] for x in ev] == ["cxl_general_media", "cxl_poison"]
    assert (ev[0]["dpa"], ev[0]["log"]) == (0x2000, 2) and (ev[1]["trace_type"], ev[1]["dpa"]) == (0, 0x2000)


def test_health_alert_thresholds(box, capsys):
    ex(capsys, "cxl", "monitor")
    rc, o, e = ex(capsys, "cxl", "set-alert-config", "mem0", "-L", "80", "--life-used-alert", "on")
    assert rc == 0, e
    assert main(["fault", box, "mem0", "--health", "life_used=85"]) == 0
    assert "Memory Module event in the Warning log" in capsys.readouterr().out
    assert main(["fault", box, "mem0", "--health", "temperature=101,dirty_shutdown"]) == 0
    assert "Failure log" in capsys.readouterr().out
    rc, o, e = ex(capsys, "cxl", "list", "-m", "mem0", "-H")
    h = json.loads(o)[0]["health"]
    assert (h["life_used_percent"], h["ext_life_used"], h["ext_temperature"], h["dirty_shutdowns"]) == \
        (85, "warning", "critical", 1)
    rc, o, e = ex(capsys, "cxl", "monitor")
    mm = [json.loads(x) for x in e.splitlines()]
    assert [(x["event"], x["log"]) for x in mm] == [("cxl_memory_module", 1), ("cxl_memory_module", 2)]
    assert mm[1]["device_temp"] == 101 and mm[1]["dirty_shutdown_cnt"] == 1


@pytest.mark.parametrize("argv,code,msg", [
    (["--media-error", "0x2001"], 1, "not 64-byte aligned"),
    (["--media-error", "0x4000", "--len", "65"], 1, "not a multiple of 64"),
    (["--media-error", "0x40000000"], 1, "outside the device"),
    (["--media-error", "zz"], 2, "'zz' is not a number"),
    (["--media-error", "0", "--source", "cosmic"], 2, "--source"),
    (["--health", "life_used=abc"], 2, "not a number"),
    (["--health", "life_used=101"], 2, "percentage"),
    (["--health", "wear=3"], 2, "unknown field 'wear'"),
    (["--health", "life_used"], 2, "not KEY=VALUE"),
    (["--health", ""], 2, "needs KEY=VALUE"),
    (["--health", "temperature=-1"], 2, "other than -1"),
    (["--health", "maintenance_needed=maybe"], 2, "needs 0 or 1"),
    (["--link-up"], 1, "the link is up"),
    (["--corrected-error", "0x10", "--count", "0"], 2, "--count must be positive"),
])
def test_malformed_or_impossible_faults_change_nothing(box, capsys, argv, code, msg):
    before = state()
    assert main(["fault", box, "mem0", *argv]) == code
    err = capsys.readouterr().err
    assert err.startswith("cxlemu: ") and msg in err and "Traceback" not in err
    assert state() == before


def test_unknown_memdev_and_machine(box, capsys):
    assert main(["fault", box, "mem9", "--link-down"]) == 1
    assert "no memdev 'mem9' (memdevs: mem0)" in capsys.readouterr().err
    assert main(["fault", "nobox", "mem0", "--link-down"]) == 1
    assert "no machine named 'nobox'" in capsys.readouterr().err


def test_usage_errors_exit_2():
    r = subprocess.run([sys.executable, "-m", "cxlemu", "fault", "box", "mem0"], capture_output=True, text=True)
    assert r.returncode == 2 and "one of the arguments" in r.stderr
    r = subprocess.run([sys.executable, "-m", "cxlemu", "fault", "box", "mem0", "--link-down", "--link-up"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "not allowed with" in r.stderr


def test_link_down_and_up(box, capsys):
    assert main(["fault", box, "mem0", "--link-down"]) == 0
    capsys.readouterr()
    rc, o, e = ex(capsys, "cxl", "list", "-M", "-i")
    assert json.loads(o)[0]["state"] == "disabled"
    assert main(["fault", box, "mem0", "--link-down"]) == 1
    assert "already down" in capsys.readouterr().err
    assert main(["fault", box, "mem0", "--health", "life_used=5"]) == 1
    assert "link is down" in capsys.readouterr().err
    assert main(["fault", box, "0000:0f:00.0", "--link-up"]) == 0       # by PCI address
    capsys.readouterr()
    rc, o, e = ex(capsys, "cxl", "list", "-M")
    assert "state" not in json.loads(o)[0]
    assert main(["dmesg", box]) == 0
    log = capsys.readouterr().out
    assert "frozen state error detected, disable CXL.mem" in log and "error resume successful" in log


def test_latent_and_corrected_errors(box, capsys):
    assert main(["fault", box, "mem0", "--media-error", "0x8000", "--latent"]) == 0
    capsys.readouterr()
    rc, o, e = ex(capsys, "cxl", "list", "-L", "-m", "mem0")
    assert "media_errors" not in json.loads(o)[0]                      # the device does not know yet
    with Store().open(box) as m:
        assert m.platform.devices[0].poison.covers(0x8000)                 # but the media is bad
    assert main(["fault", box, "mem0", "--corrected-error", "0x9000", "--count", "3"]) == 0
    capsys.readouterr()
    rc, o, e = ex(capsys, "cxl", "list", "-m", "mem0", "-H")
    assert json.loads(o)[0]["health"]["pmem_errors"] == 3
