"""Allocation churn: grows to ``rss`` in ``chunk``-sized mappings, first
touching each chunk sequentially, then keeps replacing the oldest chunk
with a new one (munmap + mmap + touch) while ``hot_prob`` of its other
accesses go randomly to the live chunks — page reclaim, swap and OOM under
a real allocator's footprint.  With ``churn`` 0 it stops growing at
``rss`` and only accesses.  VMAs: ``chunk-N``."""

from __future__ import annotations

import numpy as np

from cxlemu.userspace.workloads.base import LINES_PER_PAGE, Batch, Param, Workload, WorkloadError, pages_of


class AllocChurn(Workload):
    name = "alloc"
    summary = "grow to rss in chunks, then free the oldest and allocate new ones"
    PARAMS = (Param("rss", "size", "8G", "peak footprint"),
              Param("chunk", "size", "256M", "mapping size"),
              Param("churn", "bool", True, "keep replacing chunks after reaching rss"),
              Param("hot_prob", "float", 0.5, "fraction of accesses to the live chunks", 0.0, 1.0))
    default_mlp = 8.0

    def validate(self) -> None:
        if self.p["chunk"] < 4096 or self.p["chunk"] > self.p["rss"]:
            raise WorkloadError("chunk", "must be between 4K and rss")

    def setup(self, proc) -> None:
        self.proc = proc
        self.live: list[tuple[int, int, int]] = []     # (addr, first vpn, pages)
        self.next_id = 0
        self.fill = 0
        self.cpages = pages_of(self.p["chunk"])
        self.max_live = max(1, self.p["rss"] // self.p["chunk"])
        self._new_chunk()

    def _new_chunk(self) -> None:
        addr = self.proc.mmap(self.p["chunk"], f"chunk-{self.next_id}", "anon",
                              compress_ratio=self.p["compress_ratio"])
        self.next_id += 1
        self.live.append((addr, addr >> 12, self.cpages))
        self.fill = 0

    def batch(self, n: int, rng: np.random.Generator) -> Batch:
        parts_vp, parts_w, parts_c = [], [], []
        k_fill = max(1, int(n * (1 - self.p["hot_prob"])) // LINES_PER_PAGE)
        _, first, pages = self.live[-1]
        if self.fill >= pages:
            if len(self.live) >= self.max_live:
                if self.p["churn"]:
                    addr, _, _ = self.live.pop(0)
                    self.proc.munmap(addr, self.p["chunk"])
                    self._new_chunk()
            else:
                self._new_chunk()
            _, first, pages = self.live[-1]
        if self.fill < pages:
            k = min(k_fill, pages - self.fill)
            parts_vp.append(first + self.fill + np.arange(k))
            parts_w.append(np.ones(k, np.bool_))
            parts_c.append(np.full(k, LINES_PER_PAGE, np.int64))
            self.fill += k
        m = max(1, int(n * self.p["hot_prob"]))
        done_chunks = self.live[:-1] if self.fill < pages else self.live
        if done_chunks:
            which = rng.integers(0, len(done_chunks), m)
            firsts = np.array([c[1] for c in done_chunks], np.int64)
            parts_vp.append(firsts[which] + rng.integers(0, self.cpages, m))
            parts_w.append(rng.random(m) < 0.3)
            parts_c.append(np.ones(m, np.int64))
        return Batch(np.concatenate(parts_vp), np.concatenate(parts_w), np.concatenate(parts_c))
