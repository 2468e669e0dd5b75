"""nvdimm devices (``nmemN``) and their driver data (drivers/nvdimm/dimm_devs.c,
dimm.c, label.c), for CXL memdevs (drivers/cxl/pmem.c cxl_nvdimm_probe).

A CXL nvdimm supports three commands (get_size, get_data, set_data), has
the NDD_LABELING flag (its regions are labelled: nstype 5) and carries the
provider group ``cxl/`` with ``id`` (the device serial, ``%lld``) and
``provider`` (the cxl_nvdimm device name).

When the ``nvdimm`` driver binds (nvdimm_probe), the whole label area is read
through the memdev mailbox (GET_LSA in chunks of ``payload_max - 8`` bytes,
cxl_pmem_get_config_data) into the driver data, the current index is found,
and the DPA of every valid namespace label is reserved
(nd_label_reserve_dpa).  Label updates are written back with SET_LSA
through the kernel's internal mailbox path (not subject to the user-space
exclusivity that blocks SET_LSA ioctls while the nvdimm is bound).

Test hook: ``Nvdimm.lsa_write_hook`` (kernel-wide, see subsys.py) is called
before each SET_LSA and may raise to model a power cut between two label
writes; ``CXLEMU_FAULT_AFTER_LSA_WRITES=N`` makes the process SIGKILL itself
after N label writes (like ``CXLEMU_FAULT_AFTER_WRITES`` does for sysfs).
"""

from __future__ import annotations

import errno
import os
from typing import TYPE_CHECKING

from cxlemu.hw.mailbox.opcodes import Opcode
from cxlemu.kernel.base.device import AttrGroup, KernelError, RO
from cxlemu.kernel.nvdimm.bus import (DIMM_CMD_NAMES, ND_CMD_GET_CONFIG_DATA, ND_CMD_GET_CONFIG_SIZE,
                                      ND_CMD_SET_CONFIG_DATA, ND_DEVICE_DIMM, NVDIMM_MAJOR, NdDevice)
from cxlemu.kernel.nvdimm.dpa import DpaMap, label_id
from cxlemu.util.lazy import lazy_module

payloads = lazy_module("cxlemu.hw.mailbox.payloads")   # imported when the label area is read or written
devmbox = lazy_module("cxlemu.hw.mailbox.device")      # likewise (GET_LSA / SET_LSA run through it)
lbl = lazy_module("cxlemu.hw.lsa")                     # label codecs: when labels are read or written

if TYPE_CHECKING:
    from cxlemu.kernel.nvdimm.bus import NvdimmBus
    from cxlemu.kernel.nvdimm.cxl_pmem import CxlNvdimm

FAULT_ENV = "CXLEMU_FAULT_AFTER_LSA_WRITES"


class NvdimmDrvdata:
    """struct nvdimm_drvdata: the cached label area and the DPA map."""

    def __init__(self, nvdimm: "NvdimmDev"):
        self.nvdimm = nvdimm
        self.data = bytearray(nvdimm.read_config(0, nvdimm.config_size))
        self.dpa = DpaMap()

    # ---- label area -----------------------------------------------------------------------
    def area(self) -> lbl.LabelArea:
        return lbl.LabelArea(self.data, label_size=256, version=self.nvdimm.label_version(),
                             cxl=True, writer=self.nvdimm.write_config)

    @property
    def ns_current(self) -> int:
        return lbl.current_index(self.data, 256) if len(self.data) >= lbl.ND_LABEL_MIN_SIZE else -1

    def index_version(self) -> tuple[int, int] | None:
        cur = self.ns_current
        if cur < 0:
            return None
        blk = self.area().index_block(cur)
        return blk.major, blk.minor

    def active_labels(self) -> list[tuple[int, lbl.Label]]:
        """nd_label_active(): valid labels of the current index, slot order."""
        if self.ns_current < 0:
            return []
        return self.area().labels()

    def namespace_labels(self) -> list[tuple[int, lbl.NamespaceLabel]]:
        return [(s, x) for s, x in self.active_labels() if isinstance(x, lbl.NamespaceLabel)]

    def nfree(self) -> int:
        return self.area().nfree()

    def reserve_label_dpa(self) -> None:
        """nd_label_reserve_dpa(): every valid namespace label owns its DPA."""
        for _slot, x in self.namespace_labels():
            self.dpa.reserve(x.dpa, x.rawsize, label_id(str(x.uuid)))


class NvdimmDev(NdDevice):
    """``nmemN`` (struct nvdimm) on the nd bus, /dev/nmemN."""

    type_name = "nvdimm"
    ATTR_GROUPS = (
        NdDevice.ND_GROUP,
        AttrGroup(None, (RO("state"), RO("flags"), RO("commands"), RO("available_slots"))),
        AttrGroup("cxl", (RO("id", show="cxl_id_show"), RO("provider", show="cxl_provider_show")),
                  visible="cxl_group_visible"),
    )

    def __init__(self, dimm_id: int, ndbus: "NvdimmBus", cxl_nvd: "CxlNvdimm"):
        super().__init__(f"nmem{dimm_id}", ndbus, ndbus.bus)
        self.id = dimm_id
        self.ndbus = ndbus
        self.cxl_nvd = cxl_nvd
        self.devt = (NVDIMM_MAJOR, dimm_id)
        self.devnode = f"nmem{dimm_id}"
        self.cmd_mask = (1 << ND_CMD_GET_CONFIG_SIZE) | (1 << ND_CMD_GET_CONFIG_DATA) | \
                        (1 << ND_CMD_SET_CONFIG_DATA)
        self.labeling = True          # NDD_LABELING
        self.busy = 0                 # regions holding this dimm's labels
        self.ndd: NvdimmDrvdata | None = None

    def nd_type(self) -> int:
        return ND_DEVICE_DIMM

    @property
    def kernel(self):
        return self.cxl_nvd.memdev.core.kernel

    @property
    def memdev(self):
        return self.cxl_nvd.memdev

    # ---- attributes -------------------------------------------------------------------------
    def cxl_group_visible(self, _group: str) -> bool:
        return self.kernel.has("nvdimm_cxl_id_provider")     # drivers/cxl/pmem.c cxl_dimm_attribute_group

    def state_show(self) -> str:
        return "active\n" if self.busy else "idle\n"

    def flags_show(self) -> str:
        return ("label " if self.labeling else "") + "\n"

    def commands_show(self) -> str:
        if not self.cmd_mask:
            return "\n"
        return "".join(f"{DIMM_CMD_NAMES[c]} " for c in sorted(DIMM_CMD_NAMES)
                       if self.cmd_mask & (1 << c)) + "\n"

    def available_slots_show(self) -> str:
        if self.ndd is None:
            raise KernelError(errno.ENXIO)
        nfree = self.ndd.nfree()
        return f"{max(nfree - 1, 0)}\n"

    def cxl_id_show(self) -> str:
        serial = self.memdev.hw.serial
        return f"{serial - (1 << 64) if serial >> 63 else serial}\n"

    def cxl_provider_show(self) -> str:
        return f"{self.cxl_nvd.name}\n"

    # ---- config data (cxl_pmem_nvdimm_ctl) ------------------------------------------------------
    @property
    def config_size(self) -> int:
        return self.memdev.hw.lsa_size

    @property
    def max_xfer(self) -> int:
        return self.memdev.hw.payload_max - payloads.SetLsaInput.HEADER_SIZE

    def label_version(self) -> tuple[int, int]:
        return self.kernel.nvdimm.label_version()

    def read_config(self, offset: int, length: int) -> bytes:
        out = bytearray()
        hw = self.memdev.hw
        media = self.kernel.media_access(hw)
        step = max(self.max_xfer, 1)
        pos = offset
        while pos < offset + length:
            n = min(step, offset + length - pos)
            rc, data = devmbox.execute(hw, Opcode.GET_LSA, payloads.GetLsaInput(pos, n).encode(), media)
            if rc:
                raise KernelError(errno.ENXIO, f"{self.name}: GET_LSA failed: {rc}")
            out += data
            pos += n
        return bytes(out)

    def write_config(self, offset: int, data: bytes) -> None:
        hw = self.memdev.hw
        media = self.kernel.media_access(hw)
        step = max(self.max_xfer, 1)
        nv = self.kernel.nvdimm
        for start in range(0, len(data), step):
            piece = data[start:start + step]
            nv.before_lsa_write(self, offset + start, piece)
            rc, _ = devmbox.execute(hw, Opcode.SET_LSA, payloads.SetLsaInput(offset + start, piece).encode(), media)
            if rc:
                raise KernelError(errno.ENXIO, f"{self.name}: SET_LSA failed: {rc}")
            self.kernel.dirty = True
            nv.after_lsa_write()

    # ---- ND_IOCTL_{GET_CONFIG_SIZE,GET_CONFIG_DATA,SET_CONFIG_DATA} on /dev/nmemN ------------------
    def ioctl_config_size(self) -> tuple[int, int]:
        """nd_cmd_get_config_size: (config_size, max_xfer)."""
        return self.config_size, self.max_xfer

    def ioctl_get_config_data(self, offset: int, length: int) -> bytes:
        if offset < 0 or length < 0 or offset + length > self.config_size:
            raise KernelError(errno.EINVAL)
        return self.read_config(offset, length)

    def ioctl_set_config_data(self, offset: int, data: bytes) -> None:
        """bus.c nd_cmd_clear_to_send(): label writes are refused while a
        region holds the dimm's labels (the kernel owns label updates)."""
        if self.busy:
            raise KernelError(errno.EBUSY, f"{self.name}: busy")
        if offset < 0 or offset + len(data) > self.config_size:
            raise KernelError(errno.EINVAL)
        self.write_config(offset, data)

    # ---- driver (drivers/nvdimm/dimm.c) ---------------------------------------------------------
    def probe(self) -> None:
        self.ndd = NvdimmDrvdata(self)
        self.ndd.reserve_label_dpa()

    def remove(self) -> None:
        self.ndd = None


def lsa_fault_limit() -> int | None:
    v = os.environ.get(FAULT_ENV)
    if not v:
        return None
    try:
        return int(v)
    except ValueError:
        return None
