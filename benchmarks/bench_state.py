"""The machine state file and the durability of a running machine, each as a
ratio to a baseline measured in the same run.

1. **Codec vs pickle**: save and load time and file size of the data-only
   state codec (machine/stateio.py) against ``pickle`` (protocol 5, on a
   512 MiB-stack thread as the old store needed) of the same kernel, on
   BiscuitOS B (1 device) and large-fabric (1024 devices).
2. **Journal vs snapshot per mutation**: what a running machine pays to
   persist one mutation before acknowledging it -- one journal record
   appended and fdatasync'ed (machine/journal.py) -- against writing a whole
   snapshot (temp file, fsync, rename) per mutation.

    python benchmarks/bench_state.py [--reps 3] [--json]

``--json`` prints one JSON object: ``codec`` (per preset: save_s, load_s,
bytes, pickle_save_s, pickle_load_s, pickle_bytes and the ratios) and
``durability`` (per preset: journal_append_s, snapshot_s, ratio).
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from cxlemu.hw.platform import build_platform
from cxlemu.kernel.kernel import Kernel
from cxlemu.machine import journal as journal_mod
from cxlemu.machine import stateio
from cxlemu.topology import presets
from cxlemu.topology.schema import loads
from cxlemu.util.fileio import atomic_open

PRESETS = ("biscuitos-b", "large-fabric")


def _deep(fn, *args):
    """How the pickle-based store ran pickle: a big stack and recursion limit."""
    out: list = []

    def run() -> None:
        old = sys.getrecursionlimit()
        sys.setrecursionlimit(max(old, 200000))
        try:
            out.append(fn(*args))
        finally:
            sys.setrecursionlimit(old)

    threading.stack_size(512 << 20)
    t = threading.Thread(target=run)
    t.start()
    t.join()
    threading.stack_size(0)
    return out[0]


def boot(preset: str) -> Kernel:
    p = build_platform(loads(presets.text(preset)))
    p.firmware_boot()
    k = Kernel(p)
    k.boot()
    return k


def best(fn, reps: int) -> float:
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def codec(k: Kernel, reps: int, tmp: Path) -> dict:
    path = tmp / "state.bin"

    def save() -> None:
        with atomic_open(path) as f:
            stateio.write(f, k, {"version": 4})

    save_s = best(save, reps)
    load_s = best(lambda: stateio.load(path), reps)
    pdata = _deep(pickle.dumps, k, 5)
    ppath = tmp / "state.pkl"

    def psave() -> None:
        with atomic_open(ppath) as f:
            f.write(_deep(pickle.dumps, k, 5))

    psave_s = best(psave, reps)
    pload_s = best(lambda: _deep(pickle.loads, ppath.read_bytes()), reps)
    size = path.stat().st_size
    return {"save_s": save_s, "load_s": load_s, "bytes": size,
            "pickle_save_s": psave_s, "pickle_load_s": pload_s, "pickle_bytes": len(pdata),
            "save_ratio": save_s / psave_s, "load_ratio": load_s / pload_s, "size_ratio": size / len(pdata)}


def durability(k: Kernel, reps: int, tmp: Path, n: int = 50) -> dict:
    jpath = str(tmp / "journal")
    j = journal_mod.Journal(jpath, 1)
    payload = b"region0\0"
    t0 = time.perf_counter()
    for i in range(n):
        j.append("w", [f"/sys/bus/cxl/devices/decoder0.{i % 4}/create_pmem_region", 0], payload)
    append_s = (time.perf_counter() - t0) / n
    j.close()
    path = tmp / "snap.bin"

    def snap() -> None:
        with atomic_open(path) as f:
            stateio.write(f, k, {"version": 4})

    snap_s = best(snap, reps)
    return {"journal_append_s": append_s, "snapshot_s": snap_s, "snapshot_over_journal": snap_s / append_s}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    out: dict = {"codec": {}, "durability": {}}
    with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR")) as d:
        tmp = Path(d)
        for preset in PRESETS:
            k = boot(preset)
            out["codec"][preset] = codec(k, args.reps, tmp)
            out["durability"][preset] = durability(k, args.reps, tmp)
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    print("state codec vs pickle (best of %d)" % args.reps)
    print(f"{'preset':14} {'save':>9} {'pickle':>9} {'ratio':>6}   {'load':>9} {'pickle':>9} {'ratio':>6}   "
          f"{'size':>10} {'pickle':>10} {'ratio':>6}")
    for p, c in out["codec"].items():
        print(f"{p:14} {c['save_s'] * 1e3:7.1f}ms {c['pickle_save_s'] * 1e3:7.1f}ms {c['save_ratio']:5.2f}x   "
              f"{c['load_s'] * 1e3:7.1f}ms {c['pickle_load_s'] * 1e3:7.1f}ms {c['load_ratio']:5.2f}x   "
              f"{c['bytes']:>10} {c['pickle_bytes']:>10} {c['size_ratio']:5.2f}x")
    print("\npersisting one mutation: journal append + fdatasync vs a snapshot")
    print(f"{'preset':14} {'journal':>10} {'snapshot':>10} {'snapshot/journal':>17}")
    for p, d in out["durability"].items():
        print(f"{p:14} {d['journal_append_s'] * 1e3:8.3f}ms {d['snapshot_s'] * 1e3:8.1f}ms "
              f"{d['snapshot_over_journal']:16.0f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
