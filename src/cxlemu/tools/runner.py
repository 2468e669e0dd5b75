"""Run one of the bundled tools (cxl, ndctl, daxctl, numactl, lspci, dd, ...)
against a backend, with the streams and environment of a command."""

from __future__ import annotations

import importlib
import sys
from typing import TextIO

from cxlemu.tools.common.command import CommandContext

TOOLS = {
    "cxl": "cxlemu.tools.cxl.main",
    "ndctl": "cxlemu.tools.ndctl.main",
    "daxctl": "cxlemu.tools.daxctl.main",
    "numactl": "cxlemu.tools.numactl",
    "lspci": "cxlemu.tools.lspci",
    "dd": "cxlemu.tools.dd",
    "cat": "cxlemu.tools.coreutils",
    "ls": "cxlemu.tools.coreutils",
    "readlink": "cxlemu.tools.coreutils",
    "tree": "cxlemu.tools.coreutils",
    "sysctl": "cxlemu.tools.sysctl",
    "numastat": "cxlemu.tools.numastat",
    "workload": "cxlemu.tools.workload",
}


def available() -> list[str]:
    out = []
    for name, mod in TOOLS.items():
        try:
            importlib.import_module(mod)
            out.append(name)
        except ModuleNotFoundError:
            pass
    return out


def run_tool(name: str, argv: list[str], backend, env: dict[str, str] | None = None,
             stdout: TextIO | None = None, stderr: TextIO | None = None, isatty: bool | None = None) -> int:
    mod = importlib.import_module(TOOLS[name])
    out = stdout or sys.stdout
    ctx = CommandContext(stdout=out, stderr=stderr or sys.stderr, backend=backend,
                         env=dict(env or {}), isatty=out.isatty() if isatty is None else isatty)
    return mod.tool_main(name, argv, ctx)


def spawn(argv: list[str], ctx: CommandContext) -> int | None:
    """exec(2) of a program of the machine's PATH in the calling tool's
    process (same backend, so the same task: memory policy, affinity and
    cpuset carry over); None if there is no such program (ENOENT)."""
    import os
    prog = os.path.basename(argv[0]) if argv else ""
    if prog not in TOOLS:
        return None
    mod = importlib.import_module(TOOLS[prog])
    task = getattr(ctx.backend, "_task", None)
    if task is not None:
        task.task.comm = prog[:15]
    return mod.tool_main(prog, list(argv[1:]), ctx)
