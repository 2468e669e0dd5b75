"""libndctl regions and their mappings (ndctl/lib/libndctl.c add_region,
ndctl_region_* accessors, enable/disable, seeds)."""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING, Any

from cxlemu.tools.libcxl.cnum import c_strtol_s32, c_strtoull
from .base import (
    ND_DEVICE_NAMESPACE_BLK, ND_DEVICE_NAMESPACE_IO, ND_DEVICE_NAMESPACE_PMEM, ND_DEVICE_REGION_BLK,
    ND_DEVICE_REGION_PMEM, NUMA_NO_ATTR, NUMA_NO_NODE, PERSISTENCE_CPU_CACHE, PERSISTENCE_MEM_CTRL,
    PERSISTENCE_NONE, PERSISTENCE_UNKNOWN, UINT_MAX, ULLONG_MAX, ULONG_MAX, NdObject)
from .claim import NdBtt, NdDax, NdPfn
from .namespace import NdNamespace

if TYPE_CHECKING:
    from .ctx import NdBus, NdDimm


class NdMapping:
    def __init__(self, region: "NdRegion", dimm: NdDimm, offset: int, length: int, position: int):
        self.region, self.dimm = region, dimm
        self.offset, self.length, self.position = offset, length, position


class NdRegion(NdObject):
    kind = "region"

    def __init__(self, bus: NdBus, region_id: int, path: str):
        self.bus = bus
        self.ctx = bus.ctx
        self.id = region_id
        self.path = path
        self.size = 0
        self.num_mappings = 0
        self.ro = 0
        self.numa_node = NUMA_NO_NODE
        self.target_node = -1
        self.align = ULONG_MAX
        self.nstype = 0
        self.cookie = 0
        self.persistence_domain = PERSISTENCE_UNKNOWN
        self.generation = 0
        self._mappings: list[NdMapping] | None = None
        self._kids: dict[str, tuple[tuple[int, int], list]] = {}

    @classmethod
    def load(cls, bus: NdBus, region_id: int, path: str) -> "NdRegion | None":
        ctx = bus.ctx
        r = cls(bus, region_id, path)
        v = ctx.read(f"{path}/size")
        if v is None:
            return None
        r.size = c_strtoull(v)
        v = ctx.read(f"{path}/mappings")
        if v is None:
            return None
        r.num_mappings = c_strtoull(v) & UINT_MAX
        v = ctx.read(f"{path}/read_only")
        if v is None:
            return None
        r.ro = c_strtoull(v)
        if ctx.read(f"{path}/modalias") is None:
            return None
        v = ctx.read(f"{path}/numa_node")
        if v is not None:
            r.numa_node = c_strtol_s32(v)
        elif ctx.io.last_errno == errno.ENOENT:
            r.numa_node = NUMA_NO_ATTR
        r.target_node = ctx.read_num(f"{path}/target_node", -1, c_strtol_s32)
        r.align = ctx.read_num(f"{path}/align", ULONG_MAX)
        if not r.set_type():
            return None
        v = ctx.read(f"{path}/persistence_domain")
        r.persistence_domain = PERSISTENCE_UNKNOWN if v is None else (
            PERSISTENCE_CPU_CACHE if v.startswith("cpu_cache") else
            PERSISTENCE_MEM_CTRL if v.startswith("memory_controller") else
            PERSISTENCE_NONE if v.startswith("none") else PERSISTENCE_UNKNOWN)
        return r

    def set_type(self) -> bool:
        v = self.ctx.read(f"{self.path}/nstype")
        if v is None:
            return False
        self.nstype = c_strtoull(v)
        if self.nstype == ND_DEVICE_NAMESPACE_PMEM:
            c = self.ctx.read(f"{self.path}/set_cookie")
            if c is None:
                return False
            self.cookie = c_strtoull(c)
        return True

    @property
    def interleave_ways(self) -> int:
        return max(1, self.num_mappings)

    @property
    def type(self) -> int:
        return ND_DEVICE_REGION_PMEM if self.nstype in (ND_DEVICE_NAMESPACE_IO, ND_DEVICE_NAMESPACE_PMEM) \
            else ND_DEVICE_REGION_BLK

    @property
    def type_name(self) -> str:
        return "pmem" if self.type == ND_DEVICE_REGION_PMEM else "blk"

    def has_numa(self) -> bool:
        return self.numa_node != NUMA_NO_ATTR

    def interleave_set(self) -> bool:
        return self.nstype == ND_DEVICE_NAMESPACE_PMEM

    def _read_u64(self, attr: str) -> int:
        return self.ctx.read_num(f"{self.path}/{attr}", ULLONG_MAX)

    def available_size(self) -> int:
        if self.nstype not in (ND_DEVICE_NAMESPACE_PMEM, ND_DEVICE_NAMESPACE_BLK):
            return 0
        return self._read_u64("available_size")

    def max_available_extent(self) -> int:
        if self.nstype not in (ND_DEVICE_NAMESPACE_PMEM, ND_DEVICE_NAMESPACE_BLK):
            return 0
        return self._read_u64("max_available_extent")

    def resource(self) -> int:
        return self._read_u64("resource")

    def mappings(self) -> list[NdMapping]:
        if self._mappings is None:
            out = []
            for i in range(self.num_mappings):
                v = self.ctx.read(f"{self.path}/mapping{i}")
                if v is None:
                    self.ctx.log.err("mappings_init", f"bus{self.bus.id} region{self.id}: failed to read mapping{i}")
                    continue
                parts = v.split(",")
                if len(parts) < 3 or not parts[0].startswith("nmem"):
                    continue
                try:
                    dimm_id, offset, length = int(parts[0][4:]), int(parts[1]), int(parts[2])
                    position = int(parts[3]) if len(parts) > 3 else -1
                except ValueError:
                    continue
                dimm = self.bus.dimm_by_id(dimm_id)
                if dimm is None:
                    continue
                out.append(NdMapping(self, dimm, offset, length, position))
            self._mappings = list(reversed(out))
        return self._mappings

    def dimms(self) -> list[NdDimm]:
        """ndctl_dimm_foreach_in_region(): bus dimm order, those mapped here."""
        mapped = {id(m.dimm) for m in self.mappings()}
        return [d for d in self.bus.dimms() if id(d) in mapped]

    # ---- children ---------------------------------------------------------------------
    def _children(self, kind: str, cls: Any) -> list:
        """The region's ``kind`` devices (namespace, btt, pfn, dax), newest
        first.  Like libndctl's namespaces_init()/btts_init()/... they are read
        once and kept, here until this library next writes to sysfs (a
        listing reads each namespace's claim devices once, not once per
        namespace)."""
        gen = self.ctx.generation()
        hit = self._kids.get(kind)
        if hit is None or hit[0] != gen:
            out = [x for x in (cls.load(self, i, p) for i, p in self.ctx.scan(self.path, f"{kind}{self.id}."))
                   if x is not None]
            hit = self._kids[kind] = (gen, out)
        return list(hit[1])

    def namespaces(self) -> list["NdNamespace"]:
        return self._children("namespace", NdNamespace)

    def btts(self) -> list["NdBtt"]:
        return self._children("btt", NdBtt)

    def pfns(self) -> list["NdPfn"]:
        return self._children("pfn", NdPfn)

    def daxs(self) -> list["NdDax"]:
        return self._children("dax", NdDax)

    def _seed(self, attr: str, items: list) -> Any:
        v = self.ctx.read(f"{self.path}/{attr}")
        if v is None:
            return None
        return next((x for x in items if x.devname == v), None)

    def namespace_seed(self) -> "NdNamespace | None":
        return self._seed("namespace_seed", self.namespaces())

    def btt_seed(self) -> "NdBtt | None":
        return self._seed("btt_seed", self.btts())

    def pfn_seed(self) -> "NdPfn | None":
        return self._seed("pfn_seed", self.pfns())

    def dax_seed(self) -> "NdDax | None":
        return self._seed("dax_seed", self.daxs())

    def _enabled(self) -> None:
        self.set_type()

    def _disabled(self) -> None:
        self.generation += 1

    def badblocks(self) -> list[tuple[int, int]]:
        try:
            v = self.ctx.io.backend.read(f"{self.path}/badblocks")
        except OSError:
            v = ""
        out = []
        for line in v.splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[0].isdigit() and parts[1].isdigit():
                out.append((int(parts[0]), int(parts[1])))
        return out
