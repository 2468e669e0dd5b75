"""The machine state file and the durability of a running machine, each as a
ratio to a baseline measured in the same run.

1. **Codec vs pickle**: save and load time and file size of the data-only
   state codec (machine/stateio.py) against ``pickle`` (protocol 5, on a
   512 MiB-stack thread as the old store needed) of the same kernel, on
   BiscuitOS B (1 device) and large-fabric (1024 devices).
2. **Journal vs snapshot per mutation**: what a running machine pays to
   persist one sysfs write before acknowledging it -- through the live
   machine, one journal record appended and fdatasync'ed (machine/journal.py)
   -- against the same write followed by a whole snapshot (temp file, fsync,
   rename), the design the journal replaces.

    python benchmarks/bench_state.py [--reps 3] [--json]

``--json`` prints one JSON object: ``codec`` (per preset: save_s, load_s,
bytes, pickle_save_s, pickle_load_s, pickle_bytes and the ratios) and
``durability`` (per preset: journal_write_s, snapshot_write_s, snapshot_over_journal).
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


def durability(preset: str, reps: int, tmp: Path, n: int = 40) -> dict:
    """Per mutation, what a running machine pays before acknowledging it: a
    VFS write through the live machine (journal append + fdatasync), against
    the alternative design, the same write followed by a snapshot."""
    from cxlemu.machine.live import LiveMachine
    from cxlemu.machine.store import Store
    st = Store(tmp / preset / "machines")
    st.create("m", presets.text(preset))
    with st.open("m") as m:
        b = m.backend()
        ed = next(d for d in m.kernel.cxl.memdevs[0].endpoint.decoders if d.dpa_start is None)
        path = f"{ed.sysfs_path}/mode"
        modes = [mo for mo in ("ram", "pmem") if getattr(m.kernel.cxl.memdevs[0].hw, f"{mo}_size")]
        modes = (modes * 2)[:2]
        live = LiveMachine(m)
        t0 = time.perf_counter()
        for i in range(n):
            b.write(path, modes[i % 2])
        journal_s = (time.perf_counter() - t0) / n
        assert live.journalled == n, live.journalled
        m.live = None
        live.close()
        snaps = []
        for i in range(reps):
            t0 = time.perf_counter()
            b.write(path, modes[i % 2])
            m.save()
            snaps.append(time.perf_counter() - t0)
        snap_s = min(snaps)
    return {"journal_write_s": journal_s, "snapshot_write_s": snap_s, "snapshot_over_journal": snap_s / journal_s}


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
            out["durability"][preset] = durability(preset, args.reps, tmp)
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
    print("\na sysfs write persisted before it returns: journalled (running machine) vs a snapshot per write")
    print(f"{'preset':14} {'journal':>10} {'snapshot':>10} {'snapshot/journal':>17}")
    for p, d in out["durability"].items():
        print(f"{p:14} {d['journal_write_s'] * 1e3:8.2f}ms {d['snapshot_write_s'] * 1e3:8.1f}ms "
              f"{d['snapshot_over_journal']:16.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
