"""``daxctl online-memory`` (daxctl/device.c cmd_online_memory)."""

from __future__ import annotations

from cxlemu.tools.common.command import CommandContext
from cxlemu.tools.daxctl.device import ACTION_ONLINE, ONLINE_TABLE, device_command

USAGE = "daxctl online-memory <device> [<options>]"


def cmd_online_memory(argv: list[str], ctx: CommandContext) -> int:
    return device_command(argv, ctx, ACTION_ONLINE, ONLINE_TABLE, USAGE, "onlining memory", "onlined memory for")
