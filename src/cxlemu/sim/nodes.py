"""The timing of each NUMA node, from the hardware behind it
(hw/timing.py): a node's boot DRAM (its topology ``[[numa]]`` entry) and the
CXL devices of the regions onlined into it (interleaved devices add their
bandwidth), blended by how many pages each contributes."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cxlemu.hw.timing import MemTiming, blend, calibrated, cxl_timing, dram_timing, interleave

if TYPE_CHECKING:
    from cxlemu.kernel.kernel import Kernel


def device_timing(kernel: "Kernel", hw) -> MemTiming:
    c = hw.topo.cdat
    hops = len(kernel.platform.path_to(hw))
    return cxl_timing(f"{hw.name}", c.read_latency, c.write_latency, c.read_bandwidth, c.write_bandwidth, hops,
                      getattr(hw.topo, "timing", None))


def region_timings(kernel: "Kernel", nid: int) -> list[tuple[MemTiming, int]]:
    """(timing, bytes) of each committed ram region whose memory is on ``nid``."""
    from cxlemu.kernel.cxl.region import COMMIT
    out = []
    for r in kernel.cxl.regions.all():
        if r.res is None or r.state != COMMIT or r.mode != "ram":
            continue
        if kernel.mm.region_node(r.res.start) != nid:
            continue
        members = [t.memdev.hw for t in r.members()]
        if members:
            out.append((interleave([device_timing(kernel, d) for d in members], r.name), r.size))
    return out


def node_timings(kernel: "Kernel") -> dict[int, MemTiming]:
    mm = kernel.mm
    topo = kernel.platform.topology
    out: dict[int, MemTiming] = {}
    for nid in mm.numa.state_nodes("memory"):
        early = sum(b.present for b in mm.blocks.values() if b.nid == nid and b.online and b.early)
        late = sum(b.present for b in mm.blocks.values() if b.nid == nid and b.online and not b.early)
        parts: list[tuple[MemTiming, float]] = []
        if early:
            pxm = mm.numa.layout.node_to_pxm.get(nid)
            e = next((n for n in topo.numa if n.node == pxm), None) or topo.numa[0]
            parts.append((dram_timing(f"node{nid}", e.read_latency, e.write_latency, e.read_bandwidth,
                                      e.write_bandwidth, e.timing), float(early)))
        if late:
            regs = region_timings(kernel, nid)
            if regs:
                tot = sum(sz for _, sz in regs)
                parts += [(t, late * sz / tot) for t, sz in regs]
            else:
                p = mm.numa.perf(nid, 1)
                t = calibrated("cxl-asic-x8")
                if p is not None and p.read_latency:
                    t = cxl_timing(f"node{nid}", p.read_latency, p.write_latency, p.read_bandwidth,
                                   p.write_bandwidth, 0)
                parts.append((t, float(late)))
        out[nid] = blend(parts, f"node{nid}")
    return out
