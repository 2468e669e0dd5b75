"""STREAM triad a[i] = b[i] + s * c[i] over three arrays of ``rss`` / 3:
b and c read, a written, every cache line, sequentially.
VMAs: ``a``, ``b``, ``c``."""

from __future__ import annotations

import numpy as np

from cxlemu.userspace.workloads.base import LINES_PER_PAGE, Batch, Param, Workload, WorkloadError, pages_of


class StreamTriad(Workload):
    name = "stream"
    summary = "STREAM triad: two sequential read streams, one write stream"
    PARAMS = (Param("rss", "size", "3G", "total size of the three arrays"),)
    default_mlp = 32.0
    default_cpu_ns = 0.3

    def validate(self) -> None:
        if self.p["rss"] < 3 * 4096:
            raise WorkloadError("rss", "must be at least 12K")

    def setup(self, proc) -> None:
        each = self.p["rss"] // 3
        self.a = self.map(proc, each, "a")
        self.b = self.map(proc, each, "b")
        self.c = self.map(proc, each, "c")
        self.pages = pages_of(each)
        self.pos = 0

    def batch(self, n: int, rng: np.random.Generator) -> Batch:
        k = max(1, n // (3 * LINES_PER_PAGE))
        idx = (self.pos + np.arange(k)) % self.pages
        self.pos = int((self.pos + k) % self.pages)
        vp = np.empty(3 * k, np.int64)
        vp[0::3] = self.b + idx
        vp[1::3] = self.c + idx
        vp[2::3] = self.a + idx
        w = np.zeros(3 * k, np.bool_)
        w[2::3] = True
        return Batch(vp, w, np.full(3 * k, LINES_PER_PAGE, np.int64))
