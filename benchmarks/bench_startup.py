"""What a command costs to start, as a ratio to ``python -c pass`` measured in
the same run (issue 8 and 13: with the machine running, ``cxlemu exec b --
cxl list`` within 2x of ``python -c pass``; without it, within 3x).

Each command runs ``--reps`` times; the figure is the best (minimum) wall
time and the best CPU time (user + system of the child), which are what the
command costs when the host is not busy with something else.

    python benchmarks/bench_startup.py [--reps 15] [--json]

Rows: ``python -c pass``; ``cxlemu exec b -- cxl list`` with machine ``b``
(BiscuitOS B) running, through the ``cxlemu`` console script and through
``python -m cxlemu``; the same with the machine stopped (load, run, no save).
``--json`` prints one object: ``{row: {"wall_s", "cpu_s", "wall_ratio",
"cpu_ratio"}}``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time


def measure(cmd: list[str], env: dict, reps: int) -> tuple[float, float]:
    walls, cpus = [], []
    for _ in range(reps):
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _, status, ru = os.wait4(p.pid, 0)
        walls.append(time.perf_counter() - t0)
        cpus.append(ru.ru_utime + ru.ru_stime)
        p.returncode = os.waitstatus_to_exitcode(status)
        err = p.stderr.read() if p.stderr else b""
        if p.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed ({p.returncode}): {err.decode(errors='replace')}")
    return min(walls), min(cpus)


def console_script() -> list[str]:
    """The installed ``cxlemu`` entry point next to this Python (not a pyenv shim)."""
    cand = os.path.join(os.path.dirname(sys.executable), "cxlemu")
    if os.path.exists(cand):
        return [cand]
    return [sys.executable, "-c", "import sys; from cxlemu.cli.main import main; sys.exit(main())"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    home = tempfile.mkdtemp(prefix="cxlemu-bench-")
    env = dict(os.environ, CXLEMU_HOME=home, CXLEMU_PROGRESS="0")
    # the bytecode cache on, as for an installed package, whatever PYTHONDONTWRITEBYTECODE
    # says: compiling the sources is not what a command costs (warmed by the first runs)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = os.path.join(home, "pycache")
    cx = [sys.executable, "-m", "cxlemu"]
    try:
        subprocess.run(cx + ["create", "b", "--topology", "biscuitos-b"], env=env, check=True,
                       stdout=subprocess.DEVNULL)
        rows: dict[str, tuple[float, float]] = {}
        rows["python -c pass"] = measure([sys.executable, "-c", "pass"], env, args.reps)
        subprocess.run(cx + ["start", "b"], env=env, check=True, stdout=subprocess.DEVNULL)
        try:
            measure(console_script() + ["exec", "b", "--", "cxl", "list"], env, 2)    # warm the server
            rows["running: cxlemu exec b -- cxl list"] = measure(
                console_script() + ["exec", "b", "--", "cxl", "list"], env, args.reps)
            rows["running: python -m cxlemu exec b -- cxl list"] = measure(
                cx + ["exec", "b", "--", "cxl", "list"], env, args.reps)
        finally:
            subprocess.run(cx + ["stop", "b"], env=env, check=True, stdout=subprocess.DEVNULL)
        measure(console_script() + ["exec", "b", "--", "cxl", "list"], env, 2)    # bytecode of the model
        rows["stopped: cxlemu exec b -- cxl list"] = measure(
            console_script() + ["exec", "b", "--", "cxl", "list"], env, args.reps)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    base_w, base_c = rows["python -c pass"]
    out = {k: {"wall_s": w, "cpu_s": c, "wall_ratio": w / base_w, "cpu_ratio": c / base_c}
           for k, (w, c) in rows.items()}
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    print(f"best of {args.reps}; ratios to python -c pass in this run")
    print(f"{'command':48} {'wall':>9} {'ratio':>6} {'cpu':>9} {'ratio':>6}")
    for k, v in out.items():
        print(f"{k:48} {v['wall_s'] * 1e3:7.1f}ms {v['wall_ratio']:5.2f}x {v['cpu_s'] * 1e3:7.1f}ms "
              f"{v['cpu_ratio']:5.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
