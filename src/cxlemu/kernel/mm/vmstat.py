"""VM counters: /proc/vmstat, nodeN/vmstat, nodeN/numastat (mm/vmstat.c,
drivers/base/node.c).

Names and order are those of ``vmstat_text[]`` (Linux 6.6 with
CONFIG_NUMA, NUMA_BALANCING, MIGRATION, COMPACTION, TRANSPARENT_HUGEPAGE,
SWAP, ZSWAP and x86; zone counters for DMA, DMA32, Normal, Movable).

Three kinds of numbers:

* *events* (``vm_event_item``): monotonic, global (pgfault, pswpout,
  numa_hint_faults, pgsteal_kswapd ...), kept in ``VmStat.events``;
* *node events* among the ``node_stat_item`` counters (pgpromote_success,
  pgdemote_kswapd, workingset_refault_anon ...) and the NUMA allocation
  events (numa_hit ...), kept per node;
* *gauges* (nr_free_pages, nr_active_anon, nr_anon_pages ...) computed when
  read from the page frames and memory blocks, so they are always true.

Counters stay across workload runs, as on a machine that keeps running.
"""

from __future__ import annotations

from dataclasses import field

from cxlemu.util.lazydc import dataclass

ZONE_SUFFIX = ("dma", "dma32", "normal", "movable")

ZONE_STAT_ITEMS = ("nr_free_pages", "nr_zone_inactive_anon", "nr_zone_active_anon", "nr_zone_inactive_file",
                   "nr_zone_active_file", "nr_zone_unevictable", "nr_zone_write_pending", "nr_mlock",
                   "nr_bounce", "nr_zspages", "nr_free_cma")
NUMA_EVENT_ITEMS = ("numa_hit", "numa_miss", "numa_foreign", "numa_interleave", "numa_local", "numa_other")
NODE_STAT_ITEMS = ("nr_inactive_anon", "nr_active_anon", "nr_inactive_file", "nr_active_file", "nr_unevictable",
                   "nr_slab_reclaimable", "nr_slab_unreclaimable", "nr_isolated_anon", "nr_isolated_file",
                   "workingset_nodes", "workingset_refault_anon", "workingset_refault_file",
                   "workingset_activate_anon", "workingset_activate_file", "workingset_restore_anon",
                   "workingset_restore_file", "workingset_nodereclaim", "nr_anon_pages", "nr_mapped",
                   "nr_file_pages", "nr_dirty", "nr_writeback", "nr_writeback_temp", "nr_shmem",
                   "nr_shmem_hugepages", "nr_shmem_pmdmapped", "nr_file_hugepages", "nr_file_pmdmapped",
                   "nr_anon_transparent_hugepages", "nr_vmscan_write", "nr_vmscan_immediate_reclaim",
                   "nr_dirtied", "nr_written", "nr_throttled_written", "nr_kernel_misc_reclaimable",
                   "nr_foll_pin_acquired", "nr_foll_pin_released", "nr_kernel_stack", "nr_page_table_pages",
                   "nr_sec_page_table_pages", "nr_swapcached", "pgpromote_success", "pgpromote_candidate",
                   "pgdemote_kswapd", "pgdemote_direct", "pgdemote_khugepaged")
WRITEBACK_STAT_ITEMS = ("nr_dirty_threshold", "nr_dirty_background_threshold")
VM_EVENT_ITEMS = (
    ("pgpgin", "pgpgout", "pswpin", "pswpout")
    + tuple(f"pgalloc_{z}" for z in ZONE_SUFFIX) + tuple(f"allocstall_{z}" for z in ZONE_SUFFIX)
    + tuple(f"pgskip_{z}" for z in ZONE_SUFFIX)
    + ("pgfree", "pgactivate", "pgdeactivate", "pglazyfree", "pgfault", "pgmajfault", "pglazyfreed",
       "pgrefill", "pgreuse", "pgsteal_kswapd", "pgsteal_direct", "pgsteal_khugepaged", "pgscan_kswapd",
       "pgscan_direct", "pgscan_khugepaged", "pgscan_direct_throttle", "pgscan_anon", "pgscan_file",
       "pgsteal_anon", "pgsteal_file", "zone_reclaim_failed", "pginodesteal", "slabs_scanned",
       "kswapd_inodesteal", "kswapd_low_wmark_hit_quickly", "kswapd_high_wmark_hit_quickly", "pageoutrun",
       "pgrotated", "drop_pagecache", "drop_slab", "oom_kill", "numa_pte_updates", "numa_huge_pte_updates",
       "numa_hint_faults", "numa_hint_faults_local", "numa_pages_migrated", "pgmigrate_success",
       "pgmigrate_fail", "thp_migration_success", "thp_migration_fail", "thp_migration_split",
       "compact_migrate_scanned", "compact_free_scanned", "compact_isolated", "compact_stall", "compact_fail",
       "compact_success", "compact_daemon_wake", "compact_daemon_migrate_scanned",
       "compact_daemon_free_scanned", "unevictable_pgs_culled", "unevictable_pgs_scanned",
       "unevictable_pgs_rescued", "unevictable_pgs_mlocked", "unevictable_pgs_munlocked",
       "unevictable_pgs_cleared", "unevictable_pgs_stranded", "thp_fault_alloc", "thp_fault_fallback",
       "thp_fault_fallback_charge", "thp_collapse_alloc", "thp_collapse_alloc_failed", "thp_file_alloc",
       "thp_file_fallback", "thp_file_fallback_charge", "thp_file_mapped", "thp_split_page",
       "thp_split_page_failed", "thp_deferred_split_page", "thp_split_pmd", "thp_scan_exceed_none_pte",
       "thp_scan_exceed_swap_pte", "thp_scan_exceed_share_pte", "thp_split_pud", "thp_zero_page_alloc",
       "thp_zero_page_alloc_failed", "thp_swpout", "thp_swpout_fallback", "swap_ra", "swap_ra_hit",
       "zswpin", "zswpout", "zswpwb", "direct_map_level2_splits", "direct_map_level3_splits"))

NODE_EVENTS = ("workingset_refault_anon", "workingset_refault_file", "workingset_activate_anon",
               "workingset_activate_file", "workingset_restore_anon", "workingset_restore_file",
               "workingset_nodereclaim", "nr_vmscan_write", "nr_vmscan_immediate_reclaim", "nr_dirtied",
               "nr_written", "nr_foll_pin_acquired", "nr_foll_pin_released", "pgpromote_success",
               "pgpromote_candidate", "pgdemote_kswapd", "pgdemote_direct", "pgdemote_khugepaged")


@dataclass
class VmStat:
    """The kernel's event counters (gauges are computed by the readers)."""
    events: dict[str, int] = field(default_factory=lambda: dict.fromkeys(VM_EVENT_ITEMS, 0))
    node_events: dict[int, dict[str, int]] = field(default_factory=dict)
    numa_events: dict[int, dict[str, int]] = field(default_factory=dict)

    def count(self, name: str, n: int = 1) -> None:
        """count_vm_events()."""
        if n:
            self.events[name] = self.events.get(name, 0) + int(n)

    def node(self, nid: int) -> dict[str, int]:
        d = self.node_events.get(nid)
        if d is None:
            d = self.node_events[nid] = dict.fromkeys(NODE_EVENTS, 0)
        return d

    def count_node(self, nid: int, name: str, n: int = 1) -> None:
        """mod_node_page_state() for the event-like node counters."""
        if n:
            d = self.node(nid)
            d[name] = d.get(name, 0) + int(n)

    def numa(self, nid: int) -> dict[str, int]:
        d = self.numa_events.get(nid)
        if d is None:
            d = self.numa_events[nid] = dict.fromkeys(NUMA_EVENT_ITEMS, 0)
        return d

    def count_numa(self, nid: int, name: str, n: int = 1) -> None:
        if n:
            d = self.numa(nid)
            d[name] += int(n)

    def node_event_total(self, name: str) -> int:
        return sum(d.get(name, 0) for d in self.node_events.values())


def format_vmstat(zone_values: dict[str, int], numa_values: dict[str, int], node_values: dict[str, int],
                  writeback: dict[str, int], events: dict[str, int]) -> str:
    """/proc/vmstat: "name value" lines in vmstat_text[] order."""
    out = []
    for n in ZONE_STAT_ITEMS:
        out.append(f"{n} {zone_values.get(n, 0)}\n")
    for n in NUMA_EVENT_ITEMS:
        out.append(f"{n} {numa_values.get(n, 0)}\n")
    for n in NODE_STAT_ITEMS:
        out.append(f"{n} {node_values.get(n, 0)}\n")
    for n in WRITEBACK_STAT_ITEMS:
        out.append(f"{n} {writeback.get(n, 0)}\n")
    for n in VM_EVENT_ITEMS:
        out.append(f"{n} {events.get(n, 0)}\n")
    return "".join(out)


def format_node_vmstat(zone_values: dict[str, int], numa_values: dict[str, int],
                       node_values: dict[str, int]) -> str:
    """drivers/base/node.c node_read_vmstat(): zone items, NUMA events, node items."""
    out = [f"{n} {zone_values.get(n, 0)}\n" for n in ZONE_STAT_ITEMS]
    out += [f"{n} {numa_values.get(n, 0)}\n" for n in NUMA_EVENT_ITEMS]
    out += [f"{n} {node_values.get(n, 0)}\n" for n in NODE_STAT_ITEMS]
    return "".join(out)


def format_numastat(numa_values: dict[str, int]) -> str:
    """drivers/base/node.c node_read_numastat()."""
    v = numa_values
    return (f"numa_hit {v.get('numa_hit', 0)}\nnuma_miss {v.get('numa_miss', 0)}\n"
            f"numa_foreign {v.get('numa_foreign', 0)}\ninterleave_hit {v.get('numa_interleave', 0)}\n"
            f"local_node {v.get('numa_local', 0)}\nother_node {v.get('numa_other', 0)}\n")
