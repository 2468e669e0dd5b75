"""Simple access patterns: sequential scan, uniform random, hot/cold."""

from __future__ import annotations

import numpy as np

from cxlemu.userspace.workloads.base import LINES_PER_PAGE, Batch, Param, Workload, WorkloadError, pages_of


class SeqScan(Workload):
    """Reads (or writes) ``rss`` sequentially, page after page, over and over.
    VMA: ``scan``."""
    name = "seqscan"
    summary = "sequential passes over rss"
    PARAMS = (Param("rss", "size", "4G", "area size"),
              Param("write_ratio", "float", 0.0, "fraction of pages written", 0.0, 1.0))
    default_mlp = 32.0
    default_cpu_ns = 0.5

    def setup(self, proc) -> None:
        self.base = self.map(proc, self.p["rss"], "scan")
        self.pages = pages_of(self.p["rss"])
        self.pos = 0

    def batch(self, n: int, rng: np.random.Generator) -> Batch:
        k = max(1, n // LINES_PER_PAGE)
        idx = (self.pos + np.arange(k)) % self.pages
        self.pos = int((self.pos + k) % self.pages)
        w = rng.random(k) < self.p["write_ratio"] if self.p["write_ratio"] else None
        return Batch(self.base + idx, w, np.full(k, LINES_PER_PAGE, np.int64))


class Uniform(Workload):
    """Uniform random accesses over ``rss``.  VMA: ``uniform``."""
    name = "uniform"
    summary = "uniform random accesses over rss"
    PARAMS = (Param("rss", "size", "4G", "area size"),
              Param("write_ratio", "float", 0.0, "fraction of writes", 0.0, 1.0))
    default_mlp = 8.0

    def setup(self, proc) -> None:
        self.base = self.map(proc, self.p["rss"], "uniform")
        self.pages = pages_of(self.p["rss"])

    def batch(self, n: int, rng: np.random.Generator) -> Batch:
        idx = self.base + rng.integers(0, self.pages, n)
        w = rng.random(n) < self.p["write_ratio"] if self.p["write_ratio"] else None
        return Batch(idx, w)


class HotCold(Workload):
    """A ``hot`` area accessed uniformly and a ``cold`` one written once at
    start (DAMON's migrate_hot/cold example).  VMAs: ``hot``, ``cold``."""
    name = "hotcold"
    summary = "a hot area accessed all the time, a cold one touched once"
    PARAMS = (Param("hot", "size", "500M", "hot area"),
              Param("cold", "size", "600M", "cold area"))
    default_mlp = 8.0

    def validate(self) -> None:
        if self.p["hot"] <= 0:
            raise WorkloadError("hot", "must be positive")

    def setup(self, proc) -> None:
        # cold first: it is allocated (and first touched) before the hot area
        self.cold = self.map(proc, self.p["cold"], "cold") if self.p["cold"] else 0
        self.hot = self.map(proc, self.p["hot"], "hot")
        self.cold_pages = pages_of(self.p["cold"]) if self.p["cold"] else 0
        self.hot_pages = pages_of(self.p["hot"])
        self.cold_pos = 0

    def batch(self, n: int, rng: np.random.Generator) -> Batch:
        if self.cold_pos < self.cold_pages:
            k = min(self.cold_pages - self.cold_pos, max(1, n // LINES_PER_PAGE))
            idx = self.cold + self.cold_pos + np.arange(k)
            self.cold_pos += k
            return Batch(idx, np.ones(k, np.bool_), np.full(k, LINES_PER_PAGE, np.int64), mlp=32.0, cpu_ns=0.5)
        return uniform_batch(self.hot, self.hot_pages, n, rng)


def uniform_batch(base: int, pages: int, n: int, rng: np.random.Generator) -> Batch:
    """``n`` uniform random accesses over ``pages`` pages.  When ``n`` is at
    least a quarter of ``pages`` the batch lists each touched page once with
    its count: a page is touched with probability ``1 - exp(-n/pages)`` (as
    when drawing ``n`` accesses), and the ``n`` accesses are spread evenly over
    the touched pages, so accessed bits, faults and per-node traffic are those
    of the ``n`` accesses at a fraction of the cost."""
    if n * 4 < pages:
        return Batch(base + rng.integers(0, pages, n))
    p = -np.expm1(-n / pages)
    if p > 0.99:          # (at most 1 % of the pages would go untouched: all are touched)
        touched = np.arange(pages, dtype=np.int64)
    else:
        touched = np.flatnonzero(rng.random(pages, np.float32) < p)
    if not touched.size:
        touched = rng.integers(0, pages, 1)
    q, rem = divmod(n, touched.size)
    counts = np.full(touched.size, q, np.int64)
    counts[:rem] += 1
    keep = counts > 0
    return Batch(base + touched[keep], None, counts[keep])
