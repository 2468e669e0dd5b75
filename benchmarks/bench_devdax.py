"""Sequential store and load throughput through a devdax mapping, in MB/s and
as a ratio to a numpy memcpy of the same size measured in the same run.

    python benchmarks/bench_devdax.py [--size 256M] [--ways 1|2|4]

Setup: a machine with a pmem region of WAYS devices (biscuitos-b for 1-way),
an fsdax-free devdax namespace, /dev/dax0.0 mapped with DaxMapping.

* store: ``np.copyto(mapping[:n], src)``; first touch (copy-on-write faults of
  the private mapping) and steady state (second pass) are reported apart;
  first touch is compared with a memcpy into freshly allocated memory (the
  same page faults), and a ``populate=True`` mapping (MAP_POPULATE: pages
  faulted in at map time) is measured too;
* load: ``np.copyto(dst, mapping[:n])``;
* flush: ``mapping.flush()`` (clwb + sfence of every line) after the stores.

Target: steady-state stores and loads >= 0.5x numpy memcpy for the 1-way
region.  For comparison, QEMU 7.2's emulated CXL pmem through /dev/dax0.0
moves 30-77 MB/s (software emulation).
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import time

import numpy as np

from cxlemu.data.dax_mapping import DaxDevice
from cxlemu.machine.store import Store
from cxlemu.tools.runner import run_tool
from cxlemu.util.units import parse_size

QEMU_MBPS = (30, 77)


def best(fn, reps: int = 3) -> float:
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def _topology(ways: int) -> str:
    from cxlemu.topology import presets
    if ways == 1:
        return presets.text("biscuitos-b")
    devs = "\n".join(f'[[device]]\nid = "d{i}"\nparent = "hb0"\nserial = {i + 1}\npersistent = "512M"\n'
                     f'lsa = "128K"\n' for i in range(ways))
    return f'''[machine]
name = "bench"
flavor = "acpi"
[boot]
kernel = "6.9"
region_invalidation_test = true
[[numa]]
node = 0
memory = "2G"
[[host_bridge]]
id = "hb0"
uid = 0
root_ports = {ways}
{devs}
[[window]]
size = "16G"
targets = ["hb0"]
granularity = 256
restrictions = ["type3", "volatile", "pmem"]
'''


def _tool(b, *argv: str) -> None:
    out, err = io.StringIO(), io.StringIO()
    rc = run_tool(argv[0], list(argv[1:]), b, stdout=out, stderr=err, isatty=False)
    if rc:
        raise SystemExit(f"{' '.join(argv)} failed ({rc}): {err.getvalue()}")


def setup(ways: int) -> Store:
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
    from cxltest_support import create_region
    os.environ["CXLEMU_HOME"] = tempfile.mkdtemp(prefix="bench-devdax-")
    st = Store()
    st.create("bench", _topology(ways))
    with st.open("bench") as m:
        b = m.backend()
        create_region(b, "decoder0.0", [md.name for md in m.kernel.cxl.memdevs], mode="pmem", gran=4096,
                      size=ways * (512 << 20))
        _tool(b, "ndctl", "create-namespace", "--mode=devdax")
    return st


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="256M")
    ap.add_argument("--ways", type=int, default=1, choices=(1, 2, 4))
    args = ap.parse_args(argv)
    size = parse_size(args.size)
    st = setup(args.ways)
    src = np.random.default_rng(1).integers(0, 256, size, dtype=np.uint8)
    dst = np.empty(size, dtype=np.uint8)
    with st.open("bench") as m:
        dev = DaxDevice.open(m.backend(), "/dev/dax0.0")
        size = min(size, dev.size - dev.size % dev.align)
        src, dst = src[:size], dst[:size]
        mp = dev.mmap(size)                  # the default: lazy, like mmap(2)
        arr = mp.array
        t0 = time.perf_counter()
        np.copyto(arr, src)
        first = time.perf_counter() - t0
        t_store = best(lambda: np.copyto(arr, src))
        t_load = best(lambda: np.copyto(dst, arr))
        assert np.array_equal(dst, src)
        t0 = time.perf_counter()
        mp.flush()
        t_flush = time.perf_counter() - t0
        mp.close()
        t0 = time.perf_counter()
        mp2 = dev.mmap(size, populate=True)  # MAP_POPULATE
        t_map_pop = time.perf_counter() - t0
        t0 = time.perf_counter()
        np.copyto(mp2.array, src)
        first_pop = time.perf_counter() - t0
        mp2.close()
    t_np = best(lambda: np.copyto(dst, src))
    fresh = np.empty(size, dtype=np.uint8)
    t0 = time.perf_counter()
    np.copyto(fresh, src)                    # memcpy into never-touched memory: page faults included
    t_np_first = time.perf_counter() - t0
    mb = size / 1e6
    print(f"devdax {args.ways}-way, {size >> 20} MiB: direct mapping={'yes' if args.ways == 1 else 'no'}")
    print(f"  numpy memcpy      {mb / t_np:8.0f} MB/s")
    print(f"  store (steady)    {mb / t_store:8.0f} MB/s  ratio {t_np / t_store:4.2f}x")
    print(f"  load              {mb / t_load:8.0f} MB/s  ratio {t_np / t_load:4.2f}x")
    print(f"  numpy memcpy into fresh memory {mb / t_np_first:8.0f} MB/s (page faults of this host)")
    print(f"  store first touch, lazy mmap {mb / first:8.0f} MB/s  "
          f"ratio {t_np_first / first:4.2f}x of the fresh memcpy")
    print(f"  store first touch, mmap(populate=True) {mb / first_pop:8.0f} MB/s  "
          f"ratio {t_np / first_pop:4.2f}x; mmap took {t_map_pop * 1e3:.0f} ms")
    print(f"  flush (clwb all)  {mb / t_flush:8.0f} MB/s")
    print(f"  QEMU 7.2 reference {QEMU_MBPS[0]}-{QEMU_MBPS[1]} MB/s: steady stores are "
          f"{(mb / t_store) / QEMU_MBPS[1]:.0f}x the upper bound")
    return 0


if __name__ == "__main__":
    sys.exit(main())
