"""Pointer chasing: each access depends on the previous one (one miss in
flight), following a random cycle through the pages of ``rss``.
VMA: ``chase``."""

from __future__ import annotations

import numpy as np

from cxlemu.userspace.workloads.base import Batch, Param, Workload, pages_of


class PointerChase(Workload):
    name = "chase"
    summary = "dependent loads along a random cycle (latency bound)"
    PARAMS = (Param("rss", "size", "1G", "area size"),)
    default_mlp = 1.0
    default_cpu_ns = 1.0

    def setup(self, proc) -> None:
        self.base = self.map(proc, self.p["rss"], "chase")
        self.pages = pages_of(self.p["rss"])
        self.order = None
        self.pos = 0

    def batch(self, n: int, rng: np.random.Generator) -> Batch:
        if self.order is None:
            self.order = rng.permutation(self.pages).astype(np.int32 if self.pages < 1 << 31 else np.int64)
        idx = self.order[(self.pos + np.arange(n)) % self.pages]
        self.pos = int((self.pos + n) % self.pages)
        return Batch(self.base + idx.astype(np.int64))
