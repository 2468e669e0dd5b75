"""CXL regions and their mappings as libcxl models them (``add_cxl_region``,
``cxl_mappings_init``) plus the region setters the region commands use.

Discovery rules:

* the region is dropped (``add_dev() failed``) when ``uuid`` cannot be
  read, or reads non-empty and is not a valid UUID;
* ``size`` unreadable -> ULLONG_MAX (no ``size`` key in JSON);
  ``resource`` is kept only when readable and below ULLONG_MAX, otherwise
  the start stays 0 (so a region without HPA lists ``"resource":0``);
* ``commit`` gives the decode state (unreadable: UNKNOWN = -1), ``mode``
  the type (``cxl_decoder_mode_from_ident``);
* mappings read ``target0..target<ways-1>`` by name and are head-inserted:
  they iterate in reverse position order.

Write formats (util/sysfs.c sends ``strlen + 1`` bytes, so each value
arrives followed by a NUL): ``size`` "%#llx\\n", ``interleave_ways`` and
``interleave_granularity`` "%u\\n", ``commit`` "%d\\n", ``uuid`` the
36-character lower-case form, ``target<i>`` the decoder name (or "" to
clear), ``delete_region`` the region name.
"""

from __future__ import annotations

import enum
import errno
import re
from typing import TYPE_CHECKING

from cxlemu.tools.common.util_json import hex_text
from cxlemu.util.lazy import lazy_module

from .cnum import U32_MAX, U64_MAX, c_strtoul_u32, c_strtoull, to_s32, to_u64
from .mode import DecoderMode, mode_from_ident
from .device import SysfsDevice, devname_of
from .sysfs import strerror

uuidlib = lazy_module("uuid")   # (uuid imports `platform`): when a region's uuid is read or set

if TYPE_CHECKING:
    from cxlemu.tools.libdaxctl.lib import DaxctlRegion
    from .decoder import Decoder
    from .memdev import Memdev

__all__ = ["DecodeState", "Region", "Mapping", "uuid_parse"]

_UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def uuid_parse(text: str) -> bytes | None:
    """libuuid ``uuid_parse()``: exactly the 36-character dashed form."""
    if not _UUID_RE.match(text):
        return None
    return uuidlib.UUID(text).bytes


class DecodeState(enum.IntEnum):
    UNKNOWN = -1
    RESET = 0
    COMMIT = 1


class Mapping:
    """``struct cxl_memdev_mapping``: one position of a region."""

    def __init__(self, region: "Region", decoder: "Decoder", position: int):
        self.region = region
        self.decoder = decoder
        self.position = position

    @property
    def memdev(self) -> "Memdev | None":
        return self.decoder.memdev

    def __repr__(self) -> str:
        return f"<Mapping {self.region.devname}[{self.position}] {self.decoder.devname}>"


class Region(SysfsDevice):
    """A ``struct cxl_region``."""

    def __init__(self, decoder: "Decoder", region_id: int, dev_path: str):
        self.ctx = decoder.ctx
        self.decoder = decoder
        self.id = region_id
        self.dev_path = dev_path
        self.size = U64_MAX
        self.start = 0
        self.uuid = bytes(16)
        self.interleave_granularity = U32_MAX
        self.interleave_ways = U32_MAX
        self.decode_state: int = DecodeState.UNKNOWN
        self.mode = DecoderMode.NONE
        self.modalias: str | None = None
        self._mappings: list[Mapping] | None = None
        self._dax_region: DaxctlRegion | None = None

    @classmethod
    def add(cls, decoder: "Decoder", region_id: int, base: str) -> "Region | None":
        io, log = decoder.ctx.io, decoder.ctx.log
        log.dbg("add_cxl_region", f"{devname_of(base)}: base: '{base}'")
        r = cls(decoder, region_id, base)
        v = io.read_attr(f"{base}/size")
        r.size = c_strtoull(v) if v is not None else U64_MAX
        v = io.read_attr(f"{base}/resource")
        if v is not None:
            res = c_strtoull(v)
            if res < U64_MAX:
                r.start = res
        v = io.read_attr(f"{base}/uuid")
        if v is None:
            return None
        if v:
            u = uuid_parse(v)
            if u is None:
                log.dbg("add_cxl_region", f"{base}/uuid:{v}")
                return None
            r.uuid = u
        v = io.read_attr(f"{base}/interleave_granularity")
        r.interleave_granularity = c_strtoul_u32(v) if v is not None else U32_MAX
        v = io.read_attr(f"{base}/interleave_ways")
        r.interleave_ways = c_strtoul_u32(v) if v is not None else U32_MAX
        v = io.read_attr(f"{base}/commit")
        r.decode_state = to_s32(c_strtoull(v)) if v is not None else DecodeState.UNKNOWN
        v = io.read_attr(f"{base}/mode")
        r.mode = mode_from_ident(v) if v is not None else DecoderMode.NONE
        r.modalias = io.read_attr(f"{base}/modalias")
        return r

    # ---- identity -------------------------------------------------------------
    @property
    def resource(self) -> int:
        return self.start

    def decode_is_committed(self) -> bool:
        return self.decode_state == DecodeState.COMMIT

    def is_configured(self) -> bool:
        """``cxl_region_is_configured()``: sized and not reset."""
        return bool(self.size) and self.decode_state != DecodeState.RESET

    @property
    def uuid_text(self) -> str:
        return str(uuidlib.UUID(bytes=self.uuid))

    # ---- mappings -------------------------------------------------------------------
    def mappings(self) -> list[Mapping]:
        """``cxl_mapping_foreach()``: reverse position order."""
        if self._mappings is None:
            self._mappings = []
            ctx = self.ctx
            ways = self.interleave_ways
            for i in range(ways if ways != U32_MAX else 0):
                buf = ctx.io.read_attr(f"{self.dev_path}/target{i}")
                if buf is None:
                    ctx.log.err("cxl_mappings_init", f"{self.devname}: failed to read target{i}")
                    continue
                dec = ctx.decoder_by_name(buf)
                if dec is None:
                    ctx.log.err("cxl_mappings_init", f"{self.devname} target{i}: {buf} lookup failure")
                    continue
                self._mappings.insert(0, Mapping(self, dec, i))
        return self._mappings

    def get_target_decoder(self, position: int) -> "Decoder | None":
        """``cxl_region_get_target_decoder()``: the decoder named by
        ``target<position>``."""
        ctx = self.ctx
        buf = ctx.io.read_attr(f"{self.dev_path}/target{position}")
        if buf is None:
            ctx.log.err("cxl_region_get_target_decoder",
                        f"{self.devname}: error reading target{position}: "
                        f"{strerror(ctx.io.last_errno)}")
            return None
        dec = ctx.decoder_by_name(buf)
        if dec is None:
            ctx.log.err("cxl_region_get_target_decoder",
                        f"{self.devname}: error locating decoder for target{position}")
        return dec

    def trigger_poison_list(self) -> None:
        """``cxl_region_trigger_poison_list()``: trigger each mapped memdev."""
        for m in self.mappings():
            md = m.memdev
            if md is None:
                continue
            md.trigger_poison_list()

    def qos_class_mismatch(self) -> bool:
        """``cxl_region_qos_class_mismatch()``: a mapped memdev's qos_class
        for the region type differs from the root decoder's."""
        root = self.decoder
        for m in self.mappings():
            md = m.decoder.memdev
            if md is None:
                continue
            if self.mode == DecoderMode.RAM and root.qos_class != md.ram_qos_class:
                return True
            if self.mode == DecoderMode.PMEM and root.qos_class != md.pmem_qos_class:
                return True
        return False

    @property
    def dax_region(self) -> "DaxctlRegion | None":
        """``cxl_region_get_daxctl_region()``: ``<region>/dax_region<id>``."""
        if self._dax_region is None:
            path = f"{self.dev_path}/dax_region{self.id}"
            if not self.ctx.io.exists(path):
                return None
            self._dax_region = self.ctx.dax.new_region(self.id, path)
        return self._dax_region

    # ---- setters ------------------------------------------------------------------------
    def _write(self, leaf: str, text: str) -> None:
        self.ctx.io.write_attr(f"{self.dev_path}/{leaf}", text)

    def set_size(self, size: int) -> None:
        """``cxl_region_set_size()``: "%#llx\\n"; 0 is refused with EINVAL
        (use :meth:`delete`)."""
        if size == 0:
            self.ctx.log.dbg("cxl_region_set_size",
                             f"cxl_region_set_size: cannot use {self.devname} to delete a region")
            raise OSError(errno.EINVAL, strerror(errno.EINVAL), self.devname)
        self._write("size", f"{hex_text(size)}\n")
        self.size = to_u64(size)

    def set_uuid(self, uu: bytes | uuidlib.UUID | str) -> None:
        """``cxl_region_set_uuid()``: the 36-character form, no newline."""
        u = uu if isinstance(uu, uuidlib.UUID) else (
            uuidlib.UUID(bytes=uu) if isinstance(uu, bytes) else uuidlib.UUID(uu))
        self._write("uuid", str(u))
        self.uuid = u.bytes

    def set_interleave_ways(self, ways: int) -> None:
        self._write("interleave_ways", f"{ways & U32_MAX}\n")
        self.interleave_ways = ways & U32_MAX

    def set_interleave_granularity(self, granularity: int) -> None:
        self._write("interleave_granularity", f"{granularity & U32_MAX}\n")
        self.interleave_granularity = granularity & U32_MAX

    def set_target(self, position: int, decoder: "Decoder | None") -> None:
        """``cxl_region_set_target()``: ``target<position>`` <- decoder name."""
        if decoder is None:
            raise OSError(errno.ENXIO, strerror(errno.ENXIO), self.devname)
        self._write(f"target{position}", decoder.devname)

    def clear_target(self, position: int) -> None:
        """``cxl_region_clear_target()``: refused on an active region."""
        if self.is_enabled():
            self.ctx.log.err("cxl_region_clear_target",
                             f"{self.devname}: can't clear targets on an active region")
            raise OSError(errno.EBUSY, strerror(errno.EBUSY), self.devname)
        try:
            self._write(f"target{position}", "")
        except OSError as e:
            self.ctx.log.err("cxl_region_clear_target",
                             f"{self.devname}: error clearing target{position}: {strerror(e.errno or 0)}")
            raise

    def clear_all_targets(self) -> None:
        if self.is_enabled():
            self.ctx.log.err("cxl_region_clear_all_targets",
                             f"{self.devname}: can't clear targets on an active region")
            raise OSError(errno.EBUSY, strerror(errno.EBUSY), self.devname)
        ways = self.interleave_ways
        if ways in (0, U32_MAX):
            raise OSError(errno.ENXIO, strerror(errno.ENXIO), self.devname)
        for i in range(ways):
            try:
                self._write(f"target{i}", "")
            except OSError as e:
                self.ctx.log.err("cxl_region_clear_all_targets",
                                 f"{self.devname}: error clearing target{i}: {strerror(e.errno or 0)}")
                raise

    def decode_commit(self) -> None:
        self._write("commit", f"{int(DecodeState.COMMIT)}\n")
        self.decode_state = DecodeState.COMMIT

    def decode_reset(self) -> None:
        self._write("commit", f"{int(DecodeState.RESET)}\n")
        self.decode_state = DecodeState.RESET

    # ---- enable / disable / delete -------------------------------------------------------
    def enable(self) -> None:
        """``cxl_region_enable()``: bind, check the driver link, re-read
        ``resource``."""
        if self.is_enabled():
            return
        self._bind_checked("cxl_region_enable")
        v = self.ctx.io.read_attr(f"{self.dev_path}/resource")
        if v is not None:
            res = c_strtoull(v)
            if res < U64_MAX:
                self.start = res
        self.ctx.log.dbg("cxl_region_enable", f"{self.devname}: enabled")

    def disable(self) -> None:
        """``cxl_region_disable()``: unbind; EBUSY if still enabled."""
        self._unbind_checked("cxl_region_disable")
        self.ctx.log.dbg("cxl_region_disable", f"{self.devname}: disabled")

    def delete(self) -> None:
        """``cxl_region_delete()``: EBUSY while enabled; writes the name to
        the root decoder's ``delete_region`` and forgets the region."""
        if self.is_enabled():
            raise OSError(errno.EBUSY, strerror(errno.EBUSY), self.devname)
        self.decoder.delete_region_name(self.devname)
        regions = self.decoder._regions
        if regions is not None:
            regions[:] = [r for r in regions if r is not self]
        self.decoder.invalidate_regions()

    def trigger_poison_list(self) -> None:
        """``cxl_region_trigger_poison_list()``: every mapped memdev."""
        for m in self.mappings():
            md = m.decoder.memdev
            if md is None:
                continue
            md.trigger_poison_list()

    def __repr__(self) -> str:
        return f"<Region {self.devname}>"
