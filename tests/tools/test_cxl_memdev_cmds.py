"""Memdev commands of cxl/memdev.c (v81) end to end on the emulated kernel:
disable-memdev, enable-memdev, reserve-dpa, free-dpa, set-partition,
set-alert-config, wait-sanitize, plus the label commands' wiring."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from cxltest_support import cxl, r, run
from cxltest_support import cxl_json as js, cxl_list_all as snapshot
from cxlemu.tools.cxl import memdev as mdc

SZ_256M = 256 << 20
SZ_1G = 1 << 30
ULLONG_MAX = (1 << 64) - 1


def state(b, mem: str) -> str | None:
    return js(b, "list", "-M", "-i", "-m", mem)[0].get("state")


# ---------------------------------------------------------------------------
# pure helpers (memdev.c partition_align / param_size_to_volatile_size)
# ---------------------------------------------------------------------------

def test_partition_align_vectors_memdev_c():
    pmem, ram = mdc.SETPART_PMEM, mdc.SETPART_VOLATILE
    assert mdc.partition_align(SZ_1G, SZ_256M, 2 * SZ_1G, pmem, False) == (SZ_1G, None)
    assert mdc.partition_align(100 << 20, SZ_256M, 2 * SZ_1G, ram, False) == \
        (ULLONG_MAX, "size 104857600 is not partition aligned 268435456")
    # with --align: pmem requests round the volatile part down, ram requests up
    assert mdc.partition_align(1748 << 20, SZ_256M, 2 * SZ_1G, pmem, True) == (1536 << 20, None)
    assert mdc.partition_align(300 << 20, SZ_256M, 2 * SZ_1G, ram, True) == (512 << 20, None)
    assert mdc.partition_align(1900 << 20, SZ_256M, 1800 << 20, ram, True) == \
        (ULLONG_MAX, "aligned partition size 2147483648 exceeds available size 1887436800")


def test_param_size_to_volatile_size_memdev_c():
    pmem, ram = mdc.SETPART_PMEM, mdc.SETPART_VOLATILE
    assert mdc.param_size_to_volatile_size(pmem, ULLONG_MAX, SZ_1G) == (0, None)
    assert mdc.param_size_to_volatile_size(ram, ULLONG_MAX, SZ_1G) == (SZ_1G, None)
    assert mdc.param_size_to_volatile_size(pmem, SZ_256M, SZ_1G) == (SZ_1G - SZ_256M, None)
    assert mdc.param_size_to_volatile_size(ram, 2 * SZ_1G, SZ_1G) == \
        (ULLONG_MAX, "2147483648 exceeds available capacity 1073741824")


# ---------------------------------------------------------------------------
# disable-memdev / enable-memdev
# ---------------------------------------------------------------------------

def test_disable_memdev_in_an_active_region_needs_force(b):
    """v79+ action_disable(): refused only when the endpoint has committed decoders."""
    before = snapshot(b)
    rc, out, err = cxl(b, "disable-memdev", "mem0")
    assert (rc, out) == (1, "")
    assert err == ("cxl memdev: action_disable: mem0 is part of an active region\n"
                   "cxl memdev: cmd_disable_memdev: disabled 0 mem\n")
    assert snapshot(b) == before
    rc, out, err = cxl(b, "disable-memdev", "mem0", "--force")
    assert rc == 0
    assert err == ("cxl memdev: action_disable: mem0 is part of an active region\n"
                   "cxl memdev: action_disable: Forcing mem0 disable with an active region!\n"
                   "cxl memdev: cmd_disable_memdev: disabled 1 mem\n")
    assert state(b, "mem0") == "disabled"
    assert not b.exists("/sys/bus/cxl/devices/endpoint5")


def test_disable_enable_memdev_by_name_id_and_serial(b):
    assert cxl(b, "disable-memdev", "mem2", "3") == \
        (0, "", "cxl memdev: cmd_disable_memdev: disabled 2 mems\n")
    assert state(b, "mem2") == state(b, "mem3") == "disabled"
    # an already disabled memdev counts as done
    assert cxl(b, "disable-memdev", "2")[2] == "cxl memdev: cmd_disable_memdev: disabled 1 mem\n"
    assert cxl(b, "enable-memdev", "-S", "0x2", "3") == \
        (0, "", "cxl memdev: cmd_enable_memdev: enabled 2 mems\n")
    assert state(b, "mem2") is None and state(b, "mem3") is None
    assert b.exists("/sys/bus/cxl/devices/mem2/driver")


def test_memdev_arguments_quirks(b):
    before = snapshot(b)
    # host names are not accepted as arguments (sscanf "mem%lu" / "%lu" only)
    rc, out, err = cxl(b, "disable-memdev", "cxl_mem.2")
    assert rc == 129
    assert err.startswith("cxl memdev: memdev_action: 'cxl_mem.2' is not a valid memdev name\n\n"
                          " usage: cxl disable-memdev <mem0> [<mem1>..<memN>] [<options>]\n")
    rc, out, err = cxl(b, "enable-memdev", "-S", "zz")
    assert rc == 129 and err.startswith("cxl memdev: memdev_action: 'zz' is not a valid memdev "
                                        "serial number\n\n usage:")
    assert cxl(b, "disable-memdev")[0] == 129
    # one valid argument is enough; unmatched ones are an info line, exit 0
    assert cxl(b, "disable-memdev", "foo", "mem99") == (
        0, "", "cxl memdev: memdev_action: 'foo' is not a valid memdev name\n"
               "cxl memdev: memdev_action: no memdev matches foo\n"
               "cxl memdev: memdev_action: no memdev matches mem99\n"
               "cxl memdev: cmd_disable_memdev: disabled 0 mem\n")
    # a bus filter that matches nothing
    assert cxl(b, "disable-memdev", "-b", "root7", "mem2")[2] == \
        "cxl memdev: memdev_action: no memdev matches mem2\ncxl memdev: cmd_disable_memdev: disabled 0 mem\n"
    assert snapshot(b) == before
    # "all" keeps only the FIRST argument (argc = 1)
    assert cxl(b, "disable-memdev", "mem2", "all")[2] == "cxl memdev: cmd_disable_memdev: disabled 1 mem\n"
    assert [state(b, m) for m in ("mem2", "mem3", "mem1")] == ["disabled", None, None]


def test_verbose_turns_on_library_debug(b):
    rc, out, err = cxl(b, "enable-memdev", "-v", "mem2")
    assert rc == 0
    assert "libcxl: " in err and err.endswith("cxl memdev: cmd_enable_memdev: enabled 1 mem\n")


# ---------------------------------------------------------------------------
# reserve-dpa / free-dpa
# ---------------------------------------------------------------------------

def test_reserve_and_free_dpa(b):
    out = js(b, "reserve-dpa", "mem1", "-s", "256M")
    assert out == [{
        "memdev": "mem1", "pmem_size": SZ_1G, "pmem_qos_class": 42, "ram_size": SZ_1G,
        "ram_qos_class": 42, "serial": 1, "numa_node": 1, "host": "cxl_mem.1",
        "firmware_version": "mock fw v1 ",
        "decoder": {"decoder": "decoder7.0", "interleave_ways": 1, "state": "disabled",
                    "dpa_size": SZ_256M, "mode": "ram"},
    }]
    assert (r(b, "decoder7.0/mode"), int(r(b, "decoder7.0/dpa_size"), 16)) == ("ram", SZ_256M)
    # pmem goes to the next decoder, after the ram partition
    out = js(b, "reserve-dpa", "mem1", "-t", "pmem", "-s", "512M")
    assert out[0]["decoder"]["decoder"] == "decoder7.1"
    assert int(r(b, "decoder7.1/dpa_resource"), 16) == SZ_1G
    # free-dpa releases the last allocation first; its default type is ram,
    # so the decoder is switched back to ram mode (v81 __reserve_dpa)
    rc, out, err = cxl(b, "free-dpa", "mem1")
    assert (rc, err) == (0, "cxl memdev: cmd_free_dpa: reservation release completed on 1 mem device\n")
    assert json.loads(out)[0]["decoder"] == {"decoder": "decoder7.1", "interleave_ways": 1,
                                             "state": "disabled", "mode": "ram"}
    assert (r(b, "decoder7.1/mode"), int(r(b, "decoder7.1/dpa_size"), 16)) == ("ram", 0)
    assert js(b, "free-dpa", "mem1", "-d", "0")[0]["decoder"]["decoder"] == "decoder7.0"
    rc, out, err = cxl(b, "free-dpa", "mem1")
    assert rc == 1
    assert err == ("cxl memdev: __reserve_dpa: mem1: no suitable decoder found\n"
                   "  Warning: no matching devices found\n\n"
                   "cxl memdev: cmd_free_dpa: reservation release completed on 0 mem device\n")
    assert out == "[\n]\n"


def test_reserve_dpa_defaults_to_all_available_ram(b):
    # mem0 gives 256M to region0: 768M are left
    out = js(b, "reserve-dpa", "mem0")
    assert out[0]["decoder"]["decoder"] == "decoder5.1"
    assert out[0]["decoder"]["dpa_size"] == 768 << 20
    rc, _, err = cxl(b, "reserve-dpa", "mem0")
    assert (rc, err.splitlines()[0]) == (1, "cxl memdev: __reserve_dpa: mem0: no available capacity")


RESERVE_ERRORS = [
    (["reserve-dpa", "mem1", "-s", "2G"], "cxl memdev: __reserve_dpa: mem1: '2G' exceeds available capacity\n"),
    (["reserve-dpa", "mem1", "-s", "12q"], "cxl memdev: __reserve_dpa: mem1: failed to parse size option '12q'\n"),
    (["reserve-dpa", "mem1", "-t", "flash"], "cxl memdev: __reserve_dpa: mem1: unsupported type: flash\n"),
    (["reserve-dpa", "mem1", "-d", "3"], "cxl memdev: __reserve_dpa: mem1: decoder7.3 is out of sequence\n"),
    (["reserve-dpa", "mem1", "-d", "decoder9.9"],
     "cxl memdev: __reserve_dpa: mem1: no match for decoder: 'decoder9.9'\n"),
    # nothing to free: no automatic target, so any -d is "out of sequence"
    (["free-dpa", "mem1", "-d", "decoder7.0"], "cxl memdev: __reserve_dpa: mem1: decoder7.0 is out of sequence\n"),
]


@pytest.mark.parametrize("argv,message", RESERVE_ERRORS, ids=[" ".join(a) for a, _ in RESERVE_ERRORS])
def test_reserve_dpa_errors_change_nothing(b, argv, message):
    before = snapshot(b)
    rc, out, err = cxl(b, *argv)
    summary = ("reservation completed on 0 mem device" if argv[0] == "reserve-dpa"
               else "reservation release completed on 0 mem device")
    assert (rc, out) == (1, "[\n]\n")
    assert err == (message + "  Warning: no matching devices found\n\n"
                   f"cxl memdev: cmd_{argv[0].replace('-', '_')}: {summary}\n")
    assert snapshot(b) == before


def test_reserve_dpa_out_of_sequence_with_force_proceeds(b):
    rc, out, err = cxl(b, "reserve-dpa", "mem1", "-d", "decoder7.0", "-s", "256M")
    assert rc == 0 and json.loads(out)[0]["decoder"]["decoder"] == "decoder7.0"
    rc, out, err = cxl(b, "reserve-dpa", "mem1", "-d", "7.2", "-s", "256M", "-f")
    # forced past the check, the kernel still refuses a skipped decoder (hdm.c cxl_dpa_alloc)
    assert rc == 1
    assert err.startswith("cxl memdev: __reserve_dpa: mem1: decoder7.2 is out of sequence\n")
    assert "failed to set dpa allocation" in err


def test_reserve_dpa_on_disabled_memdev(b):
    assert cxl(b, "disable-memdev", "mem2")[0] == 0
    rc, out, err = cxl(b, "reserve-dpa", "mem2")
    assert rc == 1 and err.startswith("cxl memdev: __reserve_dpa: mem2: CXL operation disabled\n")


# ---------------------------------------------------------------------------
# set-partition (IDENTIFY + SET_PARTITION_INFO through the mailbox)
# ---------------------------------------------------------------------------

def test_set_partition_is_exclusive_while_the_nvdimm_is_bound(b):
    """cxl_pmem claims SET_PARTITION_INFO (mbox.c exclusive commands): EBUSY."""
    rc, out, err = cxl(b, "set-partition", "mem2", "-t", "ram", "-s", "512M")
    assert rc == 1
    assert err == ("cxl memdev: action_setpartition: cmd submission failed: Device or resource busy\n"
                   "cxl memdev: action_setpartition: mem2 error: Device or resource busy\n"
                   "cxl memdev: cmd_set_partition: set_partition 0 mem\n")
    # the memdev JSON with partition_info is printed anyway
    assert json.loads(out)[0]["partition_info"]["next_volatile_size"] == 0


def test_set_partition_sets_the_next_partition(b):
    assert cxl(b, "disable-memdev", "mem2")[0] == 0
    rc, out, err = cxl(b, "set-partition", "mem2", "-t", "ram", "-s", "512M")
    assert (rc, err) == (0, "cxl memdev: cmd_set_partition: set_partition 1 mem\n")
    info = json.loads(out)[0]["partition_info"]
    assert (info["next_volatile_size"], info["next_persistent_size"]) == (512 << 20, 1536 << 20)
    assert info["active_volatile_size"] == SZ_1G          # not immediate: takes effect on reset
    # default type pmem, default size all: everything persistent
    info = js(b, "set-partition", "mem2")[0]["partition_info"]
    assert (info["next_volatile_size"], info["next_persistent_size"]) == (0, 2 * SZ_1G)
    info = js(b, "set-partition", "mem2", "-s", "300M", "-a")[0]["partition_info"]
    assert info["next_persistent_size"] == 512 << 20


def test_set_partition_validation_errors(b):
    assert cxl(b, "disable-memdev", "mem2")[0] == 0
    before = snapshot(b)
    cases = [
        (["-t", "flash"], "cxl memdev: action_setpartition: invalid type 'flash'\n"),
        (["-s", "1x"], "cxl memdev: action_setpartition: mem2: failed to parse size option '1x'\n"),
        (["-t", "ram", "-s", "3G"],
         "cxl memdev: param_size_to_volatile_size: mem2: 3221225472 exceeds available capacity 2147483648\n"),
        (["-t", "volatile", "-s", "100M"],
         "cxl memdev: partition_align: mem2: size 104857600 is not partition aligned 268435456\n"),
    ]
    for argv, message in cases:
        rc, out, err = cxl(b, "set-partition", "mem2", *argv)
        assert (rc, out) == (1, "[\n]\n"), argv
        assert err == message + ("  Warning: no matching devices found\n\n"
                                 "cxl memdev: cmd_set_partition: set_partition 0 mem\n")
    assert snapshot(b) == before
    # a device without partitionable capacity (alignment 0)
    rc, out, err = cxl(b, "set-partition", "mem10")
    assert err.startswith("cxl memdev: validate_partition: mem10: no available capacity\n")


def test_set_partition_mailbox_status_is_reported(b, monkeypatch):
    from cxlemu.tools.libcxl import CommandError
    from cxlemu.tools.libcxl.mailbox import MemdevMailbox
    assert cxl(b, "disable-memdev", "mem2")[0] == 0

    def send(self, cmd_id, payload=b"", out_size=0):
        raise CommandError(5, "mailbox status 3", status=3)
    monkeypatch.setattr(MemdevMailbox, "send", send)
    rc, out, err = cxl(b, "set-partition", "mem2")
    assert rc == 1
    assert err == ("cxl memdev: action_setpartition: action_setpartition: mbox status: 3\n"
                   "cxl memdev: action_setpartition: mem2 error: No such device or address\n"
                   "cxl memdev: cmd_set_partition: set_partition 0 mem\n")


# ---------------------------------------------------------------------------
# set-alert-config / wait-sanitize
# ---------------------------------------------------------------------------

def test_set_alert_config_programs_thresholds(b):
    rc, out, err = cxl(b, "set-alert-config", "mem1", "--life-used-alert", "on", "-L", "30",
                       "--over-temperature-alert", "on", "-O", "-40", "--pmem-err-alert", "off")
    assert (rc, err) == (0, "cxl memdev: cmd_set_alert_config: set alert configuration for 1 mem\n")
    ac = json.loads(out)[0]["alert_config"]
    assert ac["life_used_prog_warn_threshold_valid"] is True
    assert ac["life_used_prog_warn_threshold"] == 30
    assert ac["dev_over_temperature_prog_warn_threshold_valid"] is True
    assert ac["dev_over_temperature_prog_warn_threshold"] == (-40) & 0xFFFF   # raw u16, as libcxl prints
    assert ac["corrected_pmem_err_prog_warn_threshold_valid"] is False
    # switching one alert off keeps the others
    ac = js(b, "set-alert-config", "mem1", "--life-used-alert", "off")[0]["alert_config"]
    assert ac["life_used_prog_warn_threshold_valid"] is False
    assert ac["dev_over_temperature_prog_warn_threshold_valid"] is True


ALERT_ERRORS = [
    ([], "action_set_alert_config: No action specified"),
    (["-L", "30"], "action_set_alert_config: Action not specified"),
    (["--life-used-alert", "on"], "action_set_alert_config: Threshold not specified"),
    (["--life-used-alert", "on", "-L", "101"], "validate_alert_threshold: Invalid life used threshold: 101"),
    (["--under-temperature-alert", "on", "-U", "40000"],
     "validate_alert_threshold: Invalid device temperature threshold: 40000"),
    (["--volatile-mem-err-alert", "on", "-V", "-1"],
     "validate_alert_threshold: Invalid corrected mem error threshold: -1"),
    (["--pmem-err-alert", "on", "-P", "3x"], "action_set_alert_config: Invalid threshold: 3x"),
    (["--life-used-alert", "maybe"], "action_set_alert_config: Invalid action: maybe"),
    (["--life-used-alert", "off", "-L", "3"], "action_set_alert_config: Disable not require threshold"),
]


@pytest.mark.parametrize("argv,message", ALERT_ERRORS, ids=[" ".join(a) or "none" for a, _ in ALERT_ERRORS])
def test_set_alert_config_errors(b, argv, message):
    rc, out, err = cxl(b, "set-alert-config", "mem1", "mem3", *argv)
    assert (rc, out) == (1, "[\n]\n")
    # checked per memdev, before any command is sent
    assert err == (f"cxl memdev: {message}\n" * 2 + "  Warning: no matching devices found\n\n"
                   "cxl memdev: cmd_set_alert_config: set alert configuration for 0 mem\n")


def test_wait_sanitize(b):
    assert cxl(b, "wait-sanitize", "mem1", "mem2") == \
        (0, "", "cxl memdev: cmd_wait_sanitize: wait sanitize completed on 2 mem devices\n")
    md = next(m for m in b.kernel.cxl.memdevs if m.name == "mem1")
    md.sanitizing = True          # a sanitize that never finishes
    assert cxl(b, "wait-sanitize", "mem1", "-t", "10") == \
        (1, "", "cxl memdev: cmd_wait_sanitize: wait sanitize failed on 0 mem device\n")


def test_label_commands_are_wired(b):
    rc, out, err = cxl(b, "read-labels", "mem0", "-s", "64")
    assert (rc, err) == (0, "cxl memdev: cmd_read_labels: read 1 mem\n")
    assert len(out) == 64


# ---------------------------------------------------------------------------
# through the CLI
# ---------------------------------------------------------------------------

def test_disable_and_reserve_through_cxlemu_exec():
    from cxlemu.machine.store import Store
    from cxlemu.topology import presets
    Store().create("lab", presets.text("cxl-test"))

    def cx(*argv):
        return subprocess.run([sys.executable, "-m", "cxlemu", "exec", "lab", "--", "cxl", *argv],
                              capture_output=True, text=True, env=dict(os.environ), timeout=120)
    p = cx("reserve-dpa", "mem1", "-s", "512M")
    assert (p.returncode, p.stderr) == (0, "cxl memdev: cmd_reserve_dpa: reservation completed on 1 mem device\n")
    assert json.loads(p.stdout)[0]["decoder"]["dpa_size"] == 512 << 20
    p = cx("disable-memdev", "mem0")
    assert (p.returncode, p.stderr) == (1, "cxl memdev: action_disable: mem0 is part of an active region\n"
                                           "cxl memdev: cmd_disable_memdev: disabled 0 mem\n")
    with Store().open("lab", write=False) as m:
        assert int(m.backend().read("/sys/bus/cxl/devices/decoder7.0/dpa_size"), 16) == 512 << 20
