"""The live FUSE mount (machine/mount.py): how long a program waits for a
sysfs attribute, and how long ``cxl list -M`` takes over the mount.

    python benchmarks/bench_fuse.py [--n 3000] [--preset large-fabric] [--json]

1. Attribute reads.  A client process (not the serving one) times, per
   call, ``open + read + close`` of a memdev attribute reached through the
   ``/sys/bus/cxl/devices/mem0`` link (what libcxl does), of the same
   attribute by its canonical path, and a ``pread`` on a file kept open;
   the baseline is the same loop on a tmpfs file (/dev/shm) in the same run.
   Medians in microseconds and the ratio to tmpfs.
2. ``cxl list -M`` on a large machine (default: the 1024-device preset):
   Debian's C ``cxl`` over the mount (in ``unshare -m``, /sys bound), and
   ours in the same namespace over the same mount (``cxlemu-cxl`` on a
   DirectoryBackend), each the median of 3; then ours through ``cxlemu exec``
   (load, list, no save) for reference, and the ratios to the C tool.

The machine is served by this process on a temporary mount point; the
kernel's dentry cache is primed by one warm-up pass, as it is for any
program after the first lookup (entries are dropped on every change of the
model, see machine/fusefs.py).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

CLIENT = r"""
import os, statistics, sys, time
n = int(sys.argv[1])
def loop(fn):
    for _ in range(200):
        fn()
    ts = []
    for _ in range(n):
        t = time.perf_counter_ns(); fn(); ts.append(time.perf_counter_ns() - t)
    return statistics.median(ts) / 1000
def ocr(p):
    def f():
        fd = os.open(p, os.O_RDONLY); os.read(fd, 4096); os.close(fd)
    return f
out = {}
for name, path in zip(("link", "canonical", "tmpfs"), sys.argv[2:5]):
    out[name] = loop(ocr(path))
fd = os.open(sys.argv[3], os.O_RDONLY)
out["pread"] = loop(lambda: os.pread(fd, 4096, 0))
os.close(fd)
fd = os.open(sys.argv[4], os.O_RDONLY)
out["pread_tmpfs"] = loop(lambda: os.pread(fd, 4096, 0))
print(repr(out))
"""


def _median_time(cmd: list[str], reps: int = 3, env=None) -> tuple[float, subprocess.CompletedProcess]:
    times, p = [], None
    for _ in range(reps):
        t = time.perf_counter()
        p = subprocess.run(cmd, capture_output=True, text=True, env=env)
        times.append(time.perf_counter() - t)
    return statistics.median(times), p


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=3000, help="timed calls per read loop")
    ap.add_argument("--preset", default="large-fabric", help="machine for the cxl list -M timing")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    from cxlemu.machine.mount import fuse_available, mount
    from cxlemu.machine.store import Store
    from cxlemu.topology import presets
    why = fuse_available()
    if why:
        print(f"bench_fuse: FUSE unavailable: {why}", file=sys.stderr)
        return 1
    home = tempfile.mkdtemp(prefix="cxlemu-bench-fuse-")
    os.environ["CXLEMU_HOME"] = home
    res: dict = {}
    try:
        st = Store()
        # ---- 1. attribute reads on biscuitos-b ------------------------------------------------
        st.create("small", presets.text("biscuitos-b"))
        mnt = tempfile.mkdtemp(prefix="mnt-", dir=home)
        shm = tempfile.NamedTemporaryFile(dir="/dev/shm" if os.path.isdir("/dev/shm") else None, delete=False)
        shm.write(b"0x0\n")
        shm.close()
        with st.open("small") as m:
            h = mount(m, threading.RLock(), mnt)
            try:
                canonical = mnt + m.backend().realpath("/sys/bus/cxl/devices/mem0") + "/serial"
                p = subprocess.run([sys.executable, "-c", CLIENT, str(args.n),
                                    f"{mnt}/sys/bus/cxl/devices/mem0/serial", canonical, shm.name],
                                   capture_output=True, text=True, check=True)
                r = eval(p.stdout)          # a dict literal printed by CLIENT
            finally:
                h.unmount()
        os.unlink(shm.name)
        res["attr_read_us"] = {k: round(v, 1) for k, v in r.items()}
        res["attr_read_ratio_to_tmpfs"] = {
            "link": round(r["link"] / r["tmpfs"], 1), "canonical": round(r["canonical"] / r["tmpfs"], 1),
            "pread": round(r["pread"] / r["pread_tmpfs"], 1)}

        # ---- 2. cxl list -M over the mount ------------------------------------------------------
        big = args.preset
        st.create("big", presets.text(big))
        mnt2 = tempfile.mkdtemp(prefix="mnt-", dir=home)
        ours_cli = [sys.executable, "-m", "cxlemu"]
        with st.open("big", write=False) as m:
            h = mount(m, threading.RLock(), mnt2)
            try:
                ns = ["unshare", "-m", "sh", "-c", f'mount --bind "{mnt2}/sys" /sys && mount --bind "{mnt2}/dev" /dev && exec "$@"', "sh"]
                c_cxl = shutil.which("cxl")
                if c_cxl and os.geteuid() == 0:
                    subprocess.run(ns + [c_cxl, "list", "-M"], capture_output=True)       # warm the dcache
                    t_c, pc = _median_time(ns + [c_cxl, "list", "-M"])
                    n_c = len(json.loads(pc.stdout or "[]"))
                    env = dict(os.environ, CXLEMU_SYSFS_ROOT="/")
                    t_o, po = _median_time(ns + [sys.executable, "-c",
                                                 "import sys; from cxlemu.cli.standalone import cxl; "
                                                 "sys.argv=['cxl','list','-M']; sys.exit(cxl())"], env=env)
                    n_o = len(json.loads(po.stdout or "[]"))
                    res["cxl_list_M_over_mount_s"] = {"real_c": round(t_c, 3), "ours": round(t_o, 3),
                                                      "ratio_ours_to_c": round(t_o / t_c, 2),
                                                      "memdevs": [n_c, n_o]}
            finally:
                h.unmount()
        t_e, pe = _median_time(ours_cli + ["exec", "big", "--", "cxl", "list", "-M"])
        res["cxl_list_M_exec_s"] = round(t_e, 3)
        if "cxl_list_M_over_mount_s" in res:
            res["ratio_exec_to_c_over_mount"] = round(t_e / res["cxl_list_M_over_mount_s"]["real_c"], 2)
        res["preset"] = big
    finally:
        shutil.rmtree(home, ignore_errors=True)
    if args.json:
        print(json.dumps(res))
    else:
        a = res["attr_read_us"]
        print(f"attribute read, open+read+close via mem0 link : {a['link']:7.1f} us  "
              f"({res['attr_read_ratio_to_tmpfs']['link']}x tmpfs {a['tmpfs']:.1f} us)")
        print(f"attribute read, open+read+close canonical path: {a['canonical']:7.1f} us  "
              f"({res['attr_read_ratio_to_tmpfs']['canonical']}x tmpfs)")
        print(f"attribute pread on an open file               : {a['pread']:7.1f} us  "
              f"({res['attr_read_ratio_to_tmpfs']['pread']}x tmpfs {a['pread_tmpfs']:.1f} us)")
        if "cxl_list_M_over_mount_s" in res:
            c = res["cxl_list_M_over_mount_s"]
            print(f"cxl list -M on {big} over the mount: real C {c['real_c']:.3f} s, ours {c['ours']:.3f} s "
                  f"({c['ratio_ours_to_c']}x), {c['memdevs'][0]} memdevs")
        print(f"cxlemu exec {big} -- cxl list -M (load/list): {res['cxl_list_M_exec_s']:.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
