"""The 6.1 profile read by the REAL Debian ``cxl`` (76.1): on the rendered
tree of a biscuitos-b machine booted as Linux 6.1, with a pmem region, the
real tool prints what ours prints (v81-only keys aside), including the
host-bridge dport named by its ACPI device with the PCI root bridge as alias."""

from __future__ import annotations

import io
import json
import re

import pytest

from cxltest_support import boot_text, create_region, render_machine, require_real_tools, run_real
from cxlemu.sysfs.backend import DirectoryBackend
from cxlemu.tools.runner import run_tool
from cxlemu.topology import presets

pytestmark = pytest.mark.conformance

V81_ONLY_KEYS = {"parent_dport", "decoders_committed", "qos_class", "pmem_qos_class", "ram_qos_class", "type",
                 "firmware_version", "qos_class_mismatch", "daxregion", "firmware", "media_errors"}


def _strip(obj):
    if isinstance(obj, dict):
        return {k: _strip(v) for k, v in obj.items() if k not in V81_ONLY_KEYS}
    if isinstance(obj, list):
        return [_strip(x) for x in obj]
    return obj


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    require_real_tools("/usr/bin/cxl")
    b = boot_text(re.sub(r'kernel = "[0-9.]+"', 'kernel = "6.1"', presets.text("biscuitos-b")))
    create_region(b, "decoder0.0", ["mem0"], mode="pmem", gran=4096, size=512 << 20)
    return render_machine(b, tmp_path_factory.mktemp("render-61"))


@pytest.mark.parametrize("opts", ["-BPT", "-M", "-R", "-D -d root", "-BPEMDRT"])
def test_real_cxl_agrees_on_61(rendered, opts):
    args = ["list", *opts.split()]
    real = run_real(rendered, "/usr/bin/cxl", *args, mknod=False)
    out, err = io.StringIO(), io.StringIO()
    rc = run_tool("cxl", args, DirectoryBackend(rendered), stdout=out, stderr=err, isatty=False)
    assert real.returncode == rc == 0, (real.stderr, err.getvalue())
    assert _strip(json.loads(out.getvalue())) == json.loads(real.stdout)


def test_real_cxl_names_the_acpi_device_as_dport(rendered):
    real = json.loads(run_real(rendered, "/usr/bin/cxl", "list", "-BPT", mknod=False).stdout)
    bus = real[0] if isinstance(real, list) else real
    assert bus["dports"][0] == {"dport": "ACPI0016:00", "alias": "pci0000:0c", "id": 0}
    assert bus["ports:root0"][0]["host"] == "ACPI0016:00"
