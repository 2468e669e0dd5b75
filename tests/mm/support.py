"""Helpers for the memory-hotplug / dax / daxctl tests: small machines booted
in process, regions made with the create-region sysfs writes, tools run on
the emulator backend."""

from __future__ import annotations

import io
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from cxltest_support import boot, boot_text, create_region, r, w  # noqa: E402,F401

from cxlemu.tools.runner import run_tool  # noqa: E402

GiB = 1 << 30
MiB = 1 << 20


def topo(*, kernel: str = "6.9", hypervisor: bool = True, memhp: str = "offline", policy: str = "contig-zones",
         ratio: int = 301, numa_aware: bool = True, movable_node: bool = False, dram: str = "4G",
         nodes: int = 2, dev_size: str = "1G", devices: int = 2, window: str = "4G",
         window_node: int | None = None, cdat: str | None = None, extra: str = "",
         node_perf: list[tuple[int, int]] | None = None, block_size: str | None = None) -> str:
    """One host bridge with ``devices`` root ports / volatile devices and one
    x1 window; ``nodes`` DRAM nodes with 2 CPUs each."""
    out = ["[machine]", 'name = "memtest"', "[boot]", f'kernel = "{kernel}"',
           f"hypervisor = {'true' if hypervisor else 'false'}", "region_invalidation_test = true",
           f'memhp_default_state = "{memhp}"', f'online_policy = "{policy}"', f"auto_movable_ratio = {ratio}",
           f"auto_movable_numa_aware = {'true' if numa_aware else 'false'}",
           f"movable_node = {'true' if movable_node else 'false'}"]
    if block_size:
        out.append(f'memory_block_size = "{block_size}"')
    for n in range(nodes):
        lat, bw = (node_perf[n] if node_perf else (80, 20000))
        out += ["[[numa]]", f"node = {n}", "cpus = 2", f'memory = "{dram}"', f"read_latency = {lat}",
                f"write_latency = {lat}", f"read_bandwidth = {bw}", f"write_bandwidth = {bw}"]
    out += ["[[host_bridge]]", 'id = "hb0"', "uid = 0", f"root_ports = {max(devices, 1)}"]
    for i in range(devices):
        out += ["[[device]]", f'id = "dev{i}"', 'parent = "hb0"', f'volatile = "{dev_size}"']
        if cdat:
            out.append(f"cdat = {cdat}")
    out += ["[[window]]", f'size = "{window}"', 'targets = ["hb0"]', 'restrictions = ["type3", "volatile"]']
    if window_node is not None:
        out.append(f"numa_node = {window_node}")
    return "\n".join(out) + "\n" + extra


def memdevs(b) -> list[str]:
    return [md.name for md in sorted(b.kernel.cxl.memdevs, key=lambda m: m.hw.topo.id)]


def ram_region(b, size: int = 256 * MiB, devs: list[str] | None = None, root: str = "decoder0.0") -> str:
    """create-region -t ram (the libcxl write order); returns the dax device name."""
    made = create_region(b, root, devs or memdevs(b)[:1], size=size)
    return f"dax{int(made.name[len('region'):])}.0"


@dataclass
class Result:
    rc: int
    out: str
    err: str


def tool(b, name: str, *argv: str, env: dict | None = None) -> Result:
    o, e = io.StringIO(), io.StringIO()
    rc = run_tool(name, list(argv), b, env=env or {}, stdout=o, stderr=e, isatty=False)
    return Result(rc, o.getvalue(), e.getvalue())


def daxctl(b, *argv: str, env: dict | None = None) -> Result:
    return tool(b, "daxctl", *argv, env=env)


def blocks_of(b, dev: str):
    """Memory blocks hot-added for a dax device (kernel view)."""
    d = b.kernel.dax.find(dev)
    bs = b.kernel.mm.block_size
    return [blk for blk in b.kernel.mm.blocks.values()
            if any(rg.start <= blk.start and blk.end <= rg.end for rg in d.ranges) and not blk.early
            and blk.start // bs == blk.id]


def block_state(b) -> dict:
    """A snapshot of everything offlining must leave unchanged."""
    mm = b.kernel.mm
    return {"blocks": {i: (x.state, x.zone, x.kernel, x.user, x.reserved) for i, x in mm.blocks.items()},
            "allocs": {a.id: dict(a.pieces) for a in mm.pages.allocs.values()},
            "meminfo": b.read("/proc/meminfo"), "iomem": b.read("/proc/iomem")}
