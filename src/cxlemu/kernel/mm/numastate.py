"""NUMA nodes at run time: which nodes exist, are online, have CPUs or
memory, their distances and their performance attributes
(drivers/base/node.c, drivers/acpi/numa/hmat.c, mm/page_alloc.c node states).

Node states (include/linux/nodemask.h): *possible* = every node SRAT or a
CFMWS created; *online* = nodes with boot memory or CPUs, plus nodes that
hot-added memory (until the last block is removed); *has_memory*
(N_MEMORY) = nodes with present online pages; *has_normal_memory* = with
pages in a kernel zone; *has_cpu* = nodes with CPUs.

Performance (hmat.c ``hmat_update_target_attrs``): for each memory target,
among the initiators (all for access0, CPU nodes for access1) keep those
with the best value of every locality type (latency lowest, bandwidth
highest, 0 meaning "no data"); the node reports the best values and links
the initiators.  A CXL window's node (a fake PXM) instead gets its region's
coordinates when it first gets memory (``cxl_region_perf_attrs_callback``).
"""

from __future__ import annotations

from dataclasses import field
from typing import TYPE_CHECKING

from cxlemu.kernel.base.device import device_add, device_del
from cxlemu.kernel.mm.node import AccessInitiators, AccessTargets, NodeAccess, NodeDevice
from cxlemu.kernel.mm.numa import NumaLayout, default_distance
from cxlemu.kernel.mm.tiers import Perf
from cxlemu.kernel.mm.zones import KERNEL_ZONES, ZoneSet
from cxlemu.util.lazydc import dataclass

if TYPE_CHECKING:
    from cxlemu.kernel.mm.subsys import Mm

ACCESS_COORDINATE_LOCAL = 0
ACCESS_COORDINATE_CPU = 1


@dataclass(eq=False)
class NodeState:
    """A NUMA node's state: its PXM, CPUs and zones."""
    nid: int
    pxm: int
    fake: bool = False
    cpus: list[int] = field(default_factory=list)
    zones: ZoneSet = field(default_factory=ZoneSet)
    online: bool = False
    dev: NodeDevice | None = None
    perf: dict[int, dict[str, int]] = field(default_factory=dict)      # access class -> attrs
    initiators: dict[int, list[int]] = field(default_factory=dict)     # access class -> nodes
    access_devs: dict[int, NodeAccess] = field(default_factory=dict)

    @property
    def has_memory(self) -> bool:
        return any(z.present for z in self.zones.zones)

    @property
    def has_normal_memory(self) -> bool:
        return any(self.zones[z].present for z in KERNEL_ZONES)


class NumaState:
    def __init__(self, mm: "Mm", layout: NumaLayout):
        self.mm = mm
        self.layout = layout
        self.nodes: dict[int, NodeState] = {}
        for nid in layout.possible:
            self.nodes[nid] = NodeState(nid, layout.node_to_pxm[nid], nid in layout.fake_nodes,
                                        sorted(layout.cpus.get(nid, [])))
        self.nr_cpu_ids = max(1, sum(len(c) for c in layout.cpus.values()))
        self.hmat_perf: dict[int, dict[int, Perf]] = {}      # nid -> access -> Perf (from HMAT)
        self.hmat_initiators: dict[int, dict[int, list[int]]] = {}

    # ---- queries ------------------------------------------------------------------------
    def possible(self) -> list[int]:
        return sorted(self.nodes)

    def online_nodes(self) -> list[int]:
        return sorted(n for n, s in self.nodes.items() if s.online)

    def state_nodes(self, kind: str) -> list[int]:
        if kind == "memory":
            return sorted(n for n, s in self.nodes.items() if s.has_memory)
        if kind == "normal":
            return sorted(n for n, s in self.nodes.items() if s.has_normal_memory)
        if kind == "cpu":
            return sorted(n for n, s in self.nodes.items() if s.cpus)
        raise ValueError(kind)

    def cpus(self, nid: int) -> list[int]:
        s = self.nodes.get(nid)
        return s.cpus if s else []

    def distance(self, a: int, b: int) -> int:
        return default_distance(a, b)

    def node_device(self, nid: int) -> NodeDevice | None:
        s = self.nodes.get(nid)
        return s.dev if s else None

    def perf(self, nid: int, access: int = ACCESS_COORDINATE_CPU) -> Perf | None:
        s = self.nodes.get(nid)
        if s is None or access not in s.perf:
            return None
        return Perf(**s.perf[access])

    # ---- node devices -------------------------------------------------------------------
    def set_online(self, nid: int) -> bool:
        """__try_online_node(): True if the node was not online."""
        s = self.nodes[nid]
        if s.online:
            return False
        s.online = True
        return True

    def register_node(self, nid: int) -> None:
        """register_one_node()."""
        s = self.nodes[nid]
        if s.dev is not None or self.mm.node_root is None:
            return
        s.dev = NodeDevice(self.mm, nid)
        device_add(s.dev)
        from cxlemu.kernel.mm.node import NodeHstate, NodeHugepages
        hp = NodeHugepages(s.dev)
        device_add(hp)
        for size_kb in (1048576, 2048):
            device_add(NodeHstate(hp, size_kb))
        for access in sorted(s.perf):
            self._add_access(s, access)
        for t, other in self.nodes.items():         # initiator side links of targets
            for access, inits in other.initiators.items():
                if nid in inits and t != nid:
                    self._add_access(s, access)

    def unregister_node(self, nid: int) -> None:
        """try_offline_node(): node_set_offline() + unregister_one_node()."""
        s = self.nodes[nid]
        s.online = False
        if s.dev is not None:
            device_del(s.dev)
            s.dev = None
        s.access_devs.clear()
        # what a CXL region wrote goes away with the node; HMAT's stays
        s.perf = {a: p.as_dict() for a, p in self.hmat_perf.get(nid, {}).items()}
        s.initiators = {a: list(v) for a, v in self.hmat_initiators.get(nid, {}).items()}

    def _add_access(self, s: NodeState, access: int) -> None:
        if s.dev is None or access in s.access_devs:
            return
        acc = NodeAccess(s.dev, access)
        device_add(acc)
        device_add(AccessInitiators(acc, self.mm, s.nid))
        device_add(AccessTargets(acc, self.mm, s.nid))
        s.access_devs[access] = acc

    def set_perf_attrs(self, nid: int, access: int, perf: Perf, initiators: list[int] | None = None) -> None:
        """node_set_perf_attrs() (+ register_memory_node_under_compute_node for initiators)."""
        s = self.nodes[nid]
        s.perf[access] = perf.as_dict()
        if initiators is not None:
            s.initiators[access] = sorted(initiators)
            for i in initiators:
                init = self.nodes.get(i)
                if init is not None:
                    self._add_access(init, access)
        self._add_access(s, access)

    # ---- HMAT ----------------------------------------------------------------------------------
    def parse_hmat(self, hmat_subtables) -> None:
        """hmat.c: per memory target, the best initiators and values per access class."""
        from cxlemu.hw.acpi.hmat import (HMAT_READ_BANDWIDTH, HMAT_READ_LATENCY, HMAT_WRITE_BANDWIDTH,
                                         HMAT_WRITE_LATENCY, LocalityInfo, hmat_value)
        locs = [s for s in hmat_subtables if isinstance(s, LocalityInfo)]
        if not locs:
            return
        init_pxms = sorted({i for loc in locs for i in loc.initiators})
        target_pxms = sorted({t for loc in locs for t in loc.targets})
        pxm_to_node = self.layout.pxm_to_node
        kinds = ((HMAT_READ_LATENCY, "read_latency", True), (HMAT_WRITE_LATENCY, "write_latency", True),
                 (HMAT_READ_BANDWIDTH, "read_bandwidth", False), (HMAT_WRITE_BANDWIDTH, "write_bandwidth", False))
        for tp in target_pxms:
            tn = pxm_to_node.get(tp)
            if tn is None or tn not in self.nodes:
                continue
            for access in (ACCESS_COORDINATE_LOCAL, ACCESS_COORDINATE_CPU):
                cands = [i for i in init_pxms if i in pxm_to_node]
                if access == ACCESS_COORDINATE_CPU:
                    cands = [i for i in cands if self.nodes.get(pxm_to_node[i]) and
                             self.nodes[pxm_to_node[i]].cpus]
                values: dict[str, int] = {}
                keep = set(cands)
                for dtype, name, lower_better in kinds:
                    vals = {i: hmat_value(locs, i, tp, dtype) or 0 for i in cands}
                    vals = {i: v for i, v in vals.items() if v}
                    if not vals:
                        continue
                    best = min(vals.values()) if lower_better else max(vals.values())
                    values[name] = best
                    keep &= {i for i, v in vals.items() if v == best}
                if not values:
                    continue
                perf = Perf(**{k: values.get(k, 0) for k in ("read_latency", "write_latency",
                                                             "read_bandwidth", "write_bandwidth")})
                self.hmat_perf.setdefault(tn, {})[access] = perf
                self.nodes[tn].perf[access] = perf.as_dict()
                inits = sorted(pxm_to_node[i] for i in keep)
                self.hmat_initiators.setdefault(tn, {})[access] = inits
                self.nodes[tn].initiators[access] = list(inits)
