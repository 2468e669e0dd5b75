"""CXL ports, dports and decoders as the kernel models them
(drivers/cxl/cxl.h, drivers/cxl/core/port.c, drivers/cxl/core/hdm.c).

* ``root0`` is the CXL root (uport ACPI0017:00 or cxl_acpi.0); its dports are
  host bridges and its decoders are the CFMWS root decoders.
* ``portN`` is a host bridge (depth 1) or a switch upstream port (depth >= 2);
  its dports are root ports / switch downstream ports.
* ``endpointN`` is a memdev's endpoint port; its decoders translate HPA to DPA.

Root, port and endpoint ids come from one ida; decoders are named
``decoder<port id>.<index>``.
"""

from __future__ import annotations

import errno
from dataclasses import field
from typing import TYPE_CHECKING

from cxlemu.hw.hdm import HdmDecoderUnit
from cxlemu.kernel.base.device import ADMIN_RO, AttrGroup, Device, KernelError, RO, RW, WO
from cxlemu.util.lazydc import dataclass

if TYPE_CHECKING:
    from cxlemu.kernel.cxl.core import CxlCore
    from cxlemu.kernel.cxl.memdev import CxlMemdev
    from cxlemu.kernel.cxl.region import CxlRegion

CXL_DEVICE_NVDIMM_BRIDGE = 1
CXL_DEVICE_NVDIMM = 2
CXL_DEVICE_PORT = 3
CXL_DEVICE_ROOT = 4
CXL_DEVICE_MEMORY_EXPANDER = 5
CXL_DEVICE_REGION = 6
CXL_DEVICE_PMEM_REGION = 7
CXL_DEVICE_DAX_REGION = 8

BASE_ATTRS = (RO("devtype"), RO("modalias"))


class CxlDevice(Device):
    """Common base: devtype and modalias attributes (core/port.c cxl_base_attributes)."""

    cxl_id = 0

    def devtype_show(self) -> str:
        return f"{self.devtype}\n"

    def modalias(self) -> str | None:
        return f"cxl:t{self.cxl_id}"

    def modalias_show(self) -> str:
        return f"{self.modalias()}\n"


@dataclass(eq=False)
class Dport:
    """struct cxl_dport: a downstream port of a CXL port."""
    port: "CxlPort"
    port_id: int
    dev: Device            # the root port / DSP / host bridge device
    rch: bool = False

    @property
    def name(self) -> str:
        return self.dev.name


@dataclass(eq=False)
class RegionRef:
    """struct cxl_region_ref: a region's use of a port."""
    region: "CxlRegion"
    decoder: "CxlDecoder"
    targets: list["Dport"] = field(default_factory=list)   # distinct next-hop dports, first-seen order
    nr_eps: int = 0


class CxlPort(CxlDevice):
    devtype = "cxl_port"

    ATTR_GROUPS = (AttrGroup(None, BASE_ATTRS + (
        RO("decoders_committed", visible="committed_visible"),
        ADMIN_RO("CDAT", visible="cdat_visible"),
    )),)

    def __init__(self, core: "CxlCore", port_id: int, parent: Device, uport: Device,
                 parent_dport: Dport | None, kind: str, hdm: HdmDecoderUnit | None):
        prefix = {"root": "root", "switch": "port", "endpoint": "endpoint"}[kind]
        super().__init__(f"{prefix}{port_id}", parent, core.bus)
        self.core = core
        self.id = port_id
        self.uport = uport
        self.parent_dport = parent_dport
        self.kind = kind
        self.hdm = hdm
        self.dports: dict[int, Dport] = {}
        self.decoders: list[CxlDecoder] = []
        self.commit_end = -1
        self.hdm_end = -1
        self.regions: dict[int, RegionRef] = {}   # region id -> ref
        self.memdev: CxlMemdev | None = None
        self.dead = False

    cxl_id = CXL_DEVICE_PORT

    def modalias(self) -> str | None:
        return f"cxl:t{CXL_DEVICE_ROOT if self.kind == 'root' else CXL_DEVICE_PORT}"

    @property
    def depth(self) -> int:
        d, p = 0, self
        while p.parent_dport is not None:
            d += 1
            p = p.parent_dport.port
        return d

    @property
    def parent_port(self) -> "CxlPort | None":
        return self.parent_dport.port if self.parent_dport else None

    @property
    def is_root(self) -> bool:
        return self.kind == "root"

    @property
    def is_endpoint(self) -> bool:
        return self.kind == "endpoint"

    def decoders_committed_show(self) -> str:
        return f"{sum(1 for d in self.decoders if d.enabled_flag)}\n"

    def cdat_visible(self, _n: str) -> bool:
        """port.c cxl_port_bin_attr_is_visible(): only ports whose device
        served a CDAT over DOE (the emulated Type 3 devices; switches have none)."""
        return self.is_endpoint and self.memdev is not None and self.core.kernel.has("endpoint_cdat")

    def CDAT_show(self) -> bytes:   # noqa: N802 - the attribute is named CDAT
        assert self.memdev is not None
        return self.memdev.hw.cdat_table()

    def committed_visible(self, _n: str) -> bool:
        return self.core.kernel.has("decoders_committed")

    def sysfs_links(self) -> dict[str, Device | str]:
        links: dict[str, Device | str] = {"uport": self.uport}
        if self.parent_dport is not None and self.core.kernel.has("parent_dport"):
            links["parent_dport"] = self.parent_dport.dev
        for pid, dp in self.dports.items():
            links[f"dport{pid}"] = dp.dev
        return links

    def find_dport(self, port_id: int) -> Dport | None:
        return self.dports.get(port_id)

    def dport_for(self, dev: Device) -> Dport | None:
        for dp in self.dports.values():
            if dp.dev is dev:
                return dp
        return None

    def ancestry(self) -> list["CxlPort"]:
        """This port and its ancestors up to (excluding) the root, bottom-up."""
        out, p = [], self
        while p is not None and not p.is_root:
            out.append(p)
            p = p.parent_port
        return out

    def root(self) -> "CxlPort":
        p = self
        while p.parent_port is not None:
            p = p.parent_port
        return p


# ----------------------------------------------------------------------------
# decoders
# ----------------------------------------------------------------------------

DECODER_ATTRS = BASE_ATTRS + (
    ADMIN_RO("start"), RO("size"), RO("locked"), RO("interleave_ways"), RO("interleave_granularity"),
)


class CxlDecoder(CxlDevice):
    """struct cxl_decoder (the part common to root, switch and endpoint decoders)."""

    def __init__(self, port: CxlPort, index: int, hw_index: int | None):
        super().__init__(f"decoder{port.id}.{index}", port, port.core.bus)
        self.port = port
        self.id = index
        self.hw_index = hw_index            # index in the component's HDM unit (None: no hardware)
        self.start = 0
        self.size = 0                       # hpa_range 0..-1 when idle
        self.interleave_ways = 1
        self.interleave_granularity = 256
        self.enabled_flag = False           # CXL_DECODER_F_ENABLE
        self.locked_flag = False
        self.target_type = "expander"       # CXL_DECODER_HOSTONLYMEM
        self.region: CxlRegion | None = None

    # hpa range helpers
    @property
    def end(self) -> int:
        return self.start + self.size - 1

    def start_show(self) -> str:
        return f"{self.start:#x}\n"

    def size_show(self) -> str:
        return f"{self.size:#x}\n"

    def locked_show(self) -> str:
        return f"{int(self.locked_flag)}\n"

    def interleave_ways_show(self) -> str:
        return f"{self.interleave_ways}\n"

    def interleave_granularity_show(self) -> str:
        return f"{self.interleave_granularity}\n"

    def target_type_show(self) -> str:
        return f"{self.target_type}\n"

    def region_show(self) -> str:
        return f"{self.region.name}\n" if self.region is not None else "\n"

    def reset_range(self) -> None:
        self.start, self.size = 0, 0

    @property
    def has_hw_commit(self) -> bool:
        return self.hw_index is not None


class RootDecoder(CxlDecoder):
    devtype = "cxl_decoder_root"

    ATTR_GROUPS = (AttrGroup(None, DECODER_ATTRS + (
        RO("cap_pmem"), RO("cap_ram"), RO("cap_type2"), RO("cap_type3"), RO("target_list"),
        RO("qos_class", visible="qos_class_visible"),
        RW("create_pmem_region", visible="region_attr_visible"),
        RW("create_ram_region", visible="region_attr_visible"),
        RW("create_dynamic_ram_1_region", visible="region_attr_visible"),
        WO("delete_region", visible="region_attr_visible"),
    )),)

    def __init__(self, port: CxlPort, index: int, *, window_index: int, start: int, size: int,
                 targets: list[Dport], granularity: int, restrictions: int, qos_class: int,
                 arithmetic: str, xormaps: tuple[int, ...], res):
        super().__init__(port, index, None)
        self.window_index = window_index
        self.start, self.size = start, size
        self.targets = targets
        self.interleave_ways = len(targets)
        self.interleave_granularity = granularity
        self.restrictions = restrictions
        self.qos_class = qos_class
        self.arithmetic = arithmetic
        self.xormaps = xormaps
        self.res = res                  # "CXL Window N" resource
        self.enabled_flag = True
        self.locked_flag = bool(restrictions & 16)
        self.region_id: int = -1        # cached next region id (cxlrd->region_id)
        self.host_bridge_ways = len(targets)

    # capabilities (restriction bits, acpi.c cfmws_to_decoder_flags)
    @property
    def cap_type2(self) -> bool:
        return bool(self.restrictions & 1)

    @property
    def cap_type3(self) -> bool:
        return bool(self.restrictions & 2)

    @property
    def cap_ram(self) -> bool:
        return bool(self.restrictions & 4)

    @property
    def cap_pmem(self) -> bool:
        return bool(self.restrictions & 8)

    def cap_pmem_show(self) -> str:
        return f"{int(self.cap_pmem)}\n"

    def cap_ram_show(self) -> str:
        return f"{int(self.cap_ram)}\n"

    def cap_type2_show(self) -> str:
        return f"{int(self.cap_type2)}\n"

    def cap_type3_show(self) -> str:
        return f"{int(self.cap_type3)}\n"

    def target_list_show(self) -> str:
        return ",".join(str(t.port_id) for t in self.targets) + "\n"

    def qos_class_show(self) -> str:
        return f"{self.qos_class}\n"

    def qos_class_visible(self, _n: str) -> bool:
        return self.port.core.kernel.has("root_decoder_qos_class")

    def region_attr_visible(self, name: str) -> int:
        if name == "create_pmem_region":
            return 0o644 if self.cap_type3 and self.cap_pmem else 0
        if name == "create_ram_region":
            ok = self.cap_type3 and self.cap_ram and self.port.core.kernel.has("create_ram_region")
            return 0o644 if ok else 0
        if name == "create_dynamic_ram_1_region":      # DCD series: DC partitions are volatile
            return 0o644 if self.cap_type3 and self.cap_ram and self.port.core.dc_capable() else 0
        return 0o200 if self.cap_type3 and (self.cap_pmem or self.cap_ram) else 0

    def create_pmem_region_show(self) -> str:
        return self.port.core.regions.create_region_show(self)

    def create_ram_region_show(self) -> str:
        return self.port.core.regions.create_region_show(self)

    def create_pmem_region_store(self, buf: bytes) -> None:
        self.port.core.regions.create_region_store(self, buf, "pmem")

    def create_ram_region_store(self, buf: bytes) -> None:
        self.port.core.regions.create_region_store(self, buf, "ram")

    def create_dynamic_ram_1_region_show(self) -> str:
        return self.port.core.regions.create_region_show(self)

    def create_dynamic_ram_1_region_store(self, buf: bytes) -> None:
        self.port.core.regions.create_region_store(self, buf, MODE_DC)

    def delete_region_store(self, buf: bytes) -> None:
        self.port.core.regions.delete_region_store(self, buf)

    @property
    def regions(self) -> list["CxlRegion"]:
        # the region devices below this root decoder (is_cxl_region(): their cxl device type)
        return [c for c in self.children if getattr(c, "cxl_id", None) == CXL_DEVICE_REGION]

    def contains(self, start: int, size: int) -> bool:
        return self.start <= start and start + size <= self.start + self.size


class SwitchDecoder(CxlDecoder):
    devtype = "cxl_decoder_switch"

    ATTR_GROUPS = (AttrGroup(None, DECODER_ATTRS + (
        RO("target_type"), RO("target_list"), RO("region"),
    )),)

    def __init__(self, port: CxlPort, index: int, hw_index: int | None, nr_targets: int):
        super().__init__(port, index, hw_index)
        self.nr_targets = nr_targets
        self.targets: list[Dport | None] = [None] * nr_targets

    def target_list_show(self) -> str:
        ids = []
        for i in range(self.interleave_ways):
            t = self.targets[i] if i < len(self.targets) else None
            if t is None:
                break
            ids.append(str(t.port_id))
        return ",".join(ids) + "\n"


MODE_NONE, MODE_RAM, MODE_PMEM, MODE_MIXED = "none", "ram", "pmem", "mixed"
MODE_DC = "dynamic_ram_1"      # the first DC partition (DCD series v11: CXL_PARTMODE_DYNAMIC_RAM_1)


class EndpointDecoder(CxlDecoder):
    devtype = "cxl_decoder_endpoint"

    ATTR_GROUPS = (AttrGroup(None, DECODER_ATTRS + (
        RO("target_type"), RW("mode"), RW("dpa_size"), RO("dpa_resource"), RO("region"),
    )),)

    def __init__(self, port: CxlPort, index: int, hw_index: int):
        super().__init__(port, index, hw_index)
        self.mode = MODE_NONE
        self.dpa_start: int | None = None   # cxled->dpa_res
        self.dpa_len = 0
        self.skip = 0
        self.auto = False                   # CXL_DECODER_STATE_AUTO
        self.pos = -1

    @property
    def memdev(self) -> "CxlMemdev":
        assert self.port.memdev is not None
        return self.port.memdev

    def mode_show(self) -> str:
        return f"{self.mode}\n"

    def mode_store(self, buf: bytes) -> None:
        self.port.core.hdm.set_mode(self, buf)

    def dpa_size_show(self) -> str:
        # %pa: 0x + 16 hex digits
        return f"0x{self.dpa_len:016x}\n"

    def dpa_size_store(self, buf: bytes) -> None:
        self.port.core.hdm.set_dpa_size(self, buf)

    def dpa_resource_show(self) -> str:
        start = self.dpa_start if self.dpa_start is not None else (1 << 64) - 1
        return f"{start:#x}\n"

    def check_alive(self) -> None:
        if self.port.dead:
            raise KernelError(errno.ENODEV)
