"""``daxctl offline-memory`` (daxctl/device.c cmd_offline_memory)."""

from __future__ import annotations

from cxlemu.tools.common.command import CommandContext
from cxlemu.tools.daxctl.device import ACTION_OFFLINE, OFFLINE_TABLE, device_command

USAGE = "daxctl offline-memory <device> [<options>]"


def cmd_offline_memory(argv: list[str], ctx: CommandContext) -> int:
    return device_command(argv, ctx, ACTION_OFFLINE, OFFLINE_TABLE, USAGE, "offlining memory", "offlined memory for")
