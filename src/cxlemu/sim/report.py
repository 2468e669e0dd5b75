"""Reports: report.md with PNG plots (matplotlib, Agg) for one run or for a
comparison of several runs of the same workload and seed.

Plots: resident pages per node over time, fast-tier hit ratio over time,
latency CDF, and the access heatmap (address x time, as damo draws it)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from cxlemu.sim.results import RunResult, Timeline


def _subplots(*args, interactive: bool = False, **kw):
    """A figure and its axes: through pyplot for an interactive plot (the
    notebook's backend), else a bare Figure rendered by Agg (no GUI, no
    global pyplot state: report files from the CLI)."""
    try:
        if interactive:
            import matplotlib.pyplot as plt
            return plt.subplots(*args, **kw)
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError("plots need matplotlib, an optional dependency: pip install 'cxlemu[report]'") from None
    fig = Figure(figsize=kw.pop("figsize", None))
    return fig, fig.subplots(*args, **kw)


def plot_timeline(items: list[tuple[str, "Timeline"]], path: str | None = None):
    fig, axes = _subplots(2, 1, figsize=(8, 6), sharex=True, interactive=path is None)
    for label, tl in items:
        t = tl.t_seconds()
        for n in tl.nodes:
            axes[0].plot(t, tl.resident(n) * 4096 / 2 ** 30, label=f"{label} node {n}".strip())
        axes[1].plot(t, tl.hit_ratio(), label=label or "hit ratio")
    axes[0].set_ylabel("resident GiB")
    axes[0].legend(fontsize=7)
    axes[1].set_ylabel("fast-tier hit ratio")
    axes[1].set_xlabel("simulated time (s)")
    axes[1].set_ylim(0, 1.02)
    if len(items) > 1:
        axes[1].legend(fontsize=7)
    fig.tight_layout()
    if path:
        fig.savefig(path, dpi=100)
    return fig


def plot_resident(results: list["RunResult"], path: str) -> None:
    fig, ax = _subplots(figsize=(8, 4))
    for r in results:
        t = r.timeline.t_seconds()
        for n in r.timeline.nodes:
            ax.plot(t, r.timeline.resident(n) * 4096 / 2 ** 30, label=f"{r.label} node {n}")
    ax.set_xlabel("simulated time (s)")
    ax.set_ylabel("resident GiB")
    ax.set_title("resident pages per node")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def plot_hit_ratio(results: list["RunResult"], path: str) -> None:
    fig, ax = _subplots(figsize=(8, 4))
    for r in results:
        ax.plot(r.timeline.t_seconds(), r.timeline.hit_ratio(), label=f"{r.label}")
        ax.axhline(r.optimal, linestyle=":", linewidth=0.8)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("simulated time (s)")
    ax.set_ylabel("fast-tier hit ratio")
    ax.set_title("fast-tier hit ratio (dotted: optimal static placement)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def plot_latency_cdf(results: list["RunResult"], path: str) -> None:
    from cxlemu.sim.histogram import HIST_EDGES
    fig, ax = _subplots(figsize=(8, 4))
    centers = np.sqrt(HIST_EDGES[:-1] * HIST_EDGES[1:])
    for r in results:
        h = np.maximum(r.hist, 0)
        if h.sum() <= 0:
            continue
        c = np.cumsum(h) / h.sum()
        nz = np.flatnonzero(h)
        lo, hi = nz[0], nz[-1] + 1
        ax.step(centers[lo:hi], c[lo:hi], where="post", label=r.label)
    ax.set_xscale("log")
    ax.set_xlabel("access latency (ns)")
    ax.set_ylabel("fraction of accesses")
    ax.set_title("latency CDF")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def plot_heatmap(r: "RunResult", path: str, time_bins: int = 200) -> None:
    heat = r.heat
    fig, ax = _subplots(figsize=(8, 4))
    if heat.size:
        t = r.timeline.t_seconds()
        time_bins = max(1, min(time_bins, t.size))
        edges = np.linspace(0, t[-1] if t.size else 1, time_bins + 1)
        rows = np.clip(np.searchsorted(edges, t, side="right") - 1, 0, time_bins - 1)
        grid = np.zeros((time_bins, heat.shape[1]))
        np.add.at(grid, rows, heat)
        ax.imshow(np.log1p(grid.T), aspect="auto", origin="lower", cmap="inferno",
                  extent=(0, edges[-1], 0, heat.shape[1]))
    ax.set_xlabel("simulated time (s)")
    ax.set_ylabel("address (bucket of the processes' address spaces)")
    ax.set_title(f"access heatmap ({r.label})")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def _table(results: list["RunResult"]) -> str:
    hdr = ("| policy | sim s | accesses | mean ns | p50 ns | p99 ns | fast hit | steady | optimal | "
           "promoted | demoted | migrated MiB |")
    sep = "|" + "---|" * 12
    rows = [hdr, sep]
    for r in results:
        d = r.to_dict()
        rows.append(f"| {r.label} | {d['sim_seconds']:.3f} | {r.accesses:,} | {d['latency_ns']['mean']:.0f} | "
                    f"{d['latency_ns']['p50']:.0f} | {d['latency_ns']['p99']:.0f} | "
                    f"{r.fast_tier_hit_ratio:.3f} | {r.steady_hit_ratio():.3f} | {r.optimal:.3f} | "
                    f"{r.pages_promoted:,} | {r.pages_demoted:,} | {r.migrated_bytes / 2 ** 20:.1f} |")
    return "\n".join(rows) + "\n"


def write_report(results: list["RunResult"], directory: str) -> str:
    """report.md and its plots; returns the path of report.md."""
    os.makedirs(directory, exist_ok=True)
    plot_resident(results, os.path.join(directory, "resident.png"))
    plot_hit_ratio(results, os.path.join(directory, "hit_ratio.png"))
    plot_latency_cdf(results, os.path.join(directory, "latency_cdf.png"))
    heat_files = []
    for i, r in enumerate(results):
        name = "heatmap.png" if len(results) == 1 else f"heatmap_{i}_{_slug(r.label)}.png"
        plot_heatmap(r, os.path.join(directory, name))
        heat_files.append((r.label, name))
    r0 = results[0]
    wl = "; ".join(", ".join(f"{k}={v}" for k, v in w.items()) for w in r0.workload)
    lines = [f"# cxlemu run report{' — ' + r0.machine if r0.machine else ''}", "",
             f"Workload: {wl}  ", f"Seed: {r0.seed}", "",
             "## Results", "", _table(results), "",
             "Memory nodes (timing model, hw/timing.py):", ""]
    for n, t in sorted(r0.timings.items()):
        tier = "fast" if n in r0.toptier else "slow"
        lines.append(f"* node {n} ({tier} tier): idle read {t.read_latency:.0f} ns, peak read "
                     f"{t.read_bandwidth / 1000:.1f} GB/s — {t.source}")
    lines += ["", "## Resident pages per node", "", "![resident](resident.png)", "",
              "## Fast-tier hit ratio", "", "![hit ratio](hit_ratio.png)", "",
              "## Latency CDF", "", "![latency](latency_cdf.png)", "", "## Access heatmap", ""]
    for label, name in heat_files:
        lines += [f"![heatmap {label}]({name})", ""]
    lines += ["## Kernel counters (deltas over the run)", ""]
    keys = ("pgpromote_success", "pgpromote_candidate", "pgdemote_kswapd", "pgdemote_direct", "numa_hint_faults",
            "numa_pages_migrated", "pgmigrate_success", "pgmigrate_fail", "pgsteal_kswapd", "pgsteal_direct",
            "pswpout", "pswpin", "zswpout", "zswpin", "oom_kill")
    lines.append("| counter | " + " | ".join(r.label for r in results) + " |")
    lines.append("|---|" + "---|" * len(results))
    for k in keys:
        vals = [{**r.vmstat, **r.node_events}.get(k, 0) for r in results]
        lines.append(f"| {k} | " + " | ".join(f"{v:,}" for v in vals) + " |")
    lines.append("")
    path = os.path.join(directory, "report.md")
    with open(path, "w") as f:
        f.write("\n".join(lines))
    return path


def _slug(s: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in s)[:40]
