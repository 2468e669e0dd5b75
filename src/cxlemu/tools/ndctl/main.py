"""The ``ndctl`` command (ndctl/ndctl.c): the v81 command table with the
commands cxlemu implements for CXL persistent memory."""

from __future__ import annotations

from cxlemu.tools.common.command import (NDCTL_COMMANDS_V81, NDCTL_HELP_SUBCOMMANDS, CommandContext,
                                         lazy_command, make_tool)

_LABELS, _NS, _REGION = "cxlemu.tools.ndctl.labels", "cxlemu.tools.ndctl.namespace", "cxlemu.tools.ndctl.region"
IMPLS = {
    "list": lazy_command("cxlemu.tools.ndctl.list", "cmd_list"),
    "create-namespace": lazy_command(_NS, "cmd_create_namespace"),
    "destroy-namespace": lazy_command(_NS, "cmd_destroy_namespace"),
    "enable-namespace": lazy_command(_NS, "cmd_enable_namespace"),
    "disable-namespace": lazy_command(_NS, "cmd_disable_namespace"),
    "enable-region": lazy_command(_REGION, "cmd_enable_region"),
    "disable-region": lazy_command(_REGION, "cmd_disable_region"),
    "read-labels": lazy_command(_LABELS, "cmd_read_labels"),
    "write-labels": lazy_command(_LABELS, "cmd_write_labels"),
    "zero-labels": lazy_command(_LABELS, "cmd_zero_labels"),
    "init-labels": lazy_command(_LABELS, "cmd_init_labels"),
    "check-labels": lazy_command(_LABELS, "cmd_check_labels"),
    "clear-errors": lazy_command(_NS, "cmd_clear_errors"),
    "disable-dimm": lazy_command(_LABELS, "cmd_disable_dimm"),
    "enable-dimm": lazy_command(_LABELS, "cmd_enable_dimm"),
}

TOOL = make_tool("ndctl", NDCTL_COMMANDS_V81, IMPLS, help_subcommands=NDCTL_HELP_SUBCOMMANDS)


def tool_main(name: str, argv: list[str], ctx: CommandContext) -> int:
    return TOOL.run(argv, ctx)
