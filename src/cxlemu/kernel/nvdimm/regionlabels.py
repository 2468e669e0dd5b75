"""CXL region labels and region assembly from them (boot option
``boot.assemble_from_region_labels``; CXL r3.1 §9.13.2.3, the 2025 "CXL LSA
2.1" kernel series).  Mainline Linux neither writes nor uses region labels:
CXL pmem regions come back only when decoders are re-committed (by firmware
or by the user), so this is off by default.

Writing: when a pmem region is activated, each member's LSA gets a region
label (region uuid, nlabel = ways, position, dpa, rawsize = the member's
DPA size, hpa = region start, ig = interleave granularity encoding
log2(g) - 8, align = 1 (256 MiB)); a previous label of the same region and
position is reaped by the same index commit.

Assembly (at boot, after every memdev has probed): labels are grouped by
region uuid; a set is complete when positions 0..nlabel-1 are present with
the same nlabel, ig, rawsize and hpa, and every member's DPA is still free.
The region is then re-created through the same sysfs writes ``cxl
create-region`` makes (endpoint decoder mode/dpa_size, create_pmem_region,
uuid, interleave_granularity, interleave_ways, size, targetN, commit, bind)
on the root decoder whose window holds the recorded HPA.  Any failure is
logged and leaves the labels alone.
"""

from __future__ import annotations

import uuid as uuidlib
from typing import TYPE_CHECKING

from cxlemu.kernel.base.device import KernelError
from cxlemu.hw import lsa as lbl
from cxlemu.util.lazydc import dataclass

if TYPE_CHECKING:
    from cxlemu.kernel.cxl.region import CxlRegion
    from cxlemu.kernel.nvdimm.region import NdMapping
    from cxlemu.kernel.nvdimm.subsys import Nvdimm

SZ_256M = 256 << 20


def granularity_to_ig(g: int) -> int:
    return g.bit_length() - 1 - 8


def ig_to_granularity(ig: int) -> int:
    return 256 << ig


def write_region_labels(nv: "Nvdimm", r: "CxlRegion", mappings: list["NdMapping"]) -> None:
    from cxlemu.kernel.nvdimm.namespace import init_labels
    ways = len(mappings)
    for m in mappings:
        if m.ndd is None:
            continue
        try:
            init_labels(m)
            area = m.ndd.area()
            label = lbl.RegionLabel(uuid=r.uuid, nlabel=ways, position=m.position, dpa=m.start,
                                    rawsize=m.size, hpa=r.res.start, ig=granularity_to_ig(r.interleave_granularity),
                                    align=1)
            victims = [s for s, x in area.labels() if isinstance(x, lbl.RegionLabel) and x.uuid == r.uuid
                       and x.position == m.position]
            if victims and area.raw_slot(victims[0])[:0x40] == lbl.encode_label(label)[:0x40]:
                continue
            area.write_label(label, reap=victims)
        except (KernelError, lbl.LabelAreaError) as e:
            nv.kernel.log(f"{m.nvdimm.name}: region label update failed: {e}")


@dataclass
class _Member:
    memdev: object
    label: lbl.RegionLabel


def collect(nv: "Nvdimm") -> dict[uuidlib.UUID, list[_Member]]:
    sets: dict[uuidlib.UUID, list[_Member]] = {}
    for md in nv.kernel.cxl.memdevs:
        nmem = nv.nvdimm_of(md)
        if nmem is None or nmem.ndd is None:
            continue
        for _slot, x in nmem.ndd.active_labels():
            if isinstance(x, lbl.RegionLabel):
                sets.setdefault(x.uuid, []).append(_Member(md, x))
    return sets


def assemble(nv: "Nvdimm") -> list[str]:
    """Re-create every complete region label set; returns region names."""
    from cxlemu.kernel.base.device import bind_store, sysfs_show, sysfs_store
    from cxlemu.kernel.cxl.port import EndpointDecoder
    k = nv.kernel
    cxl = k.cxl.bus
    created = []
    existing = {r.uuid for r in k.cxl.regions.all()}
    for ruuid, members in sorted(collect(nv).items(), key=lambda kv: kv[1][0].label.hpa):
        if ruuid in existing:
            continue
        lab0 = members[0].label
        ways = lab0.nlabel
        by_pos = {}
        for m in members:
            x = m.label
            if (x.nlabel, x.ig, x.rawsize, x.hpa) != (ways, lab0.ig, lab0.rawsize, lab0.hpa):
                by_pos = {}
                break
            by_pos.setdefault(x.position, m)
        if sorted(by_pos) != list(range(ways)):
            k.log(f"region labels {ruuid}: incomplete set ({len(by_pos)} of {ways}), not assembled")
            continue
        rd = next((d for d in k.cxl.root_decoders() if d.contains(lab0.hpa, lab0.rawsize * ways)
                   and d.cap_pmem), None)
        if rd is None:
            k.log(f"region labels {ruuid}: no pmem window holds {lab0.hpa:#x}")
            continue

        def w(path: str, value: str) -> None:
            # the region ABI exactly as libcxl writes it (string + NUL)
            dev, _, attr = path.partition("/")
            sysfs_store(cxl.devices[dev], attr, value.encode() + b"\0")

        try:
            targets = []
            for pos in range(ways):
                md = by_pos[pos].memdev
                ep = md.endpoint
                d = next(x for x in ep.decoders if isinstance(x, EndpointDecoder) and x.dpa_start is None)
                w(f"{d.name}/mode", "pmem")
                w(f"{d.name}/dpa_size", hex(lab0.rawsize))
                if d.dpa_start != by_pos[pos].label.dpa:
                    raise KernelError(22, f"{d.name}: DPA {d.dpa_start:#x} != label {by_pos[pos].label.dpa:#x}")
                targets.append(d.name)
            name = sysfs_show(rd, "create_pmem_region").strip()
            w(f"{rd.name}/create_pmem_region", name)
            w(f"{name}/uuid", str(ruuid))
            w(f"{name}/interleave_granularity", str(ig_to_granularity(lab0.ig)))
            w(f"{name}/interleave_ways", str(ways))
            w(f"{name}/size", hex(lab0.rawsize * ways))
            for pos, t in enumerate(targets):
                w(f"{name}/target{pos}", t)
            w(f"{name}/commit", "1")
            bind_store(cxl.drivers["cxl_region"], name.encode() + b"\0")
            k.log(f"{name}: assembled from region labels {ruuid}")
            created.append(name)
        except (OSError, KernelError, StopIteration) as e:
            k.log(f"region labels {ruuid}: assembly failed: {e}")
    return created
