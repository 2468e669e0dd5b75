"""/proc/meminfo, /proc/zoneinfo and nodeN/{meminfo,numastat,vmstat}
(fs/proc/meminfo.c, drivers/base/node.c, mm/vmstat.c), from the page model.

Only what cxlemu models carries numbers: MemTotal (managed pages of online
blocks), MemFree, MemUsed, AnonPages/Active(anon) (user allocations),
Slab/SUnreclaim (kernel allocations); the rest of the lines are printed as
the kernel prints them, with 0.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cxlemu.kernel.mm.zones import ZONE_NAMES

if TYPE_CHECKING:
    from cxlemu.kernel.mm.subsys import Mm

KB_PER_PAGE = 4


def _kb(pages: int) -> int:
    return pages * KB_PER_PAGE


def node_meminfo(mm: "Mm", nid: int) -> str:
    st = mm.node_stats(nid)
    total, free = _kb(st["managed"]), _kb(st["free"])
    anon, slab = _kb(st["user"]), _kb(st["kernel"])
    rows = [("MemTotal:", total), ("MemFree:", free), ("MemUsed:", total - free), ("SwapCached:", 0),
            ("Active:", anon), ("Inactive:", 0), ("Active(anon):", anon), ("Inactive(anon):", 0),
            ("Active(file):", 0), ("Inactive(file):", 0), ("Unevictable:", 0), ("Mlocked:", 0),
            ("Dirty:", 0), ("Writeback:", 0), ("FilePages:", 0), ("Mapped:", 0), ("AnonPages:", anon),
            ("Shmem:", 0), ("KernelStack:", 0), ("PageTables:", 0), ("SecPageTables:", 0),
            ("NFS_Unstable:", 0), ("Bounce:", 0), ("WritebackTmp:", 0), ("KReclaimable:", 0),
            ("Slab:", slab), ("SReclaimable:", 0), ("SUnreclaim:", slab), ("AnonHugePages:", 0),
            ("ShmemHugePages:", 0), ("ShmemPmdMapped:", 0), ("FileHugePages:", 0), ("FilePmdMapped:", 0)]
    out = [f"Node {nid} {k:<16}{v:>8} kB\n" for k, v in rows]
    out += [f"Node {nid} HugePages_Total:     0\n", f"Node {nid} HugePages_Free:      0\n",
            f"Node {nid} HugePages_Surp:      0\n"]
    return "".join(out)


def node_numastat(mm: "Mm", nid: int) -> str:
    st = mm.node_stats(nid)
    hits = st["user"] + st["kernel"]
    return (f"numa_hit {hits}\nnuma_miss 0\nnuma_foreign 0\ninterleave_hit 0\n"
            f"local_node {hits}\nother_node 0\n")


def node_vmstat(mm: "Mm", nid: int) -> str:
    st = mm.node_stats(nid)
    return (f"nr_free_pages {st['free']}\nnr_anon_pages {st['user']}\n"
            f"nr_slab_unreclaimable_B {st['kernel'] * 4096}\n")


def meminfo(mm: "Mm") -> str:
    st = mm.node_stats(None)
    total, free = _kb(st["managed"]), _kb(st["free"])
    anon, slab = _kb(st["user"]), _kb(st["kernel"])
    rows = [("MemTotal:", total), ("MemFree:", free), ("MemAvailable:", free), ("Buffers:", 0),
            ("Cached:", 0), ("SwapCached:", 0), ("Active:", anon), ("Inactive:", 0),
            ("Active(anon):", anon), ("Inactive(anon):", 0), ("Active(file):", 0), ("Inactive(file):", 0),
            ("Unevictable:", 0), ("Mlocked:", 0), ("SwapTotal:", 0), ("SwapFree:", 0), ("Zswap:", 0),
            ("Zswapped:", 0), ("Dirty:", 0), ("Writeback:", 0), ("AnonPages:", anon), ("Mapped:", 0),
            ("Shmem:", 0), ("KReclaimable:", 0), ("Slab:", slab), ("SReclaimable:", 0),
            ("SUnreclaim:", slab), ("KernelStack:", 0), ("PageTables:", 0), ("SecPageTables:", 0),
            ("NFS_Unstable:", 0), ("Bounce:", 0), ("WritebackTmp:", 0), ("CommitLimit:", total // 2),
            ("Committed_AS:", anon), ("VmallocTotal:", 34359738367), ("VmallocUsed:", 0),
            ("VmallocChunk:", 0), ("Percpu:", 0), ("HardwareCorrupted:", mm.failure.hardware_corrupted_kb()),
            ("AnonHugePages:", 0),
            ("ShmemHugePages:", 0), ("ShmemPmdMapped:", 0), ("FileHugePages:", 0), ("FilePmdMapped:", 0)]
    out = [f"{k:<16}{v:>8} kB\n" if k != "HardwareCorrupted:" else f"{k} {v:>5} kB\n" for k, v in rows]
    out += ["HugePages_Total:       0\n", "HugePages_Free:        0\n", "HugePages_Rsvd:        0\n",
            "HugePages_Surp:        0\n", f"{'Hugepagesize:':<16}{2048:>8} kB\n", f"{'Hugetlb:':<16}{0:>8} kB\n"]
    dm = mm.direct_map_kb()
    out += [f"{'DirectMap4k:':<16}{dm[0]:>8} kB\n", f"{'DirectMap2M:':<16}{dm[1]:>8} kB\n",
            f"{'DirectMap1G:':<16}{dm[2]:>8} kB\n"]
    return "".join(out)


def zoneinfo(mm: "Mm") -> str:
    """A subset of /proc/zoneinfo: per populated zone, its free/present/managed
    pages and span (mm/vmstat.c zoneinfo_show_print)."""
    out = []
    for nid in mm.numa.online_nodes():
        zs = mm.numa.nodes[nid].zones
        for z in zs.zones:
            st = mm.zone_stats(nid, z.idx)
            out.append(f"Node {nid}, zone {ZONE_NAMES[z.idx]:>8}\n")
            out.append(f"  pages free     {st['free']}\n")
            out.append(f"        present  {z.present}\n")
            out.append(f"        managed  {st['managed']}\n")
            out.append(f"  start_pfn:           {z.start if not z.empty else 0}\n")
            out.append(f"  spanned  {0 if z.empty else z.end - z.start}\n")
    return "".join(out)
