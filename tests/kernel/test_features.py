"""Per-version kernel features (kernel/features.py): the table is the single
source, every profile's sysfs shows exactly what the table says, and the
Linux 6.1 profile behaves as Debian's 6.1 kernel does under QEMU 7.2 with
ndctl 76.1 on the seed's topologies A/B/C (issue 14 #7)."""

from __future__ import annotations

import contextlib
import io
import json
import re

import pytest

from cxltest_support import boot_text
from cxlemu.cli.main import main
from cxlemu.kernel import features
from cxlemu.topology import presets
from cxlemu.topology.schema import KERNEL_PROFILES

D = "/sys/bus/cxl/devices/"


def with_kernel(preset: str, version: str, invalidation_test: bool | None = None) -> str:
    text = re.sub(r'kernel = "[0-9.]+"', f'kernel = "{version}"', presets.text(preset))
    if invalidation_test is not None:
        text = text.replace("region_invalidation_test = true",
                            f"region_invalidation_test = {'true' if invalidation_test else 'false'}")
    return text


def profile(v: str) -> tuple[int, int]:
    a, b = v.split(".")
    return int(a), int(b)


# ---- the table itself ---------------------------------------------------------------------------

def test_every_feature_names_its_source_and_versions():
    for name, f in features.FEATURES.items():
        assert f.source and f.what, name
        assert f.since >= (5, 0) and (f.until is None or f.until > f.since), name
    assert features.has((6, 1), "endpoint_cdat") and not features.has((6, 1), "create_ram_region")
    assert features.has((6, 3), "region_invalidate_at_probe") and not features.has((6, 5), "region_invalidate_at_probe")
    with pytest.raises(KeyError):
        features.has((6, 9), "no-such-feature")


def _first(b, prefix: str, pred=lambda p: True) -> str | None:
    for n in sorted(b.listdir(D)):
        if n.startswith(prefix) and pred(D + n):
            return D + n
    return None


# Each ABI feature and how to see it in a booted cxl_test machine (ram + pmem, qos_class 42).
SYSFS_CHECKS = {
    "endpoint_cdat": lambda b: b.exists(_first(b, "endpoint") + "/CDAT"),
    "create_ram_region": lambda b: b.exists(D + "decoder0.0/create_ram_region") or any(
        b.exists(D + f"decoder0.{i}/create_ram_region") for i in range(8)),
    "parent_dport": lambda b: b.lexists(_first(b, "endpoint") + "/parent_dport"),
    "memdev_trigger_poison_list": lambda b: b.exists(D + "mem0/trigger_poison_list"),
    "root_decoder_qos_class": lambda b: b.exists(D + "decoder0.0/qos_class"),
    "memdev_security": lambda b: b.exists(D + "mem0/security/state"),
    "decoders_committed": lambda b: b.exists(_first(b, "port") + "/decoders_committed"),
    "memdev_qos_class": lambda b: b.exists(D + "mem1/ram/qos_class") or b.exists(D + "mem1/pmem/qos_class"),
    "nvdimm_cxl_id_provider": lambda b: b.exists("/sys/bus/nd/devices/nmem0/cxl/id"),
    "memdev_debugfs_poison": lambda b: b.exists("/sys/kernel/debug/cxl/mem0/inject_poison"),
    "node_memory_failure_stats": lambda b: b.exists("/sys/devices/system/node/node0/memory_failure/total"),
}


@pytest.mark.parametrize("version", KERNEL_PROFILES)
def test_each_profile_shows_the_table(version):
    b = boot_text(with_kernel("cxl-test", version))
    v = profile(version)
    wrong = {name: (check(b), features.has(v, name)) for name, check in SYSFS_CHECKS.items()
             if check(b) != features.has(v, name)}
    assert not wrong, wrong


# ---- Linux 6.1 as observed ---------------------------------------------------------------------

def call(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(list(argv))
    return rc, out.getvalue(), err.getvalue()


def create(name: str, text: str, tmp_path) -> None:
    f = tmp_path / f"{name}.toml"
    f.write_text(text)
    rc, out, err = call("create", name, "-t", str(f))
    assert rc == 0, err


def tool(name: str, *argv: str) -> tuple[int, str, str]:
    return call("exec", name, "--", *argv)


def test_61_attribute_set(tmp_path):
    """6.1 has no root-decoder qos_class, no create_ram_region, no region mode,
    no nmemN/cxl/{id,provider}, no memdev security/; it has endpointN/CDAT."""
    create("m", with_kernel("biscuitos-b", "6.1"), tmp_path)
    assert tool("m", "cxl", "create-region", "-d", "decoder0.0", "-m", "mem0", "-s", "512M", "-t", "pmem",
                "-w", "1", "-g", "4096")[0] == 0
    rd = lambda p: call("sysfs", "m", "read", p)   # noqa: E731
    for gone in ("decoder0.0/qos_class", "decoder0.0/create_ram_region", "region0/mode",
                 "mem0/security/state", "mem0/ram/qos_class", "port1/decoders_committed",
                 "port2/parent_dport"):
        assert rd(D + gone)[0] == 1, gone
    assert rd("/sys/bus/nd/devices/nmem0/cxl/id")[0] == 1
    assert rd("/sys/bus/nd/devices/nmem0/cxl/provider")[0] == 1
    assert rd(D + "decoder0.0/create_pmem_region")[0] == 0
    rc, cdat, _ = rd(D + "endpoint3/CDAT")
    assert rc == 0 and len(cdat) > 24
    region = json.loads(tool("m", "cxl", "list", "-R")[1])[0]
    assert "type" not in region                  # cxl list reads the type from regionN/mode
    assert "qos_class" not in json.loads(tool("m", "cxl", "list", "-D", "-d", "root")[1])[0]


def test_61_cdat_is_the_devices_table(tmp_path):
    from cxlemu.hw.cdat import Dsmas, decode_cdat
    create("m", with_kernel("cxl-test", "6.1"), tmp_path)
    from cxlemu.machine.store import Store
    with Store().open("m", write=False) as m:
        ep = next(p for p in m.kernel.cxl.ports() if p.is_endpoint and p.memdev.hw.ram_size
                  and p.memdev.hw.pmem_size)
        data = m.backend().read_bytes(f"{D}{ep.name}/CDAT")
        hw = ep.memdev.hw
    dsmas = [s for s in decode_cdat(data).structures if isinstance(s, Dsmas)]
    assert [(s.dpa_base, s.dpa_length) for s in dsmas] == [(0, hw.ram_size), (hw.ram_size, hw.pmem_size)]


def test_61_memdev_has_no_numa_node_under_qemu(tmp_path):
    """QEMU's pxb-cxl has no _PXM: the memdev's numa_node reads -1 and cxl list omits it."""
    create("m", with_kernel("biscuitos-b", "6.1"), tmp_path)
    assert call("sysfs", "m", "read", D + "mem0/numa_node")[1] == "-1\n"
    assert "numa_node" not in json.loads(tool("m", "cxl", "list", "-M")[1])[0]


def test_61_host_bridge_dport_is_the_acpi_device(tmp_path):
    """6.1 registers a host bridge's dport and port by its ACPI0016 device; the
    PCI root bridge is the alias.  From 6.2 it is the other way round."""
    create("old", with_kernel("biscuitos-b", "6.1"), tmp_path)
    bus = json.loads(tool("old", "cxl", "list", "-BP", "-v")[1])[0]
    assert bus["dports"][0]["dport"] == "ACPI0016:00" and bus["dports"][0]["alias"] == "pci0000:0c"
    assert bus["ports:root0"][0]["host"] == "ACPI0016:00"
    create("new", with_kernel("biscuitos-b", "6.9"), tmp_path)
    bus = json.loads(tool("new", "cxl", "list", "-BP", "-v")[1])[0]
    assert bus["dports"][0]["dport"] == "pci0000:0c" and bus["dports"][0]["alias"] == "ACPI0016:00"
    assert bus["ports:root0"][0]["host"] == "pci0000:0c"


@pytest.mark.parametrize("version,commit_ok,enable_ok", [
    ("6.1", True, True),       # no cpu_cache_invalidate_memregion check at all
    ("6.3", True, False),      # checked when the region is probed (d18bc74aced6)
    ("6.5", False, False),     # checked at commit (d1257d098a5a)
    ("6.9", False, False),
])
def test_region_commit_in_a_vm_by_version(tmp_path, version, commit_ok, enable_ok):
    create("m", with_kernel("biscuitos-b", version, invalidation_test=False), tmp_path)
    rc, out, err = tool("m", "cxl", "create-region", "-d", "decoder0.0", "-m", "mem0", "-s", "512M", "-t", "pmem")
    if commit_ok and enable_ok:
        assert rc == 0, err
        return
    assert rc == 1
    assert ("failed to commit decode" in err) == (not commit_ok), err
    assert ("failed to enable" in err) == (commit_ok and not enable_ok), err
    assert any("Failed to synchronize CPU cache state" in line for line in call("dmesg", "m")[1].splitlines())


@pytest.mark.parametrize("preset,members", [("biscuitos-b", ["mem0"]), ("biscuitos-c", ["mem0", "mem1"])])
def test_61_iset_id_is_zero_and_labels_do_not_come_back(tmp_path, preset, members):
    """QEMU's devices have no serial number and the pmem partition starts at
    DPA 0, so 6.1's interleave-set cookie (Fletcher-64 of {offset, serial}) is
    0 for 1-way and 2-way regions; after a reboot the re-created region finds
    its namespace labels and refuses them ("invalid interleave-set-cookie"):
    the region stays disabled and no namespace returns."""
    create("m", with_kernel(preset, "6.1"), tmp_path)
    size = f"{512 * len(members)}M"
    create_region = ("cxl", "create-region", "-d", "decoder0.0", "-m", *members, "-s", size, "-t", "pmem",
                     "-w", str(len(members)), "-g", "4096")
    assert tool("m", *create_region)[0] == 0
    assert tool("m", "ndctl", "create-namespace", "--mode=devdax")[0] == 0
    region = json.loads(tool("m", "ndctl", "list", "-R")[1])[0]
    assert region["iset_id"] == 0
    assert call("reboot", "m")[0] == 0
    assert tool("m", *create_region)[0] == 0
    rc, out, err = tool("m", "ndctl", "enable-region", "region0")
    assert "failed to enable" in err and "enabled 0 regions" in err
    listed = json.loads(tool("m", "ndctl", "list", "-R", "-i")[1])[0]
    assert listed["state"] == "disabled" and listed["iset_id"] == 0
    assert tool("m", "ndctl", "list", "-N")[1].strip() in ("", "[\n]")
    assert any("invalid interleave-set-cookie" in line for line in call("dmesg", "m")[1].splitlines())
