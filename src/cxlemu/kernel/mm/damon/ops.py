"""The registered DAMON operation sets (damon_register_ops() /
damon_select_ops() in mm/damon/core.c): ``vaddr`` and ``fvaddr``
(mm/damon/vaddr.c, ops_vaddr.py) and ``paddr`` (mm/damon/paddr.c,
ops_paddr.py), looked up by name when a context runs.

Kept apart from core.py so that DAMOS (schemes.py), which core.py drives,
reaches a context's operations without importing core."""

from __future__ import annotations

import importlib

OPS_MODULES = {"vaddr": "cxlemu.kernel.mm.damon.ops_vaddr", "fvaddr": "cxlemu.kernel.mm.damon.ops_vaddr",
               "paddr": "cxlemu.kernel.mm.damon.ops_paddr"}


def ops_of(name: str):
    """The operation set registered as ``name`` (its module)."""
    return importlib.import_module(OPS_MODULES[name])
