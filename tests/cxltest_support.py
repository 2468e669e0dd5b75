"""Helpers shared by the test suite: boot kernels in process, build custom
fabrics, and drive the region ABI the way libcxl does (write order and
formats of cxl/lib/libcxl.c, contract §2.1)."""

from __future__ import annotations

import io
import uuid as uuidlib
from dataclasses import dataclass

from cxlemu.hw.platform import build_platform
from cxlemu.kernel.kernel import Kernel
from cxlemu.sysfs.backend import EmulatorBackend
from cxlemu.topology import presets
from cxlemu.topology.schema import loads

D = "/sys/bus/cxl/devices/"
SZ_256M = 256 << 20


def boot_text(text: str) -> EmulatorBackend:
    p = build_platform(loads(text))
    p.firmware_boot()
    k = Kernel(p)
    k.boot()
    return EmulatorBackend(k)


def boot(preset: str) -> EmulatorBackend:
    return boot_text(presets.text(preset))


def w(b: EmulatorBackend, path: str, val: str) -> None:
    """A libcxl-style write: the string plus its NUL terminator."""
    b.write(path if path.startswith("/") else D + path, val + "\0")


def r(b: EmulatorBackend, path: str) -> str:
    return b.read(path if path.startswith("/") else D + path).rstrip("\n")


def fabric_toml(root_ways: int, rps: int = 1, sw_ports: int = 0, *, gran: int = 256,
                arithmetic: str = "modulo", xormaps: tuple[int, ...] = (), mode: str = "ram",
                dev_size: str = "512M", kernel: str = "6.9", hb_decoders: int | None = None) -> str:
    """``root_ways`` host bridges, each with ``rps`` root ports; below each root
    port a device, or a switch with ``sw_ports`` devices."""
    kind = "volatile" if mode == "ram" else "persistent"
    out = ["[machine]", 'name = "fabric"', "[boot]", f'kernel = "{kernel}"', "hypervisor = false"]
    n = 0
    for h in range(root_ways):
        out += ["[[host_bridge]]", f'id = "hb{h}"', f"uid = {h}", f"root_ports = {rps}"]
        if hb_decoders is not None:
            out.append(f"hdm_decoders = {hb_decoders}")
    for h in range(root_ways):
        for rp in range(rps):
            parent = f"hb{h}"
            if sw_ports:
                out += ["[[switch]]", f'id = "sw{h}.{rp}"', f'parent = "hb{h}"', f"downstream_ports = {sw_ports}"]
                parent = f"sw{h}.{rp}"
            for _ in range(max(1, sw_ports)):
                out += ["[[device]]", f'id = "dev{n}"', f'parent = "{parent}"', f'{kind} = "{dev_size}"',
                        'lsa = "128K"' if mode == "pmem" else "lsa = 0"]
                n += 1
    targets = ", ".join(f'"hb{h}"' for h in range(root_ways))
    maps = ", ".join(hex(m) for m in xormaps)
    out += ["[[window]]", 'size = "64G"', f"targets = [{targets}]", f"granularity = {gran}",
            f'restrictions = ["type3", "volatile", "pmem"]', f'arithmetic = "{arithmetic}"',
            f"xormaps = [{maps}]"]
    return "\n".join(out) + "\n"


def xormaps_for(hb_ways: int, gran: int) -> tuple[int, ...]:
    """Valid CXIMS maps: map i has its lowest set bit at log2(gran)+i plus two higher bits."""
    L = gran.bit_length() - 1
    n = (hb_ways if hb_ways & (hb_ways - 1) == 0 else hb_ways // 3).bit_length() - 1
    return tuple((1 << (L + i)) | (1 << (L + i + 5)) | (1 << (L + i + 11)) for i in range(n))


@dataclass
class Made:
    name: str
    decoders: list[str]


def reserve(b: EmulatorBackend, memdev: str, mode: str, size: int) -> str:
    """cxl reserve-dpa: the first endpoint decoder with no DPA gets ``size``."""
    k = b.kernel
    md = next(m for m in k.cxl.memdevs if m.name == memdev)
    d = next(x for x in md.endpoint.decoders if x.dpa_len == 0)
    if d.mode != mode:
        w(b, f"{d.name}/dpa_size", "0x0\n")
        w(b, f"{d.name}/mode", mode)
    w(b, f"{d.name}/dpa_size", f"{size:#x}\n")
    return d.name


def create_region(b: EmulatorBackend, root: str, memdevs: list[str], *, mode: str = "ram",
                  gran: int | None = None, size: int | None = None, enable: bool = True,
                  uuid: str | None = None) -> Made:
    """The create-region sysfs sequence (libcxl order)."""
    ways = len(memdevs)
    size = size or SZ_256M * ways
    gran = gran or int(r(b, f"{root}/interleave_granularity"))
    attr = "create_pmem_region" if mode == "pmem" else "create_ram_region"
    name = r(b, f"{root}/{attr}")
    w(b, f"{root}/{attr}", name)
    w(b, f"{name}/interleave_granularity", f"{gran}\n")
    w(b, f"{name}/interleave_ways", f"{ways}\n")
    if mode == "pmem":
        w(b, f"{name}/uuid", uuid or str(uuidlib.uuid4()))
    w(b, f"{name}/size", f"{size:#x}\n")
    decs = []
    for i, m in enumerate(memdevs):
        d = reserve(b, m, mode, size // ways)
        w(b, f"{name}/target{i}", d)
        decs.append(d)
    w(b, f"{name}/commit", "1\n")
    if enable:
        bind(b, name)
    return Made(name, decs)


def bind(b: EmulatorBackend, dev: str) -> None:
    """util_bind: try every cxl driver until one accepts the device."""
    last = None
    for drv in b.listdir("/sys/bus/cxl/drivers"):
        p = f"/sys/bus/cxl/drivers/{drv}/bind"
        if not b.exists(p):
            continue
        try:
            w(b, p, dev)
            return
        except OSError as e:
            last = e
    raise last or OSError("no driver")


def run(b: EmulatorBackend, tool: str, *argv: str) -> tuple[int, str, str]:
    from cxlemu.tools.runner import run_tool
    out, err = io.StringIO(), io.StringIO()
    rc = run_tool(tool, list(argv), b, stdout=out, stderr=err, isatty=False)
    return rc, out.getvalue(), err.getvalue()


# ---- running the real Debian tools against a rendered tree -------------------------------

_UNSHARE_SCRIPT = r'''
set -e
R=$0
mount --bind "$R/sys" /sys
D=$(mktemp -d)
mount -t tmpfs none "$D"
cp -a "$R/dev/." "$D/" 2>/dev/null || true
for n in null zero urandom random; do touch "$D/$n"; mount --bind "/dev/$n" "$D/$n"; done
mount --bind "$D" /dev
exec "$@"
'''


def real_tools_available(*tools: str) -> str | None:
    """None if the real binaries can be run in a private mount namespace, else why not."""
    import os
    import shutil
    if os.geteuid() != 0:
        return "needs root for unshare -m"
    if not shutil.which("unshare"):
        return "unshare is missing"
    for t in tools:
        if not shutil.which(t):
            return f"{t} is not installed (apt-get install ndctl daxctl numactl pciutils)"
    return None


def render_machine(b: EmulatorBackend, out) -> str:
    from cxlemu.sysfs.backend import render
    render(b, str(out))
    return str(out)


def run_real(rendered: str, *argv: str):
    """Run a real binary with ``rendered/sys`` as /sys and ``rendered/dev`` as /dev."""
    import subprocess
    return subprocess.run(["unshare", "-m", "bash", "-c", _UNSHARE_SCRIPT, rendered, *argv],
                          capture_output=True, text=True, timeout=120)
