"""End-to-end tests of the cxlemu command (subprocesses, like a user)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

CXLEMU = [sys.executable, "-m", "cxlemu"]


def run(*args, check=True, env=None, input=None):
    p = subprocess.run(CXLEMU + list(args), capture_output=True, text=True, env=env or os.environ.copy(),
                       input=input)
    if check and p.returncode != 0:
        raise AssertionError(f"cxlemu {' '.join(args)} -> {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p


def test_topologies_lists_presets():
    out = run("topologies").stdout
    for name in ("biscuitos-b", "cxl-test", "seed-003-window", "large-fabric"):
        assert name in out


def test_bad_topology_file_names_field_and_creates_nothing(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[machine]\nname = "x"\n[[host_bridge]]\nid = "hb0"\nuid = 0\n'
                   '[[device]]\nid = "d"\nparent = "hb0"\nvolatile = "100M"\n')
    p = run("create", "x", "--topology", str(bad), check=False)
    assert p.returncode == 2
    assert "device[0].volatile" in p.stderr and "256M" in p.stderr
    assert "x" not in run("ls").stdout.split()


def test_create_ls_show_exec_rm():
    out = run("create", "box", "--topology", "biscuitos-b").stdout
    assert "created box" in out
    assert "box" in run("ls").stdout
    show = json.loads(run("show", "box").stdout)
    assert show["devices"][0]["memdev"] == "mem0"
    assert show["devices"][0]["host"] == "0000:0f:00.0"
    assert show["windows"][0]["decoder"] == "decoder0.0"
    p = run("exec", "box", "--", "cat", "/sys/bus/cxl/devices/mem0/pmem/size")
    assert p.stdout == "0x20000000\n"
    assert run("exec", "box", "--", "readlink", "/sys/bus/cxl/devices/root0").stdout.startswith("../../../devices")
    run("rm", "box")
    assert "box" not in run("ls").stdout.split()
    p = run("exec", "box", "--", "cat", "/proc/iomem", check=False)
    assert p.returncode == 1 and "no machine named 'box'" in p.stderr


def test_iomem_and_acpi():
    run("create", "lab", "--topology", "cxl-test")
    iomem = run("iomem", "lab").stdout
    assert "CXL Window 0" in iomem and "System RAM" in iomem
    cedt = run("acpi", "lab", "CEDT").stdout
    assert "CXL Fixed Memory Window Structure" in cedt
    assert "Window base address : 000000F010000000" in cedt
    assert "XOR" not in cedt
    srat = run("acpi", "lab", "SRAT").stdout
    assert "MemoryAffinity" in srat


def test_acpi_raw_table_checksums(tmp_path):
    run("create", "m", "--topology", "biscuitos-a")
    for t in ("CEDT", "SRAT", "HMAT", "FACP"):
        f = tmp_path / t
        run("acpi", "m", t, "--raw", str(f))
        data = f.read_bytes()
        assert data[:4] == t.encode()
        assert sum(data) % 256 == 0


def test_sysfs_render_real_tree(tmp_path):
    run("create", "m", "--topology", "biscuitos-b")
    out = tmp_path / "r"
    run("sysfs", "m", "render", str(out))
    root0 = out / "sys/bus/cxl/devices/root0"
    assert root0.is_symlink()
    assert os.readlink(root0) == "../../../devices/platform/ACPI0017:00/root0"
    assert (out / "sys/bus/cxl/devices/mem0/serial").read_text() == "0x0\n"
    assert (out / "dev/cxl/mem0").read_text() == "60:0\n"
    assert (out / "proc/iomem").read_text().count("CXL Window 0") == 1


def test_sysfs_write_errors_are_reported():
    run("create", "lab", "--topology", "cxl-test")
    p = run("sysfs", "lab", "write", "/sys/bus/cxl/devices/decoder0.1/create_ram_region", "region99", check=False)
    assert p.returncode == 1 and "Device or resource busy" in p.stderr
    nxt = run("sysfs", "lab", "read", "/sys/bus/cxl/devices/decoder0.1/create_ram_region").stdout.strip()
    run("sysfs", "lab", "write", "/sys/bus/cxl/devices/decoder0.1/create_ram_region", nxt)
    assert nxt in run("sysfs", "lab", "ls", "/sys/bus/cxl/devices").stdout.split()


def test_translate_and_dd_through_the_auto_region(tmp_path):
    run("create", "lab", "--topology", "cxl-test")
    t = json.loads(run("translate", "lab", "hpa", "0xf010001234").stdout)
    assert (t["region"], t["position"], t["memdev"], t["dpa"]) == ("region0", 1, "mem4", "0x234")
    back = json.loads(run("translate", "lab", "dpa", "mem4", "0x234").stdout)
    assert back["hpa"] == "0xf010001234"
    payload = tmp_path / "p.bin"
    payload.write_bytes(os.urandom(64 << 10))
    seek = 0xF010000000 // 4096
    p = run("exec", "lab", "--", "dd", f"if={payload}", "of=/dev/mem", "bs=4096", f"seek={seek}", "conv=notrunc")
    assert "16+0 records out" in p.stderr
    out = tmp_path / "o.bin"
    run("exec", "lab", "--", "dd", "if=/dev/mem", f"of={out}", "bs=4096", f"skip={seek}", "count=16")
    assert out.read_bytes() == payload.read_bytes()
    # the second 4 KiB granule sits on mem4 at DPA 0 (position 1 of the 2-way region)
    show = json.loads(run("show", "lab").stdout)
    media = next(d["media"] for d in show["devices"] if d["memdev"] == "mem4")
    with open(media, "rb") as f:
        assert f.read(4096) == payload.read_bytes()[4096:8192]
    bad = run("exec", "lab", "--", "dd", f"if={payload}", "of=/dev/mem", "bs=4096",
              f"seek={0xF030000000 // 4096}", "conv=notrunc", check=False)
    assert bad.returncode == 1 and "dd: error writing '/dev/mem': Bad address" in bad.stderr


def test_reboot_loses_volatile_keeps_persistent(tmp_path):
    topo = tmp_path / "t.toml"
    topo.write_text("""
[machine]
name = "mix"
[[host_bridge]]
id = "hb0"
uid = 0
root_ports = 2
[[device]]
id = "ram0"
parent = "hb0"
volatile = "256M"
[[device]]
id = "pm0"
parent = "hb0"
persistent = "256M"
lsa = "128K"
[[window]]
size = "1G"
targets = ["hb0"]
[[firmware_region]]
window = 0
devices = ["ram0"]
size = "256M"
mode = "ram"
[[firmware_region]]
window = 0
devices = ["pm0"]
size = "256M"
offset = "256M"
mode = "pmem"
""")
    run("create", "mix", "--topology", str(topo))
    regions = json.loads(run("show", "mix").stdout)["regions"]
    starts = {r["targets"][0]["memdev"]: r["resource"] for r in regions}
    data = tmp_path / "d.bin"
    data.write_bytes(b"\x5a" * 8192)
    for mem, start in starts.items():
        run("exec", "mix", "--", "dd", f"if={data}", "of=/dev/mem", "bs=4096", f"seek={start // 4096}",
            "conv=notrunc")
    run("reboot", "mix")
    for mem, start in starts.items():
        out = tmp_path / f"{mem}.bin"
        run("exec", "mix", "--", "dd", "if=/dev/mem", f"of={out}", "bs=4096", f"skip={start // 4096}", "count=2")
        expect = b"\x5a" * 8192 if mem == "mem1" else bytes(8192)
        assert out.read_bytes() == expect, mem


def test_power_fail_counts_a_dirty_shutdown():
    run("create", "pm", "--topology", "biscuitos-b")
    run("power-fail", "pm")
    from cxlemu.machine.store import Store
    with Store().open("pm", write=False) as m:
        assert m.platform.devices[0].health.dirty_shutdowns == 1


def test_concurrent_commands_serialise():
    run("create", "lab", "--topology", "cxl-test")
    attr = "/sys/bus/cxl/devices/decoder0.1/create_ram_region"
    procs = []
    for _ in range(4):
        script = (
            "from cxlemu.machine.store import Store\n"
            "with Store().open('lab') as m:\n"
            "    b = m.backend()\n"
            f"    n = b.read('{attr}').strip()\n"
            f"    b.write('{attr}', n + chr(0))\n"
            "    print(n)\n")
        procs.append(subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True))
    names = [p.communicate()[0].strip() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert len(set(names)) == 4
    listing = run("sysfs", "lab", "ls", "/sys/bus/cxl/devices/decoder0.1").stdout.split()
    assert set(names) <= set(listing)


def test_kill_9_mid_command_leaves_previous_state():
    run("create", "lab", "--topology", "cxl-test")
    script = (
        "import os\n"
        "from cxlemu.machine.store import Store\n"
        "with Store().open('lab') as m:\n"
        "    b = m.backend()\n"
        "    b.fault_after_writes = 2\n"
        "    a = '/sys/bus/cxl/devices/decoder0.1/create_ram_region'\n"
        "    n = b.read(a).strip()\n"
        "    b.write(a, n + chr(0))\n"
        "    b.write(f'/sys/bus/cxl/devices/{n}/interleave_granularity', '4096')\n"
        "    print('not reached')\n")
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert p.returncode == -9 and "not reached" not in p.stdout
    listing = run("sysfs", "lab", "ls", "/sys/bus/cxl/devices/decoder0.1").stdout.split()
    assert not [n for n in listing if n.startswith("region")]
    machine_dir = Path(os.environ["CXLEMU_HOME"]) / "machines" / "lab"
    assert not [p for p in machine_dir.iterdir() if p.name.endswith(".tmp")]
