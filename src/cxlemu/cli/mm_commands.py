"""``cxlemu`` subcommands for volatile memory: memory blocks, page
allocations and NUMA nodes.

* ``cxlemu blocks NAME`` — lsmem-like table (range, size, state, removable,
  block ids, node, zones) and the capacity kmem lost to block alignment;
* ``cxlemu mem NAME alloc (--kernel SIZE | --user SIZE) [--node N]``,
  ``cxlemu mem NAME free ID``, ``cxlemu mem NAME stat`` — the page-allocation
  model: kernel allocations are unmovable and never use ZONE_MOVABLE, user
  allocations are movable; they decide whether memory can be offlined;
* ``cxlemu nodes NAME`` — ``numactl -H`` and, per node, the access0/access1
  read/write latency and bandwidth, the memory tier and demotion targets.
"""

from __future__ import annotations

import argparse
import sys


def _store():
    from cxlemu.machine.store import Store
    return Store()


def register(add) -> None:
    try:
        sp = add("blocks", cmd_blocks, "memory blocks: state, zone, node (like lsmem)")
        sp.add_argument("name")
        sp.add_argument("--json", action="store_true", help="print JSON")
    except argparse.ArgumentError:
        pass                      # the placeholder in cli/commands.py uses kernel/mm/lsmem.py as well
    sp = add("mem", cmd_mem, "page allocations: alloc / free / stat (kernel vs user, per node and zone)")
    sp.add_argument("name")
    msub = sp.add_subparsers(dest="mem_action", metavar="ACTION", required=True)
    a = msub.add_parser("alloc", help="allocate kernel (unmovable) or user (movable) memory")
    kind = a.add_mutually_exclusive_group(required=True)
    kind.add_argument("--kernel", metavar="SIZE", help="unmovable allocation (GFP_KERNEL: never ZONE_MOVABLE)")
    kind.add_argument("--user", metavar="SIZE", help="movable allocation (GFP_HIGHUSER_MOVABLE)")
    a.add_argument("--node", type=int, default=-1, help="preferred node (falls back by distance)")
    f = msub.add_parser("free", help="free an allocation")
    f.add_argument("id", type=int)
    st = msub.add_parser("stat", help="allocations and per-node, per-zone usage")
    st.add_argument("--json", action="store_true", help="print JSON")
    sp = add("nodes", cmd_nodes, "NUMA nodes: numactl -H plus latency/bandwidth, tiers and demotion")
    sp.add_argument("name")
    sp.add_argument("--json", action="store_true", help="print JSON")


def cmd_blocks(args) -> int:
    from cxlemu.cli import views
    from cxlemu.kernel.mm.lsmem import lsmem
    with _store().open(args.name, write=False) as m:
        if views.want_json(args) or views.on_terminal():
            views.blocks(m.backend(), args)        # JSON, or a rich table on a terminal
        else:
            sys.stdout.write(lsmem(m.backend()))
    return 0


def _size(text: str) -> int:
    from cxlemu.util.units import parse_size
    return parse_size(text)


def describe(mm, a) -> str:
    from cxlemu.kernel.mm.lsmem import human
    from cxlemu.kernel.mm.zones import ZONE_NAMES
    where: dict[tuple[int, str], int] = {}
    for bid, n in a.pieces.items():
        blk = mm.blocks.get(bid)
        if blk is None:
            continue
        z = ZONE_NAMES[blk.zone] if blk.zone is not None else "mixed"
        where[(blk.nid, z)] = where.get((blk.nid, z), 0) + n
    parts = ", ".join(f"node {nid} {z} {human(n * 4096)}" for (nid, z), n in sorted(where.items()))
    pref = f" (preferred node {a.node})" if a.node >= 0 else ""
    return f"{a.id}: {a.kind} {human(a.pages * 4096)}{pref}: {parts}{'  ' + a.label if a.label else ''}"


def stat_text(mm) -> str:
    from cxlemu.kernel.mm.lsmem import human
    from cxlemu.kernel.mm.zones import ZONE_NAMES
    out = ["node zone        managed       free     kernel       user  blocks\n"]
    for nid in mm.numa.online_nodes():
        for z in range(4):
            bids = [b for b in mm.zone_blocks.get((nid, z), []) if mm.blocks[b].zone == z]
            if not bids:
                continue
            blks = [mm.blocks[b] for b in bids]
            out.append(f"{nid:>4} {ZONE_NAMES[z]:<8}"
                       f"{human(sum(b.managed for b in blks) * 4096):>11}"
                       f"{human(sum(b.free for b in blks) * 4096):>11}"
                       f"{human(sum(b.kernel + b.reserved for b in blks) * 4096):>11}"
                       f"{human(sum(b.user for b in blks) * 4096):>11}  {len(blks):>6}\n")
    out.append("\nallocations:\n")
    if not mm.pages.allocs:
        out.append("  (none)\n")
    for a in sorted(mm.pages.allocs.values(), key=lambda x: x.id):
        out.append("  " + describe(mm, a) + "\n")
    return "".join(out)


def cmd_mem(args) -> int:
    from cxlemu.kernel.base.device import KernelError
    import os
    with _store().open(args.name) as m:
        mm = m.kernel.mm
        try:
            if args.mem_action == "alloc":
                kind = "kernel" if args.kernel else "user"
                size = _size(args.kernel or args.user)
                pages = -(-size // 4096)
                a = mm.pages.alloc(kind, pages, args.node, "cxlemu mem alloc")
                m.kernel.dirty = True
                print(describe(mm, a))
            elif args.mem_action == "free":
                a = mm.pages.free(args.id)
                m.kernel.dirty = True
                print(f"freed {describe(mm, a).split(':', 1)[0]}")
            else:
                from cxlemu.cli import views
                if views.want_json(args) or views.on_terminal():
                    views.stat(mm, args)
                else:
                    sys.stdout.write(stat_text(mm))
        except KernelError as e:
            print(f"cxlemu: mem {args.mem_action}: {os.strerror(e.errno)}: {e.log}", file=sys.stderr)
            return 1
        except ValueError as e:
            print(f"cxlemu: mem: {e}", file=sys.stderr)
            return 2
    return 0


def nodes_text(backend, mm) -> str:
    from cxlemu.kernel.mm.numa import nodelist
    from cxlemu.tools import numactl
    out = [numactl.hardware(backend), "\n"]
    out.append("node access  read_lat(ns) write_lat(ns) read_bw(MB/s) write_bw(MB/s)  tier  demotion\n")
    numa = mm.numa
    for nid in numa.online_nodes():
        node = numa.nodes[nid]
        tier = mm.tiers.tier_of(nid)
        pref = mm.tiers.demotion.preferred.get(nid)
        demo = "-" if pref is None else (nodelist(pref) or "null")
        tier_s = f"{tier}" if tier is not None else "-"
        kinds = sorted(node.perf) or [None]
        for acc in kinds:
            p = node.perf.get(acc, {}) if acc is not None else {}
            acc_s = f"access{acc}" if acc is not None else "-"
            out.append(f"{nid:>4} {acc_s:<7}{p.get('read_latency', '-'):>13}{p.get('write_latency', '-'):>14}"
                       f"{p.get('read_bandwidth', '-'):>14}{p.get('write_bandwidth', '-'):>15}"
                       f"{tier_s:>6}  {demo}\n")
    out.append(f"\ndemotion_enabled: {'true' if mm.tiers.demotion_enabled else 'false'}\n")
    return "".join(out)


def cmd_nodes(args) -> int:
    from cxlemu.cli import views
    with _store().open(args.name, write=False) as m:
        if views.want_json(args) or views.on_terminal():
            views.nodes(m.backend(), m.kernel.mm, args)
        else:
            sys.stdout.write(nodes_text(m.backend(), m.kernel.mm))
    return 0
