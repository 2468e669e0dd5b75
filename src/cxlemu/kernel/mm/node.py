"""/sys/devices/system/node (drivers/base/node.c).

* the root: ``possible``, ``online``, ``has_normal_memory``, ``has_memory``,
  ``has_cpu``, ``has_generic_initiator`` (``%*pbl`` node lists);
* ``nodeN``: ``cpumap`` (``%*pb``), ``cpulist``, ``meminfo``, ``numastat``,
  ``vmstat``, ``distance``, ``memoryM`` links to its memory blocks, and the
  access classes ``accessK/initiators/{read,write}_{latency,bandwidth}``
  (HMAT, or a CXL region's coordinates) with ``initiators/nodeI`` and
  ``targets/nodeT`` links (node_set_perf_attrs, register_memory_node_under_
  compute_node).

A node device exists while the node is online: at boot for nodes with
memory or CPUs, and for a CXL window's node from the first hot-add to the
last hot-remove (mm/memory_hotplug.c add_memory_resource, try_offline_node).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cxlemu.kernel.base.device import RW, AttrGroup, Device, RO
from cxlemu.kernel.mm.numa import bitmap_hex, nodelist

if TYPE_CHECKING:
    from cxlemu.kernel.mm.subsys import Mm

PERF_ATTRS = ("read_bandwidth", "write_bandwidth", "read_latency", "write_latency")


class NodeRoot(Device):
    ATTR_GROUPS = (AttrGroup(None, (RO("possible"), RO("online"), RO("has_normal_memory"), RO("has_memory"),
                                    RO("has_cpu"), RO("has_generic_initiator"))),)

    def __init__(self, mm: "Mm", parent: Device):
        super().__init__("node", parent, None)
        self.mm = mm

    def _show(self, nodes) -> str:
        return f"{nodelist(nodes)}\n"

    def possible_show(self) -> str:
        return self._show(self.mm.numa.possible())

    def online_show(self) -> str:
        return self._show(self.mm.numa.online_nodes())

    def has_normal_memory_show(self) -> str:
        return self._show(self.mm.numa.state_nodes("normal"))

    def has_memory_show(self) -> str:
        return self._show(self.mm.numa.state_nodes("memory"))

    def has_cpu_show(self) -> str:
        return self._show(self.mm.numa.state_nodes("cpu"))

    def has_generic_initiator_show(self) -> str:
        return "\n"


class NodeDevice(Device):
    ATTR_GROUPS = (AttrGroup(None, (RO("cpumap"), RO("cpulist"), RO("meminfo"), RO("numastat"),
                                    RO("distance"), RO("vmstat"))),
                   # mm/memory-failure.c per-node statistics (6.6+)
                   AttrGroup("memory_failure", tuple(RO(n, show=f"mf_{n}_show") for n in
                                                     ("total", "ignored", "failed", "delayed", "recovered")),
                             visible="mf_visible"),)

    def mf_visible(self, _g) -> bool:
        return self.mm.kernel.has("node_memory_failure_stats")

    def _mf(self, what: str) -> str:
        return f"{self.mm.failure.node_stat_files(self.nid)[what]}\n"

    def mf_total_show(self) -> str:
        return self._mf("total")

    def mf_ignored_show(self) -> str:
        return self._mf("ignored")

    def mf_failed_show(self) -> str:
        return self._mf("failed")

    def mf_delayed_show(self) -> str:
        return self._mf("delayed")

    def mf_recovered_show(self) -> str:
        return self._mf("recovered")

    def __init__(self, mm: "Mm", nid: int):
        super().__init__(f"node{nid}", mm.node_root, mm.node_bus)
        self.mm = mm
        self.nid = nid

    def cpumap_show(self) -> str:
        return f"{bitmap_hex(self.mm.numa.cpus(self.nid), self.mm.numa.nr_cpu_ids)}\n"

    def cpulist_show(self) -> str:
        return f"{nodelist(self.mm.numa.cpus(self.nid))}\n"

    def meminfo_show(self) -> str:
        from cxlemu.kernel.mm.meminfo import node_meminfo
        return node_meminfo(self.mm, self.nid)

    def numastat_show(self) -> str:
        from cxlemu.kernel.mm.meminfo import node_numastat
        return node_numastat(self.mm, self.nid)

    def vmstat_show(self) -> str:
        from cxlemu.kernel.mm.meminfo import node_vmstat
        return node_vmstat(self.mm, self.nid)

    def distance_show(self) -> str:
        numa = self.mm.numa
        # node_read_distance(): "%s%d" with a space before every node but node 0
        return "".join(f"{' ' if n else ''}{numa.distance(self.nid, n)}" for n in numa.online_nodes()) + "\n"

    # memoryN links: listed by sysfs_links, found in O(1) by sysfs_lookup_link
    def sysfs_links(self) -> dict:
        links: dict = dict(self.links)
        for blk in self.mm.blocks_of_node(self.nid):
            links[blk.name] = blk
        return links

    def sysfs_lookup_link(self, name: str):
        if name.startswith("memory") and name[6:].isdigit():
            blk = self.mm.blocks.get(int(name[6:]))
            if blk is not None and blk.nid == self.nid:
                return blk
        return None


class NodeAccess(Device):
    """nodeN/accessK (node_access_nodes)."""

    def __init__(self, node: NodeDevice, access: int):
        super().__init__(f"access{access}", node, None)
        self.access = access


class AccessInitiators(Device):
    """nodeN/accessK/initiators: performance attributes and initiator links."""

    ATTR_GROUPS = (AttrGroup(None, tuple(RO(a, show=f"{a}_show", visible="perf_visible") for a in PERF_ATTRS)),)

    def __init__(self, parent: NodeAccess, mm: "Mm", nid: int):
        super().__init__("initiators", parent, None)
        self.mm, self.nid, self.access = mm, nid, parent.access

    def _perf(self) -> dict[str, int]:
        return self.mm.numa.nodes[self.nid].perf.get(self.access, {})

    def perf_visible(self, name: str) -> bool:
        return name in self._perf()

    def sysfs_links(self) -> dict:
        out: dict = {}
        for i in self.mm.numa.nodes[self.nid].initiators.get(self.access, ()):
            dev = self.mm.numa.node_device(i)
            if dev is not None:
                out[f"node{i}"] = dev
        return out


def _perf_show(attr: str):
    def show(self: AccessInitiators) -> str:
        return f"{self._perf().get(attr, 0)}\n"
    return show


for _a in PERF_ATTRS:
    setattr(AccessInitiators, f"{_a}_show", _perf_show(_a))


class AccessTargets(Device):
    """nodeI/accessK/targets: links to the memory nodes this initiator is best for."""

    def __init__(self, parent: NodeAccess, mm: "Mm", nid: int):
        super().__init__("targets", parent, None)
        self.mm, self.nid, self.access = mm, nid, parent.access

    def sysfs_links(self) -> dict:
        out: dict = {}
        for t, node in self.mm.numa.nodes.items():
            if self.nid in node.initiators.get(self.access, ()):
                dev = self.mm.numa.node_device(t)
                if dev is not None:
                    out[f"node{t}"] = dev
        return out


class NodeHugepages(Device):
    """nodeN/hugepages (drivers/base/node.c hugetlb_register_node): per huge
    page size, nr/free/surplus counts; cxlemu reserves no huge pages, so all 0."""

    def __init__(self, node: NodeDevice):
        super().__init__("hugepages", node, None)


class NodeHstate(Device):
    ATTR_GROUPS = (AttrGroup(None, (RW("nr_hugepages"), RO("free_hugepages"), RO("surplus_hugepages"))),)

    def __init__(self, parent: NodeHugepages, size_kb: int):
        super().__init__(f"hugepages-{size_kb}kB", parent, None)

    def nr_hugepages_show(self) -> str:
        return "0\n"

    def nr_hugepages_store(self, buf: bytes) -> None:
        import errno
        from cxlemu.kernel.base.device import KernelError, kstrtoull
        if kstrtoull(buf.strip(b"\n\0") or b"x", 10) != 0:
            raise KernelError(errno.ENOMEM, "cxlemu does not model huge page pools")

    def free_hugepages_show(self) -> str:
        return "0\n"

    def surplus_hugepages_show(self) -> str:
        return "0\n"
