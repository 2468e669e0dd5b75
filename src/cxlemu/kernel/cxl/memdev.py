"""cxl_memdev: /sys/bus/cxl/devices/memN and /dev/cxl/memN
(drivers/cxl/core/memdev.c, drivers/cxl/mem.c, drivers/cxl/core/mbox.c).
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from cxlemu.hw.type3 import Type3Device
from cxlemu.kernel.base.device import AttrGroup, Device, KernelError, RO, WO, kstrtobool

if TYPE_CHECKING:
    from cxlemu.kernel.cxl.core import CxlCore
    from cxlemu.kernel.cxl.port import CxlPort

CXL_MEM_MAJOR = 60      # char majors 60-63 are LOCAL/EXPERIMENTAL USE (devices.txt): see docs/fidelity.md


class CxlMemdev(Device):
    devtype = "cxl_memdev"

    ATTR_GROUPS = (
        AttrGroup(None, (RO("firmware_version"), RO("payload_max"), RO("label_storage_size"),
                         RO("serial"), RO("numa_node"),
                         WO("trigger_poison_list", visible="poison_visible"))),
        AttrGroup("ram", (RO("size", show="ram_size_show"),
                          RO("qos_class", show="ram_qos_show", visible="ram_qos_visible"))),
        AttrGroup("pmem", (RO("size", show="pmem_size_show"),
                           RO("qos_class", show="pmem_qos_show", visible="pmem_qos_visible"))),
        AttrGroup("dynamic_ram_1", (RO("size", show="dc_size_show"),
                                    RO("qos_class", show="dc_qos_show", visible="dc_qos_visible")),
                   visible="dc_visible"),
        AttrGroup("security", (RO("state", show="security_state_show"),
                               WO("sanitize", store="sanitize_store"),
                               WO("erase", store="erase_store")), visible="security_visible"),
    )

    def __init__(self, core: "CxlCore", mem_id: int, parent: Device, hw: Type3Device):
        super().__init__(f"mem{mem_id}", parent, core.bus)
        self.core = core
        self.id = mem_id
        self.hw = hw
        self.devt = (CXL_MEM_MAJOR, mem_id)
        self.devnode = f"cxl/mem{mem_id}"
        self.endpoint: CxlPort | None = None
        self.numa_node_id = parent.numa_node_id
        self.sanitizing = False
        self.event_mode = "none"       # how event records reach the kernel (kernel/cxl/events.py)

    def modalias(self) -> str | None:
        return "cxl:t5"

    # ---- attributes ------------------------------------------------------------
    def firmware_version_show(self) -> str:
        return f"{self.hw.firmware_version}\n"

    def payload_max_show(self) -> str:
        return f"{self.hw.payload_max}\n"

    def label_storage_size_show(self) -> str:
        return f"{self.hw.lsa_size}\n"

    def serial_show(self) -> str:
        return f"{self.hw.serial:#x}\n"

    def numa_node_show(self) -> str:
        n = self.numa_node_id
        return f"{n if n is not None else -1}\n"

    def ram_size_show(self) -> str:
        return f"{self.hw.ram_size:#x}\n"

    def pmem_size_show(self) -> str:
        return f"{self.hw.pmem_size:#x}\n"

    # DCD series v11: the first DC partition, memN/dynamic_ram_1/{size,qos_class}
    def dc_visible(self, _n: str = "") -> bool:
        return bool(self.hw.dc_size)

    def dc_size_show(self) -> str:
        return f"{self.hw.dc_size:#x}\n"

    def dc_qos_show(self) -> str:
        return f"{self._qos()}\n"

    def dc_qos_visible(self, _n: str) -> bool:
        return self._qos() is not None and bool(self.hw.dc_size)

    def _qos(self) -> int | None:
        return self.hw.topo.qos_class

    def ram_qos_show(self) -> str:
        return f"{self._qos()}\n"

    def pmem_qos_show(self) -> str:
        return f"{self._qos()}\n"

    def ram_qos_visible(self, _n: str) -> bool:
        return self._qos() is not None and self.hw.ram_size > 0 and self.core.kernel.has("memdev_qos_class")

    def pmem_qos_visible(self, _n: str) -> bool:
        return self._qos() is not None and self.hw.pmem_size > 0 and self.core.kernel.has("memdev_qos_class")

    def security_visible(self, _group: str) -> bool:
        return self.core.kernel.has("memdev_security")

    def poison_visible(self, _n: str) -> bool:
        from cxlemu.hw.mailbox.opcodes import Opcode
        return self.core.kernel.has("memdev_trigger_poison_list") and self.core.poison.enabled(self, Opcode.GET_POISON_LIST)

    # ---- debugfs (drivers/cxl/mem.c: created while bound to cxl_mem) ------------------------------
    def debugfs_files(self) -> dict:
        """/sys/kernel/debug/cxl/memN: name -> (show, store, mode)."""
        from cxlemu.hw.mailbox.opcodes import Opcode
        out: dict = {"dpamem": (self.dpamem_show, None, 0o444)}
        p = self.core.poison
        if not self.core.kernel.has("memdev_debugfs_poison"):
            return out
        if p.enabled(self, Opcode.INJECT_POISON):
            out["inject_poison"] = (None, lambda b: p.debugfs_inject_store(self, b), 0o200)
        if p.enabled(self, Opcode.CLEAR_POISON):
            out["clear_poison"] = (None, lambda b: p.debugfs_clear_store(self, b), 0o200)
        return out

    def dpamem_show(self) -> str:
        """cxl_mem_dpa_show(): the device's DPA resource tree."""
        hw = self.hw
        if not hw.total_capacity:
            return ""
        lines = [f"{0:x}-{hw.total_capacity - 1:x} : dpa"]
        for name, lo, n in (("ram", 0, hw.ram_size), ("pmem", hw.ram_size, hw.pmem_size)):
            if n:
                lines.append(f"  {lo:x}-{lo + n - 1:x} : {name}")
                ep = self.endpoint
                for d in (ep.decoders if ep is not None else []):
                    if d.dpa_start is not None and d.dpa_len and lo <= d.dpa_start < lo + n:
                        lines.append(f"    {d.dpa_start:x}-{d.dpa_start + d.dpa_len - 1:x} : {d.name}")
        return "\n".join(lines) + "\n"

    def trigger_poison_list_store(self, buf: bytes) -> None:
        if not kstrtobool(buf):
            return
        self.core.poison.trigger_list(self)

    def security_state_show(self) -> str:
        return "sanitize\n" if self.sanitizing else f"{self.hw.security_state}\n"

    def sanitize_store(self, buf: bytes) -> None:
        if not kstrtobool(buf):
            raise KernelError(errno.EINVAL)
        # drivers/cxl/core/mbox.c cxl_mem_sanitize: refuse while any decoder is committed
        if self.endpoint is not None and self.endpoint.commit_end >= 0:
            raise KernelError(errno.EBUSY, f"{self.name}: sanitize with active decoders")
        self.core.mailbox.sanitize(self)
        # mbox.c: the sanitize-complete work wakes pollers of security/state
        self.core.kernel.sysfs_notify(self, "security", "state")

    def erase_store(self, buf: bytes) -> None:
        self.sanitize_store(buf)
