"""What poison checking costs the data path, as ratios to the same
operations on a clean device measured in the same run.

    python benchmarks/bench_poison.py [--lines 1000000] [--records 10000] [--json]

* batched random 64-byte reads through a 4-way 4 KiB region
  (``HpaSpace.gather_checked``) with no poison, and with RECORDS poisoned
  ranges spread over the devices (each device's list checked with one
  ``searchsorted``);
* ``HpaSpace.poisoned`` (the check alone, what a workload's loads cost);
* a sequential 64 MiB read with and without poison elsewhere on the devices.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from cxltest_support import boot_text, create_region, fabric_toml  # noqa: E402

from cxlemu.data.datapath import HpaSpace  # noqa: E402
from cxlemu.data.media import MediaStore  # noqa: E402
from cxlemu.hw.poison import SOURCE_INTERNAL  # noqa: E402


def best(fn, reps: int = 3) -> float:
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--records", type=int, default=10_000)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        b = boot_text(fabric_toml(2, 2, gran=4096, dev_size="2G"))
        create_region(b, "decoder0.0", ["mem0", "mem2", "mem1", "mem3"], gran=4096, size=4 << 30)
        region = b.kernel.cxl.regions.all()[0]
        hs = HpaSpace(b.kernel.platform, MediaStore(Path(tmp)))
        rng = np.random.default_rng(1)
        span = region.res.size // 64
        hpas = region.res.start + rng.integers(0, span, a.lines).astype(np.uint64) * np.uint64(64)
        hs.write(region.res.start, np.zeros(64 << 20, dtype=np.uint8))
        dst = np.empty(64 << 20, dtype=np.uint8)
        t_clean = best(lambda: hs.gather_checked(hpas, 64))
        t_seq_clean = best(lambda: hs.read_into(region.res.start, dst))
        per_dev = a.records // 4
        for d in b.kernel.platform.devices:
            d.poison.max_records = a.records
            starts = np.sort(rng.choice(np.arange(256 << 20 >> 6, d.total_capacity >> 6), per_dev, replace=False))
            for s in starts.tolist():
                d.poison.add(s * 64, 64, SOURCE_INTERNAL, 0)
        t_poison = best(lambda: hs.gather_checked(hpas, 64))
        t_check = best(lambda: hs.poisoned(hpas, 64))
        t_seq = best(lambda: hs.read_into(region.res.start, dst))
    res = {
        "lines": a.lines, "records": a.records,
        "gather_clean_maccess_s": a.lines / t_clean / 1e6,
        "gather_poisoned_maccess_s": a.lines / t_poison / 1e6,
        "gather_ratio": t_clean / t_poison,
        "check_only_maccess_s": a.lines / t_check / 1e6,
        "sequential_64M_ratio": t_seq_clean / t_seq,
    }
    if a.json:
        print(json.dumps(res))
    else:
        print(f"batched 64-byte reads, no poison      {res['gather_clean_maccess_s']:6.2f} M/s")
        print(f"batched 64-byte reads, {a.records} records {res['gather_poisoned_maccess_s']:6.2f} M/s "
              f"({res['gather_ratio']:.2f}x the clean speed)")
        print(f"poison check alone                    {res['check_only_maccess_s']:6.2f} M/s")
        print(f"sequential 64 MiB read with poison elsewhere: {res['sequential_64M_ratio']:.2f}x the clean speed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
