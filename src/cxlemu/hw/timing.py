"""Memory timing: what an access costs on each memory target, idle and loaded.

Timing is a property of the memory, not of the kernel: a DRAM channel or a
CXL device has an idle read/write latency, a peak read/write bandwidth and a
*loaded-latency curve* (latency grows super-linearly as the offered
bandwidth approaches the peak).  The kernel only sees what firmware reports
about it (HMAT for DRAM, CDAT + link figures for CXL, see kernel/perf.py);
by default cxlemu makes the two agree: a target's idle latency and peak
bandwidth are the HMAT/CDAT coordinates of the topology, plus the link hops
a CXL device sits behind.

The loaded-latency curve (a queueing-style shape, M/M/1-like near the knee)::

    factor(rho) = 1 + k * rho**2 / (1 - rho)        rho < rho_max
    latency(rho) = idle * factor(rho)               (linear beyond rho_max)

``rho`` is the utilisation of the target: the largest of read bandwidth /
peak read, write bandwidth / peak write and (read + write) / peak total (a
DDR channel is half duplex, so its total peak equals its read peak; a CXL
link carries reads and writes on separate directions, so its total peak is
higher).  Reads and writes have their own idle latency and ``k``.  Under
load a saturated DRAM node becomes slower than an idle CXL node (Colloid,
SOSP'24: "Tiered Memory Management: Access Latency is the Key!").

Calibration (``CALIBRATION``) with the source of every number; [P] primary,
[S] secondary source, as in the project's reference notes
(tiering-pooling-perf.md §0.1 and §3.6).  The ``k`` shape parameters are
model choices (no public loaded-latency curve of a CXL device was found),
picked so that latency has doubled at about 90 % utilisation for DRAM and
about 85 % for CXL controllers, whose queues saturate earlier (MIKU, 2025:
"CXL's limited parallelism/unfair queuing").

All functions are pure; the vectorised ones take numpy arrays.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Iterable

import math

from cxlemu.util.lazydc import dataclass

LINE = 64                       # bytes moved per memory access (a cache line)
RHO_MAX = 0.98                  # the curve turns linear beyond this utilisation


@dataclass(frozen=True)
class MemTiming:
    """Timing of one memory target (a DRAM node, a CXL device, an interleave set)."""
    name: str
    read_latency: float          # ns, idle
    write_latency: float         # ns, idle
    read_bandwidth: float        # MB/s (10^6 bytes/s), peak
    write_bandwidth: float       # MB/s, peak
    total_bandwidth: float = 0.0  # MB/s, peak of reads + writes (0: = read_bandwidth, half duplex)
    read_k: float = 0.15         # loaded-latency curve shape for reads
    write_k: float = 0.15        # ... and for writes
    source: str = ""             # where the numbers come from

    @property
    def total(self) -> float:
        return self.total_bandwidth or self.read_bandwidth

    def utilisation(self, read_mbps: float, write_mbps: float) -> float:
        return utilisation(self, read_mbps, write_mbps)

    def loaded(self, read_mbps: float, write_mbps: float) -> tuple[float, float]:
        """(read ns, write ns) at the given offered bandwidth."""
        rho = utilisation(self, read_mbps, write_mbps)
        return self.read_latency * curve(self.read_k, rho), self.write_latency * curve(self.write_k, rho)


def curve(k: float, rho: float) -> float:
    """The loaded-latency factor at utilisation ``rho`` (1.0 when idle)."""
    if rho <= 0:
        return 1.0
    if rho < RHO_MAX:
        return 1.0 + k * rho * rho / (1.0 - rho)
    top = 1.0 + k * RHO_MAX * RHO_MAX / (1.0 - RHO_MAX)
    slope = k * RHO_MAX * (2 - RHO_MAX) / (1.0 - RHO_MAX) ** 2      # d/drho at RHO_MAX
    return top + slope * (rho - RHO_MAX)


def utilisation(t: MemTiming, read_mbps: float, write_mbps: float) -> float:
    r = read_mbps / t.read_bandwidth if t.read_bandwidth else 0.0
    w = write_mbps / t.write_bandwidth if t.write_bandwidth else 0.0
    tot = (read_mbps + write_mbps) / t.total if t.total else 0.0
    return max(r, w, tot)


def interleave(timings: Iterable[MemTiming], name: str = "") -> MemTiming:
    """Timing of memory interleaved over several targets: bandwidths add,
    latency is the worst member's (every access waits for its own target,
    and interleaving spreads load evenly)."""
    ts = list(timings)
    if not ts:
        raise ValueError("no targets")
    if len(ts) == 1:
        return ts[0] if not name else replace(ts[0], name=name)
    return MemTiming(name or "+".join(t.name for t in ts),
                     max(t.read_latency for t in ts), max(t.write_latency for t in ts),
                     sum(t.read_bandwidth for t in ts), sum(t.write_bandwidth for t in ts),
                     sum(t.total for t in ts), max(t.read_k for t in ts), max(t.write_k for t in ts),
                     "; ".join(sorted({t.source for t in ts if t.source})))


def blend(parts: Iterable[tuple[MemTiming, float]], name: str = "") -> MemTiming:
    """A node made of several targets holding different shares of its pages
    (e.g. boot DRAM plus a CXL window in the same node): latency is the
    page-weighted mean, bandwidth the sum."""
    ps = [(t, w) for t, w in parts if w > 0]
    if not ps:
        raise ValueError("no targets")
    if len(ps) == 1:
        return ps[0][0] if not name else replace(ps[0][0], name=name)
    tw = sum(w for _, w in ps)
    return MemTiming(name or "+".join(t.name for t, _ in ps),
                     sum(t.read_latency * w for t, w in ps) / tw, sum(t.write_latency * w for t, w in ps) / tw,
                     sum(t.read_bandwidth for t, _ in ps), sum(t.write_bandwidth for t, _ in ps),
                     sum(t.total for t, _ in ps), max(t.read_k for t, _ in ps), max(t.write_k for t, _ in ps),
                     "; ".join(sorted({t.source for t, _ in ps if t.source})))


# --------------------------------------------------------------------------------------------
# Calibration: device classes with published figures
# --------------------------------------------------------------------------------------------
DDR5_4800_CHANNEL_PEAK = 38400        # MB/s theoretical, one DDR5-4800 channel [P, JEDEC: 4800 MT/s x 8 B]
DDR5_READ_EFFICIENCY = 0.70           # all-read efficiency of DDR5 (Demystifying CXL Memory, MICRO'23, DDR5-R) [S]
CXL_A_READ_EFFICIENCY = 0.46          # all-read efficiency of an ASIC CXL device, CXL-A (same paper) [S]
CXL_C_EFFICIENCY = 0.20               # FPGA CXL device, CXL-C (same paper) [S]
REMOTE_DDR5_NS = 142                  # remote-socket DRAM, Intel (Pond, ASPLOS'23 emulation platform) [S]
LOCAL_DDR5_NS = 78                    # local DRAM, Intel (Pond) [S]

CALIBRATION: dict[str, MemTiming] = {
    "ddr5-4800": MemTiming(
        "ddr5-4800", LOCAL_DDR5_NS, LOCAL_DDR5_NS,
        DDR5_4800_CHANNEL_PEAK * DDR5_READ_EFFICIENCY, DDR5_4800_CHANNEL_PEAK * DDR5_READ_EFFICIENCY, 0.0,
        0.15, 0.15,
        "one DDR5-4800 channel: 78 ns idle (Pond, Intel local), 38.4 GB/s x 70 % efficiency "
        "(Demystifying CXL Memory, MICRO'23)"),
    "ddr5-remote": MemTiming(
        "ddr5-remote", REMOTE_DDR5_NS, REMOTE_DDR5_NS,
        DDR5_4800_CHANNEL_PEAK * DDR5_READ_EFFICIENCY, DDR5_4800_CHANNEL_PEAK * DDR5_READ_EFFICIENCY, 0.0,
        0.15, 0.15,
        "remote-socket DDR5 channel: 142 ns idle (Pond, Intel remote), 70 % of 38.4 GB/s (Demystifying)"),
    "cxl-asic-x8": MemTiming(
        "cxl-asic-x8", round(REMOTE_DDR5_NS * 1.35), round(REMOTE_DDR5_NS * 1.35),
        DDR5_4800_CHANNEL_PEAK * CXL_A_READ_EFFICIENCY, DDR5_4800_CHANNEL_PEAK * CXL_A_READ_EFFICIENCY, 36000,
        0.25, 0.25,
        "ASIC CXL Type 3, PCIe 5 x8, one DDR5-4800 channel: +35 % over remote DDR5 = 192 ns "
        "(Demystifying, CXL-A; within Melody's 140-410 ns), 46 % of 38.4 GB/s all-read (Demystifying), "
        "36 GB/s read+write (Micron CZ120, 2:1 R/W)"),
    "cxl-fpga": MemTiming(
        "cxl-fpga", 410, 410,
        25600 * CXL_C_EFFICIENCY, 25600 * CXL_C_EFFICIENCY, 25600 * CXL_C_EFFICIENCY * 2,
        0.3, 0.3,
        "FPGA CXL device, DDR4-3200: ~3x remote DDR5 capped at Melody's 410 ns maximum, "
        "20 % of 25.6 GB/s (Demystifying, CXL-C)"),
    "cxl-pool-box": MemTiming(
        "cxl-pool-box", 596, 596, 60000, 60000, 120000, 0.25, 0.25,
        "pooled CXL memory box behind PCIe 5 x16: 596 ns, 60 GB/s (Samsung CMM-B)"),
}


def calibrated(name: str) -> MemTiming:
    try:
        return CALIBRATION[name]
    except KeyError:
        raise ValueError(f"unknown timing profile {name!r} (known: {', '.join(sorted(CALIBRATION))})") from None


# --------------------------------------------------------------------------------------------
# Targets of a platform
# --------------------------------------------------------------------------------------------
PCIE5_X16_MBPS = 32000 * 128 // 130 * 16 // 8       # what kernel/perf.py link_bandwidth() reports
FLIT_NS_PCIE5 = 68 * 1000 / (32000 / 8)             # 68-byte flit at 32 GT/s per lane: 17 ns per hop


@dataclass(frozen=True)
class TimingOverride:
    """A topology's ``timing`` table (all optional: 0 / "" keeps the default)."""
    profile: str = ""
    read_latency: float = 0
    write_latency: float = 0
    read_bandwidth: float = 0
    write_bandwidth: float = 0
    total_bandwidth: float = 0
    read_k: float = 0
    write_k: float = 0


def apply_override(base: MemTiming, ov: TimingOverride | None) -> MemTiming:
    if ov is None:
        return base
    t = base
    if ov.profile:
        p = calibrated(ov.profile)
        t = replace(p, name=base.name)
    changes = {f: getattr(ov, f) for f in ("read_latency", "write_latency", "read_bandwidth", "write_bandwidth",
                                           "total_bandwidth", "read_k", "write_k") if getattr(ov, f)}
    if changes:
        t = replace(t, source=(t.source + "; " if t.source else "") + "topology timing table", **changes)
    return t


def dram_timing(name: str, read_latency: float, write_latency: float, read_bw: float, write_bw: float,
                override: TimingOverride | None = None) -> MemTiming:
    """A DRAM node from its HMAT figures (what the topology's [[numa]] entry says)."""
    t = MemTiming(name, read_latency, write_latency, read_bw, write_bw, 0.0, 0.15, 0.15,
                  "HMAT figures of the topology's [[numa]] entry (DDR shape k=0.15)")
    return apply_override(t, override)


def cxl_timing(name: str, read_latency: float, write_latency: float, read_bw: float, write_bw: float,
               hops: int, override: TimingOverride | None = None) -> MemTiming:
    """A CXL Type 3 device from its CDAT figures plus ``hops`` PCIe 5 links
    (17 ns each, bandwidth capped at the x16 link): the same arithmetic as
    the kernel's access coordinates (kernel/perf.py), so the two agree."""
    rl = read_latency + hops * FLIT_NS_PCIE5
    wl = write_latency + hops * FLIT_NS_PCIE5
    rbw, wbw = min(read_bw, PCIE5_X16_MBPS), min(write_bw, PCIE5_X16_MBPS)
    t = MemTiming(name, rl, wl, rbw, wbw, rbw + wbw, 0.25, 0.25,
                  "CDAT figures of the topology's device + 17 ns per PCIe 5 link (CXL shape k=0.25)")
    return apply_override(t, override)


# --------------------------------------------------------------------------------------------
# The closed loop: how long an epoch of accesses takes, given the load it creates
# --------------------------------------------------------------------------------------------
@dataclass
class Stream:
    """The accesses of one program (all its threads) in an epoch.

    ``reads[i]``/``writes[i]``: cache-line accesses to target i (a write is a
    read for ownership plus a write-back); ``parallelism``: threads running at
    once; ``mlp``: misses each thread keeps in flight; ``cpu_ns``: compute
    time per access; ``stall_ns``: time the program spent in the kernel
    (faults, migrations, direct reclaim), summed over its threads."""
    reads: list[float]
    writes: list[float]
    parallelism: float = 1.0
    mlp: float = 8.0
    cpu_ns: float = 1.0
    stall_ns: float = 0.0

    @property
    def total(self) -> float:
        return float(sum(self.reads) + sum(self.writes))


@dataclass
class EpochTiming:
    duration_ns: float
    stream_ns: list[float]               # time each stream needed (its threads busy)
    read_latency: list[float]            # per target, ns, loaded
    write_latency: list[float]
    read_mbps: list[float]
    write_mbps: list[float]
    utilisation: list[float]


def solve_epoch(targets: list[MemTiming], streams: list[Stream], extra_read_bytes: list[float] | None = None,
                extra_write_bytes: list[float] | None = None, min_ns: float = 0.0) -> EpochTiming:
    """Find the epoch duration T at which the latency the load causes is the
    latency that produces that load: a closed loop, each thread issuing a new
    miss when one completes.  Stream p needs T_p(t) = (N_p * cpu + sum_i
    L_i(load(t)) * n_pi / MLP_p + stall_p) / P_p with L_i the loaded latency of
    target i at the bandwidth all streams offer over t; T = max(T_p, min_ns).
    T_p(t) decreases with t and t - T(t) increases, so bisection on log t
    finds the one fixed point."""
    n = len(targets)
    xr = list(extra_read_bytes or [0.0] * n)
    xw = list(extra_write_bytes or [0.0] * n)
    rbytes = [sum((s.reads[i] + s.writes[i]) for s in streams) * LINE + xr[i] for i in range(n)]
    wbytes = [sum(s.writes[i] for s in streams) * LINE + xw[i] for i in range(n)]

    def state(t_ns: float):
        lat_r, lat_w, util, rm, wm = [], [], [], [], []
        for i, tm in enumerate(targets):
            r_mbps = rbytes[i] / t_ns * 1e3          # bytes/ns -> MB/s
            w_mbps = wbytes[i] / t_ns * 1e3
            rho = utilisation(tm, r_mbps, w_mbps)
            lat_r.append(tm.read_latency * curve(tm.read_k, rho))
            lat_w.append(tm.write_latency * curve(tm.write_k, rho))
            util.append(rho)
            rm.append(r_mbps)
            wm.append(w_mbps)
        return lat_r, lat_w, util, rm, wm

    def per_stream(lat_r: list[float]) -> list[float]:
        out = []
        for s in streams:
            mem = sum((s.reads[i] + s.writes[i]) * lat_r[i] for i in range(n))
            out.append((s.total * s.cpu_ns + mem / max(s.mlp, 1e-9) + s.stall_ns) / max(s.parallelism, 1e-9))
        return out

    def demand(t_ns: float) -> float:
        return max(per_stream(state(t_ns)[0]) + [min_ns])

    idle = [t.read_latency for t in targets]
    if not any(rbytes) and not any(wbytes):
        ts = per_stream(idle)
        t = max(ts + [min_ns])
        return EpochTiming(t, ts, idle, [t.write_latency for t in targets], [0.0] * n, [0.0] * n, [0.0] * n)
    lo = 1e-3
    for i, tm in enumerate(targets):
        lo = max(lo, (rbytes[i] + wbytes[i]) / max(tm.total, 1e-9) * 1e3 * 0.5)
    hi = max(lo * 2, demand(1e18) * 2 + 1.0)
    while demand(hi) > hi:
        hi *= 2
    llo, lhi = math.log(lo), math.log(hi)
    for _ in range(80):
        mid = (llo + lhi) / 2
        t = math.exp(mid)
        if demand(t) > t:
            llo = mid
        else:
            lhi = mid
        if lhi - llo < 1e-7:
            break
    t = math.exp(lhi)
    lat_r, lat_w, util, rm, wm = state(t)
    return EpochTiming(t, per_stream(lat_r), lat_r, lat_w, rm, wm, util)
