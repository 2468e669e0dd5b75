"""Errors of the ``cxlemu`` commands (how main() reports them)."""

from __future__ import annotations

from cxlemu.machine.store import MachineError


class UsageError(MachineError):
    """Wrong arguments to a cxlemu command: exit status 2, like argparse."""
    exit_status = 2

    def __str__(self) -> str:
        return f"usage: cxlemu {super().__str__()}"
