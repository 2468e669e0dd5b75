"""zswap: a compressed cache in RAM in front of the swap device (mm/zswap.c).

Reclaim offers each anonymous/shmem page that got a swap slot to zswap;
when enabled (``/sys/module/zswap/parameters/enabled``) it compresses the
page into its pool (``zswpout``) instead of writing it to the device.  The
pool lives in kernel pages allocated like slab memory on the node of the
CPU doing the reclaim (zsmalloc, GFP_KERNEL, no node preference), so pages
reclaimed from a CXL node can end up, compressed, in local DRAM: the
"unwanted promotion" LSF/MM 2023 discussed (seed 002).

* pool limit: ``max_pool_percent`` (20) of total RAM; reaching it sets
  ``pool_limit_hit`` and refuses stores until the pool drops below
  ``accept_threshold_percent`` (90) of the limit, while a worker writes the
  oldest entries back to the device (``zswpwb``, ``pswpout``);
* a fault on a zswap entry decompresses it (``zswpin``) and frees the entry;
* compressed size = 4096 / the data's compression ratio (a property of the
  workload's data, default 3.0); pool pages = ceil(bytes / 4096).

CPU cost per 4 KiB page (compress / decompress), single core, rough
published figures for the kernel's compressors: lzo 4 / 1.5 µs, lz4 2 / 0.7
µs, zstd 10 / 2.5 µs.
"""

from __future__ import annotations

from dataclasses import field

import numpy as np

from cxlemu.util.lazydc import dataclass

COMPRESSORS = {"lzo": (4000, 1500), "lzo-rle": (3500, 1400), "lz4": (2000, 700), "lz4hc": (12000, 700),
               "zstd": (10000, 2500), "deflate": (30000, 5000), "842": (8000, 3000)}
ZPOOLS = ("zsmalloc", "zbud", "z3fold")


@dataclass
class Zswap:
    enabled: bool = False
    compressor: str = "lzo"
    zpool: str = "zsmalloc"
    max_pool_percent: int = 20
    accept_threshold_percent: int = 90
    shrinker_enabled: bool = False
    pool_bytes: int = 0
    stored_pages: int = 0
    pool_frames: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    reached_full: bool = False
    pool_limit_hit: int = 0
    reject_alloc_fail: int = 0
    reject_compress_poor: int = 0
    written_back_pages: int = 0
    stamp: int = 0
    pool_node: str = "reclaimer"   # "page": keep the compressed copy on the page's node (seed 002's fix)

    @property
    def pool_pages(self) -> int:
        return int(self.pool_frames.size)

    def costs(self) -> tuple[int, int]:
        return COMPRESSORS.get(self.compressor, COMPRESSORS["lzo"])

    def max_pages(self, totalram_pages: int) -> int:
        return totalram_pages * self.max_pool_percent // 100

    def accept_pages(self, totalram_pages: int) -> int:
        return self.max_pages(totalram_pages) * self.accept_threshold_percent // 100

    def check_limits(self, totalram_pages: int) -> bool:
        """zswap_check_limits(): True while stores are refused."""
        cur = self.pool_pages
        if cur >= self.max_pages(totalram_pages):
            self.pool_limit_hit += 1
            self.reached_full = True
        elif self.reached_full and cur <= self.accept_pages(totalram_pages):
            self.reached_full = False
        return self.reached_full


# --------------------------------------------------------------------------------------------
# store / load / writeback over a kernel's VmState
# --------------------------------------------------------------------------------------------
@dataclass
class StoreResult:
    mask: np.ndarray          # pages stored in zswap
    cost_ns: float = 0.0


def totalram_pages(vm) -> int:
    return sum(b.managed for b in vm.mm.blocks.values() if b.online)


def page_ratios(vm, frames: np.ndarray) -> np.ndarray:
    """The compression ratio of each page's data (its VMA's or file's)."""
    from cxlemu.kernel.mm import rmap
    from cxlemu.kernel.mm.mmap import File, MmStruct
    pf = vm.frames
    out = np.full(frames.size, 3.0)
    owner = pf.owner[frames]
    index = pf.index[frames].astype(np.int64)
    for oid, pos in rmap.groups(owner):
        sp = vm.spaces.get(oid)
        if isinstance(sp, File):
            out[pos] = sp.compress_ratio
        elif isinstance(sp, MmStruct) and sp.vmas:
            vi = sp.vma_index(index[pos])
            ratios = np.array([v.compress_ratio for v in sp.vmas] + [3.0])
            out[pos] = ratios[vi]
    return np.maximum(out, 1.0)


def _resize_pool(vm, z: Zswap, nid: int, node_local: bool = False) -> bool:
    """Grow or shrink the pool's pages to hold ``pool_bytes``; False if it cannot grow.
    ``node_local``: the new pages come from node ``nid`` only, from any of its
    zones (zsmalloc pages are movable, so ZONE_MOVABLE of a CXL node serves)."""
    want = -(-z.pool_bytes // 4096)
    have = z.pool_frames.size
    pa = vm.page_alloc
    if want > have:
        if node_local:
            from cxlemu.kernel.mm.page_alloc import USER_ZONES
            got = pa.alloc(want - have, nid, (nid,), kernel=True, reclaim=False, zones=USER_ZONES)
        else:
            got = pa.alloc(want - have, nid, kernel=True, reclaim=False)
        z.pool_frames = np.concatenate([z.pool_frames, got])
        return got.size == want - have
    if want < have:
        pa.free_kernel(z.pool_frames[want:])
        z.pool_frames = z.pool_frames[:want].copy()
    return True


def store(vm, dev, pages: np.ndarray, slots: np.ndarray, nid: int) -> StoreResult:
    """zswap_store() for pages that got swap slots."""
    z = vm.zswap
    n = pages.size
    mask = np.zeros(n, np.bool_)
    if z is None or not z.enabled or not n:
        return StoreResult(mask)
    total = totalram_pages(vm)
    if z.check_limits(total):
        writeback(vm)
        return StoreResult(mask)
    sizes = np.minimum(np.ceil(4096 / page_ratios(vm, pages)), 4096).astype(np.int64)
    poor = sizes >= 4096
    z.reject_compress_poor += int(poor.sum())
    room = max(z.max_pages(total) * 4096 - z.pool_bytes, 0)
    cum = np.cumsum(np.where(poor, 0, sizes))
    ok = ~poor & (cum <= room)
    k = int(np.count_nonzero(ok))
    if not k:
        z.check_limits(total + 0)
        return StoreResult(mask)
    cpu = vm.kernel.sched.cpu_node_of_kthread(nid) if hasattr(vm.kernel, "sched") else 0
    local = z.pool_node == "page"
    if local:
        cpu = nid             # the compressed copy stays on the page's node
    before = z.pool_bytes
    z.pool_bytes += int(sizes[ok].sum())
    if not _resize_pool(vm, z, cpu, node_local=local):
        # no memory for the pool: store only what fits in the pages it has
        z.reject_alloc_fail += 1
        cap = z.pool_frames.size * 4096 - before
        cum_ok = np.cumsum(np.where(ok, sizes, 0))
        ok &= cum_ok <= cap
        z.pool_bytes = before + int(sizes[ok].sum())
        k = int(np.count_nonzero(ok))
    s = slots[ok]
    dev.in_zswap[s] = True
    dev.zsize[s] = sizes[ok].astype(np.uint16)
    dev.zstamp[s] = z.stamp + np.arange(k)
    z.stamp += k
    z.stored_pages += k
    vm.vmstat.count("zswpout", k)
    comp, _ = z.costs()
    vm.add_traffic(cpu, write=float(sizes[ok].sum()))
    mask[ok] = True
    z.check_limits(total)
    return StoreResult(mask, k * comp)


def load(vm, dev, slots: np.ndarray) -> tuple[np.ndarray, float]:
    """zswap_load(): which slots were in zswap (now freed from it) and the cost."""
    z = vm.zswap
    if z is None or dev.in_zswap.size == 0:
        return np.zeros(slots.size, np.bool_), 0.0
    hit = dev.in_zswap[slots]
    k = int(np.count_nonzero(hit))
    if k:
        hs = slots[hit]
        z.pool_bytes -= int(dev.zsize[hs].astype(np.int64).sum())
        z.stored_pages -= k
        dev.in_zswap[hs] = False
        dev.zsize[hs] = 0
        cpu = vm.kernel.sched.cpu_node_of_kthread(0) if hasattr(vm.kernel, "sched") else 0
        _resize_pool(vm, z, cpu)
        vm.vmstat.count("zswpin", k)
    _, dec = z.costs()
    return hit, k * dec


def writeback(vm) -> int:
    """shrink_worker(): write the oldest entries to the swap device until the
    pool is below the acceptance threshold."""
    z = vm.zswap
    if z is None or not vm.swap:
        return 0
    dev = vm.swap[0]
    total = totalram_pages(vm)
    target = z.accept_pages(total)
    if z.pool_pages <= target or not dev.in_zswap.size:
        return 0
    slots = np.flatnonzero(dev.in_zswap)
    order = slots[np.argsort(dev.zstamp[slots], kind="stable")]
    sizes = dev.zsize[order].astype(np.int64)
    excess = (z.pool_pages - target) * 4096
    k = int(np.searchsorted(np.cumsum(sizes), excess) + 1)
    k = min(k, order.size)
    wb = order[:k]
    z.pool_bytes -= int(sizes[:k].sum())
    z.stored_pages -= k
    dev.in_zswap[wb] = False
    dev.zsize[wb] = 0
    z.written_back_pages += k
    vm.vmstat.count("zswpwb", k)
    vm.vmstat.count("pswpout", k)
    cpu = vm.kernel.sched.cpu_node_of_kthread(0) if hasattr(vm.kernel, "sched") else 0
    _resize_pool(vm, z, cpu)
    z.check_limits(total)
    return k
