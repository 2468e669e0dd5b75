"""The libnvdimm bus (drivers/nvdimm/bus.c, core.c): the ``nd`` bus type,
``ndbusN`` devices with their ``ndctlN`` control class device, the common
attribute groups of nd devices, and driver matching by device type.

Device types (include/uapi/linux/ndctl.h ``ND_DEVICE_*``) give every nd
device its ``modalias`` ``nd:t<type>``: a dimm is 1, a pmem region 2, a
namespace (and the pfn/btt personalities hosted by a region) takes the
region's namespace type (5 for labelled pmem, 4 for label-less), an nd dax
device is 7 (bus.c ``to_nd_device_type``).  Drivers bind by type:
``nvdimm`` (dimms), ``nd_region`` (regions), ``nd_pmem`` (namespaces, pfn and
btt devices), ``dax_pmem`` (dax devices), ``nd_bus`` (buses).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cxlemu.kernel.base.device import AttrGroup, Bus, ClassDriver, Device, RO

if TYPE_CHECKING:
    from cxlemu.kernel.kernel import Kernel

ND_DEVICE_DIMM = 1
ND_DEVICE_REGION_PMEM = 2
ND_DEVICE_REGION_BLK = 3
ND_DEVICE_NAMESPACE_IO = 4
ND_DEVICE_NAMESPACE_PMEM = 5
ND_DEVICE_NAMESPACE_BLK = 6
ND_DEVICE_DAX_PMEM = 7

#: include/uapi/linux/ndctl.h nvdimm_cmd_names / nvdimm_bus_cmd_names
ND_CMD_GET_CONFIG_SIZE = 4
ND_CMD_GET_CONFIG_DATA = 5
ND_CMD_SET_CONFIG_DATA = 6
DIMM_CMD_NAMES = {1: "smart", 2: "smart_thresh", 3: "flags", 4: "get_size", 5: "get_data",
                  6: "set_data", 7: "effect_size", 8: "effect_log", 9: "vendor", 10: "cmd_call"}

#: Character device majors.  Linux allocates them dynamically
#: (register_chrdev(0, ...)); these are what a typical x86 guest gets.
NVDIMM_BUS_MAJOR = 62    # /dev/ndctlN (local/experimental major, see docs/fidelity.md)
NVDIMM_MAJOR = 63        # /dev/nmemN

NUMA_NO_NODE = -1


class NdDevice(Device):
    """Common attributes of devices on the nd bus: nd_device_attribute_group
    (modalias, devtype) and nd_numa_attribute_group (numa_node, target_node)."""

    type_name = ""            # dev->type->name, shown by devtype and DEVTYPE=
    ND_GROUP = AttrGroup(None, (RO("modalias"), RO("devtype")))
    NUMA_GROUP = AttrGroup(None, (RO("numa_node"), RO("target_node", visible="target_node_visible")))

    disk: str | None = None   # the gendisk published under block/ while bound

    def attr_groups(self) -> tuple[AttrGroup, ...]:
        groups = super().attr_groups()
        if self.disk:
            # the "block" class glue directory holds exactly the disk name
            # (libndctl get_block_device() wants a single entry)
            groups = groups + (AttrGroup("block", (RO(self.disk, show="disk_show"),)),)
        return groups

    def disk_show(self) -> str:
        return "\n"

    @property
    def devtype(self) -> str | None:  # type: ignore[override]
        return self.type_name or None

    def nd_type(self) -> int:
        return 0

    def modalias(self) -> str | None:
        return f"nd:t{self.nd_type()}"

    def modalias_show(self) -> str:
        return f"{self.modalias()}\n"

    def devtype_show(self) -> str:
        return f"{self.type_name}\n"

    # numa: dev_to_node() and nvdimm_dev_to_target_node()
    def numa_node(self) -> int:
        return NUMA_NO_NODE

    def target_node(self) -> int:
        return NUMA_NO_NODE

    def numa_node_show(self) -> str:
        return f"{self.numa_node()}\n"

    def target_node_show(self) -> str:
        return f"{self.target_node()}\n"

    def target_node_visible(self, _n: str) -> bool:
        return self.target_node() != NUMA_NO_NODE


class NvdimmBus(Device):
    """``ndbusN``: nvdimm_bus_register() below the provider device (the CXL
    nvdimm bridge).  Attributes: commands, wait_probe, provider."""

    ATTR_GROUPS = (AttrGroup(None, (RO("commands"), RO("wait_probe"), RO("provider"))),)

    def __init__(self, bus_id: int, parent: Device, nd_bus: Bus, provider: str):
        super().__init__(f"ndbus{bus_id}", parent, nd_bus)
        self.id = bus_id
        self.provider = provider
        self.cmd_mask = 0
        self.ctl: NdCtl | None = None

    def modalias(self) -> str | None:
        return "nd:t0"

    def commands_show(self) -> str:
        # the CXL bus has no bus commands; cxlemu's badblocks extension adds the two
        # ndctl clear-errors needs (kernel/nvdimm/badrange.py)
        if self.kernel_ref is not None and self.provider == "CXL":
            from cxlemu.kernel.nvdimm import badrange
            if badrange.enabled(self.kernel_ref):
                return "ars_cap clear_error \n"
        return "\n"

    def wait_probe_show(self) -> str:
        return "1\n"

    def provider_show(self) -> str:
        return f"{self.provider}\n"

    kernel_ref = None          # set by the nvdimm subsystem when it registers the bus


class NdCtl(Device):
    """``ndctlN``: the bus control device in class ``nd`` (/dev/ndctlN).  libndctl
    finds buses through /sys/class/nd/ndctl*/device."""

    def __init__(self, ndbus: NvdimmBus):
        super().__init__(f"ndctl{ndbus.id}", ndbus, None)
        self.devt = (NVDIMM_BUS_MAJOR, ndbus.id)
        self.devnode = f"ndctl{ndbus.id}"

    def sysfs_links(self) -> dict:
        links = dict(self.links)
        links["subsystem"] = "/sys/class/nd"
        links["device"] = self.parent
        return links


def nd_class_devices(kernel: "Kernel") -> list[Device]:
    return [c for b in kernel.nvdimm.buses() for c in b.children if isinstance(c, NdCtl)]


class NdDriver(ClassDriver):
    """An nd_device_driver: matches by nd device type (nvdimm_bus_match)."""

    def __init__(self, name: str, bus: Bus, types: tuple[int, ...], probe, remove,
                 cls: type = NdDevice):
        super().__init__(name, bus, cls, probe, remove)
        self.types = types

    def match(self, dev: Device) -> bool:
        return isinstance(dev, NdDevice) and dev.nd_type() in self.types
