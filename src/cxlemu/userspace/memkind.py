"""memkind's kinds (memkind(3), memkind_dax_kmem(3), memkind_hbw(3),
memkind ≥ 1.11): where each kind puts an allocation, whether it may fall
back to other nodes (``*_PREFERRED``) or fails with ENOMEM, and the
environment variables that override the nodes memkind detects.

Node choices come from sysfs as the real library gets them (through
libdaxctl, libnuma and hwloc/HMAT):

* **DAX KMEM nodes**: the target nodes of device-DAX devices bound to the
  ``kmem`` driver (system-ram mode), or ``MEMKIND_DAX_KMEM_NODES``;
* **closest** to the CPU's node by node distance; two equally close nodes
  make the ``*_PREFERRED`` kinds unusable (memkind refuses them);
* **local** (the ``*_LOCAL`` kinds): the nodes whose HMAT ``access0``
  initiators include the CPU's node;
* **capacity** = MemTotal, **latency** / **bandwidth** = HMAT ``access0``
  read coordinates; **HBW** nodes: read bandwidth ≥ ``MEMKIND_HBW_THRESHOLD``
  MB/s (default 204800), or ``MEMKIND_HBW_NODES``.

Bind kinds check that their nodes have the free memory for the request and
fail with ENOMEM otherwise (memkind's documented behaviour); preferred kinds
fall back through the zonelist; interleave kinds spread pages.  PMEM kinds
(``memkind_create_pmem``) allocate from a file on a DAX device: see
:class:`PmemKind`.
"""

from __future__ import annotations

import errno
import os
from dataclasses import field

from cxlemu.kernel.mm import mempolicy as mp
from cxlemu.userspace.allocator import Allocator, NodeInfo, Placement, parse_nodelist
from cxlemu.util.lazydc import dataclass

HBW_THRESHOLD_DEFAULT = 204800          # MB/s (memkind_hbw.c MEMKIND_HBW_THRESHOLD_DEFAULT)
MEMKIND_SUCCESS = 0
MEMKIND_ERROR_UNAVAILABLE = -1
MEMKIND_ERROR_INVALID = -13
MEMKIND_ERROR_MEMTYPE_NOT_AVAILABLE = -20

KINDS = (
    "MEMKIND_DEFAULT", "MEMKIND_REGULAR", "MEMKIND_INTERLEAVE",
    "MEMKIND_DAX_KMEM", "MEMKIND_DAX_KMEM_ALL", "MEMKIND_DAX_KMEM_PREFERRED", "MEMKIND_DAX_KMEM_INTERLEAVE",
    "MEMKIND_HIGHEST_CAPACITY", "MEMKIND_HIGHEST_CAPACITY_PREFERRED",
    "MEMKIND_HIGHEST_CAPACITY_LOCAL", "MEMKIND_HIGHEST_CAPACITY_LOCAL_PREFERRED",
    "MEMKIND_LOWEST_LATENCY_LOCAL", "MEMKIND_LOWEST_LATENCY_LOCAL_PREFERRED",
    "MEMKIND_HIGHEST_BANDWIDTH_LOCAL", "MEMKIND_HIGHEST_BANDWIDTH_LOCAL_PREFERRED",
    "MEMKIND_HBW", "MEMKIND_HBW_ALL", "MEMKIND_HBW_PREFERRED", "MEMKIND_HBW_INTERLEAVE",
)


class MemkindError(OSError):
    """A kind that cannot be used here (memkind's MEMKIND_ERROR_* codes)."""

    def __init__(self, code: int, msg: str):
        super().__init__(errno.ENOMEM if code == MEMKIND_ERROR_UNAVAILABLE else errno.EINVAL, msg)
        self.code = code


@dataclass
class KindPlan:
    """How a kind places memory on this machine."""
    kind: str
    mode: int | None                 # mbind mode; None: the task's default policy
    nodes: tuple[int, ...] = ()
    check_free: bool = False         # ENOMEM when the nodes lack free memory
    note: str = ""


def _env_nodes(env: dict, name: str) -> list[int] | None:
    v = env.get(name)
    if v is None or not v.strip():
        return None
    try:
        return parse_nodelist(v)
    except ValueError:
        raise MemkindError(MEMKIND_ERROR_INVALID, f"{name}: not a node list: {v!r}") from None


def plan(kind: str, info: NodeInfo, cpu_node: int, env: dict | None = None) -> KindPlan:
    """The placement of ``kind`` for a task running on ``cpu_node``."""
    env = dict(os.environ if env is None else env)
    if kind not in KINDS:
        raise MemkindError(MEMKIND_ERROR_INVALID, f"unknown kind {kind!r}")
    mem = info.memory
    if kind == "MEMKIND_DEFAULT":
        return KindPlan(kind, None, (), False, "the default policy")
    if kind == "MEMKIND_REGULAR":
        nodes = [n for n in mem if n in info.cpu]
        return KindPlan(kind, mp.MPOL_BIND, tuple(nodes), True, "nodes with CPUs")
    if kind == "MEMKIND_INTERLEAVE":
        return KindPlan(kind, mp.MPOL_INTERLEAVE, tuple(mem), False, "all nodes")
    if kind.startswith("MEMKIND_DAX_KMEM"):
        dax = _env_nodes(env, "MEMKIND_DAX_KMEM_NODES")
        dax = [n for n in (dax if dax is not None else info.kmem) if n in mem]
        if not dax:
            raise MemkindError(MEMKIND_ERROR_MEMTYPE_NOT_AVAILABLE, "no DAX KMEM node (no dax device in system-ram "
                                                                    "mode; set MEMKIND_DAX_KMEM_NODES)")
        return _closest_kind(kind, "MEMKIND_DAX_KMEM", dax, info, cpu_node)
    if kind.startswith("MEMKIND_HBW"):
        hbw = _env_nodes(env, "MEMKIND_HBW_NODES")
        if hbw is None:
            try:
                thr = int(env.get("MEMKIND_HBW_THRESHOLD", HBW_THRESHOLD_DEFAULT))
            except ValueError:
                raise MemkindError(MEMKIND_ERROR_INVALID, "MEMKIND_HBW_THRESHOLD: not a number") from None
            hbw = [n for n in mem if info.read_bandwidth.get(n, 0) >= thr]
        hbw = [n for n in hbw if n in mem]
        if not hbw:
            raise MemkindError(MEMKIND_ERROR_UNAVAILABLE, "no high-bandwidth node (read bandwidth below "
                                                          "MEMKIND_HBW_THRESHOLD; set MEMKIND_HBW_NODES)")
        return _closest_kind(kind, "MEMKIND_HBW", hbw, info, cpu_node)
    # HMAT kinds
    local = [n for n in mem if cpu_node in info.initiators.get(n, [])] or [cpu_node]
    pref = kind.endswith("_PREFERRED")
    base = kind[:-len("_PREFERRED")] if pref else kind
    if base == "MEMKIND_HIGHEST_CAPACITY":
        cand = list(mem)
        best = max(info.total.get(n, 0) for n in cand)
        sel = [n for n in cand if info.total.get(n, 0) == best]
    elif base == "MEMKIND_HIGHEST_CAPACITY_LOCAL":
        best = max(info.total.get(n, 0) for n in local)
        sel = [n for n in local if info.total.get(n, 0) == best]
        if len(sel) > 1:          # ties: the node with the worse latency
            worst = max(info.read_latency.get(n, 0) for n in sel)
            sel = [n for n in sel if info.read_latency.get(n, 0) == worst]
    elif base == "MEMKIND_LOWEST_LATENCY_LOCAL":
        lat = {n: info.read_latency.get(n, 1 << 30) for n in local}
        best = min(lat.values())
        sel = [n for n in local if lat[n] == best]
        if len(sel) > 1:          # ties: the smaller node
            small = min(info.total.get(n, 0) for n in sel)
            sel = [n for n in sel if info.total.get(n, 0) == small]
    elif base == "MEMKIND_HIGHEST_BANDWIDTH_LOCAL":
        bw = {n: info.read_bandwidth.get(n, 0) for n in local}
        best = max(bw.values())
        sel = [n for n in local if bw[n] == best]
    else:                                  # pragma: no cover - KINDS is exhaustive
        raise MemkindError(MEMKIND_ERROR_INVALID, kind)
    if pref:
        if len(sel) != 1:
            raise MemkindError(MEMKIND_ERROR_INVALID, f"{kind}: {len(sel)} nodes qualify equally; a preferred "
                                                      f"kind needs exactly one")
        return KindPlan(kind, mp.MPOL_PREFERRED, tuple(sel), False, "preferred, falls back")
    return KindPlan(kind, mp.MPOL_BIND, tuple(sel), True, "bound")


def _closest_kind(kind: str, prefix: str, nodes: list[int], info: NodeInfo, cpu_node: int) -> KindPlan:
    suffix = kind[len(prefix):]
    d = {n: info.dist(cpu_node, n) for n in nodes}
    best = min(d.values())
    closest = [n for n in nodes if d[n] == best]
    if suffix == "":
        return KindPlan(kind, mp.MPOL_BIND, (closest[0],), True, "the closest node, ENOMEM when full")
    if suffix == "_ALL":
        return KindPlan(kind, mp.MPOL_BIND, tuple(sorted(nodes, key=lambda n: (d[n], n))), True,
                        "the closest node with room, ENOMEM only when all are full")
    if suffix == "_PREFERRED":
        if len(closest) > 1:
            raise MemkindError(MEMKIND_ERROR_INVALID, f"{kind}: nodes {closest} are equally close to node "
                                                      f"{cpu_node}; a preferred kind needs one")
        return KindPlan(kind, mp.MPOL_PREFERRED, (closest[0],), False, "the closest node, falls back")
    if suffix == "_INTERLEAVE":
        return KindPlan(kind, mp.MPOL_INTERLEAVE, tuple(nodes), False, "interleaved")
    raise MemkindError(MEMKIND_ERROR_INVALID, kind)


class MemkindAllocator(Allocator):
    """``memkind_malloc(kind, size)`` for every allocation of a workload."""
    name = "memkind"

    def __init__(self, kind: str, backend, env: dict | None = None):
        self.kind = kind
        self.backend = backend
        self.env = env
        self.info = NodeInfo.read(backend)
        self.allocated = 0
        self.failed = 0
        self.plan: KindPlan | None = None

    def place(self, proc, length: int, name: str) -> Placement | None:
        if self.plan is None:
            self.plan = plan(self.kind, self.info, proc.task.cpu_node, self.env)
        p = self.plan
        if p.check_free:
            free = NodeInfo.read(self.backend).free
            if sum(free.get(n, 0) for n in p.nodes) < length:
                self.failed += 1
                return None
        self.allocated += length
        return Placement(p.mode, p.nodes, 0, self.kind)

    def released(self, placement, length: int) -> None:
        self.allocated -= length

    def stats(self) -> dict:
        p = self.plan
        return {"pools": {self.kind: self.allocated}, "nodes": list(p.nodes) if p else [],
                "policy": p.note if p else "", "failed_allocations": self.failed,
                "summary": f"{self.kind} on node(s) {','.join(map(str, p.nodes)) if p and p.nodes else 'default'}"
                           f" ({p.note if p else ''}), {self.failed} ENOMEM"}


# ---- PMEM kinds over a device-DAX or fsdax namespace -----------------------------------------------
@dataclass
class PmemKind:
    """``memkind_create_pmem(dir, max_size, &kind)``: a heap in a file of a
    DAX file system, here a device-DAX device (or an fsdax namespace's
    /dev/pmemN) that cxlemu maps as bytes.  Allocations are carved from
    the device up to ``max_size`` (0: the device's size); beyond it
    ``malloc`` returns None (ENOMEM), as memkind does."""
    path: str
    max_size: int
    size: int
    mapping: object = None
    allocs: dict[int, int] = field(default_factory=dict)
    brk: int = 0
    free_list: list[tuple[int, int]] = field(default_factory=list)

    def malloc(self, size: int):
        size = max(64, (int(size) + 63) // 64 * 64)
        for i, (off, sz) in enumerate(self.free_list):
            if sz >= size:
                self.free_list[i] = (off + size, sz - size)
                self.allocs[off] = size
                return self._view(off, size)
        limit = min(self.max_size or self.size, self.size)
        if self.brk + size > limit:
            return None
        off = self.brk
        self.brk += size
        self.allocs[off] = size
        return self._view(off, size)

    def _view(self, off: int, size: int):
        return PmemBuffer(off, self.mapping.view[off:off + size])

    def persist(self, buf: "PmemBuffer") -> None:
        """pmem_persist() of an allocation (clwb + sfence of its lines)."""
        self.mapping.persist(buf.offset, len(buf.mem))

    def free(self, buf: "PmemBuffer") -> None:
        size = self.allocs.pop(buf.offset, None)
        if size is not None:
            self.free_list.append((buf.offset, size))

    def usable(self) -> int:
        return sum(self.allocs.values())


@dataclass
class PmemBuffer:
    offset: int
    mem: memoryview


def create_pmem(backend, path: str, max_size: int = 0) -> PmemKind:
    """memkind_create_pmem() over a device-DAX device (/dev/daxX.Y) of a
    machine's backend; ``max_size`` 0 uses the whole device, otherwise at
    least MEMKIND_PMEM_MIN_SIZE (16 MiB), as memkind requires."""
    if max_size and max_size < 16 << 20:
        raise MemkindError(MEMKIND_ERROR_INVALID, "memkind_create_pmem: max_size below MEMKIND_PMEM_MIN_SIZE (16 MiB)")
    if path.startswith("/dev/pmem"):
        raise MemkindError(MEMKIND_ERROR_INVALID, f"{path}: fsdax needs a DAX file system to create the heap file in; "
                                                  f"cxlemu serves PMEM kinds from device DAX (ndctl create-namespace -m devdax)")
    m = backend.mmap_dax(path)          # open(2) + mmap(2) through the machine's ABI
    return PmemKind(path, max_size, m.length, m)
