"""A key-value store with Zipf-distributed key popularity (YCSB-like).

``keys`` values of ``value_size`` bytes (or as many as fit in ``rss``) live in
VMA ``kv-values``; a hash index of 16 bytes per key in ``kv-index``.  Each
operation reads the key's index bucket and then reads (``read_ratio``) or
writes its value — every cache line of it.  Popular keys are scattered over
the value area by a bijective hash, so hot pages are spread as in a real
store.

With ``load`` (the default) the run starts with the load phase: every key
inserted in key order, writing the index and the values sequentially, so
first-touch placement follows insertion order, not popularity."""

from __future__ import annotations

import numpy as np

from cxlemu.userspace.workloads.base import Batch, Param, Workload, WorkloadError
from cxlemu.userspace.zipf import ZipfSampler, scramble


class KeyValue(Workload):
    name = "kv"
    summary = "Zipf key-value store: index lookup + value read/write"
    PARAMS = (Param("keys", "count", 0, "number of keys (0: as many as fit in rss)"),
              Param("rss", "size", "8G", "value area size when keys is 0"),
              Param("value_size", "size", 1024, "bytes per value", 8, 1 << 20),
              Param("alpha", "float", 0.99, "Zipf exponent (0..1 YCSB-style, or > 1)", 0.01, 5.0),
              Param("read_ratio", "float", 0.95, "fraction of reads", 0.0, 1.0),
              Param("load", "bool", True, "insert every key first, in key order (YCSB load phase)"))
    default_mlp = 4.0
    default_cpu_ns = 20.0

    def validate(self) -> None:
        a = self.p["alpha"]
        if not (0 < a < 1 or a > 1):
            raise WorkloadError("alpha", "must be in (0, 1) or greater than 1")
        if not self.p["keys"]:
            if self.p["rss"] < self.p["value_size"]:
                raise WorkloadError("rss", "must hold at least one value (or give keys)")
            self.p["keys"] = self.p["rss"] // self.p["value_size"]
        if self.p["keys"] > 1 << 40:
            raise WorkloadError("keys", "too many keys")

    def setup(self, proc) -> None:
        n = self.p["keys"]
        vs = self.p["value_size"]
        self.index = self.map(proc, n * 16, "kv-index")
        self.values = self.map(proc, n * vs, "kv-values")
        self.zipf = ZipfSampler(n, self.p["alpha"])
        self.lines = max(1, -(-vs // 64))
        self.load_pages = [(self.index, -(-n * 16 // 4096)), (self.values, -(-n * vs // 4096))] \
            if self.p["load"] else []
        self.load_pos = 0

    def _load_batch(self, n: int) -> Batch:
        base, pages = self.load_pages[0]
        k = min(pages - self.load_pos, max(1, n // 64))
        vp = base + self.load_pos + np.arange(k, dtype=np.int64)
        self.load_pos += k
        if self.load_pos >= pages:
            self.load_pages.pop(0)
            self.load_pos = 0
        # inserting is streaming stores: many lines in flight, little compute per line
        return Batch(vp, np.ones(k, np.bool_), np.full(k, 64, np.int64), mlp=32.0, cpu_ns=0.5)

    def batch(self, n: int, rng: np.random.Generator) -> Batch:
        if self.load_pages:
            return self._load_batch(n)
        ops = max(1, n // 2)
        keys = scramble(self.zipf.sample(ops, rng), self.p["keys"])
        vs = self.p["value_size"]
        idx_pages = self.index + (keys * 16 >> 12)
        val_pages = self.values + (keys * vs >> 12)
        writes = rng.random(ops) >= self.p["read_ratio"]
        vp = np.empty(2 * ops, np.int64)
        vp[0::2] = idx_pages
        vp[1::2] = val_pages
        w = np.zeros(2 * ops, np.bool_)
        w[1::2] = writes
        counts = np.ones(2 * ops, np.int64)
        counts[1::2] = self.lines
        return Batch(vp, w, counts)
