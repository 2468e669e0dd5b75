"""``cxlemu`` subcommands for workloads on a machine.

* ``cxlemu workloads`` — the built-in generators and their parameters;
* ``cxlemu run NAME [WORKLOAD] [--PARAM VALUE ...] [--policy P]
  [--accesses N | --duration T] [--seed S] [--json] [--report DIR]
  [--compare P1,P2,...] [--workload FILE.toml] [--trace FILE]`` — run a
  workload (or a workload file, or a recorded trace) and print what
  happened; ``--compare`` runs each policy on a copy of the machine, same
  workload and seed, and leaves the machine as it was;
* ``cxlemu trace record -o FILE -- CMD ...`` — record a program's memory
  accesses under valgrind.
"""

from __future__ import annotations

import argparse
import json
import os
import sys


def register(add) -> None:
    sp = add("workloads", cmd_workloads, "built-in workload generators and their parameters")
    sp.add_argument("names", nargs="*", help="show only these")
    sp.add_argument("--json", action="store_true")
    sp = add("run", cmd_run, "run a workload on a machine (processes, policies, reclaim, promotion, timing)")
    sp.add_argument("name", help="the machine")
    sp.add_argument("workload", nargs="?", help="a built-in workload (cxlemu workloads); its parameters follow "
                                                "as --PARAM VALUE")
    sp.add_argument("--policy", help="tiering policy preset: default, numa-balancing, tiering, demotion, tpp, "
                                     "interleave, current (default: the machine's knobs as they are)")
    g = sp.add_mutually_exclusive_group()
    g.add_argument("--accesses", help="stop after this many accesses (e.g. 200M; default 50M)")
    g.add_argument("--duration", help="stop after this much simulated time (e.g. 30s)")
    sp.add_argument("--seed", default=None, help="seed of the run (default 0)")
    sp.add_argument("--json", action="store_true", help="one JSON object on stdout")
    sp.add_argument("--timeline", action="store_true", help="include the per-epoch timeline in --json")
    sp.add_argument("--report", metavar="DIR", help="write DIR/report.md and its plots")
    sp.add_argument("--compare", metavar="P1,P2,...", help="run these policies side by side on copies of the machine")
    sp.add_argument("--workload", dest="workload_file", metavar="FILE.toml", help="a workload file")
    sp.add_argument("--trace", metavar="FILE", help="replay a trace recorded with `cxlemu trace record`")
    sp.add_argument("--damos", metavar="RECIPE|FILE.json", help="DAMON-based operation schemes for the run: "
                    "hot_cold, mem_tier, or a damo JSON file (docs/damon.md)")
    sp.add_argument("--allocator", choices=("smdk", "memkind"), help="place the workload's allocations with "
                    "SMDK's libcxlmalloc or a memkind kind (docs/smdk-memkind.md)")
    sp.add_argument("--smdk-conf", dest="smdk_conf", metavar="CONF", help="CXLMALLOC_CONF for --allocator smdk")
    sp.add_argument("--kind", metavar="KIND", help="memkind kind for --allocator memkind")
    sp.add_argument("--pace", choices=("wall",), help="wall: keep simulated time at wall-clock pace "
                                                     "(interactive tools watch the run live)")
    # the Python API's channel (Machine.run): the RunResult objects, data-only codec, for the caller
    sp.add_argument("--result-file", dest="result_file", help=argparse.SUPPRESS)
    sp.set_defaults(_allow_unknown=True)
    sp = add("trace", cmd_trace, "record a program's memory accesses (valgrind) as a cxlemu trace")
    tsub = sp.add_subparsers(dest="trace_action", metavar="ACTION", required=True)
    r = tsub.add_parser("record", help="run a command under valgrind and write its trace")
    r.add_argument("-o", "--output", required=True, help="the trace file to write")
    r.add_argument("argv", nargs=argparse.REMAINDER, help="-- COMMAND [ARGS...]")
    i = tsub.add_parser("info", help="what a trace file holds")
    i.add_argument("file")


class UsageError(Exception):
    pass


def _err(msg: str, code: int = 1) -> int:
    print(f"cxlemu: {msg}", file=sys.stderr)
    return code


# ---- cxlemu workloads ---------------------------------------------------------------------------
def cmd_workloads(args) -> int:
    from cxlemu.userspace import workloads
    from cxlemu.userspace.workloads.base import COMMON
    names = args.names or workloads.names()
    for n in names:
        if n not in workloads.names():
            return _err(f"workloads: unknown workload {n!r} (known: {', '.join(workloads.names())})", 2)
    if args.json:
        out = []
        for n in names:
            cls = workloads.get(n)
            out.append({"name": n, "summary": cls.summary, "mlp": cls.default_mlp, "cpu_ns": cls.default_cpu_ns,
                        "parameters": [{"name": p.name, "type": p.kind, "default": p.default, "help": p.help}
                                       for p in cls.PARAMS + COMMON]})
        print(json.dumps(out, indent=2))
        return 0
    for n in names:
        cls = workloads.get(n)
        print(f"{n}: {cls.summary}")
        for p in cls.PARAMS:
            print(f"    --{p.name.replace('_', '-'):<16} {p.kind:<9} default {p.default!s:<8} {p.help}")
    print("common: " + ", ".join(f"--{p.name.replace('_', '-')} ({p.help})" for p in COMMON))
    return 0


# ---- cxlemu run ----------------------------------------------------------------------------------
def parse_params(extra: list[str]) -> dict[str, str]:
    """``--rss 24G --hot=4G`` -> {"rss": "24G", "hot": "4G"}."""
    out: dict[str, str] = {}
    i = 0
    while i < len(extra):
        a = extra[i]
        if not a.startswith("--") or a == "--":
            raise UsageError(f"run: unexpected argument {a!r} (workload parameters are --NAME VALUE)")
        key = a[2:]
        if "=" in key:
            key, val = key.split("=", 1)
        else:
            if i + 1 >= len(extra):
                raise UsageError(f"run: --{key} needs a value")
            val = extra[i + 1]
            i += 1
        out[key.replace("-", "_")] = val
        i += 1
    return out


def build_workload(args, extra: list[str], possible_nodes: list[int]):
    """(list of ProcSpec, run defaults) from the command line."""
    from cxlemu.userspace import workloads
    from cxlemu.userspace.spec import ProcSpec, RunDefaults, SpecError, loads
    sources = [x for x in (args.workload, args.workload_file, args.trace) if x]
    if len(sources) != 1:
        raise UsageError("run: give one of WORKLOAD, --workload FILE.toml or --trace FILE")
    params = parse_params(extra)
    if args.workload_file:
        if params:
            raise UsageError("run: workload parameters go in the workload file")
        try:
            with open(args.workload_file) as f:
                text = f.read()
        except OSError as e:
            raise UsageError(f"run: {args.workload_file}: {e.strerror}") from None
        except UnicodeDecodeError:
            raise UsageError(f"run: {args.workload_file}: not a text file") from None
        try:
            from cxlemu.sim.policy import names as policy_names
            spec = loads(text, possible_nodes, policy_names())
        except SpecError as e:
            raise UsageError(f"run: {args.workload_file}: {e}") from None
        return spec.processes, spec.run
    try:
        if args.trace:
            params["file"] = args.trace
            wl = workloads.make("trace", **params)
        else:
            wl = workloads.make(args.workload, **params)
    except workloads.WorkloadError as e:
        if e.field == "workload":
            raise UsageError(f"run: {e.reason}") from None
        raise UsageError(f"run: {wl_name(args)}: {e.field.replace('_', '-')}: {e.reason}") from None
    return [ProcSpec(wl)], RunDefaults()


def wl_name(args) -> str:
    return "trace" if args.trace else (args.workload or "workload")


def run_options(args, defaults) -> dict:
    from cxlemu.userspace.workloads.base import parse_count, parse_duration, parse_int
    kw: dict = {}
    try:
        if args.accesses is not None:
            kw["accesses"] = parse_count(args.accesses)
            if kw["accesses"] <= 0:
                raise ValueError("must be positive")
        elif args.duration is not None:
            kw["duration"] = parse_duration(args.duration)
            if kw["duration"] <= 0:
                raise ValueError("must be positive")
        elif defaults.duration is not None:
            kw["duration"] = defaults.duration
        elif defaults.accesses is not None:
            kw["accesses"] = defaults.accesses
    except ValueError as e:
        which = "--accesses" if args.accesses is not None else "--duration"
        raise UsageError(f"run: {which}: {e}") from None
    try:
        seed = args.seed if args.seed is not None else defaults.seed
        kw["seed"] = parse_int(seed) if seed is not None else 0
        if kw["seed"] < 0:
            raise ValueError("must not be negative")
    except ValueError as e:
        raise UsageError(f"run: --seed: {e}") from None
    return kw


def _policies(args, defaults) -> list[str | None]:
    from cxlemu.cli.run_ext import ExtError, split_policy
    from cxlemu.sim.policy import PRESETS
    if args.compare:
        from cxlemu.cli.run_ext import split_compare
        pols = split_compare(args.compare)
        if not pols:
            raise UsageError("run: --compare needs policy names")
        if args.policy:
            raise UsageError("run: give --policy or --compare, not both")
    else:
        pols = [args.policy or defaults.policy]
    for p in pols:
        try:
            base, ext = split_policy(p)
        except ExtError as e:
            raise UsageError(str(e)) from None
        if base is not None and base not in PRESETS:
            raise UsageError(f"run: unknown policy {p!r} (known: {', '.join(PRESETS)}, "
                             f"damos:RECIPE, smdk:CONF, memkind:KIND)")
    return pols


def cmd_run(args) -> int:
    extra = getattr(args, "_extra", [])
    from cxlemu.machine.store import MachineError, Store
    try:
        with Store().open(args.name) as m:
            possible = m.kernel.mm.numa.possible()
            try:
                specs, defaults = build_workload(args, extra, possible)
                pols = _policies(args, defaults)
                kw = run_options(args, defaults)
            except UsageError as e:
                return _err(str(e), 2)
            if args.report:
                if os.path.exists(args.report) and not os.path.isdir(args.report):
                    return _err(f"run: --report {args.report}: not a directory", 2)
                try:
                    import matplotlib  # noqa: F401
                except ImportError:
                    return _err("run: --report needs matplotlib (pip install 'cxlemu[report]')", 2)
            from cxlemu.cli import run_ext
            try:
                ext = run_ext.ext_from_args(args)
                if ext is not None and args.compare:
                    raise run_ext.ExtError("run: with --compare, give extensions as policies "
                                           "(damos:RECIPE, smdk:CONF, memkind:KIND)")
                notes: list[str] = []
                for p in pols:
                    notes += run_ext.check_ext(run_ext.split_policy(p)[1] or ext, m.backend())
            except run_ext.ExtError as e:
                return _err(str(e), e.code)
            for msg in notes:               # libcxlmalloc's own stderr lines
                print(msg, file=sys.stderr)
            kw["ext"] = ext
            kw["pace"] = args.pace
            from cxlemu.sim.engine import RunError
            try:
                results = execute(m, specs, pols, kw, compare=bool(args.compare))
            except RunError as e:
                m.kernel.dirty = False          # refused: the machine is not saved, so nothing changed
                return _err(f"run: {e}", 2)
            except run_ext.ExtError as e:
                m.kernel.dirty = False
                return _err(str(e), e.code)
    except MachineError:
        raise
    except OSError as e:
        return _err(f"run: {e}")
    return present(args, results)


def execute(m, specs, pols, kw, compare: bool):
    """Run once (on the machine) or once per policy (on copies)."""
    import copy
    import pickle
    from cxlemu.cli.run_ext import run_with, split_policy
    kw = dict(kw)
    ext0 = kw.pop("ext", None)
    pace = kw.pop("pace", None)

    def run(host, specs_, policy, label, **kw2):
        base, ext = split_policy(policy)
        return run_with(host, specs_, base, ext or ext0, kw2, label=label, pace=pace)
    if not compare:
        res = run(m, specs, policy=pols[0], label=pols[0] or "", **kw)
        m.kernel.dirty = True
        return [res]
    kernel = m.kernel
    saved = pickle.dumps(kernel, pickle.HIGHEST_PROTOCOL)
    results = []
    for p in pols:
        k = pickle.loads(saved)
        from cxlemu.data import physmem
        physmem.attach(k, kernel.media_store)      # device- and CPU-side access to the same media
        fresh = [copy.deepcopy(s) for s in specs]
        results.append(run(_Host(k, m), fresh, policy=p, label=p, **kw))
    return results


class _Host:
    """A machine copy for --compare: its own kernel, the machine's yield point."""

    def __init__(self, kernel, machine):
        self.kernel = kernel
        self.name = machine.name
        self.yield_point = machine.yield_point


def save_results(path: str, results) -> None:
    """``--result-file``: the RunResults in the state file's data-only codec
    (machine/stateio.py: loading never runs code from the file), without the
    live processes (they belong to the machine)."""
    import copy
    from cxlemu.machine import stateio
    out = []
    for r in results:
        c = copy.copy(r)
        c.processes_live = []
        out.append(c)
    from cxlemu.util.fileio import atomic_write
    atomic_write(path, stateio.dumps(out, {"what": "cxlemu run results"}))


def present(args, results) -> int:
    if getattr(args, "result_file", None):
        try:
            save_results(args.result_file, results)
        except OSError as e:
            return _err(f"run: {args.result_file}: {e.strerror}")
    if args.report:
        from cxlemu.sim.report import write_report
        path = write_report(results, args.report)
        if not args.json:
            print(f"report: {path}", file=sys.stderr)
    if args.json:
        if len(results) == 1:
            print(results[0].to_json(timeline=args.timeline))
        else:
            print(json.dumps({"runs": [r.to_dict(timeline=args.timeline) for r in results]}, indent=2))
        return 0
    if len(results) == 1:
        sys.stdout.write(results[0].summary())
    else:
        sys.stdout.write(compare_table(results))
    return 0


def compare_table(results) -> str:
    rows = [("policy", "accesses", "sim s", "mean ns", "p99 ns", "fast hit", "steady", "optimal", "promoted",
             "demoted")]
    for r in results:
        d = r.to_dict()
        rows.append((r.label, f"{r.accesses:,}", f"{d['sim_seconds']:.3f}", f"{d['latency_ns']['mean']:.0f}",
                     f"{d['latency_ns']['p99']:.0f}", f"{r.fast_tier_hit_ratio:.3f}", f"{r.steady_hit_ratio():.3f}",
                     f"{r.optimal:.3f}", f"{r.pages_promoted:,}", f"{r.pages_demoted:,}"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "".join("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
                   + "\n" for row in rows)


# ---- cxlemu trace ------------------------------------------------------------------------------------
def cmd_trace(args) -> int:
    from cxlemu.userspace.trace import TraceError, load, record
    if args.trace_action == "info":
        try:
            t = load(args.file)
        except TraceError as e:
            return _err(f"trace: {e}")
        print(json.dumps({"command": t.command, "records": int(t.pages.size), "accesses": t.accesses,
                          "instructions": t.instructions, "pages": int(len(set(t.pages.tolist()))),
                          "writes": int(t.counts[t.kinds == 1].sum())}, indent=2))
        return 0
    argv = list(args.argv)
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        return _err("trace record: nothing to run (cxlemu trace record -o FILE -- COMMAND [ARGS...])", 2)
    try:
        t = record(argv, args.output)
    except TraceError as e:
        return _err(f"trace record: {e}")
    print(f"{args.output}: {t.pages.size:,} records, {t.accesses:,} accesses to "
          f"{len(set(t.pages.tolist())):,} pages, {t.instructions:,} instructions", file=sys.stderr)
    return 0
