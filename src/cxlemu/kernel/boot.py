"""Boot: build the device tree the firmware describes, then probe drivers in
the order Linux does (ACPI/PCI enumeration, cxl_acpi, cxl_pci -> cxl_mem).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cxlemu.hw.platform import DownstreamPort, HostBridgeHw, SwitchHw
from cxlemu.hw.type3 import Type3Device
from cxlemu.kernel.base.device import ClassDriver, Device, PlainDir, device_add
from cxlemu.kernel.base.platform import (PCI_CLASS_BRIDGE_PCI, PCI_CLASS_CXL_MEM, AcpiDevice, PciFunction,
                                         PciHostBridge, PlatformDevice)
from cxlemu.kernel.resource import IORES_DESC_SOFT_RESERVED, Resource, insert_resource

if TYPE_CHECKING:
    from cxlemu.kernel.kernel import Kernel

# PCI ids of QEMU's CXL components (hw/pci-bridge/cxl_*.c, hw/mem/cxl_type3.c)
ROOT_PORT_ID = (0x8086, 0x7075)
USP_ID = (0x19E5, 0xA128)
DSP_ID = (0x19E5, 0xA129)
TYPE3_ID = (0x8086, 0x0D93)


class _Drivers:
    """Platform and PCI drivers of the boot path (bound methods pickle)."""

    def __init__(self, k: "Kernel"):
        self.k = k

    def is_cxl_host(self, d) -> bool:
        return d is self.k.cxl_host

    def acpi_probe(self, d) -> None:
        self.k.cxl.acpi_probe(d)

    def acpi_remove(self, d) -> None:
        self.k.cxl.acpi_remove(d)

    @staticmethod
    def has_type3(d) -> bool:
        return isinstance(getattr(d, "hw", None), Type3Device)

    def mem_probe(self, d) -> None:
        self.k.cxl.pci_probe(d, d.hw)

    @staticmethod
    def is_cxl_mem(d) -> bool:
        return d.pci_class == PCI_CLASS_CXL_MEM

    @staticmethod
    def is_bridge(d) -> bool:
        return d.pci_class == PCI_CLASS_BRIDGE_PCI

    @staticmethod
    def nop(d) -> None:
        pass


def _e820_to_iomem(k: "Kernel") -> None:
    boot = k.platform.topology.boot
    for e in k.platform.e820:
        if e.type == "usable":
            name, desc = "System RAM", 0
        elif e.type == "soft reserved":
            if not boot.soft_reserve:
                name, desc = "System RAM", 0
            else:
                name, desc = "Soft Reserved", IORES_DESC_SOFT_RESERVED
        else:
            name, desc = "Reserved", 0
        insert_resource(k.iomem, Resource(e.start, e.end, name, desc=desc))
    for start, end, name in ((0xA0000, 0xBFFFF, "PCI Bus 0000:00"), (0xFEC00000, 0xFEC003FF, "IOAPIC 0"),
                             (0xFED00000, 0xFED003FF, "HPET 0"), (0xFEE00000, 0xFEE00FFF, "Local APIC")):
        try:
            insert_resource(k.iomem, Resource(start, end, name))
        except Exception:
            pass
    for hb in k.platform.host_bridges:
        try:
            insert_resource(k.iomem, Resource(hb.chbs_base, hb.chbs_base + hb.chbs_len - 1,
                                              f"CXL Host Bridge {hb.uid}"))
        except Exception:
            pass


def _subordinate(dp: DownstreamPort) -> int:
    hi = dp.secondary_bus or 0
    c = dp.child
    if isinstance(c, SwitchHw):
        hi = max(hi, c.internal_bus or 0)
        for sub in c.ports:
            hi = max(hi, _subordinate(sub))
    return hi


def _build_devices(k: "Kernel") -> None:
    plat = k.platform
    topo = plat.topology
    pci, platform_bus, acpi = k.buses["pci"], k.buses["platform"], k.buses["acpi"]
    devices_platform = PlainDir("platform", k.root)
    device_add(devices_platform)
    system = PlainDir("system", k.root)
    device_add(system)
    virtual = PlainDir("virtual", k.root)
    device_add(virtual)
    k.sysdirs = {"platform": devices_platform, "system": system, "virtual": virtual}
    cxl_test = plat.flavor == "cxl_test"
    node_of_hb = {hb.name: hb.topo.numa_node for hb in plat.host_bridges}

    def dev_node(hw: Type3Device, hb: HostBridgeHw) -> int:
        return hw.topo.numa_node if hw.topo.numa_node is not None else hb.topo.numa_node

    if not cxl_test:
        lnx = AcpiDevice("LNXSYSTM:00", k.root, acpi, "LNXSYSTM", "\\")
        device_add(lnx)
        sybus = AcpiDevice("LNXSYBUS:00", lnx, acpi, "LNXSYBUS", "\\_SB_")
        device_add(sybus)
        acpi17 = AcpiDevice("ACPI0017:00", sybus, acpi, "ACPI0017", "\\_SB_.CXLM")
        device_add(acpi17)
        host = PlatformDevice("ACPI0017:00", devices_platform, platform_bus)
        host.links["firmware_node"] = acpi17
        k.cxl_host = host
    else:
        host = PlatformDevice("cxl_acpi.0", devices_platform, platform_bus)
        k.cxl_host = host

    for hb in plat.host_bridges:
        if cxl_test:
            hbdev: Device = PlatformDevice(hb.name, devices_platform, platform_bus)
            hbdev.links["firmware_node" if hb.is_rch else "physical_node"] = hbdev
            hbdev.numa_node_id = hb.topo.numa_node
        else:
            adev = AcpiDevice(hb.acpi_name, sybus, acpi, "ACPI0016",
                              f"\\_SB_.PC{hb.bus:02X}", uid=hb.uid)
            device_add(adev)
            hbdev = PciHostBridge(hb.name, k.root, None)
            hbdev.links["firmware_node"] = adev
            adev.links["physical_node"] = hbdev      # acpi_bind_one()
            k.devmap[hb.acpi_name] = adev
            hbdev.numa_node_id = hb.topo.numa_node
            hb_acpi = adev
        device_add(hbdev, probe=False)
        k.devmap[hb.name] = hbdev

        def add_port_tree(dp: DownstreamPort, parent: Device) -> None:
            node = node_of_hb[hb.name]
            if cxl_test:
                d = PlatformDevice(dp.name, parent, platform_bus)
                d.numa_node_id = None
            else:
                vid, did = ROOT_PORT_ID if dp.kind == "root_port" else DSP_ID
                d = PciFunction(dp.name, parent, pci, vendor=vid, device=did, pci_class=PCI_CLASS_BRIDGE_PCI,
                                kind=dp.kind, label="CXL Root Port" if dp.kind == "root_port" else
                                "CXL Switch Downstream Port", numa_node=node,
                                secondary=dp.secondary_bus, subordinate=_subordinate(dp))
                d.port_number = dp.port_id
                if dp.acpi_companion:
                    comp = AcpiDevice(dp.acpi_companion, hb_acpi, acpi, "", f"{hb_acpi.acpi_path}.RP{dp.index:02X}")
                    device_add(comp)
                    d.links["firmware_node"] = comp
            device_add(d, probe=False)
            k.devmap[dp.name] = d
            c = dp.child
            if isinstance(c, SwitchHw):
                if cxl_test:
                    u = PlatformDevice(c.name, d, platform_bus)
                else:
                    u = PciFunction(c.name, d, pci, vendor=USP_ID[0], device=USP_ID[1],
                                    pci_class=PCI_CLASS_BRIDGE_PCI, kind="usp",
                                    label="CXL Switch Upstream Port", numa_node=node,
                                    secondary=c.internal_bus, subordinate=_subordinate(dp))
                device_add(u, probe=False)
                k.devmap[c.name] = u
                for sub in c.ports:
                    add_port_tree(sub, u)
            elif isinstance(c, Type3Device):
                add_memdev_host(c, d)

        def add_memdev_host(c: Type3Device, parent: Device) -> None:
            if cxl_test:
                m = PlatformDevice(c.name, parent, platform_bus)
                m.numa_node_id = dev_node(c, hb)
            else:
                m = PciFunction(c.name, parent, pci, vendor=TYPE3_ID[0], device=TYPE3_ID[1],
                                pci_class=PCI_CLASS_CXL_MEM, kind="endpoint", label="CXL Type 3 Memory Device",
                                numa_node=dev_node(c, hb))
            m.hw = c
            device_add(m, probe=False)
            k.devmap[c.name] = m

        if hb.is_rch:
            for dp in hb.ports:
                if isinstance(dp.child, Type3Device):
                    add_memdev_host(dp.child, hbdev)
            continue
        for dp in hb.ports:
            add_port_tree(dp, hbdev)
    device_add(host, probe=False)


def boot(k: "Kernel") -> None:
    _e820_to_iomem(k)
    k.mm.boot()
    _build_devices(k)
    cxl_test = k.platform.flavor == "cxl_test"
    platform_bus, pci = k.buses["platform"], k.buses["pci"]
    drv = _Drivers(k)
    platform_bus.register_driver(ClassDriver("cxl_acpi", platform_bus, Device, drv.acpi_probe,
                                             drv.acpi_remove, predicate=drv.is_cxl_host))
    memdev_hosts = [k.devmap[d.name] for d in k.platform.devices]
    if cxl_test:
        platform_bus.register_driver(ClassDriver("cxl_mock_mem", platform_bus, PlatformDevice, drv.mem_probe,
                                                 predicate=drv.has_type3))
    else:
        pci.register_driver(ClassDriver("cxl_pci", pci, PciFunction, drv.mem_probe, predicate=drv.is_cxl_mem))
        pci.register_driver(ClassDriver("pcieport", pci, PciFunction, drv.nop, predicate=drv.is_bridge))
        for d in list(pci.devices.values()):
            if d.pci_class == PCI_CLASS_BRIDGE_PCI:  # type: ignore[attr-defined]
                from cxlemu.kernel.base.device import device_attach
                device_attach(d)
    from cxlemu.kernel.base.device import device_attach
    device_attach(k.cxl_host)                # cxl_acpi: root0, root decoders, host-bridge ports
    from cxlemu.util.progress import progress
    with progress("probing CXL memory devices", total=len(memdev_hosts)) as bar:   # drawn on a terminal only
        for host in memdev_hosts:            # cxl_pci / cxl_mock_mem: memN -> cxl_mem -> endpoints
            device_attach(host)
            bar.advance()
    k.mm.late_boot() if hasattr(k.mm, "late_boot") else None
    k.nvdimm.late_boot() if hasattr(k.nvdimm, "late_boot") else None
    k.dirty = True
