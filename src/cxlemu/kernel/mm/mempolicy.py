"""NUMA memory policies (mm/mempolicy.c, include/uapi/linux/mempolicy.h).

* Modes: MPOL_DEFAULT, PREFERRED, BIND, INTERLEAVE, LOCAL, PREFERRED_MANY,
  WEIGHTED_INTERLEAVE (6.9+); flags MPOL_F_STATIC_NODES,
  MPOL_F_RELATIVE_NODES, MPOL_F_NUMA_BALANCING.
* ``mpol_new``/``set_nodemask`` reproduce the kernel's checks and errnos:
  unknown mode, STATIC together with RELATIVE, NUMA_BALANCING outside
  bind/preferred-many, a nodemask for DEFAULT/LOCAL, an empty one for the
  others -> EINVAL.  The nodemask is intersected with the task's allowed
  memory nodes (cpuset mems ∩ N_MEMORY): binding only to nodes that are
  not online (yet) is EINVAL.  With MPOL_F_STATIC_NODES the *user* nodemask
  is remembered: when a node comes online later and the cpuset's mems grow,
  ``rebind`` adds it (the "bind to all possible nodes" answer from
  LSF/MM 2023); without flags the policy is remapped onto the new mems by
  position (``nodes_remap``) and a new node does not join.
* Allocation (``policy_nodemask``/``alloc_pages_mpol``): which node is
  preferred and which nodemask limits the zonelist, per mode; interleave
  picks nodes round-robin (task policy: the task's counter ``il_prev``;
  VMA policy: the page offset), weighted interleave by the weights of
  /sys/kernel/mm/mempolicy/weighted_interleave/nodeN.
* Weights (6.9+, ``auto`` since 6.16): 1..255, anything else -EINVAL and a
  valid write switches to manual mode; in auto mode each node's weight is
  its bandwidth share scaled to [1, 32] and divided by the GCD of all
  weights (``reduce_interleave_weights``), bandwidth = min(read, write) of
  the node's access1 coordinates; nodes without data weigh 1.
"""

from __future__ import annotations

import errno
import math
from dataclasses import field
from typing import Iterable

import numpy as np

from cxlemu.kernel.base.device import KernelError
from cxlemu.util.lazydc import dataclass

MPOL_DEFAULT, MPOL_PREFERRED, MPOL_BIND, MPOL_INTERLEAVE, MPOL_LOCAL, MPOL_PREFERRED_MANY, \
    MPOL_WEIGHTED_INTERLEAVE = range(7)
MPOL_MAX = 7
MODE_NAMES = ("default", "preferred", "bind", "interleave", "local", "preferred-many", "weighted-interleave")

MPOL_F_STATIC_NODES = 1 << 15
MPOL_F_RELATIVE_NODES = 1 << 14
MPOL_F_NUMA_BALANCING = 1 << 13
MPOL_MODE_FLAGS = MPOL_F_STATIC_NODES | MPOL_F_RELATIVE_NODES | MPOL_F_NUMA_BALANCING

# mbind flags
MPOL_MF_STRICT = 1 << 0
MPOL_MF_MOVE = 1 << 1
MPOL_MF_MOVE_ALL = 1 << 2
MPOL_MF_VALID = MPOL_MF_STRICT | MPOL_MF_MOVE | MPOL_MF_MOVE_ALL

# get_mempolicy flags
MPOL_F_NODE = 1 << 0
MPOL_F_ADDR = 1 << 1
MPOL_F_MEMS_ALLOWED = 1 << 2

WEIGHTED_INTERLEAVE_SINCE = (6, 9)
WI_AUTO_SINCE = (6, 16)
WEIGHTINESS = 32                 # mm/mempolicy.c: scale bandwidth shares to [1, 32]


@dataclass
class MemPolicy:
    """struct mempolicy (``nodes`` is the effective nodemask)."""
    mode: int
    flags: int = 0
    nodes: tuple[int, ...] = ()
    user_nodes: tuple[int, ...] = ()          # w.user_nodemask (STATIC/RELATIVE)
    cpuset_mems: tuple[int, ...] = ()         # w.cpuset_mems_allowed (no flags)
    home_node: int = -1

    @property
    def name(self) -> str:
        return MODE_NAMES[self.mode]

    @property
    def numa_balancing(self) -> bool:
        return bool(self.flags & MPOL_F_NUMA_BALANCING)


def sanitize_flags(mode_arg: int) -> tuple[int, int]:
    """sanitize_mpol_flags(): split the mode argument; EINVAL on bad combinations."""
    flags = mode_arg & MPOL_MODE_FLAGS
    mode = mode_arg & ~MPOL_MODE_FLAGS
    if mode < 0 or mode >= MPOL_MAX:
        raise KernelError(errno.EINVAL, f"invalid mempolicy mode {mode}")
    if flags & MPOL_F_STATIC_NODES and flags & MPOL_F_RELATIVE_NODES:
        raise KernelError(errno.EINVAL, "MPOL_F_STATIC_NODES and MPOL_F_RELATIVE_NODES are exclusive")
    if flags & MPOL_F_NUMA_BALANCING and mode not in (MPOL_BIND, MPOL_PREFERRED_MANY):
        raise KernelError(errno.EINVAL, "MPOL_F_NUMA_BALANCING needs MPOL_BIND or MPOL_PREFERRED_MANY")
    return mode, flags


def relative_nodemask(orig: Iterable[int], rel: Iterable[int]) -> tuple[int, ...]:
    """mpol_relative_nodemask(): nodes_fold(orig, weight(rel)) then nodes_onto(rel)."""
    rel_l = sorted(set(rel))
    w = len(rel_l)
    if not w:
        return ()
    folded = sorted({n % w for n in orig})
    return tuple(sorted({rel_l[i] for i in folded}))


def nodes_remap(nodes: Iterable[int], old: Iterable[int], new: Iterable[int]) -> tuple[int, ...]:
    """nodes_remap() / bitmap_remap(): the n-th set bit of ``old`` maps to the
    (n mod weight(new))-th of ``new``; bits not in ``old`` stay."""
    old_l, new_l = sorted(set(old)), sorted(set(new))
    out = set()
    for n in nodes:
        if n in old_l and new_l:
            out.add(new_l[old_l.index(n) % len(new_l)])
        else:
            out.add(n)
    return tuple(sorted(out))


def mpol_new(mode_arg: int, nodes: Iterable[int], allowed: Iterable[int], version: tuple[int, int] = (6, 9),
             possible: Iterable[int] | None = None) -> MemPolicy | None:
    """mpol_new() + mpol_set_nodemask(): the policy a task or VMA gets, or
    None for MPOL_DEFAULT.  ``allowed`` = cpuset mems ∩ N_MEMORY."""
    mode, flags = sanitize_flags(mode_arg)
    if mode == MPOL_WEIGHTED_INTERLEAVE and version < WEIGHTED_INTERLEAVE_SINCE:
        raise KernelError(errno.EINVAL, "MPOL_WEIGHTED_INTERLEAVE needs Linux 6.9")
    req = tuple(sorted(set(int(n) for n in nodes)))
    if possible is not None:
        # get_nodes(): a bit beyond MAX_NUMNODES is EINVAL; nodes that merely
        # do not exist are dropped by the intersection below
        if any(n < 0 or n >= 1024 for n in req):
            raise KernelError(errno.EINVAL, "node out of range")
    if mode == MPOL_DEFAULT:
        if req:
            raise KernelError(errno.EINVAL, "MPOL_DEFAULT takes no nodemask")
        return None
    if mode == MPOL_PREFERRED and not req:
        if flags & (MPOL_F_STATIC_NODES | MPOL_F_RELATIVE_NODES):
            raise KernelError(errno.EINVAL, "MPOL_PREFERRED with an empty nodemask takes no node flags")
        mode = MPOL_LOCAL
    elif mode == MPOL_LOCAL:
        if req or flags & (MPOL_F_STATIC_NODES | MPOL_F_RELATIVE_NODES):
            raise KernelError(errno.EINVAL, "MPOL_LOCAL takes no nodemask")
    elif not req:
        raise KernelError(errno.EINVAL, f"{MODE_NAMES[mode]} needs a nodemask")
    pol = MemPolicy(mode, flags)
    if mode == MPOL_LOCAL:
        return pol
    allowed_t = tuple(sorted(set(allowed)))
    if flags & MPOL_F_RELATIVE_NODES:
        eff = relative_nodemask(req, allowed_t)
    else:
        eff = tuple(n for n in req if n in allowed_t)
    if flags & (MPOL_F_STATIC_NODES | MPOL_F_RELATIVE_NODES):
        pol.user_nodes = req
    else:
        pol.cpuset_mems = allowed_t
    if not eff:
        raise KernelError(errno.EINVAL, "no allowed memory node in the nodemask")
    pol.nodes = eff[:1] if mode == MPOL_PREFERRED else eff
    return pol


def rebind(pol: MemPolicy, new_allowed: Iterable[int]) -> None:
    """mpol_rebind_nodemask()/mpol_rebind_preferred(): the task's cpuset
    mems changed (a node came online or went away)."""
    if pol.mode in (MPOL_LOCAL, MPOL_DEFAULT):
        return
    new = tuple(sorted(set(new_allowed)))
    if pol.flags & MPOL_F_STATIC_NODES:
        tmp = tuple(n for n in pol.user_nodes if n in new)
    elif pol.flags & MPOL_F_RELATIVE_NODES:
        tmp = relative_nodemask(pol.user_nodes, new)
    else:
        tmp = tuple(n for n in nodes_remap(pol.nodes, pol.cpuset_mems, new) if n in new) if new else ()
        pol.cpuset_mems = new
    if pol.mode == MPOL_PREFERRED:
        if tmp:
            pol.nodes = tmp[:1]
        return
    if not tmp:
        tmp = new
    pol.nodes = tmp


# --------------------------------------------------------------------------------------------
# weighted interleave state (/sys/kernel/mm/mempolicy/weighted_interleave)
# --------------------------------------------------------------------------------------------
@dataclass
class WeightedInterleave:
    weights: dict[int, int] = field(default_factory=dict)    # node -> weight (1..255)
    auto: bool = True

    def weight(self, nid: int) -> int:
        return self.weights.get(nid, 1)


def auto_weights(bandwidth: dict[int, int]) -> dict[int, int]:
    """reduce_interleave_weights(): ``bandwidth`` node -> MB/s (0 = no data)."""
    total = sum(bandwidth.values())
    out: dict[int, int] = {}
    for nid, bw in sorted(bandwidth.items()):
        scaling = WEIGHTINESS * bw
        out[nid] = scaling // total if bw and total < scaling else 1
        out[nid] = max(out[nid], 1)
    g = 0
    for w in out.values():
        g = math.gcd(g, w)
    if g > 1:
        out = {n: w // g for n, w in out.items()}
    return out


def parse_weight(buf: bytes) -> int:
    """node_store(): kstrtou8 base 0, 0 and anything invalid -EINVAL."""
    from cxlemu.kernel.base.device import kstrtoull
    s = buf.split(b"\0", 1)[0]
    if not s.strip():
        raise KernelError(errno.EINVAL)
    v = kstrtoull(s)
    if v == 0 or v > 255:
        raise KernelError(errno.EINVAL)
    return v


# --------------------------------------------------------------------------------------------
# allocation: where the pages of a fault batch should go
# --------------------------------------------------------------------------------------------
@dataclass
class Placement:
    """For each page of a batch: the node to start the zonelist from
    (``nid``), the nodemask limiting it (None = all), whether the first
    attempt is restricted to ``try_mask`` (preferred-many), and whether the
    node is an interleave target (for interleave_hit)."""
    nid: np.ndarray
    nodemask: tuple[int, ...] | None
    try_mask: tuple[int, ...] | None = None
    interleave: bool = False


def placement(pol: MemPolicy | None, n: int, local_nid: int, offsets: np.ndarray | None,
              il_state: list[int] | None, wi: WeightedInterleave | None) -> Placement:
    """policy_nodemask() for ``n`` pages.  ``offsets`` are the page offsets in
    the VMA (VMA policies interleave by offset); ``il_state`` = [il_prev,
    il_weight] of the task (task policies interleave by a counter)."""
    if pol is None or pol.mode == MPOL_LOCAL:
        return Placement(np.full(n, local_nid, np.int16), None)
    nodes = pol.nodes
    if pol.mode == MPOL_PREFERRED:
        return Placement(np.full(n, nodes[0], np.int16), None)
    if pol.mode == MPOL_PREFERRED_MANY:
        return Placement(np.full(n, local_nid, np.int16), None, try_mask=nodes)
    if pol.mode == MPOL_BIND:
        return Placement(np.full(n, local_nid, np.int16), nodes)
    arr = np.asarray(nodes, np.int16)
    if pol.mode == MPOL_INTERLEAVE:
        if offsets is not None:
            return Placement(arr[np.asarray(offsets) % arr.size], None, interleave=True)
        start = il_state[0] if il_state else -1
        pos = 0
        if start in nodes:
            pos = nodes.index(start) + 1
        idx = (pos + np.arange(n)) % arr.size
        if il_state is not None and n:
            il_state[0] = int(arr[idx[-1]])
        return Placement(arr[idx], None, interleave=True)
    # weighted interleave
    w = np.array([(wi.weight(int(x)) if wi else 1) for x in arr], np.int64)
    pattern = np.repeat(arr, w)
    if offsets is not None:
        return Placement(pattern[np.asarray(offsets) % pattern.size], None, interleave=True)
    # task counter: il_prev is the current node, il_weight what is left of its weight
    cur, left = (il_state[0], il_state[1]) if il_state else (-1, 0)
    if cur in nodes and left > 0:
        first = int(np.flatnonzero(pattern == cur)[0]) + int(w[nodes.index(cur)]) - left
    elif cur in nodes:
        first = (int(np.flatnonzero(pattern == cur)[0]) + int(w[nodes.index(cur)])) % pattern.size
    else:
        first = 0
    idx = (first + np.arange(n)) % pattern.size
    if il_state is not None and n:
        last = int(idx[-1])
        node = int(pattern[last])
        start = int(np.flatnonzero(pattern == node)[0])
        il_state[0] = node
        il_state[1] = int(w[nodes.index(node)]) - (last - start + 1)
    return Placement(pattern[idx], None, interleave=True)


def policy_allows(pol: MemPolicy | None, nid: int) -> bool:
    """Can a page under ``pol`` live on ``nid`` (mbind MPOL_MF_STRICT/MOVE checks)?"""
    if pol is None or pol.mode in (MPOL_LOCAL, MPOL_PREFERRED, MPOL_PREFERRED_MANY):
        return True
    return nid in pol.nodes


def numa_balancing_allowed(pol: MemPolicy | None) -> bool:
    """vma_policy_mof()/MPOL_F_MOF: NUMA balancing migrates pages of VMAs with
    the default (local) policy, or bind/preferred-many with MPOL_F_NUMA_BALANCING."""
    if pol is None or pol.mode == MPOL_LOCAL:
        return True
    return bool(pol.flags & MPOL_F_NUMA_BALANCING)


def format_nodes(nodes: Iterable[int]) -> str:
    from cxlemu.kernel.mm.numa import nodelist
    return nodelist(nodes)
