"""Start-up cost of a command: ``cxlemu exec b -- cxl list`` on BiscuitOS
topology B (machine not running) against ``python -c pass``, both as
processes, best of ``--reps`` in the same run (the target is 3x or less).

    python benchmarks/bench_startup.py [--reps 7] [--json]

The bytecode cache is on (as for an installed package: ``PYTHONPYCACHEPREFIX``
in a temporary directory, warmed by one run), whatever
``PYTHONDONTWRITEBYTECODE`` says, so that compiling sources is not counted.
Also reported: ``import cxlemu.cli.main`` alone.
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
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    tmp = tempfile.mkdtemp(prefix="cxlemu-bench-startup-")
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = os.path.join(tmp, "pycache")
    env["CXLEMU_HOME"] = os.path.join(tmp, "home")
    src = str(Path(__file__).resolve().parents[1] / "src")
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    try:
        subprocess.run([sys.executable, "-m", "cxlemu", "create", "b", "--topology", "biscuitos-b"],
                       env=env, check=True, capture_output=True)

        def best(cmd: list[str]) -> float:
            subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            b = float("inf")
            for _ in range(a.reps):
                t0 = time.perf_counter()
                subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                b = min(b, time.perf_counter() - t0)
            return b

        py = best([sys.executable, "-c", "pass"])
        imp = best([sys.executable, "-c", "import cxlemu.cli.main"])
        ls = best([sys.executable, "-m", "cxlemu", "exec", "b", "--", "cxl", "list"])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    row = {"python_s": round(py, 4), "import_cli_s": round(imp, 4), "exec_cxl_list_s": round(ls, 4),
           "ratio": round(ls / py, 2)}
    if a.json:
        print(json.dumps(row))
    else:
        print(f"python -c pass {py * 1e3:.0f} ms; import cxlemu.cli.main {imp * 1e3:.0f} ms; "
              f"cxlemu exec b -- cxl list {ls * 1e3:.0f} ms = {ls / py:.2f}x python -c pass (target <= 3x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
