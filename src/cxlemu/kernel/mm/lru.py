"""LRU lists (mm/swap.c, mm/vmscan.c, include/linux/mm_inline.h): per node
the four evictable lists inactive_anon, active_anon, inactive_file,
active_file (the classic two-list LRU; cxlemu does not model MGLRU).

A list is a FIFO of frame numbers: pages enter at the head (``push``),
reclaim takes them from the tail (``isolate``: oldest first).  Pages leave a
list from the middle too (freed, migrated, activated); instead of unlinking
them, every entry carries a stamp and is valid only while the frame's
``lru_seq`` equals it (lazy deletion).  Stale entries are skipped when the
tail is reached and dropped by ``compact`` when they outnumber the valid ones,
so every operation is vectorised and amortised O(1) per page.

List id of a page: 2 * (not swap-backed) + active, as ``folio_lru_list()``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from cxlemu.kernel.mm.frames import PG_ACTIVE, PG_LRU, PG_SWAPBACKED

if TYPE_CHECKING:
    from cxlemu.kernel.mm.frames import PageFrames

LRU_INACTIVE_ANON, LRU_ACTIVE_ANON, LRU_INACTIVE_FILE, LRU_ACTIVE_FILE = range(4)
LRU_NAMES = ("inactive_anon", "active_anon", "inactive_file", "active_file")
SEQ_LIMIT = (1 << 32) - (1 << 26)


def lru_ids(flags: np.ndarray) -> np.ndarray:
    """folio_lru_list() for a flags array."""
    return (((flags & PG_SWAPBACKED) == 0).view(np.uint8) * 2 + ((flags & PG_ACTIVE) != 0).view(np.uint8))


class LruQueue:
    def __init__(self):
        self.frames = np.zeros(1024, np.int32)
        self.seqs = np.zeros(1024, np.uint32)
        self.head = 0          # oldest entry
        self.tail = 0          # next free position
        self.nr = 0            # valid entries

    def __len__(self) -> int:
        return self.nr

    def _reserve(self, n: int) -> None:
        if self.tail + n <= self.frames.size:
            return
        live = self.tail - self.head
        cap = max(1024, (live + n) * 2)
        nf = np.zeros(cap, np.int32)
        ns = np.zeros(cap, np.uint32)
        nf[:live] = self.frames[self.head:self.tail]
        ns[:live] = self.seqs[self.head:self.tail]
        self.frames, self.seqs = nf, ns
        self.tail, self.head = live, 0

    def push(self, frames: np.ndarray, seqs: np.ndarray) -> None:
        n = frames.size
        if not n:
            return
        self._reserve(n)
        self.frames[self.tail:self.tail + n] = frames
        self.seqs[self.tail:self.tail + n] = seqs
        self.tail += n
        self.nr += n

    def pop_oldest(self, k: int, pf: "PageFrames") -> np.ndarray:
        """Remove and return up to ``k`` valid frames from the tail of the list."""
        out: list[np.ndarray] = []
        got = 0
        while got < k and self.head < self.tail and self.nr > 0:
            chunk = max(2 * (k - got), 256)
            end = min(self.tail, self.head + chunk)
            f = self.frames[self.head:end]
            s = self.seqs[self.head:end]
            valid = pf.lru_seq[f] == s
            idx = np.flatnonzero(valid)
            need = k - got
            if idx.size > need:
                cut = int(idx[need - 1]) + 1
                idx = idx[:need]
            else:
                cut = end - self.head
            if idx.size:
                out.append(f[idx].astype(np.int64))
                got += idx.size
            self.head += cut
        if self.head == self.tail:
            self.head = self.tail = 0
        res = np.concatenate(out) if out else np.zeros(0, np.int64)
        self.nr -= res.size
        return res

    def live_frames(self, pf: "PageFrames") -> np.ndarray:
        """Valid entries, oldest first (for tests and reports)."""
        f = self.frames[self.head:self.tail]
        s = self.seqs[self.head:self.tail]
        return f[pf.lru_seq[f] == s].astype(np.int64)

    def compact(self, pf: "PageFrames") -> None:
        if self.tail - self.head <= 2 * self.nr + 1024:
            return
        f = self.frames[self.head:self.tail]
        s = self.seqs[self.head:self.tail]
        keep = pf.lru_seq[f] == s
        f, s = f[keep], s[keep]
        self.frames = np.zeros(max(1024, f.size * 2), np.int32)
        self.seqs = np.zeros(self.frames.size, np.uint32)
        self.frames[:f.size] = f
        self.seqs[:f.size] = s
        self.head, self.tail, self.nr = 0, f.size, f.size


class Lru:
    """The LRU lists of every node of one kernel."""

    def __init__(self):
        self.queues: dict[tuple[int, int], LruQueue] = {}
        self.seq = 1

    def queue(self, nid: int, lru: int) -> LruQueue:
        q = self.queues.get((nid, lru))
        if q is None:
            q = self.queues[(nid, lru)] = LruQueue()
        return q

    def size(self, nid: int, lru: int) -> int:
        q = self.queues.get((nid, lru))
        return q.nr if q is not None else 0

    def _stamps(self, n: int, pf: "PageFrames") -> np.ndarray:
        if self.seq + n >= SEQ_LIMIT:
            self.renumber(pf)
        s = np.arange(self.seq, self.seq + n, dtype=np.uint32)
        self.seq += n
        return s

    def add(self, frames: np.ndarray, pf: "PageFrames", active: bool | None = None) -> None:
        """folio_add_lru(): put pages at the head of their list (``active``
        forces PG_ACTIVE on or off; None keeps each page's flag)."""
        frames = np.asarray(frames, np.int64)
        if not frames.size:
            return
        fl = pf.flags[frames]
        if active is True:
            fl = fl | np.uint16(PG_ACTIVE)
        elif active is False:
            fl = fl & ~np.uint16(PG_ACTIVE)
        pf.flags[frames] = fl | np.uint16(PG_LRU)
        key = pf.node[frames].astype(np.int32) * 4 + lru_ids(fl)
        stamps = self._stamps(frames.size, pf)
        pf.lru_seq[frames] = stamps
        if np.all(key == key[0]):
            self.queue(int(key[0]) // 4, int(key[0]) % 4).push(frames, stamps)
            return
        order = np.argsort(key, kind="stable")
        ks = key[order]
        bounds = np.flatnonzero(np.diff(ks)) + 1
        for part in np.split(np.arange(order.size), bounds):
            k = int(ks[part[0]])
            sel = order[part]
            self.queue(k // 4, k % 4).push(frames[sel], stamps[sel])

    def delete(self, frames: np.ndarray, pf: "PageFrames") -> None:
        """Take pages off their lists (freed or migrated)."""
        frames = np.asarray(frames, np.int64)
        if not frames.size:
            return
        on = (pf.flags[frames] & PG_LRU) != 0
        f = frames[on]
        if f.size:
            key = pf.node[f].astype(np.int32) * 4 + lru_ids(pf.flags[f])
            cnt = np.bincount(key)
            for k in np.flatnonzero(cnt).tolist():
                self.queue(k // 4, k % 4).nr -= int(cnt[k])
        pf.lru_seq[frames] = 0
        pf.flags[frames] &= ~np.uint16(PG_LRU)

    def isolate(self, nid: int, lru: int, k: int, pf: "PageFrames") -> np.ndarray:
        """isolate_lru_folios(): the ``k`` oldest pages of a list, off the list."""
        q = self.queues.get((nid, lru))
        if q is None or not q.nr:
            return np.zeros(0, np.int64)
        f = q.pop_oldest(k, pf)
        pf.lru_seq[f] = 0
        pf.flags[f] &= ~np.uint16(PG_LRU)
        q.compact(pf)
        return f

    def renumber(self, pf: "PageFrames") -> None:
        """Restart the stamps (they are 32-bit) keeping every list's order."""
        self.seq = 1
        for q in self.queues.values():
            q.compact(pf)
            f = q.live_frames(pf)
            n = f.size
            s = np.arange(self.seq, self.seq + n, dtype=np.uint32)
            self.seq += n
            q.frames = np.zeros(max(1024, 2 * n), np.int32)
            q.seqs = np.zeros(q.frames.size, np.uint32)
            q.frames[:n] = f
            q.seqs[:n] = s
            q.head, q.tail, q.nr = 0, n, n
            pf.lru_seq[f] = s
