"""Console entry points ``cxlemu-cxl``, ``cxlemu-ndctl``, ``cxlemu-daxctl``,
``cxlemu-numactl`` and ``cxlemu-lspci``: run a bundled tool outside
``cxlemu exec``, against

* ``--sysfs-root DIR`` (or ``$CXLEMU_SYSFS_ROOT``): a directory tree, either a
  real ``/sys`` (``--sysfs-root /sys``) or one rendered by ``cxlemu sysfs NAME
  render OUT`` (pass ``OUT`` or ``OUT/sys``);
* ``$CXLEMU_MACHINE``: a machine, as ``cxlemu exec`` would;
* otherwise the running host's ``/sys``.
"""

from __future__ import annotations

import os
import sys


def _root_of(path: str) -> str:
    path = os.path.abspath(path)
    if os.path.isdir(os.path.join(path, "sys")):
        return path
    if os.path.basename(path) == "sys":
        return os.path.dirname(path) or "/"
    raise SystemExit(f"cxlemu: --sysfs-root {path}: neither a /sys tree nor a rendered machine")


def _main(tool: str) -> int:
    """A console entry point: run ``tool``, then leave without the
    interpreter's teardown (util/procexit.py; the tools close the files they
    write, and a machine's state is saved when its ``with`` block ends)."""
    from cxlemu.util.procexit import exit_now
    exit_now(_run(tool))


def _run(tool: str) -> int:
    from cxlemu.sysfs.backend import DirectoryBackend
    from cxlemu.tools.runner import run_tool
    argv = sys.argv[1:]
    root = os.environ.get("CXLEMU_SYSFS_ROOT")
    if argv and argv[0].startswith("--sysfs-root"):
        if "=" in argv[0]:
            root = argv[0].split("=", 1)[1]
            argv = argv[1:]
        elif len(argv) > 1:
            root, argv = argv[1], argv[2:]
        else:
            print("cxlemu: --sysfs-root needs a directory", file=sys.stderr)
            return 129
    machine = os.environ.get("CXLEMU_MACHINE")
    if root is None and machine:
        from cxlemu.machine.store import Store
        from cxlemu.sim import run as run_loop
        with Store().open(machine) as m:
            return run_tool(tool, argv, m.backend(run_loop), env=dict(os.environ))
    backend = DirectoryBackend(_root_of(root) if root else "/")
    return run_tool(tool, argv, backend, env=dict(os.environ))


def cxl() -> int:
    return _main("cxl")


def ndctl() -> int:
    return _main("ndctl")


def daxctl() -> int:
    return _main("daxctl")


def numactl() -> int:
    return _main("numactl")


def lspci() -> int:
    return _main("lspci")
