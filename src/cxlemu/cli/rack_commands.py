"""``cxlemu rack ...``, ``cxlemu fm ...`` and ``cxlemu agent ...``: racks of
hosts, the fabric manager service and the host policy agent (issue 11)."""

from __future__ import annotations

import argparse
import json
import sys

from cxlemu.util.lazy import lazy_module
from cxlemu.machine.store import MachineError

FM_USAGE = """usage: cxlemu fm start RACK [--port N] [--host-timeout S]
       cxlemu fm stop RACK
       cxlemu fm RACK add HOST SIZE --tag TAG [--policy free|contiguous|prescriptive]
       cxlemu fm RACK release HOST --tag TAG [--forced]
       cxlemu fm RACK share --tag TAG SIZE HOST [HOST...]
       cxlemu fm RACK status [--json]
       cxlemu fm RACK history [--json]
       cxlemu fm RACK reconcile"""

_fmc = lazy_module("cxlemu.fabric.fm.client")   # HTTP client (urllib, http.client): only the fm commands pay for it


def register(add) -> None:
    sp = add("rack", cmd_rack, "racks of hosts sharing memory appliances: create, rm, ls, simulate")
    rs = sp.add_subparsers(dest="rack_cmd", metavar="ACTION")
    c = rs.add_parser("create", help="create a rack (hosts + appliances) from a rack topology")
    c.add_argument("name")
    c.add_argument("--topology", "-t", required=True, help="a rack preset (pool-4h) or a rack TOML file")
    r = rs.add_parser("rm", help="remove racks (stops their fabric manager)")
    r.add_argument("names", nargs="+")
    rs.add_parser("ls", help="list racks")
    s = rs.add_parser("simulate", help="replay a job trace against the rack's pool")
    s.add_argument("name", help="a rack (its hosts and pool) or 'synthetic'")
    s.add_argument("--jobs", help="job trace CSV (default: a synthetic Pond-like trace)")
    s.add_argument("--scheduler", default="memory-aware", choices=["first-fit", "pool", "memory-aware"])
    s.add_argument("--report", help="directory for report.json, timeline.csv and plots")
    s.add_argument("--engine", default="inproc", choices=["inproc", "ray"])
    s.add_argument("--ray-address", default=None, help="a Ray cluster address (default: local Ray)")
    s.add_argument("--hosts", type=int, default=None, help="number of hosts (default: the rack's)")
    s.add_argument("--host-mem", default=None, help="local DRAM per host (default: the rack host's)")
    s.add_argument("--pool", default=None, help="pool capacity (default: the rack's appliances)")
    s.add_argument("--num-jobs", type=int, default=None, help="synthetic trace: number of jobs (default: "
                   "enough for --load over --duration)")
    s.add_argument("--load", type=float, default=0.85, help="synthetic trace: target core utilisation")
    s.add_argument("--duration", type=float, default=86400.0, help="synthetic trace: seconds of arrivals")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--json", action="store_true")
    s.add_argument("--write-trace", metavar="CSV", help="write the synthetic trace used")

    fp = add("fm", cmd_fm, "the fabric manager of a rack (start, stop, add, release, share, status)")
    fp.add_argument("argv", nargs=argparse.REMAINDER)
    fp.usage = FM_USAGE

    ap = add("agent", cmd_agent, "the host policy agent: ask the FM for pool memory or give it back")
    ap.add_argument("host", help="RACK/HOST")
    ap.add_argument("--high", type=float, default=0.85, help="ask for a slice above this memory use (fraction)")
    ap.add_argument("--low", type=float, default=0.50, help="give a slice back below this memory use")
    ap.add_argument("--slice", default="1G", help="slice size (Pond: 1 GiB)")
    ap.add_argument("--max-slices", type=int, default=64)
    ap.add_argument("--online", default="movable", choices=["movable", "kernel", "devdax"],
                    help="how an accepted slice is used (default: System RAM, ZONE_MOVABLE)")
    ap.add_argument("--steps", type=int, default=1, help="policy steps to run (0: until interrupted)")
    ap.add_argument("--interval", type=float, default=1.0, help="seconds between steps")
    ap.add_argument("--json", action="store_true")


# ---- rack ------------------------------------------------------------------------------------------------
def cmd_rack(args) -> int:
    from pathlib import Path

    from cxlemu.fabric import rack
    if args.rack_cmd == "create":
        if args.topology in rack.rack_presets():
            text, base = rack.rack_preset_text(args.topology), None
        elif Path(args.topology).is_file():
            text, base = Path(args.topology).read_text(), Path(args.topology).parent
        else:
            raise MachineError(f"unknown rack topology {args.topology!r}: not a preset "
                               f"({', '.join(rack.rack_presets())}) nor a file")
        lay = rack.create(args.name, text, base)
        apps = ", ".join(f"{a['id']} ({a['capacity'] >> 30} GiB, {len(a['heads'])} heads)" for a in lay["appliances"])
        print(f"created rack {args.name}: {len(lay['hosts'])} host(s) ({', '.join(lay['hosts'])}); {apps}")
        return 0
    if args.rack_cmd == "rm":
        rc = 0
        from cxlemu.fabric.fm import service
        for n in args.names:
            try:
                if rack.rack_path(n).exists():
                    service.stop(n, quiet=True)      # the rack's fabric manager goes first
                rack.remove(n)
            except MachineError as e:
                print(f"cxlemu: {e}", file=sys.stderr)
                rc = 1
        return rc
    if args.rack_cmd == "ls":
        from cxlemu.fabric.fm import service
        for n in rack.names():
            lay = rack.load_layout(n)
            fm = service.info(n)
            cap = sum(a["capacity"] for a in lay["appliances"])
            print(f"{n:16} {len(lay['hosts']):3} host(s)  pool {cap >> 30} GiB  "
                  f"fm: {fm['url'] if fm else 'stopped'}")
        return 0
    if args.rack_cmd == "simulate":
        from cxlemu.cli import rack_simulate
        return rack_simulate.run(args)
    print("usage: cxlemu rack {create,rm,ls,simulate} ...", file=sys.stderr)
    return 2


# ---- fm -------------------------------------------------------------------------------------------------------
def _fm_parser(prog: str) -> argparse.ArgumentParser:
    return argparse.ArgumentParser(prog=f"cxlemu fm {prog}", add_help=True)


def cmd_fm(args) -> int:
    from cxlemu.fabric.fm import service
    from cxlemu.util.units import human_size
    argv = list(args.argv)
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv or argv[0] in ("-h", "--help"):
        print(FM_USAGE, file=sys.stderr if not argv else sys.stdout)
        return 2 if not argv else 0
    if argv[0] in ("start", "stop"):
        p = _fm_parser(argv[0])
        p.add_argument("rack")
        if argv[0] == "start":
            p.add_argument("--port", type=int, default=0)
            p.add_argument("--listen", default="127.0.0.1", help="address to bind (default: loopback)")
            p.add_argument("--host-timeout", type=float, default=5.0, help="seconds a host may take to answer")
        a = p.parse_args(argv[1:])
        if argv[0] == "start":
            info = service.start(a.rack, a.port, a.listen, host_timeout=a.host_timeout)
            print(f"fabric manager of {a.rack}: {info['url']} (pid {info['pid']})")
        else:
            service.stop(a.rack)
            print(f"fabric manager of {a.rack} stopped")
        return 0
    rack_name, rest = argv[0], argv[1:]
    if not rest:
        print(FM_USAGE, file=sys.stderr)
        return 2
    action, rest = rest[0], rest[1:]
    if action == "add":
        p = _fm_parser(f"{rack_name} add")
        p.add_argument("host")
        p.add_argument("size")
        p.add_argument("--tag", required=True)
        p.add_argument("--policy", default="free", choices=["free", "contiguous", "prescriptive"])
        p.add_argument("--extent", action="append", default=[], metavar="DPA:LEN", help="prescriptive extents")
        p.add_argument("--json", action="store_true")
        a = p.parse_args(rest)
        exts = []
        for x in a.extent:
            from cxlemu.util.units import parse_size
            try:
                d, _, ln = x.partition(":")
                exts.append([parse_size(d), parse_size(ln)])
            except ValueError as e:
                raise _fmc.FmClientError(f"--extent {x!r}: {e}") from None
        body = {"size": a.size, "tag": a.tag, "policy": a.policy}
        if exts:
            body["extents"] = exts
        row = _fmc.fm_request(rack_name, "POST", f"/v1/hosts/{a.host}/allocations", body)
        if a.json:
            print(json.dumps(row, indent=1))
        else:
            print(f"{a.host}: {human_size(row['bytes'])} tagged {a.tag} -> {row['dax']} at HPA {row['hpa']:#x}")
        return 0
    if action == "release":
        p = _fm_parser(f"{rack_name} release")
        p.add_argument("host")
        p.add_argument("--tag", required=True)
        p.add_argument("--forced", action="store_true", help="forced removal: no host acknowledgement")
        a = p.parse_args(rest)
        q = "?forced=true" if a.forced else ""
        row = _fmc.fm_request(rack_name, "DELETE", f"/v1/hosts/{a.host}/allocations/{a.tag}{q}")
        print(f"{a.host}: released {human_size(row['bytes'])} tagged {a.tag}")
        return 0
    if action == "share":
        p = _fm_parser(f"{rack_name} share")
        p.add_argument("--tag", required=True)
        p.add_argument("size")
        p.add_argument("hosts", nargs="+")
        a = p.parse_args(rest)
        rows = _fmc.fm_request(rack_name, "POST", "/v1/shares", {"size": a.size, "tag": a.tag, "hosts": a.hosts})
        for row in rows:
            print(f"{row['host']}: shared {human_size(row['bytes'])} tagged {a.tag} -> {row['dax']} at HPA {row['hpa']:#x}")
        return 0
    if action in ("status", "history"):
        p = _fm_parser(f"{rack_name} {action}")
        p.add_argument("--json", action="store_true")
        a = p.parse_args(rest)
        if action == "history":
            rows = _fmc.fm_request(rack_name, "GET", "/v1/history")
            if a.json:
                print(json.dumps(rows, indent=1))
            else:
                for r in reversed(rows):
                    print(f"{r['seq']:5} {r['op']:9} {r['host'] or '-':8} {r['tag'] or '-':10} {r['result']:10} {r['detail']}")
            return 0
        st = _fmc.fm_request(rack_name, "GET", "/v1/status")
        if a.json:
            print(json.dumps(st, indent=1))
            return 0
        print(f"fabric manager {st['url']} (pid {st['pid']})")
        print(f"pool: {human_size(st['pool_bytes_free'])} free of {human_size(st['pool_bytes_total'])}")
        for h in st["hosts"]:
            print(f"  {h['name']}: {human_size(h['bytes'])}")
            for al in h["allocations"]:
                hpa = f"{al['hpa']:#x}" if al["hpa"] is not None else "-"
                print(f"    {al['tag']:12} {human_size(al['bytes']):>12} {'shared ' if al['shared'] else ''}"
                      f"{al['dax'] or '-'} hpa {hpa} {al['mode'] or ''}")
        for pnd in st["pending"]:
            print(f"  pending: {pnd['op']} {pnd['host']} {pnd['tag']}")
        for w in st["warnings"]:
            print(f"  warning: {w}")
        return 0
    if action == "reconcile":
        print(json.dumps(_fmc.fm_request(rack_name, "POST", "/v1/reconcile")))
        return 0
    print(FM_USAGE, file=sys.stderr)
    return 2


# ---- agent ----------------------------------------------------------------------------------------------------
def host_daxctl(machine: str, argv: list[str]) -> tuple[int, str]:
    """Run the bundled daxctl on a machine (the agent's way to online a slice)."""
    import io

    from cxlemu.machine.store import Store
    from cxlemu.tools.runner import run_tool
    out = io.StringIO()
    with Store().open(machine) as m:
        rc = run_tool("daxctl", argv, m.backend(), stdout=out, stderr=out, isatty=False)
    return rc, out.getvalue()


def cmd_agent(args) -> int:
    import time

    from cxlemu.fabric import agent
    from cxlemu.fabric import rack as rackmod
    from cxlemu.machine.store import check_name
    from cxlemu.util.fileio import atomic_write
    from cxlemu.util.units import parse_size
    check_name(args.host)
    if "/" not in args.host:
        raise MachineError(f"agent: {args.host!r} is not a rack host (RACK/HOST)")
    rack, host = args.host.split("/")
    try:
        pol = agent.Policy(args.high, args.low, parse_size(args.slice), args.max_slices, args.online)
    except ValueError as e:
        raise MachineError(f"agent: {e}") from None
    path = rackmod.rack_path(rack) / "fm" / f"agent-{host}.json"
    st = agent.AgentState()
    if path.exists():
        st = agent.AgentState(**json.loads(path.read_text()))
    ag = agent.Agent(rack, host, pol, lambda mth, p, b: _fmc.fm_request(rack, mth, p, b), st, daxctl=host_daxctl)
    n = 0
    try:
        while args.steps == 0 or n < args.steps:
            rec = ag.step()
            n += 1
            if args.json:
                print(json.dumps(rec))
            else:
                print(f"{host}: used {rec['used'] >> 20} MiB of {rec['total'] >> 20} MiB, "
                      f"{rec['held']} slice(s): {rec['action'] or 'steady'}"
                      + (f" ({rec['result']})" if rec["result"] else ""))
            if args.steps == 0 or n < args.steps:
                time.sleep(args.interval)
    except KeyboardInterrupt:
        pass
    finally:
        st.log = st.log[-100:]
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, json.dumps(agent.asdict(st)).encode())
    return 0
