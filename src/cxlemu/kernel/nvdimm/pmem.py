"""libnvdimm's namespace drivers over CXL pmem: ``nd_pmem`` (drivers/nvdimm/
pmem.c: raw namespaces, fsdax through a pfn device, sector mode through a
btt) and ``dax_pmem`` (drivers/dax/pmem.c: devdax through a dax device),
plus namespace data access (nvdimm_read_bytes / nvdimm_write_bytes).

* probing a raw namespace first looks for an info block of a personality
  (nd_btt_probe, nd_pfn_probe, nd_dax_probe); one of the namespace's claim
  class instantiates a btt/pfn/dax device that claims the namespace;
* a pfn/dax device validates its info block at offset 4 KiB or, when none
  exists, writes one (pfn_devs.c nd_pfn_init sizing, see infoblock.py);
* dax_pmem reserves the metadata range ("namespaceR.N" in iomem) and
  creates a static device-dax region and its daxR.N over the data area.

Kernel writes are flushed writes: they clean the CPU-cache lines they
cover (``kernel.physmem``, attached with the media: data/physmem.py).
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from cxlemu.kernel.base.device import KernelError, device_add
from cxlemu.kernel.nvdimm.bus import NdDevice
from cxlemu.kernel.resource import Resource, insert_resource, release_resource
from cxlemu.util.lazy import lazy_module

ib = lazy_module("cxlemu.kernel.nvdimm.infoblock")   # info-block codecs: when a namespace is probed

if TYPE_CHECKING:
    from cxlemu.kernel.kernel import Kernel
    from cxlemu.kernel.nvdimm.claim import NdBtt, NdDax, NdPfn
    from cxlemu.kernel.nvdimm.namespace import NdNamespacePmem


class PmemDrivers:
    """The nd_pmem and dax_pmem probe/remove paths (a mixin of Nvdimm)."""

    kernel: "Kernel"

    # ---- data access (nvdimm_read_bytes / nvdimm_write_bytes) --------------------------------------------
    def _physmem(self):
        pm = self.kernel.physmem
        if pm is None:
            raise KernelError(errno.EIO, "no media attached")
        return pm

    def ns_read(self, ns: "NdNamespacePmem", offset: int, n: int) -> bytes:
        return self._physmem().read(ns.res_start + offset, n)

    def ns_write(self, ns: "NdNamespacePmem", offset: int, data: bytes) -> None:
        self._physmem().kernel_write(ns.res_start + offset, data)

    # ---- nd_pmem driver (pmem.c nd_pmem_probe) ---------------------------------------------------------------
    def _pmem_probe(self, dev: NdDevice) -> None:
        from cxlemu.kernel.nvdimm.claim import NdBtt, NdPfn
        from cxlemu.kernel.nvdimm.namespace import NdNamespacePmem
        if isinstance(dev, NdBtt):
            ns = self._common_probe(dev)
            self._attach_btt(dev, ns)
        elif isinstance(dev, NdPfn):
            ns = self._common_probe(dev)
            self._setup_pfn(dev, ns)
            self._attach_disk(dev, ns)
        else:
            assert isinstance(dev, NdNamespacePmem)
            ns = self._common_probe(dev)
            claimer = None
            try:
                claimer = None if ns.force_raw else self._probe_personalities(ns)
            except KernelError as e:
                if e.errno == errno.EOPNOTSUPP:
                    self.advance_seeds(dev.region, dev)
                raise
            if claimer is not None:
                # the new device registers asynchronously in Linux and probes
                # once this probe has failed: release the namespace first
                ns.driver = None
                self.nd_attach(claimer)
                raise KernelError(errno.ENXIO, f"{ns.name}: claimed by {claimer.name}")
            self._attach_disk(ns, ns)
        self.advance_seeds(dev.region, dev)

    def _pmem_remove(self, dev: NdDevice) -> None:
        self._detach_disk(dev)
        ns = getattr(dev, "ndns", None) if not hasattr(dev, "claim") else dev
        if ns is not None and getattr(ns, "iomem_res", None) is not None:
            release_resource(ns.iomem_res)
            ns.iomem_res = None
        if hasattr(dev, "sb"):
            dev.sb = None

    def _common_probe(self, dev: NdDevice) -> "NdNamespacePmem":
        """nvdimm_namespace_common_probe()."""
        from cxlemu.kernel.nvdimm.namespace import ND_MIN_NAMESPACE_SIZE, NdNamespacePmem
        if isinstance(dev, NdNamespacePmem):
            ns = dev
            if ns.claim is not None:
                raise KernelError(errno.ENXIO, f"{ns.name}: claimed by {ns.claim.name}, failing probe")
        else:
            ns = dev.ndns
            if ns is None:
                raise KernelError(errno.ENODEV)
            if ns.driver is not None:
                raise KernelError(errno.EBUSY, f"{ns.name}: is active, can't bind {dev.name}")
            if ns.claim is not dev:
                raise KernelError(errno.ENXIO)
        if ns.res_size < ND_MIN_NAMESPACE_SIZE:
            raise KernelError(errno.ENODEV, f"{ns.name}: too small")
        if ns.uuid is None:
            raise KernelError(errno.ENODEV, f"{ns.name}: uuid not set")
        return ns

    def _probe_personalities(self, ns: "NdNamespacePmem") -> NdDevice | None:
        """nd_btt_probe / nd_pfn_probe / nd_dax_probe on a raw namespace: an
        existing info block of the right class instantiates a new device."""
        from cxlemu.kernel.nvdimm.claim import NdBtt, NdDax, NdPfn, parse_btt_info
        from cxlemu.kernel.nvdimm.namespace import (NVDIMM_CCLASS_BTT, NVDIMM_CCLASS_BTT2, NVDIMM_CCLASS_DAX,
                                                    NVDIMM_CCLASS_NONE, NVDIMM_CCLASS_PFN)
        r = ns.region
        try:
            head = self.ns_read(ns, 0, ib.SZ_8K)
        except (KernelError, OSError):
            return None
        cc = ns.claim_class
        if cc in (NVDIMM_CCLASS_NONE, NVDIMM_CCLASS_BTT, NVDIMM_CCLASS_BTT2):
            off = 0 if cc == NVDIMM_CCLASS_BTT2 else ib.SZ_4K
            info = parse_btt_info(head[off:off + 4096])
            if info is not None and info["parent_uuid"] == ns.uuid:
                btt = NdBtt(r, r.btt_ida.alloc())
                btt.uuid, btt.lbasize, btt.ndns = info["uuid"], info["lbasize"], ns
                ns.claim = btt
                device_add(btt, probe=False)
                return btt
        for cls, cclass in ((NdPfn, NVDIMM_CCLASS_PFN), (NdDax, NVDIMM_CCLASS_DAX)):
            if cc not in (NVDIMM_CCLASS_NONE, cclass):
                continue
            try:
                sb = ib.validate(head[ib.INFO_BLOCK_OFFSET:], cls.sig, ns.uuid, ns.res_start, ns.res_size)
            except OSError as e:
                if e.errno == errno.ENODEV:
                    continue
                self.kernel.log(f"{ns.name}: {e.strerror}")
                if e.errno == errno.EOPNOTSUPP:
                    raise KernelError(errno.EOPNOTSUPP, f"{ns.name}: {e.strerror}") from None
                continue
            ida = r.dax_ida if cls is NdDax else r.pfn_ida
            dev = cls(r, ida.alloc())
            dev.uuid, dev.align, dev.mode, dev.ndns = sb.uuid, sb.align, sb.mode, ns
            ns.claim = dev
            device_add(dev, probe=False)
            return dev
        return None

    def _setup_pfn(self, dev: "NdPfn", ns: "NdNamespacePmem") -> None:
        """nvdimm_setup_pfn -> nd_pfn_init(): validate or write the info block."""
        if dev.uuid is None:
            raise KernelError(errno.ENODEV, f"{dev.name}: incomplete configuration")
        try:
            head = self.ns_read(ns, ib.INFO_BLOCK_OFFSET, ib.INFO_BLOCK_SIZE)
        except OSError as e:
            raise KernelError(errno.ENXIO, f"{dev.name}: read failed: {e}") from None
        try:
            sb = ib.validate(head, dev.sig, ns.uuid, ns.res_start, ns.res_size)
            if sb.uuid != dev.uuid:
                raise OSError(errno.ENODEV, "uuid mismatch")
            if sb.align != dev.align or sb.mode != dev.mode:
                raise KernelError(errno.EOPNOTSUPP, f"{dev.name}: init failed, settings mismatch")
            dev.sb = sb
            return
        except OSError as e:
            if isinstance(e, KernelError):
                raise
            if e.errno != errno.ENODEV:
                raise KernelError(e.errno, f"{dev.name}: {e.strerror}") from None
        if dev.region.ro:
            raise KernelError(errno.ENXIO, f"{dev.name}: {dev.region.name} is read-only, unable to init metadata")
        try:
            sb = ib.make_superblock(dev.sig, dev.uuid, ns.uuid, ns.res_start, ns.res_size, dev.align, dev.mode)
        except OSError as e:
            raise KernelError(e.errno, f"{dev.name}: {ns.name} {e.strerror}") from None
        self.ns_write(ns, ib.INFO_BLOCK_OFFSET, sb.encode())
        dev.sb = sb

    def _attach_disk(self, host: NdDevice, ns: "NdNamespacePmem") -> None:
        """pmem_attach_disk(): reserve the range and publish block/pmemR[.N]."""
        name = f"pmem{ns.region.id}.{ns.id}" if ns.id else f"pmem{ns.region.id}"
        res = Resource(ns.res_start, ns.res_end, ns.name)
        try:
            insert_resource(self.kernel.iomem, res)
            ns.iomem_res = res
        except KernelError:
            ns.iomem_res = None
        host.disk = name

    def _detach_disk(self, host: NdDevice) -> None:
        host.disk = None

    def _attach_btt(self, btt: "NdBtt", ns: "NdNamespacePmem") -> None:
        """nvdimm_namespace_attach_btt(): validate or lay down the arena info."""
        from cxlemu.kernel.nvdimm.claim import btt_geometry, btt_info_block, parse_btt_info
        from cxlemu.kernel.nvdimm.namespace import NVDIMM_CCLASS_BTT2
        if btt.uuid is None or btt.lbasize == 0:
            raise KernelError(errno.ENODEV, f"{btt.name}: incomplete btt configuration")
        v2 = ns.claim_class == NVDIMM_CCLASS_BTT2
        off = 0 if v2 else ib.SZ_4K
        arenas = btt_geometry(ns.res_size - off, btt.lbasize)
        if not arenas:
            raise KernelError(errno.ENXIO, f"{btt.name}: namespace too small")
        info = parse_btt_info(self.ns_read(ns, off, 4096))
        if info is None or info["uuid"] != btt.uuid:
            pos = off
            for size, ext, internal in arenas:
                blk = btt_info_block(btt.uuid, ns.uuid, size, btt.lbasize, ext, internal,
                                     2 if v2 else 1, 0 if v2 else 1)
                self.ns_write(ns, pos, blk)
                pos += size
        btt.size = sum(ext for _s, ext, _i in arenas) * btt.lbasize
        btt.disk = f"pmem{ns.region.id}.{ns.id}s" if ns.id else f"pmem{ns.region.id}s"

    # ---- dax_pmem driver (drivers/dax/pmem.c) -----------------------------------------------------------------
    def _dax_pmem_probe(self, dax: "NdDax") -> None:
        ns = self._common_probe(dax)
        self._setup_pfn(dax, ns)
        sb = dax.sb
        assert sb is not None
        meta = Resource(ns.res_start, ns.res_start + sb.dataoff - 1, ns.name)
        try:
            insert_resource(self.kernel.iomem, meta)
            dax.iomem_res = meta
        except KernelError:
            raise KernelError(errno.EBUSY, f"{dax.name}: could not reserve metadata") from None
        core = self.kernel.dax
        if not hasattr(core, "alloc_dax_region"):
            release_resource(meta)
            dax.iomem_res = None
            raise KernelError(errno.ENXIO, f"{dax.name}: device-dax core not available")
        start = dax.data_start
        size = ns.res_size - sb.start_pad - sb.end_trunc - sb.dataoff
        try:
            region = core.alloc_dax_region(dax, ns.region.id, start, size, sb.align,
                                           ns.region.target_node(), True)
            dax.dax_core_region = region
            dax.dev_dax = core.create_dev_dax(region, size=None, dev_id=ns.id)
        except KernelError:
            self._dax_teardown(dax)
            raise
        self.advance_seeds(dax.region, dax)

    def _dax_pmem_remove(self, dax: "NdDax") -> None:
        self._dax_teardown(dax)

    def _dax_teardown(self, dax: "NdDax") -> None:
        core = self.kernel.dax
        if dax.dax_core_region is not None and hasattr(core, "free_dax_region"):
            core.free_dax_region(dax.dax_core_region)
        dax.dax_core_region = None
        dax.dev_dax = None
        if dax.iomem_res is not None:
            release_resource(dax.iomem_res)
            dax.iomem_res = None
        dax.sb = None
