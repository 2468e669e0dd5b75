"""GUPS with a hot set (HeMem SOSP'21, Colloid SOSP'24): random
read-modify-write updates over ``rss``; a fraction ``hot_prob`` of them goes
to a contiguous hot set of ``hot`` bytes at a random place.  VMA: ``gups``."""

from __future__ import annotations

import math

import numpy as np

from cxlemu.userspace.workloads.base import Batch, Param, Workload, WorkloadError, pages_of


class Gups(Workload):
    name = "gups"
    summary = "random updates over rss, hot_prob of them to a hot set"
    PARAMS = (Param("rss", "size", "16G", "table size"),
              Param("hot", "size", 0, "hot set size (0: none)"),
              Param("hot_prob", "float", 0.9, "fraction of updates to the hot set", 0.0, 1.0),
              Param("hot_offset", "size", -1, "where the hot set starts (-1: random)", -1))
    default_mlp = 8.0
    default_cpu_ns = 2.0

    def validate(self) -> None:
        if self.p["rss"] < 4096:
            raise WorkloadError("rss", "must be at least 4K")
        if self.p["hot"] > self.p["rss"]:
            raise WorkloadError("hot", "cannot be larger than rss")

    def setup(self, proc) -> None:
        self.base = self.map(proc, self.p["rss"], "gups")
        self.pages = pages_of(self.p["rss"])
        self.hot_pages = pages_of(self.p["hot"]) if self.p["hot"] else 0
        self.hot_start = -1

    def batch(self, n: int, rng: np.random.Generator) -> Batch:
        if self.hot_start < 0:
            off = self.p["hot_offset"]
            self.hot_start = (off // 4096) if off >= 0 else int(rng.integers(0, self.pages - self.hot_pages + 1))
            self.hot_start = min(self.hot_start, self.pages - self.hot_pages)
        p = self.p["hot_prob"] if self.hot_pages else 0.0
        if 0.0 < p < 1.0 and n * p * 4 >= self.hot_pages:
            # a hot set small enough to be touched all over in one batch: list its touched
            # pages once with their counts (simple.uniform_batch), the rest one by one
            from cxlemu.userspace.workloads.simple import uniform_batch
            nh = int(rng.binomial(n, p))
            hb = uniform_batch(self.base + self.hot_start, self.hot_pages, nh, rng)
            cold_n = n - nh
            idx = (rng.random(cold_n) * self.pages).astype(np.int64)      # the rest: over the whole table
            vp = np.concatenate([hb.vpages, self.base + idx])
            counts = np.concatenate([hb.counts if hb.counts is not None else np.ones(hb.vpages.size, np.int64),
                                     np.ones(cold_n, np.int64)])
            return Batch(vp, np.ones(vp.size, np.bool_), counts)
        # each update goes to the hot set with probability hot_prob, else to
        # a uniform page of the table: draw the majority kind for every slot,
        # then overwrite slots picked uniformly (with repeats) with the other
        # kind, as many as make each slot the other kind with the right
        # probability (1 - (1 - 1/n)^m = q  =>  m = -n ln(1 - q)): cheaper
        # than a per-update choice and the kinds stay randomly interleaved
        p = self.p["hot_prob"] if self.hot_pages else 0.0
        lo_h, hi_h = self.hot_start, self.hot_start + self.hot_pages
        if p >= 1.0:
            idx = rng.integers(lo_h, hi_h, n)
        elif p <= 0.0:
            idx = rng.integers(0, self.pages, n)
        elif p >= 0.5:
            idx = rng.integers(lo_h, hi_h, n)
            m = int(round(-n * math.log(p)))
            if m:
                idx[rng.integers(0, n, m)] = rng.integers(0, self.pages, m)
        else:
            idx = rng.integers(0, self.pages, n)
            m = int(round(-n * math.log(1.0 - p)))
            if m:
                idx[rng.integers(0, n, m)] = rng.integers(lo_h, hi_h, m)
        idx += self.base
        return Batch(idx, np.ones(n, np.bool_))
