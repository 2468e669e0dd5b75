"""The kernel's mailbox ioctl path (drivers/cxl/core/mbox.c, core/memdev.c):
CXL_MEM_QUERY_COMMANDS and CXL_MEM_SEND_COMMAND on /dev/cxl/memN.

Commands are enabled from the device's Command Effects Log at probe; some are
claimed for exclusive kernel use while the nvdimm side owns the label area
(SET_PARTITION_INFO, SET_LSA, SET_SHUTDOWN_STATE), which makes the ioctl
fail with EBUSY just as it does on Linux.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from cxlemu.hw.mailbox.opcodes import KERNEL_COMMANDS, VARIABLE, CxlMemCommandId
from cxlemu.kernel.base.device import KernelError
from cxlemu.util.lazy import lazy_module
from cxlemu.util.lazydc import dataclass

devmbox = lazy_module("cxlemu.hw.mailbox.device")   # the device's command set: when a command runs

if TYPE_CHECKING:
    from cxlemu.kernel.cxl.core import CxlCore
    from cxlemu.kernel.cxl.memdev import CxlMemdev

CXL_MEM_COMMAND_FLAG_ENABLED = 1 << 0
CXL_MEM_COMMAND_FLAG_EXCLUSIVE = 1 << 1
EXCLUSIVE_WITH_NVDIMM = (CxlMemCommandId.SET_PARTITION_INFO, CxlMemCommandId.SET_LSA,
                         CxlMemCommandId.SET_SHUTDOWN_STATE)


@dataclass(frozen=True)
class QueryEntry:
    """One ``struct cxl_command_info`` of CXL_MEM_QUERY_COMMANDS."""
    id: int
    flags: int
    size_in: int
    size_out: int


def check_send_reserved(rsvd: int, in_rsvd: int, out_rsvd: int) -> None:
    """cxl_validate_cmd_from_user() (core/mbox.c): the reserved fields of a
    non-RAW struct cxl_send_command must be zero, else EINVAL."""
    if rsvd or in_rsvd or out_rsvd:
        raise KernelError(errno.EINVAL)


class Mailbox:
    def __init__(self, core: "CxlCore"):
        self.core = core

    def _specs(self):
        return KERNEL_COMMANDS.values()

    def enabled(self, md: "CxlMemdev") -> set[int]:
        supported = set(devmbox.supported_opcodes(md.hw))
        return {int(s.id) for s in self._specs()
                if not s.deprecated and s.opcode in supported}

    def exclusive(self, md: "CxlMemdev") -> set[int]:
        return {int(c) for c in EXCLUSIVE_WITH_NVDIMM} if self.core.kernel.nvdimm.nvdimm_active(md) else set()

    def query(self, md: "CxlMemdev") -> list[QueryEntry]:
        en, ex = self.enabled(md), self.exclusive(md)
        out = []
        for s in self._specs():
            if s.deprecated or int(s.id) == CxlMemCommandId.RAW:
                continue
            flags = (CXL_MEM_COMMAND_FLAG_ENABLED if int(s.id) in en else 0) | \
                    (CXL_MEM_COMMAND_FLAG_EXCLUSIVE if int(s.id) in ex else 0)
            out.append(QueryEntry(int(s.id), flags, s.size_in, s.size_out))
        return out

    def send(self, md: "CxlMemdev", cmd_id: int, payload_in: bytes, out_size: int,
             flags: int = 0) -> tuple[int, bytes]:
        """cxl_send_cmd: returns (mailbox return code, output) or raises KernelError."""
        if cmd_id <= 0 or cmd_id >= int(CxlMemCommandId.MAX):
            raise KernelError(errno.ENOTTY)
        if len(payload_in) > md.hw.payload_max:
            raise KernelError(errno.EINVAL)
        if cmd_id == CxlMemCommandId.RAW:
            raise KernelError(errno.EPERM, "raw commands are disabled (CONFIG_CXL_MEM_RAW_COMMANDS=n)")
        spec = next((s for s in self._specs() if int(s.id) == cmd_id), None)
        if spec is None or spec.deprecated:
            raise KernelError(errno.ENOTTY)
        if flags:
            raise KernelError(errno.EINVAL)
        if cmd_id not in self.enabled(md):
            raise KernelError(errno.ENOTTY)
        if cmd_id in self.exclusive(md):
            raise KernelError(errno.EBUSY)
        if spec.size_in != VARIABLE and spec.size_in != len(payload_in):
            raise KernelError(errno.ENOMEM)
        if spec.size_out != VARIABLE and out_size < spec.size_out:
            raise KernelError(errno.ENOMEM)
        rc, out = self.internal(md, spec.opcode, bytes(payload_in))
        if not changes_nothing(spec.opcode):
            self.core.kernel.dirty = True
        return int(rc), out[:out_size]

    def internal(self, md: "CxlMemdev", opcode: int, payload: bytes = b"", service: bool = True) -> tuple[int, bytes]:
        """cxl_internal_send_cmd: one mailbox command to the device, with the
        device's clock kept in step with the kernel's; a device whose link is
        down never answers (-ETIMEDOUT).  Interrupts the command raised are
        serviced afterwards."""
        hw = md.hw
        hw.clock_ns = self.core.kernel.clock_ns
        try:
            rc, out = devmbox.execute(hw, opcode, payload, self.core.kernel.media_access(hw))
        except devmbox.LinkDown:
            raise KernelError(errno.ETIMEDOUT, f"{md.name}: mailbox timeout") from None
        if service:
            self.core.events.service(md)
        return int(rc), out

    def sanitize(self, md: "CxlMemdev") -> None:
        from cxlemu.hw.mailbox.opcodes import Opcode
        rc, _ = self.internal(md, Opcode.SANITIZE)
        if rc:
            raise KernelError(errno.EBUSY if rc == 6 else errno.ENXIO)


def changes_nothing(opcode) -> bool:
    """Commands that only report (Identify, Get ...: the spec's read-only
    commands, CXL r3.1 8.2.9) leave the device as it was: they do not dirty
    the machine (``cxl list -H`` must not rewrite state)."""
    from cxlemu.hw.mailbox.opcodes import Opcode
    try:
        name = Opcode(int(opcode)).name
    except ValueError:
        return False
    return name.startswith(("GET_", "IDENTIFY"))
