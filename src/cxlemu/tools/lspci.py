"""lspci: list PCI devices and show the bus tree (``-t``, ``-tv``), reading
/sys/bus/pci/devices through the backend like pciutils' sysfs access method.
Device names come from the host's pci.ids; the tree layout follows the
output of pciutils' ls-tree (domain/bus brackets, ``+-``/``\\-`` branches,
``-[sec-sub]-`` bridge ranges)."""

from __future__ import annotations

import struct
from functools import lru_cache

from cxlemu.tools.common.command import CommandContext
from cxlemu.util.lazydc import dataclass

PCI_IDS = ("/usr/share/misc/pci.ids", "/usr/share/hwdata/pci.ids", "/usr/share/pci.ids")


@lru_cache(maxsize=1)
def _ids() -> tuple[dict, dict, dict]:
    vendors: dict[int, str] = {}
    devices: dict[tuple[int, int], str] = {}
    classes: dict[tuple[int, int | None], str] = {}
    for path in PCI_IDS:
        try:
            f = open(path, encoding="utf-8", errors="replace")
        except OSError:
            continue
        with f:
            vendor = None
            cls = None
            for line in f:
                if not line.strip() or line.startswith("#"):
                    continue
                if line.startswith("C "):
                    cls = int(line[2:4], 16)
                    classes[(cls, None)] = line[6:].strip()
                    vendor = None
                    continue
                if line[0] != "\t":
                    cls = None
                    try:
                        vendor = int(line[:4], 16)
                    except ValueError:
                        vendor = None
                        continue
                    vendors[vendor] = line[6:].strip()
                elif line[1] != "\t":
                    if cls is not None:
                        classes[(cls, int(line[1:3], 16))] = line[5:].strip()
                    elif vendor is not None:
                        devices[(vendor, int(line[1:5], 16))] = line[7:].strip()
        break
    return vendors, devices, classes


def device_name(vendor: int, device: int, numeric: bool = False) -> str:
    if numeric:
        return f"Device {vendor:04x}:{device:04x}"
    vendors, devices, _ = _ids()
    v = vendors.get(vendor)
    d = devices.get((vendor, device))
    if v is None:
        return f"Device {vendor:04x}:{device:04x}"
    return f"{v} {d}" if d else f"{v} Device {device:04x}"


def class_name(cls: int) -> str:
    _, _, classes = _ids()
    base, sub = cls >> 16, (cls >> 8) & 0xFF
    return classes.get((base, sub)) or classes.get((base, None)) or f"Class {cls >> 8:04x}"


@dataclass
class Dev:
    domain: int
    bus: int
    dev: int
    fn: int
    vendor: int
    device: int
    cls: int
    revision: int
    bridge: tuple[int, int] | None = None   # (secondary, subordinate)
    numa_node: int | None = None

    @property
    def bdf(self) -> str:
        return f"{self.domain:04x}:{self.bus:02x}:{self.dev:02x}.{self.fn}"


def scan(backend) -> list[Dev]:
    out = []
    base = "/sys/bus/pci/devices"
    if not backend.exists(base):
        return out
    for name in backend.listdir(base):
        try:
            dom, bus, df = name.split(":")
            d, f = df.split(".")
            cfg = backend.read_bytes(f"{base}/{name}/config")
        except (OSError, ValueError):
            continue
        if len(cfg) < 64:
            continue
        vendor, device = struct.unpack_from("<HH", cfg, 0)
        cls = int.from_bytes(cfg[9:12], "little")
        dv = Dev(int(dom, 16), int(bus, 16), int(d, 16), int(f, 16), vendor, device, cls, cfg[8])
        if (cls >> 8) == 0x0604 and (cfg[0x0E] & 0x7F) == 1:
            dv.bridge = (cfg[0x19], cfg[0x1A])
        out.append(dv)
    out.sort(key=lambda x: (x.domain, x.bus, x.dev, x.fn))
    return out


def listing(devs: list[Dev], numeric: bool, show_domain: bool) -> str:
    lines = []
    for d in devs:
        addr = d.bdf if show_domain else d.bdf[5:]
        rev = f" (rev {d.revision:02x})" if d.revision else ""
        if numeric:
            lines.append(f"{addr} {d.cls >> 8:04x}: {d.vendor:04x}:{d.device:04x}{rev}")
        else:
            lines.append(f"{addr} {class_name(d.cls)}: {device_name(d.vendor, d.device)}{rev}")
    return "".join(line + "\n" for line in lines)


class _Line:
    """A line buffer: after a line is printed, what stays to its left becomes
    the continuation (bars under branch points, blanks elsewhere)."""

    def __init__(self) -> None:
        self.buf: list[str] = []
        self.out: list[str] = []

    def put(self, pos: int, text: str) -> int:
        del self.buf[pos:]
        self.buf.extend(text)
        return len(self.buf)

    def emit(self, pos: int) -> None:
        del self.buf[pos:]
        self.out.append("".join(self.buf))
        self.buf = ["|" if c in "+|" else " " for c in self.buf]


def tree(devs: list[Dev], verbose: bool, numeric: bool) -> str:
    """The bus tree as ``lspci -t`` draws it."""
    bridges = [d for d in devs if d.bridge]

    def owner_bridge(d: Dev) -> Dev | None:
        best = None
        for b in bridges:
            sec, sub = b.bridge  # type: ignore[misc]
            if b.domain == d.domain and sec <= d.bus <= sub:
                if best is None or (sub - sec) < (best.bridge[1] - best.bridge[0]):  # type: ignore[index]
                    best = b
        return best

    below: dict[int, list[Dev]] = {}
    roots: dict[tuple[int, int], list[Dev]] = {(0, 0): []}   # bus 0000:00 is always shown
    for d in devs:
        ob = owner_bridge(d)
        if ob is None:
            roots.setdefault((d.domain, d.bus), []).append(d)
        else:
            below.setdefault(id(ob), []).append(d)
    ln = _Line()

    def show_dev(d: Dev, pos: int) -> None:
        pos = ln.put(pos, f"{d.dev:02x}.{d.fn:x}")
        if d.bridge:
            sec, sub = d.bridge
            if sec == 0:
                pos = ln.put(pos, "-")
            elif sec == sub:
                pos = ln.put(pos, f"-[{sec:02x}]-")
            else:
                pos = ln.put(pos, f"-[{sec:02x}-{sub:02x}]-")
            pos = ln.put(pos, "-")
            show_bus(below.get(id(d), []), pos)
            return
        if verbose:
            pos = ln.put(pos, "  " + device_name(d.vendor, d.device, numeric))
        ln.emit(pos)

    def show_bus(members: list[Dev], pos: int) -> None:
        if not members:
            ln.emit(pos)
        elif len(members) == 1:
            show_dev(members[0], ln.put(pos, "--"))
        else:
            for i, d in enumerate(members):
                show_dev(d, ln.put(pos, "\\-" if i == len(members) - 1 else "+-"))

    buses = sorted(roots)
    pos = ln.put(0, "-")
    if len(buses) == 1:
        (dom, bus), = buses
        show_bus(roots[(dom, bus)], ln.put(pos, f"[{dom:04x}:{bus:02x}]-"))
    else:
        for i, (dom, bus) in enumerate(buses):
            mark = "\\-" if i == len(buses) - 1 else "+-"
            show_bus(roots[(dom, bus)], ln.put(pos, f"{mark}[{dom:04x}:{bus:02x}]-"))
    return "".join(line + "\n" for line in ln.out)


def tool_main(name: str, argv: list[str], ctx: CommandContext) -> int:
    flags = set()
    for a in argv:
        if a.startswith("-") and not a.startswith("--"):
            flags.update(a[1:])
        elif a in ("--help",):
            ctx.stdout.write("usage: lspci [-t] [-v] [-n] [-D]\n")
            return 0
        else:
            ctx.stderr.write(f"lspci: unsupported argument {a!r} (cxlemu's lspci knows -t -v -n -D)\n")
            return 2
    unknown = flags - set("tvnDk")
    if unknown:
        ctx.stderr.write(f"lspci: -{sorted(unknown)[0]}: unsupported option (cxlemu's lspci knows -t -v -n -D)\n")
        return 2
    devs = scan(ctx.backend)
    if "t" in flags:
        ctx.stdout.write(tree(devs, "v" in flags, "n" in flags))
    else:
        show_domain = "D" in flags or any(d.domain for d in devs)
        ctx.stdout.write(listing(devs, "n" in flags, show_domain))
    return 0
