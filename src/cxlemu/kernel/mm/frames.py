"""Page frames: ``struct page`` for every page of online memory, as numpy
arrays (include/linux/mm_types.h, include/linux/page-flags.h; the memmap of
SPARSEMEM: one slot of ``pages_per_block`` frames per memory block).

A *frame number* indexes the arrays: ``slot * pages_per_block + offset``
where ``slot`` is the order in which the block got frames; ``pfn =
block_id * pages_per_block + offset``.  Per frame:

* ``free``      on the free lists (bool);
* ``flags``     PG_* bits below (LRU list, referenced, dirty, swap-backed,
                pinned (FOLL_LONGTERM), THP head/tail, hwpoison, ...);
* ``node``, ``zone``;
* ``access``    time (ns) of the last access seen by the page-table walker.
                The *accessed bit* of the PTE mapping the frame is
                ``access > 0``: test-and-clear (``folio_referenced``) negates
                it, an access stores the positive time again, so one array
                holds both the young bit and the last-access time;
* ``scan_ms``   the NUMA-balancing scan time (what Linux keeps in the
                folio's cpupid field in memory-tiering mode, in ms);
* ``owner``, ``index``  the reverse map: the address space the frame belongs
                to (an mm for anonymous pages, a file for page cache and
                shmem) and the page index in it; owner ``-1`` free, ``-2``
                pages of the block-level allocation model (memblock
                reservations, kernel allocations, ``cxlemu mem alloc``);
* ``lru_seq``   the stamp of the frame's entry on its LRU queue (see lru.py).

The arrays exist only while something owns frames (a process, a file):
:meth:`Mm.frames_get` builds them on first use and :meth:`Mm.frames_put`
drops them when the last owner is gone, so an idle machine's saved state
stays small.  Block-level counts (``MemoryBlock.user``) include process pages,
so the allocation model of alloc.py and the hotplug rules see them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from cxlemu.kernel.mm.subsys import Mm

# page flags (a subset of enum pageflags, plus cxlemu bookkeeping)
PG_LRU = 1 << 0
PG_ACTIVE = 1 << 1
PG_REFERENCED = 1 << 2
PG_DIRTY = 1 << 3
PG_SWAPBACKED = 1 << 4        # anon and shmem: reclaimed to swap
PG_ANON = 1 << 5              # PageAnon (mapping is an anon_vma)
PG_PINNED = 1 << 6            # long-term pinned (FOLL_LONGTERM, folio_maybe_dma_pinned)
PG_HEAD = 1 << 7              # THP head
PG_TAIL = 1 << 8              # THP tail
PG_HWPOISON = 1 << 9
PG_UNEVICTABLE = 1 << 10      # mlocked
PG_RESERVED = 1 << 11         # memblock reservations, holes
PG_KERNEL = 1 << 12           # block-model pages (kernel allocations, model user pages)
PG_CPUPID = 1 << 13           # last_cpupid holds a valid cpu/pid (NUMA balancing, mode 1)
PG_WRITEBACK = 1 << 14
PG_OFFLINE = 1 << 15          # frame of an offline block

OWNER_FREE = -1
OWNER_MODEL = -2

PROT_NUMA = 1 << 30           # page-table entry flag: PROT_NONE for NUMA hinting
PTE_NONE = -1                 # page-table entry: not present, never swapped


def swp_entry(slot):
    """Encode a swap slot as a (negative) page-table entry."""
    return -(slot + 2)


def swp_slot(pte):
    return -pte - 2


class PageFrames:
    """The memmap of one kernel (see module doc)."""

    FIELDS = (("free", np.bool_), ("flags", np.uint16), ("access", np.int64), ("scan_ms", np.uint32),
              ("owner", np.int32), ("index", np.int32), ("lru_seq", np.uint32))

    def __init__(self, mm: "Mm"):
        self.ppb = mm.pages_per_block
        self.slot_of_block: dict[int, int] = {}
        self.block_of_slot = np.zeros(0, np.int64)
        self.nslots = 0
        self.proc_pages = np.zeros(0, np.int64)     # per slot: frames owned by address spaces
        self.slot_free = np.zeros(0, np.int64)      # per slot: free frames
        self.slot_online = np.zeros(0, np.bool_)     # per slot: frames handed to the allocator
        self.slot_node = np.zeros(0, np.int16)       # per slot: node (``node[f]`` reads it through the slot)
        self.slot_zone = np.zeros(0, np.int8)        # per slot: zone
        self.shift = int(self.ppb).bit_length() - 1  # ppb is a power of two
        for name, dt in self.FIELDS:
            setattr(self, name, np.zeros(0, dt))
        self.cursor: dict[int, int] = {}            # per slot: next-fit hint

    # ---- geometry -------------------------------------------------------------------------
    @property
    def nframes(self) -> int:
        return self.nslots * self.ppb

    def block_range(self, bid: int) -> tuple[int, int]:
        s = self.slot_of_block[bid]
        return s * self.ppb, (s + 1) * self.ppb

    def pfn(self, frames: np.ndarray) -> np.ndarray:
        frames = np.asarray(frames, np.int64)
        return self.block_of_slot[frames // self.ppb] * self.ppb + frames % self.ppb

    def frame_of_pfn(self, pfn: int) -> int:
        bid, off = divmod(int(pfn), self.ppb)
        s = self.slot_of_block.get(bid)
        if s is None:
            return -1
        return s * self.ppb + off

    @property
    def node(self) -> "SlotView":
        """``node[frames]``: the node of frames (through the per-slot table)."""
        return SlotView(self.slot_node, self.shift)

    @property
    def zone(self) -> "SlotView":
        return SlotView(self.slot_zone, self.shift)

    def node_of(self, frames: np.ndarray) -> np.ndarray:
        """The node of each frame (through the per-slot table: cache friendly)."""
        return self.slot_node[frames >> self.shift]

    def slots(self, frames: np.ndarray) -> np.ndarray:
        return np.asarray(frames) // self.ppb

    # ---- growth ------------------------------------------------------------------------------
    def _grow(self, add_slots: int) -> None:
        n = add_slots * self.ppb
        for name, dt in self.FIELDS:
            old = getattr(self, name)
            new = np.zeros(old.size + n, dt)
            new[: old.size] = old
            setattr(self, name, new)
        self.owner[self.nframes:] = OWNER_FREE
        self.proc_pages = np.concatenate([self.proc_pages, np.zeros(add_slots, np.int64)])
        self.slot_free = np.concatenate([self.slot_free, np.zeros(add_slots, np.int64)])
        self.block_of_slot = np.concatenate([self.block_of_slot, np.full(add_slots, -1, np.int64)])
        self.slot_online = np.concatenate([self.slot_online, np.zeros(add_slots, np.bool_)])
        self.slot_node = np.concatenate([self.slot_node, np.full(add_slots, -1, np.int16)])
        self.slot_zone = np.concatenate([self.slot_zone, np.full(add_slots, -1, np.int8)])

    def add_blocks(self, blocks, hwpoison=None) -> None:
        """Give frames to memory blocks (online or not) that have none yet
        (``hwpoison``: sorted pfns memory_failure retired, see block_changed)."""
        new = [b for b in blocks if b.id not in self.slot_of_block]
        if not new:
            return
        first = self.nslots
        self._grow(len(new))
        for i, blk in enumerate(new):
            s = first + i
            self.slot_of_block[blk.id] = s
            self.block_of_slot[s] = blk.id
        self.nslots += len(new)
        for blk in new:
            self.block_changed(blk, hwpoison)

    def block_changed(self, blk, hwpoison=None) -> None:
        """(Re)initialise the frames of a block from its state: online blocks
        get their zone and node, free frames for what the block-level model
        does not use; offline blocks have no free frame.  Pages of the block
        in ``hwpoison`` (sorted pfns memory_failure retired: PG_HWPOISON lives
        in struct page, which outlives this memmap's arrays) stay retired."""
        s = self.slot_of_block[blk.id]
        lo, hi = s * self.ppb, (s + 1) * self.ppb
        own = self.owner[lo:hi]
        procs = own >= 0
        if not blk.online:
            if procs.any():
                raise RuntimeError(f"{blk.name}: offline with process pages")
            self.free[lo:hi] = False
            self.flags[lo:hi] = PG_OFFLINE
            self.owner[lo:hi] = OWNER_FREE
            self.slot_node[s] = blk.nid
            self.slot_zone[s] = -1
            self.slot_free[s] = 0
            self.proc_pages[s] = 0
            self.slot_online[s] = False
            return
        zone = blk.zone if blk.zone is not None else 1
        self.slot_node[s] = blk.nid
        self.slot_zone[s] = zone
        if self.flags[lo] & PG_OFFLINE or not self.slot_online[s]:
            # the block (re)enters the allocator: every present page is free
            self.free[lo:hi] = True
            if self.flags[lo] & PG_OFFLINE:
                self.owner[lo:hi] = OWNER_FREE
                self.flags[lo:hi] = 0
                self.lru_seq[lo:hi] = 0
                self.access[lo:hi] = 0
            self.slot_online[s] = True
            # holes past the present pages
            if blk.present < self.ppb:
                self.free[lo + blk.present:hi] = False
                self.flags[lo + blk.present:hi] = PG_RESERVED
                self.owner[lo + blk.present:hi] = OWNER_MODEL
            if hwpoison is not None and len(hwpoison):
                hp = np.asarray(hwpoison, np.int64)
                first = blk.id * self.ppb
                a, b = np.searchsorted(hp, [first, first + blk.present])
                f = lo + (hp[a:b] - first)
                f = f[~procs[f - lo]]
                self.free[f] = False
                self.owner[f] = OWNER_MODEL
                self.flags[f] = PG_HWPOISON
        self.sync_block(blk)

    def sync_block(self, blk) -> None:
        """Make the number of block-model frames of ``blk`` match its counts
        (reserved + kernel + retired hwpoison + the model's user pages), taking the lowest free
        frames or giving back the highest model frames."""
        if blk.id not in self.slot_of_block or not blk.online:
            return
        s = self.slot_of_block[blk.id]
        lo = s * self.ppb
        hi = lo + blk.present
        own = self.owner[lo:hi]
        model_now = int(np.count_nonzero(own == OWNER_MODEL))   # holes lie past ``present``
        procs = int(np.count_nonzero(own >= 0))
        want = blk.reserved + blk.kernel + getattr(blk, "hwpoison", 0) + (blk.user - procs)
        if want > model_now:
            idx = np.flatnonzero(self.free[lo:hi])[: want - model_now]
            if idx.size < want - model_now:
                raise RuntimeError(f"{blk.name}: block model needs more frames than are free")
            f = lo + idx
            self.free[f] = False
            self.owner[f] = OWNER_MODEL
            self.flags[f] = PG_KERNEL
        elif want < model_now:
            # retired (hwpoison) frames never go back
            idx = np.flatnonzero((own == OWNER_MODEL) & ((self.flags[lo:hi] & PG_HWPOISON) == 0))[::-1]
            idx = idx[: model_now - want]
            f = lo + idx
            self.free[f] = True
            self.owner[f] = OWNER_FREE
            self.flags[f] = 0
        self.proc_pages[s] = procs
        self.slot_free[s] = int(np.count_nonzero(self.free[lo:hi]))

    # ---- allocation ----------------------------------------------------------------------------
    def take_from_slot(self, slot: int, n: int) -> np.ndarray:
        """Up to ``n`` free frames of one slot (lowest first after the next-fit cursor)."""
        if n <= 0 or self.slot_free[slot] <= 0:
            return np.zeros(0, np.int64)
        lo = slot * self.ppb
        start = self.cursor.get(slot, 0)
        idx = np.flatnonzero(self.free[lo + start: lo + self.ppb])[:n]
        if idx.size < n and start:
            more = np.flatnonzero(self.free[lo: lo + start])[: n - idx.size]
            idx = np.concatenate([idx + start, more])
        else:
            idx = idx + start
        f = lo + idx
        self.free[f] = False
        self.slot_free[slot] -= f.size
        self.cursor[slot] = int(idx[-1] + 1) % self.ppb if idx.size else start
        return f

    def take_huge(self, slot: int, order_pages: int) -> np.ndarray:
        """An aligned run of ``order_pages`` free frames in one slot (a THP), or empty."""
        if self.slot_free[slot] < order_pages:
            return np.zeros(0, np.int64)
        lo = slot * self.ppb
        runs = self.free[lo: lo + self.ppb].reshape(-1, order_pages).all(axis=1)
        cand = np.flatnonzero(runs)
        if not cand.size:
            return np.zeros(0, np.int64)
        f = lo + cand[0] * order_pages + np.arange(order_pages)
        self.free[f] = False
        self.slot_free[slot] -= order_pages
        return f

    def assign(self, frames: np.ndarray, owner: int | np.ndarray, index: np.ndarray, flags: int,
               now: int) -> None:
        """Make ``frames`` pages of an address space (after take_*)."""
        self.owner[frames] = owner
        self.index[frames] = index
        self.flags[frames] = flags
        self.access[frames] = now
        self.scan_ms[frames] = 0
        self.lru_seq[frames] = 0
        s, c = self.slot_counts(frames)
        self.proc_pages[s] += c

    def slot_counts(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(slots, counts) of a frame array."""
        b = np.bincount(np.asarray(frames, np.int64) // self.ppb, minlength=self.nslots)
        s = np.flatnonzero(b)
        return s, b[s]

    def release(self, frames: np.ndarray) -> None:
        """Give frames back to the free lists (the caller has unmapped them)."""
        if not frames.size:
            return
        s, c = self.slot_counts(frames)
        self.proc_pages[s] -= c
        self.slot_free[s] += c
        self.free[frames] = True
        self.owner[frames] = OWNER_FREE
        self.flags[frames] = 0
        self.lru_seq[frames] = 0
        self.access[frames] = 0

    # ---- queries --------------------------------------------------------------------------------
    def owned_in_slot(self, slot: int) -> np.ndarray:
        lo = slot * self.ppb
        return lo + np.flatnonzero(self.owner[lo: lo + self.ppb] >= 0)


class SlotView:
    """Read-only per-frame view of a per-slot array (node, zone)."""

    def __init__(self, per_slot: np.ndarray, shift: int):
        self.per_slot, self.shift = per_slot, shift

    def __getitem__(self, frames):
        if isinstance(frames, slice):
            frames = np.arange(*frames.indices(self.per_slot.size << self.shift))
        return self.per_slot[np.asarray(frames) >> self.shift]

    def max(self, initial: int = 0) -> int:
        return int(self.per_slot.max(initial=initial))
