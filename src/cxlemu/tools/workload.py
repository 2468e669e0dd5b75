"""``workload``: a program on the machine's PATH that runs one of cxlemu's
workload generators in its own process, under whatever memory policy,
CPU affinity and cpuset it was started with::

    numactl --membind=1 -- workload kv --keys 50M --duration 2s
    workload gups --rss 4G --hot 1G --accesses 100M --json

Options besides the generator's parameters: ``--accesses N``,
``--duration T``, ``--seed S``, ``--json``.  It needs a cxlemu machine (the
emulator backend); on a real /sys it says so and exits 1.
"""

from __future__ import annotations

import json

from cxlemu.tools.common.command import CommandContext

USAGE = ("usage: workload NAME [--PARAM VALUE ...] [--accesses N | --duration T] [--seed S] [--json]\n"
         "       workload --list\n")


def tool_main(name: str, argv: list[str], ctx: CommandContext) -> int:
    from cxlemu.userspace import workloads
    from cxlemu.userspace.workloads.base import WorkloadError, parse_count, parse_duration, parse_int
    if not argv or argv[0] in ("-h", "--help"):
        (ctx.stdout if argv else ctx.stderr).write(USAGE)
        return 0 if argv else 2
    if argv[0] == "--list":
        for n in workloads.names():
            ctx.stdout.write(f"{n}: {workloads.get(n).summary}\n")
        return 0
    wname, rest = argv[0], argv[1:]
    params: dict[str, str] = {}
    run_kw: dict = {}
    as_json = False
    i = 0
    try:
        while i < len(rest):
            a = rest[i]
            if a == "--json":
                as_json = True
                i += 1
                continue
            if not a.startswith("--") or a == "--":
                ctx.stderr.write(f"workload: unexpected argument '{a}'\n{USAGE}")
                return 2
            key = a[2:]
            if "=" in key:
                key, val = key.split("=", 1)
                i += 1
            else:
                if i + 1 >= len(rest):
                    ctx.stderr.write(f"workload: option '--{key}' needs a value\n")
                    return 2
                val = rest[i + 1]
                i += 2
            key = key.replace("-", "_")
            if key == "accesses":
                run_kw["accesses"] = parse_count(val)
                if run_kw["accesses"] <= 0:
                    raise ValueError("must be positive")
            elif key == "duration":
                run_kw["duration"] = parse_duration(val)
                if run_kw["duration"] <= 0:
                    raise ValueError("must be positive")
            elif key == "seed":
                run_kw["seed"] = parse_int(val)
            else:
                params[key] = val
    except ValueError as e:
        ctx.stderr.write(f"workload: --{key.replace('_', '-')}: {e}\n")
        return 2
    if "accesses" in run_kw and "duration" in run_kw:
        ctx.stderr.write("workload: give --accesses or --duration, not both\n")
        return 2
    try:
        wl = workloads.make(wname, **params)
    except WorkloadError as e:
        if e.field == "workload":
            ctx.stderr.write(f"workload: {e.reason}\n")
        else:
            ctx.stderr.write(f"workload: {wname}: --{e.field.replace('_', '-')}: {e.reason}\n")
        return 2
    backend = ctx.backend
    if not hasattr(backend, "task") or not hasattr(backend, "run_workload"):
        ctx.stderr.write("workload: this needs a cxlemu machine (the system-call interface of the emulator); "
                         "it cannot run on a real /sys\n")
        return 1
    proc = backend.task("workload")
    proc.task.comm = "workload"
    try:
        res = backend.run_workload(proc, wl, **run_kw)
    except OSError as e:
        ctx.stderr.write(f"workload: {e.strerror or e}\n")
        return 1
    if as_json:
        ctx.stdout.write(json.dumps(res.to_dict(), indent=2) + "\n")
    else:
        ctx.stdout.write(res.summary())
    for p in res.processes:
        if p["exit"].startswith(("SIGKILL", "SIGBUS", "SIGSEGV", "killed")):
            ctx.stderr.write(f"workload: {p['exit']}\n")
            return 137 if "SIGKILL" in p["exit"] else 135 if "SIGBUS" in p["exit"] else 139
    return 0
