"""Job-level scheduling against a rack's memory pool: a time-stepped
simulation, vectorised with numpy over hosts and running jobs.

Model.  Each host has ``cores`` and ``local`` DRAM; the rack has one pool of
``pool`` bytes that hosts borrow in slices (Pond: 1 GiB).  A job arrives,
asks for ``cores`` and ``request`` bytes (what it rents), and touches memory
over time: usage ramps linearly from 0 to ``peak`` over the first ``ramp``
fraction of its run, then stays (Pond: the median VM never touches 50 % of
what it rents).  Every step:

1. running jobs advance, finished ones leave (their memory and cores free);
2. the pool is handed out: each host needs ``ceil((usage - local) / slice)``
   slices; hosts are served in index order until the pool is empty, and a
   host keeps no slice it does not need (giving back is instant here);
3. a host whose usage exceeds ``local + its slices`` OOMs: the kernel's OOM
   killer kills its largest job (ties: the lowest id) until it fits;
4. queued jobs (arrival order) are admitted by the scheduler:

   * ``first-fit``: the first host with free cores whose *local* memory left
     (local - usage) holds the job's expected touch (half its request, the
     packing Pond's observation invites); no pool -- growing jobs OOM;
   * ``pool``: the same against local + the free pool: the pool absorbs
     growth until it runs out;
   * ``memory-aware``: the first host with free cores whose *reserved*
     memory (the requests of its jobs) plus this request fits in local plus
     the pool not reserved by others: a job waits rather than risk an OOM.

A job that no host could ever take (more cores or memory than any host plus
the whole pool) is rejected at load time.

Metrics per step (``timeline``): pool bytes in use, stranded memory (free
local memory on hosts whose cores are all taken: Pond's definition), local
usage, queue length, OOM kills; per run (``summary``): OOM kills, queueing
delay (mean, p50, p95, max), mean and p95 stranded fraction, mean pool
utilisation, jobs finished.

The host side (2-3: usage, slices, OOM) runs on :class:`HostShard` objects;
the in-process engine holds one shard, the Ray engine (ray_engine.py) one
actor per shard.  Both apply the same arithmetic in the same order, so the
results are identical for the same seed.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import asdict, field
from pathlib import Path

import numpy as np

from cxlemu.util.lazydc import dataclass
from cxlemu.util.units import GiB, parse_size

SCHEDULERS = ("first-fit", "pool", "memory-aware")
FIRST_FIT_TOUCH = 0.5


class SimError(ValueError):
    pass


@dataclass
class Jobs:
    """A job trace as arrays (one entry per job, sorted by arrival)."""
    arrival: np.ndarray        # s
    duration: np.ndarray       # s
    request: np.ndarray        # bytes (int64)
    peak: np.ndarray           # bytes touched at peak
    cores: np.ndarray          # int
    ramp: np.ndarray           # fraction of the duration to reach the peak

    def __len__(self) -> int:
        return int(self.arrival.size)


@dataclass(frozen=True)
class RackShape:
    hosts: int
    cores: int
    local: int                 # bytes of DRAM per host
    pool: int                  # bytes in the pool
    slice: int = GiB


# ---- traces ---------------------------------------------------------------------------------------------
VM_SIZES_GIB = np.array([2, 4, 8, 16, 32, 64])
VM_SIZE_P = np.array([0.18, 0.27, 0.25, 0.17, 0.09, 0.04])


def synthetic(n: int, seed: int = 0, horizon: float = 86400.0, median_duration: float = 3600.0,
              gib_per_core: int = 4, max_gib: int = 64) -> Jobs:
    """A Pond-like trace: VM sizes 2..64 GiB (Azure-like mix), 1 core per
    ``gib_per_core`` GiB, Poisson arrivals over ``horizon`` seconds, lognormal
    durations (median ``median_duration``), touched fraction Beta(2, 2)
    (median 0.5: "the median VM never touches 50 % of its memory"), a few
    jobs (2 %) outgrowing their request by up to 20 %."""
    if n < 0:
        raise SimError("number of jobs must not be negative")
    rng = np.random.default_rng(seed)
    arrival = np.sort(rng.uniform(0.0, horizon, n))
    duration = np.exp(rng.normal(math.log(median_duration), 1.0, n)).clip(60.0, 86400.0)
    fit = VM_SIZES_GIB <= max(max_gib, VM_SIZES_GIB[0])     # VMs fit in a host (Pond: within a socket)
    gib = rng.choice(VM_SIZES_GIB[fit], n, p=VM_SIZE_P[fit] / VM_SIZE_P[fit].sum())
    request = (gib * GiB).astype(np.int64)
    touched = rng.beta(2.0, 2.0, n)
    over = rng.random(n) < 0.02
    touched = np.where(over, 1.0 + rng.uniform(0.0, 0.2, n), touched)
    peak = (request * touched).astype(np.int64)
    cores = np.maximum(1, gib // gib_per_core).astype(np.int64)
    ramp = rng.uniform(0.05, 0.5, n)
    return Jobs(arrival, duration, request, peak, cores, ramp)


def mean_job(max_gib: int = 64, gib_per_core: int = 4, median_duration: float = 3600.0) -> tuple[float, float]:
    """Expected cores and duration of a synthetic job (for sizing a trace)."""
    fit = VM_SIZES_GIB <= max(max_gib, VM_SIZES_GIB[0])
    p = VM_SIZE_P[fit] / VM_SIZE_P[fit].sum()
    cores = float((np.maximum(1, VM_SIZES_GIB[fit] // gib_per_core) * p).sum())
    return cores, median_duration * math.exp(0.5)


def synthetic_for(shape: "RackShape", util: float = 0.85, seed: int = 0, n: int | None = None,
                  horizon: float = 86400.0) -> Jobs:
    """A synthetic trace loading ``shape``'s cores to about ``util``: given
    ``n`` jobs the arrival window is sized for it, else ``n`` is sized for
    ``horizon`` seconds."""
    max_gib = int(shape.local >> 30)
    gpc = 4                      # Azure general-purpose VMs: 4 GiB per core, whatever the host has
    c, d = mean_job(max_gib, gpc)
    total = shape.hosts * shape.cores
    if n is None:
        n = int(util * total * horizon / (c * d))
    else:
        horizon = n * c * d / (util * total)
    return synthetic(n, seed, horizon=horizon, gib_per_core=gpc, max_gib=max_gib)


CSV_FIELDS = ("arrival", "duration", "request", "peak", "cores", "ramp")


def write_csv(jobs: Jobs, path: Path | None = None) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(("id",) + CSV_FIELDS)
    for i in range(len(jobs)):
        w.writerow((i, f"{jobs.arrival[i]:.3f}", f"{jobs.duration[i]:.3f}", int(jobs.request[i]), int(jobs.peak[i]),
                    int(jobs.cores[i]), f"{jobs.ramp[i]:.4f}"))
    if path is not None:
        Path(path).write_text(buf.getvalue())
    return buf.getvalue()


def _num(text: str, what: str, line: int, size: bool = False) -> float:
    t = (text or "").strip()
    if not t:
        raise SimError(f"line {line}: {what} is missing")
    try:
        if size and not _is_float(t):
            neg = t.startswith("-")
            v = float(parse_size(t[1:] if neg else t)) * (-1 if neg else 1)
        else:
            v = float(t)
    except ValueError:
        raise SimError(f"line {line}: {what} {t!r} is not a number") from None
    if not math.isfinite(v):
        raise SimError(f"line {line}: {what} {t!r} is not finite")
    return v


def _is_float(t: str) -> bool:
    try:
        float(t)
        return True
    except ValueError:
        return False


def read_csv(text: str) -> Jobs:
    """CSV with a header naming at least arrival, duration, request (sizes
    may carry units: 16G); peak (default: request), cores (default 1),
    ramp (default 0.1) are optional.  Any bad value -> SimError naming the
    line; nothing runs."""
    rows = list(csv.reader(io.StringIO(text)))
    if not rows:
        raise SimError("empty job trace (a header with arrival,duration,request is required)")
    head = [h.strip().lower() for h in rows[0]]
    for need in ("arrival", "duration", "request"):
        if need not in head:
            raise SimError(f"job trace header lacks {need!r} (have: {', '.join(head)})")
    ix = {h: i for i, h in enumerate(head)}
    cols: dict[str, list[float]] = {f: [] for f in CSV_FIELDS}
    for ln, row in enumerate(rows[1:], start=2):
        if not any(c.strip() for c in row):
            continue
        if len(row) < len(head):
            raise SimError(f"line {ln}: {len(row)} fields, {len(head)} expected")

        raw: dict[str, str] = {}

        def get(name: str, default: str | None, size: bool = False) -> float:
            if name not in ix or not row[ix[name]].strip():
                if default is None:
                    raise SimError(f"line {ln}: {name} is missing")
                raw[name] = default
                return _num(default, name, ln, size)
            raw[name] = row[ix[name]].strip()
            return _num(row[ix[name]], name, ln, size)

        a = get("arrival", None)
        d = get("duration", None)
        r = get("request", None, True)
        p = get("peak", str(int(r)), True)
        c = get("cores", "1")
        rp = get("ramp", "0.1")
        if a < 0:
            raise SimError(f"line {ln}: arrival must not be negative, got {raw['arrival']!r}")
        if d <= 0:
            raise SimError(f"line {ln}: duration must be positive, got {raw['duration']!r}")
        if r <= 0:
            raise SimError(f"line {ln}: request must be a positive size, got {raw['request']!r}")
        if p < 0:
            raise SimError(f"line {ln}: peak must not be negative, got {raw['peak']!r}")
        if c < 1 or c != int(c):
            raise SimError(f"line {ln}: cores must be a positive integer, got {raw['cores']!r}")
        if not 0 < rp <= 1:
            raise SimError(f"line {ln}: ramp must be in (0, 1] ({rp:g})")
        for k, v in zip(CSV_FIELDS, (a, d, r, p, c, rp)):
            cols[k].append(v)
    order = np.argsort(np.array(cols["arrival"], dtype=np.float64), kind="stable")
    return Jobs(np.array(cols["arrival"], dtype=np.float64)[order],
                np.array(cols["duration"], dtype=np.float64)[order],
                np.array(cols["request"], dtype=np.float64).astype(np.int64)[order],
                np.array(cols["peak"], dtype=np.float64).astype(np.int64)[order],
                np.array(cols["cores"], dtype=np.float64).astype(np.int64)[order],
                np.array(cols["ramp"], dtype=np.float64)[order])


# ---- the host side ------------------------------------------------------------------------------------------
class HostShard:
    """Hosts ``lo .. hi-1``: their running jobs, usage, OOM killing."""

    def __init__(self, lo: int, hi: int, local: int):
        self.lo, self.hi, self.local = lo, hi, local
        n = 0
        self.job = np.zeros(n, dtype=np.int64)
        self.host = np.zeros(n, dtype=np.int64)
        self.start = np.zeros(n, dtype=np.float64)
        self.dur = np.zeros(n, dtype=np.float64)
        self.peak = np.zeros(n, dtype=np.int64)
        self.ramp = np.zeros(n, dtype=np.float64)

    def add(self, job: np.ndarray, host: np.ndarray, start: np.ndarray, dur: np.ndarray, peak: np.ndarray,
            ramp: np.ndarray) -> None:
        self.job = np.concatenate([self.job, job])
        self.host = np.concatenate([self.host, host])
        self.start = np.concatenate([self.start, start])
        self.dur = np.concatenate([self.dur, dur])
        self.peak = np.concatenate([self.peak, peak])
        self.ramp = np.concatenate([self.ramp, ramp])

    def _keep(self, m: np.ndarray) -> None:
        for k in ("job", "host", "start", "dur", "peak", "ramp"):
            setattr(self, k, getattr(self, k)[m])

    def usage_of_jobs(self, t: float) -> np.ndarray:
        frac = np.clip((t - self.start) / (self.dur * self.ramp), 0.0, 1.0)
        return (self.peak * frac).astype(np.int64)

    def advance(self, t: float) -> tuple[np.ndarray, np.ndarray]:
        """Finish jobs that ended by ``t``; (finished job ids, usage per host)."""
        done = self.start + self.dur <= t
        fin = self.job[done]
        self._keep(~done)
        return fin, self.usage(t)

    def usage(self, t: float) -> np.ndarray:
        return np.bincount(self.host - self.lo, weights=self.usage_of_jobs(t), minlength=self.hi - self.lo
                           ).astype(np.int64)

    def oom(self, t: float, capacity: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Kill the largest job on every host over ``capacity`` until it fits;
        (killed job ids, usage per host after)."""
        use = self.usage_of_jobs(t)
        per = np.bincount(self.host - self.lo, weights=use, minlength=self.hi - self.lo).astype(np.int64)
        over = np.nonzero(per > capacity)[0]
        if over.size == 0:
            return np.zeros(0, dtype=np.int64), per
        kill = np.zeros(self.job.size, dtype=bool)
        for h in over:                                  # only hosts that OOM
            idx = np.nonzero(self.host == h + self.lo)[0]
            order = idx[np.lexsort((self.job[idx], -use[idx]))]
            total = per[h]
            for j in order:
                if total <= capacity[h]:
                    break
                kill[j] = True
                total -= use[j]
            per[h] = total
        killed = self.job[kill]
        self._keep(~kill)
        return killed, per


def grant_slices(usage: np.ndarray, local: int, pool: int, slice_: int) -> np.ndarray:
    """Pool slices per host: what each needs, in host order, until the pool is empty."""
    need = np.maximum(0, -(-(usage - local) // slice_))
    cum = np.cumsum(need)
    avail = pool // slice_
    return np.where(cum <= avail, need, np.maximum(0, need - (cum - avail))).clip(0)


# ---- the scheduler / driver ------------------------------------------------------------------------------------
@dataclass
class Result:
    scheduler: str
    engine: str
    shape: dict
    summary: dict
    timeline: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return asdict(self)


def _shards(hosts: int, n: int) -> list[tuple[int, int]]:
    n = max(1, min(n, hosts))
    cuts = np.linspace(0, hosts, n + 1).astype(int)
    return [(int(a), int(b)) for a, b in zip(cuts[:-1], cuts[1:]) if b > a]


class LocalEngine:
    """Shards in this process."""

    name = "inproc"

    def __init__(self, shape: RackShape, shards: int = 1):
        self.shards = [HostShard(a, b, shape.local) for a, b in _shards(shape.hosts, shards)]

    def advance(self, t: float):
        outs = [s.advance(t) for s in self.shards]
        return np.concatenate([o[0] for o in outs]), np.concatenate([o[1] for o in outs])

    def oom(self, t: float, capacity: np.ndarray):
        outs = [s.oom(t, capacity[s.lo:s.hi]) for s in self.shards]
        return np.concatenate([o[0] for o in outs]), np.concatenate([o[1] for o in outs])

    def add(self, job, host, start, dur, peak, ramp) -> None:
        for s in self.shards:
            m = (host >= s.lo) & (host < s.hi)
            if m.any():
                s.add(job[m], host[m], start[m], dur[m], peak[m], ramp[m])

    def close(self) -> None:
        pass


def simulate(jobs: Jobs, shape: RackShape, scheduler: str = "memory-aware", step: float = 60.0,
             engine=None, progress_cb=None) -> Result:
    if scheduler not in SCHEDULERS:
        raise SimError(f"unknown scheduler {scheduler!r} ({', '.join(SCHEDULERS)})")
    if shape.hosts <= 0 or shape.cores <= 0 or shape.local <= 0 or shape.pool < 0 or shape.slice <= 0:
        raise SimError("rack shape: hosts, cores, local memory and slice must be positive, the pool not negative")
    eng = engine or LocalEngine(shape)
    H = shape.hosts
    use_pool = scheduler != "first-fit"
    pool = shape.pool if use_pool else 0
    n = len(jobs)
    fits_ever = (jobs.cores <= shape.cores) & (jobs.request <= shape.local + pool)
    rejected = int(np.count_nonzero(~fits_ever))
    free_cores = np.full(H, shape.cores, dtype=np.int64)
    reserved = np.zeros(H, dtype=np.int64)               # sum of requests of running jobs
    usage = np.zeros(H, dtype=np.int64)
    slices = np.zeros(H, dtype=np.int64)
    job_host = np.full(n, -1, dtype=np.int64)
    start_t = np.full(n, np.nan)
    killed = np.zeros(n, dtype=bool)
    finished = np.zeros(n, dtype=bool)
    queue: list[int] = []
    nxt = 0
    t_end = float(jobs.arrival.max() + jobs.duration.max()) if n else 0.0
    steps = int(math.ceil(t_end / step)) + 1 if n else 0
    max_steps = 4 * steps          # queued jobs may still start after the last arrival's end
    tl = {k: np.zeros(steps) for k in ("t", "pool_used", "stranded", "local_used", "queue", "oom", "running")}
    oom_total = 0
    for k in tl:
        tl[k] = np.zeros(max_steps)
    si = -1
    while True:
        si += 1
        if si >= max_steps or (si >= steps and not queue and nxt >= n and not (free_cores < shape.cores).any()):
            break
        t = si * step
        fin, usage = eng.advance(t)
        if fin.size:
            finished[fin] = True
            np.add.at(free_cores, job_host[fin], jobs.cores[fin])
            np.subtract.at(reserved, job_host[fin], jobs.request[fin])
        slices = grant_slices(usage, shape.local, pool, shape.slice) if use_pool else np.zeros(H, dtype=np.int64)
        cap = shape.local + slices * shape.slice
        dead, usage = eng.oom(t, cap)
        if dead.size:
            killed[dead] = True
            oom_total += dead.size
            np.add.at(free_cores, job_host[dead], jobs.cores[dead])
            np.subtract.at(reserved, job_host[dead], jobs.request[dead])
            slices = grant_slices(usage, shape.local, pool, shape.slice) if use_pool else slices
        while nxt < n and jobs.arrival[nxt] <= t:
            if fits_ever[nxt]:
                queue.append(nxt)
            nxt += 1
        # admission
        pool_free = pool - int(slices.sum()) * shape.slice
        pool_unreserved = pool - int(np.maximum(0, reserved - shape.local).sum())
        placed_j, placed_h = [], []
        still = []
        max_cores = int(free_cores.max())
        for j in queue:
            c, r = int(jobs.cores[j]), int(jobs.request[j])
            if c > max_cores:                   # cheap scalar test first: most waiting jobs stop here
                still.append(j)
                continue
            ok = free_cores >= c
            if scheduler == "first-fit":
                ok &= (shape.local - usage) >= int(r * FIRST_FIT_TOUCH)
            elif scheduler == "pool":
                ok &= (shape.local - usage) + pool_free >= int(r * FIRST_FIT_TOUCH)
            else:
                over_now = np.maximum(0, reserved - shape.local)
                over_new = np.maximum(0, reserved + r - shape.local)
                ok &= (over_new - over_now) <= pool_unreserved
            hit = np.flatnonzero(ok)
            if hit.size == 0:
                still.append(j)
                continue
            h = int(hit[0])
            if scheduler == "memory-aware":
                pool_unreserved -= int(max(0, reserved[h] + r - shape.local) - max(0, reserved[h] - shape.local))
            elif scheduler == "pool":
                take = max(0, int(r * FIRST_FIT_TOUCH) - max(0, shape.local - int(usage[h])))
                pool_free -= take
            free_cores[h] -= c
            max_cores = int(free_cores.max())
            reserved[h] += r
            usage[h] += int(r * FIRST_FIT_TOUCH) if scheduler != "memory-aware" else 0
            job_host[j] = h
            start_t[j] = t
            placed_j.append(j)
            placed_h.append(h)
        queue = still
        if placed_j:
            pj = np.array(placed_j, dtype=np.int64)
            eng.add(pj, np.array(placed_h, dtype=np.int64), np.full(pj.size, t), jobs.duration[pj], jobs.peak[pj],
                    jobs.ramp[pj])
        real_use = usage
        full = free_cores == 0
        tl["t"][si] = t
        tl["pool_used"][si] = float(np.maximum(0, real_use - shape.local).clip(0).sum()) if use_pool else 0.0
        tl["stranded"][si] = float(np.maximum(0, shape.local - reserved)[full].sum())    # unrented (Pond)
        tl["local_used"][si] = float(np.minimum(real_use, shape.local).sum())
        tl["queue"][si] = len(queue)
        tl["oom"][si] = oom_total
        tl["running"][si] = float((shape.cores * H - free_cores.sum()))
        if progress_cb is not None:
            progress_cb(si, steps)
    eng.close()
    steps = si
    tl = {k: v[:steps] for k, v in tl.items()}
    started = ~np.isnan(start_t)
    delay = (start_t - jobs.arrival)[started]
    total_local = shape.local * H
    summary = {
        "jobs": n, "rejected": rejected, "started": int(started.sum()), "never_started": int(n - rejected - started.sum()),
        "finished": int(finished.sum()), "oom_kills": int(killed.sum()),
        "queue_delay_mean_s": float(delay.mean()) if delay.size else 0.0,
        "queue_delay_p50_s": float(np.percentile(delay, 50)) if delay.size else 0.0,
        "queue_delay_p95_s": float(np.percentile(delay, 95)) if delay.size else 0.0,
        "queue_delay_max_s": float(delay.max()) if delay.size else 0.0,
        "stranded_mean_fraction": float(tl["stranded"].mean() / total_local) if steps else 0.0,
        "stranded_p95_fraction": float(np.percentile(tl["stranded"], 95) / total_local) if steps else 0.0,
        "pool_utilisation_mean": float(tl["pool_used"].mean() / shape.pool) if steps and shape.pool and use_pool else 0.0,
        "pool_utilisation_max": float(tl["pool_used"].max() / shape.pool) if steps and shape.pool and use_pool else 0.0,
        "steps": steps, "step_s": step,
    }
    return Result(scheduler, getattr(eng, "name", "inproc"), asdict(shape), summary,
                  {k: v.tolist() for k, v in tl.items()})


def write_report(res: Result, out: Path) -> list[Path]:
    """report.json, timeline.csv and PNG plots in ``out``."""
    import json
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = [out / "report.json", out / "timeline.csv"]
    (out / "report.json").write_text(json.dumps({k: v for k, v in res.to_json().items() if k != "timeline"}, indent=1))
    tl = res.timeline
    keys = list(tl)
    with open(out / "timeline.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(keys)
        for row in zip(*(tl[k] for k in keys)):
            w.writerow(row)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    t = np.array(tl["t"]) / 3600.0
    fig, ax = plt.subplots(4, 1, figsize=(8, 9), sharex=True)
    pool = res.shape["pool"] or 1
    ax[0].plot(t, np.array(tl["pool_used"]) / pool * 100)
    ax[0].set_ylabel("pool used %")
    ax[1].plot(t, np.array(tl["stranded"]) / (res.shape["local"] * res.shape["hosts"]) * 100)
    ax[1].set_ylabel("stranded %")
    ax[2].plot(t, tl["queue"])
    ax[2].set_ylabel("queued jobs")
    ax[3].plot(t, tl["oom"])
    ax[3].set_ylabel("OOM kills")
    ax[3].set_xlabel("hours")
    fig.suptitle(f"{res.scheduler}: {res.shape['hosts']} hosts, pool {res.shape['pool'] >> 30} GiB")
    fig.tight_layout()
    fig.savefig(out / "timeline.png", dpi=80)
    plt.close(fig)
    files.append(out / "timeline.png")
    return files
