"""``cxlemu rack simulate``: the rack's shape (or overrides), a trace, a
scheduler, an engine; prints the summary and writes the report."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from cxlemu.util.lazy import lazy_module
from cxlemu.machine.store import MachineError
from cxlemu.util.units import GiB, parse_size

sched = lazy_module("cxlemu.fabric.sched")    # numpy and the scheduler: only `rack simulate` pays for them


def rack_shape(name: str) -> sched.RackShape:
    from cxlemu.fabric import rack
    from cxlemu.topology.schema import loads
    lay = rack.load_layout(name)
    text = (rack.rack_path(name) / "hosts" / lay["hosts"][0] / "topology.toml").read_text()
    t = loads(text)
    return sched.RackShape(hosts=len(lay["hosts"]), cores=sum(n.cpus for n in t.numa),
                           local=sum(n.memory for n in t.numa),
                           pool=sum(a["capacity"] for a in lay["appliances"]), slice=GiB)


def run(args) -> int:
    try:
        if args.name == "synthetic":
            shape = sched.RackShape(hosts=4, cores=8, local=16 * GiB, pool=256 * GiB)
        else:
            shape = rack_shape(args.name)
        over = {}
        if args.hosts is not None:
            over["hosts"] = args.hosts
        if args.host_mem is not None:
            over["local"] = parse_size(args.host_mem)
        if args.pool is not None:
            over["pool"] = parse_size(args.pool)
        if over:
            shape = sched.RackShape(**{**shape.__dict__, **over})
        if args.jobs:
            p = Path(args.jobs)
            if not p.is_file():
                raise MachineError(f"no job trace {args.jobs!r}")
            jobs = sched.read_csv(p.read_text())
        else:
            jobs = sched.synthetic_for(shape, args.load, args.seed, n=args.num_jobs,
                                       horizon=args.duration)
        if args.write_trace:
            sched.write_csv(jobs, Path(args.write_trace))
        engine = None
        if args.engine == "ray":
            from cxlemu.fabric.ray_engine import RayEngine
            engine = RayEngine(shape, actors=2, address=args.ray_address)
        from cxlemu.util.progress import progress
        t0 = time.perf_counter()
        with progress("simulate", total=None) as bar:
            res = sched.simulate(jobs, shape, args.scheduler, engine=engine,
                                 progress_cb=lambda i, n: bar.advance() if hasattr(bar, "advance") else None)
        wall = time.perf_counter() - t0
    except (sched.SimError, ValueError) as e:
        raise MachineError(f"simulate: {e}") from None
    res.summary["wall_s"] = round(wall, 3)
    if args.report:
        files = sched.write_report(res, Path(args.report))
        if not args.json:
            print(f"report: {', '.join(str(f) for f in files)}")
    if args.json:
        print(json.dumps({"scheduler": res.scheduler, "engine": res.engine, "shape": res.shape,
                          "summary": res.summary}, indent=1))
    else:
        s = res.summary
        print(f"{res.scheduler} ({res.engine}): {shape.hosts} hosts x {shape.local >> 30} GiB, pool {shape.pool >> 30} GiB; "
              f"{s['jobs']} jobs in {wall:.2f} s")
        print(f"  OOM kills {s['oom_kills']}, queueing delay mean {s['queue_delay_mean_s']:.0f} s "
              f"p95 {s['queue_delay_p95_s']:.0f} s, never started {s['never_started']}, rejected {s['rejected']}")
        print(f"  stranded memory mean {s['stranded_mean_fraction']:.1%} p95 {s['stranded_p95_fraction']:.1%}, "
              f"pool utilisation mean {s['pool_utilisation_mean']:.1%} max {s['pool_utilisation_max']:.1%}")
    return 0
