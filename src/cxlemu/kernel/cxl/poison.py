"""Poison listing (drivers/cxl/core/mbox.c cxl_mem_get_poison,
core/memdev.c cxl_trigger_poison_list) emitting ``cxl:cxl_poison`` trace
events into the kernel's trace buffer.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cxlemu.util.lazy import lazy_module
from cxlemu.hw.mailbox.opcodes import Opcode
from cxlemu.hw.mailbox import device as devmbox
from cxlemu.kernel.base.device import KernelError

P = lazy_module("cxlemu.hw.mailbox.payloads")   # payload codecs: imported when a command runs

if TYPE_CHECKING:
    from cxlemu.kernel.cxl.core import CxlCore
    from cxlemu.kernel.cxl.memdev import CxlMemdev

ULLONG_MAX = (1 << 64) - 1


@dataclass(frozen=True)
class PoisonEvent:
    memdev: str
    host: str
    serial: int
    trace_type: str          # "List" | "Inject" | "Clear"
    region: str
    region_uuid: str
    hpa: int
    dpa: int
    dpa_length: int
    source: int
    flags: int
    overflow_ts: int


class Poison:
    def __init__(self, core: "CxlCore"):
        self.core = core

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
        k = self.core.kernel
        for start, length, region in self._ranges(md):
            rc, raw = devmbox.execute(md.hw, Opcode.GET_POISON_LIST,
                                      P.GetPoisonListInput(start, length).encode())
            if rc == 0x0F and region is None and start < md.hw.ram_size:
                continue
            if rc:
                raise KernelError(errno.ENXIO)
            out = P.GetPoisonListOutput.decode(raw)
            for r in out.records:
                k.trace("cxl_poison", self.event(md, "List", r.dpa, r.length, r.source, out.flags,
                                                 out.overflow_timestamp))

    def event(self, md: "CxlMemdev", kind: str, dpa: int, length: int, source: int, flags: int = 0,
              overflow_ts: int = 0) -> PoisonEvent:
        region, hpa = self.core.regions.dpa_to_region_hpa(md, dpa)
        return PoisonEvent(memdev=md.name, host=md.parent.name if md.parent else "", serial=md.hw.serial,
                           trace_type=kind, region=region.name if region else "",
                           region_uuid=str(region.uuid) if region is not None and region.uuid else
                           "00000000-0000-0000-0000-000000000000",
                           hpa=hpa, dpa=dpa, dpa_length=length, source=source, flags=flags,
                           overflow_ts=overflow_ts)
