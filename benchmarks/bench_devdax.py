"""Store, store+persist and load through a devdax mapping, each as a ratio to
a numpy memcpy of the same size measured in the same run.

    python benchmarks/bench_devdax.py [--size 256M] [--ways 1,4] [--reps 5] [--json]

Setup: a machine with a pmem region of WAYS devices (biscuitos-b for 1-way;
4 devices behind one host bridge, 4 KiB granules, for 4-way), a devdax
namespace, /dev/dax0.0 mapped with ``DaxMapping`` -- the media files
themselves, MAP_SHARED (data/dax_mapping.py).

* store: ``mapping[:] = src`` again and again (pages already written since
  the last flush: memory speed);
* store+persist: ``mapping[:] = src`` then ``persist`` of the whole
  mapping (clwb + sfence), repeated: every round the first store to each
  page traps and saves the old lines to the undo log (the CPU-cache model),
  and the persist write-protects the pages again;
* load: ``dst[:] = mapping``;
* memcpy: ``np.copyto(dst, src)``, same size, measured between the others.

For the 4-way mapping a 256 MiB range has 65536 granules, more than the
per-mapping MAP_FIXED budget, so each device's extent is mapped once and
``mapping.array`` is the 1-D ``HpaOrderArray`` over them (one strided copy
per device); ``--via-rows`` stores through the ``(rows, ways, granule)``
numpy view instead.
Each figure is the best of ``--reps`` rounds.  Targets (issue 13):
store+persist >= 0.5x (1-way) and >= 0.3x (4-way).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import sys
import tempfile
import time

import numpy as np

from cxlemu.data.dax_mapping import DaxDevice, DaxMapping
from cxlemu.machine.store import Store
from cxlemu.tools.runner import run_tool
from cxlemu.util.units import parse_size

TARGET_STORE_PERSIST = {"1way": 0.5, "4way": 0.3}


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


def setup(ways: int) -> tuple[Store, str]:
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
    from cxltest_support import create_region
    home = tempfile.mkdtemp(prefix="bench-devdax-")
    os.environ["CXLEMU_HOME"] = home
    st = Store()
    st.create("bench", _topology(ways))
    with st.open("bench") as m:
        b = m.backend()
        create_region(b, "decoder0.0", [md.name for md in m.kernel.cxl.memdevs], mode="pmem", gran=4096,
                      size=ways * (512 << 20))
        _tool(b, "ndctl", "create-namespace", "--mode=devdax")
    return st, home


def measure(ways: int, size: int, reps: int, via_rows: bool) -> dict:
    st, home = setup(ways)
    try:
        with st.open("bench", write=False) as m:
            dev = DaxDevice.open(m.backend(), "/dev/dax0.0")
            size = min(size, dev.size - dev.size % dev.align)
            lay = dev.layout(0, size)
        mp = DaxMapping(lay, dev=dev)
        src = np.random.default_rng(1).integers(0, 256, size, dtype=np.uint8)
        dst = np.empty(size, dtype=np.uint8)
        dst[:] = 0
        if mp.rows is not None and via_rows:
            view, src_v = mp.rows, src.reshape(mp.rows.shape)
            path = "rows (rows, ways, granule) view"

            def store():
                view[...] = src_v

            def load():
                dst.reshape(mp.rows.shape)[...] = view
        else:
            arr = mp.array
            path = "array"

            def store():
                arr[:] = src

            def load():
                if isinstance(arr, np.ndarray):
                    np.copyto(dst, arr)
                else:
                    arr.load(0, dst)

        def store_persist():
            store()
            mp.persist(0, size)

        def memcpy():
            np.copyto(dst, src)

        store()                                  # first touch: page faults, file blocks, undo blocks
        mp.persist(0, size)
        store_persist()
        best = {k: float("inf") for k in ("memcpy", "store", "store_persist", "load")}
        fns = {"memcpy": memcpy, "store": store, "store_persist": store_persist, "load": load}
        for _ in range(reps):
            for k in ("memcpy", "store_persist", "memcpy", "warm", "store", "memcpy", "load"):
                if k == "warm":                  # after a persist the pages trap again: not "store"
                    store()
                    continue
                t0 = time.perf_counter()
                fns[k]()
                best[k] = min(best[k], time.perf_counter() - t0)
        store()
        ok = np.array_equal(mp.array[:] if not isinstance(mp.array, np.ndarray) else mp.array, src)
        t0 = time.perf_counter()
        mp.persist(0, size)
        t_persist = time.perf_counter() - t0
        t0 = time.perf_counter()
        mp.close()
        t_close = time.perf_counter() - t0
        if not ok:
            raise SystemExit("data mismatch through the mapping")
        mc = best["memcpy"]
        return {
            "ways": ways, "size": size, "mode": mp.mode, "path": path, "trapped": mp.trapped,
            "memcpy_gbps": size / mc / 1e9,
            "store_ratio": mc / best["store"],
            "store_persist_ratio": mc / best["store_persist"],
            "load_ratio": mc / best["load"],
            "persist_clean_ms": t_persist * 1e3,
            "close_ms": t_close * 1e3,
        }
    finally:
        shutil.rmtree(home, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", default="256M")
    ap.add_argument("--ways", default="1,4", help="comma-separated: 1, 2 and/or 4")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--via-rows", action="store_true",
                    help="interleaved: store through the (rows, ways, granule) view instead of the 1-D array")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    size = parse_size(args.size)
    results = {f"{w}way": measure(int(w), size, args.reps, args.via_rows) for w in args.ways.split(",")}
    out = {k: {name: round(r[k], 3) for name, r in results.items()}
           for k in ("store_ratio", "store_persist_ratio", "load_ratio")}
    out["details"] = results
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    for name, r in results.items():
        target = TARGET_STORE_PERSIST.get(name)
        print(f"devdax {name}, {r['size'] >> 20} MiB, mapping {r['mode']} ({r['path']}), "
              f"store trap {'on' if r['trapped'] else 'off (no compiled library: eager undo capture)'}")
        print(f"  numpy memcpy        {r['memcpy_gbps']:6.1f} GB/s")
        print(f"  store               {r['store_ratio']:5.2f}x memcpy")
        print(f"  store + persist     {r['store_persist_ratio']:5.2f}x memcpy"
              + (f"  (target >= {target})" if target else ""))
        print(f"  load                {r['load_ratio']:5.2f}x memcpy")
        print(f"  persist of clean lines {r['persist_clean_ms']:.2f} ms, close {r['close_ms']:.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
