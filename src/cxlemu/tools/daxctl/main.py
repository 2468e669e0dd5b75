"""daxctl (daxctl/daxctl.c): the v81 command table with cxlemu's implementations."""

from __future__ import annotations

from cxlemu.tools.common.command import (DAXCTL_COMMANDS_V81, DAXCTL_HELP_SUBCOMMANDS, CommandContext,
                                         lazy_command, make_tool)

_D = "cxlemu.tools.daxctl."
IMPLS = {
    "list": lazy_command(_D + "list", "cmd_list"),
    "create-device": lazy_command(_D + "create_device", "cmd_create_device"),
    "destroy-device": lazy_command(_D + "destroy_device", "cmd_destroy_device"),
    "reconfigure-device": lazy_command(_D + "reconfigure_device", "cmd_reconfig_device"),
    "online-memory": lazy_command(_D + "online_memory", "cmd_online_memory"),
    "offline-memory": lazy_command(_D + "offline_memory", "cmd_offline_memory"),
    "disable-device": lazy_command(_D + "disable_device", "cmd_disable_device"),
    "enable-device": lazy_command(_D + "enable_device", "cmd_enable_device"),
}

TOOL = make_tool("daxctl", DAXCTL_COMMANDS_V81, IMPLS, help_subcommands=DAXCTL_HELP_SUBCOMMANDS)


def tool_main(name: str, argv: list[str], ctx: CommandContext) -> int:
    return TOOL.run(argv, ctx)
