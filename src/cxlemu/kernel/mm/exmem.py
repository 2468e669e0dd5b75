"""SMDK's kernel additions for CXL memory (OpenMPDK/SMDK, ``CONFIG_EXMEM``):
``ZONE_EXMEM``, ``GFP_EXMEM`` and the ``MAP_EXMEM`` / ``MAP_NORMAL`` mmap
flags, as the alternative to upstream's CPU-less NUMA nodes that the
LSF/MM 2023 discussion (seed 002) weighed.

* ``boot.cxl_zone = "node"`` (upstream): every CFMWS window without SRAT
  memory becomes a CPU-less node; CXL memory onlined by kmem is that node's
  memory (ZONE_MOVABLE with ``online_movable``).
* ``boot.cxl_zone = "exmem"`` (SMDK): no node is made for the windows; their
  memory belongs to the first node with CPUs and is onlined into
  ``ZONE_EXMEM`` of that node.  cxlemu keeps ZONE_EXMEM in the slot of
  ZONE_MOVABLE (the fourth zone): under this boot option there is no
  Movable zone, and the zone reads "ExMem" in /proc/zoneinfo,
  /proc/buddyinfo and ``valid_zones``.  Unlike Movable, ExMem pages may be
  pinned (FOLL_LONGTERM does not migrate them out), kernel allocations use it
  only with ``GFP_EXMEM``, and user allocations use it by default.

``MAP_EXMEM`` maps pages from CXL memory only (ZONE_EXMEM, or the CXL nodes
under ``node``), ``MAP_NORMAL`` from DDR only; without either a mapping
may use both ("implicit").  When the memory a flag asks for is exhausted
or absent, the fault fails (the task is killed), as an explicit request
must not silently fall back.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cxlemu.kernel.mm.mmap import VM_EXMEM, VM_NORMAL
from cxlemu.kernel.mm.zones import KERNEL_ZONES, ZONE_MOVABLE

if TYPE_CHECKING:
    from cxlemu.kernel.mm.numa import NumaLayout

ZONE_EXMEM = ZONE_MOVABLE        # the slot ZONE_EXMEM takes (see above)
EXMEM_NAME = "ExMem"


def exmem_mode(kernel) -> bool:
    return getattr(kernel.platform.topology.boot, "cxl_zone", "node") == "exmem"


def fold_windows(layout: "NumaLayout") -> None:
    """Under ``cxl_zone=exmem``: the CFMWS windows' fake nodes go away and
    their memblks belong to the first node with CPUs (or node 0)."""
    if not layout.fake_nodes:
        return
    cpu_nodes = sorted(layout.cpus) or [min(n for n in layout.node_to_pxm if n not in layout.fake_nodes)
                                        if len(layout.node_to_pxm) > len(layout.fake_nodes) else 0]
    host = cpu_nodes[0]
    for b in layout.memblks:
        if b.nid in layout.fake_nodes:
            b.nid = host
    for idx, nid in list(layout.window_nodes.items()):
        if nid in layout.fake_nodes:
            layout.window_nodes[idx] = host
    for nid in layout.fake_nodes:
        pxm = layout.node_to_pxm.pop(nid, None)
        if pxm is not None:
            layout.pxm_to_node.pop(pxm, None)
    if host not in layout.node_to_pxm:
        layout.map_pxm(max(layout.pxm_to_node, default=-1) + 1)
    layout.fake_nodes = set()


def zone_name(kernel, zidx: int) -> str:
    from cxlemu.kernel.mm.zones import ZONE_NAMES
    if zidx == ZONE_EXMEM and kernel is not None and exmem_mode(kernel):
        return EXMEM_NAME
    return ZONE_NAMES[zidx]


def cxl_nodes(kernel) -> list[int]:
    """Nodes whose memory is CXL memory: the nodes made for CFMWS windows."""
    lay = kernel.mm.numa.layout
    win = set(lay.window_nodes.values())
    return sorted(n for n in kernel.mm.numa.state_nodes("memory") if n in win and not kernel.mm.numa.cpus(n))


def restriction(kernel, vflags: int) -> tuple[tuple[int, ...] | None, tuple[int, ...] | None]:
    """(nodemask, zones) a VMA's MAP_EXMEM / MAP_NORMAL allows; (None, None) for neither."""
    if not vflags & (VM_EXMEM | VM_NORMAL):
        return None, None
    if exmem_mode(kernel):
        return None, ((ZONE_EXMEM,) if vflags & VM_EXMEM else tuple(reversed(KERNEL_ZONES)))
    cxl = cxl_nodes(kernel)
    mem = kernel.mm.numa.state_nodes("memory")
    if vflags & VM_EXMEM:
        return tuple(cxl), None
    return tuple(n for n in mem if n not in cxl), None


def gfp_exmem_zones(kernel) -> tuple[int, ...]:
    """The zones a GFP_EXMEM kernel allocation uses: ZONE_EXMEM only (the
    kernel gets CXL memory only when it asks for it)."""
    return (ZONE_EXMEM,)
