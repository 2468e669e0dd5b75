"""SMDK's compatible path: ``libcxlmalloc`` (LD_PRELOAD, jemalloc with two
arena pools) configured by ``CXLMALLOC_CONF`` (OpenMPDK/SMDK
lib/smdk_allocator/core: config.c, init.c).

Configuration (``key:value`` pairs separated by commas; the values of
``exmem_partition_range`` and ``interleave_node`` may themselves hold
commas before digits, e.g. ``exmem_partition_range:2,3``):

==========================  ==============================================  ================
key                         values                                          default
==========================  ==============================================  ================
use_exmem                   true / false                                    true
priority                    normal / exmem (anything else: normal)          normal
normal_size, exmem_size     pool limits in MB (``8192``), ``NNNm``/``NNNg``,  unlimited
                            ``-1`` unlimited
maxmemory_policy            oom / interleave / remain (else: oom)           oom
exmem_partition_range       CXL nodes for the exmem pool (``2,3``, ``2-3``)   all CXL nodes
use_adaptive_interleaving   true / false                                    false
adaptive_interleaving_policy  bw_saturation / bw_order / weighted_interleaving  bw_saturation
interleave_node             the nodes adaptive interleaving spreads over     all memory nodes
use_auto_arena_scaling      true / false                                    true
==========================  ==============================================  ================

As in SMDK, a bad value is reported on stderr ("Invalid conf value: k:v",
"Out-of-range conf value: k:v") and ignored, unknown keys are ignored, and
a malformed string stops the parsing ("Malformed conf string").

Allocation: each allocation is served by the first pool of the priority
order (``normal`` = DDR: the memory nodes with CPUs, as ``MAP_NORMAL``;
``exmem`` = CXL: the CPU-less memory nodes, or ``ZONE_EXMEM`` when the
machine booted with ``boot.cxl_zone=exmem``, as ``MAP_EXMEM``).  When the
first pool reaches its limit, allocations go to the other pool ("priority
flips"); when that one is full too, ``maxmemory_policy`` decides: ``oom``
fails the allocation (ENOMEM), ``interleave`` alternates between the pools,
``remain`` keeps using the second pool.  With ``use_adaptive_interleaving``
both pools are unlimited and every allocation is interleaved over the
``interleave_node`` nodes (``bw_saturation``/``weighted_interleaving``:
weighted by the nodes' bandwidth, through MPOL_WEIGHTED_INTERLEAVE;
``bw_order``: highest-bandwidth node first, as MPOL_PREFERRED_MANY).
"""

from __future__ import annotations

import re
from dataclasses import field

from cxlemu.kernel.mm import mempolicy as mp
from cxlemu.userspace.allocator import Allocator, NodeInfo, Placement, parse_nodelist
from cxlemu.util.lazydc import dataclass

MAX_MEMPOOL_LIMIT_MB = 1 << 40           # effectively unlimited
UNLIMITED = None
_KEY = re.compile(r"[A-Za-z0-9_]")


class CxlMallocError(ValueError):
    pass


@dataclass
class CxlMallocConf:
    use_exmem: bool = True
    prio: tuple[str, str] = ("normal", "exmem")
    normal_size_mb: int | None = UNLIMITED
    exmem_size_mb: int | None = UNLIMITED
    maxmemory_policy: str = "oom"
    exmem_partition_range: str = ""
    use_adaptive_interleaving: bool = False
    adaptive_interleaving_policy: str = "bw_saturation"
    interleave_node: str = ""
    use_auto_arena_scaling: bool = True
    warnings: list[str] = field(default_factory=list)


def conf_pairs(s: str) -> tuple[list[tuple[str, str]], list[str]]:
    """SMDK's conf_next(): (key, value) pairs and the messages printed."""
    out: list[tuple[str, str]] = []
    msgs: list[str] = []
    i, n = 0, len(s)
    while i < n:
        k0 = i
        while i < n and _KEY.match(s[i]):
            i += 1
        if i >= n:
            if i != k0:
                msgs.append("Conf string ends with key")
            return out, msgs
        if s[i] != ":":
            msgs.append("Malformed conf string")
            return out, msgs
        key = s[k0:i]
        i += 1
        v0 = i
        while True:
            if i >= n:
                out.append((key, s[v0:i]))
                return out, msgs
            if s[i] == ",":
                nxt = s[i + 1:i + 2]
                if key in ("exmem_partition_range", "interleave_node") and nxt.isdigit():
                    i += 1
                    continue
                if not nxt:
                    msgs.append("Conf string ends with comma")
                out.append((key, s[v0:i]))
                i += 1
                break
            i += 1
    return out, msgs


def _size_mb(v: str) -> int | None:
    """CONF_HANDLE_SSIZE_T: a number (base 0) of MB, an ``m`` or ``g`` suffix; -1 unlimited."""
    mult = 1
    body = v
    if v[-1:] in ("g", "G"):
        mult, body = 1024, v[:-1]
    elif v[-1:] in ("m", "M"):
        body = v[:-1]
    body = body.strip()
    try:
        if body.lower().startswith(("0x", "-0x")):
            x = int(body, 16)
        elif body.startswith("0") and len(body) > 1 and body.isdigit():
            x = int(body, 8)
        else:
            x = int(body, 10)
    except ValueError:
        raise CxlMallocError("Invalid conf value") from None
    x *= mult
    if x == -1:
        return UNLIMITED
    if x < 1 or x > MAX_MEMPOOL_LIMIT_MB:
        raise CxlMallocError("Out-of-range conf value")
    return x


def parse_conf(s: str) -> CxlMallocConf:
    """CXLMALLOC_CONF -> configuration, with SMDK's messages in ``warnings``."""
    if not isinstance(s, str):
        raise CxlMallocError("CXLMALLOC_CONF must be a string")
    c = CxlMallocConf()
    pairs, msgs = conf_pairs(s)
    c.warnings += msgs
    for k, v in pairs:
        if k in ("use_exmem", "use_adaptive_interleaving", "use_auto_arena_scaling"):
            if v in ("true", "false"):
                setattr(c, k, v == "true")
            else:
                c.warnings.append(f"Invalid conf value: {k}:{v}")
        elif k in ("exmem_size", "normal_size"):
            try:
                setattr(c, f"{k}_mb", _size_mb(v))
            except CxlMallocError as e:
                c.warnings.append(f"{e}: {k}:{v}")
        elif k == "maxmemory_policy":
            c.maxmemory_policy = v if v in ("oom", "interleave", "remain") else "oom"
        elif k == "priority":
            c.prio = ("exmem", "normal") if v == "exmem" else ("normal", "exmem")
        elif k in ("exmem_partition_range", "interleave_node"):
            setattr(c, k, v[:255])
        elif k == "adaptive_interleaving_policy":
            if v in ("bw_saturation", "bw_order", "weighted_interleaving"):
                c.adaptive_interleaving_policy = v
            else:
                c.warnings.append(f"Note: invalid adaptive_interleaving_policy:{v}, use default policy (bw_saturation)")
                c.adaptive_interleaving_policy = "bw_saturation"
    if c.use_adaptive_interleaving:
        c.warnings.append("*** use_adaptive_interleaving:true. ")
        c.warnings.append("*** So, use priority:normal,normal_size:-1,exmem_size:-1 and ignore maxmemory_policy")
        c.prio = ("normal", "exmem")
        c.normal_size_mb = c.exmem_size_mb = UNLIMITED
    return c


def _nodes(spec: str, fallback: list[int], valid: list[int] | None = None) -> list[int]:
    """A node list option; nodes without memory are dropped, and an empty or
    unusable list means ``fallback`` (the nodes SMDK finds by itself)."""
    try:
        got = parse_nodelist(spec) if spec else []
    except ValueError:
        got = []
    if valid is not None:
        got = [n for n in got if n in valid]
    return got or list(fallback)


class CxlMalloc(Allocator):
    """One process's libcxlmalloc: two pools, their limits and the priority flip."""
    name = "cxlmalloc"

    def __init__(self, conf: str, backend):
        self.conf = parse_conf(conf or "")
        self.info = NodeInfo.read(backend)
        zone_mode = any("ExMem" in z for z in self.info.zones.values())
        cxl = [n for n in self.info.memory if n not in self.info.cpu]
        ddr = [n for n in self.info.memory if n in self.info.cpu]
        self.zone_mode = zone_mode and not cxl
        self.exmem_nodes = _nodes(self.conf.exmem_partition_range, cxl, self.info.memory) if not self.zone_mode else ddr
        self.normal_nodes = ddr
        lim = {"normal": self.conf.normal_size_mb, "exmem": self.conf.exmem_size_mb}
        self.limit = {p: (None if lim[p] is None else lim[p] << 20) for p in ("normal", "exmem")}
        self.allocated = {"normal": 0, "exmem": 0}
        self.peak = {"normal": 0, "exmem": 0}
        self.current = 0                 # index into conf.prio
        self.flips = 0
        self.failed = 0
        self.after_full = 0              # allocations placed by maxmemory_policy
        self._alt = 1

    # ---- where a pool's pages go ------------------------------------------------------------
    def _pool_placement(self, pool: str) -> Placement:
        from cxlemu.userspace.smdk import MAP_EXMEM, MAP_NORMAL
        if self.zone_mode:
            return Placement(None, (), MAP_EXMEM if pool == "exmem" else MAP_NORMAL, pool)
        nodes = self.exmem_nodes if pool == "exmem" else self.normal_nodes
        return Placement(mp.MPOL_BIND, tuple(nodes), 0, pool)

    def _fits(self, pool: str, length: int) -> bool:
        lim = self.limit[pool]
        return lim is None or self.allocated[pool] + length <= lim

    def place(self, proc, length: int, name: str) -> Placement | None:
        c = self.conf
        if not c.use_exmem:
            return Placement(pool="default")
        if c.use_adaptive_interleaving:
            nodes = _nodes(c.interleave_node, self.info.memory, self.info.memory)
            if c.adaptive_interleaving_policy == "bw_order":
                order = sorted(nodes, key=lambda n: -self.info.read_bandwidth.get(n, 0))
                pl = Placement(mp.MPOL_PREFERRED_MANY, tuple(order), 0, "interleave")
            else:
                pl = Placement(mp.MPOL_WEIGHTED_INTERLEAVE, tuple(nodes), 0, "interleave")
            self._account("normal", length)
            return pl
        first, second = c.prio
        pool = c.prio[self.current]
        if self.current == 0 and not self._fits(first, length):
            self.current = 1
            self.flips += 1
            pool = second
        if self._fits(pool, length):
            self._account(pool, length)
            return self._pool_placement(pool)
        # both pools are at their limits: maxmemory_policy
        if c.maxmemory_policy == "oom":
            self.failed += 1
            return None
        self.after_full += 1
        if c.maxmemory_policy == "interleave":
            pool = c.prio[self._alt]
            self._alt ^= 1
        else:                                   # remain
            pool = second
        self._account(pool, length)
        return self._pool_placement(pool)

    def _account(self, pool: str, length: int) -> None:
        self.allocated[pool] += length
        self.peak[pool] = max(self.peak[pool], self.allocated[pool])

    def released(self, placement: Placement, length: int) -> None:
        if placement.pool in self.allocated:
            self.allocated[placement.pool] -= length

    def stats(self) -> dict:
        c = self.conf
        return {"pools": {p: self.peak[p] for p in ("normal", "exmem")},
                "priority": f"{c.prio[0]}->{c.prio[1]}", "flips": self.flips, "failed_allocations": self.failed,
                "maxmemory_policy": c.maxmemory_policy, "after_limits": self.after_full,
                "normal_nodes": self.normal_nodes, "exmem_nodes": self.exmem_nodes,
                "mode": "zone" if self.zone_mode else "node", "warnings": list(c.warnings),
                "summary": f"cxlmalloc priority {c.prio[0]}->{c.prio[1]}, {self.flips} flip(s), "
                           f"{self.failed} failed"}
