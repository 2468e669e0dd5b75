"""Per-dimm DPA bookkeeping of libnvdimm (drivers/nvdimm/dimm_devs.c,
namespace_devs.c): the ``ndd->dpa`` resource tree of a dimm.

Each namespace owns DPA extents named by its label id ``pmem-<uuid>``
(label.c ``nd_label_gen_id``).  The rules kept here:

* ``available`` (nd_pmem_available_dpa): the mapping size minus every
  extent that touches the mapping, each extent widened to the allocation
  alignment; the result is rounded down to that alignment.
* ``max_contiguous`` (nd_pmem_max_contiguous_dpa): the largest free extent
  of the mapping once trimmed to the alignment.
* ``allocate`` (scan_allocate/init_dpa_allocation): PMEM space must be
  contiguous and adjacent to the namespace's existing extent; the first
  free aligned gap (in address order) that can hold the whole request is
  used; growing appends after the existing extent, else before it.
* ``shrink`` (scan_free): the last extent of the namespace shrinks from its
  end, or is deleted when the request covers it.

The allocation alignment is ``region align / mappings``
(namespace_devs.c space_valid, dimm_devs.c dpa_align).
"""

from __future__ import annotations

from dataclasses import field

from cxlemu.util.lazydc import dataclass


def label_id(uuid_str: str) -> str:
    return f"pmem-{uuid_str}"


def _up(x: int, a: int) -> int:
    return (x + a - 1) // a * a


def _down(x: int, a: int) -> int:
    return x // a * a


@dataclass
class DpaExtent:
    """An allocated DPA range of a dimm, end inclusive, named by its label id."""
    start: int
    end: int          # inclusive
    name: str

    @property
    def size(self) -> int:
        return self.end - self.start + 1


@dataclass
class DpaMap:
    """The DPA resources of one dimm, sorted by start, never overlapping."""
    extents: list[DpaExtent] = field(default_factory=list)

    def _sort(self) -> None:
        self.extents.sort(key=lambda e: e.start)

    def named(self, name: str) -> list[DpaExtent]:
        return [e for e in self.extents if e.name == name]

    def allocated(self, name: str) -> int:
        return sum(e.size for e in self.named(name))

    def reserve(self, start: int, size: int, name: str) -> bool:
        """nvdimm_allocate_dpa at a fixed place (label replay at probe)."""
        end = start + size - 1
        if size <= 0 or any(not (end < e.start or start > e.end) for e in self.extents):
            return False
        self.extents.append(DpaExtent(start, end, name))
        self._sort()
        return True

    def release(self, name: str) -> None:
        self.extents = [e for e in self.extents if e.name != name]

    def rename(self, old: str, new: str) -> None:
        for e in self.extents:
            if e.name == old:
                e.name = new

    # ---- capacity ----------------------------------------------------------------------
    def available(self, map_start: int, map_size: int, align: int) -> int:
        if align <= 0:
            return 0
        map_end = map_start + map_size - 1
        busy = 0
        for e in self.extents:
            start = _down(e.start, align)
            end = _up(e.end + 1, align) - 1
            if map_start <= start < map_end:
                if end > map_end:
                    return 0          # misaligned to the interleave set
                busy += end - start + 1
            elif map_start <= end <= map_end:
                busy += end - start + 1
            elif start < map_start < end:
                busy += map_size
        return _down(map_size - busy, align) if busy < map_size else 0

    def free_extents(self, map_start: int, map_size: int, align: int) -> list[tuple[int, int]]:
        """Free (start, end-inclusive) gaps of the mapping, trimmed to ``align``."""
        map_end = map_start + map_size - 1
        out = []
        cursor = map_start
        for e in self.extents:
            if e.end < map_start or e.start > map_end:
                continue
            if e.start > cursor:
                out.append((cursor, e.start - 1))
            cursor = max(cursor, e.end + 1)
        if cursor <= map_end:
            out.append((cursor, map_end))
        trimmed = []
        for s, t in out:
            s2, t2 = _up(s, align), _down(t + 1, align) - 1
            if s2 < t2:
                trimmed.append((s2, t2))
        return trimmed

    def max_contiguous(self, map_start: int, map_size: int, align: int) -> int:
        if align <= 0:
            return 0
        gaps = self.free_extents(map_start, map_size, align)
        return max((t - s + 1 for s, t in gaps), default=0)

    # ---- allocation ---------------------------------------------------------------------
    def allocate(self, map_start: int, map_size: int, align: int, name: str, n: int) -> int:
        """Add ``n`` bytes to ``name`` inside the mapping; returns the bytes NOT
        allocated (0 on success), like scan_allocate()."""
        if n <= 0:
            return 0
        exist = self.named(name)
        gaps = self.free_extents(map_start, map_size, align)
        if not exist:
            for s, t in gaps:
                if t - s + 1 >= n:
                    self.extents.append(DpaExtent(s, s + n - 1, name))
                    self._sort()
                    return 0
            return n
        last, first = exist[-1], exist[0]
        for s, t in gaps:
            if t - s + 1 < n:
                continue
            if s == last.end + 1:                 # grow down: append after the extent
                last.end += n
                return 0
            if t == first.start - 1:              # grow up: prepend before it
                first.start -= n
                return 0
        return n

    def shrink(self, name: str, n: int) -> int:
        """scan_free(): release ``n`` bytes from the namespace's last extents."""
        while n > 0:
            exts = self.named(name)
            if not exts:
                return 0
            last = exts[-1]
            if n >= last.size:
                n -= last.size
                self.extents.remove(last)
                continue
            last.end -= n
            n = 0
        return 0
