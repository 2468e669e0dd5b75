"""Memory block size and what kmem's block alignment costs.

Pure functions, no kernel state.  Sources:

* ``arch/x86/mm/init_64.c`` ``probe_memory_block_size()``: an explicit size
  wins; boot memory that ends below 64 GiB gets 128 MiB blocks; otherwise
  2 GiB, kept on bare metal (since v5.8, "x86/mm: use max memory block size
  on bare metal"), and in a VM halved until it divides the end of boot
  memory.  From v6.14 a hotplug *advice* (the CFMWS alignment) replaces the
  2 GiB start, clamped to [128 MiB, 2 GiB], and is then halved the same way
  on bare metal too.
* ``drivers/acpi/numa/srat.c`` ``acpi_parse_cfmws()`` (v6.14): each window
  advises ``1 << __ffs(base | end)``; an alignment below 256 MiB is logged as
  "CFMWS: [BIOS BUG] base/size alignment violates spec" and not advised;
  ``drivers/base/memory.c`` ``memory_block_advise_max_size()`` keeps the
  minimum of all advice.
* ``drivers/dax/kmem.c`` ``dax_kmem_range()``: a dax range is hot-added as
  ``[ALIGN(start, bs), ALIGN_DOWN(end + 1, bs) - 1]``; an empty result is
  skipped ("mappingN: ... too small after alignment").
"""

from __future__ import annotations

from typing import Iterable

from cxlemu.kernel.features import since
from cxlemu.util.lazydc import dataclass
from cxlemu.util.units import GiB, MiB, align_down, align_up

MIN_MEMORY_BLOCK_SIZE = 128 * MiB     # 1 << SECTION_SIZE_BITS (x86-64)
MAX_BLOCK_SIZE = 2 * GiB
MEM_SIZE_FOR_LARGE_BLOCK = 64 * GiB
CFMWS_MIN_ALIGN = 256 * MiB
BARE_METAL_MAX_SINCE = since("bare_metal_max_block_size")   # "x86/mm: use max memory block size on bare metal"
HOTPLUG_ADVICE_SINCE = since("memory_block_advice")   # memory_block_advise_max_size() + CFMWS advice


def lowest_set_bit(x: int) -> int:
    """``1 << __ffs(x)`` (x > 0)."""
    if x <= 0:
        raise ValueError("lowest_set_bit of a non-positive value")
    return x & -x


def cfmws_alignment(base: int, size: int) -> int:
    """srat.c: the alignment a window advertises, ``1 << __ffs(base | end)``."""
    return lowest_set_bit(base | (base + size))


@dataclass(frozen=True)
class Advice:
    size: int | None                      # the minimum advised block size, or None
    bios_bugs: tuple[tuple[int, int], ...] = ()   # windows aligned below 256 MiB


def cfmws_advice(windows: Iterable[tuple[int, int]]) -> Advice:
    """Fold every window's alignment like memory_block_advise_max_size()."""
    best: int | None = None
    bugs: list[tuple[int, int]] = []
    for base, size in windows:
        if size <= 0:
            continue
        align = cfmws_alignment(base, size)
        if align >= CFMWS_MIN_ALIGN:
            best = align if best is None else min(best, align)
        else:
            bugs.append((base, size))
    return Advice(best, tuple(bugs))


def probe_memory_block_size(boot_mem_end: int, *, hypervisor: bool, kernel: tuple[int, int],
                            advice: int | None = None, explicit: int | None = None) -> int:
    """arch/x86/mm/init_64.c probe_memory_block_size() for a kernel version."""
    if explicit:
        return explicit
    if boot_mem_end < MEM_SIZE_FOR_LARGE_BLOCK:
        return MIN_MEMORY_BLOCK_SIZE
    if kernel >= HOTPLUG_ADVICE_SINCE and advice:
        bz = max(min(advice, MAX_BLOCK_SIZE), MIN_MEMORY_BLOCK_SIZE)
    else:
        bz = MAX_BLOCK_SIZE
        if not hypervisor and kernel >= BARE_METAL_MAX_SINCE:
            return bz
    while bz > MIN_MEMORY_BLOCK_SIZE and boot_mem_end % bz:
        bz >>= 1
    return bz


def valid_block_size(bs: int) -> bool:
    """memory.c: a power of two, at least one section."""
    return bs >= MIN_MEMORY_BLOCK_SIZE and bs & (bs - 1) == 0


@dataclass(frozen=True)
class KmemRange:
    """One dax range as kmem hot-adds it."""
    start: int          # the dax range
    end: int            # inclusive
    aligned_start: int
    aligned_end: int    # inclusive; aligned_end < aligned_start means "too small"

    @property
    def usable(self) -> bool:
        return self.aligned_start < self.aligned_end

    @property
    def added(self) -> int:
        return self.aligned_end - self.aligned_start + 1 if self.usable else 0

    @property
    def lost_head(self) -> int:
        return (self.aligned_start - self.start) if self.usable else 0

    @property
    def lost_tail(self) -> int:
        return (self.end - self.aligned_end) if self.usable else 0

    @property
    def lost(self) -> int:
        return (self.end - self.start + 1) - self.added


def kmem_range(start: int, end: int, block_size: int) -> KmemRange:
    """dax_kmem_range(): block-align one dax range (``end`` inclusive)."""
    a = align_up(start, block_size)
    b = align_down(end + 1, block_size) - 1
    return KmemRange(start, end, a, b)


def stranded(ranges: Iterable[tuple[int, int]], block_size: int) -> tuple[int, int]:
    """(bytes hot-added, bytes lost to block alignment) for dax ranges ``(start, end)``."""
    added = lost = 0
    for s, e in ranges:
        r = kmem_range(s, e, block_size)
        added += r.added
        lost += r.lost
    return added, lost
