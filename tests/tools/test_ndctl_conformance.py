"""The real ndctl (Debian 76.1) reading a rendered tree gives the same JSON
as cxlemu's ndctl on the live machine (arrays compared as sets: their order
follows readdir order, which differs between sysfs and the rendered tree)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "nvdimm"))

from cxltest_support import real_and_ours, run_real_many, sorted_arrays  # noqa: E402
from pmem_support import backend, fabric, ndctl, pmem_region, tool  # noqa: E402

pytestmark = pytest.mark.conformance

LISTS = (["list"], ["list", "-vvv"], ["list", "-BDRNi"], ["list", "-R", "-u"], ["list", "-N", "-v"],
         ["list", "-D", "-d", "nmem0"], ["list", "-R", "-r", "region0", "-N", "-i"])


def compare(b, argvs=LISTS):
    for argv, real, (rc, out, err) in real_and_ours(b, "ndctl", argvs, ndctl):
        assert real.returncode == rc, (argv, real.stderr)
        assert real.stderr == err, argv
        if out:
            assert sorted_arrays(json.loads(real.stdout)) == sorted_arrays(json.loads(out)), argv
        else:
            assert real.stdout == "", argv


def test_real_ndctl_seed_devdax(tmp_path):
    b = backend(tmp_path)
    pmem_region(b)
    assert ndctl(b, "create-namespace", "--mode=dax", "-f")[0] == 0
    compare(b)


def test_real_ndctl_modes_on_two_way(tmp_path):
    b = backend(tmp_path, fabric(2))
    pmem_region(b)
    for argv in (["-m", "fsdax", "-s", "128M", "-n", "fs"], ["-m", "raw", "-s", "64M"],
                 ["-m", "sector", "-s", "64M"], ["-m", "devdax", "-s", "256M", "-a", "4K"]):
        assert ndctl(b, "create-namespace", *argv)[0] == 0
    compare(b)


def test_real_ndctl_disabled_region(tmp_path):
    b = backend(tmp_path)
    pmem_region(b)
    assert ndctl(b, "create-namespace", "-m", "raw", "-s", "64M")[0] == 0
    assert ndctl(b, "disable-region", "all")[0] == 0
    compare(b, (["list", "-Ri"], ["list", "-vvv", "-i"], ["list", "-D"]))


def test_real_ndctl_devdax_namespace_in_system_ram_mode(tmp_path):
    """ndctl embeds daxctl's device JSON (daxctl/json.c
    util_daxctl_dev_to_json): a device in system-ram mode lists its memory
    blocks under the namespace's daxregion too."""
    b = backend(tmp_path)
    pmem_region(b)
    assert ndctl(b, "create-namespace", "--mode=dax", "-f")[0] == 0
    assert tool(b, "daxctl", "reconfigure-device", "-m", "system-ram", "all")[0] == 0
    compare(b, (["list", "-X"], ["list", "-vvv"]))
    dev = json.loads(ndctl(b, "list", "-X")[1])[0]["daxregion"]["devices"][0]
    assert dev["mode"] == "system-ram" and dev["online_memblocks"] == dev["total_memblocks"] > 0


def test_real_daxctl_on_a_devdax_namespace(tmp_path):
    """The device-dax region and device dax_pmem creates read the same through
    the real daxctl (ndctl's embedded daxctl JSON uses the same paths)."""
    b = backend(tmp_path)
    pmem_region(b)
    assert ndctl(b, "create-namespace", "-m", "devdax")[0] == 0
    argvs = [["daxctl", "list"], ["daxctl", "list", "-RDi"], ["daxctl", "list", "-u"]]
    for argv, real in zip(argvs, run_real_many(b, argvs)):
        rc, out, err = tool(b, *argv)
        assert (real.returncode, real.stderr) == (rc, err), argv
        assert real.stdout and json.loads(real.stdout) == json.loads(out), argv
