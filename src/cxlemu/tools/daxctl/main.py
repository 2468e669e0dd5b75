"""daxctl (daxctl/daxctl.c): the v81 command table with cxlemu's implementations."""

from __future__ import annotations

from cxlemu.tools.common.command import DAXCTL_COMMANDS_V81, DAXCTL_HELP_SUBCOMMANDS, CommandContext, make_tool
from cxlemu.tools.daxctl.create_device import cmd_create_device
from cxlemu.tools.daxctl.destroy_device import cmd_destroy_device
from cxlemu.tools.daxctl.disable_device import cmd_disable_device
from cxlemu.tools.daxctl.enable_device import cmd_enable_device
from cxlemu.tools.daxctl.list import cmd_list
from cxlemu.tools.daxctl.offline_memory import cmd_offline_memory
from cxlemu.tools.daxctl.online_memory import cmd_online_memory
from cxlemu.tools.daxctl.reconfigure_device import cmd_reconfig_device

IMPLS = {
    "list": cmd_list,
    "create-device": cmd_create_device,
    "destroy-device": cmd_destroy_device,
    "reconfigure-device": cmd_reconfig_device,
    "online-memory": cmd_online_memory,
    "offline-memory": cmd_offline_memory,
    "disable-device": cmd_disable_device,
    "enable-device": cmd_enable_device,
}

TOOL = make_tool("daxctl", DAXCTL_COMMANDS_V81, IMPLS, help_subcommands=DAXCTL_HELP_SUBCOMMANDS)


def tool_main(name: str, argv: list[str], ctx: CommandContext) -> int:
    return TOOL.run(argv, ctx)
