"""Non-CXL devices the CXL stack hangs off: ACPI namespace nodes, PCI
functions and platform devices, with the sysfs attributes tools look at
(vendor/device/class for lspci, numa_node, firmware_node/physical_node links).
"""

from __future__ import annotations

import struct

from cxlemu.kernel.base.device import AttrGroup, AttrSpec, Device, RO

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
        AttrSpec("config", 0o644, show="config_show", store="config_store"),
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

    # PCIe port types (PCI Express Capability, Device/Port Type field)
    _PORT_TYPE = {"endpoint": 0x0, "root_port": 0x4, "usp": 0x5, "dsp": 0x6}

    def config_show(self) -> bytes:
        """4 KiB PCIe configuration space: header, PCI Express capability (port
        number = the dport id), and the CXL DVSEC (vendor 1E98h) in extended
        space, enough for lspci's tree and device listing."""
        cfg = bytearray(4096)
        bridge = self.secondary is not None
        struct.pack_into("<HHHH", cfg, 0, self.vendor, self.device, 0x0006, 0x0010)
        struct.pack_into("<I", cfg, 8, (self.pci_class << 8) | 0x00)
        cfg[0x0E] = 0x01 if bridge else 0x00
        if bridge:
            cfg[0x18] = int(self.parent_bus())
            cfg[0x19] = self.secondary or 0
            cfg[0x1A] = self.subordinate or 0
        else:
            struct.pack_into("<HH", cfg, 0x2C, self.vendor, 0)
        cfg[0x34] = 0x40
        # PCI Express capability (ID 10h), version 2
        flags = 2 | (self._PORT_TYPE.get(self.kind, 0) << 4) | ((1 << 8) if self.kind in ("root_port", "dsp") else 0)
        struct.pack_into("<BBH", cfg, 0x40, 0x10, 0x00, flags)
        port_no = getattr(self, "port_number", 0) or 0
        struct.pack_into("<I", cfg, 0x4C, (port_no << 24) | (16 << 4) | 5)   # Link Cap: 32GT/s x16
        struct.pack_into("<H", cfg, 0x52, (16 << 4) | 5)                     # Link Status
        # CXL DVSEC in extended config space (ID 0023h), "PCIe DVSEC for CXL Devices"/ports
        dvsec_id = 0x0000 if self.kind == "endpoint" else (0x0003 if self.kind in ("root_port", "dsp", "usp") else 0)
        struct.pack_into("<IIH", cfg, 0x100, 0x0023 | (1 << 16), 0x1E98 | (2 << 16) | (0x3C << 20), dvsec_id)
        return bytes(cfg)

    def config_store(self, buf: bytes) -> None:
        pass    # writes to config space are accepted and ignored

    def parent_bus(self) -> int:
        return int(self.name.split(":")[1], 16)

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
