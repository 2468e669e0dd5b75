"""Memory allocators between a workload and its process: each ``mmap`` a
workload makes is one allocation request (a large ``malloc``), and the
allocator decides where its pages go by the system calls a real library
makes — ``mbind`` of the new mapping, or ``mmap`` flags (SMDK's
``MAP_EXMEM``/``MAP_NORMAL``) — or refuses it (``ENOMEM``).

Allocators learn the machine the way the real libraries do, from sysfs
(:class:`NodeInfo`: memory nodes, CPUs, distances, sizes, free memory,
HMAT access coordinates, device-DAX devices in system-ram mode), through
the backend they are given; they never look at kernel objects.
"""

from __future__ import annotations

from dataclasses import field

from cxlemu.util.lazydc import dataclass

NODE = "/sys/devices/system/node"


def parse_nodelist(s: str) -> list[int]:
    out: list[int] = []
    for part in s.replace("\n", "").split(","):
        part = part.strip()
        if not part:
            continue
        if "-" in part:
            a, b = part.split("-", 1)
            out += list(range(int(a), int(b) + 1))
        else:
            out.append(int(part))
    return sorted(set(out))


@dataclass
class NodeInfo:
    """What sysfs says about the machine's NUMA nodes."""
    memory: list[int] = field(default_factory=list)
    cpu: list[int] = field(default_factory=list)
    distance: dict[int, list[int]] = field(default_factory=dict)
    total: dict[int, int] = field(default_factory=dict)         # bytes
    free: dict[int, int] = field(default_factory=dict)          # bytes
    read_latency: dict[int, int] = field(default_factory=dict)  # ns (access0)
    read_bandwidth: dict[int, int] = field(default_factory=dict)  # MB/s (access0)
    initiators: dict[int, list[int]] = field(default_factory=dict)
    kmem: list[int] = field(default_factory=list)                # target nodes of dax devices bound to kmem
    zones: dict[int, list[str]] = field(default_factory=dict)    # /proc/buddyinfo zone names per node

    @classmethod
    def read(cls, backend) -> "NodeInfo":
        ni = cls()

        def rd(p: str) -> str:
            try:
                return backend.read(p)
            except OSError:
                return ""
        ni.memory = parse_nodelist(rd(f"{NODE}/has_memory"))
        ni.cpu = parse_nodelist(rd(f"{NODE}/has_cpu"))
        for n in ni.memory:
            d = rd(f"{NODE}/node{n}/distance").split()
            ni.distance[n] = [int(x) for x in d]
            mi = rd(f"{NODE}/node{n}/meminfo")
            for line in mi.splitlines():
                parts = line.split()
                if len(parts) >= 4 and parts[2] == "MemTotal:":
                    ni.total[n] = int(parts[3]) * 1024
                elif len(parts) >= 4 and parts[2] == "MemFree:":
                    ni.free[n] = int(parts[3]) * 1024
            lat = rd(f"{NODE}/node{n}/access0/initiators/read_latency").strip()
            bw = rd(f"{NODE}/node{n}/access0/initiators/read_bandwidth").strip()
            if lat.isdigit():
                ni.read_latency[n] = int(lat)
            if bw.isdigit():
                ni.read_bandwidth[n] = int(bw)
            try:
                ents = backend.listdir(f"{NODE}/node{n}/access0/initiators")
                ni.initiators[n] = sorted(int(e[4:]) for e in ents if e.startswith("node") and e[4:].isdigit())
            except OSError:
                ni.initiators[n] = []
        try:
            for dev in backend.listdir("/sys/bus/dax/devices"):
                p = f"/sys/bus/dax/devices/{dev}"
                try:
                    drv = backend.readlink(f"{p}/driver").rsplit("/", 1)[-1]
                except OSError:
                    continue
                tn = rd(f"{p}/target_node").strip()
                if drv == "kmem" and tn.lstrip("-").isdigit() and int(tn) >= 0:
                    ni.kmem.append(int(tn))
        except OSError:
            pass
        ni.kmem = sorted(set(ni.kmem) & set(ni.memory))
        for line in rd("/proc/buddyinfo").splitlines():
            parts = line.replace(",", " ").split()
            if len(parts) >= 4 and parts[0] == "Node" and parts[2] == "zone":
                ni.zones.setdefault(int(parts[1]), []).append(parts[3])
        return ni

    def dist(self, a: int, b: int) -> int:
        row = self.distance.get(a)
        if row and b < len(row):
            return row[b]
        return 10 if a == b else 20


class Allocator:
    """The interface: ``place`` an allocation (return the system call to make
    on the new mapping) and keep accounts."""
    name = "allocator"

    def place(self, proc, length: int, name: str) -> "Placement":  # pragma: no cover
        """``proc``: the process asking (sim/allocproc.py AllocatorProcess)."""
        raise NotImplementedError

    def released(self, placement: "Placement", length: int) -> None:
        """The mapping was unmapped."""

    def stats(self) -> dict:
        return {}


@dataclass
class Placement:
    mode: int | None = None          # mbind mode (None: leave the task's policy)
    nodes: tuple[int, ...] = ()
    map_flags: int = 0               # extra mmap flags (MAP_EXMEM / MAP_NORMAL)
    pool: str = ""                   # accounting label
