"""Poison handling on the host side (drivers/cxl/core/mbox.c
``cxl_mem_get_poison``, core/memdev.c ``cxl_trigger_poison_list``,
``cxl_inject_poison``, ``cxl_clear_poison``, drivers/cxl/mem.c debugfs,
core/trace.h ``cxl_poison``).

* ``trigger_poison_list`` (a true value written to memN/trigger_poison_list):
  with no committed decoder each partition is read whole (pmem, then ram);
  with committed decoders each endpoint decoder up to ``commit_end``: its
  DPA skip (no region), its DPA range (its region), then the rest of the
  device from the last decoder on (no region).  Each range is one Get
  Poison List repeated while the device says MORE, stopping once the
  device's maximum number of records was seen; every record becomes a
  ``cxl_poison`` trace record of type List, with HPA and region when the
  DPA is mapped by a region.  "Invalid Physical Address" is ignored for
  ranges in the ram partition (devices need not track volatile poison).
* debugfs ``cxl/memN/inject_poison`` and ``clear_poison`` take a DPA
  (``%llx``, any base): the device must have DPA capacity, the DPA must be
  inside it and 64-byte aligned, else -EINVAL; the mailbox command is sent
  (Clear Poison with 64 zero bytes); a DPA mapped by a region only warns
  once; a trace record of type Inject/Clear (one 64-byte unit, source
  Unknown: the record carries only the address) follows.  The files exist
  only for devices whose Command Effects Log lists the commands.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from cxlemu.hw.mailbox.opcodes import Opcode, ReturnCode, errno_for_return_code
from cxlemu.kernel.base.device import KernelError, kstrtoull
from cxlemu.util.lazy import lazy_module

P = lazy_module("cxlemu.hw.mailbox.payloads")   # payload codecs: imported when a command runs
np = lazy_module("numpy")

P = lazy_module("cxlemu.hw.mailbox.payloads")   # payload codecs: imported when a command runs

if TYPE_CHECKING:
    from cxlemu.kernel.cxl.core import CxlCore
    from cxlemu.kernel.cxl.memdev import CxlMemdev
    from cxlemu.kernel.cxl.region import CxlRegion

ULLONG_MAX = (1 << 64) - 1
TRACE_LIST, TRACE_INJECT, TRACE_CLEAR = 0, 1, 2
NULL_UUID = bytes(16)


class Poison:
    def __init__(self, core: "CxlCore"):
        self.core = core
        self.warned: set[str] = set()       # dev_warn_once per device

    # ---- capability bits (cxl_poison_state_init from the CEL) -----------------------------
    def enabled(self, md: "CxlMemdev", opcode: int) -> bool:
        from cxlemu.hw.mailbox.device import supported_opcodes
        return opcode in supported_opcodes(md.hw)

    # ---- listing --------------------------------------------------------------------------------
    def _ranges(self, md: "CxlMemdev") -> list[tuple[int, int, object]]:
        """(dpa start, length, region or None) in the order the kernel walks them."""
        hw = md.hw
        ep = md.endpoint
        if ep is None:
            raise KernelError(errno.EINVAL, f"{md.name}: not an endpoint")
        out: list[tuple[int, int, object]] = []
        if ep.commit_end < 0:
            if hw.pmem_size:
                out.append((hw.ram_size, hw.pmem_size, None))
            if hw.ram_size:
                out.append((0, hw.ram_size, None))
            return out
        last_end = 0
        for d in ep.decoders[: ep.commit_end + 1]:
            if d.dpa_start is None:
                continue
            if d.skip:
                out.append((d.dpa_start - d.skip, d.skip, None))
            out.append((d.dpa_start, d.dpa_len, d.region))
            last_end = d.dpa_start + d.dpa_len
        if last_end < hw.total_capacity:
            out.append((last_end, hw.total_capacity - last_end, None))
        return out

    def trigger_list(self, md: "CxlMemdev") -> None:
        if not self.enabled(md, Opcode.GET_POISON_LIST):
            raise KernelError(errno.ENXIO)
        for start, length, region in self._ranges(md):
            self.get_poison(md, start, length, region)

    def get_poison(self, md: "CxlMemdev", start: int, length: int, region) -> int:
        """cxl_mem_get_poison: returns the number of records traced."""
        mb = self.core.mailbox
        req = P.GetPoisonListInput(start, length).encode()
        max_errors = md.hw.poison.max_records
        n = 0
        while True:
            rc, raw = mb.internal(md, Opcode.GET_POISON_LIST, req)
            if rc == ReturnCode.INVALID_PHYSICAL_ADDRESS and start < md.hw.ram_size:
                return n           # -EFAULT is not an error for volatile ranges
            if rc:
                raise KernelError(errno_for_return_code(rc) or errno.ENXIO)
            out = P.GetPoisonListOutput.decode(raw)
            for r in out.records:
                self.trace(md, region, TRACE_LIST, r.dpa, r.length, r.source, out.flags,
                           out.overflow_timestamp if out.flags & P.PoisonFlags.OVERFLOW else 0)
            n += len(out.records)
            if n >= max_errors or not out.more:
                return n

    # ---- where the CPU meets poison: system pages over poisoned lines -------------------------
    def poisoned_pages(self) -> np.ndarray:
        """Sorted pfns of the system physical pages that hold at least one
        poisoned line of a CXL device mapped by a region (all poison, listed
        or not: the media does not care about the list).  What a CPU load of
        such a page may consume; the workload engine checks its accesses
        against it.  Cached per device on the poison store's arrays (every
        change replaces them) and the device's decoder programming."""
        from cxlemu.kernel.cxl.port import EndpointDecoder
        cache = self.__dict__.setdefault("_page_cache", {})
        parts = []
        for md in self.core.memdevs:
            st = md.hw.poison
            ep = md.endpoint
            if not len(st) or ep is None:
                continue
            decs = tuple((d, d.region) for d in ep.decoders
                         if isinstance(d, EndpointDecoder) and d.region is not None and d.dpa_start is not None
                         and d.region.res is not None)
            sig = tuple((d.dpa_start, d.dpa_len, d.pos, id(r), r.res.start, r.res.size) for d, r in decs)
            hit = cache.get(md.name)
            if hit is not None and hit[0] is st.start and hit[1] is st.length and hit[2] == sig:
                parts.append(hit[3])
                continue
            pages = [self._decoder_pages(st, d, r) for d, r in decs]
            pages = np.unique(np.concatenate(pages)) if pages else np.zeros(0, np.int64)
            cache[md.name] = (st.start, st.length, sig, pages)
            parts.append(pages)
        if not parts:
            return np.zeros(0, np.int64)
        return parts[0] if len(parts) == 1 else np.unique(np.concatenate(parts))

    def _decoder_pages(self, st, d, region) -> np.ndarray:
        """pfns over the poisoned DPA ranges of one endpoint decoder: each
        range is cut at interleave granules (contiguous in HPA), each piece
        translated with the region's geometry (modulo or XOR)."""
        from cxlemu.kernel.cxl.translate import to_hpa_array
        lo, hi = d.dpa_start, d.dpa_start + d.dpa_len
        sel = (st.start < hi) & (st.start + st.length > lo)
        if not sel.any():
            return np.zeros(0, np.int64)
        g = self.core.regions.geometry(region)
        gran = g.granularity if g.ways > 1 else max(g.granularity, 1 << 30)
        a = np.maximum(st.start[sel], lo) - lo          # offsets in the decoder's DPA range
        b = np.minimum(st.start[sel] + st.length[sel], hi) - lo
        first, last = a // gran, (b - 1) // gran
        n = (last - first + 1).astype(np.int64)
        chunk = np.repeat(first, n) + (np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n))
        c0 = chunk * gran
        s = np.maximum(c0, np.repeat(a, n))
        e = np.minimum(c0 + gran, np.repeat(b, n))
        base = to_hpa_array(g, np.full(c0.size, d.pos, np.int64), c0.astype(np.uint64)).astype(np.int64)
        plo = (base + (s - c0)) >> 12
        phi = (base + (e - c0) - 1) >> 12
        cnt = phi - plo + 1
        return np.repeat(plo, cnt) + (np.arange(int(cnt.sum())) - np.repeat(np.cumsum(cnt) - cnt, cnt))

    def __getstate__(self) -> dict:
        st = dict(self.__dict__)
        st.pop("_page_cache", None)
        return st

    # ---- debugfs inject / clear ----------------------------------------------------------------------
    def _validate(self, md: "CxlMemdev", dpa: int) -> None:
        """cxl_validate_poison_dpa()."""
        cap = md.hw.total_capacity
        if not cap:
            raise KernelError(errno.EINVAL, f"{md.name}: device has no dpa resource")
        if not 0 <= dpa < cap:
            raise KernelError(errno.EINVAL, f"{md.name}: dpa:{dpa:#x} not in resource:[mem 0x0-{cap - 1:#x}]")
        if dpa % 64:
            raise KernelError(errno.EINVAL, f"{md.name}: dpa:{dpa:#x} is not 64-byte aligned")

    def inject(self, md: "CxlMemdev", dpa: int) -> None:
        self._validate(md, dpa)
        rc, _ = self.core.mailbox.internal(md, Opcode.INJECT_POISON, P.InjectPoisonInput(dpa).encode(),
                                           service=False)
        if rc:
            self.core.events.service(md)
            raise KernelError(errno_for_return_code(rc) or errno.ENXIO,
                              f"{md.name}: Inject Poison failed: return code {rc:#x}")
        self._after(md, dpa, TRACE_INJECT, "inject")

    def clear(self, md: "CxlMemdev", dpa: int) -> None:
        self._validate(md, dpa)
        rc, _ = self.core.mailbox.internal(md, Opcode.CLEAR_POISON, P.ClearPoisonInput(dpa).encode(),
                                           service=False)
        if rc:
            raise KernelError(errno_for_return_code(rc) or errno.ENXIO,
                              f"{md.name}: Clear Poison failed: return code {rc:#x}")
        self._after(md, dpa, TRACE_CLEAR, "clear")
        self.core.kernel.dirty = True

    def _after(self, md: "CxlMemdev", dpa: int, kind: int, verb: str) -> None:
        region, _ = self.core.regions.dpa_to_region_hpa(md, dpa)
        if region is not None and f"{verb}:{md.name}" not in self.warned:
            self.warned.add(f"{verb}:{md.name}")
            host = md.parent.name if md.parent else md.name
            self.core.kernel.log(f"cxl_pci {host}: poison {verb} dpa:{dpa:#x} region: {region.name}")
        self.trace(md, region, kind, dpa, 64, 0, 0, 0)
        self.core.events.service(md)        # the device's poison-creation event interrupt runs after

    def debugfs_inject_store(self, md: "CxlMemdev", buf: bytes) -> None:
        self.inject(md, kstrtoull(buf, 0))

    def debugfs_clear_store(self, md: "CxlMemdev", buf: bytes) -> None:
        self.clear(md, kstrtoull(buf, 0))

    # ---- trace -----------------------------------------------------------------------------------------
    def trace(self, md: "CxlMemdev", region, kind: int, dpa: int, length: int, source: int, flags: int,
              overflow_ts: int) -> None:
        hpa = ULLONG_MAX
        if region is not None:
            found, h = self.core.regions.dpa_to_region_hpa(md, dpa)
            hpa = h if found is region else ULLONG_MAX
        self.core.kernel.trace("cxl", "cxl_poison", {
            "memdev": md.name, "host": md.parent.name if md.parent else "", "serial": md.hw.serial,
            "trace_type": kind, "region": region.name if region is not None else "",
            "overflow_ts": overflow_ts, "hpa": hpa, "dpa": dpa, "dpa_length": length,
            "uuid": region_uuid_bytes(region), "source": source, "flags": flags})


def region_uuid_bytes(region: "CxlRegion | None") -> bytes:
    if region is None or not getattr(region, "uuid", None):
        return NULL_UUID
    u = region.uuid
    return u.bytes if hasattr(u, "bytes") else bytes(16)
