"""``cxlemu draw``: a picture of the CXL memory topology.

``cxlemu draw NAME -o FILE.svg|png|pdf|dot`` writes a graphviz drawing; in a
terminal ``cxlemu draw NAME`` prints a rich tree (plain text when piped,
``--json`` for the data).  ``--sysfs-root DIR`` draws a rendered tree or a
real host's /sys instead of a machine: the picture is built from the sysfs
ABI only (tools/cxltopo.py).

Colours: host bridges blue, switches purple, memdevs green (darker with
persistent capacity), CXL windows grey, regions orange (pale and dashed while
not enabled), dax devices yellow (devdax) or red (System RAM), NUMA nodes
teal (with CPUs) or light teal (CPU-less; white while they hold no memory).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

COLOURS = {
    "root": "#d9d9d9", "host_bridge": "#9ecae1", "switch": "#bcbddc", "mem_ram": "#c7e9c0",
    "mem_pmem": "#74c476", "window": "#f0f0f0", "region": "#fdae6b", "region_idle": "#fee6ce",
    "devdax": "#ffeda0", "system-ram": "#fc9272", "unbound": "#ffffff", "node_cpu": "#66c2a5",
    "node_cpuless": "#b3e2cd", "node_empty": "#ffffff",
}
FORMATS = ("svg", "png", "pdf", "dot", "gv")


def human(n: int) -> str:
    for unit, shift in (("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift:
            v = n / (1 << shift)
            return f"{v:.0f} {unit}" if v == int(v) else f"{v:.1f} {unit}"
    return f"{n} B"


def gran(g: int) -> str:
    return f"{g // 1024}K" if g >= 1024 and g % 1024 == 0 else str(g)


def _capacity(md) -> str:
    parts = []
    if md.ram_size:
        parts.append(f"{human(md.ram_size)} ram")
    if md.pmem_size:
        parts.append(f"{human(md.pmem_size)} pmem")
    return " + ".join(parts) or "no capacity"


def _port_label(p) -> str:
    what = {"root": "CXL root", "host_bridge": "host bridge", "switch": "switch"}.get(p.kind, p.kind)
    return f"{p.name}\n{what} {p.host}"


def _region_label(r) -> str:
    state = "enabled" if r.enabled else ("committed" if r.committed else "not committed")
    return f"{r.name}\n{human(r.size)} {r.mode}\nx{r.ways} {gran(r.granularity)}  {state}"


def _window_label(w) -> str:
    caps = "+".join(c for c, on in (("ram", w.ram), ("pmem", w.pmem)) if on) or "-"
    return f"{w.name}\n{human(w.size)} @ {w.start:#x}\nx{w.ways} {gran(w.granularity)} {caps}"


def _node_label(n) -> str:
    kind = "CPUs" if n.cpus else "CPU-less"
    return f"node{n.node}\n{human(n.memory) if n.memory else 'no memory'}\n{kind}"


def to_graph(t, title: str):
    """A graphviz Digraph of topology ``t``."""
    import graphviz
    g = graphviz.Digraph(title, graph_attr={"rankdir": "TB", "label": title, "labelloc": "t",
                                            "fontname": "Helvetica"},
                         node_attr={"style": "filled", "fontname": "Helvetica", "fontsize": "10",
                                    "shape": "box"},
                         edge_attr={"fontname": "Helvetica", "fontsize": "9"})
    port_of_host = {p.host: p.name for p in t.ports if p.kind == "host_bridge"}
    mem_of_ep = {md.endpoint: md for md in t.memdevs if md.endpoint}
    for p in t.ports:
        if p.kind == "endpoint":
            continue
        g.node(p.name, _port_label(p), fillcolor=COLOURS[p.kind])
    for md in t.memdevs:
        g.node(md.name, f"{md.name}\n{_capacity(md)}\n{md.host}" + (f"\n{md.endpoint}" if md.endpoint else ""),
               fillcolor=COLOURS["mem_pmem" if md.pmem_size else "mem_ram"])
    for p in t.ports:
        if p.parent is None:
            continue
        child = mem_of_ep[p.name].name if p.kind == "endpoint" and p.name in mem_of_ep else p.name
        if p.kind == "endpoint" and p.name not in mem_of_ep:
            continue
        g.edge(p.parent, child)
    for w in t.windows:
        g.node(w.name, _window_label(w), shape="folder", fillcolor=COLOURS["window"])
        for i, target in enumerate(w.targets):
            if target in port_of_host:
                g.edge(w.name, port_of_host[target], style="dashed", color="grey50",
                       label=f"{i}" if w.ways > 1 else "")
    for r in t.regions:
        g.node(r.name, _region_label(r), shape="box3d",
               fillcolor=COLOURS["region" if r.enabled else "region_idle"],
               style="filled" if r.enabled else "filled,dashed")
        g.edge(r.window, r.name, penwidth="2")
        for m in r.members:
            if m.memdev:
                g.edge(r.name, m.memdev, style="dotted", color="darkorange3", label=f"pos {m.position}")
    for d in t.dax:
        g.node(d.name, f"{d.name}\n{d.mode}\n{human(d.size)}", shape="component", fillcolor=COLOURS[d.mode])
        if d.region:
            g.edge(d.region, d.name)
        if d.mode == "system-ram" and d.target_node >= 0:
            g.edge(d.name, f"node{d.target_node}", label="kmem")
    for n in t.nodes:
        colour = COLOURS["node_cpu" if n.cpus else "node_cpuless" if n.memory else "node_empty"]
        g.node(f"node{n.node}", _node_label(n), shape="ellipse", fillcolor=colour)
    return g


def to_tree(t, title: str):
    """A rich Tree of topology ``t``."""
    from rich.tree import Tree
    root = Tree(f"[bold]{title}[/]")
    mem_of_ep = {md.endpoint: md for md in t.memdevs if md.endpoint}
    children: dict[str | None, list] = {}
    for p in t.ports:
        children.setdefault(p.parent, []).append(p)
    style = {"root": "bold", "host_bridge": "blue", "switch": "magenta"}

    def add_port(tree, p) -> None:
        if p.kind == "endpoint":
            md = mem_of_ep.get(p.name)
            label = (f"[green]{md.name}[/] {_capacity(md)} ({md.host}, {p.name})" if md
                     else f"{p.name} (no memdev)")
            tree.add(label)
            return
        what = {"root": "CXL root", "host_bridge": "host bridge", "switch": "switch"}[p.kind]
        node = tree.add(f"[{style[p.kind]}]{p.name}[/] {what} {p.host}")
        for c in children.get(p.name, []):
            add_port(node, c)

    fabric = root.add("[bold]CXL fabric[/]")
    for p in children.get(None, []):
        add_port(fabric, p)
    dax_of = {}
    for d in t.dax:
        dax_of.setdefault(d.region, []).append(d)
    windows = root.add("[bold]CXL windows[/]")
    for w in t.windows:
        caps = "+".join(c for c, on in (("ram", w.ram), ("pmem", w.pmem)) if on)
        wn = windows.add(f"[grey62]{w.name}[/] {human(w.size)} @ {w.start:#x} x{w.ways} {gran(w.granularity)} "
                         f"{caps} -> {', '.join(w.targets)}")
        for r in (r for r in t.regions if r.window == w.name):
            state = ("[green]enabled[/]" if r.enabled else "[yellow]committed[/]" if r.committed
                     else "[red]not committed[/]")
            members = " ".join(f"{m.memdev or m.decoder}@{m.position}" for m in r.members)
            rn = wn.add(f"[dark_orange]{r.name}[/] {human(r.size)} {r.mode} x{r.ways} {gran(r.granularity)} "
                        f"{state}: {members}")
            for d in dax_of.get(r.name, []):
                where = f" -> node{d.target_node}" if d.mode == "system-ram" else ""
                rn.add(f"[{'red' if d.mode == 'system-ram' else 'yellow'}]{d.name}[/] {d.mode} "
                       f"{human(d.size)}{where}")
    nodes = root.add("[bold]NUMA nodes[/]")
    for n in t.nodes:
        nodes.add(f"[cyan]node{n.node}[/] {human(n.memory) if n.memory else 'no memory'}, "
                  f"{'CPUs' if n.cpus else 'CPU-less'}")
    return root


def _usage(msg: str):
    from cxlemu.cli.commands import UsageError
    return UsageError(msg)


def cmd_draw(args) -> int:
    from cxlemu.machine.store import MachineError
    from cxlemu.tools.cxltopo import read_topology
    if args.output:
        ext = Path(args.output).suffix.lower().lstrip(".")
        if ext not in FORMATS:
            raise _usage(f"draw NAME -o FILE.svg|png|pdf|dot (not {args.output!r})")
    if args.sysfs_root:
        from cxlemu.sysfs.backend import DirectoryBackend
        if not Path(args.sysfs_root, "sys").is_dir():
            raise MachineError(f"draw: {args.sysfs_root}/sys is not a directory")
        topo = read_topology(DirectoryBackend(args.sysfs_root))
        title = args.name or args.sysfs_root
    else:
        if not args.name:
            raise _usage("draw NAME [-o FILE] (or --sysfs-root DIR)")
        from cxlemu.machine.store import Store
        with Store().open(args.name, write=False) as m:
            topo = read_topology(m.backend())
            title = f"{args.name} ({m.topology.name}, Linux {m.topology.boot.kernel})"
    if args.json:
        json.dump(topo.to_json(), sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    if args.output:
        g = to_graph(topo, title)
        out = Path(args.output)
        ext = out.suffix.lower().lstrip(".")
        if ext in ("dot", "gv"):
            out.write_text(g.source)
        else:
            import graphviz
            try:
                data = g.pipe(format=ext)
            except graphviz.ExecutableNotFound:
                raise MachineError("draw: graphviz's dot program is not installed (apt-get install graphviz); "
                                   "-o FILE.dot needs no dot") from None
            out.write_bytes(data)
        print(f"drew {len(topo.ports)} port(s), {len(topo.memdevs)} memdev(s), {len(topo.regions)} "
              f"region(s) into {out}", file=sys.stderr)
        return 0
    from rich.console import Console
    console = Console() if sys.stdout.isatty() else Console(no_color=True, width=200, highlight=False)
    console.print(to_tree(topo, title))
    return 0


def register(add) -> None:
    sp = add("draw", cmd_draw, "draw the CXL topology (graphviz to a file, a tree in the terminal)")
    sp.add_argument("name", nargs="?", help="the machine (see: cxlemu ls)")
    sp.add_argument("-o", "--output", metavar="FILE", help="write FILE.svg, .png, .pdf or .dot (graphviz)")
    sp.add_argument("--json", action="store_true", help="print the topology as JSON")
    sp.add_argument("--sysfs-root", metavar="DIR",
                    help="draw the /sys below DIR (a rendered tree, or / for this host) instead of a machine")
