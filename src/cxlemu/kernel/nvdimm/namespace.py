"""pmem namespaces (``namespaceR.N``, drivers/nvdimm/namespace_devs.c) and the
namespace label update protocol (drivers/nvdimm/label.c).

Sysfs attributes (namespace_pmem device type): nstype, size (0644: writes
allocate DPA), mode, uuid, holder, resource (0400), alt_name, force_raw,
sector_size, dpa_extents, holder_class, plus modalias/devtype and
numa_node/target_node.

Writes follow namespace_devs.c:

* ``uuid``: EBUSY when claimed; EINVAL unless unique on the whole nvdimm
  bus (nd_is_uuid_unique); renaming after labels were written is EBUSY;
* ``alt_name``: EBUSY when bound or claimed, EINVAL past 63 characters;
* ``size``: EBUSY when bound or claimed, ENXIO without a uuid, EINVAL when
  not a multiple of the region ``align``, ENOSPC beyond the largest free
  extent plus the current allocation; 0 releases the allocation and, for a
  namespace that is neither id 0 nor the seed, deletes the device;
* ``holder_class``: "", "btt", "pfn", "dax";
* every successful write updates the labels of every mapping (label.c
  nd_pmem_namespace_label_update): with a size, each mapping first gets a
  label with the UPDATING flag, then a second pass writes the final labels;
  the old label of the namespace is reaped by the same index commit; with
  size 0 the namespace's labels are deleted (del_labels).
"""

from __future__ import annotations

import errno
import uuid as uuidlib
from typing import TYPE_CHECKING

from cxlemu.kernel.base.device import AttrGroup, AttrSpec, KernelError, RO, RW, kstr, kstrip, kstrtobool, kstrtoull
from cxlemu.hw import lsa as lbl
from cxlemu.kernel.nvdimm.bus import NdDevice
from cxlemu.kernel.nvdimm.dpa import label_id

if TYPE_CHECKING:
    from cxlemu.kernel.nvdimm.region import NdMapping, NdRegion

NVDIMM_CCLASS_NONE, NVDIMM_CCLASS_BTT, NVDIMM_CCLASS_BTT2, NVDIMM_CCLASS_PFN, NVDIMM_CCLASS_DAX, \
    NVDIMM_CCLASS_UNKNOWN = range(6)
CCLASS_BY_NAME = {"btt": NVDIMM_CCLASS_BTT, "pfn": NVDIMM_CCLASS_PFN, "dax": NVDIMM_CCLASS_DAX}
ABSTRACTION = {NVDIMM_CCLASS_NONE: lbl.NULL_UUID, NVDIMM_CCLASS_BTT: lbl.NVDIMM_BTT_GUID,
               NVDIMM_CCLASS_BTT2: lbl.NVDIMM_BTT2_GUID, NVDIMM_CCLASS_PFN: lbl.NVDIMM_PFN_GUID,
               NVDIMM_CCLASS_DAX: lbl.NVDIMM_DAX_GUID}
PMEM_LBASIZE_SUPPORTED = (512, 4096)
NSLABEL_NAME_LEN = 64
ND_MIN_NAMESPACE_SIZE = 4096


def cclass_of(abstraction: uuidlib.UUID) -> int:
    for k, v in ABSTRACTION.items():
        if v == abstraction:
            return k
    return NVDIMM_CCLASS_UNKNOWN


def size_select_show(current: int, supported: tuple[int, ...]) -> str:
    """nd_size_select_show(): '[512] 4096 ' style, current value bracketed."""
    return "".join(f"[{s}] " if s == current else f"{s} " for s in supported) + "\n"


_HEX = frozenset("0123456789abcdefABCDEF")


def parse_choice(buf: bytes, supported: tuple[int, ...]) -> int:
    """A decimal value that must be one of ``supported`` (the sector_size
    and align stores): EINVAL otherwise."""
    try:
        val = int(kstrip(buf), 10)
    except ValueError:
        raise KernelError(errno.EINVAL) from None
    if val not in supported:
        raise KernelError(errno.EINVAL)
    return val


def parse_uuid(buf: bytes) -> uuidlib.UUID:
    """nd_uuid_parse(): 16 hex byte pairs, each optionally followed by one
    separator ('-', ':', newline or NUL)."""
    s = buf.decode("latin-1") + "\0\0"
    out = bytearray()
    i = 0
    for _ in range(16):
        if s[i] not in _HEX or s[i + 1] not in _HEX:
            raise KernelError(errno.EINVAL, f"bad uuid {buf!r}")
        out.append(int(s[i:i + 2], 16))
        i += 2
        if s[i] in "-:\n\0":
            i += 1
    return uuidlib.UUID(bytes=bytes(out))


_CLAIM_MODE = {"nd_btt": "safe", "nd_dax": "dax", "nd_pfn": "memory"}


class NdRegionChild(NdDevice):
    """A device a region hosts (``<prefix><region>.<id>``: namespaces and the
    btt/pfn/dax personalities): its nd type, NUMA nodes and nvdimm core are
    the region's."""

    def __init__(self, prefix: str, region: "NdRegion", dev_id: int):
        super().__init__(f"{prefix}{region.id}.{dev_id}", region, region.bus)
        self.region = region
        self.id = dev_id

    def nd_type(self) -> int:
        return self.region.nstype()

    def numa_node(self) -> int:
        return self.region.numa_node()

    def target_node(self) -> int:
        return self.region.target_node()

    @property
    def nv(self):
        return self.region.nv


class NdNamespacePmem(NdRegionChild):
    type_name = "nd_namespace_pmem"
    ATTR_GROUPS = (
        NdDevice.ND_GROUP,
        AttrGroup(None, (RO("nstype"), RW("size"), RO("mode"), RW("uuid"), RO("holder"),
                         AttrSpec("resource", 0o400), RW("alt_name"), RW("force_raw"),
                         RW("sector_size"), RO("dpa_extents"), RW("holder_class"))),
        NdDevice.NUMA_GROUP,
    )

    def __init__(self, region: "NdRegion", ns_id: int):
        super().__init__("namespace", region, ns_id)
        self.uuid: uuidlib.UUID | None = None
        self.alt_name: str | None = None
        self.lbasize = 0
        self.res_start = region.ndr_start
        self.res_size = 0
        self.claim: NdDevice | None = None
        self.claim_class = NVDIMM_CCLASS_NONE
        self.force_raw = False
        self.iomem_res = None

    # ---- attributes -----------------------------------------------------------------
    def nstype_show(self) -> str:
        return f"{self.region.nstype()}\n"

    def size_show(self) -> str:
        return f"{self.res_size}\n"

    def size_store(self, buf: bytes) -> None:
        val = kstrtoull(buf, 0)
        self.nv.set_namespace_size(self, val)

    def mode_show(self) -> str:
        # namespace_devs.c mode_show: by the claiming device's type (is_nd_btt ...)
        c = self.claim
        mode = _CLAIM_MODE.get(getattr(c, "type_name", "")) if c is not None else None
        return f"{mode}\n" if mode else "raw\n"          # CXL regions do not set ND_REGION_PAGEMAP

    def uuid_show(self) -> str:
        return f"{self.uuid}\n" if self.uuid else "\n"

    def uuid_store(self, buf: bytes) -> None:
        self.nv.set_namespace_uuid(self, buf)

    def holder_show(self) -> str:
        return f"{self.claim.name if self.claim else ''}\n"

    def resource_show(self) -> str:
        if self.res_size == 0:
            raise KernelError(errno.ENXIO)
        return f"{self.res_start:#x}\n"

    def alt_name_show(self) -> str:
        return f"{self.alt_name or ''}\n"

    def alt_name_store(self, buf: bytes) -> None:
        if self.driver is not None or self.claim is not None:
            raise KernelError(errno.EBUSY)
        name = kstr(buf).strip()
        if len(name.encode()) + 1 > NSLABEL_NAME_LEN:
            raise KernelError(errno.EINVAL)
        self.alt_name = name
        self.nv.namespace_label_update(self)

    def force_raw_show(self) -> str:
        return f"{int(self.force_raw)}\n"

    def force_raw_store(self, buf: bytes) -> None:
        self.force_raw = kstrtobool(buf)

    def sector_size_show(self) -> str:
        return size_select_show(self.lbasize, PMEM_LBASIZE_SUPPORTED)

    def sector_size_store(self, buf: bytes) -> None:
        if self.claim is not None or self.driver is not None:
            raise KernelError(errno.EBUSY)
        self.lbasize = parse_choice(buf, PMEM_LBASIZE_SUPPORTED)
        self.nv.namespace_label_update(self)

    def dpa_extents_show(self) -> str:
        if self.uuid is None:
            return "0\n"
        lid = label_id(str(self.uuid))
        return f"{sum(len(m.ndd.dpa.named(lid)) for m in self.region.mappings if m.ndd)}\n"

    def holder_class_show(self) -> str:
        c = self.claim_class
        if c == NVDIMM_CCLASS_NONE:
            return "\n"
        if c in (NVDIMM_CCLASS_BTT, NVDIMM_CCLASS_BTT2):
            return "btt\n"
        return {NVDIMM_CCLASS_PFN: "pfn\n", NVDIMM_CCLASS_DAX: "dax\n"}.get(c, "<unknown>\n")

    def holder_class_store(self, buf: bytes) -> None:
        if self.driver is not None or self.claim is not None:
            raise KernelError(errno.EBUSY)
        s = kstrip(buf)
        if s == "btt":
            self.claim_class = self.region.btt_claim_class()
        elif s in CCLASS_BY_NAME:
            self.claim_class = CCLASS_BY_NAME[s]
        elif s == "":
            self.claim_class = NVDIMM_CCLASS_NONE
        else:
            raise KernelError(errno.EINVAL)
        self.nv.namespace_label_update(self)

    # ---- helpers ----------------------------------------------------------------------------
    def set_resource(self, size: int) -> None:
        """nd_namespace_pmem_set_resource(): HPA from mapping 0's DPA extent."""
        r = self.region
        offset = 0
        if size and self.uuid is not None:
            m0 = r.mappings[0]
            exts = m0.ndd.dpa.named(label_id(str(self.uuid))) if m0.ndd else []
            if exts:
                offset = (exts[0].start - m0.start) * len(r.mappings)
            else:
                size = 0
        self.res_start = r.ndr_start + offset
        self.res_size = size

    @property
    def res_end(self) -> int:
        return self.res_start + self.res_size - 1


# ---------------------------------------------------------------------------------------------
# label protocol (label.c)
# ---------------------------------------------------------------------------------------------

def _in_mapping(m: "NdMapping", x: lbl.NamespaceLabel) -> bool:
    return m.start <= x.dpa < m.start + m.size


def del_labels(m: "NdMapping", ns_uuid: uuidlib.UUID | None) -> None:
    """label.c del_labels(): free the namespace's labels with one index commit;
    nothing happens without a valid index."""
    if ns_uuid is None or m.ndd is None or m.ndd.ns_current < 0:
        return
    area = m.ndd.area()
    area.delete_labels(lambda x: isinstance(x, lbl.NamespaceLabel) and x.uuid == ns_uuid
                       and _in_mapping(m, x))


def init_labels(m: "NdMapping") -> None:
    """label.c init_labels(): write both index blocks when none is valid."""
    assert m.ndd is not None
    if m.ndd.ns_current >= 0:
        return
    area = m.ndd.area()
    # the kernel clears its whole copy of the area, then writes the two index blocks
    m.ndd.data[:] = bytes(len(m.ndd.data))
    area.init(style="kernel")


def pmem_label_update(r: "NdRegion", m: "NdMapping", ns: NdNamespacePmem, pos: int, flags: int) -> None:
    """label.c __pmem_label_update(): new label into a free slot, the old one
    (same uuid) reaped by the index commit that publishes it."""
    assert m.ndd is not None and ns.uuid is not None
    lid = label_id(str(ns.uuid))
    exts = m.ndd.dpa.named(lid)
    if not exts:
        raise KernelError(errno.ENXIO, f"{ns.name}: no DPA for {lid}")
    res = exts[0]
    area = m.ndd.area()
    if area.current() < 0:
        raise KernelError(errno.ENXIO, f"{m.nvdimm.name}: no label index")
    label = lbl.NamespaceLabel(
        uuid=ns.uuid, name=ns.alt_name or "", flags=flags, nrange=1, position=pos,
        dpa=res.start, rawsize=res.size, align=0,
        region_uuid=r.label_region_uuid(), abstraction_uuid=ABSTRACTION.get(ns.claim_class, lbl.NULL_UUID),
        lbasize=ns.lbasize)
    victims = [s for s, x in area.labels() if isinstance(x, lbl.NamespaceLabel) and x.uuid == ns.uuid
               and _in_mapping(m, x)][:1]
    try:
        area.write_label(label, reap=victims)
    except lbl.LabelAreaFull:
        raise KernelError(errno.ENXIO, f"{m.nvdimm.name}: no free label slot") from None


def namespace_label_update(r: "NdRegion", ns: NdNamespacePmem) -> None:
    """nd_namespace_label_update() -> nd_pmem_namespace_label_update()."""
    if ns.driver is not None or ns.claim is not None:
        return
    size = ns.res_size
    if ns.uuid is None:
        return
    for i, m in enumerate(r.mappings):
        if size == 0:
            del_labels(m, ns.uuid)
            continue
        init_labels(m)
        pmem_label_update(r, m, ns, i, lbl.NSLABEL_FLAG_UPDATING)
    if size == 0:
        return
    for i, m in enumerate(r.mappings):
        pmem_label_update(r, m, ns, i, 0)
