"""The real daxctl (Debian 76.1) reading a rendered tree gives the same JSON
as cxlemu's daxctl on the live machine."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from cxltest_support import real_and_ours, run_real_many, sorted_arrays  # noqa: E402
from mm.support import MiB, boot, boot_text, daxctl, ram_region, topo  # noqa: E402

pytestmark = pytest.mark.conformance

LISTS = (["list"], ["list", "-RDM"], ["list", "-i", "-u"], ["list", "-R", "-r", "0"], ["list", "-D", "-d", "0.1", "-i"])


def compare(b, argvs=LISTS):
    """Same exit code, stderr and JSON (arrays compared sorted: their order
    follows readdir order, which differs between kernfs and the rendered tree)."""
    for argv, real, ours in real_and_ours(b, "daxctl", argvs, daxctl):
        assert real.returncode == ours.rc, (argv, real.stderr)
        assert real.stderr == ours.err, argv
        if ours.out:
            assert sorted_arrays(json.loads(real.stdout)) == sorted_arrays(json.loads(ours.out)), argv
            if ours.out.count('"chardev"') <= 1:
                assert real.stdout == ours.out, argv          # byte for byte (key order, json-c layout)


def test_real_daxctl_list_cxl_test_boot():
    compare(boot("cxl-test"))


def test_real_daxctl_list_online_movable_and_normal():
    b = boot_text(topo(devices=2))
    dev = ram_region(b, 512 * MiB)
    assert daxctl(b, "online-memory", dev).rc == 0
    compare(b)
    assert daxctl(b, "offline-memory", dev).rc == 0
    assert daxctl(b, "online-memory", "--no-movable", dev).rc == 0
    compare(b, (["list"],))


def test_real_daxctl_list_split_region_devdax_and_disabled():
    b = boot_text(topo())
    dev = ram_region(b, 1024 * MiB)
    assert daxctl(b, "reconfigure-device", "-m", "devdax", dev).rc == 0
    b.write(f"/sys/bus/dax/devices/{dev}/driver/unbind", dev + "\0")
    assert daxctl(b, "reconfigure-device", "-s", "256M", dev).rc == 0
    assert daxctl(b, "create-device", "-s", "512M").rc == 0
    b.write("/sys/bus/cxl/devices/dax_region0/dax_region/create", "1\0")
    compare(b)


def test_real_daxctl_list_seed_003_window():
    b = boot("seed-003-window")
    assert daxctl(b, "reconfigure-device", "-m", "system-ram", "dax0.0").rc == 0
    compare(b, (["list", "-RDM"],))


def test_real_daxctl_error_paths_that_only_read():
    """Bad input whose handling reads sysfs only (no write reaches the static tree)."""
    b = boot_text(topo())
    dev = ram_region(b, 512 * MiB)
    assert daxctl(b, "online-memory", dev).rc == 0
    cases = [["reconfigure-device", "-m", "foo", dev],            # unknown mode
             ["reconfigure-device", "-m", "devdax", dev],         # online memory, no -f: EBUSY
             ["reconfigure-device", "-m", "devdax", "-v", dev],
             ["online-memory", dev],                              # already online
             ["reconfigure-device", "-m", "devdax"], ["reconfigure-device", dev], ["enable-device"],
             ["disable-device", dev], ["destroy-device", dev], ["list", "bogus"]]
    for argv, real, ours in real_and_ours(b, "daxctl", cases, daxctl):
        assert (real.returncode, real.stdout, real.stderr) == (ours.rc, ours.out, ours.err), argv


def test_real_daxctl_v76_unknown_device_differs_from_v81():
    """v76.1 returns -ENXIO when no device matches; v81's do_xaction_device
    returns the last per-device error (none: 0).  cxlemu follows v81."""
    b = boot_text(topo())
    ram_region(b, 512 * MiB)
    real = run_real_many(b, [["daxctl", "reconfigure-device", "-m", "devdax", "dax9.0"]])[0]
    ours = daxctl(b, "reconfigure-device", "-m", "devdax", "dax9.0")
    assert (real.returncode, real.stderr) == (250, "error reconfiguring devices: No such device or address\n"
                                                   "reconfigured 0 devices\n")
    assert (ours.rc, ours.err) == (0, "reconfigured 0 devices\n")
