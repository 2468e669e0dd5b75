"""Namespace personalities: pfn (fsdax), dax (devdax) and btt (sector) devices
(drivers/nvdimm/pfn_devs.c, dax_devs.c, btt_devs.c, claim.c).

Each region keeps one idle *seed* of each kind (``pfnR.N``, ``daxR.N``,
``bttR.N``).  User space configures a seed (uuid, mode/"location", align or
sector_size) and writes a namespace name into its ``namespace`` attribute,
which *claims* the namespace (claim.c nd_namespace_store: only names
starting with "namespace", EBUSY when already set or claimed by another
class, ENODEV when not found, ENXIO below 16 MiB).  Binding the seed to its
driver (nd_pmem for pfn/btt, dax_pmem for dax) writes or validates the info
block and instantiates the data path; the region then plants a new seed
(region_devs.c nd_region_advance_seeds).  Writing an empty namespace name
detaches it; a detached, unbound device that is not the seed is deleted.

Sysfs (pfn_devs.c): mode ("none"/"ram"/"pmem"), namespace, uuid, align,
resource (0400, data start, only while bound), size (data size, only while
bound), supported_alignments; plus modalias/devtype, numa_node/target_node.
btt_devs.c: sector_size, namespace, uuid, size, log_zero_flags.
"""

from __future__ import annotations

import errno
import struct
import uuid as uuidlib
from typing import TYPE_CHECKING

from cxlemu.kernel.base.device import AttrGroup, AttrSpec, KernelError, RO, RW, kstr, kstrip
from cxlemu.kernel.nvdimm import infoblock as ib
from cxlemu.kernel.nvdimm.bus import ND_DEVICE_DAX_PMEM, NdDevice
from cxlemu.kernel.nvdimm.namespace import NdRegionChild, parse_choice, parse_uuid, size_select_show

if TYPE_CHECKING:
    from cxlemu.kernel.nvdimm.namespace import NdNamespacePmem
    from cxlemu.kernel.nvdimm.region import NdRegion

SZ_16M = 16 << 20
BTT_SECTOR_SIZES = (512, 520, 528, 4096, 4104, 4160, 4224)


class _NdClaimDevice(NdRegionChild):
    """What pfn/dax and btt devices share: ``namespace`` (the claim, through
    claim.c nd_namespace_store) and ``uuid`` (fixed while bound)."""

    def __init__(self, prefix: str, region: "NdRegion", dev_id: int):
        super().__init__(prefix, region, dev_id)
        self.uuid: uuidlib.UUID | None = None
        self.ndns: "NdNamespacePmem | None" = None

    def namespace_show(self) -> str:
        return f"{self.ndns.name if self.ndns else ''}\n"

    def namespace_store(self, buf: bytes) -> None:
        self.nv.namespace_store(self, buf)

    def uuid_show(self) -> str:
        return f"{self.uuid}\n" if self.uuid else "\n"

    def uuid_store(self, buf: bytes) -> None:
        if self.driver is not None:
            raise KernelError(errno.EBUSY)
        self.uuid = parse_uuid(buf)


class NdPfn(_NdClaimDevice):
    type_name = "nd_pfn"
    sig = ib.PFN_SIG
    prefix = "pfn"
    ATTR_GROUPS = (
        AttrGroup(None, (RW("mode"), RW("namespace"), RW("uuid"), RW("align"), AttrSpec("resource", 0o400),
                         RO("size"), RO("supported_alignments"))),
        NdDevice.ND_GROUP,
        NdDevice.NUMA_GROUP,
    )

    def __init__(self, region: "NdRegion", dev_id: int):
        super().__init__(self.prefix, region, dev_id)
        self.mode = ib.PFN_MODE_NONE
        self.align = ib.DEFAULT_ALIGNMENT
        self.sb: ib.PfnSuperblock | None = None
        self.iomem_res = None

    # ---- attributes -------------------------------------------------------------------
    def mode_show(self) -> str:
        return {ib.PFN_MODE_RAM: "ram\n", ib.PFN_MODE_PMEM: "pmem\n"}.get(self.mode, "none\n")

    def mode_store(self, buf: bytes) -> None:
        if self.driver is not None:
            raise KernelError(errno.EBUSY)
        s = kstrip(buf)
        modes = {"pmem": ib.PFN_MODE_PMEM, "ram": ib.PFN_MODE_RAM, "none": ib.PFN_MODE_NONE}
        if s not in modes:
            raise KernelError(errno.EINVAL)
        self.mode = modes[s]

    def align_show(self) -> str:
        return f"{self.align}\n"

    def align_store(self, buf: bytes) -> None:
        if self.driver is not None:
            raise KernelError(errno.EBUSY)
        self.align = parse_choice(buf, ib.SUPPORTED_ALIGNMENTS)

    def resource_show(self) -> str:
        if self.driver is None or self.sb is None or self.ndns is None:
            raise KernelError(errno.ENXIO)
        return f"{self.ndns.res_start + self.sb.start_pad + self.sb.dataoff:#x}\n"

    def size_show(self) -> str:
        if self.driver is None or self.sb is None or self.ndns is None:
            raise KernelError(errno.ENXIO)
        return f"{self.data_size}\n"

    def supported_alignments_show(self) -> str:
        return size_select_show(0, ib.SUPPORTED_ALIGNMENTS)

    @property
    def data_start(self) -> int:
        assert self.sb is not None and self.ndns is not None
        return self.ndns.res_start + self.sb.start_pad + self.sb.dataoff

    @property
    def data_size(self) -> int:
        assert self.sb is not None and self.ndns is not None
        return self.ndns.res_size - self.sb.start_pad - self.sb.end_trunc - self.sb.dataoff

    def reset(self) -> None:
        """claim.c nd_detach_and_reset() for pfn/dax devices."""
        self.uuid = None
        self.mode = ib.PFN_MODE_NONE


class NdDax(NdPfn):
    type_name = "nd_dax"
    sig = ib.DAX_SIG
    prefix = "dax"

    def __init__(self, region: "NdRegion", dev_id: int):
        super().__init__(region, dev_id)
        self.dax_core_region = None     # the dax core's region while bound (it adds dax_region/)
        self.dev_dax = None

    def nd_type(self) -> int:
        return ND_DEVICE_DAX_PMEM


class NdBtt(_NdClaimDevice):
    type_name = "nd_btt"
    ATTR_GROUPS = (
        AttrGroup(None, (RW("sector_size"), RW("namespace"), RW("uuid"), RO("size"), RO("log_zero_flags"))),
        NdDevice.ND_GROUP,
        NdDevice.NUMA_GROUP,
    )

    def __init__(self, region: "NdRegion", dev_id: int):
        super().__init__("btt", region, dev_id)
        self.lbasize = 0
        self.size = 0

    def sector_size_show(self) -> str:
        return size_select_show(self.lbasize, BTT_SECTOR_SIZES)

    def sector_size_store(self, buf: bytes) -> None:
        if self.driver is not None:
            raise KernelError(errno.EBUSY)
        self.lbasize = parse_choice(buf, BTT_SECTOR_SIZES)

    def size_show(self) -> str:
        if self.driver is None:
            raise KernelError(errno.ENXIO)
        return f"{self.size}\n"

    def log_zero_flags_show(self) -> str:
        return "Y\n"

    def reset(self) -> None:
        self.lbasize = 0
        self.uuid = None


# ---------------------------------------------------------------------------------------------
# BTT geometry (drivers/nvdimm/btt.c alloc_arena / btt_init), single arena
# ---------------------------------------------------------------------------------------------

BTT_PG_SIZE = 4096
BTT_DEFAULT_NFREE = 256          # ND_MAX_LANES
LOG_GRP_SIZE = 64
MAP_ENT_SIZE = 4
INT_LBASIZE_ALIGNMENT = 64
ARENA_MAX_SIZE = 1 << 39
ARENA_MIN_SIZE = 1 << 24
BTT_SIG = b"BTT_ARENA_INFO\x00\x00"
_BTT_SB = struct.Struct("<16s16s16sIHHIIIIIIQQQQQ3968sQ")
assert _BTT_SB.size == 4096


def btt_geometry(rawsize: int, lbasize: int) -> list[tuple[int, int, int]]:
    """(arena size, external_nlba, internal_nlba) of each arena."""
    arenas = []
    remaining = rawsize
    while remaining >= ARENA_MIN_SIZE:
        size = min(remaining, ARENA_MAX_SIZE)
        remaining -= size
        avail = size - size % BTT_PG_SIZE - 2 * BTT_PG_SIZE
        internal_lbasize = (lbasize + INT_LBASIZE_ALIGNMENT - 1) // INT_LBASIZE_ALIGNMENT * INT_LBASIZE_ALIGNMENT
        logsize = -(-BTT_DEFAULT_NFREE * LOG_GRP_SIZE // BTT_PG_SIZE) * BTT_PG_SIZE
        avail -= logsize
        internal_nlba = (avail - BTT_PG_SIZE) // (internal_lbasize + MAP_ENT_SIZE)
        arenas.append((size, internal_nlba - BTT_DEFAULT_NFREE, internal_nlba))
    return arenas


def btt_info_block(btt_uuid: uuidlib.UUID, parent: uuidlib.UUID, arena_size: int, lbasize: int,
                   ext_nlba: int, int_nlba: int, major: int, minor: int) -> bytes:
    from cxlemu.hw.lsa import fletcher64
    internal_lbasize = (lbasize + INT_LBASIZE_ALIGNMENT - 1) // INT_LBASIZE_ALIGNMENT * INT_LBASIZE_ALIGNMENT
    logsize = -(-BTT_DEFAULT_NFREE * LOG_GRP_SIZE // BTT_PG_SIZE) * BTT_PG_SIZE
    mapsize = -(-ext_nlba * MAP_ENT_SIZE // BTT_PG_SIZE) * BTT_PG_SIZE
    info2off = arena_size - arena_size % BTT_PG_SIZE - BTT_PG_SIZE
    logoff = info2off - logsize
    mapoff = logoff - mapsize
    dataoff = BTT_PG_SIZE
    buf = bytearray(_BTT_SB.pack(BTT_SIG, btt_uuid.bytes, parent.bytes, 0, major, minor, lbasize, ext_nlba,
                                 internal_lbasize, int_nlba, BTT_DEFAULT_NFREE, 4096, 0, dataoff, mapoff,
                                 logoff, info2off, bytes(3968), 0))
    struct.pack_into("<Q", buf, 4088, fletcher64(buf))
    return bytes(buf)


def parse_btt_info(raw: bytes) -> dict | None:
    from cxlemu.hw.lsa import fletcher64
    if raw[:16] != BTT_SIG:
        return None
    buf = bytearray(raw[:4096])
    (saved,) = struct.unpack_from("<Q", buf, 4088)
    buf[4088:] = bytes(8)
    if fletcher64(buf) != saved:
        return None
    f = _BTT_SB.unpack_from(raw, 0)
    return {"uuid": uuidlib.UUID(bytes=f[1]), "parent_uuid": uuidlib.UUID(bytes=f[2]), "major": f[4],
            "minor": f[5], "lbasize": f[6], "ext_nlba": f[7]}


# ---------------------------------------------------------------------------------------------
# claim.c nd_namespace_store
# ---------------------------------------------------------------------------------------------

def namespace_store(dev: NdPfn | NdBtt, buf: bytes) -> None:
    from cxlemu.kernel.nvdimm.namespace import (NVDIMM_CCLASS_BTT, NVDIMM_CCLASS_BTT2, NVDIMM_CCLASS_DAX,
                                                NVDIMM_CCLASS_NONE, NVDIMM_CCLASS_PFN, NdNamespacePmem)
    if dev.driver is not None:
        raise KernelError(errno.EBUSY, f"{dev.name}: namespace already active")
    name = kstr(buf).strip()
    if not (name.startswith("namespace") or name == ""):
        raise KernelError(errno.EINVAL)
    if name == "":
        detach_and_reset(dev)
        return
    if dev.ndns is not None:
        raise KernelError(errno.EBUSY, f"{dev.name}: namespace already set to: {dev.ndns.name}")
    ns = next((c for c in dev.region.children if isinstance(c, NdNamespacePmem) and c.name == name), None)
    if ns is None:
        raise KernelError(errno.ENODEV, f"{dev.name}: '{name}' not found under {dev.region.name}")
    cc = ns.claim_class
    ok = {NVDIMM_CCLASS_NONE: True,
          NVDIMM_CCLASS_BTT: isinstance(dev, NdBtt), NVDIMM_CCLASS_BTT2: isinstance(dev, NdBtt),
          NVDIMM_CCLASS_PFN: type(dev) is NdPfn, NVDIMM_CCLASS_DAX: isinstance(dev, NdDax)}.get(cc, False)
    if not ok:
        raise KernelError(errno.EBUSY, f"{dev.name}: claim class mismatch")
    if ns.res_size < SZ_16M:
        raise KernelError(errno.ENXIO, f"{dev.name}: {name} too small to host")
    if ns.claim is not None:
        raise KernelError(errno.EBUSY, f"{dev.name}: {name} already claimed")
    ns.claim = dev
    dev.ndns = ns


def detach_and_reset(dev: NdPfn | NdBtt) -> None:
    ns = dev.ndns
    if ns is not None and ns.claim is dev:
        ns.claim = None
    dev.ndns = None
    r = dev.region
    seed = r.btt_seed if isinstance(dev, NdBtt) else (r.dax_seed if isinstance(dev, NdDax) else r.pfn_seed)
    if seed is not dev and dev.driver is None:
        r.nv.unregister_nd(dev)
    else:
        dev.reset()
