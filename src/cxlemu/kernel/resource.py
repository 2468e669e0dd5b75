"""The iomem resource tree (kernel/resource.c) and /proc/iomem.

Resources nest; siblings are kept sorted and never overlap.  The functions
mirror the kernel's: ``request_resource`` (fails on conflict),
``insert_resource`` (adopts conflicting children that fit inside),
``release_resource``, and ``alloc_free_mem_region``-style first-fit
allocation used for CXL region HPA.
"""

from __future__ import annotations

import errno
from dataclasses import field

from cxlemu.kernel.base.device import KernelError
from cxlemu.util.lazydc import dataclass

IORES_DESC_NONE = 0
IORES_DESC_SOFT_RESERVED = 7
IORES_DESC_CXL = 9


@dataclass(eq=False)
class Resource:
    """A ``struct resource`` of the iomem tree (kernel/resource.c), end inclusive."""
    start: int
    end: int                  # inclusive
    name: str
    desc: int = IORES_DESC_NONE
    busy: bool = False
    children: list["Resource"] = field(default_factory=list)
    parent: "Resource | None" = field(default=None, repr=False)

    @property
    def size(self) -> int:
        return self.end - self.start + 1

    def contains(self, start: int, end: int) -> bool:
        return self.start <= start and end <= self.end

    def overlaps(self, start: int, end: int) -> bool:
        return not (end < self.start or start > self.end)

    def walk(self, depth: int = 0):
        for c in self.children:
            yield depth, c
            yield from c.walk(depth + 1)

    def find(self, start: int, end: int, name: str | None = None) -> "Resource | None":
        for _, r in self.walk():
            if r.start == start and r.end == end and (name is None or r.name == name):
                return r
        return None


def request_resource(parent: Resource, res: Resource) -> None:
    """Insert ``res`` as a child of ``parent``; -EBUSY on any conflict."""
    if not parent.contains(res.start, res.end):
        raise KernelError(errno.EBUSY, f"{res.name} outside {parent.name}")
    for c in parent.children:
        if c.overlaps(res.start, res.end):
            raise KernelError(errno.EBUSY, f"{res.name} conflicts with {c.name}")
    res.parent = parent
    parent.children.append(res)
    parent.children.sort(key=lambda r: r.start)


def insert_resource(parent: Resource, res: Resource) -> None:
    """Insert ``res`` at the deepest level that contains it, adopting children it covers."""
    for c in parent.children:
        if c.contains(res.start, res.end) and (c.start, c.end) != (res.start, res.end):
            return insert_resource(c, res)
    covered = [c for c in parent.children if res.contains(c.start, c.end)]
    partial = [c for c in parent.children if c.overlaps(res.start, res.end) and c not in covered]
    if partial:
        raise KernelError(errno.EBUSY, f"{res.name} partially overlaps {partial[0].name}")
    for c in covered:
        parent.children.remove(c)
        c.parent = res
        res.children.append(c)
    res.children.sort(key=lambda r: r.start)
    res.parent = parent
    parent.children.append(res)
    parent.children.sort(key=lambda r: r.start)


def release_resource(res: Resource) -> None:
    """Remove ``res``; its children move up to its parent (remove_resource)."""
    parent = res.parent
    if parent is None:
        return
    parent.children.remove(res)
    for c in res.children:
        c.parent = parent
        parent.children.append(c)
    res.children = []
    parent.children.sort(key=lambda r: r.start)
    res.parent = None


def alloc_free_region(parent: Resource, size: int, align: int, name: str) -> Resource:
    """First fit, ascending addresses, aligned, among the gaps between children."""
    cursor = parent.start
    for c in sorted(parent.children, key=lambda r: r.start):
        start = -(-cursor // align) * align
        if start + size - 1 < c.start:
            break
        cursor = max(cursor, c.end + 1)
    else:
        start = -(-cursor // align) * align
    if start + size - 1 > parent.end:
        raise KernelError(errno.ENOSPC, f"no {size:#x} free in {parent.name}")
    res = Resource(start, start + size - 1, name)
    request_resource(parent, res)
    return res


def format_iomem(root: Resource) -> str:
    """kernel/resource.c r_show: two spaces per level, at least 8 hex digits."""
    width = 4 if root.end < 0x10000 else 8
    lines = []
    for depth, r in root.walk():
        lines.append(f"{'':{depth * 2}}{r.start:0{width}x}-{r.end:0{width}x} : {r.name}\n")
    return "".join(lines)
