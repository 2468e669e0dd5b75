"""Workload engine speed and memory, against issue 9's targets.

    python benchmarks/bench_engine.py [--json] [--accesses 200M] [--skip-64g]

* **access rate**: GUPS over 16 GiB of RSS with 4 KiB pages on the
  ``tiered`` preset (16 GiB DRAM + 64 GiB CXL), policy ``default`` after
  the table is resident (steady state: page-table walk, pricing by the
  loaded-latency model, accounting) — simulated accesses per CPU second,
  and the ratio to a plain numpy gather of the same number of random
  indices into a 4 M-entry table (the floor for any per-access work in
  numpy), and to generating the indices plus that gather;
* **GUPS 200 M under tpp**: 200 M accesses over 16 GiB under ``tpp``
  (NUMA-balancing scanner, hint faults, promotion, kswapd, demotion all
  running), the first touch of the 16 GiB included; wall and CPU seconds;
* **64 GiB of RSS**: a child process maps 64 GiB and touches every page
  (16 M pages, on DRAM and CXL), then reports its peak resident memory.

Targets: >= 20 M accesses/s on one core; 64 GiB RSS in < 2 GiB of host
memory; GUPS 200 M over 16 GiB under tpp in < 15 s wall.  CPU seconds are
reported next to wall seconds: on a loaded machine wall time overstates
the cost.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from cxltest_support import boot  # noqa: E402

from cxlemu.sim.engine import run  # noqa: E402
from cxlemu.userspace import workloads as W  # noqa: E402
from cxlemu.userspace.workloads.base import parse_count  # noqa: E402

GiB = 1 << 30


def clocks():
    return time.perf_counter(), time.process_time()


def since(t):
    w, c = clocks()
    return w - t[0], c - t[1]


def bench_rate(n: int) -> dict:
    b = boot("tiered")
    k = b.kernel
    wl = W.Gups(rss="16G", threads=1)
    # make the table resident first (first touch of 4 M pages), keep the process
    t = clocks()
    r0 = run(k, wl, policy="default", accesses=40_000_000, seed=1, keep=True)
    warm_wall, warm_cpu = since(t)
    proc = r0.processes_live[0]
    from cxlemu.userspace.spec import ProcSpec
    t = clocks()
    r = run(k, ProcSpec(wl, process=proc), policy="default", accesses=n, seed=2)
    wall, cpu = since(t)
    proc.exit(0)
    rate = r.accesses / cpu
    # the floor: a numpy gather of the same number of indices, in the engine's batch size
    table = np.arange(4 << 20, dtype=np.int32)
    rng = np.random.default_rng(0)
    batch = 1 << 20
    idx = rng.integers(0, table.size, batch)
    reps = max(1, r.accesses // batch)
    t0 = time.process_time()
    for _ in range(reps):
        table.take(idx)
    g = (time.process_time() - t0) / (reps * batch)
    t0 = time.process_time()
    for _ in range(reps):
        table.take(rng.integers(0, table.size, batch))
    rg = (time.process_time() - t0) / (reps * batch)
    return {"accesses": r.accesses, "cpu_seconds": round(cpu, 3), "wall_seconds": round(wall, 3),
            "accesses_per_cpu_second": round(rate), "maccesses_per_second": round(rate / 1e6, 2),
            "numpy_gather_ns_per_index": round(g * 1e9, 2),
            "numpy_rng_gather_ns_per_index": round(rg * 1e9, 2),
            "ns_per_access": round(1e9 / rate, 2),
            "ratio_to_numpy_gather": round((1e9 / rate) / (g * 1e9), 2),
            "ratio_to_numpy_rng_gather": round((1e9 / rate) / (rg * 1e9), 2),
            "warmup_first_touch_wall_seconds": round(warm_wall, 3),
            "warmup_first_touch_cpu_seconds": round(warm_cpu, 3),
            "target_maccesses_per_second": 20, "met": rate >= 20e6}


def bench_tpp(n: int) -> dict:
    b = boot("tiered")
    k = b.kernel
    t = clocks()
    r = run(k, W.Gups(rss="16G", hot="2G", threads=1), policy="tpp", accesses=n, seed=1)
    wall, cpu = since(t)
    return {"accesses": r.accesses, "wall_seconds": round(wall, 3), "cpu_seconds": round(cpu, 3),
            "sim_seconds": round(r.sim_ns / 1e9, 3), "epochs": r.epochs,
            "numa_hint_faults": int(r.vmstat.get("numa_hint_faults", 0)),
            "pages_promoted": r.pages_promoted, "pages_demoted": r.pages_demoted,
            "fast_tier_hit_ratio": round(r.fast_tier_hit_ratio, 4),
            "target_wall_seconds": 15, "met": wall < 15, "met_on_cpu_seconds": cpu < 15}


CHILD = r"""
import resource, sys, time
sys.path.insert(0, {tests!r})
from cxltest_support import boot
from cxlemu.sim.engine import run
from cxlemu.userspace import workloads as W
b = boot("tiered")
t = time.process_time()
r = run(b.kernel, W.SeqScan(rss="64G", threads=1), policy="default", accesses=64 * 16 * 2**20, seed=1, keep=True)
proc = r.processes_live[0]
rss = proc.task.mm.rss()
print(rss, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, time.process_time() - t,
      r.nodes[0]["resident_bytes"], r.nodes[1]["resident_bytes"])
"""


def bench_64g() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT / "src") + os.pathsep + env.get("PYTHONPATH", "")
    p = subprocess.run([sys.executable, "-c", CHILD.format(tests=str(ROOT / "tests"))], capture_output=True,
                       text=True, env=env)
    if p.returncode:
        raise RuntimeError(p.stderr)
    rss_pages, maxrss_kb, cpu, n0, n1 = p.stdout.split()
    host = int(maxrss_kb) * 1024
    return {"simulated_rss_bytes": int(rss_pages) * 4096, "host_peak_rss_bytes": host,
            "host_peak_rss_gib": round(host / GiB, 3), "resident_dram_bytes": int(n0),
            "resident_cxl_bytes": int(n1), "cpu_seconds": round(float(cpu), 2),
            "target_host_gib": 2, "met": host < 2 * GiB}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--accesses", default="200M", help="accesses of the tpp run (default 200M)")
    ap.add_argument("--rate-accesses", default="100M", help="accesses of the steady-state rate run")
    ap.add_argument("--skip-64g", action="store_true")
    args = ap.parse_args()
    out = {"rate_gups_16g_4k": bench_rate(parse_count(args.rate_accesses)),
           "gups_tpp_16g": bench_tpp(parse_count(args.accesses))}
    if not args.skip_64g:
        out["rss_64g"] = bench_64g()
    out["host"] = {"cpus": os.cpu_count(), "loadavg": [round(x, 2) for x in os.getloadavg()],
                   "python": sys.version.split()[0], "numpy": np.__version__,
                   "bench_peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (1 << 20), 3)}
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    r, t = out["rate_gups_16g_4k"], out["gups_tpp_16g"]
    print(f"GUPS 16 GiB, 4 KiB pages, steady state: {r['maccesses_per_second']} M accesses/CPU-s "
          f"({r['ns_per_access']} ns/access; {r['ratio_to_numpy_gather']}x a numpy gather, "
          f"{r['ratio_to_numpy_rng_gather']}x rng + gather)  target >= 20: {'met' if r['met'] else 'NOT met'}")
    print(f"GUPS {t['accesses'] / 1e6:.0f} M over 16 GiB under tpp: {t['wall_seconds']} s wall, {t['cpu_seconds']} s "
          f"CPU, {t['sim_seconds']} s simulated, {t['pages_promoted']} promoted, {t['pages_demoted']} demoted  "
          f"target < 15 s wall: {'met' if t['met'] else 'NOT met'}")
    if "rss_64g" in out:
        m = out["rss_64g"]
        print(f"64 GiB simulated RSS: host peak RSS {m['host_peak_rss_gib']} GiB  "
              f"target < 2 GiB: {'met' if m['met'] else 'NOT met'}")
    print(f"host: {out['host']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
