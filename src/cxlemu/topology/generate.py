"""Generated topologies of any size: ``cxlemu topology generate``.

:func:`generate` lays out ``devices`` Type 3 devices over ``host_bridges`` CXL
host bridges (spread over ``segments`` PCI segment groups), each root port
leading to a tree of ``switch_levels`` levels of switches, and writes one x1
window per host bridge plus ``ways``-way windows interleaved across groups of
host bridges.  Every switch gets as many downstream ports as it has children,
so the tree is balanced and has no empty ports.

PCI limits the layout, exactly as on hardware: a segment has 256 bus numbers
and every root port, switch upstream port (its internal bus) and downstream
port consumes one (hw/platform.py enumerates depth first); a switch has at
most 256 downstream ports and a host bridge at most 32 root ports; the host
physical address space has 46 bits.  :class:`GenerateError` names the
argument to change when a request does not fit.
"""

from __future__ import annotations

import math

from cxlemu.topology.schema import VALID_WAYS
from cxlemu.util.lazydc import dataclass
from cxlemu.util.units import SZ_256M, parse_size

FIRST_ROOT_BUS = 0x0C            # hw/platform.py: the first host bridge's root bus
MAX_BUS = 0xFF
PHYS_ADDR_BITS = 46              # kernel/kernel.py: the iomem root
MAX_SWITCH_PORTS = 256
MAX_ROOT_PORTS = 32


class GenerateError(ValueError):
    """A request that cannot be laid out; ``option`` names the argument."""

    def __init__(self, option: str, reason: str):
        super().__init__(f"{option}: {reason}")
        self.option = option
        self.reason = reason


@dataclass(frozen=True)
class Spec:
    devices: int
    switch_levels: int = 2
    host_bridges: int | None = None     # None: one per 128 devices (at least 1)
    segments: int | None = None         # None: one per host bridge
    root_ports: int | None = None       # None: 2 (1 for a single device per bridge)
    ways: int | None = None             # None: the largest valid interleave <= host bridges, <= 16
    device_size: str = "1G"
    device_type: str = "volatile"       # "volatile" | "persistent"
    hdm_decoders: int = 2
    name: str | None = None


def split(n: int, parts: int) -> list[int]:
    """``n`` split into ``parts`` sizes differing by at most one (larger first)."""
    q, r = divmod(n, parts)
    return [q + 1 if i < r else q for i in range(parts)]


def _fanout(count: int, levels: int) -> int:
    """Children of a switch with ``count`` devices below it and ``levels`` switch
    levels (itself included): the ``levels``-th root, rounded up."""
    if levels <= 1:
        return count
    k = max(1, round(count ** (1.0 / levels)))
    while k ** levels < count:
        k += 1
    return min(k, count)


def resolve(spec: Spec) -> Spec:
    """Fill in defaults and check every argument; raise :class:`GenerateError`."""
    n = spec.devices
    if n < 1:
        raise GenerateError("--devices", "must be at least 1")
    if not 0 <= spec.switch_levels <= 8:
        raise GenerateError("--switch-levels", "must be between 0 and 8")
    hbs = spec.host_bridges if spec.host_bridges is not None else max(1, math.ceil(n / 128))
    if hbs < 1:
        raise GenerateError("--host-bridges", "must be at least 1")
    if hbs > n:
        raise GenerateError("--host-bridges", f"{hbs} host bridges for {n} device(s): each needs a device")
    if hbs > 256:
        raise GenerateError("--host-bridges", "at most 256")
    segs = spec.segments if spec.segments is not None else hbs
    if not 1 <= segs <= hbs:
        raise GenerateError("--segments", f"must be between 1 and the number of host bridges ({hbs})")
    per_hb = math.ceil(n / hbs)
    rps = spec.root_ports
    if rps is None:
        rps = min(2, per_hb) if spec.switch_levels else min(per_hb, MAX_ROOT_PORTS)
    if not 1 <= rps <= MAX_ROOT_PORTS:
        raise GenerateError("--root-ports", f"must be between 1 and {MAX_ROOT_PORTS}")
    if spec.switch_levels == 0 and per_hb > rps:
        raise GenerateError("--root-ports", f"without switches every device needs its own root port: "
                                            f"{per_hb} device(s) per host bridge, {rps} root port(s)")
    ways = spec.ways
    if ways is None:
        ways = max(w for w in VALID_WAYS if w <= min(hbs, 16))
    if ways not in VALID_WAYS:
        raise GenerateError("--ways", f"must be one of {', '.join(map(str, VALID_WAYS))}")
    if ways > hbs:
        raise GenerateError("--ways", f"{ways}-way interleave needs {ways} host bridges (have {hbs})")
    try:
        size = parse_size(spec.device_size)
    except ValueError as e:
        raise GenerateError("--device-size", str(e)) from None
    if size <= 0 or size % SZ_256M:
        raise GenerateError("--device-size", "must be a non-zero multiple of 256M")
    if spec.device_type not in ("volatile", "persistent"):
        raise GenerateError("--type", "must be volatile or persistent")
    if not 1 <= spec.hdm_decoders <= 32:
        raise GenerateError("--hdm-decoders", "must be between 1 and 32")
    return Spec(devices=n, switch_levels=spec.switch_levels, host_bridges=hbs, segments=segs,
                root_ports=rps, ways=ways, device_size=spec.device_size, device_type=spec.device_type,
                hdm_decoders=spec.hdm_decoders, name=spec.name or f"generated-{n}")


class _Writer:
    def __init__(self) -> None:
        self.switches: list[str] = []
        self.devices: list[str] = []
        self.ndev = 0
        self.nsw = 0

    def device(self, parent: str, spec: Spec) -> None:
        self.devices += ["", "[[device]]", f'id = "dev{self.ndev}"', f'parent = "{parent}"',
                         f'{spec.device_type} = "{spec.device_size}"', f"hdm_decoders = {spec.hdm_decoders}"]
        if spec.device_type == "persistent":
            self.devices.append('lsa = "128K"')
        self.ndev += 1

    def switch(self, parent: str, count: int, levels: int, spec: Spec) -> int:
        """A switch below ``parent`` with ``count`` devices in ``levels`` levels;
        returns the PCI bus numbers its subtree consumes (internal bus + dports)."""
        sid = f"sw{self.nsw}"
        self.nsw += 1
        fan = _fanout(count, levels)
        if fan > MAX_SWITCH_PORTS:
            raise GenerateError("--switch-levels", f"a switch would need {fan} downstream ports "
                                                   f"(at most {MAX_SWITCH_PORTS}): add switch levels")
        self.switches += ["", "[[switch]]", f'id = "{sid}"', f'parent = "{parent}"', f"downstream_ports = {fan}"]
        buses = 1 + fan
        for c in split(count, fan):
            if levels <= 1:
                self.device(sid, spec)
            else:
                buses += self.switch(sid, c, levels - 1, spec)
        return buses


def generate(spec: Spec) -> str:
    """A valid topology TOML for ``spec`` (see :func:`resolve` for the defaults)."""
    s = resolve(spec)
    assert s.host_bridges is not None and s.segments is not None and s.root_ports is not None
    assert s.ways is not None
    size = parse_size(s.device_size)
    w = _Writer()
    hb_lines: list[str] = []
    seg_buses: dict[int, int] = {}
    per_hb = split(s.devices, s.host_bridges)
    for h, count in enumerate(per_hb):
        seg = h * s.segments // s.host_bridges
        rps = min(s.root_ports, count)
        hb_lines += ["", "[[host_bridge]]", f'id = "hb{h}"', f"uid = {h}", f"segment = {seg}",
                     f"root_ports = {rps}", f"numa_node = {h % 2}"]
        buses = 1 + rps
        for c in split(count, rps):
            if s.switch_levels == 0:
                w.device(f"hb{h}", s)
            else:
                buses += w.switch(f"hb{h}", c, s.switch_levels, s)
        seg_buses[seg] = seg_buses.get(seg, FIRST_ROOT_BUS) + buses
        if seg_buses[seg] - 1 > MAX_BUS:
            raise GenerateError("--segments", f"PCI segment {seg} would need bus numbers up to "
                                              f"{seg_buses[seg] - 1:#x} (at most 0xff): use more segments "
                                              f"or host bridges")
    restrictions = '["type3", "volatile"]' if s.device_type == "volatile" else '["type3", "pmem"]'
    win_lines: list[str] = []
    total = 0
    for h, count in enumerate(per_hb):
        win_lines += ["", "[[window]]", f"size = {count * size:#x}", f'targets = ["hb{h}"]',
                      "granularity = 4096", f"restrictions = {restrictions}"]
        total += count * size
    if s.ways > 1:
        for g in range(s.host_bridges // s.ways):
            members = range(g * s.ways, (g + 1) * s.ways)
            wsize = s.ways * min(per_hb[m] for m in members) * size
            targets = ", ".join(f'"hb{m}"' for m in members)
            win_lines += ["", "[[window]]", f"size = {wsize:#x}", f"targets = [{targets}]",
                          "granularity = 4096", f"restrictions = {restrictions}"]
            total += wsize
    if total > (1 << PHYS_ADDR_BITS) // 2:
        raise GenerateError("--device-size", f"windows of {total >> 40} TiB do not fit the "
                                             f"{PHYS_ADDR_BITS}-bit physical address space: use smaller devices")
    head = [
        f"# Generated by cxlemu topology generate: {s.devices} Type 3 devices, {s.host_bridges} host "
        f"bridge(s) on {s.segments} PCI segment(s), {s.switch_levels} switch level(s)",
        "[machine]",
        f'name = "{s.name}"',
        f'description = "{s.devices} x {s.device_size} Type 3 devices, {s.host_bridges} host bridges, '
        f'{s.switch_levels} levels of switches"',
        'flavor = "acpi"',
        "",
        "[boot]",
        'kernel = "6.14"',
        "hypervisor = false",
        "",
        "[[numa]]", "node = 0", "cpus = 32", 'memory = "128G"',
        "",
        "[[numa]]", "node = 1", "cpus = 32", 'memory = "128G"',
    ]
    return "\n".join(head + hb_lines + w.switches + w.devices + win_lines) + "\n"
