"""A page-allocation model: who owns the pages of each memory block.

Not the buddy allocator, but its placement rules, which is what decides
whether memory can be offlined (mm/page_alloc.c, mm/memory_hotplug.c):

* every online block has ``present`` pages, of which ``reserved`` were never
  given to the allocator (memblock reservations at boot: kernel image,
  memmap), ``kernel`` are unmovable allocations and ``user`` movable ones;
* a request walks the zonelist of its preferred node: nodes by distance
  (node-major order, ZONELIST_ORDER_NODE), and in each node the zones from
  the highest the GFP flags allow: ``GFP_HIGHUSER_MOVABLE`` may use Movable,
  Normal, DMA32, DMA; ``GFP_KERNEL`` only Normal, DMA32, DMA — **kernel
  allocations never land in ZONE_MOVABLE**;
* inside a zone blocks are used in address order;
* offlining migrates ``user`` pages away and fails with -EBUSY on the first
  block holding ``kernel`` or ``reserved`` pages
  (start_isolate_page_range: "failure to isolate range"); migration targets
  are the *other* nodes with memory, unless the block's node is the only one
  (do_migrate_range).
"""

from __future__ import annotations

from dataclasses import field
from typing import Callable, Iterable, Iterator

from cxlemu.kernel.mm.zones import ZONE_DMA, ZONE_DMA32, ZONE_MOVABLE, ZONE_NORMAL
from cxlemu.util.lazydc import dataclass

USER_ZONES = (ZONE_MOVABLE, ZONE_NORMAL, ZONE_DMA32, ZONE_DMA)
KERNEL_ALLOC_ZONES = (ZONE_NORMAL, ZONE_DMA32, ZONE_DMA)
KINDS = ("kernel", "user", "memmap")
MEMMAP_SHIFT = 6          # sizeof(struct page) = 64 bytes per 4 KiB page


def memmap_pages(nr_pages: int) -> int:
    """Pages of struct page needed to describe ``nr_pages`` pages."""
    return (nr_pages * 64 + 4095) // 4096


@dataclass
class Allocation:
    """Pages the kernel model handed out, by memory block."""
    id: int
    kind: str                    # "kernel" | "user" | "memmap"
    node: int                    # preferred node, -1: none
    pages: int
    pieces: dict[int, int] = field(default_factory=dict)    # block id -> pages
    label: str = ""

    @property
    def movable(self) -> bool:
        return self.kind == "user"

    @property
    def zones(self) -> tuple[int, ...]:
        return USER_ZONES if self.movable else KERNEL_ALLOC_ZONES


def zonelist_nodes(nid: int, nodes: Iterable[int], distance: Callable[[int, int], int]) -> list[int]:
    """build_zonelists(): nodes nearest first (ties by id); nid first when it has memory."""
    ns = list(nodes)
    if nid < 0:
        return sorted(ns)
    return sorted(ns, key=lambda n: (distance(nid, n), n != nid, n))


def take(need: int, candidates: Iterator[tuple[int, int]]) -> dict[int, int]:
    """Greedy placement: ``candidates`` yields (block id, free pages)."""
    out: dict[int, int] = {}
    for bid, free in candidates:
        if need <= 0:
            break
        if free <= 0:
            continue
        n = min(free, need)
        out[bid] = out.get(bid, 0) + n
        need -= n
    return out if need <= 0 else {}


class PageModel:
    """Allocations of one kernel, placed on the blocks of its Mm."""

    def __init__(self, mm):
        self.mm = mm
        self.allocs: dict[int, Allocation] = {}
        self.next_id = 1

    def _nodes(self) -> list[int]:
        return self.mm.numa.state_nodes("memory")

    def candidates(self, zones: tuple[int, ...], nid: int, nodes: list[int] | None = None,
                   exclude: int | None = None) -> Iterator[tuple[int, int]]:
        mm = self.mm
        order = zonelist_nodes(nid, self._nodes() if nodes is None else nodes, mm.numa.distance)
        for n in order:
            for z in zones:
                for bid in mm.zone_blocks.get((n, z), ()):
                    if bid != exclude:
                        yield bid, mm.blocks[bid].free

    def alloc(self, kind: str, pages: int, nid: int = -1, label: str = "") -> Allocation:
        """Place ``pages`` pages; -ENOMEM (nothing placed) if they do not fit."""
        from cxlemu.kernel.base.device import KernelError
        import errno
        if kind not in KINDS:
            raise ValueError(kind)
        a = Allocation(self.next_id, kind, nid, pages, label=label)
        if pages <= 0:
            raise KernelError(errno.EINVAL, "empty allocation")
        pieces = take(pages, self.candidates(a.zones, nid))
        if not pieces:
            raise KernelError(errno.ENOMEM, f"cannot allocate {pages} {kind} pages"
                                            + (f" near node {nid}" if nid >= 0 else ""))
        self.next_id += 1
        a.pieces = pieces
        for bid, n in pieces.items():
            blk = self.mm.blocks[bid]
            if a.movable:
                blk.user += n
            else:
                blk.kernel += n
        self.allocs[a.id] = a
        self._changed(pieces)
        return a

    def _changed(self, bids) -> None:
        vm = getattr(self.mm, "_vm", None)
        if vm is not None:
            vm.block_model_changed(list(bids))

    def free(self, aid: int) -> Allocation:
        from cxlemu.kernel.base.device import KernelError
        import errno
        a = self.allocs.pop(aid, None)
        if a is None:
            raise KernelError(errno.ENOENT, f"no allocation {aid}")
        for bid, n in a.pieces.items():
            blk = self.mm.blocks.get(bid)
            if blk is None:
                continue
            if a.movable:
                blk.user -= n
            else:
                blk.kernel -= n
        self._changed(a.pieces)
        return a

    def migrate_out(self, blk) -> bool:
        """do_migrate_range(): move every movable page out of ``blk`` to the
        other memory nodes (the same node only if it is the only one);
        False, and no change, if they do not all fit."""
        mm = self.mm
        need = blk.user
        if not need:
            return True
        nodes = [n for n in self._nodes() if n != blk.nid] or [blk.nid]
        plan = take(need, self.candidates(USER_ZONES, blk.nid, nodes, exclude=blk.id))
        if not plan:
            return False
        chunks = list(plan.items())
        for a in sorted(self.allocs.values(), key=lambda x: x.id):
            n = a.pieces.pop(blk.id, 0) if a.movable else 0
            while n:
                bid, avail = chunks[0]
                m = min(avail, n)
                a.pieces[bid] = a.pieces.get(bid, 0) + m
                mm.blocks[bid].user += m
                n -= m
                if m == avail:
                    chunks.pop(0)
                else:
                    chunks[0] = (bid, avail - m)
        blk.user = 0
        self._changed([blk.id] + [b for b, _ in plan.items()])
        return True

    def node_of(self, a: Allocation) -> dict[int, int]:
        """Pages of an allocation per node."""
        out: dict[int, int] = {}
        for bid, n in a.pieces.items():
            blk = self.mm.blocks.get(bid)
            if blk is not None:
                out[blk.nid] = out.get(blk.nid, 0) + n
        return out
