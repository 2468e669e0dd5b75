"""Data path throughput, as ratios to a numpy copy measured in the same run.

    python benchmarks/bench_datapath.py [--size 256M]

* sequential write then read of SIZE through a 1-way region and a 4-way
  4 KiB-interleaved region (HpaSpace.write / read_into), first pass (pages of
  the sparse media files are allocated) and steady state (second pass);
* batched random 64-byte reads (HpaSpace.gather), accesses per second.

For comparison, QEMU 7.2's emulated CXL memory moves 30-77 MB/s through a
devdax mapping (software emulation).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from cxltest_support import boot_text, create_region, fabric_toml  # noqa: E402

from cxlemu.data.datapath import HpaSpace  # noqa: E402
from cxlemu.data.media import MediaStore  # noqa: E402
from cxlemu.util.units import parse_size  # noqa: E402


def best(fn, reps: int = 3) -> float:
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def bench_region(label: str, toml: str, order: list[str], size: int, tmp: Path):
    """Write then read SIZE through a fresh region; print MB/s and ratios."""
    b = boot_text(toml)
    create_region(b, "decoder0.0", order, gran=4096, size=1 << 30)
    region = b.kernel.cxl.regions.all()[0]
    media = MediaStore(tmp / label.replace(" ", "_"))
    hs = HpaSpace(b.kernel.platform, media)
    src = np.random.default_rng(len(order)).integers(0, 256, size, dtype=np.uint8)
    dst = np.empty(size, dtype=np.uint8)
    base = region.res.start
    t0 = time.perf_counter()
    hs.write(base, src)
    first = time.perf_counter() - t0
    t_w = best(lambda: hs.write(base, src))
    t_r = best(lambda: hs.read_into(base, dst))
    assert np.array_equal(src, dst)
    t_np = best(lambda: np.copyto(dst, src))
    mb = size / 1e6
    print(f"{label:16} write {mb / t_w:7.0f} MB/s ({t_np / t_w:4.2f}x numpy copy)  "
          f"read {mb / t_r:7.0f} MB/s ({t_np / t_r:4.2f}x)  first-touch write {mb / first:6.0f} MB/s  "
          f"numpy copy {mb / t_np:6.0f} MB/s")
    return hs, media, src, base


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="256M")
    ap.add_argument("--lines", type=int, default=1_000_000)
    args = ap.parse_args()
    size = parse_size(args.size)
    with tempfile.TemporaryDirectory(prefix="cxlemu-bench-") as d:
        tmp = Path(d)
        print(f"sequential {args.size} through a region (numpy copy of the same size is the baseline)")
        bench_region("1-way", fabric_toml(1, 1, 0, gran=4096, dev_size="1G"), ["mem0"], size, tmp)[1].close()
        # 4-way: 2 host bridges x 2 root ports at 4 KiB (position p: host bridge p % 2, root port p // 2)
        hs, media, src, base = bench_region("4-way x 4 KiB", fabric_toml(2, 2, 0, gran=4096, dev_size="1G"),
                                            ["mem0", "mem2", "mem1", "mem3"], size, tmp)
        print("targets: 1-way >= 0.5x, 4-way >= 0.3x; QEMU 7.2 emulated CXL memory: 30-77 MB/s")

        n = args.lines
        lines = (np.random.default_rng(2).integers(0, size // 64, n).astype(np.uint64) * np.uint64(64)
                 + np.uint64(base))
        t_g = best(lambda: hs.gather(lines), reps=3)
        flat = src.reshape(-1, 64)
        t_base = best(lambda: flat[((lines - np.uint64(base)) // np.uint64(64)).astype(np.int64)], reps=3)
        print(f"batched random 64-byte reads: {n / t_g / 1e6:.2f} M accesses/s "
              f"({t_base / t_g:.2f}x a numpy fancy-index gather of the same lines; target >= 1 M/s)")
        media.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
