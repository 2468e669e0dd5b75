"""Non-CXL devices the CXL stack hangs off: ACPI namespace nodes, PCI
functions and platform devices, with the sysfs attributes tools look at
(vendor/device/class for lspci, numa_node, firmware_node/physical_node links).
"""

from __future__ import annotations

from cxlemu.kernel.base.device import AttrGroup, Device, RO

PCI_CLASS_BRIDGE_PCI = 0x060400
PCI_CLASS_CXL_MEM = 0x050210       # memory controller, CXL memory device (prog-if 0x10)
PCI_VENDOR_INTEL = 0x8086
PCI_VENDOR_QEMU_RH = 0x1B36
PCI_VENDOR_CXLEMU = 0x1DE5


class AcpiDevice(Device):
    """A node of the ACPI namespace under /sys/devices/LNXSYSTM:00."""

    ATTR_GROUPS = (AttrGroup(None, (RO("hid"), RO("path"), RO("uid", visible="uid_visible"),
                                    RO("status"))),)

    def __init__(self, name: str, parent: Device | None, bus, hid: str, acpi_path: str,
                 uid: int | None = None):
        super().__init__(name, parent, bus)
        self.hid, self.acpi_path, self.uid = hid, acpi_path, uid

    def hid_show(self) -> str:
        return f"{self.hid}\n"

    def path_show(self) -> str:
        return f"{self.acpi_path}\n"

    def uid_show(self) -> str:
        return f"{self.uid}\n"

    def uid_visible(self, _n: str) -> bool:
        return self.uid is not None

    def status_show(self) -> str:
        return "15\n"

    def modalias(self) -> str | None:
        return f"acpi:{self.hid}:"


class PciHostBridge(Device):
    """/sys/devices/pciDDDD:BB, the PCI root bus bridge device."""


class PciFunction(Device):
    """A PCI function /sys/devices/pci0000:BB/.../DDDD:BB:DD.F."""

    ATTR_GROUPS = (AttrGroup(None, (
        RO("vendor"), RO("device"), RO("subsystem_vendor"), RO("subsystem_device"), RO("class"),
        RO("revision"), RO("numa_node"), RO("enable"), RO("current_link_speed"),
        RO("current_link_width"), RO("secondary_bus_number", visible="bridge_visible"),
        RO("subordinate_bus_number", visible="bridge_visible"),
    )),)

    def __init__(self, name: str, parent: Device, bus, *, vendor: int, device: int, pci_class: int,
                 kind: str, label: str, numa_node: int, secondary: int | None = None,
                 subordinate: int | None = None):
        super().__init__(name, parent, bus)
        self.vendor, self.device, self.pci_class = vendor, device, pci_class
        self.kind, self.label, self.numa_node_id = kind, label, numa_node
        self.secondary, self.subordinate = secondary, subordinate

    def vendor_show(self) -> str:
        return f"0x{self.vendor:04x}\n"

    def device_show(self) -> str:
        return f"0x{self.device:04x}\n"

    def subsystem_vendor_show(self) -> str:
        return f"0x{self.vendor:04x}\n"

    def subsystem_device_show(self) -> str:
        return "0x0000\n"

    def class_show(self) -> str:
        return f"0x{self.pci_class:06x}\n"

    def revision_show(self) -> str:
        return "0x00\n"

    def numa_node_show(self) -> str:
        return f"{self.numa_node_id if self.numa_node_id is not None else -1}\n"

    def enable_show(self) -> str:
        return "1\n"

    def current_link_speed_show(self) -> str:
        return "32.0 GT/s PCIe\n"

    def current_link_width_show(self) -> str:
        return "16\n" if self.kind in ("root_port", "usp", "dsp") else "8\n"

    def bridge_visible(self, _n: str) -> bool:
        return self.secondary is not None

    def secondary_bus_number_show(self) -> str:
        return f"{self.secondary}\n"

    def subordinate_bus_number_show(self) -> str:
        return f"{self.subordinate}\n"

    def modalias(self) -> str | None:
        c = self.pci_class
        return (f"pci:v{self.vendor:08X}d{self.device:08X}sv{self.vendor:08X}sd00000000"
                f"bc{c >> 16:02X}sc{(c >> 8) & 0xff:02X}i{c & 0xff:02X}")


class PlatformDevice(Device):
    """/sys/devices/platform/<name>.<id> (cxl_test's mock devices, ACPI0017:00)."""

    ATTR_GROUPS = (AttrGroup(None, (RO("driver_override"), RO("numa_node", visible="node_visible"))),)

    def driver_override_show(self) -> str:
        return "(null)\n"

    def numa_node_show(self) -> str:
        return f"{self.numa_node_id}\n"

    def node_visible(self, _n: str) -> bool:
        return self.numa_node_id is not None

    def modalias(self) -> str | None:
        return "platform:" + self.name.rsplit(".", 1)[0]
