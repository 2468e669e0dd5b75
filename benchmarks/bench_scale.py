"""Scaling of boot, ``cxl list -M``, render and state size with the number of
Type 3 devices (64, 256, 1024, 4096, 16 384), one row per size, and the
16 384 / 1024 ratios (16 is perfectly linear; the target is under 20).

    python benchmarks/bench_scale.py [--sizes 64,256,1024,4096,16384] [--json] [--reps 3]
                                     [--render-dir DIR] [--no-render-above N]

Every fabric comes from the topology generator with three levels of
switches (``cxlemu topology generate --devices N --switch-levels 3``: 128
devices per host bridge, each host bridge on its own PCI segment); 16 384 is
the ``huge-fabric`` preset.  Each size is measured in a fresh interpreter
(this script with ``--row N``), so that no size pays for the garbage
collector walking what an earlier size left behind, ``--reps`` times (boot
and list are the best of the runs: a second on a shared host moves by a
fifth from one run to the next, which is what the 16 384 / 1024 ratio would
otherwise measure).  Per size:

* ``boot_s``: parse the topology, build the platform, boot the kernel
  (CPU seconds of this process: the figure does not depend on what else
  the machine runs);
* ``list_s``: ``cxl list -M`` on the booted kernel (the bundled tool over the
  in-process sysfs), CPU seconds, with the booted machine frozen for the
  garbage collector as ``cxlemu exec`` freezes a loaded one;
* ``render_s``: ``cxlemu sysfs NAME render`` of the whole /sys, /proc and
  /dev into ``--render-dir`` (default: a temporary directory), wall-clock
  seconds (file creation is the file system's work; on a loaded disk it
  dominates, a tmpfs such as /dev/shm shows our part), and ``render_cpu_s``;
* ``state_bytes``: the size of the machine's saved state (``Store.create``
  in a temporary ``CXLEMU_HOME``, with whatever state format the tree has).

``--json`` prints a list of rows with ``devices``, ``boot_s``, ``list_s``,
``render_s``, ``render_cpu_s`` and ``state_bytes`` (the render figures are null for sizes skipped with
``--no-render-above``), followed by nothing else.
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _row(n: int, render_dir: str | None, render: bool, state: bool = True) -> dict:
    from cxlemu.hw.platform import build_platform
    from cxlemu.kernel.kernel import Kernel
    from cxlemu.sysfs.backend import EmulatorBackend
    from cxlemu.sysfs.backend import render as render_tree
    from cxlemu.tools.runner import run_tool
    from cxlemu.topology.generate import Spec, generate
    from cxlemu.topology.schema import loads

    text = generate(Spec(devices=n, switch_levels=3))
    t0 = time.process_time()
    plat = build_platform(loads(text))
    plat.firmware_boot()
    k = Kernel(plat)
    k.boot()
    boot_s = time.process_time() - t0
    gc.freeze()      # as `cxlemu exec` does once the machine is loaded (cli/commands.py cmd_exec)

    out = io.StringIO()
    t0 = time.process_time()
    rc = run_tool("cxl", ["list", "-M"], EmulatorBackend(k), stdout=out, stderr=io.StringIO(), isatty=False)
    list_s = time.process_time() - t0
    assert rc == 0 and out.getvalue().count('"memdev"') == n, "cxl list -M did not list every memdev"

    render_s = render_cpu_s = None
    if render:
        d = tempfile.mkdtemp(prefix="cxlemu-bench-render-", dir=render_dir)
        try:
            t0, c0 = time.perf_counter(), time.process_time()
            render_tree(EmulatorBackend(k), d)
            render_s, render_cpu_s = time.perf_counter() - t0, time.process_time() - c0
        finally:
            shutil.rmtree(d, ignore_errors=True)

    if not state:
        return {"devices": n, "boot_s": round(boot_s, 3), "list_s": round(list_s, 3)}
    home = tempfile.mkdtemp(prefix="cxlemu-bench-home-")
    old = os.environ.get("CXLEMU_HOME")
    os.environ["CXLEMU_HOME"] = home
    try:
        from cxlemu.machine.store import Store
        st = Store()
        st.create("m", text)
        state_bytes = sum(p.stat().st_size for p in st.path("m").iterdir()
                          if p.is_file() and p.name.startswith("state"))
    finally:
        if old is None:
            os.environ.pop("CXLEMU_HOME", None)
        else:
            os.environ["CXLEMU_HOME"] = old
        shutil.rmtree(home, ignore_errors=True)
    return {"devices": n, "boot_s": round(boot_s, 3), "list_s": round(list_s, 3),
            "render_s": None if render_s is None else round(render_s, 3),
            "render_cpu_s": None if render_cpu_s is None else round(render_cpu_s, 3), "state_bytes": state_bytes}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="64,256,1024,4096,16384")
    ap.add_argument("--json", action="store_true", help="print the rows as a JSON list")
    ap.add_argument("--render-dir", help="where to render (default: the system temporary directory)")
    ap.add_argument("--no-render-above", type=int, default=None, metavar="N",
                    help="skip the render for fabrics of more than N devices")
    ap.add_argument("--row", type=int, help=argparse.SUPPRESS)        # one size, in this process
    ap.add_argument("--no-render", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--no-state", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--reps", type=int, default=3,
                    help="runs per size, each in a fresh interpreter; boot and list are the best (default 3)")
    a = ap.parse_args(argv)
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 100000))
    if a.row is not None:
        _row(4, a.render_dir, False)      # warm up: imports and first-use costs are not per-device costs
        print(json.dumps(_row(a.row, a.render_dir, not a.no_render, not a.no_state)))
        return 0
    sizes = [int(s) for s in a.sizes.split(",") if s]
    rows = []
    for n in sizes:
        render = a.no_render_above is None or n <= a.no_render_above
        cmd = [sys.executable, __file__, "--row", str(n)] + ([] if render else ["--no-render"]) + \
            (["--render-dir", a.render_dir] if a.render_dir else [])
        row = None
        for rep in range(max(1, a.reps)):
            # the render and the state once; boot and list the best of the runs
            p = subprocess.run(cmd + (["--no-render", "--no-state"] if rep else []), capture_output=True, text=True)
            if p.returncode != 0:
                print(p.stderr, file=sys.stderr)
                return 1
            r = json.loads(p.stdout.strip().splitlines()[-1])
            if row is None:
                row = r
            else:
                row["boot_s"], row["list_s"] = min(row["boot_s"], r["boot_s"]), min(row["list_s"], r["list_s"])
        rows.append(row)
        if not a.json:
            r = rows[-1]
            rs = "-" if r["render_s"] is None else f"{r['render_s']:.2f}"
            rc_ = "-" if r["render_cpu_s"] is None else f"{r['render_cpu_s']:.2f}"
            print(f"{r['devices']:>6} devices  boot {r['boot_s']:7.2f} s CPU  cxl list -M {r['list_s']:7.2f} s CPU  "
                  f"render {rs:>7} s ({rc_:>6} s CPU)  state {r['state_bytes'] / 1e6:8.1f} MB", flush=True)
    if a.json:
        print(json.dumps(rows))
        return 0
    by = {r["devices"]: r for r in rows}
    if 1024 in by and 16384 in by:
        lo, hi = by[1024], by[16384]
        print(f"16384/1024 ratios (16 = linear, target < 20): boot {hi['boot_s'] / lo['boot_s']:.1f}  "
              f"list {hi['list_s'] / lo['list_s']:.1f}  state {hi['state_bytes'] / lo['state_bytes']:.1f}"
              + (f"  render {hi['render_s'] / lo['render_s']:.1f} (CPU {hi['render_cpu_s'] / lo['render_cpu_s']:.1f})"
                 if hi["render_s"] and lo["render_s"] else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
