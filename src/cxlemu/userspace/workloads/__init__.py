"""Built-in workload generators (``cxlemu workloads`` lists them).

From Python: ``cxlemu.workloads.Zipf(rss="8G", alpha=0.99)``,
``cxlemu.workloads.Gups(rss="16G", hot="4G")`` ...; by name:
``make("gups", rss="16G")``.
"""

from __future__ import annotations

import importlib

from cxlemu.userspace.workloads.base import COMMON, Batch, Param, Workload, WorkloadError

_REGISTRY = {
    "gups": ("cxlemu.userspace.workloads.gups", "Gups"),
    "kv": ("cxlemu.userspace.workloads.kv", "KeyValue"),
    "seqscan": ("cxlemu.userspace.workloads.simple", "SeqScan"),
    "uniform": ("cxlemu.userspace.workloads.simple", "Uniform"),
    "hotcold": ("cxlemu.userspace.workloads.simple", "HotCold"),
    "chase": ("cxlemu.userspace.workloads.chase", "PointerChase"),
    "stream": ("cxlemu.userspace.workloads.stream", "StreamTriad"),
    "phases": ("cxlemu.userspace.workloads.phases", "PhaseHotSet"),
    "graph": ("cxlemu.userspace.workloads.graph", "GraphWalk"),
    "alloc": ("cxlemu.userspace.workloads.alloc", "AllocChurn"),
    "trace": ("cxlemu.userspace.trace", "TraceReplay"),
}
_ALIASES = {"Gups": "gups", "Zipf": "kv", "KeyValue": "kv", "SeqScan": "seqscan", "Uniform": "uniform",
            "HotCold": "hotcold", "PointerChase": "chase", "Chase": "chase", "Stream": "stream", "StreamTriad": "stream",
            "Phases": "phases", "PhaseHotSet": "phases", "Graph": "graph", "GraphWalk": "graph",
            "AllocChurn": "alloc", "TraceReplay": "trace", "Trace": "trace"}


def names() -> list[str]:
    return sorted(_REGISTRY)


def get(name: str) -> type[Workload]:
    if name not in _REGISTRY:
        raise WorkloadError("workload", f"unknown workload {name!r} (known: {', '.join(names())})")
    mod, cls = _REGISTRY[name]
    return getattr(importlib.import_module(mod), cls)


def make(name: str, **params) -> Workload:
    return get(name)(**params)


def __getattr__(attr: str):
    if attr in _ALIASES:
        return get(_ALIASES[attr])
    raise AttributeError(attr)


__all__ = ["COMMON", "Batch", "Param", "Workload", "WorkloadError", "get", "make", "names"] + list(_ALIASES)
