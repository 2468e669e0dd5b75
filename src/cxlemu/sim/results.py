"""What a run produces: the summary numbers, the timeline, the latency
histogram and the access heatmap, as JSON, as text, and as plots."""

from __future__ import annotations

import json
from dataclasses import field
from typing import Any

import numpy as np

from cxlemu.hw.timing import MemTiming
from cxlemu.util.lazydc import dataclass


class Timeline:
    """One row per epoch: time, accesses, fast-tier hits, latency, per node
    resident pages / accesses / utilisation / loaded latency, and the
    cumulative migration counters."""

    def __init__(self, nodes: list[int]):
        self.nodes = list(nodes)
        self.rows: list[dict[str, Any]] = []

    def add(self, t_ns: int, dur: float, acc: float, fast: float, lat_sum: float, et, resident: np.ndarray,
            ctr: dict[str, int], proc_acc: list[float]) -> None:
        self.rows.append({"t_ns": int(t_ns), "dt_ns": float(dur), "accesses": float(acc), "fast": float(fast),
                          "lat_sum": float(lat_sum),
                          "resident": {n: int(resident[n]) for n in self.nodes if n < resident.size},
                          "util": {n: float(et.utilisation[n]) for n in self.nodes if n < len(et.utilisation)},
                          "latency": {n: float(et.read_latency[n]) for n in self.nodes if n < len(et.read_latency)},
                          **ctr})

    def __len__(self) -> int:
        return len(self.rows)

    def column(self, name: str) -> np.ndarray:
        return np.array([r[name] for r in self.rows], dtype=float)

    def t_seconds(self) -> np.ndarray:
        return self.column("t_ns") / 1e9

    def hit_ratio(self) -> np.ndarray:
        a = self.column("accesses")
        return np.divide(self.column("fast"), a, out=np.zeros_like(a), where=a > 0)

    def resident(self, nid: int) -> np.ndarray:
        return np.array([r["resident"].get(nid, 0) for r in self.rows], dtype=float)

    def as_dict(self) -> dict[str, list]:
        keys = ("t_ns", "dt_ns", "accesses", "fast", "promoted", "demoted", "migrated", "swapped_out",
                "hint_faults")
        d: dict[str, list] = {k: [r.get(k, 0) for r in self.rows] for k in keys}
        for n in self.nodes:
            d[f"resident_pages_node{n}"] = [r["resident"].get(n, 0) for r in self.rows]
            d[f"latency_ns_node{n}"] = [round(r["latency"].get(n, 0.0), 2) for r in self.rows]
            d[f"utilisation_node{n}"] = [round(r["util"].get(n, 0.0), 4) for r in self.rows]
        return d

    def plot(self, path: str | None = None):
        """Resident pages per node and the fast-tier hit ratio over time (matplotlib)."""
        from cxlemu.sim.report import plot_timeline
        return plot_timeline([("", self)], path)


@dataclass
class RunResult:
    label: str
    policy: str
    knobs: dict[str, str]
    seed: int
    sim_ns: int
    wall_s: float
    accesses: int
    fast_accesses: int
    latency_sum: float
    hist: np.ndarray
    optimal: float
    capacity_pages: int
    nodes: dict[int, dict[str, int]]
    vmas: list[dict]
    processes: list[dict]
    vmstat: dict[str, int]
    node_events: dict[str, int]
    timeline: Timeline
    heat: np.ndarray
    timings: dict[int, MemTiming]
    toptier: list[int]
    epochs: int
    workload: list[dict]
    machine: str = ""
    count_stride: int = 1
    optimal_tail: float = 0.0            # optimal placement over the steady-state window
    tail: float = 0.25                   # the steady-state window: the last quarter of the run
    tail_accesses: float = 0.0
    tail_fast: float = 0.0
    processes_live: list = field(default_factory=list)
    extra: dict = field(default_factory=dict)      # what run extensions add (DAMOS stats, allocator accounting)
    memory_failures: list = field(default_factory=list)   # machine checks the run's accesses raised (sim/engine.py)

    # ---- derived numbers -----------------------------------------------------------------------
    @property
    def fast_tier_hit_ratio(self) -> float:
        return self.fast_accesses / self.accesses if self.accesses else 0.0

    def steady_hit_ratio(self) -> float:
        """Fast-tier hit ratio over the steady-state window (the last ``tail`` of the run)."""
        return self.tail_fast / self.tail_accesses if self.tail_accesses else 0.0

    def percentile(self, q: float) -> float:
        from cxlemu.sim.histogram import HIST_EDGES
        h = np.maximum(self.hist, 0)
        tot = h.sum()
        if tot <= 0:
            return 0.0
        c = np.cumsum(h)
        i = int(np.searchsorted(c, tot * q / 100.0))
        i = min(i, h.size - 1)
        return float(np.sqrt(HIST_EDGES[i] * HIST_EDGES[i + 1]))

    @property
    def mean_latency(self) -> float:
        return self.latency_sum / self.accesses if self.accesses else 0.0

    @property
    def pages_promoted(self) -> int:
        return int(self.node_events.get("pgpromote_success", 0))

    @property
    def pages_demoted(self) -> int:
        return int(self.node_events.get("pgdemote_kswapd", 0) + self.node_events.get("pgdemote_direct", 0))

    @property
    def migrated_bytes(self) -> int:
        return int(self.vmstat.get("pgmigrate_success", 0)) * 4096

    @property
    def throughput(self) -> float:
        """Accesses per simulated second."""
        return self.accesses / (self.sim_ns / 1e9) if self.sim_ns else 0.0

    # ---- output --------------------------------------------------------------------------------------
    def to_dict(self, timeline: bool = False) -> dict:
        d = {
            "policy": self.policy,
            "label": self.label,
            "machine": self.machine,
            "seed": self.seed,
            "workload": self.workload,
            "knobs": self.knobs,
            "sim_seconds": round(self.sim_ns / 1e9, 6),
            "wall_seconds": round(self.wall_s, 3),
            "accesses": int(self.accesses),
            "accesses_per_sim_second": round(self.throughput, 1),
            "latency_ns": {"mean": round(self.mean_latency, 2), "p50": round(self.percentile(50), 2),
                           "p99": round(self.percentile(99), 2)},
            "fast_tier_hit_ratio": round(self.fast_tier_hit_ratio, 6),
            "steady_fast_tier_hit_ratio": round(self.steady_hit_ratio(), 6),
            "optimal_fast_tier_hit_ratio": round(self.optimal, 6),
            "steady_optimal_fast_tier_hit_ratio": round(self.optimal_tail, 6),
            "steady_window": "whole run" if self.tail >= 1.0 else f"last {self.tail:.0%} of the run",
            "fast_tier_nodes": self.toptier,
            "fast_tier_capacity_bytes": int(self.capacity_pages) * 4096,
            "pages_promoted": self.pages_promoted,
            "pages_demoted": self.pages_demoted,
            "migrated_bytes": self.migrated_bytes,
            "nodes": {str(n): {**v, "idle_read_latency_ns": round(self.timings[n].read_latency, 1),
                               "peak_read_bandwidth_mbps": round(self.timings[n].read_bandwidth, 1)}
                      for n, v in self.nodes.items()},
            "vmas": self.vmas,
            "processes": self.processes,
            "vmstat": {k: int(v) for k, v in sorted({**self.vmstat, **self.node_events}.items())},
            "epochs": self.epochs,
        }
        if self.memory_failures:
            # only when poison was consumed: a clean run's JSON is what it always was
            d["memory_failures"] = self.memory_failures
        if timeline:
            d["timeline"] = self.timeline.as_dict()
        d.update(self.extra)
        return d

    def to_json(self, timeline: bool = False) -> str:
        return json.dumps(self.to_dict(timeline), indent=2)

    def summary(self) -> str:
        from cxlemu.util.units import human_size
        d = self.to_dict()
        lat = d["latency_ns"]
        lines = [
            f"policy {self.policy}: {self.accesses:,} accesses in {d['sim_seconds']:.3f} s simulated "
            f"({self.throughput / 1e6:.1f} M/s), {self.wall_s:.1f} s wall",
            f"  latency: mean {lat['mean']:.0f} ns, p50 {lat['p50']:.0f} ns, p99 {lat['p99']:.0f} ns",
            f"  fast-tier hit ratio: {self.fast_tier_hit_ratio:.3f} (optimal static placement {self.optimal:.3f}); "
            f"steady state {self.steady_hit_ratio():.3f} (optimal {self.optimal_tail:.3f})",
            f"  promoted {self.pages_promoted:,} pages, demoted {self.pages_demoted:,} pages, "
            f"migrated {human_size(self.migrated_bytes)}",
        ]
        for n, v in sorted(self.nodes.items()):
            t = self.timings[n]
            tier = "fast" if n in self.toptier else "slow"
            lines.append(f"  node {n} ({tier}, {t.read_latency:.0f} ns idle): resident {human_size(v['resident_bytes'])}")
        for v in self.vmas:
            by = ", ".join(f"node {n}: {human_size(b)}" for n, b in sorted(v["resident_by_node"].items())) or "-"
            lines.append(f"  vma {v['process']}:{v['name']} ({human_size(v['size'])}): {by}")
        for p in self.processes:
            if p["exit"] not in ("exited", "running", "stopped"):
                lines.append(f"  process {p['pid']} ({p['comm']}): {p['exit']}")
        for f in self.memory_failures:
            sent = ", ".join(f"{s['signal']} ({s['si_code']}) to {s['comm']}:{s['pid']}" for s in f["signals"])
            lines.append(f"  memory failure: pfn {f['pfn']:#x} (node {f['node']}) touched by {f['comm']}:{f['pid']}: "
                         f"{f['page_type']}, {f['result']}" + (f"; {sent}" if sent else ""))
        if self.extra:
            from cxlemu.sim.extsummary import summary_lines
            lines += summary_lines(self.extra)
        return "\n".join(lines) + "\n"

    def report(self, directory: str) -> str:
        from cxlemu.sim.report import write_report
        return write_report([self], directory)
