"""CXL memory devices as libcxl v81 discovers them (``add_cxl_memdev``).

v81 rules (contract §5.3): a memdev is dropped (``add_dev() failed``) only
when ``/dev/cxl/memN`` cannot be stat'ed, ``realpath(memN)`` fails, or
``payload_max``/``label_storage_size`` read back as invalid (negative int /
ULLONG_MAX).  Every other attribute is optional:

==================  =================================  =================
attribute           conversion                         when missing
==================  =================================  =================
pmem/size ram/size  strtoull -> u64                    0
*/qos_class         atoi -> int                        -1 (CXL_QOS_CLASS_NONE)
payload_max         strtoull -> int (< 0 fails)        -1
label_storage_size  strtoull -> size_t (== max fails)  SIZE_MAX
serial              strtoull                           ULLONG_MAX
numa_node           strtol -> int                      -1
firmware_version    string                             None
==================  =================================  =================

``host`` is the parent directory name of ``realpath(memN)``; the endpoint
is found by searching every bus for an endpoint whose host is this memdev's
name, and only while the memdev is enabled (``driver`` link present).
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from .cnum import U64_MAX, c_atoi, c_strtol_s32, c_strtoull, to_s32
from .device import SysfsDevice, devname_of, same_id

if TYPE_CHECKING:
    from .context import CxlContext
    from .mailbox import MemdevMailbox
    from .port import Bus, Endpoint, Port

__all__ = ["Memdev", "CXL_QOS_CLASS_NONE", "FwlStatus"]

CXL_QOS_CLASS_NONE = -1


class FwlStatus:
    """``enum cxl_fwl_status`` names (cxl/libcxl.h)."""

    UNKNOWN = "unknown"
    IDLE = "idle"
    KNOWN = ("idle", "receiving", "preparing", "transferring", "programming")


class Memdev(SysfsDevice):
    """A ``struct cxl_memdev``."""

    def __init__(self, ctx: "CxlContext", memdev_id: int, dev_path: str,
                 host_path: str, major: int, minor: int):
        self.ctx = ctx
        self.id = memdev_id
        self.dev_path = dev_path
        self.host_path = host_path      # realpath of the parent device
        self.major, self.minor = major, minor
        self.pmem_size = 0
        self.ram_size = 0
        self.dynamic_ram_1_size = 0       # ndctl's DCD branch: memN/dynamic_ram_1/size
        self.dynamic_ram_1_qos_class = CXL_QOS_CLASS_NONE
        self.pmem_qos_class = CXL_QOS_CLASS_NONE
        self.ram_qos_class = CXL_QOS_CLASS_NONE
        self.payload_max = -1
        self.lsa_size = U64_MAX
        self.serial = U64_MAX
        self.numa_node = -1
        self.firmware_version: str | None = None
        self.pmem_path: str | None = None   # memN/pmemM (nvdimm bridge port)
        self._endpoint: Endpoint | None = None
        self._mailbox: MemdevMailbox | None = None

    # ---- discovery ----------------------------------------------------------
    @classmethod
    def add(cls, ctx: "CxlContext", memdev_id: int, base: str) -> "Memdev | None":
        io = ctx.io
        devname = devname_of(base)
        ctx.log.dbg("add_cxl_memdev", f"{devname}: base: '{base}'")
        dev = io.chardev(f"/dev/cxl/{devname}")
        if dev is None:
            return None
        rd = io.reader(base)
        attrs = {}
        for name in ("pmem/size", "ram/size", "pmem/qos_class", "ram/qos_class",
                     "payload_max", "label_storage_size", "serial", "numa_node"):
            attrs[name] = rd(name)
        payload_max = -1
        if attrs["payload_max"] is not None:
            payload_max = to_s32(c_strtoull(attrs["payload_max"]))
            if payload_max < 0:
                return None
        lsa_size = U64_MAX
        if attrs["label_storage_size"] is not None:
            lsa_size = c_strtoull(attrs["label_storage_size"])
            if lsa_size == U64_MAX:
                return None
        real = io.realpath(base)
        if real is None or "/" not in real:
            return None
        md = cls(ctx, memdev_id, base, real.rsplit("/", 1)[0], dev[0], dev[1])
        if attrs["pmem/size"] is not None:
            md.pmem_size = c_strtoull(attrs["pmem/size"])
        if attrs["ram/size"] is not None:
            md.ram_size = c_strtoull(attrs["ram/size"])
        dc = rd("dynamic_ram_1/size")
        if dc is not None:
            md.dynamic_ram_1_size = c_strtoull(dc)
            q = rd("dynamic_ram_1/qos_class")
            if q is not None:
                md.dynamic_ram_1_qos_class = c_atoi(q)
        if attrs["pmem/qos_class"] is not None:
            md.pmem_qos_class = c_atoi(attrs["pmem/qos_class"])
        if attrs["ram/qos_class"] is not None:
            md.ram_qos_class = c_atoi(attrs["ram/qos_class"])
        md.payload_max = payload_max
        md.lsa_size = lsa_size
        if attrs["serial"] is not None:
            md.serial = c_strtoull(attrs["serial"])
        if attrs["numa_node"] is not None:
            md.numa_node = c_strtol_s32(attrs["numa_node"])
        md.firmware_version = rd("firmware_version")
        pmems: list[str] = []
        ctx.scan_into(pmems, base, "pmem", md._add_pmem)
        return same_id(ctx._memdev_list, md)

    def _add_pmem(self, pmem_id: int, base: str) -> str:
        self.ctx.log.dbg("add_cxl_pmem", f"{devname_of(base)}: pmem_base: '{base}'")
        self.pmem_path = base
        return base

    # ---- identity -------------------------------------------------------------
    @property
    def host(self) -> str:
        return devname_of(self.host_path)

    @property
    def label_size(self) -> int:
        return self.lsa_size

    # ---- topology -------------------------------------------------------------
    @property
    def endpoint(self) -> "Endpoint | None":
        """``cxl_memdev_get_endpoint()``."""
        if self._endpoint is not None:
            return self._endpoint
        if not self.is_enabled():
            return None
        found = None
        for bus in self.ctx.buses():
            found = _find_endpoint(bus, self.devname)
            if found is not None:
                break
        if found is None:
            return None
        if found._memdev is not None and found._memdev is not self:
            self.ctx.log.err("cxl_memdev_get_endpoint",
                             f"{found.devname} assigned to {found._memdev.devname} not {self.devname}")
        self._endpoint = found
        found._memdev = self
        return found

    @property
    def bus(self) -> "Bus | None":
        ep = self.endpoint
        return ep.bus if ep is not None else None

    def nvdimm_bridge_active(self) -> bool:
        """``cxl_memdev_nvdimm_bridge_active()``: ``memN/pmemM/driver`` exists."""
        if self.pmem_path is None:
            return False
        return self.ctx.io.is_link(f"{self.pmem_path}/driver")

    # ---- mailbox ----------------------------------------------------------------
    @property
    def mailbox(self) -> "MemdevMailbox":
        """The ``/dev/cxl/memN`` ioctl path (see :mod:`.mailbox`)."""
        if self._mailbox is None:
            from .mailbox import MemdevMailbox
            self._mailbox = MemdevMailbox(self)
        return self._mailbox

    # ---- firmware loader (memN/firmware/memN/*) -------------------------------
    def _fwl(self, leaf: str) -> str:
        return f"{self.dev_path}/firmware/{self.devname}/{leaf}"

    def fw_update_in_progress(self) -> bool:
        """``cxl_memdev_fw_update_in_progress()``: anything but "idle"
        (including an unreadable status) counts as in progress."""
        buf = self.ctx.io.read_attr(self._fwl("status"))
        if buf is None:
            self.ctx.log.err("cxl_fwl_get_status",
                             f"{self.devname}: failed to get fw loader status "
                             f"({_strerr(self.ctx.io.last_errno)})")
            return True
        return buf != FwlStatus.IDLE

    def fw_update_get_remaining(self) -> int:
        buf = self.ctx.io.read_attr(self._fwl("remaining_size"))
        if buf is None:
            self.ctx.log.err("cxl_memdev_fw_update_get_remaining",
                             f"{self.devname}: failed to get fw loader remaining size "
                             f"({_strerr(self.ctx.io.last_errno)})")
            return 0
        return c_strtoull(buf)

    # ---- actions -----------------------------------------------------------------
    def enable(self) -> None:
        """``cxl_memdev_enable()``: bind through the cxl drivers."""
        if self.is_enabled():
            return
        self._bind_checked("cxl_memdev_enable")
        self.ctx.log.dbg("cxl_memdev_enable", f"{self.devname}: enabled")

    def disable_invalidate(self) -> None:
        """``cxl_memdev_disable_invalidate()``: unbind ``memN/driver``, then
        forget the bus's ports (the endpoint and maybe switches are gone)."""
        if not self.is_enabled():
            return
        bus = self.bus
        if bus is None:
            self.ctx.log.err("cxl_memdev_disable_invalidate", f"{self.devname}: failed to invalidate")
            raise OSError(errno.ENXIO, "failed to invalidate", self.devname)
        self._unbind_checked("cxl_memdev_disable_invalidate")
        self.ctx.bus_invalidate(bus)
        self.ctx.log.dbg("cxl_memdev_disable_invalidate", f"{self.devname}: disabled")

    def trigger_poison_list(self) -> None:
        """``cxl_memdev_trigger_poison_list()``: write "1\\n" to
        ``trigger_poison_list`` (after an existence check)."""
        path = f"{self.dev_path}/trigger_poison_list"
        if not self.ctx.io.exists(path):
            self.ctx.log.err("cxl_memdev_trigger_poison_list",
                             f"{self.devname}: trigger_poison_list unsupported by device")
            raise OSError(errno.ENXIO, "trigger_poison_list unsupported", path)
        try:
            self.ctx.io.write_attr(path, "1\n")
        except OSError:
            self.ctx.log.err("cxl_memdev_trigger_poison_list",
                             f"{self.devname}: Failed trigger_poison_list")
            raise

    def __repr__(self) -> str:
        return f"<Memdev {self.devname} host={self.host}>"


def _strerr(code: int) -> str:
    from .sysfs import strerror
    return strerror(code)


def _recurse_endpoint(parent: "Port", name: str) -> "Endpoint | None":
    """``cxl_port_recurse_endpoint()``: depth-first over child ports."""
    for port in parent.child_ports():
        for ep in port.endpoints():
            if ep.host == name:
                return ep
        found = _recurse_endpoint(port, name)
        if found is not None:
            return found
    return None


def _find_endpoint(root: "Port", name: str) -> "Endpoint | None":
    """``cxl_port_find_endpoint()``."""
    for ep in root.endpoints():
        if ep.host == name:
            return ep
    return _recurse_endpoint(root, name)
