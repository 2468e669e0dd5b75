"""Named tiering policies: sets of the kernel's real knobs, written through
the same code as ``sysctl -w`` / ``echo > /sys/...`` (kernel/sysctl.py).

=================  ======================  ==================  ==============================
preset             kernel.numa_balancing   demotion_enabled    task memory policy
=================  ======================  ==================  ==============================
``default``        0                       false               default (first touch)
``numa-balancing`` 1 (NORMAL)              false               default
``tiering``        2 (MEMORY_TIERING)      false               default  (promotion only: NUMAB-2)
``demotion``       0                       true                default  (demotion only)
``tpp``            2                       true                default
``interleave``     0                       false               MPOL_WEIGHTED_INTERLEAVE, all nodes
``current``        (as the machine is)
=================  ======================  ==================  ==============================

``tpp`` is TPP (ASPLOS'23) as upstream Linux carries it, not a separate
algorithm: reclaim demotes instead of discarding (demotion first); in
memory-tiering mode kswapd reclaims up to WMARK_PROMO, above the
watermarks allocations use (the decoupled allocation and reclaim
watermarks), and a promotion that finds the DRAM node short of space wakes
kswapd to make that room by demoting; promotion happens on NUMA hint
faults of slow-tier pages that pass the hint-fault-latency hotness test and
the rate limit (Linux 6.3+), upstream's replacement for TPP's
"promote only pages on the active LRU list" filter.  Promoted pages keep
their LRU list (active pages stay active).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cxlemu.kernel.kernel import Kernel

NB = "/proc/sys/kernel/numa_balancing"
DEM = "/sys/kernel/mm/numa/demotion_enabled"

PRESETS: dict[str, dict[str, str]] = {
    "default": {NB: "0", DEM: "false"},
    "numa-balancing": {NB: "1", DEM: "false"},
    "tiering": {NB: "2", DEM: "false"},
    "demotion": {NB: "0", DEM: "true"},
    "tpp": {NB: "2", DEM: "true"},
    "interleave": {NB: "0", DEM: "false"},
    "current": {},
}
TASK_POLICY = {"interleave": "weighted-interleave"}
DESCRIPTIONS = {
    "default": "first touch on the CPU's node, spill to CXL by the zonelist; no migration",
    "numa-balancing": "NUMA balancing NORMAL mode: pages migrate towards the CPU after two hint faults",
    "tiering": "NUMA balancing memory tiering (NUMAB-2): hot CXL pages promoted; no demotion",
    "demotion": "reclaim demotes DRAM pages to CXL instead of swapping; no promotion",
    "tpp": "TPP as upstream: demotion on reclaim + memory-tiering promotion with hot threshold and rate limit",
    "interleave": "weighted interleave of every page over all memory nodes (weights from bandwidth)",
    "current": "the machine's knobs as they are",
}


class PolicyError(ValueError):
    pass


def names() -> list[str]:
    return list(PRESETS)


def apply(kernel: "Kernel", name: str) -> dict[str, str]:
    """Write a preset's knobs; returns the knobs as they now read."""
    from cxlemu.kernel import sysctl
    if name not in PRESETS:
        raise PolicyError(f"unknown policy {name!r} (known: {', '.join(PRESETS)})")
    for path, value in PRESETS[name].items():
        sysctl.write(kernel, path, value)
    return knobs(kernel)


def knobs(kernel: "Kernel") -> dict[str, str]:
    from cxlemu.kernel import sysctl
    out = {}
    for p in (NB, DEM, "/proc/sys/kernel/numa_balancing_promote_rate_limit_MBps",
              "/sys/kernel/debug/sched/numa_balancing/hot_threshold_ms", "/proc/sys/vm/swappiness",
              "/sys/module/zswap/parameters/enabled"):
        try:
            out[p] = sysctl.read(kernel, p).strip()
        except OSError:
            pass
    return out


def infer(kernel: "Kernel") -> str:
    """The preset the current knobs correspond to (``custom`` if none)."""
    k = knobs(kernel)
    for name, vals in PRESETS.items():
        if name in ("current", "interleave"):
            continue
        if all(k.get(p) == v for p, v in vals.items()):
            return name
    return "custom"
