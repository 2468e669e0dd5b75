"""Swap space (mm/swapfile.c, mm/swap_state.c, mm/page_io.c, mm/workingset.c).

One swap device of the machine's topology (``[boot] swap = "8G"``; slot 0
is the header page, so a device of S bytes has S/4096 - 1 slots), shown in
/proc/swaps and SwapTotal/SwapFree.  Reclaim stores anonymous and shmem
pages in slots (``pswpout``), or hands them to zswap first when it is
enabled (``zswpout``); a fault on a swap entry reads the page back
(``pswpin``/``zswpin``, ``pgmajfault``) and frees the slot (cxlemu keeps no
swap cache).

Working-set detection (mm/workingset.c): an evicted page leaves a *shadow*
(its node and the node's non-resident age at eviction).  When it faults
back, the refault distance (age now - age then) tells whether it would have
stayed resident with that much more memory: a distance within the node's
active + inactive list sizes activates the page (``workingset_activate``).

Device timing: 4 KiB random read 80 µs, write 20 µs (a datacenter NVMe SSD;
order-of-magnitude figures, not a calibration).
"""

from __future__ import annotations

from dataclasses import field

import numpy as np

from cxlemu.util.lazydc import dataclass

SWAP_READ_NS = 80_000
SWAP_WRITE_NS = 20_000


@dataclass
class SwapDevice:
    name: str
    slots: int                         # usable pages (si->pages)
    priority: int = -2
    kind: str = "partition"
    free: np.ndarray = field(default_factory=lambda: np.zeros(0, np.bool_))
    shadow: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    in_zswap: np.ndarray = field(default_factory=lambda: np.zeros(0, np.bool_))
    zsize: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint16))
    zstamp: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    used: int = 0
    cursor: int = 0

    def _arrays(self) -> None:
        if self.free.size != self.slots:
            self.free = np.ones(self.slots, np.bool_)
            self.shadow = np.zeros(self.slots, np.int64)
            self.in_zswap = np.zeros(self.slots, np.bool_)
            self.zsize = np.zeros(self.slots, np.uint16)
            self.zstamp = np.zeros(self.slots, np.int64)

    def alloc(self, n: int) -> np.ndarray:
        """get_swap_pages(): up to ``n`` free slots (next fit)."""
        if n <= 0 or self.used >= self.slots:
            return np.zeros(0, np.int64)
        self._arrays()
        idx = np.flatnonzero(self.free[self.cursor:])[:n] + self.cursor
        if idx.size < n and self.cursor:
            idx = np.concatenate([idx, np.flatnonzero(self.free[:self.cursor])[: n - idx.size]])
        self.free[idx] = False
        self.used += idx.size
        if idx.size:
            self.cursor = int(idx[-1] + 1) % self.slots
        return idx.astype(np.int64)

    def release(self, slots: np.ndarray) -> None:
        """swap_free(): the slots are free again (shadows stay until reuse)."""
        slots = np.asarray(slots, np.int64)
        if not slots.size:
            return
        self.free[slots] = True
        self.in_zswap[slots] = False
        self.zsize[slots] = 0
        self.used -= slots.size
        if self.used == 0:
            self.free = np.zeros(0, np.bool_)
            self.shadow = np.zeros(0, np.int64)
            self.in_zswap = np.zeros(0, np.bool_)
            self.zsize = np.zeros(0, np.uint16)
            self.zstamp = np.zeros(0, np.int64)
            self.cursor = 0


def format_swaps(devs: list[SwapDevice]) -> str:
    """/proc/swaps (swap_show)."""
    out = ["Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n"]
    for d in devs:
        size = d.slots * 4
        used = d.used * 4
        pad = 40 - len(d.name) if len(d.name) < 40 else 1
        kind = "partition" if d.kind == "partition" else "file\t"
        out.append(f"{d.name}{' ' * pad}{kind}\t{size}\t{chr(9) if size < 10000000 else ''}"
                   f"{used}\t{chr(9) if used < 10000000 else ''}{d.priority}\n")
    return "".join(out)


def shadow_pack(nid: int, age: int) -> np.ndarray:
    return (np.int64(nid) << 48) | np.asarray(age, np.int64)


def shadow_unpack(sh: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    sh = np.asarray(sh, np.int64)
    return sh >> 48, sh & ((1 << 48) - 1)
