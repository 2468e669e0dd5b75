"""Memory numbers for /proc/meminfo, /proc/vmstat, /proc/zoneinfo, the node
files and /proc/<pid> (fs/proc/meminfo.c, mm/vmstat.c, drivers/base/node.c,
fs/proc/task_mmu.c), computed from the real page state: the memory blocks'
allocation model and, while processes or files own pages, the page frames.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from cxlemu.kernel.mm.frames import (PG_ACTIVE, PG_ANON, PG_DIRTY, PG_HWPOISON, PG_LRU, PG_SWAPBACKED,
                                     PG_UNEVICTABLE, PG_WRITEBACK)
from cxlemu.kernel.mm.vmstat import format_vmstat

if TYPE_CHECKING:
    from cxlemu.kernel.mm.subsys import Mm

COUNT_KEYS = ("managed", "present", "free", "kernel", "model_user", "anon", "file", "shmem", "inactive_anon",
              "active_anon", "inactive_file", "active_file", "unevictable", "dirty", "writeback", "mapped",
              "hwpoison")


def frame_counts(mm: "Mm") -> dict[tuple[int, int], dict[str, int]]:
    """(node, zone) -> page-state counts from the frames (empty without frames)."""
    vm = mm._vm
    out: dict[tuple[int, int], dict[str, int]] = {}
    if vm is None or vm.frames is None:
        return out
    pf = vm.frames
    owned = np.flatnonzero(pf.owner >= 0)
    if not owned.size:
        return out
    fl = pf.flags[owned]
    key = pf.node[owned].astype(np.int64) * 4 + pf.zone[owned].astype(np.int64)
    nk = int(key.max()) + 1

    def cnt(mask) -> np.ndarray:
        return np.bincount(key[mask], minlength=nk)

    anon = (fl & PG_ANON) != 0
    sb = (fl & PG_SWAPBACKED) != 0
    lru = (fl & PG_LRU) != 0
    act = (fl & PG_ACTIVE) != 0
    cols = {
        "anon": cnt(anon), "shmem": cnt(sb & ~anon), "file": cnt(~sb),
        "inactive_anon": cnt(lru & sb & ~act), "active_anon": cnt(lru & sb & act),
        "inactive_file": cnt(lru & ~sb & ~act), "active_file": cnt(lru & ~sb & act),
        "unevictable": cnt((fl & PG_UNEVICTABLE) != 0), "dirty": cnt((fl & PG_DIRTY) != 0),
        "writeback": cnt((fl & PG_WRITEBACK) != 0), "mapped": cnt(~anon),
    }
    hw = np.flatnonzero((pf.flags & PG_HWPOISON) != 0)
    hwk = np.bincount(pf.node[hw].astype(np.int64) * 4 + np.maximum(pf.zone[hw], 0).astype(np.int64),
                      minlength=nk) if hw.size else np.zeros(nk, np.int64)
    for kk in range(max(nk, hwk.size)):
        row = {c: int(v[kk]) if kk < v.size else 0 for c, v in cols.items()}
        row["hwpoison"] = int(hwk[kk]) if kk < hwk.size else 0
        if any(row.values()):
            out[(kk // 4, kk % 4)] = row
    return out


def mem_counts(mm: "Mm", nid: int | None = None, zone: int | None = None) -> dict[str, int]:
    """Page counts of the machine, a node, or a zone of a node."""
    c = dict.fromkeys(COUNT_KEYS, 0)
    vm = mm._vm
    pf = vm.frames if vm is not None else None
    for b in mm.blocks.values():
        if not b.online or (nid is not None and b.nid != nid) or (zone is not None and b.zone != zone):
            continue
        c["managed"] += b.managed
        c["present"] += b.present
        c["free"] += b.free
        c["kernel"] += b.kernel
        procs = 0
        if pf is not None and b.id in pf.slot_of_block:
            procs = int(pf.proc_pages[pf.slot_of_block[b.id]])
        c["model_user"] += b.user - procs
    for (n, z), row in frame_counts(mm).items():
        if (nid is not None and n != nid) or (zone is not None and z != zone):
            continue
        for k2, v in row.items():
            c[k2] += v
    # the block model's movable allocations show as anonymous memory on the active list
    c["anon"] += c["model_user"]
    c["active_anon"] += c["model_user"]
    return c


def swap_totals(mm: "Mm") -> tuple[int, int]:
    vm = mm._vm
    devs = list(vm.swap or []) if vm is not None else []
    total = sum(d.slots for d in devs)
    used = sum(d.used for d in devs)
    return total, total - used


def proc_vmstat(mm: "Mm") -> str:
    vm = mm.vm
    c = mem_counts(mm)
    zone_v = {"nr_free_pages": c["free"], "nr_zone_inactive_anon": c["inactive_anon"],
              "nr_zone_active_anon": c["active_anon"], "nr_zone_inactive_file": c["inactive_file"],
              "nr_zone_active_file": c["active_file"], "nr_zone_unevictable": c["unevictable"],
              "nr_zone_write_pending": c["dirty"] + c["writeback"], "nr_mlock": c["unevictable"],
              "nr_zspages": vm.zswap.pool_pages if vm.zswap is not None else 0}
    numa_v: dict[str, int] = {}
    for d in vm.vmstat.numa_events.values():
        for k2, v in d.items():
            numa_v[k2] = numa_v.get(k2, 0) + v
    node_v = node_values(mm, c, None)
    avail = c["free"] + c["file"]
    wb = {"nr_dirty_threshold": avail * 20 // 100, "nr_dirty_background_threshold": avail * 10 // 100}
    return format_vmstat(zone_v, numa_v, node_v, wb, vm.vmstat.events)


def node_values(mm: "Mm", c: dict[str, int], nid: int | None) -> dict[str, int]:
    vm = mm.vm
    v = {"nr_inactive_anon": c["inactive_anon"], "nr_active_anon": c["active_anon"],
         "nr_inactive_file": c["inactive_file"], "nr_active_file": c["active_file"],
         "nr_unevictable": c["unevictable"], "nr_slab_unreclaimable": c["kernel"],
         "nr_anon_pages": c["anon"], "nr_mapped": c["mapped"], "nr_file_pages": c["file"] + c["shmem"],
         "nr_dirty": c["dirty"], "nr_writeback": c["writeback"], "nr_shmem": c["shmem"]}
    ev = vm.vmstat.node_events
    for n, d in ev.items():
        if nid is not None and n != nid:
            continue
        for k2, x in d.items():
            v[k2] = v.get(k2, 0) + x
    return v


def node_vmstat(mm: "Mm", nid: int) -> str:
    from cxlemu.kernel.mm.vmstat import format_node_vmstat
    c = mem_counts(mm, nid)
    zone_v = {"nr_free_pages": c["free"], "nr_zone_inactive_anon": c["inactive_anon"],
              "nr_zone_active_anon": c["active_anon"], "nr_zone_inactive_file": c["inactive_file"],
              "nr_zone_active_file": c["active_file"], "nr_zone_unevictable": c["unevictable"],
              "nr_zone_write_pending": c["dirty"] + c["writeback"], "nr_mlock": c["unevictable"]}
    numa_v = dict(mm.vm.vmstat.numa_events.get(nid, {}))
    return format_node_vmstat(zone_v, numa_v, node_values(mm, c, nid))


def node_numastat(mm: "Mm", nid: int) -> str:
    from cxlemu.kernel.mm.vmstat import format_numastat
    return format_numastat(mm.vm.vmstat.numa_events.get(nid, {}))


# ---- /proc/<pid> -----------------------------------------------------------------------------------
def task_files(kernel, t) -> dict:
    return {"status": (lambda: task_status(kernel, t), None, 0o444),
            "numa_maps": (lambda: task_numa_maps(kernel, t), None, 0o444),
            "comm": (lambda: f"{t.comm}\n", None, 0o644)}


def task_status(kernel, t) -> str:
    from cxlemu.kernel.mm.numa import nodelist
    mm = t.mm
    rss = mm.rss() * 4 if mm is not None else 0
    vmsize = mm.total_vm * 4 if mm is not None else 0
    swap = int(np.count_nonzero(mm.pt <= -2)) * 4 if mm is not None and mm.pt.size else 0
    return (f"Name:\t{t.comm}\nState:\tR (running)\nTgid:\t{t.pid}\nPid:\t{t.pid}\nPPid:\t1\n"
            f"VmSize:\t{vmsize:8d} kB\nVmRSS:\t{rss:8d} kB\nVmSwap:\t{swap:8d} kB\nThreads:\t{t.nthreads}\n"
            f"Cpus_allowed_list:\t{nodelist(t.cpus_allowed)}\n"
            f"Mems_allowed_list:\t{nodelist(t.allowed_mems())}\n")


def task_numa_maps(kernel, t) -> str:
    """fs/proc/task_mmu.c show_numa_map(): one line per VMA."""
    from cxlemu.kernel.mm import mempolicy as mp
    mm = t.mm
    if mm is None:
        return ""
    pf = kernel.mm.vm.frames
    out = []
    for v in mm.vmas:
        pol = v.policy if v.policy is not None else t.mempolicy
        if pol is None:
            ps = "default"
        elif pol.mode == mp.MPOL_LOCAL:
            ps = "local"
        else:
            name = {mp.MPOL_PREFERRED: "prefer", mp.MPOL_BIND: "bind", mp.MPOL_INTERLEAVE: "interleave",
                    mp.MPOL_PREFERRED_MANY: "prefer (many)",
                    mp.MPOL_WEIGHTED_INTERLEAVE: "weighted interleave"}.get(pol.mode, "default")
            flags = ""
            if pol.flags & mp.MPOL_F_STATIC_NODES:
                flags = "=static"
            elif pol.flags & mp.MPOL_F_RELATIVE_NODES:
                flags = "=relative"
            ps = f"{name}{flags}:{mp.format_nodes(pol.nodes)}"
        pte = mm.pt[v.start:v.end]
        fr = (pte[pte >= 0] & ((1 << 30) - 1)).astype(np.int64)
        parts = [f"{v.vm_start:x} {ps}"]
        if v.kind == "file":
            parts.append(f"file=/tmp/{v.name}")
        elif v.kind == "shmem":
            parts.append(f"file=/dev/zero (deleted)")
        if fr.size and pf is not None:
            anon = int(np.count_nonzero(pf.flags[fr] & PG_ANON))
            if v.kind == "anon":
                parts.append(f"anon={anon}")
            parts.append(f"dirty={int(np.count_nonzero(pf.flags[fr] & PG_DIRTY)) if v.kind == 'file' else anon}")
            nodes = np.bincount(pf.node[fr].astype(np.int64))
            parts += [f"N{n}={int(nodes[n])}" for n in np.flatnonzero(nodes).tolist()]
        swapped = int(np.count_nonzero(pte <= -2))
        if swapped:
            parts.append(f"swapcache=0 active=0 swap={swapped}")
        parts.append("kernelpagesize_kB=4")
        out.append(" ".join(parts) + "\n")
    return "".join(out)
