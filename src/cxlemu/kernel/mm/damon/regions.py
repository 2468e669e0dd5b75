"""The regions of one DAMON target as numpy arrays (struct damon_region,
include/linux/damon.h) and the arithmetic of mm/damon/core.c on them:
splitting a region, the adaptive merge of ``kdamond_merge_regions`` and the
random split of ``kdamond_split_regions``, ``damon_set_regions`` and the
conversion of monitoring results when the intervals change.

Per region (index ``i``, sorted by address, never overlapping):

* ``start``, ``end``       the address range ``[start, end)``;
* ``nr_accesses``          samples that found the region accessed in the
                           current aggregation interval;
* ``nr_accesses_bp``       the moving sum of the same over the last
                           aggregation interval, in basis points (x10000) —
                           what DAMOS matches (``damon_update_region_access_rate``);
* ``last_nr_accesses``     ``nr_accesses`` of the previous aggregation;
* ``age``                  aggregation intervals the access frequency stayed similar;
* ``sampling_addr``        the address whose page is checked at the next sample.

Everything is vectorised over regions except the adaptive merge, which is
inherently sequential (each merge changes the next comparison) and runs once
per aggregation interval over at most ``max_nr_regions`` regions.
"""

from __future__ import annotations

import numpy as np

FIELDS = ("start", "end", "nr_accesses", "nr_accesses_bp", "last_nr_accesses", "age", "sampling_addr")
DAMON_MIN_REGION = 4096          # PAGE_SIZE


class Regions:
    def __init__(self, start=(), end=()):
        self.start = np.asarray(start, np.int64).copy()
        self.end = np.asarray(end, np.int64).copy()
        n = self.start.size
        self.nr_accesses = np.zeros(n, np.int64)
        self.nr_accesses_bp = np.zeros(n, np.int64)
        self.last_nr_accesses = np.zeros(n, np.int64)
        self.age = np.zeros(n, np.int64)
        self.sampling_addr = self.start.copy()

    def __len__(self) -> int:
        return int(self.start.size)

    @property
    def size(self) -> np.ndarray:
        return self.end - self.start

    def total(self) -> int:
        return int((self.end - self.start).sum())

    def copy(self) -> "Regions":
        r = Regions()
        for f in FIELDS:
            setattr(r, f, getattr(self, f).copy())
        return r

    def take(self, idx) -> None:
        """Keep the regions at ``idx`` (in that order)."""
        for f in FIELDS:
            setattr(self, f, getattr(self, f)[idx])

    # ---- one region ---------------------------------------------------------------------------
    def split_at(self, i: int, sz_r: int) -> None:
        """damon_split_region_at(): region ``i`` keeps its first ``sz_r``
        bytes; a new region with the same monitoring results follows it."""
        cut = int(self.start[i]) + int(sz_r)
        for f in FIELDS:
            a = getattr(self, f)
            setattr(self, f, np.insert(a, i + 1, a[i]))
        self.end[i] = cut
        self.start[i + 1] = cut
        self.sampling_addr[i + 1] = cut

    # ---- adaptive adjustment ----------------------------------------------------------------------
    def merge(self, thres: int, sz_limit: int, update_age: bool = True) -> None:
        """damon_merge_regions_of(): age the regions (reset when the access
        count changed by more than ``thres`` or went from/to zero), then
        merge each region into the previous one when they are adjacent, their
        access counts differ by at most ``thres`` and the merged size stays
        within ``sz_limit``; the merged region gets size-weighted counts."""
        n = len(self)
        if not n:
            return
        na = self.nr_accesses
        if update_age:
            diff = np.abs(na - self.last_nr_accesses)
            reset = (diff > thres) | ((na == 0) != (self.last_nr_accesses == 0))
            self.age = np.where(reset, 0, self.age + 1)
        start = self.start.tolist()
        end = self.end.tolist()
        acc = na.tolist()
        age = self.age.tolist()
        keep: list[int] = []
        new_end: list[int] = []
        new_acc: list[int] = []
        new_age: list[int] = []
        absorbed: list[bool] = []
        p = -1
        for i in range(n):
            if p >= 0:
                szl = new_end[p] - start[keep[p]]
                szr = end[i] - start[i]
                if new_end[p] == start[i] and abs(new_acc[p] - acc[i]) <= thres and szl + szr <= sz_limit:
                    tot = szl + szr
                    new_acc[p] = (new_acc[p] * szl + acc[i] * szr) // tot
                    new_age[p] = (new_age[p] * szl + age[i] * szr) // tot
                    new_end[p] = end[i]
                    absorbed[p] = True
                    continue
            keep.append(i)
            new_end.append(end[i])
            new_acc.append(acc[i])
            new_age.append(age[i])
            absorbed.append(False)
            p += 1
        if len(keep) == n:
            return
        self.take(np.asarray(keep, np.int64))
        self.end = np.asarray(new_end, np.int64)
        self.nr_accesses = np.asarray(new_acc, np.int64)
        self.age = np.asarray(new_age, np.int64)
        # damon_merge_two_regions() sets nr_accesses_bp from the merged count
        ab = np.asarray(absorbed, np.bool_)
        self.nr_accesses_bp = np.where(ab, self.nr_accesses * 10000, self.nr_accesses_bp)

    def split(self, nr_subs: int, min_sz: int, rng: np.random.Generator) -> None:
        """damon_split_regions_of(): each region larger than ``2 * min_sz`` is
        cut into up to ``nr_subs`` pieces; each cut keeps a random 10 %..90 %
        (``damon_rand(1, 10)`` tenths, aligned down to ``min_sz``) of what is
        left of the region on the left and repeats on that left part.  The
        new regions inherit the monitoring results of the region they come from."""
        n = len(self)
        if not n or nr_subs < 2:
            return
        sz = self.end - self.start
        cuts = np.zeros((n, nr_subs - 1), np.int64)
        for j in range(nr_subs - 1):
            tenth = rng.integers(1, 10, n)
            sub = (tenth * sz // 10) // min_sz * min_sz
            ok = (sz > 2 * min_sz) & (sub > 0) & (sub < sz)
            cuts[:, j] = np.where(ok, sub, 0)
            sz = np.where(ok, sub, sz)
        nb = (cuts > 0).sum(axis=1)
        if not nb.any():
            return
        counts = nb + 1
        idx = np.repeat(np.arange(n), counts)
        big = np.iinfo(np.int64).max
        rel = np.zeros((n, nr_subs), np.int64)
        rel[:, 1:] = np.sort(np.where(cuts > 0, cuts, big), axis=1)
        valid = rel != big
        new_start = (self.start[:, None] + np.where(valid, rel, 0))[valid]
        old_end = self.end
        for f in FIELDS:
            setattr(self, f, getattr(self, f)[idx])
        self.start = new_start
        ends = np.empty_like(new_start)
        ends[:-1] = new_start[1:]
        last = np.cumsum(counts) - 1
        ends[last] = old_end
        self.end = ends
        self.sampling_addr = self.start.copy()

    # ---- whole-target updates -------------------------------------------------------------------
    def set_ranges(self, ranges: list[tuple[int, int]], min_sz: int = DAMON_MIN_REGION) -> None:
        """damon_set_regions(): drop regions outside every range; the regions
        intersecting a range are kept, the first and last stretched to the
        range's (``min_sz``-aligned) ends; a range no region intersects gets a
        new region."""
        if not ranges:
            self.take(np.zeros(0, np.int64))
            return
        al = []
        for s, e in ranges:
            a = s // min_sz * min_sz
            b = -(-e // min_sz) * min_sz
            al.append((a, b))
        new_start: list[np.ndarray] = []
        new_end: list[np.ndarray] = []
        src: list[np.ndarray] = []
        for a, b in al:
            sel = np.flatnonzero((self.start < b) & (self.end > a))
            if sel.size:
                st = self.start[sel].copy()
                en = self.end[sel].copy()
                st[0] = a
                en[-1] = b
                new_start.append(st)
                new_end.append(en)
                src.append(sel)
            else:
                new_start.append(np.array([a], np.int64))
                new_end.append(np.array([b], np.int64))
                src.append(np.array([-1], np.int64))
        s_all = np.concatenate(src)
        out = Regions(np.concatenate(new_start), np.concatenate(new_end))
        have = s_all >= 0
        for f in ("nr_accesses", "nr_accesses_bp", "last_nr_accesses", "age"):
            getattr(out, f)[have] = getattr(self, f)[s_all[have]]
        out.sampling_addr = out.start.copy()
        # a region inside two ranges would be duplicated: ranges never overlap (checked by callers)
        for f in FIELDS:
            setattr(self, f, getattr(out, f))

    def evenly_split(self, i: int, nr_pieces: int, min_sz: int = DAMON_MIN_REGION) -> None:
        """damon_va_evenly_split_region(): region ``i`` into ``nr_pieces``
        pieces of ``min_sz``-aligned equal size (the last takes the rest)."""
        if nr_pieces < 2:
            return
        s, e = int(self.start[i]), int(self.end[i])
        sz_piece = (e - s) // nr_pieces // min_sz * min_sz
        if not sz_piece:
            return
        cuts = s + sz_piece * np.arange(1, nr_pieces, dtype=np.int64)
        cuts = cuts[cuts < e]
        k = cuts.size
        for f in FIELDS:
            a = getattr(self, f)
            setattr(self, f, np.insert(a, i + 1, np.repeat(a[i], k)))
        self.start[i + 1:i + 1 + k] = cuts
        self.end[i:i + k] = cuts
        self.sampling_addr[i:i + k + 1] = self.start[i:i + k + 1]


def max_nr_accesses(sample_us: int, aggr_us: int) -> int:
    """damon_max_nr_accesses(): samples per aggregation interval."""
    return max(1, min(aggr_us // (sample_us or 1), (1 << 32) - 1))


def nr_accesses_for_new_attrs(nr: np.ndarray, old: tuple[int, int], new: tuple[int, int]) -> np.ndarray:
    """damon_nr_accesses_for_new_attrs(): the same access rate in the new
    (sample, aggr) intervals."""
    bp = nr * 10000 // max_nr_accesses(*old)
    return bp * max_nr_accesses(*new) // 10000


def age_for_new_attrs(age: np.ndarray, old_aggr: int, new_aggr: int) -> np.ndarray:
    return age * old_aggr // max(new_aggr, 1)
