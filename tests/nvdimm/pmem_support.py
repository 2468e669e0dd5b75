"""Helpers for the persistent-memory tests (nvdimm, ndctl, cxl labels, dax
mappings): in-process kernels with media, pmem regions, tool runs and an
in-process reboot.  The real binaries run through tests/cxltest_support.py."""

from __future__ import annotations

import io
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cxltest_support import boot_text, create_region  # noqa: E402

from cxlemu.data.media import MediaStore  # noqa: E402
from cxlemu.data.physmem import attach  # noqa: E402
from cxlemu.sysfs.backend import EmulatorBackend  # noqa: E402
from cxlemu.topology import presets  # noqa: E402

MiB = 1 << 20


def topo(preset: str = "biscuitos-b", **boot) -> str:
    """A preset's TOML with [boot] keys overridden."""
    out = []
    for line in presets.text(preset).splitlines():
        key = line.split("=", 1)[0].strip()
        if key in boot and "=" in line:
            continue
        out.append(line)
        if line.strip() == "[boot]":
            for k, v in boot.items():
                out.append(f'{k} = "{v}"' if isinstance(v, str) else f"{k} = {str(v).lower()}")
    return "\n".join(out) + "\n"


def fabric(ways: int, *, serial_base: int = 1, lsa: str = "128K", pmem: str = "512M",
           volatile: str | None = None, restrictions: str = '"type3", "volatile", "pmem"', **boot) -> str:
    """One host bridge with ``ways`` root ports, one device per port."""
    bl = "\n".join(f"{k} = {str(v).lower()}" if not isinstance(v, str) else f'{k} = "{v}"'
                   for k, v in boot.items())
    devs = []
    for i in range(ways):
        cap = f'persistent = "{pmem}"' if pmem else ""
        if volatile:
            cap += f'\nvolatile = "{volatile}"'
        devs.append(f'[[device]]\nid = "d{i}"\nparent = "hb0"\nserial = {serial_base + i}\n{cap}\n'
                    f'lsa = "{lsa}"\n')
    return f'''[machine]
name = "pmemtest"
flavor = "acpi"
[boot]
kernel = "6.9"
region_invalidation_test = true
{bl}
[[numa]]
node = 0
memory = "2G"
[[host_bridge]]
id = "hb0"
uid = 0
root_ports = {ways}
{"".join(devs)}
[[window]]
size = "16G"
targets = ["hb0"]
granularity = 256
restrictions = [{restrictions}]
'''


def backend(tmp_path: Path, text: str | None = None) -> EmulatorBackend:
    b = boot_text(text or presets.text("biscuitos-b"))
    attach(b.kernel, MediaStore(tmp_path / "media"))
    b.machine = _FakeMachine(b, tmp_path)
    return b


class _FakeMachine:
    """What dax mappings need of a machine: its directory, media and platform."""

    def __init__(self, b: EmulatorBackend, path: Path):
        self.path = path
        self.media = b.kernel.media_store
        self.platform = b.kernel.platform
        self.topology = self.platform.topology


def reboot(b: EmulatorBackend, power_loss: bool = False) -> EmulatorBackend:
    """Machine.reboot in process: reset the platform, boot a new kernel on it
    (same media store, same fake machine)."""
    from cxlemu.kernel.kernel import Kernel
    plat = b.kernel.platform
    plat.reset(power_loss=power_loss)
    plat.firmware_boot()
    k = Kernel(plat)
    attach(k, b.kernel.media_store)
    k.boot()
    nb = EmulatorBackend(k)
    nb.machine = b.machine
    return nb


def pmem_region(b: EmulatorBackend, memdevs: list[str] | None = None, *, size: int | None = None,
                gran: int = 4096, uuid: str | None = None) -> str:
    memdevs = memdevs or [m.name for m in b.kernel.cxl.memdevs]
    size = size or 512 * MiB * len(memdevs)
    return create_region(b, "decoder0.0", memdevs, mode="pmem", gran=gran, size=size, uuid=uuid).name


def tool(b: EmulatorBackend, name: str, *argv: str, tty: bool = False, env: dict | None = None):
    from cxlemu.tools.runner import run_tool
    out, err = io.StringIO(), io.StringIO()
    rc = run_tool(name, list(argv), b, env=env or {}, stdout=out, stderr=err, isatty=tty)
    return rc, out.getvalue(), err.getvalue()


def ndctl(b: EmulatorBackend, *argv: str, **kw):
    return tool(b, "ndctl", *argv, **kw)


def lsa(b: EmulatorBackend, memdev: str = "mem0") -> bytearray:
    return next(m for m in b.kernel.cxl.memdevs if m.name == memdev).hw.lsa
