"""Helpers for the DAMON tests: small tiered machines booted in process and
short paths into /sys/kernel/mm/damon/admin."""

from __future__ import annotations

import errno
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from cxltest_support import boot_text  # noqa: E402

from cxlemu.topology import presets  # noqa: E402
from cxlemu.topology.overrides import apply_all  # noqa: E402

ADMIN = "/sys/kernel/mm/damon/admin/kdamonds"
MiB = 1 << 20
GiB = 1 << 30


def machine(dram: str = "2G", cxl: str = "8G", *extra: str):
    sets = [f"numa.0.memory={dram}", f"device.0.volatile={cxl}", f"window.0.size={cxl}",
            f"firmware_region.0.size={cxl}", *extra]
    return boot_text(apply_all(presets.text("tiered"), list(sets)))


def w(b, rel: str, val) -> None:
    b.write(f"{ADMIN}/{rel}" if not rel.startswith("/") else rel, f"{val}\n")


def r(b, rel: str) -> str:
    return b.read(f"{ADMIN}/{rel}" if not rel.startswith("/") else rel).strip()


def err(b, rel: str, val) -> int:
    with pytest.raises(OSError) as e:
        w(b, rel, val)
    return e.value.errno


def one_kdamond(b, ops: str = "paddr") -> str:
    """nr_kdamonds 1, one context with ``ops``; returns the context's path."""
    w(b, "nr_kdamonds", 1)
    w(b, "0/contexts/nr_contexts", 1)
    w(b, "0/contexts/0/operations", ops)
    return "0/contexts/0"


EINVAL, EBUSY, EPERM, ERANGE = errno.EINVAL, errno.EBUSY, errno.EPERM, errno.ERANGE
