"""A hot set that moves: every ``period`` of simulated time the hot window
(``hot`` bytes, ``hot_prob`` of the accesses) jumps to a new random place in
``rss``.  VMA: ``phases``."""

from __future__ import annotations

import numpy as np

from cxlemu.userspace.workloads.base import Batch, Param, Workload, WorkloadError, pages_of


class PhaseHotSet(Workload):
    name = "phases"
    summary = "a hot set that jumps elsewhere every period"
    PARAMS = (Param("rss", "size", "8G", "area size"),
              Param("hot", "size", "1G", "hot set size"),
              Param("hot_prob", "float", 0.9, "fraction of accesses to the hot set", 0.0, 1.0),
              Param("period", "duration", "2s", "simulated time between jumps"),
              Param("write_ratio", "float", 0.2, "fraction of writes", 0.0, 1.0))
    default_mlp = 8.0

    def validate(self) -> None:
        if self.p["hot"] > self.p["rss"]:
            raise WorkloadError("hot", "cannot be larger than rss")
        if self.p["period"] <= 0:
            raise WorkloadError("period", "must be positive")

    def setup(self, proc) -> None:
        self.base = self.map(proc, self.p["rss"], "phases")
        self.pages = pages_of(self.p["rss"])
        self.hot_pages = pages_of(self.p["hot"])
        self.phase = -1
        self.hot_start = 0
        self.t0 = None

    def tick(self, proc, now_ns: int) -> None:
        if self.t0 is None:
            self.t0 = now_ns
        ph = (now_ns - self.t0) // self.p["period"]
        if ph != self.phase:
            self.phase = int(ph)
            g = np.random.default_rng(self.phase * 7919 + self.pages)
            self.hot_start = int(g.integers(0, self.pages - self.hot_pages + 1))

    def batch(self, n: int, rng: np.random.Generator) -> Batch:
        idx = rng.integers(0, self.pages, n)
        hot = rng.random(n) < self.p["hot_prob"]
        idx[hot] = self.hot_start + rng.integers(0, self.hot_pages, int(hot.sum()))
        w = rng.random(n) < self.p["write_ratio"] if self.p["write_ratio"] else None
        return Batch(self.base + idx, w)
