"""libndctl constants and parsing helpers shared by the object modules
(ndctl/lib/libndctl.c enums, parse_commands, parse_lbasize_supported)."""

from __future__ import annotations

import errno
import uuid as uuidlib
from typing import TYPE_CHECKING

from cxlemu.tools.libcxl.cnum import U64_MAX

if TYPE_CHECKING:
    from .ctx import NdctlCtx
    from .region import NdRegion


ND_DEVICE_NAMESPACE_IO = 4
ND_DEVICE_NAMESPACE_PMEM = 5
ND_DEVICE_NAMESPACE_BLK = 6
ND_DEVICE_REGION_PMEM = 2
ND_DEVICE_REGION_BLK = 3
ULLONG_MAX = U64_MAX
UINT_MAX = (1 << 32) - 1
ULONG_MAX = U64_MAX
NUMA_NO_NODE = -1
NUMA_NO_ATTR = -2
ND_MIN_NAMESPACE_SIZE = 4096
SZ_4K, SZ_2M = 4096, 2 << 20

# enum ndctl_namespace_mode (MEMORY == FSDAX)
NS_MODE_FSDAX, NS_MODE_SECTOR, NS_MODE_RAW, NS_MODE_DEVDAX, NS_MODE_UNKNOWN = range(5)
NS_MODE_MEMORY, NS_MODE_SAFE, NS_MODE_DAX = NS_MODE_FSDAX, NS_MODE_SECTOR, NS_MODE_DEVDAX
# enum ndctl_pfn_loc
PFN_LOC_NONE, PFN_LOC_RAM, PFN_LOC_PMEM = range(3)
# enum ndctl_persistence_domain
PERSISTENCE_NONE, PERSISTENCE_MEM_CTRL, PERSISTENCE_CPU_CACHE, PERSISTENCE_UNKNOWN = 0, 10, 20, 0xffffffff
ENFORCE_NAMES = {NS_MODE_FSDAX: "pfn", NS_MODE_SECTOR: "btt", NS_MODE_RAW: "", NS_MODE_DEVDAX: "dax"}
DIMM_CMDS = {"smart": 1, "smart_thresh": 2, "flags": 3, "get_size": 4, "get_data": 5, "set_data": 6,
             "effect_size": 7, "effect_log": 8, "vendor": 9, "cmd_call": 10}
BUS_CMDS = {"ars_cap": 1, "ars_start": 2, "ars_status": 3, "clear_error": 4}


def devname(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1]


def parse_commands(text: str, names: dict[str, int]) -> int:
    """parse_commands(): space-terminated names; a last name without a
    trailing space is ignored, as in C."""
    mask = 0
    parts = text.split(" ")
    for name in parts[:-1]:
        c = names.get(name)
        if c:
            mask |= 1 << c
    return mask


def parse_lbasize(text: str) -> tuple[list[int], int] | None:
    """parse_lbasize_supported(): ('[512] 4096 ' -> [512, 4096], select 0);
    select -1 when nothing is bracketed; None on a double selection."""
    supported: list[int] = []
    select = -1
    fields = text.split(" ")
    for field in fields[:-1]:
        if field.startswith("[") and field.endswith("]") and field[1:-1].isdigit():
            if select >= 0:
                return None
            select = len(supported)
            supported.append(int(field[1:-1]))
        elif field.isdigit():
            supported.append(int(field))
        else:
            break
    return supported, select


def parse_uuid(text: str | None) -> uuidlib.UUID | None:
    if not text:
        return None
    try:
        return uuidlib.UUID(text)
    except ValueError:
        return None


NULL_UUID = uuidlib.UUID(int=0)


def block_device(ctx: "NdctlCtx", path: str) -> str:
    names = ctx.io.listdir(f"{path}/block")
    if not names:
        return ""
    return names[0]


def read_uuid(ctx: "NdctlCtx", path: str) -> uuidlib.UUID | None:
    """A ``uuid`` attribute as add_namespace/add_btt/add_pfn read it: None
    (the object is dropped) when unreadable or malformed, NULL_UUID when
    empty."""
    v = ctx.read(path)
    if v is None:
        return None
    return parse_uuid(v) if v else NULL_UUID


class NdObject:
    """What the libndctl objects over one sysfs device directory share: the
    name, the driver-link test, attribute writes answering 0 or -errno, and
    ``ndctl_<kind>_enable()`` / ``ndctl_<kind>_disable()``: bind (unbind),
    then ENXIO (EBUSY) with "failed to enable" ("failed to disable") when
    the driver link did not follow.  ``_enabled()`` / ``_disabled()`` run
    after a successful change."""

    kind = ""
    ctx: "NdctlCtx"
    path: str

    @property
    def devname(self) -> str:
        return devname(self.path)

    def is_enabled(self) -> bool:
        return self.ctx.is_enabled(self.path)

    def _w(self, attr: str, text: str) -> int:
        try:
            self.ctx.write(f"{self.path}/{attr}", text)
            return 0
        except OSError as e:
            return -(e.errno or errno.EIO)

    def enable(self) -> int:
        if self.is_enabled():
            return 0
        self.ctx.bind(self.devname)
        if not self.is_enabled():
            self.ctx.log.err(f"ndctl_{self.kind}_enable", f"{self.devname}: failed to enable")
            return -errno.ENXIO
        self._enabled()
        return 0

    def disable(self) -> int:
        if not self.is_enabled():
            return 0
        self.ctx.unbind(self.path)
        if self.is_enabled():
            self.ctx.log.err(f"ndctl_{self.kind}_disable", f"{self.devname}: failed to disable")
            return -errno.EBUSY
        self._disabled()
        return 0

    def _enabled(self) -> None:
        pass

    def _disabled(self) -> None:
        pass


class NdRegionChild(NdObject):
    """A namespace, btt, pfn or dax device of a region: valid while the
    region has not been disabled since it was read (``generation``)."""

    def __init__(self, region: "NdRegion", dev_id: int, path: str):
        self.region = region
        self.ctx = region.ctx
        self.id = dev_id
        self.path = path
        self.generation = region.generation

    def is_valid(self) -> bool:
        return self.generation == self.region.generation

    def block_device(self) -> str:
        return block_device(self.ctx, self.path)
