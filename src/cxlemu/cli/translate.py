"""``cxlemu translate``: HPA -> (region, position, memdev, DPA) and back,
computed from the kernel's region geometry (region.c / cxl_translate.c math)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cxlemu.kernel.cxl.port import EndpointDecoder
from cxlemu.kernel.cxl.translate import TranslateError
from cxlemu.machine.store import MachineError

if TYPE_CHECKING:
    from cxlemu.kernel.kernel import Kernel


class TranslateCliError(ValueError):
    pass


def _int(s: str) -> int:
    try:
        return int(s, 0)
    except ValueError:
        raise TranslateCliError(f"not a number: {s!r}") from None


def hpa_to_dpa(k: "Kernel", hpa: int) -> dict:
    mgr = k.cxl.regions
    for r in mgr.all():
        if r.res is None or not r.res.start <= hpa <= r.res.end:
            continue
        g = mgr.geometry(r)
        pos, off = g.to_dpa(hpa)
        t = r.targets[pos]
        if t is None:
            raise TranslateCliError(f"{r.name} has no target at position {pos}")
        return {"hpa": hex(hpa), "region": r.name, "root_decoder": r.cxlrd.name,
                "region_offset": hex(hpa - r.res.start), "position": pos, "memdev": t.memdev.name,
                "decoder": t.name, "dpa": hex(t.dpa_start + off), "dpa_offset": hex(off),
                "interleave_ways": r.interleave_ways, "interleave_granularity": r.interleave_granularity,
                "arithmetic": r.cxlrd.arithmetic}
    raise TranslateCliError(f"{hpa:#x} is not in any region")


def dpa_to_hpa(k: "Kernel", memdev: str, dpa: int) -> dict:
    md = next((m for m in k.cxl.memdevs if m.name == memdev), None)
    if md is None:
        raise TranslateCliError(f"no memdev {memdev!r}")
    if md.endpoint is None:
        raise TranslateCliError(f"{memdev} is disabled")
    for d in md.endpoint.decoders:
        if isinstance(d, EndpointDecoder) and d.dpa_start is not None and \
                d.dpa_start <= dpa < d.dpa_start + d.dpa_len:
            if d.region is None or d.region.res is None:
                raise TranslateCliError(f"{memdev} DPA {dpa:#x} is allocated to {d.name} but not mapped by a region")
            g = k.cxl.regions.geometry(d.region)
            hpa = g.to_hpa(d.pos, dpa - d.dpa_start)
            return {"memdev": memdev, "dpa": hex(dpa), "decoder": d.name, "region": d.region.name,
                    "position": d.pos, "hpa": hex(hpa)}
    raise TranslateCliError(f"{memdev} DPA {dpa:#x} is not decoded by any endpoint decoder")


def translate(k: "Kernel", kind: str, args: list[str]) -> dict:
    try:
        if kind == "hpa":
            if len(args) != 1:
                raise TranslateCliError("usage: cxlemu translate NAME hpa ADDRESS")
            return hpa_to_dpa(k, _int(args[0]))
        if len(args) != 2:
            raise TranslateCliError("usage: cxlemu translate NAME dpa MEMDEV ADDRESS")
        return dpa_to_hpa(k, args[0], _int(args[1]))
    except (TranslateError, TranslateCliError) as e:
        raise MachineError(f"translate: {e}") from None
