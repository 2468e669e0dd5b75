"""Hosts as Ray actors: the same :class:`~cxlemu.fabric.sched.HostShard`
arithmetic, one actor per shard of hosts, driven step by step by the
scheduler in :func:`~cxlemu.fabric.sched.simulate`.  Results are identical to
the in-process engine (same shards' arithmetic, same order of concatenation).

``address=None`` starts a local Ray (``num_cpus`` workers, no dashboard);
otherwise ``ray.init(address=...)`` joins a cluster.
"""

from __future__ import annotations

import numpy as np

from cxlemu.fabric.sched import HostShard, RackShape, _shards


class RayEngine:
    name = "ray"

    def __init__(self, shape: RackShape, actors: int = 2, address: str | None = None, num_cpus: int = 2):
        import os
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        os.environ.setdefault("RAY_DEDUP_LOGS", "0")
        import ray
        self.ray = ray
        self._owns = False
        if not ray.is_initialized():
            if address:
                ray.init(address=address, log_to_driver=False)
            else:
                ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False,
                         configure_logging=False, _metrics_export_port=None)
                self._owns = True
        Shard = ray.remote(num_cpus=0)(HostShard)
        self.bounds = _shards(shape.hosts, actors)
        self.actors = [Shard.remote(a, b, shape.local) for a, b in self.bounds]

    def advance(self, t: float):
        outs = self.ray.get([a.advance.remote(t) for a in self.actors])
        return np.concatenate([o[0] for o in outs]), np.concatenate([o[1] for o in outs])

    def oom(self, t: float, capacity: np.ndarray):
        outs = self.ray.get([a.oom.remote(t, capacity[lo:hi]) for a, (lo, hi) in zip(self.actors, self.bounds)])
        return np.concatenate([o[0] for o in outs]), np.concatenate([o[1] for o in outs])

    def add(self, job, host, start, dur, peak, ramp) -> None:
        refs = []
        for a, (lo, hi) in zip(self.actors, self.bounds):
            m = (host >= lo) & (host < hi)
            if m.any():
                refs.append(a.add.remote(job[m], host[m], start[m], dur[m], peak[m], ramp[m]))
        self.ray.get(refs)

    def close(self) -> None:
        for a in self.actors:
            self.ray.kill(a)
        self.actors = []
        if self._owns:
            self.ray.shutdown()
