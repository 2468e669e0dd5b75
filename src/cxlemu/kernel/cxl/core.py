"""The CXL core: the cxl bus, its drivers, and topology enumeration.

Follows drivers/cxl/acpi.c (root, root decoders from CFMWS, host-bridge
ports), drivers/cxl/pci.c (memdev creation), drivers/cxl/mem.c and
core/port.c (``devm_cxl_enumerate_ports``: switch ports created top-down on
first use, then the endpoint) and drivers/cxl/port.c (dport and decoder
enumeration at port probe).  Teardown mirrors ``cxl_detach_ep``: when an
endpoint goes away, switch ports that no longer lead to any endpoint are
unregistered; host-bridge ports (children of the root) stay.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from cxlemu.kernel.base.device import (Bus, ClassDriver, Device, Ida, KernelError, device_add, device_del, kstrtobool,
                                       pure_action)
from cxlemu.kernel.cxl.hdm import Hdm
from cxlemu.kernel.cxl.memdev import CxlMemdev
from cxlemu.kernel.cxl.port import CxlPort, Dport, RootDecoder
from cxlemu.kernel.resource import IORES_DESC_CXL, Resource, insert_resource

if TYPE_CHECKING:
    from cxlemu.hw.type3 import Type3Device
    from cxlemu.kernel.kernel import Kernel


class CxlCore:
    def __init__(self, kernel: "Kernel"):
        self.kernel = kernel
        self.bus = Bus("cxl")
        kernel.buses["cxl"] = self.bus
        self.port_ida = Ida()
        self.mem_ida = Ida()
        self.bridge_ida = Ida()
        self.root: CxlPort | None = None
        self.memdevs: list[CxlMemdev] = []
        self.hdm = Hdm(self)
        from cxlemu.kernel.cxl.mbox import Mailbox
        from cxlemu.kernel.cxl.poison import Poison
        from cxlemu.kernel.cxl.region import RegionManager
        self.regions = RegionManager(self)
        self.mailbox = Mailbox(self)
        self.poison = Poison(self)
        from cxlemu.kernel.cxl.events import CxlEvents
        self.events = CxlEvents(self)
        self.bus.attrs["flush"] = (None, self._flush_store, 0o200)
        from cxlemu.kernel.cxl.region import CxlRegion
        for drv in (
            ClassDriver("cxl_port", self.bus, CxlPort, self._port_probe, self._port_remove,
                        predicate=self._is_switch_or_endpoint),
            ClassDriver("cxl_mem", self.bus, CxlMemdev, self._mem_probe, self._mem_remove),
            ClassDriver("cxl_region", self.bus, CxlRegion, self.regions.probe, self.regions.remove),
        ):
            self.bus.register_driver(drv)

    @staticmethod
    def _is_switch_or_endpoint(dev) -> bool:
        return not dev.is_root

    @pure_action
    def _flush_store(self, buf: bytes) -> None:
        """/sys/bus/cxl/flush (core/port.c flush_store): waits for the cxl
        workqueues; nothing persists."""
        kstrtobool(buf)

    # ---- debugfs (drivers/cxl/core/port.c cxl_debugfs_create_dir, mbox.c) ------------------------
    raw_allow_all = False

    def debugfs_tree(self) -> dict:
        def show_raw() -> str:
            return "Y\n" if self.raw_allow_all else "N\n"

        def store_raw(b: bytes) -> None:
            self.raw_allow_all = kstrtobool(b)
        out: dict = {"mbox": {"raw_allow_all": (show_raw, store_raw, 0o600)}}
        for md in self.memdevs:
            if md.registered and md.driver is not None:
                out[md.name] = md.debugfs_files()
        return out

    # ---- lookups ---------------------------------------------------------------------
    def ports(self) -> list[CxlPort]:
        return [d for d in self.bus.devices.values() if isinstance(d, CxlPort)]

    def port_by_uport(self, uport: Device) -> CxlPort | None:
        p = self._uport_index().get(id(uport))
        if p is not None and p.uport is uport and self.bus.devices.get(p.name) is p:
            return p
        return None

    def _uport_index(self) -> dict[int, CxlPort]:
        """id(uport) -> its port.  Transient (dropped by ``__getstate__``):
        built from the bus once per process, then every port registered by
        this module is added (:meth:`_add_port`); a hit is checked against
        the bus, so a port that went away is never returned."""
        idx = self.__dict__.get("_uport_idx")
        if idx is None:
            idx = {id(p.uport): p for p in self.ports()}
            self.__dict__["_uport_idx"] = idx
        return idx

    def _add_port(self, port: CxlPort, probe: bool = True) -> None:
        device_add(port, probe=probe)
        self._uport_index()[id(port.uport)] = port

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state.pop("_uport_idx", None)
        state.pop("_dc_scan", None)
        return state

    def host_bridge_device(self, hb) -> Device:
        """The device a host bridge's root dport and port are registered by:
        the PCI root bridge (pci0000:BB) since v6.2, its ACPI0016 device before
        (acpi.c add_host_bridge_dport/uport, kernel/features.py)."""
        devmap = self.kernel.devmap
        if self.kernel.has("hb_port_by_bridge_device"):
            return devmap[hb.name]
        return devmap.get(hb.acpi_name, devmap[hb.name])

    def find(self, name: str) -> Device | None:
        return self.bus.devices.get(name)

    def dc_capable(self) -> bool:
        """Any memdev with Dynamic Capacity (the DCD series' files appear then).
        Each root decoder's attribute visibility asks, so the answer is kept:
        ``memdevs`` only grows (pci_probe appends), and only the memdevs added
        since the last question are looked at."""
        seen, found = self.__dict__.get("_dc_scan", (0, False))
        if not found and seen < len(self.memdevs):
            found = any(md.hw.dc_size for md in self.memdevs[seen:])
            self._dc_scan = (len(self.memdevs), found)
        return found

    def root_decoders(self) -> list[RootDecoder]:
        return [d for d in self.root.decoders if isinstance(d, RootDecoder)] if self.root else []

    # ---- cxl_acpi ----------------------------------------------------------------------
    def acpi_probe(self, host: Device) -> None:
        """drivers/cxl/acpi.c cxl_acpi_probe."""
        from cxlemu.hw.acpi import cedt as cedt_mod
        from cxlemu.kernel.cxl import acpi as rules
        k = self.kernel
        plat = k.platform
        root = CxlPort(self, self.port_ida.alloc(), host, host, None, "root", None)
        self._add_port(root)
        self.root = root

        subtables = cedt_mod.decode_cedt(k.acpi_tables["CEDT"])
        chbs = {}
        for s in subtables:
            if isinstance(s, cedt_mod.Chbs) and rules.chbs_is_usable(s) and s.uid not in chbs:
                chbs[s.uid] = s
        # add_host_bridge_dport, in ACPI namespace order
        for hb in plat.host_bridges:
            c = chbs.get(hb.uid)
            if c is None:
                k.log(f"{host.name}: No CHBS found for Host Bridge (UID {hb.uid})")
                continue
            root.dports[hb.uid] = Dport(root, hb.uid, self.host_bridge_device(hb), rch=(c.cxl_version == 0))
        # cxl_parse_cfmws: one root decoder per valid window
        window_id = 0
        for s in subtables:
            if not isinstance(s, cedt_mod.Cfmws):
                continue
            err = rules.validate_cfmws(s)
            if err is None and s.interleave_arithmetic == 1:
                maps = rules.cxims_for_window(subtables, s)
                if isinstance(maps, rules.CedtError):
                    err = maps
                    xormaps: tuple[int, ...] = ()
                else:
                    xormaps = maps
            else:
                xormaps = ()
            targets = []
            if err is None:
                for uid in s.targets:
                    dp = root.dports.get(uid)
                    if dp is None:
                        err = rules.CedtError(errno.ENXIO, f"target {uid} not found")
                        break
                    targets.append(dp)
            end = s.base_hpa + s.window_size - 1
            if err is not None:
                k.log(f"{host.name}: Failed to add decode range: [{s.base_hpa:#x} - {end:#x}] "
                      f"({-err.errno}) {err.message}")
                continue
            res = Resource(s.base_hpa, end, f"CXL Window {window_id}", desc=IORES_DESC_CXL)
            window_id += 1
            insert_resource(k.iomem, res)
            gran = 256 if len(targets) == 1 else 256 << s.hbig   # acpi.c: x1 advertises 256
            idx = len(root.decoders)
            rd = RootDecoder(root, idx, window_index=window_id - 1, start=s.base_hpa, size=s.window_size,
                             targets=targets, granularity=gran, restrictions=s.restrictions,
                             qos_class=s.qtg_id, arithmetic="xor" if s.interleave_arithmetic else "modulo",
                             xormaps=xormaps, res=res)
            rd.hbig_granularity = 256 << s.hbig
            rd.hpa_tree = Resource(s.base_hpa, end, res.name)   # the private window tree (acpi.c cxl_res)
            rd.region_id = self.kernel.memregion_ida.alloc()
            root.decoders.append(rd)
            device_add(rd)
        # add_host_bridge_uport for every VH host bridge
        for hb in plat.host_bridges:
            dp = root.dports.get(hb.uid)
            if dp is None or dp.rch:
                continue
            port = CxlPort(self, self.port_ida.alloc(), root, dp.dev, dp, "switch", hb.hdm)
            port.hw_owner = hb
            self._add_port(port)   # probes with cxl_port
        if any(rd.cap_pmem for rd in self.root_decoders()):
            self.kernel.nvdimm.add_bridge(root)

    def acpi_remove(self, host: Device) -> None:
        """cxl_acpi unbind: the devm actions registered on the host run in reverse.

        Memdevs lose their endpoints (and are unbound), regions are unregistered
        (committed decoders are reset on the way, region.c unregister_region),
        host-bridge ports, root decoders and their "CXL Window" resources go,
        and finally root0 itself."""
        from cxlemu.kernel.base.device import device_release_driver
        from cxlemu.kernel.resource import release_resource
        root = self.root
        if root is None:
            return
        for md in self.memdevs:
            if md.driver is not None:
                device_release_driver(md)
        for rd in self.root_decoders():
            for r in list(rd.regions):
                self.regions.unregister(r)
        bridge = self.kernel.nvdimm.bridge
        if bridge is not None and bridge.registered:
            device_del(bridge)
            self.bridge_ida.free(int(bridge.name.rsplit("bridge", 1)[1]))
            self.kernel.nvdimm.bridge = None
        for port in [c for c in root.children if isinstance(c, CxlPort)]:
            self._unregister_tree(port)
        for rd in self.root_decoders():
            if rd.res is not None and rd.res.parent is not None:
                release_resource(rd.res)
            self.kernel.memregion_ida.free(rd.region_id)
            device_del(rd)
        root.decoders.clear()
        device_del(root)
        self.port_ida.free(root.id)
        self.root = None

    # ---- cxl_pci / cxl_mock_mem: memdev creation -------------------------------------------
    def pci_probe(self, pdev: Device, hw: "Type3Device") -> None:
        if not hw.link_up:
            raise KernelError(errno.ENXIO, f"cxl_pci {pdev.name}: device not responding (link down)")
        md = CxlMemdev(self, self.mem_ida.alloc(), pdev, hw)
        self.memdevs.append(md)
        self.kernel.register_chrdev(md)
        self.set_timestamp(md)
        device_add(md)
        self.events.config(md)

    # ---- PCIe error recovery (drivers/cxl/pci.c cxl_error_detected / cxl_slot_reset) -------------
    def link_down(self, md: CxlMemdev) -> None:
        """The link dropped: Downstream Port Containment freezes the channel and
        the CXL driver gives up CXL.mem: the memdev loses its driver (endpoint,
        decoders and the regions using them go; memory that kmem cannot
        offline stays online and now reads as all-ones)."""
        from cxlemu.kernel.base.device import device_release_driver
        host = md.parent.name if md.parent else md.name
        self.kernel.log(f"pcieport: DPC: containment event, status:0x1f01 source:0x0000")
        self.kernel.log(f"cxl_pci {host}: {md.name}: frozen state error detected, disable CXL.mem")
        if md.driver is not None:
            device_release_driver(md)
        self.kernel.dirty = True

    def link_up(self, md: CxlMemdev) -> None:
        """The link retrained and the slot was reset (the device went through a
        hot reset): CXL.mem restarts and the memdev is probed again."""
        from cxlemu.kernel.base.device import device_attach
        host = md.parent.name if md.parent else md.name
        store = self.kernel.media_store
        if store is not None and md.hw.ram_size:
            store.discard(md.hw, 0, md.hw.ram_size)     # volatile contents did not survive the reset
        self.kernel.log(f"cxl_pci {host}: {md.name}: restart CXL.mem after slot reset")
        self.set_timestamp(md)
        self.events.config(md)
        if md.driver is None:
            device_attach(md)
        self.kernel.log(f"cxl_pci {host}: {md.name}: error resume successful")
        self.kernel.dirty = True

    def set_timestamp(self, md: CxlMemdev) -> None:
        """cxl_set_timestamp(): the device gets the host's real time (ktime_get_real_ns)."""
        from cxlemu.hw.mailbox import payloads as P
        from cxlemu.hw.mailbox.opcodes import Opcode
        self.mailbox.internal(md, Opcode.SET_TIMESTAMP, P.Timestamp(self.kernel.realtime_ns()).encode())

    # ---- cxl_port driver ----------------------------------------------------------------------
    def _port_probe(self, dev: Device) -> None:
        port = dev
        assert isinstance(port, CxlPort)
        if port.is_endpoint:
            if not port.decoders:
                self.hdm.enumerate(port)
                for d in port.decoders:
                    device_add(d)
            self.regions.discover_auto(port)
            return
        if not port.dports:
            self._enumerate_dports(port)
        if not port.decoders:
            self.hdm.enumerate(port)
            for d in port.decoders:
                device_add(d)

    def _port_remove(self, dev: Device) -> None:
        """cxl_port driver unbind: everything the port's devm context owns goes.

        Child ports and endpoints were added with this port as their devm host
        (core/port.c devm_cxl_add_port, devm_cxl_add_endpoint), so they are
        unregistered and the memdevs below lose their driver (cxl_detach_ep);
        the port's own decoders and dports are released and re-enumerated from
        the hardware when the port is bound again."""
        port = dev
        assert isinstance(port, CxlPort)
        if port.is_endpoint:
            return
        from cxlemu.kernel.base.device import device_release_driver
        for md in list(self.memdevs):
            ep = md.endpoint
            if ep is not None and port in ep.ancestors():
                device_release_driver(md)
        for child in [c for c in port.children if isinstance(c, CxlPort)]:
            self._unregister_tree(child)
        for d in list(port.decoders):
            if d.region is not None:
                for ref_region in [d.region]:
                    for t in ref_region.members():
                        self.regions.kill_endpoint_decoder(t)
            device_del(d)
        port.decoders.clear()
        port.dports.clear()
        port.regions.clear()
        port.commit_end = -1

    def _unregister_tree(self, port: CxlPort) -> None:
        for child in [c for c in port.children if isinstance(c, CxlPort)]:
            self._unregister_tree(child)
        if port.is_endpoint and port.memdev is not None:
            port.memdev.endpoint = None
        port.dead = True
        self._unregister_port(port)

    def _enumerate_dports(self, port: CxlPort) -> None:
        owner = port.hw_owner
        devmap = self.kernel.devmap
        for dp in owner.ports:
            port.dports[dp.port_id] = Dport(port, dp.port_id, devmap[dp.name])
        if not port.dports:
            raise KernelError(errno.ENXIO, f"{port.name}: no dports")

    # ---- cxl_mem driver ---------------------------------------------------------------------------
    def _mem_probe(self, dev: Device) -> None:
        md = dev
        assert isinstance(md, CxlMemdev)
        if self.root is None:
            raise KernelError(errno.ENXIO, f"{md.name}: CXL root not found")
        plat = self.kernel.platform
        devmap = self.kernel.devmap
        path = plat.path_to(md.hw)
        top = path[0].parent
        root = self.root
        if top.is_rch:  # type: ignore[union-attr]
            parent_port = root
            parent_dport = root.dports.get(top.uid)  # type: ignore[union-attr]
            if parent_dport is None:
                raise KernelError(errno.ENXIO, f"{md.name}: RCH dport not found")
        else:
            parent_port = self.port_by_uport(self.host_bridge_device(top))
            if parent_port is None or not parent_port.enabled:
                raise KernelError(errno.ENXIO, f"{md.name}: host bridge port not found")
            for i in range(1, len(path)):
                sw = path[i].parent
                dp = parent_port.dport_for(devmap[path[i - 1].name])
                if dp is None:
                    raise KernelError(errno.ENXIO, f"{md.name}: dport {path[i - 1].name} not found")
                uport = devmap[sw.name]
                port = self.port_by_uport(uport)
                if port is None:
                    port = CxlPort(self, self.port_ida.alloc(), parent_port, uport, dp, "switch", sw.hdm)
                    port.hw_owner = sw
                    self._add_port(port)
                if not port.enabled:
                    raise KernelError(errno.ENXIO, f"{md.name}: {port.name} is disabled")
                parent_port = port
            parent_dport = parent_port.dport_for(devmap[path[-1].name])
            if parent_dport is None:
                raise KernelError(errno.ENXIO, f"{md.name}: no dport for {path[-1].name}")
        ep = CxlPort(self, self.port_ida.alloc(), parent_port, md, parent_dport, "endpoint", md.hw.hdm)
        ep.memdev = md
        md.endpoint = ep
        self._add_port(ep, probe=False)
        try:
            from cxlemu.kernel.base.device import driver_probe
            driver_probe(self.bus.drivers["cxl_port"], ep)
        except KernelError:
            self._delete_endpoint(md)
            raise
        if md.hw.pmem_size and self.kernel.nvdimm.bridge is not None:
            self.kernel.nvdimm.add_cxl_nvdimm(md)

    def _mem_remove(self, dev: Device) -> None:
        md = dev
        assert isinstance(md, CxlMemdev)
        self.kernel.nvdimm.remove_cxl_nvdimm(md)
        self._delete_endpoint(md)

    def _delete_endpoint(self, md: CxlMemdev) -> None:
        ep = md.endpoint
        if ep is None:
            return
        for d in ep.decoders:
            if d.region is not None:
                self.regions.kill_endpoint_decoder(d)
        ep.dead = True
        parent = ep.parent_port
        self._unregister_port(ep)
        md.endpoint = None
        # cxl_detach_ep: drop switch ports that lead to no endpoint any more
        while parent is not None and not parent.is_root and parent.parent_port is not None \
                and not parent.parent_port.is_root:
            if any(isinstance(c, CxlPort) for c in parent.children):
                break
            up = parent.parent_port
            self._unregister_port(parent)
            parent = up

    def _unregister_port(self, port: CxlPort) -> None:
        device_del(port)
        self.port_ida.free(port.id)

