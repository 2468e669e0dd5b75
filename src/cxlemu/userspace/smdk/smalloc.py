"""SMDK's optimization path: the explicit allocation API of ``libsmalloc``
(lib/smdk_allocator/opt_api, ``smdk_opt_api.h``) for programs that know
which memory they want.

* ``s_malloc(type, size)`` / ``s_calloc`` / ``s_realloc`` / ``s_free`` /
  ``s_free_type`` with ``SMDK_MEM_NORMAL`` (DDR) or ``SMDK_MEM_EXMEM``
  (CXL); ``s_malloc_node(type, size, node)`` on one node;
* ``s_enable_node_interleave(nodes)`` / ``s_disable_node_interleave()``:
  later EXMEM allocations interleave over ``nodes`` (MPOL_INTERLEAVE);
* ``s_get_memsize_total/used/available(type)`` and the per-node forms
  ``s_get_memsize_node_total/available(type, node)``: sizes in bytes from
  the nodes' meminfo (used: what this process holds through the API);
* ``mmap(length, flags)`` with ``MAP_EXMEM`` (CXL only, or the fault fails),
  ``MAP_NORMAL`` (DDR only, or the fault fails) or neither (anywhere).

An allocation is an anonymous mapping of the process (the API hands out
jemalloc extents; cxlemu maps each request), so workloads built on it
(``Smalloc`` used from a generator's ``setup``, or the ``smalloc`` table of
a workload file, which maps the named VMAs with the given types) run on the
workload engine like any other.  Errors: an unknown type is EINVAL, memory
that does not exist or is exhausted is ENOMEM (None from s_malloc, as the C
API returns NULL).
"""

from __future__ import annotations

import errno
from dataclasses import field

from cxlemu.kernel.mm import mempolicy as mp
from cxlemu.userspace.allocator import Allocator, NodeInfo, Placement, parse_nodelist
from cxlemu.userspace.smdk import MAP_EXMEM, MAP_NORMAL
from cxlemu.util.lazydc import dataclass

SMDK_MEM_NORMAL = 0
SMDK_MEM_EXMEM = 1
TYPES = {"normal": SMDK_MEM_NORMAL, "exmem": SMDK_MEM_EXMEM}


@dataclass
class _Alloc:
    addr: int
    size: int
    type: int
    node: int | None = None


@dataclass
class Smalloc:
    """The optimization API bound to one process (a ``kernel.syscalls.Process``)."""
    proc: object
    backend: object
    allocs: dict[int, _Alloc] = field(default_factory=dict)
    interleave: tuple[int, ...] = ()
    seq: int = 0

    def __post_init__(self):
        self.info = NodeInfo.read(self.backend)
        zone_mode = any("ExMem" in z for z in self.info.zones.values())
        cxl = [n for n in self.info.memory if n not in self.info.cpu]
        self.zone_mode = zone_mode and not cxl
        self.exmem_nodes = cxl
        self.normal_nodes = [n for n in self.info.memory if n in self.info.cpu]

    # ---- allocation ---------------------------------------------------------------------------
    def _check_type(self, t: int) -> None:
        if t not in (SMDK_MEM_NORMAL, SMDK_MEM_EXMEM):
            raise OSError(errno.EINVAL, f"s_malloc: invalid memory type {t}")

    def s_malloc(self, t: int, size: int, name: str | None = None):
        """The address of ``size`` bytes of type ``t``, or None (ENOMEM)."""
        self._check_type(t)
        return self._map(t, size, None, name)

    def s_calloc(self, t: int, num: int, size: int, name: str | None = None):
        return self.s_malloc(t, num * size, name)     # anonymous memory is zeroed

    def s_malloc_node(self, t: int, size: int, node: int, name: str | None = None):
        self._check_type(t)
        allowed = self.exmem_nodes if t == SMDK_MEM_EXMEM else self.normal_nodes
        if self.zone_mode or node not in allowed:
            return None                               # NULL: no memory of that type on that node
        return self._map(t, size, node, name)

    def s_realloc(self, t: int, addr: int | None, size: int):
        if addr is None:
            return self.s_malloc(t, size)
        if size == 0:
            self.s_free(addr)
            return None
        new = self.s_malloc(t, size)
        if new is not None:
            self.s_free(addr)
        return new

    def s_posix_memalign(self, t: int, alignment: int, size: int) -> tuple[int, int | None]:
        if alignment <= 0 or alignment & (alignment - 1) or alignment % 8:
            return errno.EINVAL, None
        a = self.s_malloc(t, size)
        return (0, a) if a is not None else (errno.ENOMEM, None)

    def _map(self, t: int, size: int, node: int | None, name: str | None):
        if size <= 0:
            return None
        self.seq += 1
        nm = name or f"smalloc-{'exmem' if t else 'normal'}-{self.seq}"
        try:
            if self.zone_mode:
                addr = self.proc.task.mmap(int(size), nm, map_flags=MAP_EXMEM if t == SMDK_MEM_EXMEM else MAP_NORMAL)
            else:
                nodes = (node,) if node is not None else (
                    self.interleave if t == SMDK_MEM_EXMEM and self.interleave else
                    tuple(self.exmem_nodes if t == SMDK_MEM_EXMEM else self.normal_nodes))
                if not nodes:
                    return None
                addr = self.proc.mmap(int(size), nm)
                mode = mp.MPOL_INTERLEAVE if (t == SMDK_MEM_EXMEM and self.interleave and node is None) \
                    else mp.MPOL_BIND
                self.proc.mbind(addr, int(size), mode, nodes)
        except OSError:
            return None
        self.allocs[addr] = _Alloc(addr, int(size), t, node)
        return addr

    def s_free(self, addr: int | None) -> None:
        if addr is None:
            return
        a = self.allocs.pop(int(addr), None)
        if a is not None:
            self.proc.munmap(a.addr, a.size)

    def s_free_type(self, t: int, addr: int | None) -> None:
        self._check_type(t)
        self.s_free(addr)

    # ---- interleave -----------------------------------------------------------------------------
    def s_enable_node_interleave(self, nodes) -> int:
        ns = parse_nodelist(nodes) if isinstance(nodes, str) else sorted(set(int(n) for n in nodes))
        if not ns or any(n not in self.info.memory for n in ns):
            return -1
        self.interleave = tuple(ns)
        return 0

    def s_disable_node_interleave(self) -> None:
        self.interleave = ()

    # ---- sizes ------------------------------------------------------------------------------------
    def _nodes_of(self, t: int) -> list[int]:
        self._check_type(t)
        if self.zone_mode:
            return list(self.info.memory)
        return self.exmem_nodes if t == SMDK_MEM_EXMEM else self.normal_nodes

    def s_get_memsize_total(self, t: int) -> int:
        return sum(self.info.total.get(n, 0) for n in self._nodes_of(t))

    def s_get_memsize_used(self, t: int) -> int:
        self._check_type(t)
        return sum(a.size for a in self.allocs.values() if a.type == t)

    def s_get_memsize_available(self, t: int) -> int:
        free = NodeInfo.read(self.backend).free
        return sum(free.get(n, 0) for n in self._nodes_of(t))

    def s_get_memsize_node_total(self, t: int, node: int) -> int:
        return self.info.total.get(node, 0) if node in self._nodes_of(t) else 0

    def s_get_memsize_node_available(self, t: int, node: int) -> int:
        return NodeInfo.read(self.backend).free.get(node, 0) if node in self._nodes_of(t) else 0

    # ---- mmap with SMDK's flags ------------------------------------------------------------------
    def mmap(self, length: int, flags: int = 0, name: str = "mmap") -> int:
        """mmap(2) with MAP_EXMEM / MAP_NORMAL (the SMDK kernel's semantics)."""
        return self.proc.task.mmap(int(length), name, map_flags=int(flags) & (MAP_EXMEM | MAP_NORMAL)) \
            if flags & ~(MAP_EXMEM | MAP_NORMAL) == 0 else self._bad_flags()

    @staticmethod
    def _bad_flags() -> int:
        raise OSError(errno.EINVAL, "mmap: unknown flags")


class SmallocPlan(Allocator):
    """A workload file's ``smalloc`` table: VMA name -> memory type (and an
    optional node or interleave set); each named mapping is allocated
    through the optimization API, the others are left alone."""
    name = "smalloc"

    def __init__(self, table: dict, backend):
        self.table = table
        self.backend = backend
        self.api: Smalloc | None = None
        self.used = {"normal": 0, "exmem": 0}

    def place(self, proc, length: int, name: str) -> Placement | None:
        ent = self.table.get(name)
        if ent is None:
            return Placement(pool="default")
        if self.api is None:
            self.api = Smalloc(proc, self.backend)
        api = self.api
        t = TYPES[ent["type"]]
        pool = ent["type"]
        if api.zone_mode:
            self.used[pool] += length
            return Placement(None, (), MAP_EXMEM if t == SMDK_MEM_EXMEM else MAP_NORMAL, pool)
        if ent.get("node") is not None:
            nodes = (ent["node"],)
            mode = mp.MPOL_BIND
        elif ent.get("interleave"):
            nodes = tuple(ent["interleave"])
            mode = mp.MPOL_INTERLEAVE
        else:
            nodes = tuple(api.exmem_nodes if t == SMDK_MEM_EXMEM else api.normal_nodes)
            mode = mp.MPOL_BIND
        if not nodes:
            return None
        self.used[pool] += length
        return Placement(mode, nodes, 0, pool)

    def stats(self) -> dict:
        return {"pools": dict(self.used), "summary": "smalloc " + ", ".join(f"{k}={v['type']}" for k, v in
                                                                           self.table.items())}
