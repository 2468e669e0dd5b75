"""NUMA discovery from SRAT and CEDT (drivers/acpi/numa/srat.c, mm/numa_memblks.c).

Pure functions over decoded ACPI structures:

* ``acpi_map_pxm_to_node()``: each proximity domain gets the first unused
  node id, in the order SRAT mentions it (CPU affinity entries are parsed
  before memory affinity entries, as ``acpi_numa_init()`` does).
* ``acpi_parse_cfmws()``: after SRAT, every CFMWS is checked with
  ``numa_fill_memblks()``: if SRAT described any part of the window the
  overlapping memblks are stretched to cover all of it (and gaps between
  them filled); otherwise a node is created from the next *fake* PXM
  (max SRAT PXM + 1, incremented only when a node is created) with one
  memblk covering the window.  Out of node ids: "ACPI NUMA: Too many
  proximity domains while processing CFMWS."
* ``phys_to_target_node()``: the node whose memblk contains an address.
"""

from __future__ import annotations

from dataclasses import field
from typing import Iterable

from cxlemu.util.lazydc import dataclass

NUMA_NO_NODE = -1
MAX_NUMNODES = 1024          # CONFIG_NODES_SHIFT=10 (distribution kernels)
LOCAL_DISTANCE = 10
REMOTE_DISTANCE = 20


@dataclass
class Memblk:
    """A ``struct numa_memblk`` (arch/x86/mm/numa.c): a physical range of a node."""
    start: int
    end: int          # exclusive, as numa_memblk
    nid: int
    hotplug: bool = False


def _overlaps(a_start: int, a_end: int, b_start: int, b_end: int) -> bool:
    return a_start < b_end and b_start < a_end


def numa_fill_memblks(memblks: list[Memblk], start: int, end: int) -> bool:
    """mm/numa_memblks.c numa_fill_memblks(): stretch the memblks overlapping
    [start, end) over the whole range; False (NUMA_NO_MEMBLK) if none overlap."""
    hits = sorted((b for b in memblks if _overlaps(start, end, b.start, b.end)), key=lambda b: b.start)
    if not hits:
        return False
    hits[0].start = min(hits[0].start, start)
    hits[-1].end = max(hits[-1].end, end)
    prev_end = hits[0].end
    for cur in hits[1:]:
        if prev_end >= cur.start:
            if prev_end < cur.end:
                prev_end = cur.end
        else:
            cur.start = prev_end
            prev_end = cur.end
    return True


def memblk_to_nid(memblks: Iterable[Memblk], addr: int) -> int:
    """meminfo_to_nid(): the node of the memblk containing ``addr``."""
    for b in memblks:
        if b.start <= addr < b.end:
            return b.nid
    return NUMA_NO_NODE


@dataclass
class NumaLayout:
    """What SRAT/CEDT parsing leaves: PXM<->node maps, memblks, CPUs per node."""
    pxm_to_node: dict[int, int] = field(default_factory=dict)
    node_to_pxm: dict[int, int] = field(default_factory=dict)
    memblks: list[Memblk] = field(default_factory=list)
    cpus: dict[int, list[int]] = field(default_factory=dict)     # node -> cpu ids
    fake_nodes: set[int] = field(default_factory=set)            # nodes made for SRAT-less windows
    window_nodes: dict[int, int] = field(default_factory=dict)   # window index -> node
    last_real_pxm: int = -1
    log: list[str] = field(default_factory=list)

    def map_pxm(self, pxm: int, max_nodes: int = MAX_NUMNODES) -> int:
        """acpi_map_pxm_to_node()."""
        if pxm in self.pxm_to_node:
            return self.pxm_to_node[pxm]
        used = set(self.node_to_pxm)
        nid = next((n for n in range(max_nodes) if n not in used), NUMA_NO_NODE)
        if nid == NUMA_NO_NODE:
            return nid
        self.pxm_to_node[pxm] = nid
        self.node_to_pxm[nid] = pxm
        return nid

    @property
    def possible(self) -> list[int]:
        return sorted(self.node_to_pxm)

    def phys_to_target_node(self, addr: int) -> int:
        return memblk_to_nid(self.memblks, addr)

    def backed_by_real_pxm(self, nid: int) -> bool:
        """acpi_node_backed_by_real_pxm(): node_to_pxm(nid) <= last_real_pxm."""
        return self.node_to_pxm.get(nid, 1 << 31) <= self.last_real_pxm


def parse_numa(cpu_affinity: Iterable[tuple[int, int]], mem_affinity: Iterable[tuple[int, int, int, bool]],
               windows: Iterable[tuple[int, int]], max_nodes: int = MAX_NUMNODES) -> NumaLayout:
    """acpi_numa_init(): ``cpu_affinity`` = (pxm, cpu) in table order,
    ``mem_affinity`` = (pxm, base, length, hotplug) of enabled entries,
    ``windows`` = (base, size) of every CFMWS in CEDT order."""
    lay = NumaLayout()
    for pxm, cpu in cpu_affinity:
        nid = lay.map_pxm(pxm, max_nodes)
        if nid != NUMA_NO_NODE:
            lay.cpus.setdefault(nid, []).append(cpu)
    for pxm, base, length, hotplug in mem_affinity:
        nid = lay.map_pxm(pxm, max_nodes)
        if nid == NUMA_NO_NODE or not length:
            continue
        lay.memblks.append(Memblk(base, base + length, nid, hotplug))
    lay.last_real_pxm = max(lay.pxm_to_node, default=-1)
    fake_pxm = lay.last_real_pxm + 1
    for idx, (base, size) in enumerate(windows):
        start, end = base, base + size
        if numa_fill_memblks(lay.memblks, start, end):
            lay.window_nodes[idx] = memblk_to_nid(lay.memblks, start)
            continue
        nid = lay.map_pxm(fake_pxm, max_nodes)
        if nid == NUMA_NO_NODE:
            lay.log.append("ACPI NUMA: Too many proximity domains while processing CFMWS.")
            break
        lay.memblks.append(Memblk(start, end, nid, True))
        lay.fake_nodes.add(nid)
        lay.window_nodes[idx] = nid
        fake_pxm += 1
    return lay


def default_distance(a: int, b: int) -> int:
    """__node_distance() without a SLIT: 10 local, 20 remote."""
    return LOCAL_DISTANCE if a == b else REMOTE_DISTANCE


def nodelist(nodes: Iterable[int]) -> str:
    """``%*pbl``: "0-2,5" (empty string for no node)."""
    ns = sorted(set(nodes))
    out: list[str] = []
    i = 0
    while i < len(ns):
        j = i
        while j + 1 < len(ns) and ns[j + 1] == ns[j] + 1:
            j += 1
        out.append(str(ns[i]) if i == j else f"{ns[i]}-{ns[j]}")
        i = j + 1
    return ",".join(out)


def bitmap_hex(bits: Iterable[int], nbits: int) -> str:
    """``%*pb``: 32-bit hex words, most significant first, comma separated."""
    value = 0
    for b in bits:
        value |= 1 << b
    nwords = max(1, (nbits + 31) // 32)
    words = [(value >> (32 * i)) & 0xFFFFFFFF for i in range(nwords)]
    top_bits = nbits - 32 * (nwords - 1)
    chunks = []
    for i in reversed(range(nwords)):
        width = (top_bits + 3) // 4 if i == nwords - 1 else 8
        chunks.append(f"{words[i]:0{max(width, 1)}x}")
    return ",".join(chunks)
