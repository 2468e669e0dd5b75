"""Memory management: NUMA nodes, memory blocks, hotplug, zones, memory
tiers and a page-allocation model (mm/, drivers/base/memory.c,
drivers/base/node.c, drivers/acpi/numa/).

Boot (``Mm.boot``, called once the e820 map is in iomem):

1. SRAT and CEDT give the nodes (numa.parse_numa) and the CFMWS block-size
   advice; ``probe_memory_block_size`` picks the block size
   ("x86/mm: Memory block size: NMB");
2. every e820 "usable" range becomes online boot memory: zones DMA/DMA32/
   Normal per node, memory blocks (a block spanning two zones has no zone
   and cannot be offlined), memblock reservations (the kernel image on the
   first node, the memmap of every node at the top of its memory);
3. HMAT gives the nodes' access0/access1 performance; memory tiers are set
   up (DRAM reference performance, every node with memory in a tier).

Sysfs devices (/sys/devices/system/{memory,node}, /sys/devices/virtual/
memory_tiering) are registered as soon as /sys/devices/system exists.

Other subsystems use: ``block_size``, ``region_node(start)``,
``hotplug.add_memory_driver_managed / remove_memory /
register_static_group / unregister_group``, ``tiers``, ``pages`` (the
allocation model), ``range_is_system_ram``.
"""

from __future__ import annotations

import bisect
from typing import TYPE_CHECKING

from cxlemu.kernel.base.device import Bus, device_add, device_del
from cxlemu.kernel.mm.alloc import PageModel, memmap_pages
from cxlemu.kernel.mm.hotplug import Hotplug
from cxlemu.kernel.mm.memory import MemoryBlock, MemoryRoot
from cxlemu.kernel.mm.node import NodeRoot
from cxlemu.kernel.mm.numa import NUMA_NO_NODE, parse_numa
from cxlemu.kernel.mm.numastate import NumaState
from cxlemu.kernel.mm.tiers import MemoryTiers, Perf
from cxlemu.kernel.mm.zones import PAGE_SHIFT, ZONE_DMA32, Policy, ZoneSet, online_type_from_str, split_by_boot_zone
from cxlemu.util.lazy import lazy_module

blocksize = lazy_module("cxlemu.kernel.mm.blocksize")   # memory block size arithmetic: at boot

if TYPE_CHECKING:
    from cxlemu.kernel.kernel import Kernel

KERNEL_IMAGE_RESERVE = 64 << 20      # kernel image + early allocations, first node


class Mm:
    _vm = None          # VmState, created on first use (kernel/mm/vmstate.py)
    _damon = None       # DAMON's admin state, created on first use (kernel/mm/damon/sysfs.py)

    @property
    def damon(self):
        """DAMON: the sysfs admin state and its kdamonds (kernel/mm/damon/)."""
        if self._damon is None:
            from cxlemu.kernel.mm.damon.sysfs import DamonAdmin
            self._damon = DamonAdmin()
        return self._damon

    @property
    def vm(self):
        """The VM's run-time state: frames, LRU, watermarks, address spaces, counters."""
        if self._vm is None:
            from cxlemu.kernel.mm.vmstate import VmState
            self._vm = VmState(self)
            failure = getattr(self, "failure", None)      # memory_failure (RAS), when the kernel has it
            if failure is not None and getattr(failure, "provider", None) is None:
                from cxlemu.kernel.mm.hwpoison import FramesProvider
                failure.provider = FramesProvider(self)
        return self._vm

    def vm_layout_changed(self) -> None:
        """Memory was onlined or offlined: frames, watermarks, cpusets."""
        if self._vm is not None:
            self._vm.memory_layout_changed()
        sched = getattr(self.kernel, "_sched", None)
        if sched is not None:
            sched.mems_changed()

    def offline_migrate_frames(self, blk) -> tuple[int, str] | None:
        """offline_pages() for the pages of processes in ``blk``: a long-term
        pinned page makes the range impossible to isolate (EBUSY, cxlemu's rule,
        see docs/fidelity.md); the others migrate to the other memory nodes,
        all or none (EINTR "signal backoff" when they do not fit)."""
        import errno
        vm = self._vm
        if vm is None or vm.frames is None or blk.id not in vm.frames.slot_of_block:
            return None
        import numpy as np
        from cxlemu.kernel.mm.frames import PG_PINNED
        from cxlemu.kernel.mm.migrate import MR_MEMORY_HOTPLUG, migrate_pages
        from cxlemu.kernel.mm.page_alloc import WMARK_MIN
        pf = vm.frames
        frames = pf.owned_in_slot(vm.frames.slot_of_block[blk.id])
        if not frames.size:
            return None
        if np.any(pf.flags[frames] & PG_PINNED):
            return errno.EBUSY, "failure to isolate range"
        from cxlemu.kernel.mm.alloc import zonelist_nodes
        others = [n for n in self.numa.state_nodes("memory") if n != blk.nid] or [blk.nid]
        targets = zonelist_nodes(blk.nid, others, self.numa.distance)
        pa = vm.page_alloc
        room = 0
        for n in targets:
            for z in (3, 2, 1, 0):
                if pa.zone_slots(n, z).size and not (n == blk.nid and z == blk.zone):
                    room += max(pa.headroom(n, z, WMARK_MIN), 0)
        if room < frames.size:
            return errno.EINTR, "signal backoff"
        res = migrate_pages(vm, frames, targets, MR_MEMORY_HOTPLUG, which=WMARK_MIN)
        if res.failed.size:
            return errno.EINTR, "signal backoff"
        return None

    def __init__(self, kernel: "Kernel"):
        self.kernel = kernel
        self.bus = Bus("memory")
        self.node_bus = Bus("node")
        kernel.buses["memory"] = self.bus
        kernel.buses["node"] = self.node_bus
        self.block_size = 128 << 20
        self.pages_per_block = self.block_size >> PAGE_SHIFT
        self.blocks: dict[int, MemoryBlock] = {}
        self.zone_blocks: dict[tuple[int, int], list[int]] = {}
        self.boot_spans: dict[tuple[int, int], tuple[int, int]] = {}   # (nid, zone) -> fixed span (multi-zone blocks)
        self.policy = Policy()
        self.default_online_type = 0
        self.mem_root: MemoryRoot | None = None
        self.node_root: NodeRoot | None = None
        self.registered = False
        self.numa = NumaState(self, parse_numa((), (), ()))
        self.hotplug = Hotplug(self)
        self.pages = PageModel(self)
        from cxlemu.kernel.mm.memory_failure import MemoryFailure
        self.failure = MemoryFailure(self)
        self.tiers = MemoryTiers(self)
        self.advice: int | None = None

    # ---- boot ------------------------------------------------------------------------------
    def boot(self) -> None:
        from cxlemu.hw.acpi import cedt as cedt_mod
        from cxlemu.hw.acpi.srat import MemoryAffinity, X2ApicAffinity, decode_srat
        k = self.kernel
        boot = k.platform.topology.boot
        tables = k.acpi_tables
        srat = decode_srat(tables["SRAT"]) if "SRAT" in tables else []
        cpu_aff = [(s.proximity_domain, s.x2apic_id) for s in srat if isinstance(s, X2ApicAffinity) and s.enabled]
        mem_aff = [(s.proximity_domain, s.base, s.length, s.hot_pluggable) for s in srat
                   if isinstance(s, MemoryAffinity) and s.enabled]
        windows = []
        if "CEDT" in tables:
            windows = [(s.base_hpa, s.window_size) for s in cedt_mod.decode_cedt(tables["CEDT"])
                       if isinstance(s, cedt_mod.Cfmws)]
        layout = parse_numa(cpu_aff, mem_aff, windows)
        if not layout.possible:               # no SRAT: everything on node 0 (dummy_numa_init)
            layout.map_pxm(0)
        if getattr(boot, "cxl_zone", "node") == "exmem":
            from cxlemu.kernel.mm.exmem import fold_windows
            fold_windows(layout)
        for line in layout.log:
            k.log(line)
        self.numa = NumaState(self, layout)
        if k.has("memory_block_advice"):
            adv = blocksize.cfmws_advice(windows)
            for _ in adv.bios_bugs:
                k.log("CFMWS: [BIOS BUG] base/size alignment violates spec")
            self.advice = adv.size
        usable = [(e.start, e.end) for e in k.platform.e820 if e.type == "usable" or
                  (e.type == "soft reserved" and not boot.soft_reserve)]
        boot_mem_end = max((e + 1 for _, e in usable), default=0)
        self.block_size = blocksize.probe_memory_block_size(boot_mem_end, hypervisor=boot.hypervisor, kernel=k.version,
                                                  advice=self.advice, explicit=boot.memory_block_size)
        self.pages_per_block = self.block_size >> PAGE_SHIFT
        k.log(f"x86/mm: Memory block size: {self.block_size >> 20}MB")
        self.policy = Policy(boot.online_policy, boot.auto_movable_ratio, boot.auto_movable_numa_aware,
                             boot.movable_node)
        t = online_type_from_str(boot.memhp_default_state)
        self.default_online_type = t if t >= 0 else 0
        self.mem_root = MemoryRoot(self, None)        # parented when /sys/devices/system exists
        self.node_root = NodeRoot(self, None)
        self._boot_memory(usable)
        for nid, node in self.numa.nodes.items():
            if node.has_memory or node.cpus:
                node.online = True
        if "HMAT" in tables:
            from cxlemu.hw.acpi.hmat import decode_hmat
            self.numa.parse_hmat(decode_hmat(tables["HMAT"]))
        self._boot_reservations()
        self._init_tiers()

    def _boot_memory(self, usable: list[tuple[int, int]]) -> None:
        ppb = self.pages_per_block
        layout = self.numa.layout
        per_block: dict[int, dict] = {}
        for start, end in sorted(usable):
            nid = layout.phys_to_target_node(start)
            if nid == NUMA_NO_NODE:
                nid = min(self.numa.nodes, default=0)
            sp, ep = start >> PAGE_SHIFT, (end + 1) >> PAGE_SHIFT
            for zidx, zs, ze in split_by_boot_zone(sp, ep):
                zone = self.numa.nodes[nid].zones[zidx]
                zone.grow(zs, ze - zs)
                zone.present += ze - zs
                zone.present_early += ze - zs
            pfn = sp
            while pfn < ep:
                bid = pfn // ppb
                stop = min(ep, (bid + 1) * ppb)
                info = per_block.setdefault(bid, {"nid": nid, "present": 0, "zones": set()})
                info["present"] += stop - pfn
                info["zones"].update(z for z, _, _ in split_by_boot_zone(pfn, stop))
                pfn = stop
        for bid, info in sorted(per_block.items()):
            blk = MemoryBlock(self, bid, info["nid"], early=True)
            blk.present = info["present"]
            blk.state = "online"
            zones = info["zones"]
            blk.zone = next(iter(zones)) if len(zones) == 1 else None
            if blk.zone is None:
                for z in zones:
                    self.boot_spans[(blk.nid, z)] = self._merge_span(self.boot_spans.get((blk.nid, z)),
                                                                     self._block_zone_span(bid, z))
            self.blocks[bid] = blk
            self.index_block(blk)

    def _block_zone_span(self, bid: int, zidx: int) -> tuple[int, int]:
        s, e = bid * self.pages_per_block, (bid + 1) * self.pages_per_block
        for z, zs, ze in split_by_boot_zone(s, e):
            if z == zidx:
                return zs, ze
        return s, s

    @staticmethod
    def _merge_span(a, b):
        if a is None:
            return b
        return min(a[0], b[0]), max(a[1], b[1])

    def _boot_reservations(self) -> None:
        """memblock: the kernel image low on the first node, each node's memmap at its top."""
        first = min((n for n, s in self.numa.nodes.items() if s.has_memory), default=None)
        if first is None:
            return
        need = KERNEL_IMAGE_RESERVE >> PAGE_SHIFT
        for blk in sorted((b for b in self.blocks.values() if b.nid == first), key=lambda b: b.id):
            take = min(need, blk.present - blk.reserved)
            blk.reserved += take
            need -= take
            if not need:
                break
        for nid, node in self.numa.nodes.items():
            need = memmap_pages(sum(z.present for z in node.zones.zones))
            for blk in sorted((b for b in self.blocks.values() if b.nid == nid), key=lambda b: -b.id):
                take = min(need, blk.present - blk.reserved)
                blk.reserved += take
                need -= take
                if not need:
                    break

    def _init_tiers(self) -> None:
        """memory_tier_init(): the DRAM reference from HMAT, boot memory nodes into tiers."""
        tiers = self.tiers
        mem_nodes = self.numa.state_nodes("memory")
        cpu_nodes = set(self.numa.state_nodes("cpu"))
        for nid in mem_nodes:
            if nid in cpu_nodes:
                perf = self.numa.hmat_perf.get(nid, {}).get(1)
                if perf is not None:
                    tiers.set_default_dram_perf(nid, perf, "ACPI HMAT")
        for nid in [n for n in mem_nodes if n in cpu_nodes] + [n for n in mem_nodes if n not in cpu_nodes]:
            tiers.set_node_memory_tier(nid)
        tiers.establish_demotion_targets()

    def late_boot(self) -> None:
        self.register_sysfs()

    # ---- sysfs registration ---------------------------------------------------------------
    def register_sysfs(self) -> None:
        if self.registered:
            return
        sysdirs = getattr(self.kernel, "sysdirs", None)
        if not sysdirs:
            return
        self.registered = True
        assert self.mem_root is not None and self.node_root is not None
        self.mem_root.parent = sysdirs["system"]
        device_add(self.mem_root)
        for bid in sorted(self.blocks):
            device_add(self.blocks[bid])
        self.node_root.parent = sysdirs["system"]
        device_add(self.node_root)
        for nid in self.numa.online_nodes():
            self.numa.register_node(nid)
        self.tiers.register_sysfs(sysdirs["virtual"])

    # ---- blocks ------------------------------------------------------------------------------
    def add_block(self, blk: MemoryBlock) -> None:
        self.blocks[blk.id] = blk
        if self.registered:
            device_add(blk)

    def remove_block(self, blk: MemoryBlock) -> None:
        self.unindex_block(blk)
        if blk.registered:
            device_del(blk)
        self.blocks.pop(blk.id, None)

    def index_block(self, blk: MemoryBlock) -> None:
        z = blk.zone if blk.zone is not None else ZONE_DMA32
        lst = self.zone_blocks.setdefault((blk.nid, z), [])
        i = bisect.bisect_left(lst, blk.id)
        if i == len(lst) or lst[i] != blk.id:
            lst.insert(i, blk.id)

    def unindex_block(self, blk: MemoryBlock) -> None:
        for key, lst in self.zone_blocks.items():
            if key[0] != blk.nid:
                continue
            i = bisect.bisect_left(lst, blk.id)
            if i < len(lst) and lst[i] == blk.id:
                del lst[i]
                return

    def blocks_of_node(self, nid: int) -> list[MemoryBlock]:
        return [b for b in self.blocks.values() if b.nid == nid]

    def all_zonesets(self) -> list[ZoneSet]:
        return [n.zones for n in self.numa.nodes.values()]

    def shrink_zone_span(self, nid: int, zidx: int, start_pfn: int, end_pfn: int) -> None:
        """shrink_zone_span(): only an end of the span can move."""
        z = self.numa.nodes[nid].zones[zidx]
        if z.empty or (start_pfn > z.start and end_pfn < z.end):
            return
        lo = hi = None
        for bid in self.zone_blocks.get((nid, zidx), ()):
            s = bid * self.pages_per_block
            lo = s if lo is None else min(lo, s)
            hi = s + self.pages_per_block if hi is None else max(hi, s + self.pages_per_block)
        fixed = self.boot_spans.get((nid, zidx))
        if fixed is not None:
            lo = fixed[0] if lo is None else min(lo, fixed[0])
            hi = fixed[1] if hi is None else max(hi, fixed[1])
        if lo is None:
            z.start = z.end = 0
        else:
            z.start, z.end = lo, hi

    # ---- node notifications -------------------------------------------------------------------
    def node_memory_online(self, nid: int) -> None:
        """MEM_ONLINE with status_change_nid: memory tiers, CXL node performance."""
        self.tiers.set_node_memory_tier(nid)
        self.tiers.establish_demotion_targets()
        perf = getattr(self.kernel, "perf", None)
        if perf is not None and hasattr(perf, "node_memory_online"):
            perf.node_memory_online(nid)

    def node_memory_offline(self, nid: int) -> None:
        if self.tiers.clear_node_memory_tier(nid):
            self.tiers.establish_demotion_targets()

    def adistance_sources(self, nid: int) -> list[Perf]:
        """The mt_calc_adistance notifier chain: HMAT, then CXL regions of the node."""
        out = []
        k = self.kernel
        hm = self.numa.hmat_perf.get(nid, {}).get(1)
        if hm is not None and k.has("adistance_hmat"):
            out.append(hm)
        perf = getattr(k, "perf", None)
        if perf is not None and hasattr(perf, "node_region_perfs") and k.has("adistance_cxl"):
            out.extend(perf.node_region_perfs(nid))
        return out

    # ---- queries for other subsystems ---------------------------------------------------------
    def region_node(self, start: int) -> int:
        """phys_to_target_node(), falling back like memory_add_physaddr_to_nid()."""
        return self.numa.layout.phys_to_target_node(start)

    def range_is_system_ram(self, start: int, end: int) -> bool:
        for _, r in self.kernel.iomem.walk():
            if r.name.startswith("System RAM") and r.overlaps(start, end):
                return True
        return False

    def node_stats(self, nid: int | None) -> dict[str, int]:
        st = {"present": 0, "managed": 0, "free": 0, "kernel": 0, "user": 0}
        for b in self.blocks.values():
            if (nid is not None and b.nid != nid) or not b.online:
                continue
            st["present"] += b.present
            st["managed"] += b.managed
            st["free"] += b.free
            st["kernel"] += b.kernel
            st["user"] += b.user
        return st

    def zone_stats(self, nid: int, zidx: int) -> dict[str, int]:
        st = {"managed": 0, "free": 0}
        for bid in self.zone_blocks.get((nid, zidx), ()):
            b = self.blocks[bid]
            if b.zone == zidx:
                st["managed"] += b.managed
                st["free"] += b.free
        return st

    def direct_map_kb(self) -> tuple[int, int, int]:
        total = sum(b.present for b in self.blocks.values() if b.online) * 4
        gig = total // (1 << 20) * (1 << 20)
        return 0, total - gig, gig

    # ---- /proc and /sys/kernel ---------------------------------------------------------------------
    def proc_files(self) -> dict:
        from cxlemu.kernel.mm.meminfo import buddyinfo
        return {"meminfo": self.proc_meminfo, "zoneinfo": self.proc_zoneinfo, "vmstat": self.proc_vmstat,
                "swaps": self.proc_swaps, "buddyinfo": lambda: buddyinfo(self)}

    def proc_vmstat(self) -> str:
        from cxlemu.kernel.mm.procfs import proc_vmstat
        return proc_vmstat(self)

    def proc_swaps(self) -> str:
        from cxlemu.kernel.mm.swap import format_swaps
        return format_swaps(list(self.vm.swap or []))

    def proc_meminfo(self) -> str:
        from cxlemu.kernel.mm.meminfo import meminfo
        return meminfo(self)

    def proc_zoneinfo(self) -> str:
        from cxlemu.kernel.mm.meminfo import zoneinfo
        return zoneinfo(self)
