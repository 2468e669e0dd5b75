"""The CXL memory topology of a machine, read from its sysfs ABI through a
backend (so it works on an emulated machine, a rendered tree or a real
host's /sys): host bridges, switches, endpoints and memdevs with their
capacity, CXL windows (root decoders) and the regions in them with their
interleave and members, the dax devices of those regions (devdax or
System-RAM through kmem) and the NUMA nodes the memory landed in.

The result is plain data (``Topo``), for ``cxlemu draw`` (graphviz, a rich
tree) and ``--json``.  Only the documented ABI is read:
/sys/bus/cxl/devices (sysfs-bus-cxl), /sys/bus/dax/devices (sysfs-bus-dax),
/sys/bus/nd/devices and /sys/devices/system/{node,memory}.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import asdict, field

from cxlemu.util.lazydc import dataclass

CXL = "/sys/bus/cxl/devices"
DAX = "/sys/bus/dax/devices"
NODE = "/sys/devices/system/node"


@dataclass
class Port:
    name: str                    # root0, port1, endpoint3
    kind: str                    # "root", "host_bridge", "switch", "endpoint"
    host: str                    # basename of the uport link (pci0000:0c, 0000:0d:00.0, mem0)
    parent: str | None           # parent port
    depth: int
    dports: list[str] = field(default_factory=list)


@dataclass
class Memdev:
    name: str
    endpoint: str | None
    host: str                    # PCI function / platform device
    ram_size: int
    pmem_size: int
    serial: int | None
    numa_node: int


@dataclass
class Window:
    name: str                    # decoder0.N
    start: int
    size: int
    ways: int
    granularity: int
    ram: bool
    pmem: bool
    targets: list[str]           # host bridges (root0 dport names), in target_list order
    qos_class: int | None


@dataclass
class RegionMember:
    position: int
    decoder: str
    memdev: str | None


@dataclass
class Region:
    name: str
    window: str
    mode: str                    # "ram" | "pmem" | "?" (no mode attribute: Linux < 6.3, and not inferable)
    start: int | None
    size: int
    ways: int
    granularity: int
    committed: bool
    enabled: bool
    members: list[RegionMember]


@dataclass
class DaxDev:
    name: str                    # dax0.0
    region: str | None           # the CXL region (or nd region of the same id) it belongs to
    mode: str                    # "system-ram" | "devdax" | "unbound"
    size: int
    target_node: int


@dataclass
class NumaNode:
    node: int
    memory: int                  # MemTotal (bytes)
    cpus: bool
    has_memory: bool


@dataclass
class Topo:
    ports: list[Port] = field(default_factory=list)
    memdevs: list[Memdev] = field(default_factory=list)
    windows: list[Window] = field(default_factory=list)
    regions: list[Region] = field(default_factory=list)
    dax: list[DaxDev] = field(default_factory=list)
    nodes: list[NumaNode] = field(default_factory=list)

    def to_json(self) -> dict:
        return asdict(self)


def _id(name: str) -> list[int]:
    return [int(x) for x in re.findall(r"\d+", name)] or [0]


def _read(b, path: str, default: str = "") -> str:
    try:
        return b.read(path).strip()
    except OSError:
        return default


def _int(b, path: str, default: int = 0) -> int:
    try:
        return int(_read(b, path), 0)
    except ValueError:
        return default


def _link_name(b, path: str) -> str | None:
    try:
        return posixpath.basename(b.readlink(path))
    except OSError:
        return None


def _listdir(b, path: str) -> list[str]:
    try:
        return b.listdir(path)
    except OSError:
        return []


def _nodelist(text: str) -> set[int]:
    out: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        a, _, c = part.partition("-")
        try:
            out.update(range(int(a), int(c or a) + 1))
        except ValueError:
            continue
    return out


def read_topology(b) -> Topo:
    """Read the whole picture through backend ``b``."""
    t = Topo()
    names = _listdir(b, CXL)
    real = {n: b.realpath(f"{CXL}/{n}") for n in names if b.exists(f"{CXL}/{n}")}

    def parent_port(path: str) -> str | None:
        parent = posixpath.basename(posixpath.dirname(path))
        return parent if re.fullmatch(r"(root|port|endpoint)\d+", parent) else None

    ports = sorted((n for n in names if re.fullmatch(r"(root|port|endpoint)\d+", n)), key=_id)
    depth: dict[str, int] = {}
    for n in ports:
        path = real.get(n, "")
        par = parent_port(path)
        d = 0 if n.startswith("root") else depth.get(par, 0) + 1 if par else 1
        depth[n] = d
        kind = ("root" if n.startswith("root") else "endpoint" if n.startswith("endpoint")
                else "host_bridge" if d == 1 else "switch")
        dports = sorted((_link_name(b, f"{CXL}/{n}/{x}") or x) for x in _listdir(b, f"{CXL}/{n}")
                        if re.fullmatch(r"dport\d+", x))
        t.ports.append(Port(n, kind, _link_name(b, f"{CXL}/{n}/uport") or "?", par, d, dports))

    ep_of_mem = {p.host: p.name for p in t.ports if p.kind == "endpoint"}
    for n in sorted((n for n in names if re.fullmatch(r"mem\d+", n)), key=_id):
        p = f"{CXL}/{n}"
        serial = _read(b, f"{p}/serial")
        t.memdevs.append(Memdev(
            name=n, endpoint=ep_of_mem.get(n), host=posixpath.basename(posixpath.dirname(real.get(n, ""))),
            ram_size=_int(b, f"{p}/ram/size"), pmem_size=_int(b, f"{p}/pmem/size"),
            serial=int(serial, 0) if serial else None, numa_node=_int(b, f"{p}/numa_node", -1)))

    root_dports = {}
    for p in t.ports:
        if p.kind == "root":
            for x in _listdir(b, f"{CXL}/{p.name}"):
                m = re.fullmatch(r"dport(\d+)", x)
                if m:
                    root_dports[m.group(1)] = _link_name(b, f"{CXL}/{p.name}/{x}") or x
    decoders = [n for n in names if re.fullmatch(r"decoder\d+\.\d+", n)]
    for n in sorted(decoders, key=_id):
        p = f"{CXL}/{n}"
        if _read(b, f"{p}/devtype") != "cxl_decoder_root":
            continue
        targets = [root_dports.get(x.strip(), x.strip()) for x in _read(b, f"{p}/target_list").split(",")
                   if x.strip()]
        qos = _read(b, f"{p}/qos_class")
        t.windows.append(Window(
            name=n, start=_int(b, f"{p}/start"), size=_int(b, f"{p}/size"),
            ways=_int(b, f"{p}/interleave_ways", 1), granularity=_int(b, f"{p}/interleave_granularity"),
            ram=_read(b, f"{p}/cap_ram") == "1", pmem=_read(b, f"{p}/cap_pmem") == "1",
            targets=targets, qos_class=int(qos) if qos.lstrip("-").isdigit() else None))

    ep_decoder_owner = {}
    for n in decoders:
        parent = posixpath.basename(posixpath.dirname(real.get(n, "")))
        if parent.startswith("endpoint"):
            ep_decoder_owner[n] = next((p.host for p in t.ports if p.name == parent), None)
    for n in sorted((n for n in names if re.fullmatch(r"region\d+", n)), key=_id):
        p = f"{CXL}/{n}"
        entries = _listdir(b, p)
        ways = _int(b, f"{p}/interleave_ways")
        members = []
        for i in range(ways):
            dec = _read(b, f"{p}/target{i}")
            if dec:
                members.append(RegionMember(i, dec, ep_decoder_owner.get(dec)))
        mode = _read(b, f"{p}/mode") if "mode" in entries else ""
        if not mode:           # Linux < 6.3 has no mode: a pmem region has a pmem_regionN child
            mode = "pmem" if any(e.startswith("pmem_region") for e in entries) else (
                "ram" if any(e.startswith("dax_region") for e in entries) else "?")
        res = _read(b, f"{p}/resource")
        start = int(res, 16) if res and int(res, 16) != (1 << 64) - 1 else None
        t.regions.append(Region(
            name=n, window=posixpath.basename(posixpath.dirname(real.get(n, ""))), mode=mode, start=start,
            size=_int(b, f"{p}/size"), ways=ways, granularity=_int(b, f"{p}/interleave_granularity"),
            committed=_read(b, f"{p}/commit") == "1", enabled="driver" in entries, members=members))

    for n in sorted(_listdir(b, DAX), key=_id):
        p = f"{DAX}/{n}"
        path = b.realpath(p) if b.exists(p) else ""
        region = next((c for c in path.split("/") if re.fullmatch(r"region\d+", c)), None)
        drv = _link_name(b, f"{p}/driver")
        mode = {"kmem": "system-ram", "device_dax": "devdax"}.get(drv or "", "unbound")
        t.dax.append(DaxDev(n, region, mode, _int(b, f"{p}/size"), _int(b, f"{p}/target_node", -1)))

    cpus = _nodelist(_read(b, f"{NODE}/has_cpu"))
    mem = _nodelist(_read(b, f"{NODE}/has_memory"))
    for nid in sorted(_nodelist(_read(b, f"{NODE}/online"))):
        total = 0
        for line in _read(b, f"{NODE}/node{nid}/meminfo").splitlines():
            if "MemTotal:" in line:
                total = int(line.split()[-2]) * 1024
        t.nodes.append(NumaNode(nid, total, nid in cpus, nid in mem))
    return t
