"""Helpers for the tiering tests: small tiered machines booted in process."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from cxltest_support import boot_text  # noqa: E402

from cxlemu.topology import presets  # noqa: E402
from cxlemu.topology.overrides import apply_all  # noqa: E402

GiB = 1 << 30
MiB = 1 << 20


def tiered(dram: str = "2G", cxl: str = "8G", *extra: str):
    """The ``tiered`` preset with smaller memories (and any --set overrides)."""
    sets = [f"numa.0.memory={dram}", f"device.0.volatile={cxl}", f"window.0.size={cxl}",
            f"firmware_region.0.size={cxl}", *extra]
    return boot_text(apply_all(presets.text("tiered"), list(sets)))


def kernel_of(b):
    return b.kernel
