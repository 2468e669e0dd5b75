"""``cxlemu scenario``: seed 002's cases, runnable end to end.

* ``cxlemu scenario zswap [--json]`` — reclaim from a CXL node with zswap on:
  Linux compresses the CXL node's pages into a pool allocated on the
  reclaiming CPU's node, so cold CXL pages end up (compressed) in DRAM — the
  "unwanted migration" of LSF/MM 2023.  The same run with the pool kept on
  the page's node (``boot.zswap_pool_node=page``, the locality fix Michal
  Hocko suggested) keeps them in CXL; the report gives where the pool's
  pages are, the DRAM the CXL node's swap took, and what each costs.
* ``cxlemu scenario aggregate [--json]`` — two CXL expanders as two nodes
  (``tiered-2cxl``) versus one node made of a 2-way interleaved region
  (``tiered-2cxl-interleaved``), and the two nodes used as one target by
  ``MPOL_WEIGHTED_INTERLEAVE``: node count, where pages go and the
  bandwidth a streaming workload gets from each.

Both boot their machines in this process (nothing is stored) and are
deterministic for ``--seed``.
"""

from __future__ import annotations

import argparse
import json
import sys


def register(add) -> None:
    sp = add("scenario", cmd_scenario, "seed 002's cases: zswap's unwanted migration, aggregating CXL nodes")
    sp.add_argument("case", choices=("zswap", "aggregate"))
    sp.add_argument("--json", action="store_true")
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--duration", default="3s", help="simulated time of each run (default 3s)")


def _boot(preset: str, sets: list[str]):
    from cxlemu.hw.platform import build_platform
    from cxlemu.kernel.kernel import Kernel
    from cxlemu.topology import presets
    from cxlemu.topology.overrides import apply_all
    from cxlemu.topology.schema import loads
    plat = build_platform(loads(apply_all(presets.text(preset), sets)))
    plat.firmware_boot()
    k = Kernel(plat)
    k.boot()
    return k


def zswap_case(seed: int = 0, duration_ns: int = 3_000_000_000) -> dict:
    import numpy as np
    from cxlemu.kernel.mm import mempolicy as mp
    from cxlemu.sim.engine import run
    from cxlemu.userspace.spec import ProcSpec
    from cxlemu.userspace.workloads import make
    out: dict = {"workload": "hotcold hot=128M cold=1G bound to the CXL node (512 MiB), swap 4G, zswap on",
                 "runs": []}
    for pool_node in ("reclaimer", "page"):
        k = _boot("tiered", ["numa.0.memory=2G", "device.0.volatile=512M", "window.0.size=512M",
                             "firmware_region.0.size=512M", "boot.swap=4G", "boot.zswap=true",
                             f"boot.zswap_pool_node={pool_node}"])
        spec = ProcSpec(make("hotcold", hot="128M", cold="1G", compress_ratio=3.0), policy=(mp.MPOL_BIND, (1,)))
        res = run(k, spec, duration=duration_ns, seed=seed, keep=True)
        vm = k.mm.vm
        z = vm.zswap
        pool_nodes = np.bincount(vm.frames.node_of(z.pool_frames).astype(np.int64), minlength=2) \
            if z.pool_frames.size and vm.frames is not None else np.zeros(2, np.int64)
        ev = vm.vmstat.events
        d = res.to_dict()
        comp, dec = z.costs()
        out["runs"].append({
            "zswap_pool_node": pool_node,
            "zswpout": int(ev.get("zswpout", 0)), "zswpin": int(ev.get("zswpin", 0)),
            "pswpout": int(ev.get("pswpout", 0)),
            "pool_bytes_compressed": int(z.pool_bytes),
            "pool_pages_by_node": {str(n): int(c) for n, c in enumerate(pool_nodes) if c},
            "dram_taken_by_cxl_swap_bytes": int(pool_nodes[0]) * 4096,
            "cxl_pool_bytes": int(pool_nodes[1:].sum()) * 4096 if pool_nodes.size > 1 else 0,
            "compress_cpu_ms": round(int(ev.get("zswpout", 0)) * comp / 1e6, 3),
            "decompress_cpu_ms": round(int(ev.get("zswpin", 0)) * dec / 1e6, 3),
            "mean_latency_ns": d["latency_ns"]["mean"], "p99_latency_ns": d["latency_ns"]["p99"],
            "accesses": d["accesses"],
        })
        for p in res.processes_live:
            p.exit()
    a, b = out["runs"]
    out["summary"] = (f"Linux puts the CXL node's compressed pages on the reclaiming CPU's node: "
                      f"{a['dram_taken_by_cxl_swap_bytes'] / 2**20:.1f} MiB of DRAM hold "
                      f"{a['zswpout']:,} pages reclaimed from the CXL node; keeping the pool on the page's "
                      f"node leaves {b['dram_taken_by_cxl_swap_bytes'] / 2**20:.1f} MiB in DRAM and "
                      f"{b['cxl_pool_bytes'] / 2**20:.1f} MiB in CXL; the cost: the pool now takes the CXL "
                      f"node's own memory, so {b['pswpout']:,} pages went to the swap device instead "
                      f"({a['pswpout']:,} before), mean latency "
                      f"{a['mean_latency_ns']:.0f} -> {b['mean_latency_ns']:.0f} ns")
    return out


def aggregate_case(seed: int = 0, duration_ns: int = 1_000_000_000) -> dict:
    from cxlemu.kernel.mm import mempolicy as mp
    from cxlemu.sim.engine import run
    from cxlemu.userspace.spec import ProcSpec
    from cxlemu.userspace.workloads import make
    out: dict = {"workload": "stream (triad) over 2 GiB, 2 threads, placed on CXL memory only", "runs": []}
    cases = [("tiered-2cxl", "bind node 1", (mp.MPOL_BIND, (1,))),
             ("tiered-2cxl", "weighted interleave nodes 1,2", (mp.MPOL_WEIGHTED_INTERLEAVE, (1, 2))),
             ("tiered-2cxl-interleaved", "bind node 1 (2-way interleaved region)", (mp.MPOL_BIND, (1,)))]
    for preset, label, pol in cases:
        k = _boot(preset, [])
        nodes = k.mm.numa.state_nodes("memory")
        cxl = [n for n in nodes if not k.mm.numa.cpus(n)]
        res = run(k, ProcSpec(make("stream", rss="2G"), policy=pol), duration=duration_ns, seed=seed)
        d = res.to_dict()
        v = {}
        for vma in res.vmas:
            for n, bts in vma["resident_by_node"].items():
                v[str(n)] = v.get(str(n), 0) + bts
        bw = res.accesses * 64 / (res.sim_ns / 1e9) / 1e9 if res.sim_ns else 0.0
        out["runs"].append({"machine": preset, "placement": label, "cxl_nodes": cxl,
                            "numa_nodes": len(nodes), "resident_by_node": v,
                            "bandwidth_gbps": round(bw, 2), "mean_latency_ns": d["latency_ns"]["mean"]})
    one, wi, ilv = out["runs"]
    out["summary"] = (f"one CXL node: {one['bandwidth_gbps']} GB/s; weighted interleave over the two nodes "
                      f"(one policy target): {wi['bandwidth_gbps']} GB/s; one node from an interleaved region: "
                      f"{ilv['bandwidth_gbps']} GB/s with {ilv['numa_nodes']} NUMA nodes instead of "
                      f"{one['numa_nodes']}")
    return out


def cmd_scenario(args) -> int:
    from cxlemu.userspace.workloads.base import parse_duration
    try:
        dur = parse_duration(args.duration)
        if dur <= 0:
            raise ValueError("must be positive")
    except ValueError as e:
        print(f"cxlemu: scenario: --duration: {e}", file=sys.stderr)
        return 2
    rep = zswap_case(args.seed, dur) if args.case == "zswap" else aggregate_case(args.seed, dur)
    if args.json:
        print(json.dumps(rep, indent=2))
        return 0
    print(rep["workload"])
    for r in rep["runs"]:
        print("  " + ", ".join(f"{k}={v}" for k, v in r.items()))
    print(rep["summary"])
    return 0


_ = argparse
