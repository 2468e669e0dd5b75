"""HDM decoders and their targets as libcxl models them (``add_cxl_decoder``).

Every decoder attribute is optional.  Conversions and fallbacks:

=====================  ==================  ===============================
attribute              field               when missing
=====================  ==================  ===============================
start, size            u64 (strtoull)      ULLONG_MAX
mode                   ram/pmem/mixed/     NONE (any other text: MIXED)
                       none
interleave_*           unsigned int        UINT_MAX
qos_class              int (atoi)          -1
dpa_resource/dpa_size  u64 (endpoints)     ULLONG_MAX
cap_type2/3, cap_ram,  bool (root only)    false
cap_pmem, locked
=====================  ==================  ===============================

Switch and endpoint decoders are "capable" of everything.  Root decoders
get ``max_available_extent`` computed once, when they are discovered
(:func:`max_available_extent`).  ``target_list`` ids are resolved through
``<port>/dport<id>``; an id without such a link stops the parse with
``failed to parse target<i>`` and ``nr_targets`` counts the parsed ones.
Targets are head-inserted, so they iterate in reverse position order.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from .cnum import U32_MAX, U64_MAX, c_atoi, c_strtoul_u32, c_strtoull, c_tokens, to_s32, to_u64
from .device import devname_of, same_id
from .dport import DportLink
from .mode import DecoderMode, TargetType, mode_from_ident, mode_name
from .sysfs import strerror

if TYPE_CHECKING:
    from .memdev import Memdev
    from .port import Port
    from .region import Region

__all__ = ["DecoderMode", "TargetType", "Target", "Decoder", "mode_name",
           "mode_from_ident", "max_available_extent"]


def _decoder_mode_attr(text: str | None) -> DecoderMode:
    """How ``add_cxl_decoder`` reads the endpoint ``mode`` attribute."""
    if text is None:
        return DecoderMode.NONE
    return {"ram": DecoderMode.RAM, "pmem": DecoderMode.PMEM, "mixed": DecoderMode.MIXED,
            "none": DecoderMode.NONE}.get(text, DecoderMode.MIXED)


class Target(DportLink):
    """One entry of a switch/root decoder's ``target_list``."""

    def __init__(self, decoder: "Decoder", target_id: int, position: int,
                 dev_path: str, phys_path: str | None, fw_path: str | None):
        self.decoder = decoder
        self.id = target_id
        self.position = position
        self.dev_path = dev_path
        self.phys_path = phys_path
        self.fw_path = fw_path

    def __repr__(self) -> str:
        return f"<Target {self.devname} pos={self.position} of {self.decoder.devname}>"


def max_available_extent(start: int, size: int, regions: "list[Region]") -> int:
    """``cxl_decoder_calc_max_available_extent()``: the largest gap between
    the decoder start, the configured regions (HPA order) and the decoder
    end, in u64 arithmetic.  ULLONG_MAX when ``start`` is unknown."""
    if start == U64_MAX:
        return U64_MAX
    prev_end = to_u64(start - 1)
    best = 0
    for r in regions:
        if not r.is_configured():
            continue
        best = max(best, to_u64(r.start - prev_end - 1))
        prev_end = to_u64(r.start + r.size - 1)
    end = to_u64(start + size - 1)
    return max(best, to_u64(end - prev_end))


class Decoder:
    """A ``struct cxl_decoder``."""

    def __init__(self, port: "Port", decoder_id: int, dev_path: str):
        self.ctx = port.ctx
        self.port = port
        self.id = decoder_id
        self.dev_path = dev_path
        self.start = U64_MAX
        self.size = U64_MAX
        self.mode = DecoderMode.NONE
        self.interleave_granularity = U32_MAX
        self.interleave_ways = U32_MAX
        self.qos_class = -1
        self.dpa_resource = U64_MAX
        self.dpa_size = U64_MAX
        self.pmem_capable = False
        self.volatile_capable = False
        self.mem_capable = False
        self.accelmem_capable = False
        self.locked = False
        self.target_type = TargetType.UNKNOWN
        self.max_available_extent = U64_MAX
        self.targets: list[Target] = []
        self.nr_targets = 0
        self._regions: list[Region] | None = None
        self._regions_stale = True

    # ---- discovery --------------------------------------------------------------
    @classmethod
    def add(cls, port: "Port", decoder_id: int, base: str,
            links: dict[int, tuple[str | None, str | None, str | None]] | None = None) -> "Decoder":
        io, log = port.ctx.io, port.ctx.log
        devname = devname_of(base)
        log.dbg("add_cxl_decoder", f"{devname}: base: '{base}'")
        d = cls(port, decoder_id, base)

        rd = io.reader(base)
        v = rd("start")
        d.start = c_strtoull(v) if v is not None else U64_MAX
        v = rd("size")
        d.size = c_strtoull(v) if v is not None else U64_MAX
        d.mode = _decoder_mode_attr(rd("mode"))
        v = rd("interleave_granularity")
        d.interleave_granularity = c_strtoul_u32(v) if v is not None else U32_MAX
        v = rd("interleave_ways")
        d.interleave_ways = c_strtoul_u32(v) if v is not None else U32_MAX
        v = rd("qos_class")
        d.qos_class = c_atoi(v) if v is not None else -1
        if port.is_root():
            for attr, field in (("cap_type2", "accelmem_capable"), ("cap_type3", "mem_capable"),
                                ("cap_ram", "volatile_capable"), ("cap_pmem", "pmem_capable"),
                                ("locked", "locked")):
                v = rd(attr)
                if v is not None:
                    setattr(d, field, c_strtoull(v) != 0)
            d.max_available_extent = max_available_extent(d.start, d.size, d.regions())
        else:
            if port.is_endpoint():
                v = rd("dpa_resource")
                d.dpa_resource = c_strtoull(v) if v is not None else U64_MAX
                v = rd("dpa_size")
                d.dpa_size = c_strtoull(v) if v is not None else U64_MAX
            d.pmem_capable = d.volatile_capable = d.mem_capable = d.accelmem_capable = True
            v = rd("locked")
            if v is not None:
                d.locked = c_strtoull(v) != 0
            v = rd("target_type")
            if v == "accelerator":
                d.target_type = TargetType.ACCELERATOR
            elif v == "expander":
                d.target_type = TargetType.EXPANDER
        d._parse_targets(rd("target_list") or "", {} if links is None else links)
        return same_id(port._decoders, d)

    def _parse_targets(self, text: str,
                       links: dict[int, tuple[str | None, str | None, str | None]]) -> None:
        """The targets of ``target_list``; ``links`` holds the resolutions of
        the port's dport links made for its decoders scanned before (the
        links do not change while the port's decoders are scanned)."""
        io, log, port = self.ctx.io, self.ctx.log, self.port
        tokens = c_tokens(text, ",")
        i = 0
        failed = False
        for i, tok in enumerate(tokens):
            did = to_s32(c_strtoull(tok))
            known = links.get(did)
            if known is None:
                link = f"{port.dev_path}/dport{did}"
                dev_path = io.realpath(link)
                if dev_path is None:
                    known = (None, None, None)
                else:
                    known = (dev_path, io.realpath(f"{link}/physical_node"),
                             io.realpath(f"{link}/firmware_node"))
                links[did] = known
            dev_path, phys, fw = known
            if dev_path is None:
                failed = True
                break
            log.dbg("add_cxl_decoder", f"{self.devname}: target{i} {dev_path} "
                                       f"phys_path: {phys if phys else 'none'}")
            log.dbg("add_cxl_decoder", f"{self.devname}: target{i} {dev_path} "
                                       f"fw_path: {fw if fw else 'none'}")
            if phys is None and fw is not None:
                phys = dev_path
            self.targets.insert(0, Target(self, did, i, dev_path, phys, fw))
        else:
            i = len(tokens)
        if failed:
            log.err("add_cxl_decoder", f"{self.devname}: failed to parse target{i}")
        self.nr_targets = i

    # ---- identity ---------------------------------------------------------------------
    @property
    def devname(self) -> str:
        return devname_of(self.dev_path)

    @property
    def resource(self) -> int:
        return self.start

    def root_qos_class(self) -> int:
        """``cxl_root_decoder_get_qos_class()``: -EINVAL for non-root."""
        return self.qos_class if self.port.is_root() else -errno.EINVAL

    def _on_endpoint(self, func: str) -> bool:
        """The endpoint-only accessors: False (logged by ``func``) for a
        root or switch decoder."""
        if self.port.is_endpoint():
            return True
        self.ctx.log.err(func, f"{self.devname}: not an endpoint decoder")
        return False

    def get_mode(self) -> DecoderMode:
        return self.mode if self._on_endpoint("cxl_decoder_get_mode") else DecoderMode.NONE

    def get_dpa_size(self) -> int:
        return self.dpa_size if self._on_endpoint("cxl_decoder_get_dpa_size") else U64_MAX

    def get_dpa_resource(self) -> int:
        return self.dpa_resource if self._on_endpoint("cxl_decoder_get_dpa_resource") else U64_MAX

    # ---- relations ----------------------------------------------------------------------
    def regions(self) -> list["Region"]:
        """``cxl_region_foreach()``: child regions (root decoders only),
        sorted by HPA start."""
        if self._regions is None:
            self._regions = []
            self._regions_stale = True
        if self._regions_stale and self.port.is_root():
            self._regions_stale = False
            self._scan_regions()
        return self._regions

    def _scan_regions(self) -> None:
        from .region import Region
        assert self._regions is not None
        ctx = self.ctx
        ctx.io.flush()
        for e in ctx.io.scan(self.dev_path, "region"):
            region = Region.add(self, e.id, e.path)
            if region is None:
                ctx.log.err("__sysfs_device_parse", f"region{e.id}: add_dev() failed")
                continue
            ctx.log.dbg("__sysfs_device_parse", f"region{e.id}: processed")
            self._regions[:] = [r for r in self._regions if r.id != region.id]
            pos = len(self._regions)
            for k, r in enumerate(self._regions):
                if region.start < r.start:
                    pos = k
                    break
            self._regions.insert(pos, region)

    def invalidate_regions(self) -> None:
        """Make the next :meth:`regions` re-scan (``regions_init = 0``);
        regions already known stay unless re-found with the same id."""
        self._regions_stale = True

    @property
    def region(self) -> "Region | None":
        """``cxl_decoder_get_region()``: the region named by a switch or
        endpoint decoder's ``region`` attribute."""
        if self.port.is_root():
            return None
        buf = self.ctx.io.read_attr(f"{self.dev_path}/region")
        if buf is None:
            self.ctx.log.err("cxl_decoder_get_region",
                             f"failed to read region name: {strerror(self.ctx.io.last_errno)}")
            return None
        if buf == "":
            return None
        root: Port = self.port
        while not root.is_root() and root.parent is not None:
            root = root.parent
        for dec in root.decoders():
            for r in dec.regions():
                if r.devname == buf:
                    return r
        return None

    @property
    def memdev(self) -> "Memdev | None":
        """``cxl_decoder_get_memdev()``: the endpoint's memdev."""
        ep = self.port.to_endpoint()
        return ep.memdev if ep is not None else None

    def target_by_memdev(self, memdev: "Memdev") -> Target | None:
        for t in self.targets:
            if t.maps_memdev(memdev):
                return t
        return None

    def target_by_position(self, position: int) -> Target | None:
        for t in self.targets:
            if t.position == position:
                return t
        return None

    # ---- setters (endpoint decoders) -------------------------------------------------------
    def set_dpa_size(self, size: int) -> None:
        """``cxl_decoder_set_dpa_size()``: writes ``"%#llx\\n"`` (so 0 is
        written as ``"0\\n"``) to ``dpa_size``."""
        from cxlemu.tools.common.util_json import hex_text
        if not self._on_endpoint("cxl_decoder_set_dpa_size"):
            raise OSError(errno.EINVAL, "not an endpoint decoder", self.devname)
        self.ctx.io.write_attr(f"{self.dev_path}/dpa_size", f"{hex_text(size)}\n")
        self.dpa_size = to_u64(size)

    def set_mode(self, mode: DecoderMode) -> None:
        """``cxl_decoder_set_mode()``: writes "pmem" or "ram" (no newline)."""
        if not self._on_endpoint("cxl_decoder_set_mode"):
            raise OSError(errno.EINVAL, "not an endpoint decoder", self.devname)
        if mode not in (DecoderMode.PMEM, DecoderMode.RAM):
            self.ctx.log.err("cxl_decoder_set_mode", f"{self.devname}: unsupported mode: {int(mode)}")
            raise OSError(errno.EINVAL, "unsupported mode", self.devname)
        self.ctx.io.write_attr(f"{self.dev_path}/mode", mode_name(mode))
        self.mode = DecoderMode(mode)

    # ---- region creation (root decoders) ---------------------------------------------------
    def create_region(self, mode: DecoderMode) -> "Region | None":
        """``cxl_decoder_create_{pmem,ram}_region()``: read
        ``create_<mode>_region``, write the same name back, re-scan and
        return the new region (None on failure, with libcxl's messages)."""
        log, io = self.ctx.log, self.ctx.io
        func = "cxl_decoder_create_region"
        leaf = "create_pmem_region" if mode == DecoderMode.PMEM else "create_ram_region"
        path = f"{self.dev_path}/{leaf}"
        buf = io.read_attr(path)
        if buf is None:
            log.err(func, f"failed to read new region name: {strerror(io.last_errno)}")
            return None
        try:
            io.write_attr(path, buf)
        except OSError as e:
            log.err(func, f"failed to write new region name: {strerror(e.errno or 0)}")
            return None
        self.invalidate_regions()
        for r in self.regions():
            if r.devname == buf:
                return r
        log.err(func, "failed to add new region to libcxl")
        try:
            self.delete_region_name(buf)
        except OSError:
            pass
        return None

    def create_pmem_region(self) -> "Region | None":
        return self.create_region(DecoderMode.PMEM)

    def create_ram_region(self) -> "Region | None":
        return self.create_region(DecoderMode.RAM)

    def delete_region_name(self, name: str) -> None:
        """``cxl_region_delete_name()``: write ``name`` to ``delete_region``."""
        try:
            self.ctx.io.write_attr(f"{self.dev_path}/delete_region", name)
        except OSError as e:
            self.ctx.log.err("cxl_region_delete_name",
                             f"error deleting region: {strerror(e.errno or 0)}")
            raise

    def __repr__(self) -> str:
        return f"<Decoder {self.devname}>"
