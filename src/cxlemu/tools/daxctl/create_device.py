"""``daxctl create-device`` (daxctl/device.c cmd_create_device)."""

from __future__ import annotations

from cxlemu.tools.common.command import CommandContext
from cxlemu.tools.daxctl.device import ACTION_CREATE, CREATE_TABLE, device_command

USAGE = "daxctl create-device [<options>]"


def cmd_create_device(argv: list[str], ctx: CommandContext) -> int:
    return device_command(argv, ctx, ACTION_CREATE, CREATE_TABLE, USAGE, "creating devices", "created")
