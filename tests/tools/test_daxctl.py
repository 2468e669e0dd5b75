"""daxctl end to end on the emulator (ndctl v81 daxctl/{list,device,json,
filter}.c, daxctl/lib/libdaxctl.c): JSON, messages and exit codes."""

from __future__ import annotations

import errno
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mm.support import MiB, block_state, blocks_of, boot_text, daxctl, ram_region, topo  # noqa: E402

EXIT = {e: 256 - e for e in (errno.EBUSY, errno.EINVAL, errno.ENXIO, errno.ENOSPC)}


def j(res):
    return json.loads(res.out)


@pytest.fixture
def m():
    b = boot_text(topo())
    dev = ram_region(b, 512 * MiB)
    return b, dev


# ---- list -----------------------------------------------------------------------------------

def test_list_defaults_to_devices_and_hides_idle(m):
    b, dev = m
    res = daxctl(b, "list")
    assert res.rc == 0 and res.err == ""
    assert j(res) == [{"chardev": dev, "size": 512 * MiB, "target_node": 2, "align": 2 * MiB,
                       "mode": "system-ram", "online_memblocks": 0, "total_memblocks": 4}]
    assert res.out.startswith('[\n  {\n    "chardev":"dax0.0",\n')


def test_list_regions_devices_mappings_human(m):
    b, dev = m
    res = daxctl(b, "list", "-RDMu")
    start = b.kernel.dax.find(dev).ranges[0].start
    obj = j(res)
    assert obj == {"path": "/platform/ACPI0017:00/root0/decoder0.0/region0/dax_region0", "id": 0,
                   "size": "512.00 MiB (536.87 MB)", "align": 2097152,
                   "devices": [{"chardev": dev, "size": "512.00 MiB (536.87 MB)", "target_node": 2,
                                "align": 2097152, "mode": "system-ram", "online_memblocks": 0,
                                "total_memblocks": 4,
                                "mappings": [{"page_offset": "0", "start": hex(start),
                                              "end": hex(start + 512 * MiB - 1),
                                              "size": "512.00 MiB (536.87 MB)"}]}]}


def test_list_filters_and_idle(m):
    b, dev = m
    assert daxctl(b, "reconfigure-device", "-m", "devdax", dev).rc == 0
    b.write(f"/sys/bus/dax/devices/{dev}/driver/unbind", dev + "\0")
    b.write(f"/sys/bus/dax/devices/{dev}/size", hex(256 * MiB) + "\0")
    b.write("/sys/bus/cxl/devices/dax_region0/dax_region/create", "1\0")
    assert [d["chardev"] for d in j(daxctl(b, "list"))] == [dev]          # dax0.1 is empty: idle
    devs = j(daxctl(b, "list", "-i"))
    assert sorted(d["chardev"] for d in devs) == ["dax0.0", "dax0.1"]
    assert {d["chardev"]: d.get("state") for d in devs} == {"dax0.0": "disabled", "dax0.1": "disabled"}
    one = daxctl(b, "list", "-d", "0.1", "-i")
    assert json.loads(one.out) == [{"chardev": "dax0.1", "size": 0, "target_node": 2, "align": 2097152,
                                    "mode": "devdax", "state": "disabled"}]
    assert daxctl(b, "list", "-r", "region0", "-R").out.count('"id":0') == 1
    none = daxctl(b, "list", "-r", "5")
    assert none.rc == 0 and none.out == "" and none.err == ""
    regions = j(daxctl(b, "list", "-R"))
    assert regions[0]["available_size"] == 256 * MiB and "devices" not in regions[0]


def test_list_unknown_parameter_is_usage(m):
    b, dev = m
    res = daxctl(b, "list", "extra")
    assert res.rc == 129
    assert res.err.startswith('  Error: unknown parameter "extra"\n\n\n usage: daxctl list [<options>]\n')


# ---- reconfigure-device -------------------------------------------------------------------------

def test_reconfigure_system_ram_onlines_movable(m):
    b, dev = m
    res = daxctl(b, "reconfigure-device", "--mode=system-ram", dev)
    assert res.rc == 0
    assert res.err == f"{dev} was already in system-ram mode\nreconfigured 1 device\n"
    assert j(res) == [{"chardev": dev, "size": 512 * MiB, "target_node": 2, "align": 2 * MiB,
                       "mode": "system-ram", "online_memblocks": 4, "total_memblocks": 4, "movable": True}]
    assert {blk.zone for blk in blocks_of(b, dev)} == {3}


def test_reconfigure_devdax_then_system_ram_no_movable(m):
    b, dev = m
    res = daxctl(b, "reconfigure-device", "-m", "devdax", dev)
    assert res.rc == 0 and j(res)[0]["mode"] == "devdax" and res.err == "reconfigured 1 device\n"
    res = daxctl(b, "reconfigure-device", "-m", "system-ram", "--no-movable", dev)
    assert res.rc == 0, res.err
    assert j(res)[0]["movable"] is False and j(res)[0]["online_memblocks"] == 4


def test_reconfigure_no_online_leaves_blocks_offline(m):
    b, dev = m
    assert daxctl(b, "reconfigure-device", "-m", "devdax", dev).rc == 0
    res = daxctl(b, "reconfigure-device", "-m", "system-ram", "-N", dev)
    assert res.rc == 0 and "movable" not in j(res)[0] and j(res)[0]["online_memblocks"] == 0


def test_reconfigure_refuses_when_kernel_policy_will_auto_online(m):
    b, dev = m
    assert daxctl(b, "reconfigure-device", "-m", "devdax", dev).rc == 0
    b.write("/sys/devices/system/memory/auto_online_blocks", "online\0")
    res = daxctl(b, "reconfigure-device", "-m", "system-ram", dev)
    assert res.rc == EXIT[errno.EBUSY]
    assert res.err == (f"{dev}: error: kernel policy will auto-online memory, aborting\n"
                       "error reconfiguring devices: Device or resource busy\nreconfigured 0 devices\n")
    assert b.kernel.dax.find(dev).driver.name == "device_dax"
    res = daxctl(b, "reconfigure-device", "-m", "system-ram", "-f", dev)
    assert res.rc == 0
    assert "WARNING: detected a race while onlining memory" in res.err      # the kernel onlined them first
    assert "all memory sections (4) already online" in res.err


def test_reconfigure_online_device_without_force_is_ebusy_and_changes_nothing(m):
    b, dev = m
    assert daxctl(b, "online-memory", dev).rc == 0
    before = block_state(b)
    res = daxctl(b, "reconfigure-device", "-m", "devdax", dev)
    assert res.rc == EXIT[errno.EBUSY] and res.out == ""
    assert res.err == "error reconfiguring devices: Device or resource busy\nreconfigured 0 devices\n"
    assert block_state(b) == before and b.kernel.dax.find(dev).driver.name == "kmem"
    res = daxctl(b, "reconfigure-device", "-m", "devdax", "-v", dev)
    assert f"{dev}: found 4 memory sections online\n{dev}: refusing to change modes\n" in res.err
    res = daxctl(b, "reconfigure-device", "-m", "devdax", "-f", dev)
    assert res.rc == 0 and j(res)[0]["mode"] == "devdax"


def test_reconfigure_unknown_mode_and_unknown_device(m):
    b, dev = m
    before = block_state(b)
    res = daxctl(b, "reconfigure-device", "-m", "sysram", dev)
    assert res.rc == EXIT[errno.EINVAL]
    assert res.err == (f"{dev}: unknown mode requested: 0\nerror reconfiguring devices: Invalid argument\n"
                       "reconfigured 0 devices\n")
    res = daxctl(b, "reconfigure-device", "-m", "devdax", "dax9.0")
    assert (res.rc, res.out, res.err) == (0, "", "reconfigured 0 devices\n")
    assert block_state(b) == before and b.kernel.dax.find(dev).driver.name == "kmem"


def test_reconfigure_usage_errors(m):
    b, dev = m
    res = daxctl(b, "reconfigure-device", "-m", "devdax")
    assert res.rc == 129 and res.err.startswith('specify a device to reconfigure, or "all"\n\n usage: '
                                                "daxctl reconfigure-device <device> [<options>]\n")
    res = daxctl(b, "reconfigure-device", dev)
    assert res.rc == 129 and res.err.startswith("error: a 'align', 'mode' or 'size' option is required\n")
    res = daxctl(b, "reconfigure-device", dev, "dax0.1", "-m", "devdax")
    assert res.rc == 129 and res.err.startswith('unknown extra parameter "dax0.1"\n')
    res = daxctl(b, "reconfigure-device", "-m", "devdax", "--no-online", dev)
    assert res.rc == 129 and res.err.startswith("--no-online is incompatible with --mode=devdax\n")
    res = daxctl(b, "reconfigure-device", "-C", dev)
    assert res.rc == 0 and res.err == (f"no UUID match for {dev} found in config files\n"
                                       f"{dev}: missing or malformed config section\n")


def test_reconfigure_size_and_align(m):
    b, dev = m
    assert daxctl(b, "reconfigure-device", "-m", "devdax", dev).rc == 0
    b.write(f"/sys/bus/dax/devices/{dev}/driver/unbind", dev + "\0")
    res = daxctl(b, "reconfigure-device", "-s", "256M", "-a", "4K", dev)
    assert (res.rc, res.out, res.err) == (0, "", "reconfigured 1 device\n")
    assert b.read(f"/sys/bus/dax/devices/{dev}/size") == str(256 * MiB) + "\n"
    assert b.read(f"/sys/bus/dax/devices/{dev}/align") == "4096\n"


# ---- online / offline ---------------------------------------------------------------------------

def test_online_memory_messages_and_already_online(m):
    b, dev = m
    res = daxctl(b, "online-memory", "-v", dev)
    region = b.realpath(f"/sys/bus/dax/devices/{dev}/..")
    assert res.rc == 0 and res.err == (
        "libdaxctl: __dax_regions_init: no dax regions found via: /sys/class/dax\n"
        f"libdaxctl: add_dax_region: add_dax_region: '{region}'\n"
        f"libdaxctl: __sysfs_device_parse: base: '{region}/dax' dev: 'dax0.'\n"
        'libdaxctl: __sysfs_device_parse: no "dax0." devices found\n'
        f"libdaxctl: __sysfs_device_parse: base: '{region}' dev: 'dax0.'\n"
        f"libdaxctl: add_dax_dev: add_dax_dev: base: '{region}/{dev}'\n"
        "libdaxctl: __sysfs_device_parse: dax0.0: processed\n"
        f"{dev}: 4 memory sections onlined\nonlined memory for 1 device\n")
    res = daxctl(b, "online-memory", dev)          # device.c warns before noticing all are online
    assert res.rc == 1
    assert res.err == (f"{dev}:\n  WARNING: detected a race while onlining memory\n"
                       "  Some memory may not be in the expected zone. It is\n"
                       "  recommended to disable any other onlining mechanisms,\n"
                       "  and retry. If onlining is to be left to other agents,\n"
                       "  use the --no-online option to suppress this warning\n"
                       f"{dev}: all memory sections (4) already online\nonlined memory for 0 devices\n")


def test_online_offline_memory_not_applicable_in_devdax_mode(m):
    b, dev = m
    assert daxctl(b, "reconfigure-device", "-m", "devdax", dev).rc == 0
    for cmd, verb in (("online-memory", "onlining memory"), ("offline-memory", "offlining memory")):
        res = daxctl(b, cmd, dev)
        assert res.rc == EXIT[errno.ENXIO]
        assert res.err.startswith(f"{dev}: memory operations are not applicable in devdax mode\n"
                                  f"error {verb}: No such device or address\n")


def test_offline_memory_with_unmovable_pages_fails_ebusy(m):
    b, dev = m
    assert daxctl(b, "online-memory", "--no-movable", dev).rc == 0
    mm = b.kernel.mm
    a = mm.pages.alloc("kernel", (300 * MiB) >> 12, 2)     # spans three of the four blocks
    held = {mm.blocks[i].name for i in a.pieces}
    res = daxctl(b, "offline-memory", dev)
    assert res.rc == EXIT[errno.EBUSY]
    assert "libdaxctl: offline_one_memblock: dax0.0: Failed to offline /sys/devices/system/node/node2/memory" in res.err
    assert res.err.endswith(": Device or resource busy\ndax0.0: failed to offline memory: Device or resource busy\n"
                            "error offlining memory: Device or resource busy\nofflined memory for 0 devices\n")
    assert all(mm.blocks[int(n[6:])].online for n in held)
    mm.pages.free(a.id)
    res = daxctl(b, "offline-memory", dev)
    assert res.rc == 0 and res.err.endswith("offlined memory for 1 device\n")


# ---- create / destroy / enable / disable ------------------------------------------------------------

@pytest.fixture
def split(m):
    b, dev = m
    assert daxctl(b, "reconfigure-device", "-m", "devdax", dev).rc == 0
    b.write(f"/sys/bus/dax/devices/{dev}/driver/unbind", dev + "\0")
    assert daxctl(b, "reconfigure-device", "-s", "256M", dev).rc == 0
    assert daxctl(b, "enable-device", dev).rc == 0
    return b, dev


def test_create_device_takes_the_free_space(split):
    b, dev = split
    res = daxctl(b, "create-device")
    assert res.rc == 0 and res.err == "created 1 device\n"
    assert j(res) == [{"chardev": "dax0.1", "size": 256 * MiB, "target_node": 2, "align": 2 * MiB,
                       "mode": "devdax"}]


def test_create_device_larger_than_free_space_fails(split):
    b, dev = split
    avail = b.read("/sys/bus/cxl/devices/dax_region0/dax_region/available_size")
    res = daxctl(b, "create-device", "-s", "512M")
    assert res.rc == EXIT[errno.ENXIO] and res.out == ""
    assert res.err == ("libdaxctl: daxctl_dev_set_size: dax0.1: failed to set size\n"
                       "error creating devices: No such device or address\ncreated 0 devices\n")
    assert b.read("/sys/bus/cxl/devices/dax_region0/dax_region/available_size") == avail
    assert b.read("/sys/bus/dax/devices/dax0.1/size") == "0\n"     # only the empty seed remains


def test_create_device_in_a_full_region_is_enospc(m):
    b, dev = m
    res = daxctl(b, "create-device", "-r", "0")
    assert res.rc == EXIT[errno.ENOSPC]
    assert res.err == "error creating devices: No space left on device\ncreated 0 devices\n"


def test_create_device_from_input_json(split, tmp_path):
    b, dev = split
    assert daxctl(b, "create-device", "-s", "128M").rc == 0
    listing = j(daxctl(b, "list", "-d", "dax0.1", "-M"))[0]
    assert daxctl(b, "destroy-device", "-f", "dax0.1").rc == 0
    f = tmp_path / "dev.json"
    f.write_text(json.dumps(listing))
    res = daxctl(b, "create-device", "--input", str(f))
    assert res.rc == 0, res.err
    assert j(res)[0]["chardev"] == "dax0.1" and j(res)[0]["size"] == 128 * MiB
    assert daxctl(b, "create-device", "--input", str(tmp_path / "missing.json")).rc == 129


def test_destroy_device_requires_force_and_keeps_device_0(split):
    b, dev = split
    assert daxctl(b, "create-device").rc == 0
    res = daxctl(b, "destroy-device", "dax0.1")
    assert res.rc == EXIT[errno.ENXIO]
    assert res.err == ("dax0.1 is active, specify --force for deletion\n"
                       "error destroying devices: No such device or address\ndestroyed 0 devices\n")
    res = daxctl(b, "destroy-device", "-f", "dax0.1")
    assert (res.rc, res.err) == (0, "destroyed 1 device\n")
    assert not b.exists("/sys/bus/dax/devices/dax0.1")
    res = daxctl(b, "destroy-device", "-f", dev)                 # EBUSY from the kernel is tolerated
    assert (res.rc, res.err) == (0, "destroyed 1 device\n")
    assert b.read(f"/sys/bus/dax/devices/{dev}/size") == "0\n"


def test_enable_disable_device(split):
    b, dev = split
    res = daxctl(b, "disable-device", dev)
    assert (res.rc, res.err) == (0, "disabled 1 device\n")
    assert j(daxctl(b, "list"))[0]["state"] == "disabled"
    assert daxctl(b, "enable-device", dev).err == "enabled 1 device\n"
    res = daxctl(b, "enable-device")
    assert res.rc == 129 and res.err.startswith('specify a device to disable, or "all"\n')   # device.c quirk


def test_enable_disable_not_applicable_in_system_ram_mode(m):
    b, dev = m
    res = daxctl(b, "disable-device", dev)
    assert res.rc == EXIT[errno.ENXIO]
    assert res.err == (f"{dev}: status operations are only applicable in devdax mode\n"
                       "error disabling device: No such device or address\ndisabled 0 devices\n")


def test_version_help_and_unknown_command(m):
    b, dev = m
    assert daxctl(b, "--version").out == "81\n"
    res = daxctl(b, "frobnicate")
    assert (res.rc, res.err) == (1, "Unknown command: 'frobnicate'\n")


# ---- through the cxlemu CLI ---------------------------------------------------------------------------

def test_cxlemu_exec_daxctl_and_blocks(capsys):
    from cxlemu.cli.main import main
    assert main(["create", "box", "--topology", "cxl-test"]) == 0
    capsys.readouterr()
    assert main(["exec", "box", "--", "daxctl", "reconfigure-device", "--mode=system-ram", "dax0.0"]) == 0
    out = capsys.readouterr()
    assert json.loads(out.out)[0]["movable"] is True and "reconfigured 1 device" in out.err
    assert main(["exec", "box", "--", "daxctl", "offline-memory", "dax0.0"]) == 0
    assert main(["exec", "box", "--", "daxctl", "reconfigure-device", "--mode=devdax", "dax0.0"]) == 0
    capsys.readouterr()
    assert main(["exec", "box", "--", "daxctl", "list"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["mode"] == "devdax"
    assert main(["blocks", "box"]) == 0
    out = capsys.readouterr().out
    assert "Memory block size:       128M\n" in out and "Total offline memory:      0B\n" in out


def test_cxlemu_mem_and_nodes(capsys):
    from cxlemu.cli.main import main
    assert main(["create", "box", "--topology", "cxl-test"]) == 0
    assert main(["exec", "box", "--", "daxctl", "online-memory", "--no-movable", "dax0.0"]) == 0
    capsys.readouterr()
    assert main(["mem", "box", "alloc", "--kernel", "64M", "--node", "2"]) == 0
    assert capsys.readouterr().out == "2: kernel 64M (preferred node 2): node 2 Normal 64M  cxlemu mem alloc\n"
    assert main(["exec", "box", "--", "daxctl", "offline-memory", "dax0.0"]) == 256 - errno.EBUSY
    capsys.readouterr()
    assert main(["mem", "box", "stat"]) == 0
    assert "   2 Normal" in capsys.readouterr().out
    assert main(["mem", "box", "free", "2"]) == 0
    assert main(["mem", "box", "free", "2"]) == 1
    capsys.readouterr()
    assert main(["nodes", "box"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("available: 3 nodes (0-2)\n")
    assert "   2 access0          534           534          2000           2000   300  null\n" in out
