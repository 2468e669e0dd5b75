"""The nvdimm subsystem as cxlemu models it: the CXL nvdimm bridge and, on
top of it, libnvdimm's bus, dimms, regions, namespaces and their
personalities (drivers/cxl/pmem.c, drivers/cxl/core/pmem.c, drivers/nvdimm/*,
drivers/dax/pmem.c).

Object lifetimes follow the drivers:

* ``nvdimm-bridgeN`` bound -> ``ndbusN`` (provider "CXL") with ``ndctlN``;
* ``pmemN`` (cxl_nvdimm) bound -> ``nmemN``; the ``nvdimm`` driver reads the
  label area and reserves labelled DPA;
* ``pmem_regionN`` bound -> nd ``regionN`` (same id as the CXL region) with
  a "Persistent Memory" iomem resource; the ``nd_region`` driver creates
  namespaces from labels plus the btt/pfn/dax seeds;
* a namespace is bound by ``nd_pmem`` (raw: block device ``pmemR[.N]``), or
  claimed by a pfn (fsdax), dax (devdax) or btt (sector) device bound by
  ``nd_pmem`` / ``dax_pmem``.

Profiles (see region.py): the default follows the CXL label design (index
version 2.1, region uuid in namespace labels, no interleave-set cookie for
CXL labels); ``boot.kernel`` < 6.2 writes 1.2 indexes and refuses labelled
namespaces in a region whose cookie is 0.  ``boot.assemble_from_region_labels``
writes region labels when a pmem region is activated and re-creates CXL
pmem regions from them at boot (regionlabels.py); mainline Linux does not.
"""

from __future__ import annotations

import errno
import os
from typing import TYPE_CHECKING, Callable

from cxlemu.kernel.base.device import (Bus, ClassDriver, Device, Ida, KernelError, device_add, device_attach,
                                       device_del, device_release_driver)
from cxlemu.kernel.nvdimm.bus import (ND_DEVICE_DAX_PMEM, ND_DEVICE_DIMM, ND_DEVICE_NAMESPACE_IO,
                                      ND_DEVICE_NAMESPACE_PMEM, ND_DEVICE_REGION_PMEM, NdCtl, NdDriver,
                                      NvdimmBus)
from cxlemu.kernel.nvdimm.cxl_pmem import CxlNvdimm, CxlPmemRegion, NvdimmBridge
from cxlemu.kernel.nvdimm.pmem import PmemDrivers
from cxlemu.kernel.resource import Resource, insert_resource, release_resource

if TYPE_CHECKING:
    import uuid as uuidlib

    from cxlemu.kernel.cxl.memdev import CxlMemdev
    from cxlemu.kernel.cxl.port import CxlPort
    from cxlemu.kernel.cxl.region import CxlRegion
    from cxlemu.kernel.kernel import Kernel
    from cxlemu.kernel.nvdimm.claim import NdBtt, NdDax, NdPfn
    from cxlemu.kernel.nvdimm.dimm import NvdimmDev
    from cxlemu.kernel.nvdimm.namespace import NdNamespacePmem
    from cxlemu.kernel.nvdimm.region import NdRegion

IORES_DESC_PERSISTENT_MEMORY = 4


class Nvdimm(PmemDrivers):
    def __init__(self, kernel: "Kernel"):
        self.kernel = kernel
        self.bridge: NvdimmBridge | None = None
        bus = kernel.cxl.bus
        for drv in (
            ClassDriver("cxl_nvdimm_bridge", bus, NvdimmBridge, self._bridge_probe, self._bridge_remove,
                        suppress_bind_attrs=True),
            ClassDriver("cxl_nvdimm", bus, CxlNvdimm, self._nvdimm_probe, self._nvdimm_remove,
                        suppress_bind_attrs=True),
            ClassDriver("cxl_pmem_region", bus, CxlPmemRegion, self._pmem_region_probe,
                        self._pmem_region_remove, suppress_bind_attrs=True),
        ):
            bus.register_driver(drv)
        # libnvdimm: the "nd" bus and its drivers
        self.nd_bus = Bus("nd")
        kernel.buses["nd"] = self.nd_bus
        self.bus_ida = Ida()
        self.dimm_ida = Ida()
        for drv in (
            ClassDriver("nd_bus", self.nd_bus, NvdimmBus, None, None),
            NdDriver("nvdimm", self.nd_bus, (ND_DEVICE_DIMM,), self._dimm_probe, self._dimm_remove),
            NdDriver("nd_region", self.nd_bus, (ND_DEVICE_REGION_PMEM,), self._region_probe,
                     self._region_remove),
            NdDriver("nd_pmem", self.nd_bus, (ND_DEVICE_NAMESPACE_IO, ND_DEVICE_NAMESPACE_PMEM),
                     self._pmem_probe, self._pmem_remove),
            NdDriver("dax_pmem", self.nd_bus, (ND_DEVICE_DAX_PMEM,), self._dax_pmem_probe,
                     self._dax_pmem_remove),
        ):
            self.nd_bus.register_driver(drv)
        self.lsa_writes = 0
        self.lsa_write_hook: Callable[["NvdimmDev", int, bytes], None] | None = None

    # ---- profiles ------------------------------------------------------------------------
    def legacy_cookie_profile(self) -> bool:
        """Linux 6.1: 1.2 indexes, cookie checked for CXL labels too."""
        return not self.kernel.has("cxl_label_design")

    def label_version(self) -> tuple[int, int]:
        return (1, 2) if self.legacy_cookie_profile() else (2, 1)

    def serial_zero_refused(self) -> bool:
        """cxl/pmem: debug invalid serial number data (merged for 6.15)."""
        return self.kernel.has("pmem_serial_zero_refused")

    def classes(self) -> dict[str, Callable[[], list[Device]]]:
        return {"nd": lambda: [b.ctl for b in self.buses() if b.ctl is not None]}

    def buses(self) -> list[NvdimmBus]:
        return [d for d in self.nd_bus.devices.values() if isinstance(d, NvdimmBus)]

    def regions(self) -> list["NdRegion"]:
        from cxlemu.kernel.nvdimm.region import NdRegion
        return [d for d in self.nd_bus.devices.values() if isinstance(d, NdRegion)]

    def late_boot(self) -> None:
        """After every memdev probed: optional region assembly from labels."""
        if self.kernel.platform.topology.boot.assemble_from_region_labels:
            from cxlemu.kernel.nvdimm import regionlabels
            regionlabels.assemble(self)

    # ---- LSA write hooks --------------------------------------------------------------------
    def before_lsa_write(self, nvdimm: "NvdimmDev", offset: int, data: bytes) -> None:
        if self.lsa_write_hook is not None:
            self.lsa_write_hook(nvdimm, offset, data)

    def after_lsa_write(self) -> None:
        from cxlemu.kernel.nvdimm.dimm import lsa_fault_limit
        self.lsa_writes += 1
        limit = lsa_fault_limit()
        if limit is not None and self.lsa_writes >= limit:
            os.kill(os.getpid(), 9)

    # ---- bridge -------------------------------------------------------------------------------
    def add_bridge(self, root: "CxlPort") -> None:
        br = NvdimmBridge(f"nvdimm-bridge{self.kernel.cxl.bridge_ida.alloc()}", root, self.kernel.cxl.bus)
        self.bridge = br
        device_add(br)

    def _bridge_probe(self, br) -> None:
        ndbus = NvdimmBus(self.bus_ida.alloc(), br, self.nd_bus, "CXL")
        ndbus.kernel_ref = self.kernel
        br.nvdimm_bus = ndbus
        device_add(ndbus)
        ctl = NdCtl(ndbus)
        ndbus.ctl = ctl
        device_add(ctl, probe=False)
        self.kernel.register_chrdev(ctl)
        self.on_bridge_probe(br)

    def _bridge_remove(self, br) -> None:
        self.on_bridge_remove(br)
        ndbus = getattr(br, "nvdimm_bus", None)
        for nv in [d for d in self.kernel.cxl.bus.devices.values() if isinstance(d, CxlNvdimm)]:
            if nv.driver is not None:
                device_release_driver(nv)
        if ndbus is not None:
            for c in list(ndbus.children):
                self.unregister_nd(c)
            device_del(ndbus)
            self.bus_ida.free(ndbus.id)
            br.nvdimm_bus = None

    # hooks kept for other subsystems
    def on_bridge_probe(self, br) -> None:
        pass

    def on_bridge_remove(self, br) -> None:
        pass

    # ---- per-memdev cxl_nvdimm ------------------------------------------------------------------
    def add_cxl_nvdimm(self, md: "CxlMemdev") -> None:
        nv = CxlNvdimm(f"pmem{md.id}", md)
        device_add(nv)

    def remove_cxl_nvdimm(self, md: "CxlMemdev") -> None:
        for c in list(md.children):
            if isinstance(c, CxlNvdimm):
                device_del(c)

    def cxl_nvdimm_of(self, md: "CxlMemdev") -> CxlNvdimm | None:
        return next((c for c in md.children if isinstance(c, CxlNvdimm)), None)

    def nvdimm_active(self, md: "CxlMemdev") -> bool:
        nv = self.cxl_nvdimm_of(md)
        return nv is not None and nv.driver is not None

    def _nvdimm_probe(self, nv: CxlNvdimm) -> None:
        from cxlemu.kernel.nvdimm.dimm import NvdimmDev
        if self.bridge is None or self.bridge.driver is None or getattr(self.bridge, "nvdimm_bus", None) is None:
            raise KernelError(errno.ENXIO, f"{nv.name}: no active nvdimm bridge")
        ndbus = self.bridge.nvdimm_bus
        nmem = NvdimmDev(self.dimm_ida.alloc(), ndbus, nv)
        nv.nvdimm = nmem
        self.kernel.register_chrdev(nmem)
        device_add(nmem)

    def _nvdimm_remove(self, nv: CxlNvdimm) -> None:
        nmem = getattr(nv, "nvdimm", None)
        if nmem is not None:
            self.unregister_nd(nmem)
            nv.nvdimm = None

    def nvdimm_of(self, md: "CxlMemdev") -> "NvdimmDev | None":
        nv = self.cxl_nvdimm_of(md)
        return getattr(nv, "nvdimm", None) if nv is not None else None

    # ---- pmem regions (cxl_pmem_region driver) -------------------------------------------------------
    def add_pmem_region(self, r: "CxlRegion") -> None:
        if self.bridge is None:
            raise KernelError(errno.ENODEV, f"{r.name}: no nvdimm bridge")
        pr = CxlPmemRegion(r)
        device_add(pr)

    def remove_pmem_region(self, r: "CxlRegion") -> None:
        for c in list(r.children):
            if isinstance(c, CxlPmemRegion):
                device_del(c)

    def _pmem_region_probe(self, pr: CxlPmemRegion) -> None:
        from cxlemu.kernel.nvdimm.region import NdMapping, NdRegion, interleave_set_cookie
        r = pr.region
        br = self.bridge
        if br is None or getattr(br, "nvdimm_bus", None) is None:
            raise KernelError(errno.ENXIO, f"{pr.name}: no nvdimm bus")
        members = r.members()
        mappings, info = [], []
        for i, cxled in enumerate(members):
            md = cxled.memdev
            nmem = self.nvdimm_of(md)
            if nmem is None:
                raise KernelError(errno.ENODEV, f"{pr.name}: [{i}]: {md.name}: no nvdimm found")
            if md.hw.serial == 0 and self.serial_zero_refused():
                self.kernel.log(f"{pr.name}: {md.name}: invalid or missing serial number")
                raise KernelError(errno.ENXIO, f"{md.name}: invalid or missing serial number")
            info.append((cxled.dpa_start, md.hw.serial))
            mappings.append(NdMapping(nmem, cxled.dpa_start, cxled.dpa_len, i))
        res = Resource(r.res.start, r.res.end, "Persistent Memory", desc=IORES_DESC_PERSISTENT_MEMORY)
        try:
            insert_resource(self.kernel.iomem, res)
        except KernelError as e:
            raise KernelError(e.errno, f"{pr.name}: {e.log}") from None
        numa, target = self._nodes_for(r.res.start)
        nd = NdRegion(self, br.nvdimm_bus, r.id, r.res.start, r.res.size, mappings,
                      interleave_set_cookie(info), numa, target, r)
        nd.iomem_res = res
        pr.nd_region = nd
        self.kernel.log(f"{pr.name}: nd {nd.name} cookie {nd.cookie1:#x}")
        device_add(nd)
        if self.kernel.platform.topology.boot.assemble_from_region_labels:
            from cxlemu.kernel.nvdimm import regionlabels
            regionlabels.write_region_labels(self, r, mappings)

    def _pmem_region_remove(self, pr: CxlPmemRegion) -> None:
        nd = getattr(pr, "nd_region", None)
        if nd is not None:
            self.unregister_nd(nd)
            if nd.iomem_res is not None:
                release_resource(nd.iomem_res)
            pr.nd_region = None

    def _nodes_for(self, hpa: int) -> tuple[int, int]:
        """(memory_add_physaddr_to_nid, phys_to_target_node) of an HPA."""
        mm = self.kernel.mm
        for fn in ("phys_to_target_node_pair",):
            f = getattr(mm, fn, None)
            if callable(f):
                return f(hpa)
        plat = self.kernel.platform
        nodes = [n for _s, _e, n in plat.dram_ranges]
        numa = next((n for s, e, n in plat.dram_ranges if s <= hpa <= e), nodes[0] if nodes else 0)
        target = numa
        f = getattr(mm, "phys_to_target_node", None)
        if callable(f):
            target = f(hpa)
        else:
            w = next((w for w in plat.windows if w.base <= hpa < w.end), None)
            if w is not None and w.topo.numa_node is not None:
                target = w.topo.numa_node
            elif w is not None:
                known = sorted({n.node for n in plat.topology.numa} | {x.topo.numa_node for x in plat.windows
                                                                      if x.topo.numa_node is not None})
                unnamed = [x for x in plat.windows if x.topo.numa_node is None]
                target = (max(known) + 1 if known else 0) + unnamed.index(w)
        return numa, target

    # ---- nd devices -------------------------------------------------------------------------------
    def unregister_nd(self, dev: Device) -> None:
        """nd_device_unregister(): children first, then the device; ids freed."""
        from cxlemu.kernel.nvdimm.claim import NdBtt, NdDax, NdPfn
        from cxlemu.kernel.nvdimm.dimm import NvdimmDev
        from cxlemu.kernel.nvdimm.namespace import NdNamespacePmem
        from cxlemu.kernel.nvdimm.region import NdRegion
        if not dev.registered:
            return
        for c in list(dev.children):
            self.unregister_nd(c)
        device_release_driver(dev)
        device_del(dev)
        if isinstance(dev, NdNamespacePmem) and dev.id >= 0:
            dev.region.ns_ida.free(dev.id)
        elif isinstance(dev, NdDax):
            dev.region.dax_ida.free(dev.id)
        elif isinstance(dev, NdPfn):
            dev.region.pfn_ida.free(dev.id)
        elif isinstance(dev, NdBtt):
            dev.region.btt_ida.free(dev.id)
        elif isinstance(dev, NvdimmDev):
            self.dimm_ida.free(dev.id)
        if isinstance(dev, (NdPfn, NdBtt)) and dev.ndns is not None and dev.ndns.claim is dev:
            dev.ndns.claim = None
        if isinstance(dev, NdRegion):
            pass

    # ---- nvdimm driver --------------------------------------------------------------------------
    def _dimm_probe(self, nmem: "NvdimmDev") -> None:
        nmem.probe()

    def _dimm_remove(self, nmem: "NvdimmDev") -> None:
        nmem.remove()

    # ---- nd_region driver (region.c) -------------------------------------------------------------
    def _region_probe(self, r: "NdRegion") -> None:
        from cxlemu.kernel.nvdimm.namespace import NdNamespacePmem
        from cxlemu.kernel.nvdimm.region import scan_labels
        for m in r.mappings:                             # init_active_labels()
            if m.ndd is None:
                self.kernel.log(f"{r.name}: {m.nvdimm.name}: is disabled, failing probe")
                raise KernelError(errno.ENXIO, f"{r.name}: {m.nvdimm.name}: is disabled, failing probe")
        for m in r.mappings:
            m.nvdimm.busy += 1
        try:
            devs = scan_labels(r)
        except KernelError:
            for m in r.mappings:
                m.nvdimm.busy -= 1
            raise
        # register the namespaces (ids in DPA order), reserve their DPA
        for ns in devs:
            ns.id = r.ns_ida.alloc()
            ns.name = f"namespace{r.id}.{ns.id}"
            ns.set_resource(getattr(ns, "pending_size", 0))
            device_add(ns, probe=False)
        r.ns_seed = devs[0]
        r.ns_active, r.ns_count = len(devs), len(devs)
        self.create_btt_seed(r)
        self.create_pfn_seed(r)
        self.create_dax_seed(r)
        r.probed = True
        # asynchronous registration: namespaces and seeds probe after region probe
        for ns in devs:
            self.nd_attach(ns)
        for seed in (r.btt_seed, r.pfn_seed, r.dax_seed):
            if seed is not None and seed.registered:
                self.nd_attach(seed)

    def _region_remove(self, r: "NdRegion") -> None:
        for c in list(r.children):
            self.unregister_nd(c)
        r.ns_seed = r.btt_seed = r.pfn_seed = r.dax_seed = None
        for m in r.mappings:
            m.nvdimm.busy = max(0, m.nvdimm.busy - 1)
        r.probed = False

    def create_btt_seed(self, r: "NdRegion") -> None:
        from cxlemu.kernel.nvdimm.claim import NdBtt
        r.btt_seed = NdBtt(r, r.btt_ida.alloc())
        device_add(r.btt_seed, probe=False)

    def create_pfn_seed(self, r: "NdRegion") -> None:
        from cxlemu.kernel.nvdimm.claim import NdPfn
        r.pfn_seed = NdPfn(r, r.pfn_ida.alloc())
        device_add(r.pfn_seed, probe=False)

    def create_dax_seed(self, r: "NdRegion") -> None:
        from cxlemu.kernel.nvdimm.claim import NdDax
        r.dax_seed = NdDax(r, r.dax_ida.alloc())
        device_add(r.dax_seed, probe=False)

    def create_ns_seed(self, r: "NdRegion") -> None:
        from cxlemu.kernel.nvdimm.namespace import NdNamespacePmem
        if r.nstype() == ND_DEVICE_NAMESPACE_IO:
            return
        ns = NdNamespacePmem(r, r.ns_ida.alloc())
        ns.set_resource(0)
        r.ns_seed = ns
        device_add(ns, probe=False)
        self.nd_attach(ns)

    def nd_attach(self, dev: Device) -> bool:
        """nvdimm_bus_probe(): try the drivers; advance the seeds on success."""
        ok = device_attach(dev)
        return ok

    def advance_seeds(self, r: "NdRegion", dev: Device) -> None:
        """region_devs.c nd_region_advance_seeds()."""
        from cxlemu.kernel.nvdimm.claim import NdBtt, NdDax, NdPfn
        if r.ns_seed is dev:
            self.create_ns_seed(r)
        elif isinstance(dev, NdBtt):
            if r.btt_seed is dev:
                self.create_btt_seed(r)
            if dev.ndns is not None and r.ns_seed is dev.ndns:
                self.create_ns_seed(r)
        elif isinstance(dev, NdPfn):           # pfn and dax
            if isinstance(dev, NdDax):
                if r.dax_seed is dev:
                    self.create_dax_seed(r)
            elif r.pfn_seed is dev:
                self.create_pfn_seed(r)
            if dev.ndns is not None and r.ns_seed is dev.ndns:
                self.create_ns_seed(r)

    # ---- namespace attribute operations (namespace_devs.c) ---------------------------------------------
    def namespace_label_update(self, ns: "NdNamespacePmem") -> None:
        from cxlemu.kernel.nvdimm import namespace as nsmod
        nsmod.namespace_label_update(ns.region, ns)

    def set_namespace_uuid(self, ns: "NdNamespacePmem", buf: bytes) -> None:
        from cxlemu.kernel.nvdimm.namespace import parse_uuid
        from cxlemu.kernel.nvdimm.dpa import label_id
        if ns.claim is not None:
            raise KernelError(errno.EBUSY)
        new = parse_uuid(buf)
        if not self.uuid_unique(ns, new):
            raise KernelError(errno.EINVAL, f"{ns.name}: uuid {new} is not unique")
        r = ns.region
        if ns.uuid is not None:
            # namespace_update_uuid(): too late to rename once labels exist
            if any(m.ndd is None or not m.ndd.namespace_labels() for m in r.mappings):
                raise KernelError(errno.EBUSY)
            old, newid = label_id(str(ns.uuid)), label_id(str(new))
            for m in r.mappings:
                if m.ndd is not None:
                    m.ndd.dpa.rename(old, newid)
        ns.uuid = new
        self.namespace_label_update(ns)

    def uuid_unique(self, ns: "NdNamespacePmem", u: uuidlib.UUID) -> bool:
        """nd_is_uuid_unique(): no namespace, pfn or btt on the bus uses it."""
        from cxlemu.kernel.nvdimm.claim import NdBtt, NdPfn
        from cxlemu.kernel.nvdimm.namespace import NdNamespacePmem
        from cxlemu.kernel.nvdimm.region import NdRegion
        ndbus = ns.region.parent
        for r in ndbus.children:
            if not isinstance(r, NdRegion):
                continue
            for c in r.children:
                if isinstance(c, (NdNamespacePmem, NdPfn, NdBtt)) and c.uuid == u:
                    return False
        return True

    def set_namespace_size(self, ns: "NdNamespacePmem", val: int) -> None:
        """namespace_devs.c size_store / __size_store."""
        from cxlemu.kernel.nvdimm.dpa import label_id
        r = ns.region
        if ns.driver is not None or ns.claim is not None:
            raise KernelError(errno.EBUSY)
        if ns.uuid is None:
            raise KernelError(errno.ENXIO, f"{ns.name}: uuid not set")
        if not r.mappings:
            raise KernelError(errno.ENXIO)
        if val % r.align:
            raise KernelError(errno.EINVAL, f"{ns.name}: {val} is not {r.align // 1024}K aligned")
        lid = label_id(str(ns.uuid))
        allocated = 0
        for m in r.mappings:
            if m.ndd is None:
                raise KernelError(errno.ENXIO)
            allocated += m.ndd.dpa.allocated(lid)
        available = r.allocatable_dpa()
        if val > available + allocated:
            raise KernelError(errno.ENOSPC, f"{ns.name}: {val:#x} exceeds available {available + allocated:#x}")
        if val != allocated:
            n = len(r.mappings)
            per, cur = val // n, allocated // n
            align = r.dpa_align()
            for m in r.mappings:
                assert m.ndd is not None
                if per < cur:
                    m.ndd.dpa.shrink(lid, cur - per)
                elif m.ndd.dpa.allocate(m.start, m.size, align, lid, per - cur):
                    raise KernelError(errno.ENXIO, f"{ns.name}: allocation underrun")
            ns.set_resource(per * n)
        self.namespace_label_update(ns)
        if val == 0:
            ns.uuid = None
            if ns.id != 0 and r.ns_seed is not ns and ns.claim is None:
                self.unregister_nd(ns)

    def namespace_store(self, dev, buf: bytes) -> None:
        from cxlemu.kernel.nvdimm.claim import namespace_store
        namespace_store(dev, buf)

    def region_badblocks(self, r: "NdRegion") -> str:
        from cxlemu.kernel.nvdimm import badrange
        return badrange.badblocks_text(badrange.region_badblocks(self.kernel, r))
