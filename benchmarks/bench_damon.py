"""DAMON's cost on a run: the same workload run twice on copies of one
machine, without DAMON and with a kdamond monitoring a 64 GiB physical
address space (the tiered preset's CXL node, paddr) in exactly 1000 regions
(min_nr_regions = max_nr_regions = 1000), sampling every 5 ms and aggregating
every 100 ms; reported as the ratio of wall times (the target: under 1.10) and of CPU
times (steadier on a shared machine),
with DAMON's own share (the kdamond's run() calls, timed) and the epochs each
run took (the engine ends an epoch when a kdamond is due, so a 5 ms sampling
interval can add epochs to a run whose epochs were longer).

    python benchmarks/bench_damon.py [--duration 2s] [--reps 3] [--json]
    python benchmarks/bench_damon.py --hotcold    # the hot/cold example, 20 s simulated

``--hotcold`` times the kernel commit's example instead (hot_cold recipe,
``hotcold --hot 500M --cold 600M`` on the tiered preset, 20 s of simulated
time; the target: under 30 s wall) and reports where the hot and cold areas
ended.
"""

from __future__ import annotations

import argparse
import copy
import json
import pickle
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from cxltest_support import boot_text  # noqa: E402

from cxlemu.kernel.mm.damon import core  # noqa: E402
from cxlemu.sim.engine import run  # noqa: E402
from cxlemu.sysfs.backend import EmulatorBackend  # noqa: E402
from cxlemu.topology import presets  # noqa: E402
from cxlemu.userspace.spec import ProcSpec  # noqa: E402
from cxlemu.userspace.workloads import make  # noqa: E402
from cxlemu.userspace.workloads.base import parse_duration  # noqa: E402

ADMIN = "/sys/kernel/mm/damon/admin/kdamonds"


def paddr_1000(b, nid: int) -> None:
    from cxlemu.tools import damos
    ranges = damos.numa_node_ranges(b, nid)
    w = lambda p, v: b.write(f"{ADMIN}/{p}", f"{v}\n")   # noqa: E731
    w("nr_kdamonds", 1)
    w("0/contexts/nr_contexts", 1)
    c = "0/contexts/0"
    w(f"{c}/operations", "paddr")
    w(f"{c}/monitoring_attrs/nr_regions/min", 1000)
    w(f"{c}/monitoring_attrs/nr_regions/max", 1000)
    w(f"{c}/targets/nr_targets", 1)
    w(f"{c}/targets/0/regions/nr_regions", len(ranges))
    for i, (s, e) in enumerate(ranges):
        w(f"{c}/targets/0/regions/{i}/start", s)
        w(f"{c}/targets/0/regions/{i}/end", e)
    w("0/state", "on")


class Timed:
    """Wraps Kdamond.run to time DAMON's own work."""

    def __init__(self):
        self.total = 0.0
        self.orig = core.Kdamond.run

    def __enter__(self):
        me = self

        def timed(kd, kernel, now):
            t = time.perf_counter()
            try:
                return me.orig(kd, kernel, now)
            finally:
                me.total += time.perf_counter() - t
        core.Kdamond.run = timed
        return self

    def __exit__(self, *a):
        core.Kdamond.run = self.orig


def overhead(duration_ns: int, reps: int) -> dict:
    b = boot_text(presets.text("tiered"))
    saved = pickle.dumps(b.kernel, pickle.HIGHEST_PROTOCOL)
    wl = make("gups", rss="8G", hot="1G", threads=4)
    rows = []
    for rep in range(reps):
        for with_damon in (False, True):
            k = pickle.loads(saved)
            kb = EmulatorBackend(k)
            if with_damon:
                paddr_1000(kb, 1)
            with Timed() as t:
                w0, c0 = time.perf_counter(), time.process_time()
                res = run(k, ProcSpec(copy.deepcopy(wl)), duration=duration_ns, seed=rep)
                wall, cpu = time.perf_counter() - w0, time.process_time() - c0
            nr = sum(int(t_.regions.start.size) for kd in k.mm.damon.kdamonds
                     for t_ in kd.kd.ctx.targets) if with_damon else 0
            rows.append({"rep": rep, "damon": with_damon, "wall_s": wall, "cpu_s": cpu, "damon_s": t.total,
                         "epochs": res.epochs, "regions": nr})
    base = min(r["wall_s"] for r in rows if not r["damon"])
    dam = min(r["wall_s"] for r in rows if r["damon"])
    own = min(r["damon_s"] for r in rows if r["damon"])
    cbase = min(r["cpu_s"] for r in rows if not r["damon"])
    cdam = min(r["cpu_s"] for r in rows if r["damon"])
    return {"benchmark": "damon-overhead", "monitored_bytes": 64 << 30, "regions": max(r["regions"] for r in rows),
            "sim_seconds": duration_ns / 1e9, "runs": rows,
            "wall_without_s": round(base, 3), "wall_with_s": round(dam, 3),
            "ratio": round(dam / base, 3), "cpu_ratio": round(cdam / cbase, 3), "damon_own_s": round(own, 3),
            "damon_own_ratio": round(own / base, 3),
            "epochs_without": min(r["epochs"] for r in rows if not r["damon"]),
            "epochs_with": min(r["epochs"] for r in rows if r["damon"])}


def hotcold(duration_ns: int) -> dict:
    from cxlemu.tools import damos
    b = boot_text(presets.text("tiered"))
    damos.stage(b, damos.recipe("hot_cold", b))
    damos.turn_on(b, 2)
    w0 = time.perf_counter()
    c0 = time.process_time()
    res = run(b.kernel, ProcSpec(make("hotcold", hot="500M", cold="600M")), duration=duration_ns)
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    by = {v["name"]: {int(n): x for n, x in v["resident_by_node"].items()} for v in res.vmas}
    return {"benchmark": "hot_cold", "sim_seconds": duration_ns / 1e9, "wall_s": round(wall, 2),
            "cpu_s": round(cpu, 2), "hot_on_dram": round(by["hot"].get(0, 0) / (500 << 20), 4),
            "cold_on_cxl": round(by["cold"].get(1, 0) / (600 << 20), 4), "epochs": res.epochs}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", default=None)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--hotcold", action="store_true")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    if a.hotcold:
        out = hotcold(parse_duration(a.duration or "20s"))
    else:
        out = overhead(parse_duration(a.duration or "2s"), a.reps)
    if a.json:
        print(json.dumps(out, indent=2))
    else:
        for k, v in out.items():
            if k != "runs":
                print(f"{k}: {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
