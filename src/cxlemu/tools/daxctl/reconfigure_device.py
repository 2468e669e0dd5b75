"""``daxctl reconfigure-device`` (daxctl/device.c cmd_reconfig_device)."""

from __future__ import annotations

from cxlemu.tools.common.command import CommandContext
from cxlemu.tools.daxctl.device import ACTION_RECONFIG, RECONFIG_TABLE, device_command

USAGE = "daxctl reconfigure-device <device> [<options>]"


def cmd_reconfig_device(argv: list[str], ctx: CommandContext) -> int:
    return device_command(argv, ctx, ACTION_RECONFIG, RECONFIG_TABLE, USAGE, "reconfiguring devices", "reconfigured")
