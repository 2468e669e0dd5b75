"""The ``ndctl`` command (ndctl/ndctl.c): the v81 command table with the
commands cxlemu implements for CXL persistent memory."""

from __future__ import annotations

from cxlemu.tools.common.command import NDCTL_COMMANDS_V81, NDCTL_HELP_SUBCOMMANDS, CommandContext, make_tool

from .labels import (cmd_check_labels, cmd_disable_dimm, cmd_enable_dimm, cmd_init_labels, cmd_read_labels,
                     cmd_write_labels, cmd_zero_labels)
from .list import cmd_list
from .namespace import (cmd_clear_errors, cmd_create_namespace, cmd_destroy_namespace, cmd_disable_namespace,
                        cmd_enable_namespace)
from .region import cmd_disable_region, cmd_enable_region

IMPLS = {
    "list": cmd_list,
    "create-namespace": cmd_create_namespace,
    "destroy-namespace": cmd_destroy_namespace,
    "enable-namespace": cmd_enable_namespace,
    "disable-namespace": cmd_disable_namespace,
    "enable-region": cmd_enable_region,
    "disable-region": cmd_disable_region,
    "read-labels": cmd_read_labels,
    "write-labels": cmd_write_labels,
    "zero-labels": cmd_zero_labels,
    "init-labels": cmd_init_labels,
    "check-labels": cmd_check_labels,
    "clear-errors": cmd_clear_errors,
    "disable-dimm": cmd_disable_dimm,
    "enable-dimm": cmd_enable_dimm,
}

TOOL = make_tool("ndctl", NDCTL_COMMANDS_V81, IMPLS, help_subcommands=NDCTL_HELP_SUBCOMMANDS)


def tool_main(name: str, argv: list[str], ctx: CommandContext) -> int:
    return TOOL.run(argv, ctx)
