"""Human and machine-readable output of ``cxlemu show``, ``blocks``, ``nodes``
and ``mem NAME stat``: rich tables when stdout is a terminal, the plain text
of each command otherwise (JSON for ``show``, as before), and ``--json``
everywhere.  rich is imported only when a table is printed.

The rows come from the same data the text forms print: the lsmem view of
/sys/devices/system/memory (kernel/mm/lsmem.py), numactl -H over the
machine's /sys, and the page-allocation model.
"""

from __future__ import annotations

import json
import sys
from typing import Any


def want_json(args) -> bool:
    return bool(getattr(args, "json", False))


def on_terminal() -> bool:
    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError):
        return False


def print_json(obj: Any) -> None:
    json.dump(obj, sys.stdout, indent=2)
    sys.stdout.write("\n")


def _table(title: str, columns: list[tuple[str, str]], rows: list[list[Any]]):
    """columns: (header, "left"|"right")."""
    from rich.table import Table
    t = Table(title=title, title_justify="left", title_style="bold")
    for header, justify in columns:
        t.add_column(header, justify=justify)  # type: ignore[arg-type]
    for row in rows:
        t.add_row(*(str(x) for x in row))
    return t


def _print(*renderables) -> None:
    from rich.console import Console
    c = Console(highlight=False)
    for r in renderables:
        c.print(r)


# ---- cxlemu show ------------------------------------------------------------------------------

def show(summary: dict) -> None:
    from cxlemu.cli.draw import gran, human
    head = (f"[bold]{summary['machine']}[/]: topology {summary['topology']} ({summary['flavor']}), "
            f"Linux {summary['kernel']} profile, {summary['path']}")
    devs = _table("devices", [("memdev", "left"), ("host", "left"), ("serial", "right"), ("ram", "right"),
                              ("pmem", "right"), ("LSA", "right"), ("endpoint", "left"), ("enabled", "left")],
                  [[d["memdev"], d["host"], hex(d["serial"]), human(d["ram_size"]) if d["ram_size"] else "-",
                    human(d["pmem_size"]) if d["pmem_size"] else "-", human(d["lsa_size"]) if d["lsa_size"] else "-",
                    d["endpoint"] or "-", "yes" if d["enabled"] else "no"]
                   for d in summary["devices"]])
    wins = _table("windows", [("decoder", "left"), ("base", "right"), ("size", "right"), ("ways", "right"),
                              ("granularity", "right"), ("arithmetic", "left"), ("ram", "left"),
                              ("pmem", "left"), ("targets", "left")],
                  [[w["decoder"], hex(w["base"]), human(w["size"]), w["interleave_ways"], gran(w["granularity"]),
                    w["arithmetic"], "yes" if w["ram"] else "-", "yes" if w["pmem"] else "-",
                    ", ".join(w["targets"])] for w in summary["windows"]])
    regs = _table("regions", [("region", "left"), ("decoder", "left"), ("mode", "left"), ("resource", "right"),
                              ("size", "right"), ("ways", "right"), ("granularity", "right"), ("state", "left"),
                              ("enabled", "left"), ("targets", "left")],
                  [[r["region"], r["decoder"], r["mode"], hex(r["resource"]) if r["resource"] is not None else "-",
                    human(r["size"]) if r["size"] else "-", r["interleave_ways"], gran(r["interleave_granularity"]),
                    r["state"], "yes" if r["enabled"] else "no",
                    " ".join(f"{t['memdev']}@{t['position']}" for t in r["targets"])] for r in summary["regions"]])
    media = summary["devices"][0]["media"].rsplit("/", 1)[0] if summary["devices"] else "-"
    _print(head, devs, f"media files: {media}", wins, regs if summary["regions"] else "regions: none")


# ---- cxlemu blocks ------------------------------------------------------------------------------

def blocks_data(b) -> dict:
    from cxlemu.kernel.mm.lsmem import blocks, merged, stranded_report
    bs, blks = blocks(b)
    ranges = []
    for r in merged(bs, blks):
        state, removable, node, zones = r["key"]
        ranges.append({"start": r["start"], "end": r["end"], "size": r["end"] - r["start"] + 1, "state": state,
                       "removable": removable, "first_block": r["first"], "last_block": r["last"],
                       "node": node, "zones": zones})
    online = sum(r["size"] for r in ranges if r["state"] == "online")
    return {"block_size": bs, "ranges": ranges, "online": online,
            "offline": sum(r["size"] for r in ranges) - online, "stranded": stranded_report(b, bs)}


def blocks(b, args) -> None:
    from cxlemu.kernel.mm.lsmem import human
    d = blocks_data(b)
    if want_json(args):
        print_json(d)
        return
    rows = [[f"0x{r['start']:016x}-0x{r['end']:016x}", human(r["size"]), r["state"],
             "yes" if r["removable"] else "no",
             r["first_block"] if r["first_block"] == r["last_block"] else f"{r['first_block']}-{r['last_block']}",
             r["node"], r["zones"]] for r in d["ranges"]]
    t = _table("memory blocks", [("RANGE", "left"), ("SIZE", "right"), ("STATE", "left"), ("REMOVABLE", "left"),
                                 ("BLOCK", "right"), ("NODE", "right"), ("ZONES", "left")], rows)
    summary = (f"memory block size {human(d['block_size'])}, online {human(d['online'])}, "
               f"offline {human(d['offline'])}")
    _print(t, summary, *d["stranded"])


# ---- cxlemu nodes ------------------------------------------------------------------------------

def nodes_data(b, mm) -> dict:
    from cxlemu.kernel.mm.numa import nodelist
    from cxlemu.tools import numactl
    out = []
    numa = mm.numa
    ids = numactl.configured_nodes(b)
    for nid in numa.online_nodes():
        node = numa.nodes[nid]
        size, free = numactl.node_size(b, nid) if nid in ids else (0, 0)
        pref = mm.tiers.demotion.preferred.get(nid)
        out.append({"node": nid, "cpus": numactl.node_cpus(b, nid) if nid in ids else [], "size": size,
                    "free": free, "access": {f"access{k}": dict(v) for k, v in sorted(node.perf.items())},
                    "tier": mm.tiers.tier_of(nid), "demotion": None if pref is None else (nodelist(pref) or "")})
    dist = {}
    for a in ids:
        try:
            dist[a] = [int(x) for x in b.read(f"/sys/devices/system/node/node{a}/distance").split()]
        except OSError:
            dist[a] = []
    return {"nodes": out, "distances": dist, "demotion_enabled": bool(mm.tiers.demotion_enabled)}


def nodes(b, mm, args) -> None:
    from cxlemu.cli.draw import human
    d = nodes_data(b, mm)
    if want_json(args):
        print_json(d)
        return
    rows = []
    for n in d["nodes"]:
        accs = n["access"] or {"-": {}}
        for acc, p in accs.items():
            rows.append([n["node"], ",".join(map(str, n["cpus"])) or "-", human(n["size"]), human(n["free"]), acc,
                         p.get("read_latency", "-"), p.get("write_latency", "-"), p.get("read_bandwidth", "-"),
                         p.get("write_bandwidth", "-"), "-" if n["tier"] is None else n["tier"],
                         "-" if n["demotion"] is None else (n["demotion"] or "null")])
    t = _table("NUMA nodes", [("node", "right"), ("cpus", "left"), ("size", "right"), ("free", "right"),
                              ("access", "left"), ("read lat (ns)", "right"), ("write lat (ns)", "right"),
                              ("read bw (MB/s)", "right"), ("write bw (MB/s)", "right"), ("tier", "right"),
                              ("demotion", "left")], rows)
    ids = list(d["distances"])
    dt = _table("distances", [("node", "right")] + [(str(i), "right") for i in ids],
                [[a] + d["distances"][a] for a in ids])
    _print(t, dt, f"demotion_enabled: {'true' if d['demotion_enabled'] else 'false'}")


# ---- cxlemu mem NAME stat ---------------------------------------------------------------------------

def stat_data(mm) -> dict:
    from cxlemu.kernel.mm.zones import ZONE_NAMES
    zones = []
    for nid in mm.numa.online_nodes():
        for z in range(4):
            bids = [x for x in mm.zone_blocks.get((nid, z), []) if mm.blocks[x].zone == z]
            if not bids:
                continue
            blks = [mm.blocks[x] for x in bids]
            zones.append({"node": nid, "zone": ZONE_NAMES[z], "managed": sum(x.managed for x in blks) * 4096,
                          "free": sum(x.free for x in blks) * 4096,
                          "kernel": sum(x.kernel + x.reserved for x in blks) * 4096,
                          "user": sum(x.user for x in blks) * 4096, "blocks": len(blks)})
    allocs = []
    for a in sorted(mm.pages.allocs.values(), key=lambda x: x.id):
        where: dict[tuple[int, str], int] = {}
        for bid, n in a.pieces.items():
            blk = mm.blocks.get(bid)
            if blk is None:
                continue
            z = ZONE_NAMES[blk.zone] if blk.zone is not None else "mixed"
            where[(blk.nid, z)] = where.get((blk.nid, z), 0) + n * 4096
        allocs.append({"id": a.id, "kind": a.kind, "bytes": a.pages * 4096, "preferred_node": a.node,
                       "label": a.label, "placement": [{"node": nid, "zone": z, "bytes": v}
                                                       for (nid, z), v in sorted(where.items())]})
    return {"zones": zones, "allocations": allocs}


def stat(mm, args) -> None:
    from cxlemu.kernel.mm.lsmem import human
    d = stat_data(mm)
    if want_json(args):
        print_json(d)
        return
    zt = _table("zones", [("node", "right"), ("zone", "left"), ("managed", "right"), ("free", "right"),
                          ("kernel", "right"), ("user", "right"), ("blocks", "right")],
                [[z["node"], z["zone"], human(z["managed"]), human(z["free"]), human(z["kernel"]),
                  human(z["user"]), z["blocks"]] for z in d["zones"]])
    at = _table("allocations", [("id", "right"), ("kind", "left"), ("size", "right"), ("preferred", "right"),
                                ("placement", "left"), ("label", "left")],
                [[a["id"], a["kind"], human(a["bytes"]), a["preferred_node"] if a["preferred_node"] >= 0 else "-",
                  ", ".join(f"node {p['node']} {p['zone']} {human(p['bytes'])}" for p in a["placement"]),
                  a["label"]] for a in d["allocations"]])
    _print(zt, at if d["allocations"] else "allocations: none")
