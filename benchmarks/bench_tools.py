"""Our ``cxl list -vvv``, ``ndctl list -vvv`` and ``daxctl list -RDMi`` (daxctl
list has no ``-v``) against Debian's C tools, timed in the same mount namespace
over the same rendered tree.

    python benchmarks/bench_tools.py [--presets biscuitos-c,large-fabric] [--reps 5]
                                     [--regions 16] [--render-dir DIR] [--json]

Each preset is booted, given regions, namespaces and DAX devices (``populate``:
up to ``--regions`` 1-way regions, a namespace on each pmem one, fsdax and
devdax in turn; ram regions get their DAX device), rendered (``cxlemu sysfs
NAME render``), and then, in ``unshare -m`` with the rendered ``sys``
bind-mounted over /sys and the rendered ``dev`` over /dev (its device nodes
made with mknod, so that libdaxctl finds each DAX device's subsystem through
/sys/dev/char; tests/cxltest_support.py), every command runs ``--reps``
times and the best time is kept:

* ``c_s``: the Debian binary (a process: exec, libcxl/libndctl/libdaxctl);
* ``ours_s``: our tool in process (``run_tool`` over ``DirectoryBackend("/")``:
  what our libraries and JSON printers cost, the interpreter already started);
* ``ours_cli_s``: our console entry point as a process (``cxlemu-cxl`` ...),
  interpreter start-up and imports included (with bytecode caching on, as an
  installed package has);
* ``ratio`` = ours_s / c_s (the target is 2 or less) and ``ratio_cli`` =
  ours_cli_s / c_s.  ``python_s`` is ``python -c pass`` in the same run:
  the floor under ``ours_cli_s``.

Before timing, each command runs once and is checked: the C tool and our
process must exit 0 and our process must print exactly what our tool prints in
process (the benchmark stops otherwise, rather than time a failure).

Needs root, ``unshare`` and the Debian ``ndctl``/``daxctl``/``cxl`` packages
(``.ci/run`` installs them); prints why not otherwise.  ``--json`` prints a
list of rows (preset, command, c_s, ours_s, ours_cli_s, python_s, ratio,
ratio_cli).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

# daxctl list has no -v (daxctl/list.c: the real tool exits 129 "unknown switch `v'"):
# its fullest listing is regions, devices, mappings, idle devices included.
COMMANDS = (("cxl", "list", "-vvv"), ("ndctl", "list", "-vvv"), ("daxctl", "list", "-RDMi"))

# Our console entry point as a process (``cxlemu-cxl`` ...): what pyproject.toml's
# [project.scripts] run, with the tool's name as the first argument.
OURS_CLI = ("import sys; from cxlemu.cli import standalone; t = sys.argv.pop(1); "
            "sys.exit(getattr(standalone, t)())")

# Runs inside the namespace: times the C tools and ours over "/" (the rendered tree).
# Every timed command is first run once and checked: the C tool and our process must
# exit 0, and our process must print exactly what our tool prints in process, so the
# benchmark can never time a failure.
INNER = r"""
import io, json, os, subprocess, sys, time
reps = int(sys.argv[1]); cmds = json.loads(sys.argv[2]); src = sys.argv[3]; ours_cli = sys.argv[4]
from cxlemu.sysfs.backend import DirectoryBackend
from cxlemu.tools.runner import run_tool
env = dict(os.environ); env.pop("PYTHONDONTWRITEBYTECODE", None)
env["PYTHONPYCACHEPREFIX"] = os.path.join("/tmp", "cxlemu-bench-pycache")
env["PYTHONPATH"] = src

def best(fn):
    fn()                                   # warm up (page cache, bytecode cache)
    b = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter(); fn(); b = min(b, time.perf_counter() - t0)
    return b

def checked(argv):
    p = subprocess.run(argv, capture_output=True, text=True, env=env)
    if p.returncode != 0:
        sys.exit(f"bench_tools: {' '.join(argv)} exited {p.returncode}: {p.stderr.strip()[-2000:]}")
    return p.stdout

def proc(argv):
    return lambda: subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)

def in_process(argv):
    out, err = io.StringIO(), io.StringIO()
    rc = run_tool(argv[0], list(argv[1:]), DirectoryBackend("/"), env={}, stdout=out, stderr=err,
                  isatty=False)
    if rc != 0:
        sys.exit(f"bench_tools: ours in process {' '.join(argv)} returned {rc}: {err.getvalue().strip()}")
    return out.getvalue()

rows = []
py = best(proc([sys.executable, "-c", "pass"]))
for argv in cmds:
    c_out = checked(argv)
    o = in_process(argv)
    cli_argv = [sys.executable, "-c", ours_cli, *argv]
    if checked(cli_argv) != o:
        sys.exit(f"bench_tools: our process {' '.join(argv)} printed other than our tool in process")
    rows.append({"command": " ".join(argv), "c_s": best(proc(argv)), "ours_s": best(lambda: in_process(argv)),
                 "ours_cli_s": best(proc(cli_argv)), "python_s": py,
                 "c_bytes": len(c_out), "ours_bytes": len(o)})
print(json.dumps(rows))
"""


def _tool(b, *argv: str, may_fail: bool = False) -> str | None:
    """Our tool's output; a failure stops the benchmark (None if ``may_fail``)."""
    from cxltest_support import run
    rc, out, err = run(b, *argv)
    if rc != 0:
        if may_fail:
            return None
        raise SystemExit(f"bench_tools: setting up, {' '.join(argv)} failed ({rc}): {err.strip()}")
    return out


def populate(b, regions: int, media_dir: str) -> str:
    """Give every tool something to list, as a configured machine has.

    Up to ``regions`` 1-way regions (``cxl create-region``), each on the
    narrowest root decoder that reaches its memdev (``cxl list -D -d root
    -m memX``, asked only for the memdevs used), taken round robin over the
    host bridges; on each pmem region a namespace, fsdax and devdax in turn
    (``ndctl create-namespace``); ram regions get their DAX device from the
    kernel.  Done with our tools through the ABI, before the tree is
    rendered; namespaces write their info blocks to media kept in
    ``media_dir``.  Returns what was made."""
    from cxlemu.data import physmem
    from cxlemu.data.media import MediaStore
    physmem.attach(b.kernel, MediaStore(Path(media_dir)))
    mds = sorted(json.loads(_tool(b, "cxl", "list", "-M") or "[]"), key=lambda m: int(m["memdev"][3:]))
    # round robin over the host bridges (pci0000:BB in the memdev's path): a port has
    # only so many HDM decoders, one per region through it
    groups: dict[str, list] = {}
    for md in mds:
        groups.setdefault(b.realpath(f"/sys/bus/cxl/devices/{md['memdev']}").split("/")[3], []).append(md)
    mds = [g[i] for i in range(max(map(len, groups.values()), default=0)) for g in groups.values() if i < len(g)]
    made = {"ram": 0, "pmem": 0, "fsdax": 0, "devdax": 0}
    for md in mds:
        if made["ram"] + made["pmem"] >= regions:
            break
        kind = "pmem" if md.get("pmem_size") else "ram"
        # the root decoders that reach the memdev, 1-way windows first
        roots = json.loads(_tool(b, "cxl", "list", "-D", "-d", "root", "-m", md["memdev"]) or "[]")
        roots = [d["decoder"] for d in sorted(roots, key=lambda d: d["interleave_ways"])
                 if d.get("pmem_capable" if kind == "pmem" else "volatile_capable")]
        # (a port whose HDM decoders are all in use refuses: the next memdev, then)
        if roots and _tool(b, "cxl", "create-region", "-t", kind, "-d", roots[0], "-m", md["memdev"], "-w", "1",
                           may_fail=True) is not None:
            made[kind] += 1
    for i, r in enumerate(json.loads(_tool(b, "ndctl", "list", "-R") or "[]")):
        mode = ("fsdax", "devdax")[i % 2]
        _tool(b, "ndctl", "create-namespace", "-r", r["dev"], "-m", mode)
        made[mode] += 1
    return ", ".join(f"{v} {k}" for k, v in made.items() if v) or "nothing"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--presets", default="biscuitos-c,large-fabric")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--regions", type=int, default=16,
                    help="1-way regions made before rendering, with a namespace on each pmem one (default 16)")
    ap.add_argument("--render-dir", help="where to render (default: the system temporary directory)")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    from cxltest_support import _UNSHARE_SCRIPT, boot, real_tools_available
    why = real_tools_available("cxl", "ndctl", "daxctl")
    if why:
        print(f"bench_tools: cannot run the C tools here: {why}", file=sys.stderr)
        return 1
    from cxlemu.sysfs.backend import render
    src = str(Path(__file__).resolve().parents[1] / "src")
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 100000))
    rows = []
    for preset in a.presets.split(","):
        b = boot(preset)
        d = tempfile.mkdtemp(prefix="cxlemu-bench-tools-", dir=a.render_dir)
        media = tempfile.mkdtemp(prefix="cxlemu-bench-media-")
        inner = ""
        try:
            made = populate(b, a.regions, media)
            if not a.json:
                print(f"{preset}: {made}", flush=True)
            render(b, d)
            fd, inner = tempfile.mkstemp(suffix=".py", prefix="cxlemu-bench-inner-")   # outside /dev
            with os.fdopen(fd, "w") as f:
                f.write(INNER)
            env = dict(os.environ)
            env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
            p = subprocess.run(["unshare", "-m", "bash", "-c", _UNSHARE_SCRIPT, d, "mknod", sys.executable,
                                inner, str(a.reps), json.dumps(COMMANDS), src, OURS_CLI],
                               capture_output=True, text=True, env=env, timeout=3000)
            if p.returncode != 0:
                print(p.stderr, file=sys.stderr)
                return 1
            for r in json.loads(p.stdout.strip().splitlines()[-1]):
                r["preset"] = preset
                r["ratio"] = round(r["ours_s"] / r["c_s"], 2)
                r["ratio_cli"] = round(r["ours_cli_s"] / r["c_s"], 2)
                for k in ("c_s", "ours_s", "ours_cli_s", "python_s"):
                    r[k] = round(r[k], 4)
                rows.append(r)
                if not a.json:
                    print(f"{preset:13} {r['command']:16} C {r['c_s'] * 1e3:8.1f} ms  ours {r['ours_s'] * 1e3:8.1f} ms"
                          f" ({r['ratio']:5.2f}x)  ours as a process {r['ours_cli_s'] * 1e3:8.1f} ms "
                          f"({r['ratio_cli']:5.2f}x; python -c pass {r['python_s'] * 1e3:.0f} ms)  "
                          f"[output: C {r['c_bytes']} B, ours {r['ours_bytes']} B]", flush=True)
        finally:
            shutil.rmtree(d, ignore_errors=True)
            shutil.rmtree(media, ignore_errors=True)
            if os.path.exists(inner):
                os.unlink(inner)
    if a.json:
        print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
