"""``daxctl disable-device`` (daxctl/device.c cmd_disable_device)."""

from __future__ import annotations

from cxlemu.tools.common.command import CommandContext
from cxlemu.tools.daxctl.device import ACTION_DISABLE, DISABLE_TABLE, device_command

USAGE = "daxctl disable-device <device>"


def cmd_disable_device(argv: list[str], ctx: CommandContext) -> int:
    return device_command(argv, ctx, ACTION_DISABLE, DISABLE_TABLE, USAGE, "disabling device", "disabled")
