"""Traversal of a synthetic power-law graph in CSR form (GAPBS/Graph500-like).

``vertices`` vertices with a mean degree ``degree``; vertex degrees follow
a power law (exponent ``alpha`` over degree rank) and popular vertices are
visited more (Zipf ``alpha``), as in BFS or PageRank on social graphs.  A
visit reads the vertex's offset, its edge list (contiguous, every line) and
the values of up to 8 neighbours, themselves drawn from the popularity
distribution.  VMAs: ``graph-offsets`` (8 B/vertex), ``graph-edges`` (4 B
per edge), ``graph-values`` (8 B/vertex)."""

from __future__ import annotations

import numpy as np

from cxlemu.userspace.workloads.base import Batch, Param, Workload, WorkloadError
from cxlemu.userspace.zipf import ZipfSampler, scramble


class GraphWalk(Workload):
    name = "graph"
    summary = "visits on a power-law graph (offsets, edges, neighbour values)"
    PARAMS = (Param("vertices", "count", "8M", "number of vertices", 2),
              Param("degree", "float", 16.0, "mean degree", 1.0, 1e4),
              Param("alpha", "float", 0.8, "power-law exponent (popularity and degree)", 0.05, 0.99))
    default_mlp = 6.0
    default_cpu_ns = 5.0

    def validate(self) -> None:
        if self.p["vertices"] > 1 << 34:
            raise WorkloadError("vertices", "too many vertices")

    def setup(self, proc) -> None:
        n = self.p["vertices"]
        # degrees by rank: d(r) ∝ (r+1)^-alpha, scaled to the mean degree, at least 1
        r = np.arange(n, dtype=np.float64)
        w = (r + 1) ** -self.p["alpha"]
        deg = np.maximum(1, np.round(w / w.mean() * self.p["degree"])).astype(np.int64)
        vid = scramble(np.arange(n), n, 0x5EED)        # vertex id of each rank
        self.deg = np.empty(n, np.int64)
        self.deg[vid] = deg
        self.edge_off = np.concatenate([[0], np.cumsum(self.deg)[:-1]])
        m = int(self.deg.sum())
        self.offsets = self.map(proc, n * 8, "graph-offsets")
        self.edges = self.map(proc, m * 4, "graph-edges")
        self.values = self.map(proc, n * 8, "graph-values")
        self.zipf = ZipfSampler(n, self.p["alpha"])

    def batch(self, n: int, rng: np.random.Generator) -> Batch:
        nv = self.p["vertices"]
        visits = max(1, n // 10)
        v = scramble(self.zipf.sample(visits, rng), nv, 0x5EED)
        d = self.deg[v]
        nb = np.minimum(d, 8)
        nbr = scramble(self.zipf.sample(int(nb.sum()), rng), nv, 0x5EED)
        lines = np.maximum(1, (d * 4 + 63) // 64)
        parts_vp = [self.offsets + (v * 8 >> 12), self.edges + (self.edge_off[v] * 4 >> 12),
                    self.values + (nbr * 8 >> 12)]
        parts_c = [np.ones(visits, np.int64), lines, np.ones(nbr.size, np.int64)]
        return Batch(np.concatenate(parts_vp), None, np.concatenate(parts_c))
