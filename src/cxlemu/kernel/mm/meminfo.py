"""/proc/meminfo, /proc/zoneinfo and nodeN/{meminfo,numastat,vmstat}
(fs/proc/meminfo.c, drivers/base/node.c, mm/vmstat.c), from the page model.

The numbers come from procfs.mem_counts(): managed/free pages of the
online blocks, the LRU lists and page kinds of the page frames (anonymous,
file, shmem, dirty, unevictable, hwpoison), kernel allocations as
unreclaimable slab, swap and zswap.  Lines cxlemu does not model are printed
as the kernel prints them, with 0.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cxlemu.kernel.mm.exmem import zone_name

if TYPE_CHECKING:
    from cxlemu.kernel.mm.subsys import Mm

KB_PER_PAGE = 4


def _kb(pages: int) -> int:
    return pages * KB_PER_PAGE


def node_meminfo(mm: "Mm", nid: int) -> str:
    from cxlemu.kernel.mm.procfs import mem_counts
    c = mem_counts(mm, nid)
    total, free = _kb(c["managed"]), _kb(c["free"])
    rows = [("MemTotal:", total), ("MemFree:", free), ("MemUsed:", total - free), ("SwapCached:", 0),
            ("Active:", _kb(c["active_anon"] + c["active_file"])),
            ("Inactive:", _kb(c["inactive_anon"] + c["inactive_file"])),
            ("Active(anon):", _kb(c["active_anon"])), ("Inactive(anon):", _kb(c["inactive_anon"])),
            ("Active(file):", _kb(c["active_file"])), ("Inactive(file):", _kb(c["inactive_file"])),
            ("Unevictable:", _kb(c["unevictable"])), ("Mlocked:", _kb(c["unevictable"])),
            ("Dirty:", _kb(c["dirty"])), ("Writeback:", _kb(c["writeback"])),
            ("FilePages:", _kb(c["file"] + c["shmem"])), ("Mapped:", _kb(c["mapped"])),
            ("AnonPages:", _kb(c["anon"])), ("Shmem:", _kb(c["shmem"])), ("KernelStack:", 0),
            ("PageTables:", 0), ("SecPageTables:", 0), ("NFS_Unstable:", 0), ("Bounce:", 0),
            ("WritebackTmp:", 0), ("KReclaimable:", 0), ("Slab:", _kb(c["kernel"])), ("SReclaimable:", 0),
            ("SUnreclaim:", _kb(c["kernel"])), ("AnonHugePages:", 0), ("ShmemHugePages:", 0),
            ("ShmemPmdMapped:", 0), ("FileHugePages:", 0), ("FilePmdMapped:", 0)]
    out = [f"Node {nid} {k:<16}{v:>8} kB\n" for k, v in rows]
    out += [f"Node {nid} HugePages_Total:     0\n", f"Node {nid} HugePages_Free:      0\n",
            f"Node {nid} HugePages_Surp:      0\n"]
    return "".join(out)


def node_numastat(mm: "Mm", nid: int) -> str:
    from cxlemu.kernel.mm.procfs import node_numastat as ns
    return ns(mm, nid)


def node_vmstat(mm: "Mm", nid: int) -> str:
    from cxlemu.kernel.mm.procfs import node_vmstat as nv
    return nv(mm, nid)


def meminfo(mm: "Mm") -> str:
    from cxlemu.kernel.mm.procfs import mem_counts, swap_totals
    c = mem_counts(mm)
    vm = mm._vm
    total, free = _kb(c["managed"]), _kb(c["free"])
    swap_total, swap_free = swap_totals(mm)
    z = vm.zswap if vm is not None else None
    low = sum(w[1] for w in vm.wmarks.values()) if vm is not None else 0
    avail = max(c["free"] - low, 0) + max(c["inactive_file"] + c["active_file"] - min(
        (c["inactive_file"] + c["active_file"]) // 2, low), 0)
    cached = c["file"] + c["shmem"]
    rows = [("MemTotal:", total), ("MemFree:", free), ("MemAvailable:", _kb(avail)), ("Buffers:", 0),
            ("Cached:", _kb(cached)), ("SwapCached:", 0),
            ("Active:", _kb(c["active_anon"] + c["active_file"])),
            ("Inactive:", _kb(c["inactive_anon"] + c["inactive_file"])),
            ("Active(anon):", _kb(c["active_anon"])), ("Inactive(anon):", _kb(c["inactive_anon"])),
            ("Active(file):", _kb(c["active_file"])), ("Inactive(file):", _kb(c["inactive_file"])),
            ("Unevictable:", _kb(c["unevictable"])), ("Mlocked:", _kb(c["unevictable"])),
            ("SwapTotal:", _kb(swap_total)), ("SwapFree:", _kb(swap_free)),
            ("Zswap:", (z.pool_pages * 4) if z is not None else 0),
            ("Zswapped:", (z.stored_pages * 4) if z is not None else 0),
            ("Dirty:", _kb(c["dirty"])), ("Writeback:", _kb(c["writeback"])), ("AnonPages:", _kb(c["anon"])),
            ("Mapped:", _kb(c["mapped"])), ("Shmem:", _kb(c["shmem"])), ("KReclaimable:", 0),
            ("Slab:", _kb(c["kernel"])), ("SReclaimable:", 0), ("SUnreclaim:", _kb(c["kernel"])),
            ("KernelStack:", 0), ("PageTables:", 0), ("SecPageTables:", 0), ("NFS_Unstable:", 0),
            ("Bounce:", 0), ("WritebackTmp:", 0), ("CommitLimit:", total // 2 + _kb(swap_total)),
            ("Committed_AS:", _kb(c["anon"] + c["shmem"])), ("VmallocTotal:", 34359738367),
            ("VmallocUsed:", 0), ("VmallocChunk:", 0), ("Percpu:", 0),
            ("HardwareCorrupted:", mm.failure.hardware_corrupted_kb()), ("AnonHugePages:", 0), ("ShmemHugePages:", 0),
            ("ShmemPmdMapped:", 0), ("FileHugePages:", 0), ("FilePmdMapped:", 0)]
    out = [f"{k:<16}{v:>8} kB\n" if k != "HardwareCorrupted:" else f"{k} {v:>5} kB\n" for k, v in rows]
    out += ["HugePages_Total:       0\n", "HugePages_Free:        0\n", "HugePages_Rsvd:        0\n",
            "HugePages_Surp:        0\n", f"{'Hugepagesize:':<16}{2048:>8} kB\n", f"{'Hugetlb:':<16}{0:>8} kB\n"]
    dm = mm.direct_map_kb()
    out += [f"{'DirectMap4k:':<16}{dm[0]:>8} kB\n", f"{'DirectMap2M:':<16}{dm[1]:>8} kB\n",
            f"{'DirectMap1G:':<16}{dm[2]:>8} kB\n"]
    return "".join(out)


def buddyinfo(mm: "Mm") -> str:
    """/proc/buddyinfo (mm/vmstat.c frag_show_print): free blocks per order
    of every populated zone; cxlemu keeps free pages per frame, not per buddy
    order, and reports them as order-0 blocks and maximal order-10 runs."""
    out = []
    for nid in mm.numa.online_nodes():
        for z in mm.numa.nodes[nid].zones.zones:
            if not z.present:
                continue
            free = mm.zone_stats(nid, z.idx)["free"]
            big, small = divmod(free, 1024)
            counts = [small] + [0] * 9 + [big]
            out.append(f"Node {nid}, zone {zone_name(mm.kernel, z.idx):>8} " +
                       "".join(f"{c:>7}" for c in counts) + " \n")
    return "".join(out)


def zoneinfo(mm: "Mm") -> str:
    """/proc/zoneinfo (mm/vmstat.c zoneinfo_show_print): per node, every zone
    with its free pages, watermarks, spans and (populated zones) counters."""
    from cxlemu.kernel.mm.procfs import mem_counts, node_values
    from cxlemu.kernel.mm.vmstat import NODE_STAT_ITEMS, NUMA_EVENT_ITEMS, ZONE_STAT_ITEMS
    vm = mm.vm
    out = []
    for nid in mm.numa.online_nodes():
        zs = mm.numa.nodes[nid].zones
        first_populated = next((z.idx for z in zs.zones if z.present), None)
        for z in zs.zones:
            c = mem_counts(mm, nid, z.idx)
            out.append(f"Node {nid}, zone {zone_name(mm.kernel, z.idx):>8}")
            if z.idx == first_populated:
                out.append("\n  per-node stats")
                nv = node_values(mm, mem_counts(mm, nid), nid)
                for item in NODE_STAT_ITEMS:
                    out.append(f"\n      {item:<12} {nv.get(item, 0)}")
            w = vm.wmarks.get((nid, z.idx), [0, 0, 0, 0])
            res = vm.lowmem.get((nid, z.idx), [0, 0, 0, 0])
            out.append(f"\n  pages free     {c['free']}"
                       f"\n        boost    0"
                       f"\n        min      {w[0]}"
                       f"\n        low      {w[1]}"
                       f"\n        high     {w[2]}"
                       f"\n        promo    {w[3]}"
                       f"\n        spanned  {0 if z.empty else z.end - z.start}"
                       f"\n        present  {z.present}"
                       f"\n        managed  {c['managed']}"
                       f"\n        cma      0")
            out.append("\n        protection: (" + ", ".join(str(x) for x in res) + ")")
            if not z.present:
                out.append("\n")
                continue
            zv = {"nr_free_pages": c["free"], "nr_zone_inactive_anon": c["inactive_anon"],
                  "nr_zone_active_anon": c["active_anon"], "nr_zone_inactive_file": c["inactive_file"],
                  "nr_zone_active_file": c["active_file"], "nr_zone_unevictable": c["unevictable"],
                  "nr_zone_write_pending": c["dirty"], "nr_mlock": c["unevictable"]}
            for item in ZONE_STAT_ITEMS:
                out.append(f"\n      {item:<12} {zv.get(item, 0)}")
            numa = vm.vmstat.numa_events.get(nid, {}) if z.idx == first_populated else {}
            for item in NUMA_EVENT_ITEMS:
                out.append(f"\n      {item:<12} {numa.get(item, 0)}")
            out.append(f"\n  node_unreclaimable:  {int(vm.kswapd_of(nid).failures >= 16)}"
                       f"\n  start_pfn:           {z.start if not z.empty else 0}\n")
    return "".join(out)
