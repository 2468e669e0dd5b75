"""``daxctl destroy-device`` (daxctl/device.c cmd_destroy_device)."""

from __future__ import annotations

from cxlemu.tools.common.command import CommandContext
from cxlemu.tools.daxctl.device import ACTION_DESTROY, DESTROY_TABLE, device_command

USAGE = "daxctl destroy-device <device> [<options>]"


def cmd_destroy_device(argv: list[str], ctx: CommandContext) -> int:
    return device_command(argv, ctx, ACTION_DESTROY, DESTROY_TABLE, USAGE, "destroying devices", "destroyed")
