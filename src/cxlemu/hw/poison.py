"""The media-error state of a Type 3 device: which 64-byte lines are poisoned,
and the *poison list* the device reports about them (CXL r3.1 §8.2.9.9.4,
"Media and Poison Management").

Two things are kept apart, as on hardware:

* the **media truth**: every poisoned range, whatever its source; a read of
  any line in it returns poison (the data path checks it);
* the **poison list**: the records the device *reports* through Get Poison
  List.  It holds at most ``max_records`` records ("Poison List Maximum
  Media Error Records", Identify).  A new error that does not fit sets the
  *Poison List Overflow* flag with the device time of the overflow, and
  stays poisoned but unlisted; Scan Media finds such errors again (and
  errors the device never noticed, "latent" ones) and relists what fits.
  The overflow flag clears when a scan of the whole device leaves every
  error listed (the list is accurate again).

Records are non-overlapping, 64-byte aligned ranges kept sorted by DPA in
numpy arrays, so that a batch of cache lines is checked against them with
``searchsorted`` (one vectorised pass, never a Python loop per line).

Sources are the Media Error Record "Error Source" field (r3.1 Table 8-140):
0 unknown, 1 external (poison received from a requester), 2 internal
(detected by the device), 3 injected, 7 vendor specific.

Inject Poison adds one 64-byte injected record; injecting a line that is
already poisoned succeeds without a new record (QEMU hw/cxl behaves so).
Clear Poison removes [dpa, dpa+64) from whatever record covers it, splitting
a longer record in two; it is not an error when nothing was poisoned there
(the write data is written anyway).  Injected poison does not survive a
cold reset of volatile capacity (DRAM is re-initialised); media errors do.
"""

from __future__ import annotations

from typing import Any

from cxlemu.util.lazy import lazy_module
from cxlemu.util.lazydc import dataclass

np = lazy_module("numpy")   # a device with no poison never needs numpy (cxl list starts without it)

LINE = 64

SOURCE_UNKNOWN = 0
SOURCE_EXTERNAL = 1
SOURCE_INTERNAL = 2
SOURCE_INJECTED = 3
SOURCE_VENDOR = 7
SOURCE_NAMES = {SOURCE_UNKNOWN: "unknown", SOURCE_EXTERNAL: "external", SOURCE_INTERNAL: "internal",
                SOURCE_INJECTED: "injected", SOURCE_VENDOR: "vendor"}

DEFAULT_MAX_RECORDS = 256
DEFAULT_INJECT_LIMIT = 128


@dataclass(frozen=True)
class MediaError:
    """One poisoned range as the device knows it."""

    dpa: int
    length: int
    source: int
    listed: bool = True


def _empty_i64() -> "np.ndarray":
    return np.zeros(0, dtype=np.int64)


def _column(i: int, doc: str) -> property:
    """One of the record arrays (start, length, source, listed): kept in
    ``_cols`` (None while the store is empty, so that an idle device holds no
    numpy array in the machine state)."""
    dtypes = ("int64", "int64", "uint8", "bool")

    def get(self):
        if self._cols is None:
            return np.zeros(0, dtype=dtypes[i])
        return self._cols[i]

    def put(self, value) -> None:
        cols = [self.start, self.length, self.source, self.listed]
        cols[i] = np.asarray(value, dtype=dtypes[i])
        self._cols = tuple(cols) if cols[0].size else None

    return property(get, put, doc=doc)


@dataclass
class PoisonStore:
    """Poisoned ranges of one device plus its poison-list bookkeeping."""

    capacity: int
    max_records: int = DEFAULT_MAX_RECORDS
    inject_limit: int = DEFAULT_INJECT_LIMIT
    _cols: Any = None          # (start, length, source, listed) arrays, or None when empty
    overflow: bool = False
    overflow_ts: int = 0
    # Get Poison List "More" continuation: (request start, request length, next record index)
    cursor: tuple[int, int, int] | None = None

    start = _column(0, "sorted DPAs of the poisoned ranges")
    length = _column(1, "their lengths in bytes (multiples of 64)")
    source = _column(2, "their sources (SOURCE_*)")
    listed = _column(3, "whether each is on the poison list")

    # ---- queries -------------------------------------------------------------------
    def __len__(self) -> int:
        return 0 if self._cols is None else int(self._cols[0].size)

    @property
    def listed_count(self) -> int:
        return int(np.count_nonzero(self.listed))

    @property
    def injected_count(self) -> int:
        return int(np.count_nonzero(self.source == SOURCE_INJECTED))

    def records(self) -> list[MediaError]:
        return [MediaError(int(s), int(n), int(src), bool(li))
                for s, n, src, li in zip(self.start, self.length, self.source, self.listed)]

    def _overlapping(self, lo: int, hi: int) -> tuple[int, int]:
        """Index range [i, j) of records overlapping [lo, hi)."""
        ends = self.start + self.length
        i = int(np.searchsorted(ends, lo, side="right"))
        j = int(np.searchsorted(self.start, hi, side="left"))
        return i, max(i, j)

    def in_range(self, lo: int, hi: int, listed_only: bool = False) -> list[MediaError]:
        i, j = self._overlapping(lo, hi)
        out = [MediaError(int(self.start[k]), int(self.length[k]), int(self.source[k]), bool(self.listed[k]))
               for k in range(i, j)]
        return [r for r in out if r.listed] if listed_only else out

    def first_poisoned(self, dpa: int, n: int) -> int | None:
        """The first poisoned byte address in [dpa, dpa+n), or None."""
        if n <= 0 or not self.start.size:
            return None
        i, j = self._overlapping(dpa, dpa + n)
        if i >= j:
            return None
        return max(dpa, int(self.start[i]))

    def mask(self, dpas: np.ndarray, size: "int | np.ndarray" = LINE) -> np.ndarray:
        """Bool per entry of ``dpas``: does [dpa, dpa+size) touch poison?  Vectorised
        (``size`` may be an array of the same shape)."""
        d = np.asarray(dpas, dtype=np.int64)
        size = np.asarray(size, dtype=np.int64)
        if not self.start.size or not d.size:
            return np.zeros(d.shape, dtype=bool)
        ends = self.start + self.length
        # the first record ending after dpa; it overlaps iff it starts before dpa+size
        i = np.searchsorted(ends, d, side="right")
        ok = i < self.start.size
        ii = np.minimum(i, self.start.size - 1)
        return ok & (self.start[ii] < d + size)

    def covers(self, dpa: int) -> bool:
        return bool(self.mask(np.array([dpa]), 1)[0])

    # ---- mutation --------------------------------------------------------------------
    def _set(self, start, length, source, listed) -> None:
        order = np.argsort(np.asarray(start, dtype=np.int64), kind="stable")
        cols = (np.asarray(start, dtype=np.int64)[order], np.asarray(length, dtype=np.int64)[order],
                np.asarray(source, dtype=np.uint8)[order], np.asarray(listed, dtype=bool)[order])
        self._cols = cols if cols[0].size else None
        self.cursor = None

    def _uncovered(self, lo: int, hi: int) -> list[tuple[int, int]]:
        """Pieces of [lo, hi) not already poisoned."""
        out = []
        pos = lo
        i, j = self._overlapping(lo, hi)
        for k in range(i, j):
            s, e = int(self.start[k]), int(self.start[k] + self.length[k])
            if s > pos:
                out.append((pos, min(s, hi)))
            pos = max(pos, e)
        if pos < hi:
            out.append((pos, hi))
        return out

    def add(self, dpa: int, length: int, source: int, now_ns: int) -> list[MediaError]:
        """A media error over [dpa, dpa+length) appears.  Parts already poisoned
        keep their record; each new piece becomes a record, listed while the list
        has room, else unlisted with the overflow flag set.  Returns the new records."""
        lo = dpa - dpa % LINE
        hi = -(-(dpa + length) // LINE) * LINE
        hi = min(hi, self.capacity)
        new = [(s, e - s) for s, e in self._uncovered(lo, hi)]
        if not new:
            return []
        room = self.max_records - self.listed_count
        listed = [k < room for k in range(len(new))]
        if not all(listed):
            self._set_overflow(now_ns)
        self._set(np.concatenate([self.start, [s for s, _ in new]]),
                  np.concatenate([self.length, [n for _, n in new]]),
                  np.concatenate([self.source, [source] * len(new)]),
                  np.concatenate([self.listed, listed]))
        return [MediaError(s, n, source, li) for (s, n), li in zip(new, listed)]

    def _set_overflow(self, now_ns: int) -> None:
        if not self.overflow:
            self.overflow = True
            self.overflow_ts = now_ns

    def clear(self, dpa: int, length: int, now_ns: int) -> bool:
        """Remove poison from [dpa, dpa+length); True if anything was poisoned there.
        Splitting a listed record into two needs one more list entry: if the list
        is full the remainder becomes unlisted and the list overflows."""
        lo, hi = dpa, dpa + length
        i, j = self._overlapping(lo, hi)
        if i >= j:
            return False
        keep = np.ones(self.start.size, dtype=bool)
        keep[i:j] = False
        add_s, add_n, add_src, add_l = [], [], [], []
        listed_after = self.listed_count - int(np.count_nonzero(self.listed[i:j]))
        for k in range(i, j):
            s, e = int(self.start[k]), int(self.start[k] + self.length[k])
            src, li = int(self.source[k]), bool(self.listed[k])
            for ps, pe in ((s, min(e, lo)), (max(s, hi), e)):
                if pe > ps:
                    ok = li and listed_after < self.max_records
                    if li and not ok:
                        self._set_overflow(now_ns)
                    listed_after += ok
                    add_s.append(ps)
                    add_n.append(pe - ps)
                    add_src.append(src)
                    add_l.append(ok)
        self._set(np.concatenate([self.start[keep], add_s]), np.concatenate([self.length[keep], add_n]),
                  np.concatenate([self.source[keep], add_src]), np.concatenate([self.listed[keep], add_l]))
        return True

    def clear_all(self) -> None:
        """Sanitize / secure erase: every line is rewritten, nothing is poisoned."""
        self._set(_empty_i64(), _empty_i64(), np.zeros(0, np.uint8), np.zeros(0, bool))
        self.overflow = False
        self.overflow_ts = 0

    def drop_injected(self, lo: int, hi: int) -> None:
        """Cold reset of volatile capacity [lo, hi): injected poison there is gone."""
        if not self.start.size:
            return
        gone = (self.source == SOURCE_INJECTED) & (self.start >= lo) & (self.start + self.length <= hi)
        if gone.any():
            k = ~gone
            self._set(self.start[k], self.length[k], self.source[k], self.listed[k])

    def scan(self, lo: int, hi: int, now_ns: int) -> list[MediaError]:
        """Scan Media over [lo, hi): every error there is found; unlisted ones are
        listed while there is room.  A scan of the whole device that leaves
        nothing unlisted clears the overflow flag.  Returns the errors found."""
        i, j = self._overlapping(lo, hi)
        listed = self.listed.copy()
        room = self.max_records - int(np.count_nonzero(listed))
        for k in range(i, j):
            if not listed[k] and room > 0:
                listed[k] = True
                room -= 1
        self.listed = listed
        self.cursor = None
        if lo <= 0 and hi >= self.capacity and bool(listed.all()):
            self.overflow = False
            self.overflow_ts = 0
        return self.in_range(lo, hi)

    # ---- Get Poison List paging (the MORE flag) -----------------------------------------
    def list_page(self, lo: int, hi: int, cap: int) -> tuple[list[MediaError], bool]:
        """Listed records overlapping [lo, hi), ``cap`` at a time: a repeated
        identical request continues where the previous MORE response stopped."""
        recs = self.in_range(lo, hi, listed_only=True)
        first = 0
        if self.cursor is not None and self.cursor[:2] == (lo, hi):
            first = self.cursor[2]
        page = recs[first:first + cap]
        more = first + cap < len(recs)
        self.cursor = (lo, hi, first + cap) if more else None
        return page, more
