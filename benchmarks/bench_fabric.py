"""Racks: fabric-manager latency and load, and the rack simulation's speed.

    python benchmarks/bench_fabric.py [--json] [--quick] [--ray]

* **add-to-visible**: ``POST /v1/hosts/host0/allocations`` for one extent,
  timed until the response, which the FM sends only after the host's event
  handler has surfaced the DAX device (checked in the host's sysfs after).
  Baselines in the same run: an HTTP round trip (``GET /v1/health``) and
  opening the host machine (``Store().open``); the target is < 50 ms.
* **concurrent load**: 1000 requests issued at once (asyncio + httpx, 1000
  connections) against the FM on loopback; errors must be 0.
* **simulation**: the in-process engine on 100 hosts x 10 000 jobs (target
  < 60 s), and a day of jobs on 10, 100 and 1000 hosts (wall time and jobs
  per second: how it scales); ``--ray`` adds the Ray engine at 100 hosts,
  with the ratio to the in-process engine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def http(method, url, body=None, token=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read())


def bench_fm(reps: int, concurrent: int) -> dict:
    from fabric.rackutil import make_rack
    from cxlemu.fabric.fm import service
    from cxlemu.machine.store import Store
    make_rack("bench", hosts=2, cap="64G")
    info = service.start("bench")
    tok = service.token("bench")
    url = info["url"]
    try:
        health, opens, adds, releases = [], [], [], []
        for i in range(reps):
            t0 = time.perf_counter()
            http("GET", url + "/v1/health")
            health.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            with Store().open("bench/host0"):
                pass
            opens.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            row = http("POST", url + "/v1/hosts/host0/allocations", {"size": "1G", "tag": f"b{i}"}, tok)
            adds.append(time.perf_counter() - t0)
            with Store().open("bench/host0") as m:        # visible on the host: its DAX device
                uuid = m.backend().read(f"/sys/bus/dax/devices/{row['dax']}/uuid").strip()
                assert uuid == row.get("tag_uuid"), (uuid, row)
            t0 = time.perf_counter()
            http("DELETE", url + f"/v1/hosts/host0/allocations/b{i}", None, tok)
            releases.append(time.perf_counter() - t0)

        async def load() -> tuple[int, int, float]:
            import httpx
            limits = httpx.Limits(max_connections=concurrent, max_keepalive_connections=concurrent)
            async with httpx.AsyncClient(limits=limits, timeout=120) as c:
                paths = ["/v1/status", "/v1/hosts", "/v1/health", "/v1/devices"]
                t0 = time.perf_counter()
                rs = await asyncio.gather(*(c.get(url + paths[i % 4]) for i in range(concurrent)),
                                          return_exceptions=True)
                dt = time.perf_counter() - t0
            ok = sum(1 for r in rs if not isinstance(r, Exception) and r.status_code == 200)
            return ok, concurrent - ok, dt

        ok, bad, dt = asyncio.run(load())
    finally:
        service.stop("bench", quiet=True)
    med = statistics.median
    return {
        "add_to_visible_ms_median": round(med(adds) * 1e3, 2), "add_to_visible_ms_max": round(max(adds) * 1e3, 2),
        "release_ms_median": round(med(releases) * 1e3, 2),
        "baseline_http_roundtrip_ms": round(med(health) * 1e3, 2),
        "baseline_host_open_ms": round(med(opens) * 1e3, 2),
        "add_over_host_open": round(med(adds) / med(opens), 2),
        "add_over_http_roundtrip": round(med(adds) / med(health), 2),
        "concurrent_requests": concurrent, "concurrent_ok": ok, "concurrent_errors": bad,
        "concurrent_wall_s": round(dt, 3), "concurrent_req_per_s": round(concurrent / dt, 1),
    }


def bench_sim(quick: bool, with_ray: bool) -> dict:
    from cxlemu.fabric import sched
    from cxlemu.util.units import GiB
    out = {}
    shape = sched.RackShape(100, 64, 192 * GiB, 4096 * GiB)
    jobs = sched.synthetic_for(shape, 0.85, seed=1, n=10000)
    t0 = time.perf_counter()
    r = sched.simulate(jobs, shape, "memory-aware")
    out["hosts100_jobs10000_s"] = round(time.perf_counter() - t0, 2)
    out["hosts100_jobs10000_summary"] = {k: r.summary[k] for k in ("oom_kills", "queue_delay_mean_s",
                                                                 "pool_utilisation_mean", "steps")}
    scaling = {}
    for hosts in ((10, 100) if quick else (10, 100, 1000)):
        sh = sched.RackShape(hosts, 64, 128 * GiB, hosts * 64 * GiB)
        j = sched.synthetic_for(sh, 0.85, seed=2, horizon=86400.0)
        t0 = time.perf_counter()
        res = sched.simulate(j, sh, "pool")
        dt = time.perf_counter() - t0
        scaling[hosts] = {"jobs": len(j), "wall_s": round(dt, 2), "jobs_per_s": round(len(j) / dt),
                          "oom_kills": res.summary["oom_kills"],
                          "pool_utilisation_mean": round(res.summary["pool_utilisation_mean"], 3)}
    out["day_of_jobs_scaling"] = scaling
    if with_ray:
        from cxlemu.fabric.ray_engine import RayEngine
        sh = sched.RackShape(100, 64, 192 * GiB, 4000 * GiB)
        j = sched.synthetic_for(sh, 0.85, seed=3, n=5000)
        t0 = time.perf_counter()
        a = sched.simulate(j, sh, "pool")
        t_in = time.perf_counter() - t0
        eng = RayEngine(sh, actors=2)
        t0 = time.perf_counter()
        b = sched.simulate(j, sh, "pool", engine=eng)
        t_ray = time.perf_counter() - t0
        out["ray_100_hosts"] = {"inproc_s": round(t_in, 2), "ray_s": round(t_ray, 2),
                                "ray_over_inproc": round(t_ray / t_in, 1), "identical": a.summary == b.summary}
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--quick", action="store_true", help="fewer repetitions, no 1000-host run")
    ap.add_argument("--ray", action="store_true", help="also time the Ray engine")
    a = ap.parse_args()
    os.environ["CXLEMU_HOME"] = tempfile.mkdtemp(prefix="cxlemu-bench-fabric-")
    res = {"fm": bench_fm(5 if a.quick else 20, 1000), "sim": bench_sim(a.quick, a.ray)}
    if a.json:
        print(json.dumps(res, indent=1))
    else:
        fm = res["fm"]
        print(f"FM add-to-visible: median {fm['add_to_visible_ms_median']} ms (max {fm['add_to_visible_ms_max']}); "
              f"{fm['add_over_host_open']}x a host open, {fm['add_over_http_roundtrip']}x an HTTP round trip")
        print(f"1000 concurrent requests: {fm['concurrent_ok']} ok, {fm['concurrent_errors']} errors, "
              f"{fm['concurrent_req_per_s']} req/s")
        s = res["sim"]
        print(f"simulation 100 hosts x 10 000 jobs: {s['hosts100_jobs10000_s']} s")
        for h, v in s["day_of_jobs_scaling"].items():
            print(f"  a day of jobs on {h} hosts: {v['jobs']} jobs in {v['wall_s']} s ({v['jobs_per_s']} jobs/s)")
        if "ray_100_hosts" in s:
            print(f"  ray: {s['ray_100_hosts']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
