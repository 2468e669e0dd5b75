"""``daxctl enable-device`` (daxctl/device.c cmd_enable_device)."""

from __future__ import annotations

from cxlemu.tools.common.command import CommandContext
from cxlemu.tools.daxctl.device import ACTION_DISABLE, ACTION_ENABLE, ENABLE_TABLE, device_command

USAGE = "daxctl enable-device <device>"


def cmd_enable_device(argv: list[str], ctx: CommandContext) -> int:
    return device_command(argv, ctx, ACTION_ENABLE, ENABLE_TABLE, USAGE, "enabling device", "enabled",
                          parse_action=ACTION_DISABLE)
