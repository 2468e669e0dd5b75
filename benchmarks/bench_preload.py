"""Stores and loads of a C program through an emulated /dev/dax0.0 under the
LD_PRELOAD interposer, as ratios to memcpy of the same size in the same
program (benchmarks/bench_preload.c).

    python benchmarks/bench_preload.py [--ways 1,4] [--size 256M] [--reps 5] [--json]

Each machine (1-way: biscuitos-b; 4-way: four devices, 4 KiB granules) gets
a devdax namespace and its device socket, served in this process; the
program runs with LD_PRELOAD=<library>, CXLEMU_DEV_SOCKET=<socket> and a
private device node for dax0.0 (mknod, so this needs root; the interposer is
told where it is with CXLEMU_DEV_DIRS).  A 4-way range is mapped one 4 KiB
granule at a time with MAP_FIXED (up to vm.max_map_count / 2 pieces: 64 MiB
here by default); larger ranges would use the shadow copy.
Target (issue 8): stores and loads >= 0.5x memcpy.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_devdax import setup  # noqa: E402

from cxlemu import preload  # noqa: E402
from cxlemu.machine.devserver import serve  # noqa: E402
from cxlemu.util.units import parse_size  # noqa: E402


def build(tmp: Path) -> tuple[str, str]:
    lib = preload.library_path()
    if lib is None:
        lib = str(preload.build(tmp))
    cc = preload.compiler()
    if cc is None:
        raise SystemExit("bench_preload: no C compiler")
    exe = tmp / "bench_preload"
    subprocess.run([*cc.split(), "-O2", "-o", str(exe), str(HERE / "bench_preload.c")], check=True)
    return lib, str(exe)


def run(ways: int, size: int, reps: int, lib: str, exe: str, tmp: Path) -> dict:
    st, home = setup(ways)
    try:
        with st.open("bench") as m:
            dev = next(d for d in m.kernel.char_devices() if d.devnode == "dax0.0")
            dsize = int(m.backend().read(f"{dev.sysfs_path}/size"))
            size = min(size, dsize - dsize % (2 << 20))
            devdir = tmp / f"dev{ways}"
            devdir.mkdir()
            node = devdir / "dax0.0"
            os.mknod(node, stat.S_IFCHR | 0o600, os.makedev(*dev.devt))
            srv = serve(m, threading.RLock(), tmp / f"dev{ways}.sock")
            try:
                env = dict(os.environ, LD_PRELOAD=lib, CXLEMU_DEV_SOCKET=str(srv.path),
                           CXLEMU_DEV_DIRS=f"{devdir}/")
                p = subprocess.run([exe, str(node), str(size), str(reps)], env=env, capture_output=True,
                                   text=True, timeout=600)
            finally:
                srv.close()
        if p.returncode != 0:
            raise SystemExit(f"bench_preload ({ways}-way) failed: {p.stderr.strip()}")
        out = json.loads(p.stdout)
        out["ways"] = ways
        return out
    finally:
        shutil.rmtree(home, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ways", default="1,4")
    ap.add_argument("--size", default="256M", help="1-way size (4-way: at most 64M, see above)")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        raise SystemExit("bench_preload: needs root (mknod of the device node)")
    tmp = Path(tempfile.mkdtemp(prefix="bench-preload-"))
    try:
        lib, exe = build(tmp)
        size = parse_size(args.size)
        results = {}
        for w in (int(x) for x in args.ways.split(",")):
            results[f"{w}way"] = run(w, size if w == 1 else min(size, 64 << 20), args.reps, lib, exe, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    out = {k: {name: r[k] for name, r in results.items()} for k in ("store_ratio", "store_persist_ratio", "load_ratio")}
    out["details"] = results
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    for name, r in results.items():
        print(f"C program through the interposer, {name}, {r['size'] >> 20} MiB "
              f"(memcpy {r['memcpy_gbps']:.1f} GB/s in the same program)")
        print(f"  store            {r['store_ratio']:5.2f}x memcpy")
        print(f"  store + msync    {r['store_persist_ratio']:5.2f}x memcpy")
        print(f"  load             {r['load_ratio']:5.2f}x memcpy")
    return 0


if __name__ == "__main__":
    sys.exit(main())
