"""Memory hotplug through daxctl: online and offline a 64 GiB CXL ram region
(512 memory blocks of 128 MiB), each timed, and reported as a ratio to the
same operation on a 1 GiB region (8 blocks) measured in the same run, which
shows whether the cost grows linearly with the number of blocks (a ratio
near 64 is linear; the target is under 1 s per 64 GiB operation).

    python benchmarks/bench_hotplug.py [--reps 3]

The machine: one host bridge, one 64 GiB volatile Type 3 device and one
1 GiB device behind a second host bridge, 16 GiB of DRAM, in a VM
(hypervisor = true, so memory blocks are 128 MiB), kernel 6.9, hot-added
memory left offline (memhp_default_state = offline).  The regions are made
with the sysfs writes of ``cxl create-region``; daxctl runs in process on the
emulator backend (``cxlemu.tools.runner.run_tool``).
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from cxltest_support import boot_text, create_region  # noqa: E402

from cxlemu.tools.runner import run_tool  # noqa: E402

TOPOLOGY = """
[machine]
name = "bench-hotplug"
[boot]
kernel = "6.9"
hypervisor = true
region_invalidation_test = true
memhp_default_state = "offline"
[[numa]]
node = 0
cpus = 4
memory = "16G"
[[host_bridge]]
id = "hb0"
uid = 0
[[host_bridge]]
id = "hb1"
uid = 1
[[device]]
id = "big"
parent = "hb0"
volatile = "64G"
[[device]]
id = "small"
parent = "hb1"
volatile = "1G"
[[window]]
size = "64G"
targets = ["hb0"]
restrictions = ["type3", "volatile"]
[[window]]
size = "1G"
targets = ["hb1"]
restrictions = ["type3", "volatile"]
"""


def daxctl(b, *argv: str) -> None:
    out, err = io.StringIO(), io.StringIO()
    rc = run_tool("daxctl", list(argv), b, stdout=out, stderr=err, isatty=False)
    if rc:
        raise SystemExit(f"daxctl {' '.join(argv)} failed ({rc}): {err.getvalue()}")


def setup():
    b = boot_text(TOPOLOGY)
    k = b.kernel
    mems = {md.hw.topo.id: md.name for md in k.cxl.memdevs}
    big = create_region(b, "decoder0.0", [mems["big"]], size=64 << 30)
    small = create_region(b, "decoder0.1", [mems["small"]], size=1 << 30)
    devs = {}
    for name, made in (("big", big), ("small", small)):
        rid = int(made.name[len("region"):])
        devs[name] = f"dax{rid}.0"
    return b, devs


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    b, devs = setup()
    bs = b.kernel.mm.block_size
    results: dict[str, dict[str, float]] = {"small": {}, "big": {}}
    for _ in range(args.reps):
        for which in ("small", "big"):
            dev = devs[which]
            on = timed(lambda: daxctl(b, "online-memory", dev))
            off = timed(lambda: daxctl(b, "offline-memory", dev))
            r = results[which]
            r["online"] = min(r.get("online", on), on)
            r["offline"] = min(r.get("offline", off), off)
    nblocks = {w: b.kernel.dax.find(devs[w]).size // bs for w in devs}
    print(f"memory block size {bs >> 20} MiB; 1 GiB region: {nblocks['small']} blocks, "
          f"64 GiB region: {nblocks['big']} blocks (best of {args.reps})")
    ok = True
    for op in ("online", "offline"):
        big, small = results["big"][op], results["small"][op]
        ratio = big / small if small else float("inf")
        ok &= big < 1.0
        print(f"{op:>8}-memory  64 GiB: {big * 1000:8.1f} ms   1 GiB: {small * 1000:6.1f} ms   "
              f"ratio {ratio:5.1f} (linear = {nblocks['big'] / nblocks['small']:.0f})   "
              f"{'OK' if big < 1.0 else 'SLOW'} (< 1 s)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
