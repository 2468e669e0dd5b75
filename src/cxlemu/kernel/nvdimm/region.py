"""nd regions (``regionN``, drivers/nvdimm/region_devs.c, region.c) created by
cxl_pmem_region_probe for committed CXL pmem regions (drivers/cxl/pmem.c).

* The region id is the CXL region id (ND_REGION_CXL: memregion pre-assigned).
* Mappings are the region's endpoint decoders in position order:
  ``mappingN`` = ``nmemX,<dpa start>,<dpa size>,<position>``.
* The interleave-set cookie is the Fletcher-64 of ``{dpa start, serial}``
  (two little-endian u64 per mapping); a memdev with serial 0 at DPA 0 gives
  cookie 0 (kernels from ~6.15 refuse serial 0 outright).
* ``align`` defaults to 16 MiB (MEMREMAP_COMPAT_ALIGN_MAX), PAGE_SIZE for
  regions below 16 MiB, times the number of mappings when 16 MiB is not a
  multiple of it (region_devs.c default_align).
* ``persistence_domain`` is ``memory_controller`` (ND_REGION_PERSIST_MEMCTRL).

Probe (region.c nd_region_probe, namespace_devs.c nd_region_register_namespaces):
every mapping's dimm must be enabled (labels are needed); namespaces are
created from the labels found in mapping 0's label list (scan_labels), or a
zero-sized seed namespace when none is found; then the btt, pfn and dax seeds.
Namespace registration is asynchronous in Linux, so namespaces are probed
after the seeds exist; a namespace whose info block says devdax gets a new
nd dax device (nd_dax_probe), which is why the namespace recovered after a
reboot is held by ``dax0.1`` while the seed stays ``dax0.0``.

Cookie rule (the documented profile choice): with the CXL label design
(default) the cookie check is skipped for CXL labels, as in the 2025 "CXL
LSA 2.1" series; under ``boot.kernel`` < 6.2 (the 6.1 profile) a region
whose cookie is 0 refuses to instantiate labelled namespaces
("invalid interleave-set-cookie", -ENXIO), failing region probe.
"""

from __future__ import annotations

import errno
import struct
import uuid as uuidlib
from typing import TYPE_CHECKING

from cxlemu.kernel.base.device import AttrGroup, AttrSpec, Ida, KernelError, RO, RW, kstrtobool, kstrtoull
from cxlemu.hw import lsa as lbl
from cxlemu.kernel.nvdimm.bus import (ND_DEVICE_NAMESPACE_IO, ND_DEVICE_NAMESPACE_PMEM, ND_DEVICE_REGION_PMEM,
                                      NdDevice)
from cxlemu.kernel.nvdimm.dpa import label_id
from cxlemu.util.lazydc import dataclass

if TYPE_CHECKING:
    from cxlemu.kernel.nvdimm.dimm import NvdimmDev, NvdimmDrvdata
    from cxlemu.kernel.nvdimm.namespace import NdNamespacePmem

SZ_16M = 16 << 20
PAGE_SIZE = 4096
ND_MAX_MAPPINGS = 32


def interleave_set_cookie(mappings: list[tuple[int, int]]) -> int:
    """cxl_pmem_region_probe: nd_fletcher64 over {offset, serial} per mapping."""
    raw = b"".join(struct.pack("<QQ", off, serial & ((1 << 64) - 1)) for off, serial in mappings)
    return lbl.fletcher64(raw)


def default_align(size: int, mappings: int) -> int:
    """region_devs.c default_align()."""
    align = SZ_16M if size >= SZ_16M else PAGE_SIZE
    mappings = max(1, mappings)
    if align % mappings:
        align *= mappings
    return align


@dataclass(eq=False)
class NdMapping:
    nvdimm: "NvdimmDev"
    start: int
    size: int
    position: int

    @property
    def ndd(self) -> "NvdimmDrvdata | None":
        return self.nvdimm.ndd


_MAPPING_ATTRS = tuple(RO(f"mapping{i}", visible="mapping_visible") for i in range(ND_MAX_MAPPINGS))


class NdRegion(NdDevice):
    type_name = "nd_pmem"
    ATTR_GROUPS = (
        NdDevice.ND_GROUP,
        AttrGroup(None, (
            RO("size"), RW("align"), RO("nstype"), RO("mappings"), RO("btt_seed"), RO("pfn_seed"),
            RO("dax_seed"), AttrSpec("deep_flush", 0o644, visible="deep_flush_visible"), RW("read_only"),
            RO("set_cookie", visible="set_cookie_visible"),
            RO("available_size", visible="available_size_visible"), RO("max_available_extent"),
            RO("namespace_seed"), RO("init_namespaces"), RO("badblocks"), AttrSpec("resource", 0o400),
            RO("persistence_domain"))),
        NdDevice.NUMA_GROUP,
        AttrGroup(None, _MAPPING_ATTRS),
    )

    def __init__(self, nv, ndbus, region_id: int, start: int, size: int, mappings: list[NdMapping],
                 cookie: int, numa_node: int, target_node: int, cxl_region):
        super().__init__(f"region{region_id}", ndbus, ndbus.bus)
        self.nv = nv
        self.id = region_id
        self.ndr_start = start
        self.ndr_size = size
        self.mappings = mappings
        self.cookie1 = self.cookie2 = cookie
        self._numa_node = numa_node
        self._target_node = target_node
        self.cxl_region = cxl_region
        self.ro = False
        self.align = default_align(size, len(mappings))
        self.ns_seed: NdDevice | None = None
        self.btt_seed: NdDevice | None = None
        self.pfn_seed: NdDevice | None = None
        self.dax_seed: NdDevice | None = None
        self.ns_ida, self.btt_ida, self.pfn_ida, self.dax_ida = Ida(), Ida(), Ida(), Ida()
        self.ns_active = self.ns_count = 0
        self.probed = False
        self.iomem_res = None

    def nd_type(self) -> int:
        return ND_DEVICE_REGION_PMEM

    def nstype(self) -> int:
        return ND_DEVICE_NAMESPACE_PMEM if any(m.nvdimm.labeling for m in self.mappings) \
            else ND_DEVICE_NAMESPACE_IO

    def numa_node(self) -> int:
        return self._numa_node

    def target_node(self) -> int:
        return self._target_node

    def children_of(self, cls) -> list:
        return [c for c in self.children if isinstance(c, cls)]

    # ---- attributes -----------------------------------------------------------------------
    def size_show(self) -> str:
        return f"{self.ndr_size}\n"

    def align_show(self) -> str:
        return f"{self.align:#x}\n"

    def align_store(self, buf: bytes) -> None:
        val = kstrtoull(buf, 0)
        mappings = max(1, len(self.mappings))
        dpa, rem = divmod(val, mappings)
        if dpa == 0 or dpa & (dpa - 1) or dpa < PAGE_SIZE or val > self.ndr_size or rem:
            raise KernelError(errno.EINVAL)
        self.align = val

    def nstype_show(self) -> str:
        return f"{self.nstype()}\n"

    def mappings_show(self) -> str:
        return f"{len(self.mappings)}\n"

    def _seed_show(self, seed) -> str:
        return f"{seed.name}\n" if seed is not None else "\n"

    def btt_seed_show(self) -> str:
        return self._seed_show(self.btt_seed)

    def pfn_seed_show(self) -> str:
        return self._seed_show(self.pfn_seed)

    def dax_seed_show(self) -> str:
        return self._seed_show(self.dax_seed)

    def namespace_seed_show(self) -> str:
        return self._seed_show(self.ns_seed)

    def deep_flush_visible(self, _n: str) -> int:
        return 0o444 if self.mappings else 0     # nvdimm_has_flush() == 0: no flush hints

    def deep_flush_show(self) -> str:
        return "0\n"

    def deep_flush_store(self, buf: bytes) -> None:
        if not kstrtobool(buf):
            raise KernelError(errno.EINVAL)

    def read_only_show(self) -> str:
        return f"{int(self.ro)}\n"

    def read_only_store(self, buf: bytes) -> None:
        self.ro = kstrtobool(buf)

    def set_cookie_visible(self, _n: str) -> bool:
        return True

    def set_cookie_show(self) -> str:
        if self.mappings and self.mappings[0].ndd is not None:
            return f"{self.interleave_set_cookie(self.mappings[0].ndd.index_version()):#x}\n"
        return f"{self.cookie1:#x}\n"

    def available_size_visible(self, _n: str) -> bool:
        return self.nstype() == ND_DEVICE_NAMESPACE_PMEM

    def available_size_show(self) -> str:
        return f"{self.available_dpa()}\n"

    def max_available_extent_show(self) -> str:
        return f"{self.allocatable_dpa()}\n"

    def init_namespaces_show(self) -> str:
        if self.driver is None:
            raise KernelError(errno.ENXIO)
        return f"{self.ns_active}/{self.ns_count}\n"

    def badblocks_show(self) -> str:
        if self.driver is None:
            raise KernelError(errno.ENXIO)
        return self.nv.region_badblocks(self)

    def resource_show(self) -> str:
        return f"{self.ndr_start:#x}\n"

    def persistence_domain_show(self) -> str:
        return "memory_controller\n"

    def mapping_visible(self, name: str) -> bool:
        return int(name[7:]) < len(self.mappings)

    # ---- cookie / capacity ------------------------------------------------------------------
    def interleave_set_cookie(self, index_version: tuple[int, int] | None) -> int:
        """region_devs.c nd_region_interleave_set_cookie(); the LSA 2.1 design
        returns 0 for a 2.1 index (CXL labels need no cookie)."""
        if index_version == (2, 1):
            return 0
        if index_version == (1, 1):
            return self.cookie1
        return self.cookie2

    def dpa_align(self) -> int:
        n = max(1, len(self.mappings))
        return self.align // n if self.align % n == 0 else 0

    def available_dpa(self) -> int:
        total = 0
        for m in self.mappings:
            if m.ndd is None:
                return 0
            total += m.ndd.dpa.available(m.start, m.size, self.dpa_align())
        return total

    def allocatable_dpa(self) -> int:
        avail = 0
        for m in self.mappings:
            if m.ndd is None:
                return 0
            x = m.ndd.dpa.max_contiguous(m.start, m.size, self.dpa_align())
            avail = x if avail == 0 else (min(avail, x) if x else avail)
        return avail * len(self.mappings)

    def btt_claim_class(self) -> int:
        from cxlemu.kernel.nvdimm.namespace import NVDIMM_CCLASS_BTT, NVDIMM_CCLASS_BTT2
        bits = 0
        for m in self.mappings:
            if m.ndd is None:
                bits = 0
                break
            v = m.ndd.index_version()
            bits |= 1 if v is None else (2 if v == (1, 1) else 4)
        if bits in (0, 2):
            return NVDIMM_CCLASS_BTT
        if bits in (1, 4):
            return NVDIMM_CCLASS_BTT2
        raise KernelError(errno.ENXIO)

    def label_region_uuid(self) -> uuidlib.UUID:
        """nsl_set_region_uuid(): NULL in mainline; the CXL region uuid in the
        LSA 2.1 design (the default profile)."""
        if self.nv.legacy_cookie_profile():
            return lbl.NULL_UUID
        return getattr(self.cxl_region, "uuid", None) or lbl.NULL_UUID


def _make_mapping_methods() -> None:
    for i in range(ND_MAX_MAPPINGS):
        def show(self, i=i) -> str:
            if i >= len(self.mappings):
                raise KernelError(errno.ENXIO)
            m = self.mappings[i]
            return f"{m.nvdimm.name},{m.start},{m.size},{m.position}\n"
        setattr(NdRegion, f"mapping{i}_show", show)


_make_mapping_methods()


# ---------------------------------------------------------------------------------------------
# label scanning (namespace_devs.c scan_labels / create_namespace_pmem)
# ---------------------------------------------------------------------------------------------

def _labels_at(m: NdMapping) -> list[lbl.NamespaceLabel]:
    return [x for _s, x in m.ndd.namespace_labels()] if m.ndd else []


def has_uuid_at_pos(r: NdRegion, ns_uuid: uuidlib.UUID, pos: int) -> bool:
    """namespace_devs.c has_uuid_at_pos() for CXL labels (cookie, type and
    nlabel checks skipped): some mapping holds exactly one label of the uuid
    and it sits at ``pos``."""
    for m in r.mappings:
        found = [x for x in _labels_at(m) if x.uuid == ns_uuid]
        if len(found) > 1:
            return False
        if found and found[0].position == pos:
            return True
    return False


def create_namespace_pmem(r: NdRegion, label0: lbl.NamespaceLabel) -> "NdNamespacePmem":
    """create_namespace_pmem(); raises KernelError(EAGAIN|EINVAL|ENXIO)."""
    from cxlemu.kernel.nvdimm.namespace import NdNamespacePmem, cclass_of
    m0 = r.mappings[0]
    cookie = r.interleave_set_cookie(m0.ndd.index_version() if m0.ndd else None)
    if cookie == 0 and r.nv.legacy_cookie_profile():
        r.nv.kernel.log(f"{r.name}: invalid interleave-set-cookie")
        raise KernelError(errno.ENXIO, f"{r.name}: invalid interleave-set-cookie")
    for pos in range(len(r.mappings)):
        if not has_uuid_at_pos(r, label0.uuid, pos):
            r.nv.kernel.log(f"{r.name}: {r.mappings[pos].nvdimm.name} missing label for {label0.uuid}")
            raise KernelError(errno.EINVAL, f"{r.name}: missing label for {label0.uuid}")
    size = 0
    chosen: list[lbl.NamespaceLabel] = []
    for m in r.mappings:                                  # select_pmem_id()
        x = next((x for x in _labels_at(m) if x.uuid == label0.uuid), None)
        if x is None:
            raise KernelError(errno.EINVAL)
        if not (m.start <= x.dpa < m.start + m.size and m.start < x.dpa + x.rawsize <= m.start + m.size):
            r.nv.kernel.log(f"{r.name}: {m.nvdimm.name} invalid label for {x.uuid}")
            raise KernelError(errno.EINVAL, f"{r.name}: invalid label(s)")
        chosen.append(x)
        size += x.rawsize
    ns = NdNamespacePmem(r, -1)
    first = next(x for x in chosen if x.position == 0) if any(x.position == 0 for x in chosen) else chosen[0]
    ns.alt_name = first.name
    ns.uuid = first.uuid
    ns.lbasize = first.lbasize
    ns.claim_class = cclass_of(first.abstraction_uuid)
    ns.pending_size = size
    return ns


def scan_labels(r: NdRegion) -> list["NdNamespacePmem"]:
    """scan_labels(): namespaces from mapping 0's labels, or one empty seed."""
    from cxlemu.kernel.nvdimm.namespace import NdNamespacePmem
    m0 = r.mappings[0]
    devs: list[NdNamespacePmem] = []
    map_end = m0.start + m0.size - 1
    for x in _labels_at(m0):
        if x.dpa < m0.start or x.dpa > map_end:
            continue
        if any(d.uuid == x.uuid for d in devs):
            r.nv.kernel.log(f"{r.name}: error: conflicting extents for uuid: {x.uuid}")
            raise KernelError(errno.ENXIO)
        try:
            devs.append(create_namespace_pmem(r, x))
        except KernelError as e:
            if e.errno == errno.EAGAIN:
                continue
            raise
    r.nv.kernel.log(f"{r.name}: discovered {len(devs)} namespace{'' if len(devs) == 1 else 's'}")
    if not devs:
        ns = NdNamespacePmem(r, -1)
        ns.pending_size = 0
        devs.append(ns)
    devs.sort(key=lambda d: _label_dpa(r, d))
    return devs


def _label_dpa(r: NdRegion, ns) -> int:
    if ns.uuid is None:
        return 0
    m0 = r.mappings[0]
    exts = m0.ndd.dpa.named(label_id(str(ns.uuid))) if m0.ndd else []
    return exts[0].start if exts else 0
