"""The tiering modules respect the house's floors (CONVENTIONS.md):
util, topology < hw < kernel < userspace < sim < sysfs, data, machine <
tools < cli — no upward import, function-local imports included."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "cxlemu"
FLOOR = {"util": 0, "topology": 0, "hw": 1, "kernel": 2, "userspace": 3, "sim": 4, "sysfs": 5, "data": 5,
         "machine": 5, "tools": 6, "fabric": 6, "cli": 7}
MINE = ["hw/timing.py", "kernel/sysctl.py", "kernel/sched", "kernel/mm/frames.py", "kernel/mm/vmstate.py",
        "kernel/mm/mempolicy.py", "kernel/mm/lru.py", "kernel/mm/page_alloc.py", "kernel/mm/mmap.py",
        "kernel/mm/rmap.py", "kernel/mm/swap.py", "kernel/mm/zswap.py", "kernel/mm/migrate.py",
        "kernel/mm/vmscan.py", "kernel/mm/oom.py", "kernel/mm/fault.py", "kernel/mm/numa_fault.py",
        "kernel/mm/procfs.py", "kernel/mm/vmstat.py", "userspace", "sim", "tools/sysctl.py", "tools/numastat.py",
        "tools/workload.py", "cli/run_commands.py"]


def files():
    for m in MINE:
        p = SRC / m
        yield from (sorted(p.rglob("*.py")) if p.is_dir() else [p])


@pytest.mark.parametrize("path", list(files()), ids=lambda p: str(p.relative_to(SRC)))
def test_no_upward_imports(path):
    top = path.relative_to(SRC).parts[0]
    bad = []
    for node in ast.walk(ast.parse(path.read_text())):
        mods = [a.name for a in node.names] if isinstance(node, ast.Import) else \
            [node.module] if isinstance(node, ast.ImportFrom) and node.module else []
        for m in mods:
            parts = m.split(".")
            if parts[0] == "cxlemu" and len(parts) > 1 and FLOOR.get(parts[1], -1) > FLOOR[top]:
                bad.append(m)
    assert not bad, f"{path.relative_to(SRC)} imports above its floor: {bad}"
