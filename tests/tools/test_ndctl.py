"""ndctl against the nvdimm model: the seed's walkthrough, the namespace
modes, list shapes and filters, and every bad-input case of issue 4 with
the real tool's messages and exit codes (ndctl v81 ndctl/namespace.c)."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "nvdimm"))

from pmem_support import MiB, backend, fabric, lsa, ndctl, pmem_region  # noqa: E402

U = "11111111-2222-3333-4444-555555555555"


@pytest.fixture
def b(tmp_path):
    b = backend(tmp_path)
    pmem_region(b)
    return b


@pytest.fixture
def b2(tmp_path):
    b = backend(tmp_path, fabric(2))
    pmem_region(b)
    return b


def ok(b, *argv):
    rc, out, err = ndctl(b, *argv)
    assert rc == 0, err
    return out, err


def test_seed_walkthrough(b):
    assert ndctl(b, "destroy-namespace", "--force", "all") == (0, "", "destroyed 0 namespaces\n")
    assert ndctl(b, "enable-region", "region0") == (0, "", "enabled 1 region\n")
    out, err = ok(b, "create-namespace", "--mode=dax", "-f")
    assert err == ""
    j = json.loads(out)
    assert j["uuid"] and j.pop("uuid")
    assert j == {"dev": "namespace0.0", "mode": "devdax", "map": "dev", "size": 502 * MiB,
                 "daxregion": {"id": 0, "size": 502 * MiB, "align": 2 * MiB,
                               "devices": [{"chardev": "dax0.0", "size": 502 * MiB, "target_node": 1,
                                            "align": 2 * MiB, "mode": "devdax"}]},
                 "align": 2 * MiB}
    assert list(json.loads(out)) == ["dev", "mode", "map", "size", "uuid", "daxregion", "align"]
    assert b.exists("/dev/dax0.0")
    assert b.read("/sys/bus/dax/devices/dax0.0/size") == f"{502 * MiB}\n"


def test_human_sizes_on_a_tty(b):
    rc, out, _ = ndctl(b, "create-namespace", "-m", "devdax", tty=True)
    assert rc == 0
    assert '"size":"502.00 MiB (526.39 MB)"' in out


def test_list_vvv_shape(b):
    ok(b, "create-namespace", "-m", "devdax", "-n", "seed")
    (bus,) = json.loads(ok(b, "list", "-vvv")[0])
    assert (bus["provider"], bus["dev"]) == ("CXL", "ndbus0")
    assert bus["dimms"] == [{"dev": "nmem0", "id": "0"}]
    (reg,) = bus["regions"]
    assert reg["mappings"] == [{"dimm": "nmem0", "offset": 0, "length": 512 * MiB, "position": 0}]
    assert [c["mode"] for c in reg["capabilities"]] == ["sector", "fsdax", "devdax"]
    assert reg["persistence_domain"] == "memory_controller"
    ns = {n["dev"]: n for n in reg["namespaces"]}
    assert ns["namespace0.0"]["name"] == "seed"
    assert ns["namespace0.0"]["raw_uuid"] != ns["namespace0.0"]["uuid"]
    assert ns["namespace0.1"]["state"] == "disabled"


def test_list_filters(b2):
    ok(b2, "create-namespace", "-m", "raw", "-s", "64M")
    assert [d["dev"] for d in json.loads(ok(b2, "list", "-D")[0])] == ["nmem1", "nmem0"]
    assert json.loads(ok(b2, "list", "-D", "-d", "nmem1")[0]) == [{"dev": "nmem1", "id": "2"}]
    assert json.loads(ok(b2, "list", "-B", "-b", "CXL")[0]) == [{"provider": "CXL", "dev": "ndbus0"}]
    assert ok(b2, "list", "-B", "-b", "ACPI.NFIT") == ("", "")
    assert [n["dev"] for n in json.loads(ok(b2, "list", "-N")[0])] == ["namespace0.0"]
    assert [n["dev"] for n in json.loads(ok(b2, "list", "-Ni")[0])] == ["namespace0.1", "namespace0.0"]
    assert ok(b2, "list", "-N", "-n", "namespace0.1") == ("", "")
    (r,) = json.loads(ok(b2, "list", "-R", "-r", "region0")[0])
    assert r["available_size"] == 960 * MiB
    assert ok(b2, "list", "-R", "-r", "region9") == ("", "")


@pytest.mark.parametrize("mode,expect", [
    ("fsdax", {"mode": "fsdax", "map": "dev", "size": 62 * MiB, "sector_size": 512, "align": 2 * MiB,
               "blockdev": "pmem0"}),
    ("raw", {"mode": "raw", "size": 64 * MiB, "sector_size": 512, "blockdev": "pmem0"}),
    ("sector", {"mode": "sector", "sector_size": 4096, "blockdev": "pmem0s"}),
])
def test_modes(b2, mode, expect):
    j = json.loads(ok(b2, "create-namespace", "-m", mode, "-s", "64M")[0])
    for k, v in expect.items():
        assert j[k] == v, k
    assert len(json.loads(ok(b2, "list", "-N")[0])) == 1


def test_fsdax_map_mem_and_1g_align_refused_on_small(b2):
    j = json.loads(ok(b2, "create-namespace", "-m", "fsdax", "-M", "mem", "-s", "64M")[0])
    assert (j["map"], j["size"]) == ("mem", 62 * MiB)


def test_uuid_name_align(b):
    j = json.loads(ok(b, "create-namespace", "-m", "raw", "-s", "128M", "-u", U, "-n", "hello")[0])
    assert (j["uuid"], j["name"], j["size"]) == (U, "hello", 128 * MiB)
    j = json.loads(ok(b, "create-namespace", "-m", "devdax", "-s", "128M", "-a", "4K")[0])
    assert j["align"] == 4096 and j["daxregion"]["align"] == 4096


# ---- bad input: real messages and exit codes, labels and data untouched --------------------------

def _untouched(b):
    return bytes(lsa(b)), b.read("/sys/bus/nd/devices/region0/available_size")


def test_namespace_larger_than_region(b):
    before = _untouched(b)
    assert ndctl(b, "create-namespace", "-m", "devdax", "-s", "1G") == \
        (237, "", "failed to create namespace: No space left on device\n")
    assert _untouched(b) == before


def test_unsupported_alignment(b):
    before = _untouched(b)
    assert ndctl(b, "create-namespace", "-m", "devdax", "-a", "64K") == \
        (237, "", "  Error: unsupported align: 64K\n\nfailed to create namespace: No such device or address\n")
    rc, out, err = ndctl(b, "create-namespace", "-m", "devdax", "-a", "3M")
    assert rc == 129
    assert err.startswith("  Error: align must be a power-of-2 greater than 4096\n\n\n usage: ndctl create-namespace")
    assert _untouched(b) == before


def test_size_misaligned_to_region(b):
    assert ndctl(b, "create-namespace", "-s", "100M") == \
        (234, "", "  Error: create namespace: region0: align setting is 0x1000000 size 0x6400000 is "
                  "misaligned\n\n")


def test_duplicate_uuid(b):
    ok(b, "create-namespace", "-m", "raw", "-s", "64M", "-u", U)
    before = _untouched(b)
    assert ndctl(b, "create-namespace", "-m", "raw", "-s", "64M", "-u", U) == \
        (234, "", "  Error: create namespace: namespace0.1: set_uuid failed: Invalid argument\n\n")
    assert _untouched(b) == before


def test_destroy_active_without_force(b):
    ok(b, "create-namespace", "-m", "devdax", "-s", "64M")
    before = _untouched(b)
    err = ("  Error: namespace0.0 is active, specify --force for re-configuration\n\n"
           "error destroying namespaces: Device or resource busy\ndestroyed 0 namespaces\n")
    assert ndctl(b, "destroy-namespace", "namespace0.0") == (240, "", err)
    assert ndctl(b, "destroy-namespace", "all") == (240, "", err)
    assert _untouched(b) == before
    assert b.exists("/dev/dax0.0")
    assert ndctl(b, "destroy-namespace", "-f", "all") == (0, "", "destroyed 1 namespace\n")
    assert not b.exists("/dev/dax0.0")
    assert b.read("/sys/bus/nd/devices/region0/available_size") == f"{512 * MiB}\n"


def test_bad_mode_is_usage(b):
    rc, _, err = ndctl(b, "create-namespace", "-m", "bogus")
    assert rc == 129 and err.startswith("  Error: invalid mode 'bogus'\n")


def test_no_such_region(b):
    assert ndctl(b, "create-namespace", "-r", "region7") == \
        (237, "", "failed to create namespace: No such device or address\n")


# ---- enable / disable ------------------------------------------------------------------------------

def test_disable_enable_region_keeps_namespace(b):
    ok(b, "create-namespace", "-m", "devdax", "-s", "64M", "-u", U)
    assert ndctl(b, "disable-region", "region0") == (0, "", "disabled 1 region\n")
    assert not b.exists("/dev/dax0.0")
    assert ndctl(b, "create-namespace") == (237, "", "failed to create namespace: No such device or address\n")
    assert ndctl(b, "enable-region", "all") == (0, "", "enabled 1 region\n")
    (n,) = json.loads(ok(b, "list", "-N", "-v")[0])
    assert (n["raw_uuid"], n["mode"]) == (U, "devdax")
    assert n["daxregion"]["devices"][0]["chardev"] == "dax0.0"


def test_disable_enable_namespace(b):
    ok(b, "create-namespace", "-m", "raw", "-s", "64M")
    assert ndctl(b, "disable-namespace", "namespace0.0") == (0, "", "disabled 1 namespace\n")
    assert json.loads(ok(b, "list", "-Ni", "-n", "namespace0.0")[0])[0]["state"] == "disabled"
    assert ndctl(b, "enable-namespace", "namespace0.0") == (0, "", "enabled 1 namespace\n")


# ---- label commands on nmems -----------------------------------------------------------------------

def test_label_commands_respect_active_regions(b):
    ok(b, "create-namespace", "-m", "raw", "-s", "64M")
    before = bytes(lsa(b))
    assert ndctl(b, "zero-labels", "nmem0") == (1, "", "nmem0: regions active, abort label write\n"
                                                           "zeroed 0 nmem\n")
    assert bytes(lsa(b)) == before
    rc, out, err = ndctl(b, "read-labels", "nmem0", "-j")
    assert rc == 0 and err == "read 1 nmem\n"
    (d,) = json.loads(out)
    assert [i["seq"] for i in d["index"]] and d["index"][0]["major"] == 2
    ok(b, "disable-region", "region0")
    assert ndctl(b, "check-labels", "nmem0") == (0, "", "successfully verified 1 nmem label\n")
    assert ndctl(b, "zero-labels", "nmem0") == (0, "", "zeroed 1 nmem\n")
    assert bytes(lsa(b)) == bytes(len(before))
    assert ndctl(b, "init-labels", "nmem0") == (0, "", "initialized 1 nmem\n")
    assert bytes(lsa(b))[:15] == b"NAMESPACE_INDEX"
