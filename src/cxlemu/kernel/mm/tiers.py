"""Memory tiers and demotion (mm/memory-tiers.c, include/linux/memory-tiers.h).

* A node's *abstract distance* (adist) comes from the ``mt_calc_adistance``
  notifier chain (HMAT for nodes it describes, a CXL region for its node),
  else the caller's default: 576 (``MEMTIER_ADISTANCE_DRAM`` = 4*128+64) for
  boot memory, 2880 (``MEMTIER_DEFAULT_DAX_ADISTANCE`` = 5*576) for kmem.
* ``mt_perf_to_adistance``: ``576 * (rl+wl) / (dram_rl+dram_wl) *
  (dram_rbw+dram_wbw) / (rbw+wbw)`` in C integer arithmetic, left to right;
  -EIO once two DRAM nodes disagree by more than 10 %, -EINVAL for zero
  sums, -ENOENT before a reference DRAM node is known.
* tier id = ``round_down(adist, 128) >> 7`` -> ``memory_tier<id>`` under
  /sys/devices/virtual/memory_tiering with ``nodelist``; a tier exists while
  it holds a node with online memory.
* ``establish_demotion_targets``: a node's preferred targets are the nodes
  of the *next* tier at the smallest node distance (all ties kept); each
  tier's ``lower_tier_mask`` (the fallback) is every node in slower tiers;
  the top tier is the slowest tier holding a CPU node, and everything
  faster.  The kernel only prints them ("Demotion targets for Node N: ...").
"""

from __future__ import annotations

import errno
from dataclasses import field
from typing import TYPE_CHECKING, Callable

from cxlemu.kernel.base.device import AttrGroup, Device, RO
from cxlemu.kernel.mm.numa import nodelist
from cxlemu.util.lazydc import dataclass

if TYPE_CHECKING:
    from cxlemu.kernel.mm.subsys import Mm

MEMTIER_CHUNK_BITS = 7
MEMTIER_CHUNK_SIZE = 1 << MEMTIER_CHUNK_BITS
MEMTIER_ADISTANCE_DRAM = 4 * MEMTIER_CHUNK_SIZE + MEMTIER_CHUNK_SIZE // 2     # 576
MEMTIER_DEFAULT_DAX_ADISTANCE = MEMTIER_ADISTANCE_DRAM * 5                    # 2880


@dataclass(frozen=True)
class Perf:
    """struct access_coordinate (ns, MB/s)."""
    read_latency: int = 0
    write_latency: int = 0
    read_bandwidth: int = 0
    write_bandwidth: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"read_bandwidth": self.read_bandwidth, "write_bandwidth": self.write_bandwidth,
                "read_latency": self.read_latency, "write_latency": self.write_latency}


class AdistError(Exception):
    def __init__(self, err: int):
        super().__init__(err)
        self.errno = err


def perf_to_adistance(perf: Perf, dram: Perf | None, dram_error: bool = False) -> int:
    """mt_perf_to_adistance()."""
    if dram_error:
        raise AdistError(errno.EIO)
    if perf.read_latency + perf.write_latency == 0 or perf.read_bandwidth + perf.write_bandwidth == 0:
        raise AdistError(errno.EINVAL)
    if dram is None:
        raise AdistError(errno.ENOENT)
    adist = MEMTIER_ADISTANCE_DRAM * (perf.read_latency + perf.write_latency)
    adist //= dram.read_latency + dram.write_latency
    adist *= dram.read_bandwidth + dram.write_bandwidth
    adist //= perf.read_bandwidth + perf.write_bandwidth
    return adist


def perf_mismatch(a: Perf, ref: Perf) -> bool:
    """mt_set_default_dram_perf(): any value more than 10 % off the reference."""
    return any(abs(x - y) * 10 > y for x, y in ((a.read_latency, ref.read_latency),
                                               (a.write_latency, ref.write_latency),
                                               (a.read_bandwidth, ref.read_bandwidth),
                                               (a.write_bandwidth, ref.write_bandwidth)))


def tier_start(adist: int) -> int:
    return adist // MEMTIER_CHUNK_SIZE * MEMTIER_CHUNK_SIZE


def tier_id(adist: int) -> int:
    return tier_start(adist) >> MEMTIER_CHUNK_BITS


@dataclass
class Demotion:
    """The demotion targets of every node (mm/memory-tiers.c ``node_demotion``)."""
    preferred: dict[int, list[int]] = field(default_factory=dict)   # node -> preferred targets
    fallback: dict[int, list[int]] = field(default_factory=dict)    # node -> lower_tier_mask of its tier
    top_tier_adistance: int = -1


def establish_demotion_targets(tiers: dict[int, list[int]], memory_nodes: list[int], cpu_nodes: set[int],
                               distance: Callable[[int, int], int]) -> Demotion:
    """``tiers``: tier start adist -> nodes (sorted by start = tier order)."""
    order = sorted(tiers)
    node_tier = {n: t for t in order for n in tiers[t]}
    d = Demotion()
    lower: dict[int, list[int]] = {}
    remaining = set(memory_nodes)
    for t in order:
        remaining -= set(tiers[t])
        lower[t] = sorted(remaining)
    for t in reversed(order):
        if set(tiers[t]) & cpu_nodes:
            d.top_tier_adistance = t + MEMTIER_CHUNK_SIZE - 1
            break
    for n in memory_nodes:
        t = node_tier.get(n)
        if t is None:
            continue
        d.fallback[n] = lower[t]
        i = order.index(t)
        if i == len(order) - 1:
            d.preferred[n] = []
            continue
        cands = [m for m in tiers[order[i + 1]] if m in memory_nodes]
        if not cands:
            d.preferred[n] = []
            continue
        best = min(distance(n, m) for m in cands)
        d.preferred[n] = sorted(m for m in cands if distance(n, m) == best)
    return d


class MemoryTierRoot(Device):
    """/sys/devices/virtual/memory_tiering."""

    def __init__(self, parent: Device):
        super().__init__("memory_tiering", parent, None)


class MemoryTierDevice(Device):
    ATTR_GROUPS = (AttrGroup(None, (RO("nodelist"),)),)

    def __init__(self, tiers: "MemoryTiers", start: int):
        super().__init__(f"memory_tier{start >> MEMTIER_CHUNK_BITS}", tiers.root, tiers.bus)
        self.tiers = tiers
        self.adistance_start = start

    def nodelist_show(self) -> str:
        return f"{nodelist(self.tiers.members.get(self.adistance_start, []))}\n"


class MemoryTiers:
    """State of mm/memory-tiers.c for one kernel."""

    def __init__(self, mm: "Mm"):
        from cxlemu.kernel.base.device import Bus
        self.mm = mm
        self.bus = Bus("memory_tiering")
        mm.kernel.buses["memory_tiering"] = self.bus
        self.root: MemoryTierRoot | None = None
        self.node_memtype: dict[int, int] = {}       # node_memory_types[node].memtype (adist)
        self.node_adist: dict[int, int] = {}         # nodes placed in a tier -> adist
        self.members: dict[int, list[int]] = {}      # tier start -> nodes
        self.devices: dict[int, MemoryTierDevice] = {}
        self.dram_perf: Perf | None = None
        self.dram_ref_nid = -1
        self.dram_perf_error = False
        self.demotion_enabled = False
        self.demotion = Demotion()

    # ---- reference DRAM performance (mt_set_default_dram_perf) -----------------------
    def set_default_dram_perf(self, nid: int, perf: Perf, source: str) -> None:
        if self.dram_perf_error:
            return
        if self.dram_perf is None:
            self.dram_perf, self.dram_ref_nid = perf, nid
            return
        if perf_mismatch(perf, self.dram_perf):
            self.mm.kernel.log(f"memory-tiers: the performance of DRAM node {nid} mismatches that of "
                               f"the reference DRAM node {self.dram_ref_nid}.")
            self.dram_perf_error = True

    def perf_to_adistance(self, perf: Perf) -> int:
        return perf_to_adistance(perf, self.dram_perf, self.dram_perf_error)

    def calc_adistance(self, nid: int, default: int) -> int:
        """mt_calc_adistance(): the first notifier that answers, else ``default``."""
        for source in self.mm.adistance_sources(nid):
            try:
                return self.perf_to_adistance(source)
            except AdistError:
                continue
        return default

    # ---- node <-> tier ---------------------------------------------------------------------
    def init_node_memory_type(self, nid: int, adist: int) -> None:
        """kmem: the node's memory type, unless it already has one."""
        self.node_memtype.setdefault(nid, adist)

    def clear_node_memory_type(self, nid: int) -> None:
        if nid not in self.node_adist:
            self.node_memtype.pop(nid, None)

    def set_node_memory_tier(self, nid: int) -> None:
        adist = self.node_memtype.get(nid)
        if adist is None:
            adist = self.calc_adistance(nid, MEMTIER_ADISTANCE_DRAM)
            self.node_memtype[nid] = adist
        self.node_adist[nid] = adist
        start = tier_start(adist)
        members = self.members.setdefault(start, [])
        if nid not in members:
            members.append(nid)
            members.sort()
        if start not in self.devices:
            self._add_tier_device(start)

    def clear_node_memory_tier(self, nid: int) -> bool:
        adist = self.node_adist.pop(nid, None)
        if adist is None:
            return False
        start = tier_start(adist)
        members = self.members.get(start, [])
        if nid in members:
            members.remove(nid)
        if not members:
            self.members.pop(start, None)
            dev = self.devices.pop(start, None)
            if dev is not None:
                from cxlemu.kernel.base.device import device_del
                device_del(dev)
        return True

    def _add_tier_device(self, start: int) -> None:
        if self.root is None:
            return
        from cxlemu.kernel.base.device import device_add
        dev = MemoryTierDevice(self, start)
        self.devices[start] = dev
        device_add(dev)

    def register_sysfs(self, virtual: Device) -> None:
        from cxlemu.kernel.base.device import device_add
        if self.root is not None:
            return
        self.root = MemoryTierRoot(virtual)
        device_add(self.root)
        for start in sorted(self.members):
            if start not in self.devices:
                self._add_tier_device(start)

    # ---- demotion ----------------------------------------------------------------------------
    def establish_demotion_targets(self) -> None:
        numa = self.mm.numa
        mem_nodes = [n for n in numa.state_nodes("memory") if n in self.node_adist]
        self.demotion = establish_demotion_targets(
            {t: list(ns) for t, ns in self.members.items() if ns}, mem_nodes,
            set(numa.state_nodes("cpu")), numa.distance)
        for n in mem_nodes:
            pref = self.demotion.preferred.get(n, [])
            if not pref:
                self.mm.kernel.log(f"Demotion targets for Node {n}: null")
            else:
                self.mm.kernel.log(f"Demotion targets for Node {n}: preferred: {nodelist(pref)}, "
                                   f"fallback: {nodelist(self.demotion.fallback.get(n, []))}")

    def tier_of(self, nid: int) -> int | None:
        adist = self.node_adist.get(nid)
        return None if adist is None else tier_id(adist)

    def node_is_toptier(self, nid: int) -> bool:
        adist = self.node_adist.get(nid)
        if adist is None or self.demotion.top_tier_adistance < 0:
            return True
        return adist <= self.demotion.top_tier_adistance
